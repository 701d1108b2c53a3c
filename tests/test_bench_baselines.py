"""The benchmark's naive baselines (bench/baselines) run end to end at tiny sizes on the chosen database.

Each function is called as the harness calls it and must do every transition and fire every reminder
exactly once (they count the outbox rows and refuse duplicates), report the agreed shape and leave no
scratch table behind. Speed is never asserted: the time boxes are widened (they end as soon as the work
is done) so that a loaded machine makes the test slower rather than failing it. The two Prefect calls
share one Prefect server, started once for the module, so that the test stays within its time budget.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from benchpath import import_bench
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

PATIENTS, PENDING, DUE = 5, 50, 5
#: Time boxes for the tiny runs, in seconds (the harness's are far shorter; these only bound a stuck run:
#: with the rest of the suite on the other worker, a Prefect flow run here has taken over a minute).
WIDE = 180.0

pytestmark = pytest.mark.slow


def _import(name: str) -> ModuleType:
    """Import ``bench.baselines.<name>``."""
    return import_bench(f"baselines.{name}")


@pytest.fixture(scope="module")
def naive_prefect(db_option: str) -> Iterator[ModuleType]:
    """The Prefect baseline module, with wide time boxes (SQLite pass only: see TestNaivePrefect)."""
    if db_option.startswith("postgres"):
        pytest.skip("the Prefect baseline's smoke test runs in the SQLite pass (see TestNaivePrefect)")
    module = _import("naive_prefect")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("TRANSITION_WINDOW_S", "REMINDER_WINDOW_S"):
            patch.setattr(module, name, WIDE)
        yield module


@pytest.fixture(scope="module")
def naive_apscheduler() -> Iterator[ModuleType]:
    """The APScheduler baseline module, with wide time boxes."""
    module = _import("naive_apscheduler")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("TRANSITION_WINDOW_S", "PENDING_ADD_S", "DUE_ADD_S", "REMINDER_WINDOW_S"):
            patch.setattr(module, name, WIDE)
        yield module


@pytest.fixture(scope="module")
def prefect_api(naive_prefect: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Prefect server for the module's Prefect calls; stopped after them."""
    with naive_prefect.prefect_server(tmp_path_factory.mktemp("prefect")) as api:
        yield api


def _scratch_tables(db_url: str) -> list[str]:
    url = make_url(db_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    try:
        return [t for t in inspect(engine).get_table_names() if t.startswith("bench_naive_")]
    finally:
        engine.dispose()


def _check_transitions(result: dict[str, Any]) -> None:
    assert {"per_second", "count", "seconds", "note"} == set(result)
    assert PATIENTS == result["count"], result["note"]
    assert result["seconds"] > 0
    assert result["per_second"] > 0
    assert result["note"]


def _check_reminders(result: dict[str, Any]) -> None:
    assert {"per_second", "count", "seconds", "p99_lateness_s", "note"} == set(result)
    assert DUE == result["count"], result["note"]
    assert result["seconds"] > 0
    assert result["per_second"] > 0
    assert isinstance(result["p99_lateness_s"], float)
    assert result["note"]


class TestNaivePrefect:
    """One flow run per patient step; Scheduled flow runs as reminders.

    On the SQLite pass only: the Prefect server keeps its own SQLite state whatever ``--db`` says, and its
    start and per-run processes are most of this module's time; `make bench BENCH_DB=postgresql://…`
    runs the baseline on PostgreSQL.
    """

    def test_every_patient_moves_once_in_its_own_flow_run(self, naive_prefect: ModuleType, prefect_api: str,
                                                          db_url: str, tmp_path: Path) -> None:
        """5 patients: 5 flow runs, each patient at step 1, the scratch table dropped."""
        result = naive_prefect.transitions(PATIENTS, db_url, tmp_path, api=prefect_api)

        _check_transitions(result)
        assert [] == _scratch_tables(db_url)

    def test_due_reminders_fire_at_most_once_as_scheduled_flow_runs(
            self, naive_prefect: ModuleType, prefect_api: str, db_url: str, tmp_path: Path) -> None:
        """50 pending of which 5 due: no reminder fires twice (the baseline raises if one does) and some
        fire. How many start within the time box is this slow design's speed, which the benchmark reports
        (a run the Runner has not started by then counts at the window's length): not asserted here."""
        result = naive_prefect.reminders(PENDING, DUE, db_url, tmp_path, api=prefect_api)

        assert {"per_second", "count", "seconds", "p99_lateness_s", "note"} == set(result)
        assert 1 <= result["count"] <= DUE, result["note"]
        assert f"{result['count']} fired" in result["note"]
        assert isinstance(result["p99_lateness_s"], float)
        assert [] == _scratch_tables(db_url)


class TestNaiveAPScheduler:
    """One APScheduler job per transition and per reminder, in a SQLAlchemyJobStore."""

    def test_every_patient_moves_once_through_its_own_job(self, naive_apscheduler: ModuleType, db_url: str,
                                                          tmp_path: Path) -> None:
        """5 patients: 5 jobs run, each patient at step 1, the job store and step table dropped."""
        result = naive_apscheduler.transitions(PATIENTS, db_url, tmp_path)

        _check_transitions(result)
        assert [] == _scratch_tables(db_url)

    def test_every_due_reminder_fires_exactly_once_from_the_job_store(self, naive_apscheduler: ModuleType,
                                                                      db_url: str, tmp_path: Path) -> None:
        """50 pending jobs of which 5 due: 5 outbox rows, one per due reminder, and no far-future one."""
        result = naive_apscheduler.reminders(PENDING, DUE, db_url, tmp_path)

        _check_reminders(result)
        assert [] == _scratch_tables(db_url)
