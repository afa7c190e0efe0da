"""The services: pay_bill, publish_now, rotate_channel, deregister."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.p2p_energy.const import CONF_SEED, CONF_SIDE_KEY, DOMAIN
from custom_components.p2p_energy.protocol.errors import NodeUnavailableError

from .conftest import CONSUMER_ID, ENTRY_ID, PRODUCER_ID, SOURCE_ID, find_device, state

if TYPE_CHECKING:
    from freezegun.api import FrozenDateTimeFactory
    from homeassistant.core import HomeAssistant

    from tests.engine.fake_network import FakeNetwork

PAY_TO = "PAYTO" + "9" * 76


def device_id(hass: HomeAssistant, identifier: str) -> str:
    """The device registry id of a participant (or of the grid)."""
    return find_device(hass, identifier).id


async def call(hass: HomeAssistant, service: str, identifier: str) -> object:
    """Call a service on a participant's device."""
    return await hass.services.async_call(
        DOMAIN,
        service,
        {"device_id": device_id(hass, identifier)},
        blocking=True,
        return_response=service == "pay_bill",
    )


async def poll(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """Let the coordinator poll once (its refresh is a background task)."""
    freezer.tick(timedelta(seconds=31))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)


def request(network: FakeNetwork, owed: int, pay_to: str = PAY_TO) -> None:
    """The grid asks the consumer to pay."""
    network.grid_publish(
        "consumer-registration-1",
        {"command": "payment-request", "owed": owed, "usage": 1.5, "paymentIdOrAddress": pay_to},
    )


async def test_pay_bill(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """The bill is paid once from the wallet; the surplus stays in a fresh address."""
    consumer = loaded_entry.runtime_data.participants[CONSUMER_ID]
    first_address = consumer.wallet_address
    assert first_address is not None
    fake_network.balances_by_address[first_address] = 1000

    with pytest.raises(ServiceValidationError) as refusal:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert refusal.value.translation_key == "nothing_owed"

    request(fake_network, 345)
    await poll(hass, freezer)
    response = await call(hass, "pay_bill", CONSUMER_ID)
    assert response == {"amount": 345, "address": PAY_TO, "bundle": "A" * 81, "status": "pending"}
    # The next poll finds it confirmed: paid once.
    await poll(hass, freezer)
    assert consumer.state.pending_payment is None
    (transfer,) = fake_network.transfers
    assert transfer.value == 345
    assert transfer.address == PAY_TO
    assert transfer.remainder == consumer.wallet_address != first_address
    assert state(hass, "sensor.house_amount_paid") == "345"
    assert state(hass, "sensor.house_wallet_balance") == "655"
    wallet = hass.states.get("sensor.house_wallet_address")
    assert wallet is not None
    assert wallet.attributes["address"] == consumer.wallet_address

    with pytest.raises(ServiceValidationError) as refusal:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert refusal.value.translation_key == "already_paid"
    assert refusal.value.translation_placeholders == {"name": "House", "amount": "345"}
    assert len(fake_network.transfers) == 1

    request(fake_network, 100, pay_to="INVOICE-2025-03")
    await poll(hass, freezer)
    with pytest.raises(ServiceValidationError) as refusal:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert refusal.value.translation_key == "payment_reference"

    request(fake_network, 0)
    await poll(hass, freezer)
    with pytest.raises(ServiceValidationError) as refusal:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert refusal.value.translation_key == "nothing_owed"

    request(fake_network, 10_000)
    await poll(hass, freezer)
    with pytest.raises(ServiceValidationError) as refusal:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert refusal.value.translation_key == "insufficient_balance"

    fake_network.transfer_error = NodeUnavailableError("timeout")
    with pytest.raises(HomeAssistantError) as failure:
        await call(hass, "pay_bill", CONSUMER_ID)
    assert failure.value.translation_key == "node_unavailable"
    assert len(fake_network.transfers) == 1


@pytest.mark.usefixtures("loaded_entry")
async def test_service_targets(hass: HomeAssistant, trading_entry: MockConfigEntry) -> None:
    """Services refuse devices that cannot do what is asked."""
    with pytest.raises(ServiceValidationError) as refusal:
        await call(hass, "pay_bill", PRODUCER_ID)
    assert refusal.value.translation_key == "not_a_consumer"

    with pytest.raises(ServiceValidationError) as refusal:
        await call(hass, "publish_now", ENTRY_ID)
    assert refusal.value.translation_key == "not_a_participant"

    with pytest.raises(ServiceValidationError) as refusal:
        await hass.services.async_call(DOMAIN, "publish_now", {"device_id": "nope"}, blocking=True)
    assert refusal.value.translation_key == "unknown_device"

    other = MockConfigEntry(domain="other")
    other.add_to_hass(hass)
    foreign = dr.async_get(hass).async_get_or_create(
        config_entry_id=other.entry_id, identifiers={("other", SOURCE_ID)}
    )
    with pytest.raises(ServiceValidationError) as refusal:
        await hass.services.async_call(
            DOMAIN, "publish_now", {"device_id": foreign.id}, blocking=True
        )
    assert refusal.value.translation_key == "not_a_participant"

    source_device = device_id(hass, SOURCE_ID)
    await hass.config_entries.async_unload(trading_entry.entry_id)
    assert trading_entry.state is ConfigEntryState.NOT_LOADED
    with pytest.raises(ServiceValidationError) as refusal:
        await hass.services.async_call(
            DOMAIN, "publish_now", {"device_id": source_device}, blocking=True
        )
    assert refusal.value.translation_key == "entry_not_loaded"


async def test_publish_now(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """A reading is published at once, outside the period timer."""
    source = loaded_entry.runtime_data.participants[SOURCE_ID]
    await call(hass, "publish_now", SOURCE_ID)  # takes the baseline
    freezer.tick(timedelta(seconds=20))
    hass.states.async_set(
        "sensor.pv_energy",
        "120.75",
        {"unit_of_measurement": "kWh", "state_class": "total_increasing"},
    )
    await call(hass, "publish_now", SOURCE_ID)
    bodies = fake_network.bodies(source.channel_root or "", source.side_key)
    assert [body["command"] for body in bodies] == ["hello", "output"]
    assert bodies[1]["output"] == 0.25


async def test_rotate_channel(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """Goodbye on the old channel, hello on a new one, registered again, without a reload."""
    coordinator = loaded_entry.runtime_data
    producer = coordinator.participants[PRODUCER_ID]
    old_root, old_key = producer.channel_root, producer.side_key
    old_seed = loaded_entry.subentries[PRODUCER_ID].data[CONF_SEED]
    assert old_root is not None

    await call(hass, "rotate_channel", PRODUCER_ID)
    await hass.async_block_till_done()
    assert loaded_entry.runtime_data is coordinator  # not reloaded
    assert fake_network.bodies(old_root, old_key) == [{"command": "hello"}, {"command": "goodbye"}]
    data = loaded_entry.subentries[PRODUCER_ID].data
    assert data[CONF_SEED] != old_seed
    assert data[CONF_SIDE_KEY] == producer.side_key != old_key
    assert producer.channel_root != old_root
    assert fake_network.bodies(producer.channel_root or "", producer.side_key) == [
        {"command": "hello"}
    ]
    assert fake_network.registrations["producer-registration-1"]["root"] == producer.channel_root

    # A rotated local source keeps feeding its producer on the new channel.
    source = coordinator.participants[SOURCE_ID]
    await call(hass, "rotate_channel", SOURCE_ID)
    await call(hass, "publish_now", SOURCE_ID)
    freezer.tick(timedelta(seconds=50))
    hass.states.async_set(
        "sensor.pv_energy",
        "121.5",
        {"unit_of_measurement": "kWh", "state_class": "total_increasing"},
    )
    await call(hass, "publish_now", SOURCE_ID)
    await poll(hass, freezer)
    # The poll crossed a period boundary, so the producer may already have sold it.
    sold = [
        body["output"]
        for body in fake_network.bodies(producer.channel_root or "", producer.side_key)
        if body["command"] == "output"
    ]
    pending = [reading.output_kwh for reading in producer.state.source_readings]
    assert sum(sold) + sum(pending) == 1.0
    roots = [channel.root for channel in producer.state.followed]
    assert roots == [source.channel_root]

    # After a restart the rotated channel is resumed, not opened again.
    assert await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    reloaded = loaded_entry.runtime_data.participants[PRODUCER_ID]
    assert reloaded.channel_root == producer.channel_root
    assert reloaded.registered


async def test_deregister_and_rejoin(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """Deregistering leaves the grid and stops publishing; rotating joins again."""
    consumer = loaded_entry.runtime_data.participants[CONSUMER_ID]
    root = consumer.channel_root or ""

    fake_network.grid_up = False
    with pytest.raises(HomeAssistantError) as failure:
        await call(hass, "deregister", CONSUMER_ID)
    assert failure.value.translation_key == "grid_unavailable"
    assert not consumer.state.deregistered
    fake_network.grid_up = True

    await call(hass, "deregister", CONSUMER_ID)
    assert "consumer-registration-1" not in fake_network.registrations
    assert fake_network.bodies(root, consumer.side_key)[-1] == {"command": "goodbye"}
    assert consumer.state.deregistered

    for service in ("deregister", "publish_now"):
        with pytest.raises(ServiceValidationError) as refusal:
            await call(hass, service, CONSUMER_ID)
        assert refusal.value.translation_key == "deregistered"
    # The period timer skips it too.
    await consumer.publish_period(freezer())  # type: ignore[arg-type]
    await poll(hass, freezer)
    assert "consumer-registration-1" not in fake_network.registrations

    await call(hass, "rotate_channel", CONSUMER_ID)
    await hass.async_block_till_done()
    assert fake_network.registrations["consumer-registration-1"]["root"] == consumer.channel_root
    assert not consumer.state.deregistered


async def test_deregister_remote_source(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    fake_network: FakeNetwork,
    trading_entry: MockConfigEntry,
    meters: dict[str, str],
) -> None:
    """A source of a remote producer registers and deregisters through its API."""
    subentry = trading_entry.subentries[SOURCE_ID]
    hass.config_entries.async_update_subentry(
        trading_entry,
        subentry,
        data={**subentry.data, "producer_url": "http://neighbour:8123/api/p2p_energy/producer/x"},
    )
    assert await hass.config_entries.async_setup(trading_entry.entry_id)
    await hass.async_block_till_done()
    registrations = fake_network.producer_registrations[
        "http://neighbour:8123/api/p2p_energy/producer/x"
    ]
    source = trading_entry.runtime_data.participants[SOURCE_ID]
    assert registrations["source-registration-1"] == {
        "item_name": "Roof PV",
        "root": source.channel_root,
        "side_key": source.side_key,
    }
    await call(hass, "deregister", SOURCE_ID)
    assert registrations == {}


async def test_deregister_while_node_is_down(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """The goodbye waits in the queue until the node is back."""
    producer = loaded_entry.runtime_data.participants[PRODUCER_ID]
    fake_network.node_up = False
    await call(hass, "deregister", PRODUCER_ID)
    assert "producer-registration-1" not in fake_network.registrations
    assert [item.kind for item in producer.state.queue] == ["goodbye"]
    fake_network.node_up = True
    await poll(hass, freezer)
    assert fake_network.bodies(producer.channel_root or "", producer.side_key) == [
        {"command": "hello"},
        {"command": "goodbye"},
    ]
    assert not producer.registered


async def test_concurrent_deregistrations(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fake_network: FakeNetwork
) -> None:
    """Two deregistrations racing leave the grid once and say goodbye once."""
    consumer = loaded_entry.runtime_data.participants[CONSUMER_ID]
    await asyncio.gather(consumer.deregister(), consumer.deregister())
    bodies = fake_network.bodies(consumer.channel_root or "", consumer.side_key)
    assert bodies == [{"command": "hello"}, {"command": "goodbye"}]
