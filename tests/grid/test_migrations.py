"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from grid_server.grid.db.engine import Database, DatabaseError, parse_database_url
from grid_server.grid.db.models import Base


def test_migrated_schema_matches_the_models(db: Database) -> None:
    assert db.schema_revision() == Database.head_revision() == "0001"
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    # Migrating again changes nothing.
    db.migrate()
    assert db.schema_revision() == "0001"


def test_database_urls() -> None:
    assert parse_database_url("postgresql://u@h/d").drivername == "postgresql+psycopg"
    assert parse_database_url("sqlite:///x.db").get_backend_name() == "sqlite"
    with pytest.raises(DatabaseError, match="unsupported database 'mysql'"):
        parse_database_url("mysql://u@h/d")
    with pytest.raises(DatabaseError, match="not a database URL"):
        parse_database_url("nonsense")
    with pytest.raises(DatabaseError, match="must be a file"):
        Database("sqlite://")
