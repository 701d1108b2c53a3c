"""Every clinical code the pathways use, in one place, each with where it comes from.

Sources (stored copies; see ../shared/DOMAIN.md):
- IKNL PZP R4 IG (IKNL/PZP-FHIR-R4@1cf9cad, profiles and fixtures; Nictiz PZP-1.0.0-rc1 TestScripts).
- Nictiz eOverdracht 4.x (Task profile, fixtures).
- HL7 FHIR R4 code systems (consentscope, consentcategorycodes, v3-ActCode).
- NHS PALCARE_COD refset listing on opencodelists (for 767503006, an international SNOMED concept).

Where no verified standard code exists (the Surprise Question, SPICT-NL, the dying-phase decision and its
4-hourly evaluation, "not ready for a PZP conversation" is expressed in FHIR instead), Zorgpad uses its
own code system :data:`ZORGPAD`, documented in docs/pathways.md; integrators map local codes to it.
"""

from __future__ import annotations

from zorgpad.engine import Coding

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
#: Zorgpad's own codes, for findings that have no verified standard code.
ZORGPAD = "https://zorgpad.nl/fhir/CodeSystem/palliative"

# -- Identification (markering) -----------------------------------------------------------------------
#: "Would I be surprised if this patient died within 12 months?" (NHG; Observation.valueBoolean = the answer).
SURPRISE_QUESTION = Coding(ZORGPAD, "surprise-question", "Surprise Question (12 months)")
#: SPICT-NL screening result (Observation.valueBoolean: positive or not).
SPICT = Coding(ZORGPAD, "spict-nl", "SPICT-NL screening")
#: SNOMED 767503006 "Limited life expectancy of approximately one year" (international concept; listed in
#: NHS PALCARE_COD): a Condition marking the palliative phase.
LIMITED_LIFE_EXPECTANCY = Coding(SNOMED, "767503006", "Limited life expectancy of approximately one year")

# -- The PZP conversation and its record (IKNL PZP) ------------------------------------------------------
#: ACP-Procedure.code; also the Task.code of the conversation step (DESIGN §5).
ADVANCE_CARE_PLANNING = Coding(SNOMED, "713603004", "advance care planning")
#: ACP-TreatmentDirective: Consent.scope and Consent.category.
TREATMENT_SCOPE = Coding(CONSENT_SCOPE, "treatment")
TREATMENT_DIRECTIVE = Coding(SNOMED, "129125009", "procedure with explicit context")
#: ACP-AdvanceDirective: Consent.scope adr, Consent.category acd.
ADVANCE_DIRECTIVE_SCOPE = Coding(CONSENT_SCOPE, "adr")
ADVANCE_DIRECTIVE = Coding(CONSENT_CATEGORY, "acd", "advance directive")
#: Treatment directive subjects (Consent.provision.code).
CPR = Coding(SNOMED, "89666000", "cardiopulmonary resuscitation")
VENTILATION = Coding(SNOMED, "40617009", "artificial ventilation")
ICU_ADMISSION = Coding(SNOMED, "305351004", "admission to intensive care unit")
HOSPITAL_ADMISSION = Coding(SNOMED, "32485007", "hospital admission")
ANTIBIOTICS = Coding(SNOMED, "281789004", "antibiotic therapy")
BLOOD_PRODUCTS = Coding(SNOMED, "116762002", "administration of blood product")
#: ACP-MedicalPolicyGoal (Goal.description codes in the rc fixtures).
POLICY_GOALS = (
    Coding(SNOMED, "385987000", "palliative goal"),
    Coding(SNOMED, "1351964001", "palliative: life-prolonging and symptom relief"),
    Coding(SNOMED, "713148004", "palliative: symptom relief, no life prolongation"),
)
#: Wishes (Observation.code).
PLACE_OF_DEATH = Coding(SNOMED, "395091006", "preferred place of death")
EUTHANASIA_POSITION = Coding(SNOMED, "340171000146104", "position regarding euthanasia")
ORGAN_DONATION = Coding(SNOMED, "570801000146104", "organ donation choice registration")
SPECIFIC_WISHES = Coding(SNOMED, "153851000146100", "specific care wishes")
SENSE_OF_PURPOSE = Coding(SNOMED, "247751003", "sense of purpose")
#: IKNL ACP form item 1201 "Patiënt gaat akkoord met het delen …", answer "Akkoord".
SHARING_AGREED = Coding(SNOMED, "441898007", "Akkoord")
#: Consent.scope for a patient's permission to share information (FHIR consentscope).
PRIVACY_SCOPE = Coding(CONSENT_SCOPE, "patient-privacy")

# -- Transitions (eOverdracht) -------------------------------------------------------------------------
#: eOverdracht-Task.code "Overdracht van zorg".
TRANSFER_OF_CARE = Coding(SNOMED, "308292007", "Overdracht van zorg")
#: Encounter.class of a hospital admission (as in the IKNL ACP-Encounter fixtures).
INPATIENT = Coding(ACT_CODE, "IMP", "inpatient encounter")

# -- Dying phase (Zorgpad Stervensfase) ----------------------------------------------------------------
#: The clinician's decision that the dying phase has started (valueBoolean true) or was stopped (false).
DYING_PHASE = Coding(ZORGPAD, "dying-phase", "Stervensfase")
#: One 4-hourly evaluation of the Zorgpad Stervensfase (valueString "A" or "B", or a CodeableConcept).
DYING_PHASE_EVALUATION = Coding(ZORGPAD, "dying-phase-evaluation", "Evaluatie zorgpad stervensfase")
#: The patient (or representative) ends palliative care planning with Zorgpad (valueBoolean true).
PATHWAY_WITHDRAWN = Coding(ZORGPAD, "pathway-withdrawn", "Deelname proactieve zorgplanning beëindigd")
