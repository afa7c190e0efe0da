"""Two grid processes share one database: only the lease holder follows and settles.

kill -9 the leader while households publish; the other grid takes over when the
lease runs out; every reading is stored once and no slot, bill or payout is
settled twice. On PostgreSQL (the supported multi-process set-up) and on a shared
SQLite file.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING

import pytest
from p2p_energy_protocol.mam import create_channel
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from grid_server.grid.db.models import Settlement

from .households import (
    MESSAGES,
    SLOT_MS,
    check_settlements,
    energy_mwh,
    publish_readings,
    readings_for,
    register_households,
    stored_readings,
    wait_until_settled,
)
from .processes import GridProcess, NodeProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow

POSTGRES_ENV = "P2P_TEST_POSTGRES_URL"


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared-grid.sqlite3'}"
        return
    admin = os.environ.get(POSTGRES_ENV)
    if not admin:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} must be set in CI")
        pytest.skip(f"{POSTGRES_ENV} is not set")
    import psycopg

    name = f"reliability_{uuid.uuid4().hex[:12]}"
    conninfo = make_url(admin).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_grids_on_one_database_never_settle_twice(tmp_path: Path, database: str) -> None:
    node = NodeProcess(tmp_path)
    node.start()
    settings = {"slot_seconds": SLOT_MS // 1000, "storage_auth": "none", "lease_seconds": 3.0}
    first = GridProcess(tmp_path, node.url, database=database, grid=settings, name="grid-a")
    second = GridProcess(tmp_path, node.url, database=database, grid=settings, name="grid-b")
    now_ms = int(time.time() * 1000)
    entities = {
        "shared-consumer": ("consumer", create_channel("D" * 81, 1, "restricted", "SHARED")),
        "shared-producer": ("producer", create_channel("Q" * 81, 1, "restricted", "SHARED")),
    }
    expected = {
        name: energy_mwh(role, readings_for(role, now_ms)) for name, (role, _) in entities.items()
    }
    try:
        first.start()
        second.start()
        # Registrations go to both processes: either serves the API.
        asyncio.run(register_households(node.url, entities, [first.url, second.url]))
        publisher = threading.Thread(
            target=lambda: asyncio.run(publish_readings(node.url, entities, now_ms))
        )
        publisher.start()
        publisher.join(3)
        # The leader dies mid-work; the lease runs out and the other process takes over.
        first.kill()
        publisher.join()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            counts = stored_readings(database)
            if sum(count for count, _, _ in counts.values()) >= 2 * MESSAGES:
                break
            time.sleep(0.3)
        wait_until_settled(database)
        first.start()  # back again: now both run side by side
        time.sleep(4)
        counts = stored_readings(database)
        for registration, energy in expected.items():
            assert counts.get(registration) == (MESSAGES, MESSAGES, energy), counts
        check_settlements(database)
        engine = create_engine(database)
        try:
            with engine.connect() as connection:
                slots = [row.slot_start for row in connection.execute(select(Settlement))]
        finally:
            engine.dispose()
        assert len(slots) == len(set(slots))
        assert slots, "no slot was settled"
    finally:
        first.stop()
        second.stop()
        node.stop()
