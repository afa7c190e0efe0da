"""Fixtures of the P2P Energy Grid integration tests."""

from __future__ import annotations

from typing import TYPE_CHECKING
from unittest.mock import AsyncMock, PropertyMock, patch

import pytest
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.p2p_energy.const import (
    CONF_API_TOKEN,
    CONF_GRID_URL,
    CONF_MAX_POWER,
    CONF_METER,
    CONF_MIN_WEIGHT_MAGNITUDE,
    CONF_NODE_URL,
    CONF_PRICE,
    CONF_PRODUCER_URL,
    CONF_PUBLISH_INTERVAL,
    CONF_REGISTRATION_ID,
    CONF_SEED,
    CONF_SIDE_KEY,
    CONF_SOURCES,
    CONF_WALLET_SEED,
    DOMAIN,
)
from tests.engine.fake_network import HOME_ASSISTANT_PROTOCOL, FakeNetwork

if TYPE_CHECKING:
    from collections.abc import Generator

    from freezegun.api import FrozenDateTimeFactory
    from homeassistant.core import HomeAssistant

GRID_URL = "http://grid.example:8080"
NODE_URL = "http://grid.example:14265"

ENERGY_ATTRIBUTES = {
    "unit_of_measurement": "kWh",
    "state_class": "total_increasing",
    "device_class": "energy",
}


def find_device(hass: HomeAssistant, identifier: str) -> dr.DeviceEntry:
    """The device of this integration (grid or participant) with the identifier.

    Looked up through the config entries' device lists: identifiers are unique only per
    config entry since Home Assistant 2026.8, whose registry refuses the registry-wide
    ``async_get_device`` in tests.
    """
    registry = dr.async_get(hass)
    found = [
        device
        for entry in hass.config_entries.async_entries(DOMAIN)
        for device in dr.async_entries_for_config_entry(registry, entry.entry_id)
        if (DOMAIN, identifier) in device.identifiers
    ]
    assert len(found) == 1, f"{len(found)} devices with identifier {identifier}"
    return found[0]


def state(hass: HomeAssistant, entity_id: str) -> str:
    """The state of an entity that must exist."""
    current = hass.states.get(entity_id)
    assert current is not None, entity_id
    return current.state


@pytest.fixture
def entity_registry_enabled_by_default() -> Generator[None]:
    """Create every entity enabled, including those disabled by default."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


@pytest.fixture
def mock_setup_entry() -> Generator[AsyncMock]:
    """Keep created entries from starting their runtime."""
    with patch("custom_components.p2p_energy.async_setup_entry", return_value=True) as setup_entry:
        yield setup_entry


@pytest.fixture
def mock_test_connection() -> Generator[AsyncMock]:
    """The connection test of the config flow, succeeding unless told otherwise."""
    with patch(
        "custom_components.p2p_energy.config_flow.async_test_connection", return_value=None
    ) as test_connection:
        yield test_connection


@pytest.fixture
def config_entry(hass: HomeAssistant) -> MockConfigEntry:
    """A grid connection (not set up)."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="grid.example:8080",
        unique_id=GRID_URL,
        data={CONF_GRID_URL: GRID_URL, CONF_NODE_URL: NODE_URL},
    )
    entry.add_to_hass(hass)
    return entry


@pytest.fixture
def meters(hass: HomeAssistant) -> dict[str, str]:
    """Energy sensors to wrap, and some that cannot be wrapped."""
    hass.states.async_set("sensor.pv_energy", "120.5", ENERGY_ATTRIBUTES)
    hass.states.async_set(
        "sensor.wind_energy", "4000", ENERGY_ATTRIBUTES | {"unit_of_measurement": "Wh"}
    )
    hass.states.async_set(
        "sensor.inverter_energy",
        "230.0",
        ENERGY_ATTRIBUTES | {"state_class": "total", "last_reset": "2025-01-01T00:00:00+00:00"},
    )
    hass.states.async_set("sensor.house_energy", "5000.25", ENERGY_ATTRIBUTES)
    hass.states.async_set("sensor.house_power", "512", {"unit_of_measurement": "W"})
    hass.states.async_set(
        "sensor.daily_energy", "3.2", ENERGY_ATTRIBUTES | {"state_class": "measurement"}
    )
    return {
        "pv": "sensor.pv_energy",
        "wind": "sensor.wind_energy",
        "inverter": "sensor.inverter_energy",
        "house": "sensor.house_energy",
    }


SOURCE_ID = "01JSOURCE000000000000000000"
PRODUCER_ID = "01JPRODUCER0000000000000000"
CONSUMER_ID = "01JCONSUMER0000000000000000"
ENTRY_ID = "01JGRIDENTRY000000000000000"
PRODUCER_TOKEN = "producer-token-0123456789abcdef"


def _seed(word: str) -> str:
    return (word + "9" * 81)[:81]


SUBENTRIES = [
    {
        "subentry_id": SOURCE_ID,
        "subentry_type": "source",
        "title": "Roof PV",
        "unique_id": None,
        "data": {
            CONF_METER: "sensor.pv_energy",
            CONF_SEED: _seed("SOURCESEED"),
            CONF_SIDE_KEY: _seed("SOURCESIDEKEY"),
            CONF_REGISTRATION_ID: "source-registration-1",
            CONF_PRODUCER_URL: "",
        },
    },
    {
        "subentry_id": PRODUCER_ID,
        "subentry_type": "producer",
        "title": "Inverter",
        "unique_id": None,
        "data": {
            CONF_METER: "sensor.inverter_energy",
            CONF_SEED: _seed("PRODUCERSEED"),
            CONF_SIDE_KEY: _seed("PRODUCERSIDEKEY"),
            CONF_WALLET_SEED: _seed("PRODUCERWALLET"),
            CONF_REGISTRATION_ID: "producer-registration-1",
            CONF_API_TOKEN: PRODUCER_TOKEN,
            CONF_SOURCES: [SOURCE_ID],
            CONF_PRICE: 50,
        },
    },
    {
        "subentry_id": CONSUMER_ID,
        "subentry_type": "consumer",
        "title": "House",
        "unique_id": None,
        "data": {
            CONF_METER: "sensor.house_energy",
            CONF_SEED: _seed("CONSUMERSEED"),
            CONF_SIDE_KEY: _seed("CONSUMERSIDEKEY"),
            CONF_WALLET_SEED: _seed("CONSUMERWALLET"),
            CONF_REGISTRATION_ID: "consumer-registration-1",
        },
    },
]


@pytest.fixture
def fake_network() -> Generator[FakeNetwork]:
    """The grid, node and Tangle the runtime talks to."""
    network = FakeNetwork(HOME_ASSISTANT_PROTOCOL)
    with patch("custom_components.p2p_energy.coordinator.GridConnection", network):
        yield network


@pytest.fixture
def trading_entry(hass: HomeAssistant) -> MockConfigEntry:
    """A grid connection with a source, a producer owning it and a consumer."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        entry_id=ENTRY_ID,
        title="grid.example:8080",
        unique_id=GRID_URL,
        data={CONF_GRID_URL: GRID_URL, CONF_NODE_URL: NODE_URL},
        options={CONF_PUBLISH_INTERVAL: 60, CONF_MAX_POWER: 100.0, CONF_MIN_WEIGHT_MAGNITUDE: 9},
        subentries_data=SUBENTRIES,
    )
    entry.add_to_hass(hass)
    return entry


@pytest.fixture
async def loaded_entry(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    fake_network: FakeNetwork,
    trading_entry: MockConfigEntry,
    meters: dict[str, str],
) -> MockConfigEntry:
    """The trading entry, set up at a fixed instant."""
    freezer.move_to("2025-03-01T12:00:10+00:00")
    assert await hass.config_entries.async_setup(trading_entry.entry_id)
    await hass.async_block_till_done()
    return trading_entry
