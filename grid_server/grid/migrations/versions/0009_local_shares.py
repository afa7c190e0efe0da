"""Each bill and payout records its local part (energy, value, the grid's cut).

Statements read these instead of splitting by the slot's blended rate, which is wrong
under the matching mechanisms. Existing rows get the blended split they imply today, so
their statements do not change.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import op

if TYPE_CHECKING:
    from collections.abc import Callable

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The unit of the shares (grid.settlement.split.SHARE_SCALE when this revision was written).
_SCALE = 10**6
_BATCH = 1000

_COLUMNS = (
    ("bills", "local_energy_share"),
    ("bills", "local_amount_share"),
    ("payouts", "local_energy_share"),
    ("payouts", "local_amount_share"),
    ("payouts", "grid_cut_share"),
)


def _share(numerator: int, denominator: int) -> int:
    if denominator == 0:
        return 0
    quotient, remainder = divmod(numerator * _SCALE, denominator)
    return quotient + (2 * remainder >= denominator)


def _fill(table: str, rows_sql: str, shares: Callable[[Any], dict[str, int]]) -> None:
    bind = op.get_bind()
    names = [name for t, name in _COLUMNS if t == table]
    update = sa.text(
        f"UPDATE {table} SET "
        + ", ".join(f"{name} = :{name}" for name in names)
        + " WHERE id = :row_id"
    )
    rows = bind.execute(sa.text(rows_sql)).all()
    for start in range(0, len(rows), _BATCH):
        bind.execute(update, [shares(row) for row in rows[start : start + _BATCH]])


def _bill(row: Any) -> dict[str, int]:
    row_id, usage, amount, local, consumed, local_value, charges = row
    return {
        "row_id": row_id,
        "local_energy_share": _share(usage * local, consumed),
        "local_amount_share": _share(amount * local_value, charges),
    }


def _payout(row: Any) -> dict[str, int]:
    row_id, energy, amount, local, produced, local_value, cut, payouts = row
    return {
        "row_id": row_id,
        "local_energy_share": _share(energy * local, produced),
        "local_amount_share": _share(amount * (local_value - cut), payouts),
        "grid_cut_share": _share(cut * energy, produced),
    }


def upgrade() -> None:
    # Plain ADD COLUMN on every backend: a batch would copy the tables.
    for table, column in _COLUMNS:
        op.add_column(table, sa.Column(column, sa.BigInteger(), nullable=False, server_default="0"))
    _fill(
        "bills",
        "SELECT b.id, b.usage_milliwh, b.amount, s.local_milliwh, s.consumed_milliwh,"
        " s.local_value, s.consumer_charges"
        " FROM bills b JOIN settlements s ON s.id = b.settlement_id",
        _bill,
    )
    _fill(
        "payouts",
        "SELECT p.id, p.energy_milliwh, p.amount, s.local_milliwh, s.produced_milliwh,"
        " s.local_value, s.grid_cut, s.producer_payouts"
        " FROM payouts p JOIN settlements s ON s.id = p.settlement_id",
        _payout,
    )


def downgrade() -> None:
    for table, column in reversed(_COLUMNS):
        if op.get_bind().dialect.name == "sqlite":
            # SQLite drops a column in place (3.35+); a batch would copy the table.
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        else:
            op.drop_column(table, column)
