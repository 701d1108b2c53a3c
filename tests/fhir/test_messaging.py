"""``POST /fhir/$process-message``: FHIR messages from GP systems, over real HTTP against `zorgpad serve`."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import func
from sqlmodel import col, select
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import AuditEntry, InboxEntry, ResourceVersion, StoredResource

pytestmark = pytest.mark.slow

FHIRServer = Any  # tests/fhir/conftest.py FHIRServer (conftest modules are not importable by name)
SCT = "http://snomed.info/sct"
SENDER = "https://his.gp-practice.example/fhir"
EVENT = {"system": "https://zorgpad.nl/test/message-events", "code": "surprise-question-answered"}


def in_database(server: FHIRServer, work: Any) -> Any:
    """Run ``work(session)`` on the server's database."""
    db = Database(server.db_url)
    try:
        return db.run(work)
    finally:
        db.dispose()


def resources_of(server: FHIRServer, resource_type: str, patient_ref: str) -> list[dict[str, Any]]:
    """The current, not deleted resources of one type about a patient."""
    return in_database(server, lambda s: [r.content for r in s.exec(select(StoredResource).where(
        StoredResource.resource_type == resource_type, StoredResource.patient == patient_ref,
        col(StoredResource.deleted).is_(False)))])


def stored_count(server: FHIRServer) -> int:
    """How many resources (current, not deleted) the server's database holds."""
    return int(in_database(server, lambda s: s.exec(select(func.count()).select_from(StoredResource).where(
        col(StoredResource.deleted).is_(False))).one()))


def versions_of(server: FHIRServer, resource_type: str, resource_id: str) -> int:
    """How many versions of one resource the database holds."""
    return int(in_database(server, lambda s: s.exec(select(func.count()).select_from(ResourceVersion).where(
        ResourceVersion.resource_type == resource_type, ResourceVersion.id == resource_id)).one()))


def audited(server: FHIRServer, header_id: str) -> list[tuple[str, str]]:
    """(outcome, detail) of each process-message audit row of one MessageHeader."""
    return in_database(server, lambda s: [(r.outcome, r.detail) for r in s.exec(select(AuditEntry).where(
        AuditEntry.what == "process-message", AuditEntry.entity == f"MessageHeader/{header_id}")
        .order_by(col(AuditEntry.id)))])


def header(header_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A request MessageHeader from the GP system."""
    return {"resourceType": "MessageHeader", "id": header_id or str(uuid.uuid4()), "eventCoding": EVENT,
            "source": {"name": "GP practice HIS", "endpoint": SENDER}, **extra}


def message(first: dict[str, Any], *entries: dict[str, Any], bundle_id: str | None = None,
            kind: str = "message") -> dict[str, Any]:
    """A message Bundle: ``first`` (normally the MessageHeader), then ``entries``."""
    return {"resourceType": "Bundle", "id": bundle_id or str(uuid.uuid4()), "type": kind,
            "timestamp": "2024-05-01T09:00:00Z",
            "entry": [{"fullUrl": f"urn:uuid:{first.get('id', uuid.uuid4())}", "resource": first}, *entries]}


def patient_entry(patient_id: str) -> dict[str, Any]:
    """A Patient entry named by a RESTful fullUrl (update-as-create)."""
    return {"fullUrl": f"{SENDER}/Patient/{patient_id}",
            "resource": {"resourceType": "Patient", "id": patient_id, "active": True,
                         "name": [{"family": "Janssen", "given": ["Maria"]}], "birthDate": "1938-02-11"}}


def surprise_question(subject: str, **extra: Any) -> dict[str, Any]:
    """A Surprise Question Observation answered 'no' (would not be surprised), without an id."""
    return {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {"resourceType": "Observation", "status": "final",
                         "code": {"coding": [{"system": SCT, "code": "713636003"}]},
                         "subject": {"reference": subject}, "valueBoolean": False,
                         "effectiveDateTime": "2024-05-01", **extra}}


def process(client: httpx.Client, body: Any) -> httpx.Response:
    """POST to $process-message."""
    return client.post("$process-message", json=body)


def answer_of(response_bundle: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The response MessageHeader and the OperationOutcome its response.details points at."""
    first = response_bundle["entry"][0]["resource"]
    details = first["response"]["details"]["reference"]
    outcome = next(e["resource"] for e in response_bundle["entry"] if e["fullUrl"] == details)
    return first, outcome


class TestProcessMessage:
    """A well-formed message is stored through the interactions, feeds the engine and is answered."""

    def test_a_surprise_question_enrols_the_patient(self, fhir_server: FHIRServer) -> None:
        """The Observation in the message enrols its patient in example-acp: a CarePlan appears."""
        client = fhir_server.client()
        pid = uuid.uuid4().hex
        body = message(header(), patient_entry(pid), surprise_question(f"{SENDER}/Patient/{pid}"))

        response = process(client, body)

        assert 200 == response.status_code, response.text
        reply, outcome = answer_of(response.json())
        assert "ok" == reply["response"]["code"]
        plans = resources_of(fhir_server, "CarePlan", f"Patient/{pid}")
        assert 1 == len(plans)
        assert plans[0]["instantiatesCanonical"][0].endswith("example-acp|1.1.0")
        observations = resources_of(fhir_server, "Observation", f"Patient/{pid}")
        assert [f"Patient/{pid}"] == [o["subject"]["reference"] for o in observations]
        assert {f"Patient/{pid} stored as version 1", f"Observation/{observations[0]['id']} stored as version 1"} \
            == {i["diagnostics"] for i in outcome["issue"]}
        assert 200 == client.get(f"CarePlan/{plans[0]['id']}").status_code

    def test_the_response_answers_the_request(self, fhir_server: FHIRServer) -> None:
        """A valid message: MessageHeader first, event copied, Zorgpad to the sender, answering the request's id."""
        client = fhir_server.client()
        request = header()
        pid = uuid.uuid4().hex

        answer = process(client, message(request, patient_entry(pid))).json()

        get_fhir_model_class("Bundle").model_validate(answer)
        assert "message" == answer["type"]
        reply, outcome = answer_of(answer)
        get_fhir_model_class("MessageHeader").model_validate(reply)
        assert "MessageHeader" == reply["resourceType"]
        assert EVENT == reply["eventCoding"]
        assert fhir_server.fhir == reply["source"]["endpoint"]
        assert [{"name": "GP practice HIS", "endpoint": SENDER}] == reply["destination"]
        assert {"identifier": request["id"], "code": "ok",
                "details": {"reference": answer["entry"][1]["fullUrl"]}} == reply["response"]
        assert "OperationOutcome" == outcome["resourceType"]

    def test_a_parameters_body_carries_the_message_in_content(self, fhir_server: FHIRServer) -> None:
        """A Parameters resource with the Bundle in parameter 'content' is processed like the Bundle."""
        client = fhir_server.client()
        pid = uuid.uuid4().hex
        body = {"resourceType": "Parameters",
                "parameter": [{"name": "content", "resource": message(header(), patient_entry(pid))},
                              {"name": "async", "valueBoolean": False}]}

        reply, _ = answer_of(process(client, body).json())

        assert "ok" == reply["response"]["code"]
        assert 200 == client.get(f"Patient/{pid}").status_code

    def test_asynchronous_messaging_is_refused(self, fhir_server: FHIRServer) -> None:
        """async=true is not supported: 400, nothing stored."""
        client = fhir_server.client()
        pid = uuid.uuid4().hex
        body = {"resourceType": "Parameters",
                "parameter": [{"name": "content", "resource": message(header(), patient_entry(pid))},
                              {"name": "async", "valueBoolean": True}]}

        response = process(client, body)

        assert 400 == response.status_code
        assert "not-supported" == response.json()["issue"][0]["code"]
        assert 404 == client.get(f"Patient/{pid}").status_code

    def test_every_message_is_audited(self, fhir_server: FHIRServer) -> None:
        """One process-message audit row per message received, the repeat included."""
        client = fhir_server.client()
        request = header()
        body = message(request, patient_entry(uuid.uuid4().hex))

        process(client, body)
        process(client, body)

        rows = audited(fhir_server, request["id"])
        assert ["0", "0"] == [outcome for outcome, _ in rows]
        assert "ok, 1 resources stored" in rows[0][1]
        assert "a repeat" in rows[1][1]


class TestIdempotency:
    """A message is applied once; a repeat gets the same answer."""

    def test_the_same_message_twice_changes_nothing_the_second_time(self, fhir_server: FHIRServer) -> None:
        """Both answers are identical; one CarePlan, one Observation, one Patient version."""
        client = fhir_server.client()
        pid = uuid.uuid4().hex
        body = message(header(), patient_entry(pid), surprise_question(f"Patient/{pid}"))

        first = process(client, body).json()
        second = process(client, body).json()

        assert first == second
        assert 1 == len(resources_of(fhir_server, "CarePlan", f"Patient/{pid}"))
        observations = resources_of(fhir_server, "Observation", f"Patient/{pid}")
        assert 1 == len(observations)
        assert 1 == versions_of(fhir_server, "Observation", observations[0]["id"])
        assert 1 == versions_of(fhir_server, "Patient", pid)

    def test_a_resend_in_a_new_bundle_is_recognised_by_its_message_header_id(self, fhir_server: FHIRServer) -> None:
        """A new Bundle.id around the same MessageHeader.id is a repeat."""
        client = fhir_server.client()
        pid = uuid.uuid4().hex
        request = header()

        first = process(client, message(request, patient_entry(pid))).json()
        second = process(client, message(request, patient_entry(pid))).json()

        assert first == second
        assert 1 == versions_of(fhir_server, "Patient", pid)

    def test_a_reused_bundle_id_is_a_repeat(self, fhir_server: FHIRServer) -> None:
        """A Bundle.id seen before is a repeat even with a new MessageHeader.id."""
        client = fhir_server.client()
        pid, bundle_id = uuid.uuid4().hex, str(uuid.uuid4())

        first = process(client, message(header(), patient_entry(pid), bundle_id=bundle_id)).json()
        second = process(client, message(header(), patient_entry(pid), bundle_id=bundle_id)).json()

        assert first == second
        assert 1 == versions_of(fhir_server, "Patient", pid)

    def test_both_identities_are_kept_in_the_inbox(self, fhir_server: FHIRServer) -> None:
        """The inbox holds the answer under the Bundle.id and under the MessageHeader.id."""
        client = fhir_server.client()
        request, bundle_id = header(), str(uuid.uuid4())

        answer = process(client, message(request, patient_entry(uuid.uuid4().hex), bundle_id=bundle_id)).json()

        keys = [f"message:Bundle/{bundle_id}", f"message:MessageHeader/{request['id']}"]
        stored = in_database(fhir_server, lambda s: [s.get(InboxEntry, key).response for key in keys])
        assert [answer, answer] == stored

    def test_concurrent_repeats_are_applied_once(self, fhir_server: FHIRServer) -> None:
        """The same message sent four times at once gets one answer and one enrolment."""
        pid = uuid.uuid4().hex
        body = message(header(), patient_entry(pid), surprise_question(f"Patient/{pid}"))
        answers: list[Any] = []
        barrier = threading.Barrier(4)

        def send() -> None:
            client = fhir_server.client()
            barrier.wait()
            response = process(client, body)
            answers.append((response.status_code, response.json()))

        threads = [threading.Thread(target=send) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert [200] * 4 == [status for status, _ in answers]
        assert [answers[0][1]] * 4 == [answer for _, answer in answers]
        assert 1 == len(resources_of(fhir_server, "CarePlan", f"Patient/{pid}"))
        assert 1 == len(resources_of(fhir_server, "Observation", f"Patient/{pid}"))


class TestMalformedMessages:
    """What is not a message is refused with 400; a message with bad content is answered fatal-error."""

    @pytest.mark.parametrize(("body", "fragment"), [
        (message({"resourceType": "Patient", "id": "p"}, patient_entry("malformed-1")), "bdl-12"),
        (message(header(), patient_entry("malformed-2"), kind="collection"), "Bundle.type must be message"),
        (message(header(), patient_entry("malformed-3"), kind="transaction"), "Bundle.type must be message"),
        ({"resourceType": "Bundle", "type": "message", "entry": []}, "bdl-12"),
        ({"resourceType": "Patient"}, "takes a Bundle"),
        (message({k: v for k, v in header().items() if k != "id"}, patient_entry("malformed-4")),
         "MessageHeader needs an id"),
        (message({k: v for k, v in header().items() if k != "eventCoding"}, patient_entry("malformed-5")),
         "eventCoding"),
        (message(header(source={"name": "no endpoint"}), patient_entry("malformed-6")), "source.endpoint"),
        ({"resourceType": "Parameters", "parameter": [{"name": "other", "valueString": "x"}]}, "'content'"),
    ])
    def test_what_is_not_a_message_is_refused(self, fhir_server: FHIRServer, body: Any, fragment: str) -> None:
        """400 with an OperationOutcome saying what is wrong; nothing stored."""
        client = fhir_server.client()
        before = stored_count(fhir_server)

        response = process(client, body)

        assert 400 == response.status_code
        assert "OperationOutcome" == response.json()["resourceType"]
        assert fragment in response.json()["issue"][0]["diagnostics"]
        assert before == stored_count(fhir_server)

    def test_an_invalid_resource_is_a_fatal_error_and_nothing_is_stored(self, fhir_server: FHIRServer) -> None:
        """fatal-error naming the entry; the message's valid Patient is not stored; a repeat gets the same answer."""
        client = fhir_server.client()
        pid = uuid.uuid4().hex
        request = header()
        broken = surprise_question(f"Patient/{pid}")
        del broken["resource"]["status"]
        body = message(request, patient_entry(pid), broken)
        before = stored_count(fhir_server)

        first = process(client, body)
        second = process(client, body)

        assert 200 == first.status_code
        reply, outcome = answer_of(first.json())
        assert "fatal-error" == reply["response"]["code"]
        assert request["id"] == reply["response"]["identifier"]
        assert outcome["issue"][0]["diagnostics"].startswith("Bundle.entry[2]: Observation.status")
        assert before == stored_count(fhir_server)
        assert 404 == client.get(f"Patient/{pid}").status_code
        assert first.json() == second.json()
        assert ["8", "0"] == [outcome for outcome, _ in audited(fhir_server, request["id"])]

    def test_a_write_the_sender_may_not_make_is_a_fatal_error(self, fhir_server: FHIRServer) -> None:
        """An organisation that takes no part in a patient's care cannot add to it by message."""
        admin = fhir_server.client()
        pid = uuid.uuid4().hex
        admin.put(f"Patient/{pid}", json=patient_entry(pid)["resource"])
        client = fhir_server.client(fhir_server.token(f"gp-{uuid.uuid4().hex[:8]}"))

        answer = process(client, message(header(), surprise_question(f"Patient/{pid}"))).json()

        reply, outcome = answer_of(answer)
        assert "fatal-error" == reply["response"]["code"]
        assert "forbidden" == outcome["issue"][0]["code"]
        assert [] == resources_of(fhir_server, "Observation", f"Patient/{pid}")
        assert [] == resources_of(fhir_server, "CarePlan", f"Patient/{pid}")

    def test_a_reference_to_nothing_in_the_message_is_a_fatal_error(self, fhir_server: FHIRServer) -> None:
        """A urn:uuid reference that no entry of the message answers cannot be stored."""
        client = fhir_server.client()
        pid = uuid.uuid4().hex
        dangling = f"urn:uuid:{uuid.uuid4()}"

        answer = process(client, message(header(), patient_entry(pid), surprise_question(dangling))).json()

        reply, outcome = answer_of(answer)
        assert "fatal-error" == reply["response"]["code"]
        assert dangling in outcome["issue"][0]["diagnostics"]
        assert 404 == client.get(f"Patient/{pid}").status_code
