"""A three-node network: gossip, milestones from one coordinator, catching up after a restart."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from p2p_energy_protocol.client import IriClient, Transfer

from grid_server.node import CoordinatorConfig

from .helpers import FUNDED_SEED, MWM, RECEIVER, funded_address, wait_for, zero_value_bundle

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp

    from grid_server.node import NodeServer

pytestmark = pytest.mark.slow


async def _state(client: IriClient, hashes: list[str]) -> tuple[Any, ...]:
    info = await client.get_node_info()
    balances = await client.get_balances([RECEIVER, funded_address(0), funded_address(1)])
    return (
        info.latest_solid_milestone_index,
        info.latest_solid_milestone,
        tuple(balances.balances),
        tuple(await client.get_trytes(hashes)),
        tuple(await client.get_inclusion_states(hashes)),
    )


async def test_three_nodes_stay_consistent_through_a_restart(
    start_node: Any, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    urls = {name: f"sqlite:///{tmp_path / name}.sqlite3" for name in "abc"}
    a: NodeServer = await start_node(urls["a"])
    follower = CoordinatorConfig(address=a.runtime.coordinator_address)
    b: NodeServer = await start_node(urls["b"], coordinator=follower)
    c: NodeServer = await start_node(urls["c"], coordinator=follower)
    assert not b.runtime.issues_milestones
    clients = {
        name: IriClient(session, node.url) for name, node in zip("abc", (a, b, c), strict=False)
    }
    # A line a - b - c: what c accepts reaches a only through b.
    assert await clients["a"].add_neighbors([b.url]) == 1
    assert await clients["b"].add_neighbors([a.url, c.url]) == 2
    assert await clients["c"].add_neighbors([b.url]) == 1

    sent = await clients["c"].send_trytes(zero_value_bundle(message="from c", count=2), 3, MWM)
    hashes = [tx.hash for tx in sent]

    async def a_has_it() -> bool:
        return "9" * 2673 not in await clients["a"].get_trytes(hashes)

    await wait_for(a_has_it)
    payment = await clients["b"].send_transfer(
        FUNDED_SEED, [Transfer(RECEIVER, 7)], min_weight_magnitude=MWM
    )
    hashes += [tx.hash for tx in payment]
    await wait_for(a_has_it)
    assert await a.runtime.issue_milestone()

    async def all_agree() -> bool:
        states = [await _state(client, hashes) for client in clients.values()]
        return states[0] == states[1] == states[2] and all(states[0][4])

    await wait_for(all_agree)
    assert (await _state(clients["c"], hashes))[2] == (7, 0, 999_993)

    # b goes down; the others carry on without it.
    b_port = int(b.url.rsplit(":", 1)[1])
    await b.stop()
    while_down = await clients["a"].send_trytes(zero_value_bundle(message="while down"), 3, MWM)
    later = await clients["a"].send_transfer(
        FUNDED_SEED, [Transfer(RECEIVER, 3)], min_weight_magnitude=MWM
    )
    assert await a.runtime.issue_milestone()
    hashes += [tx.hash for tx in (*while_down, *later)]

    b = await start_node(urls["b"], coordinator=follower, port=b_port)
    clients["b"] = IriClient(session, b.url)
    await wait_for(all_agree, timeout=30)
    for client in clients.values():
        assert (await _state(client, hashes))[2] == (10, 0, 0)
        assert sorted(await client.get_tips()) == sorted(await clients["a"].get_tips())
    neighbors = {n["address"]: n for n in await clients["b"].get_neighbors()}
    assert neighbors[a.url]["numberOfNewTransactions"] > 0


async def test_a_follower_rejects_milestones_of_another_coordinator(
    start_node: Any, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    a: NodeServer = await start_node(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    stranger = CoordinatorConfig(address="STRANGER".ljust(81, "9"))
    b: NodeServer = await start_node(f"sqlite:///{tmp_path / 'b.sqlite3'}", coordinator=stranger)
    client_a, client_b = IriClient(session, a.url), IriClient(session, b.url)
    # Neighbours list each other: a answers only the neighbours it knows.
    await client_a.add_neighbors([b.url])
    await client_b.add_neighbors([a.url])
    await a.runtime.issue_milestone()
    milestone = (await client_a.get_node_info()).latest_milestone

    async def b_has_it() -> bool:
        return (await client_b.get_trytes([milestone]))[0] != "9" * 2673

    await wait_for(b_has_it)
    info = await client_b.get_node_info()
    assert info.latest_milestone_index == 0
    assert info.coordinator_address == stranger.address
