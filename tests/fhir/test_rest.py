"""The RESTful interactions over real HTTP: create, read, vread, update, conditional create, delete, history,
versioned updates, Prefer, If-None-Match and JSON Patch, and a real FHIR client (fhirpy) acting as a GP system."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from fhirpy import SyncFHIRClient

pytestmark = pytest.mark.slow

FHIR_JSON = "application/fhir+json"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def uid() -> str:
    """A short unique suffix, so that tests sharing the module's server never collide."""
    return uuid.uuid4().hex[:12]




def is_outcome(response: httpx.Response) -> bool:
    """Whether a response is an OperationOutcome in the FHIR media type."""
    return (response.headers.get("content-type", "").startswith(FHIR_JSON)
            and response.json().get("resourceType") == "OperationOutcome")


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource without its server-maintained ``meta``."""
    return {k: v for k, v in resource.items() if k != "meta"}


def patient(pid: str, **elements: Any) -> dict[str, Any]:
    """A Patient resource."""
    return {"resourceType": "Patient", "id": pid, **elements}


def enrol(client: httpx.Client, pid: str) -> dict[str, Any]:
    """Enrol ``Patient/pid`` in example-acp; the CarePlan."""
    subject = {"name": "subject", "valueReference": {"reference": f"Patient/{pid}"}}
    response = client.post("/PlanDefinition/example-acp/$apply",
                           json={"resourceType": "Parameters", "parameter": [subject]})
    assert 200 == response.status_code, response.text
    return dict(response.json())


class TestCreate:
    """POST /fhir/Type."""

    def test_create_answers_201_with_a_server_assigned_id(self, fhir_server: Any) -> None:
        """The server assigns the id (ignoring one in the body) and answers 201 with the stored resource."""
        response = fhir_server.client().post("/Patient", json={"resourceType": "Patient", "id": "client-chosen",
                                                               "name": [{"family": "Jansen"}]})

        body = response.json()
        assert 201 == response.status_code
        assert body["id"] not in ("", "client-chosen")
        assert [{"family": "Jansen"}] == body["name"]
        assert "1" == body["meta"]["versionId"]

    def test_create_sends_location_etag_and_last_modified(self, fhir_server: Any) -> None:
        """Location is …/Patient/id/_history/1, ETag is W/"1" and Last-Modified is meta.lastUpdated."""
        response = fhir_server.client().post("/Patient", json={"resourceType": "Patient"})

        body = response.json()
        updated = datetime.fromisoformat(body["meta"]["lastUpdated"].replace("Z", "+00:00"))
        assert f"{fhir_server.fhir}/Patient/{body['id']}/_history/1" == response.headers["location"]
        assert 'W/"1"' == response.headers["etag"]
        assert updated.replace(microsecond=0) == parsedate_to_datetime(response.headers["last-modified"])
        assert FHIR_JSON == response.headers["content-type"].split(";")[0]

    def test_the_created_resource_can_be_read_at_its_location(self, fhir_server: Any) -> None:
        """GET on the Location answers the created resource."""
        client = fhir_server.client()
        created = client.post("/Observation", json={"resourceType": "Observation", "status": "final",
                                                    "code": {"text": "weight"}})

        read = client.get(created.headers["location"])

        assert 200 == read.status_code
        assert created.json() == read.json()


class TestConditionalCreate:
    """POST with If-None-Exist."""

    def test_a_second_conditional_create_answers_200_and_stores_nothing(self, fhir_server: Any) -> None:
        """The second create with the same identifier answers the existing resource, 200, without a duplicate."""
        client = fhir_server.client()
        value = uid()
        body = {"resourceType": "Patient", "identifier": [{"system": "https://example.org/mrn", "value": value}]}
        headers = {"If-None-Exist": f"identifier=https://example.org/mrn|{value}"}
        first = client.post("/Patient", json=body, headers=headers)
        assert 201 == first.status_code, first.text
        before = fhir_server.stored_counts()

        second = client.post("/Patient", json=body, headers=headers)

        assert 200 == second.status_code
        assert first.json()["id"] == second.json()["id"]
        assert before == fhir_server.stored_counts()

    def test_a_conditional_create_without_a_match_creates(self, fhir_server: Any) -> None:
        """If-None-Exist that matches nothing creates the resource (201)."""
        value = uid()
        body = {"resourceType": "Patient", "identifier": [{"system": "https://example.org/mrn", "value": value}]}

        response = fhir_server.client().post("/Patient", json=body,
                                             headers={"If-None-Exist": f"identifier=https://example.org/mrn|{value}"})

        assert 201 == response.status_code


class TestReadAndVread:
    """GET /fhir/Type/id and /_history/vid."""

    def test_read_answers_the_current_version_with_etag(self, fhir_server: Any) -> None:
        """Read answers the stored content, ETag W/"n", Last-Modified and Content-Location."""
        client = fhir_server.client()
        pid = f"read-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid, gender="female"))

        response = client.get(f"/Patient/{pid}")

        assert 200 == response.status_code
        assert patient(pid, gender="female") == without_meta(response.json())
        assert 'W/"1"' == response.headers["etag"]
        assert "last-modified" in response.headers
        assert f"{fhir_server.fhir}/Patient/{pid}/_history/1" == response.headers["content-location"]

    def test_read_of_an_unknown_id_is_404(self, fhir_server: Any) -> None:
        """An id nobody stored answers 404 with an OperationOutcome."""
        response = fhir_server.client().get(f"/Patient/unknown-{uid()}")

        assert 404 == response.status_code
        assert is_outcome(response)

    def test_vread_answers_an_old_version(self, fhir_server: Any) -> None:
        """After an update, /_history/1 still answers the first version."""
        client = fhir_server.client()
        pid = f"vread-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid, gender="female"))
        client.put(f"/Patient/{pid}", json=patient(pid, gender="male"))

        response = client.get(f"/Patient/{pid}/_history/1")

        assert 200 == response.status_code
        assert "female" == response.json()["gender"]
        assert "1" == response.json()["meta"]["versionId"]
        assert 'W/"1"' == response.headers["etag"]

    def test_vread_of_a_version_that_does_not_exist_is_404(self, fhir_server: Any) -> None:
        """/_history/9 of a resource with one version answers 404."""
        client = fhir_server.client()
        pid = f"vread-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))

        response = client.get(f"/Patient/{pid}/_history/9")

        assert 404 == response.status_code
        assert is_outcome(response)


class TestIfNoneMatch:
    """Conditional read."""

    def test_the_current_etag_answers_304_without_a_body(self, fhir_server: Any) -> None:
        """If-None-Match with the current ETag answers 304 Not Modified and no body."""
        client = fhir_server.client()
        pid = f"inm-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))

        response = client.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})

        assert 304 == response.status_code
        assert b"" == response.content
        assert 'W/"1"' == response.headers["etag"]

    def test_an_old_etag_answers_200_with_the_resource(self, fhir_server: Any) -> None:
        """If-None-Match with a superseded ETag answers the current version."""
        client = fhir_server.client()
        pid = f"inm-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))
        client.put(f"/Patient/{pid}", json=patient(pid, gender="other"))

        response = client.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})

        assert 200 == response.status_code
        assert "other" == response.json()["gender"]


class TestUpdate:
    """PUT /fhir/Type/id."""

    def test_update_as_create_with_a_client_id_answers_201(self, fhir_server: Any) -> None:
        """PUT to an id nobody used creates the resource with that id: 201, Location, ETag W/"1"."""
        pid = f"uac-{uid()}"

        response = fhir_server.client().put(f"/Patient/{pid}", json=patient(pid))

        assert 201 == response.status_code
        assert pid == response.json()["id"]
        assert f"{fhir_server.fhir}/Patient/{pid}/_history/1" == response.headers["location"]
        assert 'W/"1"' == response.headers["etag"]

    def test_update_of_an_existing_resource_answers_200_and_a_new_version(self, fhir_server: Any) -> None:
        """A second PUT answers 200, ETag W/"2" and the new content."""
        client = fhir_server.client()
        pid = f"upd-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))

        response = client.put(f"/Patient/{pid}", json=patient(pid, birthDate="1940-02-03"))

        assert 200 == response.status_code
        assert 'W/"2"' == response.headers["etag"]
        assert "1940-02-03" == client.get(f"/Patient/{pid}").json()["birthDate"]

    def test_update_replaces_the_whole_resource(self, fhir_server: Any) -> None:
        """Elements left out of the PUT body are gone afterwards."""
        client = fhir_server.client()
        pid = f"upd-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid, gender="male", birthDate="1940-02-03"))

        client.put(f"/Patient/{pid}", json=patient(pid, gender="male"))

        assert patient(pid, gender="male") == without_meta(client.get(f"/Patient/{pid}").json())

    def test_last_modified_is_the_time_of_the_write(self, fhir_server: Any) -> None:
        """Last-Modified of a fresh resource is the time of the write (within a minute of now)."""
        pid = f"time-{uid()}"

        response = fhir_server.client().put(f"/Patient/{pid}", json=patient(pid))

        written = parsedate_to_datetime(response.headers["last-modified"])
        assert abs((datetime.now(UTC) - written).total_seconds()) < 60


class TestIfMatch:
    """Versioned updates."""

    def test_a_stale_if_match_is_412_and_stores_nothing(self, fhir_server: Any) -> None:
        """If-Match with a superseded version answers 412 and the resource stays as it was."""
        client = fhir_server.client()
        pid = f"ifm-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid, gender="female"))
        client.put(f"/Patient/{pid}", json=patient(pid, gender="male"))
        before = fhir_server.stored_counts()

        response = client.put(f"/Patient/{pid}", json=patient(pid, gender="other"), headers={"If-Match": 'W/"1"'})

        assert 412 == response.status_code
        assert is_outcome(response)
        assert before == fhir_server.stored_counts()
        current = client.get(f"/Patient/{pid}")
        assert ("male", 'W/"2"') == (current.json()["gender"], current.headers["etag"])

    def test_the_current_if_match_updates(self, fhir_server: Any) -> None:
        """If-Match with the current ETag updates (200, next version)."""
        client = fhir_server.client()
        pid = f"ifm-{uid()}"
        etag = client.put(f"/Patient/{pid}", json=patient(pid)).headers["etag"]

        response = client.put(f"/Patient/{pid}", json=patient(pid, gender="other"), headers={"If-Match": etag})

        assert 200 == response.status_code
        assert 'W/"2"' == response.headers["etag"]

    def test_a_stale_if_match_on_patch_is_412(self, fhir_server: Any) -> None:
        """PATCH with a superseded If-Match answers 412 and stores nothing."""
        client = fhir_server.client()
        pid = f"ifm-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))
        client.put(f"/Patient/{pid}", json=patient(pid, gender="male"))
        before = fhir_server.stored_counts()

        response = client.patch(f"/Patient/{pid}", headers={**JSON_PATCH, "If-Match": 'W/"1"'},
                                content=json.dumps([{"op": "replace", "path": "/gender", "value": "female"}]))

        assert 412 == response.status_code
        assert before == fhir_server.stored_counts()


class TestPrefer:
    """Prefer: return=…"""

    def test_return_minimal_on_create_has_an_empty_body_and_the_headers(self, fhir_server: Any) -> None:
        """return=minimal answers 201 with no body but Location, ETag and Last-Modified."""
        response = fhir_server.client().post("/Patient", json={"resourceType": "Patient"},
                                             headers={"Prefer": "return=minimal"})

        assert 201 == response.status_code
        assert b"" == response.content
        assert response.headers["location"].startswith(f"{fhir_server.fhir}/Patient/")
        assert 'W/"1"' == response.headers["etag"]
        assert "last-modified" in response.headers

    def test_return_minimal_on_update_has_an_empty_body(self, fhir_server: Any) -> None:
        """return=minimal on an update answers 200 with no body and the new ETag."""
        client = fhir_server.client()
        pid = f"prefer-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))

        response = client.put(f"/Patient/{pid}", json=patient(pid, gender="male"),
                              headers={"Prefer": "return=minimal"})

        assert 200 == response.status_code
        assert b"" == response.content
        assert 'W/"2"' == response.headers["etag"]

    def test_return_representation_answers_the_stored_resource(self, fhir_server: Any) -> None:
        """return=representation answers the resource as stored, meta included."""
        client = fhir_server.client()
        pid = f"prefer-{uid()}"

        response = client.put(f"/Patient/{pid}", json=patient(pid), headers={"Prefer": "return=representation"})

        assert 201 == response.status_code
        assert client.get(f"/Patient/{pid}").json() == response.json()

    def test_return_operation_outcome_answers_an_outcome(self, fhir_server: Any) -> None:
        """return=OperationOutcome answers an OperationOutcome instead of the resource."""
        pid = f"prefer-{uid()}"

        response = fhir_server.client().put(f"/Patient/{pid}", json=patient(pid),
                                            headers={"Prefer": "return=OperationOutcome"})

        assert 201 == response.status_code
        assert is_outcome(response)


class TestPatch:
    """PATCH with a JSON Patch document."""

    def test_json_patch_changes_the_resource(self, fhir_server: Any) -> None:
        """A JSON Patch replace answers 200 with the patched resource as a new version."""
        client = fhir_server.client()
        pid = f"patch-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid, name=[{"family": "Bakker"}]))

        response = client.patch(f"/Patient/{pid}", headers=JSON_PATCH, content=json.dumps(
            [{"op": "replace", "path": "/name/0/family", "value": "de Vries"},
             {"op": "add", "path": "/gender", "value": "female"}]))

        assert 200 == response.status_code
        assert 'W/"2"' == response.headers["etag"]
        assert patient(pid, name=[{"family": "de Vries"}], gender="female") == without_meta(
            client.get(f"/Patient/{pid}").json())

    def test_a_patch_that_cannot_apply_is_422_and_stores_nothing(self, fhir_server: Any) -> None:
        """A failing JSON Patch test operation answers 422 with an OperationOutcome."""
        client = fhir_server.client()
        pid = f"patch-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid, gender="male"))
        before = fhir_server.stored_counts()

        response = client.patch(f"/Patient/{pid}", headers=JSON_PATCH, content=json.dumps(
            [{"op": "test", "path": "/gender", "value": "female"}, {"op": "remove", "path": "/gender"}]))

        assert 422 == response.status_code
        assert is_outcome(response)
        assert before == fhir_server.stored_counts()

    def test_a_patch_that_makes_the_resource_invalid_is_400(self, fhir_server: Any) -> None:
        """A patch result that is not valid FHIR is refused with 400 and nothing stored."""
        client = fhir_server.client()
        pid = f"patch-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))
        before = fhir_server.stored_counts()

        response = client.patch(f"/Patient/{pid}", headers=JSON_PATCH, content=json.dumps(
            [{"op": "add", "path": "/birthDate", "value": "not a date"}]))

        assert 400 == response.status_code
        assert is_outcome(response)
        assert before == fhir_server.stored_counts()

    def test_a_patch_may_not_change_the_id(self, fhir_server: Any) -> None:
        """Patching /id to another value is refused with 400."""
        client = fhir_server.client()
        pid = f"patch-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))

        response = client.patch(f"/Patient/{pid}", headers=JSON_PATCH, content=json.dumps(
            [{"op": "replace", "path": "/id", "value": f"other-{uid()}"}]))

        assert 400 == response.status_code
        assert is_outcome(response)

    def test_patch_of_an_unknown_resource_is_404(self, fhir_server: Any) -> None:
        """PATCH of an id nobody stored answers 404."""
        response = fhir_server.client().patch(f"/Patient/unknown-{uid()}", headers=JSON_PATCH, content=json.dumps(
            [{"op": "add", "path": "/gender", "value": "female"}]))

        assert 404 == response.status_code
        assert is_outcome(response)


class TestDelete:
    """DELETE /fhir/Type/id."""

    def test_delete_answers_204_and_a_read_then_410(self, fhir_server: Any) -> None:
        """After DELETE (204, no body), a read answers 410 Gone with an OperationOutcome."""
        client = fhir_server.client()
        pid = f"del-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))

        deleted = client.delete(f"/Patient/{pid}")
        read = client.get(f"/Patient/{pid}")

        assert 204 == deleted.status_code
        assert b"" == deleted.content
        assert 410 == read.status_code
        assert is_outcome(read)

    def test_a_deleted_resource_keeps_its_history(self, fhir_server: Any) -> None:
        """vread of the version before the deletion still answers it."""
        client = fhir_server.client()
        pid = f"del-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid, gender="female"))
        client.delete(f"/Patient/{pid}")

        response = client.get(f"/Patient/{pid}/_history/1")

        assert 200 == response.status_code
        assert "female" == response.json()["gender"]

    def test_vread_of_the_deletion_is_410(self, fhir_server: Any) -> None:
        """The version that records the deletion answers 410 Gone on vread."""
        client = fhir_server.client()
        pid = f"del-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))
        client.delete(f"/Patient/{pid}")

        response = client.get(f"/Patient/{pid}/_history/2")

        assert 410 == response.status_code
        assert is_outcome(response)

    def test_a_deleted_resource_can_be_created_again(self, fhir_server: Any) -> None:
        """PUT after DELETE answers 201 and a read answers the new content."""
        client = fhir_server.client()
        pid = f"del-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))
        client.delete(f"/Patient/{pid}")

        response = client.put(f"/Patient/{pid}", json=patient(pid, gender="male"))

        assert 201 == response.status_code
        assert "male" == client.get(f"/Patient/{pid}").json()["gender"]

    def test_deleting_an_enrolled_patient_is_409(self, fhir_server: Any) -> None:
        """A Patient with an active enrolment cannot be deleted: 409 and the Patient is still there."""
        client = fhir_server.client()
        pid = f"del-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid, generalPractitioner=[{"reference": "Organization/gp-del"}]))
        enrol(client, pid)

        response = client.delete(f"/Patient/{pid}")

        assert 409 == response.status_code
        assert is_outcome(response)
        assert 200 == client.get(f"/Patient/{pid}").status_code

    def test_deleting_an_engine_task_or_careplan_is_405(self, fhir_server: Any) -> None:
        """The engine's Tasks and CarePlans cannot be deleted: 405, and both are still there."""
        client = fhir_server.client()
        pid = f"del-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid, generalPractitioner=[{"reference": "Organization/gp-del"}]))
        plan = enrol(client, pid)
        task = plan["activity"][0]["reference"]["reference"]

        responses = [client.delete(f"/CarePlan/{plan['id']}"), client.delete(f"/{task}")]

        assert [405, 405] == [r.status_code for r in responses]
        assert all(is_outcome(r) for r in responses)
        assert [200, 200] == [client.get(f"/CarePlan/{plan['id']}").status_code, client.get(f"/{task}").status_code]

    def test_a_task_of_a_client_can_be_deleted(self, fhir_server: Any) -> None:
        """A Task a client stored (not the engine's) can be deleted."""
        client = fhir_server.client()
        tid = f"del-{uid()}"
        client.put(f"/Task/{tid}", json={"resourceType": "Task", "id": tid, "status": "requested", "intent": "order"})

        assert 204 == client.delete(f"/Task/{tid}").status_code


class TestHistory:
    """GET /fhir/Type/id/_history."""

    def test_history_is_a_history_bundle_newest_first(self, fhir_server: Any) -> None:
        """Three versions come back as a Bundle of type history, version 3 first."""
        client = fhir_server.client()
        pid = f"hist-{uid()}"
        for gender in ("female", "male", "other"):
            client.put(f"/Patient/{pid}", json=patient(pid, gender=gender))

        bundle = client.get(f"/Patient/{pid}/_history").json()

        assert ("Bundle", "history") == (bundle["resourceType"], bundle["type"])
        assert ["3", "2", "1"] == [e["resource"]["meta"]["versionId"] for e in bundle["entry"]]
        assert ["other", "male", "female"] == [e["resource"]["gender"] for e in bundle["entry"]]

    def test_history_entries_carry_request_and_response(self, fhir_server: Any) -> None:
        """Each entry says how it was made (PUT, then DELETE) and its ETag."""
        client = fhir_server.client()
        pid = f"hist-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))
        client.delete(f"/Patient/{pid}")

        entries = client.get(f"/Patient/{pid}/_history").json()["entry"]

        assert ["DELETE", "PUT"] == [e["request"]["method"] for e in entries]
        assert ['W/"2"', 'W/"1"'] == [e["response"]["etag"] for e in entries]
        assert "resource" not in entries[0]

    def test_history_is_a_valid_bundle(self, fhir_server: Any) -> None:
        """The history Bundle validates as FHIR."""
        from fhir.resources.R4B.bundle import Bundle

        client = fhir_server.client()
        pid = f"hist-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))
        client.put(f"/Patient/{pid}", json=patient(pid, gender="male"))

        bundle = Bundle.model_validate(client.get(f"/Patient/{pid}/_history").json())

        assert 2 == len(bundle.entry or [])


class TestFHIRClientLibrary:
    """fhirpy, a real FHIR client library, acting as a GP practice's system."""

    def test_a_gp_system_registers_reads_and_updates_a_patient(self, fhir_server: Any) -> None:
        """fhirpy creates, reads back and updates a Patient with the practice's token."""
        gp = f"gp-{uid()}"
        client = SyncFHIRClient(fhir_server.fhir, authorization=f"Bearer {fhir_server.token(gp)}")
        registered = client.resource("Patient", name=[{"family": "Visser"}],
                                     generalPractitioner=[{"reference": f"Organization/{gp}"}])
        registered.save()

        fetched = client.reference("Patient", registered.id).to_resource()
        fetched["birthDate"] = "1938-05-06"
        fetched.save()
        again = client.reference("Patient", registered.id).to_resource()

        assert [{"family": "Visser"}] == fetched["name"]
        assert ("1938-05-06", "2") == (again["birthDate"], again["meta"]["versionId"])

    def test_a_gp_system_enrols_and_completes_a_task(self, fhir_server: Any) -> None:
        """fhirpy runs $apply and completes the first Task; the engine opens the next step's Task."""
        gp = f"gp-{uid()}"
        client = SyncFHIRClient(fhir_server.fhir, authorization=f"Bearer {fhir_server.token(gp)}")
        registered = client.resource("Patient", generalPractitioner=[{"reference": f"Organization/{gp}"}])
        registered.save()
        plan = client.execute("PlanDefinition/example-acp/$apply", method="post", data={
            "resourceType": "Parameters",
            "parameter": [{"name": "subject", "valueReference": {"reference": f"Patient/{registered.id}"}}]})
        first = plan["activity"][0]["reference"]["reference"].split("/")[1]

        task = client.reference("Task", first).to_resource()
        task["status"] = "completed"
        task.save()

        activity = client.reference("CarePlan", plan["id"]).to_resource()["activity"]
        assert "completed" == client.reference("Task", first).to_resource()["status"]
        assert 2 == len(activity)
        second = client.reference("Task", activity[1]["reference"]["reference"].split("/")[1]).to_resource()
        assert ("requested", f"Organization/{gp}") == (second["status"], second["owner"]["reference"])


class TestMediaType:
    """Every answer is application/fhir+json."""

    @pytest.mark.parametrize("path", ["/Patient/{pid}", "/Patient/{pid}/_history", "/Patient/{pid}/_history/1",
                                      "/Patient/unknown-{pid}", "/PlanDefinition/example-acp"])
    def test_answers_are_fhir_json(self, fhir_server: Any, path: str) -> None:
        """Reads, history, vread, errors and PlanDefinitions use the FHIR media type."""
        client = fhir_server.client()
        pid = f"media-{uid()}"
        client.put(f"/Patient/{pid}", json=patient(pid))

        response = client.get(path.format(pid=pid))

        assert FHIR_JSON == response.headers["content-type"].split(";")[0]

    def test_plain_json_bodies_are_accepted(self, fhir_server: Any) -> None:
        """A body sent as application/json is accepted like application/fhir+json."""
        pid = f"media-{uid()}"

        response = fhir_server.client().put(f"/Patient/{pid}", content=json.dumps(patient(pid)),
                                            headers={"Content-Type": "application/json"})

        assert 201 == response.status_code
