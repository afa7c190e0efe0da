"""The bundled Lovelace card in the real Home Assistant frontend, on a page's first load.

Home Assistant serves its own frontend (the ``home-assistant-frontend`` package the release
pins); the integration adds its card to every page. A dashboard that uses the card is
opened in fresh browser contexts (nothing cached, as a first visit), and the card must
render its content every time, not "Custom element doesn't exist".
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from playwright.async_api import Error as PlaywrightError

from tests.browser import ARTIFACTS

from .hass import DASHBOARD

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.async_api import Browser

    from .conftest import Household
    from .hass import HassProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FIRST_LOADS = 10


@pytest.fixture(scope="module")
def dashboard(household: Household) -> dict[str, str]:
    """A dashboard with the card showing the consumer's figures and the grid's price."""
    consumer = household.consumer
    config = {
        "type": "custom:p2p-energy-card",
        "title": "Energy trading",
        "published": household.entity(consumer, "energy_published"),
        "owed": household.entity(consumer, "amount_owed"),
        "paid": household.entity(consumer, "amount_paid"),
        "balance": household.entity(consumer, "wallet_balance"),
        "price": household.entity(household.entry_id, "consensus_price"),
    }
    household.hass.write_dashboard([config])
    return config


# A browser the frontend serves its legacy build to (it needs Chrome 109 for the modern one),
# as on older wall tablets; the card comes to it as a classic script.
LEGACY_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/100.0.4896.127 Safari/537.36"
)
LEGACY_LOADS = 1
# What went wrong, when it did: the error card's text (inside nested shadow roots) and
# which registries know the card.
DIAGNOSE = """(error) => {
  const text = (node) => node.shadowRoot ? text(node.shadowRoot) : [...node.childNodes].map(
    (child) => child.nodeType === Node.TEXT_NODE ? child.textContent : text(child)).join(" ");
  return {
    error: error ? text(error).split(/\\s+/).join(" ").trim() : null,
    registered: Boolean(customElements.get("p2p-energy-card")),
    inCardPicker: (window.customCards || []).some((card) => card.type === "p2p-energy-card"),
  };
}"""


async def first_load(
    browser: Browser,
    hass: HassProcess,
    *,
    screenshot: Path | None = None,
    user_agent: str | None = None,
) -> str | None:
    """Open the dashboard in a fresh context, signed in; None if the card rendered, else why."""
    context = await browser.new_context(
        viewport={"width": 1100, "height": 700}, user_agent=user_agent
    )
    tokens = json.dumps(json.dumps(hass.browser_tokens()))
    await context.add_init_script(f"localStorage.setItem('hassTokens', {tokens});")
    try:
        page = await context.new_page()
        await page.goto(f"{hass.url}/{DASHBOARD}/0")
        card = page.locator("p2p-energy-card")
        error = page.locator("hui-error-card")
        try:
            # The frontend shows its error card after 2 s unless the element gets defined.
            await card.locator(".tile").first.or_(error.first).wait_for(timeout=60_000)
        except PlaywrightError as err:
            return f"neither the card nor an error card appeared: {err}"
        legacy = not await page.evaluate("Boolean(window.latestJS)")
        if legacy != (user_agent == LEGACY_USER_AGENT):
            return f"the frontend served its {'legacy' if legacy else 'modern'} build"
        if await error.count() and await error.first.is_visible():
            return f"error card: {await error.first.evaluate(DIAGNOSE)}"
        labels = await card.locator(".tile .label").all_inner_texts()
        if labels != ["Published", "Owed", "Paid", "Wallet", "Price"]:
            return f"the card's tiles are {labels}"
        if screenshot is not None:
            await page.screenshot(path=str(screenshot))
        return None
    finally:
        await context.close()


async def test_card_renders_on_every_first_load(
    household: Household, dashboard: dict[str, str], browser: Browser
) -> None:
    """Ten first visits with the modern build, one with the legacy build: the card every time."""
    hass = household.hass
    release = hass.release
    ARTIFACTS.mkdir(exist_ok=True)
    failures = []
    for attempt in range(FIRST_LOADS):
        shot = ARTIFACTS / f"realhass-card-{release.version}.png" if attempt == 0 else None
        if problem := await first_load(browser, hass, screenshot=shot):
            failures.append(("modern", attempt, problem))
    for attempt in range(LEGACY_LOADS):
        shot = ARTIFACTS / f"realhass-card-{release.version}-legacy.png" if attempt == 0 else None
        problem = await first_load(browser, hass, screenshot=shot, user_agent=LEGACY_USER_AGENT)
        if problem:
            failures.append(("legacy", attempt, problem))
    assert not failures, (
        f"{len(failures)} of {FIRST_LOADS + LEGACY_LOADS} first loads failed "
        f"(Home Assistant {release.version}, frontend {release.frontend_version}): {failures}"
    )


# Where each text node holding ``prefix`` is laid out, through every shadow root.
TEXT_EXTENTS = """(prefix) => {
  const found = [];
  const walk = (root) => {
    const nodes = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
    for (let node = nodes.currentNode; node; node = nodes.nextNode()) {
      if (node.nodeType === Node.TEXT_NODE && node.textContent.includes(prefix)) {
        const range = document.createRange();
        range.selectNodeContents(node);
        const box = range.getBoundingClientRect();
        found.push({ text: node.textContent.trim(), left: box.left, right: box.right });
      }
      if (node.shadowRoot) walk(node.shadowRoot);
    }
  };
  walk(document.documentElement);
  return found;
}"""


async def test_device_page_fits_the_long_identifiers(
    household: Household, browser: Browser
) -> None:
    """The consumer's device page on a phone-sized screen: the wallet address and channel
    root (81 trytes each) show shortened inside the page, not running off its edge."""
    hass, consumer = household.hass, household.consumer
    width = 420
    # Tall enough for the whole page: the frontend scrolls inside its own panel.
    context = await browser.new_context(viewport={"width": width, "height": 1500})
    tokens = json.dumps(json.dumps(hass.browser_tokens()))
    await context.add_init_script(f"localStorage.setItem('hassTokens', {tokens});")
    try:
        page = await context.new_page()
        await page.goto(f"{hass.url}/config/devices/device/{household.devices[consumer]}")
        await page.get_by_text("Wallet address").first.wait_for(timeout=60_000)
        for key in ("channel_root", "wallet_address"):
            shown = household.value(consumer, key)
            assert shown is not None
            assert len(shown) == 19, shown  # nine trytes, an ellipsis, nine trytes
            # The text as laid out (a range's box includes what overflows its element).
            texts = await page.evaluate(TEXT_EXTENTS, shown[:9])
            for _ in range(60):  # the states arrive after the labels
                if texts:
                    break
                await page.wait_for_timeout(500)
                texts = await page.evaluate(TEXT_EXTENTS, shown[:9])
            assert [text["text"] for text in texts] == [shown], (key, texts)
            assert all(text["left"] >= 0 and text["right"] <= width for text in texts), texts
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(
            path=str(ARTIFACTS / f"realhass-device-page-{hass.release.version}.png")
        )
    finally:
        await context.close()
