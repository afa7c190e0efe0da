"""Fixtures of the grid suite: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``P2P_TEST_POSTGRES_URL`` (``scripts/test`` starts a throw-away
cluster); without it the PostgreSQL variants are skipped, except in CI where that is
an error. Each test session creates its own PostgreSQL databases so parallel suites
(the node's, other sessions) never collide.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import Base

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

POSTGRES_ENV = "P2P_TEST_POSTGRES_URL"

# The Home Assistant test plugin (loaded for the whole session) logs every SQL
# statement; that slows the grid's database tests down a lot.
logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def _grid_test_environment(socket_enabled: None) -> None:
    """Loopback sockets on (the HA plugin disables sockets), SQL logging off."""
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


def postgres_admin_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set in CI; the PostgreSQL tests cannot run")
        return None
    return url


def create_postgres_database(prefix: str = "grid_test") -> str:
    """Create a fresh database on the test cluster and return its URL."""
    import psycopg

    admin = postgres_admin_url()
    if admin is None:
        pytest.skip(f"PostgreSQL not available ({POSTGRES_ENV} unset)")
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    parsed = make_url(admin)
    conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return parsed.set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    import psycopg

    admin = postgres_admin_url()
    if admin is None:
        return
    name = make_url(url).database
    conninfo = make_url(admin).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_grid_url() -> Iterator[str]:
    """One migrated PostgreSQL database for the session's database tests."""
    url = create_postgres_database()
    database = Database(url, threads=1)
    try:
        database.migrate()
    finally:
        database.close()
    yield url
    drop_postgres_database(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating every time is slow)."""
    path = tmp_path_factory.mktemp("template") / "grid.sqlite3"
    database = Database(f"sqlite:///{path}", threads=1)
    try:
        database.migrate()
    finally:
        database.close()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty grid database on each backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path_factory.mktemp("griddb") / "grid.sqlite3"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_grid_url")
    database = Database(url, threads=1)
    try:
        tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        with database.write() as session:
            session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        database.close()
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The database of ``database_url``, already migrated."""
    database = Database(database_url, threads=2)
    yield database
    database.close()
