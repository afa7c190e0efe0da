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
from p2p_energy_protocol.mam import MamChannel, channel_root, create_channel, create_message
from sqlalchemy import create_engine, func, select

from grid_server.grid.db.models import Bill, Payout, Reading, Settlement

from .processes import GridProcess, NodeProcess, request_json

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

SLOT_MS = 60_000
MESSAGES = 16
SIDE_KEY = "FAULTS"


def _usage_messages(role: str, now_ms: int) -> list[dict[str, object]]:
    """One reading per past slot, oldest first; energies are distinct so sums prove identity."""
    first_slot = (now_ms // SLOT_MS - MESSAGES) * SLOT_MS
    messages: list[dict[str, object]] = []
    for n in range(MESSAGES):
        start = first_slot + n * SLOT_MS
        reading: dict[str, object] = {"startTime": start, "endTime": start + SLOT_MS}
        if role == "consumer":
            reading |= {"command": "usage", "usage": round(0.5 + n * 0.01, 3)}
        else:
            reading |= {
                "command": "output",
                "output": round(0.25 + n * 0.01, 3),
                "producerPrice": 40,
                "paymentIdOrAddress": "invoice-faults-producer",
            }
        messages.append(reading)
    return messages


async def _publish(
    client: IriClient, channel: MamChannel, messages: list[dict[str, object]]
) -> None:
    for message in messages:
        await client.publish_mam(create_message(channel, message), min_weight_magnitude=1)


def _readings(database: str) -> dict[str, tuple[int, int, int]]:
    """Per registration: (readings, distinct positions, energy in mWh)."""
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    Reading.registration_id,
                    func.count(),
                    func.count(func.distinct(Reading.position)),
                    func.sum(Reading.energy_mwh),
                ).group_by(Reading.registration_id)
            ).all()
    finally:
        engine.dispose()
    return {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in rows}


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
    expected: dict[str, int] = {}

    async def register() -> None:
        async with aiohttp.ClientSession() as session:
            client = IriClient(session, node.url)
            for registration, (role, channel) in entities.items():
                await _publish(client, channel, [{"command": "hello"}])
                status, body = request_json(
                    "PUT",
                    f"{grid.url}/registration/{registration}",
                    {
                        "itemName": registration,
                        "itemType": role,
                        "root": channel_root_of[registration],
                        "sideKey": channel.side_key,
                    },
                )
                assert status == 200, body

    async def publish_readings() -> None:
        async with aiohttp.ClientSession() as session:
            client = IriClient(session, node.url)
            for registration, (role, channel) in entities.items():
                readings = _usage_messages(role, now_ms)
                key = "usage" if role == "consumer" else "output"
                expected[registration] = round(sum(float(m[key]) for m in readings) * 1e6)  # type: ignore[arg-type]
                await _publish(client, channel, readings)

    channel_root_of = {name: channel_root(channel) for name, (_, channel) in entities.items()}
    try:
        asyncio.run(register())
        publisher = threading.Thread(target=lambda: asyncio.run(publish_readings()))
        publisher.start()
        kills = 0
        deadline = time.monotonic() + 240
        # Kill the grid every couple of seconds while households publish and it follows.
        while time.monotonic() < deadline:
            publisher.join(1.5)
            total = sum(count for count, _, _ in _readings(grid.database).values())
            if not publisher.is_alive() and total >= 2 * MESSAGES:
                break
            if kills < 6:
                grid.kill()
                kills += 1
                grid.start()
        publisher.join()
        counts = _readings(grid.database)
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
        _check_settlements(grid.database)
    finally:
        grid.stop()
        node.stop()


def wait_until_settled(database: str, timeout: float = 90) -> None:
    """Until every reading of a slot that ended is settled (the grid settles every 15 s)."""
    deadline = time.monotonic() + timeout
    engine = create_engine(database)
    try:
        while time.monotonic() < deadline:
            horizon = (int(time.time() * 1000) // SLOT_MS - 1) * SLOT_MS
            with engine.connect() as connection:
                pending = connection.execute(
                    select(func.count()).where(
                        Reading.settlement_id.is_(None), Reading.end_time <= horizon
                    )
                ).scalar_one()
                settled = connection.execute(select(func.count(Settlement.id))).scalar_one()
            if pending == 0 and settled > 0:
                return
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise AssertionError(f"readings of ended slots still unsettled after {timeout} s")


def _check_settlements(database: str) -> None:
    """Every settled slot balanced; bills and payouts once each; settled energy billed once."""
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            settlements = connection.execute(select(Settlement)).all()
            for settlement in settlements:
                assert settlement.energy_balanced, settlement.invariant_report
                assert settlement.money_balanced, settlement.invariant_report
            duplicate_bills = connection.execute(
                select(Bill.settlement_id, Bill.registration_id)
                .group_by(Bill.settlement_id, Bill.registration_id)
                .having(func.count() > 1)
            ).all()
            duplicate_payouts = connection.execute(
                select(Payout.settlement_id, Payout.registration_id)
                .group_by(Payout.settlement_id, Payout.registration_id)
                .having(func.count() > 1)
            ).all()
            assert duplicate_bills == []
            assert duplicate_payouts == []
            billed = connection.execute(
                select(func.coalesce(func.sum(Bill.usage_mwh + Bill.adjustment_mwh), 0))
            ).scalar_one()
            settled_usage = connection.execute(
                select(func.coalesce(func.sum(Reading.energy_mwh), 0)).where(
                    Reading.kind == "usage", Reading.settlement_id.is_not(None)
                )
            ).scalar_one()
            assert billed == settled_usage
    finally:
        engine.dispose()


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
    readings = _usage_messages("consumer", now_ms)

    async def publish(messages: list[dict[str, object]]) -> None:
        async with aiohttp.ClientSession() as session:
            await _publish(IriClient(session, node.url), channel, messages)

    try:
        asyncio.run(publish([{"command": "hello"}]))
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
        asyncio.run(publish(readings))
        deadline = time.monotonic() + 120
        expected = (MESSAGES, MESSAGES, round(sum(float(m["usage"]) for m in readings) * 1e6))  # type: ignore[arg-type]
        while time.monotonic() < deadline:
            if _readings(grid.database).get("node-outage-consumer") == expected:
                break
            time.sleep(0.3)
        assert _readings(grid.database).get("node-outage-consumer") == expected, grid.log_tail()
        wait_until_settled(grid.database)
        _check_settlements(grid.database)
    finally:
        grid.stop()
        node.stop()
