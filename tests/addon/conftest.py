"""Fixtures of the add-on suite: loopback sockets and a fake Supervisor."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SUPERVISOR_TOKEN = "test-supervisor-token"


@pytest.fixture(autouse=True)
def _loopback_sockets(socket_enabled: None) -> None:
    """The Home Assistant test plugin disables sockets; these tests use loopback."""


@dataclass
class FakeSupervisor:
    """Records what the add-on sends; behaves like the Supervisor's discovery API."""

    url: str = ""
    allowed_services: tuple[str, ...] = ("p2p_energy",)
    hostname: str | None = "a0d7b954-p2p-energy-grid"
    # Status codes to answer the next discovery POSTs with before accepting.
    failures: list[int] = field(default_factory=list)
    announcements: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0

    async def info(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SUPERVISOR_TOKEN}":
            return web.json_response({"result": "error", "message": "Unauthorized"}, status=401)
        if self.hostname is None:
            return web.json_response({"result": "error", "message": "boom"}, status=500)
        return web.json_response({"result": "ok", "data": {"hostname": self.hostname}})

    async def discovery(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if request.headers.get("Authorization") != f"Bearer {SUPERVISOR_TOKEN}":
            return web.json_response({"result": "error", "message": "Unauthorized"}, status=401)
        if self.failures:
            status = self.failures.pop(0)
            return web.json_response({"result": "error", "message": "busy"}, status=status)
        body = await request.json()
        if set(body) != {"service", "config"} or not isinstance(body["config"], dict):
            return web.json_response({"result": "error", "message": "bad body"}, status=400)
        if body["service"] not in self.allowed_services:
            return web.json_response(
                {"result": "error", "message": "Apps must list services"}, status=403
            )
        self.announcements.append(body)
        return web.json_response({"result": "ok", "data": {"uuid": uuid.uuid4().hex}})


@pytest.fixture
async def fake_supervisor() -> AsyncIterator[FakeSupervisor]:
    supervisor = FakeSupervisor()
    app = web.Application()
    app.router.add_get("/addons/self/info", supervisor.info)
    app.router.add_post("/discovery", supervisor.discovery)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    supervisor.url = f"http://127.0.0.1:{port}"
    try:
        yield supervisor
    finally:
        await runner.cleanup()
