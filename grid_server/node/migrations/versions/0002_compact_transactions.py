"""Transactions in a narrow row with compact lookup keys; payload and approval apart.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

Revision 0001 kept the 2,673-tryte payload in the transaction's row and indexed six
81-character text columns, so the cost of storing grew with the Tangle: every index
entry was ~95 bytes and marking a transaction approved rewrote its 3 KB row. Now the
row holds the fields and, beside each looked-up value, a 64-bit key (the first 8 bytes
of the value's SHA-256) that alone is indexed; the payload lives in ``node_trytes``;
tips and unsolid transactions are the rows of ``node_unapproved`` and ``node_unsolid``.
Rows keep their ``seq``, so neighbours' cursors stay valid.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_OLD = "node_transactions_0001"
_NEW = "node_transactions_0002"
_KEYED = ("hash", "address", "bundle", "tag", "trunk", "branch")
_PLAIN = (
    "value",
    "current_index",
    "last_index",
    "timestamp",
    "attachment_timestamp",
    "arrival",
    "confirmed",
)
_SQLITE_KEY_FUNCTION = "node_lookup_key_0002"
_PENDING_SPENDS = "value < 0 AND confirmed IS NULL"


def _lookup_key(value: str) -> int:
    # Frozen copy of grid_server.node.storage.lookup_key (a test keeps them equal).
    return int.from_bytes(hashlib.sha256(value.encode("ascii")).digest()[:8], "big", signed=True)


def _key_of(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The lookup key of ``column`` computed by the database."""
    if op.get_bind().dialect.name == "postgresql":
        digest = sa.func.encode(sa.func.sha256(sa.func.convert_to(column, "UTF8")), "hex")
        hex_key = sa.literal("x") + sa.func.left(digest, 16)
        return sa.cast(sa.cast(hex_key, sa.dialects.postgresql.BIT(64)), sa.BigInteger())
    return getattr(sa.func, _SQLITE_KEY_FUNCTION)(column)  # type: ignore[no-any-return]


def _set_aside(table: str, aside: str) -> None:
    """Rename ``table`` out of the way, with (PostgreSQL) the names its new
    namesake will want: its primary key constraint and its ``seq`` sequence."""
    op.rename_table(table, aside)
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    for (name,) in connection.execute(
        sa.text(
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) "
            "AND contype = 'p'"
        ),
        {"t": aside},
    ):
        op.execute(sa.text(f'ALTER TABLE {aside} RENAME CONSTRAINT "{name}" TO "{aside}_pkey"'))
    sequence = connection.execute(
        sa.text("SELECT pg_get_serial_sequence(:t, 'seq')"), {"t": aside}
    ).scalar()
    if sequence:
        op.execute(sa.text(f"ALTER SEQUENCE {sequence} RENAME TO {aside}_seq_seq"))


def _continue_sequence(table: str) -> None:
    """Rows were copied with their ``seq``: PostgreSQL's sequence continues after them."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'), "
                f"COALESCE(MAX(seq), 0) + 1, false) FROM {table}"
            )
        )


def _numbers() -> list[sa.Column[Any]]:
    """The transaction's numeric fields, the same in both revisions."""
    return [
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("current_index", sa.Integer(), nullable=False),
        sa.Column("last_index", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("attachment_timestamp", sa.BigInteger(), nullable=False),
    ]


def _seq_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("seq", _SEQ, autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        connection.connection.driver_connection.create_function(  # type: ignore[union-attr]
            _SQLITE_KEY_FUNCTION, 1, _lookup_key, deterministic=True
        )
    _set_aside("node_transactions", _OLD)
    keyed_columns = [
        column
        for name in _KEYED
        for column in (
            sa.Column(name, sa.String(length=27 if name == "tag" else 81), nullable=False),
            sa.Column(f"{name}_key", sa.BigInteger(), nullable=False),
        )
    ]
    op.create_table(
        "node_transactions",
        sa.Column("seq", _SEQ, nullable=False),
        *keyed_columns[:8],
        *_numbers(),
        *keyed_columns[8:],
        sa.Column("arrival", sa.BigInteger(), nullable=False),
        sa.Column("confirmed", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "node_trytes",
        sa.Column("seq", _SEQ, autoincrement=False, nullable=False),
        sa.Column("trytes", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    _seq_table("node_unapproved")
    _seq_table("node_unsolid")

    old = sa.table(
        _OLD,
        *(sa.column(name) for name in ("seq", *_KEYED, *_PLAIN, "trytes")),
        sa.column("solid", sa.Boolean()),
        sa.column("approved", sa.Boolean()),
    )
    copied = ["seq", *_KEYED, *(f"{name}_key" for name in _KEYED), *_PLAIN]
    new = sa.table("node_transactions", *(sa.column(name) for name in copied))
    op.execute(
        new.insert().from_select(
            copied,
            sa.select(
                old.c.seq,
                *(old.c[name] for name in _KEYED),
                *(_key_of(old.c[name]) for name in _KEYED),
                *(old.c[name] for name in _PLAIN),
            ),
        )
    )
    trytes = sa.table("node_trytes", sa.column("seq"), sa.column("trytes"))
    op.execute(trytes.insert().from_select(["seq", "trytes"], sa.select(old.c.seq, old.c.trytes)))
    for table, flag in (("node_unapproved", old.c.approved), ("node_unsolid", old.c.solid)):
        op.execute(
            sa.table(table, sa.column("seq"))
            .insert()
            .from_select(["seq"], sa.select(old.c.seq).where(flag.is_(False)))
        )
    _continue_sequence("node_transactions")
    op.drop_table(_OLD)
    for name in _KEYED:
        op.create_index(
            f"ix_node_transactions_{name}_key", "node_transactions", [f"{name}_key"], unique=False
        )
    op.create_index(
        "ix_node_transactions_pending_spends",
        "node_transactions",
        ["seq"],
        unique=False,
        sqlite_where=sa.text(_PENDING_SPENDS),
        postgresql_where=sa.text(_PENDING_SPENDS),
    )


def downgrade() -> None:
    """Back to revision 0001's single wide table (payload and flags in the row)."""
    _set_aside("node_transactions", _NEW)
    op.create_table(
        "node_transactions",
        sa.Column("seq", _SEQ, nullable=False),
        *(
            sa.Column(name, sa.String(length=27 if name == "tag" else 81), nullable=False)
            for name in ("hash", "address", "bundle", "tag")
        ),
        *_numbers(),
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
    current = sa.table(_NEW, *(sa.column(name) for name in ("seq", *_KEYED, *_PLAIN)))
    trytes = sa.table("node_trytes", sa.column("seq"), sa.column("trytes"))
    unapproved = sa.table("node_unapproved", sa.column("seq"))
    unsolid = sa.table("node_unsolid", sa.column("seq"))
    columns = ["seq", *_KEYED, *_PLAIN, "trytes", "solid", "approved"]
    old = sa.table("node_transactions", *(sa.column(name) for name in columns))
    op.execute(
        old.insert().from_select(
            columns,
            sa.select(
                *(current.c[name] for name in ("seq", *_KEYED, *_PLAIN)),
                trytes.c.trytes,
                current.c.seq.not_in(sa.select(unsolid.c.seq)),
                current.c.seq.not_in(sa.select(unapproved.c.seq)),
            ).join_from(current, trytes, trytes.c.seq == current.c.seq),
        )
    )
    _continue_sequence("node_transactions")
    for table in (_NEW, "node_trytes", "node_unapproved", "node_unsolid"):
        op.drop_table(table)
    for name in ("address", "branch", "bundle", "confirmed", "tag", "trunk"):
        op.create_index(f"ix_node_transactions_{name}", "node_transactions", [name], unique=False)
    op.create_index("ix_node_transactions_tips", "node_transactions", ["approved", "solid"])
