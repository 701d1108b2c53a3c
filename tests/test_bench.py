"""The benchmark harness (bench/, `make bench`) runs end to end at tiny sizes and writes a complete table.

Shape only: speed numbers never go in the unit tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = ("1. Pathway transitions", "2. Timers", "3. Event-to-handover latency", "4. Memory", "5. FHIR ingest")
DRIVER_FLOOR = "raw driver floor (DB-API executemany, no SQLAlchemy)"
#: The baselines that must stand beside each benchmark's figures (besides the others).
EXPECTED_BASELINES = {
    "1. Pathway transitions": {"raw database floor", DRIVER_FLOOR},
    "2. Timers": {"raw database floor", DRIVER_FLOOR},
    "3. Event-to-handover latency": {"raw database floor",
                                     "validation alone (validate_resource per request body, one core)"},
    "5. FHIR ingest": {"raw database floor", DRIVER_FLOOR, "validation alone (validate_resource, one core)"},
}


def _bench(db_option: str, tmp_path: Path, *options: str) -> str:
    """Run `python -m bench --no-naive` with ``options`` and return the report it wrote."""
    out = tmp_path / "benchmarks.md"
    done = subprocess.run([sys.executable, "-m", "bench", "--no-naive", *options, "--db", db_option,
                           "--out", str(out), "--workdir", str(tmp_path / "work")],
                          cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert 0 == done.returncode, done.stderr[-3000:]
    return out.read_text()


def _columns(report: str) -> list[str]:
    """The names in the results table's header row."""
    header = report.split("## Results", 1)[1].splitlines()[2]
    return [cell.strip() for cell in header.strip("|").split("|")]


def _table(report: str) -> list[list[str]]:
    """The cells of the results table's body rows."""
    lines = report.split("## Results", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [line for line in lines if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def _baselines(report: str) -> dict[str, dict[str, str]]:
    """benchmark -> baseline name -> its ours / baseline ratio, from the results table."""
    columns = _columns(report)
    name, ratio = columns.index("baseline"), columns.index("ours / baseline")
    out: dict[str, dict[str, str]] = {}
    benchmark = ""
    for row in _table(report):
        benchmark = row[0] or benchmark
        out.setdefault(benchmark, {})[row[name]] = row[ratio]
    return out


@pytest.mark.slow
class TestBenchHarness:
    """`python -m bench --tiny` on the database chosen with --db."""

    def test_the_report_has_every_benchmark_with_a_numeric_ratio(self, db_option: str, tmp_path: Path) -> None:
        """Each of the five benchmarks has a row, and each has at least one numeric ours/baseline ratio; the
        driver floor stands beside benchmarks 1, 2 and 5, validation alone beside 3 and 5, each measured."""
        report = _bench(db_option, tmp_path, "--tiny")
        rows = _table(report)
        assert "ours / baseline" in _columns(report)
        ratio_column = _columns(report).index("ours / baseline")
        benchmark = ""
        ratios: dict[str, list[float]] = {}
        for row in rows:
            benchmark = row[0] or benchmark
            try:
                ratios.setdefault(benchmark, []).append(float(row[ratio_column]))
            except ValueError:
                ratios.setdefault(benchmark, [])
        assert list(BENCHMARKS) == sorted(ratios)
        assert all(ratios[name] for name in BENCHMARKS), ratios
        assert "Machine and settings" in report
        assert "naive Prefect" in report
        assert "naive APScheduler" in report
        baselines = _baselines(report)
        for benchmark, names in EXPECTED_BASELINES.items():
            assert names <= set(baselines[benchmark]), (benchmark, baselines[benchmark])
            for name in names:  # measured: a number, not n/a
                float(baselines[benchmark][name])

    def test_only_memory_reports_just_the_memory_row(self, db_option: str, tmp_path: Path) -> None:
        """`--only memory` runs one benchmark: the table has only its row, and its figure is a number of bytes."""
        report = _bench(db_option, tmp_path, "--only", "memory", "--tiny")

        rows = [row for row in _table(report) if row[0]]
        assert ["4. Memory"] == [row[0] for row in rows]
        figure = rows[0][_columns(report).index("Zorgpad")]
        assert figure.endswith(" B"), figure
        float(figure.removesuffix(" B").replace(",", ""))
