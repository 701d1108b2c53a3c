"""Intervals the guidelines leave open, as documented, configurable parameters.

Each is read from an environment variable when the pathways are imported (restart to change it); the
default and its source are given here and in docs/pathways.md. Changing an interval changes what new
rounds of running enrolments do; bump the pathway version when the change should be explicit.
"""

from __future__ import annotations

import os


def _setting(name: str, default: int) -> int:
    raw = os.environ.get(f"ZORGPAD_{name}")
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError(f"ZORGPAD_{name} must be a positive whole number (got {raw!r})")
    return int(raw)


#: Days the GP has to mark a newly identified patient in the palliative register (no guideline number).
MARK_DAYS = _setting("MARK_DAYS", 14)
#: Days for the PZP conversation after the invitation (no guideline number; "at a calm moment").
CONVERSATION_DAYS = _setting("CONVERSATION_DAYS", 28)
#: Months before a patient who was not ready is offered the conversation again (guideline: "later").
REOFFER_MONTHS = _setting("REOFFER_MONTHS", 3)
#: Months between periodic reviews (the 2023 PZP guideline gives no interval; review is event-driven too).
REVIEW_MONTHS = _setting("REVIEW_MONTHS", 6)
#: Days to hand over (changed) emergency-relevant agreements (guideline: promptly; no number).
SHARE_DAYS = _setting("SHARE_DAYS", 2)
#: Months between PaTz listings: PaTz groups meet six times a year.
PATZ_MONTHS = _setting("PATZ_MONTHS", 2)
#: Hours after admission to start the discharge handover (Goede Overdracht: within 48 h).
HANDOVER_START_HOURS = _setting("HANDOVER_START_HOURS", 48)
#: Hours before discharge by which the discharge conversation is held (Goede Overdracht: 12-24 h before).
DISCHARGE_TALK_HOURS = _setting("DISCHARGE_TALK_HOURS", 12)
#: Hours after discharge for the nursing handover and the discharge letter (transfer message within 24 h).
TRANSFER_HOURS = _setting("TRANSFER_HOURS", 24)
#: Hours a receiver has to accept a transfer before the coordinator is told.
ACCEPT_HOURS = _setting("ACCEPT_HOURS", 4)
#: Hours between evaluations in the dying phase (Zorgpad Stervensfase: every 4 hours).
DYING_EVALUATION_HOURS = _setting("DYING_EVALUATION_HOURS", 4)
#: Weeks after death for the bereavement conversation (Richtlijn Rouw: "enkele weken").
BEREAVEMENT_WEEKS = _setting("BEREAVEMENT_WEEKS", 6)
