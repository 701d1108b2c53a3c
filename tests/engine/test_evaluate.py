"""Pure evaluation: (pathway, state, event, now) -> Outcome(new state, commands), with no I/O and no clock."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from example_pathway import ExampleAcp, ExampleAcpV2
from zorgpad.engine import (
    COORDINATOR,
    GP,
    HOME_CARE,
    Coding,
    Command,
    Criterion,
    Enrol,
    EnrolmentStatus,
    Escalation,
    Event,
    IllegalTransitionError,
    InvalidPathwayError,
    NotEnrolledError,
    NoticeKind,
    Outcome,
    Pathway,
    Reminder,
    ResourceChanged,
    Step,
    StepOverride,
    StepRun,
    StepState,
    TaskStatusChanged,
    TimerFired,
    TimerKind,
    Withdraw,
    days,
    defn,
    evaluate,
    months,
    new_enrolment,
    weeks,
)
from zorgpad.engine._model import (
    CancelTimers,
    EndEnrolment,
    Notify,
    OpenTask,
    RunAction,
    ScheduleTimer,
    UpdateTask,
)

SCT = "http://snomed.info/sct"
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(days=2)  # register completed
T2 = T1 + timedelta(days=10)  # conversation completed

ACP_PROCEDURE = {
    "resourceType": "Procedure",
    "id": "acp-1",
    "status": "completed",
    "code": {"coding": [{"system": SCT, "code": "713603004"}]},
}
SHARING = {
    "resourceType": "Consent",
    "id": "share-1",
    "status": "active",
    "category": [{"coding": [{"system": SCT, "code": "425691002"}]}],
}
DEATH = {"resourceType": "Patient", "id": "p1", "deceasedBoolean": True}

ACP_RECORDED = ResourceChanged(ACP_PROCEDURE, frozenset({"acp-recorded"}))
SHARING_GIVEN = ResourceChanged(SHARING, frozenset({"sharing-consent"}))
DIED = ResourceChanged(DEATH, frozenset({"deceased"}))

#: No commands at all (lower case: ruff reads an upper-case name on the left of == as a Yoda condition).
no_commands: tuple[Command, ...] = ()

GUARD = Criterion("guard", "Consent", code=Coding(SCT, "425691002"), path="category")
GUARD_MET = ResourceChanged(SHARING, frozenset({"guard"}))


@defn(id="deadlines", version="1.0.0")
class Deadlines(Pathway):
    """Two steps that start at once: one with reminders and an escalation, one with a due date only."""

    visit = Step(
        "Home visit",
        owner=GP,
        due=days(7),
        remind=Reminder(every=days(2), times=2, first=days(1)),
        escalate=Escalation(after=days(5), to=COORDINATOR),
    )
    call = Step("Phone call", owner=HOME_CARE, due=days(3))


@defn(id="nagging", version="1.0.0")
class Nagging(Pathway):
    """One step reminded weekly, four times, from its due moment on."""

    talk = Step(
        "Talk",
        owner=GP,
        due=days(7),
        remind=Reminder(every=weeks(1), times=4),
        escalate=Escalation(after=weeks(6), to=COORDINATOR),
    )


@defn(id="skipping", version="1.0.0")
class Skipping(Pathway):
    """A guarded step that is skipped when its guard does not hold, and a step after it."""

    first = Step("First", owner=GP)
    guarded = Step("Guarded", owner=GP, after=first, only_if=GUARD, otherwise="skip")
    last = Step("Last", owner=GP, after=guarded)


@defn(id="two-steps", version="1.0.0")
class TwoSteps(Pathway):
    """Two plain steps in a row."""

    first = Step("First", owner=GP)
    second = Step("Second", owner=GP, after=first)


C = TypeVar("C")


class Story:
    """One enrolment moved through events, keeping the latest state."""

    def __init__(
        self,
        pathway: type[Pathway] = ExampleAcp,
        facts: dict[str, dict[str, datetime]] | None = None,
        now: datetime = T0,
    ) -> None:
        self.pathway = pathway
        self.state = new_enrolment(pathway, "enr-1", "Patient/p1", now)
        self.enrolled = self.at(now, Enrol(facts or {}))

    def at(self, now: datetime, event: Event) -> Outcome:
        """Evaluate ``event`` at ``now`` and keep the new state."""
        outcome = evaluate(self.pathway, self.state, event, now)
        self.state = outcome.state
        return outcome

    def run(self, step_id: str) -> StepRun:
        """The state of one step."""
        return self.state.steps[step_id]

    def states(self) -> dict[str, StepState]:
        """Every step's state, by id."""
        return {step_id: run.state for step_id, run in self.state.steps.items()}


def commands_of(outcome: Outcome, kind: type[C]) -> list[C]:
    """The commands of one type, in order."""
    return [c for c in outcome.commands if isinstance(c, kind)]


def conversation_open() -> Story:
    """ExampleAcp with register completed at T1, so the conversation is open."""
    story = Story()
    story.at(T1, TaskStatusChanged("register", "completed"))
    return story


def conversation_done() -> Story:
    """ExampleAcp with the conversation completed at T2 by a recorded ACP Procedure."""
    story = conversation_open()
    story.at(T2, ACP_RECORDED)
    return story


class TestDeterminism:
    """Evaluation is a pure function of its inputs."""

    SCRIPT: tuple[tuple[datetime, Event], ...] = (
        (T1, TaskStatusChanged("register", "completed")),
        (T1 + timedelta(days=28), TimerFired(TimerKind.DUE, "conversation", 0)),
        (T1 + timedelta(days=28), TimerFired(TimerKind.REMIND, "conversation", 0, 0)),
        (T2 + timedelta(days=30), ACP_RECORDED),
        (T2 + timedelta(days=31), SHARING_GIVEN),
        (T2 + timedelta(days=32), TaskStatusChanged("share", "rejected", "no out-of-hours post")),
    )

    def replay(self) -> list[Outcome]:
        """Every outcome of the script, from a fresh enrolment."""
        story = Story()
        return [story.enrolled] + [story.at(now, event) for now, event in self.SCRIPT]

    def test_the_same_events_at_the_same_times_give_equal_outcomes(self) -> None:
        """Replaying an enrolment's history gives the same states and commands."""
        first = self.replay()

        second = self.replay()

        assert first == second

    @pytest.mark.parametrize(
        "event",
        [
            TaskStatusChanged("conversation", "in-progress"),
            TaskStatusChanged("conversation", "rejected"),
            ACP_RECORDED,
            DIED,
            TimerFired(TimerKind.REMIND, "conversation", 0, 0),
            TimerFired(TimerKind.ESCALATE, "conversation", 0),
            StepOverride("review", "skip", "not needed"),
            Withdraw("patient moved away"),
        ],
        ids=lambda e: type(e).__name__,
    )
    def test_the_input_state_is_not_changed(self, event: Event) -> None:
        """Evaluation works on a copy; the caller's state stays as it was."""
        state = conversation_open().state
        before = copy.deepcopy(state)

        outcome = evaluate(ExampleAcp, state, event, T2)

        assert before == state
        assert outcome.state is not state

    def test_the_facts_of_an_enrol_event_are_copied_not_shared(self) -> None:
        """Changing the enrolment's facts later does not change the event's mapping."""
        facts = {"acp-recorded": {"Procedure/acp-1": T0}}
        state = evaluate(ExampleAcp, new_enrolment(ExampleAcp, "e", "Patient/p1", T0), Enrol(facts), T0).state

        evaluate(ExampleAcp, state, ResourceChanged(ACP_PROCEDURE, frozenset()), T1)

        expected = {"acp-recorded": {"Procedure/acp-1": T0}}
        assert expected == facts

    def test_evaluating_with_another_version_of_the_pathway_is_refused(self) -> None:
        """An enrolment stays on the url|version it started with."""
        state = Story().state

        with pytest.raises(
            ValueError,
            match=r"^enrolment enr-1 is on example-acp\|1\.0\.0, "
            r"not example-acp\|1\.1\.0$",
        ):
            evaluate(ExampleAcpV2, state, TimerFired(TimerKind.DUE, "register", 0), T1)


class TestEnrol:
    """Enrolling opens the steps that have no predecessors."""

    def test_a_new_enrolment_has_every_step_pending_with_its_owner_role(self) -> None:
        """new_enrolment is the state before Enrol; a handover step belongs to its receiver."""
        state = new_enrolment(ExampleAcp, "enr-1", "Patient/p1", T0)

        expected = {
            "register": (StepState.PENDING, "gp"),
            "conversation": (StepState.PENDING, "gp"),
            "share": (StepState.PENDING, "out-of-hours"),
            "review": (StepState.PENDING, "gp"),
        }
        assert expected == {k: (v.state, v.owner_role) for k, v in state.steps.items()}

    def test_the_first_step_is_opened_with_its_due_timer_and_action(self) -> None:
        """Register is the only step without predecessors: it becomes ready with a Task due in 7 days."""
        story = Story()

        due = T0 + timedelta(days=7)
        expected = (
            CancelTimers("register"),
            ScheduleTimer(TimerKind.DUE, "register", 0, due),
            OpenTask("register", 0, "gp", None, due),
            RunAction("register", 0),
        )
        assert expected == story.enrolled.commands
        assert StepState.READY is story.run("register").state
        assert (T0, due) == (story.run("register").ready_at, story.run("register").due_at)

    def test_steps_after_the_first_stay_pending(self) -> None:
        """Steps with predecessors wait."""
        story = Story()

        expected = {
            "register": StepState.READY,
            "conversation": StepState.PENDING,
            "share": StepState.PENDING,
            "review": StepState.PENDING,
        }
        assert expected == story.states()

    def test_every_step_without_predecessors_opens_with_due_remind_and_escalate_timers(self) -> None:
        """Reminders count from the due moment (first after 1 day), and so does the escalation (after 5)."""
        story = Story(Deadlines)

        visit_due, call_due = T0 + timedelta(days=7), T0 + timedelta(days=3)
        expected = (
            CancelTimers("visit"),
            ScheduleTimer(TimerKind.DUE, "visit", 0, visit_due),
            ScheduleTimer(TimerKind.REMIND, "visit", 0, visit_due + timedelta(days=1), seq=0),
            ScheduleTimer(TimerKind.ESCALATE, "visit", 0, visit_due + timedelta(days=5)),
            OpenTask("visit", 0, "gp", None, visit_due),
            CancelTimers("call"),
            ScheduleTimer(TimerKind.DUE, "call", 0, call_due),
            OpenTask("call", 0, "home-care", None, call_due),
        )
        assert expected == story.enrolled.commands

    def test_an_exit_fact_known_at_enrolment_ends_it_at_once(self) -> None:
        """A patient already deceased is not enrolled: no Task is opened."""
        story = Story(facts={"deceased": {"Patient/p1": T0}})

        expected = (CancelTimers(None), EndEnrolment(EnrolmentStatus.EXITED, "exit criterion deceased was already met"))
        assert expected == story.enrolled.commands
        assert EnrolmentStatus.EXITED is story.state.status

    def test_a_done_fact_known_at_enrolment_completes_its_step_as_soon_as_it_opens(self) -> None:
        """An ACP Procedure recorded before enrolment completes the conversation when it would start."""
        story = Story(facts={"acp-recorded": {"Procedure/acp-1": T0}})

        story.at(T1, TaskStatusChanged("register", "completed"))

        run = story.run("conversation")
        expected = (StepState.COMPLETED, "Procedure/acp-1 was already recorded", T1)
        assert expected == (run.state, run.reason, run.completed_at)


class TestSteps:
    """A completed step starts the ones after it."""

    def test_completing_the_first_step_opens_the_next_with_all_its_timers(self) -> None:
        """The conversation is due 28 days after it opens, reminded from then, escalated 3 weeks later."""
        story = Story()

        outcome = story.at(T1, TaskStatusChanged("register", "completed"))

        due = T1 + timedelta(days=28)
        expected = (
            CancelTimers("register"),
            UpdateTask("register", 0, "completed"),
            CancelTimers("conversation"),
            ScheduleTimer(TimerKind.DUE, "conversation", 0, due),
            ScheduleTimer(TimerKind.REMIND, "conversation", 0, due, seq=0),
            ScheduleTimer(TimerKind.ESCALATE, "conversation", 0, due + timedelta(weeks=3)),
            OpenTask("conversation", 0, "gp", None, due),
        )
        assert expected == outcome.commands

    def test_a_matching_resource_completes_the_step_it_is_done_when(self) -> None:
        """done_when=ACP_RECORDED: the Procedure completes the open conversation."""
        story = conversation_open()

        outcome = story.at(T2, ACP_RECORDED)

        run = story.run("conversation")
        expected = (StepState.COMPLETED, 1, T2, "Procedure/acp-1 recorded")
        assert expected == (run.state, run.completions, run.completed_at, run.reason)
        assert UpdateTask("conversation", 0, "completed", reason="Procedure/acp-1 recorded") in outcome.commands
        assert CancelTimers("conversation") in outcome.commands

    def test_a_matching_resource_before_the_step_opens_does_not_complete_it_yet(self) -> None:
        """A pending step is not completed by its done_when; the fact is kept for later."""
        story = Story()

        story.at(T1, ACP_RECORDED)

        expected = {"Procedure/acp-1": T1}
        assert StepState.PENDING is story.run("conversation").state
        assert expected == story.state.facts["acp-recorded"]

    def test_a_resource_that_stops_matching_is_forgotten(self) -> None:
        """An update that no longer meets a criterion removes the fact."""
        story = Story()
        story.at(T1, ACP_RECORDED)

        story.at(T2, ResourceChanged(ACP_PROCEDURE, frozenset()))

        assert "acp-recorded" not in story.state.facts

    def test_a_resource_meeting_no_criterion_of_an_open_step_changes_nothing_for_it(self) -> None:
        """Only the criteria named in matched count."""
        story = conversation_open()

        story.at(T2, ResourceChanged({"resourceType": "Procedure", "id": "other"}, frozenset()))

        assert StepState.READY is story.run("conversation").state

    def test_an_offset_step_is_scheduled_with_a_start_timer(self) -> None:
        """Review starts 3 calendar months after the conversation completes."""
        story = conversation_open()

        outcome = story.at(T2, ACP_RECORDED)

        start = months(3).after(T2)
        run = story.run("review")
        assert ScheduleTimer(TimerKind.START, "review", 0, start) in outcome.commands
        assert (StepState.PENDING, start, "scheduled") == (run.state, run.start_at, run.business_status)
        assert no_commands == tuple(c for c in commands_of(outcome, OpenTask) if c.step_id == "review")

    def test_the_start_timer_opens_the_offset_step(self) -> None:
        """When the START timer fires the review's Task is opened, due 14 days later."""
        story = conversation_done()
        start = months(3).after(T2)

        outcome = story.at(start, TimerFired(TimerKind.START, "review", 0))

        expected = [OpenTask("review", 0, "gp", None, start + timedelta(days=14))]
        assert expected == commands_of(outcome, OpenTask)
        assert StepState.READY is story.run("review").state

    def test_a_start_timer_that_fires_early_does_not_open_the_step(self) -> None:
        """The step starts at its start moment, not at any START timer."""
        story = conversation_done()

        outcome = story.at(T2 + timedelta(days=1), TimerFired(TimerKind.START, "review", 0))

        assert no_commands == outcome.commands
        assert StepState.PENDING is story.run("review").state


class TestOnlyIf:
    """A guarded step waits for (or is skipped without) the fact its only_if names."""

    def test_a_guarded_step_waits_for_its_condition(self) -> None:
        """Without a sharing consent the share step stays pending and says why."""
        story = conversation_done()

        run = story.run("share")
        expected = (StepState.PENDING, "waiting-for-condition")
        assert expected == (run.state, run.business_status)

    def test_the_fact_arriving_opens_the_waiting_step_as_a_handover(self) -> None:
        """The consent opens a Task for the out-of-hours post, requested by the GP, with a handover notice."""
        story = conversation_done()
        now = T2 + timedelta(days=3)

        outcome = story.at(now, SHARING_GIVEN)

        due = now + timedelta(days=2)
        assert StepState.READY is story.run("share").state
        assert [OpenTask("share", 0, "out-of-hours", "gp", due)] == commands_of(outcome, OpenTask)
        assert [Notify(NoticeKind.HANDOVER, "share", 0, "out-of-hours")] == commands_of(outcome, Notify)

    def test_a_fact_known_before_the_step_may_start_opens_it_right_away(self) -> None:
        """A consent recorded early lets share start as soon as the conversation is done."""
        story = conversation_open()
        story.at(T1 + timedelta(days=1), SHARING_GIVEN)

        story.at(T2, ACP_RECORDED)

        assert StepState.READY is story.run("share").state

    def test_otherwise_skip_skips_the_step_and_lets_the_next_start(self) -> None:
        """With otherwise='skip' the guarded step is skipped and the step after it opens."""
        story = Story(Skipping)

        outcome = story.at(T1, TaskStatusChanged("first", "completed"))

        expected = {"first": StepState.COMPLETED, "guarded": StepState.SKIPPED, "last": StepState.READY}
        assert expected == story.states()
        assert story.run("guarded").reason == "only_if guard was not met"
        assert [OpenTask("last", 0, "gp", None, None)] == commands_of(outcome, OpenTask)

    def test_otherwise_skip_opens_the_step_when_its_condition_holds(self) -> None:
        """The guard holding at start opens the step normally."""
        story = Story(Skipping)
        story.at(T0, GUARD_MET)

        story.at(T1, TaskStatusChanged("first", "completed"))

        expected = {"first": StepState.COMPLETED, "guarded": StepState.READY, "last": StepState.PENDING}
        assert expected == story.states()


class TestRepeat:
    """A repeating step goes round again after it is completed."""

    def started_review(self) -> tuple[Story, datetime]:
        """ExampleAcp with the first review round open; returns the story and the round's start."""
        story = conversation_done()
        start = months(3).after(T2)
        story.at(start, TimerFired(TimerKind.START, "review", 0))
        return story, start

    def test_completing_a_repeating_step_schedules_the_next_round(self) -> None:
        """The next iteration starts 3 months after this one was completed."""
        story, start = self.started_review()
        done = start + timedelta(days=5)

        outcome = story.at(done, TaskStatusChanged("review", "completed"))

        run = story.run("review")
        next_start = months(3).after(done)
        assert (StepState.PENDING, 1, 1, next_start) == (run.state, run.iteration, run.completions, run.start_at)
        assert UpdateTask("review", 0, "completed") in outcome.commands
        assert ScheduleTimer(TimerKind.START, "review", 1, next_start) in outcome.commands

    def test_a_stale_timer_of_an_earlier_round_changes_nothing(self) -> None:
        """The first round's DUE timer, firing after the round was completed, is ignored."""
        story, start = self.started_review()
        story.at(start + timedelta(days=5), TaskStatusChanged("review", "completed"))
        before = story.state

        outcome = story.at(start + timedelta(days=14), TimerFired(TimerKind.DUE, "review", 0))

        assert no_commands == outcome.commands
        assert before == outcome.state

    def test_the_next_round_opens_a_task_of_the_next_iteration(self) -> None:
        """Iteration 1 gets its own Task and due timer."""
        story, start = self.started_review()
        done = start + timedelta(days=5)
        story.at(done, TaskStatusChanged("review", "completed"))
        next_start = months(3).after(done)

        outcome = story.at(next_start, TimerFired(TimerKind.START, "review", 1))

        expected = [OpenTask("review", 1, "gp", None, next_start + timedelta(days=14))]
        assert expected == commands_of(outcome, OpenTask)
        assert ScheduleTimer(TimerKind.DUE, "review", 1, next_start + timedelta(days=14)) in outcome.commands

    def test_a_repeating_step_counts_as_done_for_its_successors_between_rounds(self) -> None:
        """A repeating predecessor back in pending still lets later steps start (completions > 0)."""
        story, start = self.started_review()

        story.at(start + timedelta(days=5), TaskStatusChanged("review", "completed"))

        assert StepState.PENDING is story.run("review").state
        assert EnrolmentStatus.ACTIVE is story.state.status


NOT_READY = Criterion("not-ready", "Procedure", code=Coding(SCT, "713603004"), status="not-done")
NOT_READY_AGAIN = ResourceChanged({**ACP_PROCEDURE, "id": "acp-2", "status": "not-done"}, frozenset({"not-ready"}))
HELD = Criterion("acp-recorded", "Procedure", code=Coding(SCT, "713603004"), status="completed")


@defn(id="offering", version="1.0.0")
class Offering(Pathway):
    """A conversation offered every 3 months until it is held."""

    offer = Step("Offer the conversation", owner=GP, due=days(14), repeat=months(3), until=HELD,
                 done_when=HELD | NOT_READY)


class TestUntil:
    """A repeating step with until= stops repeating once a resource meets it."""

    def test_a_round_completed_while_until_does_not_hold_is_repeated(self) -> None:
        """'Not ready' completes the round and plans the next one 3 months later."""
        story = Story(Offering)
        done = T0 + timedelta(days=3)

        story.at(done, NOT_READY_AGAIN)

        run = story.run("offer")
        assert (StepState.PENDING, 1, months(3).after(done)) == (run.state, run.iteration, run.start_at)

    def test_a_round_completed_by_the_until_criterion_is_the_last(self) -> None:
        """The conversation held completes the round; no next round is planned and the enrolment is done."""
        story = Story(Offering)

        outcome = story.at(T0 + timedelta(days=3), ACP_RECORDED)

        assert (StepState.COMPLETED, EnrolmentStatus.COMPLETED, []) == (
            story.run("offer").state, story.state.status,
            [c for c in commands_of(outcome, ScheduleTimer) if c.kind is TimerKind.START])

    def test_a_planned_round_is_skipped_as_soon_as_until_holds(self) -> None:
        """Held between rounds: the planned round is skipped at once and its start timer cancelled."""
        story = Story(Offering)
        story.at(T0 + timedelta(days=3), NOT_READY_AGAIN)

        outcome = story.at(T0 + timedelta(days=30), ACP_RECORDED)

        assert (StepState.SKIPPED, "until acp-recorded was met", True, []) == (
            story.run("offer").state, story.run("offer").reason, CancelTimers("offer") in outcome.commands,
            commands_of(outcome, OpenTask))

    def test_the_first_round_is_skipped_when_until_already_holds(self) -> None:
        """The conversation was held before the enrolment: the step is not applicable and opens no Task."""
        story = Story(Offering, facts={"acp-recorded": {"Procedure/acp-1": T0}})

        assert (StepState.SKIPPED, [], EnrolmentStatus.COMPLETED) == (
            story.run("offer").state, commands_of(story.enrolled, OpenTask), story.state.status)

    def test_until_without_repeat_is_refused(self) -> None:
        """until= says when repeating stops, so a step that does not repeat cannot have it."""
        with pytest.raises(InvalidPathwayError) as refused:
            @defn(id="no-repeat", version="1.0.0")
            class NoRepeat(Pathway):
                """until without repeat."""

                offer = Step("Offer", owner=GP, until=HELD)

        assert "step 'offer' has until= but no repeat= (until says when repeating stops)" in str(refused.value)


class TestInheritedVersion:
    """A new version declared as a subclass keeps the old steps, replaces overridden ones, adds new ones."""

    def test_the_subclass_has_the_old_steps_in_order_with_overrides_and_additions(self) -> None:
        """Replaced steps keep their place, new steps come last, and the old version is unchanged."""
        @defn(id="two-steps", version="2.0.0")
        class TwoStepsV2(TwoSteps):
            """Two plain steps in a row, the second sooner, and a third."""

            second = Step("Second, within a week", owner=GP, after=TwoSteps.first, due=days(7))
            third = Step("Third", owner=GP, after=second)

        assert ([("first", "First"), ("second", "Second, within a week"), ("third", "Third")],
                [("first", "First"), ("second", "Second")], True) == (
            [(s.id, s.title) for s in TwoStepsV2.steps], [(s.id, s.title) for s in TwoSteps.steps],
            TwoStepsV2.step("first") is TwoSteps.step("first"))

    def test_a_step_after_a_replaced_step_must_be_declared_again(self) -> None:
        """Replacing 'first' leaves the inherited 'second' pointing at the old one: refused, naming it."""
        with pytest.raises(InvalidPathwayError) as refused:
            @defn(id="two-steps", version="3.0.0")
            class Broken(TwoSteps):
                """First replaced, second not."""

                first = Step("First, again", owner=GP)

        assert "step 'second' has after='first', which is not a step of Broken" in str(refused.value)


class TestReminders:
    """Reminders go to the owner at their offsets from the due moment, never in a burst."""

    def test_a_reminder_notifies_the_owner_and_schedules_the_next_one(self) -> None:
        """The first reminder (at due) is sent and the second planned a week later."""
        story = conversation_open()
        due = T1 + timedelta(days=28)

        outcome = story.at(due, TimerFired(TimerKind.REMIND, "conversation", 0, 0))

        expected = (
            Notify(NoticeKind.REMINDER, "conversation", 0, "gp", seq=0),
            ScheduleTimer(TimerKind.REMIND, "conversation", 0, due + timedelta(weeks=1), seq=1),
        )
        assert expected == outcome.commands
        assert story.run("conversation").reminders_sent == 1

    def test_the_last_reminder_schedules_no_further_one(self) -> None:
        """After reminder seq 1 of 2 nothing more is planned."""
        story = conversation_open()
        due = T1 + timedelta(days=28)

        outcome = story.at(due + timedelta(weeks=1), TimerFired(TimerKind.REMIND, "conversation", 0, 1))

        expected = (Notify(NoticeKind.REMINDER, "conversation", 0, "gp", seq=1),)
        assert expected == outcome.commands

    def test_missed_reminders_are_not_sent_in_a_burst(self) -> None:
        """A reminder firing after later ones' times sends one notice and plans only a reminder still ahead."""
        story = Story(Nagging)
        due = T0 + timedelta(days=7)
        late = due + timedelta(weeks=2, days=1)  # reminders 1 (due + 1 wk) and 2 (due + 2 wk) have passed

        outcome = story.at(late, TimerFired(TimerKind.REMIND, "talk", 0, 0))

        expected = (
            Notify(NoticeKind.REMINDER, "talk", 0, "gp", seq=0),
            ScheduleTimer(TimerKind.REMIND, "talk", 0, due + timedelta(weeks=3), seq=3),
        )
        assert expected == outcome.commands

    def test_a_reminder_firing_after_every_later_reminder_time_schedules_nothing_in_the_past(self) -> None:
        """Long after the last reminder's time, one notice is sent and no timer is set in the past."""
        story = Story(Nagging)
        much_later = T0 + timedelta(days=7, weeks=10)

        outcome = story.at(much_later, TimerFired(TimerKind.REMIND, "talk", 0, 0))

        assert [Notify(NoticeKind.REMINDER, "talk", 0, "gp", seq=0)] == commands_of(outcome, Notify)
        assert no_commands == tuple(commands_of(outcome, ScheduleTimer))

    def test_a_reminder_for_a_completed_step_is_not_sent(self) -> None:
        """A reminder timer that outlives its step changes nothing."""
        story = conversation_done()

        outcome = story.at(T1 + timedelta(days=28), TimerFired(TimerKind.REMIND, "conversation", 0, 0))

        assert no_commands == outcome.commands

    def test_the_due_timer_marks_the_step_overdue(self) -> None:
        """DUE sets business status 'overdue' on the still-requested Task."""
        story = conversation_open()

        outcome = story.at(T1 + timedelta(days=28), TimerFired(TimerKind.DUE, "conversation", 0))

        expected = (UpdateTask("conversation", 0, "requested", "overdue"),)
        assert expected == outcome.commands
        assert story.run("conversation").overdue


class TestEscalation:
    """An escalation tells its role once."""

    def test_escalation_notifies_the_coordinator(self) -> None:
        """ESCALATE marks the Task escalated and sends one ESCALATION notice to the coordinator."""
        story = conversation_open()

        outcome = story.at(T1 + timedelta(days=49), TimerFired(TimerKind.ESCALATE, "conversation", 0))

        expected = (
            UpdateTask("conversation", 0, "requested", "escalated"),
            Notify(NoticeKind.ESCALATION, "conversation", 0, "coordinator"),
        )
        assert expected == outcome.commands
        assert story.run("conversation").escalated

    def test_escalation_is_sent_only_once(self) -> None:
        """A second ESCALATE timer (a redelivery) sends nothing."""
        story = conversation_open()
        story.at(T1 + timedelta(days=49), TimerFired(TimerKind.ESCALATE, "conversation", 0))

        outcome = story.at(T1 + timedelta(days=50), TimerFired(TimerKind.ESCALATE, "conversation", 0))

        assert no_commands == outcome.commands

    def test_an_escalated_step_stays_escalated_when_it_becomes_due(self) -> None:
        """A late DUE timer does not downgrade 'escalated' to 'overdue'."""
        story = conversation_open()
        story.at(T1 + timedelta(days=49), TimerFired(TimerKind.ESCALATE, "conversation", 0))

        story.at(T1 + timedelta(days=50), TimerFired(TimerKind.DUE, "conversation", 0))

        expected = "escalated"
        assert expected == story.run("conversation").business_status


class TestTaskStatus:
    """The owner moves a step by setting its Task.status; illegal moves are refused with a reason."""

    def test_a_code_that_is_not_a_task_status_is_refused_listing_the_codes(self) -> None:
        """'bogus' is refused; the message lists the R4 Task.status codes."""
        story = Story()

        with pytest.raises(IllegalTransitionError) as exc_info:
            story.at(T1, TaskStatusChanged("register", "bogus"))

        expected = (
            "'bogus' is not a Task status (expected one of draft, requested, received, accepted, "
            "rejected, ready, cancelled, in-progress, on-hold, failed, completed, entered-in-error)"
        )
        assert expected == str(exc_info.value)

    @pytest.mark.parametrize("status", ["cancelled", "draft", "entered-in-error"])
    def test_the_owner_may_not_cancel_a_step(self, status: str) -> None:
        """Cancelling is the coordinator's; the message says what to do instead."""
        story = Story()

        with pytest.raises(IllegalTransitionError) as exc_info:
            story.at(T1, TaskStatusChanged("register", status))

        expected = (
            f"step 'register': the owner cannot set its Task to {status!r} "
            "(reject it, or ask a coordinator to mark it not applicable)"
        )
        assert expected == str(exc_info.value)

    def test_a_completed_step_cannot_go_back_to_in_progress(self) -> None:
        """The message names both states and why."""
        story = Story()
        story.at(T1, TaskStatusChanged("register", "completed"))

        with pytest.raises(IllegalTransitionError) as exc_info:
            story.at(T2, TaskStatusChanged("register", "in-progress"))

        expected = "step 'register' cannot go from completed to in-progress: it is already completed"
        assert expected == str(exc_info.value)

    def test_a_pending_step_cannot_be_completed_by_its_owner(self) -> None:
        """A step that has not started has no Task to complete."""
        story = Story()

        with pytest.raises(IllegalTransitionError, match="cannot go from pending to completed: it has not started"):
            story.at(T1, TaskStatusChanged("conversation", "completed"))

    def test_an_unknown_step_is_refused_naming_the_steps(self) -> None:
        """A Task of another pathway's step is not ours."""
        story = Story()

        with pytest.raises(
            IllegalTransitionError,
            match=r"pathway example-acp has no step 'nope' "
            r"\(steps: register, conversation, share, review\)",
        ):
            story.at(T1, TaskStatusChanged("nope", "completed"))

    def test_starting_a_step_puts_it_in_progress(self) -> None:
        """in-progress moves the step and updates the Task."""
        story = Story()

        outcome = story.at(T1, TaskStatusChanged("register", "in-progress"))

        assert StepState.IN_PROGRESS is story.run("register").state
        assert (UpdateTask("register", 0, "in-progress"),) == outcome.commands

    def test_putting_a_step_on_hold_keeps_it_in_progress_with_a_business_status(self) -> None:
        """on-hold is in progress, shown as business status on-hold."""
        story = Story()

        outcome = story.at(T1, TaskStatusChanged("register", "on-hold"))

        expected = (StepState.IN_PROGRESS, "on-hold")
        assert expected == (story.run("register").state, story.run("register").business_status)
        assert (UpdateTask("register", 0, "on-hold", "on-hold"),) == outcome.commands

    def test_accepting_a_ready_step_keeps_it_ready(self) -> None:
        """accepted is still ready for the engine, remembered as business status."""
        story = Story()

        outcome = story.at(T1, TaskStatusChanged("register", "accepted"))

        expected = (StepState.READY, "accepted")
        assert expected == (story.run("register").state, story.run("register").business_status)
        assert (UpdateTask("register", 0, "accepted", "accepted"),) == outcome.commands

    def test_rejecting_a_step_fails_it_and_tells_the_coordinator(self) -> None:
        """rejected: the step fails, its timers stop, and the coordinator is notified with the reason."""
        story = Story()

        outcome = story.at(T1, TaskStatusChanged("register", "rejected", "patient not registered here"))

        reason = "patient not registered here"
        expected = (
            CancelTimers("register"),
            UpdateTask("register", 0, "rejected", reason=reason),
            Notify(NoticeKind.REJECTED, "register", 0, "coordinator", reason=reason),
        )
        assert expected == outcome.commands
        assert StepState.FAILED is story.run("register").state
        assert StepState.PENDING is story.run("conversation").state

    def test_rejecting_without_a_reason_gives_one(self) -> None:
        """The notice says what the owner did."""
        story = Story()

        story.at(T1, TaskStatusChanged("register", "rejected"))

        expected = "the owner set the Task to rejected"
        assert expected == story.run("register").reason

    def test_the_owner_cannot_reopen_a_rejected_step(self) -> None:
        """Reopening a failed step is a coordinator's reassignment; the owner's 'accepted' is refused."""
        story = Story()
        story.at(T1, TaskStatusChanged("register", "rejected"))

        with pytest.raises(IllegalTransitionError):
            story.at(T2, TaskStatusChanged("register", "accepted"))


class TestCoordinator:
    """Coordinators reassign, complete and skip steps."""

    def test_reassigning_a_failed_step_reopens_it_for_the_new_owner(self) -> None:
        """The step is ready again, owned by the given organisation, with fresh deadlines."""
        story = Story()
        story.at(T1, TaskStatusChanged("register", "rejected"))

        outcome = story.at(T2, StepOverride("register", "reassign", "other practice", owner="Organization/gp-2"))

        due = T2 + timedelta(days=7)
        expected = (
            CancelTimers("register"),
            ScheduleTimer(TimerKind.DUE, "register", 0, due),
            UpdateTask("register", 0, "requested", reason="other practice", owner="Organization/gp-2"),
        )
        assert expected == outcome.commands
        run = story.run("register")
        assert (StepState.READY, "Organization/gp-2", due) == (run.state, run.owner, run.due_at)

    def test_reassigning_needs_an_organisation(self) -> None:
        """Without owner= there is nobody to give the step to."""
        story = Story()
        story.at(T1, TaskStatusChanged("register", "rejected"))

        with pytest.raises(IllegalTransitionError, match="reassigning needs an organisation to own it"):
            story.at(T2, StepOverride("register", "reassign", "other practice"))

    def test_a_completed_step_cannot_be_reassigned(self) -> None:
        """Only open or failed steps are reassigned."""
        story = Story()
        story.at(T1, TaskStatusChanged("register", "completed"))

        with pytest.raises(IllegalTransitionError, match="cannot be reassigned while it is completed"):
            story.at(T2, StepOverride("register", "reassign", "x", owner="Organization/gp-2"))

    def test_skipping_a_pending_step_needs_no_task_update(self) -> None:
        """A step without a Task is skipped with its timers dropped."""
        story = Story()

        outcome = story.at(T1, StepOverride("review", "skip", "not needed"))

        assert (CancelTimers("review"),) == outcome.commands
        expected = (StepState.SKIPPED, "not needed")
        assert expected == (story.run("review").state, story.run("review").reason)

    def test_completing_an_open_step_starts_the_next(self) -> None:
        """A coordinator's 'complete' works like the owner's."""
        story = Story()

        story.at(T1, StepOverride("register", "complete", "done by phone"))

        expected = (StepState.COMPLETED, StepState.READY)
        assert expected == (story.run("register").state, story.run("conversation").state)


class TestEnding:
    """An enrolment ends on an exit criterion, a withdrawal, or when every step is done."""

    def test_an_exit_criterion_cancels_open_steps_and_ends_the_enrolment(self) -> None:
        """Death cancels the open Task (telling its owner), drops every timer, and exits."""
        story = conversation_open()

        outcome = story.at(T2, DIED)

        reason = "exit criterion deceased met by Patient/p1"
        expected = (
            UpdateTask("conversation", 0, "cancelled", reason=reason),
            Notify(NoticeKind.CANCELLED, "conversation", 0, "gp", reason=reason),
            CancelTimers(None),
            EndEnrolment(EnrolmentStatus.EXITED, reason),
        )
        assert expected == outcome.commands
        states = {
            "register": StepState.COMPLETED,
            "conversation": StepState.CANCELLED,
            "share": StepState.CANCELLED,
            "review": StepState.CANCELLED,
        }
        assert states == story.states()
        assert (EnrolmentStatus.EXITED, T2, reason) == (
            story.state.status,
            story.state.ended_at,
            story.state.end_reason,
        )

    def test_a_withdrawal_ends_the_enrolment_as_withdrawn(self) -> None:
        """A coordinator's Withdraw cancels the open Task and ends with its reason."""
        story = Story()

        outcome = story.at(T1, Withdraw("patient moved away"))

        assert EndEnrolment(EnrolmentStatus.WITHDRAWN, "patient moved away") == outcome.commands[-1]
        assert UpdateTask("register", 0, "cancelled", reason="patient moved away") in outcome.commands
        assert EnrolmentStatus.WITHDRAWN is story.state.status

    def test_a_failed_step_is_cancelled_too_when_the_enrolment_ends(self) -> None:
        """A rejected step waiting for a coordinator ends cancelled."""
        story = Story()
        story.at(T1, TaskStatusChanged("register", "rejected"))

        story.at(T2, DIED)

        assert StepState.CANCELLED is story.run("register").state

    @pytest.mark.parametrize(
        "event",
        [
            TimerFired(TimerKind.DUE, "conversation", 0),
            TimerFired(TimerKind.START, "review", 0),
            ACP_RECORDED,
            DIED,
        ],
        ids=lambda e: type(e).__name__,
    )
    def test_timers_and_resources_after_the_end_change_nothing(self, event: Event) -> None:
        """Late timers and resources for an ended enrolment are ignored."""
        story = conversation_open()
        story.at(T2, DIED)
        ended = story.state

        outcome = story.at(T2 + timedelta(days=30), event)

        assert no_commands == outcome.commands
        assert ended == outcome.state

    @pytest.mark.parametrize(
        "event",
        [
            TaskStatusChanged("conversation", "completed"),
            StepOverride("conversation", "skip", "x"),
            Withdraw("again"),
        ],
        ids=lambda e: type(e).__name__,
    )
    def test_actions_on_an_ended_enrolment_are_refused(self, event: Event) -> None:
        """Owners and coordinators get NotEnrolledError naming the enrolment and its status."""
        story = conversation_open()
        story.at(T2, DIED)

        with pytest.raises(NotEnrolledError, match=r"^enrolment enr-1 has ended \(exited\)$"):
            story.at(T2 + timedelta(days=1), event)

    def test_completing_every_step_completes_the_enrolment(self) -> None:
        """When the last step is done the enrolment ends as completed."""
        story = Story(TwoSteps)
        story.at(T1, TaskStatusChanged("first", "completed"))

        outcome = story.at(T2, TaskStatusChanged("second", "completed"))

        expected = (
            CancelTimers(None),
            EndEnrolment(EnrolmentStatus.COMPLETED, "every step is completed or not applicable"),
        )
        assert expected == outcome.commands[-2:]
        assert EnrolmentStatus.COMPLETED is story.state.status

    def test_skipped_steps_count_as_done(self) -> None:
        """Completed and skipped steps together complete the enrolment."""
        story = Story()
        story.at(T0, StepOverride("review", "skip", "no reviews for this patient"))
        story.at(T1, TaskStatusChanged("register", "completed"))
        story.at(T2, ACP_RECORDED)

        story.at(T2, StepOverride("share", "skip", "no consent to share"))

        assert EnrolmentStatus.COMPLETED is story.state.status

    def test_a_skipped_guard_and_completed_steps_complete_the_enrolment(self) -> None:
        """otherwise='skip' followed by the last step's completion ends the enrolment as completed."""
        story = Story(Skipping)
        story.at(T1, TaskStatusChanged("first", "completed"))

        story.at(T2, TaskStatusChanged("last", "completed"))

        assert EnrolmentStatus.COMPLETED is story.state.status

    def test_an_enrolment_with_a_step_still_open_stays_active(self) -> None:
        """One step left open keeps the enrolment active."""
        story = Story(TwoSteps)

        story.at(T1, TaskStatusChanged("first", "completed"))

        assert EnrolmentStatus.ACTIVE is story.state.status
