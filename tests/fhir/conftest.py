"""A real Zorgpad server process per test module, on its own database, reached over HTTP.

``fhir_server.client(token)`` gives an httpx client with that bearer token; ``fhir_server.token(org)``
makes an organisation token; ``fhir_server.admin`` is an administrator token.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlmodel import func, select
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import ResourceVersion, StoredResource
from zorgpad.engine.store.tokens import create_token

REPO = Path(__file__).resolve().parents[2]
ZORGPAD = REPO / ".venv" / "bin" / "zorgpad"
FHIR_JSON = "application/fhir+json"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FHIRServer:
    """A running `zorgpad serve` process."""

    base_url: str
    db_url: str
    process: subprocess.Popen[bytes]
    log: Path | None = None
    admin: str = ""
    clients: list[httpx.Client] = field(default_factory=list)

    def stored_counts(self) -> tuple[int, int]:
        """Rows in the ``resource`` and ``resource_version`` tables (to show that nothing was stored)."""
        db = Database(self.db_url)
        try:
            return db.run(lambda s: (s.exec(select(func.count()).select_from(StoredResource)).one(),
                                     s.exec(select(func.count()).select_from(ResourceVersion)).one()))
        finally:
            db.dispose()

    def output(self) -> str:
        """What the server has printed so far (warnings, tracebacks)."""
        return self.log.read_text(errors="replace") if self.log is not None else ""

    @property
    def fhir(self) -> str:
        """The FHIR base URL."""
        return f"{self.base_url}/fhir"

    def token(self, organisation: str) -> str:
        """A new bearer token for ``Organization/<organisation>`` (or a full reference)."""
        ref = organisation if organisation.startswith("Organization/") else f"Organization/{organisation}"
        db = Database(self.db_url)
        try:
            return db.run(lambda s: create_token(s, datetime.now(UTC), organisation=ref))
        finally:
            db.dispose()

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client on the FHIR base with ``token`` (the admin token when None; "" for none)."""
        headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        token = self.admin if token is None else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        client = httpx.Client(base_url=self.fhir, headers=headers, timeout=30)
        self.clients.append(client)
        return client


def start_server(db_url: str, *, extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> FHIRServer:
    """Start `zorgpad serve` on a free port and wait until /healthz answers."""
    port = free_port()
    args = [str(ZORGPAD), "serve", "--port", str(port), "--db", db_url, "--tick-interval", "0",
            "--file", str(REPO / "tests" / "example_pathway.py"), *extra_args]
    # Output goes to a file: a pipe nobody reads fills up and freezes the server.
    log = tempfile.NamedTemporaryFile(prefix="zorgpad-serve-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(args, cwd=REPO, env={**os.environ, **(env or {})}, stdout=log,
                               stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = Path(log.name).read_text(errors="replace")
            raise RuntimeError(f"zorgpad serve exited with {process.returncode}: {output}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError("zorgpad serve did not answer /healthz within 30 s")
    server = FHIRServer(base, db_url, process, log=Path(log.name))
    db = Database(db_url)
    server.admin = db.run(lambda s: create_token(s, datetime.now(UTC), admin=True, name="test-admin"))
    db.dispose()
    return server


def stop_server(server: FHIRServer) -> None:
    """Stop the process and close the clients."""
    for client in server.clients:
        client.close()
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    if server.log is not None:
        server.log.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def fhir_server(database_factory: Callable[[], str]) -> Iterator[FHIRServer]:
    """A Zorgpad server for this test module, with the example pathways registered."""
    server = start_server(database_factory())
    yield server
    stop_server(server)


assert sys.version_info >= (3, 11)
