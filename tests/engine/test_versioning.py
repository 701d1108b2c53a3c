"""Pathway versions: enrolments stay on the version they started with until migrated on purpose."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from example_pathway import SCT, ExampleAcp, ExampleAcpV2
from sqlmodel import func, select
from zorgpad.engine import ROLE_SYSTEM
from zorgpad.engine._projection import NOTICE_SYSTEM, instant, task_id
from zorgpad.engine._states import EnrolmentStatus, StepState
from zorgpad.engine.clock import FrozenClock
from zorgpad.engine.errors import MigrationError
from zorgpad.engine.registry import Registry
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import AuditEntry, Enrolment, OutboxItem, ResourceVersion, StoredResource, Timer
from zorgpad.engine.versioning import migrate_enrolments

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
REGISTERED = START + timedelta(hours=1)
DUE = REGISTERED + timedelta(days=28)
MIGRATED = REGISTERED + timedelta(days=3)
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "tests" / "example_pathway.py"
ZORGPAD = Path(sys.executable).parent / "zorgpad"
V1 = f"{ExampleAcp.url}|1.0.0"
V2 = f"{ExampleAcpV2.url}|1.1.0"
RENAME: dict[str, str | None] = {"conversation": "acp_talk", "share": None}


def _engine(db: Database) -> Engine:
    return Engine(db, Registry([ExampleAcp, ExampleAcpV2]), FrozenClock(START))


def _open_conversation(engine: Engine, patient: str = "Patient/p1") -> str:
    enrolment = engine.enrol("example-acp", patient, version="1.0.0", now=START).id
    engine.task_status(enrolment, "register", "completed", now=REGISTERED)
    return enrolment


def _resource(db: Database, resource_type: str, resource_id: str) -> dict[str, Any]:
    stored = db.run(lambda s: s.get(StoredResource, (resource_type, resource_id)))
    assert stored is not None
    return stored.content


def _timers(db: Database, enrolment: str) -> set[tuple[str, str, int, datetime]]:
    return db.run(lambda s: {(t.step_id, t.kind, t.seq, t.due_at) for t in s.exec(
        select(Timer).where(Timer.enrolment_id == enrolment))})


def _snapshot(db: Database) -> tuple[Any, ...]:
    """Everything a migration could change, to show that a refused one changed nothing."""
    def read(s: Any) -> tuple[Any, ...]:
        return (
            sorted((e.id, e.pathway_version, e.revision) for e in s.exec(select(Enrolment))),
            sorted((t.enrolment_id, t.step_id, t.kind, t.seq) for t in s.exec(select(Timer))),
            s.exec(select(func.count()).select_from(ResourceVersion)).one(),
            s.exec(select(func.count()).select_from(AuditEntry)).one(),
            s.exec(select(func.count()).select_from(OutboxItem)).one(),
        )
    return db.run(read)


def _notice_kinds(db: Database) -> list[str]:
    rows = db.run(lambda s: list(s.exec(select(StoredResource).where(
        StoredResource.resource_type == "Communication"))))
    return sorted(c["code"] for r in rows for cat in r.content["category"] for c in cat["coding"]
                  if c["system"] == NOTICE_SYSTEM)


class TestPinnedVersions:
    """An enrolment runs on the url|version it started with."""

    def test_an_enrolment_stays_on_its_version_after_a_newer_one_is_registered(self, db: Database) -> None:
        """Started while only 1.0.0 existed, it is still on 1.0.0 once 1.1.0 is registered and it moves on."""
        enrolment = Engine(db, Registry([ExampleAcp]), FrozenClock(START)).enrol("example-acp", "Patient/p1",
                                                                                 now=START).id
        engine = _engine(db)

        state = engine.task_status(enrolment, "register", "completed", now=REGISTERED)

        careplan = _resource(db, "CarePlan", enrolment)

        assert "1.0.0" == state.version
        assert ["conversation", "register", "review", "share"] == sorted(state.steps)
        assert StepState.READY == state.steps["conversation"].state
        assert [V1] == careplan["instantiatesCanonical"]

    def test_it_is_evaluated_with_its_own_definition(self, db: Database) -> None:
        """A 1.0.0 enrolment gets 1.0.0's register action, reminder and escalation, which 1.1.0 lacks."""
        engine = _engine(db)
        enrolment = _open_conversation(engine)

        engine.tick(DUE + timedelta(days=60))

        actions = db.run(lambda s: [i.idempotency_key for i in s.exec(
            select(OutboxItem).where(OutboxItem.channel == "action"))])

        assert [f"action/{enrolment}/register/0"] == actions
        assert ["escalation", "reminder"] == _notice_kinds(db)

    def test_new_enrolments_get_the_newest_version(self, db: Database) -> None:
        """Without a version, enrolling uses 1.1.0: its steps, its canonical, no 1.0.0 action."""
        engine = _engine(db)

        state = engine.enrol("example-acp", "Patient/p2", now=START)

        careplan = _resource(db, "CarePlan", state.id)
        actions = db.run(lambda s: s.exec(select(func.count()).select_from(OutboxItem)).one())

        assert "1.1.0" == state.version
        assert ["acp_talk", "check_in", "register", "review"] == sorted(state.steps)
        assert [V2] == careplan["instantiatesCanonical"]
        assert 0 == actions

    def test_a_newer_version_runs_its_own_steps(self, db: Database) -> None:
        """A 1.1.0 enrolment opens acp_talk after register, and sends no reminder (1.1.0 has none)."""
        engine = _engine(db)
        enrolment = engine.enrol("example-acp", "Patient/p2", now=START).id
        engine.task_status(enrolment, "register", "completed", now=REGISTERED)

        engine.tick(DUE + timedelta(days=60))

        state = engine.state(enrolment)

        assert (StepState.READY, True) == (state.steps["acp_talk"].state, state.steps["acp_talk"].overdue)
        assert [] == _notice_kinds(db)


class TestMigrateEnrolments:
    """migrate_enrolments moves active enrolments to another version, step by step."""

    def test_an_open_conversation_becomes_an_open_acp_talk_with_the_same_due_date(self, db: Database) -> None:
        """The renamed step stays open with its deadline; new steps wait; dropped steps are gone."""
        engine = _engine(db)
        enrolment = _open_conversation(engine)

        moved = migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0", step_map=RENAME,
                                   now=MIGRATED)

        state = engine.state(enrolment)

        assert [enrolment] == moved
        assert ("1.1.0", EnrolmentStatus.ACTIVE) == (state.version, state.status)
        assert ["acp_talk", "check_in", "register", "review"] == sorted(state.steps)
        assert (StepState.READY, DUE, REGISTERED) == (state.steps["acp_talk"].state, state.steps["acp_talk"].due_at,
                                                     state.steps["acp_talk"].ready_at)
        assert (StepState.COMPLETED, StepState.PENDING, StepState.PENDING) == (
            state.steps["register"].state, state.steps["check_in"].state, state.steps["review"].state)

    def test_the_old_task_is_cancelled_and_a_new_task_opened(self, db: Database) -> None:
        """The conversation Task is cancelled with the reason; an acp_talk Task is requested with the same due date."""
        engine = _engine(db)
        enrolment = _open_conversation(engine)

        migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0", step_map=RENAME, now=MIGRATED)

        old = _resource(db, "Task", task_id(enrolment, "conversation", 0))
        new = _resource(db, "Task", task_id(enrolment, "acp_talk", 0))
        careplan = _resource(db, "CarePlan", enrolment)

        assert ("cancelled", "moved to step 'acp_talk' in example-acp 1.1.0") == (old["status"],
                                                                                old["statusReason"]["text"])
        assert ("requested", instant(DUE), f"{enrolment}/acp_talk/0") == (
            new["status"], new["restriction"]["period"]["end"], new["identifier"][0]["value"])
        assert f"Task/{new['id']}" in [a["reference"]["reference"] for a in careplan["activity"]]

    def test_timers_move_with_the_renamed_step(self, db: Database) -> None:
        """The conversation's due, reminder and escalation timers now belong to acp_talk, at the same moments."""
        engine = _engine(db)
        enrolment = _open_conversation(engine)
        before = _timers(db, enrolment)

        migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0", step_map=RENAME, now=MIGRATED)

        assert {("conversation", "due", 0, DUE), ("conversation", "remind", 0, DUE),
                ("conversation", "escalate", 0, DUE + timedelta(weeks=3))} == before
        assert {("acp_talk", "due", 0, DUE), ("acp_talk", "remind", 0, DUE),
                ("acp_talk", "escalate", 0, DUE + timedelta(weeks=3))} == _timers(db, enrolment)

    def test_the_careplan_is_repinned_and_the_migration_audited(self, db: Database) -> None:
        """CarePlan.instantiatesCanonical becomes …|1.1.0 and an audit entry records old -> new."""
        engine = _engine(db)
        enrolment = _open_conversation(engine)

        migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0", step_map=RENAME, now=MIGRATED)

        careplan = _resource(db, "CarePlan", enrolment)
        audits = db.run(lambda s: [(a.actor, a.action, a.entity, a.detail) for a in s.exec(
            select(AuditEntry).where(AuditEntry.what == "migrate"))])

        assert [V2] == careplan["instantiatesCanonical"]
        assert [("system:migrate", "U", f"CarePlan/{enrolment}", f"{V1} -> {V2}")] == audits

    def test_a_migrated_enrolment_runs_on_the_new_definition(self, db: Database) -> None:
        """After migration the moved timers fire under 1.1.0 (no reminder) and recording the ACP opens check_in."""
        engine = _engine(db)
        enrolment = _open_conversation(engine)
        migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0", step_map=RENAME, now=MIGRATED)
        engine.tick(DUE + timedelta(weeks=4))

        engine.ingest({"resourceType": "Procedure", "id": "acp1", "status": "completed",
                       "code": {"coding": [{"system": SCT, "code": "713603004"}]},
                       "subject": {"reference": "Patient/p1"}}, now=DUE + timedelta(weeks=5))

        state = engine.state(enrolment)

        assert [] == _notice_kinds(db)
        assert (StepState.COMPLETED, StepState.READY) == (state.steps["acp_talk"].state,
                                                          state.steps["check_in"].state)

    def test_a_dropped_open_step_is_cancelled_and_new_steps_start(self, db: Database) -> None:
        """Dropping the open conversation cancels its Task and timers; acp_talk (new) starts at the migration."""
        engine = _engine(db)
        enrolment = _open_conversation(engine)

        migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0",
                           step_map={"conversation": None, "share": None}, now=MIGRATED)

        state = engine.state(enrolment)
        old = _resource(db, "Task", task_id(enrolment, "conversation", 0))

        assert ("cancelled", "step removed in example-acp 1.1.0") == (old["status"], old["statusReason"]["text"])
        assert (StepState.READY, MIGRATED + timedelta(days=28)) == (state.steps["acp_talk"].state,
                                                                    state.steps["acp_talk"].due_at)
        assert {("acp_talk", "due", 0, MIGRATED + timedelta(days=28))} == _timers(db, enrolment)

    def test_a_dropped_open_handover_is_told_to_its_receiver(self, db: Database) -> None:
        """Dropping the open share step cancels its Task, and the out-of-hours post that owns it is told."""
        engine = _engine(db)
        engine.ingest({"resourceType": "CareTeam", "id": "team", "status": "active",
                       "subject": {"reference": "Patient/p1"},
                       "participant": [{"role": [{"coding": [{"system": ROLE_SYSTEM, "code": "out-of-hours"}]}],
                                        "member": {"reference": "Organization/ooh"}}]}, now=START)
        enrolment = _open_conversation(engine)
        engine.ingest({"resourceType": "Procedure", "id": "acp", "status": "completed",
                       "subject": {"reference": "Patient/p1"},
                       "code": {"coding": [{"system": SCT, "code": "713603004"}]}}, now=REGISTERED)
        engine.ingest({"resourceType": "Consent", "id": "share", "status": "active",
                       "patient": {"reference": "Patient/p1"},
                       "category": [{"coding": [{"system": SCT, "code": "425691002"}]}]}, now=REGISTERED)
        shared = _resource(db, "Task", task_id(enrolment, "share", 0))

        migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0", step_map=RENAME, now=MIGRATED)

        cancelled = _resource(db, "Task", task_id(enrolment, "share", 0))
        told = db.run(lambda s: [(i.target, i.payload["task"], i.payload["status"]) for i in s.exec(
            select(OutboxItem).where(OutboxItem.channel == "task-changed"))])
        assert ("Organization/ooh", "cancelled") == (shared["owner"]["reference"], cancelled["status"])
        assert [("Organization/ooh", f"Task/{cancelled['id']}", "cancelled")] == told

    def test_a_step_renamed_to_the_id_of_a_dropped_step_keeps_its_timers(self, db: Database) -> None:
        """Renaming conversation to review while dropping the old review keeps the deadline: it still fires."""
        engine = _engine(db)
        enrolment = _open_conversation(engine)

        migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0",
                           step_map={"conversation": "review", "review": None, "share": None}, now=MIGRATED)
        timers = _timers(db, enrolment)
        engine.tick(DUE)

        review = engine.state(enrolment).steps["review"]

        assert (StepState.READY, DUE) == (review.state, review.due_at)
        assert {("review", "due", 0, DUE), ("review", "remind", 0, DUE),
                ("review", "escalate", 0, DUE + timedelta(weeks=3)),
                ("acp_talk", "due", 0, MIGRATED + timedelta(days=28))} == timers
        assert review.overdue

    def test_only_active_enrolments_on_the_old_version_move(self, db: Database) -> None:
        """An ended 1.0.0 enrolment and a 1.1.0 enrolment are left exactly as they were."""
        engine = _engine(db)
        active = _open_conversation(engine, "Patient/p1")
        ended = _open_conversation(engine, "Patient/p2")
        engine.withdraw(ended, reason="moved away", now=REGISTERED)
        newer = engine.enrol("example-acp", "Patient/p3", now=START).id
        rows_before = db.run(lambda s: {e.id: (e.pathway_version, e.revision) for e in s.exec(select(Enrolment))})

        moved = migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0", step_map=RENAME,
                                   now=MIGRATED)

        rows = db.run(lambda s: {e.id: (e.pathway_version, e.revision) for e in s.exec(select(Enrolment))})

        assert [active] == moved
        assert (rows_before[ended], rows_before[newer]) == (rows[ended], rows[newer])
        assert "1.1.0" == rows[active][0]


class TestMigrationErrors:
    """A migration that cannot be done raises MigrationError, lists every problem, and changes nothing."""

    def test_an_unmapped_open_step_raises_and_nothing_is_migrated(self, db: Database) -> None:
        """An open conversation with no place in 1.1.0 stops the whole migration, other enrolments included."""
        engine = _engine(db)
        blocked = _open_conversation(engine, "Patient/p1")
        movable = engine.enrol("example-acp", "Patient/p2", version="1.0.0", now=START).id
        before = _snapshot(db)

        with pytest.raises(MigrationError) as info:
            migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0", now=MIGRATED)

        assert (f"enrolment {blocked}: open step 'conversation' has no place in 1.1.0 "
                "(map it to a step, or to None to drop it)") == str(info.value)
        assert movable not in str(info.value)
        assert before == _snapshot(db)
        assert isinstance(info.value, ValueError)

    def test_every_unmapped_open_step_of_every_enrolment_is_listed(self, db: Database) -> None:
        """Two blocked enrolments give two problems in one message."""
        engine = _engine(db)
        first = _open_conversation(engine, "Patient/p1")
        second = _open_conversation(engine, "Patient/p2")

        with pytest.raises(MigrationError) as info:
            migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0", step_map={"share": None},
                               now=MIGRATED)

        problems = str(info.value).split("; ")

        assert sorted(f"enrolment {e}: open step 'conversation' has no place in 1.1.0 "
                      "(map it to a step, or to None to drop it)" for e in (first, second)) == sorted(problems)

    def test_mapping_to_steps_that_do_not_exist_lists_every_problem(self, db: Database) -> None:
        """Unknown targets and unknown sources are all named in one message, and nothing changes."""
        engine = _engine(db)
        _open_conversation(engine)
        before = _snapshot(db)

        with pytest.raises(MigrationError) as info:
            migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0",
                               step_map={"conversation": "talk", "ghost": "acp_talk", "share": "sharing"},
                               now=MIGRATED)

        assert ("cannot migrate example-acp from 1.0.0 to 1.1.0: 'talk' is not a step of example-acp|1.1.0; "
                "'ghost' is not a step of example-acp|1.0.0; 'sharing' is not a step of example-acp|1.1.0"
                ) == str(info.value)
        assert before == _snapshot(db)

    def test_two_old_steps_cannot_map_onto_one_new_step(self, db: Database) -> None:
        """Mapping conversation and share both to acp_talk is refused."""
        engine = _engine(db)
        _open_conversation(engine)

        with pytest.raises(MigrationError, match="several old steps map to 'acp_talk'"):
            migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.1.0",
                               step_map={"conversation": "acp_talk", "share": "acp_talk"}, now=MIGRATED)

    def test_migrating_to_the_same_version_is_refused(self, db: Database) -> None:
        """From 1.0.0 to 1.0.0 is not a migration."""
        engine = _engine(db)

        with pytest.raises(MigrationError, match=r"example-acp 1\.0\.0 and 1\.0\.0 are the same version"):
            migrate_enrolments(db, engine.registry, "example-acp", "1.0.0", "1.0.0", now=MIGRATED)


def _zorgpad(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ZORGPAD), *args], capture_output=True, text=True, timeout=120, check=False, cwd=REPO)


@pytest.mark.slow
class TestMigrateCommand:
    """`zorgpad pathways migrate` runs the same migration from the command line."""

    def test_the_command_moves_enrolments_with_map_and_drop(self, db: Database, db_url: str) -> None:
        """--map conversation=acp_talk --drop share moves the open enrolment and reports how many moved."""
        engine = _engine(db)
        enrolment = _open_conversation(engine)

        result = _zorgpad("pathways", "migrate", "example-acp", "--from", "1.0.0", "--to", "1.1.0",
                          "--map", "conversation=acp_talk", "--drop", "share", "--file", str(EXAMPLE),
                          "--db", db_url)

        state = engine.state(enrolment)

        assert (0, "migrated 1 enrolments of example-acp from 1.0.0 to 1.1.0\n", "") == (
            result.returncode, result.stdout, result.stderr)
        assert ("1.1.0", StepState.READY, DUE) == (state.version, state.steps["acp_talk"].state,
                                                  state.steps["acp_talk"].due_at)
        assert [V2] == _resource(db, "CarePlan", enrolment)["instantiatesCanonical"]
        assert "cancelled" == _resource(db, "Task", task_id(enrolment, "conversation", 0))["status"]

    def test_a_refused_migration_is_one_error_line_and_changes_nothing(self, db: Database, db_url: str) -> None:
        """Without a map for the open conversation the command exits 1 with the problem and moves nothing."""
        engine = _engine(db)
        enrolment = _open_conversation(engine)
        before = _snapshot(db)

        result = _zorgpad("pathways", "migrate", "example-acp", "--from", "1.0.0", "--to", "1.1.0",
                          "--file", str(EXAMPLE), "--db", db_url)

        assert (1, "") == (result.returncode, result.stdout)
        assert (f"zorgpad: error: enrolment {enrolment}: open step 'conversation' has no place in 1.1.0 "
                "(map it to a step, or to None to drop it)\n") == result.stderr
        assert before == _snapshot(db)

    def test_a_malformed_map_is_refused(self, db_url: str) -> None:
        """--map without '=' is an error naming the option value."""
        result = _zorgpad("pathways", "migrate", "example-acp", "--from", "1.0.0", "--to", "1.1.0",
                          "--map", "conversation", "--file", str(EXAMPLE), "--db", db_url)

        assert (1, "zorgpad: error: invalid --map 'conversation': expected OLD=NEW\n") == (
            result.returncode, result.stderr)

