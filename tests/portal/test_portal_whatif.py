"""The portal's what-if: a slot settled by the service, replayed under another mechanism."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestServer

from grid_server.grid.app import create_app
from grid_server.grid.db.engine import Database
from grid_server.portal.app import setup_portal
from grid_server.portal.config import PortalConfig
from tests.browser import open_page, screenshot
from tests.grid.test_replay import market, settle

from .conftest import PASSWORD, grid_services
from .test_portal_api import get_data, login, serve

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.async_api import Browser


async def test_a_settled_slot_under_another_mechanism(tmp_path: Path, password_hash: str) -> None:
    db = Database(f"sqlite:///{tmp_path / 'grid.sqlite3'}", threads=2)
    try:
        db.migrate()
        market(db)
        await settle(db, "pay-as-clear")
        app = create_app(grid_services(db, tmp_path))
        setup_portal(
            app, PortalConfig(password_hash=password_hash), data_dir=tmp_path, node_url=None
        )
        async with serve(app) as client:
            assert (await login(client)).status == 302
            own: dict[str, Any] = await get_data(client, "replay")
            assert (own["settledUnder"], own["replayedUnder"]) == ("pay-as-clear", "pay-as-clear")
            assert own["differences"] == []
            assert "allocation-dynamic" in own["mechanisms"]
            other = await get_data(client, "replay", params={"mechanism": "pay-as-bid"})
            assert other["replayedUnder"] == "pay-as-bid"
            bills = {c["registrationId"]: c["replayed"] for c in other["consumers"]}
            assert bills == {"c-keen": 180, "c-mid": 160, "c-thrifty": 200}
            for params, message in (
                ({"mechanism": "cheapest"}, "'mechanism' must be one of"),
                ({"slot": "yesterday"}, "ISO 8601"),
                ({"slot": "1"}, "no settled slot"),
            ):
                response = await client.get("/portal/api/replay", params=params)
                assert response.status == 400
                assert message in (await response.json())["message"]
    finally:
        db.close()


@pytest.mark.slow
async def test_the_settlements_view_shows_the_what_if(
    browser: Browser, tmp_path: Path, password_hash: str
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'grid.sqlite3'}", threads=2)
    try:
        db.migrate()
        market(db)
        await settle(db, "weighted-mean")
        app = create_app(grid_services(db, tmp_path))
        setup_portal(
            app, PortalConfig(password_hash=password_hash), data_dir=tmp_path, node_url=None
        )
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            page, problems = await open_page(browser)
            await page.goto(str(server.make_url("/portal/login")))
            await page.fill("#password", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_selector("#cards .card")
            await page.click('a[data-view="settlements"]')
            await page.wait_for_selector("#what-if-table tbody tr")
            note = await page.locator("#what-if-note").inner_text()
            assert "the same result to the last IOTA" in note
            await page.select_option("#what-if-mechanism", "pay-as-clear")
            await page.click("#what-if-form button[type=submit]")
            await page.wait_for_selector("#what-if-table th:has-text('Under pay-as-clear')")
            keen = page.locator("#what-if-table tr", has_text="c-keen pays").locator("td")
            assert (await keen.all_inner_texts())[-1] == "100"  # 2 kWh at the clearing price 50
            await screenshot(page, "portal-what-if")
            assert problems == []
        finally:
            await server.close()
    finally:
        db.close()
