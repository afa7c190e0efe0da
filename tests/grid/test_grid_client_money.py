"""The protocol library's grid client for money: the currency rate, a participant's
statements and settled slots, against the grid's real API (real HTTP and database)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import pytest
from aiohttp import web
from p2p_energy_protocol.errors import GridApiError, GridUnavailableError
from p2p_energy_protocol.grid_client import CurrencyRate, GridClient, currency_rate_of

from grid_server.grid.statements import StatementService

from .harness import running_api
from .test_api_settled_slots import _grid_rows
from .test_grid_client import serving
from .test_statements import CONFIG, CONSUMERS, DAY, DECEMBER, PRODUCERS, month_of_slots

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database

    from .fakes import ManualClock


async def test_statements_and_settled_slots_through_the_client(db: Database) -> None:
    settings = {
        "slot_seconds": CONFIG.slot_seconds,
        "currency": CONFIG.currency,
        "currency_per_million_iota": CONFIG.currency_per_million_iota,
        "statement_fee": CONFIG.statement_fee,
    }
    async with running_api(db, **settings) as api:
        client = api.client
        tokens = {}
        for name in (*CONSUMERS, *PRODUCERS):
            kind: Literal["consumer", "producer"] = "consumer" if name in CONSUMERS else "producer"
            tokens[name] = (await client.register(name, name, kind)).token or ""
        token = tokens["consumer-x"]
        assert await client.latest_statement("consumer-x", token=token) is None

        clock: ManualClock = await month_of_slots(db, through=DECEMBER + DAY, register=False)
        clock.now = DECEMBER + 2 * DAY
        [first, *_] = await StatementService(db, CONFIG, clock).finalise("2026-11", None, by="t")
        assert first["registrationId"] == "consumer-x"

        page = await client.list_statements("consumer-x", token=token)
        assert (page.total, page.page, [item["number"] for item in page.items]) == (1, 0, [1])
        assert await client.statement("consumer-x", 1, token=token) == first
        assert await client.latest_statement("consumer-x", token=token) == first
        preview = await client.statement_preview("consumer-x", "2026-11", token=token)
        assert (preview["kind"], preview["amounts"]) == ("preview", first["amounts"])
        current = await client.statement_preview("consumer-x", token=token)
        assert current["kind"] == "preview"

        rows: list[Any] = []
        since: int | None = 0
        while since is not None:
            slots = await client.settled_slots("consumer-x", since, page_size=50, token=token)
            assert slots.rate == CurrencyRate("EUR", Decimal("0.25"))
            assert slots.settled_until == DECEMBER + DAY
            rows += slots.slots
            since = slots.next_from
        assert [(r.start_ms, r.end_ms, r.energy_milliwh, r.amount) for r in rows] == _grid_rows(
            db, "consumer-x"
        )
        assert rows[0].energy_kwh == Decimal(rows[0].energy_milliwh) / 1_000_000

        # Someone else's token is refused with the grid's own words and status.
        with pytest.raises(GridApiError, match="does not belong") as caught:
            await client.latest_statement("consumer-x", token=tokens["consumer-y"])
        assert caught.value.status == 403
        with pytest.raises(GridApiError) as caught:
            await client.settled_slots("consumer-x", token=None)
        assert caught.value.status == 401


def test_currency_rate_of_an_answer() -> None:
    rate = currency_rate_of({"currency": "EUR", "currencyPerMillionIota": "0.25"})
    assert rate == CurrencyRate("EUR", Decimal("0.25"))
    assert rate.amount(1_000_002) == Decimal("0.25")
    assert rate.amount(1_020_000) == Decimal("0.26")  # 0.255: half to even
    assert rate.value(3) == Decimal("0.00000075")
    assert rate.value(50.5) == Decimal("0.000012625")
    for answer in (
        {},
        {"currency": "EUR"},
        {"currency": "eur", "currencyPerMillionIota": "1"},
        {"currency": "EUR", "currencyPerMillionIota": "-1"},
        {"currency": "EUR", "currencyPerMillionIota": "0"},
        {"currency": "EUR", "currencyPerMillionIota": "1e3"},
        {"currency": "EUR", "currencyPerMillionIota": 1},
    ):
        assert currency_rate_of(answer) is None, answer


async def test_money_answers_of_the_wrong_shape() -> None:
    async def health(_request: web.Request) -> web.Response:
        return web.json_response(
            {"success": True, "message": "OK", "currency": "CHF", "currencyPerMillionIota": "2"}
        )

    async def bad_list(_request: web.Request) -> web.Response:
        return web.json_response(
            {"success": True, "message": "OK", "items": [1], "total": 1, "page": 0, "pageSize": 1}
        )

    async def numberless(_request: web.Request) -> web.Response:
        items = [{"kind": "statement"}]
        return web.json_response(
            {"success": True, "message": "OK", "items": items, "total": 1, "page": 0, "pageSize": 1}
        )

    async def no_statement(_request: web.Request) -> web.Response:
        return web.json_response({"success": True, "message": "OK", "statement": []})

    async def bad_slots(_request: web.Request) -> web.Response:
        return web.json_response({"success": True, "message": "OK", "slots": ["x"]})

    routes = [
        web.get("/a/health", health),
        web.get("/a/statements/{id}", bad_list),
        web.get("/b/statements/{id}", numberless),
        web.get("/a/statements/{id}/{number}", no_statement),
        web.get("/a/settlements/{id}", bad_slots),
    ]
    async with serving(routes) as url, aiohttp.ClientSession() as session:
        client = GridClient(session, url + "/a")
        assert await client.currency_rate() == CurrencyRate("CHF", Decimal(2))
        with pytest.raises(GridUnavailableError, match="not objects"):
            await client.list_statements("entity-01")
        with pytest.raises(GridUnavailableError, match="no number"):
            await GridClient(session, url + "/b").latest_statement("entity-01")
        with pytest.raises(GridUnavailableError, match="'statement' object"):
            await client.statement("entity-01", 3)
        with pytest.raises(GridUnavailableError, match="not an object"):
            await client.settled_slots("entity-01")
