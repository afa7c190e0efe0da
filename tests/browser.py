"""Headless Chromium for the tests that drive a real page (explorer, portal, card, demo)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from playwright.async_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """The system's Chromium under playwright, closed on the way out."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: install the Debian package 'chromium' (.ci/run does)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as launched:
        yield launched


def record_problems(page: Page, *, failed_requests: bool = True) -> list[str]:
    """Collect the page's console errors, uncaught exceptions and (optionally) failed requests."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    if failed_requests:
        page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    return problems


async def open_page(
    browser: Browser, *, failed_requests: bool = True, **context: Any
) -> tuple[Page, list[str]]:
    """A desktop-sized page in a fresh context, and the list its problems are recorded in."""
    page = await (
        await browser.new_context(viewport={"width": 1280, "height": 900}, **context)
    ).new_page()
    return page, record_problems(page, failed_requests=failed_requests)


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save the page as ``test-artifacts/<name>.png`` for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


async def wait_until(page: Page, function: str, arg: Any = None, timeout: float = 10.0) -> None:
    """Poll the JavaScript ``function`` in the page until it returns something truthy.

    (``wait_for_function`` evaluates strings with ``eval``, which the explorer's and
    the portal's Content-Security-Policy rightly forbid.)
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while not await page.evaluate(function, arg):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {function}")
        await asyncio.sleep(0.1)
