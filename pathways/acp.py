"""palliative-acp: proactieve zorgplanning (advance care planning) for people in their last year of life.

Follows the Richtlijn Proactieve zorgplanning (2023) as summarised in ../shared/DOMAIN.md §4; the table
"guideline recommendation → step → test" is in docs/pathways.md.
"""

from __future__ import annotations

from pathlib import Path

from zorgpad.engine import (
    AMBULANCE,
    COORDINATOR,
    GP,
    HOME_CARE,
    HOSPITAL,
    OUT_OF_HOURS,
    Escalation,
    Handover,
    Pathway,
    Reminder,
    Role,
    Step,
    days,
    defn,
    months,
    weeks,
)
from zorgpad.pathways import criteria as c
from zorgpad.pathways import settings
from zorgpad.pathways.terminology import ADVANCE_CARE_PLANNING

LETTERS = str(Path(__file__).parent / "letters")
SHARED = c.ACP_RECORDED & c.SHARING_CONSENT


def _share(receiver: Role, title: str, after: Step) -> Step:
    """Hand the emergency-relevant agreements over to one receiving role, again whenever they change."""
    return Step(
        title, owner=GP, after=after, only_if=SHARED, due=days(settings.SHARE_DAYS), again_when=c.AGREEMENT_CHANGED,
        handover=Handover(to=receiver, content=c.EMERGENCY_AGREEMENTS, summary="handover_summary"),
        escalate=Escalation(after=days(1), to=COORDINATOR),
    )


@defn(id="palliative-acp", version="1.0.0", title="Proactieve zorgplanning (advance care planning)")
class AdvanceCarePlanningV1(Pathway):
    """Identify, hold and record the PZP conversation, share the agreements with everyone who may be called
    in a crisis, and keep them current until the patient dies or withdraws."""

    enrol_when = c.SURPRISE_QUESTION_NO | c.SPICT_POSITIVE | c.PALLIATIVE_PHASE
    exit_when = c.DECEASED | c.WITHDRAWN
    letters = LETTERS

    mark = Step("Markeren: opnemen in het palliatief zorgregister", owner=GP, due=days(settings.MARK_DAYS),
                description="Mark 'PZP started' in a fixed place in the record (guideline: vastleggen).")
    invite = Step("Patiënt en naaste uitnodigen voor het PZP-gesprek", owner=GP, after=mark, due=days(7),
                  letter="pzp_invitation", description="Invite the patient with a close relative.")
    conversation = Step(
        "PZP-gesprek voeren", owner=GP, after=invite, due=days(settings.CONVERSATION_DAYS),
        code=ADVANCE_CARE_PLANNING, done_when=c.ACP_RECORDED | c.ACP_NOT_READY,
        remind=Reminder(every=weeks(1), times=2), escalate=Escalation(after=weeks(3), to=COORDINATOR),
        description="Hold the conversation; record it as the IKNL resources (Procedure 713603004, "
                    "directives, goal, wishes), or record a not-done Procedure when the patient is not ready.",
    )
    offer_again = Step(
        "PZP-gesprek opnieuw aanbieden", owner=GP, after=conversation, only_if=c.ACP_NOT_READY, otherwise="skip",
        offset=months(settings.REOFFER_MONTHS), due=days(settings.CONVERSATION_DAYS), code=ADVANCE_CARE_PLANNING,
        done_when=c.ACP_RECORDED, remind=Reminder(every=weeks(1), times=2),
        escalate=Escalation(after=weeks(3), to=COORDINATOR),
        description="The patient was not ready: offer the conversation again later.",
    )
    share_out_of_hours = _share(OUT_OF_HOURS, "Afspraken overdragen aan de huisartsenpost", conversation)
    share_ambulance = _share(AMBULANCE, "Afspraken overdragen aan de ambulancedienst", conversation)
    share_hospital = _share(HOSPITAL, "Afspraken overdragen aan het ziekenhuis", conversation)
    share_home_care = _share(HOME_CARE, "Afspraken overdragen aan de thuiszorg", conversation)
    review = Step(
        "PZP evalueren in een vervolggesprek", owner=GP, after=conversation, offset=months(settings.REVIEW_MONTHS),
        due=days(settings.CONVERSATION_DAYS), repeat=months(settings.REVIEW_MONTHS), code=ADVANCE_CARE_PLANNING,
        done_when=c.ACP_RECORDED, again_when=c.ADMITTED, remind=Reminder(every=weeks(1), times=2),
        description="Review periodically and after a hospital admission; a follow-up conversation "
                    "(a new ACP Procedure) completes it, and changed directives are shared again.",
    )
    patz = Step("Bespreken in het PaTz-overleg", owner=GP, after=mark, due=days(14),
                repeat=months(settings.PATZ_MONTHS),
                description="List the patient for the multidisciplinary PaTz meeting (six times a year).")


# 1.1.0: a patient who is still not ready when the conversation is offered again is offered it again
# REOFFER_MONTHS later, and so on until it is held (1.0.0 left the second offer open, and escalated it).
# 1.0.0 stays registered for the enrolments that started on it (see README, "Versions").
@defn(id="palliative-acp", version="1.1.0", title="Proactieve zorgplanning (advance care planning)")
class AdvanceCarePlanning(AdvanceCarePlanningV1):
    """Identify, hold and record the PZP conversation, share the agreements with everyone who may be called
    in a crisis, and keep them current until the patient dies or withdraws."""

    offer_again = Step(
        "PZP-gesprek opnieuw aanbieden", owner=GP, after=AdvanceCarePlanningV1.conversation, only_if=c.ACP_NOT_READY,
        otherwise="skip", offset=months(settings.REOFFER_MONTHS), due=days(settings.CONVERSATION_DAYS),
        repeat=months(settings.REOFFER_MONTHS), until=c.ACP_RECORDED, code=ADVANCE_CARE_PLANNING,
        done_when=c.ACP_RECORDED | c.ACP_NOT_READY, remind=Reminder(every=weeks(1), times=2),
        escalate=Escalation(after=weeks(3), to=COORDINATOR),
        description="The patient was not ready: offer the conversation again later, and again after each "
                    "'not ready yet', until it is held.",
    )
