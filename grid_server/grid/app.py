"""The aiohttp application of the grid (routes, middlewares, limits)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..http_safety import connection_guard_middleware
from .api.common import body_limit, error_middleware
from .api.context import SERVICES_KEY
from .api.forecast import get_forecast
from .api.health import get_health
from .api.openapi import get_openapi
from .api.registration import delete_registration, put_registration
from .api.settled_slots import list_settled_slots
from .api.statements import get_statement, list_statements, preview_statement
from .api.storage import delete_items, get_item, list_items, put_item

if TYPE_CHECKING:
    from .api.context import GridServices

REGISTRATION = "/registration/{registrationId}"
ITEM = "/storage/{registrationId}/{context}/{itemId}"
ITEM_PREFIXED = "/storage/item/{registrationId}/{context}/{itemId}"
CONTEXT = "/storage/{registrationId}/{context}"
FOLDER = "/storage/{registrationId}"
STATEMENTS = "/statements/{registrationId}"
SETTLEMENTS = "/settlements/{registrationId}"


def create_app(grid: GridServices) -> web.Application:
    """The grid's web application; other parts (the portal) may add routes to it."""
    # Room for the largest storage item plus JSON framing; bigger bodies get 413.
    app = web.Application(
        middlewares=[connection_guard_middleware, error_middleware],
        client_max_size=body_limit(grid.config),
    )
    app[SERVICES_KEY] = grid
    routes = [
        web.put(REGISTRATION, put_registration),
        web.delete(REGISTRATION, delete_registration),
        web.delete(REGISTRATION + "/{sideKey}", delete_registration),
        web.put(ITEM_PREFIXED, put_item),
        web.get(ITEM_PREFIXED, get_item, allow_head=False),
        web.delete(ITEM_PREFIXED, delete_items),
        web.put(ITEM, put_item),
        web.get(ITEM, get_item, allow_head=False),
        web.delete(ITEM, delete_items),
        web.get(CONTEXT, list_items, allow_head=False),
        web.delete(CONTEXT, delete_items),
        web.get(FOLDER, list_items, allow_head=False),
        web.delete(FOLDER, delete_items),
        # The blueprint's examples end folder URLs with a slash.
        web.get(CONTEXT + "/", list_items, allow_head=False),
        web.delete(CONTEXT + "/", delete_items),
        web.get(FOLDER + "/", list_items, allow_head=False),
        web.delete(FOLDER + "/", delete_items),
        web.get(STATEMENTS, list_statements, allow_head=False),
        web.get(STATEMENTS + "/preview", preview_statement, allow_head=False),
        web.get(STATEMENTS + "/{number}", get_statement, allow_head=False),
        web.get(SETTLEMENTS, list_settled_slots, allow_head=False),
        web.get("/health", get_health, allow_head=False),
        web.get("/forecast", get_forecast, allow_head=False),
        web.get("/api/openapi.json", get_openapi, allow_head=False),
    ]
    app.add_routes(routes)
    return app
