"""Two grid processes share one database: only the lease holder follows and settles.

kill -9 the leader while households publish; the other grid takes over when the
lease runs out; every reading is stored once and no slot, bill or payout is
settled twice. On PostgreSQL (the supported multi-process set-up) and on a shared
SQLite file.
"""

from __future__ import annotations

import asyncio
import functools
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
from grid_server.node.storage import transactions as node_transactions

from .households import (
    MESSAGES,
    SLOT_MS,
    check_settlements,
    energy_milliwh,
    publish_readings,
    readings_for,
    register_households,
    stored_readings,
    wait_until_settled,
)
from .processes import LOOPBACK, GridProcess, NodeProcess, free_port, iri

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


def node_hashes(database: str, coordinator: str) -> set[str]:
    """Hashes a node stores, milestones left out."""
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            return set(
                connection.scalars(
                    select(node_transactions.c.hash).where(
                        node_transactions.c.address != coordinator
                    )
                )
            )
    finally:
        engine.dispose()


PEERING_SECRET = "reliability-network-peering-secret-01"


def start_peered_nodes(tmp_path: Path) -> tuple[NodeProcess, NodeProcess]:
    """The coordinator and a follower node listing each other as neighbours, with the
    secret they share, as two machines of one private network would."""
    coordinator_port, follower_port = free_port(), free_port()
    coordinator = NodeProcess(
        tmp_path,
        port=coordinator_port,
        config={
            "neighbors": [f"http://{LOOPBACK}:{follower_port}"],
            "sync_interval": 0.5,
            "peering": {"secret": PEERING_SECRET},
        },
    )
    coordinator.start()
    status, info = iri(coordinator.url, {"command": "getNodeInfo"})
    assert status == 200, info
    follower_dir = tmp_path / "follower"
    follower_dir.mkdir()
    follower = NodeProcess(
        follower_dir,
        port=follower_port,
        config={
            "neighbors": [coordinator.url],
            "sync_interval": 0.5,
            "peering": {"secret": PEERING_SECRET},
            "coordinator": {"address": info["coordinatorAddress"]},
        },
    )
    follower.start()  # ready once a milestone of the coordinator reached it
    return coordinator, follower


def test_two_grids_on_one_database_never_settle_twice(tmp_path: Path, database: str) -> None:
    node_a, node_b = start_peered_nodes(tmp_path)
    settings = {"slot_seconds": SLOT_MS // 1000, "storage_auth": "none", "lease_seconds": 3.0}
    # Each grid process talks to its own node; the nodes gossip.
    first = GridProcess(tmp_path, node_a.url, database=database, grid=settings, name="grid-a")
    second = GridProcess(tmp_path, node_b.url, database=database, grid=settings, name="grid-b")
    now_ms = int(time.time() * 1000)
    entities = {
        "shared-consumer": ("consumer", create_channel("D" * 81, 1, "restricted", "SHARED")),
        "shared-producer": ("producer", create_channel("Q" * 81, 1, "restricted", "SHARED")),
    }
    # The consumer publishes through the follower node, the producer through the coordinator.
    publishing = {
        node_b.url: {"shared-consumer": entities["shared-consumer"]},
        node_a.url: {"shared-producer": entities["shared-producer"]},
    }
    expected = {
        name: energy_milliwh(role, readings_for(role, now_ms))
        for name, (role, _) in entities.items()
    }
    try:
        first.start()
        second.start()
        # Registrations go to both processes (either serves the API), each to the grid
        # on the node the household said hello through: the other node may not have
        # received the hello yet, and a grid refuses a registration without one.
        for node_url, households in publishing.items():
            grid_url = first.url if node_url == node_a.url else second.url
            asyncio.run(register_households(node_url, households, [grid_url]))
        publishers = [
            threading.Thread(
                target=functools.partial(
                    asyncio.run, publish_readings(node_url, households, now_ms)
                )
            )
            for node_url, households in publishing.items()
        ]
        for publisher in publishers:
            publisher.start()
        publishers[0].join(3)
        # The leader dies mid-work; the lease runs out and the other process takes over,
        # following the producer's channel through the follower node.
        first.kill()
        for publisher in publishers:
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
        # One network: apart from milestones still in flight, both nodes hold the same
        # transactions, whichever node or grid process they were sent to.
        coordinator = iri(node_a.url, {"command": "getNodeInfo"})[1]["coordinatorAddress"]
        deadline = time.monotonic() + 30
        while True:
            held = [node_hashes(node.database, coordinator) for node in (node_a, node_b)]
            if held[0] == held[1] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert held[0] == held[1], (len(held[0] - held[1]), len(held[1] - held[0]))
        assert len(held[0]) > 4 * MESSAGES  # readings, hellos and the grids' own messages
    finally:
        first.stop()
        second.stop()
        node_b.stop()
        node_a.stop()
