"""Zorgpad's jobs as Prefect flows, for regions that run several workers against one PostgreSQL database.

Three flows, each with retries: :func:`tick_flow` fires the due timers, :func:`deliver_flow` flushes the
outbox, :func:`ingest_flow` takes in a FHIR Bundle file. ``zorgpad worker`` serves all three as
deployments against the Prefect server at ``$PREFECT_API_URL`` and runs tick and deliver every interval
(see :func:`serve_worker`).

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
import logging
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, serve, task
from prefect.deployments.runner import RunnerDeployment
from zorgpad.engine.registry import Registry, load_file
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.db import Database

logger = logging.getLogger(__name__)

#: Attempts after a failed run (a database restart, a network blip) before Prefect marks it failed.
RETRIES = 3
RETRY_DELAY_SECONDS = 10
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


#: The deployments a worker triggers every interval, as ``flow-name/deployment-name``.
SCHEDULED = ("zorgpad-tick/tick", "zorgpad-deliver/deliver")


def trigger_due_runs(client: Any, interval: timedelta, moment: datetime) -> list[str]:
    """Create this interval slot's run of each scheduled deployment, once however many workers ask.

    The run's idempotency key is the deployment and the slot number (``moment`` divided by
    ``interval``): Prefect answers a second create with the same key with the run already made.
    """
    slot = int(moment.timestamp() // interval.total_seconds())
    made = []
    for name in SCHEDULED:
        deployment = client.read_deployment_by_name(name)
        run = client.create_flow_run_from_deployment(deployment.id, idempotency_key=f"{name}@{slot}")
        made.append(str(run.id))
    return made


def _trigger_forever(interval: timedelta, stop: threading.Event) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        while not stop.is_set():
            try:
                trigger_due_runs(client, interval, datetime.now(UTC))
            except Exception as exc:  # the server restarting, deployments not registered yet: next slot
                logger.warning("could not trigger Zorgpad runs: %s: %s", type(exc).__name__, exc)
            stop.wait(interval.total_seconds())


def serve_worker(interval: timedelta, files: Sequence[str]) -> None:
    """Serve the tick, deliver and ingest flows as deployments, and run tick and deliver every
    ``interval`` (blocks until stopped).

    The worker triggers the runs itself, one per interval slot and deployment, deduplicated across
    workers by Prefect's idempotency key, rather than through deployment schedules: the scheduler
    service of Prefect 3.8.8 fails to insert scheduled runs under SQLAlchemy 2.1 (the pinned set), and a
    worker-side trigger also keeps running when that service is behind.
    """
    parameters: dict[str, Any] = {"files": [str(Path(f).resolve()) for f in files]}
    deployments = [tick_flow.to_deployment(name="tick", parameters=parameters),
                   deliver_flow.to_deployment(name="deliver", parameters=parameters),
                   ingest_flow.to_deployment(name="ingest", parameters=parameters)]
    stop = threading.Event()
    trigger = threading.Thread(target=_trigger_forever, args=(interval, stop), name="zorgpad-trigger", daemon=True)
    trigger.start()
    try:
        # to_deployment is typed sync-or-async; called outside an event loop it returns the deployment.
        serve(*[d for d in deployments if isinstance(d, RunnerDeployment)], print_starting_message=True)
    finally:
        stop.set()
