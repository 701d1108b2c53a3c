"""FHIR R4 search: ``GET [base]/Type?params`` answered with a ``searchset`` Bundle.

Every criterion becomes SQL over the index tables (``search_token``, ``search_reference``,
``search_date``) as an ``EXISTS`` subquery joined on resource type and id, so the database does the
matching and paging; only the page asked for is loaded. What the caller may see is applied as SQL too
(:meth:`Scope.restrict`), for the matches and for every ``_include``/``_revinclude`` alike.

Supported:

* ``_id``, ``_lastUpdated``; token, reference and date parameters from :func:`capabilities.search_params`;
* token values ``system|code``, ``|code``, ``system|``, ``code``; reference values ``Type/id``, ``id``
  and absolute URLs; date values with the prefixes ``eq ne gt lt ge le sa eb ap`` at any precision;
* a comma is OR, a repeated parameter is AND;
* modifiers ``:not`` (token), ``:missing`` (all), ``:Type`` (reference); any other modifier is refused,
  because ignoring it would silently widen the result;
* chains (``device.type=…``, ``reason-reference:Procedure.code=…``), up to three links deep, every link
  but the last typed where its parameter may point to several types (``subject:Patient.organization.name``);
* ``_count`` (default 50, at most 1000, 0 allowed), ``_offset``, ``_sort`` on ``_lastUpdated``/``_id``,
  ``_summary=count|data|false``, ``_elements``, ``_include`` (also ``Type:param:Target``, ``*`` and
  ``:iterate``) and ``_revinclude``.

Chains test only linked resources the caller may see. ``find`` (If-None-Exist) is
always strict and does not audit (the create or the returned resource is what gets audited).

Unknown parameters are ignored and reported in an OperationOutcome entry (``search.mode=outcome``);
with ``Prefer: handling=strict`` they are a 400. Values that cannot be what the parameter needs
(a date that is not a date, ``_count=abc``) are always a 400, and so is a search that asks too much:
more than 100 parameters, or 100 comma-separated alternatives in one value (``too-costly``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, and_, exists, false, func, not_, or_, true
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from zorgpad.engine.store.audit import audit
from zorgpad.engine.store.tables import SearchDate, SearchReference, SearchToken, StoredResource
from zorgpad.fhir.capabilities import RESOURCE_TYPES, RESULT_PARAMS, search_params
from zorgpad.fhir.context import FHIRContext
from zorgpad.fhir.outcomes import FHIRError

JSON = dict[str, Any]
Params = Sequence[tuple[str, str]]

DEFAULT_COUNT = 50
MAX_COUNT = 1000
#: Larger offsets overflow the databases' integers (and no result set is this large).
MAX_OFFSET = 2**31 - 1
#: Served from elsewhere (the registry, the audit log): never rows of the resource table.
VIRTUAL_TYPES = frozenset({"PlanDefinition", "AuditEvent"})
#: Bounds on what one search may ask, so that no query grows beyond what the database can plan quickly
#: (SQLite refuses expressions deeper than 1,000; untyped chains multiply the types they search).
MAX_PARAMETERS = 100
MAX_ALTERNATIVES = 100
MAX_CHAIN_LINKS = 3
#: Result parameters understood here besides :data:`capabilities.RESULT_PARAMS`.
_IGNORED = frozenset({"_format", "_pretty", "_total"})
#: Where a reference parameter can point, when a bare id or a chain does not say.
REFERENCE_TARGETS: dict[str, tuple[str, ...]] = {
    "patient": ("Patient",),
    "beneficiary": ("Patient",),
    "encounter": ("Encounter",),
    "device": ("Device",),
    "organization": ("Organization",),
    "practitioner": ("Practitioner",),
    "general-practitioner": ("Organization", "Practitioner", "PractitionerRole"),
    "based-on": ("CarePlan",),
}
#: Canonical-valued parameters indexed as tokens without a system: ``url`` matches ``url|version`` too.
CANONICAL_PARAMS = frozenset({("QuestionnaireResponse", "questionnaire"),
                              ("CarePlan", "instantiates-canonical")})
_DATE = re.compile(r"^(\d{4})(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")
_PATIENT_REF = re.compile(r"^Patient/[A-Za-z0-9\-.]{1,64}$")
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


@dataclass
class _Plan:
    """A parsed search: SQL criteria plus how to present the result."""

    where: list[ColumnElement[bool]] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    descending: bool = False
    sort_by_id: bool = False
    summary: str | None = None
    elements: list[str] = field(default_factory=list)
    includes: list[tuple[str, str, str | None, bool]] = field(default_factory=list)
    revincludes: list[tuple[str, str, str | None]] = field(default_factory=list)
    patient: str | None = None


@dataclass(frozen=True)
class _Target:
    """The resource rows a criterion is about: the searched table, or an alias of it in a chain."""

    resource_type: Any
    id: Any
    last_updated: Any


def search(ctx: FHIRContext, resource_type: str, params: Params) -> JSON:
    """Search one resource type; the ``searchset`` Bundle for the page asked for."""
    plan = _plan(ctx, resource_type, params, strict=ctx.strict)
    criteria = [col(StoredResource.resource_type) == resource_type, col(StoredResource.deleted).is_(False),
                *plan.where]
    total = ctx.session.execute(ctx.scope.restrict(
        select(func.count()).select_from(StoredResource).where(*criteria))).scalar_one()
    rows: list[StoredResource] = []
    if plan.summary != "count" and plan.count > 0:
        order = [col(StoredResource.id)] if plan.sort_by_id else [col(StoredResource.last_updated),
                                                                    col(StoredResource.id)]
        query = ctx.scope.restrict(select(StoredResource).where(*criteria))
        query = query.order_by(*(c.desc() if plan.descending else c.asc() for c in order))
        rows = list(ctx.session.execute(query.offset(plan.offset).limit(plan.count)).scalars().all())
    included = _included(ctx, resource_type, rows, plan) if rows else []
    _audit(ctx, resource_type, plan, rows + included)
    entries = [_entry(ctx, r, "match", plan.elements) for r in rows]
    entries += [_entry(ctx, r, "include", plan.elements) for r in included]
    if plan.ignored:
        entries.append({"resource": _ignored_outcome(resource_type, plan.ignored), "search": {"mode": "outcome"}})
    bundle: JSON = {"resourceType": "Bundle", "type": "searchset", "total": total,
                    "link": _links(ctx, resource_type, plan, total)}
    if plan.summary != "count" and entries:
        bundle["entry"] = entries
    return bundle


def find(ctx: FHIRContext, resource_type: str, params: Params) -> list[StoredResource]:
    """Every visible resource matching ``params`` (no paging), as for a conditional create.

    Unknown parameters are always an error here: ignoring a criterion could match the wrong resource.
    """
    plan = _plan(ctx, resource_type, params, strict=True)
    query = ctx.scope.restrict(select(StoredResource).where(
        col(StoredResource.resource_type) == resource_type, col(StoredResource.deleted).is_(False), *plan.where))
    query = query.order_by(col(StoredResource.last_updated), col(StoredResource.id))
    return list(ctx.session.execute(query).scalars().all())


# -- parsing ------------------------------------------------------------------------------------------

def _plan(ctx: FHIRContext, resource_type: str, params: Params, *, strict: bool) -> _Plan:
    plan = _Plan()
    searched = _Target(StoredResource.resource_type, StoredResource.id, StoredResource.last_updated)

    def unknown(name: str, why: str) -> None:
        if strict:
            raise FHIRError(400, f"unknown search parameter {name!r} for {resource_type}: {why}",
                            code="not-supported")
        plan.ignored.append(f"{name}: {why}")

    if len(params) > MAX_PARAMETERS:
        raise FHIRError(400, f"a search may have at most {MAX_PARAMETERS} parameters (got {len(params)})",
                        code="too-costly")
    for name, raw in params:
        value = raw.strip()
        if "\x00" in name or "\x00" in value:
            raise FHIRError(400, f"search parameter {name!r} contains a NUL character", code="value")
        if name in _IGNORED:
            continue
        if value == "":  # the spec: a parameter without a value is ignored
            continue
        if name.startswith("_") and name.partition(":")[0] in (*RESULT_PARAMS, "_include", "_revinclude"):
            _result_param(ctx, resource_type, plan, name, value, unknown)
            continue
        condition = _criterion(ctx, resource_type, searched, name, value, unknown)
        if condition is not None:
            plan.where.append(condition)
            plan.used.append((name, raw))
            plan.patient = _named_patient(resource_type, name, value, plan.patient)
    return plan


def _result_param(ctx: FHIRContext, resource_type: str, plan: _Plan, name: str, value: str, unknown: Any) -> None:
    base, _, modifier = name.partition(":")
    if base == "_count":
        plan.count = min(_non_negative(name, value), MAX_COUNT)
    elif base == "_offset":
        plan.offset = _non_negative(name, value)
    elif base == "_sort":
        keys = [k.strip() for k in value.split(",") if k.strip()]
        wrong = [k for k in keys if k.removeprefix("-") not in ("_lastUpdated", "_id")]
        if not keys:
            unknown(f"_sort={value}", "it names no sort key")
            return
        if wrong:
            unknown(f"_sort={value}", f"sorting is supported on _lastUpdated and _id only (not {wrong[0]!r})")
            return
        plan.descending = keys[0].startswith("-")
        plan.sort_by_id = keys[0].removeprefix("-") == "_id"
    elif base == "_summary":
        if value not in ("count", "data", "false"):
            unknown(f"_summary={value}", "supported are count, data and false")
            return
        plan.summary = value
    elif base == "_elements":
        plan.elements = [e.strip() for e in value.split(",") if e.strip()]
    elif base in ("_include", "_revinclude"):
        if modifier not in ("", "iterate", "recurse"):
            raise FHIRError(400, f"{name}: the modifier ':{modifier}' is not supported", code="not-supported")
        parts = value.split(":")
        if value == "*":
            parts = [resource_type, "*"]
        if len(parts) not in (2, 3) or parts[0] not in RESOURCE_TYPES or parts[0] in VIRTUAL_TYPES:
            raise FHIRError(400, f"{name}={value!r} is not of the form Type:parameter[:TargetType]", code="value")
        source, param = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if target is not None and target not in RESOURCE_TYPES:
            raise FHIRError(400, f"{name}={value!r}: {target!r} is not a resource type this server knows",
                            code="value")
        if param != "*" and search_params(source).get(param) != "reference":
            unknown(f"{name}={value}", f"{param!r} is not a reference parameter of {source}")
            return
        if base == "_include":
            plan.includes.append((source, param, target, bool(modifier)))
        elif target in (None, resource_type):
            plan.revincludes.append((source, param, target))
    else:
        return
    plan.used.append((name, value))


def _non_negative(name: str, value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) > MAX_OFFSET:
        raise FHIRError(400, f"{name} must be a whole number from 0 to {MAX_OFFSET} (got {value!r})", code="value")
    return int(value)


def _named_patient(resource_type: str, name: str, value: str, current: str | None) -> str | None:
    """The one patient a search is for, as far as its parameters say."""
    if current is not None or "," in value:
        return current
    ref = None
    if resource_type == "Patient" and name == "_id":
        ref = f"Patient/{value}"
    elif name in ("patient", "subject", "patient:Patient", "subject:Patient"):
        ref = _relative(value, "")
        if "/" not in ref and name != "subject":
            ref = f"Patient/{ref}"
    return ref if ref is not None and _PATIENT_REF.match(ref) else None


def _criterion(ctx: FHIRContext, resource_type: str, target: _Target, name: str, value: str,
               unknown: Any) -> ColumnElement[bool] | None:
    """SQL for one ``name=value`` about the rows of ``target`` (of ``resource_type``), or None if unknown."""
    head, dot, chain = name.partition(".")
    pname, _, modifier = head.partition(":")
    kinds = search_params(resource_type)
    kind = kinds.get(pname)
    if kind is None:
        unknown(name, f"{resource_type} has no search parameter {pname!r}")
        return None
    if dot:
        if kind != "reference":
            raise FHIRError(400, f"{name}: {pname!r} is a {kind} parameter of {resource_type}, which cannot be "
                                 "chained", code="invalid")
        return _chained(ctx, resource_type, target, pname, modifier, chain, value, unknown)
    if modifier == "missing":
        if value not in ("true", "false") or pname in ("_id", "_lastUpdated"):
            raise FHIRError(400, f"{name} takes true or false (got {value!r})" if value not in ("true", "false")
                            else f"{name}: every resource has {pname}", code="value")
        present = _rows(kind, target, pname)
        return not_(present) if value == "true" else present
    if pname == "_id":
        _no_modifier(name, modifier)
        return col(target.id).in_(_values(value))
    if pname == "_lastUpdated":
        _no_modifier(name, modifier)
        return or_(*(_date_match(v, name, target.last_updated, target.last_updated, ctx.now) for v in _values(value)))
    if kind == "token":
        return _token(resource_type, target, pname, modifier, name, value)
    if kind == "reference":
        return _reference(ctx, target, pname, modifier, name, value)
    if kind == "date":
        _no_modifier(name, modifier)
        row: Any = aliased(SearchDate)
        matches = [_date_match(v, name, row.start, row.end, ctx.now) for v in _values(value)]
        return exists().where(row.resource_type == target.resource_type, row.resource_id == target.id,
                              row.param == pname, or_(*matches))
    raise FHIRError(400, f"{name}: {kind} parameters are not searchable on {resource_type}", code="not-supported")


def _no_modifier(name: str, modifier: str) -> None:
    if modifier:
        raise FHIRError(400, f"{name}: the modifier ':{modifier}' is not supported for this parameter",
                        code="not-supported")


def _rows(kind: str, target: _Target, pname: str) -> ColumnElement[bool]:
    table: Any = aliased({"token": SearchToken, "reference": SearchReference, "date": SearchDate}[kind])
    return exists().where(table.resource_type == target.resource_type, table.resource_id == target.id,
                          table.param == pname)


def _split(value: str, separator: str = ",") -> list[str]:
    r"""Split on the separators not escaped with a backslash; the parts keep their escapes."""
    parts, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    r"""``\,`` ``\|`` ``\$`` and ``\\`` stand for the character itself."""
    return re.sub(r"\\([,|$\\])", r"\1", text)


def _alternatives(value: str) -> list[str]:
    """The comma-separated alternatives of a value, still escaped (at most :data:`MAX_ALTERNATIVES`)."""
    parts = _split(value)
    if len(parts) > MAX_ALTERNATIVES:
        raise FHIRError(400, f"a search value may list at most {MAX_ALTERNATIVES} alternatives (got {len(parts)})",
                        code="too-costly")
    return parts


def _values(value: str) -> list[str]:
    """The comma-separated alternatives of a value, unescaped."""
    return [_unescape(v) for v in _alternatives(value)]


# -- tokens -------------------------------------------------------------------------------------------

def _token(resource_type: str, target: _Target, pname: str, modifier: str, name: str,
           value: str) -> ColumnElement[bool]:
    if modifier not in ("", "not"):
        raise FHIRError(400, f"{name}: the modifier ':{modifier}' is not supported for token parameters "
                             "(supported: :not, :missing)", code="not-supported")
    row: Any = aliased(SearchToken)
    canonical = (resource_type, pname) in CANONICAL_PARAMS
    matches = []
    for item in _alternatives(value):
        if canonical:
            text = _unescape(item)
            exact = and_(col(row.system).is_(None), row.code == text)
            matches.append(exact if "|" in text else or_(exact, and_(
                col(row.system).is_(None), col(row.code).like(_like(text) + "|%", escape="\\"))))
            continue
        parts = [_unescape(p) for p in _split(item, "|")]
        if len(parts) == 1:
            matches.append(row.code == parts[0])
        elif len(parts) == 2:
            system, code = parts
            if not system and not code:
                raise FHIRError(400, f"{name}: '|' alone names neither a system nor a code", code="value")
            conditions = [col(row.system).is_(None) if not system else row.system == system]
            if code:
                conditions.append(row.code == code)
            matches.append(and_(*conditions))
        else:
            raise FHIRError(400, f"{name}: {item!r} has more than one unescaped '|'", code="value")
    found = exists().where(row.resource_type == target.resource_type, row.resource_id == target.id,
                           row.param == pname, or_(*matches))
    return not_(found) if modifier == "not" else found


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# -- references ---------------------------------------------------------------------------------------

def _relative(value: str, base_url: str) -> str:
    """``Type/id`` for an absolute URL ending in Type/id (or the value unchanged)."""
    text = value.split("/_history/")[0]
    if base_url and text.startswith(base_url.rstrip("/") + "/"):
        return text[len(base_url.rstrip("/")) + 1:]
    if "://" in text:
        segments = text.rstrip("/").split("/")
        if len(segments) >= 2 and segments[-2] in RESOURCE_TYPES:
            return f"{segments[-2]}/{segments[-1]}"
    return text


def _reference(ctx: FHIRContext, target: _Target, pname: str, modifier: str, name: str,
               value: str) -> ColumnElement[bool]:
    if modifier and modifier not in RESOURCE_TYPES:
        raise FHIRError(400, f"{name}: the modifier ':{modifier}' is not supported for reference parameters "
                             "(supported: :[type], :missing)", code="not-supported")
    types = (modifier,) if modifier else REFERENCE_TARGETS.get(pname)
    candidates: list[str] = []
    for item in _values(value):
        ref = _relative(item, ctx.base_url)
        if "://" in item:
            candidates.append(item)  # stored as given, absolute
        if "://" in ref:
            continue
        if "/" in ref:
            if types is None or ref.split("/", 1)[0] in types:
                candidates.append(ref)
            continue
        for rtype in types or sorted(t for t in RESOURCE_TYPES if t not in VIRTUAL_TYPES):
            candidates.append(f"{rtype}/{ref}")
    if not candidates:
        return false()
    absolute = [ctx.url(c) for c in candidates if "://" not in c]
    row: Any = aliased(SearchReference)
    return exists().where(row.resource_type == target.resource_type, row.resource_id == target.id,
                          row.param == pname, col(row.target).in_(candidates + absolute))


def _chained(ctx: FHIRContext, resource_type: str, target: _Target, pname: str, modifier: str, chain: str,
             value: str, unknown: Any) -> ColumnElement[bool] | None:
    if modifier and modifier not in RESOURCE_TYPES:
        raise FHIRError(400, f"{pname}:{modifier}.{chain}: only a resource type may qualify a chained parameter",
                        code="not-supported")
    name = f"{pname}{':' + modifier if modifier else ''}.{chain}"
    if chain.count(".") + 1 > MAX_CHAIN_LINKS:
        raise FHIRError(400, f"{name}: a chain may have at most {MAX_CHAIN_LINKS} links", code="too-costly")
    sub = chain.partition(".")[0].partition(":")[0]
    types = [modifier] if modifier else list(REFERENCE_TARGETS.get(pname) or
                                             sorted(t for t in RESOURCE_TYPES if t not in VIRTUAL_TYPES))
    types = [t for t in types if t not in VIRTUAL_TYPES and sub in search_params(t)]
    if len(types) > 1 and "." in chain:
        raise FHIRError(400, f"{name}: {pname!r} may point to {len(types)} resource types; name the type of every "
                             f"link but the last ({pname}:{types[0]}.{chain})", code="too-costly")
    if not types:
        unknown(name, f"no resource {pname!r} of {resource_type} can point to has a search parameter {sub!r}")
        return None
    linked: Any = aliased(StoredResource)
    inner = _Target(linked.resource_type, linked.id, linked.last_updated)
    conditions = []
    for rtype in types:
        condition = _criterion(ctx, rtype, inner, chain, value, unknown)
        if condition is None:
            return None
        conditions.append(and_(linked.resource_type == rtype, condition))
    visible = ctx.scope.visible(linked)  # a chain may not test resources the caller cannot see
    pointed = select(linked.resource_type + "/" + linked.id).where(
        col(linked.deleted).is_(False), or_(*conditions), *([] if visible is None else [visible]))
    row: Any = aliased(SearchReference)
    return exists().where(row.resource_type == target.resource_type, row.resource_id == target.id,
                          row.param == pname, col(row.target).in_(pointed))


# -- dates --------------------------------------------------------------------------------------------

def _date_range(text: str, name: str) -> tuple[datetime, datetime]:
    """The span ``[start, end)`` a search date covers, at the precision it is written in."""
    match = _DATE.match(text)
    if match is None:
        raise FHIRError(400, f"{name}: {text!r} is not a FHIR date, dateTime or instant (for example 2026, "
                             "2026-03, 2026-03-01 or 2026-03-01T10:00:00Z)", code="value")
    try:
        if match.group(2) is None:
            start = datetime(int(text), 1, 1, tzinfo=UTC)
            return start, _end_of(lambda: start.replace(year=start.year + 1))
        if match.group(3) is None:
            year, month = int(text[:4]), int(text[5:7])
            start = datetime(year, month, 1, tzinfo=UTC)
            return start, _end_of(lambda: datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC))
        if match.group(4) is None:
            start = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return start, _end_of(lambda: start + timedelta(days=1))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise FHIRError(400, f"{name}: {text!r} is not a valid date", code="value") from None
    if match.group(6):
        step = timedelta(microseconds=1)
    elif match.group(5):
        step = timedelta(seconds=1)
    else:
        step = timedelta(minutes=1)
    return moment, _end_of(lambda: moment + step)


def _end_of(compute: Callable[[], datetime]) -> datetime:
    """The end of a span, or the end of time for a span that ends after 9999."""
    try:
        return compute()
    except (ValueError, OverflowError):
        return datetime.max.replace(tzinfo=UTC)


def _date_match(value: str, name: str, start: Any, end: Any, now: datetime) -> ColumnElement[bool]:
    """Whether an indexed span ``[start, end)`` (``start == end`` for an instant) meets ``value``."""
    prefix, text = (value[:2], value[2:]) if value[:2] in _PREFIXES else ("eq", value)
    low, high = _date_range(text.replace(" ", "+"), name)
    start, end = col(start), col(end)
    point = and_(start.is_not(None), start == end)

    def ends_after(moment: datetime) -> ColumnElement[bool]:  # overlaps [moment, ∞)
        return or_(end.is_(None), end > moment, and_(point, end == moment))

    def ends_by(moment: datetime) -> ColumnElement[bool]:  # wholly before moment
        return and_(end.is_not(None), not_(ends_after(moment)))

    def starts_before(moment: datetime) -> ColumnElement[bool]:
        return or_(start.is_(None), start < moment)

    def starts_from(moment: datetime) -> ColumnElement[bool]:
        return and_(start.is_not(None), start >= moment)

    if prefix == "ap":  # approximately: widened by 10% of the distance from now, at least a day
        margin = max(abs(now - low) / 10, timedelta(days=1))
        try:
            low, high = low - margin, high + margin
        except OverflowError:
            raise FHIRError(400, f"{name}: {value!r} is too far from now to be approximated", code="value") from None
    equal = and_(starts_from(low), ends_by(high))
    return {
        "eq": equal,
        "ne": not_(equal),
        "gt": ends_after(high),
        "ge": ends_after(low),
        "lt": starts_before(low),
        "le": starts_before(high),
        "sa": starts_from(high),
        "eb": ends_by(low),
        "ap": and_(starts_before(high), ends_after(low)),
    }[prefix]


# -- results ------------------------------------------------------------------------------------------

def _included(ctx: FHIRContext, resource_type: str, rows: list[StoredResource], plan: _Plan) -> list[StoredResource]:
    """The resources ``_include`` and ``_revinclude`` add to a page, visible ones only, each once."""
    seen = {(r.resource_type, r.id) for r in rows}
    added: list[StoredResource] = []

    def keep(found: Iterable[StoredResource]) -> list[StoredResource]:
        new = [r for r in found if (r.resource_type, r.id) not in seen]
        seen.update((r.resource_type, r.id) for r in new)
        added.extend(new)
        return new

    frontier = rows
    for depth in range(4):  # :iterate follows at most three links beyond the first
        new: list[StoredResource] = []
        for source, param, target, iterate in plan.includes:
            if not iterate and (depth > 0 or source != resource_type):
                continue
            ids = [r.id for r in frontier if r.resource_type == source]
            if ids:
                new += keep(_referenced(ctx, source, ids, param, target))
        if not new:
            break
        frontier = new
    for source, param, _target in plan.revincludes:
        refs = [f"{resource_type}/{r.id}" for r in rows]
        row: Any = aliased(SearchReference)
        query = select(StoredResource).where(
            col(StoredResource.resource_type) == source, col(StoredResource.deleted).is_(False),
            exists().where(row.resource_type == StoredResource.resource_type, row.resource_id == StoredResource.id,
                           row.param == param if param != "*" else true(), col(row.target).in_(refs)))
        keep(ctx.session.execute(ctx.scope.restrict(query).order_by(col(StoredResource.id))).scalars().all())
    return added


def _referenced(ctx: FHIRContext, source: str, ids: list[str], param: str,
                target: str | None) -> list[StoredResource]:
    params = [p for p, k in search_params(source).items() if k == "reference"] if param == "*" else [param]
    refs = ctx.session.exec(select(SearchReference.target).where(
        SearchReference.resource_type == source, col(SearchReference.resource_id).in_(ids),
        col(SearchReference.param).in_(params))).all()
    wanted: dict[str, set[str]] = {}
    for ref in refs:
        rtype, _, rid = _relative(ref, ctx.base_url).partition("/")
        if rid and "/" not in rid and rtype in RESOURCE_TYPES and rtype not in VIRTUAL_TYPES \
                and target in (None, rtype):
            wanted.setdefault(rtype, set()).add(rid)
    found: list[StoredResource] = []
    for rtype, rids in sorted(wanted.items()):
        query = select(StoredResource).where(col(StoredResource.resource_type) == rtype,
                                             col(StoredResource.id).in_(sorted(rids)),
                                             col(StoredResource.deleted).is_(False))
        found += ctx.session.execute(ctx.scope.restrict(query).order_by(col(StoredResource.id))).scalars().all()
    return found


def _entry(ctx: FHIRContext, stored: StoredResource, mode: str, elements: list[str]) -> JSON:
    resource = stored.content
    if elements:
        resource = {k: v for k, v in resource.items() if k in ("resourceType", "id", "meta") or k in elements}
        meta = dict(resource.get("meta") or {})
        meta["tag"] = [*(meta.get("tag") or []), _SUBSETTED]
        resource["meta"] = meta
    return {"fullUrl": ctx.url(f"{stored.resource_type}/{stored.id}"), "resource": resource,
            "search": {"mode": mode}}


def _ignored_outcome(resource_type: str, ignored: list[str]) -> JSON:
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": "warning", "code": "not-supported",
         "diagnostics": f"ignored search parameter for {resource_type}: {why}"} for why in ignored]}


def _links(ctx: FHIRContext, resource_type: str, plan: _Plan, total: int) -> list[JSON]:
    kept = [(n, v) for n, v in plan.used if n not in ("_count", "_offset")]

    def page(offset: int) -> str:
        query = urlencode([*kept, ("_count", str(plan.count)), ("_offset", str(offset))])
        return ctx.url(f"{resource_type}?{query}")

    links = [{"relation": "self", "url": page(plan.offset)}]
    if plan.summary == "count" or plan.count == 0:
        return links
    if plan.offset + plan.count < total:
        links.append({"relation": "next", "url": page(plan.offset + plan.count)})
    if plan.offset > 0:
        links.append({"relation": "previous", "url": page(max(plan.offset - plan.count, 0))})
    if total > plan.count or plan.offset > 0:
        links.append({"relation": "first", "url": page(0)})
        links.append({"relation": "last", "url": page(max(total - 1, 0) // plan.count * plan.count)})
    return links


def _audit(ctx: FHIRContext, resource_type: str, plan: _Plan, returned: list[StoredResource]) -> None:
    """One row for the search; with data of several patients, one read row per patient as well."""
    query = urlencode([(n, v) for n, v in plan.used if n not in ("_count", "_offset")])
    entity = f"{resource_type}?{query}"[:200]
    patients = sorted({r.patient for r in returned if r.patient})
    patient = plan.patient or (patients[0] if len(patients) == 1 else None)
    audit(ctx.session, ctx.principal.actor, ctx.now, action="E", what="search", entity=entity, patient=patient)
    if len(patients) > 1:
        for other in patients:
            audit(ctx.session, ctx.principal.actor, ctx.now, action="R", what="read", entity=entity, patient=other)
