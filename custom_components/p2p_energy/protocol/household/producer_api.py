"""The blueprint's producer registration API over HTTP, for any aiohttp server.

Under a producer's base URL, exactly as the blueprint says:

* ``PUT {base}/registration/{registrationId}`` with ``{itemName?, itemType?,
  root?, sideKey?}`` registers or updates a source; a channel must start with
  ``hello`` before it is accepted.
* ``DELETE {base}/registration/{registrationId}/{sideKey}`` removes it; the side
  key authenticates the request: a malformed one is 400, one that does not match
  the registration 403 (as the grid answers), an unknown registration 404.

Every answer is ``{"success": bool, "message": str}`` with a 2xx or 4xx status
(503 while the channel cannot be read). Home Assistant serves these handlers
behind its own views (one base URL per producer, a secret token in the path);
a simulated producer serves :func:`producer_routes` on its own server.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from ..trinary import is_trytes
from .producer import RegistrationRefusedError

if TYPE_CHECKING:
    from .producer import Producer

REGISTRATION_ID_MIN_LENGTH: Final = 8
REGISTRATION_ID_MAX_LENGTH: Final = 128
TEXT_MAX_LENGTH: Final = 256
BODY_MAX_BYTES: Final = 16_384


def answer(status: HTTPStatus | int, message: str) -> web.Response:
    """The API's answer: ``{success, message}`` with ``status``."""
    return web.json_response({"success": status < 300, "message": message}, status=int(status))


def invalid(parameter: str) -> web.Response:
    """400 naming the invalid parameter."""
    return answer(HTTPStatus.BAD_REQUEST, f"The parameter '{parameter}' has an invalid value.")


def registration_id_of(raw: str) -> str | None:
    """The registration id of a path, or None when it is not a valid one."""
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


def registration_fields(body: Any) -> tuple[dict[str, Any], str | None]:
    """The accepted fields of a registration body and the first invalid parameter."""
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
            value = body[name]
            if not is_trytes(value, 81):
                return {}, name
            accepted[name] = value
    return accepted, None


async def put_registration(
    producer: Producer, raw_registration_id: str, request: web.Request
) -> web.Response:
    """Register or update a source (``PUT {base}/registration/{registrationId}``)."""
    if (registration_id := registration_id_of(raw_registration_id)) is None:
        return invalid("registrationId")
    if request.content_length is not None and request.content_length > BODY_MAX_BYTES:
        return answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "The request body is too large.")
    raw = await _read_body(request)
    if len(raw) > BODY_MAX_BYTES:
        return answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "The request body is too large.")
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return answer(HTTPStatus.BAD_REQUEST, "The request body is not JSON.")
    fields, wrong = registration_fields(body)
    if wrong is not None:
        return invalid(wrong)
    try:
        await producer.register_source(registration_id, fields)
    except RegistrationRefusedError as err:
        return answer(err.status, err.message)
    return answer(HTTPStatus.OK, "OK")


async def delete_registration(
    producer: Producer, raw_registration_id: str, side_key: str | None
) -> web.Response:
    """Remove a source (``DELETE {base}/registration/{registrationId}/{sideKey}``)."""
    if (registration_id := registration_id_of(raw_registration_id)) is None:
        return invalid("registrationId")
    if side_key is None or not is_trytes(side_key, 81):
        return invalid("sideKey")
    try:
        await producer.deregister_source(registration_id, side_key)
    except RegistrationRefusedError as err:
        return answer(err.status, err.message)
    return answer(HTTPStatus.OK, "OK")


def producer_routes(producer: Producer, base: str = "") -> list[web.RouteDef]:
    """The API of one producer at ``base`` on a server of its own."""

    async def put(request: web.Request) -> web.Response:
        return await put_registration(producer, request.match_info["registrationId"], request)

    async def delete(request: web.Request) -> web.Response:
        return await delete_registration(
            producer, request.match_info["registrationId"], request.match_info.get("sideKey")
        )

    path = f"{base}/registration/{{registrationId}}"
    return [
        web.put(path, put),
        web.delete(path, delete),
        web.delete(f"{path}/{{sideKey}}", delete),
    ]
