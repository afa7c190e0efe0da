"""Approvers found through their parents' ``seq`` instead of hash-keyed indexes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08

Revision 0002 indexed ``trunk_key`` and ``branch_key``, the random 64-bit keys of the
parents' hashes: every stored transaction added an entry on a random page of each, so
at a million transactions each insert dirtied two more index pages to write back. Now
a row holds its parents' ``seq`` (indexed, mostly near the end, as parents are recent;
0 for the null hash; NULL while the parent is not stored).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_SIDES = ("trunk", "branch")


def upgrade() -> None:
    for side in _SIDES:
        op.add_column("node_transactions", sa.Column(f"{side}_seq", _SEQ, nullable=True))
        op.execute(
            sa.text(
                f"UPDATE node_transactions SET {side}_seq = CASE WHEN {side} = :null_hash "
                "THEN 0 ELSE (SELECT parent.seq FROM node_transactions AS parent WHERE "
                f"parent.hash_key = node_transactions.{side}_key AND parent.hash = "
                f"node_transactions.{side}) END"
            ).bindparams(null_hash="9" * 81)
        )
        op.drop_index(f"ix_node_transactions_{side}_key", table_name="node_transactions")
        op.create_index(
            f"ix_node_transactions_{side}_seq", "node_transactions", [f"{side}_seq"], unique=False
        )


def downgrade() -> None:
    for side in _SIDES:
        op.drop_index(f"ix_node_transactions_{side}_seq", table_name="node_transactions")
        op.drop_column("node_transactions", f"{side}_seq")
        op.create_index(
            f"ix_node_transactions_{side}_key", "node_transactions", [f"{side}_key"], unique=False
        )
