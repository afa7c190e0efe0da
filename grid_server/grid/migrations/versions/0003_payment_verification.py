"""Incoming payments record whether they can still confirm, and when they were dropped.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incoming_payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checked_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("problem", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("unconfirmable_since", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("dropped_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incoming_payments", schema=None) as batch_op:
        batch_op.drop_column("dropped_at")
        batch_op.drop_column("unconfirmable_since")
        batch_op.drop_column("problem")
        batch_op.drop_column("checked_at")
