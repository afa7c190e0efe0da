"""The portal's statement pages: operators preview, finalise and correct statements.

Reading needs a signed-in operator (or Home Assistant ingress), like every portal API;
finalising and credit notes are POSTs that also need a JSON body (which a foreign page's
form cannot send) and, for a password session, the session's CSRF token in the
``X-CSRF-Token`` header.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from sqlalchemy import func, select

from ..grid.api.common import json_body
from ..grid.api.statements import download, output_format, statement_number, statement_service
from ..grid.db.models import ID_LENGTH, Settlement, Statement
from ..grid.errors import RequestError
from ..grid.statements import STATEMENT, period_containing

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.orm import Session

    from ..grid.config import GridConfig

CSRF_HEADER: Final = "X-CSRF-Token"
_TOTALS: Final = (
    "consumed_milliwh",
    "produced_milliwh",
    "local_milliwh",
    "imported_milliwh",
    "exported_milliwh",
    "consumer_charges",
    "producer_payouts",
    "grid_cut",
)


def statement_routes(
    api: str,
    guard: Callable[[web.Request], Awaitable[str | None]],
    csrf_ok: Callable[[web.Request], bool],
    secure: Callable[[web.StreamResponse], web.StreamResponse],
) -> list[web.RouteDef]:
    """The routes under ``{api}/statements``; ``guard`` says how a request is signed in."""

    def wrap(
        handler: Callable[[web.Request, str], Awaitable[web.StreamResponse | dict[str, Any]]],
        *,
        write: bool = False,
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            via = await guard(request)
            if via is None:
                return secure(_failure(401, "Sign in to use the portal."))
            try:
                if write and not csrf_ok(request):
                    raise RequestError("This change needs the portal's own page.", 403)
                result = await handler(request, via)
            except RequestError as err:
                return secure(_failure(err.status, err.message))
            if isinstance(result, web.StreamResponse):
                return secure(result)
            return secure(web.json_response({"success": True, "message": "OK", "data": result}))

        return wrapper

    base = f"{api}/statements"
    return [
        web.get(base, wrap(_list), allow_head=False),
        web.get(f"{base}/previews", wrap(_previews), allow_head=False),
        web.get(f"{base}/preview", wrap(_preview), allow_head=False),
        web.get(f"{base}/totals", wrap(_totals), allow_head=False),
        web.post(f"{base}/finalise", wrap(_finalise, write=True)),
        web.get(f"{base}/{{number}}", wrap(_document), allow_head=False),
        web.post(f"{base}/{{number}}/credit-note", wrap(_credit_note, write=True)),
    ]


def _failure(status: int, message: str) -> web.Response:
    return web.json_response({"success": False, "message": message}, status=status)


def _registration_param(request: web.Request, required: bool) -> str | None:
    value = request.query.get("registrationId", "").strip()
    if not value:
        if required:
            raise RequestError("'registrationId' is required.", 400)
        return None
    if len(value) > ID_LENGTH:
        raise RequestError(f"'registrationId' has at most {ID_LENGTH} characters.", 400)
    return value


def _int_param(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,10}", raw) or int(raw) > high:
        raise RequestError(f"'{name}' must be a whole number from 0 to {high}.", 400)
    return int(raw)


async def _list(request: web.Request, _via: str) -> dict[str, Any]:
    period = request.query.get("period", "").strip() or None
    if period is not None:
        period = statement_service(request).period(period).label
    return await statement_service(request).list(
        registration_id=_registration_param(request, False),
        period=period,
        page=_int_param(request, "page", 0, 10_000_000),
        page_size=max(1, _int_param(request, "pageSize", 25, 500)),
    )


async def _previews(request: web.Request, _via: str) -> dict[str, Any]:
    service = statement_service(request)
    label = request.query.get("period", "").strip() or service.last_complete_period().label
    period = service.period(label)
    page = _int_param(request, "page", 0, 10_000_000)
    page_size = max(1, _int_param(request, "pageSize", 25, 500))
    documents, total = await service.previews(period.label, page=page, page_size=page_size)
    final = await service.list(period=period.label, page_size=100_000)
    numbers = {
        item["registrationId"]: item["number"]
        for item in final["items"]
        if item["kind"] == "statement"
    }
    return {
        "period": period.label,
        "statementPeriod": service.period(None).label,
        "page": page,
        "totalPages": -(-total // page_size),
        "total": total,
        "items": [
            {
                "registrationId": document["registrationId"],
                "itemName": document["itemName"],
                "itemType": document["itemType"],
                "amounts": document["amounts"],
                "balance": document["balance"],
                "currency": document["currency"],
                "final": numbers.get(document["registrationId"]),
            }
            for document in documents
        ],
    }


async def _preview(request: web.Request, _via: str) -> web.StreamResponse | dict[str, Any]:
    kind = output_format(request)
    registration = _registration_param(request, True)
    assert registration is not None
    document = await statement_service(request).preview(registration, request.query.get("period"))
    return document if kind == "json" else download(document, kind)


async def _document(request: web.Request, _via: str) -> web.StreamResponse | dict[str, Any]:
    kind = output_format(request)
    document = await statement_service(request).document(
        statement_number(request.match_info["number"])
    )
    return document if kind == "json" else download(document, kind)


async def _object_body(request: web.Request) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.", 400)
    return body


async def _finalise(request: web.Request, via: str) -> dict[str, Any]:
    body = await _object_body(request)
    period = body.get("period")
    if not isinstance(period, str) or not period.strip():
        raise RequestError("'period' is required, e.g. 2026-11.", 400)
    registration = body.get("registrationId")
    if registration is not None and (
        not isinstance(registration, str) or not 1 <= len(registration) <= ID_LENGTH
    ):
        raise RequestError(f"'registrationId' is text of 1 to {ID_LENGTH} characters.", 400)
    issued = await statement_service(request).finalise(period, registration, by=f"portal:{via}")
    return {"numbers": [document["number"] for document in issued], "period": issued[0]["period"]}


async def _credit_note(request: web.Request, via: str) -> dict[str, Any]:
    number = statement_number(request.match_info["number"])
    body = await _object_body(request)
    reason = body.get("reason")
    if not isinstance(reason, str):
        raise RequestError("'reason' is required: say why the statement is corrected.", 400)
    amount = body.get("amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise RequestError("'amount' must be a whole number of IOTA.", 400)
    return await statement_service(request).credit_note(number, reason, amount, by=f"portal:{via}")


def community_totals(session: Session, config: GridConfig) -> list[dict[str, Any]]:
    """The community's settled figures per statement period, oldest first, and the fixed
    fees its final statements charged."""
    zone = config.statement_zone
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_TOTALS, 0))
    fees: dict[str, int] = {}
    rows = session.execute(
        select(Settlement.slot_start, *(getattr(Settlement, n) for n in _TOTALS))
    )
    starts: dict[str, int] = {}
    for row in rows:
        period = period_containing(row.slot_start, config.statement_period, zone)
        starts[period.label] = period.start_ms
        figures = totals[period.label]
        for name in _TOTALS:
            figures[name] += int(getattr(row, name))
    for label, start, charged in session.execute(
        select(Statement.period, Statement.period_start, func.sum(Statement.account_charge))
        .where(Statement.kind == STATEMENT)
        .group_by(Statement.period, Statement.period_start)
    ):
        # Statements of an earlier statement_period setting keep their own periods.
        starts.setdefault(label, start)
        totals.setdefault(label, dict.fromkeys(_TOTALS, 0))
        fees[label] = fees.get(label, 0) + int(charged or 0)
    return [
        {
            "period": label,
            "periodStart": starts[label],
            "label": datetime.fromtimestamp(starts[label] / 1000, tz=zone).strftime("%Y-%m"),
            **{_camel(name): value for name, value in totals[label].items()},
            "fixedFees": fees.get(label, 0),
        }
        for label in sorted(totals, key=lambda label: starts[label])
    ]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


async def _totals(request: web.Request, _via: str) -> dict[str, Any]:
    service = statement_service(request)
    config = service.config
    periods = await service.db.run_read(lambda session: community_totals(session, config))
    return {"statementPeriod": config.statement_period, "periods": periods}
