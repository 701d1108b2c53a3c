"""``GET /fhir/metadata`` over real HTTP: a CapabilityStatement that tells the truth about the server, checked
by exercising every interaction it claims."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class

pytestmark = pytest.mark.slow

FHIR_JSON = "application/fhir+json"
#: Every resource type the issue requires the server to support.
REQUIRED_TYPES = (
    "Patient", "Practitioner", "PractitionerRole", "Organization", "RelatedPerson", "CareTeam", "Endpoint",
    "Condition", "Observation", "Procedure", "Encounter", "Consent", "Goal", "CommunicationRequest",
    "Communication", "QuestionnaireResponse", "Questionnaire", "Device", "DeviceUseStatement", "Composition",
    "DocumentReference", "CarePlan", "Task", "PlanDefinition", "Subscription", "AuditEvent", "Provenance",
)
READ_ONLY_TYPES = ("PlanDefinition", "AuditEvent")
WRITE_INTERACTIONS = ("create", "update", "patch", "delete")
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
PATIENT = {"reference": "Patient/capabilities-patient"}
#: The smallest valid instance of each writable type (without resourceType and id).
MINIMAL: dict[str, dict[str, Any]] = {
    "Patient": {"active": True},
    "Practitioner": {"active": True},
    "PractitionerRole": {"active": True},
    "Organization": {"name": "Capabilities practice"},
    "RelatedPerson": {"patient": PATIENT},
    "CareTeam": {"subject": PATIENT},
    "Endpoint": {"status": "active", "address": "https://example.org/fhir", "payloadType": [{"text": "FHIR"}],
                 "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                                    "code": "hl7-fhir-rest"}},
    "Condition": {"subject": PATIENT},
    "Observation": {"status": "final", "code": {"text": "weight"}, "subject": PATIENT},
    "Procedure": {"status": "completed", "subject": PATIENT},
    "Encounter": {"status": "finished", "subject": PATIENT,
                  "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
    "Consent": {"status": "active", "scope": {"text": "treatment"}, "category": [{"text": "advance directive"}],
                "patient": PATIENT},
    "Goal": {"lifecycleStatus": "active", "description": {"text": "comfort"}, "subject": PATIENT},
    "CommunicationRequest": {"status": "active", "subject": PATIENT},
    "Communication": {"status": "completed", "subject": PATIENT},
    "QuestionnaireResponse": {"status": "completed", "subject": PATIENT},
    "Questionnaire": {"status": "active"},
    "Device": {"patient": PATIENT},
    "DeviceUseStatement": {"status": "active", "subject": PATIENT, "device": {"reference": "Device/capabilities"}},
    "Composition": {"status": "final", "type": {"text": "advance care plan"}, "date": "2024-01-01",
                    "author": [{"reference": "Organization/capabilities"}], "title": "ACP", "subject": PATIENT},
    "DocumentReference": {"status": "current", "subject": PATIENT,
                          "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}]},
    "CarePlan": {"status": "active", "intent": "plan", "subject": PATIENT},
    "Task": {"status": "requested", "intent": "order", "for": PATIENT},
    "AllergyIntolerance": {"patient": PATIENT, "code": {"text": "penicillin"}},
    "Claim": {"status": "active", "type": {"text": "institutional"}, "use": "claim", "patient": PATIENT,
              "created": "2024-01-01", "provider": {"reference": "Organization/capabilities"},
              "priority": {"text": "normal"}, "insurance": [{"sequence": 1, "focal": True,
                                                             "coverage": {"display": "basic"}}]},
    "DiagnosticReport": {"status": "final", "code": {"text": "panel"}, "subject": PATIENT},
    "ExplanationOfBenefit": {"status": "active", "type": {"text": "institutional"}, "use": "claim",
                             "patient": PATIENT, "created": "2024-01-01",
                             "insurer": {"reference": "Organization/capabilities"},
                             "provider": {"reference": "Organization/capabilities"}, "outcome": "complete",
                             "insurance": [{"focal": True, "coverage": {"display": "basic"}}]},
    "ImagingStudy": {"status": "available", "subject": PATIENT},
    "Immunization": {"status": "completed", "vaccineCode": {"text": "influenza"}, "patient": PATIENT,
                     "occurrenceDateTime": "2024-01-01"},
    "Medication": {"code": {"text": "morphine"}},
    "MedicationRequest": {"status": "active", "intent": "order", "subject": PATIENT,
                          "medicationCodeableConcept": {"text": "morphine"}},
    "MedicationAdministration": {"status": "completed", "subject": PATIENT,
                                 "medicationCodeableConcept": {"text": "morphine"},
                                 "effectiveDateTime": "2024-01-01"},
    "Location": {"name": "Ward 3"},
    "HealthcareService": {"name": "Palliative consultation"},
    "Subscription": {"status": "off", "reason": "capabilities test", "criteria": "Task?owner=Organization/nobody",
                     "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook",
                                 "payload": "application/fhir+json"}},
    "Provenance": {"target": [PATIENT], "recorded": "2024-01-01T00:00:00Z",
                   "agent": [{"who": {"reference": "Organization/capabilities"}}]},
    "MessageHeader": {"eventCoding": {"system": "https://example.org/events", "code": "test"},
                      "source": {"endpoint": "https://example.org/source"}},
    "Bundle": {"type": "collection"},
    "Binary": {"contentType": "text/plain", "data": "aGk="},
    "List": {"status": "current", "mode": "working", "subject": PATIENT},
}
MINIMAL_AUDIT_EVENT = {
    "resourceType": "AuditEvent",
    "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
    "recorded": "2024-01-01T00:00:00Z",
    "agent": [{"requestor": True, "who": {"reference": "Organization/capabilities"}}],
    "source": {"observer": {"display": "a client"}},
}
MINIMAL_PLAN_DEFINITION = {"resourceType": "PlanDefinition", "status": "draft"}


def uid() -> str:
    """A short unique suffix, so that tests sharing the module's server never collide."""
    return uuid.uuid4().hex[:12]




@pytest.fixture(scope="module")
def capabilities(fhir_server: Any) -> dict[str, Any]:
    """The CapabilityStatement, fetched without a token."""
    response = fhir_server.client("").get("/metadata")
    assert 200 == response.status_code, response.text
    return dict(response.json())


def declared(capabilities: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The CapabilityStatement's resource entries by type."""
    return {entry["type"]: entry for entry in capabilities["rest"][0]["resource"]}


def interactions_of(capabilities: dict[str, Any], resource_type: str) -> list[str]:
    """The interaction codes the CapabilityStatement claims for one type."""
    return [i["code"] for i in declared(capabilities)[resource_type]["interaction"]]


def is_outcome(response: httpx.Response) -> bool:
    """Whether a response is an OperationOutcome in the FHIR media type."""
    return (response.headers.get("content-type", "").startswith(FHIR_JSON)
            and response.json().get("resourceType") == "OperationOutcome")


class TestMetadata:
    """The CapabilityStatement itself."""

    def test_metadata_needs_no_token_and_is_fhir_json(self, fhir_server: Any) -> None:
        """/metadata answers an anonymous caller with application/fhir+json."""
        response = fhir_server.client("").get("/metadata")

        assert 200 == response.status_code
        assert FHIR_JSON == response.headers["content-type"].split(";")[0]
        assert "CapabilityStatement" == response.json()["resourceType"]

    def test_it_is_a_valid_capability_statement(self, capabilities: dict[str, Any]) -> None:
        """The statement validates as a FHIR CapabilityStatement."""
        model = get_fhir_model_class("CapabilityStatement").model_validate(capabilities)

        assert "CapabilityStatement" == model.get_resource_type()

    def test_it_speaks_fhir_4_0_1_in_json(self, capabilities: dict[str, Any]) -> None:
        """fhirVersion is 4.0.1 and JSON is the (only) format."""
        assert "4.0.1" == capabilities["fhirVersion"]
        assert FHIR_JSON in capabilities["format"]
        assert [] == [f for f in capabilities["format"] if "xml" in f]

    def test_it_is_a_server_statement(self, capabilities: dict[str, Any]) -> None:
        """The one rest entry is in server mode."""
        assert ["server"] == [rest["mode"] for rest in capabilities["rest"]]

    def test_every_required_type_is_listed(self, capabilities: dict[str, Any]) -> None:
        """Every resource type the issue requires is in the statement."""
        listed = set(declared(capabilities))

        assert [] == [t for t in REQUIRED_TYPES if t not in listed]

    def test_every_listed_type_is_a_fhir_resource_type(self, capabilities: dict[str, Any]) -> None:
        """No listed type is made up: each is a FHIR resource type."""
        unknown = []
        for name in declared(capabilities):
            try:
                get_fhir_model_class(name)
            except KeyError:
                unknown.append(name)

        assert [] == unknown

    def test_apply_and_process_message_are_listed(self, capabilities: dict[str, Any]) -> None:
        """$apply (on PlanDefinition) and $process-message (system level) are declared operations."""
        rest = capabilities["rest"][0]
        system = {op["name"] for op in rest.get("operation", [])}
        plan = {op["name"] for op in declared(capabilities)["PlanDefinition"].get("operation", [])}

        assert "process-message" in system
        assert "apply" in plan | system

    def test_operations_point_at_their_definitions(self, capabilities: dict[str, Any]) -> None:
        """Each declared operation names the HL7 OperationDefinition it implements."""
        rest = capabilities["rest"][0]
        operations = [*rest.get("operation", []),
                      *(op for entry in rest["resource"] for op in entry.get("operation", []))]
        definitions = {op["name"]: op["definition"] for op in operations}

        assert "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply" == definitions["apply"]
        assert ("http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message"
                == definitions["process-message"])

    def test_xml_is_refused_with_406(self, fhir_server: Any) -> None:
        """_format=xml on /metadata is answered 406 with an OperationOutcome."""
        response = fhir_server.client("").get("/metadata", params={"_format": "xml"})

        assert 406 == response.status_code
        assert is_outcome(response)

    def test_every_writable_listed_type_is_exercised_here(self, capabilities: dict[str, Any]) -> None:
        """This module has a minimal instance for every type the statement lists as writable."""
        writable = [t for t in declared(capabilities)
                    if set(WRITE_INTERACTIONS) & set(interactions_of(capabilities, t))]

        assert [] == [t for t in writable if t not in MINIMAL]


def exercise(client: httpx.Client, resource_type: str, claimed: list[str]) -> dict[str, int]:
    """Perform every claimed interaction on a fresh instance of ``resource_type``; the status of each."""
    rid = f"cap-{uid()}"
    body = {"resourceType": resource_type, **MINIMAL[resource_type]}
    answered: dict[str, int] = {}
    if "create" in claimed:
        response = client.post(f"/{resource_type}", json=body)
        answered["create"] = response.status_code
        if response.status_code == 201:
            rid = response.json()["id"]
    if "update" in claimed:
        answered["update"] = client.put(f"/{resource_type}/{rid}", json={**body, "id": rid}).status_code
    if not any(200 <= status < 300 for status in answered.values()):
        return answered  # no instance to read, patch or delete
    steps: dict[str, Callable[[], httpx.Response]] = {
        "read": lambda: client.get(f"/{resource_type}/{rid}"),
        "vread": lambda: client.get(f"/{resource_type}/{rid}/_history/1"),
        "patch": lambda: client.patch(f"/{resource_type}/{rid}", headers=JSON_PATCH,
                                      content=json.dumps([{"op": "add", "path": "/language", "value": "nl"}])),
        "history-instance": lambda: client.get(f"/{resource_type}/{rid}/_history"),
        "search-type": lambda: client.get(f"/{resource_type}", params={"_id": rid}),
        "delete": lambda: client.delete(f"/{resource_type}/{rid}"),
    }
    for code, step in steps.items():
        if code in claimed:
            answered[code] = step().status_code
    return answered


class TestClaimedInteractionsWork:
    """Every interaction the statement claims is one the server performs."""

    @pytest.mark.parametrize("resource_type", sorted(MINIMAL))
    def test_every_claimed_interaction_succeeds(self, fhir_server: Any, capabilities: dict[str, Any],
                                                resource_type: str) -> None:
        """Each claimed interaction on a minimal instance answers 2xx (so never 405)."""
        if resource_type not in declared(capabilities):
            pytest.fail(f"{resource_type} is not in the CapabilityStatement")
        claimed = interactions_of(capabilities, resource_type)

        answered = exercise(fhir_server.client(), resource_type, claimed)

        assert [] == [f"{code}: {status}" for code, status in answered.items() if not 200 <= status < 300]

    def test_the_minimal_instances_are_valid(self) -> None:
        """The instances used above are valid FHIR, so a refusal is never the test's fault."""
        invalid = []
        for resource_type, body in MINIMAL.items():
            try:
                get_fhir_model_class(resource_type).model_validate({"resourceType": resource_type, **body})
            except ValueError as exc:
                invalid.append(f"{resource_type}: {exc}")

        assert [] == invalid

    def test_plandefinition_read_vread_and_search_work(self, fhir_server: Any,
                                                       capabilities: dict[str, Any]) -> None:
        """The claimed PlanDefinition interactions answer 200."""
        client = fhir_server.client()
        steps = {"read": "/PlanDefinition/example-acp", "vread": "/PlanDefinition/example-acp/_history/1.0.0",
                 "search-type": "/PlanDefinition", "history-instance": "/PlanDefinition/example-acp/_history"}

        answered = {code: client.get(steps[code]).status_code for code in interactions_of(capabilities,
                                                                                           "PlanDefinition")}

        assert dict.fromkeys(answered, 200) == answered

    def test_auditevent_read_vread_and_search_work(self, fhir_server: Any, capabilities: dict[str, Any]) -> None:
        """The claimed AuditEvent interactions answer 200 for an AuditEvent that exists."""
        client = fhir_server.client()
        pid = f"cap-{uid()}"
        assert 201 == client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid}).status_code
        found = client.get("/AuditEvent", params={"_count": "1"})
        assert 200 == found.status_code
        aid = found.json()["entry"][0]["resource"]["id"]
        steps = {"read": f"/AuditEvent/{aid}", "vread": f"/AuditEvent/{aid}/_history/1",
                 "search-type": "/AuditEvent", "history-instance": f"/AuditEvent/{aid}/_history"}

        answered = {code: client.get(steps[code]).status_code for code in interactions_of(capabilities,
                                                                                           "AuditEvent")}

        assert dict.fromkeys(answered, 200) == answered


class TestReadOnlyTypes:
    """PlanDefinition and AuditEvent are read-only: the statement says so and the server enforces it."""

    @pytest.mark.parametrize("resource_type", READ_ONLY_TYPES)
    def test_no_write_interaction_is_claimed(self, capabilities: dict[str, Any], resource_type: str) -> None:
        """Neither create, update, patch nor delete is claimed."""
        assert [] == [c for c in interactions_of(capabilities, resource_type) if c in WRITE_INTERACTIONS]

    @pytest.mark.parametrize(("resource_type", "body"), [("PlanDefinition", MINIMAL_PLAN_DEFINITION),
                                                         ("AuditEvent", MINIMAL_AUDIT_EVENT)])
    def test_the_bodies_used_here_are_valid(self, resource_type: str, body: dict[str, Any]) -> None:
        """The bodies sent below are valid, so 405 is about the method and not the body."""
        assert resource_type == get_fhir_model_class(resource_type).model_validate(body).get_resource_type()

    @pytest.mark.parametrize(("resource_type", "body"), [("PlanDefinition", MINIMAL_PLAN_DEFINITION),
                                                         ("AuditEvent", MINIMAL_AUDIT_EVENT)])
    def test_post_is_405(self, fhir_server: Any, resource_type: str, body: dict[str, Any]) -> None:
        """POST of a valid instance answers 405 with an OperationOutcome."""
        response = fhir_server.client().post(f"/{resource_type}", json=body)

        assert 405 == response.status_code
        assert is_outcome(response)

    @pytest.mark.parametrize(("resource_type", "body"), [("PlanDefinition", MINIMAL_PLAN_DEFINITION),
                                                         ("AuditEvent", MINIMAL_AUDIT_EVENT)])
    def test_put_is_405(self, fhir_server: Any, resource_type: str, body: dict[str, Any]) -> None:
        """PUT of a valid instance (onto an existing id) answers 405 with an OperationOutcome."""
        rid = "example-acp" if resource_type == "PlanDefinition" else "1"

        response = fhir_server.client().put(f"/{resource_type}/{rid}", json={**body, "id": rid})

        assert 405 == response.status_code
        assert is_outcome(response)

    @pytest.mark.parametrize("resource_type", READ_ONLY_TYPES)
    def test_delete_and_patch_are_405(self, fhir_server: Any, resource_type: str) -> None:
        """DELETE and PATCH answer 405 with an OperationOutcome."""
        client = fhir_server.client()
        rid = "example-acp" if resource_type == "PlanDefinition" else "1"

        deleted = client.delete(f"/{resource_type}/{rid}")
        patched = client.patch(f"/{resource_type}/{rid}", headers=JSON_PATCH,
                               content=json.dumps([{"op": "add", "path": "/language", "value": "nl"}]))

        assert (405, 405) == (deleted.status_code, patched.status_code)
        assert is_outcome(deleted)
        assert is_outcome(patched)

    def test_the_pathway_is_unchanged_after_the_refused_writes(self, fhir_server: Any) -> None:
        """After a refused PUT, PlanDefinition/example-acp is still the registered pathway."""
        client = fhir_server.client()
        client.put("/PlanDefinition/example-acp", json={**MINIMAL_PLAN_DEFINITION, "id": "example-acp"})

        plan = client.get("/PlanDefinition/example-acp").json()

        assert ("active", "1.1.0") == (plan["status"], plan["version"])
