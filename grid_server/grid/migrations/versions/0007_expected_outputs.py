"""Producers' announced expected output, the input of the price forecast.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "expected_outputs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("registration_id", sa.String(length=128), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=False),
        sa.Column("step_ms", sa.BigInteger(), nullable=False),
        sa.Column("outputs_json", sa.Text(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["followed_channels.id"],
            name=op.f("fk_expected_outputs_channel_id_followed_channels"),
        ),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.registration_id"],
            name=op.f("fk_expected_outputs_registration_id_registrations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expected_outputs")),
        sa.UniqueConstraint("channel_id", "position", name=op.f("uq_expected_outputs_channel_id")),
    )
    with op.batch_alter_table("expected_outputs", schema=None) as batch_op:
        batch_op.create_index("ix_expected_outputs_end", ["end_time"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("expected_outputs", schema=None) as batch_op:
        batch_op.drop_index("ix_expected_outputs_end")
    op.drop_table("expected_outputs")
