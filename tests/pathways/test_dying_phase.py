"""dying-phase (Zorgpad Stervensfase) over hours and days: started by the clinician's decision, every caregiver
informed at once, home care evaluating every 4 hours with reminder and escalation, stopped when Maria improves
and restarted by a new decision."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from zorgpad.engine import EnrolmentStatus, StepState, days, hours, minutes
from zorgpad.engine.testing import PathwayHarness
from zorgpad.pathways import settings

from tests.pathways.region import (
    AMBULANCE_ORG,
    COORDINATOR_ORG,
    GP_ORG,
    HOME_CARE_ORG,
    HOSPITAL_ORG,
    OUT_OF_HOURS_ORG,
    PATIENT,
    PATIENT_NAME,
    START,
    complete,
    due,
    dying_evaluation,
    dying_phase,
    harness_with_region,
    instant,
    owner,
    sent,
    surprise_question,
)

DYING = "dying-phase"
EVERY = timedelta(hours=settings.DYING_EVALUATION_HOURS)
DECIDED = START + timedelta(days=10, hours=13)  # Thursday 12 March 2026, 22:00: the GP decides
FIRST_DUE = DECIDED + timedelta(hours=1)
CAREGIVERS = sorted([HOME_CARE_ORG, OUT_OF_HOURS_ORG, AMBULANCE_ORG, HOSPITAL_ORG, COORDINATOR_ORG])


def dying_enrolments(harness: PathwayHarness) -> list[tuple[EnrolmentStatus, str | None]]:
    """Status and end reason of every dying-phase enrolment, oldest first."""
    return [(e.status, e.end_reason) for e in harness.enrolments() if e.pathway_id == DYING]


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[PathwayHarness]:
    """The region with every palliative pathway; Maria is in proactive care planning since START."""
    monkeypatch.delenv("ZORGPAD_LANGUAGE", raising=False)
    monkeypatch.delenv("ZORGPAD_COORDINATOR_ORG", raising=False)
    harness = harness_with_region()
    harness.add(surprise_question(False))
    yield harness
    harness.close()


@pytest.fixture
def dying(harness: PathwayHarness) -> PathwayHarness:
    """At DECIDED the GP records that the dying phase has started."""
    harness.advance_to(DECIDED)
    harness.add(dying_phase(True))
    return harness


class TestStart:
    """The decision starts the pathway and every caregiver involved hears of it at once."""

    def test_the_decision_enrols_the_patient(self, dying: PathwayHarness) -> None:
        """Observation dying-phase true enrols Maria at the moment it is recorded."""
        enrolment = dying.enrolment(DYING)

        assert (EnrolmentStatus.ACTIVE, PATIENT, DECIDED) == (enrolment.status, enrolment.patient,
                                                              enrolment.enrolled_at)

    def test_every_caregiver_is_informed_at_once(self, dying: PathwayHarness) -> None:
        """Home care, the HAP, the ambulance service, the hospital and TOPAT are informed at DECIDED."""
        assert [(DECIDED, "inform", "inform", org) for org in CAREGIVERS] == sorted(sent(dying, "inform"))

    def test_the_notice_says_the_dying_phase_has_started(self, dying: PathwayHarness) -> None:
        """The notice is Dutch, names Maria and says the dying phase has started."""
        texts = {n.text for n in dying.notices("inform")}

        assert {f"Ter informatie: Betrokken zorgverleners informeren: de stervensfase is ingegaan - {PATIENT_NAME} "
                "(Zorgpad stervensfase)."} == texts

    def test_the_gp_records_the_arrangements_within_twelve_hours(self, dying: PathwayHarness) -> None:
        """The GP's 'arrange' Task is due in 12 hours; not done, TOPAT is told 12 hours later."""
        (task,) = dying.tasks("arrange")

        dying.advance(hours(30))

        assert (GP_ORG, instant(DECIDED + timedelta(hours=12))) == (owner(task), due(task))
        assert [(DECIDED + timedelta(hours=24), "escalation", "arrange", COORDINATOR_ORG)] == sent(
            dying, "escalation", steps=("arrange",))

    def test_arrangements_recorded_in_time_are_not_escalated(self, dying: PathwayHarness) -> None:
        """The GP completes 'arrange' after three hours: no escalation follows for it."""
        dying.advance(hours(3))
        complete(dying, DYING, "arrange")

        dying.advance(hours(30))

        assert [] == sent(dying, "escalation", steps=("arrange",))

    @pytest.mark.parametrize("observation", [dying_phase(False), {**dying_phase(True), "status": "preliminary"}],
                             ids=["stopped", "preliminary"])
    def test_other_observations_start_nothing(self, harness: PathwayHarness, observation: dict[str, object]) -> None:
        """A 'stopped' decision or a preliminary one enrols nobody in the dying phase."""
        result = harness.add(observation)

        assert ([], []) == (result.enrolled, dying_enrolments(harness))


class TestEvaluation:
    """Home care evaluates every DYING_EVALUATION_HOURS; a late evaluation is reminded, then escalated to the GP."""

    def test_home_care_gets_the_first_evaluation_due_within_the_hour(self, dying: PathwayHarness) -> None:
        """The first evaluation Task is home care's, opened at DECIDED and due an hour later."""
        (task,) = dying.tasks("evaluate")

        assert (HOME_CARE_ORG, instant(DECIDED), instant(FIRST_DUE)) == (owner(task), task["authoredOn"], due(task))

    def test_each_recorded_evaluation_opens_the_next_four_hours_later(self, dying: PathwayHarness) -> None:
        """Evaluations recorded 40 minutes into each round open the next round 4 hours after each."""
        recorded = []
        for n in range(3):
            dying.advance(minutes(40))
            recorded.append(dying.now)
            dying.add(dying_evaluation(f"ev-{n}"))
            dying.advance_to(recorded[-1] + EVERY)

        tasks = dying.tasks("evaluate")
        assert [instant(DECIDED)] + [instant(r + EVERY) for r in recorded] == [t["authoredOn"] for t in tasks]
        assert ["completed", "completed", "completed", "requested"] == [t["status"] for t in tasks]

    def test_a_late_evaluation_is_reminded_to_home_care_and_escalated_to_the_gp(self, dying: PathwayHarness) -> None:
        """Nobody evaluates: home care is reminded at the deadline, the GP is told an hour later."""
        dying.advance(hours(6))

        assert [(FIRST_DUE, "reminder", "evaluate", HOME_CARE_ORG),
                (FIRST_DUE + timedelta(hours=1), "escalation", "evaluate", GP_ORG)] == sent(dying, steps=("evaluate",))

    def test_evaluations_in_time_send_no_reminder(self, dying: PathwayHarness) -> None:
        """A day of evaluations, each 30 minutes into its round, sends no reminder or escalation for them."""
        for n in range(6):
            dying.advance(minutes(30))
            dying.add(dying_evaluation(f"ev-{n}"))
            dying.advance(EVERY)

        assert (7, []) == (len(dying.tasks("evaluate")), sent(dying, steps=("evaluate",)))

    def test_the_second_round_is_late_on_its_own_clock(self, dying: PathwayHarness) -> None:
        """After an evaluation at 22:30, the next is due at 03:30; it is reminded then and escalated at 04:30."""
        dying.advance(minutes(30))
        dying.add(dying_evaluation("ev-1"))
        second_due = DECIDED + timedelta(minutes=30) + EVERY + timedelta(hours=1)

        dying.advance(hours(8))

        assert [(second_due, "reminder", "evaluate", HOME_CARE_ORG),
                (second_due + timedelta(hours=1), "escalation", "evaluate", GP_ORG)] == sent(dying, steps=("evaluate",))

    def test_an_evaluation_between_rounds_does_not_complete_the_next(self, dying: PathwayHarness) -> None:
        """An extra evaluation recorded while the next round is still scheduled leaves that round open."""
        dying.advance(minutes(30))
        dying.add(dying_evaluation("ev-1"))
        dying.advance(hours(2))
        dying.add(dying_evaluation("ev-extra"))

        dying.advance(hours(2))

        assert StepState.READY == dying.step("evaluate", pathway_id=DYING).state


class TestStopAndRestart:
    """When Maria improves the pathway stops, its open Tasks cancelled; a new decision starts it again."""

    @pytest.fixture
    def stopped(self, dying: PathwayHarness) -> PathwayHarness:
        """Half an hour in, with the evaluation and the arrangements still open, the GP stops the dying phase."""
        dying.advance(minutes(30))
        dying.add(dying_phase(False, resource_id="dying-stop-1"))
        return dying

    def test_stopping_ends_the_enrolment(self, stopped: PathwayHarness) -> None:
        """The enrolment exits because of the 'stopped' decision."""
        assert [(EnrolmentStatus.EXITED, "exit criterion dying-phase-stopped met by Observation/dying-stop-1")] == (
            dying_enrolments(stopped))

    def test_stopping_cancels_the_open_tasks_with_the_reason(self, stopped: PathwayHarness) -> None:
        """The evaluation and arrangement Tasks are cancelled, each with the stop as statusReason."""
        tasks = stopped.tasks("evaluate") + stopped.tasks("arrange")

        assert [("cancelled", "exit criterion dying-phase-stopped met by Observation/dying-stop-1")] * 2 == [
            (t["status"], t["statusReason"]["text"]) for t in tasks]

    def test_the_owners_of_cancelled_tasks_are_told(self, stopped: PathwayHarness) -> None:
        """Home care hears its evaluation is cancelled and the GP its arrangements."""
        moment = DECIDED + timedelta(minutes=30)

        assert sorted([(moment, "cancelled", "evaluate", HOME_CARE_ORG),
                       (moment, "cancelled", "arrange", GP_ORG)]) == sorted(sent(stopped, "cancelled"))

    def test_no_evaluation_follows_a_stop(self, stopped: PathwayHarness) -> None:
        """A day later there is still only the one cancelled evaluation Task and no reminder."""
        stopped.advance(days(1))

        assert (1, []) == (len(stopped.tasks("evaluate")), sent(stopped, "reminder"))

    def test_a_new_decision_restarts_the_pathway(self, stopped: PathwayHarness) -> None:
        """Two days on, a new 'dying phase started' gives an active enrolment, new informs and an evaluation."""
        stopped.advance(days(2))
        restarted = stopped.now

        result = stopped.add(dying_phase(True, resource_id="dying-2"))

        assert 1 == len(result.enrolled)
        assert EnrolmentStatus.ACTIVE == stopped.engine.state(result.enrolled[0]).status
        assert [(restarted, "inform", "inform", org) for org in CAREGIVERS] == sorted(
            n for n in sent(stopped, "inform") if n[0] == restarted)
        assert [instant(restarted)] == [t["authoredOn"] for t in stopped.tasks("evaluate")
                                        if t["status"] == "requested"]

    def test_the_stopped_enrolment_stays_as_it_was(self, stopped: PathwayHarness) -> None:
        """The restart leaves the first enrolment exited and its Tasks cancelled."""
        stopped.advance(days(2))

        stopped.add(dying_phase(True, resource_id="dying-2"))

        assert EnrolmentStatus.EXITED == dying_enrolments(stopped)[0][0]
        assert "cancelled" == stopped.tasks("evaluate")[0]["status"]

