"""A test kit for pathways: run a pathway over simulated months against a timeline of FHIR resources.

    harness = PathwayHarness([MyPathway], start=datetime(2026, 1, 1, tzinfo=UTC))
    harness.add(patient_resource)
    enrolment = harness.enrol("my-pathway", "Patient/p1")
    harness.advance(weeks(6))          # fires every timer at its own due moment; never sleeps
    assert harness.step("talk").business_status == "escalated"
    assert [n.kind for n in harness.notices()] == ["reminder", "escalation"]

The harness runs the real engine on a real database (in-memory SQLite unless a URL is given), so a
pathway test exercises exactly what production runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, func, select
from zorgpad.engine._dsl import Pathway
from zorgpad.engine._durations import Duration
from zorgpad.engine._model import EnrolmentState, StepRun
from zorgpad.engine._projection import NOTICE_SYSTEM
from zorgpad.engine.clock import FrozenClock, utc
from zorgpad.engine.outbox import DeliveryReport
from zorgpad.engine.registry import Registry
from zorgpad.engine.runtime import Engine, IngestResult
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import OutboxItem, StoredResource, Timer

__all__ = ["FrozenClock", "Notice", "PathwayHarness", "run_pathway"]

JSON = dict[str, Any]
When = datetime | timedelta | Duration


@dataclass(frozen=True)
class Notice:
    """A reminder, escalation, handover notice or cancellation the engine sent."""

    at: datetime
    kind: str
    step: str
    recipient: str | None
    text: str
    task: str


class PathwayHarness:
    """The real engine on a throw-away database, with a clock that only moves when told."""

    def __init__(self, pathways: Iterable[type[Pathway]], *, start: datetime,
                 database_url: str = "sqlite://") -> None:
        self.clock = FrozenClock(start)
        self.db = Database(database_url)
        self.db.upgrade()
        self.registry = Registry(pathways)
        self.engine = Engine(self.db, self.registry, self.clock)

    @property
    def now(self) -> datetime:
        """The simulated time."""
        return self.clock.now()

    # -- driving -----------------------------------------------------------------------------------

    def add(self, resource: Mapping[str, Any]) -> IngestResult:
        """Take in a FHIR resource now, as if a partner system sent it."""
        return self.engine.ingest(resource)

    def enrol(self, pathway_id: str, patient: str, *, version: str | None = None) -> EnrolmentState:
        """Enrol a patient now."""
        return self.engine.enrol(pathway_id, patient, version=version)

    def advance(self, by: timedelta | Duration) -> int:
        """Move time forward, firing every timer at its own due moment on the way; return how many fired."""
        target = by.after(self.now) if isinstance(by, Duration) else self.now + by
        return self.advance_to(target)

    def advance_to(self, target: datetime) -> int:
        """Move time to ``target``, firing every timer at its own due moment on the way."""
        target = utc(target)
        fired = 0
        while True:
            next_due = self.db.run(lambda s: s.exec(select(func.min(Timer.due_at))).one())
            if next_due is None or utc(next_due) > target:
                break
            self.clock.set(max(utc(next_due), self.now))
            fired += self.engine.tick()
        self.clock.set(target)
        return fired

    def deliver(self) -> DeliveryReport:
        """Flush the outbox now."""
        return self.engine.deliver()

    # -- looking -----------------------------------------------------------------------------------

    def enrolments(self, patient: str | None = None) -> list[EnrolmentState]:
        """Every enrolment (of ``patient``), oldest first."""
        from zorgpad.engine.store.enrolments import load_state
        from zorgpad.engine.store.tables import Enrolment

        def read(session: Any) -> list[EnrolmentState]:
            query = select(Enrolment).order_by(col(Enrolment.enrolled_at), col(Enrolment.id))
            if patient is not None:
                query = query.where(Enrolment.patient == patient)
            return [load_state(session, row) for row in session.exec(query)]

        return self.db.run(read)

    def enrolment(self, pathway_id: str | None = None, patient: str | None = None) -> EnrolmentState:
        """The one enrolment matching the filters (an error if there are none or several)."""
        found = [e for e in self.enrolments(patient) if pathway_id in (None, e.pathway_id)]
        if len(found) != 1:
            raise LookupError(f"expected one enrolment, found {len(found)}")
        return found[0]

    def step(self, step_id: str, *, pathway_id: str | None = None, patient: str | None = None) -> StepRun:
        """The state of a step of the one matching enrolment."""
        return self.enrolment(pathway_id, patient).steps[step_id]

    def resources(self, resource_type: str) -> list[JSON]:
        """Every current resource of a type."""
        return self.db.run(lambda s: [r.content for r in s.exec(
            select(StoredResource).where(StoredResource.resource_type == resource_type,
                                         col(StoredResource.deleted).is_(False)))])

    def tasks(self, step_id: str | None = None) -> list[JSON]:
        """The engine's Tasks (of one step), ordered by when they were authored."""
        tasks = [t for t in self.resources("Task") if step_id is None or (Engine.step_of_task(t)
                 and Engine.step_of_task(t)[1] == step_id)]  # type: ignore[index]
        return sorted(tasks, key=lambda t: (t["authoredOn"], t["id"]))

    def notices(self, kind: str | None = None) -> list[Notice]:
        """Every notice sent, in order."""
        found = []
        for c in self.resources("Communication"):
            codes = [cd["code"] for cat in c.get("category", []) for cd in cat.get("coding", [])
                     if cd.get("system") == NOTICE_SYSTEM]
            if not codes or (kind is not None and codes[0] != kind):
                continue
            task_ref: str = c["about"][0]["reference"]
            task = self._stored("Task", task_ref.split("/", 1)[1])
            step = Engine.step_of_task(task.content) if task else None
            at = datetime.fromisoformat(c["extension"][0]["valueDateTime"].replace("Z", "+00:00"))
            recipients = [r["reference"] for r in c.get("recipient", [])]
            found.append(Notice(at, codes[0], step[1] if step else "?", recipients[0] if recipients else None,
                                c["payload"][0]["contentString"], task_ref))
        return sorted(found, key=lambda n: (n.at, n.kind, n.step))

    def _stored(self, resource_type: str, resource_id: str) -> StoredResource | None:
        return self.db.run(lambda s: s.get(StoredResource, (resource_type, resource_id)))

    def outbox(self) -> list[OutboxItem]:
        """Every outbox row, oldest first."""
        return self.db.run(lambda s: list(s.exec(select(OutboxItem).order_by(col(OutboxItem.id)))))

    def close(self) -> None:
        """Release the database."""
        self.db.dispose()


def run_pathway(pathway: type[Pathway], *, start: datetime, timeline: Sequence[tuple[When, Mapping[str, Any]]],
                until: When, enrol: str | None = None, others: Iterable[type[Pathway]] = ()) -> PathwayHarness:
    """Run ``pathway`` from ``start`` to ``until``, feeding each resource of ``timeline`` at its moment.

    Moments are datetimes, or offsets from ``start`` (timedelta or Duration). With ``enrol`` (a
    ``Patient/id``) the patient is enrolled explicitly at ``start``, after the resources due then.
    Returns the harness, to inspect.
    """
    harness = PathwayHarness([pathway, *others], start=start)

    def moment(when: When) -> datetime:
        if isinstance(when, datetime):
            return utc(when)
        return when.after(start) if isinstance(when, Duration) else start + when

    events = sorted(((moment(w), i, r) for i, (w, r) in enumerate(timeline)), key=lambda e: (e[0], e[1]))
    enrolled = enrol is None
    for at, _, resource in events:
        if not enrolled and at > start:
            harness.enrol(pathway.id, enrol)  # type: ignore[arg-type]
            enrolled = True
        harness.advance_to(at)
        harness.add(resource)
    if not enrolled:
        harness.enrol(pathway.id, enrol)  # type: ignore[arg-type]
    harness.advance_to(moment(until))
    return harness
