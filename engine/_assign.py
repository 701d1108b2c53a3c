"""Which organisation fills a care role for a patient.

A role resolves from the patient's own record: the GP role from ``Patient.generalPractitioner``, every
role from the patient's CareTeam participants whose ``role`` carries the role code in
:data:`~zorgpad.engine._roles.ROLE_SYSTEM`. A role nobody fills goes to the coordinator, with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session
from zorgpad.engine._criteria import codings_at
from zorgpad.engine._roles import COORDINATOR, GP, ROLE_SYSTEM
from zorgpad.engine.store.resources import get_resource, read_cache, resources_of_patient

#: Organisation that gets steps nobody else fills, when no CareTeam names a coordinator.
COORDINATOR_ENV = "ZORGPAD_COORDINATOR_ORG"


@dataclass(frozen=True)
class Assignment:
    """The organisation a role resolved to (None if none), and why, when it was not the role itself."""

    owner: str | None
    note: str | None = None


def _org_of(session: Session, reference: str | None) -> str | None:
    if not reference:
        return None
    if reference.startswith("Organization/"):
        return reference
    if reference.startswith("PractitionerRole/"):
        stored = get_resource(session, "PractitionerRole", reference.split("/", 1)[1])
        if stored is not None and not stored.deleted:
            org = (stored.content.get("organization") or {}).get("reference")
            return org if isinstance(org, str) and org.startswith("Organization/") else None
    return None


#: What :func:`_careteam_orgs` reads; a write of any of these types in the transaction forgets its result.
_TEAM_SOURCES = frozenset({"CareTeam", "PractitionerRole"})


def _careteam_orgs(session: Session, patient: str) -> dict[str, str]:
    """Role code → organisation from the patient's CareTeams, read once per patient per transaction."""
    cache = read_cache(session)
    key = (_TEAM_SOURCES, ("careteam-orgs", patient))
    if key not in cache:
        cache[key] = _read_careteam_orgs(session, patient)
    found: dict[str, str] = cache[key]
    return found


def _read_careteam_orgs(session: Session, patient: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for team in resources_of_patient(session, patient, {"CareTeam"}):
        if team.get("status") not in (None, "active", "proposed"):
            continue
        for participant in team.get("participant") or []:
            if not isinstance(participant, Mapping):
                continue
            org = None
            for element in ("onBehalfOf", "member"):
                ref = (participant.get(element) or {}).get("reference")
                org = org or _org_of(session, ref if isinstance(ref, str) else None)
            if org is None:
                continue
            for coding in codings_at(participant, "role"):
                if coding.system == ROLE_SYSTEM:
                    found.setdefault(coding.code, org)
    return found


def resolve(session: Session, patient: str, role: str) -> Assignment:
    """The organisation that fills ``role`` for ``patient``, else the coordinator, with a note."""
    team = _careteam_orgs(session, patient)
    if role in team:
        return Assignment(team[role])
    if role == GP.code:
        stored = get_resource(session, "Patient", patient.split("/", 1)[1])
        if stored is not None and not stored.deleted:
            for gp in stored.content.get("generalPractitioner") or []:
                org = _org_of(session, (gp or {}).get("reference"))
                if org:
                    return Assignment(org)
    coordinator = team.get(COORDINATOR.code) or os.environ.get(COORDINATOR_ENV) or None
    if role == COORDINATOR.code:
        return Assignment(coordinator, None if coordinator else "no coordinator organisation is known")
    return Assignment(coordinator, f"no organisation fills role {role!r} for {patient}; "
                                   "given to the coordinator")


def patient_label(session: Session, patient: str) -> str:
    """A short human label for ``patient`` for notices: the name if known, else the reference."""
    stored = get_resource(session, "Patient", patient.split("/", 1)[1])
    content: Any = stored.content if stored is not None else {}
    for name in content.get("name") or []:
        if isinstance(name, Mapping):
            text = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip()
            if text:
                return str(text)
    return patient
