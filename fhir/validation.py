"""Validation at the boundary: once per incoming resource, with fhir.resources' R4B models.

fhir.resources checks structure, cardinality and primitive formats but not code bindings, so the
value sets Zorgpad relies on (Task.status, Task.intent, …) are checked here. R4B-only resource types
are refused: Zorgpad speaks FHIR 4.0.1.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIR_COMMENTS_FIELD_NAME, FHIRAbstractModel
from fhir_core.utils import is_primitive_type
from pydantic import AnyUrl, ValidationError
from zorgpad.engine._states import TASK_STATUSES
from zorgpad.fhir.capabilities import RESOURCE_TYPES
from zorgpad.fhir.outcomes import FHIRError, from_validation_error

JSON = dict[str, Any]

_OBSERVATION = ("registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error",
                "unknown")
_EVENT = ("preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown")
_REQUEST = ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown")
_GENDER = ("male", "female", "other", "unknown")

#: Required bindings fhir.resources does not check, per resource type and element.
BINDINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "Task": {
        "status": TASK_STATUSES,
        "intent": ("unknown", "proposal", "plan", "order", "original-order", "reflex-order", "filler-order",
                   "instance-order", "option"),
    },
    "CarePlan": {
        "status": ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"),
        "intent": ("proposal", "plan", "order", "option"),
    },
    "Communication": {
        "status": ("preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                   "entered-in-error", "unknown"),
    },
    "Subscription": {"status": ("requested", "active", "error", "off")},
    "Consent": {"status": ("draft", "proposed", "active", "rejected", "inactive", "entered-in-error")},
    "Observation": {"status": _OBSERVATION},
    "DiagnosticReport": {"status": (*_OBSERVATION, "partial")},
    "Procedure": {"status": _EVENT},
    "Encounter": {"status": ("planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
                             "entered-in-error", "unknown")},
    "Goal": {"lifecycleStatus": ("proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled",
                                 "entered-in-error", "rejected")},
    "CommunicationRequest": {"status": _REQUEST, "intent": ("proposal", "plan", "directive", "order",
                                                            "original-order", "reflex-order", "filler-order",
                                                            "instance-order", "option")},
    "QuestionnaireResponse": {"status": ("in-progress", "completed", "amended", "entered-in-error", "stopped")},
    "Patient": {"gender": _GENDER},
    "Practitioner": {"gender": _GENDER},
    "RelatedPerson": {"gender": _GENDER},
    "DocumentReference": {"status": ("current", "superseded", "entered-in-error")},
    "Composition": {"status": ("preliminary", "final", "amended", "entered-in-error")},
    "DeviceUseStatement": {"status": ("active", "completed", "entered-in-error", "intended", "stopped", "on-hold")},
    "Endpoint": {"status": ("active", "suspended", "error", "off", "entered-in-error", "test")},
    "CareTeam": {"status": ("proposed", "active", "suspended", "inactive", "entered-in-error")},
    "MedicationRequest": {"status": ("active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped",
                                     "draft", "unknown")},
    "Immunization": {"status": ("completed", "entered-in-error", "not-done")},
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


# Comparing the input with the model's reading of it, without writing the model out as JSON.
#
# The check is "does every sent value have the JSON type the model writes it back as" (the models coerce:
# "yes" -> true, "3" -> 3). Writing a model out (fhir.resources serialises in Python, model by model) cost
# as much as validating it, so the sent JSON is walked beside the validated model instead, reading what
# FHIRAbstractModel._fhir_iter would write: which keys it writes (aliases of the elements, `_x` primitive
# extensions, fhir_comments, resourceType) and the JSON type of each primitive. Where the walk meets
# something it does not model exactly (a key the model reads but never writes back, a complex element sent
# as a JSON string, a string the JSON writer cannot encode, a Python type it does not know, deep nesting),
# it gives up and the model's own JSON is compared instead: same outcome, only slower.

_ELEMENT, _EXTENSION, _COMMENTS, _RESOURCE_TYPE = range(4)
#: Beyond this nesting (objects and arrays) compare with the written JSON, whose recursion limits decide.
_FAST_DEPTH = 48
#: The JSON type of the validated primitives, by Python type (exact type; Decimal and others are below).
_PRIMITIVE_JSON = {bool: "boolean", int: "number", str: "string", datetime.datetime: "string",
                   datetime.date: "string", datetime.time: "string", uuid.UUID: "string", bytes: "string",
                   type(None): "null"}


class _NotModelledError(Exception):
    """The fast comparison met a shape it does not model exactly."""


_MODEL_CLASSES: dict[str, type[FHIRAbstractModel]] = {}


def _model_class(rtype: str) -> type[FHIRAbstractModel]:
    return _MODEL_CLASSES.get(rtype) or _MODEL_CLASSES.setdefault(rtype, get_fhir_model_class(rtype))


@functools.cache
def _written_keys(cls: type[FHIRAbstractModel]) -> dict[str, tuple[str, int]]:
    """The keys a model of ``cls`` is written with: the attribute behind each, and what kind of key it is."""
    keys: dict[str, tuple[str, int]] = {}
    if cls.has_resource_base():
        keys["resourceType"] = ("", _RESOURCE_TYPE)
    fields = cls.model_fields
    for alias, name in cls.get_alias_mapping().items():
        keys[alias] = (name, _ELEMENT)
        extension = fields.get(f"{name}__ext")
        if extension is not None and is_primitive_type(fields[name]):
            keys[extension.alias or f"{name}__ext"] = (f"{name}__ext", _EXTENSION)
    keys[FHIR_COMMENTS_FIELD_NAME] = (FHIR_COMMENTS_FIELD_NAME, _COMMENTS)
    return keys


def _written_type(value: Any) -> str:
    """The JSON type a validated primitive is written as."""
    kind = _PRIMITIVE_JSON.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, decimal.Decimal):
        exponent = value.as_tuple().exponent
        if value.is_finite() and isinstance(exponent, int) and exponent >= 0 and value == value.to_integral_value():
            return "number"  # written as an int
        if math.isfinite(float(value)):
            return "number"
    elif isinstance(value, AnyUrl):
        return "string"
    raise _NotModelledError


def _check_string(value: str, path: str, nuls: list[JSON]) -> None:
    if "\x00" in value:
        nuls.append({"severity": "error", "code": "value", "expression": [path],
                     "diagnostics": f"{path} contains a NUL character, which FHIR strings may not contain"})
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate: the JSON writer refuses it
            raise _NotModelledError from None


def _scan(value: Any, path: str, depth: int, nuls: list[JSON]) -> None:
    """NUL characters in a part of the input the type comparison does not visit."""
    if isinstance(value, str):
        _check_string(value, path, nuls)
    elif isinstance(value, dict):
        if depth > _FAST_DEPTH:
            raise _NotModelledError
        for key, item in value.items():
            _scan(item, f"{path}.{key}", depth + 1, nuls)
    elif isinstance(value, list):
        if depth > _FAST_DEPTH:
            raise _NotModelledError
        for index, item in enumerate(value):
            _scan(item, f"{path}[{index}]", depth + 1, nuls)


def _compare(sent: Any, parsed: Any, path: str, depth: int, wrong: list[JSON], nuls: list[JSON]) -> None:
    """Type mismatches between a sent value and the model's reading of it (to ``wrong``), and NULs (to ``nuls``)."""
    if isinstance(parsed, FHIRAbstractModel):
        if not isinstance(sent, dict) or depth > _FAST_DEPTH:
            raise _NotModelledError
        keys = _written_keys(type(parsed))
        values = parsed.__dict__
        for key, item in sent.items():
            where = f"{path}.{key}"
            entry = keys.get(key)
            if entry is None:
                raise _NotModelledError  # read by the model (populate_by_name, resource_type) but not written back
            name, kind = entry
            if kind == _RESOURCE_TYPE:
                read: Any = parsed.__resource_type__
            else:
                read = values.get(name)
                if read is None or (kind != _COMMENTS and type(read) is list and not read):
                    _scan(item, where, depth + 1, nuls)  # not written: nothing to compare
                    continue
            _compare(item, read, where, depth + 1, wrong, nuls)
    elif type(parsed) is list:
        if type(sent) is not list or depth > _FAST_DEPTH:
            raise _NotModelledError
        for index, (left, right) in enumerate(zip(sent, parsed, strict=False)):
            _compare(left, right, f"{path}[{index}]", depth + 1, wrong, nuls)
        if len(sent) > len(parsed):
            raise _NotModelledError
    elif isinstance(sent, dict | list):
        raise _NotModelledError
    else:
        expected = _written_type(parsed)
        if type(sent) is str:
            _check_string(sent, path, nuls)
        if _json_type(sent) != expected:
            wrong.append({"severity": "error", "code": "value", "expression": [path],
                          "diagnostics": f"{path} must be a JSON {expected} (got a {_json_type(sent)}: {sent!r})"})


def _type_mismatches(sent: Any, parsed: Any, path: str) -> Iterator[JSON]:
    """Where a sent value has another JSON type than the model's written JSON (the slow comparison)."""
    if isinstance(sent, dict) and isinstance(parsed, dict):
        for key, value in sent.items():
            if key in parsed:
                yield from _type_mismatches(value, parsed[key], f"{path}.{key}")
    elif isinstance(sent, list) and isinstance(parsed, list):
        for index, (left, right) in enumerate(zip(sent, parsed, strict=False)):
            yield from _type_mismatches(left, right, f"{path}[{index}]")
    elif _json_type(sent) != _json_type(parsed):
        yield {"severity": "error", "code": "value", "expression": [path],
               "diagnostics": f"{path} must be a JSON {_json_type(parsed)} (got a {_json_type(sent)}: {sent!r})"}


def _nul_characters(value: Any, path: str) -> Iterator[JSON]:
    """Strings holding a NUL character, which FHIR strings may not contain (and PostgreSQL cannot store)."""
    if isinstance(value, str):
        if "\x00" in value:
            yield {"severity": "error", "code": "value", "expression": [path],
                   "diagnostics": f"{path} contains a NUL character, which FHIR strings may not contain"}
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nul_characters(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_characters(item, f"{path}[{index}]")


def _problems(data: JSON, model: FHIRAbstractModel, rtype: str) -> list[JSON]:
    """Values whose JSON type the model changed, then strings holding NUL characters."""
    wrong: list[JSON] = []
    nuls: list[JSON] = []
    try:
        _compare(data, model, rtype, 0, wrong, nuls)
    except _NotModelledError:
        try:
            dumped = json.loads(model.model_dump_json(by_alias=True, exclude_none=True))
        except RecursionError:
            raise FHIRError(400, f"{rtype}: the resource is nested too deeply", code="too-costly") from None
        except (TypeError, ValueError) as exc:  # e.g. a lone surrogate the JSON writer cannot encode
            raise FHIRError(400, f"{rtype}: {exc}", code="value") from None
        return list(_type_mismatches(data, dumped, rtype)) + list(_nul_characters(data, rtype))
    return wrong + nuls


def validate_resource(data: Any, *, expected_type: str | None = None, expected_id: str | None = None) -> JSON:
    """Check one resource; return it unchanged, or raise a 400/404 FHIRError naming every problem."""
    if not isinstance(data, dict):
        raise FHIRError(400, f"expected a JSON object holding a FHIR resource (got {type(data).__name__})",
                        code="structure")
    rtype = data.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise FHIRError(400, "the resource has no resourceType", code="required", expression=["resourceType"])
    if expected_type is not None and rtype != expected_type:
        raise FHIRError(400, f"resourceType {rtype!r} does not match the URL, which names {expected_type!r}",
                        code="invariant", expression=["resourceType"])
    if rtype not in RESOURCE_TYPES:
        raise FHIRError(404 if expected_type else 400, f"resource type {rtype!r} is not supported by this server",
                        code="not-supported")
    if expected_id is not None and data.get("id") != expected_id:
        raise FHIRError(400, f"the resource id {data.get('id')!r} differs from the id in the URL {expected_id!r}",
                        code="invariant", expression=[f"{rtype}.id"])
    try:
        model = _model_class(rtype).model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(rtype, exc) from None
    except RecursionError:
        raise FHIRError(400, f"{rtype}: the resource is nested too deeply", code="too-costly") from None
    except (TypeError, ValueError) as exc:  # fhir-core raises these for some malformed primitives
        raise FHIRError(400, f"{rtype}: {exc}", code="value") from None
    wrong = _problems(data, model, rtype)
    if wrong:
        # The models coerce ("yes" -> true, "3" -> 3); FHIR JSON does not: a primitive has one JSON type.
        raise FHIRError(400, wrong[0]["diagnostics"], issues=wrong)
    for element, codes in BINDINGS.get(rtype, {}).items():
        value = data.get(element)
        if value is not None and value not in codes:
            raise FHIRError(400, f"{rtype}.{element} {value!r} is not a valid code (expected one of "
                                 f"{', '.join(codes)})", code="code-invalid", expression=[f"{rtype}.{element}"])
    return data
