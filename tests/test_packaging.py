"""Packaging and layout guards from DESIGN.md §1 and §5: one import root ``zorgpad``, no ``fhir/__init__.py``
that would shadow ``fhir.resources``, no bare ``engine``/``pathways`` imports, the engine's dependency rule,
a fully pinned lock file, and the two README commands."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
SCANNED_ROOTS = ("engine", "pathways", "fhir", "tests")

#: engine modules that compose the application and so may know the pathways and the FHIR interface.
COMPOSITION_ROOTS = frozenset({"engine/app.py", "engine/cli.py", "engine/registry.py", "engine/demo.py"})


def _python(code: str, *, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    return subprocess.run([str(PYTHON), "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def _modules(*roots: str) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        found += [p for p in (REPO / root).rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(found)


def _imported_modules(source: str) -> list[str]:
    """Every absolute module name an ``import`` or ``from … import`` statement names, anywhere in ``source``."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _bare_imports(source: str) -> list[str]:
    return [m for m in _imported_modules(source) if _is_under(m, "engine") or _is_under(m, "pathways")]


def _forbidden_engine_imports(source: str) -> list[str]:
    return [m for m in _imported_modules(source)
            if _is_under(m, "zorgpad.fhir") or _is_under(m, "zorgpad.pathways")]


class TestImportRoot:
    """The three folders import as ``zorgpad.*`` and never shadow the ``fhir.resources`` wheel."""

    def test_fhir_folder_has_no_init_module(self) -> None:
        """``fhir/__init__.py`` does not exist, so our ``fhir/`` can never shadow the ``fhir`` package."""
        actual = (REPO / "fhir" / "__init__.py").exists()

        assert False is actual

    def test_fhir_resources_imports_from_the_repo_root(self) -> None:
        """``import fhir.resources.R4B.task`` works in a Python started in the repo root (cwd on sys.path)."""
        result = _python("import fhir.resources.R4B.task as t; print(t.__file__)")

        assert 0 == result.returncode, result.stderr
        assert "site-packages" in result.stdout
        assert not result.stdout.strip().startswith(str(REPO / "fhir"))

    def test_fhir_resources_imports_with_the_repo_root_first_on_sys_path(self) -> None:
        """With the repo root first on sys.path, ``fhir`` is still the fhir.resources distribution's."""
        code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                "import fhir, fhir.resources.R4B.task as t; print(fhir.__file__); print(t.__file__)")

        result = _python(code, cwd=Path("/"))

        assert 0 == result.returncode, result.stderr
        site = str(PYTHON.parent.parent / "lib")
        assert [True, True] == [line.startswith(site) for line in result.stdout.splitlines()], result.stdout

    def test_fhir_resources_validates_a_task_from_the_repo_root(self) -> None:
        """The shadowing pitfall would show as ``No module named 'fhir.resources'``: a Task model validates."""
        code = ("from fhir.resources.R4B.task import Task; "
                "print(Task.model_validate({'resourceType': 'Task', 'status': 'requested', "
                "'intent': 'order'}).status)")

        result = _python(code)

        assert 0 == result.returncode, result.stderr
        assert "requested" == result.stdout.strip()

    @pytest.mark.parametrize("module", ["zorgpad.engine", "zorgpad.pathways", "zorgpad.fhir"])
    def test_the_three_packages_import_under_zorgpad(self, module: str) -> None:
        """Each top-level folder imports as ``zorgpad.<folder>`` from the repo root."""
        result = _python(f"import {module}; print({module}.__name__)")

        assert 0 == result.returncode, result.stderr
        assert module == result.stdout.strip()

    def test_zorgpad_engine_comes_from_the_engine_folder(self) -> None:
        """``zorgpad.engine`` is the repo's ``engine/`` folder (an editable install, not a stale copy)."""
        result = _python("import zorgpad.engine; print(zorgpad.engine.__file__)")

        assert 0 == result.returncode, result.stderr
        assert str(REPO / "engine" / "__init__.py") == result.stdout.strip()

    def test_package_dir_maps_the_three_roots(self) -> None:
        """pyproject maps ``zorgpad.engine``/``zorgpad.pathways``/``zorgpad.fhir`` onto the three folders."""
        config = tomllib.loads((REPO / "pyproject.toml").read_text())

        actual = config["tool"]["setuptools"]["package-dir"]

        assert {"zorgpad.engine": "engine", "zorgpad.pathways": "pathways", "zorgpad.fhir": "fhir"} == actual

    def test_every_package_folder_is_listed_for_setuptools(self) -> None:
        """Every folder holding Python modules is a listed package, so a built wheel ships all of it."""
        config = tomllib.loads((REPO / "pyproject.toml").read_text())
        listed = set(config["tool"]["setuptools"]["packages"])
        folders = {p.parent for p in _modules("engine", "pathways", "fhir")} | {REPO / "fhir"}

        actual = sorted("zorgpad." + ".".join(f.relative_to(REPO).parts) for f in folders)

        assert [] == [name for name in actual if name not in listed]


class TestImportRules:
    """AST scans of every module: bare folder imports and the engine's dependency rule."""

    @pytest.mark.parametrize(("source", "expected"), [
        ("import engine", ["engine"]),
        ("from engine.clock import utc", ["engine.clock", "engine.clock.utc"]),
        ("def f():\n    from pathways import REGISTRY\n", ["pathways", "pathways.REGISTRY"]),
        ("from zorgpad.engine import Step\nimport fhir.resources", []),
        ("from . import engine", []),
    ])
    def test_the_bare_import_scan_finds_what_it_should(self, source: str, expected: list[str]) -> None:
        """The scanner sees bare imports at any depth and ignores ``zorgpad.*`` and relative ones."""
        actual = _bare_imports(source)

        assert expected == actual

    @pytest.mark.parametrize("root", SCANNED_ROOTS)
    def test_no_module_imports_a_bare_folder_name(self, root: str) -> None:
        """No module imports ``engine``/``pathways`` by the bare folder name (tables would load twice)."""
        actual = {str(p.relative_to(REPO)): found for p in _modules(root)
                  if (found := _bare_imports(p.read_text()))}

        assert {} == actual

    @pytest.mark.parametrize(("source", "expected"), [
        ("from zorgpad.pathways import REGISTRY", ["zorgpad.pathways", "zorgpad.pathways.REGISTRY"]),
        ("def f():\n    import zorgpad.fhir.rest\n", ["zorgpad.fhir.rest"]),
        ("from zorgpad import fhir", ["zorgpad.fhir"]),
        ("from zorgpad.engine import Step\nimport fhir.resources", []),
    ])
    def test_the_dependency_scan_finds_what_it_should(self, source: str, expected: list[str]) -> None:
        """The dependency scanner catches nested and ``from zorgpad import …`` imports."""
        actual = _forbidden_engine_imports(source)

        assert expected == actual

    def test_engine_imports_fhir_and_pathways_only_in_composition_roots(self) -> None:
        """Only the composition roots in engine/ import ``zorgpad.fhir`` or ``zorgpad.pathways``."""
        actual = {rel: found for p in _modules("engine")
                  if (rel := p.relative_to(REPO).as_posix()) not in COMPOSITION_ROOTS
                  and (found := _forbidden_engine_imports(p.read_text()))}

        assert {} == actual

    def test_the_composition_roots_exist(self) -> None:
        """The allow-list names real modules (a renamed root would silently widen nothing, but rot)."""
        actual = sorted(rel for rel in COMPOSITION_ROOTS if not (REPO / rel).is_file())

        assert [] == actual


class TestPinsAndCommands:
    """requirements.lock, the Makefile, CI and README agree on the two commands."""

    def _lock_lines(self) -> list[str]:
        lines = (REPO / "requirements.lock").read_text().splitlines()
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]

    def test_every_lock_line_is_an_exact_pin(self) -> None:
        """Every requirement in requirements.lock is ``name==version``."""
        pin = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!_-]+$")

        actual = [line for line in self._lock_lines() if not pin.match(line)]

        assert [] == actual

    def test_the_lock_pins_each_package_once(self) -> None:
        """No package is pinned twice in requirements.lock."""
        names = [canonicalize_name(line.split("==")[0].split("[")[0]) for line in self._lock_lines()]

        actual = sorted({n for n in names if names.count(n) > 1})

        assert [] == actual

    def test_every_direct_dependency_is_pinned_within_its_range(self) -> None:
        """Each dependency in pyproject.toml is pinned in the lock at a version its specifier allows."""
        pins = {canonicalize_name(line.split("==")[0].split("[")[0]): line.split("==")[1]
                for line in self._lock_lines()}
        config = tomllib.loads((REPO / "pyproject.toml").read_text())

        actual = []
        for spec in config["project"]["dependencies"]:
            requirement = Requirement(spec)
            version = pins.get(canonicalize_name(requirement.name))
            if version is None or not requirement.specifier.contains(version, prereleases=True):
                actual.append(f"{spec} (lock: {version})")

        assert [] == actual

    @pytest.mark.parametrize(("target", "expected"), [
        ("demo", ".venv/bin/zorgpad demo"),
        ("test", ".venv/bin/pytest --db sqlite"),
        ("test", ".venv/bin/pytest --db postgresql://"),
    ])
    def test_the_makefile_targets_do_what_the_readme_says(self, target: str, expected: str) -> None:
        """``make -n demo`` starts the demo and ``make -n test`` runs the suite on both databases."""
        result = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60,
                                check=False)

        assert 0 == result.returncode, result.stderr
        assert any(line.strip().startswith(expected) for line in result.stdout.splitlines()), result.stdout

    @pytest.mark.parametrize("target", ["demo", "test"])
    def test_the_makefile_declares_the_target_phony(self, target: str) -> None:
        """``demo`` and ``test`` are targets declared .PHONY (so a file named ``test`` cannot mask them)."""
        text = (REPO / "Makefile").read_text()
        phony = " ".join(line.split(":", 1)[1] for line in text.splitlines() if line.startswith(".PHONY"))

        actual = (re.search(rf"^{target}\s*:", text, re.MULTILINE) is not None, target in phony.split())

        assert (True, True) == actual

    def test_ci_runs_make_test(self) -> None:
        """``.ci/run`` is executable and runs ``make test``."""
        script = REPO / ".ci" / "run"
        commands = [line.strip() for line in script.read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]

        actual = (os.access(script, os.X_OK), "make test" in commands)

        assert (True, True) == actual

    @pytest.mark.parametrize("command", ["make demo", "make test"])
    def test_readme_mentions_the_two_commands(self, command: str) -> None:
        """README.md tells a newcomer about ``make demo`` and ``make test``."""
        readme = REPO / "README.md"

        actual = command in (readme.read_text() if readme.is_file() else "")

        assert True is actual

