"""Transaction and batch Bundles (``POST /fhir``): every entry goes through the same functions as a
single request (:mod:`zorgpad.fhir.interactions`), so an entry behaves exactly like one.

**transaction** — all or nothing. Entries are processed in the FHIR order (DELETE, POST, PUT/PATCH,
GET; http.html#trules). Placeholder ``fullUrl``s (``urn:uuid:``/``urn:oid:``) of created resources are
replaced by the server-assigned ``Type/id`` in every reference anywhere in the other entries' resources
(contained resources and extensions included), as are RESTful ``fullUrl``s and relative references
that resolve against an entry's ``fullUrl`` base. Conditional references (``Patient?identifier=…``) are
resolved by search. The first failing entry raises a :class:`FHIRError` naming it
(``Bundle.entry[3] (POST Observation): …``) with that entry's own status; the request's database
transaction then rolls back, so nothing is stored.

**batch** — each entry on its own, in the order given, inside a SAVEPOINT: a failing entry answers its
own 4xx ``response.status`` and ``response.outcome`` while the others are kept. Batch entries may not
refer to each other (FHIR forbids it; use a transaction).

Key contracts:

* Ids are assigned by :func:`interactions.create`, so created entries that refer to each other are
  created in dependency order; a circle of references among *created* entries is refused with a 400.
* Not supported inside a Bundle (400 ``not-supported``): conditional update/delete (also refused as
  single requests), history (``GET Type/id/_history``), operations, and FHIRPath Patch (PATCH takes a
  Binary holding a JSON Patch). ``Prefer: return=minimal`` is not seen by this module; the resource
  is always returned in each entry.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError
from zorgpad.engine._projection import instant
from zorgpad.engine.errors import PathwayError, UnknownPathwayError
from zorgpad.engine.store.batched import savepoint
from zorgpad.engine.store.tables import ResourceVersion, StoredResource
from zorgpad.fhir import interactions
from zorgpad.fhir.context import FHIRContext
from zorgpad.fhir.outcomes import FHIRError, from_validation_error

JSON = dict[str, Any]

#: The FHIR processing order of a transaction (PUT and PATCH share a step).
PHASES = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3}
PLACEHOLDER_PREFIXES = ("urn:uuid:", "urn:oid:")
VIRTUAL_TYPES = ("PlanDefinition", "AuditEvent")
_RESTFUL = re.compile(r"^(?:(?P<base>.*)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
                      r"(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_CONDITIONAL = re.compile(r"^[A-Z][A-Za-z]+\?")


# -- references between entries --------------------------------------------------------------------

def references(node: Any) -> Iterator[str]:
    """Every ``Reference.reference`` string anywhere in ``node`` (contained resources included)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            elif isinstance(value, Mapping | list):
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def base_of(full_url: str | None) -> str | None:
    """The service base of a RESTful ``fullUrl`` (``http://x/fhir`` of ``http://x/fhir/Patient/1``)."""
    if not full_url or not full_url.startswith(("http://", "https://")):
        return None
    found = _RESTFUL.match(full_url)
    return found.group("base") if found else None


def restful_target(full_url: str | None) -> tuple[str, str] | None:
    """``(type, id)`` named by a RESTful ``fullUrl`` (absolute or ``Type/id``), else None."""
    if not full_url or full_url.startswith(PLACEHOLDER_PREFIXES):
        return None
    found = _RESTFUL.match(full_url)
    return (found.group("type"), found.group("id")) if found else None


@dataclass
class References:
    """The identities of a Bundle's entries, by ``fullUrl``: known up front (``Type/id``) or, for
    resources still to be created, filled in once the server has assigned their id."""

    targets: dict[str, str | None] = field(default_factory=dict)
    owners: dict[str, int] = field(default_factory=dict)

    def name(self, full_url: str | None, index: int, target: str | None) -> None:
        """Record that entry ``index``, at ``full_url``, is (or will be) ``target``."""
        if full_url:
            self.targets[full_url] = target
            self.owners[full_url] = index

    def key(self, reference: str, base: str | None) -> str | None:
        """The ``fullUrl`` a reference made from an entry with service base ``base`` points at, if any."""
        if reference in self.targets:
            return reference
        if base and not reference.startswith(PLACEHOLDER_PREFIXES) and _RESTFUL.match(reference) \
                and "://" not in reference:
            joined = f"{base}/{reference}"
            if joined in self.targets:
                return joined
        return None

    def entries_referred_to(self, resource: Any, base: str | None) -> set[int]:
        """Indexes of the entries ``resource`` refers to."""
        found = set()
        for ref in references(resource):
            key = self.key(ref, base)
            if key is not None:
                found.add(self.owners[key])
        return found

    def rewrite(self, resource: Any, base: str | None, resolve: Callable[[str], str | None] | None = None) -> Any:
        """``resource`` with every reference to a named entry replaced by its ``Type/id`` (the same
        object if nothing changes); ``resolve`` may resolve other references (conditional ones)."""

        def replace(reference: str) -> str | None:
            key = self.key(reference, base)
            if key is not None:
                return self.targets[key]
            return resolve(reference) if resolve is not None else None

        return _rewrite(resource, replace)


def _rewrite(node: Any, replace: Callable[[str], str | None]) -> Any:
    if isinstance(node, Mapping):
        changed: JSON | None = None
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                new = replace(value)
                new = value if new is None else new
            elif isinstance(value, Mapping | list):
                new = _rewrite(value, replace)
            else:
                continue
            if new is not value:
                changed = changed if changed is not None else dict(node)
                changed[key] = new
        return changed if changed is not None else node
    if isinstance(node, list):
        items = [_rewrite(item, replace) for item in node]
        return items if any(a is not b for a, b in zip(items, node, strict=True)) else node
    return node


def unresolved_placeholders(resource: Any) -> list[str]:
    """The ``urn:uuid:``/``urn:oid:`` references left in ``resource``."""
    return sorted({ref for ref in references(resource) if ref.startswith(PLACEHOLDER_PREFIXES)})


def write_order(indexes: list[int], hard: Mapping[int, set[int]], soft: Mapping[int, set[int]]) -> list[int]:
    """``indexes`` ordered so that each comes after the entries it depends on, otherwise in Bundle order.

    A ``hard`` dependency must be written first (its id is not known before); a ``soft`` one preferably
    (so that, for example, a Patient exists before its Observation). Circles of soft dependencies are
    broken at the earliest entry; a circle of hard ones raises a 400.
    """
    members = set(indexes)
    waiting = {i: (hard.get(i, set()) | soft.get(i, set())) & members - {i} for i in indexes}
    dependants: dict[int, set[int]] = {i: set() for i in indexes}
    for i, deps in waiting.items():
        for dep in deps:
            dependants[dep].add(i)
    ready = [i for i in indexes if not waiting[i]]
    heapq.heapify(ready)
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(indexes):
        if not ready:
            left = sorted(members - done)
            breakable = [i for i in left if not (hard.get(i, set()) & members - done - {i})]
            if not breakable:
                circle = ", ".join(f"Bundle.entry[{i}]" for i in left)
                raise FHIRError(400, f"{circle} refer to each other in a circle through resources that are "
                                     "still to be created; this server assigns ids on create, so such a circle "
                                     "cannot be resolved (give one of them an id and PUT it)", code="not-supported")
            waiting[breakable[0]] = set()
            ready = [breakable[0]]
        current = heapq.heappop(ready)
        if current in done:
            continue
        order.append(current)
        done.add(current)
        for dependant in dependants[current]:
            waiting[dependant].discard(current)
            if not waiting[dependant] and dependant not in done:
                heapq.heappush(ready, dependant)
    return order


# -- the Bundle -----------------------------------------------------------------------------------

def check_bundle(body: Any, types: tuple[str, ...], purpose: str) -> JSON:
    """``body`` as a Bundle of one of ``types``, its structure checked (not yet its resources); else a 400."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        got = body.get("resourceType") if isinstance(body, dict) else type(body).__name__
        raise FHIRError(400, f"{purpose} takes a Bundle (got {got!r})", code="structure",
                        expression=["resourceType"])
    kind = body.get("type")
    if kind not in types:
        hint = " (send messages to $process-message)" if kind == "message" else ""
        raise FHIRError(400, f"Bundle.type must be {' or '.join(types)} for {purpose} (got {kind!r}){hint}",
                        code="value", expression=["Bundle.type"])
    entries = body.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise FHIRError(400, "Bundle.entry must be a list of objects", code="structure", expression=["Bundle.entry"])
    # The shell only: each resource is validated once, by the interaction that takes it in.
    shell = {**body, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in entries]}
    try:
        get_fhir_model_class("Bundle").model_validate(shell)
    except ValidationError as exc:
        raise from_validation_error("Bundle", exc) from None
    for index, entry in enumerate(entries):
        if "resource" in entry and not isinstance(entry["resource"], dict):
            raise FHIRError(400, f"Bundle.entry[{index}].resource must be a JSON object holding a resource",
                            code="structure", expression=[f"Bundle.entry[{index}].resource"])
    return body


@dataclass
class _Entry:
    """One request entry of a transaction or batch."""

    index: int
    method: str
    url: str
    path: list[str]
    query: str
    resource: Any
    full_url: str | None
    request: JSON

    @property
    def label(self) -> str:
        """How error messages name the entry."""
        return f"Bundle.entry[{self.index}] ({self.method} {self.url})"

    @property
    def target(self) -> str | None:
        """``Type/id`` of the instance a DELETE, PUT or PATCH changes."""
        return "/".join(self.path) if self.method in ("DELETE", "PUT", "PATCH") else None


def _parse(ctx: FHIRContext, index: int, raw: JSON) -> _Entry:
    request = raw.get("request")
    if not isinstance(request, dict):
        raise FHIRError(400, "the entry has no request (method and url)", code="required",
                        expression=[f"Bundle.entry[{index}].request"])
    method, url = request.get("method"), request.get("url")
    if method not in PHASES:
        raise FHIRError(400, f"request.method {method!r} is not supported in a "
                        f"Bundle (expected one of {', '.join(PHASES)})", code="not-supported",
                        expression=[f"Bundle.entry[{index}].request.method"])
    if not isinstance(url, str) or not url.strip():
        raise FHIRError(400, "request.url is required", code="required",
                        expression=[f"Bundle.entry[{index}].request.url"])
    path, _, query = url.strip().partition("?")
    base = ctx.base_url.rstrip("/") + "/"
    if path.startswith(base):
        path = path[len(base):]
    elif "://" in path:
        raise FHIRError(400, f"request.url {url!r} is not on this server ({ctx.base_url})", code="value",
                        expression=[f"Bundle.entry[{index}].request.url"])
    full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
    entry = _Entry(index, str(method), url, [p for p in path.split("/") if p], query, raw.get("resource"),
                   full_url, request)
    _check_shape(entry)
    return entry


def _check_shape(entry: _Entry) -> None:
    method, path, where = entry.method, entry.path, [f"Bundle.entry[{entry.index}].request.url"]
    if any(part.startswith("$") for part in path):
        raise FHIRError(400, f"operations are not supported inside a Bundle ({entry.url})", code="not-supported",
                        expression=where)
    if method == "POST":
        if len(path) != 1:
            raise FHIRError(400, f"a create is POST [type] (got {entry.url!r})", code="value", expression=where)
    elif method in ("PUT", "PATCH", "DELETE"):
        if len(path) == 1 and entry.query:
            raise FHIRError(400, f"conditional {method.lower()} is not supported ({entry.url!r}); name the "
                                 "instance as [type]/[id]", code="not-supported", expression=where)
        if len(path) != 2:
            raise FHIRError(400, f"{method} needs [type]/[id] (got {entry.url!r})", code="value", expression=where)
        interactions.check_id(path[1])
    elif len(path) == 3 and path[2] == "_history":
        raise FHIRError(400, f"history is not supported inside a Bundle; GET {entry.url} directly",
                        code="not-supported", expression=where)
    elif not (len(path) in (1, 2) or (len(path) == 4 and path[2] == "_history")):
        raise FHIRError(400, f"GET needs [type], [type]/[id] or [type]/[id]/_history/[vid] (got {entry.url!r})",
                        code="value", expression=where)
    if method in ("POST", "PUT", "PATCH") and not isinstance(entry.resource, dict):
        raise FHIRError(400, f"{method} needs the entry's resource", code="required",
                        expression=[f"Bundle.entry[{entry.index}].resource"])
    if method in ("POST", "PUT") and entry.resource.get("resourceType") != path[0]:
        interactions.check_type(path[0], "create" if method == "POST" else "update")
        raise FHIRError(400, f"resourceType {entry.resource.get('resourceType')!r} does not match the request url, "
                             f"which names {path[0]!r}", code="invariant",
                        expression=[f"Bundle.entry[{entry.index}].resource.resourceType"])


# -- performing one entry ---------------------------------------------------------------------------

def _status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def _answer(ctx: FHIRContext, stored: StoredResource | ResourceVersion, status: int) -> JSON:
    rtype, rid, vid = stored.resource_type, stored.id, stored.version_id
    return {"fullUrl": ctx.url(f"{rtype}/{rid}"), "resource": stored.content,
            "response": {"status": _status(status), "location": f"{rtype}/{rid}/_history/{vid}",
                         "etag": f'W/"{vid}"', "lastModified": instant(stored.last_updated)}}


def json_patch_of(resource: Any) -> Any:
    """The JSON Patch a PATCH entry carries as a Binary (``contentType`` application/json-patch+json)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        kind = resource.get("resourceType") if isinstance(resource, dict) else type(resource).__name__
        raise FHIRError(400, f"a PATCH entry carries a Binary holding a JSON Patch (got {kind!r}; FHIRPath "
                             "Patch is not supported)", code="not-supported")
    content_type = str(resource.get("contentType", "")).split(";")[0].strip()
    if content_type not in ("application/json-patch+json", "application/json"):
        raise FHIRError(400, f"the PATCH Binary's contentType must be application/json-patch+json (got "
                             f"{content_type!r})", code="not-supported")
    try:
        return json.loads(base64.b64decode(str(resource.get("data", "")), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise FHIRError(400, f"the PATCH Binary's data is not base64-encoded JSON: {exc}", code="structure") from None


def _get(ctx: FHIRContext, entry: _Entry, query: list[tuple[str, str]]) -> JSON:
    from zorgpad.fhir import operations

    rtype = entry.path[0]
    if len(entry.path) == 1:
        if rtype in VIRTUAL_TYPES:
            bundle = operations.search_virtual(ctx, rtype, query)
        else:
            interactions.check_type(rtype, "search-type")
            from zorgpad.fhir.search import search

            bundle = search(ctx, rtype, query)
        return {"resource": bundle, "response": {"status": _status(200)}}
    rid = entry.path[1]
    version = entry.path[3] if len(entry.path) == 4 else None
    if rtype in VIRTUAL_TYPES:
        resource = operations.read_virtual(ctx, rtype, rid, version)
        return {"fullUrl": ctx.url(f"{rtype}/{rid}"), "resource": resource, "response": {"status": _status(200)}}
    stored: StoredResource | ResourceVersion = interactions.vread(ctx, rtype, rid, version) if version \
        else interactions.read(ctx, rtype, rid)
    answer = _answer(ctx, stored, 200)
    if_none_match = _request_text(entry, "ifNoneMatch")
    if version is None and if_none_match is not None and if_none_match.strip() == answer["response"]["etag"]:
        return {"response": {**answer["response"], "status": _status(304)}}
    return answer


def _request_text(entry: _Entry, name: str) -> str | None:
    value = entry.request.get(name)
    return value if isinstance(value, str) and value.strip() else None


def _perform(ctx: FHIRContext, entry: _Entry, resource: Any, query: list[tuple[str, str]]) -> JSON:
    """Do one entry through the interactions; the response entry. ``query`` is the search of a GET, or
    the ``ifNoneExist`` of a POST."""
    method, path = entry.method, entry.path
    if_match = _request_text(entry, "ifMatch")
    if method == "POST":
        stored, created = interactions.create(ctx, resource, if_none_exist=urlencode(query) if query else None)
        return _answer(ctx, stored, 201 if created else 200)
    if method == "PUT":
        stored, created = interactions.update(ctx, path[0], path[1], resource, if_match=if_match)
        return _answer(ctx, stored, 201 if created else 200)
    if method == "PATCH":
        stored = interactions.patch(ctx, path[0], path[1], json_patch_of(resource), if_match=if_match)
        return _answer(ctx, stored, 200)
    if method == "DELETE":
        interactions.delete(ctx, path[0], path[1])
        return {"response": {"status": _status(204)}}
    return _get(ctx, entry, query)


def as_fhir_error(exc: FHIRError | PathwayError) -> FHIRError:
    """An engine error as the server would answer it (404 unknown pathway, 422 otherwise)."""
    if isinstance(exc, FHIRError):
        return exc
    if isinstance(exc, UnknownPathwayError):
        return FHIRError(404, str(exc), code="not-found")
    return FHIRError(422, str(exc), code="business-rule")


def _located(error: FHIRError, entry: _Entry, rtype: str | None) -> FHIRError:
    """``error`` of one entry, as the error of the whole transaction: every issue names the entry."""
    where = f"Bundle.entry[{entry.index}]"
    issues = []
    for issue in error.issues:
        located = dict(issue)
        located["diagnostics"] = f"{entry.label}: {issue.get('diagnostics', '')}"
        paths = []
        for expression in issue.get("expression") or []:
            if expression.startswith("Bundle."):
                paths.append(expression)
            elif rtype and (expression == rtype or expression.startswith(f"{rtype}.")):
                paths.append(f"{where}.resource{expression[len(rtype):]}")
            else:
                paths.append(where)
        located["expression"] = paths or [where]
        issues.append(located)
    return FHIRError(error.status, f"{entry.label}: {error.diagnostics}", issues=issues)


# -- transaction ------------------------------------------------------------------------------------

class _Transaction:
    """One transaction Bundle being processed."""

    def __init__(self, ctx: FHIRContext, entries: list[_Entry]) -> None:
        self.ctx = ctx
        self.entries = entries
        self.names = References()
        self.conditional: dict[str, str] = {}
        for entry in entries:
            if entry.method == "POST":
                self.names.name(entry.full_url, entry.index, None)
            elif entry.method in ("PUT", "PATCH") and entry.full_url:
                self.names.name(entry.full_url, entry.index, entry.target)

    def check_overlaps(self) -> None:
        """Two entries may not change the same instance, nor share a fullUrl (http.html#trules)."""
        seen: dict[str, _Entry] = {}
        for entry in self.entries:
            if entry.target is None:
                continue
            if entry.target in seen:
                raise FHIRError(400, f"{seen[entry.target].label} and {entry.label} both change {entry.target}",
                                code="invariant", expression=[f"Bundle.entry[{entry.index}]"])
            seen[entry.target] = entry
        urls: dict[str, _Entry] = {}
        for entry in self.entries:
            if entry.full_url and entry.method != "GET":
                if entry.full_url in urls:
                    raise FHIRError(400, f"{urls[entry.full_url].label} and {entry.label} have the same fullUrl "
                                         f"{entry.full_url}", code="invariant",
                                    expression=[f"Bundle.entry[{entry.index}].fullUrl"])
                urls[entry.full_url] = entry

    def order(self) -> list[_Entry]:
        """The FHIR order; created entries after the created entries they refer to."""
        posts = [e.index for e in self.entries if e.method == "POST"]
        hard = {e.index: self._referred(e) for e in self.entries if e.method == "POST"}
        created = write_order(posts, hard, {})
        by_index = {e.index: e for e in self.entries}
        phased: list[_Entry] = []
        for phase in sorted(set(PHASES.values())):
            if phase == PHASES["POST"]:
                phased.extend(by_index[i] for i in created)
            else:
                phased.extend(e for e in self.entries if PHASES[e.method] == phase)
        return phased

    def _referred(self, entry: _Entry) -> set[int]:
        base = base_of(entry.full_url)
        found = self.names.entries_referred_to(entry.resource, base)
        for _, value in _query_of(entry):
            key = self.names.key(value, base)
            if key is not None:
                found.add(self.names.owners[key])
        return {i for i in found if self.entries[i].method == "POST"}

    def _conditional(self, reference: str) -> str | None:
        if not _CONDITIONAL.match(reference):
            return None
        if reference not in self.conditional:
            rtype, _, query = reference.partition("?")
            interactions.check_type(rtype, "search-type")
            from zorgpad.fhir.search import find

            found = find(self.ctx, rtype, _pairs(query))
            if len(found) != 1:
                raise FHIRError(404 if not found else 412, f"the conditional reference {reference!r} matches "
                                f"{len(found)} resources (it must match exactly one)",
                                code="not-found" if not found else "multiple-matches")
            self.conditional[reference] = f"{found[0].resource_type}/{found[0].id}"
        return self.conditional[reference]

    def run(self) -> JSON:
        """Process every entry; raise at the first that fails."""
        self.check_overlaps()
        answers: dict[int, JSON] = {}
        for entry in self.order():
            rtype = entry.path[0] if entry.path else None
            try:
                answers[entry.index] = self._one(entry)
            except (FHIRError, PathwayError) as exc:
                raise _located(as_fhir_error(exc), entry, rtype) from None
        return {"resourceType": "Bundle", "type": "transaction-response",
                "entry": [answers[e.index] for e in self.entries]}

    def _one(self, entry: _Entry) -> JSON:
        base = base_of(entry.full_url)
        resource = entry.resource
        if entry.method in ("POST", "PUT"):
            resource = self.names.rewrite(resource, base, self._conditional)
            left = unresolved_placeholders(resource)
            if left:
                raise FHIRError(400, f"the reference {left[0]} matches no fullUrl in this Bundle", code="not-found")
        query = [(name, self._resolve_value(value, base)) for name, value in _query_of(entry)]
        answer = _perform(self.ctx, entry, resource, query)
        if entry.method == "POST" and entry.full_url:
            located = answer["response"]["location"].split("/")
            self.names.targets[entry.full_url] = f"{located[0]}/{located[1]}"
        return answer

    def _resolve_value(self, value: str, base: str | None) -> str:
        key = self.names.key(value, base)
        target = self.names.targets.get(key) if key is not None else None
        return target or value


def _pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query.lstrip("?"), keep_blank_values=True) if query else []


def _query_of(entry: _Entry) -> list[tuple[str, str]]:
    """The search of a GET, or the ``ifNoneExist`` search of a POST."""
    if entry.method == "POST":
        return _pairs(_request_text(entry, "ifNoneExist") or "")
    return _pairs(entry.query)


# -- batch ------------------------------------------------------------------------------------------

def _batch_entry(ctx: FHIRContext, raw: JSON, index: int, full_urls: set[str]) -> JSON:
    entry = _parse(ctx, index, raw)
    if entry.method in ("POST", "PUT"):
        base = base_of(entry.full_url)
        for ref in references(entry.resource):
            if ref in full_urls or (base and f"{base}/{ref}" in full_urls and f"{base}/{ref}" != entry.full_url):
                raise FHIRError(400, f"the reference {ref} points at another entry of this batch; batch entries "
                                     "are independent (use a transaction)", code="invariant")
    return _perform(ctx, entry, entry.resource, _query_of(entry))


def _batch(ctx: FHIRContext, raws: list[JSON]) -> JSON:
    full_urls = {e["fullUrl"] for e in raws if isinstance(e.get("fullUrl"), str)}
    answers = []
    for index, raw in enumerate(raws):
        try:
            with savepoint(ctx.session):
                answers.append(_batch_entry(ctx, raw, index, full_urls - {raw.get("fullUrl")}))
        except (FHIRError, PathwayError) as exc:
            error = as_fhir_error(exc)
            answers.append({"response": {"status": _status(error.status), "outcome": error.outcome()}})
    return {"resourceType": "Bundle", "type": "batch-response", "entry": answers}


# -- entry point ------------------------------------------------------------------------------------

def process_bundle(ctx: FHIRContext, body: Any) -> JSON:
    """Process a transaction or batch Bundle; answer the transaction-response or batch-response Bundle."""
    bundle = check_bundle(body, ("transaction", "batch"), "POST [base]")
    raws: list[JSON] = bundle.get("entry", [])
    if bundle["type"] == "batch":
        return _batch(ctx, raws)
    entries = []
    for index, raw in enumerate(raws):
        try:
            entries.append(_parse(ctx, index, raw))
        except FHIRError as exc:
            request = raw.get("request")
            request = request if isinstance(request, dict) else {}
            fake = _Entry(index, str(request.get("method", "?")), str(request.get("url", "?")), [], "", None,
                          None, {})
            raise _located(exc, fake, None) from None
    return _Transaction(ctx, entries).run()
