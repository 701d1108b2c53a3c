"""Validation at the boundary: once per incoming resource, with fhir.resources' R4B models.

fhir.resources checks structure, cardinality and primitive formats but not code bindings, so the
value sets Zorgpad relies on (Task.status, Task.intent, …) are checked here. R4B-only resource types
are refused: Zorgpad speaks FHIR 4.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError
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


def _type_mismatches(sent: Any, parsed: Any, path: str) -> Iterator[JSON]:
    """Where a sent value has another JSON type than the model's reading of it."""
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
        model = get_fhir_model_class(rtype).model_validate(data)
        dumped = json.loads(model.model_dump_json(by_alias=True, exclude_none=True))
    except ValidationError as exc:
        raise from_validation_error(rtype, exc) from None
    except RecursionError:
        raise FHIRError(400, f"{rtype}: the resource is nested too deeply", code="too-costly") from None
    except (TypeError, ValueError) as exc:  # fhir-core raises these for some malformed primitives
        raise FHIRError(400, f"{rtype}: {exc}", code="value") from None
    wrong = list(_type_mismatches(data, dumped, rtype)) + list(_nul_characters(data, rtype))
    if wrong:
        # The models coerce ("yes" -> true, "3" -> 3); FHIR JSON does not: a primitive has one JSON type.
        raise FHIRError(400, wrong[0]["diagnostics"], issues=wrong)
    for element, codes in BINDINGS.get(rtype, {}).items():
        value = data.get(element)
        if value is not None and value not in codes:
            raise FHIRError(400, f"{rtype}.{element} {value!r} is not a valid code (expected one of "
                                 f"{', '.join(codes)})", code="code-invalid", expression=[f"{rtype}.{element}"])
    return data
