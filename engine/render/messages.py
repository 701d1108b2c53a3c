"""Short notices (reminder, escalation, handover, rejection, cancellation) in Dutch and English.

Templates use StrictUndefined: a missing variable is an error, never an empty gap in a letter.
"""

from __future__ import annotations

from typing import Any

from jinja2 import DictLoader, Environment, StrictUndefined

LANGUAGES = ("nl", "en")

_TEMPLATES = {
    "nl/reminder": "Herinnering: '{{ step }}' voor {{ patient }} ({{ pathway }}) is over tijd sinds {{ due }}.",
    "en/reminder": "Reminder: '{{ step }}' for {{ patient }} ({{ pathway }}) has been overdue since {{ due }}.",
    "nl/escalation": "Escalatie: '{{ step }}' voor {{ patient }} ({{ pathway }}) is nog niet gedaan; "
                     "deadline was {{ due }}. Eigenaar: {{ owner }}.",
    "en/escalation": "Escalation: '{{ step }}' for {{ patient }} ({{ pathway }}) is still not done; "
                     "it was due {{ due }}. Owner: {{ owner }}.",
    "nl/handover": "Overdracht: '{{ step }}' voor {{ patient }} ({{ pathway }}) staat voor u klaar.",
    "en/handover": "Handover: '{{ step }}' for {{ patient }} ({{ pathway }}) is waiting for you.",
    "nl/rejected": "Afgewezen: '{{ step }}' voor {{ patient }} ({{ pathway }}): {{ reason }}. "
                   "Wijs de stap opnieuw toe of markeer hem als niet van toepassing.",
    "en/rejected": "Rejected: '{{ step }}' for {{ patient }} ({{ pathway }}): {{ reason }}. "
                   "Reassign the step or mark it not applicable.",
    "nl/inform": "Ter informatie: {{ step }} - {{ patient }} ({{ pathway }}).",
    "en/inform": "For your information: {{ step }} - {{ patient }} ({{ pathway }}).",
    "nl/cancelled": "Vervallen: '{{ step }}' voor {{ patient }} ({{ pathway }}): {{ reason }}.",
    "en/cancelled": "Cancelled: '{{ step }}' for {{ patient }} ({{ pathway }}): {{ reason }}.",
}

_ENVIRONMENT = Environment(loader=DictLoader(_TEMPLATES), undefined=StrictUndefined, autoescape=False,  # noqa: S701 - plain-text notices, never HTML

                           keep_trailing_newline=False)


def render_notice(kind: str, language: str = "nl", **values: Any) -> str:
    """The text of a notice of ``kind`` in ``language`` (``nl`` or ``en``)."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)} (got {language!r})")
    return _ENVIRONMENT.get_template(f"{language}/{kind}").render(**values)
