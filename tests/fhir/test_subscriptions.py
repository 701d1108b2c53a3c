"""R4 rest-hook Subscriptions: created over the FHIR API, notified over real HTTP by `zorgpad deliver`.

A partner's notification endpoint is a :class:`Receiver` on a loopback port in this process. Each test
uses its own organisations and its own path on the receiver, so the tests of one module share the
server and the receiver without seeing each other's notifications.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select
from zorgpad.engine.app import build_engine
from zorgpad.engine.outbox import DeliveryError
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.resources import put_resource
from zorgpad.engine.store.tables import OutboxItem
from zorgpad.fhir.access import OWNER_TAG_SYSTEM
from zorgpad.fhir.subscriptions import PAYLOAD_CONTENT_URL, Criteria
from zorgpad.fhir.transports import HTTPSender, retry_after

REPO = Path(__file__).resolve().parents[2]
ZORGPAD = REPO / ".venv" / "bin" / "zorgpad"
EXAMPLE = REPO / "tests" / "example_pathway.py"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# -- a partner's receiving end ----------------------------------------------------------------------

@dataclass
class Received:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Receiver:
    """A partner's HTTP endpoint on a loopback port: records every request and answers ``status``, with
    the body ``reply`` makes of the request (FHIR JSON), or none."""

    port: int = 0
    status: int = 202
    requests: list[Received] = field(default_factory=list)
    reply: Callable[[Received], bytes] | None = None

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                received = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with receiver.lock:
                    receiver.requests.append(received)
                answer = receiver.reply(received) if receiver.reply is not None else b""
                self.send_response(receiver.status)
                if answer:
                    self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop listening and free the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this receiver."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def at(self, folder: str) -> list[Received]:
        """The requests to ``/folder`` or below it."""
        folder = "/" + folder.strip("/")
        with self.lock:
            return [r for r in self.requests if r.path == folder or r.path.startswith(f"{folder}/")]


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])




@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """One partner receiver for the module."""
    started = Receiver()
    yield started
    started.stop()


# -- driving the server -----------------------------------------------------------------------------

def zorgpad(db_url: str, *args: str) -> str:
    """Run a `zorgpad` command on the server's database (as its runner would) and return its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("ZORGPAD_DATABASE_URL", "ZORGPAD_BASE_URL")}
    result = subprocess.run([str(ZORGPAD), *args, "--db", db_url, "--file", str(EXAMPLE)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert 0 == result.returncode, result.stderr
    return result.stdout


def deliver(db_url: str, now: datetime | None = None) -> str:
    """Flush the outbox once in a separate process (`zorgpad deliver`)."""
    return zorgpad(db_url, "deliver", *(["--now", now.isoformat()] if now else []))


def outbox(db_url: str, channel: str, target: str | None = None) -> list[OutboxItem]:
    """The outbox rows of ``channel`` (for ``target``), oldest first."""
    db = Database(db_url)
    try:
        query = select(OutboxItem).where(OutboxItem.channel == channel)
        if target is not None:
            query = query.where(OutboxItem.target == target)
        return db.run(lambda s: list(s.exec(query.order_by(col(OutboxItem.id)))))
    finally:
        db.dispose()


def unique(stem: str) -> str:
    """A fresh id such as ``gp-3f2a1c``."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


@dataclass
class Practice:
    """A GP practice with its own token, and one patient of its own."""

    org: str
    client: httpx.Client
    patient: str


def practice(fhir_server: Any) -> Practice:
    """Register an organisation, give it a token, and let it register a patient of its own."""
    org_id = unique("gp")
    admin = fhir_server.client()
    assert 201 == admin.put(f"/Organization/{org_id}", json={"resourceType": "Organization", "id": org_id,
                                                             "name": org_id}).status_code
    client = fhir_server.client(fhir_server.token(org_id))
    created = client.post("/Patient", json={"resourceType": "Patient", "name": [{"text": f"Patient of {org_id}"}],
                                            "generalPractitioner": [{"reference": f"Organization/{org_id}"}]})
    assert 201 == created.status_code, created.text
    return Practice(f"Organization/{org_id}", client, f"Patient/{created.json()['id']}")


def write_task(client: httpx.Client, patient: str, owner: str, status: str = "requested") -> dict[str, Any]:
    """Create a Task (not one of the engine's) for ``patient`` owned by ``owner``."""
    created = client.post("/Task", json={"resourceType": "Task", "status": status, "intent": "order",
                                         "for": {"reference": patient}, "owner": {"reference": owner},
                                         "code": {"text": "Call the patient back"}})
    assert 201 == created.status_code, created.text
    return dict(created.json())


def subscribe(client: httpx.Client, criteria: str, endpoint: str, *, content: str | None = None,
              payload: str | None = None, headers: tuple[str, ...] = ()) -> httpx.Response:
    """POST a requested rest-hook Subscription."""
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint}
    if payload:
        channel["payload"] = payload
    if content:
        channel["_payload"] = {"extension": [{"url": PAYLOAD_CONTENT_URL, "valueCode": content}]}
    if headers:
        channel["header"] = list(headers)
    return client.post("/Subscription", json={"resourceType": "Subscription", "status": "requested",
                                              "reason": "test", "criteria": criteria, "channel": channel})


def active_subscription(client: httpx.Client, criteria: str, endpoint: str, **kwargs: Any) -> dict[str, Any]:
    """Subscribe and check that the server took the Subscription."""
    response = subscribe(client, criteria, endpoint, **kwargs)
    assert 201 == response.status_code, response.text
    return dict(response.json())


# -- tests ------------------------------------------------------------------------------------------

@pytest.mark.slow
class TestCreatingSubscriptions:
    """What the server does with a Subscription a partner creates."""

    def test_a_requested_rest_hook_subscription_is_stored_as_active_and_owned_by_its_creator(
            self, fhir_server: Any, receiver: Receiver) -> None:
        """Status requested becomes active on create, and the Subscription carries its creator's owner tag."""
        gp = practice(fhir_server)
        created = subscribe(gp.client, f"Task?owner={gp.org}", receiver.url(unique("hook")))
        read = gp.client.get(f"/Subscription/{created.json()['id']}")

        assert 201 == created.status_code
        assert "active" == created.json()["status"]
        assert "active" == read.json()["status"]
        assert [{"system": OWNER_TAG_SYSTEM, "code": gp.org}] == read.json()["meta"]["tag"]

    @pytest.mark.parametrize(("criteria", "channel", "expected"), [
        ("Task?owner=Organization/x", {"type": "websocket"}, "channel.type 'websocket' is not supported"),
        ("Task?owner=Organization/x", {"endpoint": "ftp://partner.example/hook"},
         "channel.endpoint must be an absolute http(s) URL"),
        ("Task?owner=Organization/x", {"payload": "application/fhir+xml"},
         "channel.payload 'application/fhir+xml' is not supported"),
        ("Task?owner=Organization/x", {"header": ["no colon here"]}, "is not a 'Name: value' HTTP header"),
        ("Task?owner=Organization/x", {"header": ["Idempotency-Key: mine"]}, "may not set Idempotency-Key"),
        ("Task?period=2026", {}, "parameter 'period' cannot be used in Task criteria"),
        ("Nonsense?status=active", {}, "criteria must start with a resource type this server stores"),
    ], ids=["websocket", "ftp-endpoint", "xml-payload", "bad-header", "reserved-header", "date-parameter",
        "unknown-type"])
    def test_a_subscription_the_server_cannot_serve_is_refused_with_an_operation_outcome(
            self, fhir_server: Any, criteria: str, channel: dict[str, Any], expected: str) -> None:
        """An unsupported channel, payload, header or criteria answers 400 naming the problem."""
        body = {"resourceType": "Subscription", "status": "requested", "reason": "test", "criteria": criteria,
                "channel": {"type": "rest-hook", "endpoint": "https://partner.example/hook", **channel}}
        response = fhir_server.client().post("/Subscription", json=body)

        assert 400 == response.status_code
        assert "OperationOutcome" == response.json()["resourceType"]
        assert expected in response.json()["issue"][0]["diagnostics"]


@pytest.mark.slow
class TestNotifications:
    """Which writes notify whom, and what each notification carries."""

    def test_a_matching_task_change_posts_one_empty_notification_with_the_channel_headers(
            self, fhir_server: Any, receiver: Receiver) -> None:
        """No payload: one POST without a body, with the configured header and the outbox idempotency key."""
        gp, hook = practice(fhir_server), unique("hook")
        endpoint = receiver.url(hook)
        active_subscription(gp.client, f"Task?owner={gp.org}&status=requested", endpoint,
                            headers=("Authorization: Bearer partner-secret",))
        write_task(gp.client, gp.patient, gp.org)
        deliver(fhir_server.db_url)
        got = receiver.at(hook)
        items = outbox(fhir_server.db_url, "rest-hook", endpoint)

        assert 1 == len(got)
        assert ("POST", f"/{hook}", b"") == (got[0].method, got[0].path, got[0].body)
        assert "Bearer partner-secret" == got[0].headers["authorization"]
        assert [items[0].idempotency_key] == [got[0].headers["idempotency-key"]]
        assert ["delivered"] == [item.status for item in items]

    def test_an_id_only_subscription_posts_a_bundle_that_names_the_resource_without_its_content(
            self, fhir_server: Any, receiver: Receiver) -> None:
        """id-only: a backport notification Bundle whose focus is the Task, and no Task content."""
        gp, hook = practice(fhir_server), unique("hook")
        subscription = active_subscription(gp.client, f"Task?owner={gp.org}", receiver.url(hook),
                                           payload="application/fhir+json", content="id-only")
        task = write_task(gp.client, gp.patient, gp.org)
        deliver(fhir_server.db_url)
        got = receiver.at(hook)
        bundle = json.loads(got[0].body)
        status, event = bundle["entry"]
        parameters = {p["name"]: p for p in status["resource"]["parameter"]}
        focus = {p["name"]: p for p in parameters["notification-event"]["part"]}["focus"]

        assert 1 == len(got)
        assert "application/fhir+json" == got[0].headers["content-type"]
        assert ("Bundle", "history") == (bundle["resourceType"], bundle["type"])
        assert f"Subscription/{subscription['id']}" == parameters["subscription"]["valueReference"]["reference"]
        assert "event-notification" == parameters["type"]["valueCode"]
        assert f"Task/{task['id']}" == focus["valueReference"]["reference"]
        assert {"method": "POST", "url": "Task"} == event["request"]
        assert "resource" not in event

    def test_a_full_resource_subscription_posts_the_version_that_matched(
            self, fhir_server: Any, receiver: Receiver) -> None:
        """full-resource: the Bundle carries the Task as it was when it matched."""
        gp, hook = practice(fhir_server), unique("hook")
        active_subscription(gp.client, f"Task?owner={gp.org}&status=requested", receiver.url(hook),
                            payload="application/fhir+json")
        task = write_task(gp.client, gp.patient, gp.org)
        assert 200 == gp.client.put(f"/Task/{task['id']}", json={**task, "status": "cancelled"}).status_code
        deliver(fhir_server.db_url)
        got = receiver.at(hook)
        resource = json.loads(got[0].body)["entry"][1]["resource"]

        assert 1 == len(got)
        assert (task["id"], "requested", "1") == (resource["id"], resource["status"], resource["meta"]["versionId"])

    def test_a_change_that_does_not_match_the_criteria_notifies_nobody(
            self, fhir_server: Any, receiver: Receiver) -> None:
        """A Task of another owner, or in another status, queues nothing and posts nothing."""
        gp, hook = practice(fhir_server), unique("hook")
        endpoint = receiver.url(hook)
        active_subscription(gp.client, f"Task?owner={gp.org}&status=completed", endpoint)
        write_task(gp.client, gp.patient, gp.org, status="requested")
        write_task(gp.client, gp.patient, f"Organization/{unique('other')}", status="completed")
        deliver(fhir_server.db_url)

        assert [] == receiver.at(hook)
        assert [] == outbox(fhir_server.db_url, "rest-hook", endpoint)

    def test_an_organisation_is_never_notified_about_a_patient_it_takes_no_part_in(
            self, fhir_server: Any, receiver: Receiver) -> None:
        """Two organisations subscribe to every Task; only the patient's own GP hears of the patient's Task."""
        gp, stranger = practice(fhir_server), practice(fhir_server)
        own_hook, stranger_hook = unique("own"), unique("stranger")
        active_subscription(gp.client, "Task", receiver.url(own_hook))
        active_subscription(stranger.client, "Task", receiver.url(stranger_hook))
        write_task(gp.client, gp.patient, gp.org)
        deliver(fhir_server.db_url)

        assert 1 == len(receiver.at(own_hook))
        assert [] == receiver.at(stranger_hook)
        assert [] == outbox(fhir_server.db_url, "rest-hook", receiver.url(stranger_hook))

    def test_a_subscription_switched_off_notifies_nobody(self, fhir_server: Any, receiver: Receiver) -> None:
        """Status off stops notifications for later changes."""
        gp, hook = practice(fhir_server), unique("hook")
        subscription = active_subscription(gp.client, f"Task?owner={gp.org}", receiver.url(hook))
        switched = gp.client.put(f"/Subscription/{subscription['id']}", json={**subscription, "status": "off"})
        write_task(gp.client, gp.patient, gp.org)
        deliver(fhir_server.db_url)

        assert 200 == switched.status_code
        assert [] == receiver.at(hook)


    def test_a_notification_queued_before_its_subscription_was_switched_off_is_dead_lettered_unsent(
            self, fhir_server: Any, receiver: Receiver) -> None:
        """The Subscription is read again at delivery: switched off in between, nothing is posted."""
        gp, hook = practice(fhir_server), unique("hook")
        endpoint = receiver.url(hook)
        subscription = active_subscription(gp.client, f"Task?owner={gp.org}", endpoint)
        write_task(gp.client, gp.patient, gp.org)
        switched = gp.client.put(f"/Subscription/{subscription['id']}", json={**subscription, "status": "off"})
        deliver(fhir_server.db_url)
        [item] = outbox(fhir_server.db_url, "rest-hook", endpoint)

        assert 200 == switched.status_code
        assert [] == receiver.at(hook)
        assert ("dead", f"Subscription/{subscription['id']} is no longer active (off)") == (item.status,
                                                                                          item.last_error)


@pytest.mark.slow
class TestUnreachableReceivers:
    """Notifications survive a receiver that is down."""

    def test_a_notification_stays_pending_while_the_receiver_is_down_and_arrives_once_it_is_up(
            self, fhir_server: Any) -> None:
        """Connection refused counts an attempt and keeps the item; a later deliver brings it."""
        gp, port = practice(fhir_server), free_port()
        endpoint = f"http://127.0.0.1:{port}/down"
        active_subscription(gp.client, f"Task?owner={gp.org}", endpoint)
        write_task(gp.client, gp.patient, gp.org)
        deliver(fhir_server.db_url)
        [waiting] = outbox(fhir_server.db_url, "rest-hook", endpoint)
        late = Receiver(port=port)
        try:
            deliver(fhir_server.db_url, datetime.now(UTC) + timedelta(hours=1))
            got = late.at("down")
        finally:
            late.stop()
        [done] = outbox(fhir_server.db_url, "rest-hook", endpoint)

        assert ("pending", 1) == (waiting.status, waiting.attempts)
        assert "ConnectError" in (waiting.last_error or "")
        assert 1 == len(got)
        assert ("delivered", 2) == (done.status, done.attempts)


def subscription(sub_id: str, criteria: str, **elements: Any) -> dict[str, Any]:
    """An administrator's rest-hook Subscription (no owner tag: it sees everything)."""
    return {"resourceType": "Subscription", "id": sub_id, "status": "requested", "reason": "test",
            "criteria": criteria, "channel": {"type": "rest-hook", "endpoint": "https://partner.example/hook"},
            **elements}


class TestQueueing:
    """What the resource listener queues, inside the writing transaction (no HTTP)."""

    @staticmethod
    def rest_hooks(db: Database) -> list[OutboxItem]:
        return db.run(lambda s: list(s.exec(select(OutboxItem).where(OutboxItem.channel == "rest-hook")
                                            .order_by(col(OutboxItem.id)))))

    def test_every_matching_version_queues_one_notification_with_the_next_event_number(self, db: Database) -> None:
        """Two matching writes of a Task give two rows, numbered 1 and 2, keyed by resource version."""
        engine = build_engine(db)
        engine.ingest(subscription("s1", "Task?status=requested"), now=NOW)
        engine.ingest({**TASK, "id": "t1"}, now=NOW)
        engine.ingest({**TASK, "id": "t1", "description": "changed"}, now=NOW)

        assert [("rest-hook/s1/Task/t1/1", 1), ("rest-hook/s1/Task/t1/2", 2)] == [
            (item.idempotency_key, item.payload["event"]) for item in self.rest_hooks(db)]

    def test_numbering_goes_on_across_resources_and_a_rolled_back_event_keeps_no_number(self, db: Database) -> None:
        """Events of one Subscription count up over every resource; a write that rolls back gives its number back."""
        engine = build_engine(db)
        engine.ingest(subscription("s1", "Task"), now=NOW)
        engine.ingest({**TASK, "id": "t1"}, now=NOW)

        def fail(session: Session) -> None:
            engine.ingest_in(session, {**TASK, "id": "t-lost"}, now=NOW)
            raise RuntimeError("the request fails after the write")

        with pytest.raises(RuntimeError):
            db.run(fail)
        engine.ingest({**TASK, "id": "t2"}, now=NOW)

        assert [("Task/t1", 1), ("Task/t2", 2)] == [
            (item.payload["resource"], item.payload["event"]) for item in self.rest_hooks(db)]

    def two_writers_at_once(self, db: Database, *earlier: str) -> tuple[bool, list[tuple[str, int]]]:
        """Tasks ``earlier`` written one by one, then t1 in an open transaction while another thread writes t2:
        whether t2's writer waited for t1's commit, and (resource, event number) of every notification."""
        if not db.is_postgresql:
            pytest.skip("SQLite's write transaction excludes other writers")
        engine = build_engine(db)
        engine.ingest(subscription("s1", "Task"), now=NOW)
        for task_id in earlier:
            engine.ingest({**TASK, "id": task_id}, now=NOW)
        second = threading.Thread(target=lambda: engine.ingest({**TASK, "id": "t2"}, now=NOW))
        with db.transaction() as session:
            engine.ingest_in(session, {**TASK, "id": "t1"}, now=NOW)
            second.start()
            second.join(timeout=1.0)
            waited = second.is_alive()
        second.join(timeout=30)
        return waited, sorted((item.payload["resource"], item.payload["event"]) for item in self.rest_hooks(db))

    def test_writers_at_the_same_time_get_consecutive_event_numbers(self, db: Database) -> None:
        """PostgreSQL: a second transaction that writes a matching Task while the first is still open waits for
        it, then takes the next number (counting the outbox gave both of them the same one)."""
        assert (True, [("Task/t0", 1), ("Task/t1", 2), ("Task/t2", 3)]) == self.two_writers_at_once(db, "t0")

    def test_writers_of_the_first_event_at_the_same_time_get_numbers_one_and_two(self, db: Database) -> None:
        """PostgreSQL: no event counted yet, two transactions at once: the second waits for the first's counter
        and takes 2 (no conflict, no retry)."""
        assert (True, [("Task/t1", 1), ("Task/t2", 2)]) == self.two_writers_at_once(db)

    def test_installing_twice_queues_each_notification_once(self, db: Database) -> None:
        """Wiring the same database into two engines does not double the listener."""
        build_engine(db)
        engine = build_engine(db)
        engine.ingest(subscription("s1", "Task"), now=NOW)
        engine.ingest(TASK, now=NOW)

        assert 1 == len(self.rest_hooks(db))

    def test_a_subscription_past_its_end_and_a_deletion_queue_nothing(self, db: Database) -> None:
        """Subscription.end in the past silences it; deleting a matching resource notifies nobody."""
        engine = build_engine(db)
        engine.ingest(subscription("ended", "Task", end="2026-01-01T00:00:00Z"), now=NOW)
        engine.ingest(TASK, now=NOW)
        engine.ingest(subscription("live", "Consent"), now=NOW)
        consent = {"resourceType": "Consent", "id": "k1", "status": "active", "patient": {"reference": "Patient/p1"}}
        engine.ingest(consent, now=NOW)
        db.run(lambda s: put_resource(s, consent, NOW, method="DELETE", deleted=True))

        assert ["rest-hook/live/Consent/k1/1"] == [item.idempotency_key for item in self.rest_hooks(db)]

    def test_criteria_with_a_leading_slash_or_spaces_fire_as_they_were_accepted(self, db: Database) -> None:
        engine = build_engine(db)
        engine.ingest(subscription("s1", " /Task?status=requested "), now=NOW)
        engine.ingest(TASK, now=NOW)

        assert ["rest-hook/s1/Task/t1/1"] == [item.idempotency_key for item in self.rest_hooks(db)]

    def test_a_subscription_rolled_back_with_its_savepoint_notifies_nobody_later_in_the_transaction(
            self, db: Database) -> None:
        """As a failed batch entry: the Subscription it wrote is gone, and so is what was known of it."""
        engine = build_engine(db)
        engine.ingest(subscription("kept", "Consent"), now=NOW)

        def work(session: Session) -> None:
            savepoint = session.begin_nested()
            engine.ingest_in(session, subscription("gone", "Task"), now=NOW)
            engine.ingest_in(session, {**TASK, "id": "t0"}, now=NOW)  # fills what is known of active ones
            savepoint.rollback()
            engine.ingest_in(session, TASK, now=NOW)

        db.run(work)

        assert [] == self.rest_hooks(db)

    def test_a_requested_subscription_is_stored_active_as_its_second_version(self, db: Database) -> None:
        """The server's write of status active is a version of its own, as on HAPI FHIR."""
        engine = build_engine(db)
        stored = engine.ingest(subscription("s1", "Task"), now=NOW).resource

        assert ("active", 2) == (stored.content["status"], stored.version_id)


class TestHTTPAnswers:
    """How a receiver's answer maps onto delivered, retried or dead-lettered."""

    @staticmethod
    def send(answer: httpx.Response | Exception) -> DeliveryError | None:
        def handler(request: httpx.Request) -> httpx.Response:
            if isinstance(answer, Exception):
                raise answer
            return answer

        try:
            HTTPSender(transport=httpx.MockTransport(handler)).post("https://partner.example/hook", NOW,
                                                                   headers={"Idempotency-Key": "k"})
        except DeliveryError as exc:
            return exc
        return None

    @pytest.mark.parametrize("status", [200, 202, 204])
    def test_a_2xx_answer_is_delivered(self, status: int) -> None:
        """Any 2xx is success."""
        assert None is self.send(httpx.Response(status))

    @pytest.mark.parametrize(("answer", "expected_wait"), [
        (httpx.Response(429, headers={"Retry-After": "120"}), timedelta(seconds=120)),
        (httpx.Response(503, headers={"Retry-After": format_datetime(NOW + timedelta(minutes=5), usegmt=True)}),
         timedelta(minutes=5)),
        (httpx.Response(500), None),
        (httpx.Response(408), None),
        (httpx.ConnectError("connection refused"), None),
        (httpx.ReadTimeout("too slow"), None),
    ], ids=["429-seconds", "503-date", "500", "408", "refused", "timeout"])
    def test_a_temporary_failure_is_retried_when_the_receiver_asks(self, answer: Any,
                                                                    expected_wait: timedelta | None) -> None:
        """Throttling, server errors and network failures retry, honouring Retry-After."""
        error = self.send(answer)

        assert error is not None
        assert (False, expected_wait) == (error.permanent, error.retry_after)

    @pytest.mark.parametrize("status", [301, 400, 401, 404, 410, 422])
    def test_any_other_answer_is_permanent(self, status: int) -> None:
        """Redirects and client errors other than 408/425/429 dead-letter at once."""
        error = self.send(httpx.Response(status, headers={"Location": "https://elsewhere.example/"}))

        assert error is not None
        assert error.permanent
        assert f"answered {status}" in str(error)

    @pytest.mark.parametrize(("value", "expected"), [
        ("0", timedelta(0)), ("86401", timedelta(days=1)), ("soon", None), (None, None),
        (format_datetime(NOW - timedelta(minutes=1), usegmt=True), timedelta(0)),
    ])
    def test_retry_after_is_read_as_seconds_or_a_date_and_capped_at_a_day(self, value: str | None,
                                                                          expected: timedelta | None) -> None:
        """Retry-After in seconds or as an HTTP date; a past date means now; nonsense means no wish."""
        assert expected == retry_after(value, NOW)


TASK = {
    "resourceType": "Task", "id": "t1", "status": "requested", "intent": "order",
    "for": {"reference": "Patient/p1"}, "owner": {"reference": "Organization/ooh"},
    "requester": {"reference": "Organization/gp"}, "basedOn": [{"reference": "CarePlan/c1"}],
    "focus": {"reference": "Consent/k1"},
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "308292007"}]},
}


class TestCriteria:
    """Matching one resource against a Subscription's criteria string."""

    @pytest.mark.parametrize(("criteria", "expected"), [
        ("Task", True),
        ("Task?owner=Organization/ooh", True),
        ("Task?owner=ooh", True),
        ("Task?owner=https://zorgpad.example/fhir/Organization/ooh", True),
        ("Task?owner=Organization/gp", False),
        ("Task?requester=Organization/gp&owner=Organization/ooh", True),
        ("Task?requester=Organization/gp&owner=Organization/gp", False),
        ("Task?patient=Patient/p1", True),
        ("Task?subject=Patient/p1", True),
        ("Task?for=Patient/p2", False),
        ("Task?status=completed,requested", True),
        ("Task?status=completed", False),
        ("Task?status:not=completed", True),
        ("Task?status:not=requested", False),
        ("Task?code=http://snomed.info/sct|308292007", True),
        ("Task?code=308292007", True),
        ("Task?code=http://snomed.info/sct|", True),
        ("Task?code=|308292007", False),
        ("Task?code=http://loinc.org|308292007", False),
        ("Task?_id=t1", True),
        ("Task?_id=t2", False),
        ("Task?based-on=CarePlan/c1", True),
        ("Task?focus=Consent/k2", False),
        ("Consent", False),
    ])
    def test_a_task_matches_criteria_by_type_and_every_parameter(self, criteria: str, expected: bool) -> None:
        """Type, references (relative, bare id or absolute), tokens with systems, :not and alternatives."""
        assert expected == Criteria.parse(criteria).matches(TASK)

    @pytest.mark.parametrize(("criteria", "expected"), [
        ("Task?authored-on=2026", "parameter 'authored-on' cannot be used"),
        ("Task?owner:missing=true", "modifier ':missing' of 'owner' is not supported"),
        ("Task?owner=", "parameter 'owner' has an empty value"),
        ("https://elsewhere.example/fhir/Task?owner=x", "criteria are relative to the server"),
        ("PlanDefinition", "criteria must start with a resource type this server stores"),
    ])
    def test_criteria_the_matcher_cannot_honour_are_refused(self, criteria: str, expected: str) -> None:
        """A criteria string that would match more than it says is refused rather than approximated."""
        with pytest.raises(ValueError, match=re.escape(expected)):
            Criteria.parse(criteria)
