"""A small example pathway that exercises every engine feature (the real palliative pathways live in
pathways/). Shared by the engine tests; not registered anywhere."""

from __future__ import annotations

from zorgpad.engine import (
    COORDINATOR,
    GP,
    OUT_OF_HOURS,
    ActionContext,
    Coding,
    Criterion,
    Escalation,
    Handover,
    Pathway,
    Reminder,
    Step,
    days,
    defn,
    months,
    weeks,
)

SCT = "http://snomed.info/sct"

SURPRISE_QUESTION_NO = Criterion("surprise-question-no", "Observation", code=Coding(SCT, "713636003"),
                                 value=False, description="Would not be surprised by death within 12 months")
ACP_RECORDED = Criterion("acp-recorded", "Procedure", code=Coding(SCT, "713603004"), status="completed")
SHARING_CONSENT = Criterion("sharing-consent", "Consent", code=Coding(SCT, "425691002"), path="category",
                            status="active")
CPR_DIRECTIVE = Criterion("cpr-directive", "Consent", code=Coding(SCT, "89666000"), path="provision.code")
DECEASED = Criterion("deceased", "Patient", present="deceased[x]")

#: Every call of the example action, for tests to inspect.
ACTION_CALLS: list[ActionContext] = []


def record_action(context: ActionContext) -> None:
    """An integrator action: remembers that it ran."""
    ACTION_CALLS.append(context)


@defn(id="example-acp", version="1.0.0")
class ExampleAcp(Pathway):
    """Example proactive care planning pathway used by the engine tests."""

    enrol_when = SURPRISE_QUESTION_NO
    exit_when = DECEASED

    register = Step("Add to the palliative register", owner=GP, due=days(7), action=record_action)
    conversation = Step(
        "Hold the ACP conversation", owner=GP, after=register, due=days(28), done_when=ACP_RECORDED,
        code=Coding(SCT, "713603004", "advance care planning"),
        remind=Reminder(every=weeks(1), times=2), escalate=Escalation(after=weeks(3), to=COORDINATOR),
    )
    share = Step("Share emergency agreements with the out-of-hours GP post", owner=GP, after=conversation,
                 only_if=SHARING_CONSENT, due=days(2),
                 handover=Handover(to=OUT_OF_HOURS, content=(CPR_DIRECTIVE,)),
                 escalate=Escalation(after=days(1), to=COORDINATOR))
    review = Step("Review the care plan", owner=GP, after=conversation, offset=months(3), due=days(14),
                  repeat=months(3))


@defn(id="example-acp", version="1.1.0")
class ExampleAcpV2(Pathway):
    """Example pathway, version 1.1.0: the conversation step is renamed and a check-in step is added."""

    enrol_when = SURPRISE_QUESTION_NO
    exit_when = DECEASED

    register = Step("Add to the palliative register", owner=GP, due=days(7))
    acp_talk = Step("Hold the ACP conversation", owner=GP, after=register, due=days(28), done_when=ACP_RECORDED,
                    code=Coding(SCT, "713603004", "advance care planning"))
    check_in = Step("Phone check-in after the conversation", owner=GP, after=acp_talk, due=days(7))
    review = Step("Review the care plan", owner=GP, after=acp_talk, offset=months(3), due=days(14),
                  repeat=months(3))
