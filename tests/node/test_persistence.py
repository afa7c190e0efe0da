"""Restarts serve everything stored before; a failure mid-request stores nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from p2p_energy_protocol.client import IriClient, Transfer
from p2p_energy_protocol.transaction import Transaction

from grid_server.node.storage import TangleStore

from .helpers import FUNDED_SEED, GENESIS_BALANCE, MWM, RECEIVER, funded_address, zero_value_bundle

if TYPE_CHECKING:
    import aiohttp

    from grid_server.node import NodeServer


async def test_restart_serves_everything_stored_before(
    start_node: Any, database_url: str, session: aiohttp.ClientSession
) -> None:
    node: NodeServer = await start_node(database_url)
    client = IriClient(session, node.url)
    messages = await client.send_trytes(zero_value_bundle(message="kept", count=2), 3, MWM)
    payment = await client.send_transfer(
        FUNDED_SEED, [Transfer(RECEIVER, 42)], min_weight_magnitude=MWM
    )
    assert await node.runtime.issue_milestone()
    pending = await client.send_trytes(zero_value_bundle(message="pending"), 3, MWM)
    before = await client.get_node_info()
    tips_before = sorted(await client.get_tips())
    hashes = [tx.hash for tx in [*messages, *payment, *pending]]
    trytes_before = await client.get_trytes(hashes)
    await node.stop()

    node = await start_node(database_url)
    client = IriClient(session, node.url)
    # Its first round at start carries on with the next key of the chain and
    # confirms what was pending; everything stored before is served unchanged.
    after = await client.get_node_info()
    assert after.latest_solid_milestone_index == before.latest_solid_milestone_index + 1
    assert after.latest_milestone != before.latest_milestone
    assert await client.get_trytes(hashes) == trytes_before
    assert await client.get_inclusion_states([pending[0].hash]) == [True]
    assert sorted(await client.get_tips()) == [after.latest_milestone]
    assert set(tips_before) == {pending[0].hash}
    balances = await client.get_balances([RECEIVER, funded_address(0), funded_address(1)])
    assert balances.balances == [42, 0, GENESIS_BALANCE - 42]
    assert await client.were_addresses_spent_from([funded_address(0)]) == [True]
    assert (await client.get_inclusion_states([payment[0].hash]))[0]
    assert not await node.runtime.issue_milestone()  # nothing new since


async def test_failure_mid_request_leaves_no_partial_bundle(
    start_node: Any,
    database_url: str,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node: NodeServer = await start_node(database_url)
    client = IriClient(session, node.url)
    trytes = zero_value_bundle(message="doomed", count=3)
    tips = await client.get_transactions_to_approve(3)
    attached = await client.attach_to_tangle(tips.trunk, tips.branch, MWM, trytes)

    calls = []

    def fail_after_insert(*args: Any, **kwargs: Any) -> None:
        # The rows are inserted by now; the failure must roll them back.
        calls.append(args)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(TangleStore, "add_spent", staticmethod(fail_after_insert))
    from p2p_energy_protocol.errors import IriApiError

    with pytest.raises(IriApiError) as failure:
        await client.store_transactions(attached)
    assert failure.value.status == 500
    assert "disk on fire" in failure.value.message
    assert calls
    monkeypatch.undo()
    assert await client.find_transactions(addresses=[RECEIVER]) == []
    hashes = [Transaction.from_trytes(item).hash for item in attached]
    assert await client.get_trytes(hashes) == ["9" * 2673] * 3
    await client.store_transactions(attached)
    assert len(await client.find_transactions(addresses=[RECEIVER])) == 3
