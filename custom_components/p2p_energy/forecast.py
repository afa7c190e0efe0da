"""The grid's price forecast in Home Assistant: a sensor and a response-only service.

The sensor's state is the current slot's forecast price; its ``forecast`` attribute
lists every slot of the next 24 hours as ``{start, end, price, local_price}`` (ISO
times, IOTA per kWh), the way day-ahead price integrations (Nord Pool) expose their
prices, so templates and blueprints can plan with it. It is not recorded (it changes
every slot). ``p2p_energy.get_price_forecast`` returns the same list fresh from the
grid and, given a duration, the cheapest window before a deadline.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import voluptuous as vol
from homeassistant.components.sensor import SensorEntity, SensorEntityDescription
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    CALLBACK_TYPE,
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.helpers.update_coordinator import (
    CoordinatorEntity,
    DataUpdateCoordinator,
    UpdateFailed,
)
from homeassistant.util import dt as dt_util

from .const import DOMAIN, LOGGER, UNIT_IOTA_PER_KWH
from .entity import grid_device_info
from .protocol.errors import GridApiError

if TYPE_CHECKING:
    from .coordinator import P2PEnergyConfigEntry
    from .protocol.price_forecast import PriceForecast

FORECAST_INTERVAL: Final = timedelta(minutes=5)
"""How often the forecast is fetched (the grid computes it once per slot)."""
SERVICE_GET_PRICE_FORECAST: Final = "get_price_forecast"
ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_DURATION: Final = "duration"
ATTR_DEADLINE: Final = "deadline"
ATTR_FORECAST: Final = "forecast"

PRICE_FORECAST = SensorEntityDescription(
    key="price_forecast",
    translation_key="price_forecast",
    native_unit_of_measurement=UNIT_IOTA_PER_KWH,
    suggested_display_precision=2,
)
SERVICE_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Optional(ATTR_DURATION): vol.All(
            cv.time_period, cv.positive_timedelta, vol.Range(max=timedelta(hours=24))
        ),
        vol.Optional(ATTR_DEADLINE): cv.datetime,
    }
)


def _now_ms() -> int:
    return int(dt_util.utcnow().timestamp() * 1000)


def _iso(ms: int) -> str:
    return dt_util.utc_from_timestamp(ms / 1000).isoformat()


def forecast_prices(forecast: PriceForecast) -> list[dict[str, Any]]:
    """Every slot as ``{start, end, price, local_price}`` (ISO times, IOTA per kWh)."""
    return [
        {
            "start": _iso(slot.start_ms),
            "end": _iso(slot.end_ms),
            "price": slot.price,
            "local_price": slot.local_price,
        }
        for slot in forecast.slots
    ]


class ForecastCoordinator(DataUpdateCoordinator["PriceForecast"]):
    """Fetches the grid's forecast; the household's own coordinator is not involved."""

    config_entry: P2PEnergyConfigEntry

    def __init__(self, hass: HomeAssistant, entry: P2PEnergyConfigEntry) -> None:
        """Poll the grid of ``entry``."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {entry.title} forecast",
            update_interval=FORECAST_INTERVAL,
        )

    async def _async_update_data(self) -> PriceForecast:
        connection = self.config_entry.runtime_data.connection
        try:
            return await connection.price_forecast()
        except GridApiError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="forecast_unavailable",
                translation_placeholders={"grid_url": connection.grid_url, "error": str(err)},
            ) from err


class PriceForecastSensor(CoordinatorEntity[ForecastCoordinator], SensorEntity):
    """The current slot's forecast price, with the whole forecast in an attribute."""

    _attr_has_entity_name = True
    _unrecorded_attributes = frozenset({ATTR_FORECAST})

    def __init__(self, coordinator: ForecastCoordinator) -> None:
        """Attach the sensor to the grid's device."""
        super().__init__(coordinator)
        self.entity_description = PRICE_FORECAST
        entry = coordinator.config_entry
        self._attr_unique_id = f"{entry.entry_id}_{PRICE_FORECAST.key}"
        self._attr_device_info = grid_device_info(entry.runtime_data)
        self._unsub_boundary: CALLBACK_TYPE | None = None

    @property
    def _forecast(self) -> PriceForecast | None:
        """The last forecast fetched (None until the first answer)."""
        return self.coordinator.data

    @property
    def available(self) -> bool:
        """Available while the forecast covers the present."""
        return super().available and self.native_value is not None

    @property
    def native_value(self) -> float | None:
        """The forecast price of the slot we are in."""
        forecast = self._forecast
        slot = None if forecast is None else forecast.slot_at(_now_ms())
        return None if slot is None else slot.price

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """The forecast of every slot of the next 24 hours."""
        forecast = self._forecast
        return None if forecast is None else {ATTR_FORECAST: forecast_prices(forecast)}

    async def async_added_to_hass(self) -> None:
        """Also move the state on at every slot boundary."""
        await super().async_added_to_hass()
        self._schedule_boundary()
        self.async_on_remove(self._cancel_boundary)

    @callback
    def _cancel_boundary(self) -> None:
        if self._unsub_boundary is not None:
            self._unsub_boundary()
            self._unsub_boundary = None

    @callback
    def _schedule_boundary(self) -> None:
        self._cancel_boundary()
        forecast = self._forecast
        slot = None if forecast is None else forecast.slot_at(_now_ms())
        if slot is not None:
            self._unsub_boundary = async_track_point_in_utc_time(
                self.hass, self._async_boundary, dt_util.utc_from_timestamp(slot.end_ms / 1000)
            )

    @callback
    def _async_boundary(self, _now: datetime) -> None:
        self._unsub_boundary = None
        self._schedule_boundary()
        self.async_write_ha_state()

    @callback
    def _handle_coordinator_update(self) -> None:
        self._schedule_boundary()
        super()._handle_coordinator_update()


def forecast_sensors(hass: HomeAssistant, entry: P2PEnergyConfigEntry) -> list[SensorEntity]:
    """The forecast sensor of ``entry``; its first fetch runs in the background, so
    setup does not wait for the grid."""
    coordinator = ForecastCoordinator(hass, entry)
    entry.async_on_unload(coordinator.async_shutdown)
    entry.async_create_background_task(
        hass, coordinator.async_refresh(), f"{DOMAIN} first price forecast"
    )
    return [PriceForecastSensor(coordinator)]


async def _async_get_price_forecast(call: ServiceCall) -> ServiceResponse:
    entry_id: str = call.data[ATTR_CONFIG_ENTRY_ID]
    entry: P2PEnergyConfigEntry | None = call.hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="unknown_config_entry",
            translation_placeholders={"entry_id": entry_id},
        )
    if entry.state is not ConfigEntryState.LOADED:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_loaded",
            translation_placeholders={"name": entry.title},
        )
    connection = entry.runtime_data.connection
    try:
        forecast = await connection.price_forecast()
    except GridApiError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="forecast_unavailable",
            translation_placeholders={"grid_url": connection.grid_url, "error": str(err)},
        ) from err
    response: dict[str, Any] = {"prices": forecast_prices(forecast)}
    duration: timedelta | None = call.data.get(ATTR_DURATION)
    if duration is not None:
        deadline = call.data.get(ATTR_DEADLINE)
        deadline_ms = (
            int(dt_util.as_utc(deadline).timestamp() * 1000)
            if deadline is not None
            else (forecast.slots[-1].end_ms if forecast.slots else 0)
        )
        window = forecast.cheapest_window(
            int(duration.total_seconds() * 1000), _now_ms(), deadline_ms
        )
        response["cheapest_window"] = (
            None
            if window is None
            else {"start": _iso(window.start_ms), "end": _iso(window.end_ms), "price": window.price}
        )
    return response


@callback
def async_setup_forecast_service(hass: HomeAssistant) -> None:
    """Register ``p2p_energy.get_price_forecast`` (response only)."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_GET_PRICE_FORECAST,
        _async_get_price_forecast,
        schema=SERVICE_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
