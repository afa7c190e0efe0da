"""P2P Energy Grid: trade energy peer to peer over an IOTA Tangle.

One config entry connects Home Assistant to one grid; its config subentries are
the sources, producers and consumers that wrap this home's energy meters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeassistant.const import Platform
from homeassistant.helpers import config_validation as cv

from .const import CONF_SEED, CONF_SIDE_KEY, DOMAIN
from .coordinator import P2PEnergyConfigEntry, P2PEnergyCoordinator
from .expected_output import async_follow_forecasts
from .frontend import async_register_card
from .http import ProducerRegistrationView, ProducerSourceRemovalView
from .removal import async_participants_leave, async_retry_departures, async_update_wallet_issues
from .services import async_setup_services
from .store import EntryStoreBackend

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant
    from homeassistant.helpers.typing import ConfigType

PLATFORMS: list[Platform] = [Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

# Keys the runtime itself rewrites (channel rotation); changing them needs no reload.
RUNTIME_OWNED_KEYS = frozenset({CONF_SEED, CONF_SIDE_KEY})


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the services, the producers' registration API and the Lovelace card."""
    async_setup_services(hass)
    hass.http.register_view(ProducerRegistrationView())
    hass.http.register_view(ProducerSourceRemovalView())
    await async_register_card(hass)
    hass.async_create_background_task(
        async_retry_departures(hass), f"{DOMAIN} deregister removed participants"
    )
    return True


def configuration_fingerprint(entry: P2PEnergyConfigEntry) -> dict[str, Any]:
    """Everything the runtime is built from, except what the runtime rewrites itself."""
    return {
        "data": dict(entry.data),
        "options": dict(entry.options),
        "subentries": {
            subentry_id: (
                subentry.subentry_type,
                subentry.title,
                {k: v for k, v in subentry.data.items() if k not in RUNTIME_OWNED_KEYS},
            )
            for subentry_id, subentry in entry.subentries.items()
        },
    }


async def async_setup_entry(hass: HomeAssistant, entry: P2PEnergyConfigEntry) -> bool:
    """Load the durable state, start publishing and polling.

    Setup does not wait for the grid: readings are queued while it is away,
    and the entities that need it are unavailable until it answers.
    """
    # What this runtime is built from, taken before the first await: a subentry added
    # while setup waits for the network must not be missed.
    fingerprint = configuration_fingerprint(entry)
    coordinator = P2PEnergyCoordinator(hass, entry)
    await coordinator.async_prepare()
    await coordinator.async_refresh()
    entry.runtime_data = coordinator

    async def _async_entry_updated(hass: HomeAssistant, entry: P2PEnergyConfigEntry) -> None:
        current = configuration_fingerprint(entry)
        if current == fingerprint:
            return
        # A removed subentry's participant leaves the grid before the reload forgets it.
        removed = fingerprint["subentries"].keys() - current["subentries"].keys()
        leaving = [
            coordinator.participants[key] for key in removed if key in coordinator.participants
        ]
        if leaving:
            await async_participants_leave(hass, entry, leaving)
        hass.config_entries.async_schedule_reload(entry.entry_id)

    entry.async_on_unload(entry.add_update_listener(_async_entry_updated))
    entry.async_on_unload(
        coordinator.async_add_listener(lambda: async_update_wallet_issues(hass, coordinator))
    )
    async_update_wallet_issues(hass, coordinator)  # the first refresh came before the listener
    if configuration_fingerprint(entry) != fingerprint:
        # Changed during setup, before the listener was there to see it.
        hass.config_entries.async_schedule_reload(entry.entry_id)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    async_follow_forecasts(hass, entry)
    # The coordinator stops its timer in async_shutdown, which unloading calls.
    coordinator.async_start_periods()
    return True


async def async_unload_entry(hass: HomeAssistant, entry: P2PEnergyConfigEntry) -> bool:
    """Stop everything; the durable state stays for the next start."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: P2PEnergyConfigEntry) -> None:
    """Leave the grid, keep any wallet that may hold IOTA, then delete the durable state."""
    household = P2PEnergyCoordinator(hass, entry)
    await household.async_prepare()
    await async_participants_leave(hass, entry, household.participants.values())
    await EntryStoreBackend(hass, entry.entry_id).remove()
