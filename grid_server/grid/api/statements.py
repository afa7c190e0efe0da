"""A participant's statements over the grid's API, authenticated with its registration token.

Operators list, finalise and correct statements in the portal (``/portal/api/statements``);
participants read their own here: the list, a preview of a period, and each final
document as JSON, CSV or PDF.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..auth import check_token
from ..clock import system_clock
from ..db.models import Registration
from ..errors import RequestError
from ..statements import StatementService
from ..statements_render import filename, to_csv, to_pdf
from .common import MAX_PAGE, bearer_token, invalid, ok, query_int, registration_id
from .context import services

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

MAX_NUMBER = 2_000_000_000
DOWNLOADS = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


def statement_service(request: web.Request) -> StatementService:
    """The grid's statement service (one made on first use when the app has none)."""
    grid = services(request)
    if grid.statements is None:
        grid.statements = StatementService(grid.db, grid.config, system_clock)
    return grid.statements


def statement_number(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", text) or not 1 <= int(text) <= MAX_NUMBER:
        raise invalid("number", f"It must be a whole number from 1 to {MAX_NUMBER}.")
    return int(text)


def download(document: dict[str, Any], kind: str) -> web.Response:
    """A final document or preview as an attachment (``csv`` or ``pdf``)."""
    body = to_csv(document).encode() if kind == "csv" else to_pdf(document)
    return web.Response(
        body=body,
        headers={
            "Content-Type": DOWNLOADS[kind],
            "Content-Disposition": f'attachment; filename="{filename(document, kind)}"',
            "Cache-Control": "no-store",
        },
    )


def output_format(request: web.Request) -> str:
    kind = request.query.get("format", "json")
    if kind not in ("json", *DOWNLOADS):
        raise invalid("format", "It must be json, csv or pdf.")
    return kind


async def _authorize(request: web.Request) -> str:
    """The path's registration, if the request carries its token (when tokens are on)."""
    grid = services(request)
    registration = registration_id(request)
    token = bearer_token(request)
    if grid.config.storage_auth == "token" and token is None:
        check_token(None, None)

    def load(session: Session) -> str | None:
        row = session.get(Registration, registration)
        return None if row is None else row.token_hash or ""

    stored = await grid.db.run_read(load)
    if stored is None:
        raise RequestError(f"The registration '{registration}' does not exist.", 404)
    if grid.config.storage_auth == "token":
        check_token(stored or None, token)
    return registration


async def list_statements(request: web.Request) -> web.Response:
    registration = await _authorize(request)
    page_size = query_int(request, ("pageSize", "page-size"), 50, 1, 500)
    page = query_int(request, ("page",), 0, 0, MAX_PAGE)
    listing = await statement_service(request).list(
        registration_id=registration, page=page, page_size=page_size
    )
    return ok(**listing)


async def preview_statement(request: web.Request) -> web.Response:
    registration = await _authorize(request)
    kind = output_format(request)
    document = await statement_service(request).preview(registration, request.query.get("period"))
    return ok(statement=document) if kind == "json" else download(document, kind)


async def get_statement(request: web.Request) -> web.Response:
    registration = await _authorize(request)
    number = statement_number(request.match_info["number"])
    kind = output_format(request)
    document = await statement_service(request).document(number, registration)
    return ok(statement=document) if kind == "json" else download(document, kind)
