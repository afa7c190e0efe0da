"""The grid's price forecast in Home Assistant: the sensor, the service and the
cheapest-window blueprint acting on the sensor."""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.p2p_energy.const import DOMAIN
from custom_components.p2p_energy.forecast import FORECAST_INTERVAL

from .test_blueprints import BLUEPRINTS, use_blueprint

if TYPE_CHECKING:
    from pathlib import Path

    from freezegun.api import FrozenDateTimeFactory
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry

    from tests.engine.fake_network import FakeNetwork

SENSOR = "sensor.grid_price_forecast"
LOAD = "input_boolean.dishwasher"
NOON = datetime(2025, 3, 1, 12, 0, tzinfo=dt_util.UTC)
HOUR = timedelta(hours=1)
# Hourly prices from noon: cheapest from 15:00 to 17:00, dearer around it.
PRICES = [80, 70, 60, 20, 25, 90, 95, 60, 50, 40, 45, 30] + [100] * 12


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def forecast_answer(prices: list[float], start: datetime = NOON) -> dict[str, Any]:
    return {
        "success": True,
        "message": "OK",
        "slotSeconds": 3600,
        "strategy": "weighted-mean",
        "slots": [
            {
                "startTime": ms(start + i * HOUR),
                "endTime": ms(start + (i + 1) * HOUR),
                "price": price,
                "localPrice": None if price == 100 else price - 5,
                "demandKwh": 2.0,
                "supplyKwh": 1.0,
                "announcedKwh": 0.5,
            }
            for i, price in enumerate(prices)
        ],
    }


@pytest.fixture
def priced_network(fake_network: FakeNetwork) -> FakeNetwork:
    """The fake grid with a forecast from noon (set before the entry loads)."""
    fake_network.forecast = forecast_answer(PRICES)
    return fake_network


async def move_to(hass: HomeAssistant, freezer: FrozenDateTimeFactory, when: datetime) -> None:
    freezer.move_to(when)
    async_fire_time_changed(hass, when)
    await hass.async_block_till_done()


async def run_until(hass: HomeAssistant, freezer: FrozenDateTimeFactory, when: datetime) -> None:
    """Move on while an automation waits in a delay (``async_block_till_done`` would wait
    for its run to end): let the loop run what became due instead."""
    freezer.move_to(when)
    async_fire_time_changed(hass, when)
    for _ in range(50):
        await asyncio.sleep(0)


async def test_the_sensor_shows_the_current_slot_and_the_whole_forecast(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    priced_network: FakeNetwork,
    loaded_entry: MockConfigEntry,
) -> None:
    state = hass.states.get(SENSOR)
    assert state is not None
    assert float(state.state) == 80
    assert state.attributes["unit_of_measurement"] == "IOTA/kWh"
    forecast = state.attributes["forecast"]
    assert len(forecast) == 24
    assert forecast[3] == {
        "start": "2025-03-01T15:00:00+00:00",
        "end": "2025-03-01T16:00:00+00:00",
        "price": 20.0,
        "local_price": 15.0,
    }
    assert forecast[-1]["local_price"] is None
    # The state moves on at the slot's end, without waiting for the next fetch.
    await move_to(hass, freezer, NOON + HOUR + timedelta(seconds=1))
    assert float(hass.states.get(SENSOR).state) == 70
    # The grid goes away: the last forecast stays until the fetch fails, then it is
    # unavailable; it comes back with the grid.
    priced_network.grid_up = False
    await move_to(hass, freezer, NOON + HOUR + FORECAST_INTERVAL + timedelta(seconds=2))
    assert hass.states.get(SENSOR).state == STATE_UNAVAILABLE
    priced_network.grid_up = True
    await move_to(hass, freezer, NOON + HOUR + 2 * FORECAST_INTERVAL + timedelta(seconds=3))
    assert float(hass.states.get(SENSOR).state) == 70
    # Past the forecast's end there is no price for now.
    priced_network.forecast = forecast_answer([10.0])
    await move_to(hass, freezer, NOON + 3 * HOUR)
    assert hass.states.get(SENSOR).state == STATE_UNAVAILABLE


async def test_the_service_returns_the_forecast_and_the_cheapest_window(
    hass: HomeAssistant, priced_network: FakeNetwork, loaded_entry: MockConfigEntry
) -> None:
    answer = await hass.services.async_call(
        DOMAIN,
        "get_price_forecast",
        {"config_entry_id": loaded_entry.entry_id, "duration": {"hours": 2}},
        blocking=True,
        return_response=True,
    )
    assert answer is not None
    assert len(answer["prices"]) == 24
    assert answer["cheapest_window"] == {
        "start": "2025-03-01T15:00:00+00:00",
        "end": "2025-03-01T17:00:00+00:00",
        "price": 22.5,
    }
    # A deadline before that window: the cheapest window that still fits.
    answer = await hass.services.async_call(
        DOMAIN,
        "get_price_forecast",
        {
            "config_entry_id": loaded_entry.entry_id,
            "duration": "01:00:00",
            "deadline": "2025-03-01T14:30:00+00:00",
        },
        blocking=True,
        return_response=True,
    )
    assert answer is not None
    assert answer["cheapest_window"]["start"] == "2025-03-01T13:00:00+00:00"
    answer = await hass.services.async_call(
        DOMAIN,
        "get_price_forecast",
        {
            "config_entry_id": loaded_entry.entry_id,
            "duration": "05:00:00",
            "deadline": "2025-03-01T14:00:00+00:00",
        },
        blocking=True,
        return_response=True,
    )
    assert answer == {"prices": answer["prices"], "cheapest_window": None}
    answer = await hass.services.async_call(
        DOMAIN,
        "get_price_forecast",
        {"config_entry_id": loaded_entry.entry_id},
        blocking=True,
        return_response=True,
    )
    assert answer is not None
    assert set(answer) == {"prices"}


async def test_the_service_refuses_what_it_cannot_answer(
    hass: HomeAssistant, priced_network: FakeNetwork, loaded_entry: MockConfigEntry
) -> None:
    async def call(data: dict[str, Any]) -> None:
        await hass.services.async_call(
            DOMAIN, "get_price_forecast", data, blocking=True, return_response=True
        )

    with pytest.raises(ServiceValidationError) as refused:
        await call({"config_entry_id": "nope"})
    assert refused.value.translation_key == "unknown_config_entry"
    priced_network.grid_up = False
    with pytest.raises(HomeAssistantError) as failed:
        await call({"config_entry_id": loaded_entry.entry_id})
    assert failed.value.translation_key == "forecast_unavailable"
    priced_network.grid_up = True
    await hass.config_entries.async_unload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    with pytest.raises(ServiceValidationError) as refused:
        await call({"config_entry_id": loaded_entry.entry_id})
    assert refused.value.translation_key == "entry_not_loaded"


async def test_the_cheapest_window_blueprint_runs_the_load_on_the_forecast(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    tmp_path: Path,
    priced_network: FakeNetwork,
    loaded_entry: MockConfigEntry,
) -> None:
    """Planned at 12:30 for two hours before 20:00: the forecast sensor says 15:00 to
    17:00 is cheapest, so the dishwasher runs then and only then."""
    hass.config.config_dir = str(tmp_path)
    shutil.copytree(BLUEPRINTS, tmp_path / "blueprints" / "automation" / "p2p_energy")
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(
        hass, "input_boolean", {"input_boolean": {"dishwasher": {"initial": False}}}
    )
    await hass.config.async_set_time_zone("UTC")
    await use_blueprint(
        hass,
        "cheapest_window.yaml",
        {
            "forecast_entity": SENSOR,
            "load_switch": LOAD,
            "run_time": {"hours": 2, "minutes": 0, "seconds": 0},
            "plan_at": "12:30:00",
            "deadline": "20:00:00",
        },
    )
    await run_until(hass, freezer, NOON + timedelta(minutes=30))
    assert hass.states.get(LOAD).state == STATE_OFF
    await run_until(hass, freezer, NOON + 3 * HOUR - timedelta(seconds=5))
    assert hass.states.get(LOAD).state == STATE_OFF
    await run_until(hass, freezer, NOON + 3 * HOUR + timedelta(seconds=1))
    assert hass.states.get(LOAD).state == STATE_ON
    await run_until(hass, freezer, NOON + 5 * HOUR - timedelta(seconds=5))
    assert hass.states.get(LOAD).state == STATE_ON
    await run_until(hass, freezer, NOON + 5 * HOUR + timedelta(seconds=2))
    assert hass.states.get(LOAD).state == STATE_OFF


async def test_the_flexible_load_runs_in_the_forecasts_cheapest_hours(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    tmp_path: Path,
    priced_network: FakeNetwork,
    loaded_entry: MockConfigEntry,
) -> None:
    """Three cheapest hours of the forecast: 15:00, 16:00 and 23:00 (20, 25, 30)."""
    hass.config.config_dir = str(tmp_path)
    shutil.copytree(BLUEPRINTS, tmp_path / "blueprints" / "automation" / "p2p_energy")
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(
        hass, "input_boolean", {"input_boolean": {"dishwasher": {"initial": False}}}
    )
    await use_blueprint(
        hass,
        "flexible_load.yaml",
        {"price_entity": SENSOR, "load_switch": LOAD, "price_limit": 0, "cheapest_hours": 3},
    )
    for hour, expected in ((14, STATE_OFF), (15, STATE_ON), (16, STATE_ON), (17, STATE_OFF)):
        await move_to(hass, freezer, NOON.replace(hour=hour) + timedelta(seconds=1))
        assert hass.states.get(LOAD).state == expected, hour
