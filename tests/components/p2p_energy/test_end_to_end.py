"""End to end: Home Assistant trades through a real node and a real grid process.

A Home Assistant test instance wraps three meters as a source, a producer owning
that source, and a consumer. The node (``p2p-energy node``) and the grid
(``p2p-energy grid``) run as separate processes on loopback. The household
publishes one period of readings over MAM, the grid settles the slot and bills
the consumer on its return channel, and the consumer's "amount owed" sensor must
show that bill, computed here by hand from the grid's documented rules. Paying
it moves IOTA on the Tangle, and the grid's payout reaches the producer.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.p2p_energy.const import (
    CONF_API_TOKEN,
    CONF_GRID_URL,
    CONF_MAX_POWER,
    CONF_METER,
    CONF_MIN_WEIGHT_MAGNITUDE,
    CONF_NODE_URL,
    CONF_PRICE,
    CONF_PRODUCER_URL,
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
    Service,
    environment,
    grid_service,
    node_service,
    services,
    start_node_then_grid,
)

from .conftest import ENERGY_ATTRIBUTES, find_device, state

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from homeassistant.core import HomeAssistant

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

MWM = 1
SLOT = 10  # seconds: the grid's slot and the household's trading period
PRICE = 50  # IOTA per kWh, the only producer's asking price
IMPORT_PRICE, EXPORT_PRICE, GRID_CUT = 100, 20, 0.10
GRID_WALLET = "GRID9WALLET9ENDTOEND".ljust(81, "9")
CONSUMER_WALLET = "CONSUMER9WALLET9ENDTOEND".ljust(81, "W")
CONSUMER_FUNDS = 5_000
INVERTER_ATTRIBUTES = ENERGY_ATTRIBUTES | {"state_class": "total", "last_reset": None}


def expected_bill_and_payout(
    inverter_kwh: float, source_kwh: float, usage_kwh: float
) -> tuple[int, int]:
    """One producer, one consumer, one slot, by the README's settlement rules."""
    produced = inverter_kwh + source_kwh
    local = min(produced, usage_kwh)
    local_value = round(local * PRICE)  # one producer: the consensus price is its price
    bill = local_value + round((usage_kwh - local) * IMPORT_PRICE)
    payout = local_value - round(local_value * GRID_CUT) + round((produced - local) * EXPORT_PRICE)
    return bill, payout


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, logs: list[Service], timeout: float = 120
) -> None:
    """Wait for ``check``; fail with the services' logs."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {service.name}\n{service.tail()}" for service in logs)
            raise AssertionError(f"{what} did not happen in time\n{tails}")
        await asyncio.sleep(0.5)


async def wait_for_period_boundary() -> None:
    """Sleep until just after the next multiple of SLOT seconds, plus the timers' run."""
    now = time.time()
    await asyncio.sleep((int(now // SLOT) + 1) * SLOT - now + 0.3)


def grid_settings(**extra: object) -> dict[str, object]:
    """The real grid's settings for these tests (this file's slot, prices and wallet)."""
    return {
        "slot_seconds": SLOT,
        # A period's readings are sent when it ends; on a busy machine the
        # remote proof of work for three channels can take a few seconds.
        "settlement_delay_seconds": 8.0,
        "follow_interval": 0.5,
        "publish_interval": 0.5,
        "payments_interval": 0.5,
        "payout_interval": 0.5,
        "min_weight_magnitude": MWM,
        "wallet_seed": GRID_WALLET,
        "import_price": IMPORT_PRICE,
        "export_price": EXPORT_PRICE,
        "log_format": "text",
        **extra,
    }


@pytest.fixture
def grid_processes(tmp_path: Path, socket_enabled: None) -> tuple[str, str, list[Service]]:
    """A node and a grid process on free loopback ports (real sockets, loopback only)."""
    env = environment(tmp_path)
    node, node_url = node_service(
        tmp_path,
        env,
        genesis={
            generate_address(GRID_WALLET, 0, 2): 1_000_000,
            generate_address(CONSUMER_WALLET, 0, 2): CONSUMER_FUNDS,
        },
        min_weight_magnitude=MWM,
    )
    grid, grid_url = grid_service(
        tmp_path,
        env,
        database=f"sqlite:///{tmp_path / 'grid.sqlite3'}",
        node_url=node_url,
        settings=grid_settings(grid_cut_percent=GRID_CUT * 100),
    )
    return node_url, grid_url, [node, grid]


def _household_entry(grid_url: str, node_url: str) -> MockConfigEntry:
    source_id, producer_id, consumer_id = "01JE2ESOURCE", "01JE2EPRODUCER", "01JE2ECONSUMER"

    def keys() -> dict[str, str]:
        return {
            CONF_SEED: generate_seed(),
            CONF_SIDE_KEY: generate_seed(),
            CONF_REGISTRATION_ID: generate_registration_id(),
        }

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
                "subentry_id": source_id,
                "subentry_type": "source",
                "title": "Roof PV",
                "unique_id": None,
                "data": {CONF_METER: "sensor.pv_energy", CONF_PRODUCER_URL: "", **keys()},
            },
            {
                "subentry_id": producer_id,
                "subentry_type": "producer",
                "title": "Inverter",
                "unique_id": None,
                "data": {
                    CONF_METER: "sensor.inverter_energy",
                    CONF_SOURCES: [source_id],
                    CONF_PRICE: PRICE,
                    CONF_WALLET_SEED: generate_seed(),
                    CONF_API_TOKEN: generate_api_token(),
                    **keys(),
                },
            },
            {
                "subentry_id": consumer_id,
                "subentry_type": "consumer",
                "title": "House",
                "unique_id": None,
                "data": {
                    CONF_METER: "sensor.house_energy",
                    CONF_WALLET_SEED: CONSUMER_WALLET,
                    **keys(),
                },
            },
        ],
    )


async def test_household_trades_through_real_node_and_grid(
    hass: HomeAssistant, grid_processes: tuple[str, str, list[Service]], tmp_path: Path
) -> None:
    """Readings become a bill on the consumer's sensor; paying it pays the producer."""
    node_url, grid_url, processes = grid_processes
    node, grid = processes
    with services(tmp_path) as running:
        running.extend(processes)
        start_node_then_grid(node, node_url, grid, grid_url)

        hass.states.async_set("sensor.pv_energy", "100.0", ENERGY_ATTRIBUTES)
        hass.states.async_set("sensor.inverter_energy", "200.0", INVERTER_ATTRIBUTES)
        hass.states.async_set("sensor.house_energy", "300.0", ENERGY_ATTRIBUTES)
        entry = _household_entry(grid_url, node_url)
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        coordinator = entry.runtime_data
        participants = coordinator.participants
        assert all(participant.registered for participant in participants.values())
        assert state(hass, "sensor.house_queued_messages") == "0"

        # One period takes the meters' baselines; the next publishes this slot's energy.
        await wait_for_period_boundary()
        await hass.async_block_till_done()
        hass.states.async_set("sensor.pv_energy", "100.6", ENERGY_ATTRIBUTES)
        hass.states.async_set("sensor.inverter_energy", "201.0", INVERTER_ATTRIBUTES)
        hass.states.async_set("sensor.house_energy", "301.2", ENERGY_ATTRIBUTES)
        await wait_for_period_boundary()
        await hass.async_block_till_done()
        assert state(hass, "sensor.roof_pv_energy_published") == "0.6"
        assert state(hass, "sensor.inverter_energy_published") == "1.6"
        assert state(hass, "sensor.house_energy_published") == "1.2"

        # 1.2 kWh sold locally at 50 (60 IOTA, 6 of it the grid's cut), 0.4 kWh exported at 20.
        bill, payout = expected_bill_and_payout(1.0, 0.6, 1.2)
        assert (bill, payout) == (60, 62)

        async def owed_is_the_bill() -> bool:
            await coordinator.async_refresh()
            return state(hass, "sensor.house_amount_owed") == str(bill)

        await eventually(owed_is_the_bill, "the grid's bill on the owed sensor", [node, grid])
        # The grid's consensus price: with one producer, its asking price.
        (price_sensor,) = [
            sensor.entity_id
            for sensor in hass.states.async_all("sensor")
            if sensor.entity_id.endswith("_consensus_price")
        ]
        assert float(state(hass, price_sensor)) == PRICE

        consumer_device = find_device(hass, "01JE2ECONSUMER")
        response = await hass.services.async_call(
            DOMAIN,
            "pay_bill",
            {"device_id": consumer_device.id},
            blocking=True,
            return_response=True,
        )
        assert response is not None
        assert response["amount"] == bill

        async def wallet_paid_and_producer_paid() -> bool:
            await coordinator.async_refresh()
            return state(hass, "sensor.house_wallet_balance") == str(
                CONSUMER_FUNDS - bill
            ) and state(hass, "sensor.inverter_payments_received") == str(payout)

        await eventually(wallet_paid_and_producer_paid, "the payment and the payout", [node, grid])
        assert state(hass, "sensor.house_amount_paid") == str(bill)

        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
