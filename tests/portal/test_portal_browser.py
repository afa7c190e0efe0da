"""The portal in a real headless Chromium: login, every view, charts, no console errors.

Screenshots of each view go to ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestServer

from tests.browser import open_page, screenshot, wait_until

from .conftest import PASSWORD

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from aiohttp import web
    from playwright.async_api import Browser, Page, Route


async def rows(page: Page, table: str, count: int) -> None:
    await wait_until(
        page,
        "([table, count]) => document.querySelectorAll(`#${table} tbody tr`).length === count",
        [table, count],
    )


async def chart_points(page: Page, canvas_id: str) -> list[Any]:
    """The data of the Chart.js chart drawn on ``canvas_id`` (fails if none was drawn)."""
    await wait_until(
        page, "(id) => window.Chart && !!Chart.getChart(document.getElementById(id))", canvas_id
    )
    return await page.evaluate(
        """(id) => {
          const chart = Chart.getChart(document.getElementById(id));
          const canvas = chart.canvas;
          // Something was painted: some pixel is not transparent.
          const context = canvas.getContext("2d");
          const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
          let painted = false;
          for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) { painted = true; break; }
          return [painted, chart.data.datasets.map((set) => set.data)];
        }""",
        canvas_id,
    )


@pytest.fixture
async def portal_url(make_app: Callable[..., web.Application]) -> AsyncIterator[str]:
    server = TestServer(make_app(node_url="http://127.0.0.1:9"), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/portal/"))
    finally:
        await server.close()


@pytest.mark.slow
async def test_operator_signs_in_and_browses_every_view(browser: Browser, portal_url: str) -> None:
    page, problems = await open_page(browser)
    await page.goto(portal_url)
    assert page.url.endswith("/portal/login")
    await screenshot(page, "portal-login")
    await page.fill("#password", "wrong password")
    await page.click("button[type=submit]")
    assert await page.locator(".notice").inner_text() == "Wrong password."
    problems.clear()  # the 401 answer of the failed attempt is logged by Chromium
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#cards .card")
    assert page.url.endswith("/portal/")

    cards = await page.locator("#cards .card h3").all_inner_texts()
    assert [title.lower() for title in cards[:2]] == ["producers", "consumers"]
    assert "Distribution available".lower() in [title.lower() for title in cards]
    # A payment that could never confirm is flagged where the operator looks first.
    dropped = page.locator("#cards .card.warning")
    assert (await dropped.locator("h3").inner_text()).lower() == "dropped payments"
    assert "40" in await dropped.locator(".value").inner_text()
    painted, data = await chart_points(page, "price-chart")
    assert painted
    assert data[0] == [20, 25, 30]
    painted, data = await chart_points(page, "energy-chart")
    assert painted
    assert data == [[4, 4, 4], [3, 3, 3]]
    await screenshot(page, "portal-overview")

    await page.click("a[data-view=entities]")
    await page.wait_for_selector("#entity-table tbody tr.clickable")
    assert await page.locator("#entity-table tbody tr").count() == 6
    await page.fill("#entity-search", "maple")
    await rows(page, "entity-table", 2)
    names = await page.locator("#entity-table tbody td strong").all_inner_texts()
    # Names are shown as text, never interpreted as HTML.
    assert names == ["Maple Street 1", "Maple Street 2 <b>bold</b>"]
    await page.select_option("#entity-type", "producer")
    await page.fill("#entity-search", "")
    await rows(page, "entity-table", 2)
    await page.locator("#entity-table tbody tr", has_text="Sunny Acres").click()
    await page.wait_for_selector("#entity-detail:not([hidden])")
    assert await page.locator("#entity-name").inner_text() == "Sunny Acres"
    painted, data = await chart_points(page, "entity-chart")
    assert painted
    assert data == [[2, 2, 2], [25, 25, 25]]
    sources = page.locator("#entity-tables section", has_text="Sources").locator("tbody tr")
    assert await sources.count() == 3
    bundle_link = page.locator("#entity-tables a[href*='#/bundle/']")
    assert await bundle_link.count() == 1
    assert "127.0.0.1:9/explorer/#/bundle/" in (await bundle_link.get_attribute("href") or "")
    await screenshot(page, "portal-producer")

    await page.click("a[data-view=settlements]")
    await page.wait_for_selector("#settlement-table tbody tr td")
    assert await page.locator("#settlement-table .bad").count() == 1
    await page.check("#settlements-failed")
    await rows(page, "settlement-table", 1)
    await screenshot(page, "portal-settlements")

    await page.click("a[data-view=payments]")
    await page.wait_for_selector("#payment-table tbody tr td")
    assert await page.locator("#payment-table tbody tr").count() == 4
    await page.select_option("#payment-kind", "incoming")
    await rows(page, "payment-table", 3)
    dropped_row = page.locator("#payment-table tbody tr", has_text="dropped")
    assert await dropped_row.locator(".bad").inner_text() == "dropped"
    assert "not consistent" in await dropped_row.locator(".problem").inner_text()
    await screenshot(page, "portal-payments")

    # Statements: preview the seeded month, finalise it, correct one with a credit note.
    await page.click("a[data-view=statements]")
    # It opens on the last complete period (the seeded market is older).
    await wait_until(page, "() => document.querySelector('#statement-period').value !== ''")
    await page.fill("#statement-period", "2026-09")
    await page.click("#statement-form button[type=submit]")
    maple = page.locator("#statement-preview-table tbody tr[data-id='consumer-maple-01']")
    await wait_until(
        page,
        """() => (document.querySelector(
          "#statement-preview-table tr[data-id='consumer-maple-01']") || {}).textContent
          ?.includes("180 i")""",
    )
    participants = await page.locator("#statement-preview-table tbody tr").count()
    await page.click("#statement-finalise")
    await wait_until(
        page, "() => document.querySelector('#statement-result').textContent.includes('2026-09')"
    )
    await rows(page, "statement-table", participants)
    assert "final no." in await maple.inner_text()
    await page.fill("#credit-note-number", "1")
    await page.fill("#credit-note-amount", "-30")
    await page.fill("#credit-note-reason", "meter fault")
    await page.click("#credit-note-form button[type=submit]")
    await rows(page, "statement-table", participants + 1)
    assert "Credit note no." in await page.locator("#statement-result").inner_text()
    note = page.locator("#statement-table tbody tr").first
    assert "credit note for no. 1" in await note.inner_text()
    csv_link = await note.locator("a", has_text="CSV").get_attribute("href")
    downloaded = await page.evaluate(
        "async (url) => { const r = await fetch(url); return [r.status, await r.text()]; }",
        csv_link,
    )
    assert downloaded[0] == 200
    assert "meter fault" in downloaded[1]
    # Each participant's page lists its statements.
    await page.goto(portal_url + "#entities/consumer-maple-01")
    await wait_until(
        page,
        """() => document.querySelector("#entity-name").textContent === "Maple Street 1"
          && [...document.querySelectorAll("#entity-tables section")].some(
            (s) => s.querySelector("h2").textContent === "Statements"
              && s.querySelector("tbody").textContent.includes("2026-09"))""",
    )
    # Its final statement's fee (15) is owed like its bills.
    billed = await page.locator("#entity-cards .card", has_text="Billed").inner_text()
    assert billed.endswith("\n15 i more on final statements (fees, credit notes)")
    await page.click("a[data-view=statements]")
    painted, data = await chart_points(page, "totals-chart")
    assert painted
    assert data[3] == [300]  # the month's charges
    # Payouts, the grid's cut and the final statements' fixed fees: the totals API's figures.
    totals = await page.evaluate(
        """async () => (await (await fetch("api/statements/totals")).json()).data.periods"""
    )
    assert [period["period"] for period in totals] == ["2026-09"]
    assert data[4:] == [
        [totals[0]["producerPayouts"]],
        [totals[0]["gridCut"]],
        [totals[0]["fixedFees"]],
    ]
    assert totals[0]["fixedFees"] > 0
    fees_cell = page.locator("#totals-table tbody tr td").nth(9)
    assert await fees_cell.inner_text() == f"{totals[0]['fixedFees']} i"
    await screenshot(page, "portal-statements")

    await page.click("a[data-view=node]")
    await page.wait_for_selector("#node-facts dt")
    facts = await page.locator("#node-facts").inner_text()
    assert "healthy" in facts
    assert "Node" in facts
    await screenshot(page, "portal-node")

    # Signing out while a refresh is still waiting for its answer: the sign-out waits for
    # it, so nothing is cut off or answered 401 (and sent to the login a second time).
    async def slow_answer(route: Route) -> None:
        await asyncio.sleep(0.5)
        await route.continue_()

    await page.route("**/portal/api/node", slow_answer)
    async with page.expect_request("**/portal/api/node"):
        await page.evaluate("() => window.dispatchEvent(new HashChangeEvent('hashchange'))")
    await page.click("#logout button")
    await page.wait_for_url("**/portal/login")
    await page.wait_for_load_state("load")
    assert problems == []


@pytest.mark.slow
async def test_home_assistant_ingress_opens_the_portal_directly(
    browser: Browser, make_app: Callable[..., web.Application]
) -> None:
    server = TestServer(
        make_app(trusted_ingress_addresses=("127.0.0.1",), allow_unsafe_ingress_addresses=True),
        host="127.0.0.1",
    )
    await server.start_server()
    try:
        page, problems = await open_page(
            browser, extra_http_headers={"X-Ingress-Path": "/api/hassio_ingress/token"}
        )
        await page.goto(str(server.make_url("/portal/")))
        await page.wait_for_selector("#cards .card")
        assert page.url.endswith("/portal/")
        # Home Assistant signed the user in; there is nothing to sign out of here.
        assert await page.locator("#logout").is_hidden()
        painted, _data = await chart_points(page, "price-chart")
        assert painted
        await screenshot(page, "portal-ingress")
        assert problems == []
    finally:
        await server.close()
