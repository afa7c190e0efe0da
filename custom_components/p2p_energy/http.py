"""The producer registration API of the blueprint, on Home Assistant's HTTP server.

Each producer has its own base URL, ``/api/p2p_energy/producer/<token>``, where
``<token>`` is an unguessable secret generated with the producer (its diagnostic
"registration API" entity shows it). Under it, exactly as the blueprint says:

* ``PUT {base}/registration/{registrationId}`` with ``{itemName?, itemType?,
  root?, sideKey?}`` registers or updates a source; a channel must start with
  ``hello`` before it is accepted.
* ``DELETE {base}/registration/{registrationId}/{sideKey}`` removes it; the side
  key authenticates the request.

Sources are not Home Assistant users, so the API does not use Home Assistant
authentication; the token in the path is the capability. What the API does is
the engine's (:mod:`.protocol.household.producer_api`); these views find the
producer behind the token.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntryState
from homeassistant.helpers.http import KEY_HASS, HomeAssistantView

from .const import DOMAIN
from .protocol.household.producer_api import answer, delete_registration, put_registration

if TYPE_CHECKING:
    from aiohttp import web
    from homeassistant.core import HomeAssistant

    from .coordinator import P2PEnergyConfigEntry
    from .protocol.household import Producer

BASE_URL = "/api/p2p_energy/producer/{token}/registration/{registration_id}"


def _find_producer(hass: HomeAssistant, token: str) -> Producer | None:
    entries: list[P2PEnergyConfigEntry] = hass.config_entries.async_entries(DOMAIN)
    for entry in entries:
        if entry.state is ConfigEntryState.LOADED:
            producer = entry.runtime_data.producer_by_token(token)
            if producer is not None:
                return producer
    return None


def _no_producer() -> web.Response:
    return answer(HTTPStatus.NOT_FOUND, "There is no such producer.")


class ProducerRegistrationView(HomeAssistantView):
    """PUT (register) and DELETE without side key (refused) of a registration."""

    url = BASE_URL
    name = f"api:{DOMAIN}:producer_registration"
    requires_auth = False

    async def put(self, request: web.Request, token: str, registration_id: str) -> web.Response:
        """Register or update a source."""
        producer = _find_producer(request.app[KEY_HASS], token)
        if producer is None:
            return _no_producer()
        return await put_registration(producer, registration_id, request)

    async def delete(self, request: web.Request, token: str, registration_id: str) -> web.Response:
        """The blueprint requires the side key to remove a registration."""
        producer = _find_producer(request.app[KEY_HASS], token)
        if producer is None:
            return _no_producer()
        return await delete_registration(producer, registration_id, None)


class ProducerSourceRemovalView(HomeAssistantView):
    """DELETE {base}/registration/{registrationId}/{sideKey}."""

    url = BASE_URL + "/{side_key}"
    name = f"api:{DOMAIN}:producer_registration_removal"
    requires_auth = False

    async def delete(
        self, request: web.Request, token: str, registration_id: str, side_key: str
    ) -> web.Response:
        """Remove a source's registration."""
        producer = _find_producer(request.app[KEY_HASS], token)
        if producer is None:
            return _no_producer()
        return await delete_registration(producer, registration_id, side_key)
