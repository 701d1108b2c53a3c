"""Fixtures of the fault suite: the replayable seed, the fork server for SIGKILL rounds, a read-only poller.

The seed of the random kill points is printed at the end of the run; ``ZORGPAD_FAULT_SEED=N`` replays it
(the kill points are the same; where exactly a kill lands still depends on the machine's timing).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine as SAEngine
from sqlalchemy import create_engine, text
from zorgpad.engine.store.db import Database

REPO = Path(__file__).resolve().parents[2]
FORKSERVER = Path(__file__).resolve().parent / "forkserver.py"
SEED_VAR = "ZORGPAD_FAULT_SEED"
WAIT = 60.0  # seconds a worker gets to show progress or to finish
_SEEDS: list[int] = []


@pytest.fixture(scope="session")
def fault_seed() -> int:
    """The seed of every random choice in the fault suite: $ZORGPAD_FAULT_SEED, else a fresh one."""
    seed = int(os.environ.get(SEED_VAR) or random.SystemRandom().randrange(1, 1_000_000))
    _SEEDS.append(seed)
    return seed


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the seed, so that a failed run can be replayed."""
    for seed in _SEEDS:
        terminalreporter.write_line(f"fault suite seed: {seed} (replay with {SEED_VAR}={seed})")


def dialect(db: Database) -> str:
    """``sqlite`` or ``postgresql``: the second word of every count name."""
    return db.dialect


class ForkServer:
    """The client side of ``forkserver.py``: run a job to the end, or kill it part-way with SIGKILL."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen([sys.executable, str(FORKSERVER)], cwd=REPO, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._log_file, text=True, bufsize=1)
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._answers.put(json.loads(line))

    def _answer(self, what: str) -> dict[str, Any]:
        try:
            return self._answers.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"the fork server gave no {what} in {WAIT} s: {self.output()}") from None

    def output(self) -> str:
        """What the server and its workers wrote to stderr (tracebacks)."""
        return self.log.read_text(errors="replace")

    def _start(self, job: str, args: dict[str, Any]) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"job": job, "args": args}) + "\n")
        self.process.stdin.flush()
        return int(self._answer("pid")["pid"])

    def run(self, job: str, **args: Any) -> dict[str, Any]:
        """Run ``job`` in a worker to the end; its result."""
        self._start(job, args)
        answer = self._answer("exit status")
        assert 0 == answer["status"], f"worker {job} failed: {self.output()}"
        return dict(answer["result"])

    def kill_after(self, job: str, args: dict[str, Any], progress: Callable[[], int], target: int,
                   delay: float) -> int:
        """Start ``job``; once ``progress()`` reaches ``target``, wait ``delay`` seconds and SIGKILL it.

        Returns the worker's exit status (``-signal.SIGKILL`` when the kill landed).
        """
        pid = self._start(job, args)
        deadline = time.monotonic() + WAIT
        while progress() < target:
            if not self._answers.empty():
                raise AssertionError(f"worker ended before it made progress {target}: {self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker made no progress to {target} in {WAIT} s: {self.output()}")
            time.sleep(0.002)  # polling a real process, not simulating time
        time.sleep(delay)
        if not self._answers.empty():
            raise AssertionError(f"worker finished the whole job before it was killed: {self._answers.get()}")
        with contextlib.suppress(ProcessLookupError):  # it ended just now; its exit status (0) says so
            os.kill(pid, signal.SIGKILL)
        return int(self._answer("exit status")["status"])

    def close(self) -> None:
        """Stop the server (closing its stdin ends it)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=15)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self._log_file.close()


@pytest.fixture
def forkserver(tmp_path: Path) -> Iterator[ForkServer]:
    """A fork server with the engine imported, ready to fork workers."""
    server = ForkServer(tmp_path / "forkserver.log")
    yield server
    server.close()


@pytest.fixture
def poller(db: Database) -> Iterator[Callable[[str], int]]:
    """Reads one integer with SQL on its own pool: polling must not take SQLite's write lock from a worker."""
    engine: SAEngine = create_engine(db.url)

    def scalar(sql: str) -> int:
        with engine.connect() as connection:
            return int(connection.execute(text(sql)).scalar_one())

    yield scalar
    engine.dispose()
