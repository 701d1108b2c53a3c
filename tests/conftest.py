"""Test set-up: every database test runs on the database chosen with ``--db`` (or $ZORGPAD_TEST_DB).

``--db sqlite`` (the default) gives each test a fresh SQLite file; ``--db postgresql://…`` creates a
scratch database next to the one named, migrates it once, and empties its tables before each test.
`make test` runs the whole suite both ways.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from zorgpad.engine.store.db import Database

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPORA = SHARED / "corpora"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", default=os.environ.get("ZORGPAD_TEST_DB", "sqlite"),
                     help="sqlite, or a postgresql:// URL whose server gets a scratch database")


def _is_postgres(option: str) -> bool:
    return option.startswith(("postgresql", "postgres"))


def _admin_url(option: str) -> Any:
    return make_url(option).set(drivername="postgresql+psycopg")


@pytest.fixture(scope="session")
def db_option(request: pytest.FixtureRequest) -> str:
    """The --db option as given."""
    return str(request.config.getoption("--db"))


@pytest.fixture(scope="session")
def _template_url(db_option: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not _is_postgres(db_option):
        path = tmp_path_factory.mktemp("template") / "template.db"
        template = Database(f"sqlite:///{path}")
        template.upgrade()
        template.dispose()
        yield f"sqlite:///{path}"
        return
    base = make_url(db_option).set(drivername="postgresql+psycopg")
    name = f"zorgpad_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    scratch = Database(url)
    scratch.upgrade()
    scratch.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()




@pytest.fixture
def db_url(_template_url: str, tmp_path: Path) -> str:
    """URL of an empty, migrated database for this test (usable by subprocesses too)."""
    if _template_url.startswith("sqlite"):
        target = tmp_path / "zorgpad.db"
        shutil.copy(_template_url.removeprefix("sqlite:///"), target)
        return f"sqlite:///{target}"
    engine = create_engine(_template_url)
    with engine.begin() as connection:
        existing = {r[0] for r in connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname='public'"))}
        tables = [t for t in existing if t != "alembic_version"]
        if tables:
            connection.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()
    return _template_url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """An empty, migrated database on the chosen dialect."""
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def database_factory(db_option: str, _template_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        Callable[[], str]]:
    """Makes further empty, migrated databases on the chosen dialect (e.g. one per server process)."""
    made: list[str] = []

    def make() -> str:
        if _template_url.startswith("sqlite"):
            target = tmp_path_factory.mktemp("db") / "zorgpad.db"
            shutil.copy(_template_url.removeprefix("sqlite:///"), target)
            return f"sqlite:///{target}"
        base = make_url(_template_url)
        name = f"{base.database}_{len(made) + 1}"
        admin = create_engine(_admin_url(db_option), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        made.append(name)
        url = base.set(database=name).render_as_string(hide_password=False)
        fresh = Database(url)
        fresh.upgrade()
        fresh.dispose()
        return url

    yield make
    if made:
        admin = create_engine(_admin_url(db_option), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for name in made:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: hand the fault and fuzz tally to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        from faultcounts import COUNTS

        workeroutput["faultcounts"] = dict(COUNTS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the pytest-xdist controller: add a finished worker's tally to the one printed at the end."""
    from faultcounts import COUNTS

    COUNTS.update(getattr(node, "workeroutput", {}).get("faultcounts", {}))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the fault and fuzz suite's counts (inputs tried, faults injected, lost, duplicated)."""
    from faultcounts import summary

    lines = summary()
    if lines:
        terminalreporter.write_sep("=", "fault and fuzz counts")
        for line in lines:
            terminalreporter.write_line(line)
