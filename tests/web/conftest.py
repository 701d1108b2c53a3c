"""A real `zorgpad serve` process over the seeded demo region, shared by the dashboard tests.

The demo region is seeded into a fresh database (on the dialect chosen with ``--db``) up to the real
current time, because the server runs on the system clock; one dead-lettered delivery and one patient with
markup in her name are added. ``dashboard.tokens`` holds the demo's tokens (``"admin"`` or
``Organization/id``); ``dashboard.client(token)`` is an httpx client signed in with that token.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session
from zorgpad.engine.app import build_engine
from zorgpad.engine.demo import seed
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import OutboxItem

REPO = Path(__file__).resolve().parents[2]
ZORGPAD = REPO / ".venv" / "bin" / "zorgpad"
ARTIFACTS = REPO / "test-artifacts"
#: A patient whose name is markup: every page must show it as text.
MARKUP_NAME = '<script>alert("x")</script>'


@dataclass
class Dashboard:
    """A running server with the demo region."""

    base_url: str
    db_url: str
    process: subprocess.Popen[bytes]
    log: Path
    tokens: dict[str, str]
    dead_letter: int
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None) -> httpx.Client:
        """An httpx client; signed in with ``token`` unless it is None."""
        client = httpx.Client(base_url=self.base_url, timeout=30, follow_redirects=False)
        self.clients.append(client)
        if token is not None:
            answer = client.post("/login", data={"token": token})
            assert answer.status_code == 303, answer.text
        return client

    def database(self) -> Database:
        """The server's database, for checks behind its back (close with ``dispose()``)."""
        return Database(self.db_url)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seed(db_url: str) -> tuple[dict[str, str], int]:
    db = Database(db_url)
    try:
        engine = build_engine(db)
        now = datetime.now(UTC)
        region = seed(engine, now)
        engine.ingest({"resourceType": "Patient", "id": "markup", "name": [{"text": MARKUP_NAME}],
                       "generalPractitioner": [{"reference": "Organization/gp-heerlen"}]}, now=now)
        engine.enrol("palliative-acp", "Patient/markup", now=now)

        def dead(session: Session) -> int:
            item = OutboxItem(idempotency_key="test-dead-letter", channel="rest-hook",
                              target="https://partner.invalid/hook", payload={"patient": "Patient/demo-smeets"},
                              status="dead", attempts=8, created_at=now, next_attempt_at=now,
                              last_error="connection refused <b>", enrolment_id=engine.enrolments_of(
                                  "Patient/demo-smeets")[0].id, step_id="conversation")
            session.add(item)
            session.flush()
            assert item.id is not None
            return item.id

        return region.tokens, db.run(dead)
    finally:
        db.dispose()


@pytest.fixture(scope="session")
def dashboard(database_factory: Callable[[], str]) -> Iterator[Dashboard]:
    """The dashboard server over the seeded demo region (one per test session)."""
    db_url = database_factory()
    tokens, dead_letter = _seed(db_url)
    port = _free_port()
    log = Path(tempfile.mkstemp(prefix="zorgpad-dashboard-", suffix=".log")[1])
    env = {k: v for k, v in os.environ.items() if k != "ZORGPAD_LANGUAGE"}
    with log.open("wb") as out:
        process = subprocess.Popen([str(ZORGPAD), "serve", "--port", str(port), "--db", db_url, "--tick-interval",
                                    "0"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"zorgpad serve exited: {log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                process.kill()
                raise
        time.sleep(0.1)
    server = Dashboard(base, db_url, process, log, tokens, dead_letter)
    yield server
    for client in server.clients:
        client.close()
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.unlink(missing_ok=True)
