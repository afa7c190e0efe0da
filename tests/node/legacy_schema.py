"""The node's tables as ``create_all`` made them before the node had migrations.

Frozen here (not imported from the node) so the upgrade test keeps testing databases
of that era after the schema moves on. Databases of that era also hold a
``node_meta`` row ``schema_version = "1"``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

transactions = Table(
    "node_transactions",
    metadata,
    # Arrival order on this node; neighbours page through it to catch up.
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("hash", String(81), nullable=False, unique=True),
    Column("address", String(81), nullable=False, index=True),
    Column("bundle", String(81), nullable=False, index=True),
    Column("tag", String(27), nullable=False, index=True),
    Column("value", BigInteger(), nullable=False),
    Column("current_index", Integer(), nullable=False),
    Column("last_index", Integer(), nullable=False),
    Column("timestamp", BigInteger(), nullable=False),
    Column("attachment_timestamp", BigInteger(), nullable=False),
    Column("trunk", String(81), nullable=False, index=True),
    Column("branch", String(81), nullable=False, index=True),
    Column("trytes", Text(), nullable=False),
    Column("arrival", BigInteger(), nullable=False),
    # Solid: the whole past cone is stored. Approved: some stored transaction references it.
    Column("solid", Boolean(), nullable=False),
    Column("approved", Boolean(), nullable=False, default=False),
    # Index of the milestone that confirmed it, NULL while unconfirmed.
    Column("confirmed", Integer(), nullable=True, index=True),
    Index("ix_node_transactions_tips", "approved", "solid"),
)

milestones = Table(
    "node_milestones",
    metadata,
    Column("index", Integer(), primary_key=True, autoincrement=False),
    Column("hash", String(81), nullable=False, unique=True),
    Column("signing_address", String(81), nullable=False),
    Column("next_address", String(81), nullable=False),
    Column("applied", Boolean(), nullable=False, default=False),
    Column("timestamp", BigInteger(), nullable=False),
)

balances = Table(
    "node_balances",
    metadata,
    Column("address", String(81), primary_key=True),
    Column("balance", BigInteger(), nullable=False),
)

applied_bundles = Table(
    "node_applied_bundles",
    metadata,
    Column("bundle", String(81), primary_key=True),
    Column("milestone", Integer(), nullable=False),
)

spent_addresses = Table(
    "node_spent_addresses",
    metadata,
    Column("address", String(81), primary_key=True),
)

neighbors = Table(
    "node_neighbors",
    metadata,
    Column("url", String(300), primary_key=True),
    # Highest ``seq`` of the neighbour already pulled from it.
    Column("cursor", BigInteger(), nullable=False, default=0),
    Column("all_transactions", BigInteger(), nullable=False, default=0),
    Column("invalid_transactions", BigInteger(), nullable=False, default=0),
    Column("new_transactions", BigInteger(), nullable=False, default=0),
    Column("sent_transactions", BigInteger(), nullable=False, default=0),
)

meta = Table(
    "node_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text(), nullable=False),
)
