"""The SIGKILL tests of tick and delivery moved to ``tests/fault/test_sigkill.py`` (20 rounds each, on every
``--db``, with their counts in the fault and fuzz summary).

What remains is one name: ``tests/engine/test_prefect.py`` loads this file by path for its seeding helper,
which now lives in ``tests/fault/seeding.py``. Delete this file once test_prefect.py imports it from there.
"""

from __future__ import annotations

from fault.seeding import seed_open_conversations as _seed_open_conversations

__all__ = ["_seed_open_conversations"]
