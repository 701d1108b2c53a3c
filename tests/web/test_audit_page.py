"""The dashboard's audit log (`/audit`, NEN 7513): who saw or changed which data when, scoped like the FHIR
AuditEvent search, filtered, paged, and itself audited."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlmodel import col, select
from web.conftest import Dashboard
from zorgpad.engine.store.tables import AuditEntry

ROW = re.compile(r"<tr(?: class=\"late\")?>\s*<td>(.*?)</tr>", re.S)


def _rows(html: str) -> list[str]:
    """The body rows of the log's table."""
    return ROW.findall(html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]) if "<tbody>" in html else []


def _add_entries(dashboard: Dashboard, count: int, actor: str) -> None:
    """``count`` entries by ``actor`` (administrator), about nobody."""
    db = dashboard.database()
    try:
        now = datetime.now(UTC)
        db.run(lambda s: s.add_all([AuditEntry(recorded_at=now, actor=actor, action="R", what="read",
                                               entity=f"Organization/x{n}") for n in range(count)]))
    finally:
        db.dispose()


class TestAuditLog:
    """Administrators see everything; an organisation sees its own actions and its own patients' data."""

    def test_without_signing_in_the_log_redirects_to_the_sign_in_form(self, dashboard: Dashboard) -> None:
        """303 to /login."""
        answer = dashboard.client().get("/audit")

        assert (303, "/login") == (answer.status_code, answer.headers["location"])

    def test_an_administrator_sees_who_viewed_a_patient(self, dashboard: Dashboard) -> None:
        """After the administrator opens Harrie Smeets's page, the log filtered on him shows that view first."""
        admin = dashboard.client(dashboard.tokens["admin"])
        admin.get("/patients/demo-smeets")
        rows = _rows(admin.get("/audit", params={"patient": "demo-smeets"}).text)

        assert rows, "no entries"
        assert ("demo admin" in rows[0], "Patient/demo-smeets" in rows[0]) == (True, True)
        assert all("Patient/demo-smeets" in row for row in rows)

    def test_an_organisation_sees_views_of_its_own_patients_and_not_of_others(self, dashboard: Dashboard) -> None:
        """The administrator's view of Harrie Smeets shows in his GP practice's log (De Baandert, Sittard),
        not in the Kerkrade practice's, which has no part in his care."""
        dashboard.client(dashboard.tokens["admin"]).get("/patients/demo-smeets")
        sittard = _rows(dashboard.client(dashboard.tokens["Organization/gp-sittard"]).get(
            "/audit", params={"patient": "demo-smeets"}).text)
        kerkrade = _rows(dashboard.client(dashboard.tokens["Organization/gp-kerkrade"]).get(
            "/audit", params={"patient": "demo-smeets"}).text)

        assert (True, []) == (any("demo admin" in row for row in sittard), kerkrade)

    def test_an_organisation_sees_its_own_actions(self, dashboard: Dashboard) -> None:
        """The Kerkrade practice's own page views are in its log, under its organisation."""
        kerkrade = dashboard.client(dashboard.tokens["Organization/gp-kerkrade"])
        kerkrade.get("/")
        rows = _rows(kerkrade.get("/audit", params={"who": "Organization/gp-kerkrade"}).text)

        assert rows
        assert all("Organization/gp-kerkrade" in row for row in rows)

    def test_an_organisation_does_not_see_what_others_did_elsewhere(self, dashboard: Dashboard) -> None:
        """Unfiltered, the Kerkrade practice's log has its own entry but not one of the Sittard practice's
        about no patient, nor an administrator's about no patient."""
        marker = f"probe-{datetime.now(UTC).timestamp()}"
        db = dashboard.database()
        try:
            now = datetime.now(UTC)
            db.run(lambda s: s.add_all([
                AuditEntry(recorded_at=now, actor=f"{marker}-own", organisation="Organization/gp-kerkrade",
                           action="R", what="read", entity="Organization/gp-kerkrade"),
                AuditEntry(recorded_at=now, actor=f"{marker}-sittard", organisation="Organization/gp-sittard",
                           action="R", what="read", entity="Organization/gp-sittard"),
                AuditEntry(recorded_at=now, actor=f"{marker}-admin", action="R", what="read", entity="Endpoint/x")]))
        finally:
            db.dispose()
        html = dashboard.client(dashboard.tokens["Organization/gp-kerkrade"]).get("/audit").text
        shown = [actor for actor in ("own", "sittard", "admin") if f"{marker}-{actor}" in html]

        assert ["own"] == shown

    def test_viewing_the_log_is_audited(self, dashboard: Dashboard) -> None:
        """Each view of the log writes an entry naming the page and its filters."""
        dashboard.client(dashboard.tokens["admin"]).get("/audit", params={"what": "login"})
        db = dashboard.database()
        try:
            details = db.run(lambda s: [e.detail for e in s.exec(select(AuditEntry).where(
                AuditEntry.entity == "dashboard:audit").order_by(col(AuditEntry.id).desc()))])
        finally:
            db.dispose()

        assert "what=login" == details[0]

    def test_the_log_is_paged_a_hundred_entries_at_a_time_newest_first(self, dashboard: Dashboard) -> None:
        """150 entries of one actor: page 1 has the newest 100 and a next link; page 2 the other 50."""
        actor = "paging-probe"
        _add_entries(dashboard, 150, actor)
        admin = dashboard.client(dashboard.tokens["admin"])
        first = admin.get("/audit", params={"who": actor}).text
        second = admin.get("/audit", params={"who": actor, "page": 2}).text

        assert (100, True, True) == (len(_rows(first)), 'href="/audit?who=paging-probe&amp;page=2"' in first,
                                     "Organization/x149" in _rows(first)[0])
        assert (50, 'rel="next"' in second, "Organization/x0" in _rows(second)[-1]) == (
            len(_rows(second)), False, True)

    def test_filters_that_do_not_parse_show_nothing_wrong(self, dashboard: Dashboard) -> None:
        """A date that is not a date filters nothing, a page that is not a number is page 1: never an error."""
        answer = dashboard.client(dashboard.tokens["admin"]).get("/audit", params={"from": "yesterday",
                                                                                   "page": "-3"})
        shown = re.search(r"Pagina \d+", answer.text)

        assert (200, "Pagina 1") == (answer.status_code, shown.group(0) if shown else None)
