"""HTTP hardening shared by the node's and the grid's aiohttp servers.

* :func:`parse_json` reads a request (or a neighbour's answer) as strict JSON: UTF-8,
  no NaN/Infinity, no lone surrogates (``"\\ud800"`` parses in Python but can be
  neither stored nor sent back).
* :func:`read_body` reads a body with a size limit and a timeout per read; a body
  that is not what its ``Content-Encoding`` says, or a client that goes away
  mid-upload, become :class:`BodyError` (a 4xx, logged on one line).
* :class:`GuardedAppRunner` closes connections that send nothing (idle timeout) or
  only part of a request (request timeout), which aiohttp never does by itself.
* :data:`SECURITY_HEADERS` are the browser protections every page gets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

_LOGGER = logging.getLogger(__name__)

# A decoded string holds a surrogate code point only if the JSON had a lone escape.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_CHUNK: Final = 65_536

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'self'; form-action 'self'; "
        "base-uri 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "same-origin",
}


class MalformedJsonError(ValueError):
    """The bytes are not a strict JSON document; the message says why."""


class BodyError(Exception):
    """A request body that cannot be read; ``status`` is the 4xx to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _reject_constant(name: str) -> Any:
    raise MalformedJsonError(f"{name} is not JSON")


def _check_text(document: Any) -> None:
    """Walk the document without recursion; refuse any string with a lone surrogate."""
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise MalformedJsonError("a string holds a lone UTF-16 surrogate escape")
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def parse_json(raw: bytes) -> Any:
    """Strict JSON from UTF-8 bytes, or MalformedJsonError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MalformedJsonError(f"the body is not UTF-8: {err.reason}") from err
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as err:
        raise MalformedJsonError("the JSON is nested too deeply") from err
    except ValueError as err:
        raise MalformedJsonError(str(err)) from err
    _check_text(document)
    return document


async def read_body(request: web.BaseRequest, limit: int, timeout: float) -> bytes:
    """The whole body, at most ``limit`` bytes, each read within ``timeout`` seconds."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, f"the request body is too large: the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            async with asyncio.timeout(timeout):
                chunk = await request.content.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"the request body is too large: the limit is {limit} bytes")
            chunks.append(chunk)
    except TimeoutError as err:
        raise BodyError(408, f"the request body did not arrive within {timeout:g} s") from err
    except (web.RequestPayloadError, HttpProcessingError, ConnectionError) as err:
        raise body_error(err) from err
    return b"".join(chunks)


def body_error(err: Exception) -> BodyError:
    """What a failure while reading a body means for the client (always a 4xx)."""
    if isinstance(err, ConnectionError):
        return BodyError(400, "the client closed the connection during the upload")
    # aiohttp decodes Content-Encoding while reading: a body that is not what it says.
    return BodyError(400, f"the request body cannot be read: {str(err).strip()[:200]}")


def log_body_error(request: web.BaseRequest, err: BodyError) -> None:
    """One line per unreadable body (an aborted upload is the client's business)."""
    _LOGGER.info("%s %s from %s: %s", request.method, request.path, request.remote, err.message)


@dataclass(frozen=True)
class HttpTimeouts:
    """Seconds a connection may stay without a request, and a request take to arrive."""

    idle: float = 75.0
    request: float = 30.0


class _GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler, closing connections that hold a slot but send nothing.

    The first request must arrive within ``request`` seconds of the connection, and
    every later one within ``request`` seconds of its first byte; between requests
    aiohttp's own keep-alive timer (``idle`` seconds) applies.
    """

    __slots__ = ("_guard_handle", "_guard_timeouts", "_in_request")

    def __init__(self, manager: web.Server, *, guard: HttpTimeouts, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard_timeouts = guard
        self._guard_handle: asyncio.TimerHandle | None = None
        self._in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(self._guard_timeouts.request)

    def data_received(self, data: bytes) -> None:
        if not self._in_request and self._guard_handle is None:
            self._arm(self._guard_timeouts.request)
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def request_started(self) -> None:
        self._in_request = True
        self._disarm()

    def request_finished(self) -> None:
        self._in_request = False

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._guard_handle = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._guard_handle is not None:
            self._guard_handle.cancel()
            self._guard_handle = None

    def _expire(self) -> None:
        self._guard_handle = None
        if not self._in_request:
            _LOGGER.debug("closing a connection that sent no complete request in time")
            self.force_close()

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """A malformed message or a body that broke off is the client's fault: one line."""
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError | web.RequestPayloadError | ConnectionError):
            message = args[0] % args[1:] if args else "bad request"
            self.logger.info("%s: %s", message, " ".join(str(error).split())[:200])
            return
        super().log_exception(*args, **kwargs)


class _GuardedServer(web.Server):
    def __init__(self, inner: web.Server, timeouts: HttpTimeouts) -> None:
        super().__init__(
            inner.request_handler,
            request_factory=inner.request_factory,
            handler_cancellation=inner.handler_cancellation,
            loop=asyncio.get_running_loop(),
            # The options the AppRunner was given (keep-alive, access log, ...).
            **inner._kwargs,
        )
        self._timeouts = timeouts

    def __call__(self) -> RequestHandler:
        return _GuardedRequestHandler(
            self, guard=self._timeouts, loop=asyncio.get_running_loop(), **self._kwargs
        )


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose connections time out when idle or when a request stalls."""

    def __init__(self, app: web.Application, timeouts: HttpTimeouts, **kwargs: Any) -> None:
        # Lingering: how long an unread request body is still drained after the answer.
        super().__init__(
            app,
            keepalive_timeout=timeouts.idle,
            lingering_time=min(10.0, timeouts.request),
            **kwargs,
        )
        self._timeouts = timeouts

    async def _make_server(self) -> web.Server:
        return _GuardedServer(await super()._make_server(), self._timeouts)


@web.middleware
async def connection_guard_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Tells the connection guard a request is being handled (its headers arrived)."""
    protocol = request.protocol
    guarded = protocol if isinstance(protocol, _GuardedRequestHandler) else None
    if guarded is not None:
        guarded.request_started()
    try:
        return await handler(request)
    finally:
        if guarded is not None:
            guarded.request_finished()


@web.middleware
async def security_headers_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The browser protections on every answer, unless a handler set its own."""
    try:
        response = await handler(request)
    except web.HTTPException as err:
        _protect(err.headers)
        raise
    _protect(response.headers)
    return response


def _protect(headers: MutableMapping[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
