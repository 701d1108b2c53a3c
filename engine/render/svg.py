"""Pathway diagrams as inline SVG, drawn server-side from the declaration alone (no JavaScript, no pathway
code runs): steps in layers by their ``after=`` depth, arrows from each step to the steps after it, and the
current step(s) highlighted. The drawing carries ``<title>``/``<desc>`` and each step a ``<title>`` so a
screen reader announces it; colours are paired with a text marker so they are never the only cue. Roles,
deadlines and states are written in the reader's language (``lang``, see :mod:`.words`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from html import escape

from zorgpad.engine._dsl import Pathway, Step
from zorgpad.engine.render import words

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 190, 64, 24, 44, 12
#: How wide a line of a step title may get inside its box (characters).
LINE_CHARS = 27


def depths(pathway: type[Pathway]) -> dict[str, int]:
    """Each step's layer: 0 without predecessors, else one below its deepest predecessor."""
    found: dict[str, int] = {}

    def depth(step: Step) -> int:
        if step.id not in found:
            found[step.id] = 1 + max((depth(p) for p in step.predecessors), default=-1)
        return found[step.id]

    for step in pathway.steps:
        depth(step)
    return found


def _lines(title: str) -> list[str]:
    lines = textwrap.wrap(title, LINE_CHARS) or [""]
    if len(lines) > 2:
        lines = [lines[0], textwrap.shorten(" ".join(lines[1:]), LINE_CHARS, placeholder="…")]
    return lines


def to_svg(pathway: type[Pathway], *, states: Mapping[str, str] | None = None, current: frozenset[str] = frozenset(),
           label: str | None = None, lang: str = "en") -> str:
    """An inline ``<svg>`` of ``pathway``; ``states`` maps step ids to their state (drawn as a class and in
    each step's title), ``current`` lists the steps to highlight. Every text is escaped."""
    states = states or {}
    layers: dict[int, list[Step]] = {}
    for step in pathway.steps:
        layers.setdefault(depths(pathway)[step.id], []).append(step)
    widest = max((len(steps) for steps in layers.values()), default=1)
    width = MARGIN * 2 + widest * BOX_W + (widest - 1) * GAP_X
    height = MARGIN * 2 + len(layers) * BOX_H + max(len(layers) - 1, 0) * GAP_Y
    where: dict[str, tuple[int, int]] = {}
    for level, steps in sorted(layers.items()):
        row_w = len(steps) * BOX_W + (len(steps) - 1) * GAP_X
        left = (width - row_w) // 2
        for i, step in enumerate(steps):
            where[step.id] = (left + i * (BOX_W + GAP_X), MARGIN + level * (BOX_H + GAP_Y))
    title = label or f"{pathway.title} {pathway.version}"
    uid = escape(f"{pathway.id}-{pathway.version}".replace(".", "-"))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="pathway" role="img" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" aria-labelledby="t-{uid} d-{uid}">',
           f'<title id="t-{uid}">{escape(title)}</title>',
           f'<desc id="d-{uid}">{escape(_describe(pathway, states, current, lang))}</desc>',
           f'<defs><marker id="arrow-{uid}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
           'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>']
    for step in pathway.steps:
        x, y = where[step.id]
        for before in step.predecessors:
            bx, by = where[before.id]
            out.append(f'<line class="edge" x1="{bx + BOX_W // 2}" y1="{by + BOX_H}" x2="{x + BOX_W // 2}" '
                       f'y2="{y}" marker-end="url(#arrow-{uid})"/>')
    for step in pathway.steps:
        x, y = where[step.id]
        state = states.get(step.id, "")
        classes = " ".join(c for c in ("step", f"state-{state}" if state else "",
                                       "current" if step.id in current else "") if c)
        owner = words.role(step.owner.code if step.owner else None, lang)
        due = f" · {words.deadline(step.due, lang)}" if step.due else ""
        shown = f" — {words.state(state, lang)}" if state else ""
        out.append(f'<g class="{escape(classes)}" data-step="{escape(step.id)}">')
        out.append(f"<title>{escape(step.title)} ({escape(owner)}{escape(due)}){escape(shown)}</title>")
        width_px = 3 if step.id in current else 1
        out.append(f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" stroke-width="{width_px}"/>')
        for n, line in enumerate(_lines(step.title)):
            out.append(f'<text x="{x + 8}" y="{y + 18 + n * 16}">{escape(line)}</text>')
        marker = "▶ " if step.id in current else ""
        out.append(f'<text class="meta" x="{x + 8}" y="{y + BOX_H - 8}">{escape(marker + owner + due)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def _describe(pathway: type[Pathway], states: Mapping[str, str], current: frozenset[str], lang: str) -> str:
    parts = []
    for step in pathway.steps:
        after = ", ".join(p.title for p in step.predecessors)
        text = step.title + (f" ({words.phrase('after', lang, steps=after)})" if after else "")
        if step.id in states:
            text += f": {words.state(states[step.id], lang)}"
        parts.append(text + (f" [{words.phrase('current', lang)}]" if step.id in current else ""))
    return "; ".join(parts)
