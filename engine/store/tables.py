"""The tables. Waiting enrolments, timers and outbox items are rows, never objects held in memory."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel
from zorgpad.engine.store._types import JSONDocument, UTCDateTime


def _utc(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


class Enrolment(SQLModel, table=True):
    """A patient in one pathway version (shown over FHIR as a CarePlan with the same id)."""

    id: str = Field(primary_key=True, max_length=64)
    patient: str = Field(index=True, max_length=128)
    pathway_id: str = Field(index=True, max_length=64)
    pathway_version: str = Field(max_length=32)
    status: str = Field(index=True, max_length=16)
    enrolled_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    ended_at: datetime | None = _utc()
    end_reason: str | None = Field(default=None, sa_type=Text)
    facts: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument)
    dates: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument)
    episode: str | None = Field(default=None, max_length=200)
    revision: int = Field(default=0)

    __table_args__ = (Index("ix_enrolment_patient_status", "patient", "status"),)


class StepRun(SQLModel, table=True):
    """The current round of one step of one enrolment."""

    __tablename__ = "step_run"

    enrolment_id: str = Field(primary_key=True, foreign_key="enrolment.id", max_length=64)
    step_id: str = Field(primary_key=True, max_length=64)
    state: str = Field(index=True, max_length=16)
    iteration: int = 0
    completions: int = 0
    start_at: datetime | None = _utc()
    ready_at: datetime | None = _utc()
    due_at: datetime | None = _utc(index=True)
    completed_at: datetime | None = _utc()
    reminders_sent: int = 0
    overdue: bool = False
    escalated: bool = False
    business_status: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, sa_type=Text)
    owner_role: str | None = Field(default=None, max_length=32)
    owner: str | None = Field(default=None, max_length=128)
    task_id: str | None = Field(default=None, max_length=64)
    rerun: bool = False


class Timer(SQLModel, table=True):
    """A durable timer; a tick fires each one exactly once and deletes it in the same transaction."""

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    due_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    enrolment_id: str = Field(index=True, max_length=64)
    step_id: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    iteration: int = 0
    seq: int = 0

    __table_args__ = (
        UniqueConstraint("enrolment_id", "step_id", "kind", "iteration", "seq", name="uq_timer_occurrence"),
    )


class OutboxItem(SQLModel, table=True):
    """Something to deliver after commit: a notification, a handover announcement, an action."""

    __tablename__ = "outbox"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    idempotency_key: str = Field(sa_column=Column(String(200), unique=True, nullable=False))
    channel: str = Field(max_length=32)
    target: str | None = Field(default=None, max_length=256)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument)
    status: str = Field(default="pending", index=True, max_length=16)
    attempts: int = 0
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    lease_until: datetime | None = _utc()
    delivered_at: datetime | None = _utc()
    last_error: str | None = Field(default=None, sa_type=Text)
    enrolment_id: str | None = Field(default=None, index=True, max_length=64)
    step_id: str | None = Field(default=None, max_length=64)


class InboxEntry(SQLModel, table=True):
    """An incoming message already handled, by its de-duplication key, with the answer given."""

    __tablename__ = "inbox"

    key: str = Field(primary_key=True, max_length=200)
    received_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    response: dict[str, Any] | None = Field(default=None, sa_type=JSONDocument)


class AuditEntry(SQLModel, table=True):
    """Who did what to which patient's data, when, with what outcome (NEN 7513 in spirit)."""

    __tablename__ = "audit"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    recorded_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    actor: str = Field(max_length=128)
    organisation: str | None = Field(default=None, index=True, max_length=128)
    action: str = Field(max_length=1)  # C R U D E, as AuditEvent.action
    what: str = Field(max_length=64)  # e.g. "read", "enrol", "timer:remind", "deliver"
    entity: str | None = Field(default=None, max_length=200)
    patient: str | None = Field(default=None, index=True, max_length=128)
    outcome: str = Field(default="0", max_length=2)  # AuditEvent.outcome: 0 ok, 4 minor, 8 serious, 12 major
    detail: str | None = Field(default=None, sa_type=Text)


class StoredResource(SQLModel, table=True):
    """The current version of a FHIR resource."""

    __tablename__ = "resource"

    resource_type: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=64)
    version_id: int = 1
    last_updated: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    deleted: bool = False
    patient: str | None = Field(default=None, index=True, max_length=128)
    content: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument)


class ResourceVersion(SQLModel, table=True):
    """Every version of every FHIR resource, for vread and history."""

    __tablename__ = "resource_version"

    resource_type: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=64)
    version_id: int = Field(primary_key=True)
    last_updated: datetime = Field(sa_type=UTCDateTime, nullable=False)
    method: str = Field(max_length=8)  # POST PUT DELETE
    deleted: bool = False
    content: dict[str, Any] | None = Field(default=None, sa_type=JSONDocument)


class SearchToken(SQLModel, table=True):
    """A token search value of a current resource (``code``, ``status``, ``identifier``, …)."""

    __tablename__ = "search_token"

    pk: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    resource_type: str = Field(max_length=64)
    resource_id: str = Field(max_length=64)
    param: str = Field(max_length=64)
    system: str | None = Field(default=None, max_length=256)
    code: str = Field(max_length=256)

    __table_args__ = (
        Index("ix_search_token_lookup", "resource_type", "param", "code", "system"),
        Index("ix_search_token_owner", "resource_type", "resource_id"),
    )


class SearchReference(SQLModel, table=True):
    """A reference search value of a current resource (``patient``, ``owner``, ``encounter``, …)."""

    __tablename__ = "search_reference"

    pk: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    resource_type: str = Field(max_length=64)
    resource_id: str = Field(max_length=64)
    param: str = Field(max_length=64)
    target: str = Field(max_length=256)

    __table_args__ = (
        Index("ix_search_reference_lookup", "resource_type", "param", "target"),
        Index("ix_search_reference_owner", "resource_type", "resource_id"),
    )


class SearchDate(SQLModel, table=True):
    """A date search value of a current resource, as the period it covers."""

    __tablename__ = "search_date"

    pk: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    resource_type: str = Field(max_length=64)
    resource_id: str = Field(max_length=64)
    param: str = Field(max_length=64)
    start: datetime | None = _utc()
    end: datetime | None = _utc()

    __table_args__ = (
        Index("ix_search_date_lookup", "resource_type", "param", "start"),
        Index("ix_search_date_owner", "resource_type", "resource_id"),
    )


class ApiToken(SQLModel, table=True):
    """A bearer token, stored only as its SHA-256 hash, for an organisation or an administrator."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    token_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    name: str = Field(max_length=128)
    organisation: str | None = Field(default=None, max_length=128)
    admin: bool = False
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    revoked_at: datetime | None = _utc()


class Account(SQLModel, table=True):
    """A person who signs in to the dashboard with a username and password (scrypt hash), for one
    organisation or as an administrator."""

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    username: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    display_name: str = Field(max_length=128)
    organisation: str | None = Field(default=None, max_length=128)
    admin: bool = False
    password_hash: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    password_changed_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    disabled_at: datetime | None = _utc()
    failed_logins: int = 0
    locked_until: datetime | None = _utc()


class DashboardSession(SQLModel, table=True):
    """A signed-in dashboard session: the cookie holds a random secret, stored here only as its hash, for an
    account or a bearer token (never the token itself)."""

    __tablename__ = "dashboard_session"

    secret_hash: str = Field(primary_key=True, max_length=64)
    account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    token_id: int | None = Field(default=None, foreign_key="api_token.id", index=True)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_seen_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)


class SubscriptionCounter(SQLModel, table=True):
    """How many notifications a Subscription has had queued: the R4 backport's ``events-since-subscription-
    start``, counted in the transaction that queues them (on PostgreSQL the row lock puts concurrent writers
    in turn, so every event gets its own number)."""

    __tablename__ = "subscription_counter"

    subscription_id: str = Field(primary_key=True, max_length=64)
    events: int = 0
