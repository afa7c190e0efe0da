"""Producers announce their expected output from a solar forecast entity.

A producer subentry may name a forecast entity (``forecast_entity``). Its hourly
forecast is read, in this order, from:

1. the energy platform of the entity's integration (``async_get_solar_forecast``:
   what the Energy dashboard shows for Forecast.Solar, Solcast and others), as
   ``wh_hours`` (Wh per hour from each ISO time);
2. the entity's own ``wh_period`` or ``wh_hours`` attribute in the same form (the
   Open-Meteo Solar Forecast and Forecast.Solar style attributes);
3. the entity's state as the energy of the next hour (Forecast.Solar's
   "Estimated energy production - next hour", in Wh, kWh or MWh).

The forecast is announced when it changes and hourly; the producer sends it once,
with its next output message (:meth:`Producer.announce_expected_output`).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final

from homeassistant.const import UnitOfEnergy
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, State, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event, async_track_time_interval
from homeassistant.loader import IntegrationNotFound, async_get_integration
from homeassistant.util import dt as dt_util

from .const import CONF_FORECAST_ENTITY, LOGGER, SUBENTRY_PRODUCER
from .protocol.errors import PayloadError
from .protocol.expected_output import MAX_EXPECTED_STEPS, MAX_STEP_MS, ExpectedOutput
from .protocol.household import Producer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .coordinator import P2PEnergyConfigEntry

HOUR: Final = timedelta(hours=1)
HOUR_MS: Final = 3_600_000
WH_PER_UNIT: Final = {UnitOfEnergy.WATT_HOUR: 1.0, UnitOfEnergy.KILO_WATT_HOUR: 1e3, "MWh": 1e6}


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def from_wh_periods(periods: Mapping[Any, Any], now: datetime) -> ExpectedOutput | None:
    """Wh per period keyed by each period's start (ISO text or datetime), from the
    period holding ``now`` on; gaps count as 0. None when nothing lies ahead."""
    starts: dict[int, float] = {}
    for key, value in periods.items():
        when = key if isinstance(key, datetime) else dt_util.parse_datetime(str(key))
        if when is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value) or value < 0:
            continue
        starts[_ms(dt_util.as_utc(when))] = value / 1000
    ordered = sorted(starts)
    steps = [later - earlier for earlier, later in pairwise(ordered)]
    step = min((s for s in steps if s > 0), default=HOUR_MS)
    if step > MAX_STEP_MS:
        return None
    now_ms = _ms(now)
    ahead = [start for start in ordered if start + step > now_ms]
    if not ahead:
        return None
    first = ahead[0]
    count = min(MAX_EXPECTED_STEPS, (ahead[-1] - first) // step + 1)
    outputs = tuple(round(starts.get(first + i * step, 0.0), 6) for i in range(count))
    try:
        return ExpectedOutput(first, step, outputs)
    except PayloadError:
        return None


def from_state(state: State, now: datetime) -> ExpectedOutput | None:
    """The forecast an entity carries itself (attributes, else its state)."""
    for attribute in ("wh_period", "wh_hours"):
        periods = state.attributes.get(attribute)
        if isinstance(periods, dict) and periods:
            return from_wh_periods(periods, now)
    scale = WH_PER_UNIT.get(str(state.attributes.get("unit_of_measurement")))
    try:
        energy = float(state.state)
    except ValueError:
        return None
    if scale is None or not math.isfinite(energy) or energy < 0:
        return None
    return ExpectedOutput(_ms(now), HOUR_MS, (round(energy * scale / 1000, 6),))


async def async_read_forecast(hass: HomeAssistant, entity_id: str) -> ExpectedOutput | None:
    """The expected output ``entity_id`` forecasts (see the module documentation)."""
    now = dt_util.utcnow()
    entry = er.async_get(hass).async_get(entity_id)
    if entry is not None and entry.config_entry_id is not None:
        try:
            integration = await async_get_integration(hass, entry.platform)
            platform = await integration.async_get_platform("energy")
        except (IntegrationNotFound, ImportError):
            platform = None
        solar = getattr(platform, "async_get_solar_forecast", None)
        if solar is not None:
            forecast = await solar(hass, entry.config_entry_id)
            if isinstance(forecast, dict) and isinstance(forecast.get("wh_hours"), dict):
                return from_wh_periods(forecast["wh_hours"], now)
    state = hass.states.get(entity_id)
    return None if state is None else from_state(state, now)


@callback
def async_follow_forecasts(hass: HomeAssistant, entry: P2PEnergyConfigEntry) -> None:
    """Announce each producer's forecast when its entity changes and every hour."""
    coordinator = entry.runtime_data
    producers: dict[str, Producer] = {}
    for subentry_id, subentry in entry.subentries.items():
        entity_id = subentry.data.get(CONF_FORECAST_ENTITY)
        participant = coordinator.participants.get(subentry_id)
        if (
            subentry.subentry_type == SUBENTRY_PRODUCER
            and entity_id
            and isinstance(participant, Producer)
        ):
            producers[entity_id] = participant
    if not producers:
        return
    announced: dict[str, ExpectedOutput | None] = {}

    async def announce(entity_id: str) -> None:
        try:
            expected = await async_read_forecast(hass, entity_id)
        except Exception:
            LOGGER.exception("The forecast of %s could not be read", entity_id)
            return
        if expected is not None and expected != announced.get(entity_id):
            announced[entity_id] = expected
            producers[entity_id].announce_expected_output(expected)

    async def announce_all(_now: datetime | None = None) -> None:
        for entity_id in producers:
            await announce(entity_id)

    @callback
    def changed(event: Event[EventStateChangedData]) -> None:
        entry.async_create_background_task(
            hass, announce(event.data["entity_id"]), f"announce {event.data['entity_id']}"
        )

    entry.async_on_unload(async_track_state_change_event(hass, list(producers), changed))
    entry.async_on_unload(async_track_time_interval(hass, announce_all, HOUR))
    entry.async_create_background_task(hass, announce_all(), "announce expected output")
