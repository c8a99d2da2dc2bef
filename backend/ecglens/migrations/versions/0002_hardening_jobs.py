"""hardening jobs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

The ``hardening_jobs`` table behind ``POST /api/v1/models/{name}/harden`` (`ecglens.service.db.HardeningJob`).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hardening_jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('parent_model', sa.String(length=200), nullable=False),
    sa.Column('new_model', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('progress', sa.Float(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('created_by', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('started_at', sa.String(length=32), nullable=True),
    sa.Column('heartbeat_at', sa.String(length=32), nullable=True),
    sa.Column('finished_at', sa.String(length=32), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['parent_model'], ['models.name'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('hardening_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hardening_jobs_created_by'), ['created_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_hardening_jobs_new_model'), ['new_model'], unique=False)
        batch_op.create_index(batch_op.f('ix_hardening_jobs_parent_model'), ['parent_model'], unique=False)
        batch_op.create_index(batch_op.f('ix_hardening_jobs_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('hardening_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hardening_jobs_status'))
        batch_op.drop_index(batch_op.f('ix_hardening_jobs_parent_model'))
        batch_op.drop_index(batch_op.f('ix_hardening_jobs_new_model'))
        batch_op.drop_index(batch_op.f('ix_hardening_jobs_created_by'))

    op.drop_table('hardening_jobs')
