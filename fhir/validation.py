"""Validation at the boundary: once per incoming resource, with fhir.resources' R4B models.

fhir.resources checks structure, cardinality and primitive formats but not code bindings, so the
value sets Zorgpad relies on (Task.status, Task.intent, …) are checked here. R4B-only resource types
are refused: Zorgpad speaks FHIR 4.0.1.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError
from zorgpad.engine._states import TASK_STATUSES
from zorgpad.fhir.capabilities import RESOURCE_TYPES
from zorgpad.fhir.outcomes import FHIRError, from_validation_error

JSON = dict[str, Any]

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
}


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
        get_fhir_model_class(rtype).model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(rtype, exc) from None
    except (TypeError, ValueError) as exc:  # fhir-core raises these for some malformed primitives
        raise FHIRError(400, f"{rtype}: {exc}", code="value") from None
    for element, codes in BINDINGS.get(rtype, {}).items():
        value = data.get(element)
        if value is not None and value not in codes:
            raise FHIRError(400, f"{rtype}.{element} {value!r} is not a valid code (expected one of "
                                 f"{', '.join(codes)})", code="code-invalid", expression=[f"{rtype}.{element}"])
    return data
