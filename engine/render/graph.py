"""Pathway diagrams as Mermaid flowcharts, drawn from the declaration alone (no pathway code runs)."""

from __future__ import annotations

from zorgpad.engine._dsl import Pathway, Step


def _label(text: str) -> str:
    return text.replace('"', "'").replace("\n", " ")


def _node(step: Step) -> str:
    lines = [f"<b>{_label(step.title)}</b>", f"owner: {step.owner.code if step.owner else '?'}"]
    if step.due:
        lines.append(f"due: {step.due}")
    if step.repeat:
        lines.append(f"repeats every {step.repeat}" + (f" until {step.until}" if step.until is not None else ""))
    if step.only_if is not None:
        lines.append(f"only if: {step.only_if}")
    if step.done_when is not None:
        lines.append(f"done when: {step.done_when}")
    shape = ('[["', '"]]') if step.handover else ('["', '"]')
    return f"    {step.id}{shape[0]}{'<br/>'.join(lines)}{shape[1]}"


def to_mermaid(pathway: type[Pathway], *, highlight: str | None = None) -> str:
    """A Mermaid ``flowchart TD`` of ``pathway``; ``highlight`` marks one step (the current one)."""
    out = ["flowchart TD", f'    pathway-start(("{_label(pathway.title)}<br/>{pathway.id} {pathway.version}"))']
    if pathway.enrol_when is not None:
        out[1] = out[1][:-3] + f'<br/>enrol when: {_label(str(pathway.enrol_when))}"))'
    for step in pathway.steps:
        out.append(_node(step))
    for step in pathway.steps:
        if not step.predecessors:
            out.append(f"    pathway-start --> {'|after ' + str(step.offset) + '| ' if step.offset else ''}{step.id}")
        for before in step.predecessors:
            label = f"|after {step.offset}| " if step.offset else ""
            out.append(f"    {before.id} --> {label}{step.id}")
        if step.repeat:
            out.append(f"    {step.id} -. every {step.repeat} .-> {step.id}")
        if step.remind:
            out.append(f'    {step.id}-remind>"remind {step.remind.times}x every {step.remind.every}"]')
            out.append(f"    {step.id} -.-> {step.id}-remind")
        if step.escalate:
            out.append(f'    {step.id}-escalate{{{{"escalate to {step.escalate.to.code} '
                       f'{step.escalate.after} after due"}}}}')
            out.append(f"    {step.id} -.-> {step.id}-escalate")
        if step.handover:
            out.append(f'    {step.id} ==>|handover| {step.id}-to(["{step.handover.to.display}"])')
        if step.informs:
            told = ", ".join(role.code for role in step.informs)
            label = "automatic: inform" if step.automatic else "inform"
            out.append(f'    {step.id} -.->|{label}| {step.id}-told(["{told}"])')
    if pathway.exit_when is not None:
        out.append(f'    pathway-exit(("exit when: {_label(str(pathway.exit_when))}"))')
    if highlight:
        out.append("    classDef current fill:#ffe08a,stroke:#b07d00,stroke-width:3px")
        out.append(f"    class {highlight} current")
    return "\n".join(out) + "\n"
