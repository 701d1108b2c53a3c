"""step rerun

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Whether a step runs once more when its open round completes (something changed during the round).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import zorgpad.engine.store._types  # noqa: F401


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('step_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rerun', sa.Boolean(), nullable=False, server_default=sa.false()))



def downgrade() -> None:
    with op.batch_alter_table('step_run', schema=None) as batch_op:
        batch_op.drop_column('rerun')

