"""Database access: engines, transactions, migrations, and a thread pool for async callers.

SQLAlchemy runs synchronously in a small thread pool so that neither SQLite nor
PostgreSQL needs an async driver. On SQLite, write transactions start with
``BEGIN IMMEDIATE`` (one writer at a time, waiting instead of failing) and reads use
plain deferred transactions on a separate engine so readers never block on writers
(WAL mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from ...db_migrations import MigrationChain, sqlite_transactions

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sqlalchemy import MetaData

_LOGGER = logging.getLogger(__name__)


def _grid_metadata() -> MetaData:
    from .models import Base

    return Base.metadata


MIGRATIONS: Final = MigrationChain(
    "grid",
    Path(__file__).resolve().parent.parent / "migrations",
    version_table="alembic_version",
    lock_key=0x50325047524944,
    metadata=_grid_metadata,
)
T = TypeVar("T")
CONNECT_TIMEOUT_SECONDS: Final = 10


class DatabaseError(RuntimeError):
    """The database URL is unusable or the schema cannot be brought up to date."""


def parse_database_url(url: str) -> URL:
    """Validate ``url`` as an SQLite or PostgreSQL SQLAlchemy URL."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise DatabaseError(f"not a database URL: {url!r}") from err
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    if backend == "postgresql" and parsed.drivername == "postgresql":
        # Only psycopg 3 is installed; plain postgresql:// would ask for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class Database:
    """The grid's database: transactions for sync code, ``run_*`` for async code."""

    def __init__(self, url: str, *, threads: int = 4) -> None:
        self.url = parse_database_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            database = self.url.database
            if not database or database == ":memory:":
                raise DatabaseError(
                    "an SQLite database must be a file (sqlite:///path/grid.sqlite3)"
                )
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self._write_engine = self._sqlite_engine(immediate=True)
            self._read_engine = self._sqlite_engine(immediate=False)
        else:
            # Pre-ping replaces connections a server restart dropped; the connect timeout
            # turns an unreachable server into a prompt 503 instead of a hung request.
            engine = create_engine(
                self.url,
                pool_size=threads + 1,
                max_overflow=4,
                pool_pre_ping=True,
                connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
            )
            self._write_engine = self._read_engine = engine
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grid-db")

    def _sqlite_engine(self, *, immediate: bool) -> Engine:
        engine = create_engine(self.url, connect_args={"timeout": 30, "check_same_thread": False})
        sqlite_transactions(engine, immediate=immediate)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine

    @property
    def engine(self) -> Engine:
        """The engine for writes (and for tools such as schema comparison)."""
        return self._write_engine

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self._write_sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A transaction for reading (objects stay usable after it ends)."""
        with self._read_sessions() as session, session.begin():
            yield session

    async def run_write(self, function: Callable[[Session], T]) -> T:
        """Run ``function`` in a write transaction on the database thread pool."""
        return await self._run(self._in_write, function)

    async def run_read(self, function: Callable[[Session], T]) -> T:
        """Run ``function`` in a read transaction on the database thread pool."""
        return await self._run(self._in_read, function)

    async def run(self, function: Callable[[], T]) -> T:
        """Run any blocking database work on the database thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function)

    async def _run(
        self, wrapper: Callable[[Callable[[Session], T]], T], function: Callable[[Session], T]
    ) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(wrapper, function))

    def _in_write(self, function: Callable[[Session], T]) -> T:
        with self.write() as session:
            return function(session)

    def _in_read(self, function: Callable[[Session], T]) -> T:
        with self.read() as session:
            return function(session)

    def migrate(self) -> None:
        """Bring the schema to the newest migration (safe with several processes)."""
        with self._write_engine.begin() as connection:
            MIGRATIONS.lock(connection)
            MIGRATIONS.upgrade(connection)

    def schema_revision(self) -> str | None:
        """The migration revision the database is at (None before the first migration)."""
        with self._read_engine.connect() as connection:
            return MIGRATIONS.current(connection)

    @staticmethod
    def head_revision() -> str | None:
        """The newest migration revision this code knows."""
        return MIGRATIONS.head()

    def check(self) -> None:
        """Raise if the database cannot be queried (for the health endpoint)."""
        with self._read_engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        """Finish pending work, stop the thread pool and close every connection."""
        self._executor.shutdown(wait=True)
        self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            self._read_engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"
