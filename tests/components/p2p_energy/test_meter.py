"""Energy sensors as meters: units, state classes, unusable states, last_reset."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from homeassistant.core import State

from custom_components.p2p_energy.meter import reading_from_state
from custom_components.p2p_energy.protocol.household import MeterKind, MeterReading

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RESET_1 = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, None),
        (
            State(
                "sensor.m",
                "12.5",
                {"unit_of_measurement": "kWh", "state_class": "total_increasing"},
            ),
            12.5,
        ),
        (
            State(
                "sensor.m",
                "12500",
                {"unit_of_measurement": "Wh", "state_class": "total_increasing"},
            ),
            12.5,
        ),
        (
            State(
                "sensor.m",
                "0.0125",
                {"unit_of_measurement": "MWh", "state_class": "total_increasing"},
            ),
            12.5,
        ),
        (
            State(
                "sensor.m", "12.5", {"unit_of_measurement": "W", "state_class": "total_increasing"}
            ),
            None,
        ),
        (
            State(
                "sensor.m",
                "unavailable",
                {"unit_of_measurement": "kWh", "state_class": "total_increasing"},
            ),
            None,
        ),
        (State("sensor.m", "unknown", {"unit_of_measurement": "kWh"}), None),
        (
            State(
                "sensor.m", "inf", {"unit_of_measurement": "kWh", "state_class": "total_increasing"}
            ),
            None,
        ),
        (
            State(
                "sensor.m", "-1", {"unit_of_measurement": "kWh", "state_class": "total_increasing"}
            ),
            None,
        ),
        (
            State("sensor.m", "5", {"unit_of_measurement": "kWh", "state_class": "measurement"}),
            None,
        ),
        (State("sensor.m", "-5", {"unit_of_measurement": "kWh", "state_class": "total"}), -5.0),
    ],
)
def test_reading_from_state(state: State | None, expected: float | None) -> None:
    reading = reading_from_state(state, T0)
    if expected is None:
        assert reading is None
    else:
        assert reading is not None
        assert reading.energy_kwh == pytest.approx(expected)
        assert reading.time == T0


def test_reading_from_state_total_last_reset() -> None:
    state = State(
        "sensor.m",
        "3",
        {
            "unit_of_measurement": "kWh",
            "state_class": "total",
            "last_reset": "2025-03-01T00:00:00+00:00",
        },
    )
    reading = reading_from_state(state, T0)
    assert reading == MeterReading(3.0, T0, MeterKind.TOTAL, RESET_1)
    no_reset = State("sensor.m", "3", {"unit_of_measurement": "kWh", "state_class": "total"})
    assert reading_from_state(no_reset, T0) == MeterReading(3.0, T0, MeterKind.TOTAL, None)
