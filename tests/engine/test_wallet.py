"""A producer's or consumer's wallet, without Home Assistant: sends take the bills' path
(store before send), refusals name their reason, a restart never signs twice."""

from __future__ import annotations

from dataclasses import replace

import pytest
from p2p_energy_protocol.household import PaymentRefusedError, Producer, WalletMember
from p2p_energy_protocol.signing import generate_address

from .households import Home, config, seed

PRODUCER = config("producer", "inverter", price=50.0)
SOURCE = config("source", "pv")
TARGET = generate_address(seed("SOMEONE9ELSE"), 0, 2)


async def funded(home: Home, amount: int) -> Producer:
    """Open the home and put ``amount`` IOTA on the producer's payment address."""
    await home.open(PRODUCER, SOURCE)
    producer = home["producer-inverter"]
    assert isinstance(producer, Producer)
    assert producer.payment_address is not None
    home.network.balances_by_address[producer.payment_address] = amount
    await home.sync()
    return producer


async def refusal(wallet: WalletMember, address: str, amount: int) -> tuple[str, dict[str, str]]:
    with pytest.raises(PaymentRefusedError) as refused:
        await wallet.send(address, amount)
    return refused.value.reason, refused.value.placeholders


async def test_send_moves_change_to_a_fresh_payment_address() -> None:
    home = Home()
    producer = await funded(home, 22)
    assert producer.wallet_balance == producer.payments_received == 22
    assert producer.spare_balance == 22
    outcome = await producer.send(TARGET, 15)
    assert not outcome.confirmed
    assert outcome.payment.request_root is None
    (transfer,) = home.network.transfers
    assert producer.payment_address == transfer.remainder
    await home.sync()
    assert producer.wallet_balance == 7
    assert [sent.amount for sent in producer.state.sent] == [15]
    assert producer.state.payments == []
    assert producer.diagnostics()["sent"] == 1


async def test_refusals() -> None:
    home = Home()
    producer = await funded(home, 22)
    assert await refusal(producer, "NOT9AN9ADDRESS", 1) == (
        "invalid_address",
        {"address": "NOT9AN9ADDRESS"},
    )
    assert (await refusal(producer, TARGET, 0))[0] == "invalid_amount"
    assert await refusal(producer, TARGET, 23) == (
        "amount_above_balance",
        {"amount": "23", "balance": "22"},
    )
    assert producer.payment_address is not None
    assert (await refusal(producer, producer.payment_address, 1))[0] == "own_address"
    home.network.confirm_transfers = False
    await producer.send(TARGET, 5)
    assert (await refusal(producer, TARGET, 5))[0] == "transfer_pending"
    assert len(home.network.transfers) == 1


async def test_a_wallet_without_a_seed_refuses() -> None:
    home = Home()
    await home.open(replace(PRODUCER, wallet_seed=None, payment_id="REF"))
    producer = home["producer-inverter"]
    assert isinstance(producer, Producer)
    assert not producer.has_wallet
    assert await producer.read_balance() is None
    assert producer.spare_balance is None
    assert (await refusal(producer, TARGET, 1))[0] == "no_wallet"


async def test_restart_reattaches_the_recorded_send() -> None:
    """Recorded, then the process stops before the node saw it: the restarted household
    attaches the same bundle; nothing is signed anew."""
    home = Home()
    producer = await funded(home, 22)
    home.network.confirm_transfers = False
    home.network.lost_answer = home.network.p.errors.NodeUnavailableError("reset")
    with pytest.raises(Exception, match="reset"):
        await producer.send(TARGET, 15)
    home.network.lost_answer = None

    await home.open(PRODUCER, SOURCE)  # the restart: same store
    producer = home["producer-inverter"]
    assert isinstance(producer, Producer)
    pending = producer.state.pending_payment
    assert pending is not None
    assert pending.request_root is None
    assert (await refusal(producer, TARGET, 15))[0] == "transfer_pending"
    home.network.confirm(pending.bundle)
    await home.sync()
    assert producer.state.pending_payment is None
    assert len(home.network.transfers) == 1
    assert home.network.balances_by_address[TARGET] == 15
