"""A participant's statements over the grid's API: its token, JSON, CSV and PDF, 4xx."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Literal

import pytest
from pypdf import PdfReader

from grid_server.grid.statements import StatementService

from .harness import running_api
from .test_statements import CONFIG, CONSUMERS, DAY, DECEMBER, PRODUCERS, month_of_slots

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database

    from .fakes import ManualClock

LIST = "/statements/{registrationId}"
PREVIEW = "/statements/{registrationId}/preview"
DOCUMENT = "/statements/{registrationId}/{number}"


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


async def test_a_participant_reads_its_own_statements(db: Database) -> None:
    settings = {
        "currency": CONFIG.currency,
        "currency_per_million_iota": CONFIG.currency_per_million_iota,
        "statement_fee": CONFIG.statement_fee,
    }
    async with running_api(db, **settings) as api:
        tokens = {}
        for name in (*CONSUMERS, *PRODUCERS):
            kind: Literal["consumer", "producer"] = "consumer" if name in CONSUMERS else "producer"
            tokens[name] = (await api.client.register(name, name, kind)).token or ""
        token, other = tokens["consumer-x"], tokens["consumer-y"]
        clock: ManualClock = await month_of_slots(db, through=DECEMBER + DAY, register=False)
        clock.now = DECEMBER + 2 * DAY
        service = StatementService(db, CONFIG, clock)
        [first, *_] = await service.finalise("2026-11", None, by="test")
        assert first["registrationId"] == "consumer-x"

        status, answer = await api.call("GET", "/statements/consumer-x", LIST, token=token)
        assert status == 200
        assert [item["number"] for item in answer["items"]] == [1]
        status, answer = await api.call("GET", "/statements/consumer-x/1", DOCUMENT, token=token)
        assert (status, answer["statement"]) == (200, first)
        status, answer = await api.call(
            "GET",
            "/statements/consumer-x/preview",
            PREVIEW,
            token=token,
            params={"period": "2026-11"},
        )
        assert status == 200
        assert answer["statement"]["amounts"] == first["amounts"]
        assert answer["statement"]["kind"] == "preview"

        # Another participant's token, no token, someone else's document: refused.
        for path, template, used, expected in (
            ("/statements/consumer-x", LIST, other, 403),
            ("/statements/consumer-x", LIST, None, 401),
            ("/statements/consumer-y/1", DOCUMENT, other, 404),
            ("/statements/nobody-at-all", LIST, token, 404),
            ("/statements/consumer-x/0", DOCUMENT, token, 400),
            ("/statements/consumer-x/99999999999", DOCUMENT, token, 400),
            ("/statements/consumer-x/abc", DOCUMENT, token, 400),
        ):
            status, answer = await api.call("GET", path, template, token=used)
            assert status == expected, (path, answer)
        for params in ({"period": "2026-13"}, {"period": "November"}, {"format": "xml"}):
            status, answer = await api.call(
                "GET", "/statements/consumer-x/preview", PREVIEW, token=token, params=params
            )
            assert status == 400, (params, answer)
        status, _ = await api.call(
            "GET", "/statements/consumer-x", LIST, token=token, params={"pageSize": "0"}
        )
        assert status == 400

        # CSV and PDF carry the JSON's figures.
        headers = {"Authorization": f"Bearer {token}"}
        async with api.session.get(
            f"{api.url}/statements/consumer-x/1", params={"format": "csv"}, headers=headers
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/csv")
            assert "statement-1-consumer-x-2026-11.csv" in response.headers["Content-Disposition"]
            table = list(csv.reader(io.StringIO(await response.text())))
        assert table[0] == ["section", "item", "value", "unit", "EUR", "note"]
        rows = {(row[0], row[1]): row for row in table[1:]}
        charges = rows[("amount", "Charges (bills)")]
        assert (charges[2], charges[4]) == (
            str(first["amounts"]["charges"]),
            first["currency"]["amounts"]["charges"],
        )
        closing = rows[("balance", "Balance (owed to the grid; negative: owed to you)")]
        assert closing[2] == str(first["balance"]["closing"])
        days = [row for row in table if row[0] == "day"]
        assert [row[1] for row in days] == [day["date"] for day in first["days"]]
        assert sum(int(row[2]) for row in days) == first["amounts"]["charges"]

        async with api.session.get(
            f"{api.url}/statements/consumer-x/1", params={"format": "pdf"}, headers=headers
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/pdf"
            text = pdf_text(await response.read())
        assert "Statement no. 1 (2026-11)" in text
        assert "consumer-x" in text
        assert str(first["amounts"]["charges"]) in text
        assert f"{first['currency']['amounts']['charges']} EUR" in text
        assert str(first["balance"]["closing"]) in text


@pytest.mark.parametrize("auth", ["none"])
async def test_statements_follow_the_storage_authentication(db: Database, auth: str) -> None:
    """With the blueprint's open API (storage_auth none) no token is asked for."""
    async with running_api(db, storage_auth=auth) as api:
        await api.client.register("producer-1", "PV", "producer")
        status, answer = await api.call("GET", "/statements/producer-1", LIST)
        assert (status, answer["items"]) == (200, [])
        status, answer = await api.call("GET", "/statements/producer-1/preview", PREVIEW)
        assert status == 200
        assert answer["statement"]["balance"] == {"opening": 0, "change": 0, "closing": 0}
