"""A fork server for the SIGKILL tests: it pays Python's import time once, then forks one worker per job.

Run as a script (``python tests/fault/forkserver.py``); the protocol is one JSON object a line. The test
writes ``{"job": "tick" | "deliver", "args": {...}}``; the server forks a worker, answers ``{"pid": N}``,
waits for the worker and answers ``{"status": S, "result": {...}}``, where ``S`` is the exit code (-9: it
was killed with SIGKILL) and ``result`` is what the job returned (``{}`` when it did not finish).

The workers are real processes: each opens its own database connections after the fork (the server holds
none), so a SIGKILL to a worker is a real crash in the middle of its transactions. Only the start-up, the
1-2 s of imports, is shared; that is what lets the suite afford 20 rounds per test.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the example pathways

from example_pathway import ExampleAcp, ExampleAcpV2
from sqlalchemy import event
from zorgpad.engine import timers
from zorgpad.engine.outbox import Outbox, Transport, local_notify
from zorgpad.engine.registry import Registry
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import OutboxItem

APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT


def tick(db_url: str, now: str, marks: str, batch_size: int) -> dict[str, Any]:
    """Fire every timer due by ``now`` in batches of ``batch_size``.

    Writes ``b`` to the file ``marks`` when a batch starts and ``c`` when a transaction commits, so the test
    can tell whether a kill landed inside an open batch.
    """
    fd = os.open(marks, APPEND)
    real_fire_batch = timers.fire_batch

    def fire_batch(*args: Any, **kwargs: Any) -> int:
        os.write(fd, b"b")
        return real_fire_batch(*args, **kwargs)

    timers.fire_batch = fire_batch
    db = Database(db_url)
    event.listen(db.engine, "commit", lambda _connection: os.write(fd, b"c"))
    fired = timers.tick(db, Registry([ExampleAcp, ExampleAcpV2]), datetime.fromisoformat(now), batch_size=batch_size)
    return {"fired": fired}


def receiver(db: Database, receipts: str) -> Transport:
    """The partner: logs every idempotency key it is sent (repeats included), then applies the notice.

    Applying is ``local_notify``: the Communication becomes ``completed`` once; a repeat changes nothing.
    """
    fd = os.open(receipts, APPEND)
    apply = local_notify(db)

    def send(item: OutboxItem, now: datetime) -> None:
        os.write(fd, (item.idempotency_key + "\n").encode())
        apply(item, now)

    return send


def deliver(db_url: str, now: str, receipts: str, batch_size: int) -> dict[str, Any]:
    """Flush the outbox at ``now`` through :func:`receiver`, claiming ``batch_size`` items at a time."""
    db = Database(db_url)
    report = Outbox(db, {"notify": receiver(db, receipts)}, lease=timedelta(minutes=5),
                    batch_size=batch_size).deliver(datetime.fromisoformat(now))
    return {"delivered": report.delivered, "retried": report.retried, "dead": report.dead,
            "errors": report.errors}


JOBS: dict[str, Callable[..., dict[str, Any]]] = {"tick": tick, "deliver": deliver}


def _work(job: str, args: dict[str, Any], results: int) -> int:
    try:
        result = JOBS[job](**args)
    except BaseException:  # the test reads the server's stderr when a worker fails
        traceback.print_exc()
        return 1
    os.write(results, json.dumps(result).encode())
    return 0


def main() -> None:
    """Serve jobs until stdin closes."""
    for line in sys.stdin:
        request = json.loads(line)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            code = _work(request["job"], request["args"], write_end)
            sys.stderr.flush()
            os._exit(code)  # never run the server's clean-up in a worker
        os.close(write_end)
        print(json.dumps({"pid": pid}), flush=True)
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        result = json.loads(b"".join(chunks)) if chunks else {}
        print(json.dumps({"status": os.waitstatus_to_exitcode(status), "result": result}), flush=True)


if __name__ == "__main__":
    main()
