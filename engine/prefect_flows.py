"""Zorgpad's jobs as Prefect flows, for regions that run several workers against one PostgreSQL database.

Three flows, each with retries: :func:`tick_flow` fires the due timers, :func:`deliver_flow` flushes the
outbox, :func:`ingest_flow` takes in a FHIR Bundle file. ``zorgpad worker`` serves all three as
deployments against the Prefect server at ``$PREFECT_API_URL``; tick and deliver run on an interval
schedule kept by that server (see :func:`serve_worker`).

Several workers may run the same deployments: Prefect gives each scheduled run to one of them, and even
when two runs overlap (a retry, a late run, a worker of another machine) nothing happens twice, because
the claims are made in the database: timers and outbox items are taken with ``FOR UPDATE SKIP LOCKED``,
a timer is deleted in the transaction that writes its effects, and an outbox item is leased. A flow
that is retried after a crash therefore only does what is still left.

The database comes from the worker's environment (``$ZORGPAD_DATABASE_URL``), never from the flow's
parameters, so no password is stored in Prefect.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import flow, serve, task
from prefect.deployments.runner import RunnerDeployment
from zorgpad.engine.registry import Registry, load_file
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.db import Database

#: Attempts after a failed run (a database restart, a network blip) before Prefect marks it failed.
RETRIES = 3
RETRY_DELAY_SECONDS = 10
#: Flow runs one worker runs at once (each is a process of its own).
CONCURRENT_RUNS = 3
#: Resources a bulk-ingest task writes per transaction batch (one Prefect task run per chunk).
CHUNK = 200


def _engine(files: Sequence[str]) -> Engine:
    from zorgpad.engine.app import build_engine  # composition root

    registry = Registry.default()
    for path in files:
        for pathway in load_file(path):
            registry.add(pathway)
    return build_engine(Database(), registry)


@flow(name="zorgpad-tick", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, log_prints=True)
def tick_flow(files: list[str] | None = None) -> int:
    """Fire every timer that is due now; return how many fired."""
    engine = _engine(files or [])
    try:
        fired = engine.tick()
    finally:
        engine.db.dispose()
    print(f"fired {fired} timers")
    return fired


@flow(name="zorgpad-deliver", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, log_prints=True)
def deliver_flow(files: list[str] | None = None) -> dict[str, int]:
    """Flush the outbox once; return the counts."""
    engine = _engine(files or [])
    try:
        report = engine.deliver()
    finally:
        engine.db.dispose()
    print(f"delivered {report.delivered}, retrying {report.retried}, dead-lettered {report.dead}")
    return {"delivered": report.delivered, "retried": report.retried, "dead": report.dead,
            "skipped": report.skipped}


def bundle_resources(path: str) -> list[dict[str, Any]]:
    """The entry resources of a FHIR Bundle file; one without an id gets one derived from its content,
    so that ingesting the file again (a retry) writes the same resources rather than new ones."""
    bundle = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValueError(f"{path} is not a FHIR Bundle (got resourceType {bundle.get('resourceType')!r})"
                         if isinstance(bundle, dict) else f"{path} is not a FHIR Bundle")
    resources = []
    for entry in bundle.get("entry") or []:
        resource = dict(entry.get("resource") or {})
        if not resource.get("resourceType"):
            continue
        if not resource.get("id"):
            digest = hashlib.sha256(json.dumps(resource, sort_keys=True).encode()).hexdigest()
            resource["id"] = str(uuid.UUID(digest[:32]))
        resources.append(resource)
    return resources


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS)
def ingest_chunk(resources: list[dict[str, Any]], files: list[str]) -> int:
    """Ingest one chunk of resources, each in its own transaction."""
    engine = _engine(files)
    try:
        for resource in resources:
            engine.ingest(resource)
    finally:
        engine.db.dispose()
    return len(resources)


@flow(name="zorgpad-ingest", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, log_prints=True)
def ingest_flow(path: str, files: list[str] | None = None) -> int:
    """Ingest every resource of the FHIR Bundle file at ``path``; return how many."""
    resources = bundle_resources(path)
    count = 0
    for start in range(0, len(resources), CHUNK):
        count += ingest_chunk(resources[start:start + CHUNK], files or [])
    print(f"ingested {count} resources from {path}")
    return count


def deployments(interval: timedelta, files: Sequence[str]) -> list[RunnerDeployment]:
    """The worker's deployments: tick and deliver on an ``interval`` schedule, ingest on demand."""
    parameters: dict[str, Any] = {"files": [str(Path(f).resolve()) for f in files]}
    made = [tick_flow.to_deployment(name="tick", interval=interval, parameters=parameters),
            deliver_flow.to_deployment(name="deliver", interval=interval, parameters=parameters),
            ingest_flow.to_deployment(name="ingest", parameters=parameters)]
    # to_deployment is typed sync-or-async; called outside an event loop it returns the deployment.
    return [d for d in made if isinstance(d, RunnerDeployment)]


def serve_worker(interval: timedelta, files: Sequence[str]) -> None:
    """Serve the tick, deliver and ingest flows as deployments (blocks until stopped).

    Tick and deliver carry an interval schedule: the Prefect server's scheduler creates their runs, and
    every worker serving the same deployments polls for them; a run is started by the one worker whose
    claim (the move to Pending) the server accepts. Workers on several machines may serve the same
    deployments; the last one to start sets the interval. A worker runs at most :data:`CONCURRENT_RUNS`
    flow runs at a time (a slow tick leaves the next runs to other workers, or to later), and stopping
    one worker leaves the schedules running for the others (``pause_on_shutdown=False``).
    """
    serve(*deployments(interval, files), limit=CONCURRENT_RUNS, pause_on_shutdown=False,
          print_starting_message=True)
