"""subscription counters

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

A counter per Subscription of the notifications queued for it (events-since-subscription-start), taken over
from the count of its rest-hook outbox items that numbered them before.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import zorgpad.engine.store._types  # noqa: F401


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('subscription_counter',
    sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('subscription_id')
    )
    # Outbox keys are rest-hook/{subscription id}/{type}/{id}/{version}; FHIR ids hold no LIKE wildcards.
    op.execute("INSERT INTO subscription_counter (subscription_id, events) "
               "SELECT r.id, (SELECT count(*) FROM outbox o WHERE o.idempotency_key LIKE 'rest-hook/' || r.id || '/%') "
               "FROM resource r WHERE r.resource_type = 'Subscription'")


def downgrade() -> None:
    op.drop_table('subscription_counter')
