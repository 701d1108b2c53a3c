"""The palliative-acp pathway driven by the real IKNL PZP fixtures (Nictiz PZP-1.0.0-rc1) over the FHIR API.

Patient D2's records are loaded the way the fixtures' _LoadResources TestScript does (a PUT per resource,
placeholders resolved); the GP and the receivers work their Tasks with their own tokens, as partner systems.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from zorgpad.engine import ROLE_SYSTEM

from tests.fhir.touchstone import resolve_text

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "nictiz" / "pzp-acp" / "1.0.0-rc1" / \
    "_reference" / "resources"
PATIENT = "Patient/D2-ACP-Patient"
ROLES = {"gp": "pzp-gp", "out-of-hours": "pzp-hap", "ambulance": "pzp-ambulance", "hospital": "pzp-hospital",
         "home-care": "pzp-homecare", "coordinator": "pzp-coordinator"}
SHARES = ("share_out_of_hours", "share_ambulance", "share_hospital", "share_home_care")


def fixture(name: str) -> dict[str, Any]:
    """One IKNL fixture with its Touchstone date placeholders resolved against today."""
    return dict(json.loads(resolve_text((FIXTURES / f"{name}.json").read_text(), datetime.now(UTC).date())))


def d2_fixtures(kind: str) -> list[dict[str, Any]]:
    """Every D2 fixture of one resource type."""
    return [fixture(p.stem) for p in sorted(FIXTURES.glob(f"{kind}-D2-*.json"))]


def put(client: httpx.Client, resource: dict[str, Any]) -> httpx.Response:
    """Store a resource by its id, as the load script does; the response must be a success."""
    response = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert response.status_code in (200, 201), response.text
    return response


def tasks_of(client: httpx.Client, careplan: str, step: str) -> list[dict[str, Any]]:
    """The Tasks of one step of the enrolment, oldest round first."""
    bundle = client.get("/Task", params={"based-on": careplan, "_count": "100"}).json()
    found = [e["resource"] for e in bundle.get("entry", [])
             if e["resource"]["identifier"][0]["value"].split("/")[1] == step]
    return sorted(found, key=lambda t: int(t["identifier"][0]["value"].split("/")[2]))


def complete(client: httpx.Client, task: dict[str, Any]) -> dict[str, Any]:
    """The owner marks its Task completed (a versioned update)."""
    task = client.get(f"/Task/{task['id']}").json()
    etag = f'W/"{task["meta"]["versionId"]}"'
    response = client.put(f"/Task/{task['id']}", json={**task, "status": "completed"}, headers={"If-Match": etag})
    assert 200 == response.status_code, response.text
    return dict(response.json())


def summary_of(client: httpx.Client, task: dict[str, Any]) -> str:
    """The narrative of the handover summary Composition a share Task carries."""
    refs = [i["valueReference"]["reference"] for i in task.get("input", [])]
    (composition,) = [r for r in refs if r.startswith("Composition/")]
    return str(client.get(f"/{composition}").json()["text"]["div"])


@pytest.fixture(scope="module")
def region(fhir_server: Any) -> dict[str, Any]:
    """The D2 patient with a GP practice and a care team filling every role; tokens for the organisations."""
    admin = fhir_server.client()
    for org in ROLES.values():
        put(admin, {"resourceType": "Organization", "id": org, "name": org})
    patient = fixture("Patient-D2-ACP-Patient")
    patient["generalPractitioner"] = [{"reference": f"Organization/{ROLES['gp']}"}]
    put(admin, patient)
    put(admin, {"resourceType": "CareTeam", "id": "pzp-team", "status": "active", "subject": {"reference": PATIENT},
                "participant": [{"role": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
                                 "member": {"reference": f"Organization/{org}"}} for role, org in ROLES.items()]})
    return {"admin": admin, **{role: fhir_server.client(fhir_server.token(org)) for role, org in ROLES.items()}}


@pytest.fixture(scope="module")
def journey(region: dict[str, Any]) -> dict[str, Any]:
    """Enrol D2 with $apply, the GP works the first Tasks, then D2's IKNL records arrive as the load script
    sends them, and finally the patient's sharing consent."""
    admin, gp = region["admin"], region["gp"]
    applied = gp.post("/PlanDefinition/palliative-acp/$apply", json={
        "resourceType": "Parameters", "parameter": [{"name": "subject", "valueReference": {"reference": PATIENT}}]})
    assert 200 == applied.status_code, applied.text
    careplan = f"CarePlan/{applied.json()['id']}"
    for step in ("mark", "invite"):
        (task,) = tasks_of(gp, careplan, step)
        complete(gp, task)
    conversation_task = tasks_of(gp, careplan, "conversation")[0]
    for kind in ("Practitioner", "PractitionerRole", "RelatedPerson", "Procedure", "Encounter", "Consent", "Goal",
                 "Observation", "Device", "DeviceUseStatement", "CommunicationRequest"):
        for resource in d2_fixtures(kind):
            put(admin, resource)
    before_consent = {step: tasks_of(gp, careplan, step) for step in SHARES}
    put(admin, {"resourceType": "Consent", "id": "d2-sharing", "status": "active", "patient": {"reference": PATIENT},
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                      "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}]})
    return {"careplan": careplan, "conversation": conversation_task, "before_consent": before_consent, **region}


class TestConversation:
    """The IKNL ACP-Procedure of D2 completes the PZP conversation step."""

    def test_the_conversation_task_carries_the_acp_code(self, journey: dict[str, Any]) -> None:
        """The conversation Task is coded SNOMED 713603004 and owned by the GP practice."""
        task = journey["conversation"]

        assert (["713603004"], {"reference": "Organization/pzp-gp"}) == (
            [c["code"] for c in task["code"]["coding"]], task["owner"])

    def test_the_iknl_procedure_completes_it(self, journey: dict[str, Any]) -> None:
        """After Procedure D2-ACP-Procedure arrives, the conversation Task is completed."""
        (task,) = tasks_of(journey["gp"], journey["careplan"], "conversation")

        assert "completed" == task["status"]


class TestSharing:
    """The agreements travel to every receiver only once the patient's sharing consent is recorded."""

    def test_nothing_is_shared_before_the_consent(self, journey: dict[str, Any]) -> None:
        """With the IKNL records but no sharing consent, no share Task exists."""
        assert {step: [] for step in SHARES} == journey["before_consent"]

    def test_each_receiver_gets_a_task_with_the_d2_directives(self, journey: dict[str, Any]) -> None:
        """One share Task per receiving organisation, requested by the GP, carrying D2's treatment directives."""
        found = {}
        for step in SHARES:
            (task,) = tasks_of(journey["gp"], journey["careplan"], step)
            inputs = {i["valueReference"]["reference"] for i in task["input"]}
            found[step] = (task["owner"]["reference"], task["requester"]["reference"],
                           "Consent/D2-ACP-TreatmentDirective-Cardiopulmonary-Resuscitation" in inputs)

        assert {"share_out_of_hours": ("Organization/pzp-hap", "Organization/pzp-gp", True),
                "share_ambulance": ("Organization/pzp-ambulance", "Organization/pzp-gp", True),
                "share_hospital": ("Organization/pzp-hospital", "Organization/pzp-gp", True),
                "share_home_care": ("Organization/pzp-homecare", "Organization/pzp-gp", True)} == found

    def test_the_summary_shows_d2s_choices(self, journey: dict[str, Any]) -> None:
        """D2's fixtures permit resuscitation and ICU admission: the out-of-hours summary says so."""
        (task,) = tasks_of(journey["out-of-hours"], journey["careplan"], "share_out_of_hours")

        narrative = summary_of(journey["out-of-hours"], task)
        assert ("<tr><th>Reanimatie</th><td>wel reanimeren</td></tr>" in narrative,
                "<tr><th>IC-opname</th><td>wel</td></tr>" in narrative) == (True, True)

    def test_another_organisation_cannot_read_the_handover(self, journey: dict[str, Any], fhir_server: Any) -> None:
        """An organisation outside D2's care gets 404 for the out-of-hours Task."""
        (task,) = tasks_of(journey["out-of-hours"], journey["careplan"], "share_out_of_hours")
        outsider = fhir_server.client(fhir_server.token("pzp-outsider"))

        assert 404 == outsider.get(f"/Task/{task['id']}").status_code


class TestChangedDirective:
    """A changed CPR directive goes out again to the receivers that had accepted the old one."""

    def test_a_changed_cpr_directive_is_shared_again(self, journey: dict[str, Any]) -> None:
        """The out-of-hours post completes its Task; the GP records 'niet reanimeren'; a new round carries it."""
        (first,) = tasks_of(journey["out-of-hours"], journey["careplan"], "share_out_of_hours")
        complete(journey["out-of-hours"], first)
        cpr = fixture("Consent-D2-ACP-TreatmentDirective-Cardiopulmonary-Resuscitation")
        cpr["provision"]["type"] = "deny"

        put(journey["admin"], cpr)

        rounds = tasks_of(journey["out-of-hours"], journey["careplan"], "share_out_of_hours")
        assert (2, "completed", "requested", True) == (
            len(rounds), rounds[0]["status"], rounds[1]["status"],
            "<tr><th>Reanimatie</th><td>niet reanimeren</td></tr>" in summary_of(journey["out-of-hours"], rounds[1]))
