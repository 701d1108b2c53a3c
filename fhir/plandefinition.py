"""Pathway definitions as FHIR R4 PlanDefinitions (CPG-on-FHIR style).

| DSL | PlanDefinition |
|---|---|
| id, version, url, title, docstring | ``id``, ``version``, ``url``, ``title``, ``description``, ``type`` |
| class name without a version mark (``V1``) | ``name``: the same for every version |
| ``enrol_when`` / ``exit_when`` | root action ``condition`` ``applicability`` / ``stop`` (FHIRPath) |
| a step | a nested ``action`` (``id`` = step id), ``participant.role`` = the care role, ``code`` |
| ``after=`` + ``offset=`` | ``relatedAction`` (``after-end``, ``offsetDuration``) |
| ``due=`` | ``timingDuration`` |
| ``only_if=`` / ``done_when=`` | ``condition`` ``applicability`` / ``stop`` |
| repeat, until, reminders, escalation, handover, again_when, inform, letters, due=before | Zorgpad extensions |
"""

from __future__ import annotations

import re
from typing import Any

from zorgpad.engine import ROLE_SYSTEM, Before, Coding, Criterion, Duration, Pathway, Step
from zorgpad.engine._criteria import AllOf, AnyOf

JSON = dict[str, Any]
UCUM = "http://unitsofmeasure.org"
EXT = "https://zorgpad.nl/fhir/StructureDefinition"
_UNIT_NAMES = {"min": "minutes", "h": "hours", "d": "days", "wk": "weeks", "mo": "months", "a": "years"}


def to_duration(duration: Duration) -> JSON:
    """A FHIR Duration with its UCUM code."""
    return {"value": duration.value, "unit": _UNIT_NAMES[duration.unit], "system": UCUM, "code": duration.unit}


def _coding(coding: Coding) -> JSON:
    out: JSON = {"system": coding.system, "code": coding.code}
    if coding.display:
        out["display"] = coding.display
    return out


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def to_fhirpath(criterion: Criterion) -> str:
    """The criterion as a FHIRPath expression over the resource."""
    parts = []
    if criterion.codes:
        alternatives = " or ".join(f"(system = {_quote(c.system)} and code = {_quote(c.code)})"
                                   for c in criterion.codes)
        parts.append(f"{criterion.path}.coding.where({alternatives}).exists()")
    if criterion.statuses:
        parts.append("(" + " or ".join(f"status = {_quote(s)}" for s in criterion.statuses) + ")")
    value = criterion.value
    if isinstance(value, bool):
        parts.append(f"value = {str(value).lower()}")
    elif isinstance(value, Coding):
        parts.append(f"value.coding.where(system = {_quote(value.system)} and code = {_quote(value.code)}).exists()")
    elif isinstance(value, int | float):
        parts.append(f"(value = {value} or value.value = {value})")
    elif isinstance(value, str):
        parts.append(f"value = {_quote(value)}")
    for element in criterion.required_elements:
        name = element.removesuffix("[x]")
        parts.append(f"({name}.exists() and {name} != false)")
    return f"{criterion.resource_type}.where({' and '.join(parts)}).exists()" if parts \
        else f"{criterion.resource_type}.exists()"


def _expression(condition: Criterion | AnyOf | AllOf) -> str:
    if isinstance(condition, AllOf):
        return " and ".join(f"({_expression(part)})" for part in condition.parts)
    return " or ".join(to_fhirpath(c) for c in condition.leaves())


def _condition(kind: str, condition: Criterion | AnyOf | AllOf) -> JSON:
    expression = _expression(condition)
    return {"kind": kind, "expression": {"description": str(condition), "language": "text/fhirpath",
                                         "expression": expression}}


def _role(code: str) -> JSON:
    return {"type": "practitioner", "role": {"coding": [{"system": ROLE_SYSTEM, "code": code}]}}


def action_id(step: Step) -> str:
    """The step's id as a FHIR id (no underscores): ``share_out_of_hours`` → ``share-out-of-hours``."""
    return step.id.replace("_", "-")


def to_action(step: Step) -> JSON:
    """One step as a PlanDefinition action."""
    action: JSON = {"id": action_id(step), "title": step.title}
    if step.description:
        action["description"] = step.description
    if step.code is not None:
        action["code"] = [{"coding": [_coding(step.code)], "text": step.code.display or step.title}]
    conditions = []
    if step.only_if is not None:
        conditions.append(_condition("applicability", step.only_if))
    if step.done_when is not None:
        conditions.append(_condition("stop", step.done_when))
    if conditions:
        action["condition"] = conditions
    related = []
    for before in step.predecessors:
        entry: JSON = {"actionId": action_id(before), "relationship": "after-end"}
        if step.offset is not None:
            entry["offsetDuration"] = to_duration(step.offset)
        related.append(entry)
    if related:
        action["relatedAction"] = related
    if isinstance(step.due, Duration):
        action["timingDuration"] = to_duration(step.due)
    if step.owner is not None:
        action["participant"] = [_role(step.owner.code)]
    action["type"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/action-type", "code": "create"}]}
    extensions: list[JSON] = []
    if step.offset is not None and not step.predecessors:
        extensions.append({"url": f"{EXT}/start-offset", "valueDuration": to_duration(step.offset)})
    if isinstance(step.due, Before):
        extensions.append({"url": f"{EXT}/due-before", "extension": [
            {"url": "by", "valueDuration": to_duration(step.due.by)},
            {"url": "of", "valueExpression": {"language": "text/fhirpath", "expression": to_fhirpath(step.due.of),
                                              "description": step.due.of.name}},
            {"url": "date", "valueString": step.due.of.date or ""}]})
    if step.repeat is not None:
        extensions.append({"url": f"{EXT}/repeat", "valueDuration": to_duration(step.repeat)})
    if step.until is not None:
        extensions.append({"url": f"{EXT}/repeat-until", "valueExpression": {
            "language": "text/fhirpath", "expression": _expression(step.until), "description": str(step.until)}})
    if step.remind is not None:
        reminder: list[JSON] = [{"url": "every", "valueDuration": to_duration(step.remind.every)},
                                {"url": "times", "valueInteger": step.remind.times}]
        if step.remind.first is not None:
            reminder.append({"url": "first", "valueDuration": to_duration(step.remind.first)})
        if step.remind.to is not None:
            reminder.append({"url": "to", "valueCode": step.remind.to.code})
        extensions.append({"url": f"{EXT}/reminder", "extension": reminder})
    if step.escalate is not None:
        extensions.append({"url": f"{EXT}/escalation", "extension": [
            {"url": "after", "valueDuration": to_duration(step.escalate.after)},
            {"url": "to", "valueCode": step.escalate.to.code}]})
    if step.handover is not None:
        handover: list[JSON] = [{"url": "to", "valueCode": step.handover.to.code}]
        handover += [{"url": "content", "valueExpression": {"language": "text/fhirpath", "expression": to_fhirpath(c),
                                                            "description": c.name}} for c in step.handover.content]
        extensions.append({"url": f"{EXT}/handover", "extension": handover})
    if step.only_if is not None and step.otherwise == "skip":
        extensions.append({"url": f"{EXT}/otherwise", "valueCode": "skip"})
    if step.again_when is not None:
        extensions.append({"url": f"{EXT}/again-when", "valueExpression": {
            "language": "text/fhirpath", "expression": _expression(step.again_when),
            "description": str(step.again_when)}})
    extensions += [{"url": f"{EXT}/inform", "valueCode": role.code} for role in step.informs]
    if step.automatic:
        extensions.append({"url": f"{EXT}/automatic", "valueBoolean": True})
    if step.letter is not None:
        extensions.append({"url": f"{EXT}/letter", "valueString": step.letter})
    if extensions:
        action["extension"] = extensions
    return action


def plan_name(pathway: type[Pathway]) -> str:
    """The PlanDefinition's ``name``: the class name without a trailing version mark (``AdvanceCarePlanningV1``
    and ``AdvanceCarePlanning`` are both ``AdvanceCarePlanning``), so that every version has the same one."""
    return re.sub(r"V\d+(?:_\d+)*$", "", pathway.__name__) or pathway.__name__


def to_plandefinition(pathway: type[Pathway]) -> JSON:
    """The PlanDefinition of one pathway version."""
    root: JSON = {"id": "pathway", "title": pathway.title}
    conditions = []
    if pathway.enrol_when is not None:
        conditions.append(_condition("applicability", pathway.enrol_when))
    if pathway.exit_when is not None:
        conditions.append(_condition("stop", pathway.exit_when))
    if conditions:
        root["condition"] = conditions
    root["action"] = [to_action(step) for step in pathway.steps]
    plan: JSON = {
        "resourceType": "PlanDefinition",
        "id": pathway.id,
        "meta": {"versionId": pathway.version,
                 "profile": ["http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-pathwaydefinition"]},
        "url": pathway.url,
        "version": pathway.version,
        "name": plan_name(pathway),
        "title": pathway.title,
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                             "code": "clinical-protocol"}]},
        "status": "active",
        "publisher": "Zorgpad",
        "action": [root],
    }
    if pathway.description:
        plan["description"] = pathway.description
    return plan
