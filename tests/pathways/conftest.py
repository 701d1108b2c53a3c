"""Shared fixtures of the pathway scenario tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from zorgpad.engine.testing import PathwayHarness

from tests.pathways.region import harness_with_region


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[PathwayHarness]:
    """The fictional region with every palliative pathway, at START, letters in Dutch."""
    monkeypatch.delenv("ZORGPAD_LANGUAGE", raising=False)
    monkeypatch.delenv("ZORGPAD_COORDINATOR_ORG", raising=False)
    harness = harness_with_region()
    yield harness
    harness.close()
