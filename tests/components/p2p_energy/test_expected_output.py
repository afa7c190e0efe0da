"""Producers announce their expected output from a solar forecast entity."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from homeassistant.core import State
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    mock_platform,
)

from custom_components.p2p_energy.const import CONF_FORECAST_ENTITY
from custom_components.p2p_energy.expected_output import (
    async_read_forecast,
    from_state,
    from_wh_periods,
)
from custom_components.p2p_energy.protocol.expected_output import ExpectedOutput

from .conftest import PRODUCER_ID

if TYPE_CHECKING:
    from freezegun.api import FrozenDateTimeFactory
    from homeassistant.core import HomeAssistant

    from tests.engine.fake_network import FakeNetwork

NOW = datetime(2025, 3, 1, 12, 0, 10, tzinfo=dt_util.UTC)
HOUR_MS = 3_600_000
NOON_MS = int(datetime(2025, 3, 1, 12, tzinfo=dt_util.UTC).timestamp() * 1000)


def test_hourly_wh_from_the_current_hour_on() -> None:
    periods = {
        "2025-03-01T11:00:00+00:00": 900,
        "2025-03-01T12:00:00+00:00": 1500,
        "2025-03-01T13:00:00+00:00": 2500,
        "2025-03-01T15:00:00+00:00": 500,  # 14:00 is missing: nothing expected
        "not a time": 5,
        "2025-03-01T16:00:00+00:00": -1,
        "2025-03-01T17:00:00+00:00": True,
    }
    assert from_wh_periods(periods, NOW) == ExpectedOutput(NOON_MS, HOUR_MS, (1.5, 2.5, 0.0, 0.5))
    assert from_wh_periods({"2025-03-01T10:00:00+00:00": 5}, NOW) is None
    assert from_wh_periods({}, NOW) is None
    daily = {"2025-03-01T00:00:00+00:00": 5, "2025-03-03T00:00:00+00:00": 5}
    assert from_wh_periods(daily, NOW) is None  # two-day steps are not announced


def test_an_entity_carries_its_forecast() -> None:
    attributes = {"wh_period": {datetime(2025, 3, 1, 12, tzinfo=dt_util.UTC): 1000}}
    assert from_state(State("sensor.a", "3", attributes), NOW) == ExpectedOutput(
        NOON_MS, HOUR_MS, (1.0,)
    )
    next_hour = State("sensor.energy_next_hour", "1234", {"unit_of_measurement": "Wh"})
    expected = from_state(next_hour, NOW)
    assert expected == ExpectedOutput(int(NOW.timestamp() * 1000), HOUR_MS, (1.234,))
    kwh = State("sensor.b", "2.5", {"unit_of_measurement": "kWh"})
    assert from_state(kwh, NOW) == ExpectedOutput(int(NOW.timestamp() * 1000), HOUR_MS, (2.5,))
    assert from_state(State("sensor.c", "unknown", {"unit_of_measurement": "kWh"}), NOW) is None
    assert from_state(State("sensor.d", "5", {"unit_of_measurement": "W"}), NOW) is None
    assert from_state(State("sensor.e", "-5", {"unit_of_measurement": "kWh"}), NOW) is None


async def test_the_energy_platform_of_the_entitys_integration_comes_first(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    solar = MockConfigEntry(domain="forecast_solar")
    solar.add_to_hass(hass)
    asked: list[str] = []

    async def solar_forecast(_hass: HomeAssistant, entry_id: str) -> dict[str, Any]:
        asked.append(entry_id)
        return {"wh_hours": {"2025-03-01T12:00:00+00:00": 750, "2025-03-01T13:00:00+00:00": 0}}

    mock_platform(
        hass, "forecast_solar.energy", SimpleNamespace(async_get_solar_forecast=solar_forecast)
    )
    entity = er.async_get(hass).async_get_or_create(
        "sensor", "forecast_solar", "today", config_entry=solar
    )
    hass.states.async_set(entity.entity_id, "9.5", {"unit_of_measurement": "kWh"})
    assert await async_read_forecast(hass, entity.entity_id) == ExpectedOutput(
        NOON_MS, HOUR_MS, (0.75, 0.0)
    )
    assert asked == [solar.entry_id]
    # An entity of an integration without such a platform: its own state.
    hass.states.async_set("sensor.next_hour", "2", {"unit_of_measurement": "kWh"})
    expected = await async_read_forecast(hass, "sensor.next_hour")
    assert expected is not None
    assert expected.outputs == (2.0,)
    assert await async_read_forecast(hass, "sensor.missing") is None


async def test_a_producer_announces_its_forecast_and_its_changes(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    fake_network: FakeNetwork,
    trading_entry: MockConfigEntry,
    meters: dict[str, str],
) -> None:
    freezer.move_to(NOW)
    forecast_entity = "sensor.energy_next_hour"
    hass.states.async_set(forecast_entity, "1.5", {"unit_of_measurement": "kWh"})
    subentry = trading_entry.subentries[PRODUCER_ID]
    hass.config_entries.async_update_subentry(
        trading_entry, subentry, data={**subentry.data, CONF_FORECAST_ENTITY: forecast_entity}
    )
    assert await hass.config_entries.async_setup(trading_entry.entry_id)
    await hass.async_block_till_done()
    producer = trading_entry.runtime_data.participants[PRODUCER_ID]
    assert producer.expected_output is not None
    assert producer.expected_output.outputs == (1.5,)
    # The engine sends it with the next output (tests/engine); here it is taken away.
    producer.announce_expected_output(None)
    # A new forecast is announced again; the same one an hour later is not.
    hass.states.async_set(forecast_entity, "2.0", {"unit_of_measurement": "kWh"})
    await hass.async_block_till_done()
    assert producer.expected_output is not None
    assert producer.expected_output.outputs == (2.0,)
    producer.announce_expected_output(None)
    hass.states.async_set(forecast_entity, "2.0", {"unit_of_measurement": "kWh"})
    await hass.async_block_till_done()
    assert producer.expected_output is None  # the same forecast is not announced twice
    freezer.move_to(NOW + timedelta(hours=1, seconds=1))
    async_fire_time_changed(hass, NOW + timedelta(hours=1, seconds=1))
    await hass.async_block_till_done()
    # Its start moved with the clock, so it is a new announcement.
    assert producer.expected_output is not None


def test_an_implausible_forecast_is_not_announced() -> None:
    assert from_wh_periods({"2025-03-01T12:00:00+00:00": 1e13}, NOW) is None


async def test_an_integration_without_an_energy_platform_falls_back_to_the_state(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    other = MockConfigEntry(domain="not_an_integration")
    other.add_to_hass(hass)
    entity = er.async_get(hass).async_get_or_create(
        "sensor", "not_an_integration", "next_hour", config_entry=other
    )
    hass.states.async_set(entity.entity_id, "500", {"unit_of_measurement": "Wh"})
    expected = await async_read_forecast(hass, entity.entity_id)
    assert expected is not None
    assert expected.outputs == (0.5,)


async def test_a_failing_forecast_platform_announces_nothing(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    fake_network: FakeNetwork,
    trading_entry: MockConfigEntry,
    meters: dict[str, str],
) -> None:
    freezer.move_to(NOW)
    solar = MockConfigEntry(domain="forecast_solar")
    solar.add_to_hass(hass)

    async def broken(_hass: HomeAssistant, _entry_id: str) -> dict[str, Any]:
        raise RuntimeError("the forecast service is down")

    mock_platform(hass, "forecast_solar.energy", SimpleNamespace(async_get_solar_forecast=broken))
    entity = er.async_get(hass).async_get_or_create(
        "sensor", "forecast_solar", "today", config_entry=solar
    )
    hass.states.async_set(entity.entity_id, "9.5", {"unit_of_measurement": "kWh"})
    subentry = trading_entry.subentries[PRODUCER_ID]
    hass.config_entries.async_update_subentry(
        trading_entry, subentry, data={**subentry.data, CONF_FORECAST_ENTITY: entity.entity_id}
    )
    assert await hass.config_entries.async_setup(trading_entry.entry_id)
    await hass.async_block_till_done()
    assert trading_entry.runtime_data.participants[PRODUCER_ID].expected_output is None
