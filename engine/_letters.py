"""The data a letter template sees: plain dicts from the store, gathered in the writing transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session
from zorgpad.engine._assign import resolve
from zorgpad.engine._dsl import Pathway, Step
from zorgpad.engine._model import EnrolmentState
from zorgpad.engine._roles import STANDARD_ROLES
from zorgpad.engine.render.letters import display
from zorgpad.engine.store.resources import get_resource, prefetch_resources, resources_of_patient


def letter_context(session: Session, pathway: type[Pathway], state: EnrolmentState, step: Step,
                   now: datetime) -> dict[str, Any]:
    """Everything a letter may mention.

    ``patient`` (the Patient resource) and ``patient_name``; ``related_persons`` (RelatedPerson resources);
    ``organisations`` by role code (``{"reference", "name", "telecom"}``, empty when nobody fills the role);
    ``resources`` by criterion name (the pathway's criteria and the step's handover content, current
    versions only); ``step``, ``pathway``, ``due`` and ``now``.
    """
    patient_id = state.patient.split("/", 1)[1]
    stored = get_resource(session, "Patient", patient_id)
    patient: dict[str, Any] = dict(stored.content) if stored is not None and not stored.deleted else {}
    criteria = dict(pathway.criteria())
    if step.handover is not None:
        criteria.update({c.name: c for c in step.handover.content})
    types = {c.resource_type for c in criteria.values()} | {"RelatedPerson"}
    own = list(resources_of_patient(session, state.patient, types))
    resources: dict[str, list[dict[str, Any]]] = {name: [] for name in criteria}
    for resource in own:
        for name, criterion in criteria.items():
            if criterion.matches(resource):
                resources[name].append(resource)
    owners = {role.code: resolve(session, state.patient, role.code).owner if role.code else None
              for role in STANDARD_ROLES + pathway.roles}
    prefetch_resources(session, "Organization", [o.split("/", 1)[1] for o in owners.values() if o])
    organisations: dict[str, dict[str, Any]] = {}
    for role in STANDARD_ROLES + pathway.roles:
        owner = owners[role.code]
        org = get_resource(session, "Organization", owner.split("/", 1)[1]) if owner else None
        content: Mapping[str, Any] = org.content if org is not None else {}
        organisations[role.code] = {"reference": owner or "", "name": str(content.get("name") or owner or ""),
                                    "telecom": ", ".join(str(t.get("value")) for t in content.get("telecom", [])
                                                         if isinstance(t, Mapping) and t.get("value"))}
    related = [r for r in own if r.get("resourceType") == "RelatedPerson"]
    content_refs = sorted({f"{r['resourceType']}/{r['id']}" for name, items in resources.items()
                           for r in items if step.handover is not None
                           and name in {c.name for c in step.handover.content}})
    run = state.steps.get(step.id)
    return {
        "patient": patient,
        "patient_name": display((patient.get("name") or [None])[0]) or state.patient,
        "related_persons": related,
        "recipients": [state.patient] + [f"RelatedPerson/{r['id']}" for r in related],
        "organisations": organisations,
        "resources": resources,
        "content_refs": content_refs,
        "step": step.title,
        "pathway": pathway.title,
        "due": run.due_at if run is not None else None,
        "now": now,
        "summary_title": step.title,
    }
