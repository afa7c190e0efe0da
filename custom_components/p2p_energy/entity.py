"""Base entities: one device per grid connection and one per participant."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeassistant.helpers.device_registry import DeviceEntry, DeviceEntryType, DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .compat import via_device
from .const import DOMAIN
from .coordinator import P2PEnergyCoordinator

if TYPE_CHECKING:
    from .protocol.household import Participant

MANUFACTURER = "P2P Energy Grid"
MODELS = {"source": "Source", "producer": "Producer", "consumer": "Consumer"}


def grid_device_info(coordinator: P2PEnergyCoordinator) -> DeviceInfo:
    """The device of the grid connection itself.

    Named "Grid" (translated), not after the entry's title (the grid's host and port),
    so its entities are ``sensor.grid_…``; which grid it is shows on its entry.
    """
    entry = coordinator.config_entry
    return DeviceInfo(
        identifiers={(DOMAIN, entry.entry_id)},
        translation_key="grid",
        manufacturer=MANUFACTURER,
        model="Grid",
        entry_type=DeviceEntryType.SERVICE,
        configuration_url=coordinator.connection.grid_url,
    )


def participant_device_info(participant: Participant, grid_device: DeviceEntry) -> DeviceInfo:
    """The device of a source, producer or consumer (identified by its subentry),
    under the grid's device."""
    return DeviceInfo(
        identifiers={(DOMAIN, participant.participant_id)},
        name=participant.name,
        manufacturer=MANUFACTURER,
        model=MODELS[participant.kind],
        entry_type=DeviceEntryType.SERVICE,
        **via_device(grid_device),
    )


class P2PEnergyEntity(CoordinatorEntity[P2PEnergyCoordinator]):
    """An entity of this integration; names come from translation keys."""

    _attr_has_entity_name = True
