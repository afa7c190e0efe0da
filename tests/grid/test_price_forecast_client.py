"""The household side of the forecast: the grid client reads it, the cheapest window."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from p2p_energy_protocol.errors import GridUnavailableError
from p2p_energy_protocol.price_forecast import (
    ForecastSlot,
    PriceForecast,
    Window,
    parse_price_forecast,
)

from grid_server.grid.clock import system_clock

from .harness import running_api

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database

HOUR = 3_600_000


def hourly(*prices: float) -> PriceForecast:
    return PriceForecast(
        3600,
        tuple(
            ForecastSlot(i * HOUR, (i + 1) * HOUR, price, price, 1.0, 0.5, 0.0)
            for i, price in enumerate(prices)
        ),
    )


def test_the_cheapest_window_before_the_deadline() -> None:
    forecast = hourly(50, 40, 10, 20, 90, 5)
    # The last slot ends at 6 h: a two-hour window from 5 h is not covered.
    assert forecast.cheapest_window(2 * HOUR, 0, 6 * HOUR) == Window(2 * HOUR, 4 * HOUR, 15.0)
    # An earlier deadline, and a start within a slot (now), weighted by time.
    assert forecast.cheapest_window(2 * HOUR, 0, 3 * HOUR) == Window(HOUR, 3 * HOUR, 25.0)
    assert forecast.cheapest_window(HOUR, HOUR // 2, 2 * HOUR) == Window(HOUR, 2 * HOUR, 40.0)
    window = forecast.cheapest_window(HOUR, HOUR + HOUR // 2, 3 * HOUR)
    assert window == Window(2 * HOUR, 3 * HOUR, 10.0)
    assert forecast.cheapest_window(3 * HOUR, 0, 2 * HOUR) is None
    # Equal prices: the earliest wins.
    assert hourly(7, 7, 7).cheapest_window(HOUR, 0, 3 * HOUR) == Window(0, HOUR, 7.0)
    with pytest.raises(ValueError, match="positive duration"):
        forecast.cheapest_window(0, 0, HOUR)


def test_the_slot_at_a_time_and_mean_prices() -> None:
    forecast = hourly(50, 40)
    slot = forecast.slot_at(HOUR + 5)
    assert slot is not None
    assert slot.price == 40
    assert forecast.slot_at(2 * HOUR) is None
    assert forecast.mean_price(HOUR // 2, HOUR + HOUR // 2) == 45.0
    assert forecast.mean_price(HOUR, HOUR) is None
    assert forecast.mean_price(HOUR, 3 * HOUR) is None


ROW = {
    "startTime": 0,
    "endTime": HOUR,
    "price": 10,
    "localPrice": None,
    "demandKwh": 1,
    "supplyKwh": 0,
    "announcedKwh": 0,
}


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"slots": []}, "slot length"),
        ({"slotSeconds": True, "slots": []}, "slot length"),
        ({"slotSeconds": 900}, "no slots"),
        ({"slotSeconds": 900, "slots": "x"}, "no slots"),
        ({"slotSeconds": 900, "slots": [5]}, "not an object"),
        ({"slotSeconds": 900, "slots": [{**ROW, "price": "5"}]}, "'price' is not a number"),
        ({"slotSeconds": 900, "slots": [{**ROW, "price": -1}]}, "'price' is negative"),
        ({"slotSeconds": 900, "slots": [{**ROW, "startTime": 1.5}]}, "not a time"),
        ({"slotSeconds": 900, "slots": [{**ROW, "endTime": 0}]}, "not in order"),
        ({"slotSeconds": 900, "slots": [ROW, ROW]}, "not in order"),
    ],
)
def test_a_malformed_forecast_is_the_grids_fault(answer: dict[str, Any], problem: str) -> None:
    with pytest.raises(GridUnavailableError, match=problem):
        parse_price_forecast(answer)


async def test_the_grid_client_reads_a_real_grids_forecast(db: Database) -> None:
    async with running_api(db, slot_seconds=3600) as api:
        forecast = await api.client.price_forecast()
    assert forecast.slot_seconds == 3600
    assert len(forecast.slots) == 24
    now = system_clock()
    current = forecast.slot_at(now)
    assert current is not None
    # No producers and no history: every slot is priced at the import price.
    assert {slot.price for slot in forecast.slots} == {100.0}
    assert current.local_price is None
