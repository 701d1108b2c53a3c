"""docs/pathways.md cannot drift: its diagrams are the current graphs, its "Add your own pathway" guide runs
as written (the files it shows are written out, its commands run with the real ``.venv/bin/zorgpad`` and
print what the doc says), and every test, step, setting, role and code it names exists."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from zorgpad.engine import STANDARD_ROLES, Coding, Pathway
from zorgpad.engine.demo import DEMO_PATIENTS
from zorgpad.engine.registry import ENTRY_POINT_GROUP, Registry
from zorgpad.engine.render.graph import to_mermaid
from zorgpad.pathways import REGISTRY
from zorgpad.pathways import terminology as t

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "pathways.md"
TEXT = DOC.read_text(encoding="utf-8")
GUIDE_HEADING = "## Add your own pathway"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)
PATHWAY_LINE = re.compile(r"<br/>([a-z0-9-]+) \d+\.\d+\.\d+")
OUTPUT_LANGUAGES = ("text", "mermaid")


def section(heading: str) -> str:
    """The doc from the line starting with ``heading`` up to the next second-level heading."""
    start = TEXT.index("\n" + heading) + 1
    end = TEXT.find("\n## ", start + len(heading))
    return TEXT[start:] if end < 0 else TEXT[start:end]


def blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block as (language, content)."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


@dataclass
class Command:
    """A command of the guide, the output the doc shows for it, and whether the package is installed by then."""

    line: str
    output: tuple[str, str] | None  # (language, text) of the block right after it, if that shows output
    installed: bool


@dataclass
class Guide:
    """The guide's files, its entry-point declaration and its commands, in order."""

    files: dict[str, str] = field(default_factory=dict)
    entry_points: dict[str, str] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)


def parse_guide() -> Guide:
    """Read the guide section: ``python`` blocks name their file on the first line (``# name.py``), the ``toml``
    block installs the package, ``sh`` lines are commands, and a ``text``/``mermaid`` block right after an
    ``sh`` block is what its (single) command prints."""
    guide = Guide()
    found = blocks(section(GUIDE_HEADING))
    for index, (language, content) in enumerate(found):
        if language == "python":
            first = content.splitlines()[0]
            name = re.fullmatch(r"# (\w+\.py)", first)
            assert name is not None, f"a python block of the guide must start with '# file.py' (got {first!r})"
            guide.files[name.group(1)] = content
        elif language == "toml":
            project = tomllib.loads(content)["project"]
            guide.entry_points.update(project["entry-points"][ENTRY_POINT_GROUP])
        elif language == "sh":
            lines = [line for line in content.splitlines() if line.strip()]
            after = found[index + 1] if index + 1 < len(found) else None
            output = after if after is not None and after[0] in OUTPUT_LANGUAGES else None
            assert output is None or len(lines) == 1, "an output block must follow a single command"
            guide.commands += [Command(line, output, bool(guide.entry_points)) for line in lines]
    return guide


GUIDE = parse_guide()
ZORGPAD_COMMANDS = [c for c in GUIDE.commands if c.line.startswith(".venv/bin/zorgpad ")]
PYTEST_COMMANDS = [c for c in GUIDE.commands if c.line.startswith(".venv/bin/pytest ")]


def diagrams() -> dict[str, list[str]]:
    """The doc's Mermaid blocks by the pathway id they draw."""
    found: dict[str, list[str]] = {}
    for language, content in blocks(TEXT):
        if language == "mermaid":
            match = PATHWAY_LINE.search(content)
            assert match is not None, f"a Mermaid block without a pathway start node:\n{content}"
            found.setdefault(match.group(1), []).append(content)
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the guide's files, and ``site/``: the guide's package as ``pip install`` would leave it
    (the module in its package, and a dist-info with the entry points)."""
    folder = tmp_path_factory.mktemp("guide")
    for name, content in GUIDE.files.items():
        (folder / name).write_text(content, encoding="utf-8")
    site = folder / "site"
    lines = []
    for name, value in GUIDE.entry_points.items():
        module, _, _ = value.partition(":")
        package, _, module_name = module.rpartition(".")
        (site / package).mkdir(parents=True, exist_ok=True)
        (site / package / "__init__.py").write_text("", encoding="utf-8")
        (site / package / f"{module_name}.py").write_text(GUIDE.files[f"{module_name}.py"], encoding="utf-8")
        lines.append(f"{name} = {value}")
    info = site / "zuyd_pathways-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zuyd-pathways\nVersion: 1.0.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return folder


def run(command: Command, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run a guide command in ``workdir`` with the repository's virtualenv (and the package, once installed)."""
    args = shlex.split(command.line)
    args[0] = str(REPO / args[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ZORGPAD_DATABASE"))}
    env.pop("PYTHONPATH", None)
    if command.installed:
        env["PYTHONPATH"] = str(workdir / "site")
    return subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False)


def regenerate_hint(pathway_id: str) -> str:
    """What to do when a diagram drifted."""
    return (f"the Mermaid block of {pathway_id} in docs/pathways.md is not the current graph; replace it with the "
            f"output of `.venv/bin/zorgpad pathways graph {pathway_id}`")


class TestDiagrams:
    """The diagrams in the doc are the current graphs of the shipped pathways."""

    def test_each_shipped_pathway_has_exactly_one_diagram(self) -> None:
        """One Mermaid block per shipped pathway (plus the guide's own)."""
        counts = {pathway_id: len(found) for pathway_id, found in diagrams().items()}

        assert {**{p.id: 1 for p in REGISTRY}, "home-care-intake": 1} == counts

    @pytest.mark.parametrize("pathway", [pytest.param(p, id=p.id) for p in Registry(REGISTRY).latest()])
    def test_the_diagram_is_the_current_graph(self, pathway: type[Pathway]) -> None:
        """The pasted block equals `to_mermaid(pathway)` of the newest version, character for character."""
        [pasted] = diagrams()[pathway.id]

        assert to_mermaid(pathway) == pasted, regenerate_hint(pathway.id)


class TestGuide:
    """The "Add your own pathway" guide runs as written."""

    def test_the_guide_shows_a_pathway_file_a_test_file_and_an_entry_point(self) -> None:
        """Two Python files (the pathway and its test) and an entry point into one of them."""
        modules = {value.partition(":")[0].rpartition(".")[2] + ".py" for value in GUIDE.entry_points.values()}

        assert ["home_care_intake.py", "test_home_care_intake.py"] == sorted(GUIDE.files)
        assert {"home_care_intake.py"} == modules

    def test_every_guide_command_is_run_by_this_module(self) -> None:
        """Each command of the guide is a zorgpad or pytest command from the virtualenv (none goes untested)."""
        others = [c.line for c in GUIDE.commands if c not in ZORGPAD_COMMANDS and c not in PYTEST_COMMANDS]

        assert [] == others
        assert (3, 1) == (len(ZORGPAD_COMMANDS), len(PYTEST_COMMANDS))

    @pytest.mark.parametrize("command", [pytest.param(c, id=c.line) for c in ZORGPAD_COMMANDS])
    def test_the_command_prints_what_the_guide_shows(self, command: Command, workdir: Path) -> None:
        """The command exits 0 and prints the block the guide shows after it."""
        result = run(command, workdir)

        assert (0, "") == (result.returncode, result.stderr)
        assert command.output is not None, f"the guide shows no output for {command.line}"
        assert command.output[1] == result.stdout

    def test_the_guide_tests_pass_with_pytest(self, workdir: Path) -> None:
        """`pytest test_home_care_intake.py` passes every test the guide shows."""
        [command] = PYTEST_COMMANDS
        tree = ast.parse(GUIDE.files["test_home_care_intake.py"])
        count = sum(1 for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))

        result = run(command, workdir)

        assert 0 == result.returncode, result.stdout + result.stderr
        assert f"{count} passed" in result.stdout, result.stdout

    def test_the_guide_pathway_file_defines_a_valid_pathway(self, tmp_path: Path) -> None:
        """The pathway file imports (validating the declaration) and defines home-care-intake 1.0.0 with 3 steps."""
        from zorgpad.engine.registry import load_file

        path = tmp_path / "home_care_intake.py"
        path.write_text(GUIDE.files["home_care_intake.py"], encoding="utf-8")

        [pathway] = load_file(path)

        assert ("home-care-intake", "1.0.0", ["refer", "intake", "follow_up"]) == (
            pathway.id, pathway.version, [s.id for s in pathway.steps])


class TestReferences:
    """Everything the doc names exists, and everything it should name is there."""

    def test_every_test_the_doc_names_exists(self) -> None:
        """Each `tests/….py::Class::test_name` in the doc is a test method in that file."""
        missing = []
        for path, cls, name in sorted(set(re.findall(r"(tests/[\w/]+\.py)::(\w+)::(\w+)", TEXT))):
            file = REPO / path
            tree = ast.parse(file.read_text(encoding="utf-8")) if file.is_file() else ast.Module(body=[])
            methods = {(node.name, item.name) for node in tree.body if isinstance(node, ast.ClassDef)
                       for item in node.body if isinstance(item, ast.FunctionDef)}
            if (cls, name) not in methods:
                missing.append(f"{path}::{cls}::{name}")

        assert [] == missing

    def test_the_doc_names_at_least_one_test_per_pathway(self) -> None:
        """Each pathway's section cites tests (its recommendation table is not empty)."""
        cited = {p.id: len(re.findall(r"tests/pathways/\w+\.py::\w+::\w+", section(f"## {p.id}:")))
                 for p in REGISTRY}

        assert [] == [pathway_id for pathway_id, count in cited.items() if count == 0]

    def test_every_step_is_named_in_its_pathways_section(self) -> None:
        """Each step id appears, in backticks, in the section of its pathway."""
        missing = [f"{p.id}.{s.id}" for p in REGISTRY for s in p.steps if f"`{s.id}`" not in section(f"## {p.id}:")]

        assert [] == missing

    def test_every_interval_setting_is_documented_with_its_default(self) -> None:
        """Each setting in pathways/settings.py has a row with its variable and default, with the unit."""
        source = (REPO / "pathways" / "settings.py").read_text(encoding="utf-8")
        settings = re.findall(r'^([A-Z_]+) = _setting\("([A-Z_]+)", (\d+)\)', source, flags=re.M)
        units = {"DAYS": "days", "WEEKS": "weeks", "MONTHS": "months", "HOURS": "hours"}

        missing = [name for name, env, default in settings
                   if f"| `{name}` | `ZORGPAD_{env}` | {default} {units[name.rsplit('_', 1)[1]]} |" not in TEXT]

        assert 12 == len(settings)
        assert [] == missing

    def test_every_role_is_documented(self) -> None:
        """Each standard role code has a row in the roles table."""
        missing = [r.code for r in STANDARD_ROLES if f"| `{r.code}` |" not in section("## Roles: who owns a step")]

        assert [] == missing

    def test_every_local_code_is_documented(self) -> None:
        """Each code of Zorgpad's own code system in terminology.py has a row in the codes table."""
        local = [c.code for c in vars(t).values() if isinstance(c, Coding) and c.system == t.ZORGPAD]
        codes = section("## Codes: the local code system and why it exists")

        assert t.ZORGPAD in codes
        assert 5 == len(local)
        assert [] == [code for code in local if f"| `{code}` |" not in codes]

    def test_every_demo_patient_is_listed(self) -> None:
        """The demo table lists each demo patient with the point of the pathways they stand at."""
        demo = section("## See them running: `zorgpad demo`")

        assert [] == [p.id for p in DEMO_PATIENTS if f"`{p.id}`" not in demo or p.story not in demo]

    def test_every_relative_link_resolves(self) -> None:
        """Each relative link in the doc points at a file or folder of the repository."""
        links = re.findall(r"\]\((\.\./[^)#]+)\)", TEXT)

        assert [] == [link for link in links if not (DOC.parent / link).exists()]
