"""Diagnostics download: configuration and runtime state, with every secret redacted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeassistant.components.diagnostics import async_redact_data

from .const import CONF_API_TOKEN, CONF_SEED, CONF_SIDE_KEY, CONF_WALLET_SEED

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant

    from .coordinator import P2PEnergyConfigEntry

# Seeds spend wallets and sign channels; side keys read channels; the API token
# lets anyone register sources; a registration token updates or removes a
# registration at the grid. The saved channel state holds them too.
# "trytes": a pending payment's signed bundle; anyone holding it could broadcast it.
# Redacted wherever they appear in the download, at any depth.
TO_REDACT = {
    CONF_SEED,
    CONF_SIDE_KEY,
    CONF_WALLET_SEED,
    CONF_API_TOKEN,
    "registration_token",
    "token",
    "secret",
    "password",
    "sideKey",
    "seed",
    "trytes",
}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: P2PEnergyConfigEntry
) -> dict[str, Any]:
    """Return the diagnostics of a grid connection."""
    coordinator = entry.runtime_data
    diagnostics: dict[str, Any] = {
        "entry": {
            "title": entry.title,
            "data": dict(entry.data),
            "options": dict(entry.options),
        },
        "subentries": [
            {
                "subentry_id": subentry.subentry_id,
                "type": subentry.subentry_type,
                "title": subentry.title,
                "data": dict(subentry.data),
            }
            for subentry in entry.subentries.values()
        ],
        "grid_status": (
            {
                "milestone_index": coordinator.data.milestone_index,
                "consensus_price": coordinator.data.consensus_price,
            }
            if coordinator.data
            else None
        ),
        "runtime": coordinator.diagnostics(),
        "stored_state": coordinator.store.as_dict(),
    }
    return async_redact_data(diagnostics, TO_REDACT)
