"""Dialect-aware ``INSERT ... ON CONFLICT DO NOTHING`` for idempotent bulk inserts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects import postgresql, sqlite

from .engine import DatabaseError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Table
    from sqlalchemy.orm import Session


def insert_ignoring_duplicates(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    conflict_columns: Sequence[str],
) -> int:
    """Insert ``rows``, skipping any that violate the unique ``conflict_columns``.

    Returns how many rows were inserted.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql.insert(table).on_conflict_do_nothing(
            index_elements=list(conflict_columns)
        )
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing(
            index_elements=list(conflict_columns)
        )
    else:
        # Database() refuses other backends; this guards direct callers.
        raise DatabaseError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")
    # One batched statement; RETURNING yields only the rows actually inserted.
    first_key = table.primary_key.columns.values()[0]
    return len(session.execute(statement.returning(first_key), list(rows)).all())
