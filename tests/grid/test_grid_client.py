"""The async clients' requests and error mapping, against small servers of known behaviour."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from p2p_energy_protocol.errors import GridApiError, GridUnavailableError, ProtocolError
from p2p_energy_protocol.grid_client import GridClient, ProducerClient

from .processes import free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def serving(routes: list[web.RouteDef]) -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_producer_registration_api_requests() -> None:
    seen: list[tuple[str, str, Any]] = []

    async def put(request: web.Request) -> web.Response:
        seen.append(("PUT", request.path, await request.json()))
        return web.json_response({"success": True, "message": "OK"})

    async def delete(request: web.Request) -> web.Response:
        seen.append(("DELETE", request.path, None))
        if request.match_info["sideKey"] != "K" * 81:
            return web.json_response({"success": False, "message": "wrong side key"}, status=403)
        return web.json_response({"success": True, "message": "OK"})

    routes = [
        web.put("/api/producer/registration/{id}", put),
        web.delete("/api/producer/registration/{id}/{sideKey}", delete),
    ]
    async with serving(routes) as url, aiohttp.ClientSession() as session:
        producer = ProducerClient(session, url + "/api/producer")
        await producer.register("source-0001", item_name="Panel", root="R" * 81, side_key="K" * 81)
        await producer.deregister("source-0001", "K" * 81)
        with pytest.raises(GridApiError, match="wrong side key") as caught:
            await producer.deregister("source-0001", "X" * 81)
        assert caught.value.status == 403
    assert seen[0] == (
        "PUT",
        "/api/producer/registration/source-0001",
        {"itemName": "Panel", "root": "R" * 81, "sideKey": "K" * 81},
    )
    assert seen[1][:2] == ("DELETE", f"/api/producer/registration/source-0001/{'K' * 81}")


async def test_unavailable_and_garbage_answers() -> None:
    async def html(_request: web.Request) -> web.Response:
        return web.Response(text="<html>proxy error</html>", status=502, content_type="text/html")

    async def broken(_request: web.Request) -> web.Response:
        return web.json_response({"success": False, "message": "database down"}, status=503)

    async def shapeless(_request: web.Request) -> web.Response:
        return web.json_response({"ids": "not a list", "success": True, "message": "OK"})

    routes = [
        web.put("/html/registration/{id}", html),
        web.put("/broken/registration/{id}", broken),
        web.get("/shapeless/storage/{id}", shapeless),
    ]
    async with serving(routes) as url, aiohttp.ClientSession() as session:
        with pytest.raises(GridUnavailableError, match="without an API response") as caught:
            await GridClient(session, url + "/html").register("entity-01", "x", "producer")
        assert caught.value.status == 502
        with pytest.raises(GridUnavailableError, match="database down") as caught:
            await GridClient(session, url + "/broken").register("entity-01", "x", "producer")
        assert caught.value.status == 503
        with pytest.raises(GridUnavailableError, match="ids"):
            await GridClient(session, url + "/shapeless").list_items("entity-01")
        refused = GridClient(session, f"http://127.0.0.1:{free_port()}", timeout=5)
        with pytest.raises(GridUnavailableError, match="failed") as caught:
            await refused.health()
        assert caught.value.status == 0


async def test_client_argument_checks() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="http"):
            GridClient(session, "ftp://grid")
        client = GridClient(session, "http://127.0.0.1:1")
        with pytest.raises(ValueError, match="non-empty"):
            await client.get_item("", "a", "b")
        with pytest.raises(ValueError, match="needs its context"):
            await client.delete_items("entity-01", None, "item")
    assert issubclass(GridApiError, ProtocolError)
