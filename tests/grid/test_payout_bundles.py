"""Payouts in several value bundles at once: planning, and paying many producers on a node."""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import aiohttp
import pytest
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.transaction import Transaction
from sqlalchemy import select

from grid_server.grid.db.models import Payout, WalletTransfer
from grid_server.grid.settlement.service import SettlementService
from grid_server.grid.wallet import (
    MAX_BUNDLE_TRANSACTIONS,
    GridWallet,
    PayoutPlan,
    _Candidate,
    plan_bundles,
)

from .dbhelpers import add_reading, add_registration
from .fakes import ManualClock
from .nodes import MWM, running_node
from .test_wallet import CONFIG, GRID_SEED, S0, SLOT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from grid_server.grid.db.engine import Database
    from grid_server.node import NodeServer


def funded(*balances: int) -> list[tuple[_Candidate, int]]:
    """Wallet addresses at key indexes 1, 2, ... holding ``balances`` (fake addresses)."""
    return [
        (_Candidate(index, f"ADDRESS{index}X".ljust(81, "9"), "consumer"), balance)
        for index, balance in enumerate(balances, start=1)
    ]


def payouts(*amounts: int, destination: str | None = None) -> list[tuple[int, str, int]]:
    return [
        (number, destination or f"PRODUCER{number}X".ljust(81, "9"), amount)
        for number, amount in enumerate(amounts, start=1)
    ]


def plan(
    pending: list[tuple[int, str, int]],
    inputs: list[tuple[_Candidate, int]],
    *,
    count: int = 8,
    batch_size: int = 90,
    target: int = 1,
    awaiting: int = 0,
) -> PayoutPlan:
    return plan_bundles(
        pending,
        inputs,
        count=count,
        batch_size=batch_size,
        security=2,
        funded_target=target,
        awaiting=awaiting,
    )


def transactions(planned: PayoutPlan) -> list[int]:
    """Each bundle's transaction count: outputs, two per input (security 2), change."""
    return [
        len(bundle.amounts) + 2 * len(bundle.inputs) + bundle.remainders
        for bundle in planned.bundles
    ]


def test_bundles_spend_inputs_of_their_own_largest_first() -> None:
    result = plan(payouts(10, 10, 10, 10, 10, 10), funded(15, 100, 30), batch_size=2, target=3)
    assert [[c.key_index for c, _ in b.inputs] for b in result.bundles] == [[2], [3]]
    assert [b.change for b in result.bundles] == [80, 10]
    # The third pair needs 20 and 15 is left: it waits, oldest payouts first.
    assert result.shortfall == (15, 20, 2)
    assert [p for b in result.bundles for p, _, _ in b.payouts] == [1, 2, 3, 4]


def test_change_is_split_until_the_wallet_has_a_funded_address_per_bundle() -> None:
    # One funded address and 8 bundles wanted in flight: the change goes to 8 addresses.
    assert [b.remainders for b in plan(payouts(5), funded(10_000), target=8).bundles] == [8]
    # Three bundles not yet confirmed will bring their own change.
    assert [
        b.remainders for b in plan(payouts(5), funded(10_000), target=8, awaiting=3).bundles
    ] == [5]
    # Enough funded addresses left: one remainder, no more addresses.
    assert [b.remainders for b in plan(payouts(5), funded(10_000, 9, 9), target=2).bundles] == [1]
    # No change, no remainder; never more parts than IOTA to split.
    assert [b.remainders for b in plan(payouts(5), funded(5), target=8).bundles] == [0]
    assert [b.remainders for b in plan(payouts(5), funded(8), target=8).bundles] == [3]


def test_a_bundle_stays_within_the_attach_limit() -> None:
    result = plan(payouts(*[1] * 150), funded(1_000, 1_000), batch_size=100, count=2)
    # 100 payouts + one input (2) + change (1) would be 103 transactions: 97 fit.
    assert [len(b.payouts) for b in result.bundles] == [97, 53]
    assert max(transactions(result)) == MAX_BUNDLE_TRANSACTIONS


def test_payouts_to_one_address_are_one_output() -> None:
    result = plan(payouts(3, 4, 5, destination="SAME".ljust(81, "9")), funded(100))
    assert [b.amounts for b in result.bundles] == [{"SAME".ljust(81, "9"): 12}]
    assert transactions(result) == [1 + 2 + 1]


def test_a_payout_that_needs_more_inputs_than_a_bundle_holds_is_an_error() -> None:
    result = plan(payouts(60), funded(*[1] * 60))
    assert result.bundles == []
    assert result.error is not None
    assert "needs more inputs" in result.error


@contextlib.asynccontextmanager
async def paying_wallet(
    db: Database, directory: Path, genesis: int, **options: int
) -> AsyncIterator[tuple[NodeServer, IriClient, GridWallet]]:
    """A node whose genesis funds the grid's treasury, and the grid's wallet on it (the
    node's attachToTangle does the proof of work)."""
    async with (
        running_node(directory, {generate_address(GRID_SEED, 0, 2): genesis}) as node,
        aiohttp.ClientSession() as session,
    ):
        client = IriClient(session, node.url)
        with ThreadPoolExecutor(1) as cpu:
            clock = ManualClock(S0 + 2 * SLOT)
            wallet = GridWallet(
                db, client, GRID_SEED, clock, cpu, min_weight_magnitude=MWM, **options
            )
            yield node, client, wallet


async def settle_producers(db: Database, addresses: list[str]) -> None:
    """One producer per address, all paid in one settlement, and one consumer."""
    add_registration(db, "cx-registration", "consumer", None)
    for number, address in enumerate(addresses):
        add_registration(db, f"p{number}-registration", "producer", None)
        add_reading(
            db, f"p{number}-registration", S0 + SLOT, 1.0, price=40 + number, destination=address
        )
    add_reading(db, "cx-registration", S0 + SLOT, float(len(addresses)))
    await SettlementService(db, CONFIG, ManualClock(S0 + 2 * SLOT), "t").settle_due()


@pytest.mark.timeout(300)
async def test_many_producers_are_paid_by_bundles_in_flight_together(
    db: Database, tmp_path: Path
) -> None:
    producers = [generate_address(f"PRODUCER{chr(65 + n)}".ljust(81, "P"), 0, 2) for n in range(15)]
    await settle_producers(db, producers)
    with db.read() as session:
        owed = {str(p.destination): p.amount for p in session.scalars(select(Payout))}
    assert len(owed) == 15
    genesis = 1_000_000
    async with paying_wallet(db, tmp_path, genesis, batch_size=3, bundles_in_flight=3) as (
        node,
        client,
        wallet,
    ):
        # Only the treasury is funded: one bundle, its change split over 3 addresses.
        first = await wallet.pay_out()
        assert (len(first.new_transfers), first.sent, first.waiting_for_funds) == (1, 1, False)
        assert await node.runtime.issue_milestone()
        # Its change confirmed: three bundles at once, one on each part of it.
        second = await wallet.pay_out()
        assert (second.confirmed, len(second.new_transfers), second.sent) == (1, 3, 3)
        # Three in flight and three payouts pending: nothing new until one confirms.
        assert (await wallet.pay_out()).new_transfers == []
        rounds = 0
        while any(status != "confirmed" for status in statuses(db)):
            rounds += 1
            assert rounds < 6, statuses(db)
            assert await node.runtime.issue_milestone()
            await wallet.pay_out()
        paid = await client.get_balances(list(owed))
        assert dict(zip(owed, paid.balances, strict=True)) == owed
        assert await wallet.confirmed_balance() == genesis - sum(owed.values())
    with db.read() as session:
        bundles = [json.loads(t.trytes_json) for t in session.scalars(select(WalletTransfer))]
    assert len(bundles) == 5  # 15 payouts, 3 per bundle
    spent = [
        transaction.address
        for trytes in bundles
        for transaction in map(Transaction.from_trytes, trytes)
        if transaction.value < 0
    ]
    assert len(spent) == len(set(spent)), "an address was spent by two bundles"


def statuses(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(Payout.status)))


@pytest.mark.timeout(300)
async def test_a_full_bundle_is_within_the_nodes_attach_limit(db: Database, tmp_path: Path) -> None:
    seeds = [f"PRODUCER{chr(65 + n // 26)}{chr(65 + n % 26)}".ljust(81, "Q") for n in range(98)]
    producers = [generate_address(seed, 0, 2) for seed in seeds]
    await settle_producers(db, producers)
    # No local proof of work: the node's attachToTangle takes 100 transactions at most.
    async with paying_wallet(db, tmp_path, 1_000_000, batch_size=100) as (node, _, wallet):
        assert node.config.limits.max_attach_transactions == MAX_BUNDLE_TRANSACTIONS
        first = await wallet.pay_out()
        assert (len(first.new_transfers), first.sent, first.errors) == (1, 1, [])
        assert await node.runtime.issue_milestone()
        second = await wallet.pay_out()
        assert (second.confirmed, len(second.new_transfers), second.sent) == (1, 1, 1)
    with db.read() as session_:
        sizes = [len(json.loads(t.trytes_json)) for t in session_.scalars(select(WalletTransfer))]
    assert sizes == [MAX_BUNDLE_TRANSACTIONS, 1 + 2 + 1]  # 97 payouts, then the 98th
