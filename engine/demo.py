"""A fictional South Limburg region for `zorgpad demo`: organisations, patients and their care teams.

Every name is invented. Patients are enrolled in every registered pathway so the demo shows steps
at different points.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from zorgpad.engine._roles import ROLE_SYSTEM
from zorgpad.engine.runtime import Engine

ORGANISATIONS = {
    "hap-ozl": "Huisartsenpost Oostelijk Zuid-Limburg",
    "gp-heerlen": "Huisartsenpraktijk Heerlen-Centrum",
    "gp-sittard": "Huisartsenpraktijk De Baandert, Sittard",
    "homecare-wm": "Thuiszorg Westelijke Mijnstreek",
    "hospital-zuyd": "Ziekenhuis Zuyd (fictief)",
    "ambulance-zl": "Ambulancedienst Zuid-Limburg",
    "coordination-wm": "Netwerk Palliatieve Zorg Westelijke Mijnstreek",
}

PATIENTS = [
    ("demo-jansen", "Maria", "Jansen", "1941-03-12", "gp-heerlen"),
    ("demo-smeets", "Harrie", "Smeets", "1938-11-02", "gp-sittard"),
    ("demo-hendriks", "Truus", "Hendriks", "1949-07-21", "gp-heerlen"),
    ("demo-vanderberg", "Jo", "van der Berg", "1945-01-30", "gp-sittard"),
]

TEAM = [("homecare-wm", "home-care"), ("hospital-zuyd", "hospital"), ("hap-ozl", "out-of-hours"),
        ("ambulance-zl", "ambulance"), ("coordination-wm", "coordinator")]


def _careteam(patient_id: str, gp: str) -> dict[str, Any]:
    members = [(gp, "gp"), *TEAM]
    return {
        "resourceType": "CareTeam", "id": f"team-{patient_id}", "status": "active",
        "name": "Palliatief team", "subject": {"reference": f"Patient/{patient_id}"},
        "participant": [{"role": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
                         "member": {"reference": f"Organization/{org}"}} for org, role in members],
    }


def seed(engine: Engine, now: datetime) -> list[str]:
    """Write the demo region; return the patient references. Safe to run twice."""
    for org_id, name in ORGANISATIONS.items():
        engine.ingest({"resourceType": "Organization", "id": org_id, "active": True, "name": name}, now=now)
    patients = []
    for index, (pid, given, family, birth, gp) in enumerate(PATIENTS):
        engine.ingest({"resourceType": "Patient", "id": pid, "active": True,
                       "name": [{"given": [given], "family": family, "text": f"{given} {family}"}],
                       "birthDate": birth, "generalPractitioner": [{"reference": f"Organization/{gp}"}]},
                      now=now)
        engine.ingest(_careteam(pid, gp), now=now)
        patients.append(f"Patient/{pid}")
        for pathway in engine.registry.latest():
            if not engine.enrolments_of(f"Patient/{pid}"):
                engine.enrol(pathway.id, f"Patient/{pid}", now=now - timedelta(days=20 * index))
    return patients
