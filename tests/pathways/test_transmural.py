"""transmural-discharge over a hospital stay: only patients in palliative care are followed; GP and home care
are informed at admission; the handover starts within 48 h; the discharge talk is due 12 h before the
planned discharge; at discharge home care and the GP get eOverdracht-style Tasks due in 24 h, and a late
receiver is escalated."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from zorgpad.engine import EnrolmentStatus, StepState, hours
from zorgpad.engine.testing import PathwayHarness
from zorgpad.pathways import settings
from zorgpad.pathways import terminology as t

from tests.pathways.region import (
    COORDINATOR_ORG,
    GP_ORG,
    HOME_CARE_ORG,
    HOSPITAL_ORG,
    PATIENT,
    PATIENT_NAME,
    START,
    acp_procedure,
    admission,
    care_team,
    complete,
    cpr_directive,
    deceased,
    due,
    inputs,
    instant,
    narrative,
    owner,
    patient,
    sent,
    sharing_consent,
    surprise_question,
    withdrawal,
)

TRANSMURAL = "transmural-discharge"
TRANSFER = [{"system": t.SNOMED, "code": "308292007", "display": "Overdracht van zorg"}]

ADMITTED = START + timedelta(days=7, hours=5)  # Monday 9 March 2026, 14:00: Maria is admitted
HANDOVER_STARTED = ADMITTED + timedelta(hours=30)  # the ward sets discharge criteria and a target date
PLANNED_AT = ADMITTED + timedelta(days=3)  # the ward records the planned discharge
DISCHARGE = ADMITTED + timedelta(days=5)  # the planned (and actual) discharge moment
TALK_DUE = DISCHARGE - timedelta(hours=settings.DISCHARGE_TALK_HOURS)
TALK_HELD = DISCHARGE - timedelta(hours=20)
TRANSFER_DUE = DISCHARGE + timedelta(hours=settings.TRANSFER_HOURS)
LATE = TRANSFER_DUE + timedelta(hours=settings.ACCEPT_HOURS)


def stay(*, end: datetime | None = None, status: str = "in-progress") -> dict[str, Any]:
    """Maria's inpatient Encounter at Zuyderland MC, admitted at ADMITTED."""
    return admission(start=ADMITTED, end=end, status=status)




@pytest.fixture
def in_palliative_care(harness: PathwayHarness) -> PathwayHarness:
    """Maria is in proactive care planning; her PZP conversation recorded 'niet reanimeren', and she agreed to
    share her agreements with the caregivers involved."""
    harness.add(surprise_question(False))
    harness.add(cpr_directive(resuscitate=False))
    harness.add(acp_procedure())
    harness.add(sharing_consent())
    return harness


@pytest.fixture
def admitted(in_palliative_care: PathwayHarness) -> PathwayHarness:
    """A week later Maria is admitted to Zuyderland MC."""
    in_palliative_care.advance_to(ADMITTED)
    in_palliative_care.add(stay())
    return in_palliative_care


@pytest.fixture
def handover_started(admitted: PathwayHarness) -> PathwayHarness:
    """The ward starts the discharge handover 30 hours after admission."""
    admitted.advance_to(HANDOVER_STARTED)
    complete(admitted, TRANSMURAL, "start_handover")
    return admitted


@pytest.fixture
def discharge_planned(handover_started: PathwayHarness) -> PathwayHarness:
    """On day 3 the ward plans the discharge for day 5 (Encounter.period.end while in progress)."""
    handover_started.advance_to(PLANNED_AT)
    handover_started.add(stay(end=DISCHARGE))
    return handover_started


@pytest.fixture
def discharged(discharge_planned: PathwayHarness) -> PathwayHarness:
    """The talk is held 20 hours before discharge; Maria goes home as planned (Encounter finished)."""
    discharge_planned.advance_to(TALK_HELD)
    complete(discharge_planned, TRANSMURAL, "discharge_talk")
    discharge_planned.advance_to(DISCHARGE)
    discharge_planned.add(stay(end=DISCHARGE, status="finished"))
    return discharge_planned


class TestEnrolment:
    """Only an admission of a patient actively enrolled in palliative-acp is followed."""

    def test_an_admission_of_a_patient_in_palliative_care_enrols_her(self, in_palliative_care: PathwayHarness) -> None:
        """Maria's inpatient Encounter enrols her in transmural-discharge at the moment it arrives."""
        in_palliative_care.advance_to(ADMITTED)

        result = in_palliative_care.add(stay())

        enrolment = in_palliative_care.enrolment(TRANSMURAL)
        assert ([enrolment.id], PATIENT, ADMITTED) == (result.enrolled, enrolment.patient, enrolment.enrolled_at)

    def test_an_admission_of_a_patient_not_in_palliative_care_enrols_nobody(self, harness: PathwayHarness) -> None:
        """Without a palliative-acp enrolment the admission starts nothing and informs nobody."""
        result = harness.add(stay())

        assert ([], [], []) == (result.enrolled, harness.enrolments(), sent(harness))

    def test_another_patient_is_not_followed_because_maria_is(self, in_palliative_care: PathwayHarness) -> None:
        """Jan Smeets, not in palliative care, is admitted the same day: only Maria's enrolments exist."""
        in_palliative_care.add(patient(patient_id="p2", name=("Jan", "Smeets")))
        in_palliative_care.add(care_team(patient_id="p2"))

        result = in_palliative_care.add(admission(start=START, resource_id="adm-p2", patient_id="p2"))

        assert ([], []) == (result.enrolled, in_palliative_care.enrolments("Patient/p2"))

    def test_an_admission_after_withdrawal_enrols_nobody(self, in_palliative_care: PathwayHarness) -> None:
        """Maria withdrew from proactive care planning: her admission is not followed."""
        in_palliative_care.add(withdrawal())
        in_palliative_care.advance_to(ADMITTED)

        result = in_palliative_care.add(stay())

        assert [] == result.enrolled

    def test_an_outpatient_visit_enrols_nobody(self, in_palliative_care: PathwayHarness) -> None:
        """An ambulatory Encounter (class AMB) at the hospital is not an admission."""
        visit = stay()
        visit["class"] = {"system": t.ACT_CODE, "code": "AMB", "display": "ambulatory"}

        result = in_palliative_care.add(visit)

        assert [] == result.enrolled

    def test_updates_of_the_admission_do_not_enrol_twice(self, admitted: PathwayHarness) -> None:
        """Setting the planned discharge on the same Encounter leaves one transmural enrolment."""
        admitted.advance(hours(6))

        result = admitted.add(stay(end=DISCHARGE))

        assert ([], 1) == (result.enrolled, len([e for e in admitted.enrolments() if e.pathway_id == TRANSMURAL]))


class TestAdmission:
    """At admission the GP and home care are informed, and the ward starts the handover within 48 h."""

    def test_the_gp_and_home_care_are_informed_at_once(self, admitted: PathwayHarness) -> None:
        """Two inform notices at the admission moment: the GP practice and home care."""
        assert sorted([(ADMITTED, "inform", "inform_admission", GP_ORG),
                       (ADMITTED, "inform", "inform_admission", HOME_CARE_ORG)]) == sorted(sent(admitted))

    def test_the_inform_notice_names_the_patient_and_the_admission(self, admitted: PathwayHarness) -> None:
        """The notice text is Dutch and says who was admitted."""
        texts = {n.text for n in admitted.notices("inform")}

        assert {f"Ter informatie: Huisarts en thuiszorg informeren over de opname - {PATIENT_NAME} "
                "(Transmurale overdracht ziekenhuis - thuis)."} == texts

    def test_the_hospital_starts_the_handover_within_48_hours(self, admitted: PathwayHarness) -> None:
        """The ward's start_handover Task is due HANDOVER_START_HOURS after admission."""
        (task,) = admitted.tasks("start_handover")

        assert (HOSPITAL_ORG, instant(ADMITTED + timedelta(hours=settings.HANDOVER_START_HOURS))) == (
            owner(task), due(task))

    def test_a_late_start_is_escalated_to_the_coordinator_a_day_after_due(self, admitted: PathwayHarness) -> None:
        """Nobody starts the handover: TOPAT is told 24 hours after the 48-hour deadline."""
        admitted.advance(hours(96))

        assert [(ADMITTED + timedelta(hours=settings.HANDOVER_START_HOURS + 24), "escalation", "start_handover",
                 COORDINATOR_ORG)] == sent(admitted, "escalation")

    def test_a_handover_started_in_time_is_not_escalated(self, handover_started: PathwayHarness) -> None:
        """Started after 30 hours: no escalation follows."""
        handover_started.advance(hours(96))

        assert [] == sent(handover_started, "escalation")


class TestDischargeTalk:
    """The discharge conversation is due DISCHARGE_TALK_HOURS before the planned discharge."""

    def test_the_talk_waits_for_a_planned_discharge(self, handover_started: PathwayHarness) -> None:
        """Without Encounter.period.end the talk has no deadline yet: no Task, business status waiting-for-date."""
        step = handover_started.step("discharge_talk", pathway_id=TRANSMURAL)

        assert (StepState.PENDING, "waiting-for-date", []) == (
            step.state, step.business_status, handover_started.tasks("discharge_talk"))

    def test_a_planned_discharge_makes_the_talk_due_12_hours_before_it(self, discharge_planned: PathwayHarness) -> None:
        """The ward's talk Task opens when the plan is recorded and is due 12 hours before the discharge."""
        (task,) = discharge_planned.tasks("discharge_talk")

        assert (HOSPITAL_ORG, instant(PLANNED_AT), instant(TALK_DUE)) == (owner(task), task["authoredOn"], due(task))

    def test_a_plan_known_before_the_handover_started_is_used_once_it_starts(self, admitted: PathwayHarness) -> None:
        """The discharge date recorded early gives the talk its deadline when the handover starts."""
        admitted.add(stay(end=DISCHARGE))
        admitted.advance_to(HANDOVER_STARTED)

        complete(admitted, TRANSMURAL, "start_handover")

        (task,) = admitted.tasks("discharge_talk")
        assert (instant(HANDOVER_STARTED), instant(TALK_DUE)) == (task["authoredOn"], due(task))

    def test_a_talk_not_held_is_escalated_four_hours_after_due(self, discharge_planned: PathwayHarness) -> None:
        """The talk is not held: TOPAT is told 4 hours after its deadline."""
        discharge_planned.advance_to(DISCHARGE)

        assert [(TALK_DUE + timedelta(hours=4), "escalation", "discharge_talk", COORDINATOR_ORG)] == sent(
            discharge_planned, "escalation")

    def test_a_postponed_discharge_moves_the_talk_deadline(self, discharge_planned: PathwayHarness) -> None:
        """The ward postpones the discharge by two days: the talk is due 12 hours before the new moment."""
        postponed = DISCHARGE + timedelta(days=2)
        discharge_planned.advance(hours(12))
        discharge_planned.add(stay(end=postponed))

        discharge_planned.advance_to(postponed - timedelta(hours=settings.DISCHARGE_TALK_HOURS + 1))

        (task,) = discharge_planned.tasks("discharge_talk")
        assert (instant(postponed - timedelta(hours=settings.DISCHARGE_TALK_HOURS)), []) == (
            due(task), sent(discharge_planned, "escalation"))


class TestTransfer:
    """At discharge: a nursing handover to home care and a discharge letter to the GP, within 24 h."""

    def test_nothing_is_transferred_before_discharge(self, discharge_planned: PathwayHarness) -> None:
        """With only a planned discharge, both transfer steps wait for the finished Encounter."""
        states = [discharge_planned.step(s, pathway_id=TRANSMURAL).business_status
                  for s in ("nursing_handover", "discharge_letter")]

        assert (["waiting-for-condition"] * 2, [], []) == (
            states, discharge_planned.tasks("nursing_handover"), discharge_planned.tasks("discharge_letter"))

    def test_discharge_opens_the_nursing_handover_for_home_care(self, discharged: PathwayHarness) -> None:
        """Home care's Task: code 308292007, requested by the hospital, due 24 hours after discharge."""
        (task,) = discharged.tasks("nursing_handover")

        assert (TRANSFER, "requested", "order", HOME_CARE_ORG, HOSPITAL_ORG, instant(TRANSFER_DUE)) == (
            task["code"]["coding"], task["status"], task["intent"], owner(task), task["requester"]["reference"],
            due(task))

    def test_discharge_opens_the_discharge_letter_for_the_gp(self, discharged: PathwayHarness) -> None:
        """The GP's Task: code 308292007, requested by the hospital, due 24 hours after discharge."""
        (task,) = discharged.tasks("discharge_letter")

        assert (TRANSFER, "requested", GP_ORG, HOSPITAL_ORG, instant(TRANSFER_DUE)) == (
            task["code"]["coding"], task["status"], owner(task), task["requester"]["reference"], due(task))

    def test_both_receivers_get_a_handover_notice_at_discharge(self, discharged: PathwayHarness) -> None:
        """A notified pull: one handover notice to home care and one to the GP, at the discharge moment."""
        assert sorted([(DISCHARGE, "handover", "nursing_handover", HOME_CARE_ORG),
                       (DISCHARGE, "handover", "discharge_letter", GP_ORG)]) == sorted(sent(discharged, "handover"))

    @pytest.mark.parametrize("step", ["nursing_handover", "discharge_letter"])
    def test_the_transfer_carries_the_pzp_agreements(self, discharged: PathwayHarness, step: str) -> None:
        """Each transfer Task references the CPR directive and a summary that says 'niet reanimeren'."""
        (task,) = discharged.tasks(step)

        assert (True, True) == ("Consent/cpr-1" in inputs(task),
                                "<tr><th>Reanimatie</th><td>niet reanimeren</td></tr>" in narrative(discharged, task))

    def test_another_finished_inpatient_encounter_is_not_this_stays_discharge(self, admitted: PathwayHarness) -> None:
        """An ACP conversation recorded during the stay the IKNL way (an ACP-Encounter of class IMP, finished) is
        not the discharge: the transfer steps keep waiting for the admission Encounter itself to finish."""
        admitted.add(admission(start=admitted.now, status="finished", end=admitted.now, resource_id="acp-talk-1"))

        states = [admitted.step(step, pathway_id=TRANSMURAL).state.value
                  for step in ("nursing_handover", "discharge_letter")]
        assert (["pending", "pending"], []) == (states, admitted.tasks("nursing_handover"))

    def test_without_sharing_consent_the_transfer_carries_no_agreements(self, harness: PathwayHarness) -> None:
        """Without the patient's sharing consent the transfer Tasks still go, but with no directives or summary."""
        harness.add(surprise_question(False))
        harness.add(cpr_directive(resuscitate=False))
        harness.add(acp_procedure())
        harness.advance_to(ADMITTED)
        harness.add(stay())
        harness.advance_to(DISCHARGE)
        harness.add(stay(end=DISCHARGE, status="finished"))

        tasks = [task for step in ("nursing_handover", "discharge_letter") for task in harness.tasks(step)]
        assert (2, []) == (len(tasks), [ref for task in tasks for ref in inputs(task)])

    def test_a_late_receiver_is_escalated_accept_hours_after_due(self, discharged: PathwayHarness) -> None:
        """Home care accepts in time; the GP does not, and TOPAT is told ACCEPT_HOURS after the deadline."""
        discharged.advance(hours(6))
        complete(discharged, TRANSMURAL, "nursing_handover")

        discharged.advance_to(LATE + timedelta(hours=12))

        (letter,) = discharged.tasks("discharge_letter")
        assert ([(LATE, "escalation", "discharge_letter", COORDINATOR_ORG)], "escalated") == (
            sent(discharged, "escalation"), letter["businessStatus"]["text"])

    def test_no_escalation_an_instant_before_accept_hours(self, discharged: PathwayHarness) -> None:
        """A minute before the escalation moment, neither late receiver has been escalated."""
        discharged.advance_to(LATE - timedelta(minutes=1))

        assert [] == sent(discharged, "escalation")

    def test_receivers_completing_both_tasks_complete_the_enrolment(self, discharged: PathwayHarness) -> None:
        """Home care and the GP complete their Tasks: the enrolment and its CarePlan are completed."""
        discharged.advance(hours(3))
        complete(discharged, TRANSMURAL, "nursing_handover")
        discharged.advance(hours(5))

        complete(discharged, TRANSMURAL, "discharge_letter")

        enrolment = discharged.enrolment(TRANSMURAL)
        (plan,) = [p for p in discharged.resources("CarePlan") if p["id"] == enrolment.id]
        assert (EnrolmentStatus.COMPLETED, DISCHARGE + timedelta(hours=8), "completed") == (
            enrolment.status, enrolment.ended_at, plan["status"])

    def test_one_receiver_completing_leaves_the_enrolment_active(self, discharged: PathwayHarness) -> None:
        """Only home care has completed: the enrolment stays active."""
        complete(discharged, TRANSMURAL, "nursing_handover")

        assert EnrolmentStatus.ACTIVE == discharged.enrolment(TRANSMURAL).status

    def test_a_readmission_waits_for_its_own_discharge(self, discharged: PathwayHarness) -> None:
        """Readmitted two months on, the transfer waits for the new stay to end, not the old finished one."""
        complete(discharged, TRANSMURAL, "nursing_handover")
        complete(discharged, TRANSMURAL, "discharge_letter")
        discharged.advance(hours(24 * 60))
        readmitted = discharged.now
        result = discharged.add(admission(start=readmitted, resource_id="adm-2"))
        discharged.advance(hours(20))

        discharged.engine.task_status(result.enrolled[0], "start_handover", "completed")

        second = discharged.engine.state(result.enrolled[0])
        assert ("waiting-for-condition", "waiting-for-condition") == (
            second.steps["nursing_handover"].business_status, second.steps["discharge_letter"].business_status)

    def test_death_in_hospital_ends_the_transfer_and_cancels_its_tasks(self, discharge_planned: PathwayHarness) -> None:
        """Maria dies on the ward: the enrolment exits and the ward's open talk Task is cancelled."""
        discharge_planned.advance(hours(2))

        discharge_planned.add(deceased(discharge_planned.now))

        (talk,) = discharge_planned.tasks("discharge_talk")
        assert (EnrolmentStatus.EXITED, "cancelled") == (discharge_planned.enrolment(TRANSMURAL).status,
                                                         talk["status"])
