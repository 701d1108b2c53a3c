"""Prefect: a real Prefect server on loopback and two `zorgpad worker` processes share one database.

The Prefect server keeps its own state in SQLite under the test's tmp_path; the workers serve the tick
and deliver flows on a 4-second schedule against the test's Zorgpad database (PostgreSQL on the
PostgreSQL run). Every due timer must fire exactly once and every resulting notice be delivered once.
The ingest flow is run as a plain call in a child process (Prefect then starts a temporary local server).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from fault.seeding import seed_open_conversations
from faultcounts import count
from sqlmodel import col, func, select
from zorgpad.engine._model import NoticeKind
from zorgpad.engine._projection import communication_id
from zorgpad.engine.prefect_flows import bundle_resources
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import AuditEntry, OutboxItem, StepRun, Timer

REPO = Path(__file__).resolve().parents[2]
ZORGPAD = REPO / ".venv" / "bin" / "zorgpad"
PREFECT = REPO / ".venv" / "bin" / "prefect"
EXAMPLE = REPO / "tests" / "example_pathway.py"
ENROLMENTS = 40  # x 3 due timers each
WAIT = 150.0  # seconds for the server to start, and for the workers to finish the work (bounds a failure only)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class PrefectServer:
    """`prefect server start` on a loopback port, SQLite-backed, in a private PREFECT_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        port = _free_port()
        self.api = f"http://127.0.0.1:{port}/api"
        self.env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_SERVER_UI_ENABLED": "false",
                    "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
                    "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
                    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
                    "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_API_URL": self.api,
                    # The server's SQLite is written by its services and every run of both workers: wait
                    # for its lock rather than fail a run when the machine is busy.
                    "PREFECT_SERVER_DATABASE_TIMEOUT": "60", "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "60"}
        self.env.pop("PREFECT_API_KEY", None)
        self.logs: list[Path] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.processes.append(self._spawn("server", [str(PREFECT), "server", "start", "--host", "127.0.0.1",
                                                     "--port", str(port)]))

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log_path = self.home / f"{name}.log"
        self.logs.append(log_path)
        log: IO[bytes] = log_path.open("wb")  # a file, not a pipe nobody reads
        try:  # a session of its own: a worker and the flow-run processes it starts can be killed together
            return subprocess.Popen(args, cwd=REPO, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            log.close()

    def wait_healthy(self, deadline: float) -> None:
        """Poll /api/health until it answers (bounded)."""
        while time.monotonic() < deadline:
            if self.processes[0].poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.output()}")
            try:
                if httpx.get(f"{self.api}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prefect server did not answer /api/health: {self.output()}")

    def worker(self, name: str, db_url: str) -> subprocess.Popen[bytes]:
        """Start one `zorgpad worker` against this server and ``db_url``."""
        process = self._spawn(name, [str(ZORGPAD), "worker", "--interval", "4", "--db", db_url,
                                     "--file", str(EXAMPLE)])
        self.processes.append(process)
        return process

    def output(self) -> str:
        """The tail of every log, for failure messages."""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs if p.exists())

    def stop(self) -> None:
        """Stop the workers and the server (all asked at once, then each waited for)."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            _stop(process)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A started Prefect server for this module; every process it or its workers started is stopped after."""
    home = tmp_path_factory.mktemp("prefect")
    server = PrefectServer(home)
    try:
        server.wait_healthy(time.monotonic() + WAIT)
        yield server
    finally:
        server.stop()


def _progress(db: Database) -> dict[str, Any]:
    def read(s: Any) -> dict[str, Any]:
        return {
            "timers": s.exec(select(func.count()).select_from(Timer)).one(),
            "fired audits": s.exec(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.what == "TimerFired")).one(),
            "outbox": Counter(s.exec(select(OutboxItem.status).where(OutboxItem.channel == "notify")).all()),
            "outbox keys": Counter(s.exec(select(OutboxItem.idempotency_key).where(
                OutboxItem.channel == "notify")).all()),
            "steps": Counter((r.reminders_sent, r.overdue, r.escalated, r.business_status) for r in s.exec(
                select(StepRun).where(StepRun.step_id == "conversation"))),
        }
    return db.run(read)


class TestTwoPrefectWorkers:
    """Two `zorgpad worker` processes on one Prefect server and one database."""

    def test_every_due_timer_fires_exactly_once_and_every_notice_is_delivered_once(
            self, db: Database, db_url: str, prefect_server: PrefectServer) -> None:
        """120 due timers: both workers serve the scheduled tick and deliver deployments; each timer fires
        once and each notice arrives once, in runs made by the Prefect server's scheduler."""
        ids = seed_open_conversations(db, ENROLMENTS)
        total = 3 * len(ids)
        workers = [prefect_server.worker("worker-1", db_url), prefect_server.worker("worker-2", db_url)]
        deadline = time.monotonic() + WAIT
        progress, completed = _progress(db), set()
        try:
            while time.monotonic() < deadline:
                progress, completed = _progress(db), _completed_flows(prefect_server)
                if (progress["timers"] == 0 and progress["outbox"] == Counter({"delivered": 2 * len(ids)})
                        and {"zorgpad-tick", "zorgpad-deliver"} <= completed):
                    break
                for process in prefect_server.processes:
                    assert process.poll() is None, prefect_server.output()
                time.sleep(0.5)  # bounded polling of real processes
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                _stop(worker)
        expected_keys = {f"notify/{communication_id(i, 'conversation', 0, kind, 0)}"
                         for i in ids for kind in (NoticeKind.REMINDER, NoticeKind.ESCALATION)}

        assert (0, total) == (progress["timers"], progress["fired audits"]), prefect_server.output()
        assert Counter(dict.fromkeys(expected_keys, 1)) == progress["outbox keys"]
        assert Counter({"delivered": 2 * len(ids)}) == progress["outbox"], prefect_server.output()
        assert Counter({(1, True, True, "escalated"): len(ids)}) == progress["steps"]
        assert {"zorgpad-tick", "zorgpad-deliver"} <= completed


class TestAWorkerKilledMidRun:
    """SIGKILL of a worker and its flow-run processes while a tick runs; another worker takes over."""

    def test_nothing_is_lost_and_nothing_fires_twice(self, db: Database, db_url: str,
                                                     prefect_server: PrefectServer) -> None:
        """900 due timers: worker-1 is killed (with the runs it started) once its tick has committed a
        batch; worker-2 finishes, and what the dead worker held leased is delivered once its lease runs
        out: every timer fired once, every notice delivered once."""
        ids = seed_open_conversations(db, 300)
        total = 3 * len(ids)
        victim = prefect_server.worker("worker-killed", db_url)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if _progress(db)["fired audits"] > 0:
                break
            assert victim.poll() is None, prefect_server.output()
            time.sleep(0.2)  # bounded polling of real processes
        else:
            pytest.fail(f"worker-1 never started a tick: {prefect_server.output()}")
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        count("prefect worker killed mid-run: faults injected")
        count("prefect worker killed mid-run: timers fired before the kill", _progress(db)["fired audits"])
        survivor = prefect_server.worker("worker-survivor", db_url)
        try:  # the survivor ticks what is left and delivers all but what the dead worker holds leased
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                progress = _progress(db)
                if progress["timers"] == 0 and progress["outbox"]["delivered"] + _leased(db) == 2 * len(ids):
                    break
                assert survivor.poll() is None, prefect_server.output()
                time.sleep(0.5)  # bounded polling of real processes
        finally:
            survivor.terminate()
            _stop(survivor)
        leased = _leased(db)
        count("prefect worker killed mid-run: items leased by the dead worker", leased)
        if leased:  # once the dead worker's leases have run out, a flush delivers them
            last = db.run(lambda s: s.exec(select(func.max(OutboxItem.lease_until))).one())
            after = (last if last.tzinfo else last.replace(tzinfo=UTC)) + timedelta(seconds=1)
            subprocess.run([str(ZORGPAD), "deliver", "--db", db_url, "--file", str(EXAMPLE), "--now",
                            after.isoformat()], cwd=REPO, env=prefect_server.env, check=True, timeout=120,
                           capture_output=True)
        progress = _progress(db)
        expected_keys = {f"notify/{communication_id(i, 'conversation', 0, kind, 0)}"
                         for i in ids for kind in (NoticeKind.REMINDER, NoticeKind.ESCALATION)}

        assert -signal.SIGKILL == victim.returncode
        assert (0, total) == (progress["timers"], progress["fired audits"]), prefect_server.output()
        assert Counter(dict.fromkeys(expected_keys, 1)) == progress["outbox keys"]
        assert Counter({"delivered": 2 * len(ids)}) == progress["outbox"], prefect_server.output()
        assert Counter({(1, True, True, "escalated"): len(ids)}) == progress["steps"]
        count("prefect worker killed mid-run: lost", total - progress["fired audits"])
        count("prefect worker killed mid-run: duplicated",
              sum(n - 1 for n in progress["outbox keys"].values()))


def _leased(db: Database) -> int:
    """Outbox items still pending under a lease (a worker took them and has not recorded a result)."""
    return int(db.run(lambda s: s.exec(select(func.count()).select_from(OutboxItem).where(
        OutboxItem.status == "pending", col(OutboxItem.lease_until).is_not(None))).one()))


def _completed_flows(server: PrefectServer) -> set[str]:
    """Names of the flows with a completed run that the Prefect server's scheduler made (none yet when
    the busy server does not answer in time: the caller polls again)."""
    try:
        runs = httpx.post(f"{server.api}/flow_runs/filter", timeout=30, json={
            "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}).json()
        flows = {r["flow_id"] for r in runs if r["auto_scheduled"]}
        return {str(httpx.get(f"{server.api}/flows/{f}", timeout=30).json()["name"]) for f in flows}
    except httpx.TimeoutException:
        return set()


class TestIngestFlow:
    """The bulk-ingest flow, called as a plain function in a child process that reports to the server."""

    def test_the_ingest_flow_stores_every_resource_of_a_bundle_file_once_even_when_run_twice(
            self, db: Database, db_url: str, tmp_path: Path, prefect_server: PrefectServer) -> None:
        """A Bundle of 3 Patients (one without id) ingested twice (as a retry would) leaves 3 Patients."""
        bundle = tmp_path / "bundle.json"
        bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1"}},
            {"resource": {"resourceType": "Patient", "id": "p2"}},
            {"resource": {"resourceType": "Patient", "name": [{"family": "Zonder-Id"}]}}]}))

        assert bundle_resources(str(bundle))[2]["id"] == bundle_resources(str(bundle))[2]["id"]

        script = ("import sys; from zorgpad.engine.prefect_flows import ingest_flow; "
                  "print(ingest_flow(sys.argv[1])); print(ingest_flow(sys.argv[1]))")
        env = {**prefect_server.env, "ZORGPAD_DATABASE_URL": db_url}
        output = subprocess.run([sys.executable, "-c", script, str(bundle)], env=env, capture_output=True,
                                text=True, timeout=WAIT, check=False)

        from zorgpad.engine.store.tables import StoredResource
        patients = db.run(lambda s: s.exec(select(func.count()).select_from(StoredResource).where(
            col(StoredResource.resource_type) == "Patient")).one())

        assert 0 == output.returncode, output.stderr[-3000:]
        assert ["3", "3"] == [line for line in output.stdout.splitlines() if line.isdigit()]
        assert 3 == patients

    def test_a_file_that_is_not_a_bundle_is_refused(self, tmp_path: Path) -> None:
        """A Patient file is not a Bundle: the flow's reader says so."""
        path = tmp_path / "patient.json"
        path.write_text(json.dumps({"resourceType": "Patient"}))

        with pytest.raises(ValueError, match="is not a FHIR Bundle"):
            bundle_resources(str(path))


class TestWorkerCommand:
    """`zorgpad worker` refuses to start without what it needs."""

    def test_without_prefect_api_url_the_worker_says_so_and_exits_1(self, db_url: str) -> None:
        """No $PREFECT_API_URL: one `zorgpad: error:` line naming it, exit status 1."""
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        result = subprocess.run([str(ZORGPAD), "worker", "--db", db_url], env=env, capture_output=True, text=True,
                                timeout=WAIT, check=False)

        assert 1 == result.returncode
        assert result.stderr.startswith("zorgpad: error: set PREFECT_API_URL"), result.stderr
