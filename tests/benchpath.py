"""Importing the benchmark harness (bench/, at the repository root) from the tests, where it is not on the path."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def import_bench(module: str) -> ModuleType:
    """Import ``bench.<module>``; the repository root is on sys.path only while importing."""
    sys.path.insert(0, str(REPO))
    try:
        return importlib.import_module(f"bench.{module}")
    finally:
        sys.path.remove(str(REPO))
