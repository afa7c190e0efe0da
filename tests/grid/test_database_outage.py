"""The grid while PostgreSQL restarts: a lost connection is a 503 that can be retried,
the pool replaces dropped connections, and background work waits without tracebacks."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import delete, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from grid_server.database_availability import (
    DatabaseUnavailableError,
    database_unavailable,
    wait_for_database,
)
from grid_server.grid.api.common import error_middleware, ok
from grid_server.grid.config import GridConfig
from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import GridSetting
from grid_server.grid.server import GridServer

from .processes import CONSOLE_SCRIPT, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def lost_connection() -> OperationalError:
    return OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))


def test_connection_faults_count_as_unavailable_and_data_faults_do_not() -> None:
    assert database_unavailable(lost_connection())
    invalidated = DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    assert database_unavailable(invalidated)
    assert not database_unavailable(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not database_unavailable(RuntimeError("no database involved"))
    # Raised from a lost connection (as the node's StorageError is): still unavailable.
    wrapped = RuntimeError("cannot create the node's tables")
    wrapped.__cause__ = lost_connection()
    assert database_unavailable(wrapped)


def test_sqlite_faults_in_the_code_are_not_hidden_as_unavailable(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'faults.sqlite3'}", threads=1)
    try:
        with pytest.raises(OperationalError) as missing, database.read() as session:
            session.execute(text("SELECT * FROM no_such_table"))
        assert not database_unavailable(missing.value)  # a bug: 500, not "try again"
        with pytest.raises(OperationalError) as syntax, database.read() as session:
            session.execute(text("SELEKT 1"))
        assert not database_unavailable(syntax.value)
    finally:
        database.close()
    locked = OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    assert database_unavailable(locked)  # another writer: worth a retry


async def test_waiting_for_the_database_retries_with_backoff_then_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    pauses: list[float] = []
    failures = [lost_connection(), lost_connection(), lost_connection()]

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    async def migrate() -> str:
        if failures:
            raise failures.pop()
        return "migrated"

    with caplog.at_level(logging.WARNING, logger="grid_server.database_availability"):
        result = await wait_for_database(
            migrate, purpose="migrating", wait_seconds=60, sleep=sleep, monotonic=lambda: now[0]
        )
    assert result == "migrated"
    assert pauses == [0.5, 1.0, 2.0]
    assert [r.exc_info for r in caplog.records] == [None, None, None]
    assert "migrating: the database is unavailable (attempt 3" in caplog.records[-1].getMessage()


async def test_waiting_for_the_database_gives_up_with_a_clear_error() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    async def never() -> None:
        raise lost_connection()

    with pytest.raises(DatabaseUnavailableError, match="after waiting 12 s: server closed"):
        await wait_for_database(
            never, purpose="migrating", wait_seconds=12, sleep=sleep, monotonic=lambda: now[0]
        )
    assert now[0] == 12  # the last pause is cut to the deadline
    with pytest.raises(DatabaseUnavailableError, match="^migrating: the database is unavailable:"):
        await wait_for_database(never, purpose="migrating", wait_seconds=0)

    async def broken() -> None:
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(IntegrityError):  # not a reason to wait
        await wait_for_database(broken, purpose="migrating", wait_seconds=60, sleep=sleep)


async def test_a_grid_whose_database_never_comes_reports_it_and_stops(tmp_path: Path) -> None:
    database = f"postgresql+psycopg://p2p@127.0.0.1:{free_port()}/grid"
    config = GridConfig(database=database, data_dir=tmp_path, database_wait=1.0)
    with pytest.raises(DatabaseUnavailableError, match=r"after waiting 1 s: .*refused"):
        await GridServer(config).start()


def test_the_grid_command_waits_for_its_database_then_exits_with_a_clear_message(
    tmp_path: Path,
) -> None:
    config = tmp_path / "grid.toml"
    config.write_text("[grid]\ndatabase_wait = 1.0\n")
    result = subprocess.run(
        [
            str(CONSOLE_SCRIPT),
            "grid",
            "--database",
            f"postgresql+psycopg://p2p@127.0.0.1:{free_port()}/grid",
            "--config",
            str(config),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("p2p-energy grid: bringing the grid's database schema up to date")
    assert "after waiting 1 s" in last
    assert "Traceback" not in result.stderr


async def test_a_lost_connection_answers_503_and_the_retry_succeeds() -> None:
    failures = [lost_connection()]

    async def handler(_request: web.Request) -> web.Response:
        if failures:
            raise failures.pop()
        return ok()

    app = web.Application(middlewares=[error_middleware])
    app.router.add_put("/storage/item", handler)
    async with TestClient(TestServer(app)) as client:
        first = await client.put("/storage/item")
        assert first.status == 503
        assert await first.json() == {
            "success": False,
            "message": "The grid's database is unavailable; try again later.",
        }
        second = await client.put("/storage/item")
        assert second.status == 200


@pytest.fixture
def postgres_db(postgres_grid_url: str) -> Iterator[Database]:
    database = Database(postgres_grid_url, threads=1)
    yield database
    database.close()


def _terminate_backends(database: Database) -> int:
    """What a PostgreSQL restart does to the grid's open connections."""
    import psycopg

    conninfo = database.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_transaction_cut_off_mid_way_raises_unavailable_and_the_next_one_works(
    postgres_db: Database,
) -> None:
    def cut_off() -> None:
        with postgres_db.write() as session:
            session.execute(text("SELECT 1"))
            assert _terminate_backends(postgres_db) >= 1
            session.merge(GridSetting(name="outage-lost", value="v", created_at=1))
            session.flush()

    with pytest.raises(DBAPIError) as caught:
        cut_off()
    assert database_unavailable(caught.value)
    # Retrying the same work on a fresh connection succeeds; the cut-off one left nothing.
    with postgres_db.write() as session:
        session.merge(GridSetting(name="outage-retried", value="v", created_at=1))
    with postgres_db.write() as session:
        assert session.get(GridSetting, "outage-lost") is None
        assert session.get(GridSetting, "outage-retried") is not None
        session.execute(delete(GridSetting).where(GridSetting.name.like("outage-%")))


async def test_pooled_connections_dropped_by_a_restart_are_replaced_without_an_error(
    postgres_db: Database,
) -> None:
    assert await postgres_db.run_read(lambda session: session.scalar(text("SELECT 1"))) == 1
    assert _terminate_backends(postgres_db) >= 1  # the pooled connection is gone
    assert await postgres_db.run_read(lambda session: session.scalar(text("SELECT 1"))) == 1


async def test_a_background_worker_waits_for_the_database_with_one_line_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    grid = GridServer(GridConfig())
    grid._lease = SimpleNamespace(held=True)  # type: ignore[assignment]
    rounds = 0

    async def work() -> None:
        nonlocal rounds
        rounds += 1
        if rounds <= 2:
            raise lost_connection()

    with caplog.at_level(logging.WARNING, logger="grid_server.grid.server"):
        task = grid._worker("settle", 0.01, work)
        while rounds < 3:
            await asyncio.sleep(0.01)
        grid._stopping.set()
        await task
    records = [r for r in caplog.records if r.name == "grid_server.grid.server"]
    assert len(records) == 2
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in records)
    assert "waits for the database" in records[0].getMessage()
