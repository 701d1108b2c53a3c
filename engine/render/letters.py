"""Letters from pathway templates (Jinja2, Dutch by default, English too, strict undefined variables).

A pathway names its template folder in ``letters``; a letter ``pzp_invitation`` in language ``nl`` is the
file ``pzp_invitation.nl.txt.j2`` (plain text, for a Communication) or ``….nl.html.j2`` (XHTML, for a
Composition narrative). Templates get a context of plain data (see :func:`letter_context`) and a few
filters for FHIR values; domain wording stays in the templates.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

LANGUAGES = ("nl", "en")
LANGUAGE_ENV = "ZORGPAD_LANGUAGE"


def language() -> str:
    """The language for letters and notices: ``$ZORGPAD_LANGUAGE`` (nl or en), Dutch by default."""
    chosen = os.environ.get(LANGUAGE_ENV, "nl")
    return chosen if chosen in LANGUAGES else "nl"


def display(value: Any) -> str:
    """A human text for a CodeableConcept, Coding, Reference, HumanName or plain value."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(display(v) for v in value if v)
    if isinstance(value, Mapping):
        if value.get("text"):
            return str(value["text"])
        if value.get("display"):
            return str(value["display"])
        if "coding" in value:
            return display(value["coding"][0]) if value["coding"] else ""
        if "given" in value or "family" in value:
            return " ".join([*value.get("given", []), value.get("family", "")]).strip()
        if "code" in value:
            return str(value["code"])
        if "reference" in value:
            return str(value["reference"])
    return str(value)


def date(value: Any, fmt: str = "%d-%m-%Y") -> str:
    """A FHIR date or dateTime (or a datetime) as a short date."""
    if isinstance(value, datetime):
        return value.strftime(fmt)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime(fmt)
        except ValueError:
            return value
    return ""


def has_code(value: Any, code: str) -> bool:
    """Whether a CodeableConcept (or a list of them) carries ``code`` in any coding."""
    items = value if isinstance(value, list) else [value]
    return any(isinstance(c, Mapping) and any(cd.get("code") == code for cd in c.get("coding") or [])
               for c in items)


@cache
def _environment(folder: str, html: bool) -> Environment:
    # HTML letters (Composition narratives) are escaped; plain-text letters are not HTML.
    env = Environment(loader=FileSystemLoader(folder), undefined=StrictUndefined,
                      autoescape=select_autoescape(enabled_extensions=("html.j2",), default=html),
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(display=display, date=date)
    env.tests["coded"] = has_code
    return env


def render_letter(folder: str | Path, name: str, context: Mapping[str, Any], *, lang: str | None = None,
                  html: bool = False) -> str:
    """Render letter ``name`` from ``folder`` in ``lang`` (default: :func:`language`)."""
    lang = lang or language()
    if lang not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)} (got {lang!r})")
    suffix = "html" if html else "txt"
    return _environment(str(folder), html).get_template(f"{name}.{lang}.{suffix}.j2").render(**context)


def template_exists(folder: str | Path, name: str, *, html: bool = False) -> bool:
    """Whether ``name`` exists in every language."""
    suffix = "html" if html else "txt"
    return all((Path(folder) / f"{name}.{lang}.{suffix}.j2").is_file() for lang in LANGUAGES)
