"""Sensors of sources, producers, consumers and the grid connection."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory, UnitOfEnergy
from homeassistant.helpers import device_registry as dr

from .const import (
    PRODUCER_API_BASE,
    SUBENTRY_CONSUMER,
    SUBENTRY_PRODUCER,
    SUBENTRY_SOURCE,
    UNIT_IOTA,
    UNIT_IOTA_PER_KWH,
)
from .entity import P2PEnergyEntity, grid_device_info, participant_device_info
from .forecast import forecast_sensors
from .protocol.household import Consumer, Participant, Producer, WalletMember

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from homeassistant.core import HomeAssistant
    from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
    from homeassistant.helpers.typing import StateType

    from .coordinator import GridStatus, P2PEnergyConfigEntry, P2PEnergyCoordinator

# Entities only change when the coordinator or a participant says so.
PARALLEL_UPDATES = 0

ATTR_ADDRESS = "address"
ATTR_ROOT = "root"
ATTR_LAST_PUBLISH = "last_publish"
ABBREVIATED_TRYTES = 9  # shown at either end of a shortened root or address

ALL_KINDS = frozenset({SUBENTRY_SOURCE, SUBENTRY_PRODUCER, SUBENTRY_CONSUMER})


@dataclass(frozen=True, kw_only=True)
class ParticipantSensorDescription(SensorEntityDescription):
    """A sensor of a source, producer or consumer."""

    kinds: frozenset[str]
    value_fn: Callable[[Participant], StateType | datetime]
    attributes_fn: Callable[[Participant], dict[str, Any]] | None = None
    needs_network: bool = False
    """Unavailable while the grid or node cannot be reached (the value comes from them)."""
    in_currency: bool = False
    """The IOTA figure in Home Assistant's currency, at the grid's rate."""


def _owed(participant: Participant) -> int | None:
    assert isinstance(participant, Consumer)
    received = participant.state.payment_request
    return received.request.owed if received else None


def _pending(participant: Participant) -> int | None:
    assert isinstance(participant, Consumer)
    received = participant.state.payment_request
    return received.request.pending if received else None


def _wallet_balance(participant: Participant) -> int | None:
    assert isinstance(participant, WalletMember)
    return participant.wallet_balance


def _payments_received(participant: Participant) -> int | None:
    assert isinstance(participant, Producer)
    return participant.payments_received


def _registered_sources(participant: Participant) -> int:
    assert isinstance(participant, Producer)
    return participant.registered_sources


def _wallet_address(participant: Participant) -> str | None:
    if isinstance(participant, Producer):
        return participant.payment_address
    assert isinstance(participant, Consumer)
    return participant.wallet_address


def abbreviated(value: str | None) -> str | None:
    """An 81-tryte root or address as its first and last nine trytes: the full value
    does not fit an entity row (it overflowed the device page); it is an attribute."""
    if value is None or len(value) <= 2 * ABBREVIATED_TRYTES + 1:
        return value
    return f"{value[:ABBREVIATED_TRYTES]}…{value[-ABBREVIATED_TRYTES:]}"


def _last_publish_attributes(participant: Participant) -> dict[str, Any]:
    last = participant.state.last_publish
    return {ATTR_LAST_PUBLISH: last.isoformat() if last else None}


def _registration_api(participant: Participant) -> str:
    assert isinstance(participant, Producer)
    return PRODUCER_API_BASE.format(token=participant.api_token)


PARTICIPANT_SENSORS: tuple[ParticipantSensorDescription, ...] = (
    ParticipantSensorDescription(
        key="energy_published",
        translation_key="energy_published",
        kinds=ALL_KINDS,
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        value_fn=lambda participant: participant.state.energy_published_kwh,
        # When the participant last published: here, on a sensor with a unit, it stays out
        # of the logbook (a timestamp sensor of its own put one entry there per period).
        attributes_fn=_last_publish_attributes,
    ),
    ParticipantSensorDescription(
        key="amount_owed",
        translation_key="amount_owed",
        kinds=frozenset({SUBENTRY_CONSUMER}),
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        native_unit_of_measurement=UNIT_IOTA,
        suggested_display_precision=0,
        value_fn=_owed,
        needs_network=True,
    ),
    ParticipantSensorDescription(
        key="amount_paid",
        translation_key="amount_paid",
        kinds=frozenset({SUBENTRY_CONSUMER}),
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        native_unit_of_measurement=UNIT_IOTA,
        suggested_display_precision=0,
        value_fn=lambda participant: participant.state.paid_total,
    ),
    ParticipantSensorDescription(
        # Seen by the grid, not confirmed yet: it does not lower the amount owed.
        key="amount_pending",
        translation_key="amount_pending",
        kinds=frozenset({SUBENTRY_CONSUMER}),
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        native_unit_of_measurement=UNIT_IOTA,
        suggested_display_precision=0,
        value_fn=_pending,
        needs_network=True,
    ),
    ParticipantSensorDescription(
        key="wallet_balance",
        translation_key="wallet_balance",
        kinds=frozenset({SUBENTRY_PRODUCER, SUBENTRY_CONSUMER}),
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        native_unit_of_measurement=UNIT_IOTA,
        suggested_display_precision=0,
        value_fn=_wallet_balance,
        needs_network=True,
    ),
    ParticipantSensorDescription(
        key="payments_received",
        translation_key="payments_received",
        kinds=frozenset({SUBENTRY_PRODUCER}),
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        native_unit_of_measurement=UNIT_IOTA,
        suggested_display_precision=0,
        value_fn=_payments_received,
        needs_network=True,
    ),
    ParticipantSensorDescription(
        key="registered_sources",
        translation_key="registered_sources",
        kinds=frozenset({SUBENTRY_PRODUCER}),
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=_registered_sources,
    ),
    ParticipantSensorDescription(
        key="last_publish",
        translation_key="last_publish",
        kinds=ALL_KINDS,
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        # Changes every period, so each publication would be a logbook entry: off unless
        # wanted; the time is the "last_publish" attribute of Energy published.
        entity_registry_enabled_default=False,
        value_fn=lambda participant: participant.state.last_publish,
    ),
    ParticipantSensorDescription(
        key="channel_root",
        translation_key="channel_root",
        kinds=ALL_KINDS,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda participant: abbreviated(participant.channel_root),
        attributes_fn=lambda participant: {ATTR_ROOT: participant.channel_root},
    ),
    ParticipantSensorDescription(
        key="queued_messages",
        translation_key="queued_messages",
        kinds=ALL_KINDS,
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda participant: len(participant.state.queue),
    ),
    ParticipantSensorDescription(
        key="wallet_address",
        translation_key="wallet_address",
        kinds=frozenset({SUBENTRY_PRODUCER, SUBENTRY_CONSUMER}),
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda participant: abbreviated(_wallet_address(participant)),
        attributes_fn=lambda participant: {ATTR_ADDRESS: _wallet_address(participant)},
    ),
    ParticipantSensorDescription(
        key="registration_api",
        translation_key="registration_api",
        kinds=frozenset({SUBENTRY_PRODUCER}),
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=_registration_api,
    ),
)


def _in_currency(description: ParticipantSensorDescription) -> ParticipantSensorDescription:
    """The currency twin of an IOTA sensor (its unit is Home Assistant's currency)."""
    return replace(
        description,
        key=f"{description.key}_currency",
        translation_key=f"{description.key}_currency",
        native_unit_of_measurement=None,
        suggested_display_precision=2,
        in_currency=True,
    )


# The currency twins are made when the grid publishes a rate of IOTA in a currency.
PARTICIPANT_SENSORS += tuple(
    _in_currency(description)
    for description in PARTICIPANT_SENSORS
    if description.native_unit_of_measurement == UNIT_IOTA
)


@dataclass(frozen=True, kw_only=True)
class GridSensorDescription(SensorEntityDescription):
    """A sensor of the grid connection."""

    value_fn: Callable[[GridStatus], StateType]
    in_currency: bool = False
    """A price per kWh in Home Assistant's currency, at the grid's rate."""


def _consensus_price(status: GridStatus) -> float | None:
    return status.consensus_price


GRID_SENSORS: tuple[GridSensorDescription, ...] = (
    GridSensorDescription(
        key="consensus_price",
        translation_key="consensus_price",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UNIT_IOTA_PER_KWH,
        suggested_display_precision=2,
        value_fn=_consensus_price,
    ),
    # The price entity for the Energy dashboard (grid consumption and return to grid).
    GridSensorDescription(
        key="consensus_price_currency",
        translation_key="consensus_price_currency",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=4,
        value_fn=_consensus_price,
        in_currency=True,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: P2PEnergyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the grid's sensors and each participant's sensors to its subentry."""
    coordinator = entry.runtime_data
    # The grid's device is registered first: the participants' devices hang under it.
    grid_device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, **grid_device_info(coordinator)
    )
    # Figures in a currency exist once the grid has published a rate.
    in_currency = coordinator.known_rate is not None
    async_add_entities(
        GridSensor(coordinator, description)
        for description in GRID_SENSORS
        if in_currency or not description.in_currency
    )
    async_add_entities(forecast_sensors(hass, entry))
    for subentry_id, participant in coordinator.participants.items():
        async_add_entities(
            (
                ParticipantSensor(coordinator, participant, description, grid_device)
                for description in PARTICIPANT_SENSORS
                if participant.kind in description.kinds
                and (in_currency or not description.in_currency)
            ),
            config_subentry_id=subentry_id,
        )


class CurrencyMixin(P2PEnergyEntity, SensorEntity):
    """A figure in Home Assistant's currency: only while the grid's rate is in it."""

    entity_description: GridSensorDescription | ParticipantSensorDescription

    def _set_currency(self, coordinator: P2PEnergyCoordinator) -> None:
        if self.entity_description.in_currency:
            currency = coordinator.hass.config.currency
            self._attr_translation_placeholders = {"currency": currency}
            per_kwh = isinstance(self.entity_description, GridSensorDescription)
            self._attr_native_unit_of_measurement = f"{currency}/kWh" if per_kwh else currency
            if not per_kwh:
                self._attr_device_class = SensorDeviceClass.MONETARY

    def _currency_available(self) -> bool:
        return (
            not self.entity_description.in_currency
            or self.coordinator.home_currency_rate() is not None
        )

    def _in_currency(self, iota: Any, *, price: bool = False) -> Any:
        """``iota`` (IOTA, or IOTA per kWh) in Home Assistant's currency."""
        rate = self.coordinator.home_currency_rate()
        if not self.entity_description.in_currency or iota is None:
            return iota
        if rate is None:
            return None
        if price:  # six places: a cent per kWh would hide most prices of the grid
            return rate.value(float(iota)).quantize(Decimal("0.000001"))
        return rate.amount(int(iota))


class GridSensor(CurrencyMixin):
    """A figure the grid publishes for everybody."""

    entity_description: GridSensorDescription

    def __init__(
        self, coordinator: P2PEnergyCoordinator, description: GridSensorDescription
    ) -> None:
        """Attach the sensor to the grid device."""
        super().__init__(coordinator)
        self.entity_description = description
        self._attr_unique_id = f"{coordinator.config_entry.entry_id}_{description.key}"
        self._attr_device_info = grid_device_info(coordinator)
        self._set_currency(coordinator)

    @property
    def available(self) -> bool:
        """Available once the grid has answered (setup does not wait for it)."""
        return (
            super().available and self.coordinator.data is not None and self._currency_available()
        )

    @property
    def native_value(self) -> StateType | Decimal:
        """The figure from the last successful poll."""
        value = self.entity_description.value_fn(self.coordinator.data)
        return self._in_currency(value, price=True)  # type: ignore[no-any-return]


class ParticipantSensor(CurrencyMixin):
    """A figure of one source, producer or consumer."""

    entity_description: ParticipantSensorDescription
    # Changes every period: kept out of the recorder's attribute table.
    _unrecorded_attributes = frozenset({ATTR_LAST_PUBLISH})

    def __init__(
        self,
        coordinator: P2PEnergyCoordinator,
        participant: Participant,
        description: ParticipantSensorDescription,
        grid_device: dr.DeviceEntry,
    ) -> None:
        """Attach the sensor to the participant's device."""
        super().__init__(coordinator)
        self.participant = participant
        self.entity_description = description
        # The subentry id never changes, so neither does the unique id.
        self._attr_unique_id = f"{participant.participant_id}_{description.key}"
        device = participant_device_info(participant, grid_device)
        if isinstance(participant, Producer | Consumer):
            # Its statements: the participant's page of the grid's portal.
            device["configuration_url"] = coordinator.participant_portal_url(
                participant.registration_id
            )
        self._attr_device_info = device
        self._set_currency(coordinator)

    @property
    def available(self) -> bool:
        """Local figures stay available; network figures need the grid."""
        if not self._currency_available():
            return False
        if self.entity_description.needs_network:
            return super().available
        return True

    @property
    def native_value(self) -> StateType | datetime | Decimal:
        """The participant's current figure."""
        return self._in_currency(self.entity_description.value_fn(self.participant))  # type: ignore[no-any-return]

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """What the state does not show (the full root or address, the last publication)."""
        attributes_fn = self.entity_description.attributes_fn
        return None if attributes_fn is None else attributes_fn(self.participant)
