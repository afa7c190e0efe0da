"""``GET /health``: is the grid serving, and are its database and node reachable."""

from __future__ import annotations

from aiohttp import web

from .context import services


async def get_health(request: web.Request) -> web.Response:
    healthy, details = await services(request).health()
    return web.json_response(
        {
            "success": healthy,
            "message": "OK" if healthy else "The database is unavailable.",
            **details,
        },
        status=200 if healthy else 503,
    )
