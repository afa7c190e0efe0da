"""Households publishing readings over MAM, and checks of what the grid stored:
shared by the fault tests."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import aiohttp
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.mam import channel_root, create_message
from sqlalchemy import create_engine, func, select

from grid_server.grid.db.models import Bill, Payout, Reading, Settlement

from .processes import request_json

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from p2p_energy_protocol.mam import MamChannel
    from sqlalchemy import Row

type Households = Mapping[str, tuple[str, MamChannel]]
"""Registration id -> (role, channel) of the households a test runs."""

SLOT_MS = 60_000
MESSAGES = 16


def readings_for(role: str, now_ms: int) -> list[dict[str, object]]:
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


async def publish(
    client: IriClient, channel: MamChannel, messages: list[dict[str, object]]
) -> None:
    for message in messages:
        await client.publish_mam(create_message(channel, message), min_weight_magnitude=1)


def energy_milliwh(role: str, readings: list[dict[str, object]]) -> int:
    """Total energy of ``readings`` in mWh, as the grid stores it."""
    key = "usage" if role == "consumer" else "output"
    return round(sum(float(str(reading[key])) for reading in readings) * 1e6)


async def register_households(
    node_url: str, households: Households, grid_urls: Sequence[str]
) -> None:
    """Say hello on every channel, then register each household (in turn with each grid)."""
    async with aiohttp.ClientSession() as session:
        client = IriClient(session, node_url)
        for number, (registration, (role, channel)) in enumerate(households.items()):
            root = channel_root(channel)  # the hello's root: publishing advances the channel
            await publish(client, channel, [{"command": "hello"}])
            status, body = request_json(
                "PUT",
                f"{grid_urls[number % len(grid_urls)]}/registration/{registration}",
                {
                    "itemName": registration,
                    "itemType": role,
                    "root": root,
                    "sideKey": channel.side_key,
                },
            )
            assert status == 200, body


async def publish_readings(node_url: str, households: Households, now_ms: int) -> None:
    """Publish every household's readings (:func:`readings_for`)."""
    async with aiohttp.ClientSession() as session:
        client = IriClient(session, node_url)
        for role, channel in households.values():
            await publish(client, channel, readings_for(role, now_ms))


def stored_readings(database: str) -> dict[str, tuple[int, int, int]]:
    """Per registration: (readings, distinct positions, energy in mWh)."""
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    Reading.registration_id,
                    func.count(),
                    func.count(func.distinct(Reading.position)),
                    func.sum(Reading.energy_milliwh),
                ).group_by(Reading.registration_id)
            ).all()
    finally:
        engine.dispose()
    return {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in rows}


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


def check_settlements(database: str) -> int:
    """Every slot settled once and balanced; bills and payouts once each; every
    household's billed or paid-out energy equals its settled readings.

    A bill's ``usage_milliwh`` and a payout's ``energy_milliwh`` already include their
    ``adjustment_milliwh`` (late readings). Returns the number of settlements.
    """
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            settlements = connection.execute(select(Settlement)).all()
            for settlement in settlements:
                assert settlement.energy_balanced, settlement.invariant_report
                assert settlement.money_balanced, settlement.invariant_report
            slots = [settlement.slot_start for settlement in settlements]
            assert len(slots) == len(set(slots))
            for table in (Bill, Payout):
                duplicates = connection.execute(
                    select(table.settlement_id, table.registration_id)
                    .group_by(table.settlement_id, table.registration_id)
                    .having(func.count() > 1)
                ).all()
                assert duplicates == [], f"{table.__name__} issued twice: {duplicates}"
            settled = _totals(
                connection.execute(
                    select(Reading.registration_id, func.sum(Reading.energy_milliwh))
                    .where(Reading.settlement_id.is_not(None))
                    .group_by(Reading.registration_id)
                ).all()
            )
            billed = _totals(
                connection.execute(
                    select(Bill.registration_id, func.sum(Bill.usage_milliwh)).group_by(
                        Bill.registration_id
                    )
                ).all()
            )
            paid = _totals(
                connection.execute(
                    select(Payout.registration_id, func.sum(Payout.energy_milliwh)).group_by(
                        Payout.registration_id
                    )
                ).all()
            )
    finally:
        engine.dispose()
    assert {**billed, **paid} == settled
    return len(settlements)


def _totals(rows: Sequence[Row[tuple[str, int]]]) -> dict[str, int]:
    """Registration id -> total of a grouped sum."""
    return {registration_id: int(total) for registration_id, total in rows}
