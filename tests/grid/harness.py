"""An in-process grid API (fake Tangle) on a loopback port, for the HTTP tests.

Every answer fetched through :meth:`ApiHarness.call` is checked against the
grid's own OpenAPI document: documented status and response schema.
"""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from jsonschema import Draft202012Validator
from p2p_energy_protocol.grid_client import GridClient

from grid_server.grid.api.context import GridServices
from grid_server.grid.api.openapi import build_openapi
from grid_server.grid.app import create_app
from grid_server.grid.clock import system_clock
from grid_server.grid.config import GridConfig
from grid_server.grid.registrations import RegistrationService
from grid_server.grid.return_channels import ReturnChannels
from grid_server.grid.storage import StorageService

from .fakes import FakeChannels

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from grid_server.grid.db.engine import Database


@dataclass
class ApiHarness:
    url: str
    session: aiohttp.ClientSession
    client: GridClient
    fake: FakeChannels
    db: Database
    config: GridConfig
    return_channels: ReturnChannels
    openapi: dict[str, Any]

    async def call(
        self,
        method: str,
        path: str,
        template: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        token: str | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send a request and check the answer against the OpenAPI document."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        async with self.session.request(
            method, self.url + path, data=data, headers=headers, params=params
        ) as response:
            status = response.status
            answer = await response.json(content_type=None)
        check_response(self.openapi, method, template, status, answer)
        return status, answer


def check_response(
    document: dict[str, Any], method: str, template: str, status: int, answer: Any
) -> None:
    operation = document["paths"][template][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {template}: status {status} is undocumented"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    errors = sorted(validator.iter_errors(answer), key=str)
    assert not errors, f"{method} {template} {status}: {errors[0].message} in {answer}"
    assert isinstance(answer, dict)
    assert answer["success"] is (status == 200)


async def _health() -> tuple[bool, dict[str, Any]]:
    return True, {"status": "ok", "database": "ok", "node": "unknown", "storageAuth": "token"}


@contextlib.asynccontextmanager
async def running_api(db: Database, **settings: Any) -> AsyncIterator[ApiHarness]:
    config = replace(GridConfig(), **settings)
    fake = FakeChannels()
    cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-cpu")
    return_channels = ReturnChannels(db, fake, cpu, system_clock)
    services = GridServices(
        config=config,
        db=db,
        registrations=RegistrationService(
            db,
            fake,
            return_channels,
            system_clock,
            auth=config.storage_auth,
            hello_search_limit=config.hello_search_limit,
            notify_outbox=lambda: None,
        ),
        storage=StorageService(
            db,
            system_clock,
            auth=config.storage_auth,
            max_item_bytes=config.max_item_bytes,
            max_items=config.max_items_per_registration,
        ),
        health=_health,
    )
    runner = web.AppRunner(create_app(services))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            yield ApiHarness(
                url=url,
                session=session,
                client=GridClient(session, url),
                fake=fake,
                db=db,
                config=config,
                return_channels=return_channels,
                openapi=build_openapi(config),
            )
    finally:
        await runner.cleanup()
        cpu.shutdown(wait=True)
