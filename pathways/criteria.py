"""Named criteria: where clinical facts in FHIR become pathway logic. Codes come from terminology.py."""

from __future__ import annotations

from zorgpad.engine import Coding, Criterion
from zorgpad.pathways import terminology as t

_RECORDED = ("final", "amended", "corrected")

# -- identification -----------------------------------------------------------------------------------
SURPRISE_QUESTION_NO = Criterion(
    "surprise-question-no", "Observation", code=t.SURPRISE_QUESTION, value=False, status=_RECORDED,
    description="The clinician would not be surprised if the patient died within 12 months")
SPICT_POSITIVE = Criterion("spict-positive", "Observation", code=t.SPICT, value=True, status=_RECORDED,
                           description="SPICT-NL screening is positive")
PALLIATIVE_PHASE = Criterion("palliative-phase", "Condition", code=t.LIMITED_LIFE_EXPECTANCY,
                             description="A Condition marks the palliative phase")

# -- the conversation -----------------------------------------------------------------------------------
ACP_RECORDED = Criterion("acp-recorded", "Procedure", code=t.ADVANCE_CARE_PLANNING, status="completed",
                         description="A PZP conversation was held (IKNL ACP-Procedure)")
ACP_NOT_READY = Criterion("acp-not-ready", "Procedure", code=t.ADVANCE_CARE_PLANNING, status="not-done",
                          description="The PZP conversation was offered, but the patient is not ready yet")
SHARING_CONSENT_FORM = Criterion(
    "sharing-consent-form", "QuestionnaireResponse", code=t.SHARING_AGREED, path="item.item.answer.valueCoding",
    status=("completed", "amended"),
    description="IKNL ACP form item 1201: the patient agrees to share the treatment agreements")
SHARING_CONSENT_PRIVACY = Criterion(
    "sharing-consent", "Consent", code=t.PRIVACY_SCOPE, path="scope", status="active",
    description="A privacy Consent lets Zorgpad share the agreements with the caregivers involved")
SHARING_CONSENT = SHARING_CONSENT_FORM | SHARING_CONSENT_PRIVACY

# -- what is shared (content of handovers and summaries) -----------------------------------------------
def _directive(name: str, code: Coding, description: str) -> Criterion:
    return Criterion(name, "Consent", code=code, path="provision.code", status="active", description=description)


TREATMENT_DIRECTIVES = Criterion("treatment-directive", "Consent", code=t.TREATMENT_DIRECTIVE, path="category",
                                 status="active", description="Any current treatment directive (IKNL)")
ADVANCE_DIRECTIVES = Criterion("advance-directive", "Consent", code=t.ADVANCE_DIRECTIVE, path="category",
                               status="active", description="Any current advance directive (IKNL)")
CPR_DIRECTIVE = _directive("cpr-directive", t.CPR, "Treatment directive on resuscitation")
VENTILATION_DIRECTIVE = _directive("ventilation-directive", t.VENTILATION, "Treatment directive on ventilation")
ICU_DIRECTIVE = _directive("icu-directive", t.ICU_ADMISSION, "Treatment directive on ICU admission")
HOSPITAL_DIRECTIVE = _directive("hospital-directive", t.HOSPITAL_ADMISSION,
                                "Treatment directive on hospital admission")
ANTIBIOTICS_DIRECTIVE = _directive("antibiotics-directive", t.ANTIBIOTICS, "Treatment directive on antibiotics")
BLOOD_DIRECTIVE = _directive("blood-directive", t.BLOOD_PRODUCTS, "Treatment directive on blood products")
POLICY_GOAL = Criterion("policy-goal", "Goal", code=t.POLICY_GOALS, path="description",
                        description="The medical policy goal (IKNL ACP-MedicalPolicyGoal)")
PLACE_OF_DEATH = Criterion("place-of-death", "Observation", code=t.PLACE_OF_DEATH, status=_RECORDED)
EUTHANASIA = Criterion("euthanasia-position", "Observation", code=t.EUTHANASIA_POSITION, status=_RECORDED)
ORGAN_DONATION = Criterion("organ-donation", "Observation", code=t.ORGAN_DONATION, status=_RECORDED)
WISHES = Criterion("care-wishes", "Observation", code=(t.SPECIFIC_WISHES, t.SENSE_OF_PURPOSE), status=_RECORDED)

#: What every caregiver involved in an emergency needs (DOMAIN §4 "hand over (changed) emergency-relevant
#: agreements"): the directives, the advance directives, the goal and the wishes.
EMERGENCY_AGREEMENTS = (TREATMENT_DIRECTIVES, ADVANCE_DIRECTIVES, POLICY_GOAL, PLACE_OF_DEATH, EUTHANASIA,
                        ORGAN_DONATION, WISHES)
#: What a changed agreement is: a new or updated directive.
AGREEMENT_CHANGED = TREATMENT_DIRECTIVES | ADVANCE_DIRECTIVES

# -- transitions ----------------------------------------------------------------------------------------
ADMITTED = Criterion("admitted", "Encounter", code=t.INPATIENT, path="class", status="in-progress",
                     date="period.start", description="The patient is in hospital (inpatient Encounter)")
DISCHARGE_PLANNED = Criterion("discharge-planned", "Encounter", code=t.INPATIENT, path="class",
                              status="in-progress", present="period.end", date="period.end", during_enrolment=True,
                              episode=True,
                              description="The hospital has planned the discharge (Encounter.period.end)")
DISCHARGED = Criterion("discharged", "Encounter", code=t.INPATIENT, path="class", status="finished",
                       date="period.end", during_enrolment=True, episode=True,
                       description="The patient went home (this stay's inpatient Encounter finished)")

# -- dying phase and death ------------------------------------------------------------------------------
DYING_PHASE_STARTED = Criterion("dying-phase-started", "Observation", code=t.DYING_PHASE, value=True,
                                status=_RECORDED, description="A clinician decided the dying phase has started")
DYING_PHASE_STOPPED = Criterion("dying-phase-stopped", "Observation", code=t.DYING_PHASE, value=False,
                                status=_RECORDED, during_enrolment=True,
                                description="The patient improved: the dying phase is stopped")
DYING_PHASE_EVALUATED = Criterion("dying-phase-evaluated", "Observation", code=t.DYING_PHASE_EVALUATION,
                                  status=_RECORDED, description="A 4-hourly evaluation was recorded")
DECEASED = Criterion("deceased", "Patient", present="deceased[x]", date="deceasedDateTime",
                     description="Patient.deceased[x] is set")
WITHDRAWN = Criterion("pathway-withdrawn", "Observation", code=t.PATHWAY_WITHDRAWN, value=True, status=_RECORDED,
                      description="The patient ends proactive care planning with Zorgpad")
