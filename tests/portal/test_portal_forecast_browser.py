"""The portal's forecast section in a real headless Chromium: drawn from GET /forecast."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from aiohttp.test_utils import TestServer

from tests.browser import open_page, screenshot

from .conftest import PASSWORD
from .test_portal_browser import chart_points

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp import web
    from playwright.async_api import Browser


@pytest.mark.slow
async def test_the_overview_draws_the_next_24_hours(
    browser: Browser, make_app: Callable[..., web.Application]
) -> None:
    server = TestServer(make_app(), host="127.0.0.1")
    await server.start_server()
    try:
        page, problems = await open_page(browser)
        await page.goto(str(server.make_url("/portal/login")))
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector("#cards .card")
        painted, datasets = await chart_points(page, "forecast-chart")
        assert painted
        paid, local = datasets
        slot_seconds = await page.evaluate(
            "async () => (await (await fetch('../forecast')).json()).slotSeconds"
        )
        slots = 86_400 // slot_seconds
        assert len(paid) == len(local) == slots
        assert all(isinstance(value, int | float) and value > 0 for value in paid)
        note = await page.locator("#forecast-note").inner_text()
        assert note.startswith(f"{slots} slots, weighted-mean pricing")
        await screenshot(page, "portal-forecast")
        assert problems == []
    finally:
        await server.close()
