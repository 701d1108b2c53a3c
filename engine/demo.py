"""A fictional South Limburg region for `zorgpad demo`: organisations, eight patients, their history.

Every name, address and phone number is invented (the phone numbers put a 0 after the area code, which no
Dutch subscriber number has). The patients stand at different points of the palliative pathways, and they
got there the way real patients would: their FHIR resources (IKNL-shaped, codes from
``zorgpad.pathways.terminology``) are taken in through :meth:`Engine.ingest`, the organisations set their
Tasks through :meth:`Engine.task_status`, and the timers fire through :meth:`Engine.tick`, all on one
back-dated, region-wide timeline that ends at ``now``. The database therefore holds the history (resource
versions, Tasks, reminders, escalations, the audit log) that led to each patient's current point.

Seeding is idempotent: when any demo patient already exists, :func:`seed` changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, func, select
from zorgpad.engine._criteria import Coding
from zorgpad.engine._durations import months
from zorgpad.engine._projection import instant
from zorgpad.engine._roles import ROLE_SYSTEM
from zorgpad.engine._states import EnrolmentStatus
from zorgpad.engine.clock import utc
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.accounts import create_account
from zorgpad.engine.store.resources import get_resource
from zorgpad.engine.store.tables import Timer
from zorgpad.engine.store.tokens import create_token
from zorgpad.pathways import settings  # composition root: the demo knows the shipped pathways
from zorgpad.pathways import terminology as t

JSON = dict[str, Any]

IKNL = "https://api.iknl.nl/docs/pzp/r4"
ACP_FORM = f"{IKNL}/Questionnaire/ACP-zib2020"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
CONTACT_RELATION = "urn:oid:2.16.840.1.113883.2.4.3.11.22.472"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
HOME_VISIT = {"system": t.ACT_CODE, "code": "HH", "display": "home health"}


@dataclass(frozen=True)
class Organisation:
    """One organisation of the region, and the care role it fills."""

    id: str
    name: str
    role: str
    phone: str
    city: str


ORGANISATIONS: tuple[Organisation, ...] = (
    Organisation("gp-heerlen", "Huisartsenpraktijk Heerlen-Centrum", "gp", "045 000 1101", "Heerlen"),
    Organisation("gp-sittard", "Huisartsenpraktijk De Baandert", "gp", "046 000 1102", "Sittard"),
    Organisation("gp-kerkrade", "Huisartsenpraktijk Kerkrade-West", "gp", "045 000 1103", "Kerkrade"),
    Organisation("homecare-wm", "Thuiszorg Westelijke Mijnstreek", "home-care", "046 000 2201", "Geleen"),
    Organisation("homecare-ozl", "Wijkverpleging Oostelijk Zuid-Limburg", "home-care", "045 000 2202", "Heerlen"),
    Organisation("hospital-zuyd", "Ziekenhuis Zuyd (fictief)", "hospital", "088 000 3301", "Heerlen"),
    Organisation("hap-zl", "Huisartsenpost Zuid-Limburg", "out-of-hours", "088 000 4401", "Heerlen"),
    Organisation("ambulance-zl", "Ambulancedienst Zuid-Limburg", "ambulance", "088 000 5501", "Maastricht"),
    Organisation("coordination-zl", "Netwerk Palliatieve Zorg Zuid-Limburg", "coordinator", "088 000 6601",
                 "Sittard"),
)
#: The organisations every demo patient shares (the GP practice and home care differ per patient).
REGIONAL = {"hospital": "hospital-zuyd", "out-of-hours": "hap-zl", "ambulance": "ambulance-zl",
            "coordinator": "coordination-zl"}


# -- what happens on the timeline --------------------------------------------------------------------


@dataclass(frozen=True)
class Ingest:
    """A partner system sends a FHIR resource."""

    resource: JSON


@dataclass(frozen=True)
class SetTask:
    """The owner of a step's Task sets its status (a FHIR Task.status code)."""

    pathway: str
    step: str
    status: str = "completed"


Action = Ingest | SetTask


@dataclass(frozen=True)
class DemoRegion:
    """What :func:`seed` did: the demo patients, and the tokens it made (none when already seeded)."""

    created: bool
    patients: list[str]
    #: ``"admin"`` or ``Organization/id`` -> the bearer token (stored only as a hash: shown once).
    tokens: dict[str, str] = field(default_factory=dict)
    #: Dashboard username -> its password (stored only as a hash: shown once).
    accounts: dict[str, str] = field(default_factory=dict)


def ago(*, days: float = 0, hours: float = 0) -> timedelta:
    """How long before ``now`` something happened."""
    return timedelta(days=days, hours=hours)


# -- IKNL-shaped resources ---------------------------------------------------------------------------


def _coding(coding: Coding) -> JSON:
    out: JSON = {"system": coding.system, "code": coding.code}
    if coding.display:
        out["display"] = coding.display
    return out


def _concept(coding: Coding, text: str | None = None) -> JSON:
    concept: JSON = {"coding": [_coding(coding)]}
    if text:
        concept["text"] = text
    return concept


def _observation(pid: str, key: str, code: Coding, at: datetime, **value: Any) -> JSON:
    return {"resourceType": "Observation", "id": f"{pid}-{key}", "status": "final", "code": _concept(code),
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": instant(at), **value}


def _surprise_question(pid: str, at: datetime) -> JSON:
    """NHG Surprise Question answered "no": the GP would not be surprised by death within 12 months."""
    return _observation(pid, "surprise-question", t.SURPRISE_QUESTION, at, valueBoolean=False)


def _spict(pid: str, at: datetime) -> JSON:
    """A positive SPICT-NL screening."""
    return _observation(pid, "spict", t.SPICT, at, valueBoolean=True)


def _limited_life_expectancy(pid: str, at: datetime) -> JSON:
    return {"resourceType": "Condition", "id": f"{pid}-palliative-phase", "subject": {"reference": f"Patient/{pid}"},
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed"}]},
            "code": _concept(t.LIMITED_LIFE_EXPECTANCY), "recordedDate": instant(at)}


def _acp_encounter(pid: str, key: str, at: datetime, gp: str) -> JSON:
    """IKNL ACP-Encounter: the conversation, at home (an inpatient class would look like a hospital stay)."""
    return {"resourceType": "Encounter", "id": f"{pid}-{key}-encounter",
            "meta": {"profile": [f"{IKNL}/StructureDefinition/ACP-Encounter"]},
            "status": "finished", "class": HOME_VISIT, "subject": {"reference": f"Patient/{pid}"},
            "serviceProvider": {"reference": f"Organization/{gp}"},
            "period": {"start": instant(at), "end": instant(at + timedelta(hours=1))},
            "reasonReference": [{"reference": f"Procedure/{pid}-{key}"}]}


def _acp_procedure(pid: str, key: str, at: datetime, *, ready: bool = True) -> JSON:
    """IKNL ACP-Procedure; ``ready=False`` records that the patient is not ready yet (status not-done)."""
    procedure: JSON = {
        "resourceType": "Procedure", "id": f"{pid}-{key}",
        "meta": {"profile": [f"{IKNL}/StructureDefinition/ACP-Procedure"]},
        "status": "completed" if ready else "not-done", "code": _concept(t.ADVANCE_CARE_PLANNING),
        "subject": {"reference": f"Patient/{pid}"}, "encounter": {"reference": f"Encounter/{pid}-{key}-encounter"},
        "performer": [{"actor": {"reference": f"Patient/{pid}"}}],
    }
    if ready:
        procedure["performedPeriod"] = {"start": instant(at), "end": instant(at + timedelta(hours=1))}
    else:
        procedure["statusReason"] = {"text": "Patiënt is er nog niet aan toe; later opnieuw aanbieden"}
    return procedure


def _treatment_directive(pid: str, treatment: Coding, permit: bool, at: datetime) -> JSON:
    return {
        "resourceType": "Consent", "id": f"{pid}-directive-{treatment.code}",
        "meta": {"profile": [f"{IKNL}/StructureDefinition/ACP-TreatmentDirective"]},
        "status": "active", "scope": _concept(t.TREATMENT_SCOPE), "category": [_concept(t.TREATMENT_DIRECTIVE)],
        "patient": {"reference": f"Patient/{pid}"}, "dateTime": instant(at),
        "policy": [{"uri": "https://wetten.overheid.nl/"}],
        "provision": {"type": "permit" if permit else "deny", "code": [_concept(treatment)],
                      "actor": [{"role": {"coding": [{"system": ROLE_CODE, "code": "CONSENTER"}]},
                                 "reference": {"reference": f"Patient/{pid}"}}]},
    }


def _policy_goal(pid: str, goal: Coding, at: datetime) -> JSON:
    return {"resourceType": "Goal", "id": f"{pid}-policy-goal",
            "meta": {"profile": [f"{IKNL}/StructureDefinition/ACP-Medical-Policy-Goal"]},
            "lifecycleStatus": "active", "category": [_concept(t.ADVANCE_CARE_PLANNING)],
            "description": _concept(goal), "subject": {"reference": f"Patient/{pid}"},
            "statusDate": instant(at)[:10]}


def _place_of_death(pid: str, place: Coding, at: datetime) -> JSON:
    return _observation(pid, "place-of-death", t.PLACE_OF_DEATH, at, valueCodeableConcept=_concept(place))


def _acp_form(pid: str, at: datetime, *, sharing: bool) -> JSON:
    """The IKNL ACP form (QuestionnaireResponse); section 8, item 1201 carries the sharing consent."""
    sharing_items: list[JSON] = [{"linkId": "1200", "text": "Heeft u patiënt geïnformeerd over eigen "
                                  "verantwoordelijkheid?", "answer": [{"valueCoding": {"code": "1", "display": "Ja"}}]}]
    if sharing:
        sharing_items.append({"linkId": "1201", "text": "Patiënt gaat akkoord met het delen van deze "
                              "behandelafspraken", "answer": [{"valueCoding": _coding(t.SHARING_AGREED)}]})
    return {
        "resourceType": "QuestionnaireResponse", "id": f"{pid}-acp-form", "questionnaire": ACP_FORM,
        "status": "completed", "subject": {"reference": f"Patient/{pid}"}, "authored": instant(at),
        "item": [
            {"linkId": "963", "text": "Datum van invullen", "answer": [{"valueDateTime": instant(at)}]},
            {"linkId": "83", "text": "4. Behandelgrenzen", "item": [
                {"linkId": "1410", "text": "Behandeling", "answer": [{"valueCoding": _coding(t.CPR)}]}]},
            {"linkId": "119", "text": "8. Informatie delen", "item": sharing_items},
        ],
    }


def _privacy_consent(pid: str, at: datetime) -> JSON:
    """The patient's permission to share the agreements, as a privacy Consent instead of the form item."""
    return {"resourceType": "Consent", "id": f"{pid}-sharing-consent", "status": "active",
            "scope": _concept(t.PRIVACY_SCOPE),
            "category": [{"coding": [{"system": t.LOINC, "code": "59284-0", "display": "Patient Consent"}]}],
            "patient": {"reference": f"Patient/{pid}"}, "dateTime": instant(at),
            "policy": [{"uri": "https://wetten.overheid.nl/"}],
            "provision": {"type": "permit", "purpose": [{"system": t.ACT_CODE, "code": "TREAT"}]}}


def _admission(pid: str, start: datetime, *, planned_end: datetime | None = None) -> JSON:
    period: JSON = {"start": instant(start)}
    if planned_end is not None:
        period["end"] = instant(planned_end)
    return {"resourceType": "Encounter", "id": f"{pid}-admission", "status": "in-progress",
            "class": _coding(t.INPATIENT), "subject": {"reference": f"Patient/{pid}"},
            "serviceProvider": {"reference": f"Organization/{REGIONAL['hospital']}"}, "period": period,
            "reasonCode": [{"text": "Dyspnoe bij longkanker"}]}


def _dying_phase(pid: str, at: datetime) -> JSON:
    return _observation(pid, "dying-phase", t.DYING_PHASE, at, valueBoolean=True)


def _evaluation(pid: str, n: int, at: datetime) -> JSON:
    return _observation(pid, f"evaluation-{n}", t.DYING_PHASE_EVALUATION, at, valueString="B")


def _related_person(pid: str, given: str, family: str, relation: str, phone: str) -> JSON:
    return {"resourceType": "RelatedPerson", "id": f"{pid}-naaste", "active": True,
            "patient": {"reference": f"Patient/{pid}"},
            "relationship": [{"coding": [{"system": ROLE_CODE, "code": relation}]},
                             {"coding": [{"system": CONTACT_RELATION, "code": "01",
                                          "display": "Eerste relatie/contactpersoon"}]}],
            "name": [{"given": [given], "family": family, "text": f"{given} {family}"}],
            "telecom": [{"system": "phone", "value": phone, "use": "mobile"}]}


# -- the patients ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoPatient:
    """A fictional patient and the point of the pathways their history brings them to."""

    id: str
    given: str
    family: str
    gender: str
    birth_date: str
    city: str
    gp: str
    home_care: str
    story: str
    relative: tuple[str, str, str] | None = None  # given name, family name, v3 RoleCode of the close relative

    @property
    def reference(self) -> str:
        """``Patient/id``."""
        return f"Patient/{self.id}"


DEMO_PATIENTS: tuple[DemoPatient, ...] = (
    DemoPatient("demo-jansen", "Maria", "Jansen", "female", "1941-03-12", "Heerlen", "gp-heerlen", "homecare-ozl",
                "just identified (Surprise Question: no); the GP has yet to mark her in the register",
                ("Peter", "Jansen", "SON")),
    DemoPatient("demo-smeets", "Harrie", "Smeets", "male", "1938-11-02", "Sittard", "gp-sittard", "homecare-wm",
                "invited ten weeks ago; the PZP conversation is overdue, reminded twice and escalated",
                ("Annie", "Smeets", "WIFE")),
    DemoPatient("demo-hendriks", "Truus", "Hendriks", "female", "1949-07-21", "Heerlen", "gp-heerlen",
                "homecare-ozl", "not ready for the conversation (a not-done Procedure); offered again in 3 months"),
    DemoPatient("demo-vanderberg", "Jo", "van der Berg", "male", "1945-01-30", "Geleen", "gp-sittard",
                "homecare-wm", "ACP recorded without consent to share: the four handovers wait for it",
                ("Els", "van der Berg", "DAU")),
    DemoPatient("demo-custers", "Lei", "Custers", "male", "1943-05-17", "Kerkrade", "gp-kerkrade", "homecare-ozl",
                "ACP recorded and shared with the out-of-hours post, the ambulance, the hospital and home care",
                ("Wiel", "Custers", "BRO")),
    DemoPatient("demo-bemelmans", "Sjef", "Bemelmans", "male", "1947-09-08", "Brunssum", "gp-heerlen",
                "homecare-ozl", "in hospital since yesterday; discharge planned, the discharge conversation is due",
                ("Ria", "Bemelmans", "WIFE")),
    DemoPatient("demo-wetzels", "Mia", "Wetzels", "female", "1939-12-01", "Landgraaf", "gp-kerkrade",
                "homecare-ozl", "in the dying phase at home, evaluated every 4 hours by home care",
                ("Jos", "Wetzels", "SON")),
    DemoPatient("demo-lemmens", "Jan", "Lemmens", "male", "1936-04-25", "Geleen", "gp-sittard", "homecare-wm",
                "died three weeks ago; everyone was told and the bereavement conversation is planned",
                ("Lies", "Lemmens", "WIFE")),
)

ACP = "palliative-acp"
TRANSMURAL = "transmural-discharge"
DYING = "dying-phase"
_SHARE_STEPS = ("share_out_of_hours", "share_ambulance", "share_hospital", "share_home_care")


class _History:
    """One patient's history against a fixed ``now``: (how long before now, what happened)."""

    def __init__(self, patient: DemoPatient, now: datetime) -> None:
        self.patient = patient
        self.pid = patient.id
        self.now = now
        self.events: list[tuple[timedelta, Action]] = []

    def at(self, before: timedelta) -> datetime:
        return self.now - before

    def ingest(self, before: timedelta, resource: JSON) -> None:
        self.events.append((before, Ingest(resource)))

    def task(self, before: timedelta, pathway: str, step: str, status: str = "completed") -> None:
        self.events.append((before, SetTask(pathway, step, status)))

    def registered_and_invited(self, before: timedelta, *, patz_until: timedelta = timedelta(0)) -> None:
        """The GP marks the patient in the register, sends the invitation, and lists the patient at every PaTz
        meeting (three days after each round opens) until ``patz_until`` before now."""
        self.task(before, ACP, "mark")
        self.task(before - ago(days=2), ACP, "invite")
        listed, last = self.at(before - ago(days=1)), self.at(patz_until)
        while listed <= last:
            self.task(self.now - listed, ACP, "patz")
            listed = months(settings.PATZ_MONTHS).after(listed) + timedelta(days=3)

    def acp_conversation(self, before: timedelta, *, sharing: str | None) -> None:
        """The PZP conversation and what it recorded; ``sharing`` is "form" (ACP form item 1201), "consent"
        (a privacy Consent) or None (the patient did not agree to share)."""
        when, pid = self.at(before), self.pid
        for resource in (
            _acp_encounter(pid, "acp", when, self.patient.gp), _acp_procedure(pid, "acp", when),
            _treatment_directive(pid, t.CPR, False, when), _treatment_directive(pid, t.ICU_ADMISSION, False, when),
            _treatment_directive(pid, t.HOSPITAL_ADMISSION, True, when), _policy_goal(pid, t.POLICY_GOALS[2], when),
            _place_of_death(pid, Coding(t.SNOMED, "264362003", "thuis"), when),
            _acp_form(pid, when, sharing=sharing == "form"),
        ):
            self.ingest(before, resource)
        if sharing == "consent":
            self.ingest(before, _privacy_consent(pid, when))

    def shared_with_everyone(self, before: timedelta) -> None:
        """Every receiver accepts the handover of the agreements, then completes its Task."""
        for step in _SHARE_STEPS:
            self.task(before, ACP, step, "accepted")
            self.task(before - ago(hours=2), ACP, step)

    def follow_up_conversation(self, before: timedelta) -> None:
        """A follow-up PZP conversation (it completes the review) that changes one directive: the patient no
        longer wants to be admitted to hospital, so the agreements are shared again."""
        when, pid = self.at(before), self.pid
        self.ingest(before, _acp_encounter(pid, "acp-2", when, self.patient.gp))
        self.ingest(before, _acp_procedure(pid, "acp-2", when))
        self.ingest(before, _treatment_directive(pid, t.HOSPITAL_ADMISSION, False, when))

    def dying_phase(self, started: timedelta, *, evaluated_until: timedelta) -> None:
        """The dying phase starts; home care records an evaluation a quarter of an hour into every round."""
        self.ingest(started, _dying_phase(self.pid, self.at(started)))
        evaluated, last, n = self.at(started) + timedelta(minutes=30), self.at(evaluated_until), 1
        while evaluated <= last:
            self.ingest(self.now - evaluated, _evaluation(self.pid, n, evaluated))
            evaluated += timedelta(hours=settings.DYING_EVALUATION_HOURS, minutes=15)
            n += 1

    def identified(self, before: timedelta, finding: Callable[[str, datetime], JSON]) -> None:
        self.ingest(before, finding(self.pid, self.at(before)))


def _just_identified(h: _History) -> None:
    h.identified(ago(days=2), _surprise_question)


def _conversation_overdue(h: _History) -> None:
    h.identified(ago(days=75), _surprise_question)
    h.registered_and_invited(ago(days=70))


def _not_ready(h: _History) -> None:
    h.identified(ago(days=45), _spict)
    h.registered_and_invited(ago(days=42))
    h.ingest(ago(days=20), _acp_encounter(h.pid, "acp", h.at(ago(days=20)), h.patient.gp))
    h.ingest(ago(days=20), _acp_procedure(h.pid, "acp", h.at(ago(days=20)), ready=False))


def _no_sharing_consent(h: _History) -> None:
    h.identified(ago(days=90), _surprise_question)
    h.registered_and_invited(ago(days=88))
    h.acp_conversation(ago(days=50), sharing=None)


def _fully_shared(h: _History) -> None:
    h.identified(ago(days=150), _limited_life_expectancy)
    h.registered_and_invited(ago(days=148))
    h.acp_conversation(ago(days=120), sharing="form")
    h.shared_with_everyone(ago(days=119))


def _in_hospital(h: _History) -> None:
    h.identified(ago(days=210), _surprise_question)
    h.registered_and_invited(ago(days=205))
    h.acp_conversation(ago(days=190), sharing="consent")
    h.shared_with_everyone(ago(days=189))
    admitted = h.at(ago(hours=30))
    h.ingest(ago(hours=30), _admission(h.pid, admitted))
    h.task(ago(hours=8), TRANSMURAL, "start_handover")
    h.ingest(ago(hours=6), _admission(h.pid, admitted, planned_end=h.now + timedelta(hours=20)))


def _dying(h: _History) -> None:
    h.identified(ago(days=100), _surprise_question)
    h.registered_and_invited(ago(days=98))
    h.acp_conversation(ago(days=80), sharing="form")
    h.shared_with_everyone(ago(days=79))
    h.dying_phase(ago(hours=9), evaluated_until=ago(hours=1))
    h.task(ago(hours=7), DYING, "arrange")


def _deceased(h: _History) -> None:
    h.identified(ago(days=260), _surprise_question)
    h.registered_and_invited(ago(days=255), patz_until=ago(days=22))
    h.acp_conversation(ago(days=240), sharing="form")
    h.shared_with_everyone(ago(days=239))
    h.follow_up_conversation(ago(days=50))
    h.shared_with_everyone(ago(days=49))
    h.dying_phase(ago(days=23), evaluated_until=ago(days=21, hours=1))
    h.task(ago(days=22.75), DYING, "arrange")
    h.ingest(ago(days=21), {**_patient_resource(h.patient), "deceasedDateTime": instant(h.at(ago(days=21)))})


_HISTORIES: dict[str, Callable[[_History], None]] = {
    "demo-jansen": _just_identified,
    "demo-smeets": _conversation_overdue,
    "demo-hendriks": _not_ready,
    "demo-vanderberg": _no_sharing_consent,
    "demo-custers": _fully_shared,
    "demo-bemelmans": _in_hospital,
    "demo-wetzels": _dying,
    "demo-lemmens": _deceased,
}


def _patient_resource(p: DemoPatient) -> JSON:
    return {"resourceType": "Patient", "id": p.id, "active": True,
            "name": [{"use": "official", "given": [p.given], "family": p.family, "text": f"{p.given} {p.family}"}],
            "gender": p.gender, "birthDate": p.birth_date,
            "address": [{"use": "home", "city": p.city, "country": "NL"}],
            "generalPractitioner": [{"reference": f"Organization/{p.gp}"}]}


def _careteam(p: DemoPatient) -> JSON:
    members = [(p.gp, "gp"), (p.home_care, "home-care"), *((org, role) for role, org in REGIONAL.items())]
    return {"resourceType": "CareTeam", "id": f"{p.id}-careteam", "status": "active", "name": "Palliatief team",
            "subject": {"reference": p.reference},
            "participant": [{"role": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
                             "member": {"reference": f"Organization/{org}"}} for org, role in members]}


def _organisation(org: Organisation) -> JSON:
    return {"resourceType": "Organization", "id": org.id, "active": True, "name": org.name,
            "telecom": [{"system": "phone", "value": org.phone, "use": "work"}],
            "address": [{"use": "work", "city": org.city, "country": "NL"}]}


def timeline(now: datetime) -> list[tuple[datetime, str, Action]]:
    """The region's history, oldest first: (when, patient reference, what happened).

    Each patient's record (Patient, CareTeam, close relative) arrives a day before the first finding.
    """
    events: list[tuple[datetime, int, str, Action]] = []
    for index, patient in enumerate(DEMO_PATIENTS):
        history = _History(patient, now)
        _HISTORIES[patient.id](history)
        start = max(before for before, _ in history.events) + ago(days=1)
        record: list[tuple[timedelta, Action]] = [(start, Ingest(_patient_resource(patient))),
                                                  (start, Ingest(_careteam(patient)))]
        if patient.relative is not None:
            given, family, relation = patient.relative
            record.append((start, Ingest(_related_person(patient.id, given, family, relation,
                                                         f"06 000 {index + 1:02d}{index + 1:02d}"))))
        for before, action in record + history.events:
            events.append((now - before, len(events), patient.reference, action))
    events.sort(key=lambda e: (e[0], e[1]))
    return [(at, patient, action) for at, _, patient, action in events]


# -- seeding -----------------------------------------------------------------------------------------


def _next_timer(engine: Engine) -> datetime | None:
    due = engine.db.run(lambda s: s.exec(select(func.min(Timer.due_at))).one())
    return utc(due) if due is not None else None


def _advance(engine: Engine, until: datetime) -> None:
    """Fire every timer due by ``until``, each at its own moment (as the embedded runner would have)."""
    while (due := _next_timer(engine)) is not None and due <= until:
        engine.tick(due)


def _enrolment_id(engine: Engine, patient: str, pathway: str) -> str:
    for state in engine.enrolments_of(patient):
        if state.pathway_id == pathway and state.status is EnrolmentStatus.ACTIVE:
            return state.id
    raise LookupError(f"demo: {patient} has no active {pathway} enrolment")


def _already_seeded(engine: Engine) -> bool:
    ids = [p.id for p in DEMO_PATIENTS]
    return engine.db.run(lambda s: any(get_resource(s, "Patient", pid) is not None for pid in ids))


def _tokens(session: Session, now: datetime) -> dict[str, str]:
    tokens = {"admin": create_token(session, now, admin=True, name="demo admin")}
    for org in ORGANISATIONS:
        ref = f"Organization/{org.id}"
        tokens[ref] = create_token(session, now, organisation=ref, name=f"demo {org.name}")
    return tokens


#: The demo's dashboard account: a care coordinator of the regional network.
DEMO_COORDINATOR = "coordinator"


def _accounts(session: Session, now: datetime) -> dict[str, str]:
    password = secrets.token_urlsafe(12)
    create_account(session, now, DEMO_COORDINATOR, password, organisation=f"Organization/{REGIONAL['coordinator']}",
                   display_name="Demo coördinator")
    return {DEMO_COORDINATOR: password}


def _run(engine: Engine, at: datetime, patient: str, action: Action) -> None:
    if isinstance(action, Ingest):
        engine.ingest(action.resource, now=at)
    else:
        engine.task_status(_enrolment_id(engine, patient, action.pathway), action.step, action.status, now=at)


def seed(engine: Engine, now: datetime) -> DemoRegion:
    """Write the demo region with its history up to ``now``; return the patients, new tokens and account.

    Idempotent: if any demo patient exists already, nothing is written and no tokens or accounts are made.
    """
    now = utc(now)
    patients = [p.reference for p in DEMO_PATIENTS]
    if _already_seeded(engine):
        return DemoRegion(created=False, patients=patients)
    events = timeline(now)
    first = events[0][0] - timedelta(days=1)
    for org in ORGANISATIONS:
        engine.ingest(_organisation(org), now=first)
    for at, patient, action in events:
        _advance(engine, at)
        _run(engine, at, patient, action)
    _advance(engine, now)
    tokens = engine.db.run(lambda s: _tokens(s, now))
    accounts = engine.db.run(lambda s: _accounts(s, now))
    return DemoRegion(created=True, patients=patients, tokens=tokens, accounts=accounts)

