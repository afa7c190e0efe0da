"""The services a request handler works with, stored on the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..config import GridConfig
    from ..db.engine import Database
    from ..forecast import ForecastService
    from ..registrations import RegistrationService
    from ..statements import StatementService
    from ..storage import StorageService


@dataclass
class GridServices:
    config: GridConfig
    db: Database
    registrations: RegistrationService
    storage: StorageService
    health: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
    """Returns (healthy, details) for the health endpoint."""
    statements: StatementService | None = None
    """Statements (made on first use with the system clock when None)."""
    forecasts: ForecastService | None = None
    """The price forecast (made on first use with the system clock when None)."""


SERVICES_KEY: web.AppKey[GridServices] = web.AppKey("grid_services", GridServices)


def services(request: web.Request) -> GridServices:
    return request.app[SERVICES_KEY]
