"""A care region in the Westelijke Mijnstreek (South Limburg) for pathway scenario tests.

Organisations, a patient with a GP practice, a CareTeam that fills every care role, and the FHIR resources
the palliative pathways react to, shaped like the IKNL PZP profiles (DOMAIN.md §1.1). Codes come from
``zorgpad.pathways.terminology`` so a code changed there is changed here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from zorgpad.engine import ROLE_SYSTEM, Coding, Engine, Pathway
from zorgpad.engine.testing import PathwayHarness
from zorgpad.pathways import REGISTRY
from zorgpad.pathways import terminology as t

JSON = dict[str, Any]

#: A Monday morning; every scenario starts here unless it says otherwise.
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PATIENT_ID = "p1"
PATIENT = f"Patient/{PATIENT_ID}"
PATIENT_NAME = "Maria Janssen-Hermans"

#: role code -> (Organization id, name, phone)
ORGANISATIONS: dict[str, tuple[str, str, str]] = {
    "gp": ("gp-sittard", "Huisartsenpraktijk De Baandert", "046-4512345"),
    "home-care": ("thuiszorg-wm", "Zuyderland Thuiszorg Sittard", "088-4597000"),
    "hospital": ("zuyderland-mc", "Zuyderland Medisch Centrum", "088-4597777"),
    "out-of-hours": ("hap-wm", "Huisartsenpost Westelijke Mijnstreek", "0900-8880"),
    "ambulance": ("rav-zl", "Ambulancezorg Zuid-Limburg", "043-3556000"),
    "coordinator": ("topat", "TOPAT Transmuraal Palliatie Advies Team", "088-4598888"),
}
GP_ORG = f"Organization/{ORGANISATIONS['gp'][0]}"
HOME_CARE_ORG = f"Organization/{ORGANISATIONS['home-care'][0]}"
HOSPITAL_ORG = f"Organization/{ORGANISATIONS['hospital'][0]}"
OUT_OF_HOURS_ORG = f"Organization/{ORGANISATIONS['out-of-hours'][0]}"
AMBULANCE_ORG = f"Organization/{ORGANISATIONS['ambulance'][0]}"
COORDINATOR_ORG = f"Organization/{ORGANISATIONS['coordinator'][0]}"
#: Every organisation of the region, by role code.
ORG_OF_ROLE = {role: f"Organization/{org_id}" for role, (org_id, _, _) in ORGANISATIONS.items()}


def instant(when: datetime) -> str:
    """A FHIR instant in UTC, as the engine writes them."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def concept(coding: Coding) -> JSON:
    """A CodeableConcept with one coding."""
    found: JSON = {"system": coding.system, "code": coding.code}
    if coding.display:
        found["display"] = coding.display
    return {"coding": [found]}


# -- organisations, patient and care team ---------------------------------------------------------------

def organisations() -> list[JSON]:
    """Every Organization of the region."""
    return [{"resourceType": "Organization", "id": org_id, "active": True, "name": name,
             "telecom": [{"system": "phone", "value": phone}]}
            for org_id, name, phone in ORGANISATIONS.values()]


def patient(*, patient_id: str = PATIENT_ID, deceased: str | None = None,
            name: tuple[str, str] = ("Maria", "Janssen-Hermans")) -> JSON:
    """The patient, with the GP practice as generalPractitioner; ``deceased`` is a deceasedDateTime."""
    resource: JSON = {
        "resourceType": "Patient", "id": patient_id, "active": True,
        "name": [{"use": "official", "given": [name[0]], "family": name[1]}],
        "gender": "female", "birthDate": "1941-07-14",
        "generalPractitioner": [{"reference": GP_ORG}],
    }
    if deceased is not None:
        resource["deceasedDateTime"] = deceased
    return resource


def care_team(*, patient_id: str = PATIENT_ID, roles: tuple[str, ...] = tuple(ORGANISATIONS)) -> JSON:
    """The patient's CareTeam: one participant per role code, each an organisation of the region."""
    return {
        "resourceType": "CareTeam", "id": f"team-{patient_id}", "status": "active",
        "subject": {"reference": f"Patient/{patient_id}"},
        "participant": [{"role": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
                         "member": {"reference": ORG_OF_ROLE[role]}} for role in roles],
    }


def related_person(*, person_id: str = "rp-daughter", patient_id: str = PATIENT_ID) -> JSON:
    """The patient's daughter, her contact person and legal representative."""
    return {
        "resourceType": "RelatedPerson", "id": person_id, "active": True,
        "patient": {"reference": f"Patient/{patient_id}"},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                      "code": "DAUC", "display": "daughter"}]}],
        "name": [{"given": ["Els"], "family": "Janssen"}],
        "telecom": [{"system": "phone", "value": "06-12345678"}],
    }


def region(*, patient_id: str = PATIENT_ID, with_relative: bool = True) -> Iterator[JSON]:
    """The organisations, the patient, the care team and (by default) a relative, in the order to add them."""
    yield from organisations()
    yield patient(patient_id=patient_id)
    yield care_team(patient_id=patient_id)
    if with_relative:
        yield related_person(patient_id=patient_id)


def harness_with_region(*, start: datetime = START, patient_id: str = PATIENT_ID, with_relative: bool = True,
                        pathways: Sequence[type[Pathway]] = REGISTRY) -> PathwayHarness:
    """A harness with every palliative pathway (or ``pathways``) registered and the region added, at ``start``."""
    harness = PathwayHarness(pathways, start=start)
    for resource in region(patient_id=patient_id, with_relative=with_relative):
        harness.add(resource)
    return harness


# -- identification -------------------------------------------------------------------------------------

def _observation(resource_id: str, coding: Coding, patient_id: str, **value: Any) -> JSON:
    return {"resourceType": "Observation", "id": resource_id, "status": "final", "code": concept(coding),
            "subject": {"reference": f"Patient/{patient_id}"}, **value}


def surprise_question(answer: bool, *, resource_id: str = "sq-1", patient_id: str = PATIENT_ID) -> JSON:
    """'Would I be surprised if this patient died within 12 months?', answered ``answer``."""
    return _observation(resource_id, t.SURPRISE_QUESTION, patient_id, valueBoolean=answer)


def spict(positive: bool, *, resource_id: str = "spict-1", patient_id: str = PATIENT_ID) -> JSON:
    """A SPICT-NL screening result."""
    return _observation(resource_id, t.SPICT, patient_id, valueBoolean=positive)


def palliative_condition(*, resource_id: str = "cond-1", patient_id: str = PATIENT_ID) -> JSON:
    """A Condition 767503006 'limited life expectancy of approximately one year'."""
    return {"resourceType": "Condition", "id": resource_id, "subject": {"reference": f"Patient/{patient_id}"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": concept(t.LIMITED_LIFE_EXPECTANCY)}


def withdrawal(*, resource_id: str = "withdrawn-1", patient_id: str = PATIENT_ID) -> JSON:
    """The patient ends proactive care planning with Zorgpad (Observation pathway-withdrawn true)."""
    return _observation(resource_id, t.PATHWAY_WITHDRAWN, patient_id, valueBoolean=True)


# -- the PZP conversation and its record (IKNL) ---------------------------------------------------------

def acp_procedure(*, done: bool = True, resource_id: str = "acp-1", when: datetime | None = None,
                  patient_id: str = PATIENT_ID) -> JSON:
    """The IKNL ACP-Procedure 713603004: completed, or not-done when the patient is not ready yet."""
    resource: JSON = {"resourceType": "Procedure", "id": resource_id,
                      "status": "completed" if done else "not-done",
                      "code": concept(t.ADVANCE_CARE_PLANNING), "subject": {"reference": f"Patient/{patient_id}"},
                      "performer": [{"actor": {"reference": GP_ORG}}]}
    if when is not None:
        resource["performedDateTime"] = instant(when)
    if not done:
        resource["statusReason"] = {"text": "Patiënt is er nog niet aan toe"}
    return resource


def treatment_directive(treatment: Coding, *, permit: bool, resource_id: str, status: str = "active",
                        patient_id: str = PATIENT_ID) -> JSON:
    """An IKNL ACP-TreatmentDirective: a Consent with scope treatment and category 129125009, whose provision
    permits ("wel uitvoeren") or denies ("niet uitvoeren") ``treatment``."""
    return {
        "resourceType": "Consent", "id": resource_id, "status": status,
        "scope": concept(t.TREATMENT_SCOPE), "category": [concept(t.TREATMENT_DIRECTIVE)],
        "patient": {"reference": f"Patient/{patient_id}"},
        "provision": {"type": "permit" if permit else "deny", "code": [concept(treatment)],
                      "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                                      "code": "PAT"}]},
                                 "reference": {"reference": f"Patient/{patient_id}"}}]},
    }


def cpr_directive(*, resuscitate: bool, resource_id: str = "cpr-1", patient_id: str = PATIENT_ID) -> JSON:
    """The resuscitation directive (89666000): ``resuscitate`` False is 'niet reanimeren'."""
    return treatment_directive(t.CPR, permit=resuscitate, resource_id=resource_id, patient_id=patient_id)


def icu_directive(*, admit: bool, resource_id: str = "icu-1", patient_id: str = PATIENT_ID) -> JSON:
    """The ICU-admission directive (305351004)."""
    return treatment_directive(t.ICU_ADMISSION, permit=admit, resource_id=resource_id, patient_id=patient_id)


def sharing_consent(*, resource_id: str = "share-1", status: str = "active", patient_id: str = PATIENT_ID) -> JSON:
    """The patient's permission to share the agreements (Consent scope patient-privacy)."""
    return {"resourceType": "Consent", "id": resource_id, "status": status,
            "scope": concept(t.PRIVACY_SCOPE),
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{patient_id}"},
            "provision": {"type": "permit"}}


def sharing_form(*, agreed: bool = True, resource_id: str = "acp-form-1", patient_id: str = PATIENT_ID) -> JSON:
    """The IKNL ACP form (QuestionnaireResponse) with item 1201 'Patiënt gaat akkoord met het delen …'."""
    answer = concept(t.SHARING_AGREED)["coding"][0] if agreed else {"system": t.SNOMED, "code": "441889009",
                                                                      "display": "Niet akkoord"}
    return {
        "resourceType": "QuestionnaireResponse", "id": resource_id, "status": "completed",
        "questionnaire": "https://api.iknl.nl/docs/pzp/r4/Questionnaire/ACP-zib2020",
        "subject": {"reference": f"Patient/{patient_id}"},
        "item": [{"linkId": "12", "text": "Delen van de afspraken",
                  "item": [{"linkId": "1201", "text": "Patiënt gaat akkoord met het delen van de afspraken",
                            "answer": [{"valueCoding": answer}]}]}],
    }


def advance_directive(*, resource_id: str = "adr-1", patient_id: str = PATIENT_ID) -> JSON:
    """An IKNL ACP-AdvanceDirective: a written 'niet reanimeren' declaration (Consent scope adr, category acd)."""
    return {
        "resourceType": "Consent", "id": resource_id, "status": "active",
        "scope": concept(t.ADVANCE_DIRECTIVE_SCOPE), "category": [concept(t.ADVANCE_DIRECTIVE)],
        "patient": {"reference": f"Patient/{patient_id}"},
        "provision": {"code": [{"coding": [{"system": "urn:oid:2.16.840.1.113883.2.4.3.11.60.40.4.14.1",
                                            "code": "NR", "display": "Niet-reanimerenverklaring"}]}]},
    }


def policy_goal(*, resource_id: str = "goal-1", patient_id: str = PATIENT_ID) -> JSON:
    """The IKNL ACP-MedicalPolicyGoal: symptom relief, no life prolongation (713148004)."""
    goal = t.POLICY_GOALS[2]
    return {"resourceType": "Goal", "id": resource_id, "lifecycleStatus": "active",
            "category": [concept(t.ADVANCE_CARE_PLANNING)],
            "description": {"coding": [{"system": goal.system, "code": goal.code}],
                            "text": "Palliatief: symptoomverlichting, geen levensverlenging"},
            "subject": {"reference": f"Patient/{patient_id}"}}


def place_of_death(*, resource_id: str = "pod-1", patient_id: str = PATIENT_ID) -> JSON:
    """The preferred place of death (395091006): at home (264362003)."""
    return _observation(resource_id, t.PLACE_OF_DEATH, patient_id,
                        valueCodeableConcept={"coding": [{"system": t.SNOMED, "code": "264362003",
                                                          "display": "Thuis"}]})


def care_wish(text: str, *, resource_id: str = "wish-1", patient_id: str = PATIENT_ID) -> JSON:
    """A specific care wish (153851000146100) in the patient's own words."""
    return _observation(resource_id, t.SPECIFIC_WISHES, patient_id, valueString=text)


# -- transitions ----------------------------------------------------------------------------------------

def admission(*, start: datetime, status: str = "in-progress", end: datetime | None = None,
              resource_id: str = "adm-1", patient_id: str = PATIENT_ID) -> JSON:
    """An inpatient Encounter (class v3-ActCode IMP) at the hospital: in progress since ``start``, with a
    planned ``end`` while in progress, or finished at ``end``."""
    period: JSON = {"start": instant(start)}
    if end is not None:
        period["end"] = instant(end)
    return {"resourceType": "Encounter", "id": resource_id, "status": status,
            "class": concept(t.INPATIENT)["coding"][0],  # Encounter.class is a Coding in R4
            "subject": {"reference": f"Patient/{patient_id}"}, "period": period,
            "serviceProvider": {"reference": HOSPITAL_ORG}}


# -- dying phase and death ------------------------------------------------------------------------------

def dying_phase(started: bool, *, resource_id: str = "dying-1", patient_id: str = PATIENT_ID) -> JSON:
    """The clinician's decision that the dying phase started (True) or was stopped (False)."""
    return _observation(resource_id, t.DYING_PHASE, patient_id, valueBoolean=started)


def dying_evaluation(resource_id: str, *, result: str = "B", patient_id: str = PATIENT_ID) -> JSON:
    """One 4-hourly evaluation of the Zorgpad Stervensfase: B (goal achieved) or A (not, with an action)."""
    return _observation(resource_id, t.DYING_PHASE_EVALUATION, patient_id, valueString=result)


def deceased(when: datetime, *, patient_id: str = PATIENT_ID) -> JSON:
    """The patient, now with deceasedDateTime ``when``."""
    return patient(patient_id=patient_id, deceased=instant(when))


# -- looking at what the engine did ---------------------------------------------------------------------

def complete(harness: PathwayHarness, pathway_id: str, step_id: str, *, patient_ref: str = PATIENT) -> None:
    """The owner of the step's Task sets it to completed (in the patient's one enrolment in the pathway)."""
    harness.engine.task_status(harness.enrolment(pathway_id, patient_ref).id, step_id, "completed")


def sent(harness: PathwayHarness, kind: str | None = None, *,
         steps: tuple[str, ...] = ()) -> list[tuple[datetime, str, str, str | None]]:
    """``(when, kind, step, recipient)`` of every notice sent (letters to patients left out), in order."""
    return [(n.at, n.kind, n.step, n.recipient) for n in harness.notices(kind)
            if n.kind != "letter" and (not steps or n.step in steps)]


def step_of(task: JSON) -> str:
    """The step id of a Task the engine made."""
    found = Engine.step_of_task(task)
    assert found is not None, f"Task/{task.get('id')} was not made by the engine"
    return str(found[1])


def owner(task: JSON) -> str | None:
    """The organisation that owns a Task."""
    return (task.get("owner") or {}).get("reference")


def due(task: JSON) -> str | None:
    """A Task's deadline (restriction.period.end), as written."""
    return ((task.get("restriction") or {}).get("period") or {}).get("end")


def inputs(task: JSON) -> list[str]:
    """The references in a Task's input."""
    return [i["valueReference"]["reference"] for i in task.get("input", [])]


def summary(harness: PathwayHarness, task: JSON) -> JSON:
    """The handover summary (Composition) a Task carries."""
    (ref,) = [r for r in inputs(task) if r.startswith("Composition/")]
    (found,) = [c for c in harness.resources("Composition") if c["id"] == ref.split("/", 1)[1]]
    return dict(found)


def narrative(harness: PathwayHarness, task: JSON) -> str:
    """The XHTML narrative of the handover summary a Task carries."""
    return str(summary(harness, task)["text"]["div"])
