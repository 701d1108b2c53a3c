"""A real `zorgpad serve` process for the HTTP benchmarks (the same way tests/fhir/conftest.py starts one)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tokens import create_token

from bench._common import REPO

ZORGPAD = REPO / ".venv" / "bin" / "zorgpad"
FHIR_JSON = "application/fhir+json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `zorgpad serve`."""

    base_url: str
    db_url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def fhir(self) -> str:
        """The FHIR base URL."""
        return f"{self.base_url}/fhir"

    def token(self, organisation: str | None = None) -> str:
        """A bearer token for ``Organization/<organisation>``, or an administrator's when None."""
        database = Database(self.db_url)
        try:
            if organisation is None:
                return database.run(lambda s: create_token(s, datetime.now(UTC), admin=True, name="bench"))
            reference = f"Organization/{organisation}"
            return database.run(lambda s: create_token(s, datetime.now(UTC), organisation=reference))
        finally:
            database.dispose()

    def headers(self, token: str) -> dict[str, str]:
        """FHIR JSON headers with the bearer token."""
        return {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON, "Authorization": f"Bearer {token}"}

    def rss_bytes(self) -> int:
        """The server process's resident set size."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS for the server process")

    def stop(self) -> None:
        """Terminate the process (killed after 15 s) and remove its log."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.unlink(missing_ok=True)


def start(db_url: str, *, tick_interval: float = 0, workers: int = 1) -> Server:
    """Start `zorgpad serve` (``--workers``) on a free port with the registered pathways and wait for
    /healthz."""
    return start_many([db_url], tick_interval=tick_interval, workers=workers)[0]


def start_many(db_urls: list[str], *, tick_interval: float = 0, workers: int = 1) -> list[Server]:
    """Start one `zorgpad serve` per database at once (start-up is mostly imports) and wait for all."""
    launched = [_launch(url, tick_interval, workers) for url in db_urls]
    return [_wait(*item) for item in launched]


def _launch(db_url: str, tick_interval: float, workers: int) -> tuple[str, str, subprocess.Popen[bytes], Path]:
    port = _free_port()
    args = [str(ZORGPAD), "serve", "--port", str(port), "--db", db_url, "--tick-interval", str(tick_interval),
            "--workers", str(workers)]
    # Output goes to a file: a pipe nobody reads fills up and freezes the server.
    log = tempfile.NamedTemporaryFile(prefix="zorgpad-bench-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(args, cwd=REPO, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return f"http://127.0.0.1:{port}", db_url, process, Path(log.name)


def _wait(base: str, db_url: str, process: subprocess.Popen[bytes], log: Path) -> Server:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"zorgpad serve exited with {process.returncode}: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return Server(base, db_url, process, log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("zorgpad serve did not answer /healthz within 60 s")
