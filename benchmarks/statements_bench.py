"""What a month of statements costs the grid (issue 15).

Run ``.venv/bin/python benchmarks/statements_bench.py --consumers 200 [--slot-seconds 900]
[--database-url URL]``. It builds a migrated grid database with N consumers billed in
every slot of November 2026, then times, in one run:

* reference: one SQL query summing each consumer's bills of the month (the least any
  statement must read);
* previews: ``StatementService.previews`` (every consumer's statement: daily lines, the
  local/imported split, payments, carried balance);
* finalise: ``StatementService.finalise`` of the month (computed in a read transaction,
  stored in a short write transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, insert, select

from grid_server.grid.config import GridConfig
from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import Bill, Registration, Settlement
from grid_server.grid.statements import StatementService

NOVEMBER = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
DECEMBER = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)


def seed(db: Database, consumers: int, slot_ms: int) -> int:
    slots = (DECEMBER - NOVEMBER) // slot_ms
    ids = [f"consumer-{number:05}" for number in range(consumers)]
    with db.write() as session:
        session.execute(
            insert(Registration),
            [
                {
                    "registration_id": rid,
                    "item_name": rid,
                    "item_type": "consumer",
                    "active": True,
                    "created_at": 0,
                    "updated_at": 0,
                }
                for rid in ids
            ],
        )
        session.execute(
            insert(Settlement),
            [
                {
                    "id": slot + 1,
                    "slot_start": NOVEMBER + slot * slot_ms,
                    "slot_end": NOVEMBER + (slot + 1) * slot_ms,
                    "strategy": "mean",
                    "consensus_price_micro": 50_000_000,
                    "import_price_micro": 100_000_000,
                    "export_price_micro": 20_000_000,
                    "grid_cut_ppm": 100_000,
                    "produced_milliwh": consumers * 500_000,
                    "consumed_milliwh": consumers * 1_000_000,
                    "local_milliwh": consumers * 500_000,
                    "imported_milliwh": consumers * 500_000,
                    "exported_milliwh": 0,
                    "local_value": consumers * 25,
                    "consumer_charges": consumers * 75,
                    "producer_payouts": consumers * 22,
                    "import_cost": consumers * 50,
                    "export_revenue": 0,
                    "grid_cut": consumers * 3,
                    "readings_count": 0,
                    "adjustment_readings": 0,
                    "producers_count": 0,
                    "consumers_count": consumers,
                    "energy_balanced": True,
                    "money_balanced": True,
                    "invariant_report": "{}",
                    "settled_by": "bench",
                    "settled_at": 0,
                }
                for slot in range(slots)
            ],
        )
        session.execute(
            insert(Bill),
            [
                {
                    "settlement_id": slot + 1,
                    "registration_id": rid,
                    "usage_milliwh": 1_000_000,
                    "adjustment_milliwh": 0,
                    "amount": 75,
                }
                for slot in range(slots)
                for rid in ids
            ],
        )
    return slots


async def measure(db: Database, config: GridConfig, consumers: int) -> None:
    def reference() -> list[tuple[str, int]]:
        with db.read() as session:
            rows = session.execute(
                select(Bill.registration_id, func.sum(Bill.amount))
                .join(Settlement, Settlement.id == Bill.settlement_id)
                .where(Settlement.slot_start >= NOVEMBER, Settlement.slot_start < DECEMBER)
                .group_by(Bill.registration_id)
            ).all()
        return [(str(rid), int(total)) for rid, total in rows]

    service = StatementService(db, config, lambda: DECEMBER + 86_400_000)
    started = time.perf_counter()
    sums = await db.run(reference)
    reference_seconds = time.perf_counter() - started
    started = time.perf_counter()
    previews, _ = await service.previews("2026-11")
    preview_seconds = time.perf_counter() - started
    started = time.perf_counter()
    issued = await service.finalise("2026-11", None, by="bench")
    finalise_seconds = time.perf_counter() - started
    assert sorted(sums) == sorted((d["registrationId"], d["amounts"]["charges"]) for d in issued)
    assert len(previews) == consumers
    for name, seconds in (
        ("reference (SQL sums)", reference_seconds),
        ("previews", preview_seconds),
        ("finalise", finalise_seconds),
    ):
        print(
            f"{name:22} {seconds:8.2f} s  {seconds / consumers * 1000:8.1f} ms per consumer  "
            f"x{seconds / reference_seconds:6.1f} the reference"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--consumers", type=int, default=200)
    parser.add_argument("--slot-seconds", type=int, default=900)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'grid.sqlite3'}"
        db = Database(url, threads=2)
        try:
            db.migrate()
            slot_ms = args.slot_seconds * 1000
            slots = seed(db, args.consumers, slot_ms)
            print(
                f"{args.consumers} consumers, {slots} slots in November 2026 ({url.split(':')[0]})"
            )
            config = replace(GridConfig(), slot_seconds=args.slot_seconds)
            asyncio.run(measure(db, config, args.consumers))
        finally:
            db.close()


if __name__ == "__main__":
    main()
