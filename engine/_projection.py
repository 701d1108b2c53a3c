"""Engine state as FHIR R4 JSON: CarePlan per enrolment, Task per step round, Communication per notice.

Plain dicts, built without fhir.resources: the engine's core does not depend on the FHIR layer.
Ids are derived from the enrolment, step and round, so applying the same outcome twice writes the
same resources.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from zorgpad.engine._dsl import Pathway, Step
from zorgpad.engine._model import EnrolmentState, NoticeKind
from zorgpad.engine._roles import ROLE_SYSTEM

JSON = dict[str, Any]
ZORGPAD = "https://zorgpad.nl/fhir"
BUSINESS_STATUS_SYSTEM = f"{ZORGPAD}/CodeSystem/step-business-status"
NOTICE_SYSTEM = f"{ZORGPAD}/CodeSystem/notice-kind"
STEP_RUN_SYSTEM = f"{ZORGPAD}/NamingSystem/step-run"
_NAMESPACE = uuid.UUID("6f1c1f43-7b0e-4d59-9d0a-3a5e9f0b7a11")


def instant(when: datetime) -> str:
    """A FHIR instant in UTC with a ``Z``."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def task_id(enrolment_id: str, step_id: str, iteration: int) -> str:
    """The id of the Task of one step round."""
    return str(uuid.uuid5(_NAMESPACE, f"task/{enrolment_id}/{step_id}/{iteration}"))


def communication_id(enrolment_id: str, step_id: str, iteration: int, kind: NoticeKind, seq: int) -> str:
    """The id of the Communication of one notice."""
    return str(uuid.uuid5(_NAMESPACE, f"communication/{enrolment_id}/{step_id}/{iteration}/{kind}/{seq}"))


def letter_id(enrolment_id: str, step_id: str, iteration: int) -> str:
    """The id of the letter (a Communication) of one step round."""
    return str(uuid.uuid5(_NAMESPACE, f"letter/{enrolment_id}/{step_id}/{iteration}"))


def summary_id(enrolment_id: str, step_id: str, iteration: int) -> str:
    """The id of the handover summary (a Composition) of one step round."""
    return str(uuid.uuid5(_NAMESPACE, f"summary/{enrolment_id}/{step_id}/{iteration}"))


def to_careplan(pathway: type[Pathway], state: EnrolmentState, task_refs: list[str]) -> JSON:
    """The CarePlan that shows an enrolment."""
    period: JSON = {"start": instant(state.enrolled_at)}
    if state.ended_at is not None:
        period["end"] = instant(state.ended_at)
    plan: JSON = {
        "resourceType": "CarePlan",
        "id": state.id,
        "instantiatesCanonical": [f"{pathway.url}|{pathway.version}"],
        "status": state.status.careplan_status,
        "intent": "plan",
        "title": pathway.title,
        "subject": {"reference": state.patient},
        "period": period,
        "created": instant(state.enrolled_at),
    }
    if pathway.description:
        plan["description"] = pathway.description
    if state.end_reason and state.ended_at is not None:
        plan["note"] = [{"text": state.end_reason, "time": instant(state.ended_at)}]
    if task_refs:
        plan["activity"] = [{"reference": {"reference": ref}} for ref in task_refs]
    return plan


def to_task(pathway: type[Pathway], step: Step, state: EnrolmentState, iteration: int, *, status: str,
            role: str, owner: str | None, requester: str | None, due_at: datetime | None,
            now: datetime, authored_on: datetime | None = None, business_status: str | None = None,
            reason: str | None = None, inputs: list[str] | None = None) -> JSON:
    """The Task of one step round at the organisation that owns it."""
    code: JSON = {"text": step.title}
    if step.code is not None:
        code["coding"] = [{"system": step.code.system, "code": step.code.code,
                           **({"display": step.code.display} if step.code.display else {})}]
    task: JSON = {
        "resourceType": "Task",
        "id": task_id(state.id, step.id, iteration),
        "identifier": [{"system": STEP_RUN_SYSTEM, "value": f"{state.id}/{step.id}/{iteration}"}],
        "basedOn": [{"reference": f"CarePlan/{state.id}"}],
        "status": status,
        "intent": "order",
        "code": code,
        "description": step.title,
        "for": {"reference": state.patient},
        "authoredOn": instant(authored_on or now),
        "lastModified": instant(now),
        "performerType": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
    }
    if business_status:
        task["businessStatus"] = {"coding": [{"system": BUSINESS_STATUS_SYSTEM, "code": business_status}],
                                  "text": business_status}
    if reason:
        task["statusReason"] = {"text": reason}
    if requester:
        task["requester"] = {"reference": requester}
    if owner:
        task["owner"] = {"reference": owner}
    if due_at is not None:
        task["restriction"] = {"period": {"end": instant(due_at)}}
    if inputs:
        task["input"] = [{"type": {"text": "content"}, "valueReference": {"reference": ref}} for ref in inputs]
    if iteration:
        task["groupIdentifier"] = {"system": STEP_RUN_SYSTEM, "value": f"{state.id}/{step.id}"}
    return task


def to_communication(state: EnrolmentState, step: Step, iteration: int, kind: NoticeKind, seq: int, *,
                     recipient: str | None, text: str, now: datetime) -> JSON:
    """The Communication that carries one reminder, escalation, handover notice or cancellation."""
    communication: JSON = {
        "resourceType": "Communication",
        "id": communication_id(state.id, step.id, iteration, kind, seq),
        "basedOn": [{"reference": f"CarePlan/{state.id}"}],
        "status": "preparation",
        "category": [{"coding": [{"system": NOTICE_SYSTEM, "code": kind.value}]}],
        "subject": {"reference": state.patient},
        "about": [{"reference": f"Task/{task_id(state.id, step.id, iteration)}"}],
        "payload": [{"contentString": text}],
    }
    if recipient:
        communication["recipient"] = [{"reference": recipient}]
    communication["extension"] = [{"url": f"{ZORGPAD}/StructureDefinition/created",
                                   "valueDateTime": instant(now)}]
    return communication


def to_letter(state: EnrolmentState, step: Step, iteration: int, *, text: str, recipients: list[str],
              now: datetime, language: str) -> JSON:
    """A letter to the patient (and relatives) as a Communication in preparation, for the owner to send."""
    letter: JSON = {
        "resourceType": "Communication",
        "id": letter_id(state.id, step.id, iteration),
        "basedOn": [{"reference": f"CarePlan/{state.id}"}],
        "status": "preparation",
        "category": [{"coding": [{"system": NOTICE_SYSTEM, "code": "letter"}]}],
        "subject": {"reference": state.patient},
        "about": [{"reference": f"Task/{task_id(state.id, step.id, iteration)}"}],
        "payload": [{"contentString": text}],
        "extension": [{"url": f"{ZORGPAD}/StructureDefinition/created", "valueDateTime": instant(now)},
                      {"url": f"{ZORGPAD}/StructureDefinition/language", "valueCode": language}],
    }
    if recipients:
        letter["recipient"] = [{"reference": ref} for ref in recipients]
    return letter


def to_summary(state: EnrolmentState, step: Step, iteration: int, *, html: str, author: str | None,
               now: datetime, entries: list[str], title: str) -> JSON:
    """A handover summary as a Composition whose narrative is the rendered letter."""
    div = html.strip()
    if not div.startswith("<div"):
        div = f'<div xmlns="http://www.w3.org/1999/xhtml">{div}</div>'
    composition: JSON = {
        "resourceType": "Composition",
        "id": summary_id(state.id, step.id, iteration),
        "text": {"status": "generated", "div": div},
        "status": "final",
        "type": {"coding": [{"system": f"{ZORGPAD}/CodeSystem/document-type", "code": "handover-summary"}],
                 "text": title},
        "subject": {"reference": state.patient},
        "date": instant(now),
        "author": [{"reference": author}] if author else [{"display": "Zorgpad"}],
        "title": title,
    }
    if entries:
        composition["section"] = [{"title": title, "entry": [{"reference": ref} for ref in entries]}]
    return composition
