"""The FHIR resources the benchmarks send: a small fictional region, IKNL-shaped ACP resources, messages."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from zorgpad.engine import Coding
from zorgpad.engine._projection import instant
from zorgpad.engine._roles import ROLE_SYSTEM
from zorgpad.pathways import terminology as t

JSON = dict[str, Any]
SENDER = "https://his.example.org/fhir"
MESSAGE_EVENT = {"system": "https://zorgpad.nl/bench/message-events", "code": "acp-recorded"}

#: role -> organisation id; every benchmark patient has this care team.
ORGANISATIONS: dict[str, str] = {
    "gp": "bench-gp", "home-care": "bench-homecare", "hospital": "bench-hospital",
    "out-of-hours": "bench-hap", "ambulance": "bench-ambulance", "coordinator": "bench-coordinator",
}
GP = ORGANISATIONS["gp"]


def _concept(coding: Coding) -> JSON:
    return {"coding": [{"system": coding.system, "code": coding.code}]}


def organisation(organisation_id: str) -> JSON:
    """An Organization of the region."""
    return {"resourceType": "Organization", "id": organisation_id, "active": True, "name": organisation_id}


def patient(patient_id: str) -> JSON:
    """A patient whose GP is the benchmark practice."""
    return {"resourceType": "Patient", "id": patient_id, "active": True,
            "name": [{"family": "Bench", "given": ["Pat"]}], "birthDate": "1940-01-01",
            "generalPractitioner": [{"reference": f"Organization/{GP}"}]}


def care_team(patient_id: str) -> JSON:
    """The patient's CareTeam: one organisation per care role."""
    return {"resourceType": "CareTeam", "id": f"{patient_id}-careteam", "status": "active",
            "subject": {"reference": f"Patient/{patient_id}"},
            "participant": [{"role": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
                             "member": {"reference": f"Organization/{org}"}} for role, org in ORGANISATIONS.items()]}


def surprise_question(patient_id: str, at: datetime) -> JSON:
    """The Surprise Question answered "no": enrols the patient in palliative-acp."""
    return {"resourceType": "Observation", "id": f"{patient_id}-sq", "status": "final",
            "code": _concept(t.SURPRISE_QUESTION), "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": instant(at), "valueBoolean": False}


def sharing_consent(patient_id: str, at: datetime) -> JSON:
    """A privacy Consent letting Zorgpad share the agreements (so a recorded ACP starts four handovers)."""
    return {"resourceType": "Consent", "id": f"{patient_id}-consent", "status": "active",
            "scope": _concept(t.PRIVACY_SCOPE),
            "category": [{"coding": [{"system": t.LOINC, "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{patient_id}"}, "dateTime": instant(at),
            "policy": [{"uri": "https://wetten.overheid.nl/"}]}


def acp_procedure(patient_id: str, at: datetime, *, with_id: bool = True) -> JSON:
    """The PZP conversation was held (IKNL ACP-Procedure, status completed)."""
    procedure: JSON = {"resourceType": "Procedure", "status": "completed", "code": _concept(t.ADVANCE_CARE_PLANNING),
                       "subject": {"reference": f"Patient/{patient_id}"},
                       "performedPeriod": {"start": instant(at), "end": instant(at + timedelta(hours=1))}}
    if with_id:
        procedure["id"] = f"{patient_id}-acp"
    return procedure


def acp_message(patient_id: str, at: datetime) -> JSON:
    """A ``$process-message`` Bundle from the GP system carrying the recorded ACP conversation."""
    header = {"resourceType": "MessageHeader", "id": str(uuid.uuid4()), "eventCoding": MESSAGE_EVENT,
              "source": {"name": "GP practice HIS", "endpoint": SENDER}}
    content = acp_procedure(patient_id, at, with_id=False)
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "message", "timestamp": instant(at),
            "entry": [{"fullUrl": f"urn:uuid:{header['id']}", "resource": header},
                      {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": content}]}
