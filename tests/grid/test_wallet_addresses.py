"""The wallet's pool of payment addresses derived in advance, and recording in batches."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from p2p_energy_protocol.signing import generate_address
from sqlalchemy import select

from grid_server.grid.db.models import WalletAddress
from grid_server.grid.wallet import RESERVED, GridWallet, _assign_reserved

from .dbhelpers import add_registration
from .fakes import ManualClock

if TYPE_CHECKING:
    from collections.abc import Callable

    from grid_server.grid.db.engine import Database

SEED = "SEED9" + "B" * 76
S0 = 1_700_000_000_000


class NoNode:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the node was asked for {name}")


class NoDerivation(Executor):
    """A CPU executor that fails: the slot must only pick addresses from the pool."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        raise AssertionError("an address was derived in the slot")


def wallet(db: Database, cpu: Executor, pool: int | None = None) -> GridWallet:
    return GridWallet(db, NoNode(), SEED, ManualClock(S0), cpu, address_pool=pool)  # type: ignore[arg-type]


def rows(db: Database) -> list[tuple[int, str, str, str | None]]:
    with db.read() as session:
        return [
            (row.key_index, row.address, row.purpose, row.registration_id)
            for row in session.scalars(select(WalletAddress).order_by(WalletAddress.key_index))
        ]


def assert_each_index_once_with_its_own_address(db: Database) -> None:
    recorded = rows(db)
    assert [index for index, *_ in recorded] == list(range(len(recorded)))
    assert [address for _, address, *_ in recorded] == [
        generate_address(SEED, index, 2) for index in range(len(recorded))
    ]


async def test_a_refill_reserves_indexes_and_the_slot_only_picks_from_the_pool(
    db: Database,
) -> None:
    names = [f"c{n}" for n in range(6)]
    for name in names:
        add_registration(db, name, "consumer", None)
    with ThreadPoolExecutor(1) as cpu:
        first = await wallet(db, cpu, pool=4).payment_addresses(names[:2])  # no pool yet
        assert await wallet(db, cpu, pool=4).refill_address_pool() == 4
        assert await wallet(db, cpu, pool=4).refill_address_pool() == 0  # full
    assert [row[2:] for row in rows(db)] == [
        ("treasury", None),
        ("consumer", "c0"),
        ("consumer", "c1"),
        *[(RESERVED, None)] * 4,
    ]
    assert_each_index_once_with_its_own_address(db)

    picked = await wallet(db, NoDerivation()).payment_addresses([*names[2:], names[0]])
    assert picked == [generate_address(SEED, index, 2) for index in (3, 4, 5, 6)] + [first[0]]
    assert [row[2:] for row in rows(db)][3:] == [("consumer", name) for name in names[2:]]
    # By default the pool is sized to the active consumers (producers need none).
    add_registration(db, "producer", "producer", None)
    with ThreadPoolExecutor(1) as cpu:
        assert await wallet(db, cpu).refill_address_pool() == len(names)
        assert await wallet(db, cpu, pool=0).refill_address_pool() == 0
    assert_each_index_once_with_its_own_address(db)


def crash_after_assigning(db: Database, names: list[str]) -> None:
    with db.write() as session:
        assert len(_assign_reserved(session, names, S0)) == 3
        raise RuntimeError("crash")


async def test_a_crash_between_reserving_and_using_never_reuses_an_index(db: Database) -> None:
    names = [f"c{n}" for n in range(4)]
    for name in names:
        add_registration(db, name, "consumer", None)
    with ThreadPoolExecutor(1) as cpu:
        await wallet(db, cpu).treasury_address()
        assert await wallet(db, cpu, pool=3).refill_address_pool() == 3
        # The grid dies inside the write that hands out pool addresses: nothing of it stays.
        with pytest.raises(RuntimeError, match="crash"):
            crash_after_assigning(db, names)
        assert [row[2] for row in rows(db)] == ["treasury", *[RESERVED] * 3]
        # A restarted grid with no pool: a payout's remainder address and the consumers
        # get indexes no one had; the reserved ones go to consumers, each once.
        restarted = wallet(db, cpu, pool=0)
        remainder = await restarted._allocate("treasury", None)
        assert remainder == generate_address(SEED, 4, 2)
        addresses = await restarted.payment_addresses(names)
    assert addresses == [generate_address(SEED, index, 2) for index in (1, 2, 3, 5)]
    assert_each_index_once_with_its_own_address(db)


async def test_two_grid_processes_taking_from_one_pool_never_share_an_address(
    db: Database,
) -> None:
    names = [f"c{n}" for n in range(12)]
    for name in names:
        add_registration(db, name, "consumer", None)
    with ThreadPoolExecutor(2) as cpu:
        first, second = wallet(db, cpu, pool=6), wallet(db, cpu, pool=6)
        await first.treasury_address()
        await first.refill_address_pool()
        one, other, _, _ = await asyncio.gather(
            first.payment_addresses(names[:8]),
            second.payment_addresses(names[4:]),
            first.refill_address_pool(),
            second.refill_address_pool(),
        )
    by_name = dict(zip(names[:8], one, strict=True))
    for name, address in zip(names[4:], other, strict=True):
        assert by_name.setdefault(name, address) == address  # one address per consumer
    assert len(set(by_name.values())) == len(names)
    recorded = rows(db)
    assert {address: owner for _, address, purpose, owner in recorded if purpose == "consumer"} == {
        address: name for name, address in by_name.items()
    }
    assert_each_index_once_with_its_own_address(db)
