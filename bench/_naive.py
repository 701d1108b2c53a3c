"""Runs the naive-design baselines (bench/baselines/naive_*.py) in a child process with a time limit.

A baseline that is not built yet shows as "n/a (not built)"; one that fails or runs out of time shows
why. Each runs in its own process so its imports (Prefect, APScheduler) and memory stay out of ours.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench._common import REPO, Baseline

NAIVE = {"naive_prefect": "naive Prefect (a flow run per step; Scheduled flow runs as reminders)",
         "naive_apscheduler": "naive APScheduler (a job per reminder, SQLAlchemy job store)"}


def run(module: str, function: str, arguments: dict[str, Any], *, timeout: float, skip: bool = False
        ) -> dict[str, Any]:
    """``bench.baselines.<module>.<function>(**arguments)`` in a child process: its result, or an error."""
    if skip:
        return {"error": "skipped"}
    if not (REPO / "bench" / "baselines" / f"{module}.py").exists():
        return {"error": "not built"}
    command = [sys.executable, "-m", "bench._naive", module, function, json.dumps(arguments)]
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"failed: {tail[:160]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def baseline(module: str, result: dict[str, Any], value_key: str = "per_second") -> Baseline:
    """The table's view of one naive result."""
    name = NAIVE[module]
    if "error" in result:
        return Baseline(name, None, f"n/a ({result['error']})")
    value = result.get(value_key)
    note = str(result.get("note", ""))
    count = result.get("count")
    if count is not None:
        note = f"{count} in {float(result.get('seconds', 0)):.1f} s; {note}".strip("; ")
    return Baseline(name, float(value) if value is not None else None, note)


def _child() -> None:
    import importlib

    module, function, arguments = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    arguments["workdir"] = Path(arguments["workdir"])
    target = getattr(importlib.import_module(f"bench.baselines.{module}"), function)
    print(json.dumps(target(**arguments)))  # the parent reads this line


if __name__ == "__main__":
    _child()
