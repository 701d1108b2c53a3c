"""dying-phase: Zorgpad Stervensfase at home, when death is expected within hours to days.

IKNL/Erasmus MC Zorgpad Stervensfase (../shared/DOMAIN.md §4 "Dying phase"): started by a clinician's
decision, caregivers informed, evaluated every 4 hours, stopped (and later restarted) when the patient
improves.
"""

from __future__ import annotations

from zorgpad.engine import (
    AMBULANCE,
    COORDINATOR,
    GP,
    HOME_CARE,
    HOSPITAL,
    OUT_OF_HOURS,
    Escalation,
    Pathway,
    Reminder,
    Step,
    defn,
    hours,
    minutes,
)
from zorgpad.pathways import criteria as c
from zorgpad.pathways import settings


@defn(id="dying-phase", version="1.0.0", title="Zorgpad stervensfase")
class DyingPhase(Pathway):
    """Care in the last hours and days: everyone informed, comfort evaluated every few hours by home care."""

    enrol_when = c.DYING_PHASE_STARTED
    exit_when = c.DYING_PHASE_STOPPED | c.DECEASED

    inform = Step("Betrokken zorgverleners informeren: de stervensfase is ingegaan", owner=GP,
                  inform=(HOME_CARE, OUT_OF_HOURS, AMBULANCE, HOSPITAL, COORDINATOR), automatic=True)
    arrange = Step(
        "Regiebehandelaar, 24-uurs bereikbaarheid, medicatie en hulpmiddelen thuis vastleggen", owner=GP,
        due=hours(12), escalate=Escalation(after=hours(12), to=COORDINATOR),
        description="Dying-phase guideline: record the lead clinician, 24/7 availability, medication and aids.",
    )
    evaluate = Step(
        "Evaluatie volgens het zorgpad (4-uurlijks)", owner=HOME_CARE, due=hours(1),
        repeat=hours(settings.DYING_EVALUATION_HOURS), done_when=c.DYING_PHASE_EVALUATED,
        remind=Reminder(every=minutes(30), times=1), escalate=Escalation(after=hours(1), to=GP),
        description="Record goal achieved (B) or not (A, with reason and action) every 4 hours.",
    )
