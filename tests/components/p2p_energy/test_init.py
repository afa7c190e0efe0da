"""Setting up a grid connection: channels, registrations, unloading, removal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState, ConfigSubentry

from custom_components.p2p_energy.const import (
    CONF_MAX_POWER,
    CONF_MIN_WEIGHT_MAGNITUDE,
    CONF_PROOF_OF_WORK,
    CONF_PUBLISH_INTERVAL,
    POW_LOCAL,
    POW_NODE,
)
from custom_components.p2p_energy.coordinator import P2PEnergyCoordinator
from custom_components.p2p_energy.protocol.client import LocalProofOfWork
from tests.engine.fake_network import GRID_SIDE_KEY, FakeNetwork

from .conftest import CONSUMER_ID, PRODUCER_ID, SOURCE_ID

GARAGE = ConfigSubentry(
    data={
        "meter": "sensor.garage_energy",
        "seed": "GARAGE".ljust(81, "9"),
        "side_key": "GARAGEKEY".ljust(81, "9"),
        "wallet_seed": "GARAGEWALLET".ljust(81, "9"),
        "registration_id": "garage-registration",
    },
    subentry_id="GARAGE",
    subentry_type="consumer",
    title="Garage",
    unique_id=None,
)

if TYPE_CHECKING:
    import pytest
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry


async def test_setup_opens_channels_and_registers(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fake_network: FakeNetwork
) -> None:
    """Each participant says hello on its channel; producer and consumer register."""
    assert loaded_entry.state is ConfigEntryState.LOADED
    coordinator = loaded_entry.runtime_data
    participants = coordinator.participants
    assert set(participants) == {SOURCE_ID, PRODUCER_ID, CONSUMER_ID}
    for participant in participants.values():
        assert participant.channel_root is not None
        assert fake_network.bodies(participant.channel_root, participant.side_key) == [
            {"command": "hello"}
        ]
        assert participant.registered
        assert participant.state.queue == []
    assert set(fake_network.registrations) == {"producer-registration-1", "consumer-registration-1"}
    producer = fake_network.registrations["producer-registration-1"]
    assert producer["item_type"] == "producer"
    assert producer["root"] == participants[PRODUCER_ID].channel_root
    consumer = participants[CONSUMER_ID]
    assert consumer.state.return_channel is not None
    assert consumer.state.return_channel.side_key == GRID_SIDE_KEY


async def test_setup_while_grid_is_down(
    hass: HomeAssistant,
    fake_network: FakeNetwork,
    trading_entry: MockConfigEntry,
    meters: dict[str, str],
) -> None:
    """Setup does not wait for the grid: hellos are queued, grid figures unknown."""
    fake_network.node_up = False
    fake_network.grid_up = False
    assert await hass.config_entries.async_setup(trading_entry.entry_id)
    await hass.async_block_till_done()
    assert trading_entry.state is ConfigEntryState.LOADED
    assert hass.states.get("sensor.grid_consensus_price").state == "unavailable"
    assert hass.states.get("sensor.roof_pv_queued_messages").state == "1"
    assert fake_network.registrations == {}


async def test_options_change_reloads_but_rotation_does_not(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """Configuration changes rebuild the runtime; the runtime's own key changes do not."""
    coordinator = loaded_entry.runtime_data
    hass.config_entries.async_update_entry(
        loaded_entry, options={**loaded_entry.options, "publish_interval": 120}
    )
    await hass.async_block_till_done()
    assert loaded_entry.runtime_data is not coordinator
    assert loaded_entry.runtime_data.publish_interval == 120


async def test_removed_subentry_is_forgotten(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """Removing a subentry removes its participant, device and saved state."""
    hass.config_entries.async_remove_subentry(loaded_entry, SOURCE_ID)
    await hass.async_block_till_done()
    coordinator = loaded_entry.runtime_data
    assert SOURCE_ID not in coordinator.participants
    assert SOURCE_ID not in coordinator.store.participants
    assert "Forgetting the state of participants that left" in caplog.text
    assert hass.states.get("sensor.roof_pv_energy_published") is None


async def test_remove_entry_deletes_saved_state(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    """The durable state goes with the entry."""
    key = f"p2p_energy.{loaded_entry.entry_id}"
    assert key in hass_storage
    await hass.config_entries.async_remove(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert key not in hass_storage


async def test_unknown_subentry_type_and_unreadable_channel(
    hass: HomeAssistant,
    fake_network: FakeNetwork,
    trading_entry: MockConfigEntry,
    meters: dict[str, str],
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Foreign subentries are ignored; a corrupt saved channel is replaced by a new one."""
    hass.config_entries.async_add_subentry(
        trading_entry,
        ConfigSubentry(data={}, subentry_type="battery", title="Battery", unique_id=None),
    )
    hass_storage[f"p2p_energy.{trading_entry.entry_id}"] = {
        "version": 1,
        "minor_version": 1,
        "key": f"p2p_energy.{trading_entry.entry_id}",
        "data": {
            "participants": {
                SOURCE_ID: {"channel": {"seed": "nonsense"}, "channel_root": "X" * 81},
                CONSUMER_ID: {
                    "channel": {"seed": "nonsense"},
                    "channel_root": "X" * 81,
                    "deregistered": True,
                },
            }
        },
    }
    assert await hass.config_entries.async_setup(trading_entry.entry_id)
    await hass.async_block_till_done()
    assert "Ignoring subentry of unknown type battery" in caplog.text
    assert "Saved channel of Roof PV is unreadable" in caplog.text
    participants = trading_entry.runtime_data.participants
    assert len(participants) == 3
    source = participants[SOURCE_ID]
    assert source.channel_root != "X" * 81
    assert fake_network.bodies(source.channel_root or "", source.side_key) == [{"command": "hello"}]
    # A deregistered participant opens its new channel silently.
    consumer = participants[CONSUMER_ID]
    assert fake_network.bodies(consumer.channel_root or "", consumer.side_key) == []
    assert "consumer-registration-1" not in fake_network.registrations


async def test_added_subentry_gets_its_device(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fake_network: FakeNetwork
) -> None:
    """A consumer added while running gets a device, entities, a channel and a registration."""
    hass.states.async_set(
        "sensor.garage_energy",
        "1.0",
        {"unit_of_measurement": "kWh", "state_class": "total_increasing"},
    )
    hass.config_entries.async_add_subentry(loaded_entry, GARAGE)
    await hass.async_block_till_done()
    assert hass.states.get("sensor.garage_energy_published") is not None
    assert "garage-registration" in fake_network.registrations


async def test_subentry_added_during_setup_is_not_missed(
    hass: HomeAssistant,
    fake_network: FakeNetwork,
    trading_entry: MockConfigEntry,
    meters: dict[str, str],
) -> None:
    """A consumer added while setup waits for the network (a reload still running when the
    user adds it) gets its participant: the entry is reloaded once setup has finished."""
    hass.states.async_set(
        "sensor.garage_energy",
        "1.0",
        {"unit_of_measurement": "kWh", "state_class": "total_increasing"},
    )
    prepare = P2PEnergyCoordinator.async_prepare

    async def prepare_while_a_consumer_is_added(coordinator: P2PEnergyCoordinator) -> None:
        await prepare(coordinator)
        if "GARAGE" not in trading_entry.subentries:
            hass.config_entries.async_add_subentry(trading_entry, GARAGE)

    with patch.object(P2PEnergyCoordinator, "async_prepare", prepare_while_a_consumer_is_added):
        # (Its answer is False: the reload has already begun when setup returns.)
        await hass.config_entries.async_setup(trading_entry.entry_id)
        await hass.async_block_till_done()
    assert trading_entry.state is ConfigEntryState.LOADED
    assert "GARAGE" in trading_entry.runtime_data.participants
    assert "garage-registration" in fake_network.registrations


async def test_proof_of_work_option_reaches_the_connection(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fake_network: FakeNetwork
) -> None:
    """Local proof of work (the default) runs in Home Assistant's executor; choosing the
    node in the options flow rebuilds the connection without it, and back."""
    local = fake_network.proof_of_work
    assert isinstance(local, LocalProofOfWork)
    assert local.executor is None  # the loop's default executor: Home Assistant's
    assert loaded_entry.runtime_data.diagnostics()["local_proof_of_work"] is True

    for choice, expect_local in ((POW_NODE, False), (POW_LOCAL, True)):
        result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
        result = await hass.config_entries.options.async_configure(
            result["flow_id"],
            {
                CONF_PUBLISH_INTERVAL: 60,
                CONF_MAX_POWER: 100.0,
                CONF_MIN_WEIGHT_MAGNITUDE: 9,
                CONF_PROOF_OF_WORK: choice,
            },
        )
        await hass.async_block_till_done()
        assert loaded_entry.state is ConfigEntryState.LOADED
        assert isinstance(fake_network.proof_of_work, LocalProofOfWork) is expect_local
        assert loaded_entry.runtime_data.diagnostics()["local_proof_of_work"] is expect_local
