"""``zorgpad demo`` seeding: a fictional South Limburg region whose patients stand at different points of the
palliative pathways, reached through back-dated ingests, Task updates and ticks; seeding twice adds nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import func, text
from sqlmodel import Session, col, select
from zorgpad.engine import ROLE_SYSTEM, EnrolmentState, months, weeks
from zorgpad.engine._projection import NOTICE_SYSTEM
from zorgpad.engine.app import build_engine
from zorgpad.engine.demo import DEMO_PATIENTS, ORGANISATIONS, DemoRegion, Ingest, seed, timeline
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import StoredResource, Timer
from zorgpad.engine.store.tokens import find_token

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TABLES = ("resource", "resource_version", "enrolment", "step_run", "timer", "outbox", "audit", "api_token")
SHARE_STEPS = ("share_out_of_hours", "share_ambulance", "share_hospital", "share_home_care")
JSON = dict[str, Any]


@dataclass
class Seeded:
    """The engine over a database the demo region was seeded into at ``NOW``, and what seed returned."""

    engine: Engine
    region: DemoRegion

    def enrolments(self, patient: str) -> dict[str, EnrolmentState]:
        """The patient's enrolments by pathway id (each pathway at most once in the demo)."""
        found = self.engine.enrolments_of(f"Patient/{patient}")
        return {e.pathway_id: e for e in found}

    def resources(self, resource_type: str, patient: str | None = None) -> list[JSON]:
        """The current resources of a type (of one patient)."""
        def read(session: Session) -> list[JSON]:
            query = select(StoredResource).where(StoredResource.resource_type == resource_type,
                                                 col(StoredResource.deleted).is_(False))
            if patient is not None:
                query = query.where(StoredResource.patient == f"Patient/{patient}")
            return [r.content for r in session.exec(query)]
        return self.engine.db.run(read)

    def task(self, enrolment: EnrolmentState, step: str) -> JSON:
        """The Task of the step's current round."""
        [task] = [t for t in self.resources("Task") if Engine.step_of_task(t) == (
            enrolment.id, step, enrolment.steps[step].iteration)]
        return task

    def notices(self, task: JSON) -> list[tuple[str, str | None]]:
        """(kind, recipient) of every notice about ``task``, oldest first."""
        found = []
        for c in self.resources("Communication"):
            if c["about"][0]["reference"] != f"Task/{task['id']}":
                continue
            kind = next(cd["code"] for cat in c["category"] for cd in cat["coding"] if cd["system"] == NOTICE_SYSTEM)
            found.append((c["extension"][0]["valueDateTime"], kind, (c.get("recipient") or [{}])[0].get("reference")))
        return [(kind, recipient) for _, kind, recipient in sorted(found)]


def _counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as connection:
        return {table: connection.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()  # noqa: S608
                for table in TABLES}  # the table names are the constants above


@pytest.fixture(scope="module")
def seeded(database_factory: Callable[[], str]) -> Iterator[Seeded]:
    """The demo region, seeded once for the module on the chosen database."""
    db = Database(database_factory())
    engine = build_engine(db)
    region = seed(engine, NOW)
    yield Seeded(engine, region)
    db.dispose()


class TestSeeding:
    """seed() writes the region once, returns the patients and fresh tokens, and is safe to run again."""

    def test_seeding_twice_adds_nothing_the_second_time(self, seeded: Seeded) -> None:
        """A second run on the seeded database writes no row in any table and makes no tokens."""
        before = _counts(seeded.engine.db)

        second = seed(seeded.engine, NOW + timedelta(days=1))

        assert (True, False) == (seeded.region.created, second.created)
        assert {} == second.tokens
        assert before == _counts(seeded.engine.db)
        assert [p.reference for p in DEMO_PATIENTS] == second.patients == seeded.region.patients

    def test_a_database_with_any_demo_patient_is_left_alone(self, db: Database) -> None:
        """When one demo patient exists already (say, an interrupted run), seeding writes nothing."""
        engine = build_engine(db)
        engine.ingest({"resourceType": "Patient", "id": DEMO_PATIENTS[-1].id}, now=NOW)
        before = _counts(db)

        region = seed(engine, NOW)

        assert False is region.created
        assert before == _counts(db)

    def test_an_admin_token_and_one_token_per_organisation_are_made_and_work(self, seeded: Seeded) -> None:
        """The returned tokens are live: the admin token is an administrator's, each other one its organisation's."""
        tokens = seeded.region.tokens

        found = seeded.engine.db.run(lambda s: {name: ((t := find_token(s, secret)) is not None and t.admin,
                                                       t.organisation if t else None)
                                                for name, secret in tokens.items()})

        expected = {"admin": (True, None)} | {f"Organization/{o.id}": (False, f"Organization/{o.id}")
                                              for o in ORGANISATIONS}
        assert expected == found

    def test_the_region_has_every_role_each_with_a_phone_number(self, seeded: Seeded) -> None:
        """The organisations fill all six care roles, and each stored Organization has a phone number."""
        phones = {o["id"]: [t["value"] for t in o.get("telecom", []) if t["system"] == "phone"]
                  for o in seeded.resources("Organization")}

        assert {"gp", "home-care", "hospital", "out-of-hours", "ambulance", "coordinator"} == {
            o.role for o in ORGANISATIONS}
        assert {o.id: [o.phone] for o in ORGANISATIONS} == phones

    def test_every_resource_the_demo_sends_is_valid_fhir(self) -> None:
        """Each resource on the demo timeline validates as an R4(B) resource."""
        invalid = []
        for _, _, action in timeline(NOW):
            if isinstance(action, Ingest):
                resource = action.resource
                try:
                    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
                except ValueError as exc:
                    invalid.append(f"{resource['resourceType']}/{resource['id']}: {exc}")

        assert [] == invalid

    def test_every_stored_resource_is_valid_fhir(self, seeded: Seeded) -> None:
        """What the engine wrote on the way (Tasks, CarePlans, Communications, Compositions) validates too."""
        stored = seeded.engine.db.run(lambda s: [r.content for r in s.exec(select(StoredResource))])
        invalid = []
        for resource in stored:
            try:
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            except ValueError as exc:
                invalid.append(f"{resource['resourceType']}/{resource['id']}: {exc}")

        assert [] == invalid

    def test_no_timer_due_by_now_is_left_unfired(self, seeded: Seeded) -> None:
        """The history was ticked up to now: every remaining timer lies in the future."""
        earliest = seeded.engine.db.run(lambda s: s.exec(select(func.min(Timer.due_at))).one())

        assert NOW < earliest.replace(tzinfo=UTC)

    def test_the_history_is_back_dated(self, seeded: Seeded) -> None:
        """Enrolments start when the patient was identified, months ago, not when the demo ran."""
        started = {p.id: seeded.engine.enrolments_of(p.reference)[0].enrolled_at for p in DEMO_PATIENTS}

        assert NOW - timedelta(days=75) == started["demo-smeets"]
        assert NOW - timedelta(days=260) == started["demo-lemmens"]
        assert NOW - timedelta(days=2) == started["demo-jansen"]

    def test_every_patient_has_a_care_team_naming_all_six_roles(self, seeded: Seeded) -> None:
        """Each demo patient's CareTeam names their GP practice, home care and the regional organisations."""
        roles = {team["subject"]["reference"]: sorted(cd["code"] for p in team["participant"] for r in p["role"]
                                                      for cd in r["coding"] if cd["system"] == ROLE_SYSTEM)
                 for team in seeded.resources("CareTeam")}

        expected = sorted(["ambulance", "coordinator", "gp", "home-care", "hospital", "out-of-hours"])
        assert {p.reference: expected for p in DEMO_PATIENTS} == roles


class TestPatientsAtTheirPoints:
    """Each demo patient stands where their story says."""

    def test_the_just_identified_patient_waits_for_her_gp_to_mark_her(self, seeded: Seeded) -> None:
        """demo-jansen: the Surprise Question enrolled her two days ago; 'mark' is open at her GP, due in 12 days."""
        enrolments = seeded.enrolments("demo-jansen")
        mark = enrolments["palliative-acp"].steps["mark"]

        assert ["palliative-acp"] == list(enrolments)
        assert ("ready", NOW + timedelta(days=12)) == (mark.state, mark.due_at)
        assert "Organization/gp-heerlen" == seeded.task(enrolments["palliative-acp"], "mark")["owner"]["reference"]

    def test_the_overdue_conversation_was_reminded_twice_and_escalated(self, seeded: Seeded) -> None:
        """demo-smeets: the conversation is open, escalated, and its Task got two reminders then an escalation."""
        acp = seeded.enrolments("demo-smeets")["palliative-acp"]
        conversation = acp.steps["conversation"]
        task = seeded.task(acp, "conversation")

        assert ("ready", "escalated") == (conversation.state, conversation.business_status)
        assert "escalated" == task["businessStatus"]["coding"][0]["code"]
        assert [("reminder", "Organization/gp-sittard"), ("reminder", "Organization/gp-sittard"),
                ("escalation", "Organization/coordination-zl")] == seeded.notices(task)

    def test_the_patient_who_was_not_ready_is_offered_the_conversation_again_later(self, seeded: Seeded) -> None:
        """demo-hendriks: the not-done Procedure completed the conversation; the offer comes 3 months later."""
        acp = seeded.enrolments("demo-hendriks")["palliative-acp"]
        offer = acp.steps["offer_again"]

        assert "completed" == acp.steps["conversation"].state
        assert ("pending", "scheduled") == (offer.state, offer.business_status)
        assert months(3).after(NOW - timedelta(days=20)) == offer.start_at

    def test_without_sharing_consent_the_handovers_wait(self, seeded: Seeded) -> None:
        """demo-vanderberg: ACP is recorded but not agreed to share, so no share step has started."""
        acp = seeded.enrolments("demo-vanderberg")["palliative-acp"]
        shares = {s: (acp.steps[s].state, acp.steps[s].business_status) for s in SHARE_STEPS}
        share_tasks = [t["id"] for t in seeded.resources("Task", "demo-vanderberg")
                       if Engine.step_of_task(t)[1] in SHARE_STEPS]

        assert "completed" == acp.steps["conversation"].state
        assert dict.fromkeys(SHARE_STEPS, ("pending", "waiting-for-condition")) == shares
        assert [] == share_tasks

    def test_the_shared_agreements_reached_all_four_receivers(self, seeded: Seeded) -> None:
        """demo-custers: each receiving organisation took over a handover Task carrying the CPR directive."""
        acp = seeded.enrolments("demo-custers")["palliative-acp"]
        tasks = {s: seeded.task(acp, s) for s in SHARE_STEPS}

        assert {"share_out_of_hours": ("completed", "Organization/hap-zl"),
                "share_ambulance": ("completed", "Organization/ambulance-zl"),
                "share_hospital": ("completed", "Organization/hospital-zuyd"),
                "share_home_care": ("completed", "Organization/homecare-ozl")} == {
            s: (t["status"], t["owner"]["reference"]) for s, t in tasks.items()}
        assert all("Consent/demo-custers-directive-89666000" in [i["valueReference"]["reference"]
                                                                  for i in t["input"]] for t in tasks.values())

    def test_the_patient_in_hospital_has_his_discharge_conversation_due(self, seeded: Seeded) -> None:
        """demo-bemelmans: admitted yesterday, discharge planned in 20 h, the talk is due 12 h before it."""
        enrolments = seeded.enrolments("demo-bemelmans")
        transmural = enrolments["transmural-discharge"]
        steps = {s: (r.state, r.business_status) for s, r in transmural.steps.items()}

        assert {"palliative-acp": "active", "transmural-discharge": "active"} == {
            p: e.status for p, e in enrolments.items()}
        assert {"inform_admission": ("completed", None), "start_handover": ("completed", None),
                "discharge_talk": ("ready", None), "nursing_handover": ("pending", "waiting-for-condition"),
                "discharge_letter": ("pending", "waiting-for-condition")} == steps
        assert NOW + timedelta(hours=8) == transmural.steps["discharge_talk"].due_at

    def test_the_dying_patient_is_evaluated_every_four_hours(self, seeded: Seeded) -> None:
        """demo-wetzels: two evaluations are recorded, the third round is open at home care, due within the hour."""
        dying = seeded.enrolments("demo-wetzels")["dying-phase"]
        evaluate = dying.steps["evaluate"]

        assert "active" == dying.status
        assert ("ready", 2, 2) == (evaluate.state, evaluate.iteration, evaluate.completions)
        assert NOW < evaluate.due_at <= NOW + timedelta(hours=1)
        assert "Organization/homecare-ozl" == seeded.task(dying, "evaluate")["owner"]["reference"]

    def test_the_dying_phase_start_was_told_to_every_organisation_involved(self, seeded: Seeded) -> None:
        """demo-wetzels: home care, the out-of-hours post, the ambulance, the hospital and the coordinator were told."""
        dying = seeded.enrolments("demo-wetzels")["dying-phase"]

        recipients = sorted(r for kind, r in seeded.notices(seeded.task(dying, "inform")) if kind == "inform")

        assert ["Organization/ambulance-zl", "Organization/coordination-zl", "Organization/hap-zl",
                "Organization/homecare-ozl", "Organization/hospital-zuyd"] == recipients

    def test_the_deceased_patients_pathways_ended_and_bereavement_is_planned(self, seeded: Seeded) -> None:
        """demo-lemmens: died 3 weeks ago; ACP and dying phase exited, the bereavement talk starts 6 weeks after."""
        enrolments = seeded.enrolments("demo-lemmens")
        bereavement = enrolments["after-death"].steps["bereavement"]

        assert {"palliative-acp": "exited", "dying-phase": "exited", "after-death": "active"} == {
            p: e.status for p, e in enrolments.items()}
        assert "completed" == enrolments["after-death"].steps["inform"].state
        assert ("pending", weeks(6).after(NOW - timedelta(days=21))) == (bereavement.state, bereavement.start_at)

    def test_the_deceased_patients_open_tasks_were_cancelled_and_their_owners_told(self, seeded: Seeded) -> None:
        """demo-lemmens: no Task is left open; the evaluation due at the moment of death was cancelled, and home
        care was told."""
        dying = seeded.enrolments("demo-lemmens")["dying-phase"]
        statuses = sorted({t["status"] for t in seeded.resources("Task", "demo-lemmens")})
        evaluation = seeded.task(dying, "evaluate")

        assert ["cancelled", "completed"] == statuses
        assert "cancelled" == evaluation["status"]
        assert [("cancelled", "Organization/homecare-wm")] == [n for n in seeded.notices(evaluation)
                                                               if n[0] == "cancelled"]

    def test_the_follow_up_conversation_shared_the_changed_directive_again(self, seeded: Seeded) -> None:
        """demo-lemmens: after the review changed a directive, every receiver got a second handover round."""
        acp = seeded.enrolments("demo-lemmens")["palliative-acp"]

        rounds = {s: (acp.steps[s].iteration, acp.steps[s].completions) for s in SHARE_STEPS}

        assert dict.fromkeys(SHARE_STEPS, (1, 2)) == rounds
        assert 1 == acp.steps["review"].completions
