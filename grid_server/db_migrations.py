"""Schema migrations of the grid's and the node's databases: one Alembic runner for both.

Each service has its own chain of migrations (``grid_server/grid/migrations`` and
``grid_server/node/migrations``) and its own version table, so both may live in one
PostgreSQL database. A chain's ``env.py`` is two lines that call
:func:`run_environment`; :meth:`MigrationChain.upgrade` passes it the caller's open
connection, so a migration commits or rolls back with the caller's transaction.
Several processes starting at once migrate one after the other (a PostgreSQL
advisory lock per chain; on SQLite the transaction starts with ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from sqlalchemy import Connection, Engine, MetaData

_LOGGER = logging.getLogger(__name__)


def sqlite_transactions(engine: Engine, *, immediate: bool) -> None:
    """Make SQLAlchemy's transactions on ``engine`` real SQLite transactions.

    pysqlite opens transactions only before data changes, so schema changes would
    commit one statement at a time; with transaction control taken away from it,
    every ``begin()`` issues ``BEGIN`` (``BEGIN IMMEDIATE`` for one writer at a time).
    """
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "connect")
    def _take_transaction_control(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)


@dataclass(frozen=True)
class MigrationChain:
    """One service's migrations: where they are, their version table, their lock."""

    name: str
    directory: Path
    version_table: str
    lock_key: int
    """Key of the PostgreSQL advisory lock that serialises this chain's migrations."""
    metadata: Callable[[], MetaData]
    """The schema the newest migration builds (loaded only when migrating)."""

    def config(self, connection: Connection | None = None) -> AlembicConfig:
        config = AlembicConfig()
        config.set_main_option("script_location", str(self.directory))
        config.attributes["chain"] = self
        if connection is not None:
            config.attributes["connection"] = connection
        return config

    def head(self) -> str | None:
        """The newest revision of the chain."""
        return _script(self.directory).get_current_head()

    def current(self, connection: Connection) -> str | None:
        """The revision the database is at (None before the chain's first migration)."""
        context = MigrationContext.configure(connection, opts={"version_table": self.version_table})
        return context.get_current_revision()

    def lock(self, connection: Connection) -> None:
        """Wait for other processes migrating this chain (until the transaction ends)."""
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.lock_key})

    def upgrade(self, connection: Connection, revision: str = "head") -> None:
        """Migrate to ``revision`` in the caller's transaction (nothing to do: no work)."""
        if revision == "head" and self.current(connection) == self.head():
            return
        command.upgrade(self.config(connection), revision)
        _LOGGER.info(
            "the %s database schema is at revision %s", self.name, self.current(connection)
        )

    def downgrade(self, connection: Connection, revision: str) -> None:
        command.downgrade(self.config(connection), revision)

    def stamp(self, connection: Connection, revision: str) -> None:
        """Record ``revision`` as applied without running it (an adopted database)."""
        command.stamp(self.config(connection), revision)


@functools.cache
def _script(directory: Path) -> ScriptDirectory:
    config = AlembicConfig()
    config.set_main_option("script_location", str(directory))
    return ScriptDirectory.from_config(config)


def run_environment() -> None:
    """The body of every chain's ``env.py``: migrate the connection the runner passed."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    chain = context.config.attributes.get("chain")
    if connection is None or not isinstance(chain, MigrationChain):
        raise RuntimeError(
            "migrations run through grid_server.db_migrations.MigrationChain.upgrade(), "
            "which passes the database connection"
        )
    context.configure(
        connection=connection,
        target_metadata=chain.metadata(),
        version_table=chain.version_table,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
