"""What ``/openapi.json`` says about the FHIR routes, beyond what FastAPI can see in their signatures.

The FHIR routes read their bodies themselves (FHIR JSON, JSON Patch, forms), so FastAPI knows neither
the bodies nor the answers. :func:`describe_fhir` adds them to the generated document: the resource
types of the CapabilityStatement as an ``enum`` for ``{resource_type}``, a request body on every write
(``application/fhir+json``, or ``application/json-patch+json`` for PATCH), the bearer token as a
security scheme, and an OperationOutcome for every error status. The CapabilityStatement at
``/fhir/metadata`` stays the authoritative description of the FHIR interface.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from zorgpad.fhir.capabilities import RESOURCE_TYPES

JSON = dict[str, Any]
FHIR_JSON = "application/fhir+json"
_RESOURCE: JSON = {"type": "object", "required": ["resourceType"],
                   "properties": {"resourceType": {"type": "string"}}, "additionalProperties": True}
_OUTCOME: JSON = {"type": "object", "required": ["resourceType", "issue"],
                  "properties": {"resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                                 "issue": {"type": "array", "items": {"type": "object"}}}}
_PATCH: JSON = {"type": "array", "items": {"type": "object", "required": ["op", "path"]}}
_ERRORS = {"400": "Bad request: the OperationOutcome names every problem",
           "401": "No valid bearer token", "404": "Unknown, deleted or not visible to the caller",
           "409": "Conflict", "412": "If-Match does not name the current version",
           "415": "Unsupported content type", "422": "The engine refused a transition",
           "503": "The database is unavailable; try again"}
_PUBLIC = frozenset({"/fhir/metadata"})


def describe_fhir(document: JSON) -> JSON:
    """A copy of the generated OpenAPI ``document`` with the FHIR routes described (see the module)."""
    described = copy.deepcopy(document)
    components = described.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer", "description": "A Zorgpad API token (`zorgpad token create`)"}
    components.setdefault("schemas", {}).update(
        {"Resource": _RESOURCE, "OperationOutcome": _OUTCOME, "JSONPatch": _PATCH})
    types = sorted(RESOURCE_TYPES)
    for path, operations in described.get("paths", {}).items():
        if not path.startswith("/fhir"):
            continue
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "resource_type" and parameter.get("in") == "path":
                    parameter["schema"] = {"type": "string", "enum": types, "title": "Resource Type"}
            if method in ("post", "put", "patch") and not path.endswith("/_search"):
                media, schema = (("application/json-patch+json", "JSONPatch") if method == "patch"
                                 else (FHIR_JSON, "Resource"))
                optional = path.endswith("/$apply")  # $apply may take its parameters from the URL alone
                operation["requestBody"] = {"required": not optional,
                                            "content": {media: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}
            if path not in _PUBLIC:
                operation["security"] = [{"bearer": []}]
            responses = operation.setdefault("responses", {})
            for status in ("200", "201"):
                if status in responses:
                    responses[status]["content"] = {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}}}
            if "HTTPValidationError" in str(responses.get("422", "")):  # FastAPI's, which these routes never send
                del responses["422"]
            for status, description in _ERRORS.items():
                responses.setdefault(status, {"description": description, "content": {
                    FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}})
    return described


def install(app: FastAPI) -> None:
    """Serve the described document at ``/openapi.json`` (made once, on first request)."""
    generate = app.openapi

    described: list[JSON] = []

    def openapi() -> JSON:
        if not described:
            described.append(describe_fhir(generate()))
            app.openapi_schema = described[0]
        return described[0]

    app.openapi = openapi  # type: ignore[method-assign]
