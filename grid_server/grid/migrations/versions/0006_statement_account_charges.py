"""Final statements record what they charge to the consumer's account beyond its bills.

A consumer's fixed fee and a hand-given credit note are owed like bills: payment
requests include them in ``owed``. Statements issued before this revision get their
fixed fee and manual corrections from the documents they stored.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _charge(kind: str, document: dict[str, object]) -> int:
    """The part of an issued document that is owed beyond the consumer's bills."""
    if document.get("itemType") != "consumer":
        return 0
    if kind == "statement":
        amounts = document.get("amounts")
        return int(amounts.get("fixedFee", 0)) if isinstance(amounts, dict) else 0
    balance = document.get("balance")
    if document.get("correction") == "manual" and isinstance(balance, dict):
        return int(balance.get("change", 0))
    return 0


def upgrade() -> None:
    # A plain ALTER TABLE (not a batch copy of the table: SQLite would refuse to drop the
    # old copy while credit notes refer to its statements).
    op.add_column(
        "statements",
        sa.Column("account_charge", sa.BigInteger(), nullable=False, server_default="0"),
    )
    # Every payment request sums a consumer's charges: from the index, not the documents.
    op.create_index(
        "ix_statements_account_charge", "statements", ["registration_id", "account_charge"]
    )
    connection = op.get_bind()
    statements = sa.table(
        "statements",
        sa.column("id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("document_json", sa.Text()),
        sa.column("account_charge", sa.BigInteger()),
    )
    rows = connection.execute(
        sa.select(statements.c.id, statements.c.kind, statements.c.document_json)
    ).all()
    for row in rows:
        charge = _charge(row.kind, json.loads(row.document_json))
        if charge:
            connection.execute(
                statements.update().where(statements.c.id == row.id).values(account_charge=charge)
            )


def downgrade() -> None:
    op.drop_index("ix_statements_account_charge", table_name="statements")
    op.drop_column("statements", "account_charge")
