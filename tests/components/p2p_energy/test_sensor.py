"""The sensors of the grid, the source, the producer and the consumer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform

from custom_components.p2p_energy.compat import device_owners
from custom_components.p2p_energy.const import DOMAIN

from .conftest import (
    CONSUMER_ID,
    ENTRY_ID,
    PRODUCER_ID,
    SOURCE_ID,
    find_device,
    state,
)

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant
    from syrupy.assertion import SnapshotAssertion


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_sensors(
    hass: HomeAssistant,
    entity_registry: er.EntityRegistry,
    loaded_entry: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    """Every sensor, its registry entry and its state."""
    await snapshot_platform(hass, entity_registry, snapshot, loaded_entry.entry_id)


async def test_devices_and_subentries(
    hass: HomeAssistant,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
    loaded_entry: MockConfigEntry,
) -> None:
    """One device per participant, under the grid's device, in its subentry."""
    grid = find_device(hass, ENTRY_ID)
    assert grid.configuration_url == "http://grid.example:8080"
    for subentry_id, model in (
        (SOURCE_ID, "Source"),
        (PRODUCER_ID, "Producer"),
        (CONSUMER_ID, "Consumer"),
    ):
        device = find_device(hass, subentry_id)
        assert device.model == model
        assert device.via_device_id == grid.id
        assert device_owners(device) == {loaded_entry.entry_id: {subentry_id}}
        for entity in er.async_entries_for_device(entity_registry, device.id):
            assert entity.unique_id.startswith(subentry_id)
            assert entity.config_subentry_id == subentry_id


async def test_registration_api_disabled_by_default(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, loaded_entry: MockConfigEntry
) -> None:
    """The producer's API URL is a capability: hidden unless enabled."""
    entity = entity_registry.async_get("sensor.inverter_registration_api")
    assert entity is not None
    assert entity.disabled_by is er.RegistryEntryDisabler.INTEGRATION


async def test_registered_sources_drop_when_a_source_deregisters(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """A deregistered source is no longer counted by its producer; rotating brings it back."""
    assert state(hass, "sensor.inverter_registered_sources") == "1"
    source = find_device(hass, SOURCE_ID)
    await hass.services.async_call(DOMAIN, "deregister", {"device_id": source.id}, blocking=True)
    assert state(hass, "sensor.inverter_registered_sources") == "0"
    await hass.services.async_call(
        DOMAIN, "rotate_channel", {"device_id": source.id}, blocking=True
    )
    assert state(hass, "sensor.inverter_registered_sources") == "1"


async def test_grid_entities_are_named_after_the_grid_device(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """The grid's device is "Grid", not the grid's host and port: sensor.grid_…"""
    assert find_device(hass, ENTRY_ID).name == "Grid"
    assert hass.states.get("sensor.grid_consensus_price") is not None


@pytest.mark.usefixtures("fake_network", "meters")
async def test_existing_entity_ids_stay(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, trading_entry: MockConfigEntry
) -> None:
    """An install whose ids came from the host and port keeps them (the registry's ids)."""
    old = entity_registry.async_get_or_create(
        "sensor",
        DOMAIN,
        f"{ENTRY_ID}_consensus_price",
        config_entry=trading_entry,
        suggested_object_id="grid_example_8080_consensus_price",
    )
    assert old.entity_id == "sensor.grid_example_8080_consensus_price"
    assert await hass.config_entries.async_setup(trading_entry.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get("sensor.grid_example_8080_consensus_price") is not None
    assert hass.states.get("sensor.grid_consensus_price") is None
