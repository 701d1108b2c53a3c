"""Naive baseline: every patient step is its own Prefect flow run, every reminder a Scheduled flow run.

This is the design a team reaches for first when Prefect is already in the stack: no engine of our own,
Prefect's database is the durable record. A transition (a patient's step moving to the next) is one
call of a ``@flow`` that reads the patient's step from a table and writes the next one; Prefect creates a
flow run for it and persists its Pending, Running and Completed states through its API. A reminder is a
flow run of a served deployment created in state Scheduled with its due time; a runner (``flow.serve``'s
``Runner``) polls for scheduled runs and starts each in a process of its own, where the flow renders a
short text and inserts an outbox row. Zorgpad's figures are reported as a ratio to these (issue #7).

How it is run, and why:

* A real ``prefect server start`` on a free loopback port, its state in SQLite under ``workdir``: the
  realistic self-hosted deployment. Its scheduler service is switched off: it is not needed (runs are
  created Scheduled, not from deployment schedules) and Prefect 3.8.8's scheduler fails under
  SQLAlchemy 2.1 ("Can't evaluate bulk DML statement"); see ``zorgpad.engine.prefect_flows``.
* The Prefect client side runs in a child process (this file run as a script), so the harness's
  process keeps its own Prefect settings and warnings filters; only the measured window is timed, not
  the child's import of Prefect or the server's start-up.
* The runner polls every second (``PREFECT_RUNNER_POLL_FREQUENCY=1``, the default is 10 s) with the
  default process limit of 5: a tuned but otherwise stock set-up.
* The naive designs are slow, so each call measures a real, smaller count that fits its time window and
  says so in ``note`` and ``count``; nothing is extrapolated.

Both functions create scratch tables with a unique suffix in ``db_url`` and drop them afterwards, and
stop every process they started (the server, the child and the runner's flow-run processes, each
started in a session of its own) even when something fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from string import Template
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

#: Seconds of flow runs timed by :func:`transitions`.
TRANSITION_WINDOW_S = 6.0
#: Flow runs in flight at once in :func:`transitions` (patients are independent; see the module docstring).
TRANSITION_THREADS = 4
#: Seconds after the due time that :func:`reminders` waits for the due runs to fire.
REMINDER_WINDOW_S = 15.0
#: Seconds spent creating far-future Scheduled runs (the rest of ``pending`` is not created).
PENDING_CREATE_S = 2.0
#: At most this many due reminders are scheduled: about what the runner starts in the window here.
DUE_CAP = 10
#: Flow runs created at once through the API (more only makes the server's SQLite writers wait on each other).
CREATE_CONCURRENCY = 1
#: The due time is at most this far after the due runs' creation starts (their creation takes about this).
LEAD_CAP_S = 5.0
#: Seconds the runner gets to stop after the window; whatever is left is stopped by the parent.
STOP_WAIT_S = 2.0
#: Bound on the server's start-up and on the child's whole run, for failures only.
START_TIMEOUT_S = 120.0

_URL_ENV = "BENCH_NAIVE_PREFECT_DB_URL"
_MESSAGE = Template("Beste $name, denkt u aan uw gesprek over de zorg die bij u past? (herinnering $reminder)")
_REPO = Path(__file__).resolve().parents[2]


def transitions(patients: int, db_url: str, workdir: Path, *, api: str | None = None) -> dict[str, Any]:
    """Time one flow run per patient step, for as many of ``patients`` as fit in the window.

    ``api``: the URL of a running Prefect server to use (see :func:`prefect_server`); without it a server
    is started for this call and stopped after it.
    """
    suffix = uuid.uuid4().hex[:8]
    url = _sqlalchemy_url(db_url)
    engine = sa.create_engine(url)
    table = _step_table(sa.MetaData(), f"bench_naive_prefect_step_{suffix}")
    try:
        table.create(engine)
        with engine.begin() as connection:
            connection.execute(table.insert(), [{"patient": p, "step": 0} for p in range(patients)])
        result = _run_child(workdir, url, api, {"mode": "transitions", "table": table.name, "patients": patients,
                                                "window": TRANSITION_WINDOW_S, "threads": TRANSITION_THREADS})
        with engine.connect() as connection:
            moved = connection.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.step == 1)).scalar_one()
        if result["failed"]:
            raise RuntimeError(f"{len(result['failed'])} flow runs failed; the first: {result['failed'][0]}")
        if moved != result["count"]:
            raise RuntimeError(f"{result['count']} flow runs completed but {moved} patients moved to step 1")
        seconds = float(result["seconds"])
        note = (f"Prefect {result['version']}: one flow run per transition, a @flow called in-process by "
                f"{TRANSITION_THREADS} threads (so the stock heartbeat thread's join of up to 1 s per run "
                f"overlaps) against a `prefect server start` on loopback with SQLite state; {moved} of "
                f"{patients} patients moved in a {TRANSITION_WINDOW_S:.0f} s window, each flow run reading "
                f"and writing the step table")
        return {"per_second": moved / seconds if seconds > 0 else 0.0, "count": moved, "seconds": seconds,
                "note": note}
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()


def reminders(pending: int, due: int, db_url: str, workdir: Path, *, api: str | None = None) -> dict[str, Any]:
    """Fire due reminders as Scheduled flow runs picked up by a runner; time them and their lateness.

    ``api``: as for :func:`transitions`.
    """
    suffix = uuid.uuid4().hex[:8]
    url = _sqlalchemy_url(db_url)
    engine = sa.create_engine(url)
    table = _outbox_table(sa.MetaData(), f"bench_naive_prefect_outbox_{suffix}")
    scheduled = min(due, DUE_CAP)
    try:
        table.create(engine)
        result = _run_child(workdir, url, api, {"mode": "reminders", "table": table.name,
                                                "far": max(0, pending - due), "due": scheduled,
                                                "window": REMINDER_WINDOW_S, "pending_seconds": PENDING_CREATE_S,
                                                "concurrency": CREATE_CONCURRENCY})
        with engine.connect() as connection:
            rows = connection.execute(sa.select(table.c.reminder, table.c.due_at, table.c.fired_at)).all()
        if len({r.reminder for r in rows}) != len(rows):
            raise RuntimeError(f"{len(rows)} outbox rows for {len({r.reminder for r in rows})} reminders: "
                               "a reminder fired twice")
        due_at = float(result["due_at"])
        last = max([due_at + REMINDER_WINDOW_S if len(rows) < scheduled else due_at] + [r.fired_at for r in rows])
        lateness = [r.fired_at - r.due_at for r in rows] + [last - due_at] * (scheduled - len(rows))
        seconds = last - due_at
        note = (f"Prefect {result['version']}: Scheduled flow runs of a served deployment, started by a Runner "
                f"(poll 1 s, process limit 5, one spawned process per run) against a `prefect server start` "
                f"on loopback (SQLite state; scheduler service off: broken under SQLAlchemy 2.1 and not "
                f"needed). Scheduled {scheduled} of {due} due runs (cap {DUE_CAP}), all due at one moment, and "
                f"{result['far']} of {max(0, pending - due)} far-future runs (created for "
                f"{PENDING_CREATE_S:.0f} s at {result['create_per_second']:.0f} runs/s); {len(rows)} fired, "
                f"rate from the due time to the last start")
        if len(rows) < scheduled:
            note += (f"; {scheduled - len(rows)} did not fire within {REMINDER_WINDOW_S:.0f} s and count in the "
                     f"p99 with the window's length (a lower bound)")
        return {"per_second": len(rows) / seconds if seconds > 0 else 0.0, "count": len(rows), "seconds": seconds,
                "p99_lateness_s": _p99(lateness), "note": note}
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()


@contextmanager
def prefect_server(workdir: Path) -> Iterator[str]:
    """A ``prefect server start`` on a free loopback port with its state under ``workdir``; yields its API URL.

    For callers that run both baselines and want to start the server once; it is stopped on exit.
    """
    home = workdir / f"naive-prefect-server-{uuid.uuid4().hex[:6]}"
    home.mkdir(parents=True)
    api = f"http://127.0.0.1:{_free_port()}/api"
    with _processes() as started:
        started.append(_start_server(home, api))
        _wait_for_api(api, time.monotonic() + START_TIMEOUT_S, started[0], home / "server.log")
        yield api


# --- the parent side: tables, server and child processes -------------------------------------------


def _sqlalchemy_url(db_url: str) -> str:
    """``db_url`` with the installed PostgreSQL driver (psycopg 3) named, as SQLAlchemy needs it."""
    url = make_url(db_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _step_table(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(name, metadata, sa.Column("patient", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("step", sa.Integer, nullable=False))


def _outbox_table(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(name, metadata, sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("reminder", sa.Integer, nullable=False), sa.Column("body", sa.Text, nullable=False),
                    sa.Column("due_at", sa.Float, nullable=False), sa.Column("fired_at", sa.Float, nullable=False))


def _p99(values: list[float]) -> float | None:
    """The nearest-rank 99th percentile, or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``args`` in a session of its own (so that all it starts can be stopped), output to ``log``."""
    with log.open("wb") as out:  # a file, not a pipe nobody reads
        return subprocess.Popen(args, cwd=_REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and everything in its session: SIGTERM, then SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:  # the whole group is gone already
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the leader is gone; its children get the same signal, and then SIGKILL
            time.sleep(0.5)
    process.poll()


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            _stop(process)


def _environment(home: Path, api: str, url: str) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
           "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
           "PYTHONWARNINGS": "ignore", _URL_ENV: url}
    env.pop("PREFECT_API_KEY", None)
    return env


def _start_server(home: Path, api: str) -> subprocess.Popen[bytes]:
    port = api.removesuffix("/api").rsplit(":", 1)[1]
    return _spawn([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", port],
                  _environment(home, api, ""), home / "server.log")


def _run_child(workdir: Path, url: str, api: str | None, job: dict[str, Any]) -> dict[str, Any]:
    """Run this file as the child that does ``job`` against the server at ``api`` (or a new one)."""
    home = workdir / f"naive-prefect-{job['mode']}-{uuid.uuid4().hex[:6]}"
    home.mkdir(parents=True)
    job_file, result_file = home / "job.json", home / "result.json"
    with _processes() as started:
        if api is None:
            # The server and the child start together: the child's import of Prefect overlaps the server's.
            api = f"http://127.0.0.1:{_free_port()}/api"
            started.append(_start_server(home, api))
        job_file.write_text(json.dumps({**job, "api": api, "result": str(result_file)}))
        child = _spawn([sys.executable, str(Path(__file__).resolve()), str(job_file)],
                       _environment(home, api, url), home / "child.log")
        started.append(child)
        # Wait for the result, not for the exit: the runner's last flow-run processes are stopped with it.
        deadline = time.monotonic() + START_TIMEOUT_S + 3 * job["window"] + 60
        while not result_file.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        code = child.poll()
        if not result_file.exists():
            raise RuntimeError(f"the Prefect baseline child failed (exit {code}):\n{_tail(home / 'child.log')}"
                               f"\n--- server\n{_tail(home / 'server.log')}")
    return dict(json.loads(result_file.read_text()))


# --- the child side: the flows and the Prefect client ---------------------------------------------------


@functools.cache
def _engine() -> sa.Engine:
    url = os.environ[_URL_ENV]
    return sa.create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})


@functools.cache
def _tables(steps: str | None = None, outbox: str | None = None) -> tuple[sa.Table | None, sa.Table | None]:
    metadata = sa.MetaData()
    return (_step_table(metadata, steps) if steps else None, _outbox_table(metadata, outbox) if outbox else None)


def advance(patient: int, table: str) -> int:
    """Move ``patient`` to the next step: read the current step, write the next one (one flow run)."""
    steps = _tables(steps=table)[0]
    assert steps is not None
    with _engine().begin() as connection:
        step = connection.execute(sa.select(steps.c.step).where(steps.c.patient == patient)).scalar_one()
        connection.execute(steps.update().where(steps.c.patient == patient).values(step=step + 1))
    return int(step + 1)


def remind(reminder: int, due_at: float, table: str) -> None:
    """Render the reminder text and insert its outbox row (one Scheduled flow run, at its due time)."""
    fired_at = time.time()
    outbox = _tables(outbox=table)[1]
    assert outbox is not None
    body = _MESSAGE.substitute(name=f"patiënt {reminder}", reminder=reminder)
    with _engine().begin() as connection:
        connection.execute(outbox.insert().values(reminder=reminder, body=body, due_at=due_at, fired_at=fired_at))


def _wait_for_api(api: str, deadline: float, server: subprocess.Popen[bytes] | None = None,
                  log: Path | None = None) -> None:
    """Poll ``api``/health until it answers; fail at ``deadline`` or when ``server`` exits."""
    import httpx

    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"the Prefect server exited ({server.returncode}):\n{_tail(log) if log else ''}")
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the Prefect server at {api} did not answer /health within {START_TIMEOUT_S:.0f} s")


def _child_transitions(job: dict[str, Any]) -> dict[str, Any]:
    from prefect import flow

    advance_flow = flow(name="naive-advance", persist_result=False)(advance)
    patients = iter(range(job["patients"]))
    lock = threading.Lock()
    done = [0]
    failed: list[str] = []
    start = time.perf_counter()

    def work() -> None:
        while time.perf_counter() - start < job["window"]:
            with lock:
                patient = next(patients, None)
            if patient is None:
                return
            try:
                advance_flow(patient, job["table"])
            except Exception as exc:  # a failed flow run is reported with the result, not lost with its thread
                with lock:
                    failed.append(f"patient {patient}: {type(exc).__name__}: {exc}")
                continue
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=work, name=f"naive-advance-{i}") for i in range(job["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"count": done[0], "seconds": time.perf_counter() - start, "failed": failed}


async def _create_runs(client: Any, deployment_id: Any, parameters: list[dict[str, Any]], when: Any,
                       concurrency: int, deadline: float | None = None) -> int:
    """Create one Scheduled run per parameter set, ``concurrency`` at a time; stop at ``deadline``."""
    from prefect.states import Scheduled

    made = 0
    for start in range(0, len(parameters), concurrency):
        if deadline is not None and time.monotonic() >= deadline:
            break
        batch = parameters[start:start + concurrency]
        await asyncio.gather(*(client.create_flow_run_from_deployment(
            deployment_id, parameters=p, state=Scheduled(scheduled_time=when)) for p in batch))
        made += len(batch)
    return made


async def _child_reminders(job: dict[str, Any]) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    remind_flow = flow(name="naive-remind", persist_result=False)(remind)
    runner = Runner(name="naive-reminders", query_seconds=1)
    deployment_id = await runner.aadd_flow(remind_flow, name="reminder")
    polling = asyncio.create_task(runner.start())
    table, concurrency = job["table"], job["concurrency"]
    try:
        async with get_client() as client:
            start = time.monotonic()
            # The far-future runs are only created until the time box ends: only the rest of pending.
            far = [{"reminder": -1 - i, "due_at": 0.0, "table": table}
                   for i in range(min(job["far"], int(200 * job["pending_seconds"] * concurrency)))]
            made = await _create_runs(client, deployment_id, far, datetime.now(UTC) + timedelta(days=365),
                                      concurrency, deadline=start + job["pending_seconds"])
            rate = made / (time.monotonic() - start) if made else 20.0
            # All due runs get one due time, a little after they will all have been created.
            due_at = time.time() + min(job["due"] / rate, LEAD_CAP_S) + 1.0
            await _create_runs(client, deployment_id,
                               [{"reminder": r, "due_at": due_at, "table": table} for r in range(job["due"])],
                               datetime.fromtimestamp(due_at, UTC), concurrency)
        outbox = _tables(outbox=table)[1]
        assert outbox is not None
        count = sa.select(sa.func.count()).select_from(outbox)
        while time.time() < due_at + job["window"]:
            with _engine().connect() as connection:
                if connection.execute(count).scalar_one() >= job["due"]:
                    break
            await asyncio.sleep(0.2)
    finally:
        # Runs still in flight are not waited for long: the parent stops this process's session after.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runner.astop(), STOP_WAIT_S)
        polling.cancel()
    return {"due_at": due_at, "far": made, "create_per_second": rate}


def _child(job_file: Path) -> None:
    """The child process: wait for the server, do the job, write the result file."""
    import prefect

    job = json.loads(job_file.read_text())
    _wait_for_api(job["api"], time.monotonic() + START_TIMEOUT_S)
    result = _child_transitions(job) if job["mode"] == "transitions" else asyncio.run(_child_reminders(job))
    partial = Path(job["result"]).with_suffix(".partial")
    partial.write_text(json.dumps({**result, "version": prefect.__version__}))
    partial.replace(job["result"])  # the parent stops this process once the file is there


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
