"""Which tips new transactions and milestones approve when many wait side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING

from p2p_energy_protocol.transaction import Transaction

from grid_server.node import tangle

from .helpers import RECEIVER, attach, zero_value_bundle
from .test_validation import _value_bundle

if TYPE_CHECKING:
    import pytest
    from p2p_energy_protocol.client import IriClient

    from grid_server.node import NodeServer


async def burst(client: IriClient, count: int) -> list[str]:
    """``count`` tips side by side, each approving only the latest milestone (a slot's
    readings attached at once: every household was given the same tips), oldest first."""
    entry = (await client.get_node_info()).latest_milestone
    tails = []
    for number in range(count):
        attached = attach(zero_value_bundle(message=f"burst{number}"), entry, entry)
        await client.store_transactions(attached)
        tails.append(Transaction.from_trytes(attached[0]).hash)
    assert set(tails) <= set(await client.get_tips())
    return tails


async def test_a_milestone_confirms_the_newest_tips_and_the_oldest(
    node: NodeServer, client: IriClient
) -> None:
    tails = await burst(client, 40)
    assert await node.runtime.issue_milestone()
    references = node.config.coordinator.max_references - 1
    newest, oldest = (references + 1) // 2, references // 2
    states = await client.get_inclusion_states(tails)
    # What was just attached confirms at once; the backlog is worked off from its start.
    assert states == [True] * oldest + [False] * (40 - references) + [True] * newest


async def test_new_transactions_approve_a_new_tip_and_an_old_one(
    node: NodeServer, client: IriClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tangle, "TIP_WINDOW", 4)
    tails = await burst(client, 20)
    for _ in range(6):
        pair = await client.get_transactions_to_approve(3)
        assert pair.trunk in tails[-4:]
        assert pair.branch in tails[:4]
    # With a reference, the trunk approves it and the branch is still an old tip.
    referenced = await client.get_transactions_to_approve(3, reference=tails[10])
    assert referenced.trunk == tails[10]
    assert referenced.branch in tails[:4]


async def test_a_milestone_confirms_pending_payments_wherever_they_lie(
    node: NodeServer, client: IriClient
) -> None:
    before = await burst(client, 20)
    entry = (await client.get_node_info()).latest_milestone
    payment = attach(_value_bundle(100), entry, entry)
    await client.store_transactions(payment)
    after = await burst(client, 20)
    assert await node.runtime.issue_milestone()
    # Neither among the oldest tips nor the newest, the payment confirms all the same.
    tail = Transaction.from_trytes(payment[0]).hash
    assert await client.get_inclusion_states([tail]) == [True]
    assert (await client.get_balances([RECEIVER])).balances == [100]
    references = node.config.coordinator.max_references - 1
    states = await client.get_inclusion_states([*before, *after])
    assert sum(states) == references - 1  # the others went to the oldest and the newest
    assert states[0]
    assert states[-1]
