"""The node's schema comes from Alembic migrations, like the grid's, on both backends.

A database the node made before it had migrations (``create_all`` and a version row)
is adopted at its revision and migrated on; a node and a grid may share one
PostgreSQL database, each with its own version table.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, insert, inspect, select
from sqlalchemy.pool import NullPool

from grid_server.grid.db.engine import MIGRATIONS as GRID_MIGRATIONS
from grid_server.grid.db.engine import Database
from grid_server.node.storage import MIGRATIONS, StorageError, TangleStore, metadata

from . import legacy_schema as legacy

if TYPE_CHECKING:
    from sqlalchemy import Engine

TRANSACTION: dict[str, Any] = {
    "hash": "H" * 81,
    "address": "A" * 81,
    "bundle": "B" * 81,
    "tag": "T" * 27,
    "value": 0,
    "current_index": 0,
    "last_index": 0,
    "timestamp": 1_700_000_000,
    "attachment_timestamp": 1_700_000_000_000,
    "trunk": "9" * 81,
    "branch": "9" * 81,
    "trytes": "9" * 2673,
    "arrival": 1_700_000_000_000,
    "solid": True,
    "approved": False,
    "confirmed": None,
}


def engine_for(url: str) -> Engine:
    return create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=NullPool
    )


def differences(engine: Engine) -> list[Any]:
    """How the database's schema differs from the node's tables (none: empty)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "version_table": MIGRATIONS.version_table},
        )
        return list(compare_metadata(context, metadata))


def revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MIGRATIONS.current(connection)


def test_a_new_database_is_migrated_to_the_newest_schema(database_url: str) -> None:
    TangleStore.open(database_url).close()
    engine = engine_for(database_url)
    try:
        assert revision(engine) == MIGRATIONS.head() is not None
        assert differences(engine) == []
        # Opening again changes nothing.
        TangleStore.open(database_url).close()
        assert revision(engine) == MIGRATIONS.head()
    finally:
        engine.dispose()


def test_a_database_from_before_migrations_upgrades_with_its_data(database_url: str) -> None:
    engine = engine_for(database_url)
    try:
        legacy.metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(insert(legacy.transactions), TRANSACTION)
            connection.execute(insert(legacy.balances), {"address": "G" * 81, "balance": 500})
            connection.execute(
                insert(legacy.meta),
                [
                    {"key": "schema_version", "value": "1"},
                    {"key": "coordinator_address", "value": "C" * 81},
                ],
            )

        store = TangleStore.open(database_url)
        try:
            with store.connect() as connection:
                assert TangleStore.count_transactions(connection) == 1
                assert TangleStore.infos(connection, ["H" * 81])["H" * 81].solid
                assert TangleStore.balances_of(connection, ["G" * 81]) == {"G" * 81: 500}
                assert TangleStore.get_meta(connection, "coordinator_address") == "C" * 81
                # The version table says the revision now; the old row is gone.
                assert TangleStore.get_meta(connection, "schema_version") is None
        finally:
            store.close()
        assert revision(engine) == MIGRATIONS.head()
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_a_database_of_an_unknown_old_version_is_refused_untouched(database_url: str) -> None:
    engine = engine_for(database_url)
    try:
        legacy.metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(insert(legacy.meta), {"key": "schema_version", "value": "7"})
        with pytest.raises(StorageError, match="schema version '7'"):
            TangleStore.open(database_url)
        assert not inspect(engine).has_table(MIGRATIONS.version_table)
        with engine.connect() as connection:
            versions = connection.execute(select(func.count()).select_from(legacy.meta)).scalar()
        assert versions == 1
    finally:
        engine.dispose()


def test_node_and_grid_share_one_postgresql_database(postgres_url: str) -> None:
    grid = Database(postgres_url, threads=1)
    try:
        grid.migrate()
        TangleStore.open(postgres_url).close()
        grid.migrate()  # each chain keeps to its own tables and version table
        assert grid.schema_revision() == GRID_MIGRATIONS.head()
    finally:
        grid.close()
    engine = engine_for(postgres_url)
    try:
        assert revision(engine) == MIGRATIONS.head()
        assert MIGRATIONS.version_table != GRID_MIGRATIONS.version_table
        assert {MIGRATIONS.version_table, GRID_MIGRATIONS.version_table} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


def test_nodes_starting_together_migrate_once(postgres_url: str) -> None:
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            TangleStore.open(postgres_url).close()
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=open_store) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    engine = engine_for(postgres_url)
    try:
        assert revision(engine) == MIGRATIONS.head()
        assert differences(engine) == []
    finally:
        engine.dispose()
