"""End to end: a consumer's bid reaches a real pay-as-clear grid and limits its price.

One producer asks 50 IOTA per kWh, the consumer bids 60. Pay-as-clear trades at the
midpoint of the last matched bid and ask: 55 with the bid, where without one the
consumer would bid the import price (100) and clear at 75. The grid stores the bid
with the registration and with the usage; removing it in Home Assistant registers
the consumer again without one.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import TYPE_CHECKING

import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.p2p_energy.const import (
    CONF_API_TOKEN,
    CONF_GRID_URL,
    CONF_MAX_POWER,
    CONF_MAX_PRICE,
    CONF_METER,
    CONF_MIN_WEIGHT_MAGNITUDE,
    CONF_NODE_URL,
    CONF_PRICE,
    CONF_PUBLISH_INTERVAL,
    CONF_REGISTRATION_ID,
    CONF_SEED,
    CONF_SIDE_KEY,
    CONF_SOURCES,
    CONF_WALLET_SEED,
    DOMAIN,
)
from custom_components.p2p_energy.credentials import (
    generate_api_token,
    generate_registration_id,
    generate_seed,
)
from custom_components.p2p_energy.protocol.signing import generate_address
from tests.grid.processes import (
    environment,
    grid_service,
    node_service,
    services,
    start_node_then_grid,
)

from .conftest import ENERGY_ATTRIBUTES, state
from .test_end_to_end import (
    GRID_WALLET,
    INVERTER_ATTRIBUTES,
    MWM,
    SLOT,
    eventually,
    grid_settings,
    wait_for_period_boundary,
)

if TYPE_CHECKING:
    from pathlib import Path

    from homeassistant.core import HomeAssistant

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ASK, BID = 50, 60  # IOTA per kWh
CLEARING_PRICE = (ASK + BID) / 2
CONSUMER_ID = "01JBIDCONSUMER"


def _bidding_household(grid_url: str, node_url: str) -> MockConfigEntry:
    def keys() -> dict[str, str]:
        return {
            CONF_SEED: generate_seed(),
            CONF_SIDE_KEY: generate_seed(),
            CONF_REGISTRATION_ID: generate_registration_id(),
            CONF_WALLET_SEED: generate_seed(),
        }

    producer = {CONF_METER: "sensor.inverter_energy", CONF_SOURCES: [], CONF_PRICE: ASK}
    return MockConfigEntry(
        domain=DOMAIN,
        title="Grid",
        unique_id=grid_url,
        data={CONF_GRID_URL: grid_url, CONF_NODE_URL: node_url},
        options={
            CONF_PUBLISH_INTERVAL: SLOT,
            CONF_MAX_POWER: 10_000.0,
            CONF_MIN_WEIGHT_MAGNITUDE: MWM,
        },
        subentries_data=[
            {
                "subentry_id": "01JBIDPRODUCER",
                "subentry_type": "producer",
                "title": "Inverter",
                "unique_id": None,
                "data": producer | {CONF_API_TOKEN: generate_api_token(), **keys()},
            },
            {
                "subentry_id": CONSUMER_ID,
                "subentry_type": "consumer",
                "title": "House",
                "unique_id": None,
                "data": {CONF_METER: "sensor.house_energy", CONF_MAX_PRICE: BID, **keys()},
            },
        ],
    )


def _grid_rows(database: Path, query: str, *params: object) -> list[tuple[object, ...]]:
    """Rows of the grid's own database (what it stored, not what it answers)."""
    with closing(sqlite3.connect(database)) as connection:
        return connection.execute(query, params).fetchall()


async def test_a_bid_reaches_a_pay_as_clear_grid_and_limits_the_price(
    hass: HomeAssistant, tmp_path: Path, socket_enabled: None
) -> None:
    env = environment(tmp_path)
    node, node_url = node_service(
        tmp_path,
        env,
        genesis={generate_address(GRID_WALLET, 0, 2): 1_000_000},
        min_weight_magnitude=MWM,
    )
    database = tmp_path / "grid.sqlite3"
    grid, grid_url = grid_service(
        tmp_path,
        env,
        database=f"sqlite:///{database}",
        node_url=node_url,
        settings=grid_settings(pricing_strategy="pay-as-clear"),
    )
    with services(tmp_path) as running:
        running.extend([node, grid])
        start_node_then_grid(node, node_url, grid, grid_url)
        hass.states.async_set("sensor.inverter_energy", "200.0", INVERTER_ATTRIBUTES)
        hass.states.async_set("sensor.house_energy", "300.0", ENERGY_ATTRIBUTES)
        entry = _bidding_household(grid_url, node_url)
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        coordinator = entry.runtime_data
        registration_id = entry.subentries[CONSUMER_ID].data[CONF_REGISTRATION_ID]
        standing_bid = "SELECT max_price_micro FROM registrations WHERE registration_id = ?"
        assert _grid_rows(database, standing_bid, registration_id) == [(BID * 1_000_000,)]

        # A baseline period, then one with 2 kWh produced and 1.2 kWh used: all of it local.
        await wait_for_period_boundary()
        await hass.async_block_till_done()
        hass.states.async_set("sensor.inverter_energy", "202.0", INVERTER_ATTRIBUTES)
        hass.states.async_set("sensor.house_energy", "301.2", ENERGY_ATTRIBUTES)
        await wait_for_period_boundary()
        await hass.async_block_till_done()
        bill = round(1.2 * CLEARING_PRICE)
        assert bill == 66  # 90 without the bid (clearing at 75), and below 1.2 kWh x 60

        async def billed_at_the_clearing_price() -> bool:
            await coordinator.async_refresh()
            return state(hass, "sensor.house_amount_owed") == str(bill)

        await eventually(billed_at_the_clearing_price, "the bill at the bid's price", [node, grid])
        (price_sensor,) = [
            sensor.entity_id
            for sensor in hass.states.async_all("sensor")
            if sensor.entity_id.endswith("_consensus_price")
        ]
        assert float(state(hass, price_sensor)) == CLEARING_PRICE
        # The usage with its bid, in mWh and micro-IOTA per kWh.
        usage_bids = "SELECT energy_milliwh, bid_micro FROM readings WHERE kind = 'usage'"
        assert _grid_rows(database, usage_bids) == [(1_200_000, BID * 1_000_000)]

        # Removing the bid re-registers the consumer without one (the grid would otherwise
        # keep applying the old standing bid to usages that carry none).
        subentry = entry.subentries[CONSUMER_ID]
        hass.config_entries.async_update_subentry(
            entry, subentry, data={**subentry.data, CONF_MAX_PRICE: None}
        )
        await hass.async_block_till_done()

        async def standing_bid_removed() -> bool:
            await entry.runtime_data.async_refresh()
            return _grid_rows(database, standing_bid, registration_id) == [(None,)]

        await eventually(standing_bid_removed, "the registration without a bid", [node, grid])
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
