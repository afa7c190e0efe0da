"""Serve the P2P Energy Grid Lovelace card and add it to the frontend.

The card is a plain JavaScript file beside this file. It is served at
``/p2p_energy_static/p2p-energy-card.js`` and added to every frontend page, so users add
``custom:p2p-energy-card`` to a dashboard without registering a resource: as an extra module
for the frontend's modern build and as an extra script for its legacy build, which older
browsers (wall tablets) get. A Lovelace resource would load later, once a dashboard opens,
but it has to be written into the user's dashboard configuration, which YAML dashboards do
not allow. Extra modules load next to the frontend's own code, before or after it swaps in
its custom-element registry; the card copes with both (see the end of p2p-energy-card.js).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Final

from homeassistant.components.http import StaticPathConfig

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant

_LOGGER = logging.getLogger(__name__)

URL_BASE: Final = "/p2p_energy_static"
CARD_FILE: Final = "p2p-energy-card.js"
CARD_PATH: Final = Path(__file__).parent / CARD_FILE
CARD_ROUTE: Final = f"{URL_BASE}/{CARD_FILE}"
_SERVED: Final = "p2p_energy_card_served"
_ADDED: Final = "p2p_energy_card_added"


def _fingerprint() -> str:
    """A short hash of the card, so browsers fetch it again after an update."""
    return hashlib.sha256(CARD_PATH.read_bytes()).hexdigest()[:12]


def card_url(fingerprint: str) -> str:
    return f"{CARD_ROUTE}?v={fingerprint}"


async def async_register_card(hass: HomeAssistant) -> str | None:
    """Serve the card and add it to the frontend; returns its URL (None without a frontend)."""
    if _ADDED in hass.data:
        return str(hass.data[_ADDED])
    if _SERVED not in hass.data:
        # Only the card file is served, never the Python modules beside it.
        await hass.http.async_register_static_paths(
            [StaticPathConfig(CARD_ROUTE, str(CARD_PATH), cache_headers=True)]
        )
        hass.data[_SERVED] = card_url(await hass.async_add_executor_job(_fingerprint))
    url = str(hass.data[_SERVED])
    if "frontend" not in hass.config.components:
        _LOGGER.debug("the frontend is not loaded; the card is served at %s", url)
        return None
    from homeassistant.components.frontend import add_extra_js_url

    add_extra_js_url(hass, url)
    add_extra_js_url(hass, url, es5=True)
    hass.data[_ADDED] = url
    return url
