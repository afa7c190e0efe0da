"""The portal's statements: previews, finalising, credit notes, downloads, totals, 4xx."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from pypdf import PdfReader

from .test_portal_api import INGRESS, get_data, login, serve

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp import web
    from aiohttp.test_utils import TestClient

    from grid_server.grid.db.engine import Database

    from .seed import Expected

PERIOD = "2026-09"  # the seeded market's slots (T0)


async def post(
    client: TestClient[Any, Any], path: str, body: Any, *, csrf: str | None, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    headers = {"X-CSRF-Token": csrf} if csrf is not None else {}
    headers.update(kwargs.pop("headers", {}))
    response = await client.post(
        f"/portal/api/statements/{path}", json=body, headers=headers, **kwargs
    )
    return response.status, await response.json()


async def test_operators_finalise_and_correct_statements(
    make_app: Callable[..., web.Application], seeded_db: tuple[Database, Expected]
) -> None:
    expected = seeded_db[1]
    async with serve(make_app()) as client:
        assert (await client.get("/portal/api/statements")).status == 401
        assert (await client.post("/portal/api/statements/finalise", json={})).status == 401
        await login(client)
        csrf = (await get_data(client, "session"))["csrfToken"]

        previews = await get_data(client, "statements/previews", params={"period": PERIOD})
        assert previews["period"] == PERIOD
        items = {item["registrationId"]: item for item in previews["items"]}
        consumers = [item for item in items.values() if item["itemType"] == "consumer"]
        assert sum(item["amounts"]["charges"] for item in consumers) == expected.billed
        assert items["consumer-maple-01"]["amounts"]["charges"] == 180
        assert all(item["final"] is None for item in items.values())
        paged = await get_data(
            client, "statements/previews", params={"period": PERIOD, "page": "1", "pageSize": "4"}
        )
        assert (paged["total"], paged["totalPages"]) == (len(items), 2)
        assert [item["registrationId"] for item in paged["items"]] == sorted(items)[4:]

        # Changes need the session's CSRF token and a JSON body.
        status, _ = await post(client, "finalise", {"period": PERIOD}, csrf=None)
        assert status == 403
        response = await client.post(
            "/portal/api/statements/finalise",
            data={"period": PERIOD},
            headers={"X-CSRF-Token": csrf},
        )
        assert response.status == 403
        for body, message in (
            ({}, "period"),
            ([], "object"),
            ({"period": "September"}, "period"),
            ({"period": PERIOD, "registrationId": 5}, "registrationId"),
            ({"period": "2099-01"}, "not over"),
        ):
            status, answer = await post(client, "finalise", body, csrf=csrf)
            assert status in (400, 409), answer
            assert message in answer["message"], answer
        before = await get_data(client, "entities/consumer-maple-01")
        assert before["charged"] == 0
        status, answer = await post(client, "finalise", {"period": PERIOD}, csrf=csrf)
        assert status == 200, answer
        numbers = answer["data"]["numbers"]
        assert numbers == list(range(1, len(items) + 1))
        status, answer = await post(client, "finalise", {"period": PERIOD}, csrf=csrf)
        assert (status, "final already" in answer["message"]) == (409, True)

        listing = await get_data(client, "statements", params={"period": PERIOD})
        assert sorted(item["number"] for item in listing["items"]) == numbers
        maple = next(i for i in listing["items"] if i["registrationId"] == "consumer-maple-01")
        document = await get_data(client, f"statements/{maple['number']}")
        assert document["amounts"]["charges"] == 180

        # Downloads carry the JSON's figures.
        response = await client.get(
            f"/portal/api/statements/{maple['number']}", params={"format": "csv"}
        )
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(await response.text())))
        assert ["amount", "Charges (bills)", "180", "IOTA", "", ""] in table
        response = await client.get(
            f"/portal/api/statements/{maple['number']}", params={"format": "pdf"}
        )
        assert response.headers["Content-Type"] == "application/pdf"
        reader = PdfReader(io.BytesIO(await response.read()))
        text = "\n".join(page.extract_text() for page in reader.pages)
        assert f"Statement no. {maple['number']} ({PERIOD})" in text
        assert "Maple Street 1" in text
        preview = await client.get(
            "/portal/api/statements/preview",
            params={"registrationId": "consumer-maple-01", "period": PERIOD, "format": "pdf"},
        )
        assert preview.status == 200
        assert "preview" in (preview.headers["Content-Disposition"])

        # A correction is a credit note.
        status, answer = await post(
            client, f"{maple['number']}/credit-note", {"reason": "nothing"}, csrf=csrf
        )
        assert status == 409  # nothing changed since it was issued
        bad: list[dict[str, object]] = [
            {"amount": 5},
            {"reason": "x", "amount": "5"},
            {"reason": "x", "amount": 0},
        ]
        for wrong in bad:
            status, _ = await post(client, f"{maple['number']}/credit-note", wrong, csrf=csrf)
            assert status == 400, wrong
        status, answer = await post(
            client,
            f"{maple['number']}/credit-note",
            {"reason": "meter fault", "amount": -30},
            csrf=csrf,
        )
        assert status == 200, answer
        note = answer["data"]
        assert (note["kind"], note["refersTo"], note["balance"]["change"]) == (
            "credit_note",
            maple["number"],
            -30,
        )
        assert note["number"] == len(items) + 1
        # The fee and the hand-given note are owed from now on, like bills.
        after = await get_data(client, "entities/consumer-maple-01")
        assert after["charged"] == 15 - 30
        assert after["outstanding"] == max(0, after["billed"] + after["charged"] - after["paid"])
        assert after["outstanding"] == max(0, before["billed"] - 15 - before["paid"])
        status, _ = await post(client, "999/credit-note", {"reason": "x", "amount": 1}, csrf=csrf)
        assert status == 404

        for path in (
            "statements/0",
            "statements/abc",
            "statements?period=2026-13",
            "statements?page=x",
            "statements/1?format=doc",
            "statements/preview",
            "statements/preview?registrationId=nobody",
        ):
            response = await client.get(f"/portal/api/{path}")
            assert 400 <= response.status < 500, path

        totals = await get_data(client, "statements/totals")
        [september] = totals["periods"]
        assert september["period"] == PERIOD
        assert september["consumerCharges"] == expected.billed
        assert september["gridCut"] == expected.grid_cut
        assert september["fixedFees"] == 15 * len(consumers)


async def test_ingress_changes_need_no_csrf_header(
    make_app: Callable[..., web.Application],
) -> None:
    """Home Assistant's ingress session stands in for the portal's own (still JSON only)."""
    app = make_app(trusted_ingress_addresses=("127.0.0.1",), allow_unsafe_ingress_addresses=True)
    async with serve(app) as client:
        status, answer = await post(
            client, "finalise", {"period": PERIOD}, csrf=None, headers=INGRESS
        )
        assert status == 200, answer
        cross = {**INGRESS, "Sec-Fetch-Site": "cross-site"}
        status, _ = await post(
            client, "1/credit-note", {"reason": "x", "amount": 1}, csrf=None, headers=cross
        )
        assert status == 403
