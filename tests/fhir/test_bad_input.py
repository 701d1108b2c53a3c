"""Bad input over real HTTP: every malformed, mismatched, oversized or hostile request is answered 4xx with an
OperationOutcome naming the problem (never 5xx), and nothing is stored."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

FHIR_JSON = "application/fhir+json"
MB = 1024 * 1024


def uid() -> str:
    """A short unique suffix, so that tests sharing the module's server never collide."""
    return uuid.uuid4().hex[:12]




def nested_extensions(depth: int) -> bytes:
    """A valid Patient whose extension nests ``depth`` levels deep."""
    extension: dict[str, Any] = {"url": "https://example.org/leaf", "valueString": "leaf"}
    for _ in range(depth):
        extension = {"url": "https://example.org/level", "extension": [extension]}
    return json.dumps({"resourceType": "Patient", "extension": [extension]}).encode()


def huge_patient() -> bytes:
    """A syntactically valid Patient just over 50 MB."""
    return b'{"resourceType":"Patient","name":[{"family":"' + b"x" * (50 * MB + 1024) + b'"}]}'


OBSERVATION = '{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":%s}}'


@dataclass(frozen=True)
class Bad:
    """One bad request and what the server must answer."""

    method: str
    path: str  # "{id}" becomes a fresh id
    body: bytes | Callable[[], bytes] | None
    status: int
    names: str | None  # a word the OperationOutcome's diagnostics must contain (None: any diagnostics)
    headers: dict[str, str] = field(default_factory=dict)


CASES: dict[str, Bad] = {
    "malformed JSON (POST)": Bad("POST", "/Patient", b'{"resourceType": "Patient",', 400, "JSON"),
    "malformed JSON (PUT)": Bad("PUT", "/Patient/{id}", b'{"resourceType": "Patient", "id": ', 400, "JSON"),
    "a JSON array": Bad("POST", "/Patient", b'[{"resourceType": "Patient"}]', 400, "object"),
    "a JSON number": Bad("POST", "/Patient", b"42", 400, "object"),
    "a JSON string": Bad("PUT", "/Patient/{id}", b'"Patient"', 400, "object"),
    "JSON null": Bad("POST", "/Patient", b"null", 400, "object"),
    "an empty body": Bad("POST", "/Patient", b"", 400, "body"),
    "no resourceType": Bad("POST", "/Patient", b'{"gender": "male"}', 400, "resourceType"),
    "resourceType not matching the URL (POST)": Bad(
        "POST", "/Patient", b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}}', 400,
        "Observation"),
    "resourceType not matching the URL (PUT)": Bad(
        "PUT", "/Patient/{id}", b'{"resourceType": "Observation", "id": "{id}", "status": "final", '
                                b'"code": {"text": "x"}}', 400, "Observation"),
    "an unknown element": Bad("POST", "/Patient", b'{"resourceType": "Patient", "favouriteColour": "blue"}', 400,
                              "favouriteColour"),
    "an unknown nested element": Bad("POST", "/Patient", b'{"resourceType": "Patient", "name": [{"nickname": "x"}]}',
                                     400, "nickname"),
    "a body id differing from the URL": Bad("PUT", "/Patient/{id}", b'{"resourceType": "Patient", "id": "other"}',
                                            400, "other"),
    "a PUT body without an id": Bad("PUT", "/Patient/{id}", b'{"resourceType": "Patient"}', 400, "id"),
    "an invalid Task.status": Bad("POST", "/Task", b'{"resourceType": "Task", "status": "bogus", "intent": "order"}',
                                  400, "Task.status"),
    "an invalid Task.intent": Bad("POST", "/Task", b'{"resourceType": "Task", "status": "draft", "intent": "wish"}',
                                  400, "Task.intent"),
    "an invalid date": Bad("POST", "/Patient", b'{"resourceType": "Patient", "birthDate": "1940-13-45"}', 400,
                           "birthDate"),
    "a wrong primitive type": Bad("POST", "/Patient", b'{"resourceType": "Patient", "active": "yes"}', 400,
                                  "active"),
    "a boolean given as a number": Bad("POST", "/Patient", b'{"resourceType": "Patient", "active": 1}', 400,
                                       "active"),
    "an integer given as a string": Bad("POST", "/Patient", b'{"resourceType": "Patient", "multipleBirthInteger": '
                                                            b'"3"}', 400, "multipleBirth"),
    "an integer out of range": Bad(
        "POST", "/Patient", b'{"resourceType": "Patient", "multipleBirthInteger": 99999999999999999999}', 400,
        "multipleBirth"),
    "text/plain": Bad("POST", "/Patient", b'{"resourceType": "Patient"}', 415, "Content-Type",
                      {"Content-Type": "text/plain"}),
    "XML content": Bad("PUT", "/Patient/{id}", b'<Patient xmlns="http://hl7.org/fhir"/>', 415, "Content-Type",
                       {"Content-Type": "application/fhir+xml"}),
    "_format=xml on a read": Bad("GET", "/Patient/{id}?_format=xml", None, 406, "xml"),
    "_format=xml on a create": Bad("POST", "/Patient?_format=xml", b'{"resourceType": "Patient"}', 406, "xml"),
    "Accept XML only": Bad("GET", "/Patient/{id}", None, 406, "json", {"Accept": "application/fhir+xml"}),
    "an unknown type (GET)": Bad("GET", "/Foo/{id}", None, 404, "Foo"),
    "an unknown type (POST)": Bad("POST", "/Foo", b'{"resourceType": "Foo"}', 404, "Foo"),
    "an unknown type (PUT)": Bad("PUT", "/Foo/{id}", b'{"resourceType": "Foo", "id": "{id}"}', 404, "Foo"),
    "an unknown type (DELETE)": Bad("DELETE", "/Foo/{id}", None, 404, "Foo"),
    "an unsupported real type": Bad("POST", "/ServiceRequest",
                                    b'{"resourceType": "ServiceRequest", "status": "active", "intent": "order", '
                                    b'"subject": {"reference": "Patient/x"}}', 404, "ServiceRequest"),
    "an invalid id (GET)": Bad("GET", "/Patient/bad$id", None, 400, "bad$id"),
    "an invalid id (PUT)": Bad("PUT", "/Patient/bad$id", b'{"resourceType": "Patient", "id": "bad$id"}', 400,
                               "bad$id"),
    "an id of 65 characters": Bad("PUT", "/Patient/" + "a" * 65, b'{"resourceType": "Patient", "id": "' + b"a" * 65
                                  + b'"}', 400, "a" * 65),
    "a body over 50 MB": Bad("POST", "/Patient", huge_patient, 413, "50 MB"),
    "100k nested lists": Bad("POST", "/Patient", lambda: b"[" * 100_000 + b"]" * 100_000, 400, None),
    "100k nested objects": Bad("POST", "/Patient", lambda: b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 400, None),
    "100k nested lists inside a resource": Bad(
        "POST", "/Patient", lambda: b'{"resourceType":"Patient","extension":' + b"[" * 100_000 + b"]" * 100_000
        + b"}", 400, None),
    "extensions nested 200 deep": Bad("POST", "/Patient", lambda: nested_extensions(200), 400, None),
    "NaN": Bad("POST", "/Observation", (OBSERVATION % "NaN").encode(), 400, "NaN"),
    "Infinity": Bad("POST", "/Observation", (OBSERVATION % "Infinity").encode(), 400, "Infinity"),
    "-Infinity": Bad("POST", "/Observation", (OBSERVATION % "-Infinity").encode(), 400, "Infinity"),
    "a number that overflows to infinity": Bad("POST", "/Observation", (OBSERVATION % "1e400").encode(), 400,
                                               "valueQuantity"),
    "invalid UTF-8": Bad("POST", "/Patient", b'{"resourceType": "Patient", "gender": "\xff\xfe"}', 400, None),
    "a lone surrogate": Bad("POST", "/Patient", b'{"resourceType": "Patient", "name": [{"family": "a\\ud800"}]}',
                            400, "family"),
    "a NUL character in a string": Bad(
        "POST", "/Patient", b'{"resourceType": "Patient", "name": [{"family": "a\\u0000b"}]}', 400, "family"),
    "a JSON Patch that is not a list": Bad("PATCH", "/Patient/{id}", b'{"op": "add"}', 400, "Patch",
                                           {"Content-Type": "application/json-patch+json"}),
    "a malformed JSON Patch": Bad("PATCH", "/Patient/{id}", b'[{"op": "add", ', 400, "JSON",
                                  {"Content-Type": "application/json-patch+json"}),
    "$apply with a body that is not Parameters": Bad("POST", "/PlanDefinition/example-acp/$apply",
                                                     b'{"resourceType": "Patient"}', 400, "Parameters"),
    "$apply with malformed JSON": Bad("POST", "/PlanDefinition/example-acp/$apply", b"{", 400, "JSON"),
}


@pytest.fixture(scope="module")
def existing_patient(fhir_server: Any) -> str:
    """The id of a Patient that exists (for PATCH and reads)."""
    pid = f"bad-{uid()}"
    response = fhir_server.client().put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid})
    assert 201 == response.status_code
    return pid


def send(fhir_server: Any, case: Bad, pid: str) -> httpx.Response:
    """Send one bad request with the admin token."""
    body = case.body() if callable(case.body) else case.body
    if body is not None:
        body = body.replace(b"{id}", pid.encode())
    headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON, "Authorization": f"Bearer {fhir_server.admin}",
               **case.headers}
    return httpx.request(case.method, fhir_server.fhir + case.path.replace("{id}", pid), content=body,
                         headers=headers, timeout=120)


class TestBadInput:
    """Each bad request: the right 4xx, an OperationOutcome naming the problem, nothing stored."""

    @pytest.mark.parametrize("name", list(CASES))
    def test_is_answered_with_the_right_4xx(self, fhir_server: Any, existing_patient: str, name: str) -> None:
        """The status code is the one the FHIR spec (and the issue) asks for."""
        case = CASES[name]
        pid = existing_patient if case.method in ("PATCH", "GET") else f"bad-{uid()}"

        response = send(fhir_server, case, pid)

        assert case.status == response.status_code, response.text[:500]

    @pytest.mark.parametrize("name", list(CASES))
    def test_is_an_operation_outcome_naming_the_problem(self, fhir_server: Any, existing_patient: str,
                                                        name: str) -> None:
        """The body is an OperationOutcome (application/fhir+json) whose error names what is wrong."""
        case = CASES[name]
        pid = existing_patient if case.method in ("PATCH", "GET") else f"bad-{uid()}"

        response = send(fhir_server, case, pid)

        assert FHIR_JSON == response.headers.get("content-type", "").split(";")[0]
        outcome = response.json()
        assert "OperationOutcome" == outcome["resourceType"]
        assert "error" in [issue["severity"] for issue in outcome["issue"]]
        text = " ".join(issue.get("diagnostics", "") for issue in outcome["issue"])
        assert text.strip()
        if case.names is not None:
            assert case.names.lower() in text.lower()

    @pytest.mark.parametrize("name", list(CASES))
    def test_stores_nothing(self, fhir_server: Any, existing_patient: str, name: str) -> None:
        """The resource and resource_version tables hold as many rows afterwards as before."""
        case = CASES[name]
        pid = existing_patient if case.method in ("PATCH", "GET") else f"bad-{uid()}"
        before = fhir_server.stored_counts()

        send(fhir_server, case, pid)

        assert before == fhir_server.stored_counts()

    def test_the_server_still_answers_afterwards(self, fhir_server: Any, existing_patient: str) -> None:
        """After all the bad input, a plain read still works."""
        response = fhir_server.client().get(f"/Patient/{existing_patient}")

        assert 200 == response.status_code

    def test_a_bad_patch_leaves_the_resource_as_it_was(self, fhir_server: Any, existing_patient: str) -> None:
        """A refused PATCH does not change the patched resource."""
        client = fhir_server.client()
        before = client.get(f"/Patient/{existing_patient}").json()

        client.patch(f"/Patient/{existing_patient}", headers={"Content-Type": "application/json-patch+json"},
                     content=b'[{"op": "add", "path": "/birthDate", "value": "yesterday"}]')

        assert before == client.get(f"/Patient/{existing_patient}").json()

    def test_the_problems_are_all_reported_at_once(self, fhir_server: Any) -> None:
        """A resource with two invalid elements gets one issue for each."""
        response = fhir_server.client().post("/Patient", json={"resourceType": "Patient", "birthDate": "soon",
                                                               "active": "perhaps"})

        text = " ".join(issue.get("diagnostics", "") for issue in response.json()["issue"])
        assert 400 == response.status_code
        assert ("birthDate" in text, "active" in text) == (True, True)
