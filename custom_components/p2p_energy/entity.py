"""Base entities: one device per grid connection and one per participant."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .coordinator import P2PEnergyCoordinator

if TYPE_CHECKING:
    from .participants import Participant

MANUFACTURER = "P2P Energy Grid"
MODELS = {"source": "Source", "producer": "Producer", "consumer": "Consumer"}


def grid_device_info(coordinator: P2PEnergyCoordinator) -> DeviceInfo:
    """The device of the grid connection itself."""
    entry = coordinator.config_entry
    return DeviceInfo(
        identifiers={(DOMAIN, entry.entry_id)},
        name=entry.title,
        manufacturer=MANUFACTURER,
        model="Grid",
        entry_type=DeviceEntryType.SERVICE,
        configuration_url=coordinator.connection.grid_url,
    )


def participant_device_info(
    coordinator: P2PEnergyCoordinator, participant: Participant
) -> DeviceInfo:
    """The device of a source, producer or consumer (identified by its subentry)."""
    return DeviceInfo(
        identifiers={(DOMAIN, participant.subentry_id)},
        name=participant.name,
        manufacturer=MANUFACTURER,
        model=MODELS[participant.kind],
        entry_type=DeviceEntryType.SERVICE,
        via_device=(DOMAIN, coordinator.config_entry.entry_id),
    )


class P2PEnergyEntity(CoordinatorEntity[P2PEnergyCoordinator]):
    """An entity of this integration; names come from translation keys."""

    _attr_has_entity_name = True
