"""Response shape, errors and input validation shared by every handler.

Every answer has the blueprint's body ``{"success": bool, "message": str, ...}``;
failures carry a 4xx status (5xx only for a database fault or an unexpected error).
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from sqlalchemy.exc import DBAPIError

from ...database_availability import database_unavailable
from ...http_safety import (
    BodyError,
    MalformedJsonError,
    body_error,
    log_body_error,
    parse_json,
    read_body,
)
from ..errors import RequestError
from .context import services

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..config import GridConfig

_LOGGER = logging.getLogger(__name__)

TRYTES_81: Final = re.compile(r"[A-Z9]{81}")
# RFC 3986 unreserved characters: safe in a path segment without escaping.
REGISTRATION_ID_PATTERN: Final = r"^[A-Za-z0-9._~-]{8,128}$"
SEGMENT_PATTERN: Final = r"^[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}$"
TRYTES_81_PATTERN: Final = r"^[A-Z9]{81}$"
MAX_NAME_LENGTH: Final = 256
MAX_PAGE: Final = 1_000_000_000


def invalid(name: str, why: str | None = None) -> RequestError:
    """The original API's wording for a bad parameter, with the reason appended."""
    text = f"The parameter '{name}' has an invalid value."
    return RequestError(f"{text} {why}" if why else text, 400)


def ok(**extra: Any) -> web.Response:
    return web.json_response({"success": True, "message": "OK", **extra})


def failure(status: int, message: str) -> web.Response:
    return web.json_response({"success": False, "message": message}, status=status)


def registration_id(request: web.Request) -> str:
    """The path's registration id, trimmed as the original API did."""
    value = request.match_info["registrationId"].strip()
    if not re.fullmatch(REGISTRATION_ID_PATTERN, value):
        raise invalid(
            "registrationId", "Use 8 to 128 characters of A-Z, a-z, 0-9, '.', '_', '~' or '-'."
        )
    return value


def segment(request: web.Request, name: str) -> str:
    """A context or item id from the path."""
    value = request.match_info[name]
    if not re.fullmatch(SEGMENT_PATTERN, value):
        raise invalid(
            name,
            "Use 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', '~' or '-', "
            "not starting with '.'.",
        )
    return value


def trytes_81(value: Any, name: str) -> str:
    if not isinstance(value, str) or not TRYTES_81.fullmatch(value):
        raise invalid(name, "It must be 81 trytes (A-Z and 9).")
    return value


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestError("The Authorization header must be 'Bearer <token>'.", 401)
    return token.strip()


def body_limit(config: GridConfig) -> int:
    """The largest request body: the largest storage item plus JSON framing."""
    return max(config.max_item_bytes + 4096, 65_536)


async def json_body(request: web.Request) -> Any:
    """The request body as JSON; a clear 4xx when it is not (see ``http_safety``)."""
    config = services(request).config
    raw = await read_body(request, body_limit(config), config.http_request_timeout)
    if not raw.strip():
        raise RequestError("The request body must be JSON.", 400)
    try:
        return parse_json(raw)
    except MalformedJsonError as err:
        raise RequestError(f"The request body is not valid JSON: {err}", 400) from err


def query_int(
    request: web.Request, names: tuple[str, ...], default: int, low: int, high: int
) -> int:
    """An integer query parameter that may be spelled several ways (the first given wins)."""
    name = next((candidate for candidate in names if candidate in request.query), None)
    if name is None:
        return default
    values = request.query.getall(name)
    if len(values) > 1:
        raise invalid(names[0], f"'{name}' was given more than once.")
    text = values[0].strip()
    if not re.fullmatch(r"\d{1,10}", text):
        raise invalid(names[0], f"It must be a whole number from {low} to {high}.")
    number = int(text)
    if not low <= number <= high:
        raise invalid(names[0], f"It must be a whole number from {low} to {high}.")
    return number


def total_pages(total: int, page_size: int) -> int:
    return math.ceil(total / page_size)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every failure into the ``{success, message}`` body with a fitting status."""
    try:
        return await handler(request)
    except RequestError as err:
        return failure(err.status, err.message)
    except (BodyError, web.RequestPayloadError, ConnectionResetError) as err:
        # A body that cannot be read (an aborted upload, a false Content-Encoding, also in
        # a form the portal reads) is the client's business: one line, no traceback.
        refused = err if isinstance(err, BodyError) else body_error(err)
        log_body_error(request, refused)
        return failure(refused.status, refused.message)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        message = {
            404: "There is no such resource.",
            405: f"The method {request.method} is not allowed here.",
            413: "The request body is too large.",
        }.get(err.status, err.reason)
        response = failure(err.status, message)
        if err.status == 405 and "Allow" in err.headers:
            response.headers["Allow"] = err.headers["Allow"]
        return response
    except DBAPIError as err:
        if not database_unavailable(err):
            _LOGGER.exception("database error serving %s %s", request.method, request.path)
            return failure(
                500, "The grid failed to process the request; the error has been logged."
            )
        _LOGGER.warning("database unavailable serving %s %s: %s", request.method, request.path, err)
        return failure(503, "The grid's database is unavailable; try again later.")
    except Exception:
        _LOGGER.exception("unexpected error serving %s %s", request.method, request.path)
        return failure(500, "The grid failed to process the request; the error has been logged.")
