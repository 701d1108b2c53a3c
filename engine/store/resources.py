"""The FHIR resource store: current versions, full history, and search index rows.

Resources are kept as plain JSON dicts; the FHIR interface validates them once at the boundary.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select
from zorgpad.engine.store.search_params import params_for
from zorgpad.engine.store.tables import (
    ResourceVersion,
    SearchDate,
    SearchReference,
    SearchToken,
    StoredResource,
)

JSON = dict[str, Any]
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

__all__ = ["get_resource", "new_id", "patient_of", "put_resource", "resources_of_patient", "tokens_of", "values_at"]


def new_id() -> str:
    """A fresh server-assigned resource id."""
    return str(uuid.uuid4())


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """``Patient/id`` of the patient a resource is about, if any."""
    if resource.get("resourceType") == "Patient":
        return f"Patient/{resource.get('id')}"
    for element in ("subject", "patient", "for", "beneficiary"):
        value = resource.get(element)
        if isinstance(value, Mapping):
            ref = value.get("reference")
            if isinstance(ref, str):
                # Relative (Patient/1) or absolute (https://…/Patient/1[/_history/2]) references.
                parts = ref.split("/_history/")[0].rstrip("/").split("/")
                if len(parts) >= 2 and parts[-2] == "Patient" and _FHIR_ID.match(parts[-1]):
                    return f"Patient/{parts[-1]}"
    return None


def get_resource(session: Session, resource_type: str, resource_id: str) -> StoredResource | None:
    """The current version of a resource, deleted or not."""
    return session.get(StoredResource, (resource_type, resource_id))


def put_resource(session: Session, resource: Mapping[str, Any], now: datetime, *,
                 method: str = "PUT", deleted: bool = False) -> StoredResource:
    """Store a new version of ``resource`` (which must have ``resourceType`` and ``id``).

    Sets ``meta.versionId`` and ``meta.lastUpdated``, writes history and rewrites the search index.
    """
    rtype, rid = str(resource["resourceType"]), str(resource["id"])
    current = session.get(StoredResource, (rtype, rid), with_for_update=True)
    previous = None if current is None or current.deleted else current.content
    version = current.version_id + 1 if current else 1
    content: JSON = copy.deepcopy(dict(resource))
    meta = dict(content.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    content["meta"] = meta
    if current is None:
        current = StoredResource(resource_type=rtype, id=rid, last_updated=now)
    current.version_id = version
    current.last_updated = now
    current.deleted = deleted
    current.patient = patient_of(content)
    current.content = content
    session.add(current)
    session.add(ResourceVersion(resource_type=rtype, id=rid, version_id=version, last_updated=now,
                                method=method, deleted=deleted, content=None if deleted else content))
    _reindex(session, content, deleted)
    for listener in session.info.get("resource_listeners", ()):
        listener(session, current, previous, now)
    return current


def resources_of_patient(session: Session, patient: str, resource_types: set[str] | None = None
                         ) -> Iterator[JSON]:
    """The current, not deleted resources about ``patient`` (``Patient/id``), the Patient included."""
    query = select(StoredResource).where(StoredResource.patient == patient,
                                         col(StoredResource.deleted).is_(False))
    if resource_types:
        query = query.where(col(StoredResource.resource_type).in_(sorted(resource_types)))
    for row in session.exec(query):
        yield row.content


# -- search index -------------------------------------------------------------------------------------

def _reindex(session: Session, resource: JSON, deleted: bool) -> None:
    rtype, rid = resource["resourceType"], resource["id"]
    for table in (SearchToken, SearchReference, SearchDate):
        session.execute(delete(table).where(col(table.resource_type) == rtype, col(table.resource_id) == rid))
    if deleted:
        return
    for param, (kind, paths) in params_for(rtype).items():
        for path in paths:
            for value in values_at(resource, path.split(".")):
                if kind == "token":
                    for system, code in tokens_of(value):
                        session.add(SearchToken(resource_type=rtype, resource_id=rid, param=param,
                                                system=system, code=code[:256]))
                elif kind == "reference":
                    ref = value.get("reference") if isinstance(value, Mapping) else None
                    if isinstance(ref, str):
                        session.add(SearchReference(resource_type=rtype, resource_id=rid, param=param,
                                                    target=ref[:256]))
                else:
                    start, end = _period(value)
                    if start is not None or end is not None:
                        session.add(SearchDate(resource_type=rtype, resource_id=rid, param=param,
                                               start=start, end=end))


def values_at(node: Any, parts: list[str]) -> Iterator[Any]:
    """Every value at a dotted element path (``name[x]`` matches any choice type), through lists."""
    if isinstance(node, list):
        for item in node:
            yield from values_at(item, parts)
        return
    if not parts:
        yield node
        return
    if not isinstance(node, Mapping):
        return
    head = parts[0]
    if head.endswith("[x]"):
        stem = head[:-3]
        for key, value in node.items():
            if key.startswith(stem) and key[len(stem):len(stem) + 1].isupper():
                yield from values_at(value, parts[1:])
    elif head in node:
        yield from values_at(node[head], parts[1:])


def tokens_of(value: Any) -> Iterator[tuple[str | None, str]]:
    """``(system, code)`` pairs of a code, Coding, CodeableConcept, Identifier or boolean."""
    if isinstance(value, str | bool):
        yield None, str(value).lower() if isinstance(value, bool) else value
    elif isinstance(value, Mapping):
        if "coding" in value:
            for coding in value.get("coding") or []:
                if isinstance(coding, Mapping) and coding.get("code") is not None:
                    yield coding.get("system"), str(coding["code"])
        elif "value" in value:  # Identifier
            yield value.get("system"), str(value["value"])
        elif "code" in value:  # Coding
            yield value.get("system"), str(value["code"])


def parse_fhir_datetime(text: str) -> tuple[datetime, datetime]:
    """The span a FHIR date/dateTime/instant covers, as aware UTC datetimes ``[start, end)``."""
    if len(text) == 4:
        start = datetime(int(text), 1, 1, tzinfo=UTC)
        return start, start.replace(year=start.year + 1)
    if len(text) == 7:
        year, month = int(text[:4]), int(text[5:7])
        start = datetime(year, month, 1, tzinfo=UTC)
        return start, (datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC))
    if len(text) == 10:
        day = date.fromisoformat(text)
        start = datetime.combine(day, time(), tzinfo=UTC)
        return start, datetime.fromordinal(day.toordinal() + 1).replace(tzinfo=UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment, moment


def _period(value: Any) -> tuple[datetime | None, datetime | None]:
    try:
        if isinstance(value, str):
            return parse_fhir_datetime(value)
        if isinstance(value, Mapping):
            start = parse_fhir_datetime(value["start"])[0] if isinstance(value.get("start"), str) else None
            end = parse_fhir_datetime(value["end"])[1] if isinstance(value.get("end"), str) else None
            return start, end
    except (ValueError, KeyError):
        return None, None
    return None, None
