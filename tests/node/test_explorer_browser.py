"""The explorer page in a real headless Chromium: search, every view, no console errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from p2p_energy_protocol.client import Transfer
from p2p_energy_protocol.mam import channel_root, create_channel, create_message

from tests.browser import open_page, screenshot, wait_until

from .helpers import FUNDED_SEED, MWM, RECEIVER

if TYPE_CHECKING:
    from p2p_energy_protocol.client import IriClient
    from playwright.async_api import Browser, Page

    from grid_server.node import NodeServer

pytestmark = pytest.mark.slow


async def view_showing(page: Page, expected: str) -> str:
    """The view's text once it shows ``expected``: a click re-renders the view
    asynchronously, so the previous view's headings may still be there."""
    await wait_until(
        page, "expected => document.getElementById('view').innerText.includes(expected)", expected
    )
    return await page.inner_text("#view")


async def test_explorer_views_in_a_browser(
    node: NodeServer, client: IriClient, browser: Browser
) -> None:
    sent = await client.send_transfer(
        FUNDED_SEED, [Transfer(RECEIVER, 77, tag="BROWSER")], min_weight_magnitude=MWM
    )
    await node.runtime.issue_milestone()
    channel = create_channel("B" * 81, 2, "restricted", "BROWSERKEY")
    root = channel_root(channel)
    await client.publish_mam(
        create_message(channel, {"command": "usage", "usage": 3.5}), min_weight_magnitude=MWM
    )

    page, problems = await open_page(browser, failed_requests=False)

    await page.goto(f"{node.url}/explorer/")
    await wait_until(
        page, "() => document.getElementById('status').textContent.includes('Milestone')"
    )
    # Search finds the transaction, then links lead to its bundle and address.
    await page.fill("#search-value", sent[0].hash)
    await page.click("#search button")
    view = await view_showing(page, "confirmed by milestone")
    assert "Transaction" in view
    await page.click(f"#view a[href='#/bundle/{sent[0].bundle}']")
    assert "Bundle" in await view_showing(page, "Attachment 1")
    await page.goto(f"{node.url}/explorer/#/address/{RECEIVER}")
    await page.reload()
    await view_showing(page, "77 i")  # times out (fails) unless the balance shows
    # The MAM form reads the stream.
    await page.fill("#mam-root", root)
    await page.fill("#mam-side-key", "BROWSERKEY")
    await page.click("#mam button")
    await page.wait_for_selector("#view pre")
    await view_showing(page, '"usage": 3.5')
    await screenshot(page, "node-explorer-mam")
    # Unknown things are reported, not crashed on.
    await page.goto(f"{node.url}/explorer/#/transaction/{'Q' * 81}")
    await page.reload()
    await page.wait_for_selector("#view .error")
    assert "not stored" in await page.inner_text("#view")
    # Only the deliberate 404 may show up in the console.
    assert all("404" in problem for problem in problems), problems
