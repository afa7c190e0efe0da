"""What every new source, producer and consumer subentry is made of.

The manual subentry flows and the one-step set-up from the Energy dashboard
both create participants through :func:`new_subentry_data` and check meters
against :func:`meters_in_use`, so a participant is the same however it was made.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
)

from .const import (
    CONF_API_TOKEN,
    CONF_METER,
    CONF_REGISTRATION_ID,
    CONF_SEED,
    CONF_SIDE_KEY,
    CONF_WALLET_SEED,
    SUBENTRY_CONSUMER,
    SUBENTRY_PRODUCER,
    UNIT_IOTA_PER_KWH,
)
from .credentials import (
    generate_api_token,
    generate_registration_id,
    generate_seed,
    generate_side_key,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from homeassistant.config_entries import ConfigEntry

PRICE_SELECTOR = NumberSelector(
    NumberSelectorConfig(
        min=0,
        max=1_000_000_000,
        step=1,
        mode=NumberSelectorMode.BOX,
        unit_of_measurement=UNIT_IOTA_PER_KWH,
    )
)
"""A producer's asking price, and a consumer's bid (the same unit and range)."""

INVALID_BID = "invalid_bid"
"""The form error of a bid that is no plausible price."""


def bid_from_form(value: Any) -> float | None:
    """A consumer's bid as entered (None: left empty, no bid).

    The selector checks the range in the browser; this also refuses what a form
    posted past it (not finite, negative, beyond the asking prices' range) with
    ValueError, so no implausible bid is stored and then silently dropped.
    """
    if value is None or value == "":
        return None
    bid = float(value)
    if not math.isfinite(bid) or not 0 <= bid <= PRICE_SELECTOR.config["max"]:
        raise ValueError(INVALID_BID)
    return bid


def new_subentry_data(subentry_type: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A new participant's subentry data: freshly generated keys, then its settings.

    Every participant gets a channel seed, side key and registration id;
    producers and consumers a wallet; producers the secret path of their
    registration API. They are never shown or changed by reconfiguring.
    """
    data: dict[str, Any] = {
        CONF_SEED: generate_seed(),
        CONF_SIDE_KEY: generate_side_key(),
        CONF_REGISTRATION_ID: generate_registration_id(),
    }
    if subentry_type in (SUBENTRY_PRODUCER, SUBENTRY_CONSUMER):
        data[CONF_WALLET_SEED] = generate_seed()
    if subentry_type == SUBENTRY_PRODUCER:
        data[CONF_API_TOKEN] = generate_api_token()
    return data | dict(settings)


def meters_in_use(entry: ConfigEntry, except_subentry: str | None = None) -> set[str]:
    """Meters already wrapped by a subentry of ``entry`` (other than ``except_subentry``)."""
    return {
        str(subentry.data[CONF_METER])
        for subentry_id, subentry in entry.subentries.items()
        if subentry_id != except_subentry and CONF_METER in subentry.data
    }
