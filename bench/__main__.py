"""``python -m bench [--full | --tiny] [--db sqlite|postgresql://…] [--only NAME,…] [--out docs/benchmarks.md]``.

Builds the region once, runs the five benchmarks in order (transitions, latency, timers, memory, ingest:
the ones that advance patients take them from the end of the region), prints the table and writes the
markdown report. ``--only`` runs some of them by short name (the report then has only their rows), and
the region is built only when one of those needs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import _region, ingest, latency, memory, report, timers, transitions
from bench._common import FULL, REDUCED, REPO, TINY, Figure, Scratch, Sizes, load_average, machine

#: (short name for --only, benchmark, metric, run), in the order they run.
BENCHMARKS: list[tuple[str, str, str, Callable[..., list[Figure]]]] = [
    ("transitions", "1. Pathway transitions", "durable transitions/s", transitions.run),
    ("latency", "3. Event-to-handover latency", "p50 latency, ms", latency.run),
    ("timers", "2. Timers", "reminders fired/s", timers.run),
    ("memory", "4. Memory", "process memory per waiting enrolment, bytes", memory.run),
    ("ingest", "5. FHIR ingest", "Synthea resources/s", ingest.run),
]
NAMES = [name for name, *_ in BENCHMARKS]


def _only(value: str) -> list[str]:
    """The short names given to ``--only``, checked against :data:`NAMES`."""
    chosen = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in NAMES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(NAMES)} (got {value!r})")
    return chosen


def _needs_region(chosen: list[str], sizes: Sizes) -> bool:
    """Whether a chosen benchmark runs in the region (memory does only up to the region's size; ingest never)."""
    return any(name in ("transitions", "latency", "timers") for name in chosen) or (
        "memory" in chosen and sizes.memory_waiting <= sizes.patients)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the sizes of issue #7 (takes hours)")
    size.add_argument("--tiny", action="store_true", help="a few hundred rows: checks that the harness runs")
    parser.add_argument("--db", default="sqlite", help="sqlite (files in a scratch folder) or a postgresql:// URL "
                        "whose server gets scratch databases")
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"), help="where to write the report")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive-design baselines (shown as n/a)")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--only", type=_only, default=NAMES, metavar="NAME[,NAME]",
                        help=f"run only these benchmarks ({', '.join(NAMES)}); default: all")
    return parser.parse_args(argv)


_START = time.perf_counter()


def _log(message: str) -> None:
    print(f"[{time.perf_counter() - _START:6.1f} s] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run everything; return the exit status (1 when a benchmark crashed)."""
    arguments = _arguments(argv)
    sizes: Sizes = FULL if arguments.full else TINY if arguments.tiny else REDUCED
    if arguments.no_naive:
        sizes = dataclasses.replace(sizes, naive=False)
    workdir = Path(arguments.workdir or tempfile.mkdtemp(prefix="zorgpad-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = Scratch(arguments.db, workdir)
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    started = time.perf_counter()
    load_start = load_average()
    figures: list[Figure] = []
    crashed = False
    notes: list[str] = []
    try:
        info = machine(arguments.db)
        region = None
        if _needs_region(arguments.only, sizes):
            _log(f"bench: {sizes.name} sizes on {arguments.db}; building the region")
            region = _region.build(scratch, sizes, workdir, log=_log)
            copies = len(region.main_cohort) + len(region.lateness_cohort)
            notes.append(f"Region set-up (not measured): one patient through the engine, {copies:,} copies of "
                         f"its {region.rows_per_patient} rows in {region.setup_seconds:.0f} s; "
                         f"{'; '.join(region.notes)}.")
        if arguments.only != NAMES:
            notes.append(f"Only {', '.join(arguments.only)} ran (`--only`); "
                         f"the region was {'built' if region is not None else 'not needed'}.")
        for name, benchmark, metric, run in BENCHMARKS:
            if name not in arguments.only:
                continue
            _log(f"bench: {benchmark}")
            try:
                figures.extend(run(region, scratch, sizes, workdir, log=_log))
            except Exception as exc:  # one broken benchmark must not hide the others' figures
                crashed = True
                traceback.print_exc()
                figures.append(Figure(benchmark, metric, None, "", "", False,
                                      note=f"crashed: {type(exc).__name__}: {str(exc)[:200]}"))
    finally:
        scratch.close()
        if arguments.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    figures.sort(key=lambda f: f.benchmark[:2])
    seconds = time.perf_counter() - started
    command = "python -m bench" + (" --full" if arguments.full else " --tiny" if arguments.tiny else "")
    if arguments.only != NAMES:
        command += f" --only {','.join(arguments.only)}"
    text = report.markdown(figures, info, sizes, started=started_at, seconds=seconds, command=command,
                           load=(load_start, load_average()), notes=notes)
    out = Path(arguments.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(report.text_table(figures))
    _log(f"bench: wrote {out} in {seconds:.0f} s")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
