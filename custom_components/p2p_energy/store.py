"""The household's durable state in Home Assistant's storage.

One ``Store`` per config entry (``.storage/p2p_energy.<entry id>``), written
atomically after every durable change; the engine's :class:`HouseholdStore`
decides what is in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeassistant.helpers.storage import Store

from .const import DOMAIN

if TYPE_CHECKING:
    from collections.abc import Mapping

    from homeassistant.core import HomeAssistant

STORAGE_VERSION = 1


def connection_store(hass: HomeAssistant, entry_id: str) -> Store[dict[str, Any]]:
    """What the integration keeps about a grid connection across restarts (the grid's slot
    length, when an outage began): ``.storage/p2p_energy.<entry id>.connection``."""
    return Store(hass, STORAGE_VERSION, f"{DOMAIN}.{entry_id}.connection", atomic_writes=True)


class EntryStoreBackend:
    """A config entry's ``Store`` as the engine's state backend."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Bind the store to its config entry."""
        self._connection = connection_store(hass, entry_id)
        self._store: Store[dict[str, Any]] = Store(
            hass, STORAGE_VERSION, f"{DOMAIN}.{entry_id}", atomic_writes=True
        )

    async def load(self) -> Mapping[str, Any] | None:
        """The saved state, if any."""
        return await self._store.async_load()

    async def save(self, data: dict[str, Any]) -> None:
        """Write ``data`` now (atomically)."""
        await self._store.async_save(data)

    async def remove(self) -> None:
        """Delete the entry's files (the household's and the connection's) with the entry."""
        await self._store.async_remove()
        await self._connection.async_remove()
