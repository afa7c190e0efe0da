"""End to end at a reduced size for CI: real households through a real node and grid.

``benchmarks/e2e_scale_bench.py`` runs the same procedure (tests.scale.measure.EndToEnd)
at 1,000 and 10,000 households and reports the timings; this test checks only that
the result is right: every reading ingested exactly once by a grid that kept running
from registration on, the slot settled (with all its readings) and balanced, a bill per
consumer and a payout per producer, paid in IOTA to the producer's address by the grid
wallet's value bundles and confirmed by a milestone.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, func, select

from grid_server.grid.db.models import Bill, Payout, Settlement, WalletTransfer
from tests.reliability.households import check_settlements, stored_readings
from tests.reliability.processes import COORDINATOR_SEED, NodeProcess, iri

from .measure import (
    PRODUCER_EVERY,
    EndToEnd,
    approve_tips,
    payout_addresses,
    reading_kwh,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

HOUSEHOLDS = 120


def test_every_reading_ingested_once_and_the_slot_settled(tmp_path: Path) -> None:
    # Spawned workers: forking a process that runs threads (pytest plugins) may deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, context) as pool:
        run = EndToEnd(
            tmp_path,
            HOUSEHOLDS,
            slots=1,
            pool=pool,
            # 60-s slots: the grid looks for due slots every 15 s rather than 30 s.
            slot_seconds=60,
            api_seconds=2.0,
            publish_wait=120.0,  # at most: it ends once every request and payout is stored
            # Milestones and payout rounds every half second; the 24 producers' payouts
            # go out in 2 bundles of at most 12.
            milestone_interval=0.5,
            grid_overrides={"payout_interval": 0.5, "payout_batch_size": 12},
        )
        figures = run.run()
    (slot,) = figures.slots
    assert slot.api.server_errors == 0
    # The storage API load is paced (50 requests/s by default), not as fast as answered:
    # at most one PUT+GET pair per client beyond the schedule.
    assert 0 < slot.api.requests <= 50 * 2.0 + 2 * 8
    # Registration's tips were approved (or confirmed: milestones come every half
    # second here) down to what one milestone references.
    assert figures.registration_tips[1] <= 16
    # One grid for the whole run: no start-up in the slot, the hellos sent before it.
    assert not figures.restart_grid
    assert slot.grid_start_seconds == 0
    assert figures.grid_start_seconds > 0
    # It followed while the readings arrived and waited for every one before settling.
    assert (slot.settled_readings, slot.settled_adjustments) == (HOUSEHOLDS, 0)
    assert slot.requests_expected == HOUSEHOLDS - len(range(0, HOUSEHOLDS, PRODUCER_EVERY))
    # Every step of the slot was seen, in order, from the last reading on the node on.
    assert slot.requests_published == slot.requests_expected
    timeline = slot.since_last_reading
    assert timeline.requests_stored is not None
    assert timeline.payouts_stored is not None
    assert 0 < timeline.readings_stored <= timeline.settled <= timeline.requests_stored
    assert timeline.whole_slot == max(timeline.requests_stored, timeline.payouts_stored)
    producers = len(range(0, HOUSEHOLDS, PRODUCER_EVERY))
    assert slot.payouts == producers
    # Every payout was an IOTA transfer, in bundles of at most 12 payouts, each with an
    # input (2 transactions at security 2), within the node's 100-transaction attach limit.
    assert figures.tangle_payouts
    assert (slot.payouts_on_tangle, slot.payouts_confirmed, slot.payouts_failed) == (
        producers,
        producers,
        0,
    )
    assert len(slot.payout_bundles) >= 2
    assert all(1 + 2 <= size <= 100 for size in slot.payout_bundles)
    assert timeline.payouts_confirmed is not None
    assert timeline.payouts_stored < timeline.payouts_confirmed
    # The grid's payment requests were attached by its two worker processes.
    assert slot.workers_cpu > 0
    assert min(slot.grid_peak_rss, slot.workers_peak_rss, slot.node_peak_rss) > 0
    assert run.grid_database is not None
    engine = create_engine(run.grid_database)
    try:
        with engine.connect() as connection:
            settlement = connection.execute(select(Settlement)).one()
            bills = connection.execute(select(func.count()).select_from(Bill)).scalar_one()
            payouts = connection.execute(select(func.count()).select_from(Payout)).scalar_one()
            paid = connection.execute(
                select(Payout.destination, Payout.amount, Payout.status, Payout.method)
            ).all()
            transfers = connection.execute(
                select(WalletTransfer.status, WalletTransfer.total)
            ).all()
    finally:
        engine.dispose()
    expected = {
        f"e2e-{n:06}": round(reading_kwh(n, run.windows[0]) * 1e6) for n in range(HOUSEHOLDS)
    }
    # One reading per household at position 1 (after its hello), never twice.
    assert stored_readings(run.grid_database) == {
        registration: (1, 1, energy) for registration, energy in expected.items()
    }
    assert settlement.readings_count == HOUSEHOLDS
    assert settlement.adjustment_readings == 0
    assert bills == slot.requests_expected
    assert payouts == len(range(0, HOUSEHOLDS, PRODUCER_EVERY))
    check_settlements(run.grid_database)
    # Each producer was paid at the address it named, and the node's ledger (started
    # again on its database) holds exactly that; the treasury paid the rest.
    addresses = payout_addresses(range(HOUSEHOLDS))
    assert {destination for destination, *_ in paid} == set(addresses.values())
    assert {(status, method) for *_, status, method in paid} == {("confirmed", "tangle")}
    assert {status for status, _ in transfers} == {"confirmed"}
    owed = {destination: amount for destination, amount, *_ in paid}
    assert sum(owed.values()) == sum(total for _, total in transfers) > 0
    run.node.start()
    try:
        status, body = iri(
            run.node.url,
            {"command": "getBalances", "addresses": [run.treasury_address(), *owed]},
        )
    finally:
        run.node.stop()
    assert status == 200, body
    treasury, *balances = map(int, body["balances"])
    assert dict(zip(owed, balances, strict=True)) == owed
    # The treasury's remainder moved to a fresh wallet address; the key-0 address is spent.
    assert treasury == 0


def test_approving_tips_pairwise_halves_them(tmp_path: Path) -> None:
    # No milestone after the first one: only the approvals change the tips.
    config = {"coordinator": {"seed": COORDINATOR_SEED, "interval": 3600.0}}
    node = NodeProcess(tmp_path, config=config)
    node.start()
    try:
        status, body = iri(node.url, {"command": "getTips"})
        assert status == 200, body
        (milestone,) = body["hashes"]
        # 40 distinct transactions on the milestone: 40 tips.
        counts = [store(node.url, approve_tips([milestone] * 80, 1))]
        for _ in range(3):
            status, body = iri(node.url, {"command": "getTips"})
            assert status == 200, body
            counts.append(store(node.url, approve_tips(body["hashes"], 1)))
    finally:
        node.stop()
    # Each round approves every tip, two by each new transaction (the odd one out
    # shares the first tip's transaction).
    assert counts == [40, 20, 10, 5]


def store(node_url: str, trytes: list[str]) -> int:
    """Store and broadcast ``trytes``; the node's tips afterwards."""
    for command in ("storeTransactions", "broadcastTransactions"):
        status, body = iri(node_url, {"command": command, "trytes": trytes})
        assert status == 200, body
    status, info = iri(node_url, {"command": "getNodeInfo"})
    assert status == 200, info
    return int(info["tips"])
