"""``zorgpad serve`` and ``zorgpad demo`` as real server processes: health, OpenAPI, the embedded runner that
ticks and delivers on its own, and a clean shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from example_pathway import ExampleAcp, ExampleAcpV2
from sqlalchemy import text
from zorgpad.engine import Database, Engine, Registry

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ZORGPAD = REPO / ".venv" / "bin" / "zorgpad"
EXAMPLE = "tests/example_pathway.py"
START_TIMEOUT = 60.0
POLL_INTERVAL = 0.1
T = TypeVar("T")
#: Exit statuses of a clean stop: uvicorn shuts down gracefully on SIGTERM and then re-raises the signal, so
#: the process ends "killed by SIGTERM" (shell status 143) after its lifespan shutdown has run.
CLEAN_EXIT = (0, -signal.SIGTERM)


def free_port() -> int:
    """A loopback port nobody is listening on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def eventually(check: Callable[[], T | None], what: str, timeout: float = START_TIMEOUT) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        time.sleep(POLL_INTERVAL)  # a poll interval against a real process, not simulated time


@dataclass
class Server:
    """A running ``zorgpad`` server process."""

    process: subprocess.Popen[bytes]
    base: str
    client: httpx.Client
    log: Path

    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then wait (bounded) for the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


@contextmanager
def running(tmp_path: Path, *args: str) -> Iterator[Server]:
    """Start ``zorgpad ARGS --port FREE``, wait until /healthz answers, and always end the process."""
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("ZORGPAD_DATABASE_URL", "PYTHONPATH")}
    with log.open("wb") as sink:
        process = subprocess.Popen([str(ZORGPAD), *args, "--port", str(port)], cwd=REPO, env=env,
                                   stdout=sink, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0, trust_env=False)
    server = Server(process, f"http://127.0.0.1:{port}", client, log)
    try:
        def healthy() -> httpx.Response | None:
            if process.poll() is not None:
                raise AssertionError(f"the server exited with {process.returncode}:\n{server.output()}")
            try:
                response = client.get("/healthz")
            except httpx.TransportError:
                return None
            return response if response.status_code == 200 else None

        eventually(healthy, "GET /healthz to answer 200")
        yield server
    finally:
        client.close()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


def query(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one SQL query, read through a fresh connection."""
    db = Database(db_url)
    try:
        with db.engine.connect() as connection:
            return [tuple(r) for r in connection.execute(text(sql))]
    finally:
        db.dispose()


@pytest.fixture
def overdue_url(db_url: str) -> str:
    """p1 enrolled in ExampleAcp eight days ago: the register step's due timer (7 days) is already due and its
    action waits in the outbox."""
    db = Database(db_url)
    engine = Engine(db, Registry([ExampleAcp]))
    past = datetime.now(UTC) - timedelta(days=8)
    engine.ingest({"resourceType": "Patient", "id": "p1", "generalPractitioner": [
        {"reference": "Organization/gp-1"}]}, now=past)
    engine.enrol("example-acp", "Patient/p1", now=past)
    db.dispose()
    return db_url


class TestServe:
    """``zorgpad serve`` answers health and OpenAPI requests and runs the embedded runner."""

    def test_health_reports_ok_the_dialect_and_the_runner(self, tmp_path: Path, db_url: str,
                                                          db_option: str) -> None:
        """/healthz answers {"status": "ok", "database": <dialect>, …} with the pathways and runner interval."""
        with running(tmp_path, "serve", "--db", db_url, "--tick-interval", "0.5", "--file", EXAMPLE) as server:
            body = server.client.get("/healthz").json()

        expected_dialect = "sqlite" if db_option == "sqlite" else "postgresql"
        assert ("ok", expected_dialect) == (body["status"], body["database"])
        registry = Registry.default()
        registry.add(ExampleAcp)
        registry.add(ExampleAcpV2)
        assert [p.canonical() for p in registry.latest()] == body["pathways"]
        assert 0.5 == body["runner"]["interval_s"]

    def test_openapi_is_served(self, tmp_path: Path, db_url: str) -> None:
        """/openapi.json is an OpenAPI document titled Zorgpad that describes /healthz."""
        with running(tmp_path, "serve", "--db", db_url, "--tick-interval", "0.5") as server:
            response = server.client.get("/openapi.json")

        document = response.json()
        assert (200, "Zorgpad") == (response.status_code, document["info"]["title"])
        assert document["openapi"].startswith("3.")
        assert "/healthz" in document["paths"]

    def test_the_embedded_runner_fires_due_timers_and_delivers(self, tmp_path: Path, overdue_url: str) -> None:
        """Timers due before the server started fire on their own, and the queued action is delivered."""
        with running(tmp_path, "serve", "--db", overdue_url, "--tick-interval", "0.5", "--file", EXAMPLE) as server:
            def settled() -> list[tuple[Any, ...]] | None:
                timers = query(overdue_url, "SELECT COUNT(*) FROM timer")[0][0]
                register = query(overdue_url, "SELECT business_status FROM step_run WHERE step_id = 'register'")
                outbox = query(overdue_url, "SELECT channel, status, attempts FROM outbox")
                done = timers == 0 and register == [("overdue",)] and outbox and all(
                    row[1] == "delivered" for row in outbox)
                return outbox if done else None

            outbox = eventually(settled, "the runner to fire the due timer and deliver the outbox")
            def counted() -> dict[str, Any] | None:
                # The counts go up after the round's commits: poll them too rather than race the round.
                runner: dict[str, Any] = server.client.get("/healthz").json()["runner"]
                return runner if runner["delivered"] else None

            counts = eventually(counted, "the runner's counts to include the delivery")

        assert [("action", "delivered", 1)] == outbox
        assert (1, 1, 0) == (counts["fired"], counts["delivered"], counts["failures"])

    def test_tick_interval_zero_turns_the_runner_off(self, tmp_path: Path, overdue_url: str) -> None:
        """With --tick-interval 0 health shows no runner and the due timer stays where it is."""
        with running(tmp_path, "serve", "--db", overdue_url, "--tick-interval", "0", "--file", EXAMPLE) as server:
            body = server.client.get("/healthz").json()
            timers = query(overdue_url, "SELECT COUNT(*) FROM timer")[0][0]

        assert ("runner" in body, 1) == (False, timers)

    def test_sigterm_stops_the_server_cleanly(self, tmp_path: Path, db_url: str) -> None:
        """SIGTERM ends the process promptly and cleanly (see CLEAN_EXIT), after it printed where it listens."""
        with running(tmp_path, "serve", "--db", db_url, "--tick-interval", "0.5") as server:
            status = server.stop()

        assert status in CLEAN_EXIT
        assert f"Zorgpad listening on {server.base}/" in server.output()
        assert "Traceback" not in server.output()

    @pytest.mark.parametrize(("url", "expected"), [
        ("mysql://user@127.0.0.1/zorgpad", "zorgpad: error: unsupported database 'mysql'"),
        ("sqlite:////no/such/folder/z.db", "zorgpad: error: folder /no/such/folder"),
    ])
    def test_an_unusable_database_stops_serve_with_one_line(self, url: str, expected: str) -> None:
        """serve refuses an unusable --db before listening: exit 1, one ``zorgpad: error:`` line."""
        env = {k: v for k, v in os.environ.items() if k != "ZORGPAD_DATABASE_URL"}

        result = subprocess.run([str(ZORGPAD), "serve", "--port", str(free_port()), "--db", url], cwd=REPO,
                                env=env, capture_output=True, text=True, timeout=60, check=False)

        assert (1, 1) == (result.returncode, len(result.stderr.splitlines())), result.stderr
        assert result.stderr.startswith(expected), result.stderr

    def test_a_negative_tick_interval_stops_serve_with_one_line(self, db_url: str) -> None:
        """``--tick-interval -1`` fails with the usage-error exit 2 and one ``zorgpad: error:`` line."""
        env = {k: v for k, v in os.environ.items() if k != "ZORGPAD_DATABASE_URL"}

        result = subprocess.run([str(ZORGPAD), "serve", "--port", str(free_port()), "--db", db_url,
                                 "--tick-interval", "-1"], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=60, check=False)

        assert (2, 1) == (result.returncode, len(result.stderr.splitlines())), result.stderr
        assert result.stderr.startswith("zorgpad: error: "), result.stderr
        assert "-1" in result.stderr

    def test_an_impossible_port_fails_without_a_traceback(self, db_url: str) -> None:
        """``--port 99999`` fails with a non-zero status and a message, not a Python traceback."""
        env = {k: v for k, v in os.environ.items() if k != "ZORGPAD_DATABASE_URL"}

        result = subprocess.run([str(ZORGPAD), "serve", "--port", "99999", "--db", db_url, "--tick-interval", "0"],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)

        assert 0 != result.returncode
        assert "Traceback" not in result.stderr, result.stderr
        assert "99999" in result.stderr


#: Patients whose due timers the worker processes' runners fire.
OVERDUE = 20


def _children(pid: int) -> dict[int, str]:
    """Process id -> command line of the processes whose parent is ``pid``."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            if int(fields.get("PPid", "0")) == pid:
                found[int(status.parent.name)] = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue  # the process ended while we looked
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (not gone, not a zombie)."""
    try:
        return "\tZ" not in Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].splitlines()[0]
    except OSError:
        return False


@pytest.fixture
def many_overdue_url(db_url: str) -> str:
    """Twenty patients enrolled in ExampleAcp eight days ago: each register step's due timer is due."""
    db = Database(db_url)
    engine = Engine(db, Registry([ExampleAcp]))
    past = datetime.now(UTC) - timedelta(days=8)
    for index in range(OVERDUE):
        engine.ingest({"resourceType": "Patient", "id": f"p{index}", "generalPractitioner": [
            {"reference": "Organization/gp-1"}]}, now=past)
        engine.enrol("example-acp", f"Patient/p{index}", now=past)
    db.dispose()
    return db_url


class TestWorkers:
    """``zorgpad serve --workers N``: N processes share the port, each with its own embedded runner."""

    def test_two_workers_serve_and_fire_every_due_timer_once(self, tmp_path: Path, many_overdue_url: str) -> None:
        """Two worker processes start under the server; their two runners, ticking every 0.1 s, fire each of
        the twenty due timers exactly once (one outbox action per enrolment); SIGTERM ends them all."""
        url = many_overdue_url
        with running(tmp_path, "serve", "--db", url, "--workers", "2", "--tick-interval", "0.1",
                     "--file", EXAMPLE) as server:
            workers = [pid for pid, line in _children(server.process.pid).items() if "spawn_main" in line]
            pathways = server.client.get("/healthz").json()["pathways"]

            def fired() -> bool:
                return 0 == query(url, "SELECT COUNT(*) FROM timer")[0][0]

            eventually(fired, "the runners to fire every due timer")
            time.sleep(1.0)  # ten more rounds of each runner: a second firing would show now
            status = server.stop()
            left = [pid for pid in workers if _alive(pid)]

        actions = query(url, "SELECT enrolment_id, COUNT(*) FROM outbox WHERE channel = 'action' "
                             "GROUP BY enrolment_id")
        firings = query(url, "SELECT patient, COUNT(*) FROM audit WHERE what = 'TimerFired' GROUP BY patient")
        overdue = query(url, "SELECT COUNT(*) FROM step_run WHERE step_id = 'register' "
                             "AND business_status = 'overdue'")[0][0]
        assert 2 == len(workers), workers
        assert any("/example-acp|" in p for p in pathways), pathways
        assert (OVERDUE, {1}) == (len(actions), {count for _, count in actions})
        assert (OVERDUE, {1}) == (len(firings), {count for _, count in firings})
        assert OVERDUE == overdue
        assert status in CLEAN_EXIT
        assert [] == left, left
        assert "2 worker processes" in server.output()
        assert "Traceback" not in server.output()


class TestDemo:
    """``zorgpad demo`` seeds the fictional region into a SQLite file and serves it."""

    def test_demo_seeds_and_serves_health(self, tmp_path: Path) -> None:
        """The demo seeds patients and enrolments, serves /healthz on SQLite, and stops cleanly on SIGTERM."""
        url = f"sqlite:///{tmp_path}/demo.db"

        with running(tmp_path, "demo", "--db", url) as server:
            body = server.client.get("/healthz").json()
            status = server.stop()

        patients = query(url, "SELECT COUNT(*) FROM resource WHERE resource_type = 'Patient'")[0][0]
        enrolments = query(url, "SELECT COUNT(*) FROM enrolment")[0][0]
        assert ("ok", "sqlite") == (body["status"], body["database"])
        assert status in CLEAN_EXIT
        assert (True, True) == (patients > 0, enrolments > 0)
        assert f"{server.base}/" in server.output()

    def test_demo_twice_on_one_file_seeds_once(self, tmp_path: Path) -> None:
        """Starting the demo again on the same file serves it without seeding the region a second time."""
        url = f"sqlite:///{tmp_path}/demo.db"
        with running(tmp_path, "demo", "--db", url, "--tick-interval", "0") as server:
            server.stop()
        first = query(url, "SELECT resource_type, id FROM resource ORDER BY resource_type, id")
        enrolments = query(url, "SELECT id FROM enrolment ORDER BY id")

        with running(tmp_path, "demo", "--db", url, "--tick-interval", "0") as server:
            body = server.client.get("/healthz").json()

        assert "ok" == body["status"]
        assert first == query(url, "SELECT resource_type, id FROM resource ORDER BY resource_type, id")
        assert enrolments == query(url, "SELECT id FROM enrolment ORDER BY id")
