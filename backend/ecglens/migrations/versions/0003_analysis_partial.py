"""analysis partial segments

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

``analyses.partial``: while a job runs, the explainer's current best segments and the window they belong to
(`ecglens.service.db.Analysis.partial`), read by the progress streams; cleared when the job ends or is requeued.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('partial', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.drop_column('partial')
