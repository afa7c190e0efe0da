"""Home Assistant energy sensors as the household engine's meters.

A meter's state is a running total in Wh, kWh or MWh whose state class is
``total`` or ``total_increasing``; anything else holds no usable energy. What a
sample means for the period (a delta, a reset, a dip, nothing) is the engine's
:func:`~.protocol.household.meter.advance_meter`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from homeassistant.components.sensor import ATTR_STATE_CLASS, SensorStateClass
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT, UnitOfEnergy
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from homeassistant.util.unit_conversion import EnergyConverter

from .protocol.household import MeterKind, MeterReading

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from homeassistant.core import HomeAssistant, State

ATTR_LAST_RESET = "last_reset"
ENERGY_UNITS = frozenset(
    {UnitOfEnergy.WATT_HOUR, UnitOfEnergy.KILO_WATT_HOUR, UnitOfEnergy.MEGA_WATT_HOUR}
)
METER_STATE_CLASSES = frozenset({SensorStateClass.TOTAL, SensorStateClass.TOTAL_INCREASING})


class EntityMeter:
    """The meter behind an energy sensor entity."""

    def __init__(self, hass: HomeAssistant, entity_id: str) -> None:
        """Read ``entity_id``'s state when sampled."""
        self._hass = hass
        self.entity_id = entity_id

    def read(self, now: datetime) -> MeterReading | None:
        """The sensor's running total now, or None when it holds no usable energy."""
        return reading_from_state(self._hass.states.get(self.entity_id), now)


def reading_from_state(state: State | None, now: datetime) -> MeterReading | None:
    """Turn a sensor state into a sample, or None when it holds no usable energy."""
    if state is None:
        return None
    unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
    if unit not in ENERGY_UNITS:
        return None
    try:
        value = float(state.state)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    state_class = state.attributes.get(ATTR_STATE_CLASS)
    if state_class == SensorStateClass.TOTAL:
        last_reset: datetime | None = None
        if raw_reset := state.attributes.get(ATTR_LAST_RESET):
            last_reset = dt_util.parse_datetime(str(raw_reset))
        return MeterReading(
            EnergyConverter.convert(value, unit, UnitOfEnergy.KILO_WATT_HOUR),
            now,
            MeterKind.TOTAL,
            last_reset,
        )
    if state_class != SensorStateClass.TOTAL_INCREASING or value < 0:
        # A total_increasing meter never reads below zero; such a value is garbage.
        return None
    return MeterReading(EnergyConverter.convert(value, unit, UnitOfEnergy.KILO_WATT_HOUR), now)


def meter_problem(hass: HomeAssistant, entity_id: str, in_use: Iterable[str]) -> str | None:
    """Return why ``entity_id`` cannot be wrapped as a meter, or None if it can.

    A meter must be an energy sensor in Wh, kWh or MWh whose state class is
    total or total_increasing (its state is a running total), and not already
    wrapped by another source, producer or consumer (``in_use``).
    """
    unit: Any
    state_class: Any
    if (state := hass.states.get(entity_id)) is not None:
        unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
        state_class = state.attributes.get(ATTR_STATE_CLASS)
    elif (entry := er.async_get(hass).async_get(entity_id)) is not None:
        # The sensor is registered but has no state yet (its integration is starting).
        unit = entry.unit_of_measurement
        state_class = (entry.capabilities or {}).get(ATTR_STATE_CLASS)
    else:
        return "meter_not_found"
    if unit not in ENERGY_UNITS:
        return "meter_not_energy"
    if state_class not in METER_STATE_CLASSES:
        return "meter_not_total"
    if entity_id in in_use:
        return "meter_in_use"
    return None
