"""index analyses by record and time

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

``ix_analyses_record_id_created_at`` on ``analyses(record_id, created_at)``: a record's analyses newest first
(the records list's newest analysis per record, a record's analyses) read from the index, not a sort.
"""
from __future__ import annotations

from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.create_index('ix_analyses_record_id_created_at', ['record_id', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.drop_index('ix_analyses_record_id_created_at')
