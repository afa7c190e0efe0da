"""The Lovelace card: served and added to the frontend by the integration, and its
behaviour (rendering, validation, stub config, editor) in a real headless Chromium."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from homeassistant.components.frontend import (
    DATA_EXTRA_JS_URL_ES5,
    DATA_EXTRA_MODULE_URL,
    UrlManager,
)
from homeassistant.setup import async_setup_component

from custom_components.p2p_energy.const import DOMAIN
from custom_components.p2p_energy.frontend import CARD_PATH, CARD_ROUTE
from tests.browser import launch_chromium, record_problems, screenshot

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from homeassistant.core import HomeAssistant
    from playwright.async_api import Page
    from pytest_homeassistant_custom_component.typing import ClientSessionGenerator


def _pretend_frontend_is_loaded(hass: HomeAssistant) -> tuple[UrlManager, UrlManager]:
    """The frontend's package is not installed in tests; its URL registries are all we need."""
    modules = UrlManager(lambda _kind, _url: None, [])
    legacy_scripts = UrlManager(lambda _kind, _url: None, [])
    hass.data[DATA_EXTRA_MODULE_URL] = modules
    hass.data[DATA_EXTRA_JS_URL_ES5] = legacy_scripts
    hass.config.components.add("frontend")
    return modules, legacy_scripts


async def test_card_is_served_and_added_to_the_frontend(
    hass: HomeAssistant, hass_client: ClientSessionGenerator
) -> None:
    assert await async_setup_component(hass, "http", {})
    modules, legacy_scripts = _pretend_frontend_is_loaded(hass)
    assert await async_setup_component(hass, DOMAIN, {})
    await hass.async_block_till_done()
    urls = [url for url in modules.urls if url.startswith(CARD_ROUTE)]
    assert len(urls) == 1
    assert urls[0].startswith(f"{CARD_ROUTE}?v=")
    # The same file for the frontend's legacy build (older browsers).
    assert [url for url in legacy_scripts.urls if url.startswith(CARD_ROUTE)] == urls
    client = await hass_client()
    response = await client.get(urls[0])
    assert response.status == 200
    assert "javascript" in response.headers["Content-Type"]
    assert await response.text() == CARD_PATH.read_text(encoding="utf-8")
    # Only the card is served, not the package's Python files.
    assert (await client.get("/p2p_energy_static/__init__.py")).status == 404


async def test_card_is_served_without_a_frontend(
    hass: HomeAssistant, hass_client: ClientSessionGenerator
) -> None:
    assert await async_setup_component(hass, "http", {})
    assert await async_setup_component(hass, DOMAIN, {})
    assert DATA_EXTRA_MODULE_URL not in hass.data
    client = await hass_client()
    assert (await client.get(CARD_ROUTE)).status == 200


# -- the card in a browser --------------------------------------------------------

STATES = {
    "sensor.home_energy_published": {"state": "12.5", "unit": "kWh"},
    "sensor.home_amount_owed": {"state": "250", "unit": "IOTA"},
    "sensor.home_amount_paid": {"state": "750", "unit": "IOTA"},
    "sensor.home_wallet_balance": {"state": "unavailable", "unit": "IOTA"},
    "sensor.grid_consensus_price": {"state": "23.5", "unit": "IOTA/kWh"},
    "sensor.other_amount_owed": {"state": "5", "unit": "IOTA"},
}
REGISTRY = {
    # A source and a producer listed first: the stub must not mix their sensors in.
    "sensor.roof_energy_published": ("energy_published", "roof"),
    "sensor.inverter_energy_published": ("energy_published", "inverter"),
    "sensor.inverter_payments_received": ("payments_received", "inverter"),
    "sensor.home_energy_published": ("energy_published", "home"),
    "sensor.other_amount_owed": ("amount_owed", "other"),
    "sensor.home_amount_owed": ("amount_owed", "home"),
    "sensor.home_amount_paid": ("amount_paid", "home"),
    "sensor.home_wallet_balance": ("wallet_balance", "home"),
    "sensor.grid_consensus_price": ("consensus_price", "grid"),
}
FAKE_HASS = f"""
window.fakeHass = {{
  states: Object.fromEntries(Object.entries({json.dumps(STATES)}).map(([id, s]) =>
    [id, {{ entity_id: id, state: s.state, attributes: {{ unit_of_measurement: s.unit }} }}])),
  entities: Object.fromEntries(Object.entries({json.dumps(REGISTRY)}).map(([id, [key, device]]) =>
    [id, {{ entity_id: id, platform: "p2p_energy", translation_key: key, device_id: device }}])),
}};
window.fakeHass.entities["sensor.unrelated"] = {{ entity_id: "sensor.unrelated",
  platform: "demo", translation_key: "amount_paid", device_id: "home" }};
// A stand-in for Home Assistant's ha-form: it keeps what the editor gives it.
customElements.define("ha-form", class extends HTMLElement {{}});
"""


@pytest.fixture
async def page(socket_enabled: None) -> AsyncIterator[Page]:
    async with launch_chromium() as browser:
        page = await browser.new_page(viewport={"width": 520, "height": 420})
        errors = record_problems(page, failed_requests=False)
        await page.set_content("<!doctype html><html><body></body></html>")
        await page.add_script_tag(content=FAKE_HASS)
        await page.add_script_tag(content=CARD_PATH.read_text(encoding="utf-8"))
        yield page
        assert errors == []


async def make_card(page: Page, config: dict[str, Any]) -> None:
    await page.evaluate(
        """(config) => {
          const card = document.createElement("p2p-energy-card");
          card.setConfig(config);
          card.hass = window.fakeHass;
          document.body.append(card);
          window.moreInfo = [];
          card.addEventListener("hass-more-info", (e) => window.moreInfo.push(e.detail.entityId));
        }""",
        config,
    )


async def test_card_renders_the_flows(page: Page) -> None:
    config = {
        "type": "custom:p2p-energy-card",
        "title": "Energy trading",
        "published": "sensor.home_energy_published",
        "owed": "sensor.home_amount_owed",
        "paid": "sensor.home_amount_paid",
        "balance": "sensor.home_wallet_balance",
        "price": "sensor.grid_consensus_price",
    }
    await make_card(page, config)
    card = page.locator("p2p-energy-card")
    assert await card.locator(".title").inner_text() == "Energy trading"
    tiles = card.locator(".tile")
    assert await tiles.count() == 5
    values = await tiles.locator(".value").all_inner_texts()
    assert values == ["12.5 kWh", "250 IOTA", "750 IOTA", "unavailable", "23.5 IOTA/kWh"]
    assert await card.locator(".tile.unavailable").count() == 1
    assert await card.locator(".flow .arrow span").inner_text() == "12.5 kWh"
    assert await card.locator(".bar").get_attribute("aria-valuenow") == "75"
    assert await card.locator(".bar-label").inner_text() == "75% of the bills paid"
    await card.locator('.tile[data-key="owed"]').click()
    assert await page.evaluate("window.moreInfo") == ["sensor.home_amount_owed"]
    await screenshot(page, "lovelace-card", full_page=False)


async def test_card_follows_state_changes(page: Page) -> None:
    await make_card(page, {"owed": "sensor.home_amount_owed", "paid": "sensor.home_amount_paid"})
    await page.evaluate(
        """() => {
          const hass = structuredClone(window.fakeHass);
          hass.states["sensor.home_amount_owed"].state = "0";
          hass.formatEntityState = (s) => `${s.state} i`;
          document.querySelector("p2p-energy-card").hass = hass;
        }"""
    )
    card = page.locator("p2p-energy-card")
    assert await card.locator(".tile .value").all_inner_texts() == ["0 i", "750 i"]
    assert await card.locator(".bar-label").inner_text() == "All bills paid"
    assert await card.locator(".flow").count() == 0


BAD_CONFIGS = [
    ({}, "Choose at least one P2P Energy Grid sensor"),
    ({"owed": "not an entity"}, "'owed' must be an entity id"),
    ({"owed": "sensor.x", "title": 5}, "'title' must be text"),
]


async def test_card_rejects_bad_configuration(page: Page) -> None:
    errors = await page.evaluate(
        """(configs) => configs.map((config) => {
          try { document.createElement("p2p-energy-card").setConfig(config); return null; }
          catch (error) { return error.message; }
        })""",
        [config for config, _message in BAD_CONFIGS],
    )
    for error, (_config, message) in zip(errors, BAD_CONFIGS, strict=True):
        assert error is not None
        assert message in error


async def test_stub_config_picks_one_homes_sensors(page: Page) -> None:
    stub = await page.evaluate(
        "() => customElements.get('p2p-energy-card').getStubConfig(window.fakeHass)"
    )
    assert stub == {
        "published": "sensor.home_energy_published",
        "owed": "sensor.home_amount_owed",
        "paid": "sensor.home_amount_paid",
        "balance": "sensor.home_wallet_balance",
        "price": "sensor.grid_consensus_price",
    }
    # Without a consumer: the producer's sensors (more of the card's than the source's).
    producer_only = await page.evaluate(
        """() => {
          const entities = Object.fromEntries(Object.entries(window.fakeHass.entities)
            .filter(([, entry]) => !["home", "other"].includes(entry.device_id)));
          return customElements.get('p2p-energy-card').getStubConfig({ entities });
        }"""
    )
    assert producer_only == {
        "published": "sensor.inverter_energy_published",
        "received": "sensor.inverter_payments_received",
        "price": "sensor.grid_consensus_price",
    }
    empty = await page.evaluate(
        "() => customElements.get('p2p-energy-card').getStubConfig({ entities: {} })"
    )
    assert empty == {"published": ""}
    picker = await page.evaluate("() => window.customCards.map((card) => card.type)")
    assert picker == ["p2p-energy-card"]


async def test_editor_edits_the_configuration(page: Page) -> None:
    result = await page.evaluate(
        """() => {
          const editor = customElements.get("p2p-energy-card").getConfigElement();
          document.body.append(editor);
          editor.setConfig({ type: "custom:p2p-energy-card", owed: "sensor.home_amount_owed" });
          editor.hass = window.fakeHass;
          const form = editor.querySelector("ha-form");
          const changes = [];
          editor.addEventListener("config-changed", (e) => changes.push(e.detail.config));
          form.dispatchEvent(new CustomEvent("value-changed", { detail: { value: {
            ...form.data, title: "Mine", paid: "sensor.home_amount_paid", owed: "" } } }));
          return {
            names: form.schema.map((s) => s.name),
            filter: form.schema[1].selector.entity.filter,
            label: form.computeLabel(form.schema[3]),
            data: form.data,
            changes,
            sameHass: form.hass === window.fakeHass,
          };
        }"""
    )
    assert result["names"] == ["title", "published", "owed", "paid", "received", "balance", "price"]
    assert result["filter"] == {"integration": "p2p_energy", "domain": "sensor"}
    assert result["label"] == "Amount paid"
    assert result["sameHass"] is True
    assert result["changes"] == [
        {"type": "custom:p2p-energy-card", "title": "Mine", "paid": "sensor.home_amount_paid"}
    ]
    assert result["data"] == result["changes"][0]


async def test_card_is_defined_in_the_registry_the_frontend_swaps_in(page: Page) -> None:
    """Home Assistant's frontend replaces window.customElements while it boots (its scoped
    registry polyfill) and defines its root element after that; a card that ran before the
    swap must end up in the new registry too (the real frontend: tests/realhass)."""
    defined = await page.evaluate(
        """async () => {
          const browserRegistry = window.customElements;
          const names = new Map();
          const swapped = {
            get: (name) => names.get(name),
            define: (name, element) => names.set(name, element),
            whenDefined: () => new Promise(() => {}),
          };
          Object.defineProperty(window, "customElements", { value: swapped, configurable: true });
          browserRegistry.define("home-assistant", class extends HTMLElement {});
          await new Promise((resolve) => setTimeout(resolve, 0));
          return [...names].map(([name, element]) => [name, element === browserRegistry.get(name)]);
        }"""
    )
    assert defined == [["p2p-energy-card", True], ["p2p-energy-card-editor", True]]
