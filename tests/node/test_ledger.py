"""The private network's ledger on SQLite and PostgreSQL: genesis, milestones, balances."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from p2p_energy_protocol.client import IriClient, Transfer
from p2p_energy_protocol.errors import InsufficientBalanceError, IriApiError
from p2p_energy_protocol.pow import attach_to_tangle
from p2p_energy_protocol.transaction import Transaction

from grid_server.node import ledger
from grid_server.node.storage import TangleStore

from .helpers import (
    FUNDED_SEED,
    GENESIS_BALANCE,
    MWM,
    NULL_HASH,
    RECEIVER,
    funded_address,
    zero_value_bundle,
)
from .test_validation import _value_bundle

if TYPE_CHECKING:
    import aiohttp

    from grid_server.node import NodeServer


async def test_value_transfer_is_confirmed_by_a_milestone(
    start_node: Any, database_url: str, session: aiohttp.ClientSession
) -> None:
    node: NodeServer = await start_node(database_url)
    client = IriClient(session, node.url)
    sender = funded_address(0)
    assert (await client.get_balances([sender])).balances == [GENESIS_BALANCE]

    sent = await client.send_transfer(
        FUNDED_SEED, [Transfer(RECEIVER, 250, tag="PAYMENT")], min_weight_magnitude=MWM
    )
    tail = sent[0]
    assert sum(tx.value for tx in sent) == 0
    remainder = next(tx.address for tx in sent if tx.value == GENESIS_BALANCE - 250)
    assert remainder == funded_address(1)
    # Pending: spent already, balances unchanged, not included.
    assert await client.were_addresses_spent_from([sender, RECEIVER]) == [True, False]
    assert (await client.get_balances([sender, RECEIVER])).balances == [GENESIS_BALANCE, 0]
    assert await client.get_inclusion_states([tail.hash]) == [False]
    # The tips' view already counts the pending transfer.
    tips = await client.get_tips()
    pending = await client.get_balances([sender, RECEIVER], tips=tips)
    assert pending.balances == [0, 250]
    assert pending.references == tips

    assert await node.runtime.issue_milestone()
    balances = await client.get_balances([sender, RECEIVER, remainder])
    assert balances.balances == [0, 250, GENESIS_BALANCE - 250]
    info = await client.get_node_info()
    assert balances.milestone_index == info.latest_solid_milestone_index
    assert balances.references == [info.latest_solid_milestone]
    assert await client.get_inclusion_states([tail.hash]) == [True]

    # The remainder pays on; the spent genesis address is skipped.
    second = await client.send_transfer(
        FUNDED_SEED, [Transfer(RECEIVER, 50)], min_weight_magnitude=MWM
    )
    assert any(tx.address == remainder and tx.value < 0 for tx in second)
    assert await node.runtime.issue_milestone()
    final = await client.get_balances([RECEIVER, remainder, funded_address(2)])
    assert final.balances == [300, 0, GENESIS_BALANCE - 300]


async def test_transfer_beyond_the_wallet_is_refused_by_the_client(client: IriClient) -> None:
    with pytest.raises(InsufficientBalanceError, match="1000000 confirmed IOTA, 2000000"):
        await client.send_transfer(
            FUNDED_SEED, [Transfer(RECEIVER, 2 * GENESIS_BALANCE)], min_weight_magnitude=MWM
        )


async def test_zero_value_transfer_needs_no_inputs(client: IriClient) -> None:
    sent = await client.send_transfer(
        "NOBODY".ljust(81, "9"),
        [Transfer(RECEIVER, 0, tag="NOTE", message="HELLO")],
        min_weight_magnitude=MWM,
    )
    assert len(sent) == 1
    assert await client.find_transactions(tags=["NOTE"]) == [sent[0].hash]


async def test_conflicting_spends_from_neighbours_confirm_only_one(
    start_node: Any, database_url: str, session: aiohttp.ClientSession
) -> None:
    node: NodeServer = await start_node(database_url, neighbors=("http://127.0.0.1:9",))
    client = IriClient(session, node.url)
    await node.runtime.issue_milestone()
    info = await client.get_node_info()
    milestone = info.latest_solid_milestone
    first = attach_to_tangle(_value_bundle(100), milestone, milestone, MWM)
    second = attach_to_tangle(_value_bundle(200), milestone, milestone, MWM)
    # A neighbour's transactions are stored even when they conflict: milestones decide.
    peer = "http://127.0.0.1:9"
    await node.runtime.accept(first, peer=peer)
    await node.runtime.accept(second, peer=peer)
    tails = [Transaction.from_trytes(first[0]).hash, Transaction.from_trytes(second[0]).hash]
    with node.runtime.tangle.store.connect() as conn:
        assert not TangleStore.pending_spends_covered(conn)  # consistency walks cones
    assert (await client.check_consistency(tails))[0] is False
    assert (await client.check_consistency(tails[:1]))[0] is True
    pair = await client.get_transactions_to_approve(3)
    assert {pair.trunk, pair.branch} != set(tails)

    assert await node.runtime.issue_milestone()
    states = await client.get_inclusion_states(tails)
    assert sorted(states) == [False, True]
    confirmed = 100 if states[0] else 200
    balances = await client.get_balances([RECEIVER, funded_address(0), funded_address(1)])
    assert balances.balances == [confirmed, 0, GENESIS_BALANCE - confirmed]
    loser = tails[1] if states[0] else tails[0]
    state, message = await client.check_consistency([loser])
    assert state is False
    assert "not consistent" in message
    # Nothing new besides the inconsistent tip: no further milestone is issued.
    assert not await node.runtime.issue_milestone()


async def test_milestones_reference_the_previous_one(node: NodeServer, client: IriClient) -> None:
    await node.runtime.issue_milestone()
    first = await client.get_node_info()
    assert not await node.runtime.issue_milestone()  # nothing new to confirm
    await client.send_trytes(zero_value_bundle(), 3, MWM)
    assert await node.runtime.issue_milestone()
    second = await client.get_node_info()
    assert second.latest_milestone_index == first.latest_milestone_index + 1
    assert await client.get_inclusion_states(
        [first.latest_milestone], [second.latest_milestone]
    ) == [True]
    milestone_hashes = await client.find_transactions(addresses=[node.runtime.coordinator_address])
    assert second.latest_milestone in milestone_hashes


async def test_genesis_cannot_change_for_an_existing_database(
    start_node: Any, sqlite_url: str
) -> None:
    from grid_server.node.storage import StorageError

    node: NodeServer = await start_node(sqlite_url)
    await node.stop()
    with pytest.raises(StorageError, match="other genesis balances"):
        await start_node(sqlite_url, genesis={RECEIVER: 5})


async def test_database_of_another_coordinator_is_refused(start_node: Any, sqlite_url: str) -> None:
    from grid_server.node import CoordinatorConfig
    from grid_server.node.storage import StorageError

    node: NodeServer = await start_node(sqlite_url)
    await node.stop()
    with pytest.raises(StorageError, match="belongs to the network of coordinator"):
        await start_node(sqlite_url, coordinator=CoordinatorConfig(seed="OTHER".ljust(81, "9")))


async def test_balance_tips_must_exist(client: IriClient) -> None:
    with pytest.raises(IriApiError, match="One of the tips is absent"):
        await client.get_balances([RECEIVER], tips=["T" * 81])
    assert (await client.get_balances([RECEIVER], tips=[NULL_HASH])).balances == [0]


async def test_consistency_needs_no_cone_walk_while_the_ledger_covers_every_pending_spend(
    node: NodeServer, client: IriClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = await client.send_transfer(
        FUNDED_SEED, [Transfer(RECEIVER, 250, tag="PAYMENT")], min_weight_magnitude=MWM
    )
    # Attached once more (a reattachment: the same bundle on other tips) it counts once.
    trytes = [tx.to_trytes() for tx in reversed(sent)]
    again = attach_to_tangle(trytes, sent[0].hash, sent[0].hash, MWM)
    await client.store_transactions(again)
    with node.runtime.tangle.store.connect() as conn:
        assert TangleStore.has_pending_spends(conn)
        assert TangleStore.pending_spends_covered(conn)

    def walk(*_: Any) -> None:
        raise AssertionError("a cone was walked")

    monkeypatch.setattr(ledger, "unconfirmed_cone", walk)
    tails = [sent[0].hash, Transaction.from_trytes(again[0]).hash]
    assert (await client.check_consistency(tails))[0] is True
    await client.get_transactions_to_approve(3)
    monkeypatch.undo()  # confirming a milestone walks its cone
    assert await node.runtime.issue_milestone()
    assert (await client.get_balances([RECEIVER])).balances == [250]
