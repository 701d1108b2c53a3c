"""Words for people reading a pathway, in Dutch and English: durations, deadlines, roles and step states.

The DSL's own ``str()`` stays English (it is what integrators write and the Mermaid diagrams show); the
dashboard and its diagrams speak the reader's language through these.
"""

from __future__ import annotations

from zorgpad.engine._dsl import Before
from zorgpad.engine._durations import Duration

_UNITS: dict[str, dict[str, tuple[str, str]]] = {
    "nl": {"min": ("minuut", "minuten"), "h": ("uur", "uur"), "d": ("dag", "dagen"), "wk": ("week", "weken"),
           "mo": ("maand", "maanden"), "a": ("jaar", "jaar")},
    "en": {"min": ("minute", "minutes"), "h": ("hour", "hours"), "d": ("day", "days"), "wk": ("week", "weeks"),
           "mo": ("month", "months"), "a": ("year", "years")},
}

#: The standard care roles by code; a pathway's own roles are shown by their code.
ROLES: dict[str, dict[str, str]] = {
    "nl": {"gp": "huisarts", "home-care": "thuiszorg", "hospital": "ziekenhuis", "out-of-hours": "huisartsenpost",
           "ambulance": "ambulance", "coordinator": "coördinator"},
    "en": {"gp": "GP", "home-care": "home care", "hospital": "hospital", "out-of-hours": "out-of-hours GP post",
           "ambulance": "ambulance", "coordinator": "coordinator"},
}

#: Step states, enrolment statuses and business statuses.
STATES: dict[str, dict[str, str]] = {
    "nl": {"pending": "wacht", "ready": "open", "in-progress": "bezig", "completed": "klaar", "skipped": "n.v.t.",
           "cancelled": "geannuleerd", "failed": "mislukt", "overdue": "te laat", "escalated": "geëscaleerd",
           "scheduled": "gepland", "active": "actief", "exited": "beëindigd", "withdrawn": "teruggetrokken"},
    "en": {"pending": "waiting", "ready": "open", "in-progress": "in progress", "completed": "done",
           "skipped": "not applicable", "cancelled": "cancelled", "failed": "failed", "overdue": "overdue",
           "escalated": "escalated", "scheduled": "scheduled", "active": "active", "exited": "exited",
           "withdrawn": "withdrawn"},
}

_PHRASES: dict[str, dict[str, str]] = {
    "nl": {"before": "{by} vóór {what}", "due": "binnen {when}", "every": "elke {when}", "offset": "na {when}",
           "after": "na {steps}", "current": "huidig"},
    "en": {"before": "{by} before {what}", "due": "due {when}", "every": "every {when}", "offset": "after {when}",
           "after": "after {steps}", "current": "current"},
}


def _lang(lang: str) -> str:
    return lang if lang in _UNITS else "en"


def duration(value: Duration, lang: str) -> str:
    """``4 weken`` / ``4 weeks``."""
    singular, plural = _UNITS[_lang(lang)][value.unit]
    return f"{value.value} {singular if value.value == 1 else plural}"


def deadline(value: Duration | Before, lang: str) -> str:
    """A step's ``due=``: a duration, or a duration before the date of a criterion's resource."""
    if isinstance(value, Before):
        return _PHRASES[_lang(lang)]["before"].format(by=duration(value.by, lang), what=value.of.name)
    return duration(value, lang)


def timing(offset: Duration | None, due: Duration | Before | None, repeat: Duration | None, lang: str) -> str:
    """A step's timings in one phrase: ``na 1 dag · binnen 4 weken · elke 3 maanden``."""
    words = _PHRASES[_lang(lang)]
    parts = [words["offset"].format(when=duration(offset, lang))] if offset else []
    if due is not None:
        parts.append(words["due"].format(when=deadline(due, lang)))
    if repeat is not None:
        parts.append(words["every"].format(when=duration(repeat, lang)))
    return " · ".join(parts)


def role(code: str | None, lang: str) -> str:
    """A role's name, or its code when it is not a standard role."""
    return ROLES[_lang(lang)].get(code or "", code or "?")


def state(code: str, lang: str) -> str:
    """A step state's or status's name, or the code itself when it has none."""
    return STATES[_lang(lang)].get(code, code)


def phrase(name: str, lang: str, **values: str) -> str:
    """One of the small phrases above (``after``, ``current``), filled in."""
    return _PHRASES[_lang(lang)][name].format(**values)
