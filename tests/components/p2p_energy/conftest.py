"""Fixtures of the P2P Energy Grid integration tests."""

from __future__ import annotations

from typing import TYPE_CHECKING
from unittest.mock import AsyncMock, patch

import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.p2p_energy.const import CONF_GRID_URL, CONF_NODE_URL, DOMAIN

if TYPE_CHECKING:
    from collections.abc import Generator

    from homeassistant.core import HomeAssistant

GRID_URL = "http://grid.example:8080"
NODE_URL = "http://grid.example:14265"

ENERGY_ATTRIBUTES = {
    "unit_of_measurement": "kWh",
    "state_class": "total_increasing",
    "device_class": "energy",
}


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
