"""enrolment episode

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

The resource that started an enrolment (e.g. the admission Encounter), for episode-scoped criteria.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import zorgpad.engine.store._types  # noqa: F401


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('enrolment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('episode', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('enrolment', schema=None) as batch_op:
        batch_op.drop_column('episode')

