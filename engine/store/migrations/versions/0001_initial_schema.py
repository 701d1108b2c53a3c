"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22

The first schema: enrolments, step runs, timers, outbox, inbox, audit, and the FHIR resource store
with its history and search index tables.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import zorgpad.engine.store._types  # noqa: F401 (referenced by column types below)

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('recorded_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('organisation', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
    sa.Column('what', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('entity', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('patient', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_organisation'), ['organisation'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_patient'), ['patient'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('enrolment',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('patient', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('pathway_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('pathway_version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('enrolled_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.Text(), nullable=True),
    sa.Column('facts', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('enrolment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrolment_pathway_id'), ['pathway_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrolment_patient'), ['patient'], unique=False)
        batch_op.create_index('ix_enrolment_patient_status', ['patient', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrolment_status'), ['status'], unique=False)

    op.create_table('inbox',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('received_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('response', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_until', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('enrolment_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('step_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_enrolment_id'), ['enrolment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_status'), ['status'], unique=False)

    op.create_table('resource',
    sa.Column('resource_type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('last_updated', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('patient', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('content', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('resource_type', 'id')
    )
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resource_last_updated'), ['last_updated'], unique=False)
        batch_op.create_index(batch_op.f('ix_resource_patient'), ['patient'], unique=False)

    op.create_table('resource_version',
    sa.Column('resource_type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('last_updated', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.PrimaryKeyConstraint('resource_type', 'id', 'version_id')
    )
    op.create_table('search_date',
    sa.Column('pk', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('resource_type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('resource_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('param', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('start', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('end', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('search_date', schema=None) as batch_op:
        batch_op.create_index('ix_search_date_lookup', ['resource_type', 'param', 'start'], unique=False)
        batch_op.create_index('ix_search_date_owner', ['resource_type', 'resource_id'], unique=False)

    op.create_table('search_reference',
    sa.Column('pk', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('resource_type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('resource_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('param', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('search_reference', schema=None) as batch_op:
        batch_op.create_index('ix_search_reference_lookup', ['resource_type', 'param', 'target'], unique=False)
        batch_op.create_index('ix_search_reference_owner', ['resource_type', 'resource_id'], unique=False)

    op.create_table('search_token',
    sa.Column('pk', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('resource_type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('resource_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('param', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('system', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('search_token', schema=None) as batch_op:
        batch_op.create_index('ix_search_token_lookup', ['resource_type', 'param', 'code', 'system'], unique=False)
        batch_op.create_index('ix_search_token_owner', ['resource_type', 'resource_id'], unique=False)

    op.create_table('timer',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('due_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('enrolment_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('step_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('iteration', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('enrolment_id', 'step_id', 'kind', 'iteration', 'seq', name='uq_timer_occurrence')
    )
    with op.batch_alter_table('timer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_timer_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_timer_enrolment_id'), ['enrolment_id'], unique=False)

    op.create_table('step_run',
    sa.Column('enrolment_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('step_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('iteration', sa.Integer(), nullable=False),
    sa.Column('completions', sa.Integer(), nullable=False),
    sa.Column('start_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ready_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('due_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reminders_sent', sa.Integer(), nullable=False),
    sa.Column('overdue', sa.Boolean(), nullable=False),
    sa.Column('escalated', sa.Boolean(), nullable=False),
    sa.Column('business_status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('owner_role', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('task_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.ForeignKeyConstraint(['enrolment_id'], ['enrolment.id'], ),
    sa.PrimaryKeyConstraint('enrolment_id', 'step_id')
    )
    with op.batch_alter_table('step_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_step_run_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_step_run_state'), ['state'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('step_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_step_run_state'))
        batch_op.drop_index(batch_op.f('ix_step_run_due_at'))

    op.drop_table('step_run')
    with op.batch_alter_table('timer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_timer_enrolment_id'))
        batch_op.drop_index(batch_op.f('ix_timer_due_at'))

    op.drop_table('timer')
    with op.batch_alter_table('search_token', schema=None) as batch_op:
        batch_op.drop_index('ix_search_token_owner')
        batch_op.drop_index('ix_search_token_lookup')

    op.drop_table('search_token')
    with op.batch_alter_table('search_reference', schema=None) as batch_op:
        batch_op.drop_index('ix_search_reference_owner')
        batch_op.drop_index('ix_search_reference_lookup')

    op.drop_table('search_reference')
    with op.batch_alter_table('search_date', schema=None) as batch_op:
        batch_op.drop_index('ix_search_date_owner')
        batch_op.drop_index('ix_search_date_lookup')

    op.drop_table('search_date')
    op.drop_table('resource_version')
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_resource_patient'))
        batch_op.drop_index(batch_op.f('ix_resource_last_updated'))

    op.drop_table('resource')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_status'))
        batch_op.drop_index(batch_op.f('ix_outbox_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_outbox_enrolment_id'))

    op.drop_table('outbox')
    op.drop_table('inbox')
    with op.batch_alter_table('enrolment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrolment_status'))
        batch_op.drop_index('ix_enrolment_patient_status')
        batch_op.drop_index(batch_op.f('ix_enrolment_patient'))
        batch_op.drop_index(batch_op.f('ix_enrolment_pathway_id'))

    op.drop_table('enrolment')
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_recorded_at'))
        batch_op.drop_index(batch_op.f('ix_audit_patient'))
        batch_op.drop_index(batch_op.f('ix_audit_organisation'))

    op.drop_table('audit')
