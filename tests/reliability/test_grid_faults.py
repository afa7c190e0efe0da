"""kill -9 the grid while it follows channels and settles slots; restart it; nothing
is lost, nothing is counted twice, every settled slot's invariants hold.

Real processes: a node and a grid (``p2p-energy``), households publishing real
MAM messages through the node and registering over HTTP.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING

import aiohttp
import pytest
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.mam import channel_root, create_channel

from .households import (
    MESSAGES,
    SLOT_MS,
    check_settlements,
    energy_milliwh,
    publish,
    publish_readings,
    readings_for,
    register_households,
    stored_readings,
    wait_until_settled,
)
from .processes import GridProcess, NodeProcess, request_json

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

SIDE_KEY = "FAULTS"


def test_kill_9_while_following_and_settling_loses_and_doubles_nothing(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path)
    node.start()
    grid = GridProcess(
        tmp_path, node.url, grid={"slot_seconds": SLOT_MS // 1000, "storage_auth": "none"}
    )
    grid.start()
    now_ms = int(time.time() * 1000)
    entities = {
        "faults-consumer": ("consumer", create_channel("C" * 81, 1, "restricted", SIDE_KEY)),
        "faults-producer": ("producer", create_channel("P" * 81, 1, "restricted", SIDE_KEY)),
    }
    expected = {
        name: energy_milliwh(role, readings_for(role, now_ms))
        for name, (role, _) in entities.items()
    }
    try:
        asyncio.run(register_households(node.url, entities, [grid.url]))
        publisher = threading.Thread(
            target=lambda: asyncio.run(publish_readings(node.url, entities, now_ms))
        )
        publisher.start()
        kills = 0
        deadline = time.monotonic() + 240
        # Kill the grid every couple of seconds while households publish and it follows.
        while time.monotonic() < deadline:
            publisher.join(1.5)
            total = sum(count for count, _, _ in stored_readings(grid.database).values())
            if not publisher.is_alive() and total >= 2 * MESSAGES:
                break
            if kills < 6:
                grid.kill()
                kills += 1
                grid.start()
        publisher.join()
        counts = stored_readings(grid.database)
        for registration, energy in expected.items():
            assert counts.get(registration) == (MESSAGES, MESSAGES, energy), (
                f"{registration}: {counts.get(registration)} after {kills} kills\n{grid.log_tail()}"
            )
        assert kills >= 2
        wait_until_settled(grid.database)
        # Once more, killed right after settling: a restart must not settle anything again.
        grid.kill()
        grid.start()
        time.sleep(2)
        check_settlements(grid.database)
    finally:
        grid.stop()
        node.stop()


def test_node_down_then_back_the_grid_survives_and_catches_up(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path)
    node.start()
    grid = GridProcess(
        tmp_path, node.url, grid={"slot_seconds": SLOT_MS // 1000, "storage_auth": "none"}
    )
    grid.start()
    channel = create_channel("N" * 81, 1, "restricted", SIDE_KEY)
    root = channel_root(channel)
    now_ms = int(time.time() * 1000)
    readings = readings_for("consumer", now_ms)

    async def send(messages: list[dict[str, object]]) -> None:
        async with aiohttp.ClientSession() as session:
            await publish(IriClient(session, node.url), channel, messages)

    try:
        asyncio.run(send([{"command": "hello"}]))
        status, body = request_json(
            "PUT",
            f"{grid.url}/registration/node-outage-consumer",
            {
                "itemName": "outage",
                "itemType": "consumer",
                "root": root,
                "sideKey": channel.side_key,
            },
        )
        assert status == 200, body
        node.kill()
        # The node is gone for a while: the grid keeps serving and does not crash.
        for _ in range(10):
            time.sleep(0.5)
            assert grid.running, grid.log_tail()
            assert request_json("GET", f"{grid.url}/health")[0] in (200, 503)
        # Households kept their readings queued; the node returns on the same data.
        node.start()
        asyncio.run(send(readings))
        deadline = time.monotonic() + 120
        expected = (MESSAGES, MESSAGES, energy_milliwh("consumer", readings))
        while time.monotonic() < deadline:
            if stored_readings(grid.database).get("node-outage-consumer") == expected:
                break
            time.sleep(0.3)
        assert stored_readings(grid.database).get("node-outage-consumer") == expected, (
            grid.log_tail()
        )
        wait_until_settled(grid.database)
        check_settlements(grid.database)
    finally:
        grid.stop()
        node.stop()
