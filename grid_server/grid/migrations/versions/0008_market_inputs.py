"""Consumers' bids and each slot's settlement inputs (for replays).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


_COLUMNS = (
    ("registrations", "max_price_micro", sa.BigInteger()),
    ("readings", "bid_micro", sa.BigInteger()),
    ("settlements", "inputs_json", sa.Text()),
)


def upgrade() -> None:
    # Plain ADD COLUMN on every backend: a batch would copy registrations, which other
    # tables reference.
    for table, column, kind in _COLUMNS:
        op.add_column(table, sa.Column(column, kind, nullable=True))


def downgrade() -> None:
    for table, column, _ in reversed(_COLUMNS):
        if op.get_bind().dialect.name == "sqlite":
            # SQLite drops a column in place (3.35+); a batch would copy the table.
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        else:
            op.drop_column(table, column)
