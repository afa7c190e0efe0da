"""pay_bill never pays a bill twice: a payment is recorded before it is broadcast.

An ambiguous failure (the node took the bundle but its answer was lost, Home
Assistant stopped half-way) leaves the payment pending; paying again attaches
the same signed bundle instead of signing a new transfer, until the Tangle
confirms it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from unittest.mock import AsyncMock

import pytest
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from custom_components.p2p_energy.diagnostics import async_get_config_entry_diagnostics
from custom_components.p2p_energy.protocol.errors import (
    IriApiError,
    NodeUnavailableError,
    ProofOfWorkError,
)
from custom_components.p2p_energy.protocol.household import Consumer

from .conftest import CONSUMER_ID, state
from .test_services import PAY_TO, call, poll, request

if TYPE_CHECKING:
    from freezegun.api import FrozenDateTimeFactory
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry

    from tests.engine.fake_network import FakeNetwork

BUNDLE_A = "A" * 81
BUNDLE_B = "B" * 81


def consumer_of(entry: MockConfigEntry) -> Consumer:
    """The consumer participant of the loaded entry."""
    consumer = entry.runtime_data.participants[CONSUMER_ID]
    assert isinstance(consumer, Consumer)
    return consumer


async def billed(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    entry: MockConfigEntry,
    network: FakeNetwork,
    owed: int = 345,
) -> Consumer:
    """A funded wallet and a payment request read by the consumer."""
    consumer = consumer_of(entry)
    assert consumer.wallet_address is not None
    network.balances_by_address[consumer.wallet_address] = 1000
    request(network, owed)
    await poll(hass, freezer)
    return consumer


async def test_lost_answer_does_not_pay_twice(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """The node stored the bundle but its answer was lost: retries resend the same bundle."""
    consumer = await billed(hass, freezer, loaded_entry, fake_network)
    addresses = list(consumer.state.wallet_addresses)
    fake_network.confirm_transfers = False
    fake_network.lost_answer = NodeUnavailableError("connection reset")

    with pytest.raises(HomeAssistantError) as failure:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert failure.value.translation_key == "payment_pending"
    assert failure.value.translation_placeholders == {
        "name": "House",
        "amount": "345",
        "node_url": "http://grid.example:14265",
    }
    pending = consumer.state.pending_payment
    assert pending is not None
    assert (pending.amount, pending.address, pending.bundle) == (345, PAY_TO, BUNDLE_A)
    assert fake_network.attachments == [BUNDLE_A]
    # The remainder address is reserved: the bundle may still send change there.
    assert consumer.state.wallet_addresses == [*addresses, fake_network.transfers[0].remainder]

    # Paying again checks and re-attaches the same bundle; nothing new is signed.
    fake_network.lost_answer = None
    response = await call(hass, "pay_bill", CONSUMER_ID)
    assert response == {"amount": 345, "address": PAY_TO, "bundle": BUNDLE_A, "status": "pending"}
    assert fake_network.attachments == [BUNDLE_A, BUNDLE_A]
    assert len(fake_network.transfers) == 1
    await poll(hass, freezer)
    assert state(hass, "sensor.house_amount_paid") == "0"
    assert consumer.diagnostics()["pending_payment"] == {
        "amount": 345,
        "bundle": BUNDLE_A,
        "transactions": 2,
        "time": pending.time.isoformat(),
    }
    diagnostics = await async_get_config_entry_diagnostics(hass, loaded_entry)
    stored = diagnostics["stored_state"]["participants"][CONSUMER_ID]["pending_payment"]
    assert stored["bundle"] == BUNDLE_A
    assert stored["trytes"] == "**REDACTED**"

    # A milestone confirms it: the next call reports it paid, once.
    fake_network.confirm(BUNDLE_A)
    response = await call(hass, "pay_bill", CONSUMER_ID)
    assert response == {
        "amount": 345,
        "address": PAY_TO,
        "bundle": BUNDLE_A,
        "status": "confirmed",
    }
    assert consumer.state.pending_payment is None
    await poll(hass, freezer)
    assert state(hass, "sensor.house_amount_paid") == "345"
    assert state(hass, "sensor.house_wallet_balance") == "655"

    with pytest.raises(ServiceValidationError) as refusal:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert refusal.value.translation_key == "already_paid"
    assert len(fake_network.transfers) == 1
    assert fake_network.attachments == [BUNDLE_A, BUNDLE_A]
    assert state(hass, "sensor.house_amount_paid") == "345"


async def test_pending_payment_survives_a_restart(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """Recorded, then Home Assistant restarts: the payment is recovered and confirmed."""
    await billed(hass, freezer, loaded_entry, fake_network)
    fake_network.confirm_transfers = False
    fake_network.lost_answer = NodeUnavailableError("connection reset")
    with pytest.raises(HomeAssistantError):
        await call(hass, "pay_bill", CONSUMER_ID)

    assert await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    consumer = consumer_of(loaded_entry)
    pending = consumer.state.pending_payment
    assert pending is not None
    assert pending.bundle == BUNDLE_A
    assert pending.trytes == [f"SIGNED-{BUNDLE_A}-0", f"SIGNED-{BUNDLE_A}-1"]

    # Confirmed while Home Assistant was away: a poll records it as paid.
    fake_network.confirm(BUNDLE_A)
    await poll(hass, freezer)
    assert consumer.state.pending_payment is None
    assert [payment.bundle for payment in consumer.state.payments] == [BUNDLE_A]
    assert state(hass, "sensor.house_amount_paid") == "345"
    assert len(fake_network.transfers) == 1


async def test_restart_before_the_node_took_it(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """Stored but never broadcast before a restart: paying again sends the same bundle."""
    consumer = await billed(hass, freezer, loaded_entry, fake_network)
    broadcast = fake_network.broadcast_transfer
    fake_network.broadcast_transfer = AsyncMock(  # type: ignore[method-assign]
        side_effect=NodeUnavailableError("timeout")
    )
    with pytest.raises(HomeAssistantError):
        await call(hass, "pay_bill", CONSUMER_ID)
    assert fake_network.attachments == []
    assert consumer.state.pending_payment is not None

    fake_network.broadcast_transfer = broadcast  # type: ignore[method-assign]
    assert await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    await poll(hass, freezer)
    consumer = consumer_of(loaded_entry)
    assert consumer.state.pending_payment is not None

    response = await call(hass, "pay_bill", CONSUMER_ID)
    assert response == {"amount": 345, "address": PAY_TO, "bundle": BUNDLE_A, "status": "pending"}
    assert fake_network.attachments == [BUNDLE_A]
    await poll(hass, freezer)
    assert consumer.state.pending_payment is None
    assert state(hass, "sensor.house_amount_paid") == "345"
    assert len(fake_network.transfers) == 1


async def test_confirmed_payment_then_a_new_bill(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """Once the payment is confirmed, the grid's next bill is paid with a new transfer."""
    consumer = await billed(hass, freezer, loaded_entry, fake_network)
    await call(hass, "pay_bill", CONSUMER_ID)
    await poll(hass, freezer)
    assert consumer.state.pending_payment is None
    # The grid moves its takings on (the fake node signs with every funded address).
    fake_network.balances_by_address[PAY_TO] = 0

    request(fake_network, 100)
    await poll(hass, freezer)
    response = await call(hass, "pay_bill", CONSUMER_ID)
    assert response == {"amount": 100, "address": PAY_TO, "bundle": BUNDLE_B, "status": "pending"}
    await poll(hass, freezer)
    assert [t.value for t in fake_network.transfers] == [345, 100]
    assert state(hass, "sensor.house_amount_paid") == "445"
    assert state(hass, "sensor.house_wallet_balance") == "555"


@pytest.mark.parametrize(
    ("error", "translation_key"),
    [
        (IriApiError("attachToTangle", 400, "refused"), "node_error"),
        (ProofOfWorkError("the nonce search was interrupted"), "proof_of_work_failed"),
    ],
    ids=["node", "local"],
)
async def test_failure_before_broadcast_can_be_paid_again(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    error: Exception,
    translation_key: str,
) -> None:
    """No proof of work (on the node or locally) means nothing was sent: the payment is
    forgotten, not kept pending."""
    consumer = await billed(hass, freezer, loaded_entry, fake_network)
    addresses = list(consumer.state.wallet_addresses)
    fake_network.attach_error = error
    with pytest.raises(HomeAssistantError) as failure:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert failure.value.translation_key == translation_key
    assert consumer.state.pending_payment is None
    assert consumer.state.wallet_addresses == addresses
    assert fake_network.attachments == []

    fake_network.attach_error = None
    response = await call(hass, "pay_bill", CONSUMER_ID)
    assert response == {"amount": 345, "address": PAY_TO, "bundle": BUNDLE_B, "status": "pending"}
    await poll(hass, freezer)
    assert fake_network.attachments == [BUNDLE_B]
    assert state(hass, "sensor.house_amount_paid") == "345"


async def test_pending_payment_retries_that_fail(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """While pending, any failure keeps it pending: it is never forgotten nor replaced."""
    consumer = await billed(hass, freezer, loaded_entry, fake_network)
    fake_network.confirm_transfers = False
    fake_network.lost_answer = NodeUnavailableError("connection reset")
    with pytest.raises(HomeAssistantError):
        await call(hass, "pay_bill", CONSUMER_ID)
    fake_network.lost_answer = None

    # No proof of work for the re-attachment: the earlier attachment may still confirm.
    fake_network.attach_error = IriApiError("attachToTangle", 400, "refused")
    with pytest.raises(HomeAssistantError) as failure:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert failure.value.translation_key == "payment_pending"
    assert consumer.state.pending_payment is not None
    fake_network.attach_error = None

    fake_network.lost_answer = NodeUnavailableError("timeout")
    with pytest.raises(HomeAssistantError) as failure:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert failure.value.translation_key == "payment_pending"
    fake_network.lost_answer = None

    # The node is down: the state cannot be checked.
    fake_network.node_up = False
    with pytest.raises(HomeAssistantError) as failure:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert failure.value.translation_key == "node_unavailable"
    assert consumer.state.pending_payment is not None
    assert len(fake_network.transfers) == 1


async def test_conflicting_pending_payment_is_dropped(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Inputs spent by another transfer: the pending bundle can never confirm."""
    consumer = await billed(hass, freezer, loaded_entry, fake_network)
    first_address = consumer.state.wallet_addresses[0]
    fake_network.confirm_transfers = False
    fake_network.lost_answer = NodeUnavailableError("connection reset")
    with pytest.raises(HomeAssistantError):
        await call(hass, "pay_bill", CONSUMER_ID)
    fake_network.lost_answer = None

    # The same seed spent elsewhere (another wallet app): pay_bill tells the user.
    fake_network.balances_by_address[first_address] = 0
    with pytest.raises(ServiceValidationError) as refusal:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert refusal.value.translation_key == "payment_conflicting"
    assert refusal.value.translation_placeholders == {"name": "House", "amount": "345"}
    assert consumer.state.pending_payment is None
    assert "can never confirm" in caplog.text

    # Funded again, the bill is paid with a new transfer.
    fake_network.confirm_transfers = True
    fake_network.balances_by_address[first_address] = 1000
    response = await call(hass, "pay_bill", CONSUMER_ID)
    assert response == {"amount": 345, "address": PAY_TO, "bundle": BUNDLE_B, "status": "pending"}

    # A poll drops a conflicting pending payment too.
    request(fake_network, 50)
    await poll(hass, freezer)
    fake_network.confirm_transfers = False
    fake_network.lost_answer = NodeUnavailableError("connection reset")
    with pytest.raises(HomeAssistantError):
        await call(hass, "pay_bill", CONSUMER_ID)
    fake_network.lost_answer = None
    for address in fake_network.transfers[-1].inputs:
        fake_network.balances_by_address[address] = 0
    await poll(hass, freezer)
    assert consumer.state.pending_payment is None
    assert state(hass, "sensor.house_amount_paid") == "345"


async def test_payments_the_grid_sees_confirming_are_not_paid_again(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """The grid's request says 345 IOTA owed, 300 of it confirming: 45 is paid, and a
    request covered by confirming payments is refused until they confirm or drop."""
    consumer = consumer_of(loaded_entry)
    assert consumer.wallet_address is not None
    fake_network.balances_by_address[consumer.wallet_address] = 1000
    fake_network.grid_publish(
        "consumer-registration-1",
        {
            "command": "payment-request",
            "owed": 345,
            "usage": 1.5,
            "paymentIdOrAddress": PAY_TO,
            "pending": 300,
        },
    )
    await poll(hass, freezer)
    assert state(hass, "sensor.house_amount_owed") == "345"
    assert state(hass, "sensor.house_amount_pending") == "300"
    response = await call(hass, "pay_bill", CONSUMER_ID)
    assert response == {"amount": 45, "address": PAY_TO, "bundle": BUNDLE_A, "status": "pending"}
    fake_network.confirm(BUNDLE_A)
    await poll(hass, freezer)
    assert state(hass, "sensor.house_amount_paid") == "45"

    fake_network.grid_publish(
        "consumer-registration-1",
        {
            "command": "payment-request",
            "owed": 400,
            "usage": 0.2,
            "paymentIdOrAddress": PAY_TO,
            "pending": 400,
        },
    )
    await poll(hass, freezer)
    assert state(hass, "sensor.house_amount_owed") == "400"
    assert state(hass, "sensor.house_amount_pending") == "400"
    with pytest.raises(ServiceValidationError) as refusal:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert refusal.value.translation_key == "payment_confirming"
    assert refusal.value.translation_placeholders == {"name": "House", "amount": "400"}
    assert len(fake_network.transfers) == 1
