"""Diagnostics download: configuration and runtime state, with every secret redacted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeassistant.components.diagnostics import async_redact_data

from .const import CONF_API_TOKEN, CONF_SEED, CONF_SIDE_KEY, CONF_WALLET_SEED

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant

    from .coordinator import P2PEnergyConfigEntry

# Seeds spend wallets and sign channels; side keys read channels; the token
# lets anyone register sources. The saved channel state holds them too.
# "trytes": a pending payment's signed bundle; anyone holding it could broadcast it.
TO_REDACT = {
    CONF_SEED,
    CONF_SIDE_KEY,
    CONF_WALLET_SEED,
    CONF_API_TOKEN,
    "sideKey",
    "seed",
    "trytes",
}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: P2PEnergyConfigEntry
) -> dict[str, Any]:
    """Return the diagnostics of a grid connection."""
    coordinator = entry.runtime_data
    return {
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
                "data": async_redact_data(subentry.data, TO_REDACT),
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
        "stored_state": async_redact_data(coordinator.store.as_dict(), TO_REDACT),
    }
