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
authentication; the token in the path is the capability. Every answer is
``{"success": bool, "message": str}`` with a 2xx or 4xx status.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web
from homeassistant.config_entries import ConfigEntryState
from homeassistant.helpers.http import KEY_HASS, HomeAssistantView

from .const import DOMAIN
from .credentials import is_trytes_81
from .participants import Producer, RegistrationRefusedError

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant

    from .coordinator import P2PEnergyConfigEntry

REGISTRATION_ID_MIN_LENGTH = 8
REGISTRATION_ID_MAX_LENGTH = 128
TEXT_MAX_LENGTH = 256
BODY_MAX_BYTES = 16_384
BASE_URL = "/api/p2p_energy/producer/{token}/registration/{registration_id}"


def _answer(status: HTTPStatus | int, message: str) -> web.Response:
    return web.json_response({"success": status < 300, "message": message}, status=int(status))


def _invalid(parameter: str) -> web.Response:
    return _answer(HTTPStatus.BAD_REQUEST, f"The parameter '{parameter}' has an invalid value.")


def _registration_id(raw: str) -> str | None:
    value = raw.strip()
    if not REGISTRATION_ID_MIN_LENGTH <= len(value) <= REGISTRATION_ID_MAX_LENGTH:
        return None
    if not value.isprintable() or "/" in value:
        return None
    return value


async def _read_body(request: web.Request) -> bytes:
    """The body, or its first BODY_MAX_BYTES + 1 bytes when it is longer."""
    chunks: list[bytes] = []
    size = 0
    # A read returns what has arrived so far; keep reading to the limit or the end.
    while size <= BODY_MAX_BYTES:
        chunk = await request.content.read(BODY_MAX_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _find_producer(hass: HomeAssistant, token: str) -> Producer | None:
    entries: list[P2PEnergyConfigEntry] = hass.config_entries.async_entries(DOMAIN)
    for entry in entries:
        if entry.state is ConfigEntryState.LOADED:
            producer = entry.runtime_data.producer_by_token(token)
            if producer is not None:
                return producer
    return None


def _validate_body(body: Any) -> tuple[dict[str, Any], str | None]:
    """Return (the accepted fields, the name of the first invalid parameter)."""
    if not isinstance(body, dict):
        return {}, "body"
    accepted: dict[str, Any] = {}
    for name in ("itemName", "itemType"):
        if name in body and body[name] is not None:
            value = body[name]
            if not isinstance(value, str) or len(value) > TEXT_MAX_LENGTH:
                return {}, name
            accepted[name] = value
    for name in ("root", "sideKey"):
        if name in body and body[name] is not None:
            if not is_trytes_81(body[name]):
                return {}, name
            accepted[name] = body[name]
    return accepted, None


class ProducerRegistrationView(HomeAssistantView):
    """PUT (register) and DELETE without side key (refused) of a registration."""

    url = BASE_URL
    name = f"api:{DOMAIN}:producer_registration"
    requires_auth = False

    async def put(self, request: web.Request, token: str, registration_id: str) -> web.Response:
        """Register or update a source."""
        hass: HomeAssistant = request.app[KEY_HASS]
        producer = _find_producer(hass, token)
        if producer is None:
            return _answer(HTTPStatus.NOT_FOUND, "There is no such producer.")
        if (valid_id := _registration_id(registration_id)) is None:
            return _invalid("registrationId")
        if request.content_length is not None and request.content_length > BODY_MAX_BYTES:
            return _answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "The request body is too large.")
        raw = await _read_body(request)
        if len(raw) > BODY_MAX_BYTES:
            return _answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "The request body is too large.")
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _answer(HTTPStatus.BAD_REQUEST, "The request body is not JSON.")
        fields, invalid = _validate_body(body)
        if invalid is not None:
            return _invalid(invalid)
        try:
            await producer.async_register_source(valid_id, fields)
        except RegistrationRefusedError as err:
            return _answer(err.status, err.message)
        return _answer(HTTPStatus.OK, "OK")

    async def delete(self, request: web.Request, token: str, registration_id: str) -> web.Response:
        """The blueprint requires the side key to remove a registration."""
        if _find_producer(request.app[KEY_HASS], token) is None:
            return _answer(HTTPStatus.NOT_FOUND, "There is no such producer.")
        return _invalid("sideKey")


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
            return _answer(HTTPStatus.NOT_FOUND, "There is no such producer.")
        if (valid_id := _registration_id(registration_id)) is None:
            return _invalid("registrationId")
        if not is_trytes_81(side_key):
            return _invalid("sideKey")
        try:
            await producer.async_deregister_source(valid_id, side_key)
        except RegistrationRefusedError as err:
            return _answer(err.status, err.message)
        return _answer(HTTPStatus.OK, "OK")
