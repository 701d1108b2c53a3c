"""The engine at work: enrol patients, take in FHIR resources, fire timers, flush the outbox.

Every method is one database transaction (or a series of them for ``tick`` and ``deliver``); the FHIR
interface calls the ``*_in`` variants inside its own transactions so that a transaction Bundle stays
atomic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, select
from zorgpad.engine._apply import ACTION_CHANNEL, NOTIFY_CHANNEL, TASK_CHANGED_CHANNEL, apply_outcome
from zorgpad.engine._dsl import Pathway
from zorgpad.engine._evaluate import evaluate, new_enrolment
from zorgpad.engine._index import Matches
from zorgpad.engine._model import (
    Enrol,
    EnrolmentState,
    Event,
    ResourceChanged,
    StepOverride,
    TaskStatusChanged,
    Withdraw,
)
from zorgpad.engine._projection import STEP_RUN_SYSTEM
from zorgpad.engine._states import EnrolmentStatus
from zorgpad.engine.clock import Clock, SystemClock, utc
from zorgpad.engine.errors import NotEnrolledError
from zorgpad.engine.outbox import DeliveryReport, Outbox, Transport, local_notify, no_partners, run_actions
from zorgpad.engine.registry import Registry
from zorgpad.engine.store.audit import SYSTEM, Actor, audit
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.enrolments import active_enrolments_of, load_state, lock_enrolments
from zorgpad.engine.store.resources import fresh_id, new_id, patient_of, put_resource, resources_of_patient
from zorgpad.engine.store.tables import Enrolment, StoredResource
from zorgpad.engine.timers import tick

JSON = dict[str, Any]


@dataclass
class IngestResult:
    """What taking in one resource did."""

    resource: StoredResource
    enrolled: list[str] = field(default_factory=list)
    advanced: list[str] = field(default_factory=list)


def known_facts(session: Session, pathway: type[Pathway], patient: str, now: datetime, *,
                since: datetime | None = None, episode: str | None = None
                ) -> tuple[dict[str, dict[str, datetime]], dict[str, datetime]]:
    """The criteria of ``pathway`` that the patient's stored resources already meet, and their dates.

    A criterion marked ``during_enrolment`` only counts resources written at or after ``since`` (default
    ``now``, the moment of enrolment).
    """
    criteria = pathway.criteria()
    facts: dict[str, dict[str, datetime]] = {}
    dates: dict[str, datetime] = {}
    since = since or now
    for resource in resources_of_patient(session, patient, {c.resource_type for c in criteria.values()}):
        written = _last_updated(resource)
        ref = f"{resource['resourceType']}/{resource['id']}"
        for name, criterion in criteria.items():
            if criterion.during_enrolment and (written is None or written < since):
                continue
            if criterion.episode and episode is not None and ref != episode:
                continue
            if criterion.matches(resource):
                facts.setdefault(name, {})[f"{resource['resourceType']}/{resource['id']}"] = now
                moment = criterion.date_of(resource)
                if moment is not None:
                    dates[name] = moment
    return facts, dates


def _too_old(pathway: type[Pathway], resource: Mapping[str, Any], matches: Matches, now: datetime) -> bool:
    """Whether every enrolling criterion the resource meets dates it further back than ``enrol_within``."""
    if pathway.enrol_within is None or pathway.enrol_when is None:
        return False
    names = matches.by_pathway.get((pathway.id, pathway.version), frozenset())
    dates = [c.date_of(resource) for c in pathway.enrol_when.leaves() if c.name in names]
    oldest_allowed = now - pathway.enrol_within.approximate()
    return all(d is not None and d < oldest_allowed for d in dates) and bool(dates)


def _last_updated(resource: Mapping[str, Any]) -> datetime | None:
    stamp = (resource.get("meta") or {}).get("lastUpdated")
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if isinstance(stamp, str) else None


class Engine:
    """Zorgpad's runtime over one database and one set of registered pathways."""

    def __init__(self, db: Database, registry: Registry | None = None, clock: Clock | None = None,
                 transports: Mapping[str, Transport] | None = None) -> None:
        self.db = db
        self.registry = registry if registry is not None else Registry.default()
        self.clock = clock or SystemClock()
        channels: dict[str, Transport] = {NOTIFY_CHANNEL: local_notify(db), ACTION_CHANNEL: run_actions(self.registry),
                                          TASK_CHANGED_CHANNEL: no_partners}
        channels.update(transports or {})
        self.outbox = Outbox(db, channels)

    def _now(self, now: datetime | None) -> datetime:
        return utc(now) if now is not None else self.clock.now()

    # -- enrolment ---------------------------------------------------------------------------------

    def enrol(self, pathway_id: str, patient: str, *, version: str | None = None, actor: Actor = SYSTEM,
              now: datetime | None = None) -> EnrolmentState:
        """Enrol ``patient`` (``Patient/id``) in the newest (or given) version of a pathway."""
        moment = self._now(now)
        return self.db.run(lambda s: self.enrol_in(s, pathway_id, patient, version=version, actor=actor,
                                                   now=moment))

    def enrol_in(self, session: Session, pathway_id: str, patient: str, *, version: str | None = None,
                 actor: Actor = SYSTEM, now: datetime, enrolment_id: str | None = None,
                 trigger: str | None = None) -> EnrolmentState:
        """:meth:`enrol` inside the caller's transaction; ``trigger`` is the resource whose arrival enrols."""
        pathway = self.registry.get(pathway_id, version)
        facts, dates = known_facts(session, pathway, patient, now, episode=trigger)
        state = new_enrolment(pathway, enrolment_id or new_id(), patient, now)
        event = Enrol(facts, dates, trigger)
        outcome = evaluate(pathway, state, event, now)
        apply_outcome(session, pathway, None, event, outcome, now, actor)
        return outcome.state

    # -- incoming FHIR data ------------------------------------------------------------------------

    def ingest(self, resource: Mapping[str, Any], *, actor: Actor = SYSTEM, now: datetime | None = None,
               method: str = "PUT") -> IngestResult:
        """Store ``resource`` (giving it an id if it has none) and let every affected enrolment react."""
        moment = self._now(now)
        return self.db.run(lambda s: self.ingest_in(s, resource, actor=actor, now=moment, method=method))

    def ingest_in(self, session: Session, resource: Mapping[str, Any], *, actor: Actor = SYSTEM,
                  now: datetime, method: str = "PUT") -> IngestResult:
        """:meth:`ingest` inside the caller's transaction."""
        content = dict(resource)
        if "id" not in content:
            content["id"] = fresh_id(session, str(content["resourceType"]))
        stored = put_resource(session, content, now, method=method)
        audit(session, actor, now, action="C" if stored.version_id == 1 else "U", what="write",
              entity=f"{content['resourceType']}/{content['id']}/_history/{stored.version_id}",
              patient=stored.patient)
        result = IngestResult(stored)
        patient = patient_of(stored.content)
        if patient is None:
            return result
        matches = self.registry.index.match(stored.content)
        ref = f"{content['resourceType']}/{content['id']}"
        enrolled_in: set[str] = set()  # pathways the patient is still actively enrolled in afterwards
        for row in active_enrolments_of(session, patient, lock=True):
            matched = matches.by_pathway.get((row.pathway_id, row.pathway_version), frozenset())
            # The facts live on the enrolment row: only load the steps when this resource concerns it.
            if not matched and not any(ref in refs for refs in (row.facts or {}).values()):
                enrolled_in.add(row.pathway_id)
                continue
            state = self._apply(session, row, load_state(session, row), ResourceChanged(stored.content, matched),
                                now, actor)
            result.advanced.append(row.id)
            if state.status is EnrolmentStatus.ACTIVE:
                enrolled_in.add(row.pathway_id)
        for pathway_id, version in sorted(matches.enrols):
            newest = self.registry.get(pathway_id)
            if newest.version != version or pathway_id in enrolled_in:
                continue
            if any(required not in enrolled_in for required in newest.requires):
                continue  # e.g. the transmural pathway only follows patients already in palliative care
            if newest.enrol_within is not None and _too_old(newest, stored.content, matches, now):
                continue  # e.g. a death recorded long ago in an imported history
            if newest.once and session.exec(select(Enrolment.id).where(
                    Enrolment.patient == patient, Enrolment.pathway_id == pathway_id)).first() is not None:
                continue  # e.g. after-death: a later correction of the record starts nothing again
            state = self.enrol_in(session, pathway_id, patient, actor=actor, now=now, trigger=ref)
            enrolled_in.add(pathway_id)
            result.enrolled.append(state.id)
        return result

    # -- Task updates and coordinator actions ------------------------------------------------------

    def task_status(self, enrolment_id: str, step_id: str, status: str, *, reason: str | None = None,
                    actor: Actor = SYSTEM, now: datetime | None = None) -> EnrolmentState:
        """The owner set the step's Task to ``status`` (a FHIR Task.status code)."""
        return self.handle(enrolment_id, TaskStatusChanged(step_id, status, reason), actor=actor, now=now)

    def override(self, enrolment_id: str, step_id: str, action: str, *, reason: str, owner: str | None = None,
                 actor: Actor = SYSTEM, now: datetime | None = None) -> EnrolmentState:
        """A coordinator completes, skips (not applicable) or reassigns a step."""
        if action not in ("complete", "skip", "reassign"):
            raise ValueError(f"action must be complete, skip or reassign (got {action!r})")
        return self.handle(enrolment_id, StepOverride(step_id, action, reason, owner),  # type: ignore[arg-type]
                           actor=actor, now=now)

    def withdraw(self, enrolment_id: str, *, reason: str, actor: Actor = SYSTEM,
                 now: datetime | None = None) -> EnrolmentState:
        """A coordinator ends the enrolment."""
        return self.handle(enrolment_id, Withdraw(reason), actor=actor, now=now)

    def handle(self, enrolment_id: str, event: Event, *, actor: Actor = SYSTEM,
               now: datetime | None = None) -> EnrolmentState:
        """Evaluate ``event`` on one enrolment and apply the outcome, in one transaction."""
        moment = self._now(now)
        return self.db.run(lambda s: self.handle_in(s, enrolment_id, event, actor=actor, now=moment))

    def handle_in(self, session: Session, enrolment_id: str, event: Event, *, actor: Actor = SYSTEM,
                  now: datetime) -> EnrolmentState:
        """:meth:`handle` inside the caller's transaction."""
        rows = lock_enrolments(session, [enrolment_id])
        if not rows:
            raise NotEnrolledError(f"no enrolment {enrolment_id!r}")
        return self._apply(session, rows[0], load_state(session, rows[0]), event, now, actor)

    def _apply(self, session: Session, row: Enrolment, state: EnrolmentState, event: Event, now: datetime,
               actor: Actor) -> EnrolmentState:
        pathway = self.registry.get(state.pathway_id, state.version)
        outcome = evaluate(pathway, state, event, now)
        apply_outcome(session, pathway, state, event, outcome, now, actor, row)
        return outcome.state

    # -- reading -----------------------------------------------------------------------------------

    def state(self, enrolment_id: str) -> EnrolmentState:
        """The current state of an enrolment."""
        def read(session: Session) -> EnrolmentState:
            row = session.get(Enrolment, enrolment_id)
            if row is None:
                raise NotEnrolledError(f"no enrolment {enrolment_id!r}")
            return load_state(session, row)
        return self.db.run(read)

    def enrolments_of(self, patient: str) -> list[EnrolmentState]:
        """Every enrolment of ``patient``, active or ended, oldest first."""
        def read(session: Session) -> list[EnrolmentState]:
            rows = session.exec(select(Enrolment).where(Enrolment.patient == patient)
                                .order_by(Enrolment.enrolled_at, Enrolment.id)).all()  # type: ignore[arg-type]
            return [load_state(session, row) for row in rows]
        return self.db.run(read)

    @staticmethod
    def step_of_task(task: Mapping[str, Any]) -> tuple[str, str, int] | None:
        """``(enrolment id, step id, round)`` of a Task the engine created, from its identifier."""
        for identifier in task.get("identifier") or []:
            if isinstance(identifier, Mapping) and identifier.get("system") == STEP_RUN_SYSTEM:
                enrolment_id, _, rest = str(identifier.get("value", "")).partition("/")
                step_id, _, iteration = rest.partition("/")
                if enrolment_id and step_id and iteration.isdigit():
                    return enrolment_id, step_id, int(iteration)
        return None

    # -- time passing ------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None, *, batch_size: int = 200) -> int:
        """Fire every timer due by ``now``; return how many fired."""
        return tick(self.db, self.registry, self._now(now), batch_size=batch_size)

    def deliver(self, now: datetime | None = None) -> DeliveryReport:
        """Flush the outbox once."""
        return self.outbox.deliver(self._now(now))
