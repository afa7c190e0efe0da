"""The node's web server: the IRI command API, its OpenAPI document and the explorer.

Programmatic use (the grid server runs its node in-process this way)::

    async with NodeServer(NodeConfig(port=0)) as node:
        client = IriClient(session, node.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Final, Self

import aiohttp
from aiohttp import web

from ..database_availability import database_unavailable, wait_for_database
from ..http_safety import (
    BodyError,
    GuardedAppRunner,
    HttpTimeouts,
    MalformedJsonError,
    connection_guard_middleware,
    log_body_error,
    parse_json,
    read_body,
    security_headers_middleware,
)
from .access import AccessPolicy
from .commands import COMMANDS, Caller, dispatch
from .config import NodeConfig, normalize_neighbor_url
from .errors import CommandError
from .explorer import add_explorer_routes
from .openapi import openapi_document
from .peer_auth import AUTH_HEADER, PEER_HEADER, RESPONSE_SIGNATURE_HEADER, PeerAuthError
from .pow_queue import caller_of
from .runtime import NodeRuntime

if TYPE_CHECKING:
    from .peer_auth import VerifiedPeer

_LOGGER = logging.getLogger(__name__)
# Refused peer signatures are logged once per caller address and this many seconds.
_AUTH_LOG_SECONDS: Final = 60.0


class RuntimeHolder:
    """Lets the server bind its port (learning its URL) before the node exists."""

    def __init__(self, runtime: NodeRuntime | None = None) -> None:
        self.runtime = runtime


RUNTIME_KEY: Final = web.AppKey("node_runtime", RuntimeHolder)
POLICY_KEY: Final = web.AppKey("node_access", AccessPolicy)
_AUTH_LOGGED_KEY: Final = web.AppKey("node_auth_logged", dict)


def _answer(
    request: web.Request,
    body: dict[str, Any],
    status: int,
    started: float,
    *,
    command: str | None = None,
    peer: VerifiedPeer | None = None,
) -> web.Response:
    body["duration"] = int((time.perf_counter() - started) * 1000)
    raw = _dumps(body).encode()
    headers = request.app[POLICY_KEY].cors_headers(request, command)
    if peer is not None:
        # The neighbour checks this, so a forged or replayed answer is never believed.
        headers[RESPONSE_SIGNATURE_HEADER] = peer.sign_answer(status, raw)
    return web.Response(body=raw, status=status, headers=headers, content_type="application/json")


def runtime_of(request: web.Request) -> NodeRuntime:
    runtime = request.app[RUNTIME_KEY].runtime
    if runtime is None:
        # JSON like every IRI answer, so clients retry instead of failing to parse it.
        raise web.HTTPServiceUnavailable(
            text=_dumps({"error": "The node is starting; try again shortly."}),
            content_type="application/json",
            headers={**request.app[POLICY_KEY].cors_headers(request, None), "Retry-After": "1"},
        )
    return runtime


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def handle_command(request: web.Request) -> web.Response:
    started = time.perf_counter()
    node = runtime_of(request)
    if request.headers.get("X-IOTA-API-Version", "").strip() == "":
        return _answer(request, {"error": "Invalid API Version"}, 400, started)
    limit = node.config.limits.max_body_length
    try:
        raw = await read_body(request, limit, node.config.http.request_timeout)
    except BodyError as err:
        log_body_error(request, err)
        if err.status == 413:
            # IRI's wording and status for an oversized request.
            return _answer(
                request, {"error": f"Request too long: the limit is {limit} bytes"}, 400, started
            )
        return _answer(request, {"error": err.message}, err.status, started)
    try:
        body = parse_json(raw)
    except MalformedJsonError as err:
        return _answer(
            request,
            {"error": f"Invalid JSON syntax: the body must be a JSON object ({err})"},
            400,
            started,
        )
    command = _known_command(body)
    peer: VerifiedPeer | None = None
    try:
        auth = request.headers.get(AUTH_HEADER)
        if auth is not None:
            peer = _verify_peer(request, node, auth, raw)
        if command is not None:
            request.app[POLICY_KEY].check(request, command)
        caller = Caller(
            caller_of(request.remote),
            peer.url if peer is not None else None,
            functools.partial(_connected, request),
        )
        answer = await dispatch(node, body, caller)
    except CommandError as err:
        response = _answer(
            request, {"error": err.message}, err.status, started, command=command, peer=peer
        )
        if err.retry_after is not None:
            response.headers["Retry-After"] = str(err.retry_after)
        return response
    except Exception as err:
        if database_unavailable(err):
            # Nothing half-written stays behind and every command is safe to send again.
            _LOGGER.warning("database unavailable for %s: %s", command or "a command", err)
            return _answer(
                request,
                {"error": "The node's database is unavailable; try again later."},
                503,
                started,
                command=command,
                peer=peer,
            )
        _LOGGER.exception("command failed")
        return _answer(
            request,
            {"exception": f"{type(err).__name__}: {err}"},
            500,
            started,
            command=command,
            peer=peer,
        )
    return _answer(request, answer, 200, started, command=command, peer=peer)


def _verify_peer(request: web.Request, node: NodeRuntime, header: str, raw: bytes) -> VerifiedPeer:
    claimed: str | None = None
    with contextlib.suppress(ValueError):
        claimed = normalize_neighbor_url(request.headers.get(PEER_HEADER, ""))
    try:
        return node.peer_verifier.verify(
            header, method=request.method, path=request.path, body=raw, claimed=claimed
        )
    except PeerAuthError as err:
        logged: dict[str, float] = request.app[_AUTH_LOGGED_KEY]
        now = time.monotonic()
        remote = request.remote or "?"
        if now - logged.get(remote, -_AUTH_LOG_SECONDS) >= _AUTH_LOG_SECONDS:
            if len(logged) > 1_000:
                logged.clear()
            logged[remote] = now
            _LOGGER.warning("refused a neighbour's request from %s: %s", remote, err)
        raise CommandError(f"neighbour authentication failed: {err}", status=401) from err


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


def _known_command(body: object) -> str | None:
    command = body.get("command") if isinstance(body, dict) else None
    return command if isinstance(command, str) and command in COMMANDS else None


async def handle_options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=request.app[POLICY_KEY].preflight_headers(request))


async def handle_openapi(request: web.Request) -> web.Response:
    node = runtime_of(request)
    headers = request.app[POLICY_KEY].cors_headers(request, None)
    return web.json_response(openapi_document(node.config), headers=headers)


async def handle_root(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/explorer/")


def create_node_app(config: NodeConfig, holder: RuntimeHolder) -> web.Application:
    """The aiohttp application serving the node in ``holder``."""
    app = web.Application(
        client_max_size=config.limits.max_body_length + 1024,
        middlewares=[connection_guard_middleware, security_headers_middleware],
    )
    app[RUNTIME_KEY] = holder
    app[POLICY_KEY] = AccessPolicy(config, COMMANDS)
    app[_AUTH_LOGGED_KEY] = {}
    app.router.add_post("/", handle_command)
    app.router.add_route("OPTIONS", "/", handle_options)
    app.router.add_get("/", handle_root)
    app.router.add_get("/api/openapi.json", handle_openapi)
    add_explorer_routes(app)
    return app


class NodeServer:
    """A node listening on ``config.host:config.port`` (port 0 picks a free one)."""

    def __init__(self, config: NodeConfig, *, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self._external_session = session
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._runtime: NodeRuntime | None = None
        self.url = config.url

    @property
    def runtime(self) -> NodeRuntime:
        if self._runtime is None:
            raise RuntimeError("the node is not running")
        return self._runtime

    async def start(self) -> None:
        session = self._external_session or aiohttp.ClientSession()
        self._session = None if self._external_session else session
        holder = RuntimeHolder()
        try:
            url = await self._listen(create_node_app(self.config, holder))
            self.url = url
            # A database server that starts alongside the node (or restarts) is waited for.
            self._runtime = await wait_for_database(
                functools.partial(asyncio.to_thread, NodeRuntime, self.config, session, url),
                purpose="opening the node's database",
                wait_seconds=self.config.database_wait,
            )
            holder.runtime = self._runtime
            await self._runtime.start()
        except BaseException:
            await self.stop()
            raise
        _LOGGER.info(
            "node listening on %s (coordinator %s)", url, self._runtime.coordinator_address
        )

    async def _listen(self, app: web.Application) -> str:
        timeouts = HttpTimeouts(self.config.http.idle_timeout, self.config.http.request_timeout)
        runner = GuardedAppRunner(app, timeouts, access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.config.host, self.config.port)
        await site.start()
        port = int(runner.addresses[0][1]) if runner.addresses else self.config.port
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._runtime is not None:
            await self._runtime.close()
            self._runtime = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
