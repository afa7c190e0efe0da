"""The node's web server: the IRI command API, its OpenAPI document and the explorer.

Programmatic use (the grid server runs its node in-process this way)::

    async with NodeServer(NodeConfig(port=0)) as node:
        client = IriClient(session, node.url)
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from typing import Any, Final, Self

import aiohttp
from aiohttp import web

from ..database_availability import database_unavailable, wait_for_database
from .commands import dispatch
from .config import NodeConfig, normalize_neighbor_url
from .errors import CommandError
from .explorer import add_explorer_routes
from .openapi import openapi_document
from .peering import PEER_HEADER
from .runtime import NodeRuntime

_LOGGER = logging.getLogger(__name__)


class RuntimeHolder:
    """Lets the server bind its port (learning its URL) before the node exists."""

    def __init__(self, runtime: NodeRuntime | None = None) -> None:
        self.runtime = runtime


RUNTIME_KEY: Final = web.AppKey("node_runtime", RuntimeHolder)
_CORS: Final = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Content-Type, X-IOTA-API-Version, X-P2P-Energy-Peer",
    "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
}


def _answer(body: dict[str, Any], status: int, started: float) -> web.Response:
    body["duration"] = int((time.perf_counter() - started) * 1000)
    return web.json_response(body, status=status, headers=_CORS, dumps=_dumps)


def runtime_of(request: web.Request) -> NodeRuntime:
    runtime = request.app[RUNTIME_KEY].runtime
    if runtime is None:
        # JSON like every IRI answer, so clients retry instead of failing to parse it.
        raise web.HTTPServiceUnavailable(
            text=_dumps({"error": "The node is starting; try again shortly."}),
            content_type="application/json",
            headers={**_CORS, "Retry-After": "1"},
        )
    return runtime


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def handle_command(request: web.Request) -> web.Response:
    started = time.perf_counter()
    node = runtime_of(request)
    if request.headers.get("X-IOTA-API-Version", "").strip() == "":
        return _answer({"error": "Invalid API Version"}, 400, started)
    limit = node.config.limits.max_body_length
    if request.content_length is not None and request.content_length > limit:
        return _answer({"error": f"Request too long: the limit is {limit} bytes"}, 400, started)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(65_536):
        size += len(chunk)
        if size > limit:
            return _answer({"error": f"Request too long: the limit is {limit} bytes"}, 400, started)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return _answer(
            {"error": "Invalid JSON syntax: the body must be a JSON object"}, 400, started
        )
    peer_header = request.headers.get(PEER_HEADER)
    peer: str | None = None
    if peer_header:
        try:
            peer = normalize_neighbor_url(peer_header)
        except ValueError:
            peer = None
    try:
        answer = await dispatch(node, body, peer)
    except CommandError as err:
        return _answer({"error": err.message}, err.status, started)
    except Exception as err:
        if database_unavailable(err):
            # Nothing half-written stays behind and every command is safe to send again.
            _LOGGER.warning("database unavailable for %s: %s", _command_name(body), err)
            return _answer(
                {"error": "The node's database is unavailable; try again later."}, 503, started
            )
        _LOGGER.exception("command failed")
        return _answer({"exception": f"{type(err).__name__}: {err}"}, 500, started)
    return _answer(answer, 200, started)


def _command_name(body: object) -> str:
    command = body.get("command") if isinstance(body, dict) else None
    return command[:40] if isinstance(command, str) else "a command"


async def handle_options(_request: web.Request) -> web.Response:
    return web.Response(status=204, headers=_CORS)


async def handle_openapi(request: web.Request) -> web.Response:
    node = runtime_of(request)
    return web.json_response(openapi_document(node.config), headers=_CORS)


async def handle_root(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/explorer/")


def create_node_app(config: NodeConfig, holder: RuntimeHolder) -> web.Application:
    """The aiohttp application serving the node in ``holder``."""
    app = web.Application(client_max_size=config.limits.max_body_length + 1024)
    app[RUNTIME_KEY] = holder
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
        runner = web.AppRunner(app, access_log=None)
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
