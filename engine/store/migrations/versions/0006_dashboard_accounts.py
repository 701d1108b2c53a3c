"""dashboard accounts and sessions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Dashboard accounts (username, scrypt password hash, lock-out) and sign-in sessions (the cookie's secret as a
SHA-256 hash, for an account or a bearer token).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import zorgpad.engine.store._types  # noqa: F401


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('organisation', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('admin', sa.Boolean(), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('created_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('password_changed_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('disabled_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('dashboard_session',
    sa.Column('secret_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('token_id', sa.Integer(), nullable=True),
    sa.Column('created_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', zorgpad.engine.store._types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['token_id'], ['api_token.id'], ),
    sa.PrimaryKeyConstraint('secret_hash')
    )
    with op.batch_alter_table('dashboard_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dashboard_session_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dashboard_session_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_dashboard_session_token_id'), ['token_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('dashboard_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dashboard_session_token_id'))
        batch_op.drop_index(batch_op.f('ix_dashboard_session_expires_at'))
        batch_op.drop_index(batch_op.f('ix_dashboard_session_account_id'))

    op.drop_table('dashboard_session')
    op.drop_table('account')
