"""after-death: overlijden en nazorg.

On Patient.deceased[x] every other pathway exits (its open Tasks are cancelled with the reason and their
owners told); this pathway tells every organisation involved and plans the bereavement conversation
"some weeks" after death (Richtlijn Rouw; ../shared/DOMAIN.md §4 "Bereavement").
"""

from __future__ import annotations

from zorgpad.engine import (
    AMBULANCE,
    COORDINATOR,
    GP,
    HOME_CARE,
    HOSPITAL,
    OUT_OF_HOURS,
    Pathway,
    Reminder,
    Step,
    days,
    defn,
    weeks,
)
from zorgpad.pathways import criteria as c
from zorgpad.pathways import settings


@defn(id="after-death", version="1.0.0", title="Overlijden en nazorg")
class AfterDeath(Pathway):
    """Tell everyone involved that the patient has died, and offer the relatives a bereavement conversation."""

    enrol_when = c.DECEASED
    once = True  # a later correction of the deceased patient's record starts nothing again
    enrol_within = days(90)  # a death recorded months later (an imported history) starts no bereavement care

    inform = Step("Alle betrokken organisaties informeren over het overlijden", owner=GP,
                  inform=(GP, HOME_CARE, HOSPITAL, OUT_OF_HOURS, AMBULANCE, COORDINATOR), automatic=True)
    bereavement = Step(
        "Nazorggesprek met de naasten", owner=GP, after=inform, offset=weeks(settings.BEREAVEMENT_WEEKS),
        due=weeks(2), remind=Reminder(every=weeks(1), times=1),
        description="Offer a closing conversation; refer to the GP when complicated grief is suspected.",
    )
