"""``GET /settlements/{registrationId}``: a participant's settled slots, one row per slot.

What the grid billed a consumer (or paid a producer) in each settled slot, with the
registration's token as for its statements. Home Assistant imports these rows as the
Energy dashboard's hourly statistics, so they are the grid's own bills and payouts (the
figures statements add up), never recomputed. ``settledUntil`` is the end of the last
settled slot of the grid: no slot before it will appear later, so a reader resumes there.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import func, select

from ..db.models import Bill, Payout, Registration, Settlement
from ..units import micro_to_price
from .common import invalid, ok, query_int
from .context import services
from .statements import _authorize

if TYPE_CHECKING:
    from aiohttp import web
    from sqlalchemy.orm import Session

    from ..config import GridConfig

DEFAULT_PAGE_SIZE: Final = 500
MAX_PAGE_SIZE: Final = 2000
# Slot starts are milliseconds since 1970; the largest is far beyond any real slot.
MAX_TIME_MS: Final = 9_999_999_999_999


def settled_slots(
    session: Session, registration_id: str, since_ms: int, page_size: int, config: GridConfig
) -> dict[str, Any]:
    """The registration's rows of the slots starting at or after ``since_ms``, oldest first."""
    registration = session.get(Registration, registration_id)
    assert registration is not None  # authorised just before
    consumer = registration.item_type == "consumer"
    line = Bill if consumer else Payout
    energy = Bill.usage_milliwh if consumer else Payout.energy_milliwh
    rows = session.execute(
        select(
            Settlement.slot_start,
            Settlement.slot_end,
            Settlement.consensus_price_micro,
            energy.label("energy"),
            line.adjustment_milliwh,
            line.amount,
        )
        .join(Settlement, Settlement.id == line.settlement_id)
        .where(line.registration_id == registration_id, Settlement.slot_start >= since_ms)
        .order_by(Settlement.slot_start)
        .limit(page_size + 1)
    ).all()
    more = len(rows) > page_size
    rows = rows[:page_size]
    settled_until = session.scalar(select(func.max(Settlement.slot_end)))
    rate = config.currency_rate
    return {
        "registrationId": registration_id,
        "itemType": registration.item_type,
        "slotSeconds": config.slot_seconds,
        "settledUntil": settled_until,
        **(rate.to_json() if rate is not None else {}),
        "slots": [
            {
                "slotStart": row.slot_start,
                "slotEnd": row.slot_end,
                "energyMilliwh": row.energy,
                "adjustmentMilliwh": row.adjustment_milliwh,
                "amount": row.amount,
                "consensusPrice": None
                if row.consensus_price_micro is None
                else micro_to_price(row.consensus_price_micro),
            }
            for row in rows
        ],
        # Where the next page starts (None: this was the last one).
        "next": rows[-1].slot_start + 1 if more else None,
    }


def since_ms(request: web.Request) -> int:
    """The ``from`` query parameter: a time in ms (0 without one)."""
    values = request.query.getall("from", [])
    if not values:
        return 0
    if len(values) > 1 or not re.fullmatch(r"[0-9]{1,13}", values[0].strip()):
        raise invalid("from", f"It must be one whole number of ms from 0 to {MAX_TIME_MS}.")
    return int(values[0])


async def list_settled_slots(request: web.Request) -> web.Response:
    registration = await _authorize(request)
    since = since_ms(request)
    page_size = query_int(request, ("pageSize", "page-size"), DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    grid = services(request)
    answer = await grid.db.run_read(
        lambda session: settled_slots(session, registration, since, page_size, grid.config)
    )
    return ok(**answer)


def settled_slot_paths(
    registration_id: dict[str, Any],
    secured: list[dict[str, list[str]]],
    errors: dict[str, Any],
    response: dict[str, Any],
) -> dict[str, Any]:
    """The OpenAPI path of this endpoint (``response`` refers to ``SETTLED_SLOTS_SCHEMA``)."""
    size = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE}
    return {
        "/settlements/{registrationId}": {
            "parameters": [registration_id],
            "get": {
                "operationId": "listSettledSlots",
                "summary": "The participant's bill (consumer) or payout (producer) of each "
                "settled slot, oldest first.",
                "tags": ["statements"],
                "security": secured,
                "parameters": [
                    {
                        "name": "from",
                        "in": "query",
                        "required": False,
                        "description": "Only slots starting at or after this time (ms since "
                        "1970); a page's `next` continues from there.",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_TIME_MS},
                    },
                    {"name": "pageSize", "in": "query", "required": False, "schema": size},
                    {"name": "page-size", "in": "query", "required": False, "schema": size},
                ],
                "responses": {"200": response, **errors},
            },
        }
    }


_NULLABLE_INT: Final = {"type": ["integer", "null"]}
SETTLED_SLOTS_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["registrationId", "itemType", "slotSeconds", "settledUntil", "slots", "next"],
    "properties": {
        "registrationId": {"type": "string"},
        "itemType": {"type": "string", "enum": ["producer", "consumer"]},
        "slotSeconds": {"type": "integer", "minimum": 1},
        "settledUntil": {
            **_NULLABLE_INT,
            "description": "End (ms) of the grid's last settled slot: no earlier slot is "
            "still to come. Null before any.",
        },
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "currencyPerMillionIota": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
        "slots": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "slotStart",
                    "slotEnd",
                    "energyMilliwh",
                    "adjustmentMilliwh",
                    "amount",
                    "consensusPrice",
                ],
                "properties": {
                    "slotStart": {"type": "integer"},
                    "slotEnd": {"type": "integer"},
                    "energyMilliwh": {
                        "type": "integer",
                        "description": "Energy billed (consumer) or paid for (producer).",
                    },
                    "adjustmentMilliwh": {
                        "type": "integer",
                        "description": "Of it, late readings of earlier slots.",
                    },
                    "amount": {
                        "type": "integer",
                        "description": "IOTA billed (consumer) or paid out (producer).",
                    },
                    "consensusPrice": {"type": ["number", "null"], "minimum": 0},
                },
            },
        },
        "next": {
            **_NULLABLE_INT,
            "description": "The `from` of the next page; null on the last page.",
        },
    },
}
