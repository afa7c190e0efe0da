"""``GET /health``: is the grid serving, are its database and node reachable, and its slot."""

from __future__ import annotations

from aiohttp import web

from .context import services


async def get_health(request: web.Request) -> web.Response:
    grid = services(request)
    healthy, details = await grid.health()
    return web.json_response(
        {
            "success": healthy,
            "message": "OK" if healthy else "The database is unavailable.",
            **details,
            # Households publish once per slot (Home Assistant takes its period from here).
            "slotSeconds": grid.config.slot_seconds,
        },
        status=200 if healthy else 503,
    )
