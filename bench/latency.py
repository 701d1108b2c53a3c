"""Benchmark 3: event-to-handover latency over HTTP against a real `zorgpad serve`.

Requests are offered at a steady rate (open loop) for a fixed time, alternating between the GP system's
``$process-message`` carrying the recorded ACP conversation (the enrolment advances and four handovers are
queued) and the GP's PUT of the conversation Task with status ``completed``. Each request commits before it
is answered and is validated on the way in. Latency is measured from the moment a request was *due* to be
sent, so time spent waiting behind a slow server counts (no coordinated omission); the service time from
the actual send is reported too. At most 64 requests are in flight. Beside it: the raw floor, one
transaction inserting one message's rows, and (p50) validation alone: the median time the server's
validation of a request body takes, run in this process on the bodies the run sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import select
from zorgpad.engine._projection import STEP_RUN_SYSTEM
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import StoredResource
from zorgpad.fhir.bundles import check_bundle
from zorgpad.fhir.outcomes import FHIRError
from zorgpad.fhir.validation import validate_resource

from bench import _fhir, _server
from bench._common import Baseline, Figure, Scratch, Sizes, percentile
from bench._population import row_counts
from bench._region import Region
from bench.baselines.floor import Floor

TARGET_P50_MS = 10.0
TARGET_P99_MS = 50.0
IN_FLIGHT = 64
#: Patients per query when reading their Tasks (SQLite allows 32,766 parameters in one statement).
_CHUNK = 5_000


@dataclass
class _Run:
    latencies: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=lambda: {"message": [], "task": []})
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    #: (kind, body) of each request sent, for the validation baseline.
    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _conversation_tasks(db_url: str, patients: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """enrolment id -> the current conversation Task of each patient (read before the run)."""
    wanted = {f"{enrolment_id}/conversation/0": enrolment_id for enrolment_id, _ in patients}
    database = Database(db_url)
    rows: list[dict[str, Any]] = []
    try:
        for start in range(0, len(patients), _CHUNK):
            chunk = [f"Patient/{p}" for _, p in patients[start:start + _CHUNK]]
            rows += database.run(lambda s, chunk=chunk: s.exec(select(StoredResource.content).where(
                StoredResource.resource_type == "Task", StoredResource.patient.in_(chunk))).all())  # type: ignore[union-attr]
    finally:
        database.dispose()
    found: dict[str, dict[str, Any]] = {}
    for content in rows:
        for identifier in content.get("identifier") or []:
            if identifier.get("system") == STEP_RUN_SYSTEM and identifier.get("value") in wanted:
                found[wanted[identifier["value"]]] = content
    return found


async def _offer(server: _server.Server, token: str, patients: list[tuple[str, str]],
                 tasks: dict[str, dict[str, Any]], rate: float, seconds: float) -> _Run:
    result = _Run()
    limit = asyncio.Semaphore(IN_FLIGHT)
    async with httpx.AsyncClient(base_url=server.fhir, headers=server.headers(token), timeout=120,
                                 limits=httpx.Limits(max_connections=IN_FLIGHT)) as client:

        async def one(index: int, due: float) -> None:
            enrolment_id, patient_id = patients[index]
            kind = "message" if index % 2 == 0 or enrolment_id not in tasks else "task"
            try:
                sent = time.perf_counter()
                if kind == "message":
                    message = _fhir.acp_message(patient_id, datetime.now(UTC))
                    result.bodies.append((kind, message))
                    response = await client.post("$process-message", json=message)
                else:
                    task = {**tasks[enrolment_id], "status": "completed"}
                    task.pop("meta", None)
                    result.bodies.append((kind, task))
                    response = await client.put(f"Task/{task['id']}", json=task)
                finished = time.perf_counter()
                if response.status_code >= 400:
                    key = f"{kind} HTTP {response.status_code}"
                    result.errors[key] = result.errors.get(key, 0) + 1
                    return
                result.latencies.append(finished - due)
                result.service.append(finished - sent)
                result.by_kind[kind].append(finished - due)
            except httpx.HTTPError as exc:
                key = f"{kind} {type(exc).__name__}"
                result.errors[key] = result.errors.get(key, 0) + 1
            finally:
                limit.release()

        started = time.perf_counter()
        running = []
        for index in range(len(patients)):
            due = started + index / rate
            if due - started >= seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await limit.acquire()
            if time.perf_counter() - started >= seconds:
                limit.release()
                break
            result.sent += 1
            running.append(asyncio.create_task(one(index, due)))
        await asyncio.gather(*running)
    return result


def _validate_request(kind: str, body: dict[str, Any]) -> None:
    """What the server validates of one request body: of a message, the Bundle's shell and each entry's
    resource (fhir/messaging.py: the MessageHeader, then the content as it is written); of a PUT, the Task."""
    with contextlib.suppress(FHIRError):
        if kind == "message":
            check_bundle(body, ("message",), "$process-message")
            for entry in body["entry"]:
                validate_resource(entry["resource"])
        else:
            validate_resource(body, expected_type="Task", expected_id=body["id"])


def _validation_ms(bodies: list[tuple[str, dict[str, Any]]]) -> list[float]:
    """Milliseconds validation alone takes for each request body, timed after one warm-up pass."""
    for kind, body in bodies:
        _validate_request(kind, body)
    out = []
    for kind, body in bodies:
        started = time.perf_counter()
        _validate_request(kind, body)
        out.append((time.perf_counter() - started) * 1000)
    return out


def _validation_note(bodies: list[tuple[str, dict[str, Any]]], milliseconds: list[float]) -> str:
    """The validation baseline's note: how many bodies, and the median per kind of request."""
    by_kind: dict[str, list[float]] = {}
    for (kind, _), value in zip(bodies, milliseconds, strict=True):
        by_kind.setdefault(kind, []).append(value)
    medians = "; ".join(f"{kind} p50 {percentile(values, 0.5) or 0:.2f} ms" for kind, values in by_kind.items())
    return (f"{len(bodies):,} request bodies (message: Bundle shell, MessageHeader and Procedure; PUT: the Task) "
            f"validated in this process after a warm-up pass; {medians}")


def run(region: Region, scratch: Scratch, sizes: Sizes, workdir: Path, *,
        log: Callable[[str], None] = print) -> list[Figure]:
    """One pass with one server process; on PostgreSQL a second pass with ``--workers 2`` (on SQLite a
    second process would only wait for the write lock)."""
    figures = _pass(region, sizes, 1, log)
    if scratch.postgresql:
        figures += _pass(region, sizes, 2, log)
    return figures


def _pass(region: Region, sizes: Sizes, workers: int, log: Callable[[str], None]) -> list[Figure]:
    """Serve the region, offer the load, measure; then the floor."""
    offered = round(sizes.latency_rate * sizes.latency_seconds)
    patients = region.take(min(offered, len(region.main_cohort) // 3, 30_000))
    tasks = _conversation_tasks(region.db_url, patients)
    server = _server.start(region.db_url, workers=workers)
    try:
        token = server.token(_fhir.GP)
        before = row_counts(region.db_url)
        log(f"  latency: {sizes.latency_rate:.0f} requests/s for {sizes.latency_seconds:.0f} s to {workers} "
            f"server process(es) ({len(patients):,} patients available)")
        started = time.perf_counter()
        result = asyncio.run(_offer(server, token, patients, tasks, sizes.latency_rate, sizes.latency_seconds))
        elapsed = time.perf_counter() - started
        after = row_counts(region.db_url)
    finally:
        server.stop()
    region.give_back(patients, result.sent)
    answered = len(result.latencies)
    per_message = {name: round((after[name] - before[name]) / answered) for name in after if answered}
    floor = Floor(region.db_url)
    try:
        floor_latencies = floor.commit_latencies({k: v for k, v in per_message.items() if v > 0},
                                                 min(200, max(answered, 20)))
    finally:
        floor.close()
    milliseconds = [s * 1000 for s in result.latencies]
    floor_ms = [s * 1000 for s in floor_latencies]
    validation_ms = _validation_ms(result.bodies)
    p50, p99 = percentile(milliseconds, 0.5), percentile(milliseconds, 0.99)
    errors = ", ".join(f"{count} {kind}" for kind, count in sorted(result.errors.items())) or "none"
    context = (f"offered {sizes.latency_rate:.0f}/s for {sizes.latency_seconds:.0f} s; {result.sent:,} sent, "
               f"{answered:,} answered in {elapsed:.1f} s ({answered / elapsed:.1f}/s achieved); errors: {errors}; "
               f"service time from send p50 {percentile([s * 1000 for s in result.service], 0.5) or 0:.0f} ms, "
               f"p99 {percentile([s * 1000 for s in result.service], 0.99) or 0:.0f} ms")
    kinds = "; ".join(f"{kind} p50 {percentile([s * 1000 for s in values], 0.5) or 0:.0f} ms"
                      for kind, values in result.by_kind.items() if values)
    floor_note = f"one transaction of {sum(v for v in per_message.values() if v > 0)} rows"
    served = "" if workers == 1 else f", `zorgpad serve --workers {workers}`"
    return [
        Figure("3. Event-to-handover latency", f"p50 latency, ms (HTTP, validation and commit included{served})",
               p50, "ms",
               f"≤ {TARGET_P50_MS:.0f} ms", p50 is not None and p50 <= TARGET_P50_MS, higher_is_better=False,
               baselines=[Baseline("raw database floor", percentile(floor_ms, 0.5), floor_note),
                          Baseline("validation alone (validate_resource per request body, one core)",
                                   percentile(validation_ms, 0.5), _validation_note(result.bodies, validation_ms))],
               note=f"{context}; {kinds}"),
        Figure("3. Event-to-handover latency", f"p99 latency, ms{served}", p99, "ms", f"≤ {TARGET_P99_MS:.0f} ms",
               p99 is not None and p99 <= TARGET_P99_MS and not result.errors, higher_is_better=False,
               baselines=[Baseline("raw database floor", percentile(floor_ms, 0.99), floor_note)]),
    ]
