"""Every stored transaction is validated; a bad request stores nothing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.errors import IriApiError
from p2p_energy_protocol.pow import attach_to_tangle, find_nonce, transaction_weight
from p2p_energy_protocol.transaction import Transaction

from .helpers import (
    FUNDED_SEED,
    GENESIS_BALANCE,
    MWM,
    NULL_HASH,
    RECEIVER,
    attach,
    funded_address,
    zero_value_bundle,
)

if TYPE_CHECKING:
    from p2p_energy_protocol.client import IriClient

    from grid_server.node import NodeServer


def _with_weight_below(trytes: str, minimum: int) -> str:
    """Re-do proof of work until the hash has fewer than ``minimum`` trailing zeros."""
    tx = Transaction.from_trytes(trytes)
    for stamp in range(1, 200):
        candidate = tx.replace(attachment_timestamp=tx.attachment_timestamp + stamp)
        if transaction_weight(candidate.hash) < minimum:
            return candidate.to_trytes()
    raise AssertionError("no low-weight variant found")


def _redo_pow(tx: Transaction, mwm: int = MWM) -> str:
    return tx.replace(nonce=find_nonce(tx.to_trytes(), mwm)).to_trytes()


def _value_bundle(
    amount: int = 100, *, key_index: int = 0, balance: int = GENESIS_BALANCE
) -> list[str]:
    builder = BundleBuilder()
    builder.add_transfer(RECEIVER, amount, tag="PAYMENT")
    builder.add_input(funded_address(key_index), balance, key_index, 2)
    builder.add_remainder(funded_address(key_index + 1))
    builder.finalize()
    builder.sign(FUNDED_SEED)
    return builder.to_trytes()


async def test_insufficient_proof_of_work_is_rejected(client: IriClient) -> None:
    attached = attach(zero_value_bundle(), mwm=1)
    weak = _with_weight_below(attached[0], MWM)
    with pytest.raises(IriApiError, match="below this node's minimum weight magnitude 2") as err:
        await client.store_transactions([weak])
    assert err.value.status == 400
    assert await client.find_transactions(addresses=[RECEIVER]) == []


async def test_timestamps_in_the_future_are_rejected(client: IriClient) -> None:
    (trytes,) = attach(zero_value_bundle())
    tx = Transaction.from_trytes(trytes)
    in_three_hours = int(time.time()) + 3 * 3600
    future = _redo_pow(tx.replace(timestamp=in_three_hours, bundle=tx.bundle))
    with pytest.raises(IriApiError, match="in the future"):
        await client.store_transactions([future])
    late_attachment = _redo_pow(tx.replace(attachment_timestamp=in_three_hours * 1000))
    with pytest.raises(IriApiError, match="in the future"):
        await client.store_transactions([late_attachment])
    outside = _redo_pow(tx.replace(attachment_timestamp_upper_bound=tx.attachment_timestamp - 1))
    with pytest.raises(IriApiError, match="outside its bounds"):
        await client.store_transactions([outside])
    assert await client.find_transactions(addresses=[RECEIVER]) == []


async def test_incomplete_bundle_is_rejected(client: IriClient) -> None:
    attached = attach(zero_value_bundle(count=3))
    with pytest.raises(IriApiError, match="incomplete"):
        await client.store_transactions(attached[1:])
    with pytest.raises(IriApiError, match="incomplete"):
        await client.store_transactions([attached[0], attached[2]])
    assert await client.find_transactions(addresses=[RECEIVER]) == []


async def test_broken_trunk_chain_is_incomplete(client: IriClient) -> None:
    attached = attach(zero_value_bundle(count=2))
    head = Transaction.from_trytes(attached[1])
    tail = Transaction.from_trytes(attached[0])
    rewired = _redo_pow(tail.replace(trunk_transaction="A" * 81))
    with pytest.raises(IriApiError, match="incomplete"):
        await client.store_transactions([rewired, head.to_trytes()])


async def test_tampered_bundle_hash_is_rejected(client: IriClient) -> None:
    (trytes,) = attach(zero_value_bundle())
    tx = Transaction.from_trytes(trytes)
    tampered = _redo_pow(tx.replace(bundle="A" * 81))
    with pytest.raises(IriApiError, match="is invalid: the essences hash to"):
        await client.store_transactions([tampered])


async def test_one_bad_transaction_rejects_the_whole_request(client: IriClient) -> None:
    good = attach(zero_value_bundle(message="good"))
    bad = Transaction.from_trytes(attach(zero_value_bundle(message="bad"))[0])
    with pytest.raises(IriApiError):
        await client.store_transactions([*good, _redo_pow(bad.replace(bundle="B" * 81))])
    assert await client.find_transactions(addresses=[RECEIVER]) == []
    await client.store_transactions(good)
    assert len(await client.find_transactions(addresses=[RECEIVER])) == 1


async def test_malformed_trytes_name_their_position(client: IriClient) -> None:
    good = attach(zero_value_bundle())
    broken = good[0][:2268] + "Z" * 27 + good[0][2295:]  # value uses more than 33 trits
    with pytest.raises(IriApiError, match=r"trytes\[1\] is not a valid transaction"):
        await client.store_transactions([good[0], broken])


async def test_a_new_tail_may_complete_a_stored_bundle(client: IriClient) -> None:
    attached = attach(zero_value_bundle(count=2))
    await client.store_transactions(attached)
    stored_tail = Transaction.from_trytes(attached[0])
    # The message of a tail is not part of the bundle essence.
    other_tail = stored_tail.replace(signature_message_fragment="OTHER".ljust(2187, "9"))
    new_tail = _redo_pow(other_tail)
    await client.store_transactions([new_tail])
    found = await client.find_transactions(bundles=[stored_tail.bundle])
    assert len(found) == 3


async def test_value_bundle_with_a_bad_signature_is_rejected(client: IriClient) -> None:
    trytes = _value_bundle()
    transactions = [Transaction.from_trytes(t) for t in trytes]
    # trytes are last index first; the input is index 1, its signature index 1 and 2.
    position = next(i for i, tx in enumerate(transactions) if tx.value < 0)
    fragment = transactions[position].signature_message_fragment
    # A tryte it did not have (the bundle, and so the signature, change with the time).
    forged = transactions[position].replace(
        signature_message_fragment=("B" if fragment[0] == "A" else "A") + fragment[1:]
    )
    trytes[position] = forged.to_trytes()
    with pytest.raises(IriApiError, match="does not verify"):
        await client.store_transactions(attach_to_tangle(trytes, NULL_HASH, NULL_HASH, MWM))
    assert await client.were_addresses_spent_from([funded_address(0)]) == [False]


async def test_spending_beyond_the_balance_is_rejected(client: IriClient) -> None:
    trytes = _value_bundle(GENESIS_BALANCE + 1, balance=GENESIS_BALANCE + 5)
    with pytest.raises(IriApiError, match="holds 1000000 confirmed"):
        await client.store_transactions(attach_to_tangle(trytes, NULL_HASH, NULL_HASH, MWM))
    assert await client.find_transactions(addresses=[RECEIVER]) == []


async def test_conflicting_pending_spend_is_rejected(node: NodeServer, client: IriClient) -> None:
    first = attach_to_tangle(_value_bundle(100), NULL_HASH, NULL_HASH, MWM)
    await client.store_transactions(first)
    assert await client.were_addresses_spent_from([funded_address(0)]) == [True]
    second = attach_to_tangle(_value_bundle(200), NULL_HASH, NULL_HASH, MWM)
    with pytest.raises(IriApiError, match="conflicting spend"):
        await client.store_transactions(second)
    # Reattaching the same bundle is not a conflict.
    first_tail = Transaction.from_trytes(first[0]).hash
    again = attach_to_tangle(list(reversed(first)), first_tail, first_tail, MWM)
    await client.store_transactions(again)
    assert await node.runtime.issue_milestone()
    balances = await client.get_balances([funded_address(0), RECEIVER, funded_address(1)])
    assert balances.balances == [0, 100, GENESIS_BALANCE - 100]
