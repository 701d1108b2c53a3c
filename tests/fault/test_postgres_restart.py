"""PostgreSQL restarted under load: requests fail cleanly (503 with an OperationOutcome) and recover.

The test runs its own PostgreSQL cluster (initdb into a temporary folder, on a free port), never the
machine's: other tests and other people use that one. A real `zorgpad serve` runs on it with the embedded
runner on, one thread keeps a steady load of creates, reads and searches going, and the cluster is stopped,
left down for a while and started again: once cleanly (``-m fast``), once as a crash (``-m immediate``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from faultcounts import count
from sqlalchemy import create_engine, text
from zorgpad.engine.store.db import Database

from tests.fhir.conftest import FHIR_JSON, FHIRServer, free_port, start_server, stop_server

pytestmark = pytest.mark.slow

BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
MODES = ("fast", "immediate")  # a clean shutdown, then a crash (recovery from the WAL on start)
OUTAGE = 2.0  # seconds the database stays down
BOUND = 10.0  # seconds any request may take, outage or not: longer is a hang
RECOVERY = 30.0  # seconds the server gets to answer again once the database is back
WARM = 60  # successful requests before the first outage and after each recovery
MRN = "https://example.org/mrn"


@dataclass
class PrivatePostgres:
    """A throw-away PostgreSQL cluster in a temporary folder, owned by the ``postgres`` user when we are root."""

    folder: Path
    bin: Path
    port: int

    @property
    def url(self) -> str:
        """The URL of the ``zorgpad`` database on it."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/zorgpad"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        """initdb, trusting local connections (the cluster lives only for this test)."""
        self._run("initdb", "-D", str(self.folder / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")

    def start(self) -> None:
        """Start the cluster and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "postgres.log"), "-o", options,
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster: ``fast`` disconnects every client and shuts down cleanly."""
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", mode, "-w", "-t", "60", "stop")

    def log(self) -> str:
        """PostgreSQL's own log."""
        path = self.folder / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def private_postgres(db_option: str) -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster with an empty, migrated ``zorgpad`` database; always stopped and removed."""
    if not db_option.startswith(("postgresql", "postgres")):
        pytest.skip("PostgreSQL restart: runs with --db postgresql://… (make test's second pass), not on SQLite")
    if not BINARIES:
        pytest.skip("PostgreSQL restart: no PostgreSQL server binaries under /usr/lib/postgresql")
    folder = Path(tempfile.mkdtemp(prefix="zorgpad-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    cluster = PrivatePostgres(folder, BINARIES[-1].parent, free_port())
    try:
        cluster.init()
        cluster.start()
        admin = create_engine(cluster.url.replace("postgresql://", "postgresql+psycopg://").replace(
            "/zorgpad", "/postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text('CREATE DATABASE "zorgpad"'))
        admin.dispose()
        database = Database(cluster.url)
        database.upgrade()
        database.dispose()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            cluster.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Answer:
    """One request of the load and what came back."""

    kind: str  # create, read or search
    started: float
    ended: float
    status: int | None  # None: no HTTP answer at all (a timeout or a dropped connection)
    content_type: str = ""
    body: Any = None
    error: str = ""


class Load:
    """A thread that sends creates, reads and searches one after another until stopped."""

    def __init__(self, server: FHIRServer) -> None:
        self.client = httpx.Client(base_url=server.fhir, timeout=BOUND,
                                   headers={"Accept": FHIR_JSON, "Content-Type": FHIR_JSON,
                                            "Authorization": f"Bearer {server.admin}"})
        self.answers: list[Answer] = []
        self.created: dict[str, str] = {}  # id -> identifier value, for every create answered 201
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * BOUND)
        self.client.close()

    def _send(self, kind: str, method: str, url: str, **kwargs: Any) -> Answer:
        started = time.monotonic()
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            answer = Answer(kind, started, time.monotonic(), None, error=f"{type(exc).__name__}: {exc}")
        else:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            answer = Answer(kind, started, time.monotonic(), response.status_code,
                            response.headers.get("content-type", ""), body)
        self.answers.append(answer)
        return answer

    def _run(self) -> None:
        while not self._stop.is_set():
            value = uuid.uuid4().hex
            created = self._send("create", "POST", "/Patient", json={
                "resourceType": "Patient", "identifier": [{"system": MRN, "value": value}],
                "name": [{"family": "Herstart"}]})
            if created.status == 201 and isinstance(created.body, dict):
                self.created[str(created.body["id"])] = value
            if self.created:
                last = next(reversed(self.created))
                self._send("read", "GET", f"/Patient/{last}")
                self._send("search", "GET", "/Patient", params={"identifier": f"{MRN}|{self.created[last]}"})

    def successes(self, after: float = 0.0) -> list[Answer]:
        """The answered-with-2xx requests that started at or after ``after``."""
        return [a for a in list(self.answers) if a.status is not None and a.status < 300 and a.started >= after]


def _wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.05)  # polling a real server, not simulating time


def _is_clean_503(answer: Answer) -> bool:
    body = answer.body if isinstance(answer.body, dict) else {}
    return (answer.status == 503 and answer.content_type.startswith(FHIR_JSON)
            and body.get("resourceType") == "OperationOutcome"
            and [i.get("code") for i in body.get("issue", [])] == ["transient"])


class TestPostgresRestartedUnderLoad:
    """The database goes away and comes back while requests keep coming."""

    def test_requests_fail_with_503_outcomes_during_each_outage_and_succeed_again_after_it(
            self, private_postgres: PrivatePostgres) -> None:
        """A clean stop, then a crash (``-m immediate``): every failure is a 503 OperationOutcome, none hangs,
        the server recovers by itself each time and every create answered 201 can be read afterwards."""
        server = start_server(private_postgres.url, extra_args=("--tick-interval", "0.5"))
        outages: list[tuple[str, float, float, float]] = []  # mode, down, up, first success after up
        try:
            with Load(server) as load:
                _wait_for(lambda: len(load.successes()) >= WARM, RECOVERY, f"{WARM} successful requests")
                for mode in MODES:
                    down = time.monotonic()
                    private_postgres.stop(mode)
                    time.sleep(OUTAGE)  # the outage: the load keeps running against a server without database
                    private_postgres.start()
                    up = time.monotonic()
                    _wait_for(lambda up=up: bool(load.successes(after=up)), RECOVERY,
                              f"successful request after the {mode} restart")
                    recovered = min(a.ended for a in load.successes(after=up))
                    outages.append((mode, down, up, recovered))
                    _wait_for(lambda recovered=recovered: len(load.successes(after=recovered)) >= WARM, RECOVERY,
                              f"{WARM} successful requests after recovery")
            answers = list(load.answers)
            created = dict(load.created)
            client = server.client()
            readback = {pid: client.get(f"/Patient/{pid}") for pid in created}
            health = httpx.get(f"{server.base_url}/healthz", timeout=BOUND)
            alive = server.process.poll() is None
        finally:
            log = server.output()  # stop_server removes the log: keep its first traceback, else its end
            output = log[log.find("Traceback"):][:6000] if "Traceback" in log else log[-3000:]
            stop_server(server)

        failed = [a for a in answers if a.status is None or a.status >= 300]
        unclean = [a for a in failed if not _is_clean_503(a)]
        # Once the first request after a restart succeeded, nothing fails until the next outage begins (a
        # request still in flight when the database goes away may fail: it ends after the outage began).
        windows = [(recovered, outages[i + 1][1] if i + 1 < len(outages) else float("inf"))
                   for i, (_, _, _, recovered) in enumerate(outages)]
        failed_after_recovery = [a for a in failed
                                 if any(start <= a.started and a.ended < end for start, end in windows)]
        slowest = max(a.ended - a.started for a in answers)
        lost = [pid for pid, response in readback.items() if response.status_code != 200
                or response.json()["identifier"] != [{"system": MRN, "value": created[pid]}]]
        count("postgres restart: faults injected", len(outages))
        count("postgres restart: requests tried", len(answers))
        count("postgres restart: requests answered 503 OperationOutcome", len(failed) - len(unclean))
        count("postgres restart: requests failed otherwise (500, hang, dropped)", len(unclean))
        count("postgres restart: creates acknowledged (201)", len(created))
        count("postgres restart: lost", len(lost))
        for mode, down, up, recovered in outages:
            count(f"postgres restart: {mode} outage (ms)", round((up - down) * 1000))
            count(f"postgres restart: {mode} recovery after the database was back (ms)",
                  round(max(0.0, recovered - up) * 1000))
        details = [(a.kind, a.status, a.content_type, a.body if a.status else a.error) for a in unclean[:5]]

        assert [] == unclean, (details, output)
        assert len(failed) >= len(MODES), "a request failed in each outage, or the outage was not noticed"
        assert [] == failed_after_recovery, (outages, failed_after_recovery[:5])
        assert slowest < BOUND
        assert [] == lost
        assert alive, server.output()[-3000:]
        assert 200 == health.status_code, health.text
        assert all(recovered - up < RECOVERY for _, _, up, recovered in outages)
