"""Handover notices to the receiving organisation's endpoints: notified pull and FHIR messages.

When the engine queues a handover notice (outbox channel ``notify``, payload ``handover: true``), the
notice first lands in the Zorgpad inbox (its Communication is completed), and then every active
``Endpoint`` whose ``managingOrganization`` is the receiver gets it, by ``Endpoint.connectionType``:

=================================================  ==================================================
connectionType                                     what is sent
=================================================  ==================================================
``notified-pull`` (:data:`NOTIFIED_PULL`,          an **empty** ``POST {address}/{task-id}`` (Nictiz
Zorgpad's code system)                             eOverdracht, Nuts eOverdracht bolt); the receiver
                                                   reads the Task and its ``input`` with its own token
``hl7-fhir-msg`` (HL7 endpoint-connection-type)    ``POST {address}`` of a FHIR **message** Bundle
                                                   (:func:`handover_message`): ``MessageHeader`` with
                                                   event :data:`HANDOVER_EVENT` and focus the Task,
                                                   then the Task, the notice's Communication and the
                                                   Patient; the address is the receiver's
                                                   ``$process-message`` URL
``hl7-fhir-rest`` (HL7)                            as ``notified-pull``, but only when the receiver
                                                   has neither of the two above
=================================================  ==================================================

The receiver is also told of every later change of its Task that it did not make itself (outbox channel
``task-changed``; eOverdracht sends a notification on every Task change): it becomes overdue or escalated,
is cancelled or marked not applicable, gets a new due date, or is reassigned (then the organisation that
owned it is told as well). The same endpoints get the same requests; a message's event is
:data:`TASK_CHANGED_EVENT` and it carries the Task and the Patient.

Every request carries ``Idempotency-Key: <the outbox item's key>`` and the ``Endpoint.header`` lines
(e.g. the receiver's ``Authorization``). A message Bundle's ``id`` and its ``MessageHeader.id`` are
derived from that key, so a resend is the same message and a receiver following FHIR's reliable
messaging (as Zorgpad's own ``$process-message`` does) processes it once. The receiver's answer to a
message is read: a response message with ``response.code`` ``ok`` (or a 2xx without a message body)
is delivered, ``transient-error`` is retried, ``fatal-error`` dead-letters the notice at once, since
the same message cannot succeed. When one of several endpoints fails, the retry sends to all of them
again, with the same key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import httpx
from sqlmodel import Session, col, select
from zorgpad.engine._apply import TASK_CHANGED_CHANNEL
from zorgpad.engine._projection import instant
from zorgpad.engine.outbox import DeliveryError, Transport
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.resources import get_resource
from zorgpad.engine.store.tables import OutboxItem, SearchReference, StoredResource
from zorgpad.fhir.transports import HTTPSender

#: Zorgpad's code system for Endpoint.connectionType.
CONNECTION_TYPE_SYSTEM = "https://zorgpad.nl/fhir/CodeSystem/endpoint-connection-type"
#: ``Endpoint.connectionType`` of an eOverdracht-style notification endpoint (empty POST to ``/{task-id}``).
NOTIFIED_PULL = {"system": CONNECTION_TYPE_SYSTEM, "code": "notified-pull"}
#: The HL7 code system for Endpoint.connectionType (``hl7-fhir-msg``, ``hl7-fhir-rest``).
HL7_CONNECTION_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
#: ``Endpoint.connectionType`` of a FHIR messaging endpoint.
FHIR_MESSAGING = {"system": HL7_CONNECTION_TYPE_SYSTEM, "code": "hl7-fhir-msg"}
#: Zorgpad's code system for MessageHeader.eventCoding, and the event of a handover notice.
MESSAGE_EVENT_SYSTEM = "https://zorgpad.nl/fhir/CodeSystem/message-event"
HANDOVER_EVENT = {"system": MESSAGE_EVENT_SYSTEM, "code": "handover-notice", "display": "Handover notice"}
#: The event of a message telling a receiver that its handover Task changed.
TASK_CHANGED_EVENT = {"system": MESSAGE_EVENT_SYSTEM, "code": "task-changed", "display": "Handover Task changed"}
FHIR_JSON = "application/fhir+json"
#: Headers Zorgpad sets itself; an ``Endpoint.header`` line naming one of them is ignored.
_OWN_HEADERS = frozenset({"idempotency-key", "content-type", "content-length", "host", "accept"})
#: Where the ids of a notice's message and MessageHeader come from (uuid5 of the idempotency key).
_MESSAGE_IDS = uuid.UUID("3c8d7e8a-6a55-4c1e-9a43-2f4f3c1b7a10")


@dataclass(frozen=True)
class PartnerEndpoint:
    """One place a receiver wants its handover notices: ``kind`` is ``pull`` or ``message``."""

    kind: str
    address: str
    headers: tuple[tuple[str, str], ...] = ()


def _is(coding: Any, system: str, code: str) -> bool:
    return isinstance(coding, Mapping) and coding.get("code") == code and coding.get("system") in (system, None)


def _headers(endpoint: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    lines = [line for line in endpoint.get("header") or [] if isinstance(line, str)]
    pairs = [(name.strip(), value.strip()) for name, sep, value in (line.partition(":") for line in lines) if sep]
    return tuple((name, value) for name, value in pairs if name and name.lower() not in _OWN_HEADERS)


def handover_endpoints(session: Session, organisation: str) -> list[PartnerEndpoint]:
    """The active endpoints of ``organisation`` (``Organization/id``) that get handover notices, by id."""
    endpoint_ids = select(SearchReference.resource_id).where(
        SearchReference.resource_type == "Endpoint", SearchReference.param == "organization",
        SearchReference.target == organisation)
    rows = session.exec(select(StoredResource).where(
        StoredResource.resource_type == "Endpoint", col(StoredResource.id).in_(endpoint_ids),
        col(StoredResource.deleted).is_(False)).order_by(col(StoredResource.id))).all()
    active = [r.content for r in rows if r.content.get("status") == "active"
              and isinstance(r.content.get("address"), str)]

    def having(system: str, code: str, kind: str) -> list[PartnerEndpoint]:
        return [PartnerEndpoint(kind, e["address"], _headers(e)) for e in active
                if _is(e.get("connectionType"), system, code)]

    chosen = having(CONNECTION_TYPE_SYSTEM, "notified-pull", "pull") + having(
        HL7_CONNECTION_TYPE_SYSTEM, "hl7-fhir-msg", "message")
    return chosen or having(HL7_CONNECTION_TYPE_SYSTEM, "hl7-fhir-rest", "pull")


def notification_addresses(session: Session, organisation: str) -> list[str]:
    """The notified-pull addresses of ``organisation``, by Endpoint id."""
    return [e.address for e in handover_endpoints(session, organisation) if e.kind == "pull"]


def message_ids(idempotency_key: str) -> tuple[str, str]:
    """The ``Bundle.id`` and ``MessageHeader.id`` of the message for one outbox item: the same on a resend."""
    return (str(uuid.uuid5(_MESSAGE_IDS, f"bundle:{idempotency_key}")),
            str(uuid.uuid5(_MESSAGE_IDS, f"header:{idempotency_key}")))


def handover_message(session: Session, item: OutboxItem, destination: str, base_url: str | None,
                     now: datetime) -> dict[str, Any]:
    """The FHIR message Bundle of the handover notice or Task change ``item`` for the endpoint at
    ``destination``."""
    payload = item.payload
    entries: list[dict[str, Any]] = []
    changed = item.channel == TASK_CHANGED_CHANNEL
    keys = ("task", "patient") if changed else ("task", "communication", "patient")
    for reference in (str(payload.get(key) or "") for key in keys):
        rtype, _, rid = reference.partition("/")
        stored = get_resource(session, rtype, rid) if rtype and rid else None
        if stored is None or stored.deleted:
            raise DeliveryError(f"handover notice {item.idempotency_key}: {reference} does not exist",
                                permanent=True)
        full_url = f"{base_url}/{rtype}/{rid}" if base_url else f"urn:uuid:{uuid.uuid5(_MESSAGE_IDS, reference)}"
        entries.append({"fullUrl": full_url, "resource": stored.content})
    bundle_id, header_id = message_ids(item.idempotency_key)
    header = {
        "resourceType": "MessageHeader", "id": header_id,
        "eventCoding": TASK_CHANGED_EVENT if changed else HANDOVER_EVENT,
        "destination": [{"endpoint": destination, "receiver": {"reference": str(item.target)}}],
        "source": {"name": "Zorgpad", "software": "Zorgpad", "endpoint": base_url or "urn:zorgpad"},
        "focus": [{"reference": str(payload["task"])}],
    }
    return {"resourceType": "Bundle", "id": bundle_id, "type": "message", "timestamp": instant(now),
            "entry": [{"fullUrl": f"urn:uuid:{header_id}", "resource": header}, *entries]}


def check_response(response: httpx.Response, header_id: str) -> None:
    """A :class:`DeliveryError` unless the receiver's answer to a message says it was processed."""
    try:
        answer = response.json()
    except ValueError:
        return  # a 2xx without a message body: accepted
    if not isinstance(answer, dict) or answer.get("resourceType") != "Bundle":
        return
    entries = answer.get("entry") or [{}]
    first = entries[0].get("resource") if isinstance(entries[0], dict) else None
    reply = (first or {}).get("response") if isinstance(first, dict) else None
    if not isinstance(reply, dict):
        return
    if reply.get("identifier") not in (None, header_id):
        raise DeliveryError(f"the receiver answered another message ({reply.get('identifier')!r}, "
                            f"not {header_id!r})")
    code = reply.get("code")
    if code == "transient-error":
        raise DeliveryError("the receiver answered transient-error")
    if code == "fatal-error":
        raise DeliveryError(f"the receiver refused the message (fatal-error): {_diagnostics(answer)}",
                            permanent=True)


def _diagnostics(answer: Mapping[str, Any]) -> str:
    texts = [str(issue.get("diagnostics")) for entry in answer.get("entry") or [] if isinstance(entry, dict)
             for issue in (entry.get("resource") or {}).get("issue") or [] if isinstance(issue, dict)
             and issue.get("diagnostics")]
    return "; ".join(texts) or "no diagnostics"


class HandoverNotices:
    """The ``notify`` channel: the Zorgpad inbox (``local``), then a handover notice's partner endpoints;
    and the ``task-changed`` channel: the partner endpoints alone.

    The inbox comes first, so that the notice shows in Zorgpad even while the receiver's endpoint is
    down; a retry finds the Communication already completed and only sends again.
    """

    def __init__(self, db: Database, sender: HTTPSender, local: Transport | None = None,
                 base_url: str | None = None) -> None:
        self.db = db
        self.sender = sender
        self.local = local
        self.base_url = base_url.rstrip("/") if base_url else None

    def __call__(self, item: OutboxItem, now: datetime) -> None:
        """Deliver one notice or Task change."""
        changed = item.channel == TASK_CHANGED_CHANNEL
        if self.local is not None and not changed:
            self.local(item, now)
        payload = item.payload
        if not (changed or payload.get("handover")) or not (item.target or "").startswith("Organization/"):
            return
        task_type, _, task_id = str(payload.get("task", "")).partition("/")
        if task_type != "Task" or not task_id:
            raise DeliveryError(f"handover notice {item.idempotency_key} names no Task (got {payload.get('task')!r})",
                                permanent=True)
        target = str(item.target)
        for endpoint in self.db.run(lambda session: handover_endpoints(session, target)):
            headers = {**dict(endpoint.headers), "Idempotency-Key": item.idempotency_key}
            if endpoint.kind == "pull":
                self.sender.post(f"{endpoint.address.rstrip('/')}/{task_id}", now, headers=headers)
                continue
            message = self.db.run(partial(handover_message, item=item, destination=endpoint.address,
                                          base_url=self.base_url, now=now))
            response = self.sender.post(endpoint.address, now, content=json.dumps(message).encode(),
                                        headers={**headers, "Content-Type": FHIR_JSON, "Accept": FHIR_JSON})
            check_response(response, message["entry"][0]["resource"]["id"])
