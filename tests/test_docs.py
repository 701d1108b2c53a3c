"""The README's examples run, and every CLI command is documented there."""

from __future__ import annotations

import re
from pathlib import Path

import click
from zorgpad.engine.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


class TestReadme:
    def test_python_examples_run_in_order(self) -> None:
        """The README's Python blocks execute, top to bottom, in one namespace, and their asserts hold."""
        blocks = _blocks("python")
        namespace: dict[str, object] = {"__name__": "readme_example"}

        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own documentation

        assert 2 <= len(blocks)
        assert "MyAcp" in namespace

    def test_every_cli_command_is_documented(self) -> None:
        """Each `zorgpad` command and sub-command appears in the README's command table."""
        text = README.read_text()
        commands: list[str] = []

        def walk(group: click.Group, prefix: str) -> None:
            for name, command in group.commands.items():
                if isinstance(command, click.Group):
                    walk(command, f"{prefix}{name} ")
                else:
                    commands.append(f"zorgpad {prefix}{name}")

        walk(main, "")

        missing = [c for c in commands if f"`{c}" not in text]
        assert [] == missing

    def test_quick_start_is_the_two_make_commands(self) -> None:
        """The quick start gives exactly `make demo` and `make test`."""
        quick_start = README.read_text().split("## Quick start", 1)[1].split("##", 1)[0]

        commands = [line.split("#")[0].strip() for line in _blocks("sh")[0].splitlines() if line.strip()]

        assert ["make demo", "make test"] == commands
        assert "make demo" in quick_start
