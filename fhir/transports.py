"""Outbound HTTP for notifications: one POST per outbox item, and the eOverdracht-style notified pull.

Every request carries ``Idempotency-Key: <the outbox item's key>``, so a receiver can drop the repeat
that at-least-once delivery sometimes sends. Answers map onto :class:`DeliveryError` like this:

======================================  =============================================================
answer                                  outcome
======================================  =============================================================
2xx                                     delivered
408, 425, 429, 5xx                      retried; ``Retry-After`` (seconds or an HTTP date, at most a
                                        day) sets the earliest next attempt
connection refused, timeout, TLS error  retried
3xx (redirects are not followed), any   permanent: the item is dead-lettered at once, because sending
other 4xx                               the same request again cannot succeed
an address that is not http(s)          permanent
======================================  =============================================================

Notified pull (Nictiz eOverdracht, Nuts eOverdracht bolt): when the engine queues a handover notice,
the receiving organisation's notification endpoint gets an **empty** ``POST {address}/{task-id}``; the
receiver then reads the Task and its ``input`` with its own token and updates the Task's status. The
address is the ``Endpoint.address`` of an active Endpoint whose ``managingOrganization`` is the
receiver: one with ``connectionType`` :data:`NOTIFIED_PULL` if there is one, else one with the HL7
code ``hl7-fhir-rest``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlmodel import Session, col, select
from zorgpad.engine.clock import utc
from zorgpad.engine.outbox import DeliveryError, Transport
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import OutboxItem, SearchReference, StoredResource

#: Zorgpad's code system for Endpoint.connectionType.
CONNECTION_TYPE_SYSTEM = "https://zorgpad.nl/fhir/CodeSystem/endpoint-connection-type"
#: ``Endpoint.connectionType`` of an eOverdracht-style notification endpoint (empty POST to ``/{task-id}``).
NOTIFIED_PULL = {"system": CONNECTION_TYPE_SYSTEM, "code": "notified-pull"}
#: The HL7 code system for Endpoint.connectionType, whose ``hl7-fhir-rest`` is accepted as a fallback.
HL7_CONNECTION_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"

#: Seconds to wait for a receiver: connecting, and the whole exchange.
CONNECT_TIMEOUT = 5.0
TIMEOUT = 10.0
#: The longest wait a receiver's Retry-After can ask for.
MAX_RETRY_AFTER = timedelta(days=1)
_RETRYABLE = frozenset({408, 425, 429})
USER_AGENT = "Zorgpad/0.1.0 (notifications)"


class HTTPSender:
    """POSTs notifications with a short timeout and maps every outcome onto :class:`DeliveryError`."""

    def __init__(self, *, timeout: float = TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.transport = transport

    def post(self, url: str, now: datetime, *, headers: Mapping[str, str], content: bytes | None = None) -> int:
        """POST ``content`` (nothing when None) to ``url``; the 2xx status, or a :class:`DeliveryError`."""
        check_address(url)
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport, follow_redirects=False,
                              headers={"User-Agent": USER_AGENT}) as client:
                response = client.post(url, headers=dict(headers), content=content)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"POST {url} timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"POST {url} failed: {type(exc).__name__}: {exc}") from exc
        except httpx.InvalidURL as exc:
            raise DeliveryError(f"POST {url}: invalid URL: {exc}", permanent=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return status
        message = f"POST {url} answered {status} {response.reason_phrase}".rstrip()
        if status in _RETRYABLE or status >= 500:
            raise DeliveryError(message, retry_after=retry_after(response.headers.get("retry-after"), now))
        if 300 <= status < 400:
            message += f" (redirects are not followed; Location: {response.headers.get('location', '-')})"
        raise DeliveryError(message, permanent=True)


def check_address(url: str) -> None:
    """A permanent :class:`DeliveryError` unless ``url`` is an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DeliveryError(f"{url!r} is not an http(s) URL", permanent=True)


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """The wait a ``Retry-After`` header asks for (delta-seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        wait = timedelta(seconds=int(value))
    else:
        try:
            wait = utc(parsedate_to_datetime(value)) - utc(now)
        except (TypeError, ValueError, IndexError):
            return None
    return max(timedelta(0), min(wait, MAX_RETRY_AFTER))


# -- notified pull ------------------------------------------------------------------------------------

def _is(coding: Any, system: str, code: str) -> bool:
    return isinstance(coding, Mapping) and coding.get("code") == code and coding.get("system") in (system, None)


def notification_addresses(session: Session, organisation: str) -> list[str]:
    """The notified-pull addresses of ``organisation`` (``Organization/id``), by Endpoint id."""
    endpoint_ids = select(SearchReference.resource_id).where(
        SearchReference.resource_type == "Endpoint", SearchReference.param == "organization",
        SearchReference.target == organisation)
    rows = session.exec(select(StoredResource).where(
        StoredResource.resource_type == "Endpoint", col(StoredResource.id).in_(endpoint_ids),
        col(StoredResource.deleted).is_(False)).order_by(col(StoredResource.id))).all()
    active = [r.content for r in rows if r.content.get("status") == "active"
              and isinstance(r.content.get("address"), str)]
    pull = [e["address"] for e in active if _is(e.get("connectionType"), CONNECTION_TYPE_SYSTEM, "notified-pull")]
    rest = [e["address"] for e in active if _is(e.get("connectionType"), HL7_CONNECTION_TYPE_SYSTEM, "hl7-fhir-rest")]
    return pull or rest


class NotifiedPull:
    """The ``notify`` channel: the Zorgpad inbox (``local``), plus an empty POST for a handover notice.

    The inbox comes first, so that the notice shows in Zorgpad even while the receiver's endpoint is
    down; a retry finds the Communication already completed and only POSTs again.
    """

    def __init__(self, db: Database, sender: HTTPSender, local: Transport | None = None) -> None:
        self.db = db
        self.sender = sender
        self.local = local

    def __call__(self, item: OutboxItem, now: datetime) -> None:
        """Deliver one notice."""
        if self.local is not None:
            self.local(item, now)
        payload = item.payload
        if not payload.get("handover") or not (item.target or "").startswith("Organization/"):
            return
        task = str(payload.get("task", ""))
        task_type, _, task_id = task.partition("/")
        if task_type != "Task" or not task_id:
            raise DeliveryError(f"handover notice {item.idempotency_key} names no Task (got {task!r})",
                                permanent=True)
        target = str(item.target)
        for address in self.db.run(lambda session: notification_addresses(session, target)):
            self.sender.post(f"{address.rstrip('/')}/{task_id}", now,
                             headers={"Idempotency-Key": item.idempotency_key})
