"""``GET /forecast``: the indicative price of each slot of the next 24 hours.

Public like a day-ahead price: it shows community totals only, never a participant.
The model is explained in :mod:`grid_server.grid.forecast`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..forecast import HORIZON_MS, ForecastService
from .common import ok, query_int
from .context import services

if TYPE_CHECKING:
    from aiohttp import web

MAX_HOURS = HORIZON_MS // 3_600_000


def forecast_service(request: web.Request) -> ForecastService:
    """The grid's forecast service (made on first use)."""
    grid = services(request)
    if grid.forecasts is None:
        grid.forecasts = ForecastService(grid.db, grid.config)
    return grid.forecasts


async def get_forecast(request: web.Request) -> web.Response:
    hours = query_int(request, ("hours",), MAX_HOURS, 1, MAX_HOURS)
    slots = await forecast_service(request).slots()
    until = slots[0].start_ms + hours * 3_600_000
    return ok(
        slotSeconds=services(request).config.slot_seconds,
        strategy=services(request).config.pricing_strategy,
        slots=[slot.to_json() for slot in slots if slot.start_ms < until],
    )


def _number(description: str, *, nullable: bool = False) -> dict[str, object]:
    kind: object = ["number", "null"] if nullable else "number"
    return {"type": kind, "description": description}


OPENAPI_PATHS: dict[str, object] = {
    "/forecast": {
        "get": {
            "operationId": "forecast",
            "summary": "The indicative price of each slot of the next 24 hours.",
            "description": "From producers' announced expected output and asking prices and "
            "the community's typical demand at that time, priced by the grid's own "
            "settlement. Indicative only: slots are billed at their settled price.",
            "tags": ["forecast"],
            "parameters": [
                {
                    "name": "hours",
                    "in": "query",
                    "required": False,
                    "description": "How many hours ahead (from the current slot).",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_HOURS},
                }
            ],
            "responses": {
                "200": {
                    "description": "The forecast, one entry per slot.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Forecast"}}
                    },
                },
                "400": {
                    "description": "Invalid input; `message` names the parameter and why.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Result"}}
                    },
                },
                "503": {
                    "description": "The grid's database is unavailable; try again later.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Result"}}
                    },
                },
            },
        }
    }
}
OPENAPI_SCHEMAS: dict[str, object] = {
    "Forecast": {
        "allOf": [
            {"$ref": "#/components/schemas/Result"},
            {
                "type": "object",
                "required": ["slotSeconds", "strategy", "slots"],
                "properties": {
                    "slotSeconds": {"type": "integer"},
                    "strategy": {"type": "string", "description": "The grid's pricing strategy."},
                    "slots": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": [
                                "startTime",
                                "endTime",
                                "price",
                                "localPrice",
                                "demandKwh",
                                "supplyKwh",
                                "announcedKwh",
                            ],
                            "properties": {
                                "startTime": {"type": "integer", "description": "Unix ms."},
                                "endTime": {"type": "integer", "description": "Unix ms."},
                                "price": _number("What a consumer pays per kWh (IOTA)."),
                                "localPrice": _number(
                                    "The consensus price of local energy (IOTA per kWh).",
                                    nullable=True,
                                ),
                                "demandKwh": _number("The community's typical demand."),
                                "supplyKwh": _number("The producers' expected output."),
                                "announcedKwh": _number("The part producers announced."),
                            },
                        },
                    },
                },
            },
        ]
    }
}
