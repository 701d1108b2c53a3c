"""transmural-discharge: from home to hospital and back, without losing the plan on the way.

Timings from the Goede Overdracht pilot and the COPD transfer standard (../shared/DOMAIN.md §4 "Transitions
and timing"): handover started within 48 h of admission, discharge conversation 12-24 h before discharge,
nursing handover and discharge letter within 24 h of discharge, as eOverdracht-style Tasks (notified pull).
"""

from __future__ import annotations

from zorgpad.engine import (
    COORDINATOR,
    GP,
    HOME_CARE,
    HOSPITAL,
    Escalation,
    Handover,
    Pathway,
    Step,
    before,
    defn,
    hours,
)
from zorgpad.pathways import criteria as c
from zorgpad.pathways import settings
from zorgpad.pathways.acp import LETTERS
from zorgpad.pathways.terminology import TRANSFER_OF_CARE

_LATE_RECEIVER = Escalation(after=hours(settings.ACCEPT_HOURS), to=COORDINATOR)


@defn(id="transmural-discharge", version="1.0.0", title="Transmurale overdracht ziekenhuis - thuis")
class TransmuralDischarge(Pathway):
    """Follows an admission of a patient in proactive care planning: inform the GP and home care, prepare the
    discharge, talk before discharge, and hand the care back within 24 hours."""

    enrol_when = c.ADMITTED
    exit_when = c.DECEASED
    requires = ("palliative-acp",)
    letters = LETTERS

    inform_admission = Step("Huisarts en thuiszorg informeren over de opname", owner=HOSPITAL,
                            inform=(GP, HOME_CARE), automatic=True)
    start_handover = Step(
        "Ontslag voorbereiden: ontslagcriteria, streefdatum en nazorg aanvragen", owner=HOSPITAL,
        due=hours(settings.HANDOVER_START_HOURS), escalate=Escalation(after=hours(24), to=COORDINATOR),
        description="Within 48 h of admission: set discharge criteria and a target date, request follow-up care.",
    )
    discharge_talk = Step(
        "Ontslaggesprek met patiënt en naaste", owner=HOSPITAL, after=start_handover,
        due=before(c.DISCHARGE_PLANNED, hours(settings.DISCHARGE_TALK_HOURS)),
        escalate=Escalation(after=hours(4), to=COORDINATOR),
        description="Held 12-24 h before the planned discharge (Encounter.period.end); mention the PZP agreements.",
    )
    nursing_handover = Step(
        "Verpleegkundige overdracht aan de thuiszorg", owner=HOSPITAL,
        only_if=c.DISCHARGED, due=hours(settings.TRANSFER_HOURS), code=TRANSFER_OF_CARE,
        handover=Handover(to=HOME_CARE, content=c.EMERGENCY_AGREEMENTS, code=TRANSFER_OF_CARE,
                          summary="handover_summary", share_if=c.SHARING_CONSENT),
        escalate=_LATE_RECEIVER,
        description="eOverdracht-style: a Task for home care, announced by notified pull; home care accepts it. "
                    "The PZP agreements travel with it only with the patient's sharing consent.",
    )
    discharge_letter = Step(
        "Ontslagbrief aan de huisarts, met de PZP-afspraken", owner=HOSPITAL,
        only_if=c.DISCHARGED, due=hours(settings.TRANSFER_HOURS), code=TRANSFER_OF_CARE,
        handover=Handover(to=GP, content=c.EMERGENCY_AGREEMENTS, code=TRANSFER_OF_CARE,
                          summary="handover_summary", share_if=c.SHARING_CONSENT),
        escalate=_LATE_RECEIVER,
    )
