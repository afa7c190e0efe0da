"""Config subentries as the household engine's participants, and back.

Each subentry is one source, producer or consumer; its data (meter, seed, side
key, registration id, wallet, price or bid, sources) is the participant's
configuration. A channel rotation's new keys go back into the subentry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .const import (
    CONF_API_TOKEN,
    CONF_MAX_PRICE,
    CONF_METER,
    CONF_PRICE,
    CONF_PRODUCER_URL,
    CONF_REGISTRATION_ID,
    CONF_SEED,
    CONF_SIDE_KEY,
    CONF_SOURCES,
    CONF_WALLET_SEED,
)
from .protocol.household import ParticipantConfig, is_participant_kind

if TYPE_CHECKING:
    from homeassistant.config_entries import ConfigEntry, ConfigSubentry
    from homeassistant.core import HomeAssistant

    from .protocol.household import Participant


def participant_config(subentry: ConfigSubentry) -> ParticipantConfig | None:
    """The participant a subentry configures (None for an unknown subentry type)."""
    kind = subentry.subentry_type
    if not is_participant_kind(kind):
        return None
    data = subentry.data
    wallet_seed = data.get(CONF_WALLET_SEED)
    price = data.get(CONF_PRICE)
    bid = data.get(CONF_MAX_PRICE)
    return ParticipantConfig(
        participant_id=subentry.subentry_id,
        kind=kind,
        name=subentry.title,
        registration_id=str(data[CONF_REGISTRATION_ID]),
        seed=str(data[CONF_SEED]),
        side_key=str(data[CONF_SIDE_KEY]),
        meter_id=str(data[CONF_METER]),
        wallet_seed=None if wallet_seed is None else str(wallet_seed),
        price=None if price is None else float(price),
        max_price=None if bid is None else float(bid),
        api_token=data.get(CONF_API_TOKEN),
        sources=tuple(data.get(CONF_SOURCES, ())),
        producer_url=str(data.get(CONF_PRODUCER_URL) or ""),
    )


def save_keys(hass: HomeAssistant, entry: ConfigEntry, participant: Participant) -> None:
    """Keep a rotated channel's new seed and side key in the participant's subentry."""
    subentry = entry.subentries[participant.participant_id]
    hass.config_entries.async_update_subentry(
        entry,
        subentry,
        data={
            **subentry.data,
            CONF_SEED: participant.config.seed,
            CONF_SIDE_KEY: participant.config.side_key,
        },
    )
