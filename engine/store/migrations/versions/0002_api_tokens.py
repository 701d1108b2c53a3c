"""api tokens

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Bearer tokens for the FHIR interface and the dashboard, stored as SHA-256 hashes.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import zorgpad.engine.store._types  # noqa: F401


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_token',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('organisation', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('admin', sa.Boolean(), nullable=False),
    sa.Column('created_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )


def downgrade() -> None:
    op.drop_table('api_token')
