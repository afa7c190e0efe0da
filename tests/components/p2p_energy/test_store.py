"""The household's state in Home Assistant's storage: written, reloaded, removed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_homeassistant_custom_component.common import flush_store

from custom_components.p2p_energy.protocol.household import HouseholdStore, ParticipantState
from custom_components.p2p_energy.store import EntryStoreBackend

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant


async def test_store_survives_a_restart(hass: HomeAssistant, hass_storage: dict[str, Any]) -> None:
    backend = EntryStoreBackend(hass, "entry1")
    store = HouseholdStore(backend)
    await store.load()
    assert store.participants == {}
    store.participant("a").energy_published_kwh = 1.0
    store.participants["b"] = ParticipantState(next_sequence=3, wallet_addresses=["A" * 81])
    await store.save()
    await flush_store(backend._store)
    assert hass_storage["p2p_energy.entry1"]["data"] == store.as_dict()

    reloaded = HouseholdStore(EntryStoreBackend(hass, "entry1"))
    await reloaded.load()
    assert reloaded.participants == store.participants

    await EntryStoreBackend(hass, "entry1").remove()
    assert "p2p_energy.entry1" not in hass_storage
