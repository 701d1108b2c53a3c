"""The ``zorgpad`` command line, run as a real process (``.venv/bin/zorgpad``). Every error is exactly one
line on stderr, ``zorgpad: error: …``, with exit status 1."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from example_pathway import ExampleAcp, ExampleAcpV2
from sqlalchemy import text
from zorgpad.engine import Database, Engine, Registry
from zorgpad.engine.render.graph import to_mermaid

REPO = Path(__file__).resolve().parents[2]
ZORGPAD = REPO / ".venv" / "bin" / "zorgpad"
EXAMPLE = "tests/example_pathway.py"

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
#: The conversation is due 28 days after register is completed on day 1.
DUE = T0 + timedelta(days=29)
STATE_TABLES = ("enrolment", "step_run", "timer", "outbox", "audit", "resource", "resource_version")


def zorgpad(*args: str, env: Mapping[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run the real ``zorgpad`` command with a clean environment (no inherited database URL)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("ZORGPAD_DATABASE_URL", "PYTHONPATH")}
    clean.update(env or {})
    return subprocess.run([str(ZORGPAD), *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=120,
                          check=False)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command (fails the test unless there is exactly one)."""
    assert 1 == result.returncode, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert 1 == len(lines), result.stderr
    assert lines[0].startswith("zorgpad: error: "), result.stderr
    return lines[0]


def listing(pathways: list[type]) -> list[str]:
    """What ``pathways list`` prints for ``pathways``."""
    return [f"{p.id}\t{p.version}\t{len(p.steps)} steps\t{p.title}" for p in pathways] or ["no pathways registered"]


def snapshot(db_url: str) -> dict[str, list[str]]:
    """Every row of the engine's state tables, to compare before and after a command."""
    db = Database(db_url)
    try:
        with db.engine.connect() as connection:
            return {t: sorted(repr(tuple(r)) for r in connection.execute(text(f"SELECT * FROM {t}")))  # noqa: S608
                    for t in STATE_TABLES}
    finally:
        db.dispose()


def step_run(db_url: str, step: str) -> tuple[str, str | None, int]:
    """``(state, business_status, reminders_sent)`` of one step of the enrolment."""
    db = Database(db_url)
    try:
        with db.engine.connect() as connection:
            row = connection.execute(text("SELECT state, business_status, reminders_sent FROM step_run "
                                          "WHERE step_id = :step"), {"step": step}).one()
            return row[0], row[1], row[2]
    finally:
        db.dispose()


@pytest.fixture
def enrolled_url(db_url: str) -> str:
    """A database where p1 (GP gp-1) was enrolled in ExampleAcp at T0 and register was completed at T0 + 1 day,
    so the conversation is due at DUE with reminders at DUE and DUE + 1 week and an escalation at DUE + 3 weeks."""
    db = Database(db_url)
    engine = Engine(db, Registry([ExampleAcp]))
    engine.ingest({"resourceType": "Patient", "id": "p1", "generalPractitioner": [
        {"reference": "Organization/gp-1"}]}, now=T0)
    enrolment = engine.enrol("example-acp", "Patient/p1", now=T0)
    engine.task_status(enrolment.id, "register", "completed", now=T0 + timedelta(days=1))
    db.dispose()
    return db_url


BROKEN_PATHWAY = '''
from zorgpad.engine import GP, Pathway, Reminder, Step, defn, weeks


@defn(id="broken pathway", version="1.0.0")
class Broken(Pathway):
    """A pathway with four problems."""

    first = Step("First", due=28)
    second = Step("Second", owner=GP, after=first, remind=Reminder(every=weeks(1)))
'''

ACME_PATHWAY = '''
from zorgpad.engine import GP, Pathway, Step, days, defn


@defn(id="acme-acp", version="0.1.0")
class AcmePathway(Pathway):
    """Acme's third-party pathway."""

    call = Step("Call the patient", owner=GP, due=days(3))
    visit = Step("Visit the patient", owner=GP, after=call, due=days(7))
'''


@pytest.fixture
def broken_files(tmp_path: Path) -> dict[str, Path]:
    """Three malformed pathway files: invalid declarations, a syntax error, and no pathway at all."""
    files = {"invalid": tmp_path / "invalid.py", "syntax": tmp_path / "syntax.py", "empty": tmp_path / "empty.py"}
    files["invalid"].write_text(BROKEN_PATHWAY)
    files["syntax"].write_text("def broken(:\n    pass\n")
    files["empty"].write_text("ANSWER = 42\n")
    return files


def site_with(tmp_path: Path, module: str, entry_point: str = "acme = acme_pathways:AcmePathway") -> Path:
    """A folder that looks like an installed third-party distribution ``acme-pathways`` with a
    ``zorgpad.pathways`` entry point, for a subprocess's PYTHONPATH."""
    site = tmp_path / "site"
    info = site / "acme_pathways-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "acme_pathways.py").write_text(module)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-pathways\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[zorgpad.pathways]\n{entry_point}\n")
    return site


class TestPathwaysList:
    """``zorgpad pathways list`` shows every registered version, one per line."""

    def test_without_files_it_lists_the_built_in_pathways(self) -> None:
        """Without --file the listing is the built-in and entry-point pathways, and not the example."""
        result = zorgpad("pathways", "list")

        assert 0 == result.returncode, result.stderr
        assert listing(Registry.default().all()) == result.stdout.splitlines()
        assert "example-acp" not in result.stdout

    def test_a_file_adds_its_pathways(self) -> None:
        """--file adds both example versions, oldest first, with their step counts and titles."""
        result = zorgpad("pathways", "list", "--file", EXAMPLE)

        assert 0 == result.returncode, result.stderr
        expected = listing(Registry.default().all())
        expected = [*(line for line in expected if line != "no pathways registered"),
                    *listing([ExampleAcp, ExampleAcpV2])]
        assert sorted(expected) == sorted(result.stdout.splitlines())
        assert "example-acp\t1.0.0\t4 steps\tExample proactive care planning pathway used by the engine tests" in (
            result.stdout.splitlines())

    def test_a_missing_file_is_one_error_line(self, tmp_path: Path) -> None:
        """--file naming a file that does not exist fails with one line naming it."""
        missing = tmp_path / "nowhere.py"

        line = error_line(zorgpad("pathways", "list", "--file", str(missing)))

        assert f"zorgpad: error: {missing}: no such file" == line


class TestPathwaysValidate:
    """``zorgpad pathways validate`` checks files (or everything registered) and reports every problem."""

    def test_a_valid_file_prints_ok_per_pathway(self) -> None:
        """Each pathway in the file gets an ``ok: id version (N steps)`` line; exit 0, nothing on stderr."""
        result = zorgpad("pathways", "validate", EXAMPLE)

        assert (0, "") == (result.returncode, result.stderr)
        assert ["ok: example-acp 1.0.0 (4 steps)", "ok: example-acp 1.1.0 (4 steps)"] == result.stdout.splitlines()

    def test_malformed_files_give_one_line_each_and_exit_1(self, broken_files: dict[str, Path]) -> None:
        """Three bad files and a good one: exit 1, one error line per bad file in order, the good one ok."""
        paths = [str(broken_files[k]) for k in ("invalid", "syntax", "empty")]

        result = zorgpad("pathways", "validate", *paths, EXAMPLE)

        lines = result.stderr.splitlines()
        assert 1 == result.returncode
        assert 3 == len(lines), result.stderr
        assert [True, True, True] == [line.startswith(f"zorgpad: error: {p}:")
                                      for line, p in zip(lines, paths, strict=True)]
        assert ["ok: example-acp 1.0.0 (4 steps)", "ok: example-acp 1.1.0 (4 steps)"] == result.stdout.splitlines()

    def test_an_invalid_declaration_lists_every_reason_in_its_one_line(self, broken_files: dict[str, Path]) -> None:
        """The invalid pathway's line counts and names all four problems."""
        line = error_line(zorgpad("pathways", "validate", str(broken_files["invalid"])))

        expected = (f"zorgpad: error: {broken_files['invalid']}: Invalid pathway Broken for 4 reasons: "
                    "id must be a FHIR id of 1-64 letters, digits, '-' or '.' (got 'broken pathway'); "
                    "step 'first' has no owner; "
                    "step 'first': 'due' must be a Duration (got 28 that is a <class 'int'>); "
                    "step 'second' has reminders but no due= deadline")
        assert expected == line

    def test_a_syntax_error_names_the_file_and_line(self, broken_files: dict[str, Path]) -> None:
        """A file that does not parse is reported as ``FILE:LINE: message`` without a traceback."""
        line = error_line(zorgpad("pathways", "validate", str(broken_files["syntax"])))

        assert line.startswith(f"zorgpad: error: {broken_files['syntax']}:1: ")

    def test_a_file_without_a_pathway_says_so(self, broken_files: dict[str, Path]) -> None:
        """A Python file defining no pathway is an error, not a silent success."""
        line = error_line(zorgpad("pathways", "validate", str(broken_files["empty"])))

        assert (f"zorgpad: error: {broken_files['empty']}: defines no pathway "
                "(decorate a Pathway subclass with @defn)") == line

    def test_without_files_it_validates_the_registered_pathways(self) -> None:
        """With no FILE, every built-in and entry-point pathway is validated; exit 0."""
        result = zorgpad("pathways", "validate")

        assert (0, "") == (result.returncode, result.stderr)
        assert [f"ok: {p.id} {p.version} ({len(p.steps)} steps)" for p in Registry.default().all()] == (
            result.stdout.splitlines())


class TestEntryPoints:
    """Pathways of third-party distributions arrive through the ``zorgpad.pathways`` entry-point group."""

    def test_an_installed_distribution_is_listed(self, tmp_path: Path) -> None:
        """A distribution on PYTHONPATH with an entry point shows up in ``pathways list``."""
        site = site_with(tmp_path, ACME_PATHWAY)

        result = zorgpad("pathways", "list", env={"PYTHONPATH": str(site)})

        assert 0 == result.returncode, result.stderr
        assert "acme-acp\t0.1.0\t2 steps\tAcme's third-party pathway" in result.stdout.splitlines()

    def test_validate_without_files_validates_entry_point_pathways(self, tmp_path: Path) -> None:
        """``pathways validate`` with no files includes the entry point's pathway."""
        site = site_with(tmp_path, ACME_PATHWAY)

        result = zorgpad("pathways", "validate", env={"PYTHONPATH": str(site)})

        assert 0 == result.returncode, result.stderr
        assert "ok: acme-acp 0.1.0 (2 steps)" in result.stdout.splitlines()

    def test_an_entry_point_pathway_can_be_drawn(self, tmp_path: Path) -> None:
        """``pathways graph`` finds the entry point's pathway by id."""
        site = site_with(tmp_path, ACME_PATHWAY)

        result = zorgpad("pathways", "graph", "acme-acp", env={"PYTHONPATH": str(site)})

        assert 0 == result.returncode, result.stderr
        lines = result.stdout.splitlines()
        assert ("flowchart TD", True) == (lines[0], "    call --> visit" in lines)

    def test_an_invalid_entry_point_pathway_is_one_error_line(self, tmp_path: Path) -> None:
        """An entry point whose pathway is invalid fails validation with one line listing the reasons."""
        site = site_with(tmp_path, BROKEN_PATHWAY, "acme = acme_pathways:Broken")

        line = error_line(zorgpad("pathways", "validate", env={"PYTHONPATH": str(site)}))

        assert line.startswith("zorgpad: error: Invalid pathway Broken for 4 reasons: ")

    def test_a_broken_entry_point_is_one_error_line_naming_it(self, tmp_path: Path) -> None:
        """An entry point that cannot be loaded is reported with its name and target."""
        site = site_with(tmp_path, ACME_PATHWAY, "acme = acme_pathways:NoSuchThing")

        line = error_line(zorgpad("pathways", "list", env={"PYTHONPATH": str(site)}))

        assert line.startswith("zorgpad: error: entry point acme (acme_pathways:NoSuchThing) failed: ")


class TestPathwaysGraph:
    """``zorgpad pathways graph ID`` prints the Mermaid flowchart of a registered pathway."""

    def test_it_prints_the_newest_version_as_a_flowchart(self) -> None:
        """The output is exactly ``to_mermaid`` of the newest example version, starting ``flowchart TD``."""
        result = zorgpad("pathways", "graph", "example-acp", "--file", EXAMPLE)

        assert 0 == result.returncode, result.stderr
        assert to_mermaid(ExampleAcpV2) == result.stdout
        assert "flowchart TD" == result.stdout.splitlines()[0]

    def test_every_step_id_appears(self) -> None:
        """Every step of the pathway is a node of the chart."""
        result = zorgpad("pathways", "graph", "example-acp", "--version", "1.0.0", "--file", EXAMPLE)

        nodes = {line.split("[")[0].strip() for line in result.stdout.splitlines() if "[" in line}
        assert 0 == result.returncode, result.stderr
        assert set() == {s.id for s in ExampleAcp.steps} - nodes
        assert to_mermaid(ExampleAcp) == result.stdout

    def test_an_unknown_id_is_one_line_naming_the_known_ids(self) -> None:
        """An unknown pathway id fails with one line that names the ids that do exist."""
        line = error_line(zorgpad("pathways", "graph", "no-such-pathway", "--file", EXAMPLE))

        known = sorted({p.id for p in Registry.default().all()} | {"example-acp"})
        assert f"zorgpad: error: Unknown pathway 'no-such-pathway' (known: {', '.join(known)})" == line

    def test_an_unknown_version_is_one_line_naming_the_known_versions(self) -> None:
        """An unknown version fails with one line listing the versions of that pathway."""
        line = error_line(zorgpad("pathways", "graph", "example-acp", "--version", "9", "--file", EXAMPLE))

        assert ("zorgpad: error: Unknown pathway 'example-acp|9' "
                "(known: example-acp|1.0.0, example-acp|1.1.0)") == line


class TestTick:
    """``zorgpad tick`` fires what is due by ``--now`` and reports how many timers fired."""

    @pytest.mark.parametrize(("now", "expected"), [
        ("2026-02-03T08:59:59Z", "fired 0 timers"),
        ("2026-02-03T09:00:00Z", "fired 2 timers"),
        ("2026-02-03T09:59:59+01:00", "fired 0 timers"),
        ("2026-02-03T10:00:00+01:00", "fired 2 timers"),
        ("2026-02-03T09:00:00", "fired 2 timers"),
        ("2026-06-01T00:00:00Z", "fired 3 timers"),
    ], ids=["before-due", "at-due", "offset-before", "offset-at", "naive-is-utc", "months-late"])
    def test_it_fires_the_timers_due_by_now(self, enrolled_url: str, now: str, expected: str) -> None:
        """The count of fired timers follows --now: offsets honoured, naive is UTC, missed reminders skipped."""
        result = zorgpad("tick", "--now", now, "--file", EXAMPLE, "--db", enrolled_url)

        assert (0, "") == (result.returncode, result.stderr)
        assert [expected] == result.stdout.splitlines()

    def test_the_timers_take_effect_and_fire_only_once(self, enrolled_url: str) -> None:
        """After the tick at DUE the conversation is overdue with one reminder; a second tick fires nothing."""
        now = "2026-02-03T10:00:00Z"
        first = zorgpad("tick", "--now", now, "--file", EXAMPLE, "--db", enrolled_url)

        second = zorgpad("tick", "--now", now, "--file", EXAMPLE, "--db", enrolled_url)

        assert (["fired 2 timers"], ["fired 0 timers"]) == (first.stdout.splitlines(), second.stdout.splitlines())
        assert ("ready", "overdue", 1) == step_run(enrolled_url, "conversation")

    def test_a_bad_now_is_one_line_and_changes_nothing(self, enrolled_url: str) -> None:
        """``--now bogus`` fails with one line and leaves every state table as it was, although timers are due."""
        before = snapshot(enrolled_url)

        line = error_line(zorgpad("tick", "--now", "bogus", "--file", EXAMPLE, "--db", enrolled_url))

        assert ("zorgpad: error: invalid --now 'bogus': expected an ISO-8601 time such as "
                "2026-03-01T09:00:00Z") == line
        assert before == snapshot(enrolled_url)
        assert ["fired 3 timers"] == zorgpad("tick", "--now", "2026-06-01T00:00:00Z", "--file", EXAMPLE,
                                              "--db", enrolled_url).stdout.splitlines()

    def test_a_timer_of_an_unregistered_pathway_is_one_line_and_rolls_back(self, enrolled_url: str) -> None:
        """A due timer of an unregistered pathway is one error line, and its tick is rolled back."""
        before = snapshot(enrolled_url)

        line = error_line(zorgpad("tick", "--now", "2026-06-01T00:00:00Z", "--db", enrolled_url))

        assert line.startswith("zorgpad: error: Unknown pathway 'example-acp'")
        assert before == snapshot(enrolled_url)

    def test_a_missing_sqlite_file_is_one_line_and_is_not_created(self, tmp_path: Path) -> None:
        """Ticking a SQLite file that does not exist fails and does not create it (nor its WAL files)."""
        missing = tmp_path / "missing.db"

        line = error_line(zorgpad("tick", "--db", f"sqlite:///{missing}"))

        assert line.startswith(f"zorgpad: error: database file {missing} does not exist")
        assert [] == sorted(p.name for p in tmp_path.iterdir())

    def test_a_sqlite_file_without_schema_is_one_line(self, tmp_path: Path) -> None:
        """An existing but empty SQLite file is refused with a hint to run ``db upgrade``."""
        empty = tmp_path / "empty.db"
        sqlite3.connect(empty).close()

        line = error_line(zorgpad("tick", "--db", f"sqlite:///{empty}"))

        assert "has no Zorgpad schema" in line

    def test_the_database_comes_from_the_environment_without_db(self, enrolled_url: str) -> None:
        """With no --db, ``ZORGPAD_DATABASE_URL`` names the database."""
        result = zorgpad("tick", "--now", "2026-02-03T09:00:00Z", "--file", EXAMPLE,
                         env={"ZORGPAD_DATABASE_URL": enrolled_url})

        assert (0, ["fired 2 timers"]) == (result.returncode, result.stdout.splitlines())


class TestDeliver:
    """``zorgpad deliver`` flushes the outbox once and prints the counts."""

    def test_it_delivers_the_action_and_the_reminder(self, enrolled_url: str) -> None:
        """After the tick at DUE the register action and the reminder are delivered; a second flush is empty."""
        zorgpad("tick", "--now", "2026-02-03T10:00:00Z", "--file", EXAMPLE, "--db", enrolled_url)

        first = zorgpad("deliver", "--now", "2026-02-03T10:00:00Z", "--file", EXAMPLE, "--db", enrolled_url)
        second = zorgpad("deliver", "--now", "2026-02-03T10:00:00Z", "--file", EXAMPLE, "--db", enrolled_url)

        assert (0, "") == (first.returncode, first.stderr)
        assert ["delivered 2, retrying 0, dead-lettered 0"] == first.stdout.splitlines()
        assert ["delivered 0, retrying 0, dead-lettered 0"] == second.stdout.splitlines()

    def test_an_action_it_cannot_run_is_retried(self, enrolled_url: str) -> None:
        """Without the pathway file the action is retrying while the reminder is still delivered."""
        zorgpad("tick", "--now", "2026-02-03T10:00:00Z", "--file", EXAMPLE, "--db", enrolled_url)

        result = zorgpad("deliver", "--now", "2026-02-03T10:00:00Z", "--db", enrolled_url)

        assert (0, ["delivered 1, retrying 1, dead-lettered 0"]) == (result.returncode, result.stdout.splitlines())

    def test_nothing_is_delivered_before_it_is_due(self, enrolled_url: str) -> None:
        """A flush with ``--now`` before anything was queued delivers nothing."""
        result = zorgpad("deliver", "--now", "2026-01-01T00:00:00Z", "--file", EXAMPLE, "--db", enrolled_url)

        assert ["delivered 0, retrying 0, dead-lettered 0"] == result.stdout.splitlines()


class TestDatabaseOption:
    """``zorgpad db upgrade`` creates the schema; unusable ``--db`` values are one line."""

    def test_db_upgrade_creates_the_schema_in_a_new_sqlite_file(self, tmp_path: Path) -> None:
        """A new file gets every engine table and reports its revision; a tick on it then works."""
        path = tmp_path / "new.db"

        result = zorgpad("db", "upgrade", "--db", f"sqlite:///{path}")

        with sqlite3.connect(path) as connection:
            tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        assert (0, "") == (result.returncode, result.stderr)
        assert [f"database sqlite:///{path} is at revision {revision}"] == result.stdout.splitlines()
        assert set() == {*STATE_TABLES, "inbox", "alembic_version"} - tables
        assert ["fired 0 timers"] == zorgpad("tick", "--db", f"sqlite:///{path}").stdout.splitlines()

    def test_db_upgrade_twice_is_harmless(self, db_url: str) -> None:
        """Upgrading an up-to-date database (of either dialect) succeeds and changes nothing."""
        before = snapshot(db_url)

        result = zorgpad("db", "upgrade", "--db", db_url)

        assert (0, "") == (result.returncode, result.stderr)
        assert before == snapshot(db_url)

    def test_db_upgrade_into_a_missing_folder_is_one_line(self, tmp_path: Path) -> None:
        """A SQLite path in a folder that does not exist is refused without creating the folder."""
        line = error_line(zorgpad("db", "upgrade", "--db", f"sqlite:///{tmp_path}/nowhere/new.db"))

        assert "nowhere" in line
        assert False is (tmp_path / "nowhere").exists()

    @pytest.mark.parametrize("command", [["tick"], ["deliver"], ["db", "upgrade"]])
    def test_an_unsupported_database_is_one_line(self, command: list[str]) -> None:
        """A mysql:// URL is refused by every database command, naming the backend."""
        line = error_line(zorgpad(*command, "--db", "mysql://user@127.0.0.1/zorgpad"))

        assert line.startswith("zorgpad: error: unsupported database 'mysql'")

    def test_a_malformed_url_is_one_line(self) -> None:
        """Something that is not a URL at all is refused with one line."""
        line = error_line(zorgpad("tick", "--db", "not a url"))

        assert "not a database URL" in line
