"""The ASGI application: the composition root that wires the engine, the embedded runner and the HTTP
routes together (the FHIR interface and the dashboard mount here)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from zorgpad.engine import ops
from zorgpad.engine.registry import Registry
from zorgpad.engine.runtime import Engine
from zorgpad.engine.scheduler import EmbeddedRunner
from zorgpad.engine.store.db import Database

#: How ``zorgpad serve --workers N`` hands its options to the worker processes uvicorn starts: JSON with the
#: database URL, the pathway files and the tick interval (see :func:`worker_app`).
SERVE_ENV = "ZORGPAD_SERVE"
#: The app factory each such worker process imports.
WORKER_APP = "zorgpad.engine.app:worker_app"


def build_engine(db: Database, registry: Registry | None = None) -> Engine:
    """The engine with everything wired in: the FHIR layer's delivery channels and change listeners."""
    engine = Engine(db, registry)
    from zorgpad.fhir import subscriptions  # composition root

    subscriptions.install(engine)
    return engine


def create_app(db: Database, *, registry: Registry | None = None, tick_interval: float | None = 5.0) -> FastAPI:
    """The Zorgpad HTTP app over ``db``; with ``tick_interval`` it also runs the embedded runner."""
    engine = build_engine(db, registry)
    runner = EmbeddedRunner(engine, tick_interval) if tick_interval else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if runner is not None:
            runner.start()
        try:
            yield
        finally:
            if runner is not None:
                runner.stop()

    app = FastAPI(title="Zorgpad", version="0.1.0", lifespan=lifespan,
                  description="Proactive palliative care-pathway engine with a FHIR R4 interface.")
    app.state.engine = engine
    app.state.runner = runner

    from zorgpad.fhir.server import create_router, install_error_handlers  # composition root

    install_error_handlers(app)
    app.include_router(create_router(engine))
    from zorgpad.fhir import openapi  # composition root

    openapi.install(app)
    from zorgpad.fhir.access import authenticate  # composition root: the operators' API takes the same tokens
    app.include_router(ops.create_router(engine, authenticate))
    from zorgpad.engine.web import create_dashboard  # composition root: the FHIR access model and ACP codes
    from zorgpad.fhir.access import Principal, Scope
    from zorgpad.fhir.subscriptions import BASE_URL_ENV  # composition root: the public base says https or not
    from zorgpad.pathways import terminology as t

    app.include_router(create_dashboard(
        engine, access=lambda name, org, admin: Scope(Principal(name, org, admin)),
        secure_cookies=(os.environ.get(BASE_URL_ENV) or "").startswith("https://"),
        acp_codes={"cpr": t.CPR.code, "icu": t.ICU_ADMISSION.code, "hospital": t.HOSPITAL_ADMISSION.code,
                   "ventilation": t.VENTILATION.code, "place_of_death": t.PLACE_OF_DEATH.code,
                   "acp": t.ADVANCE_CARE_PLANNING.code}))

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        """Whether the service and its database answer."""
        body: dict[str, Any] = {"status": "ok", "database": db.dialect,
                                "pathways": [p.canonical() for p in engine.registry.latest()]}
        try:
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            body.update(status="unavailable", error=type(exc).__name__)
            return JSONResponse(body, status_code=503)
        if runner is not None:
            body["runner"] = {"interval_s": runner.interval, **vars(runner.counts)}
        return JSONResponse(body)

    return app


def worker_environment(db_url: str, files: Sequence[str], tick_interval: float | None) -> dict[str, str]:
    """The environment entry from which :func:`worker_app` builds a worker process's app."""
    return {SERVE_ENV: json.dumps({"db": db_url, "files": [str(Path(f).resolve()) for f in files],
                                   "tick_interval": tick_interval})}


def worker_app() -> FastAPI:
    """The app of one process of ``zorgpad serve --workers N``, built from ``$ZORGPAD_SERVE``.

    Every worker runs its own embedded runner: on PostgreSQL the tickers claim disjoint batches (``FOR
    UPDATE SKIP LOCKED``); on SQLite they take the database's write lock in turn.
    """
    options = json.loads(os.environ[SERVE_ENV])
    return create_app(Database(options["db"]), registry=Registry.with_files(options["files"]),
                      tick_interval=options["tick_interval"])
