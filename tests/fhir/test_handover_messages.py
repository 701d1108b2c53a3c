"""Handover notices as FHIR messages, end to end over real HTTP.

The out-of-hours post registers an ``Endpoint`` with ``connectionType`` ``hl7-fhir-msg`` whose address
is its system's ``$process-message``; `zorgpad deliver` POSTs a message Bundle (MessageHeader, Task,
Communication, Patient) there. The receiver is either a loopback partner that answers what the test
tells it to, or a second, real Zorgpad server: the post's own system.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, select
from zorgpad.engine.app import build_engine
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import OutboxItem
from zorgpad.fhir.handovers import FHIR_MESSAGING, HANDOVER_EVENT, TASK_CHANGED_EVENT, message_ids
from zorgpad.fhir.validation import validate_resource

from tests.fhir.conftest import FHIRServer, start_server, stop_server
from tests.fhir.test_handover import Region, example_registry, reach_handover, set_up_region
from tests.fhir.test_subscriptions import Received, Receiver, deliver, outbox, unique

pytestmark = pytest.mark.slow


def response_message(received: Received, code: str, diagnostics: str | None = None) -> bytes:
    """The receiver's answer to the message in ``received``: a response message with ``code``."""
    header = json.loads(received.body)["entry"][0]["resource"]
    entry: list[dict[str, Any]] = [{"fullUrl": "urn:uuid:9d2c7a86-0f55-4b8e-8f0e-3b0a8f7c6d11", "resource": {
        "resourceType": "MessageHeader", "id": "9d2c7a86-0f55-4b8e-8f0e-3b0a8f7c6d11",
        "eventCoding": header["eventCoding"], "source": {"endpoint": "http://post.example/fhir"},
        "response": {"identifier": header["id"], "code": code}}}]
    if diagnostics:
        entry.append({"fullUrl": "urn:uuid:5b0c1f7e-2d1a-4a55-9d7e-1c3b5a7e9f20", "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "invalid", "diagnostics": diagnostics}]}})
    return json.dumps({"resourceType": "Bundle", "type": "message", "entry": entry}).encode()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The post's notification endpoint (notified pull), which the region registers as well."""
    started = Receiver()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def partner() -> Iterator[Receiver]:
    """The post's messaging endpoint, answering ``ok`` unless a test says otherwise."""
    started = Receiver(status=200)
    yield started
    started.stop()


@pytest.fixture
def partner_answers(partner: Receiver) -> Iterator[list[str]]:
    """The codes the partner answers, one per message (``ok`` once they run out)."""
    codes: list[str] = []
    partner.reply = lambda received: response_message(received, codes.pop(0) if codes else "ok", "Task.owner unknown")
    yield codes
    partner.reply = None


def messaging_endpoint(region: Region, address: str, *headers: str) -> None:
    """Register the post's FHIR messaging endpoint (its only endpoint besides the region's notified pull)."""
    created = region.ooh_client.post("/Endpoint", json={
        "resourceType": "Endpoint", "status": "active", "connectionType": FHIR_MESSAGING,
        "managingOrganization": {"reference": region.ooh}, "payloadType": [{"text": "FHIR message"}],
        "address": address, "header": list(headers)})
    assert 201 == created.status_code, created.text


def handover_item(fhir_server: FHIRServer, region: Region) -> OutboxItem:
    """The handover notice to the post."""
    [item] = [i for i in outbox(fhir_server.db_url, "notify", region.ooh) if i.payload["handover"]]
    return item


def messages(partner: Receiver, folder: str) -> list[dict[str, Any]]:
    """The message Bundles the partner got at ``/folder``."""
    return [json.loads(r.body) for r in partner.at(folder)]


class TestTheMessage:
    """What the post's messaging endpoint gets."""

    def test_one_message_bundle_with_the_task_its_notice_and_the_patient(
            self, fhir_server: FHIRServer, receiver: Receiver, partner: Receiver, partner_answers: list[str]) -> None:
        """MessageHeader (handover-notice, focus the Task, destination the endpoint), then Task,
        Communication, Patient; valid FHIR; the notice's key as Idempotency-Key; Endpoint.header sent."""
        region = set_up_region(fhir_server, receiver)
        folder = unique("messages")
        messaging_endpoint(region, partner.url(f"{folder}/$process-message"), "Authorization: Bearer post-secret")
        share, _ = reach_handover(region)
        deliver(fhir_server.db_url)
        [request] = partner.at(folder)
        bundle = json.loads(request.body)
        header = bundle["entry"][0]["resource"]
        item = handover_item(fhir_server, region)

        assert ("message", "MessageHeader") == (bundle["type"], header["resourceType"])
        assert HANDOVER_EVENT == header["eventCoding"]
        assert [{"reference": f"Task/{share['id']}"}] == header["focus"]
        assert [{"endpoint": partner.url(f"{folder}/$process-message"), "receiver": {"reference": region.ooh}}] \
            == header["destination"]
        assert [("Task", share["id"]), ("Communication", item.payload["communication"].split("/")[1]),
                ("Patient", region.patient.split("/")[1])] == [
            (e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"][1:]]
        assert (bundle["id"], header["id"]) == message_ids(item.idempotency_key)
        assert bundle == validate_resource(bundle)  # raises naming every problem if it is not valid FHIR
        assert "application/fhir+json" == request.headers["content-type"]
        assert item.idempotency_key == request.headers["idempotency-key"]
        assert "Bearer post-secret" == request.headers["authorization"]
        assert "delivered" == item.status

    def test_a_change_of_the_task_is_a_message_with_the_task_and_the_patient(
            self, fhir_server: FHIRServer, receiver: Receiver, partner: Receiver, partner_answers: list[str]) -> None:
        """Withdrawn after the handover: a second message, event task-changed, focus and first entry the
        cancelled Task, then the Patient; valid FHIR; keyed by the Task's version."""
        region = set_up_region(fhir_server, receiver)
        folder = unique("messages")
        messaging_endpoint(region, partner.url(folder))
        share, _ = reach_handover(region)
        deliver(fhir_server.db_url)
        db = Database(fhir_server.db_url)
        try:
            build_engine(db, example_registry()).withdraw(region.enrolment, reason="moved away")
        finally:
            db.dispose()
        deliver(fhir_server.db_url)
        first, second = messages(partner, folder)
        header = second["entry"][0]["resource"]
        [item] = outbox(fhir_server.db_url, "task-changed", region.ooh)

        assert (HANDOVER_EVENT, TASK_CHANGED_EVENT) == (first["entry"][0]["resource"]["eventCoding"],
                                                        header["eventCoding"])
        assert ([{"reference": f"Task/{share['id']}"}], [("Task", "cancelled"), ("Patient", None)]) == (
            header["focus"], [(e["resource"]["resourceType"], e["resource"].get("status"))
                              for e in second["entry"][1:]])
        assert second == validate_resource(second)
        assert ((second["id"], header["id"]), "delivered") == (message_ids(item.idempotency_key), item.status)

    def test_transient_error_is_retried_with_the_same_message(
            self, fhir_server: FHIRServer, receiver: Receiver, partner: Receiver, partner_answers: list[str]) -> None:
        """transient-error: the notice stays pending; the retry sends the identical Bundle and is delivered."""
        partner_answers.append("transient-error")
        region = set_up_region(fhir_server, receiver)
        folder = unique("messages")
        messaging_endpoint(region, partner.url(folder))
        reach_handover(region)
        deliver(fhir_server.db_url)
        after_first = handover_item(fhir_server, region)
        deliver(fhir_server.db_url, now=datetime.now(UTC) + timedelta(hours=1))
        after_retry = handover_item(fhir_server, region)
        sent = messages(partner, folder)

        assert ("pending", 1, "the receiver answered transient-error") == (
            after_first.status, after_first.attempts, after_first.last_error)
        assert ("delivered", 2) == (after_retry.status, after_retry.attempts)
        assert 2 == len(sent)
        assert sent[0] == {**sent[1], "timestamp": sent[0]["timestamp"]}

    def test_fatal_error_dead_letters_the_notice_at_once_with_the_receivers_diagnostics(
            self, fhir_server: FHIRServer, receiver: Receiver, partner: Receiver, partner_answers: list[str]) -> None:
        """fatal-error: sending the same message again cannot help, so the notice is dead after one attempt."""
        partner_answers.append("fatal-error")
        region = set_up_region(fhir_server, receiver)
        folder = unique("messages")
        messaging_endpoint(region, partner.url(folder))
        reach_handover(region)
        deliver(fhir_server.db_url)
        item = handover_item(fhir_server, region)

        assert ("dead", 1) == (item.status, item.attempts)
        assert "fatal-error" in str(item.last_error)
        assert "Task.owner unknown" in str(item.last_error)


@pytest.fixture(scope="module")
def post_system(database_factory: Any) -> Iterator[FHIRServer]:
    """The out-of-hours post's own system: another Zorgpad server with its own database."""
    server = start_server(database_factory())
    yield server
    stop_server(server)


class TestAZorgpadReceiver:
    """The post runs Zorgpad too: the message goes to its `$process-message`."""

    def test_the_receiver_stores_the_handover_once_even_when_the_message_is_sent_again(
            self, fhir_server: FHIRServer, receiver: Receiver, post_system: FHIRServer) -> None:
        """The post's system stores Task, Communication and Patient; a resend (a crash after sending, before
        recording) is recognised by the message id and changes nothing there."""
        region = set_up_region(fhir_server, receiver)
        messaging_endpoint(region, f"{post_system.fhir}/$process-message", f"Authorization: Bearer {post_system.admin}")
        share, _ = reach_handover(region)
        deliver(fhir_server.db_url)
        first = handover_item(fhir_server, region)
        stored_once = post_system.stored_counts()
        task_there = post_system.client().get(f"/Task/{share['id']}")
        db = Database(fhir_server.db_url)
        try:  # the sender died after sending and before recording: the lease ran out, the item is pending
            def resend(session: Any) -> None:
                row = session.exec(select(OutboxItem).where(col(OutboxItem.id) == first.id)).one()
                row.status, row.delivered_at = "pending", None
                session.add(row)
            db.run(resend)
        finally:
            db.dispose()
        deliver(fhir_server.db_url)
        second = handover_item(fhir_server, region)

        assert ("delivered", None) == (first.status, first.last_error)
        assert 200 == task_there.status_code, task_there.text
        assert (share["status"], region.ooh) == (task_there.json()["status"], task_there.json()["owner"]["reference"])
        assert ("delivered", 2) == (second.status, second.attempts)
        assert stored_once == post_system.stored_counts()
