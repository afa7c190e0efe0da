"""Wallets users can use: balance, send_iota, export_seed, and leaving without losing IOTA.

Against the in-memory grid and node (``FakeNetwork``); the value transfer on a
real node and the deregistration at a real grid are in ``test_wallet_end_to_end``.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from unittest.mock import patch

import pytest
import voluptuous as vol
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from custom_components.p2p_energy import removal
from custom_components.p2p_energy.const import CONF_WALLET_SEED, DOMAIN
from custom_components.p2p_energy.diagnostics import async_get_config_entry_diagnostics
from custom_components.p2p_energy.protocol.address import add_checksum
from custom_components.p2p_energy.protocol.errors import IriApiError, NodeUnavailableError
from custom_components.p2p_energy.protocol.household import Consumer, Producer, WalletMember
from custom_components.p2p_energy.protocol.signing import generate_address

from .conftest import CONSUMER_ID, PRODUCER_ID, SOURCE_ID, SUBENTRIES, state
from .test_services import device_id, poll, request

if TYPE_CHECKING:
    from freezegun.api import FrozenDateTimeFactory
    from homeassistant.core import HomeAssistant
    from homeassistant.helpers import issue_registry as ir
    from pytest_homeassistant_custom_component.common import MockConfigEntry

    from tests.engine.fake_network import FakeNetwork

TARGET = generate_address("TARGET9WALLET".ljust(81, "9"), 0, 2)
RETAINED = "p2p_energy.retained_wallets"


def wallet_seed(subentry_id: str) -> str:
    """The wallet seed the fixture gives a participant."""
    (data,) = [s["data"] for s in SUBENTRIES if s["subentry_id"] == subentry_id]
    return str(data[CONF_WALLET_SEED])


def producer_of(entry: MockConfigEntry) -> Producer:
    """The loaded producer."""
    producer = entry.runtime_data.participants[PRODUCER_ID]
    assert isinstance(producer, Producer)
    return producer


async def act(hass: HomeAssistant, service: str, identifier: str, **data: Any) -> dict[str, Any]:
    """Call a service on a participant's device and return its response."""
    response = await hass.services.async_call(
        DOMAIN,
        service,
        {"device_id": device_id(hass, identifier), **data},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    return dict(response)


async def send(
    hass: HomeAssistant, identifier: str, address: str, amount: int | str
) -> dict[str, Any]:
    """Call send_iota and return its response."""
    return await act(hass, "send_iota", identifier, address=address, amount=amount)


async def refused(hass: HomeAssistant, identifier: str, address: str, amount: int) -> str:
    """The translation key send_iota refuses with (nothing signed)."""
    with pytest.raises(ServiceValidationError) as refusal:
        await send(hass, identifier, address, amount)
    assert refusal.value.translation_domain == DOMAIN
    return str(refusal.value.translation_key)


async def funded_producer(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    entry: MockConfigEntry,
    network: FakeNetwork,
    amount: int = 22,
) -> Producer:
    """The producer, paid ``amount`` IOTA by the grid at its payment address."""
    producer = producer_of(entry)
    assert producer.payment_address is not None
    network.balances_by_address[producer.payment_address] = amount
    await poll(hass, freezer)
    return producer


async def test_producer_sees_and_sends_its_payouts(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """22 IOTA of payouts show on the producer's balance and can be sent to an address;
    the change goes to a fresh address, which the producer publishes from then on."""
    producer = await funded_producer(hass, freezer, loaded_entry, fake_network)
    first = producer.payment_address
    assert first == generate_address(wallet_seed(PRODUCER_ID), 0, 2)
    assert state(hass, "sensor.inverter_wallet_balance") == "22"

    response = await send(hass, PRODUCER_ID, add_checksum(TARGET), 15)
    assert response == {"amount": 15, "address": TARGET, "bundle": "A" * 81, "status": "pending"}
    (transfer,) = fake_network.transfers
    assert (transfer.seed, transfer.address, transfer.value) == (
        wallet_seed(PRODUCER_ID),
        TARGET,
        15,
    )
    # Change (7 IOTA) goes to key index 1, never to the address just spent from.
    assert transfer.remainder == generate_address(wallet_seed(PRODUCER_ID), 1, 2)
    assert producer.payment_address == transfer.remainder
    await poll(hass, freezer)
    assert fake_network.balances_by_address[TARGET] == 15
    assert state(hass, "sensor.inverter_wallet_balance") == "7"
    assert hass.states.get("sensor.inverter_wallet_address").attributes["address"] == (
        transfer.remainder
    )
    assert [payment.amount for payment in producer.state.sent] == [15]
    assert producer.state.pending_payment is None
    assert producer.state.payments == []


async def test_send_refusals(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """Bad addresses, amounts beyond the confirmed balance, the wallet's own address and a
    participant without a wallet are refused with translated errors; nothing is signed."""
    producer = await funded_producer(hass, freezer, loaded_entry, fake_network)
    bad_checksum = TARGET + ("A" if add_checksum(TARGET)[-1] != "A" else "B") * 9
    assert await refused(hass, PRODUCER_ID, bad_checksum, 1) == "invalid_address"
    assert await refused(hass, PRODUCER_ID, TARGET[:80], 1) == "invalid_address"
    assert await refused(hass, PRODUCER_ID, "not an address", 1) == "invalid_address"
    odd = "9" * 80 + "M"  # last trit 1: cannot receive value
    assert await refused(hass, PRODUCER_ID, odd, 1) == "invalid_address"
    with pytest.raises(ServiceValidationError) as refusal:
        await send(hass, PRODUCER_ID, TARGET, 23)
    assert refusal.value.translation_key == "amount_above_balance"
    assert refusal.value.translation_placeholders == {
        "name": "Inverter",
        "amount": "23",
        "balance": "22",
    }
    assert producer.payment_address is not None
    assert await refused(hass, PRODUCER_ID, producer.payment_address, 1) == "own_address"
    assert await refused(hass, SOURCE_ID, TARGET, 1) == "no_wallet"
    with pytest.raises(vol.Invalid):
        await send(hass, PRODUCER_ID, TARGET, 0)
    assert fake_network.transfers == []


async def test_send_with_the_node_down_says_so_in_words(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """A node that cannot be reached gives a translated message naming it, not the
    network library's text; one that refuses gives its own explanation."""
    await funded_producer(hass, freezer, loaded_entry, fake_network)
    fake_network.transfer_error = NodeUnavailableError(
        "Cannot connect to host grid.example:14265 ssl:default [Connect call failed]"
    )
    with pytest.raises(HomeAssistantError) as failure:
        await send(hass, PRODUCER_ID, TARGET, 5)
    assert failure.value.translation_key == "node_unavailable"
    assert failure.value.translation_placeholders == {"node_url": "http://grid.example:14265"}
    assert "Cannot connect" not in str(failure.value)
    assert "http://grid.example:14265" in str(failure.value)
    fake_network.transfer_error = IriApiError("getBalances", 400, "Invalid addresses input")
    with pytest.raises(HomeAssistantError) as failure:
        await send(hass, PRODUCER_ID, TARGET, 5)
    assert failure.value.translation_key == "node_error"
    assert "Invalid addresses input" in str(failure.value)
    assert fake_network.transfers == []


async def test_send_refused_while_a_transfer_is_unconfirmed(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """A second send (or a bill) waits for the first: the first is attached again, nothing
    new is signed."""
    producer = await funded_producer(hass, freezer, loaded_entry, fake_network)
    fake_network.confirm_transfers = False
    await send(hass, PRODUCER_ID, TARGET, 5)
    with pytest.raises(ServiceValidationError) as refusal:
        await send(hass, PRODUCER_ID, TARGET, 5)
    assert refusal.value.translation_key == "transfer_pending"
    assert refusal.value.translation_placeholders == {
        "name": "Inverter",
        "amount": "5",
        "bundle": "A" * 81,
    }
    assert fake_network.attachments == ["A" * 81, "A" * 81]
    assert len(fake_network.transfers) == 1
    fake_network.confirm("A" * 81)
    await send(hass, PRODUCER_ID, TARGET, 5)
    assert len(fake_network.transfers) == 2
    assert producer.state.sent[0].bundle == "A" * 81


async def test_bill_waits_for_a_pending_send(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """A consumer's bill is not signed while a send from the same wallet is pending; once
    it confirms, the bill is paid from what is left."""
    consumer = loaded_entry.runtime_data.participants[CONSUMER_ID]
    assert isinstance(consumer, Consumer)
    assert consumer.wallet_address is not None
    fake_network.balances_by_address[consumer.wallet_address] = 1000
    request(fake_network, 345)
    await poll(hass, freezer)
    fake_network.confirm_transfers = False
    await send(hass, CONSUMER_ID, TARGET, 100)
    with pytest.raises(ServiceValidationError) as refusal:
        await act(hass, "pay_bill", CONSUMER_ID)
    assert refusal.value.translation_key == "transfer_pending"
    fake_network.confirm("A" * 81)
    fake_network.balances_by_address[TARGET] = 0  # not the consumer's: the fake signs from all
    fake_network.confirm_transfers = True
    response = await act(hass, "pay_bill", CONSUMER_ID)
    assert response["amount"] == 345
    await poll(hass, freezer)
    assert state(hass, "sensor.house_amount_paid") == "345"
    assert state(hass, "sensor.house_wallet_balance") == "555"
    assert [payment.amount for payment in consumer.state.sent] == [100]


async def test_restart_between_store_and_send_never_double_spends(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """Home Assistant stops after the transfer was recorded, before it reached the node:
    after the restart the same bundle is attached and confirmed; nothing is signed anew."""
    await funded_producer(hass, freezer, loaded_entry, fake_network)
    fake_network.confirm_transfers = False
    with (
        patch.object(type(fake_network), "broadcast_transfer", side_effect=asyncio.CancelledError),
        pytest.raises(asyncio.CancelledError),
    ):
        await send(hass, PRODUCER_ID, TARGET, 15)
    assert fake_network.attachments == []
    assert len(fake_network.transfers) == 1

    assert await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    producer = producer_of(loaded_entry)
    pending = producer.state.pending_payment
    assert pending is not None
    assert (pending.amount, pending.address, pending.bundle) == (15, TARGET, "A" * 81)
    assert pending.request_root is None
    # The change address is reserved: the recorded bundle may still send change there.
    assert producer.payment_address == fake_network.transfers[0].remainder

    with pytest.raises(ServiceValidationError) as refusal:
        await send(hass, PRODUCER_ID, TARGET, 15)
    assert refusal.value.translation_key == "transfer_pending"
    assert fake_network.attachments == ["A" * 81]
    fake_network.confirm("A" * 81)
    await poll(hass, freezer)
    assert producer.state.pending_payment is None
    assert [payment.bundle for payment in producer.state.sent] == ["A" * 81]
    assert len(fake_network.transfers) == 1
    assert fake_network.balances_by_address[TARGET] == 15
    assert state(hass, "sensor.inverter_wallet_balance") == "7"


async def test_lost_answer_keeps_the_send_pending(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """The node took the bundle but its answer was lost: translated, kept pending."""
    producer = await funded_producer(hass, freezer, loaded_entry, fake_network)
    fake_network.confirm_transfers = False
    fake_network.lost_answer = NodeUnavailableError("Server disconnected")
    with pytest.raises(HomeAssistantError) as failure:
        await send(hass, PRODUCER_ID, TARGET, 15)
    assert failure.value.translation_key == "payment_pending"
    assert failure.value.translation_placeholders == {
        "name": "Inverter",
        "amount": "15",
        "node_url": "http://grid.example:14265",
    }
    assert "Server disconnected" not in str(failure.value)
    assert producer.state.pending_payment is not None


async def test_seed_export_is_deliberate_and_never_in_diagnostics_or_logs(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """export_seed only answers with a response; the seed appears nowhere else."""
    caplog.set_level("DEBUG")
    with pytest.raises(ServiceValidationError):  # response-only: a plain call is refused
        await hass.services.async_call(
            DOMAIN, "export_seed", {"device_id": device_id(hass, PRODUCER_ID)}, blocking=True
        )
    for identifier in (PRODUCER_ID, CONSUMER_ID):
        response = await act(hass, "export_seed", identifier)
        participant = loaded_entry.runtime_data.participants[identifier]
        assert isinstance(participant, WalletMember)
        assert response == {
            "seed": wallet_seed(identifier),
            "security": 2,
            "addresses": participant.state.wallet_addresses,
        }
    with pytest.raises(ServiceValidationError) as refusal:
        await act(hass, "export_seed", SOURCE_ID)
    assert refusal.value.translation_key == "no_wallet"
    await poll(hass, freezer)
    text = json.dumps(await async_get_config_entry_diagnostics(hass, loaded_entry))
    for identifier in (PRODUCER_ID, CONSUMER_ID):
        assert wallet_seed(identifier) not in text
        assert wallet_seed(identifier) not in caplog.text


async def test_warning_while_the_wallet_holds_spare_iota(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    issue_registry: ir.IssueRegistry,
) -> None:
    """A repair issue stands while a wallet holds IOTA no bill needs, and goes once empty."""
    producer_issue = (DOMAIN, f"wallet_holds_iota_{PRODUCER_ID}")
    consumer_issue = (DOMAIN, f"wallet_holds_iota_{CONSUMER_ID}")
    assert producer_issue not in issue_registry.issues
    producer = await funded_producer(hass, freezer, loaded_entry, fake_network)
    issue = issue_registry.issues[producer_issue]
    assert issue.translation_key == "wallet_holds_iota"
    assert issue.translation_placeholders == {
        "name": "Inverter",
        "title": loaded_entry.title,
        "amount": "22",
    }
    # A consumer's IOTA that its bill needs is no reason to warn.
    consumer = loaded_entry.runtime_data.participants[CONSUMER_ID]
    assert isinstance(consumer, Consumer)
    assert consumer.wallet_address is not None
    fake_network.balances_by_address[consumer.wallet_address] = 345
    request(fake_network, 345)
    await poll(hass, freezer)
    assert consumer_issue not in issue_registry.issues
    fake_network.balances_by_address[consumer.wallet_address] = 400
    await poll(hass, freezer)
    assert issue_registry.issues[consumer_issue].translation_placeholders["amount"] == "55"
    fake_network.balances_by_address[consumer.wallet_address] = 0
    await poll(hass, freezer)
    assert consumer_issue not in issue_registry.issues

    assert producer.payment_address is not None
    await send(hass, PRODUCER_ID, TARGET, 22)
    await poll(hass, freezer)
    assert state(hass, "sensor.inverter_wallet_balance") == "0"
    assert producer_issue not in issue_registry.issues


async def test_removing_a_subentry_deregisters_and_keeps_a_funded_wallet(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    hass_storage: dict[str, Any],
    issue_registry: ir.IssueRegistry,
) -> None:
    """The producer leaves the grid (DELETE and goodbye); its 22 IOTA stay recoverable."""
    producer = await funded_producer(hass, freezer, loaded_entry, fake_network)
    root, side_key = producer.channel_root or "", producer.side_key
    assert "producer-registration-1" in fake_network.registrations
    hass.config_entries.async_remove_subentry(loaded_entry, PRODUCER_ID)
    await hass.async_block_till_done()
    assert "producer-registration-1" not in fake_network.registrations
    assert fake_network.bodies(root, side_key)[-1] == {"command": "goodbye"}
    assert PRODUCER_ID not in loaded_entry.runtime_data.participants
    (kept,) = hass_storage[RETAINED]["data"]["wallets"]
    assert kept["seed"] == wallet_seed(PRODUCER_ID)
    assert (kept["name"], kept["balance"], kept["kind"]) == ("Inverter", 22, "producer")
    assert hass_storage[RETAINED]["data"]["departures"] == []
    issue = issue_registry.issues[(DOMAIN, f"wallet_retained_{PRODUCER_ID}")]
    assert issue.is_persistent
    assert wallet_seed(PRODUCER_ID) not in json.dumps(issue.translation_placeholders)
    assert (DOMAIN, f"wallet_holds_iota_{PRODUCER_ID}") not in issue_registry.issues

    # An empty wallet is deleted with its subentry: nothing to keep.
    consumer = loaded_entry.runtime_data.participants[CONSUMER_ID]
    hass.config_entries.async_remove_subentry(loaded_entry, CONSUMER_ID)
    await hass.async_block_till_done()
    assert "consumer-registration-1" not in fake_network.registrations
    assert consumer.state.deregistered
    assert len(hass_storage[RETAINED]["data"]["wallets"]) == 1


async def test_removing_the_entry_with_the_grid_down_does_not_hang(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The grid is down at removal: the removal finishes, says so, keeps the
    registrations to remove on the next start, and keeps wallets it cannot check."""
    fake_network.grid_up = False
    fake_network.node_up = False
    await hass.config_entries.async_remove(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert f"p2p_energy.{loaded_entry.entry_id}" not in hass_storage
    retained = hass_storage[RETAINED]["data"]
    assert sorted(d["registration_id"] for d in retained["departures"]) == [
        "consumer-registration-1",
        "producer-registration-1",
    ]
    assert sorted(w["name"] for w in retained["wallets"]) == ["House", "Inverter"]
    assert all(w["balance"] is None for w in retained["wallets"])
    assert "stays at http://grid.example:8080 for now" in caplog.text
    assert set(fake_network.registrations) >= {
        "producer-registration-1",
        "consumer-registration-1",
    }

    # The next start of the integration removes them once the grid answers.
    fake_network.grid_up = True
    with patch.object(removal, "GridConnection", fake_network):
        await removal.async_retry_departures(hass)
    assert "producer-registration-1" not in fake_network.registrations
    assert "consumer-registration-1" not in fake_network.registrations
    assert hass_storage[RETAINED]["data"]["departures"] == []


async def test_removing_the_entry_deregisters_everyone(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    hass_storage: dict[str, Any],
) -> None:
    """With empty wallets nothing is kept: the registrations go, then the state."""
    await hass.config_entries.async_remove(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert "producer-registration-1" not in fake_network.registrations
    assert "consumer-registration-1" not in fake_network.registrations
    assert hass_storage[RETAINED]["data"] == {"wallets": [], "departures": []}


async def test_leaving_is_bounded_in_time(caplog: pytest.LogCaptureFixture) -> None:
    """A grid that accepts the connection but never answers cannot hold a removal up."""
    with patch.object(removal, "LEAVE_TIMEOUT", 0.05):
        done, result = await removal._bounded("leaving the grid", "House", asyncio.Event().wait())
    assert (done, result) == (False, None)
    assert "House: leaving the grid did not finish within" in caplog.text


async def test_departures_kept_until_the_grid_answers(
    hass: HomeAssistant,
    fake_network: FakeNetwork,
    hass_storage: dict[str, Any],
) -> None:
    """A kept departure is retried at start: removed when the grid takes it, dropped when
    the registration is gone already, kept while the grid or producer stays away."""
    departure = {
        "name": "House",
        "grid_url": fake_network.grid_url,
        "node_url": fake_network.node_url,
        "producer_url": "",
        "kind": "consumer",
        "registration_id": "consumer-registration-9",
        "side_key": "SIDEKEY",
        "token": None,
        "removed": "2025-03-01T12:00:00+00:00",
    }
    source = departure | {
        "name": "Roof PV",
        "producer_url": "http://producer.example/api",
        "kind": "source",
        "registration_id": "source-registration-9",
    }
    gone = departure | {"name": "Shed", "registration_id": "unknown-registration"}
    fake_network.registrations["consumer-registration-9"] = {"side_key": "SIDEKEY"}
    fake_network.producer_registrations["http://producer.example/api"]["source-registration-9"] = {
        "side_key": "SIDEKEY"
    }
    hass_storage[RETAINED] = {
        "version": 1,
        "key": RETAINED,
        "data": {"wallets": [], "departures": [departure, source, gone]},
    }
    fake_network.grid_up = False
    fake_network.remote_producer_up = False
    with patch.object(removal, "GridConnection", fake_network):
        await removal.async_retry_departures(hass)
        assert hass_storage[RETAINED]["data"]["departures"] == [departure, source, gone]
        fake_network.grid_up = True
        fake_network.remote_producer_up = True
        await removal.async_retry_departures(hass)
        assert hass_storage[RETAINED]["data"]["departures"] == []
        await removal.async_retry_departures(hass)  # nothing left: nothing asked
    assert "consumer-registration-9" not in fake_network.registrations
    assert fake_network.producer_registrations["http://producer.example/api"] == {}


async def test_deregister_refused_by_the_grid_says_why(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fake_network: FakeNetwork
) -> None:
    """A grid that answers with a refusal is quoted (its words, not a library's)."""
    fake_network.registrations["consumer-registration-1"]["side_key"] = "OTHER"
    with pytest.raises(HomeAssistantError) as failure:
        await hass.services.async_call(
            DOMAIN, "deregister", {"device_id": device_id(hass, CONSUMER_ID)}, blocking=True
        )
    assert failure.value.translation_key == "grid_error"
    assert failure.value.translation_placeholders == {"error": "The side key does not match."}
