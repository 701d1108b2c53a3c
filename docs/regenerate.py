"""Regenerate what the docs and tests pin from the pathway declarations: the Mermaid diagrams in
docs/pathways.md (the newest version of each pathway) and the golden PlanDefinitions in tests/pathways/golden/
(``ID.plandefinition.json`` for the newest version, ``ID-VERSION.plandefinition.json`` for each older one
still registered). Run `make docs` after changing a pathway on purpose, then review the diff: an older
version's file should not change, since its running enrolments rely on it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from zorgpad.engine import Registry
from zorgpad.engine.render.graph import to_mermaid
from zorgpad.fhir.plandefinition import to_plandefinition

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "pathways.md"
GOLDEN = REPO / "tests" / "pathways" / "golden"


def main() -> None:
    """Rewrite the diagrams and the golden files."""
    registry = Registry.default(entry_points_too=False)
    text = DOC.read_text(encoding="utf-8")
    for pathway in registry.latest():
        marker = f"{pathway.id} {pathway.version}"

        def replace(match: re.Match[str], marker: str = marker, chart: str = to_mermaid(pathway)) -> str:
            return f"```mermaid\n{chart}```" if marker in match.group(1) else match.group(0)

        text = re.sub(r"```mermaid\n(.*?)```", replace, text, flags=re.S)
    latest = set(registry.latest())
    for pathway in registry.all():
        name = pathway.id if pathway in latest else f"{pathway.id}-{pathway.version}"
        plan = json.dumps(to_plandefinition(pathway), indent=2, ensure_ascii=False) + "\n"
        (GOLDEN / f"{name}.plandefinition.json").write_text(plan, encoding="utf-8")
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
