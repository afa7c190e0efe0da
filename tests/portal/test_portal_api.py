"""The portal's login, ingress trust and JSON API on a seeded market."""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from grid_server.http_safety import SECURITY_HEADERS
from grid_server.portal import app as portal_app
from grid_server.portal.app import COOKIE, STATIC_DIR
from grid_server.portal.throttle import LoginThrottle

from .conftest import PASSWORD
from .seed import ADDRESS, BUNDLE, T0, Expected

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from aiohttp import web

    from grid_server.grid.db.engine import Database

INGRESS = {"X-Ingress-Path": "/api/hassio_ingress/abc123"}


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[TestClient[Any, Any]]:
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def login(client: TestClient[Any, Any], password: str = PASSWORD) -> Any:
    """Sign in as a browser does: the form (and its CSRF token) first, then the post."""
    form = await client.get("/portal/login", allow_redirects=False)
    token = csrf_field(await form.text())
    return await client.post(
        "/portal/login", data={"password": password, "csrf": token}, allow_redirects=False
    )


def csrf_field(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]*)"', page)
    assert match is not None, page
    return match.group(1)


async def logout(client: TestClient[Any, Any]) -> Any:
    """Sign out with the page's form (its token comes from the session API)."""
    token = (await get_data(client, "session"))["csrfToken"]
    return await client.post("/portal/logout", data={"csrf": token}, allow_redirects=False)


async def get_data(client: TestClient[Any, Any], path: str, **kwargs: Any) -> Any:
    response = await client.get(f"/portal/api/{path}", **kwargs)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["success"] is True
    return body["data"]


@pytest.fixture
async def signed_in(
    make_app: Callable[..., web.Application],
) -> AsyncIterator[TestClient[Any, Any]]:
    async with serve(make_app()) as client:
        response = await login(client)
        assert response.status == 302
        yield client


async def test_everything_needs_a_sign_in(make_app: Callable[..., web.Application]) -> None:
    async with serve(make_app()) as client:
        page = await client.get("/portal/", allow_redirects=False)
        assert page.status == 302
        assert page.headers["Location"] == "login"
        bare = await client.get("/portal", allow_redirects=False)
        assert bare.headers["Location"] == "portal/"
        for path in (
            "session",
            "overview",
            "entities",
            "prices",
            "settlements",
            "payments",
            "node",
        ):
            response = await client.get(f"/portal/api/{path}")
            assert response.status == 401
            assert (await response.json())["success"] is False
        # Static files (styles, Chart.js) are public; they hold no data.
        assert (await client.get("/portal/static/portal.css")).status == 200


async def test_login_sets_a_session_cookie(make_app: Callable[..., web.Application]) -> None:
    async with serve(make_app()) as client:
        form = await client.get("/portal/login")
        assert form.status == 200
        text = await form.text()
        assert 'name="password"' in text
        assert "disabled" not in text
        # The same browser protections as the node's explorer (one definition).
        for name, value in SECURITY_HEADERS.items():
            assert form.headers[name] == value
        assert "frame-ancestors 'self'" in form.headers["Content-Security-Policy"]
        wrong = await login(client, "not the password")
        assert wrong.status == 401
        assert "Wrong password." in await wrong.text()
        assert COOKIE not in wrong.cookies
        right = await login(client)
        assert right.status == 302
        assert right.headers["Location"] == "./"
        cookie = right.cookies[COOKIE]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/portal/"
        page = await client.get("/portal/")
        assert page.status == 200
        assert "static/vendor/chart.umd.min.js" in await page.text()
        assert (await get_data(client, "session"))["via"] == "password"
        # Signed in, the login page sends the operator on to the portal.
        again = await client.get("/portal/login", allow_redirects=False)
        assert again.headers["Location"] == "./"
        out = await logout(client)
        assert out.status == 302
        assert (await client.get("/portal/api/overview")).status == 401


async def test_a_forged_or_foreign_cookie_is_refused(
    make_app: Callable[..., web.Application], tmp_path: Path
) -> None:
    async with serve(make_app()) as client:
        token = (await login(client)).cookies[COOKIE].value
    async with serve(make_app()) as client:
        # Same database and data folder: the session is open in every grid process.
        ok = await client.get("/portal/api/session", cookies={COOKIE: token})
        assert ok.status == 200
        for bad in (token[:-1], token + "A", "garbage", "", "é" * 10, "A" * 500):
            response = await client.get("/portal/api/session", cookies={COOKIE: bad})
            assert response.status == 401
    # Another session secret: every session opened with the old one has ended.
    async with serve(make_app(session_secret="x" * 40)) as client:
        response = await client.get("/portal/api/session", cookies={COOKIE: token})
        assert response.status == 401


class ManualTime:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_repeated_failures_are_slowed_down(make_app: Callable[..., web.Application]) -> None:
    app = make_app()
    time = ManualTime()
    app[portal_app.PORTAL_KEY].throttle = LoginThrottle(clock=time)
    async with serve(app) as client:
        for _ in range(5):
            assert (await login(client, "wrong password")).status == 401
        # Even the right password waits: a guess that is not tried tells nothing.
        blocked = await login(client)
        assert blocked.status == 429
        assert blocked.headers["Retry-After"] == "2"
        assert "Too many sign-in attempts. Try again in 2 seconds." in await blocked.text()
        time.now += 1.0
        assert (await login(client)).status == 302


async def test_ingress_from_the_trusted_address_needs_no_password(
    make_app: Callable[..., web.Application],
) -> None:
    async with serve(
        make_app(trusted_ingress_addresses=("127.0.0.1",), allow_unsafe_ingress_addresses=True)
    ) as client:
        page = await client.get("/portal/", headers=INGRESS)
        assert page.status == 200
        session = await get_data(client, "session", headers=INGRESS)
        assert session["via"] == "ingress"
        # Without the header the same peer is an ordinary visitor.
        assert (await client.get("/portal/api/session")).status == 401


async def test_ingress_header_from_elsewhere_is_not_trusted(
    make_app: Callable[..., web.Application],
) -> None:
    # The default trusts only the Supervisor's gateway, 172.30.32.2.
    async with serve(make_app()) as client:
        assert (await client.get("/portal/api/session", headers=INGRESS)).status == 401
        page = await client.get("/portal/", headers=INGRESS, allow_redirects=False)
        assert page.status == 302


async def test_without_a_password_only_ingress_opens_the_portal(
    make_app: Callable[..., web.Application],
) -> None:
    async with serve(make_app(password_hash=None)) as client:
        form = await client.get("/portal/login")
        text = await form.text()
        assert "No operator password is set" in text
        assert "disabled" in text
        assert (await login(client)).status == 403


async def test_overview_totals(
    signed_in: TestClient[Any, Any], seeded_db: tuple[Database, Expected]
) -> None:
    expected = seeded_db[1]
    data = await get_data(signed_in, "overview")
    assert data["producers"] == {
        "active": expected.producers,
        "removed": 0,
        "outputKwh": expected.produced_kwh,
        "earned": expected.earned,
        "paid": expected.paid_out,
        "pendingPayouts": expected.pending_payouts,
    }
    assert data["consumers"] == {
        "active": expected.consumers,
        "removed": expected.removed_consumers,
        "usageKwh": expected.consumed_kwh,
        "billed": expected.billed,
        "paid": expected.received,
        "pendingPayments": expected.pending_incoming,
        # Neither pending nor dropped payments lower what is owed.
        "outstanding": expected.billed - expected.received,
        "droppedPayments": expected.dropped_incoming,
        "droppedPaymentCount": 1,
    }
    assert data["grid"] == {
        "runningCosts": expected.import_cost,
        "exportRevenue": expected.export_revenue,
        "gridCut": expected.grid_cut,
        "distributionAvailable": 120 - 130 - 40 + 25 - 35,
    }
    assert data["settlements"]["count"] == expected.settlements
    assert data["settlements"]["failedInvariants"] == expected.failed
    assert data["settlements"]["latestPrice"] == 30.0
    assert data["energy"] == {"localKwh": 9.0, "importedKwh": 0.0, "exportedKwh": 3.0}


async def test_entities_search_filter_and_pages(signed_in: TestClient[Any, Any]) -> None:
    everyone = await get_data(signed_in, "entities")
    assert everyone["totalItems"] == 6
    # Producers first, then consumers, each by name.
    assert [item["name"] for item in everyone["items"][:2]] == ["Sunny Acres", "Windy Hill"]
    maple = await get_data(signed_in, "entities", params={"q": "MAPLE"})
    assert [item["id"] for item in maple["items"]] == ["consumer-maple-01", "consumer-maple-02"]
    first = maple["items"][0]
    assert first["energyKwh"] == 6.0
    assert first["billed"] == 180
    assert first["paid"] == 120
    assert first["pending"] == 50
    assert first["outstanding"] == 60
    # LIKE wildcards in the search are literal characters.
    assert [
        i["id"] for i in (await get_data(signed_in, "entities", params={"q": "100%"}))["items"]
    ] == ["consumer-oak-100%"]
    assert (await get_data(signed_in, "entities", params={"q": "_"}))["totalItems"] == 1
    producers = await get_data(signed_in, "entities", params={"type": "producer"})
    sunny = producers["items"][0]
    assert (sunny["earned"], sunny["paid"], sunny["pending"]) == (170, 100, 70)
    page = await get_data(signed_in, "entities", params={"page": "1", "pageSize": "4"})
    assert (page["page"], page["pageSize"], page["totalPages"], len(page["items"])) == (1, 4, 2, 2)
    beyond = await get_data(signed_in, "entities", params={"page": "9"})
    assert beyond["items"] == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("entities?type=source", "'type' must be all, producer or consumer"),
        ("entities?page=-1", "'page' must be a whole number"),
        ("entities?pageSize=0", "'pageSize' must be a whole number from 1 to 100"),
        ("entities?pageSize=101", "'pageSize' must be a whole number from 1 to 100"),
        ("entities?q=" + "x" * 201, "'q' may have at most 200 characters"),
        ("prices?limit=abc", "'limit' must be a whole number"),
        ("payments?kind=refunds", "'kind' must be payouts or incoming"),
    ],
)
async def test_bad_parameters_get_400(
    signed_in: TestClient[Any, Any], path: str, message: str
) -> None:
    response = await signed_in.get(f"/portal/api/{path}")
    assert response.status == 400
    assert message in (await response.json())["message"]


async def test_producer_detail_shows_output_and_sources(signed_in: TestClient[Any, Any]) -> None:
    sunny = await get_data(signed_in, "entities/producer-sunny-acres")
    assert sunny["type"] == "producer"
    assert [point["kwh"] for point in sunny["series"]] == [2.0, 2.0, 2.0]
    assert [point["price"] for point in sunny["series"]] == [25.0, 25.0, 25.0]
    assert [point["endTime"] for point in sunny["series"]] == [T0 + 60_000 * n for n in (1, 2, 3)]
    assert [source["name"] for source in sunny["sources"]] == [
        "Roof array 1",
        "Roof array 2",
        "Roof array 3",
    ]
    assert [source["type"] for source in sunny["sources"]] == ["solar", "solar", "wind"]
    assert [(p["amount"], p["status"]) for p in sunny["payouts"]] == [
        (70, "in_transfer"),
        (100, "confirmed"),
    ]
    assert sunny["payouts"][1]["bundle"] == BUNDLE
    assert sunny["channels"][0]["skippedMessages"] == 1


async def test_consumer_detail_shows_bills_and_payments(signed_in: TestClient[Any, Any]) -> None:
    maple = await get_data(signed_in, "entities/consumer-maple-02")
    assert [bill["amount"] for bill in maple["bills"]] == [40, 40, 40]
    assert [bill["requested"] for bill in maple["bills"]] == [False, True, True]
    assert maple["name"] == "Maple Street 2 <b>bold</b>"
    assert (maple["outstanding"], maple["dropped"], maple["paid"]) == (120, 40, 0)
    assert [(p["amount"], p["status"], p["droppedAt"]) for p in maple["payments"]] == [
        (40, "dropped", T0 + 303_000)
    ]
    assert "not consistent" in maple["payments"][0]["problem"]
    payer = await get_data(signed_in, "entities/consumer-maple-01")
    assert [(p["amount"], p["status"]) for p in payer["payments"]] == [
        (50, "pending"),
        (120, "confirmed"),
    ]
    missing = await signed_in.get("/portal/api/entities/nobody-here-at-all")
    assert missing.status == 404


async def test_price_history_and_settlements(signed_in: TestClient[Any, Any]) -> None:
    prices = await get_data(signed_in, "prices")
    assert [row["price"] for row in prices] == [20.0, 25.0, 30.0]
    assert [row["importPrice"] for row in prices] == [100.0] * 3
    assert (await get_data(signed_in, "prices", params={"limit": "2"}))[0]["price"] == 25.0
    slots = await get_data(signed_in, "settlements")
    assert slots["totalItems"] == 3
    assert [row["moneyBalanced"] for row in slots["items"]] == [False, True, True]
    assert slots["items"][0]["invariants"] == {
        "energy": "4 kWh in = 4 kWh out",
        "money": "off by 3",
    }
    failed = await get_data(signed_in, "settlements", params={"failed": "1"})
    assert [row["slotStart"] for row in failed["items"]] == [T0 + 2 * 60_000]


async def test_payments_both_ways(signed_in: TestClient[Any, Any]) -> None:
    payouts = await get_data(signed_in, "payments")
    assert payouts["totalItems"] == 4
    assert [row["status"] for row in payouts["items"]] == [
        "pending",
        "in_transfer",
        "recorded",
        "confirmed",
    ]
    assert payouts["items"][2]["method"] == "off_tangle"
    assert payouts["items"][2]["destination"] == "INVOICE-42"
    assert payouts["items"][3]["transactions"] == ["D" * 81]
    incoming = await get_data(signed_in, "payments", params={"kind": "incoming"})
    assert [(row["amount"], row["status"]) for row in incoming["items"]] == [
        (40, "dropped"),
        (50, "pending"),
        (120, "confirmed"),
    ]
    assert incoming["items"][2]["address"] == ADDRESS
    assert incoming["items"][2]["problem"] is None


async def test_node_status_reports_an_unreachable_node(
    make_app: Callable[..., web.Application],
) -> None:
    async with serve(make_app(node_url="http://127.0.0.1:9")) as client:
        await login(client)
        data = await get_data(client, "node")
    assert data["grid"]["healthy"] is True
    assert data["node"] is None
    assert data["nodeError"]
    # A node on loopback is linked on the browser's host at the node's port.
    assert data["explorer"] == {"url": None, "port": 9, "path": "/explorer/"}


def test_explorer_base_prefers_configuration(
    make_app: Callable[..., web.Application],
) -> None:
    app = make_app(node_url="http://node.example:14265", explorer_url="https://tangle.example/x")
    assert portal_app.explorer_base(app[portal_app.PORTAL_KEY]) == {
        "url": "https://tangle.example/x/",
        "port": None,
    }
    app = make_app(node_url="http://node.example:14265/")
    assert portal_app.explorer_base(app[portal_app.PORTAL_KEY])["url"] == (
        "http://node.example:14265/explorer/"
    )
    assert portal_app.explorer_base(make_app()[portal_app.PORTAL_KEY]) == {
        "url": None,
        "port": None,
    }


async def test_chart_library_is_served_locally_as_vendored(
    signed_in: TestClient[Any, Any],
) -> None:
    vendor = json.loads((STATIC_DIR / "vendor" / "VENDOR.json").read_text(encoding="utf-8"))
    chart = vendor["chart.js"]
    response = await signed_in.get("/portal/static/vendor/chart.umd.min.js")
    assert response.status == 200
    body = await response.read()
    assert f"sha256:{hashlib.sha256(body).hexdigest()}" == chart["files"]["chart.umd.min.js"]
    assert body.startswith(b"/*!\n * Chart.js v" + chart["version"].encode())
    licence = STATIC_DIR / "vendor" / chart["licenseFile"]
    assert "MIT License" in licence.read_text(encoding="utf-8")
    # No page refers to anything outside the grid.
    for page in (*Path(STATIC_DIR.parent / "pages").glob("*.html"), STATIC_DIR / "portal.js"):
        text = page.read_text(encoding="utf-8")
        assert "https://" not in text
        assert "http://" not in text


async def test_disabled_portal_mounts_nothing(make_app: Callable[..., web.Application]) -> None:
    async with serve(make_app(enabled=False)) as client:
        response = await client.get("/portal/login")
        assert response.status == 404
