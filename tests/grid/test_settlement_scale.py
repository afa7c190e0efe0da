"""Settlement stays set-based: 10,000 households settle in one slot quickly on both databases."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import func, insert, select

from grid_server.grid.config import GridConfig
from grid_server.grid.db.models import Bill, FollowedChannel, Payout, Reading, Registration
from grid_server.grid.settlement.service import SettlementService

from .fakes import ManualClock

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database

SLOT = 900_000
S0 = 1_888_888 * SLOT
HOUSEHOLDS = 10_000
PRODUCERS = 2_000
CONFIG = replace(GridConfig(), import_price=100.0, export_price=20.0, grid_cut_percent=10.0)


def populate(db: Database) -> tuple[int, int]:
    """Registrations, channels and one reading each, bulk-inserted; returns energy totals."""
    rng = random.Random(7)
    produced = consumed = 0
    with db.write() as session:
        session.execute(
            insert(Registration),
            [
                {
                    "registration_id": f"household-{n:05}",
                    "item_name": f"Household {n}",
                    "item_type": "producer" if n < PRODUCERS else "consumer",
                    "active": True,
                    "created_at": 0,
                    "updated_at": 0,
                }
                for n in range(HOUSEHOLDS)
            ],
        )
        session.execute(
            insert(FollowedChannel),
            [
                {
                    "registration_id": f"household-{n:05}",
                    "role": "producer" if n < PRODUCERS else "consumer",
                    "mode": "restricted",
                    "root": "R" * 81,
                    "side_key": "S" * 81,
                    "next_root": "R" * 81,
                    "next_position": 1,
                    "active": True,
                    "hello_seen": True,
                    "skipped_messages": 0,
                    "next_read_at": 0,
                    "created_at": 0,
                }
                for n in range(HOUSEHOLDS)
            ],
        )
        channel_ids = dict(
            session.execute(select(FollowedChannel.registration_id, FollowedChannel.id)).all()
        )
        readings = []
        for n in range(HOUSEHOLDS):
            producer = n < PRODUCERS
            energy = rng.randint(1, 3_000_000)
            if producer:
                produced += energy
            else:
                consumed += energy
            readings.append(
                {
                    "channel_id": channel_ids[f"household-{n:05}"],
                    "registration_id": f"household-{n:05}",
                    "kind": "output" if producer else "usage",
                    "position": 1,
                    "message_root": "M" * 81,
                    "start_time": S0,
                    "end_time": S0 + SLOT,
                    "energy_milliwh": energy,
                    "price_micro": rng.randint(10, 90) * 1_000_000 if producer else None,
                    "payment_id_or_address": "A" * 81 if producer else None,
                    "received_at": S0 + SLOT,
                    "settlement_id": None,
                }
            )
        session.execute(insert(Reading), readings)
    return produced, consumed


async def test_ten_thousand_households_settle_in_seconds(db: Database) -> None:
    produced, consumed = populate(db)
    service = SettlementService(db, CONFIG, ManualClock(S0 + 2 * SLOT), "scale")
    started = time.perf_counter()
    [summary] = await service.settle_due()
    elapsed = time.perf_counter() - started
    print(f"\nsettled {HOUSEHOLDS} households on {db.dialect} in {elapsed:.2f} s")
    assert summary.readings == HOUSEHOLDS
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Bill)) == HOUSEHOLDS - PRODUCERS
        assert session.scalar(select(func.count()).select_from(Payout)) == PRODUCERS
        assert session.scalar(select(func.sum(Bill.usage_milliwh))) == consumed
        assert session.scalar(select(func.sum(Payout.energy_milliwh))) == produced
        assert session.scalar(select(func.sum(Bill.amount))) == summary.consumer_charges
    # Generous for a shared 2-core machine; it takes about a second when idle.
    assert elapsed < 20
