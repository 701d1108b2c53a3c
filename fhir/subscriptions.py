"""R4 Subscriptions (rest-hook) and the delivery channels of the FHIR layer.

A partner creates a ``Subscription`` with ``status = requested``, a search-string ``criteria`` such as
``Task?owner=Organization/ooh-1`` and a ``rest-hook`` channel; the server checks it and stores it as
``active`` (a second version, as HAPI FHIR does), or answers 400 with an OperationOutcome naming what
it cannot serve. From then on, every resource write whose new version matches the criteria queues one
outbox row (channel ``rest-hook``) in the writing transaction, but only when the Subscription's owner
organisation may see that resource (:class:`~zorgpad.fhir.access.Scope`; a Subscription an
administrator created, which carries no owner tag, sees everything). Deletions notify nobody.

What a notification carries follows ``channel.payload`` and the Subscriptions R5 Backport extension
``backport-payload-content`` on it (:data:`PAYLOAD_CONTENT_URL`):

================================  ============================================================================
channel                           notification
================================  ============================================================================
no ``payload`` (or ``empty``)     ``POST`` to ``channel.endpoint`` with no body (R4's empty notification)
``application/fhir+json`` with    ``POST`` of a backport notification Bundle (``type = history``): a status
``id-only``                       Parameters (subscription, ``event-notification``, event number, focus),
                                  then one entry naming the resource, without its content
``application/fhir+json`` (or     the same Bundle with the resource's version that matched in the entry
``full-resource``)
================================  ============================================================================

Every notification carries the ``channel.header`` lines and ``Idempotency-Key: <outbox key>``. The
Subscription is read again at delivery, so a changed endpoint or header (a rotated secret) applies to
notifications already queued; one that is no longer active, or an owner who may no longer see the
resource, dead-letters the notification instead. References in the Bundle are absolute when
``$ZORGPAD_BASE_URL`` (the FHIR base, such as ``https://zorgpad.example.org/fhir``) is set.

Criteria support ``_id`` and the token and reference search parameters the store indexes
(:mod:`zorgpad.engine.store.search_params`) plus ``Task``'s ``for``; values separated by commas are
alternatives, repeated parameters must all match, and ``:not`` works on tokens. Anything else is
refused when the Subscription is written, so that criteria never match more than they say.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import exists, text
from sqlmodel import Session, col, select
from zorgpad.engine._apply import NOTIFY_CHANNEL, TASK_CHANGED_CHANNEL
from zorgpad.engine._projection import instant
from zorgpad.engine.outbox import DeliveryError
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.resources import (
    get_resource,
    parse_fhir_datetime,
    put_resource,
    read_cache,
    tokens_of,
    values_at,
)
from zorgpad.engine.store.search_params import params_for
from zorgpad.engine.store.tables import OutboxItem, ResourceVersion, SearchToken, StoredResource
from zorgpad.fhir.access import OWNER_TAG_SYSTEM, Principal, Scope
from zorgpad.fhir.capabilities import RESOURCE_TYPES
from zorgpad.fhir.handovers import HandoverNotices
from zorgpad.fhir.outcomes import FHIRError
from zorgpad.fhir.transports import HTTPSender

JSON = dict[str, Any]

REST_HOOK_CHANNEL = "rest-hook"
PAYLOAD_CONTENT_URL = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
STATUS_PROFILE = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
NOTIFICATION_PROFILE = \
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4"
PAYLOAD_CONTENTS = ("empty", "id-only", "full-resource")
FHIR_JSON = "application/fhir+json"
#: Environment variable with the public FHIR base URL, for absolute references in notifications.
BASE_URL_ENV = "ZORGPAD_BASE_URL"

#: Search parameters some types have here beyond the indexed ones: (kind, element paths).
_EXTRA_PARAMS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {"Task": {"for": ("reference", ("for",))}}
#: Headers Zorgpad sets itself; a Subscription may not set them.
_RESERVED_HEADERS = frozenset({"idempotency-key", "content-type", "content-length", "host", "transfer-encoding"})
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


# -- criteria ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filter:
    """One search parameter of a criteria string: any of ``values`` must match (none, with ``negate``)."""

    name: str
    kind: str  # "id", "token" or "reference"
    paths: tuple[str, ...]
    values: tuple[str, ...]
    negate: bool = False

    def matches(self, resource: Mapping[str, Any]) -> bool:
        """Whether ``resource`` passes this filter."""
        if self.kind == "id":
            return resource.get("id") in self.values
        if self.kind == "reference":
            refs = [v["reference"] for path in self.paths for v in values_at(resource, path.split("."))
                    if isinstance(v, Mapping) and isinstance(v.get("reference"), str)]
            return any(_same_reference(value, ref) for value in self.values for ref in refs)
        tokens = [t for path in self.paths for v in values_at(resource, path.split(".")) for t in tokens_of(v)]
        found = any(_token_matches(value, token) for value in self.values for token in tokens)
        return found != self.negate


@dataclass(frozen=True)
class Criteria:
    """A Subscription's criteria: a resource type and the filters a new version must pass."""

    resource_type: str
    filters: tuple[Filter, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Criteria:
        """Parse ``Type?name=value&…``; a ValueError names every part that cannot be served."""
        text = text.strip()
        if "://" in text.split("?", 1)[0]:
            raise ValueError(f"criteria are relative to the server, like Task?owner=Organization/x (got {text!r})")
        rtype, _, query = text.lstrip("/").partition("?")
        if rtype not in RESOURCE_TYPES or rtype in ("PlanDefinition", "AuditEvent"):
            raise ValueError(f"criteria must start with a resource type this server stores (got {rtype!r})")
        known: dict[str, tuple[str, tuple[str, ...]]] = dict(params_for(rtype))
        known.update(_EXTRA_PARAMS.get(rtype, {}))
        filters: list[Filter] = []
        problems: list[str] = []
        for raw_name, raw_value in parse_qsl(query, keep_blank_values=True):
            name, _, modifier = raw_name.partition(":")
            values = tuple(v.strip() for v in raw_value.split(","))
            if not all(values):
                problems.append(f"parameter {raw_name!r} has an empty value")
                continue
            kind: str
            paths: tuple[str, ...]
            if name == "_id":
                kind, paths = "id", ()
            elif name in known and known[name][0] in ("token", "reference"):
                kind, paths = known[name]
            else:
                supported = ", ".join(["_id", *sorted(n for n, (k, _) in known.items() if k != "date")])
                problems.append(f"parameter {name!r} cannot be used in {rtype} criteria (supported: {supported})")
                continue
            if modifier and not (modifier == "not" and kind == "token"):
                problems.append(f"modifier ':{modifier}' of {name!r} is not supported (only ':not' on tokens)")
                continue
            filters.append(Filter(name, kind, tuple(paths), values, negate=modifier == "not"))
        if problems:
            raise ValueError("; ".join(problems))
        return cls(rtype, tuple(filters))

    def matches(self, resource: Mapping[str, Any]) -> bool:
        """Whether ``resource`` is of the type and passes every filter."""
        return resource.get("resourceType") == self.resource_type and all(f.matches(resource) for f in self.filters)


_parse_criteria = lru_cache(maxsize=1024)(Criteria.parse)


def _token_matches(wanted: str, token: tuple[str | None, str]) -> bool:
    system, code = token
    if "|" not in wanted:
        return code == wanted
    want_system, _, want_code = wanted.partition("|")
    if want_system == "":
        return system is None and code == want_code
    return system == want_system and (want_code == "" or code == want_code)


def _same_reference(wanted: str, ref: str) -> bool:
    if wanted == ref:
        return True
    if "/" not in wanted:  # a bare id
        return ref.rsplit("/", 1)[-1] == wanted
    return ref.endswith("/" + wanted) or wanted.endswith("/" + ref)  # one absolute, one relative


# -- the Subscription resource ----------------------------------------------------------------------

@dataclass(frozen=True)
class Channel:
    """Where and how a Subscription is notified."""

    endpoint: str
    content: str  # one of PAYLOAD_CONTENTS
    headers: tuple[tuple[str, str], ...] = ()


def channel_of(subscription: Mapping[str, Any]) -> Channel:
    """The rest-hook channel of a Subscription; a ValueError names every problem."""
    channel = subscription.get("channel") or {}
    problems = []
    if channel.get("type") != "rest-hook":
        problems.append(f"channel.type {channel.get('type')!r} is not supported (only 'rest-hook')")
    endpoint = channel.get("endpoint")
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        problems.append(f"channel.endpoint must be an absolute http(s) URL (got {endpoint!r})")
    extensions = (channel.get("_payload") or {}).get("extension") or []
    codes = [e.get("valueCode") for e in extensions if isinstance(e, Mapping) and e.get("url") == PAYLOAD_CONTENT_URL]
    content = codes[0] if codes else None
    if content is not None and content not in PAYLOAD_CONTENTS:
        problems.append(f"payload content {content!r} is not one of {', '.join(PAYLOAD_CONTENTS)}")
    payload = channel.get("payload")
    if payload is None:
        if content not in (None, "empty"):
            problems.append(f"payload content {content!r} needs channel.payload 'application/fhir+json'")
        content = "empty"
    elif payload.split(";")[0].strip().lower() not in (FHIR_JSON, "application/json"):
        problems.append(f"channel.payload {payload!r} is not supported (use {FHIR_JSON}, or leave it out for "
                        "notifications without a body)")
    else:
        content = content or "full-resource"
    headers = []
    for line in channel.get("header") or []:
        name, sep, value = str(line).partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not _HEADER_NAME.match(name) or "\r" in value or "\n" in value:
            problems.append(f"channel.header {line!r} is not a 'Name: value' HTTP header")
        elif name.lower() in _RESERVED_HEADERS:
            problems.append(f"channel.header may not set {name} (Zorgpad sets it)")
        else:
            headers.append((name, value))
    if problems:
        raise ValueError("; ".join(problems))
    return Channel(str(endpoint), str(content), tuple(headers))


def owner_of(subscription: Mapping[str, Any]) -> str | None:
    """The organisation that owns a Subscription (its owner tag), or None for an administrator's."""
    for tag in (subscription.get("meta") or {}).get("tag") or []:
        if isinstance(tag, Mapping) and tag.get("system") == OWNER_TAG_SYSTEM and tag.get("code"):
            return str(tag["code"])
    return None


def scope_of(subscription: Mapping[str, Any]) -> Scope:
    """What a Subscription's owner may see."""
    owner = owner_of(subscription)
    return Scope(Principal(f"Subscription/{subscription.get('id')}", owner, admin=owner is None))


def check_subscription(subscription: Mapping[str, Any]) -> tuple[Criteria, Channel]:
    """The criteria and channel of a Subscription this server can serve, or a 400 naming every problem."""
    issues: list[JSON] = []
    criteria: Criteria | None = None
    channel: Channel | None = None
    try:
        criteria = _parse_criteria(str(subscription.get("criteria") or ""))
    except ValueError as exc:
        issues.append({"severity": "error", "code": "not-supported", "diagnostics": f"Subscription.criteria: {exc}",
                       "expression": ["Subscription.criteria"]})
    try:
        channel = channel_of(subscription)
    except ValueError as exc:
        issues.append({"severity": "error", "code": "not-supported", "diagnostics": f"Subscription.channel: {exc}",
                       "expression": ["Subscription.channel"]})
    if criteria is None or channel is None:
        raise FHIRError(400, "; ".join(str(i["diagnostics"]) for i in issues), issues=issues)
    return criteria, channel


def _ended(subscription: Mapping[str, Any], now: datetime) -> bool:
    end = subscription.get("end")
    try:
        return isinstance(end, str) and parse_fhir_datetime(end)[0] <= now
    except ValueError:
        return False


# -- queueing notifications (inside the writing transaction) ----------------------------------------

def queue_notifications(session: Session, stored: StoredResource, previous: JSON | None, now: datetime) -> None:
    """The resource listener: check and activate Subscriptions, and queue the notifications a write causes."""
    if stored.deleted:
        return
    if stored.resource_type == "Subscription" and _activate(session, stored, now):
        return  # the active version was just written, and that write queued what this one would have
    for subscription in _active_subscriptions(session, stored.resource_type):
        content = subscription.content
        if (subscription.resource_type, subscription.id) == (stored.resource_type, stored.id) or _ended(content, now):
            continue
        try:
            criteria, channel = _parse_criteria(str(content.get("criteria") or "")), channel_of(content)
        except ValueError:
            continue  # accepted under older rules; it cannot fire now
        if not criteria.matches(stored.content) or not scope_of(content).sees(session, stored):
            continue
        session.add(OutboxItem(
            idempotency_key=f"{REST_HOOK_CHANNEL}/{subscription.id}/{stored.resource_type}/{stored.id}/"
                            f"{stored.version_id}",
            channel=REST_HOOK_CHANNEL, target=channel.endpoint[:256], created_at=now, next_attempt_at=now,
            payload={"subscription": f"Subscription/{subscription.id}",
                     "resource": f"{stored.resource_type}/{stored.id}", "version": stored.version_id,
                     "event": next_event(session, subscription.id), "patient": stored.patient}))


#: One statement counts an event, on SQLite and PostgreSQL alike: the first one inserts the counter; a writer
#: that meets another's uncommitted first insert waits for it and then counts on.
_COUNT_ONE_MORE = text(
    "INSERT INTO subscription_counter (subscription_id, events) VALUES (:subscription, 1) "
    "ON CONFLICT (subscription_id) DO UPDATE SET events = subscription_counter.events + 1 RETURNING events")


def next_event(session: Session, subscription_id: str) -> int:
    """The next event number of a Subscription, counted in this transaction (on PostgreSQL the counter's row
    lock puts concurrent writers in turn until each commits; a rollback gives the number back)."""
    return int(session.execute(_COUNT_ONE_MORE, {"subscription": subscription_id}).scalar_one())


def _activate(session: Session, stored: StoredResource, now: datetime) -> bool:
    """Check a Subscription being written; store ``requested`` as ``active``. True if it wrote a version."""
    status = stored.content.get("status")
    if status not in ("requested", "active"):
        return False
    check_subscription(stored.content)
    if status == "active":
        return False
    content = dict(stored.content)
    content["status"] = "active"
    content.pop("error", None)
    put_resource(session, content, now, method="PUT")
    return True


#: The read_cache key of the active Subscriptions: a write of a Subscription, and the end of a savepoint
#: or of the transaction, forget them.
_ACTIVE = (frozenset({"Subscription"}), "active-subscriptions")


def _active_subscriptions(session: Session, resource_type: str) -> list[StoredResource]:
    """The active Subscriptions whose criteria name ``resource_type``. All active Subscriptions are read once
    and kept in the read cache (a ``$process-message`` writing six types, or a transaction Bundle of hundreds
    of entries, asks once; each batch entry, a savepoint of its own, asks again)."""
    cache = read_cache(session)
    if _ACTIVE not in cache:
        cache[_ACTIVE] = list(session.exec(_ACTIVE_SUBSCRIPTIONS))
    return [s for s in cache[_ACTIVE] if _criteria_type(s.content) == resource_type]


def _criteria_type(subscription: Mapping[str, Any]) -> str | None:
    try:
        return _parse_criteria(str(subscription.get("criteria") or "")).resource_type
    except ValueError:
        return None  # accepted under older rules; it cannot fire now


_ACTIVE_SUBSCRIPTIONS = select(StoredResource).where(
    col(StoredResource.resource_type) == "Subscription", col(StoredResource.deleted).is_(False),
    exists().where(col(SearchToken.resource_type) == "Subscription",
                   col(SearchToken.resource_id) == col(StoredResource.id), col(SearchToken.param) == "status",
                   col(SearchToken.code) == "active"),
).order_by(col(StoredResource.id))


# -- delivering rest-hook notifications -------------------------------------------------------------

@dataclass(frozen=True)
class Notification:
    """One HTTP request to make."""

    url: str
    headers: dict[str, str]
    body: bytes | None


class RestHook:
    """The ``rest-hook`` channel: builds each notification from the current Subscription and POSTs it."""

    def __init__(self, db: Database, sender: HTTPSender, base_url: str | None = None) -> None:
        self.db = db
        self.sender = sender
        self.base_url = base_url.rstrip("/") if base_url else None

    def __call__(self, item: OutboxItem, now: datetime) -> None:
        """Deliver one notification (the database is not held while the receiver answers)."""
        notification = self.db.run(lambda session: self.notification(session, item, now))
        self.sender.post(notification.url, now, headers=notification.headers, content=notification.body)

    def _url(self, reference: str) -> str:
        return f"{self.base_url}/{reference}" if self.base_url else reference

    def notification(self, session: Session, item: OutboxItem, now: datetime) -> Notification:
        """The request for ``item``, or a permanent DeliveryError when it may no longer be sent."""
        payload = item.payload
        sub_ref, resource_ref = str(payload.get("subscription", "")), str(payload.get("resource", ""))
        subscription = get_resource(session, "Subscription", sub_ref.partition("/")[2])
        if subscription is None or subscription.deleted or subscription.content.get("status") != "active":
            status = "deleted" if subscription is None or subscription.deleted else subscription.content.get("status")
            raise DeliveryError(f"{sub_ref} is no longer active ({status})", permanent=True)
        try:
            channel = channel_of(subscription.content)
        except ValueError as exc:
            raise DeliveryError(f"{sub_ref}: {exc}", permanent=True) from None
        rtype, _, rid = resource_ref.partition("/")
        current = get_resource(session, rtype, rid)
        if current is None or not scope_of(subscription.content).sees(session, current):
            raise DeliveryError(f"the owner of {sub_ref} may no longer see {resource_ref}", permanent=True)
        headers = dict(channel.headers)
        headers["Idempotency-Key"] = item.idempotency_key
        if channel.content == "empty":
            return Notification(channel.endpoint, headers, None)
        version = session.get(ResourceVersion, (rtype, rid, int(payload.get("version", 0))))
        if version is None:
            raise DeliveryError(f"{resource_ref} has no version {payload.get('version')}", permanent=True)
        bundle = self.bundle(sub_ref, int(payload.get("event", 0)), version, channel.content, now)
        headers["Content-Type"] = FHIR_JSON
        return Notification(channel.endpoint, headers, json.dumps(bundle).encode())

    def bundle(self, sub_ref: str, event: int, version: ResourceVersion, content: str, now: datetime) -> JSON:
        """A backport notification Bundle (R4) for one event."""
        resource_ref = f"{version.resource_type}/{version.id}"
        status_id = str(uuid.uuid4())
        status = {
            "resourceType": "Parameters", "id": status_id, "meta": {"profile": [STATUS_PROFILE]},
            "parameter": [
                {"name": "subscription", "valueReference": {"reference": self._url(sub_ref)}},
                {"name": "status", "valueCode": "active"},
                {"name": "type", "valueCode": "event-notification"},
                {"name": "events-since-subscription-start", "valueString": str(event)},
                {"name": "notification-event", "part": [
                    {"name": "event-number", "valueString": str(event)},
                    {"name": "timestamp", "valueInstant": instant(version.last_updated)},
                    {"name": "focus", "valueReference": {"reference": self._url(resource_ref)}},
                ]},
            ],
        }
        entry: JSON = {
            "request": {"method": "POST" if version.method == "POST" else "PUT",
                        "url": version.resource_type if version.method == "POST" else resource_ref},
            "response": {"status": "201" if version.version_id == 1 else "200",
                         "etag": f'W/"{version.version_id}"', "lastModified": instant(version.last_updated)},
        }
        if self.base_url:
            entry = {"fullUrl": self._url(resource_ref), **entry}
        if content == "full-resource" and version.content is not None:
            entry["resource"] = version.content
        return {
            "resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"profile": [NOTIFICATION_PROFILE]},
            "type": "history", "timestamp": instant(now),
            "entry": [{"fullUrl": f"urn:uuid:{status_id}", "resource": status,
                       "request": {"method": "GET", "url": f"{self._url(sub_ref)}/$status"},
                       "response": {"status": "200"}},
                      entry],
        }


# -- wiring -----------------------------------------------------------------------------------------

def install(engine: Engine, *, sender: HTTPSender | None = None, base_url: str | None = None) -> None:
    """Wire Subscriptions and handover notices into ``engine``: the resource listener and the ``rest-hook``,
    ``notify`` and ``task-changed`` channels. Installing twice changes nothing more."""
    if queue_notifications not in engine.db.resource_listeners:
        engine.db.resource_listeners.append(queue_notifications)
    sender = sender or HTTPSender()
    base = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or None
    transports = engine.outbox.transports
    transports[REST_HOOK_CHANNEL] = RestHook(engine.db, sender, base)
    local = transports.get(NOTIFY_CHANNEL)
    if isinstance(local, HandoverNotices):
        local = local.local
    transports[NOTIFY_CHANNEL] = transports[TASK_CHANGED_CHANNEL] = HandoverNotices(engine.db, sender, local, base)
