"""Initial schema of the node database: the tables ``create_all`` made before migrations.

Revision ID: 0001
Revises:
Create Date: 2026-12-07

Node databases created before the node had migrations hold exactly these tables and a
``node_meta`` row ``schema_version = 1``; the node stamps them with this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_applied_bundles",
        sa.Column("bundle", sa.String(length=81), nullable=False),
        sa.Column("milestone", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bundle"),
    )
    op.create_table(
        "node_balances",
        sa.Column("address", sa.String(length=81), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("address"),
    )
    op.create_table(
        "node_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "node_milestones",
        sa.Column("index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=81), nullable=False),
        sa.Column("signing_address", sa.String(length=81), nullable=False),
        sa.Column("next_address", sa.String(length=81), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("index"),
        sa.UniqueConstraint("hash"),
    )
    op.create_table(
        "node_neighbors",
        sa.Column("url", sa.String(length=300), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("all_transactions", sa.BigInteger(), nullable=False),
        sa.Column("invalid_transactions", sa.BigInteger(), nullable=False),
        sa.Column("new_transactions", sa.BigInteger(), nullable=False),
        sa.Column("sent_transactions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("url"),
    )
    op.create_table(
        "node_spent_addresses",
        sa.Column("address", sa.String(length=81), nullable=False),
        sa.PrimaryKeyConstraint("address"),
    )
    op.create_table(
        "node_transactions",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hash", sa.String(length=81), nullable=False),
        sa.Column("address", sa.String(length=81), nullable=False),
        sa.Column("bundle", sa.String(length=81), nullable=False),
        sa.Column("tag", sa.String(length=27), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("current_index", sa.Integer(), nullable=False),
        sa.Column("last_index", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("attachment_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("trunk", sa.String(length=81), nullable=False),
        sa.Column("branch", sa.String(length=81), nullable=False),
        sa.Column("trytes", sa.Text(), nullable=False),
        sa.Column("arrival", sa.BigInteger(), nullable=False),
        sa.Column("solid", sa.Boolean(), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("confirmed", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("hash"),
    )
    with op.batch_alter_table("node_transactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_node_transactions_address"), ["address"], unique=False)
        batch_op.create_index(batch_op.f("ix_node_transactions_branch"), ["branch"], unique=False)
        batch_op.create_index(batch_op.f("ix_node_transactions_bundle"), ["bundle"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_node_transactions_confirmed"), ["confirmed"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_node_transactions_tag"), ["tag"], unique=False)
        batch_op.create_index("ix_node_transactions_tips", ["approved", "solid"], unique=False)
        batch_op.create_index(batch_op.f("ix_node_transactions_trunk"), ["trunk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("node_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_node_transactions_trunk"))
        batch_op.drop_index("ix_node_transactions_tips")
        batch_op.drop_index(batch_op.f("ix_node_transactions_tag"))
        batch_op.drop_index(batch_op.f("ix_node_transactions_confirmed"))
        batch_op.drop_index(batch_op.f("ix_node_transactions_bundle"))
        batch_op.drop_index(batch_op.f("ix_node_transactions_branch"))
        batch_op.drop_index(batch_op.f("ix_node_transactions_address"))

    op.drop_table("node_transactions")
    op.drop_table("node_spent_addresses")
    op.drop_table("node_neighbors")
    op.drop_table("node_milestones")
    op.drop_table("node_meta")
    op.drop_table("node_balances")
    op.drop_table("node_applied_bundles")
