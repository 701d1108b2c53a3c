"""after-death: Maria dies at home with Tasks open in proactive care planning, a hospital transfer and the
dying phase. Every pathway ends and cancels its open Tasks (owners told), every organisation is informed,
and the GP is asked for a bereavement conversation BEREAVEMENT_WEEKS after death."""

from __future__ import annotations

from datetime import timedelta

import pytest
from zorgpad.engine import EnrolmentStatus, days, hours, months, weeks
from zorgpad.engine.testing import PathwayHarness
from zorgpad.pathways import settings

from tests.pathways.region import (
    AMBULANCE_ORG,
    COORDINATOR_ORG,
    GP_ORG,
    HOME_CARE_ORG,
    HOSPITAL_ORG,
    OUT_OF_HOURS_ORG,
    PATIENT_NAME,
    START,
    acp_procedure,
    admission,
    complete,
    cpr_directive,
    deceased,
    due,
    dying_phase,
    instant,
    owner,
    patient,
    sent,
    sharing_consent,
    step_of,
    surprise_question,
)

AFTER_DEATH = "after-death"
DIED = START + timedelta(days=6, minutes=30)  # Sunday 8 March 2026, 09:30
BEREAVEMENT = DIED + timedelta(weeks=settings.BEREAVEMENT_WEEKS)
BEREAVEMENT_DUE = BEREAVEMENT + timedelta(weeks=2)
EXIT_REASON = "exit criterion deceased met by Patient/p1"




@pytest.fixture
def everything_open(harness: PathwayHarness) -> PathwayHarness:
    """Maria's last week: PZP held and shared (handovers unaccepted), a hospital stay still being prepared, and
    since this morning the dying phase with its first evaluation open."""
    harness.add(surprise_question(False))
    complete(harness, "palliative-acp", "mark")
    complete(harness, "palliative-acp", "invite")
    harness.advance(days(1))
    harness.add(cpr_directive(resuscitate=False))
    harness.add(acp_procedure())
    harness.add(sharing_consent())
    harness.advance(days(4))
    harness.add(admission(start=harness.now))
    harness.advance_to(DIED - timedelta(minutes=30))
    harness.add(dying_phase(True))
    return harness


@pytest.fixture
def died(everything_open: PathwayHarness) -> PathwayHarness:
    """At DIED the GP records Maria's death (Patient.deceasedDateTime)."""
    everything_open.advance_to(DIED)
    everything_open.add(deceased(DIED))
    return everything_open


class TestEveryPathwayEnds:
    """Death ends every other pathway and cancels its open Tasks, telling each Task's owner."""

    def test_every_running_pathway_exits_because_of_the_death(self, died: PathwayHarness) -> None:
        """palliative-acp, transmural-discharge and dying-phase exit at DIED; after-death is active."""
        found = {e.pathway_id: (e.status, e.ended_at, e.end_reason) for e in died.enrolments()}

        assert {
            "palliative-acp": (EnrolmentStatus.EXITED, DIED, EXIT_REASON),
            "transmural-discharge": (EnrolmentStatus.EXITED, DIED, EXIT_REASON),
            "dying-phase": (EnrolmentStatus.EXITED, DIED, EXIT_REASON),
            AFTER_DEATH: (EnrolmentStatus.ACTIVE, None, None),
        } == found

    def test_the_dying_phase_evaluation_is_open_when_she_dies(self, everything_open: PathwayHarness) -> None:
        """Ten minutes before death home care's first evaluation is open, due at DIED + 30 minutes."""
        everything_open.advance_to(DIED - timedelta(minutes=10))

        (task,) = everything_open.tasks("evaluate")
        assert ("requested", instant(DIED + timedelta(minutes=30))) == (task["status"], due(task))

    def test_death_cancels_every_open_task_with_the_reason(self, everything_open: PathwayHarness) -> None:
        """Each Task open just before death is cancelled at DIED, with statusReason and an end to its execution."""
        everything_open.advance_to(DIED)
        was_open = {t["id"]: step_of(t) for t in everything_open.tasks() if t["status"] == "requested"}

        everything_open.add(deceased(DIED))

        now = {t["id"]: t for t in everything_open.tasks()}
        assert {tid: ("cancelled", EXIT_REASON, instant(DIED)) for tid in was_open} == {
            tid: (now[tid]["status"], now[tid]["statusReason"]["text"], now[tid]["executionPeriod"]["end"])
            for tid in was_open}

    def test_the_cancelled_tasks_span_every_pathway(self, everything_open: PathwayHarness) -> None:
        """The cancelled Tasks: four share handovers, PaTz, the review the admission brought forward, the ward's
        start_handover, arrange and evaluate."""
        everything_open.advance_to(DIED)

        everything_open.add(deceased(DIED))

        assert sorted(["share_ambulance", "share_home_care", "share_hospital", "share_out_of_hours", "patz",
                       "review", "start_handover", "arrange", "evaluate"]) == sorted(
            step_of(t) for t in everything_open.tasks() if t["status"] == "cancelled")

    def test_the_owner_of_each_cancelled_task_is_told(self, died: PathwayHarness) -> None:
        """One cancellation notice per cancelled Task, to the organisation that owned it."""
        cancelled = [t for t in died.tasks() if t["status"] == "cancelled"]

        assert sorted((DIED, "cancelled", step_of(t), owner(t)) for t in cancelled) == sorted(
            sent(died, "cancelled"))

    def test_the_cancellation_notice_says_why(self, died: PathwayHarness) -> None:
        """The home care notice for the evaluation names the step, Maria and the reason, in Dutch."""
        (notice,) = [n for n in died.notices("cancelled") if n.step == "evaluate"]

        assert (f"Vervallen: 'Evaluatie volgens het zorgpad (4-uurlijks)' voor {PATIENT_NAME} (Zorgpad stervensfase): "
                f"{EXIT_REASON}.") == notice.text

    def test_nothing_of_the_other_pathways_is_sent_after_death(self, died: PathwayHarness) -> None:
        """Over three months no reminder, escalation or handover of the ended pathways is sent."""
        died.advance(months(3))

        assert [] == [n for n in sent(died) if n[0] > DIED and n[2] != "bereavement"]


class TestEveryoneIsInformed:
    """Every organisation involved hears of the death at once."""

    def test_every_organisation_is_informed_of_the_death(self, died: PathwayHarness) -> None:
        """The GP practice, home care, the hospital, the HAP, the ambulance service and TOPAT are informed."""
        expected = sorted((DIED, "inform", "inform", org)
                          for org in (GP_ORG, HOME_CARE_ORG, HOSPITAL_ORG, OUT_OF_HOURS_ORG, AMBULANCE_ORG,
                                      COORDINATOR_ORG))

        assert expected == sorted(n for n in sent(died, "inform") if n[0] == DIED)

    def test_the_notice_says_the_patient_has_died(self, died: PathwayHarness) -> None:
        """The notice is Dutch and names Maria."""
        texts = {n.text for n in died.notices("inform") if n.at == DIED}

        assert {f"Ter informatie: Alle betrokken organisaties informeren over het overlijden - {PATIENT_NAME} "
                "(Overlijden en nazorg)."} == texts

    def test_death_without_any_pathway_still_informs_everyone(self, harness: PathwayHarness) -> None:
        """A patient in no pathway dies: after-death starts and informs the six organisations."""
        harness.add(deceased(START))

        assert (EnrolmentStatus.ACTIVE, 6) == (harness.enrolment(AFTER_DEATH).status, len(sent(harness, "inform")))

    def test_a_death_recorded_long_ago_starts_no_bereavement_care(self, harness: PathwayHarness) -> None:
        """An imported history with a death in 1979 (as in the Synthea bundles) enrols nothing."""
        harness.add({**patient(), "deceasedDateTime": "1979-05-01T10:00:00Z"})

        assert [] == harness.enrolments()

    def test_a_death_recorded_weeks_later_still_starts_it(self, harness: PathwayHarness) -> None:
        """A death recorded three weeks late still starts after-death."""
        harness.add({**patient(), "deceasedDateTime": (START - timedelta(weeks=3)).isoformat()})

        assert [AFTER_DEATH] == [e.pathway_id for e in harness.enrolments()]

    def test_deceased_false_is_not_a_death(self, harness: PathwayHarness) -> None:
        """Patient.deceasedBoolean false starts nothing."""
        harness.add({**patient(), "deceasedBoolean": False})

        assert [] == harness.enrolments()


class TestBereavement:
    """The GP offers the relatives a bereavement conversation BEREAVEMENT_WEEKS after death."""

    def test_the_bereavement_task_goes_to_the_gp_six_weeks_after_death(self, died: PathwayHarness) -> None:
        """No Task a minute before; at DIED + 6 weeks the GP's Task opens, due two weeks later."""
        died.advance_to(BEREAVEMENT - timedelta(minutes=1))
        before = died.tasks("bereavement")

        died.advance_to(BEREAVEMENT)

        (task,) = died.tasks("bereavement")
        assert ([], GP_ORG, instant(BEREAVEMENT), instant(BEREAVEMENT_DUE)) == (
            before, owner(task), task["authoredOn"], due(task))

    def test_a_late_bereavement_conversation_is_reminded_once(self, died: PathwayHarness) -> None:
        """Not held: the GP is reminded once, at the deadline, and not escalated."""
        died.advance_to(BEREAVEMENT_DUE + timedelta(weeks=4))

        assert [(BEREAVEMENT_DUE, "reminder", "bereavement", GP_ORG)] == sent(died, steps=("bereavement",))

    def test_the_conversation_completes_the_after_death_enrolment(self, died: PathwayHarness) -> None:
        """The GP completes the bereavement Task a week after it opened: after-death is completed."""
        died.advance_to(BEREAVEMENT + timedelta(weeks=1))

        complete(died, AFTER_DEATH, "bereavement")

        assert EnrolmentStatus.COMPLETED == died.enrolment(AFTER_DEATH).status

    def test_a_later_update_of_the_deceased_patient_starts_nothing_again(self, died: PathwayHarness) -> None:
        """After the bereavement talk, a correction to Maria's record does not announce her death again."""
        died.advance_to(BEREAVEMENT + timedelta(weeks=1))
        complete(died, AFTER_DEATH, "bereavement")
        died.advance(weeks(2))
        informed = len(sent(died, "inform"))

        died.add({**deceased(DIED), "telecom": [{"system": "phone", "value": "046-4000000"}]})

        assert (1, informed) == (len([e for e in died.enrolments() if e.pathway_id == AFTER_DEATH]),
                                 len(sent(died, "inform")))

    def test_recording_the_death_twice_does_not_enrol_twice(self, died: PathwayHarness) -> None:
        """The hospital sends the same death an hour later: still one after-death enrolment, one set of notices."""
        died.advance(hours(1))

        died.add(deceased(DIED))

        assert (1, 6) == (len([e for e in died.enrolments() if e.pathway_id == AFTER_DEATH]),
                          len([n for n in sent(died, "inform") if n[0] >= DIED]))

