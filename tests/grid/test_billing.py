"""Payment requests on the consumers' return channels, and what counts as paid."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from p2p_energy_protocol.payloads import PaymentRequest, parse_grid_message
from p2p_energy_protocol.signing import generate_address
from sqlalchemy import select

from grid_server.grid.billing import Account, PaymentRequests, account, accounts, accounts_total
from grid_server.grid.config import GridConfig
from grid_server.grid.db.models import Bill, IncomingPayment, OutboxMessage, WalletAddress
from grid_server.grid.return_channels import ReturnChannels
from grid_server.grid.settlement.service import SettlementService
from grid_server.grid.wallet import GridWallet

from .dbhelpers import add_reading, add_registration
from .fakes import FakeChannels, ManualClock

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database

SLOT = 900_000
S0 = 1_888_888 * SLOT
SEED = "SEED9" + "A" * 76
CONFIG = replace(GridConfig(), import_price=100.0, export_price=20.0, grid_cut_percent=10.0)


class NoNode:
    """The wallet must not need the node to hand out payment addresses."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the node was asked for {name}")


def payment_requests(db: Database) -> list[PaymentRequest]:
    with db.read() as session:
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.kind == "payment-request")
            .order_by(OutboxMessage.id)
        ).all()
    requests = [parse_grid_message(json.loads(row.message_json)) for row in rows]
    assert all(isinstance(r, PaymentRequest) for r in requests)
    return requests  # type: ignore[return-value]


async def test_requests_follow_the_bills(db: Database) -> None:
    clock = ManualClock(S0 + 2 * SLOT)
    fake = FakeChannels()
    with ThreadPoolExecutor(1) as cpu:
        channels = ReturnChannels(db, fake, cpu, clock)
        add_registration(db, "consumer-x", "consumer", None)
        prepared = await channels.prepare()
        with db.write() as session:
            channels.store(session, "consumer-x", prepared)
        wallet = GridWallet(db, NoNode(), SEED, clock, cpu)  # type: ignore[arg-type]
        requests = PaymentRequests(db, channels, wallet, clock)
        assert await requests.publish_due() == 0

        add_reading(db, "consumer-x", S0 + SLOT, 1.5)
        add_reading(db, "consumer-x", S0 + 2 * SLOT, 0.5)
        await SettlementService(db, CONFIG, ManualClock(S0 + 4 * SLOT), "t").settle_due()
        assert await requests.publish_due() == 1
        assert await requests.publish_due() == 0
        address = generate_address(SEED, 1, 2)
        # 1.5 kWh + 0.5 kWh imported at 100 IOTA per kWh.
        assert payment_requests(db) == [PaymentRequest(200, 2.0, address)]
        with db.read() as session:
            assert all(b.requested_at is not None for b in session.scalars(select(Bill)))
            wallet_rows = session.scalars(select(WalletAddress).order_by(WalletAddress.key_index))
            assert [(w.key_index, w.purpose, w.registration_id) for w in wallet_rows] == [
                (0, "treasury", None),
                (1, "consumer", "consumer-x"),
            ]

        # A pending payment does not lower what is owed: the next request asks for
        # everything and says how much is on its way.
        with db.write() as session:
            session.add(
                IncomingPayment(
                    registration_id="consumer-x",
                    address=address,
                    bundle_hash="B" * 81,
                    current_index=0,
                    transaction_hashes_json='["' + "T" * 81 + '"]',
                    amount=150,
                    status="pending",
                    first_seen_at=clock(),
                )
            )
        add_reading(db, "consumer-x", S0 + 5 * SLOT, 1.0)
        await SettlementService(db, CONFIG, ManualClock(S0 + 7 * SLOT), "t").settle_due()
        assert await requests.publish_due() == 1
        assert payment_requests(db)[-1] == PaymentRequest(300, 1.0, address, pending=150)
        assert payment_requests(db)[-1].amount_due == 150
        # The same address is handed out while it is unspent.
        assert await wallet.payment_address("consumer-x") == address
        with db.write() as session:
            session.execute(
                WalletAddress.__table__.update()
                .where(WalletAddress.key_index == 1)
                .values(spent=True)
            )
        assert await wallet.payment_address("consumer-x") == generate_address(SEED, 2, 2)


async def test_owed_counts_only_confirmed_payments(db: Database) -> None:
    """One definition of "owed", for one consumer, many and all of them."""
    add_registration(db, "consumer-x", "consumer", None)
    add_registration(db, "consumer-y", "consumer", None)
    add_registration(db, "producer-z", "producer", None)
    add_reading(db, "consumer-x", S0 + SLOT, 3.0)
    add_reading(db, "consumer-y", S0 + SLOT, 1.0)
    await SettlementService(db, CONFIG, ManualClock(S0 + 3 * SLOT), "t").settle_due()
    now = S0 + 3 * SLOT
    with db.write() as session:
        for index, (who, amount, status) in enumerate(
            [
                ("consumer-x", 100, "confirmed"),
                ("consumer-x", 50, "pending"),
                ("consumer-x", 70, "dropped"),
                ("consumer-y", 130, "confirmed"),  # 30 more than billed
            ]
        ):
            session.add(
                IncomingPayment(
                    registration_id=who,
                    address="A" * 81,
                    bundle_hash="B" * 81,
                    current_index=index,
                    transaction_hashes_json="[]",
                    amount=amount,
                    status=status,
                    first_seen_at=now,
                )
            )
    with db.read() as session:
        # consumer-x: 300 billed, 100 confirmed; pending and dropped payments pay nothing.
        assert account(session, "consumer-x") == Account(
            billed=300, paid=100, pending=50, owed=200, dropped=70
        )
        assert account(session, "consumer-y") == Account(billed=100, paid=130, owed=0)
        assert accounts(session, ["consumer-x", "nobody", "producer-z"]) == {
            "consumer-x": Account(billed=300, paid=100, pending=50, owed=200, dropped=70),
            "nobody": Account(),
            "producer-z": Account(),
        }
        # consumer-y's overpayment does not hide what consumer-x owes.
        assert accounts_total(session) == Account(
            billed=400, paid=230, pending=50, owed=200, dropped=70
        )


async def test_concurrent_allocations_never_share_an_address(db: Database) -> None:
    import asyncio

    for name in ("c1", "c2", "c3"):
        add_registration(db, name, "consumer", None)
    with ThreadPoolExecutor(1) as cpu:
        wallet = GridWallet(db, NoNode(), SEED, ManualClock(S0), cpu)  # type: ignore[arg-type]
        addresses = await asyncio.gather(
            wallet.payment_address("c1"),
            wallet._allocate("treasury", None),
            wallet.payment_address("c2"),
            wallet.payment_address("c1"),
            wallet._allocate("treasury", None),
            wallet.payment_address("c3"),
        )
    assert addresses[0] == addresses[3]
    assert len(set(addresses)) == 5
    with db.read() as session:
        rows = session.execute(
            select(WalletAddress.key_index, WalletAddress.address, WalletAddress.purpose)
        ).all()
    assert sorted(index for index, _, _ in rows) == list(range(6))
    assert {address for _, address, _ in rows} == {generate_address(SEED, i, 2) for i in range(6)}


async def test_wallets_of_two_grid_processes_never_share_an_address(db: Database) -> None:
    """Each wallet's lock covers one process; the primary key must cover both."""
    import asyncio

    names = [f"c{n}" for n in range(8)]
    for name in names:
        add_registration(db, name, "consumer", None)
    with ThreadPoolExecutor(2) as cpu:
        first, second = (
            GridWallet(db, NoNode(), SEED, ManualClock(S0), cpu)  # type: ignore[arg-type]
            for _ in range(2)
        )
        treasuries = await asyncio.gather(first.treasury_address(), second.treasury_address())
        addresses = await asyncio.gather(
            *(wallet.payment_address(name) for name in names for wallet in (first, second)),
            first._allocate("treasury", None),
            second._allocate("treasury", None),
        )
    assert treasuries == [generate_address(SEED, 0, 2)] * 2
    per_consumer = addresses[: 2 * len(names)]
    assert per_consumer[0::2] == per_consumer[1::2]  # both processes see one address each
    assert len(set(addresses)) == len(names) + 2
    with db.read() as session:
        rows = session.execute(select(WalletAddress.key_index, WalletAddress.address)).all()
    assert sorted(index for index, _ in rows) == list(range(len(names) + 3))
    assert {address for _, address in rows} == {
        generate_address(SEED, i, 2) for i in range(len(names) + 3)
    }


async def test_payment_addresses_of_many_consumers_equal_one_by_one(db: Database) -> None:
    for name in ("c1", "c2", "c3"):
        add_registration(db, name, "consumer", None)
    with ThreadPoolExecutor(1) as cpu:
        wallet = GridWallet(db, NoNode(), SEED, ManualClock(S0), cpu)  # type: ignore[arg-type]
        first = await wallet.payment_address("c2")
        # c1 and c3 get new addresses, c2 keeps its open one, repeats get the same.
        batch = await wallet.payment_addresses(["c1", "c2", "c3", "c1"])
        assert batch[1] == first
        assert batch[0] == batch[3]
        assert len(set(batch)) == 3
        assert batch == [await wallet.payment_address(name) for name in ("c1", "c2", "c3", "c1")]
        # Once c2's address was spent, the newest unspent one is handed out.
        with db.write() as session:
            session.execute(
                WalletAddress.__table__.update()
                .where(WalletAddress.address == first)
                .values(spent=True)
            )
        renewed = await wallet.payment_addresses(["c2"])
        assert renewed[0] not in batch
        assert await wallet.payment_addresses(["c2", "c3"]) == [renewed[0], batch[2]]
        assert await wallet.payment_addresses([]) == []


async def test_batched_allocations_of_two_grid_processes_never_share_an_address(
    db: Database,
) -> None:
    """Two wallets on one database allocate overlapping consumers' addresses in batches."""
    import asyncio

    names = [f"c{n}" for n in range(12)]
    for name in names:
        add_registration(db, name, "consumer", None)
    with ThreadPoolExecutor(2) as cpu:
        first, second = (
            GridWallet(db, NoNode(), SEED, ManualClock(S0), cpu)  # type: ignore[arg-type]
            for _ in range(2)
        )
        one, other, single = await asyncio.gather(
            first.payment_addresses(names[:8]),
            second.payment_addresses(names[4:]),
            first.payment_address(names[6]),
        )
    by_name = dict(zip(names[:8], one, strict=True))
    for name, address in zip(names[4:], other, strict=True):
        assert by_name.setdefault(name, address) == address  # one address per consumer
    assert by_name[names[6]] == single
    assert len(set(by_name.values())) == len(names)
    with db.read() as session:
        rows = session.execute(select(WalletAddress.key_index, WalletAddress.address)).all()
    assert sorted(index for index, _ in rows) == list(range(len(names) + 1))  # and the treasury
    assert {address for _, address in rows} == {
        generate_address(SEED, i, 2) for i in range(len(names) + 1)
    }
