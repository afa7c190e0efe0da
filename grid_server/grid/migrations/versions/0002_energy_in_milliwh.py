"""Energy columns say milliwatt-hours unambiguously: ``*_mwh`` read as megawatt-hours.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

A column rename is a catalogue change on PostgreSQL and on SQLite (3.25 or later),
so no table is copied. The stored invariant reports get the same key names.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RENAMED_COLUMNS = {
    "settlements": ("produced", "consumed", "local", "imported", "exported"),
    "bills": ("usage", "adjustment"),
    "payouts": ("energy", "adjustment"),
    "readings": ("energy",),
}
REPORT_KEYS = ("energyIn", "energyOut", "usageTotal", "outputTotal")


def _rename(old_suffix: str, new_suffix: str, old_key: str, new_key: str) -> None:
    for table, prefixes in RENAMED_COLUMNS.items():
        for prefix in prefixes:
            op.alter_column(table, f"{prefix}{old_suffix}", new_column_name=f"{prefix}{new_suffix}")
    settlements = sa.table("settlements", sa.column("invariant_report", sa.Text()))
    report = settlements.c.invariant_report
    for key in REPORT_KEYS:
        op.execute(
            settlements.update().values(
                invariant_report=sa.func.replace(report, f'"{key}{old_key}"', f'"{key}{new_key}"')
            )
        )


def upgrade() -> None:
    _rename("_mwh", "_milliwh", "Mwh", "Milliwh")


def downgrade() -> None:
    _rename("_milliwh", "_mwh", "Milliwh", "Mwh")
