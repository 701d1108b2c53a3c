"""The shipped pathways as FHIR R4 PlanDefinitions: pinned by golden files, valid, and CPG-shaped.

A golden file is exactly what ``zorgpad pathways export ID`` prints. When a pathway changes on purpose,
regenerate it and review the diff::

    .venv/bin/zorgpad pathways export ID > tests/pathways/golden/ID.plandefinition.json
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fhir.resources.R4B.plandefinition import PlanDefinition
from zorgpad.engine import ROLE_SYSTEM, Duration, Pathway, Step
from zorgpad.fhir.plandefinition import to_duration, to_plandefinition
from zorgpad.pathways import REGISTRY

JSON = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
ZORGPAD = REPO / ".venv" / "bin" / "zorgpad"
GOLDEN = Path(__file__).resolve().parent / "golden"
UCUM = "http://unitsofmeasure.org"

PATHWAYS = [pytest.param(p, id=f"{p.id}-{p.version}") for p in REGISTRY]
#: The newest version of each shipped pathway; older versions still registered are pinned too, by version.
LATEST = {p.id: max((q for q in REGISTRY if q.id == p.id), key=lambda q: tuple(map(int, q.version.split("."))))
          for p in REGISTRY}


def action_id(step: Step) -> str:
    """The FHIR id of a step's action: the step id with hyphens (the ``id`` type allows no underscores)."""
    return step.id.replace("_", "-")


def golden_name(pathway: type[Pathway]) -> str:
    """``palliative-acp`` for the newest version, ``palliative-acp-1.0.0`` for an older one still registered."""
    return pathway.id if LATEST[pathway.id] is pathway else f"{pathway.id}-{pathway.version}"


def golden_path(name: str) -> Path:
    """Where a golden PlanDefinition lives."""
    return GOLDEN / f"{name}.plandefinition.json"


def regenerate_hint(name: str) -> str:
    """What to run when a pathway changed on purpose."""
    return (f"PlanDefinition {name} differs from its golden file; if the change is intended, run `make docs`\n"
            "and review the diff (an older version's file should not change: its enrolments rely on it)")


def golden(name: str) -> JSON:
    """The pinned PlanDefinition."""
    path = golden_path(name)
    assert path.is_file(), f"no golden file {path.relative_to(REPO)}\n{regenerate_hint(name)}"
    content: JSON = json.loads(path.read_text(encoding="utf-8"))
    return content


def actions(plan: JSON) -> dict[str, JSON]:
    """The step actions, nested under the root action, by id."""
    [root] = plan["action"]
    return {a["id"]: a for a in root["action"]}


def ucum(duration: Duration) -> JSON:
    """A Duration as the UCUM-coded FHIR Duration the export should carry."""
    return to_duration(duration)


class TestGoldenFiles:
    """Each shipped pathway's export equals its golden file."""

    @pytest.mark.parametrize("pathway", PATHWAYS)
    def test_the_export_equals_the_golden_file(self, pathway: type[Pathway]) -> None:
        """to_plandefinition(pathway) is the pinned JSON."""
        actual = to_plandefinition(pathway)

        assert golden(golden_name(pathway)) == actual, regenerate_hint(golden_name(pathway))

    def test_every_golden_file_belongs_to_a_shipped_pathway(self) -> None:
        """No golden file is left behind for a pathway that is no longer shipped."""
        stale = sorted(p.name for p in GOLDEN.glob("*.plandefinition.json")
                       if p.name.removesuffix(".plandefinition.json") not in {golden_name(q) for q in REGISTRY})

        assert [] == stale

    def test_the_golden_files_are_what_the_cli_prints(self) -> None:
        """`zorgpad pathways export palliative-acp` prints the golden JSON (and nothing on stderr)."""
        result = subprocess.run([str(ZORGPAD), "pathways", "export", "palliative-acp"], cwd=REPO,
                                capture_output=True, text=True, timeout=120, check=False)

        assert (0, "") == (result.returncode, result.stderr)
        assert golden("palliative-acp") == json.loads(result.stdout), regenerate_hint("palliative-acp")

    def test_an_unknown_pathway_is_one_error_line_and_exit_status_1(self) -> None:
        """`zorgpad pathways export` of an unknown id prints one `zorgpad: error:` line naming it and exits 1."""
        result = subprocess.run([str(ZORGPAD), "pathways", "export", "no-such-pathway"], cwd=REPO,
                                capture_output=True, text=True, timeout=120, check=False)

        lines = result.stderr.splitlines()
        assert (1, "") == (result.returncode, result.stdout)
        assert 1 == len(lines), result.stderr
        assert lines[0].startswith("zorgpad: error: ")
        assert "no-such-pathway" in lines[0]


class TestPlanDefinitionShape:
    """The exports are valid R4 PlanDefinitions in the CPG-on-FHIR pathway style."""

    @pytest.mark.parametrize("pathway", PATHWAYS)
    def test_the_export_is_a_valid_plandefinition(self, pathway: type[Pathway]) -> None:
        """fhir.resources accepts the export as a PlanDefinition."""
        plan = to_plandefinition(pathway)

        validated = PlanDefinition.model_validate(plan)

        assert (pathway.id, pathway.version, pathway.url) == (validated.id, validated.version, validated.url)

    @pytest.mark.parametrize("pathway", PATHWAYS)
    def test_the_export_declares_the_cpg_pathway_profile(self, pathway: type[Pathway]) -> None:
        """meta.profile names cpg-pathwaydefinition and the type is clinical-protocol."""
        plan = to_plandefinition(pathway)

        assert ["http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-pathwaydefinition"] == plan["meta"]["profile"]
        assert "clinical-protocol" == plan["type"]["coding"][0]["code"]

    @pytest.mark.parametrize("pathway", PATHWAYS)
    def test_there_is_one_action_per_step_with_the_step_id(self, pathway: type[Pathway]) -> None:
        """The root action holds one action per step, in declaration order, with the step id as its id."""
        plan = to_plandefinition(pathway)

        assert [action_id(s) for s in pathway.steps] == list(actions(plan))

    @pytest.mark.parametrize("pathway", PATHWAYS)
    def test_after_becomes_an_after_end_relation_with_the_offset(self, pathway: type[Pathway]) -> None:
        """Each `after=` step is an after-end relatedAction, carrying offsetDuration where the step has offset=."""
        plan = actions(to_plandefinition(pathway))

        expected = {action_id(s): [{"actionId": action_id(b), "relationship": "after-end",
                            **({"offsetDuration": ucum(s.offset)} if s.offset else {})} for b in s.predecessors]
                    for s in pathway.steps if s.predecessors}
        assert expected == {i: a["relatedAction"] for i, a in plan.items() if "relatedAction" in a}

    @pytest.mark.parametrize("pathway", PATHWAYS)
    def test_due_becomes_timing_duration(self, pathway: type[Pathway]) -> None:
        """Each step's `due=` deadline is its action's timingDuration."""
        plan = actions(to_plandefinition(pathway))

        expected = {action_id(s): ucum(s.due) for s in pathway.steps if isinstance(s.due, Duration)}
        assert expected == {i: a["timingDuration"] for i, a in plan.items() if "timingDuration" in a}

    @pytest.mark.parametrize("pathway", PATHWAYS)
    def test_the_owner_is_the_participant_role(self, pathway: type[Pathway]) -> None:
        """Each action's participant carries the owner's code in the Zorgpad care-role system."""
        plan = actions(to_plandefinition(pathway))

        expected = {action_id(s): [{"type": "practitioner", "role": {"coding": [{"system": ROLE_SYSTEM,
                                                                          "code": s.owner.code}]}}]
                    for s in pathway.steps if s.owner is not None}
        assert expected == {i: a["participant"] for i, a in plan.items() if "participant" in a}

    @pytest.mark.parametrize("pathway", PATHWAYS)
    def test_enrol_and_exit_criteria_are_applicability_and_stop_conditions(self, pathway: type[Pathway]) -> None:
        """The root action's conditions are the enrol (applicability) and exit (stop) criteria in FHIRPath."""
        [root] = to_plandefinition(pathway)["action"]

        expected = [(kind, str(condition), "text/fhirpath")
                    for kind, condition in (("applicability", pathway.enrol_when), ("stop", pathway.exit_when))
                    if condition is not None]
        assert expected == [(c["kind"], c["expression"]["description"], c["expression"]["language"])
                            for c in root["condition"]]

    @pytest.mark.parametrize("pathway", PATHWAYS)
    def test_only_if_and_done_when_are_step_conditions(self, pathway: type[Pathway]) -> None:
        """A step's `only_if=` is an applicability condition and its `done_when=` a stop condition."""
        plan = actions(to_plandefinition(pathway))

        def expected(step: Step) -> list[tuple[str, str]]:
            pairs = [("applicability", step.only_if), ("stop", step.done_when)]
            return [(kind, str(condition)) for kind, condition in pairs if condition is not None]

        assert {action_id(s): expected(s) for s in pathway.steps if expected(s)} == {
            i: [(c["kind"], c["expression"]["description"]) for c in a["condition"]]
            for i, a in plan.items() if "condition" in a}


class TestTheAcpExport:
    """Spot checks on palliative-acp against the guideline numbers (so a mapping bug cannot hide in both the
    DSL-derived expectation and the export)."""

    def test_the_reoffer_comes_three_months_after_a_not_ready_conversation(self) -> None:
        """offer_again: after-end of conversation, offset 3 months (UCUM mo), applicable only if not ready."""
        offer = actions(golden("palliative-acp"))["offer-again"]

        assert [{"actionId": "conversation", "relationship": "after-end",
                 "offsetDuration": {"value": 3, "unit": "months", "system": UCUM, "code": "mo"}}] == offer[
            "relatedAction"]
        assert "acp-not-ready" == offer["condition"][0]["expression"]["description"]

    def test_the_conversation_is_due_in_28_days_and_recorded_as_snomed_713603004(self) -> None:
        """conversation: timingDuration 28 d, code SNOMED 713603004, stopped by a recorded ACP Procedure."""
        conversation = actions(golden("palliative-acp"))["conversation"]

        assert {"value": 28, "unit": "days", "system": UCUM, "code": "d"} == conversation["timingDuration"]
        assert [{"system": "http://snomed.info/sct", "code": "713603004", "display": "advance care planning"}] == \
            conversation["code"][0]["coding"]
        assert "Procedure.where(code.coding.where((system = 'http://snomed.info/sct' and code = '713603004'))" \
               ".exists() and (status = 'completed')).exists()" in conversation["condition"][0]["expression"][
                   "expression"]

    def test_each_share_step_hands_over_to_its_receiving_role(self) -> None:
        """The four share steps carry the handover extension naming out-of-hours, ambulance, hospital, home care."""
        plan = actions(golden("palliative-acp"))

        receivers = {i: [e["valueCode"] for x in a.get("extension", []) if x["url"].endswith("/handover")
                         for e in x["extension"] if e["url"] == "to"] for i, a in plan.items() if i.startswith("share")}

        assert {"share-out-of-hours": ["out-of-hours"], "share-ambulance": ["ambulance"],
                "share-hospital": ["hospital"], "share-home-care": ["home-care"]} == receivers


class TestTheTransmuralExport:
    """Spot checks on transmural-discharge: the Goede Overdracht timings survive the export."""

    def test_the_handover_starts_within_48_hours_of_admission(self) -> None:
        """start-handover: no predecessor, timingDuration 48 h, owned by the hospital."""
        start = actions(golden("transmural-discharge"))["start-handover"]

        assert {"value": 48, "unit": "hours", "system": UCUM, "code": "h"} == start["timingDuration"]
        assert "hospital" == start["participant"][0]["role"]["coding"][0]["code"]
        assert "relatedAction" not in start

    def test_the_discharge_talk_is_due_12_hours_before_the_planned_discharge(self) -> None:
        """discharge-talk: no timingDuration; a due-before extension of 12 h before discharge-planned's date."""
        talk = actions(golden("transmural-discharge"))["discharge-talk"]

        [due_before] = [x for x in talk["extension"] if x["url"].endswith("/due-before")]
        parts = {e["url"]: e for e in due_before["extension"]}
        assert "timingDuration" not in talk
        assert {"value": 12, "unit": "hours", "system": UCUM, "code": "h"} == parts["by"]["valueDuration"]
        assert "discharge-planned" == parts["of"]["valueExpression"]["description"]


# -- over HTTP ---------------------------------------------------------------------------------------


def _load_fhir_conftest() -> ModuleType:
    """tests/fhir/conftest.py (start_server, stop_server), loaded by path: tests/fhir is not a package."""
    path = REPO / "tests" / "fhir" / "conftest.py"
    spec = importlib.util.spec_from_file_location("zorgpad_tests_fhir_server", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server(database_factory: Callable[[], str]) -> Iterator[Any]:
    """A real `zorgpad serve` process on its own database."""
    fhir_conftest = _load_fhir_conftest()
    running = fhir_conftest.start_server(database_factory())
    yield running
    fhir_conftest.stop_server(running)


@pytest.mark.slow
class TestServedPlanDefinition:
    """The FHIR server serves the same PlanDefinition the CLI exports."""

    def test_get_plandefinition_equals_the_golden_file(self, server: Any) -> None:
        """GET /fhir/PlanDefinition/palliative-acp over HTTP returns the golden JSON."""
        response = server.client().get("PlanDefinition/palliative-acp")

        assert 200 == response.status_code, response.text
        assert golden("palliative-acp") == response.json(), regenerate_hint("palliative-acp")
