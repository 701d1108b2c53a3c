"""The dashboard over plain HTTP against a real server with the demo region: sign-in, every route behind
it, scoping per organisation, auditing of page views, escaping of patient data, and the audited actions."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, col, select
from web.conftest import MARKUP_NAME, Dashboard
from zorgpad.engine.store.tables import AuditEntry, Enrolment, OutboxItem, StepRun
from zorgpad.pathways import settings

PAGES = ("/", "/pathways", "/patients/demo-smeets", "/patients/demo-smeets/enrol", "/outbox/{dead}/retry")


def _read(dashboard: Dashboard, query: Any) -> list[Any]:
    db = dashboard.database()
    try:
        def read(session: Session) -> list[Any]:
            rows = list(session.exec(query).all())
            for row in rows:
                session.expunge(row)
            return rows
        return db.run(read)
    finally:
        db.dispose()


def _step(dashboard: Dashboard, patient: str, pathway: str, step: str) -> StepRun:
    query = (select(StepRun).join(Enrolment, col(Enrolment.id) == col(StepRun.enrolment_id))
             .where(Enrolment.patient == patient, Enrolment.pathway_id == pathway, StepRun.step_id == step))
    rows: list[StepRun] = _read(dashboard, query)
    assert len(rows) == 1
    return rows[0]


class TestSignIn:
    """Every page needs a signed-in user; the cookie is HttpOnly and SameSite=Strict."""

    @pytest.mark.parametrize("path", PAGES)
    def test_a_page_without_a_cookie_redirects_to_the_sign_in_form(self, dashboard: Dashboard, path: str) -> None:
        """Without the session cookie every page answers 303 to /login."""
        answer = dashboard.client().get(path.format(dead=dashboard.dead_letter))

        assert (303, "/login") == (answer.status_code, answer.headers["location"])

    @pytest.mark.parametrize("path", PAGES)
    def test_a_page_with_the_cookie_answers(self, dashboard: Dashboard, path: str) -> None:
        """Signed in as an administrator, every page answers 200 with HTML."""
        answer = dashboard.client(dashboard.tokens["admin"]).get(path.format(dead=dashboard.dead_letter))

        assert (200, "text/html; charset=utf-8") == (answer.status_code, answer.headers["content-type"])

    def test_the_session_cookie_is_httponly_and_samesite_strict(self, dashboard: Dashboard) -> None:
        """The cookie set at sign-in is out of reach of scripts and of other sites."""
        answer = dashboard.client().post("/login", data={"token": dashboard.tokens["admin"]})
        cookie = answer.headers["set-cookie"].lower()

        assert (True, True) == ("httponly" in cookie, "samesite=strict" in cookie)

    def test_an_unknown_token_is_refused(self, dashboard: Dashboard) -> None:
        """A wrong token gets the form again with 401, and no cookie."""
        answer = dashboard.client().post("/login", data={"token": "zp_wrong"})

        assert (401, None) == (answer.status_code, answer.headers.get("set-cookie"))

    def test_signing_out_clears_the_cookie(self, dashboard: Dashboard) -> None:
        """After signing out, the worklist redirects to the sign-in form again."""
        client = dashboard.client(dashboard.tokens["admin"])
        client.post("/logout")

        assert 303 == client.get("/").status_code

    def test_the_pages_are_dutch_by_default_and_english_on_request(self, dashboard: Dashboard) -> None:
        """The worklist is headed Werklijst, or Worklist with ?lang=en (which then sticks)."""
        client = dashboard.client(dashboard.tokens["admin"])
        dutch = "<h1>Werklijst</h1>" in client.get("/").text
        english = "<h1>Worklist</h1>" in client.get("/?lang=en").text
        sticky = "<h1>Worklist</h1>" in client.get("/").text

        assert (True, True, True) == (dutch, english, sticky)


class TestWorklist:
    """Open steps, scoped and filtered, with counts at the top."""

    def test_the_overdue_conversation_is_on_the_worklist(self, dashboard: Dashboard) -> None:
        """Harrie Smeets's overdue PZP conversation is in the overdue section."""
        page = dashboard.client(dashboard.tokens["admin"]).get("/").text
        overdue = page.split('id="overdue"')[1].split("</section>")[0]

        assert ("Harrie Smeets" in overdue, 'data-step="conversation"' in overdue) == (True, True)

    def test_a_filter_limits_the_worklist_to_one_organisation(self, dashboard: Dashboard) -> None:
        """Filtering on the hospital leaves only steps the hospital owns."""
        page = dashboard.client(dashboard.tokens["admin"]).get("/?org=Organization/hospital-zuyd").text

        assert ("Harrie Smeets" in page.split('id="worklist"')[1], "Sjef Bemelmans" in page) == (False, True)

    def test_the_filter_value_is_escaped(self, dashboard: Dashboard) -> None:
        """A filter value with markup comes back as text."""
        page = dashboard.client(dashboard.tokens["admin"]).get("/", params={"patient": "<i>x</i>"}).text

        assert ("<i>x</i>" in page, "&lt;i&gt;x&lt;/i&gt;" in page) == (False, True)

    def test_an_organisation_sees_only_its_own_patients(self, dashboard: Dashboard) -> None:
        """The Kerkrade GP practice does not see Harrie Smeets (a Sittard patient) on its worklist."""
        page = dashboard.client(dashboard.tokens["Organization/gp-kerkrade"]).get("/").text

        assert ("Harrie Smeets" in page, "Mia Wetzels" in page) == (False, True)

    def test_the_dead_letter_is_listed_with_its_error_escaped(self, dashboard: Dashboard) -> None:
        """The dead-lettered delivery shows, its error as text."""
        page = dashboard.client(dashboard.tokens["admin"]).get("/").text
        dead = page.split('id="dead"')[1]

        assert ("connection refused &lt;b&gt;" in dead, "connection refused <b>" in dead) == (True, False)

    def test_the_refresh_fragment_has_no_page_around_it(self, dashboard: Dashboard) -> None:
        """With X-Fragment: worklist the answer is the list only, for the refresh script to swap in."""
        answer = dashboard.client(dashboard.tokens["admin"]).get("/?role=gp", headers={"X-Fragment": "worklist"})

        assert (False, True) == ("<html" in answer.text, 'data-count="overdue"' in answer.text)


class TestCatalogue:
    """The pathway catalogue names roles and timings in the reader's language."""

    def test_roles_and_timings_are_dutch_by_default_and_english_on_request(self, dashboard: Dashboard) -> None:
        """The PZP conversation row reads 'huisarts' and 'binnen … dagen', or 'GP' and 'due … days' in English."""
        client = dashboard.client(dashboard.tokens["admin"])
        dutch = client.get("/pathways").text.split("<td>PZP-gesprek voeren</td>")[1].split("</tr>")[0]
        english = client.get("/pathways?lang=en").text.split("<td>PZP-gesprek voeren</td>")[1].split("</tr>")[0]
        days = settings.CONVERSATION_DAYS

        assert (True, True, True, True) == ("<td>huisarts</td>" in dutch, f"binnen {days} dagen" in dutch,
                                            "<td>GP</td>" in english, f"due {days} days" in english)


class TestPatientPage:
    """One patient: enrolments drawn as diagrams, the ACP summary, the timeline; audited; scoped."""

    def test_the_acp_summary_shows_the_directives(self, dashboard: Dashboard) -> None:
        """Lei Custers: no CPR, no ICU, hospital admission yes, dying at home."""
        page = dashboard.client(dashboard.tokens["admin"]).get("/patients/demo-custers").text

        def directive(key: str) -> str:
            return page.split(f'data-directive="{key}"')[1].split("</div>")[0]

        expected = ("nee", "nee", "ja", "thuis")
        assert expected == tuple(next(w for w in ("nee", "ja", "thuis") if w in directive(k))
                                 for k in ("cpr", "icu", "hospital", "place_of_death"))

    def test_each_enrolment_is_drawn_with_its_current_step_highlighted(self, dashboard: Dashboard) -> None:
        """Harrie Smeets's ACP diagram is an inline SVG with the conversation marked current."""
        page = dashboard.client(dashboard.tokens["admin"]).get("/patients/demo-smeets").text

        assert ('<svg' in page, 'class="step state-ready current" data-step="conversation"' in page) == (True, True)

    def test_the_timeline_tells_what_happened_in_words(self, dashboard: Dashboard) -> None:
        """Maria Jansen's timeline shows her enrolment and the data received, in Dutch, oldest last."""
        page = dashboard.client(dashboard.tokens["admin"]).get("/patients/demo-jansen").text
        timeline = page.split('id="h-timeline"')[1]

        assert (True, True) == ('title="Enrol">ingeschreven' in timeline,
                                timeline.rindex("gegevens ontvangen") > timeline.index("ingeschreven"))

    def test_a_page_view_is_audited(self, dashboard: Dashboard) -> None:
        """Viewing Maria Jansen writes an audit row naming the viewer and the patient."""
        query = select(AuditEntry).where(AuditEntry.what == "view", AuditEntry.patient == "Patient/demo-jansen",
                                         AuditEntry.organisation == "Organization/gp-heerlen")
        before = len(_read(dashboard, query))
        dashboard.client(dashboard.tokens["Organization/gp-heerlen"]).get("/patients/demo-jansen")
        rows = _read(dashboard, query)

        assert (1, "dashboard:demo Huisartsenpraktijk Heerlen-Centrum") == (len(rows) - before, rows[-1].actor)

    def test_another_organisations_patient_is_not_found(self, dashboard: Dashboard) -> None:
        """The Kerkrade GP practice gets 404 for Harrie Smeets, as for a patient that does not exist."""
        client = dashboard.client(dashboard.tokens["Organization/gp-kerkrade"])

        assert (404, 404) == (client.get("/patients/demo-smeets").status_code,
                              client.get("/patients/nobody").status_code)

    def test_a_name_with_markup_is_shown_as_text(self, dashboard: Dashboard) -> None:
        """A patient named like a script tag is escaped on the patient page and the worklist."""
        client = dashboard.client(dashboard.tokens["admin"])
        pages = client.get("/patients/markup").text + client.get("/").text

        assert (MARKUP_NAME in pages, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in pages) == (False, True)

    def test_the_catalogue_lists_every_pathway_with_its_diagram(self, dashboard: Dashboard) -> None:
        """Each registered pathway version has a section and an SVG."""
        page = dashboard.client(dashboard.tokens["admin"]).get("/pathways").text

        expected = {"palliative-acp", "transmural-discharge", "dying-phase", "after-death"}
        assert expected == {p for p in expected if f'id="pathway-{p}-1.0.0"' in page}
        assert page.count("<svg") >= len(expected)


class TestActions:
    """Actions need a confirmation form and a reason, go through the engine, and are audited."""

    def test_completing_a_step_needs_a_reason(self, dashboard: Dashboard) -> None:
        """A POST without a reason is refused with 400 and changes nothing."""
        run = _step(dashboard, "Patient/demo-jansen", "palliative-acp", "mark")
        answer = dashboard.client(dashboard.tokens["admin"]).post(
            f"/enrolments/{run.enrolment_id}/steps/mark/complete", data={"reason": " "})

        assert (400, "ready") == (answer.status_code, _step(dashboard, "Patient/demo-jansen", "palliative-acp",
                                                              "mark").state)

    def test_completing_a_step_marks_it_done_and_audits_the_actor(self, dashboard: Dashboard) -> None:
        """Marking Maria Jansen's register step done completes it, audited under the signed-in token."""
        run = _step(dashboard, "Patient/demo-jansen", "palliative-acp", "mark")
        answer = dashboard.client(dashboard.tokens["admin"]).post(
            f"/enrolments/{run.enrolment_id}/steps/mark/complete", data={"reason": "done by phone"})
        after = _step(dashboard, "Patient/demo-jansen", "palliative-acp", "mark")
        actors = {r.actor for r in _read(dashboard, select(AuditEntry).where(
            AuditEntry.patient == "Patient/demo-jansen", AuditEntry.what != "view",
            col(AuditEntry.actor).startswith("dashboard:")))}

        assert (303, "completed", {"dashboard:demo admin"}) == (answer.status_code, after.state, actors)

    def test_an_organisation_cannot_act_on_another_organisations_patient(self, dashboard: Dashboard) -> None:
        """The Kerkrade GP practice gets 404 when it tries to skip one of Harrie Smeets's steps."""
        run = _step(dashboard, "Patient/demo-smeets", "palliative-acp", "conversation")
        answer = dashboard.client(dashboard.tokens["Organization/gp-kerkrade"]).post(
            f"/enrolments/{run.enrolment_id}/steps/conversation/skip", data={"reason": "x"})

        assert (404, "ready") == (answer.status_code, _step(dashboard, "Patient/demo-smeets", "palliative-acp",
                                                              "conversation").state)

    def test_enrolling_a_patient_audits_the_reason(self, dashboard: Dashboard) -> None:
        """Enrolling Truus Hendriks in the dying phase starts the enrolment and records why."""
        answer = dashboard.client(dashboard.tokens["admin"]).post(
            "/patients/demo-hendriks/enrol", data={"pathway": "dying-phase", "reason": "decline this week"})
        enrolments = _read(dashboard, select(Enrolment).where(Enrolment.patient == "Patient/demo-hendriks",
                                                              Enrolment.pathway_id == "dying-phase"))
        reasons = [r.detail for r in _read(dashboard, select(AuditEntry).where(AuditEntry.what == "enrol-reason"))]

        assert (303, 1, ["decline this week"]) == (answer.status_code, len(enrolments), reasons)

    def test_a_gp_practice_may_not_retry_a_dead_letter(self, dashboard: Dashboard) -> None:
        """Retrying deliveries is for administrators and coordinators: the Sittard GP practice gets 404."""
        answer = dashboard.client(dashboard.tokens["Organization/gp-sittard"]).post(
            f"/outbox/{dashboard.dead_letter}/retry")
        item = _read(dashboard, select(OutboxItem).where(OutboxItem.id == dashboard.dead_letter))[0]

        assert (404, "dead") == (answer.status_code, item.status)

    def test_the_regional_coordinator_may_retry_a_dead_letter(self, dashboard: Dashboard) -> None:
        """The coordinating network (coordinator in every demo CareTeam) is shown the confirmation form."""
        answer = dashboard.client(dashboard.tokens["Organization/coordination-zl"]).get(
            f"/outbox/{dashboard.dead_letter}/retry")

        assert 200 == answer.status_code

    def test_retrying_a_dead_letter_puts_it_back_and_audits_it(self, dashboard: Dashboard) -> None:
        """The dead letter is pending again with no attempts, and the retry is in the audit log."""
        answer = dashboard.client(dashboard.tokens["admin"]).post(f"/outbox/{dashboard.dead_letter}/retry")
        item = _read(dashboard, select(OutboxItem).where(OutboxItem.id == dashboard.dead_letter))[0]
        audited = _read(dashboard, select(AuditEntry).where(AuditEntry.what == "outbox-retry"))

        assert (303, "pending", 0, 1) == (answer.status_code, item.status, item.attempts, len(audited))
