"""The grid wallet against a real node: payouts, crash safety, consumer payments."""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import aiohttp
from p2p_energy_protocol.client import IriClient, Transfer
from p2p_energy_protocol.errors import NodeUnavailableError
from p2p_energy_protocol.signing import generate_address
from sqlalchemy import select

from grid_server.grid.billing import Account, PaymentMonitor, account
from grid_server.grid.config import GridConfig
from grid_server.grid.db.models import IncomingPayment, Payout, WalletAddress, WalletTransfer
from grid_server.grid.settlement.service import SettlementService
from grid_server.grid.wallet import GridWallet

from .dbhelpers import add_reading, add_registration
from .fakes import ManualClock
from .nodes import MWM, running_node

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from grid_server.grid.db.engine import Database
    from grid_server.node import NodeServer

SLOT = 900_000
S0 = 1_888_888 * SLOT
GRID_SEED = "GRID9WALLET9SEED".ljust(81, "9")
CONSUMER_SEED = "CONSUMER9WALLET".ljust(81, "C")
PRODUCER_A = generate_address("PRODUCER9A".ljust(81, "A"), 0, 2)
PRODUCER_B = generate_address("PRODUCER9B".ljust(81, "B"), 0, 2)
CONFIG = replace(GridConfig(), import_price=100.0, export_price=20.0, grid_cut_percent=10.0)


async def settle_with_payouts(db: Database) -> None:
    """Two producers paid by address (162 and 54 IOTA) and one off-Tangle reference."""
    for name, kind in (
        ("pa", "producer"),
        ("pb", "producer"),
        ("pc", "producer"),
        ("cx", "consumer"),
    ):
        add_registration(db, f"{name}-registration", kind, None)
    add_reading(db, "pa-registration", S0 + SLOT, 3.0, price=50, destination=PRODUCER_A)
    add_reading(db, "pb-registration", S0 + SLOT, 1.0, price=90, destination=PRODUCER_B)
    add_reading(db, "pc-registration", S0 + SLOT, 1.0, price=60, destination="invoice-77")
    add_reading(db, "cx-registration", S0 + SLOT, 5.0)
    await SettlementService(db, CONFIG, ManualClock(S0 + 2 * SLOT), "t").settle_due()


def payout_states(db: Database) -> dict[str, tuple[int, str]]:
    with db.read() as session:
        return {p.registration_id: (p.amount, p.status) for p in session.scalars(select(Payout))}


class FlakyNode:
    """The real client, except that storing fails while ``down`` (lost before the node
    stored it: whether it did is unknown to the wallet)."""

    def __init__(self, client: IriClient) -> None:
        self.client = client
        self.down = True

    async def store_transactions(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise NodeUnavailableError("simulated outage")
        return await self.client.store_transactions(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


async def test_payouts_are_paid_once_even_across_a_restart(db: Database, tmp_path: Path) -> None:
    treasury = generate_address(GRID_SEED, 0, 2)
    await settle_with_payouts(db)
    # 5 kWh demand, 5 kWh supply at the output-weighted mean (3x50 + 90 + 60) / 5 = 60:
    # local value 300, cut 30, payouts 270 split 3:1:1.
    assert payout_states(db) == {
        "pa-registration": (162, "pending"),
        "pb-registration": (54, "pending"),
        "pc-registration": (54, "recorded"),
    }
    clock = ManualClock(S0 + 2 * SLOT)
    async with (
        running_node(tmp_path, {treasury: 10_000}) as node,
        aiohttp.ClientSession() as session,
    ):
        client = IriClient(session, node.url)
        flaky = FlakyNode(client)
        with ThreadPoolExecutor(1) as cpu:
            wallet = GridWallet(db, flaky, GRID_SEED, clock, cpu, min_weight_magnitude=MWM)  # type: ignore[arg-type]
            first = await wallet.pay_out()
            # Recorded and signed, but the node was unreachable: nothing paid yet.
            assert first.new_transfers
            assert first.sent == 0
            with db.read() as session_:
                transfer = session_.get(WalletTransfer, first.new_transfers[0])
                assert transfer is not None
                assert (transfer.status, transfer.total) == ("signed", 216)
                spent = session_.scalars(
                    select(WalletAddress.key_index).where(WalletAddress.spent)
                ).all()
                assert list(spent) == [0]
            assert {s for _, s in payout_states(db).values()} == {"in_transfer", "recorded"}

            # "Restart": a new wallet on the same database resends the recorded bundle.
            restarted = GridWallet(db, client, GRID_SEED, clock, cpu, min_weight_magnitude=MWM)
            again = await restarted.pay_out()
            assert (again.sent, again.new_transfers) == (1, [])
            # Reattaching the same bundle cannot pay twice.
            clock.advance(600)
            assert (await restarted.pay_out()).sent == 1
            assert await node.runtime.issue_milestone()
            done = await restarted.pay_out()
            assert done.confirmed == 1
            balances = await client.get_balances([PRODUCER_A, PRODUCER_B, treasury])
            assert balances.balances == [162, 54, 0]
            remainder = generate_address(GRID_SEED, 1, 2)
            assert (await client.get_balances([remainder])).balances == [10_000 - 216]
            assert payout_states(db) == {
                "pa-registration": (162, "confirmed"),
                "pb-registration": (54, "confirmed"),
                "pc-registration": (54, "recorded"),
            }
            with db.read() as session_:
                transfer = session_.get(WalletTransfer, first.new_transfers[0])
                assert transfer is not None
                assert transfer.status == "confirmed"
                assert len(json.loads(transfer.tails_json)) == 2
            # Nothing left to do.
            idle = await restarted.pay_out()
            assert (idle.sent, idle.new_transfers, idle.confirmed) == (0, [], 0)
            assert await restarted.confirmed_balance() == 10_000 - 216


async def test_payouts_wait_for_funds(db: Database, tmp_path: Path) -> None:
    await settle_with_payouts(db)
    async with (
        running_node(tmp_path, {generate_address(GRID_SEED, 0, 2): 100}) as node,
        aiohttp.ClientSession() as session,
    ):
        with ThreadPoolExecutor(1) as cpu:
            wallet = GridWallet(
                db,
                IriClient(session, node.url),
                GRID_SEED,
                ManualClock(S0),
                cpu,
                min_weight_magnitude=MWM,
            )
            result = await wallet.pay_out()
            assert result.waiting_for_funds
            assert result.new_transfers == []
            assert payout_states(db)["pa-registration"] == (162, "pending")


def payment_monitor(db: Database, node: Any, clock: ManualClock) -> PaymentMonitor:
    return PaymentMonitor(db, node, clock, unconfirmable_seconds=300, pending_expiry_seconds=3600)


def scanned(found: int = 0, confirmed: int = 0, dropped: int = 0) -> dict[str, int]:
    return {"found": found, "confirmed": confirmed, "dropped": dropped}


@dataclass
class PayingConsumer:
    """A consumer with a payment address of the grid wallet, paying through a real node."""

    node: NodeServer
    client: IriClient
    node_view: InconsistentBundles
    monitor: PaymentMonitor
    address: str

    async def pay(self, amount: int) -> str:
        """Send ``amount`` to the payment address; returns the bundle hash."""
        sent = await self.client.send_transfer(
            CONSUMER_SEED, [Transfer(self.address, amount, tag="BILL")], min_weight_magnitude=MWM
        )
        return sent[0].bundle


@contextlib.asynccontextmanager
async def paying_consumer(
    db: Database, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[PayingConsumer]:
    """``cx-registration`` (registered by the caller) with 1,000 IOTA in its wallet."""
    consumer_funds = generate_address(CONSUMER_SEED, 0, 2)
    async with (
        running_node(tmp_path, {consumer_funds: 1_000}) as node,
        aiohttp.ClientSession() as session,
    ):
        client = IriClient(session, node.url)
        node_view = InconsistentBundles(client)
        with ThreadPoolExecutor(1) as cpu:
            wallet = GridWallet(db, client, GRID_SEED, clock, cpu, min_weight_magnitude=MWM)
            address = await wallet.payment_address("cx-registration")
            yield PayingConsumer(
                node, client, node_view, payment_monitor(db, node_view, clock), address
            )


def the_payment(db: Database) -> IncomingPayment:
    with db.read() as session:
        return session.scalars(select(IncomingPayment)).one()


def account_of_cx(db: Database) -> Account:
    with db.read() as session:
        return account(session, "cx-registration")


async def test_consumer_payments_are_matched_and_confirmed(db: Database, tmp_path: Path) -> None:
    add_registration(db, "cx-registration", "consumer", None)
    clock = ManualClock(S0)
    async with paying_consumer(db, tmp_path, clock) as consumer:
        monitor = consumer.monitor
        assert await monitor.scan() == scanned()
        await consumer.pay(340)
        assert await monitor.scan() == scanned(found=1)
        assert await monitor.scan() == scanned()
        assert account_of_cx(db).pending == 340
        assert await consumer.node.runtime.issue_milestone()
        assert await monitor.scan() == scanned(confirmed=1)
        # A fresh monitor (a restart) does not record the payment again.
        assert await payment_monitor(db, consumer.client, clock).scan() == scanned()
    payment = the_payment(db)
    assert (payment.registration_id, payment.amount, payment.status) == (
        "cx-registration",
        340,
        "confirmed",
    )
    assert account_of_cx(db).paid == 340


class InconsistentBundles:
    """The real node client, except that ``checkConsistency`` fails for chosen bundles,
    as it does for a bundle spending beyond its inputs or against a confirmed spend."""

    def __init__(self, client: IriClient) -> None:
        self.client = client
        self.bundles: set[str] = set()
        self.checked: list[str] = []

    async def check_consistency(self, tails: list[str]) -> tuple[bool, str]:
        self.checked.extend(tails)
        for tx in await self.client.get_transactions(tails):
            if tx.bundle in self.bundles:
                return False, "tails are not consistent (an inconsistent ledger state)"
        return await self.client.check_consistency(tails)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


async def test_a_payment_that_cannot_confirm_is_dropped_and_never_paid(
    db: Database, tmp_path: Path
) -> None:
    add_registration(db, "cx-registration", "consumer", None)
    add_reading(db, "cx-registration", S0 + SLOT, 5.0)
    await SettlementService(db, CONFIG, ManualClock(S0 + 2 * SLOT), "t").settle_due()
    clock = ManualClock(S0 + 2 * SLOT)
    async with paying_consumer(db, tmp_path, clock) as consumer:
        monitor = consumer.monitor
        consumer.node_view.bundles.add(await consumer.pay(500))
        assert await monitor.scan() == scanned(found=1)
        row = the_payment(db)
        assert (row.status, row.unconfirmable_since) == ("pending", clock())
        assert "not consistent" in (row.problem or "")
        assert account_of_cx(db).owed == 500
        # Still unconfirmable, but not for long enough yet.
        clock.advance(299)
        assert await monitor.scan() == scanned()
        clock.advance(1)
        assert await monitor.scan() == scanned(dropped=1)
        row = the_payment(db)
        assert (row.status, row.dropped_at) == ("dropped", clock())
        assert account_of_cx(db) == Account(billed=500, owed=500, dropped=500)
        # Dropped payments are no longer asked about; nothing changes.
        checks = len(consumer.node_view.checked)
        assert await monitor.scan() == scanned()
        assert len(consumer.node_view.checked) == checks


async def test_a_payment_that_is_only_unsolid_for_a_moment_stays_pending(
    db: Database, tmp_path: Path
) -> None:
    add_registration(db, "cx-registration", "consumer", None)
    clock = ManualClock(S0)
    async with paying_consumer(db, tmp_path, clock) as consumer:
        monitor = consumer.monitor
        consumer.node_view.bundles.add(await consumer.pay(200))
        assert await monitor.scan() == scanned(found=1)
        clock.advance(200)
        consumer.node_view.bundles.clear()  # the node can confirm it after all
        assert await monitor.scan() == scanned()
        clock.advance(200)
        assert await monitor.scan() == scanned()
        row = the_payment(db)
        assert (row.status, row.problem, row.unconfirmable_since) == ("pending", None, None)
        assert await consumer.node.runtime.issue_milestone()
        assert await monitor.scan() == scanned(confirmed=1)


async def test_an_expired_payment_is_dropped_but_counts_if_it_confirms_later(
    db: Database, tmp_path: Path
) -> None:
    add_registration(db, "cx-registration", "consumer", None)
    clock = ManualClock(S0)
    async with paying_consumer(db, tmp_path, clock) as consumer:
        monitor = consumer.monitor
        await consumer.pay(250)
        assert await monitor.scan() == scanned(found=1)
        clock.advance(3600)
        assert await monitor.scan() == scanned(dropped=1)
        row = the_payment(db)
        assert (row.status, row.problem) == ("dropped", "not confirmed within 3600 seconds")
        # The ledger has the last word: confirmed late, it is paid.
        assert await consumer.node.runtime.issue_milestone()
        assert await monitor.scan() == scanned(confirmed=1)
        assert account_of_cx(db).paid == 250


async def test_spent_payment_addresses_are_scanned_less_often(db: Database, tmp_path: Path) -> None:
    add_registration(db, "cx-registration", "consumer", None)
    clock = ManualClock(S0)
    async with paying_consumer(db, tmp_path, clock) as consumer:
        monitor = consumer.monitor
        assert await monitor.scan() == scanned()  # the first scan asks about every address
        with db.write() as session:
            session.get(WalletAddress, 1).spent = True  # type: ignore[union-attr]
        # A payment on an old request reaches the address after a payout spent it.
        await consumer.pay(120)
        assert await monitor.scan() == scanned()
        clock.advance(PaymentMonitor.SPENT_ADDRESSES_INTERVAL_MS / 1000 - 1)
        assert await monitor.scan() == scanned()
        clock.advance(1)
        assert await monitor.scan() == scanned(found=1)
        # The consumer's new address is asked about every scan.
        with ThreadPoolExecutor(1) as cpu:
            wallet = GridWallet(
                db, consumer.client, GRID_SEED, clock, cpu, min_weight_magnitude=MWM
            )
            consumer.address = await wallet.payment_address("cx-registration")
        assert await consumer.node.runtime.issue_milestone()  # the remainder to pay from
        await consumer.pay(80)
        assert await monitor.scan() == scanned(found=1, confirmed=1)
    with db.read() as session:
        amounts = sorted(session.scalars(select(IncomingPayment.amount)))
    assert amounts == [80, 120]
    assert (account_of_cx(db).paid, account_of_cx(db).pending) == (120, 80)
