"""The pathway test kit (``zorgpad.engine.testing``): ExampleAcp driven through simulated months on a frozen
clock, checking exactly which notices go to whom and when."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from example_pathway import ExampleAcp
from zorgpad.engine import ROLE_SYSTEM, EnrolmentStatus, FrozenClock, StepState, days, months, weeks, years
from zorgpad.engine.testing import PathwayHarness, run_pathway

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SCT = "http://snomed.info/sct"
PATIENT = "Patient/p1"
GP_ORG = "Organization/gp-1"
COORDINATOR_ORG = "Organization/coord-1"
OUT_OF_HOURS_ORG = "Organization/ooh-1"

JSON = dict[str, Any]


def patient(*, deceased: bool = False) -> JSON:
    """Patient p1 with GP practice gp-1 (and, when ``deceased``, deceasedBoolean true)."""
    resource: JSON = {"resourceType": "Patient", "id": "p1", "name": [{"text": "Anna de Vries"}],
                      "generalPractitioner": [{"reference": GP_ORG}]}
    if deceased:
        resource["deceasedBoolean"] = True
    return resource


def care_team() -> JSON:
    """p1's CareTeam: coord-1 is the coordinator, ooh-1 the out-of-hours GP post."""
    return {"resourceType": "CareTeam", "id": "team-p1", "status": "active", "subject": {"reference": PATIENT},
            "participant": [
                {"role": [{"coding": [{"system": ROLE_SYSTEM, "code": "coordinator"}]}],
                 "member": {"reference": COORDINATOR_ORG}},
                {"role": [{"coding": [{"system": ROLE_SYSTEM, "code": "out-of-hours"}]}],
                 "member": {"reference": OUT_OF_HOURS_ORG}},
            ]}


def surprise_question(*, answer: bool = False, code: str = "713636003") -> JSON:
    """The Surprise Question recorded for p1: 'would you be surprised…' answered ``answer``."""
    return {"resourceType": "Observation", "id": "sq-1", "status": "final", "subject": {"reference": PATIENT},
            "code": {"coding": [{"system": SCT, "code": code}]}, "valueBoolean": answer}


def acp_recorded() -> JSON:
    """A completed advance care planning Procedure for p1."""
    return {"resourceType": "Procedure", "id": "acp-1", "status": "completed", "subject": {"reference": PATIENT},
            "code": {"coding": [{"system": SCT, "code": "713603004"}]}}


def sharing_consent() -> JSON:
    """p1's active consent to share information."""
    return {"resourceType": "Consent", "id": "share-1", "status": "active", "patient": {"reference": PATIENT},
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": SCT, "code": "425691002"}]}]}


def cpr_consent() -> JSON:
    """p1's do-not-resuscitate directive."""
    return {"resourceType": "Consent", "id": "cpr-1", "status": "active", "patient": {"reference": PATIENT},
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "adr"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "provision": {"code": [{"coding": [{"system": SCT, "code": "89666000"}]}]}}


def sent(harness: PathwayHarness, kind: str | None = None) -> list[tuple[datetime, str, str, str | None]]:
    """``(when, kind, step, recipient)`` of every notice sent."""
    return [(n.at, n.kind, n.step, n.recipient) for n in harness.notices(kind)]


@pytest.fixture
def harness(db_url: str) -> Iterator[PathwayHarness]:
    """A harness on the test database with ExampleAcp 1.0.0 registered, at START."""
    harness = PathwayHarness([ExampleAcp], start=START, database_url=db_url)
    yield harness
    harness.close()


@pytest.fixture
def enrolled(harness: PathwayHarness) -> PathwayHarness:
    """p1, its care team and a 'not surprised' Surprise Question: p1 is enrolled at START."""
    harness.add(patient())
    harness.add(care_team())
    harness.add(surprise_question())
    return harness


@pytest.fixture
def conversation_open(enrolled: PathwayHarness) -> PathwayHarness:
    """The GP completes the register step a day after enrolment; the ACP conversation is due 28 days later."""
    enrolled.advance(days(1))
    enrolled.engine.task_status(enrolled.enrolment().id, "register", "completed")
    return enrolled


CONVERSATION_DUE = START + timedelta(days=1 + 28)


class TestEnrolment:
    """A 'not surprised' Surprise Question enrols the patient; the first Task goes to the GP."""

    def test_the_surprise_question_answered_no_enrols_the_patient(self, harness: PathwayHarness) -> None:
        """Ingesting the Observation (713636003, valueBoolean false) enrols p1 in example-acp 1.0.0."""
        harness.add(patient())
        harness.add(care_team())

        result = harness.add(surprise_question())

        enrolment = harness.enrolment()
        assert [enrolment.id] == result.enrolled
        assert ("example-acp", "1.0.0", PATIENT, START) == (enrolment.pathway_id, enrolment.version,
                                                            enrolment.patient, enrolment.enrolled_at)

    def test_the_first_task_is_the_gps_with_a_week_to_do_it(self, enrolled: PathwayHarness) -> None:
        """The register step is ready, and its Task is owned by the patient's GP with a 7-day deadline."""
        (task,) = enrolled.tasks("register")

        assert StepState.READY == enrolled.step("register").state
        assert ("requested", {"reference": GP_ORG}, "2026-01-12T09:00:00Z") == (
            task["status"], task["owner"], task["restriction"]["period"]["end"])

    @pytest.mark.parametrize("observation", [surprise_question(answer=True),
                                             surprise_question(code="160245001")],
                             ids=["would-be-surprised", "another-code"])
    def test_other_observations_do_not_enrol(self, harness: PathwayHarness, observation: JSON) -> None:
        """'Would be surprised', or an Observation with another code, enrols nobody."""
        harness.add(patient())

        result = harness.add(observation)

        assert [] == result.enrolled
        assert [] == harness.enrolments()

    def test_nothing_is_sent_while_the_first_step_has_no_reminders(self, enrolled: PathwayHarness) -> None:
        """The register step has no reminders: going past its deadline makes it overdue but sends nothing."""
        fired = enrolled.advance(weeks(2))

        assert 1 == fired
        assert "overdue" == enrolled.step("register").business_status
        assert [] == sent(enrolled)


class TestRemindersAndEscalation:
    """The ACP conversation is reminded at due and a week later to the GP, then escalated to the coordinator."""

    def test_the_conversation_is_due_28_days_after_register_is_done(self, conversation_open: PathwayHarness) -> None:
        """Completing register opens the conversation Task with the deadline 28 days on."""
        step = conversation_open.step("conversation")

        assert (StepState.READY, CONVERSATION_DUE) == (step.state, step.due_at)

    def test_the_notices_over_eight_weeks_are_two_reminders_and_one_escalation(
        self, conversation_open: PathwayHarness
    ) -> None:
        """Reminders to the GP at due and due + 1 week; escalation to the coordinator at due + 3 weeks."""
        fired = conversation_open.advance(weeks(8))

        assert 4 == fired
        assert [
            (CONVERSATION_DUE, "reminder", "conversation", GP_ORG),
            (CONVERSATION_DUE + timedelta(weeks=1), "reminder", "conversation", GP_ORG),
            (CONVERSATION_DUE + timedelta(weeks=3), "escalation", "conversation", COORDINATOR_ORG),
        ] == sent(conversation_open)

    def test_each_notice_arrives_exactly_at_its_moment(self, conversation_open: PathwayHarness) -> None:
        """A minute before each moment the notice has not been sent; at the moment it has."""
        h = conversation_open
        seen = []
        for moment in (CONVERSATION_DUE, CONVERSATION_DUE + timedelta(weeks=1),
                       CONVERSATION_DUE + timedelta(weeks=3)):
            h.advance_to(moment - timedelta(minutes=1))
            before = len(h.notices())
            h.advance_to(moment)
            seen.append((before, len(h.notices()), h.step("conversation").business_status))

        assert [(0, 1, "overdue"), (1, 2, "overdue"), (2, 3, "escalated")] == seen

    def test_the_notice_text_names_the_step_the_patient_and_the_deadline(
        self, conversation_open: PathwayHarness
    ) -> None:
        """The first reminder is about the conversation Task and says what is overdue since when."""
        conversation_open.advance_to(CONVERSATION_DUE)

        (notice,) = conversation_open.notices("reminder")

        (task,) = conversation_open.tasks("conversation")
        assert f"Task/{task['id']}" == notice.task
        assert [] == [part for part in ("Hold the ACP conversation", "Anna de Vries", "2026-02-03T09:00:00Z")
                      if part not in notice.text]

    def test_recording_the_conversation_stops_further_notices(self, conversation_open: PathwayHarness) -> None:
        """Once the ACP Procedure is recorded (after the first reminder) no reminder or escalation follows."""
        conversation_open.advance_to(CONVERSATION_DUE + timedelta(days=2))
        conversation_open.add(acp_recorded())

        conversation_open.advance(months(2))

        assert [(CONVERSATION_DUE, "reminder", "conversation", GP_ORG)] == sent(conversation_open)
        assert StepState.COMPLETED == conversation_open.step("conversation").state

    def test_notices_are_delivered_through_the_outbox(self, conversation_open: PathwayHarness) -> None:
        """Each notice is an outbox row; delivering marks its Communication completed."""
        conversation_open.advance(weeks(8))

        report = conversation_open.deliver()

        notify = [o for o in conversation_open.outbox() if o.channel == "notify"]
        assert (3, ["delivered"] * 3) == (len(notify), [o.status for o in notify])
        assert 4 == report.delivered  # the three notices and the register step's action
        assert ["completed"] * 3 == [c["status"] for c in conversation_open.resources("Communication")]


class TestHandover:
    """``share`` waits for the sharing Consent, then hands over to the out-of-hours GP post."""

    def test_share_waits_for_the_sharing_consent(self, conversation_open: PathwayHarness) -> None:
        """With the conversation recorded but no sharing Consent, share stays pending with no Task, for weeks."""
        conversation_open.add(cpr_consent())
        conversation_open.add(acp_recorded())

        conversation_open.advance(weeks(6))

        step = conversation_open.step("share")
        assert (StepState.PENDING, "waiting-for-condition") == (step.state, step.business_status)
        assert [] == conversation_open.tasks("share")

    def test_the_sharing_consent_opens_a_handover_task_at_the_out_of_hours_post(
        self, conversation_open: PathwayHarness
    ) -> None:
        """The Consent opens a Task owned by ooh-1, requested by the GP, carrying the CPR Consent as input."""
        conversation_open.add(cpr_consent())
        conversation_open.add(acp_recorded())
        conversation_open.advance(weeks(1))
        opened_at = conversation_open.now

        conversation_open.add(sharing_consent())

        (task,) = conversation_open.tasks("share")
        assert StepState.READY == conversation_open.step("share").state
        assert {
            "status": "requested",
            "owner": {"reference": OUT_OF_HOURS_ORG},
            "requester": {"reference": GP_ORG},
            "input": [{"type": {"text": "content"}, "valueReference": {"reference": "Consent/cpr-1"}}],
            "authoredOn": opened_at.isoformat().replace("+00:00", "Z"),
        } == {k: task.get(k) for k in ("status", "owner", "requester", "input", "authoredOn")}
        assert [(opened_at, "handover", "share", OUT_OF_HOURS_ORG)] == sent(conversation_open, "handover")

    def test_a_consent_given_earlier_opens_share_when_the_conversation_is_done(
        self, conversation_open: PathwayHarness
    ) -> None:
        """A sharing Consent recorded before the conversation lets share start the moment it completes."""
        conversation_open.add(sharing_consent())
        conversation_open.add(cpr_consent())
        conversation_open.advance(days(3))

        conversation_open.add(acp_recorded())

        (task,) = conversation_open.tasks("share")
        assert ("2026-01-09T09:00:00Z", {"reference": OUT_OF_HOURS_ORG}) == (task["authoredOn"], task["owner"])

    def test_an_unanswered_handover_is_escalated_a_day_after_its_deadline(
        self, conversation_open: PathwayHarness
    ) -> None:
        """share is due in 2 days and escalates to the coordinator one day after that."""
        conversation_open.add(sharing_consent())
        conversation_open.add(acp_recorded())
        opened_at = conversation_open.now

        conversation_open.advance(weeks(1))

        assert [(opened_at + timedelta(days=3), "escalation", "share", COORDINATOR_ORG)] == sent(
            conversation_open, "escalation")


class TestRepeatingReview:
    """The review step starts three months after the conversation and recurs every three months."""

    def test_review_recurs_every_three_months(self, conversation_open: PathwayHarness) -> None:
        """Round 0 opens 3 months after the conversation; each completion schedules the next 3 months on."""
        h = conversation_open
        done_at = h.now
        h.add(acp_recorded())
        authored = []
        for _ in range(3):
            h.advance_to(h.step("review").start_at)
            (current,) = [t for t in h.tasks("review") if t["status"] == "requested"]
            authored.append(current["authoredOn"])
            h.advance(days(5))
            h.engine.task_status(h.enrolment().id, "review", "completed")

        expected = [months(3).after(done_at),
                    months(3).after(months(3).after(done_at) + timedelta(days=5)),
                    months(3).after(months(3).after(months(3).after(done_at) + timedelta(days=5))
                                    + timedelta(days=5))]
        assert [e.isoformat().replace("+00:00", "Z") for e in expected] == authored
        assert (3, 3, StepState.PENDING) == (h.step("review").iteration, h.step("review").completions,
                                             h.step("review").state)

    def test_review_is_scheduled_not_open_before_three_months(self, conversation_open: PathwayHarness) -> None:
        """A day before the three months are up there is no review Task yet."""
        conversation_open.add(acp_recorded())
        start_at = conversation_open.step("review").start_at

        conversation_open.advance_to(start_at - timedelta(days=1))

        assert ("scheduled", []) == (conversation_open.step("review").business_status,
                                     conversation_open.tasks("review"))


class TestDeath:
    """The patient's death ends the enrolment and cancels every open Task."""

    def test_death_cancels_the_open_tasks_and_tells_their_owners(self, conversation_open: PathwayHarness) -> None:
        """Death cancels the open conversation Task and tells the GP; the completed register Task stays."""
        h = conversation_open
        h.add(sharing_consent())
        h.add(cpr_consent())
        h.advance(days(2))
        died_at = h.now

        h.add(patient(deceased=True))

        assert (EnrolmentStatus.EXITED, died_at) == (h.enrolment().status, h.enrolment().ended_at)
        assert {"register": "completed", "conversation": "cancelled"} == {
            step: h.tasks(step)[0]["status"] for step in ("register", "conversation")}
        assert [(died_at, "cancelled", "conversation", GP_ORG)] == sent(h, "cancelled")

    def test_death_after_the_handover_cancels_the_handover_task_too(self, conversation_open: PathwayHarness) -> None:
        """An open handover Task at the out-of-hours post is cancelled, and ooh-1 is told."""
        h = conversation_open
        h.add(sharing_consent())
        h.add(cpr_consent())
        h.add(acp_recorded())
        h.advance(days(1))
        died_at = h.now

        h.add(patient(deceased=True))

        assert "cancelled" == h.tasks("share")[0]["status"]
        assert [(died_at, "cancelled", "share", OUT_OF_HOURS_ORG)] == sent(h, "cancelled")
        assert StepState.CANCELLED == h.step("review").state

    def test_nothing_happens_after_death(self, conversation_open: PathwayHarness) -> None:
        """After death no timer is left: a year passes without firing or sending anything."""
        h = conversation_open
        h.add(patient(deceased=True))
        before = sent(h)

        fired = h.advance(years(1))

        assert (0, before) == (fired, sent(h))


class TestClock:
    """The harness clock only moves forward, and moving it never sleeps."""

    def test_frozen_clock_refuses_to_go_backwards(self) -> None:
        """``advance`` with a negative delta raises ValueError and leaves the time as it was."""
        clock = FrozenClock(START)

        with pytest.raises(ValueError, match="only moves forward"):
            clock.advance(timedelta(seconds=-1))

        assert START == clock.now()

    def test_frozen_clock_cannot_be_set_into_its_past(self) -> None:
        """``set`` to an earlier moment raises ValueError."""
        clock = FrozenClock(START)

        with pytest.raises(ValueError, match="only moves forward"):
            clock.set(START - timedelta(microseconds=1))

        assert START == clock.now()

    def test_frozen_clock_moves_forward_exactly(self) -> None:
        """``advance`` returns and keeps the new time; naive starts are taken as UTC."""
        clock = FrozenClock(datetime(2026, 1, 5, 9, 0))

        actual = clock.advance(timedelta(days=3))

        assert (START + timedelta(days=3), START + timedelta(days=3)) == (actual, clock.now())

    def test_the_harness_cannot_travel_back(self, enrolled: PathwayHarness) -> None:
        """``advance_to`` an earlier moment raises ValueError."""
        enrolled.advance(weeks(1))

        with pytest.raises(ValueError, match="only moves forward"):
            enrolled.advance_to(START)

    def test_a_simulated_year_never_sleeps(self, conversation_open: PathwayHarness,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        """Advancing a year fires every timer on the way without a single call to ``time.sleep``."""
        def no_sleep(seconds: float) -> None:
            raise AssertionError(f"time.sleep({seconds}) called while simulating time")

        monkeypatch.setattr(time, "sleep", no_sleep)

        fired = conversation_open.advance(years(1))

        assert START + timedelta(days=1) + timedelta(days=365) == conversation_open.now
        assert 4 == fired


class TestRunPathway:
    """``run_pathway`` feeds a timeline of resources and returns the harness to inspect."""

    def test_a_timeline_enrols_by_criteria_and_death_ends_it(self) -> None:
        """SQ on day 1 enrols; the overdue register step is cancelled at death in week 3, and the GP is told."""
        harness = run_pathway(ExampleAcp, start=START, until=months(2), timeline=[
            (timedelta(0), patient()),
            (timedelta(0), care_team()),
            (days(1), surprise_question()),
            (weeks(3), patient(deceased=True)),
        ])
        try:
            enrolment = harness.enrolment()

            assert (START + timedelta(days=1), EnrolmentStatus.EXITED, START + timedelta(weeks=3)) == (
                enrolment.enrolled_at, enrolment.status, enrolment.ended_at)
            assert [(START + timedelta(weeks=3), "cancelled", "register", GP_ORG)] == sent(harness)
            assert months(2).after(START) == harness.now
        finally:
            harness.close()

    def test_enrol_enrols_explicitly_at_the_start(self) -> None:
        """With ``enrol=`` the patient is enrolled at start, after the resources due then, without criteria."""
        harness = run_pathway(ExampleAcp, start=START, until=days(8), enrol=PATIENT,
                              timeline=[(timedelta(0), patient()), (timedelta(0), care_team())])
        try:
            enrolment = harness.enrolment()

            assert (START, {"reference": GP_ORG}) == (enrolment.enrolled_at, harness.tasks("register")[0]["owner"])
            assert "overdue" == harness.step("register").business_status
        finally:
            harness.close()

    def test_timeline_moments_may_be_absolute_and_out_of_order(self) -> None:
        """Datetimes are absolute moments; the timeline is sorted before it is fed."""
        harness = run_pathway(ExampleAcp, start=START, until=weeks(1), timeline=[
            (START + timedelta(days=2), surprise_question()),
            (timedelta(0), patient()),
        ])
        try:
            actual = harness.enrolment().enrolled_at

            assert START + timedelta(days=2) == actual
        finally:
            harness.close()
