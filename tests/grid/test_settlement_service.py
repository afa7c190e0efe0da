"""Settling slots in the database: hand-computed bills, late readings, idempotency."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from random import Random

import pytest
from sqlalchemy import func, select, update

from grid_server.grid.config import GridConfig
from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import Bill, FollowedChannel, Payout, Reading, Settlement
from grid_server.grid.settlement.engine import SettlementError
from grid_server.grid.settlement.pricing import StrategyInfo
from grid_server.grid.settlement.service import (
    SettlementService,
    payment_method,
    slot_bounds,
    waiting_for,
)

from .dbhelpers import add_reading, add_registration
from .fakes import FakeStream, ManualClock

SLOT = 900_000
S0 = 1_888_888 * SLOT
ADDRESS = "A" * 81
CONFIG = replace(
    GridConfig(),
    import_price=100.0,
    export_price=20.0,
    grid_cut_percent=10.0,
    settlement_delay_seconds=60.0,
)


def entities(db: Database) -> None:
    for name, kind in (
        ("producer-a", "producer"),
        ("producer-b", "producer"),
        ("consumer-x", "consumer"),
        ("consumer-y", "consumer"),
    ):
        add_registration(db, name, kind, None)


def bills(db: Database, settlement_id: int) -> dict[str, tuple[int, int, int]]:
    with db.read() as session:
        return {
            b.registration_id: (b.usage_milliwh, b.adjustment_milliwh, b.amount)
            for b in session.scalars(select(Bill).where(Bill.settlement_id == settlement_id))
        }


def payouts(db: Database, settlement_id: int) -> dict[str, tuple[int, str | None, str, str]]:
    with db.read() as session:
        return {
            p.registration_id: (p.amount, p.destination, p.method, p.status)
            for p in session.scalars(select(Payout).where(Payout.settlement_id == settlement_id))
        }


def test_slot_bounds() -> None:
    assert slot_bounds(S0, SLOT) == (S0, S0 + SLOT)
    assert slot_bounds(S0 + SLOT - 1, SLOT) == (S0, S0 + SLOT)


def test_payment_methods() -> None:
    assert payment_method(ADDRESS) == ("tangle", ADDRESS, "pending")
    assert payment_method("invoice 42") == ("off_tangle", "invoice 42", "recorded")
    assert payment_method(None) == ("off_tangle", None, "recorded")
    # "M" (13) ends in a 1 trit: an address that cannot receive value.
    assert payment_method("M" * 81) == ("tangle", "M" * 81, "failed")
    # A 90-tryte address with a wrong checksum is refused too.
    assert payment_method("A" * 90)[2] == "failed"


async def test_a_slot_settles_as_computed_by_hand(db: Database) -> None:
    entities(db)
    add_reading(db, "producer-a", S0 + SLOT, 3.0, price=50, destination=ADDRESS)
    add_reading(db, "producer-b", S0 + SLOT, 1.0, price=90, destination="ref-b")
    add_reading(db, "consumer-x", S0 + SLOT, 2.0)
    add_reading(db, "consumer-y", S0 + SLOT - 300_000, 1.0, duration_ms=600_000)
    add_reading(db, "consumer-y", S0 + SLOT, 2.0, duration_ms=300_000)
    # Belongs to the next slot.
    add_reading(db, "consumer-x", S0 + 2 * SLOT, 7.0)
    clock = ManualClock(S0 + SLOT - 1)
    service = SettlementService(db, CONFIG, clock, "test")
    assert await service.settle_due() == []  # the slot has not ended
    clock.advance(0.001)
    # Every participant's reading is in: no need to wait for the deadline.
    [summary] = await service.settle_due()
    assert (summary.slot_start, summary.slot_end) == (S0, S0 + SLOT)
    assert summary.consensus_price_micro == 60_000_000
    assert (summary.consumer_charges, summary.producer_payouts, summary.grid_cut) == (340, 216, 24)
    assert (summary.readings, summary.adjustments) == (5, 0)
    assert bills(db, summary.id) == {
        "consumer-x": (2_000_000, 0, 136),
        "consumer-y": (3_000_000, 0, 204),
    }
    assert payouts(db, summary.id) == {
        "producer-a": (162, ADDRESS, "tangle", "pending"),
        "producer-b": (54, "ref-b", "off_tangle", "recorded"),
    }
    with db.read() as session:
        row = session.get(Settlement, summary.id)
        assert row is not None
        assert (
            row.produced_milliwh,
            row.consumed_milliwh,
            row.imported_milliwh,
            row.exported_milliwh,
        ) == (
            4_000_000,
            5_000_000,
            1_000_000,
            0,
        )
        assert (row.import_cost, row.export_revenue, row.local_value) == (100, 0, 240)
        assert row.energy_balanced
        assert row.money_balanced
        report = json.loads(row.invariant_report)
        assert report["energyInMilliwh"] == report["energyOutMilliwh"] == 5_000_000
        assert report["consumerCharges"] == report["payoutsPlusImportMinusExportPlusCut"] == 340
        assert (row.strategy, row.grid_cut_ppm) == ("weighted-mean", 100_000)
        unsettled = session.scalar(
            select(func.count()).select_from(Reading).where(Reading.settlement_id.is_(None))
        )
        assert unsettled == 1


async def test_a_slot_waits_for_every_active_participant_until_its_deadline(
    db: Database,
) -> None:
    entities(db)
    for name in ("producer-a", "consumer-x", "consumer-y"):
        add_reading(db, name, S0 + SLOT, 1.0, price=50, destination=ADDRESS)
    add_reading(db, "producer-a", S0 + 2 * SLOT, 2.0, price=50, destination=ADDRESS)
    clock = ManualClock(S0 + SLOT)
    service = SettlementService(db, CONFIG, clock, "test")
    [first] = await service.settle_due()
    assert first.slot_start == S0
    # Followed since before the slot ended, nothing published yet: waited for too.
    add_registration(
        db, "consumer-new", "consumer", FakeStream(Random(1), "restricted", "K" * 81), now=S0 + SLOT
    )
    # Followed only since the slot ended: not expected to have a reading for it.
    add_registration(
        db,
        "consumer-later",
        "consumer",
        FakeStream(Random(2), "restricted", "K" * 81),
        now=S0 + 2 * SLOT,
    )
    with db.read() as session:
        assert waiting_for(session, S0 + 2 * SLOT) == ["consumer-new", "consumer-x", "consumer-y"]
    with db.write() as session:
        session.execute(
            update(FollowedChannel)
            .where(FollowedChannel.registration_id == "consumer-new")
            .values(active=False)
        )

    clock.now = S0 + 2 * SLOT + 30_000
    assert await service.settle_due() == []  # both consumers' readings are missing
    add_reading(db, "consumer-x", S0 + 2 * SLOT, 1.5)
    assert await service.settle_due() == []  # consumer-y's still is
    add_reading(db, "consumer-y", S0 + 2 * SLOT + 300_000, 0.5, duration_ms=600_000)
    # A reading that ends later covers the slot too: the channel has moved past it.
    [second] = await service.settle_due()
    assert (second.slot_start, second.readings, second.adjustments) == (S0 + SLOT, 2, 0)


async def test_at_its_deadline_a_slot_settles_without_the_missing_readings(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    entities(db)
    for name in ("producer-a", "consumer-x", "consumer-y"):
        add_reading(db, name, S0 + SLOT, 1.0, price=50, destination=ADDRESS)
    add_reading(db, "producer-a", S0 + 2 * SLOT, 2.0, price=50, destination=ADDRESS)
    add_reading(db, "consumer-x", S0 + 2 * SLOT, 1.0)
    clock = ManualClock(S0 + 2 * SLOT + 59_999)
    service = SettlementService(db, CONFIG, clock, "test")
    [first] = await service.settle_due()
    assert first.slot_start == S0
    clock.advance(0.001)
    with caplog.at_level(logging.INFO, logger="grid_server.grid.settlement.service"):
        [second] = await service.settle_due()
    assert (second.slot_start, second.readings) == (S0 + SLOT, 2)
    assert "without the readings of 1 participant(s), e.g. consumer-y" in caplog.text
    # The missing reading arrives later: an adjustment in the next slot.
    add_reading(db, "consumer-y", S0 + 2 * SLOT, 1.0)
    add_reading(db, "consumer-y", S0 + 3 * SLOT, 1.0)
    for name in ("producer-a", "consumer-x"):
        add_reading(db, name, S0 + 3 * SLOT, 1.0, price=50, destination=ADDRESS)
    clock.now = S0 + 3 * SLOT
    [third] = await service.settle_due()
    assert (third.slot_start, third.readings, third.adjustments) == (S0 + 2 * SLOT, 4, 1)


async def test_the_deadline_counts_from_when_the_grid_could_follow_again(db: Database) -> None:
    entities(db)
    for slot in (1, 2, 3):
        add_reading(db, "producer-a", S0 + slot * SLOT, 1.0, price=50, destination=ADDRESS)
        add_reading(db, "consumer-x", S0 + slot * SLOT, 1.0)
    add_reading(db, "consumer-y", S0 + SLOT, 1.0)
    # The node was down for an hour; the grid follows again since 10 s ago.
    now = S0 + 8 * SLOT
    clock = ManualClock(now)
    service = SettlementService(db, CONFIG, clock, "test")
    assert service.deadline(S0 + 2 * SLOT, now - 10_000) == now + 50_000
    [first] = await service.settle_due(following_since=now - 10_000)
    assert first.slot_start == S0  # consumer-y's readings of the later slots are missing
    clock.advance(49)
    assert await service.settle_due(following_since=now - 10_000) == []
    clock.advance(1)
    settled = await service.settle_due(following_since=now - 10_000)
    assert [summary.slot_start for summary in settled] == [S0 + SLOT, S0 + 2 * SLOT]


async def test_departed_participants_are_not_waited_for(db: Database) -> None:
    entities(db)
    for name in ("producer-a", "consumer-x", "consumer-y"):
        add_reading(db, name, S0 + SLOT, 1.0, price=50, destination=ADDRESS)
    for name in ("producer-a", "consumer-x"):
        add_reading(db, name, S0 + 2 * SLOT, 1.0, price=50, destination=ADDRESS)
    service = SettlementService(db, CONFIG, ManualClock(S0 + 2 * SLOT), "test")
    with db.write() as session:  # consumer-y said goodbye: its channel is closed
        session.execute(
            update(FollowedChannel)
            .where(FollowedChannel.registration_id == "consumer-y")
            .values(active=False)
        )
    settled = await service.settle_due()
    assert [summary.slot_start for summary in settled] == [S0, S0 + SLOT]


async def test_late_readings_are_billed_once_as_adjustments(db: Database) -> None:
    entities(db)
    add_reading(db, "producer-a", S0 + SLOT, 3.0, price=50, destination=ADDRESS)
    add_reading(db, "consumer-x", S0 + SLOT, 2.0)
    clock = ManualClock(S0 + SLOT + 60_000)
    service = SettlementService(db, CONFIG, clock, "test")
    [first] = await service.settle_due()
    # A reading of the settled slot arrives late, with the next slot's readings.
    add_reading(db, "consumer-x", S0 + SLOT, 0.5)
    add_reading(db, "producer-a", S0 + 2 * SLOT, 1.0, price=50, destination=ADDRESS)
    add_reading(db, "consumer-y", S0 + 2 * SLOT, 1.0)
    clock.advance(900)
    [second] = await service.settle_due()
    assert (second.slot_start, second.readings, second.adjustments) == (S0 + SLOT, 3, 1)
    # 1 kWh local at 50, 0.5 kWh imported at 100: 100 IOTA; x pays a third.
    assert (second.consumer_charges, second.producer_payouts, second.grid_cut) == (100, 45, 5)
    assert bills(db, second.id) == {
        "consumer-x": (500_000, 500_000, 33),
        "consumer-y": (1_000_000, 0, 67),
    }
    assert bills(db, first.id) == {"consumer-x": (2_000_000, 0, 100)}
    clock.advance(3600)
    assert await service.settle_due() == []
    with db.read() as session:
        per_settlement = session.execute(
            select(Reading.settlement_id, func.count()).group_by(Reading.settlement_id)
        ).all()
    assert sorted(per_settlement) == [(first.id, 2), (second.id, 3)]


async def test_an_old_backlog_settles_slot_by_slot(db: Database) -> None:
    entities(db)
    for slot in range(5):
        add_reading(db, "consumer-x", S0 + (slot + 1) * SLOT, 1.0)
    # A gap of empty slots is skipped, not settled as empty rows.
    add_reading(db, "consumer-x", S0 + 20 * SLOT, 1.0)
    clock = ManualClock(S0 + 30 * SLOT)
    settled = await SettlementService(db, CONFIG, clock, "test").settle_due()
    assert [s.slot_start for s in settled] == [S0 + k * SLOT for k in (0, 1, 2, 3, 4, 19)]
    assert all(s.consumer_charges == 100 for s in settled)


async def test_concurrent_settlers_settle_each_slot_once(db: Database) -> None:
    entities(db)
    for slot in range(4):
        add_reading(db, "producer-a", S0 + (slot + 1) * SLOT, 1.0, price=40, destination=ADDRESS)
        add_reading(db, "consumer-x", S0 + (slot + 1) * SLOT, 1.5)
    clock = ManualClock(S0 + 10 * SLOT)
    services = [SettlementService(db, CONFIG, clock, f"grid-{n}") for n in range(3)]
    results = await asyncio.gather(*(service.settle_due() for service in services))
    slots = sorted(s.slot_start for result in results for s in result)
    assert slots == [S0 + k * SLOT for k in range(4)]
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Settlement)) == 4
        assert session.scalar(select(func.count()).select_from(Bill)) == 4
        assert session.scalar(select(func.count()).select_from(Payout)) == 4


async def test_a_failing_settlement_rolls_back(db: Database) -> None:
    entities(db)
    add_reading(db, "producer-a", S0 + SLOT, 1.0, price=40, destination=ADDRESS)
    add_reading(db, "consumer-x", S0 + SLOT, 1.0)
    service = SettlementService(db, CONFIG, ManualClock(S0 + 2 * SLOT), "test")
    service._mechanism = StrategyInfo(lambda offers, demand, tariff: -5)
    with pytest.raises(SettlementError, match="negative price"):
        await service.settle_due()
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Settlement)) == 0
        assert session.scalar(select(func.count()).select_from(Bill)) == 0
        unsettled = session.scalar(
            select(func.count()).select_from(Reading).where(Reading.settlement_id.is_(None))
        )
        assert unsettled == 2


@pytest.mark.parametrize(
    ("strategy", "price"),
    [("mean", 70_000_000), ("merit-order", 90_000_000), ("supply-demand", 23_809_524)],
)
async def test_configured_strategy_is_used(db: Database, strategy: str, price: int) -> None:
    entities(db)
    add_reading(db, "producer-a", S0 + SLOT, 3.0, price=50, destination=ADDRESS)
    add_reading(db, "producer-b", S0 + SLOT, 1.0, price=90, destination="ref-b")
    add_reading(db, "consumer-x", S0 + SLOT, 5.0)
    config = replace(CONFIG, pricing_strategy=strategy)
    [summary] = await SettlementService(db, config, ManualClock(S0 + 2 * SLOT), "t").settle_due()
    assert summary.consensus_price_micro == price
    with db.read() as session:
        row = session.get(Settlement, summary.id)
        assert row is not None
        assert row.strategy == strategy


async def test_a_cancelled_settlement_is_all_or_nothing(database_url: str) -> None:
    """Shutdown cancels the worker; the slot's transaction still commits or rolls back whole."""
    import contextlib

    db = Database(database_url, threads=2)
    try:
        entities(db)
        for number in range(40):
            add_reading(db, "consumer-x" if number % 2 else "consumer-y", S0 + SLOT, 0.1)
        add_reading(db, "producer-a", S0 + SLOT, 3.0, price=50, destination=ADDRESS)
        task = asyncio.create_task(
            SettlementService(db, CONFIG, ManualClock(S0 + 2 * SLOT), "t").settle_due()
        )
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        db.close()  # waits for the database thread to finish its transaction
    check = Database(database_url, threads=1)
    try:
        with check.read() as session:
            settled = session.scalar(select(func.count()).select_from(Settlement))
            bills_count = session.scalar(select(func.count()).select_from(Bill))
            unsettled = session.scalar(
                select(func.count()).select_from(Reading).where(Reading.settlement_id.is_(None))
            )
        assert (settled, bills_count, unsettled) in ((0, 0, 41), (1, 2, 0))
    finally:
        check.close()
