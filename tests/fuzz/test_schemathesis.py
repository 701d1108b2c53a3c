"""Schemathesis against the live server's /openapi.json: every operation, positive and negative examples,
with organisation A's bearer token. No 5xx (``not_a_server_error``), and under /fhir every error is an
OperationOutcome.

The served document describes the FHIR routes (``zorgpad.fhir.openapi``): the resource types of the
CapabilityStatement as an ``enum``, a body on every write, the bearer scheme and OperationOutcome errors,
so that schemathesis reaches past the routing into the interactions.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from faultcounts import count
from hypothesis import given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.fuzz.fuzzkit import FHIR_JSON, FUZZ, FuzzPropertyError, World

pytestmark = pytest.mark.slow

EXAMPLES = 6


def run_operation(world: World, operation: Any, mode: GenerationMode) -> None:
    """Up to EXAMPLES generated cases of one operation, each sent with A's token and checked."""
    name = f"fuzz schemathesis ({mode.value}): inputs tried"

    @settings(FUZZ, max_examples=EXAMPLES)
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        count(name)
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {world.a.token}"}
        response = case.call(base_url=world.server.base_url, timeout=10)
        try:
            case.validate_response(response, checks=[not_a_server_error], headers=case.headers)
        except Exception:
            count("fuzz: 5xx answers")
            raise
        if operation.path.startswith("/fhir") and response.status_code >= 400:
            body = response.json() if response.content else None
            ctype = next((v[0] for k, v in response.headers.items() if k.lower() == "content-type" and v), "")
            if not (ctype.startswith(FHIR_JSON)
                    and isinstance(body, dict) and body.get("resourceType") == "OperationOutcome"):
                count("fuzz: 4xx answers that are not an OperationOutcome")
                raise FuzzPropertyError(f"{case.method} {case.formatted_path} answered {response.status_code} "
                                        f"without an OperationOutcome: {response.text[:300]}")

    try:
        check()
    except Unsatisfiable:
        if mode is not GenerationMode.NEGATIVE:
            raise
        # An operation with no parameters and no body (GET /fhir/metadata) has nothing to make invalid.


def operations(schema: Any) -> list[Any]:
    """Every operation of the schema but the dashboard's operator API (not FHIR; its own tests cover it)."""
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if op.path.startswith("/fhir") or op.path == "/healthz"]


@pytest.fixture(scope="module")
def raw_document(world: World) -> dict[str, Any]:
    """/openapi.json as the live server serves it."""
    return world.http.get(f"{world.server.base_url}/openapi.json").json()  # type: ignore[no-any-return]


class TestSchemathesis:
    """Every operation in /openapi.json, positive and negative, never answers 5xx."""

    @pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    def test_the_document_as_served(self, world: World, mode: GenerationMode) -> None:
        """schemathesis.openapi.from_url on the live server: no 5xx, OperationOutcome for every /fhir error."""
        schema = schemathesis.openapi.from_url(f"{world.server.base_url}/openapi.json", timeout=10)

        for operation in operations(schema):
            run_operation(world, operation, mode)

    def test_schemathesis_ran_against_fhir_routes(self, world: World, raw_document: dict[str, Any]) -> None:
        """The document lists the FHIR interactions (else the runs above test nothing)."""
        paths = set(raw_document["paths"])

        assert {"/fhir", "/fhir/$process-message", "/fhir/{resource_type}", "/fhir/{resource_type}/{resource_id}",
                "/fhir/{resource_type}/{resource_id}/_history/{version_id}"} <= paths

    def test_the_document_describes_types_bodies_auth_and_errors(self, world: World,
                                                                 raw_document: dict[str, Any]) -> None:
        """The resource types of the CapabilityStatement as an enum, a body on every write, the bearer scheme,
        and OperationOutcome errors: what schemathesis needs to reach past the routing."""
        statement = world.http.get(f"{world.fhir}/metadata").json()
        types = sorted(r["type"] for r in statement["rest"][0]["resource"])
        instance = raw_document["paths"]["/fhir/{resource_type}/{resource_id}"]
        [type_parameter] = [p for p in instance["put"]["parameters"] if p["name"] == "resource_type"]

        assert types == type_parameter["schema"]["enum"]
        assert {FHIR_JSON} == set(instance["put"]["requestBody"]["content"])
        assert {"application/json-patch+json"} == set(instance["patch"]["requestBody"]["content"])
        assert {"type": "http", "scheme": "bearer"}.items() <= raw_document["components"]["securitySchemes"][
            "bearer"].items()
        assert [{"bearer": []}] == instance["get"]["security"]
        assert "#/components/schemas/OperationOutcome" == instance["get"]["responses"]["404"]["content"][FHIR_JSON][
            "schema"]["$ref"]
