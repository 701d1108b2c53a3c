"""Delivery to a real, flaky partner over loopback HTTP: every item arrives, none twice, dead letters show.

The partner is a :class:`Partner` on a loopback port that answers by a script (503, 429 with
Retry-After, a hang past the client's timeout, 200) and applies each request's effect once per
``Idempotency-Key``, as a receiver should. Time is simulated: each round delivers at the earliest moment
something is due, through the engine's real ``notify`` channel (notified pull over httpx).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn
from sqlmodel import Session, col, select
from zorgpad.engine._assign import COORDINATOR_ENV
from zorgpad.engine._roles import COORDINATOR, ROLE_SYSTEM
from zorgpad.engine.app import build_engine, create_app
from zorgpad.engine.outbox import CircuitBreaker, Outbox, RetryPolicy
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.resources import put_resource
from zorgpad.engine.store.tables import AuditEntry, OutboxItem
from zorgpad.engine.store.tokens import create_token
from zorgpad.fhir.handovers import NOTIFIED_PULL
from zorgpad.fhir.subscriptions import install
from zorgpad.fhir.transports import HTTPSender

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
#: The client's timeout: a hanging partner costs this much real time per attempt.
TIMEOUT = 0.25

Answer = tuple[int, dict[str, str]] | None  # None: hang until the client gives up, apply nothing


class Partner:
    """A partner's notification endpoint; ``script(key, attempt)`` decides each answer."""

    def __init__(self) -> None:
        self.script: Callable[[str, int], Answer] = lambda key, attempt: (200, {})
        self.attempts: Counter[str] = Counter()  # requests per idempotency key
        self.accepted: Counter[str] = Counter()  # 2xx answers per idempotency key (repeats included)
        self.applied: Counter[str] = Counter()  # effects per idempotency key (after dropping repeats)
        self.paths: Counter[str] = Counter()
        self.release = threading.Event()
        self.lock = threading.Lock()
        partner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                key = self.headers.get("Idempotency-Key", "")
                with partner.lock:
                    partner.attempts[key] += 1
                    partner.paths[self.path.split("/")[1]] += 1
                    answer = partner.script(key, partner.attempts[key])
                if answer is None:
                    partner.release.wait(10)  # the client has long given up; the test's end releases us
                    return
                status, headers = answer
                if 200 <= status < 300:
                    with partner.lock:
                        partner.accepted[key] += 1
                        if key not in partner.applied:  # a receiver drops what it has seen
                            partner.applied[key] = 1
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, folder: str) -> str:
        """The endpoint address of one organisation."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/{folder}"

    def stop(self) -> None:
        """Release hanging requests and shut down."""
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def partner() -> Iterator[Partner]:
    """A flaky partner on loopback."""
    receiver = Partner()
    try:
        yield receiver
    finally:
        receiver.stop()


def _seed(db: Database, partner: Partner, org: str, count: int) -> list[str]:
    """``count`` handover notices to ``Organization/{org}``, whose endpoint is on the partner."""
    keys = [f"handover/{org}/{i}" for i in range(count)]

    def work(session: Session) -> None:
        put_resource(session, {"resourceType": "Endpoint", "id": f"ep-{org}", "status": "active",
                               "connectionType": NOTIFIED_PULL, "payloadType": [{"text": "none"}],
                               "managingOrganization": {"reference": f"Organization/{org}"},
                               "address": partner.url(org)}, T0)
        for i, key in enumerate(keys):
            put_resource(session, {"resourceType": "Communication", "id": f"c-{org}-{i}", "status": "in-progress"}, T0)
            session.add(OutboxItem(idempotency_key=key, channel="notify", target=f"Organization/{org}",
                                   created_at=T0, next_attempt_at=T0,
                                   payload={"handover": True, "task": f"Task/t-{org}-{i}",
                                            "communication": f"Communication/c-{org}-{i}"}))

    db.run(work)
    return keys


def _outbox(db: Database, *, policy: RetryPolicy | None = None, circuit: CircuitBreaker | None = None) -> Outbox:
    engine = build_engine(db)
    install(engine, sender=HTTPSender(timeout=TIMEOUT, connect_timeout=TIMEOUT))
    return Outbox(db, engine.outbox.transports, policy=policy, circuit=circuit)


def _statuses(db: Database) -> Counter[str]:
    return Counter(db.run(lambda s: list(s.exec(select(OutboxItem.status)))))


def _settle(db: Database, outbox: Outbox, start: datetime, *, on_time: Callable[[datetime], None] | None = None,
            rounds: int = 200) -> datetime:
    """Deliver round after round, each at the earliest moment something can go, until nothing is pending."""
    now = start
    for _ in range(rounds):
        if on_time is not None:
            on_time(now)
        outbox.deliver(now)
        due = db.run(lambda s: s.exec(select(OutboxItem.next_attempt_at).where(OutboxItem.status == "pending")
                                      .order_by(col(OutboxItem.next_attempt_at))).first())
        if due is None:
            return now
        blocked = [outbox.circuit.open_until[t] for t in outbox.circuit.open_targets(now)]
        now = max(due, min(blocked)) if due <= now and blocked else max(due, now + timedelta(seconds=1))
    raise AssertionError(f"still pending after {rounds} rounds: {_statuses(db)}")


class TestFlakyPartner:
    """A partner that fails, times out and throttles, then recovers."""

    def test_every_item_arrives_once_through_errors_timeouts_and_throttling(
            self, db: Database, partner: Partner) -> None:
        """Each item meets 503, then 429 with Retry-After, then (some) a timeout, then 200: all arrive once."""
        keys = _seed(db, partner, "flaky", 8)
        hangs = set(keys[::3])

        def script(key: str, attempt: int) -> Answer:
            if attempt == 1:
                return 503, {}
            if attempt == 2:
                return 429, {"Retry-After": "900"}
            if attempt == 3 and key in hangs:
                return None
            return 200, {}

        partner.script = script
        _settle(db, _outbox(db), T0)

        assert Counter(dict.fromkeys(keys, 1)) == partner.applied
        assert Counter(dict.fromkeys(keys, 1)) == partner.accepted
        assert {k: (4 if k in hangs else 3) for k in keys} == dict(partner.attempts)
        assert Counter({"delivered": 8}) == _statuses(db)

    def test_a_429_retry_after_sets_the_earliest_next_attempt(self, db: Database, partner: Partner) -> None:
        """Retry-After: 900 on a 429 puts the next attempt at least 15 minutes out, beyond the 30 s backoff."""
        _seed(db, partner, "busy", 1)
        partner.script = lambda key, attempt: (429, {"Retry-After": "900"})
        _outbox(db).deliver(T0)

        item = db.run(lambda s: s.exec(select(OutboxItem)).one())

        assert ("pending", 1) == (item.status, item.attempts)
        assert item.next_attempt_at >= T0 + timedelta(seconds=900)


class TestDeadLetters:
    """After the limit an item is dead, listed over the operators' API, and can be retried."""

    @pytest.fixture
    def client(self, db: Database) -> Iterator[httpx.Client]:
        """The Zorgpad app served by uvicorn on a loopback port, in a thread."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(db, tick_interval=None), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.05)  # bounded polling of a real server's start-up
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                yield client
        finally:
            server.should_exit = True
            thread.join(timeout=10)

    def _token(self, db: Database, **kwargs: Any) -> dict[str, str]:
        secret = db.run(lambda s: create_token(s, T0, **kwargs))
        return {"Authorization": f"Bearer {secret}"}

    def test_items_are_dead_lettered_after_the_limit_then_listed_and_retried_by_an_admin(
            self, db: Database, partner: Partner, client: httpx.Client) -> None:
        """With max_attempts=3 a dead partner gets 3 tries per item; a retry over the API then delivers it."""
        keys = _seed(db, partner, "down", 3)
        partner.script = lambda key, attempt: (503, {})
        outbox = _outbox(db, policy=RetryPolicy(max_attempts=3))
        _settle(db, outbox, T0)
        admin = self._token(db, admin=True)

        listed = client.get("/api/outbox", params={"status": "dead"}, headers=admin)

        assert 200 == listed.status_code, listed.text
        assert sorted(keys) == sorted(i["idempotencyKey"] for i in listed.json()["items"])
        assert {3} == {i["attempts"] for i in listed.json()["items"]}
        assert Counter(dict.fromkeys(keys, 3)) == partner.attempts
        assert Counter() == partner.applied

        partner.script = lambda key, attempt: (200, {})
        first = listed.json()["items"][0]
        retried = client.post(f"/api/outbox/{first['id']}/retry", headers=admin)

        assert 200 == retried.status_code, retried.text
        assert ("pending", 0) == (retried.json()["status"], retried.json()["attempts"])

        outbox.deliver(datetime.now(UTC) + timedelta(seconds=1))

        assert Counter({first["idempotencyKey"]: 1}) == partner.applied
        assert Counter({"dead": 2, "delivered": 1}) == _statuses(db)
        audits = db.run(lambda s: [(a.what, a.entity) for a in s.exec(select(AuditEntry).order_by(col(AuditEntry.id)))])
        assert 3 == sum(1 for what, _ in audits if what == "dead-letter")
        assert ("outbox-retry", first["idempotencyKey"]) in audits
        assert ("outbox", None) in audits

    def test_retrying_an_item_that_is_not_dead_is_a_conflict(self, db: Database, partner: Partner,
                                                             client: httpx.Client) -> None:
        """Only dead letters can be put back: a pending item answers 409, an unknown one 404."""
        _seed(db, partner, "fine", 1)
        admin = self._token(db, admin=True)
        item_id = db.run(lambda s: s.exec(select(OutboxItem.id)).one())

        assert 409 == client.post(f"/api/outbox/{item_id}/retry", headers=admin).status_code
        assert 404 == client.post("/api/outbox/999999/retry", headers=admin).status_code

    def test_only_admins_and_coordinators_may_use_the_outbox_api(
            self, db: Database, client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
        """No token is 401, an ordinary organisation 403, the coordinator by env or by CareTeam role 200."""
        monkeypatch.delenv(COORDINATOR_ENV, raising=False)
        gp = self._token(db, organisation="Organization/gp")
        network = self._token(db, organisation="Organization/network")
        team_coordinator = self._token(db, organisation="Organization/team-coordinator")
        db.run(lambda s: put_resource(s, {
            "resourceType": "CareTeam", "id": "team", "status": "active", "subject": {"reference": "Patient/p"},
            "participant": [{"role": [{"coding": [{"system": ROLE_SYSTEM, "code": COORDINATOR.code}]}],
                             "member": {"reference": "Organization/team-coordinator"}},
                            {"role": [{"coding": [{"system": ROLE_SYSTEM, "code": "gp"}]}],
                             "member": {"reference": "Organization/gp"}}]}, T0))

        assert 401 == client.get("/api/outbox").status_code
        assert 403 == client.get("/api/outbox", headers=gp).status_code
        assert 403 == client.get("/api/outbox", headers=network).status_code
        assert 200 == client.get("/api/outbox", headers=team_coordinator).status_code

        monkeypatch.setenv(COORDINATOR_ENV, "Organization/network")

        assert 200 == client.get("/api/outbox", headers=network).status_code
        assert 400 == client.get("/api/outbox", params={"status": "lost"}, headers=network).status_code


class TestCircuitBreaker:
    """One dead partner does not slow the others."""

    def test_a_hanging_partner_opens_its_circuit_while_the_other_partner_gets_everything(
            self, db: Database, partner: Partner) -> None:
        """After 3 timeouts the dead partner's other items are skipped unsent; the healthy one gets all 10."""
        dead = _seed(db, partner, "dead", 10)
        healthy = _seed(db, partner, "healthy", 10)
        partner.script = lambda key, attempt: None if "/dead/" in key else (200, {})
        outbox = _outbox(db, circuit=CircuitBreaker(threshold=3, cool_off=timedelta(minutes=5)))

        report = outbox.deliver(T0)

        assert Counter(dict.fromkeys(healthy, 1)) == partner.applied
        assert 3 == partner.paths["dead"]
        assert (10, 3) == (report.delivered, report.retried)
        assert ["Organization/dead"] == outbox.circuit.open_targets(T0)
        untouched = db.run(lambda s: len(s.exec(select(OutboxItem).where(
            OutboxItem.target == "Organization/dead", OutboxItem.attempts == 0,
            col(OutboxItem.lease_until).is_(None))).all()))
        assert 7 == untouched
        assert set(dead) >= set(partner.attempts) - set(healthy)

    def test_after_the_cool_off_one_failed_probe_opens_the_circuit_again_and_recovery_delivers_all(
            self, db: Database, partner: Partner) -> None:
        """Half-open: one failure re-opens at once; once the partner answers, every item is delivered once."""
        keys = _seed(db, partner, "wobbly", 6)
        partner.script = lambda key, attempt: (503, {})
        outbox = _outbox(db, circuit=CircuitBreaker(threshold=2, cool_off=timedelta(minutes=10)))
        outbox.deliver(T0)

        assert 2 == partner.paths["wobbly"]

        outbox.deliver(T0 + timedelta(minutes=5))  # still open: nothing is sent

        assert 2 == partner.paths["wobbly"]

        outbox.deliver(T0 + timedelta(minutes=11))  # half-open: one probe fails, the circuit opens again

        assert 3 == partner.paths["wobbly"]
        assert ["Organization/wobbly"] == outbox.circuit.open_targets(T0 + timedelta(minutes=11))

        partner.script = lambda key, attempt: (200, {})
        _settle(db, outbox, T0 + timedelta(minutes=22))

        assert Counter(dict.fromkeys(keys, 1)) == partner.applied
        assert [] == outbox.circuit.open_targets(T0 + timedelta(minutes=22))


    def test_an_open_circuit_holds_the_partners_items_in_every_process(
            self, db: Database, partner: Partner) -> None:
        """The circuit opens in one process (a Prefect run); the next process, whose circuits all start
        closed, sends nothing to the dead partner until the cool-off ends, and the healthy one still gets all."""
        _seed(db, partner, "dead", 10)
        partner.script = lambda key, attempt: (503, {}) if "/dead/" in key else (200, {})
        first = _outbox(db, circuit=CircuitBreaker(threshold=3, cool_off=timedelta(minutes=5)))
        first.deliver(T0)
        healthy = _seed(db, partner, "healthy", 4)  # queued after the circuit opened
        held = db.run(lambda s: sorted({i.next_attempt_at for i in s.exec(select(OutboxItem).where(
            OutboxItem.target == "Organization/dead"))}))

        second = _outbox(db, circuit=CircuitBreaker(threshold=3, cool_off=timedelta(minutes=5)))
        report = second.deliver(T0 + timedelta(minutes=2))

        assert 3 == partner.paths["dead"]
        assert [] == second.circuit.open_targets(T0 + timedelta(minutes=2))
        assert {T0 + timedelta(minutes=5)} == {t.replace(tzinfo=UTC) if t.tzinfo is None else t for t in held}
        assert (4, 0) == (report.delivered, report.retried)
        assert Counter(dict.fromkeys(healthy, 1)) == partner.applied

        second.deliver(T0 + timedelta(minutes=6))  # the cool-off is over: the second process probes again

        assert partner.paths["dead"] > 3


class TestPartnerDownForAnHour:
    """A partner that is down for an hour gets everything once it is back."""

    def test_every_item_queued_during_an_hour_long_outage_arrives_once_after_it(
            self, db: Database, partner: Partner) -> None:
        """503 for the first simulated hour, then 200: with the default policy nothing is dead, all arrive once."""
        keys = _seed(db, partner, "outage", 20)
        back = T0 + timedelta(hours=1)
        state = {"up": False}
        partner.script = lambda key, attempt: (200, {}) if state["up"] else (503, {})

        def clock(now: datetime) -> None:
            state["up"] = now >= back

        _settle(db, _outbox(db), T0, on_time=clock)
        delivered_at = db.run(lambda s: list(s.exec(select(OutboxItem.delivered_at))))

        assert Counter(dict.fromkeys(keys, 1)) == partner.applied
        assert Counter(dict.fromkeys(keys, 1)) == partner.accepted
        assert Counter({"delivered": 20}) == _statuses(db)
        assert all(moment is not None and moment >= back for moment in delivered_at)
