"""End to end: a producer's payouts leave its wallet on a real node; removal leaves a real grid.

A node process (milestones every half second) whose genesis funds the
producer's wallet, and a grid process on loopback. The producer sends IOTA to
an address with ``send_iota``; a milestone confirms the value transfer and the
balances move on the node. Removing the producer's subentry, then the entry,
deregisters each participant at the grid: its registration is inactive with a
removal time. With the node stopped, ``send_iota`` says so in words, not in the
network library's.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import TYPE_CHECKING

import pytest
from homeassistant.exceptions import HomeAssistantError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.p2p_energy.const import (
    CONF_GRID_URL,
    CONF_MAX_POWER,
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
from custom_components.p2p_energy.credentials import generate_registration_id, generate_seed
from custom_components.p2p_energy.protocol.address import add_checksum
from custom_components.p2p_energy.protocol.signing import generate_address
from tests.grid.processes import environment, grid_service, node_service, services

from .conftest import ENERGY_ATTRIBUTES, find_device, state
from .test_end_to_end import eventually, start_node_then_grid

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from homeassistant.core import HomeAssistant
    from homeassistant.helpers import issue_registry as ir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MWM = 1
PRODUCER_WALLET = "PRODUCER9WALLET9SENDS".ljust(81, "9")
PRODUCER_FUNDS = 1_000
TARGET = generate_address("SOMEONE9ELSE".ljust(81, "9"), 0, 2)
PRODUCER_ID, CONSUMER_ID = "01JWALLETPRODUCER", "01JWALLETCONSUMER"


def _entry(grid_url: str, node_url: str) -> MockConfigEntry:
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
            CONF_PUBLISH_INTERVAL: 3600,
            CONF_MAX_POWER: 10_000.0,
            CONF_MIN_WEIGHT_MAGNITUDE: MWM,
        },
        subentries_data=[
            {
                "subentry_id": PRODUCER_ID,
                "subentry_type": "producer",
                "title": "Inverter",
                "unique_id": None,
                "data": {
                    CONF_METER: "sensor.inverter_energy",
                    CONF_SOURCES: [],
                    CONF_PRICE: 50,
                    CONF_WALLET_SEED: PRODUCER_WALLET,
                    **keys(),
                },
            },
            {
                "subentry_id": CONSUMER_ID,
                "subentry_type": "consumer",
                "title": "House",
                "unique_id": None,
                "data": {
                    CONF_METER: "sensor.house_energy",
                    CONF_WALLET_SEED: generate_seed(),
                    **keys(),
                },
            },
        ],
    )


def registration(database: Path, registration_id: str) -> tuple[Any, ...]:
    """(active, removed_at) of a registration in the grid's database."""
    with closing(sqlite3.connect(database)) as db:
        row = db.execute(
            "SELECT active, removed_at FROM registrations WHERE registration_id = ?",
            (registration_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


async def test_producer_sends_iota_then_leaves_the_grid(
    hass: HomeAssistant,
    tmp_path: Path,
    socket_enabled: None,
    issue_registry: ir.IssueRegistry,
    hass_storage: dict[str, Any],
) -> None:
    """send_iota moves confirmed IOTA; removal deregisters at the grid; node down is worded."""
    env = environment(tmp_path)
    node, node_url = node_service(
        tmp_path,
        env,
        genesis={generate_address(PRODUCER_WALLET, 0, 2): PRODUCER_FUNDS},
        min_weight_magnitude=MWM,
    )
    database = tmp_path / "grid.sqlite3"
    grid, grid_url = grid_service(
        tmp_path,
        env,
        database=f"sqlite:///{database}",
        node_url=node_url,
        settings={
            "slot_seconds": 10,
            "follow_interval": 0.5,
            "min_weight_magnitude": MWM,
            "wallet_seed": "GRID9WALLET9SENDS".ljust(81, "9"),
            "log_format": "text",
        },
    )
    with services(tmp_path) as running:
        running.extend([node, grid])
        start_node_then_grid(node, node_url, grid, grid_url)
        hass.states.async_set("sensor.inverter_energy", "200.0", ENERGY_ATTRIBUTES)
        hass.states.async_set("sensor.house_energy", "300.0", ENERGY_ATTRIBUTES)
        entry = _entry(grid_url, node_url)
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        coordinator = entry.runtime_data
        producer = coordinator.participants[PRODUCER_ID]
        consumer = coordinator.participants[CONSUMER_ID]
        assert producer.registered
        assert consumer.registered
        assert state(hass, "sensor.inverter_wallet_balance") == str(PRODUCER_FUNDS)
        assert (DOMAIN, f"wallet_holds_iota_{PRODUCER_ID}") in issue_registry.issues

        response = await hass.services.async_call(
            DOMAIN,
            "send_iota",
            {
                "device_id": find_device(hass, PRODUCER_ID).id,
                "address": add_checksum(TARGET),
                "amount": 250,
            },
            blocking=True,
            return_response=True,
        )
        assert response is not None
        assert (response["amount"], response["address"], response["status"]) == (
            250,
            TARGET,
            "pending",
        )

        async def confirmed() -> bool:
            # A milestone can land between settling the transfer and reading the balance.
            await coordinator.async_refresh()
            return bool(producer.state.sent) and state(
                hass, "sensor.inverter_wallet_balance"
            ) == str(PRODUCER_FUNDS - 250)

        await eventually(confirmed, "the milestone confirming the transfer", [node, grid])
        assert await coordinator.connection.balances([TARGET]) == [250]
        assert [sent.bundle for sent in producer.state.sent] == [response["bundle"]]

        # The producer leaves: its registration is removed at the grid, its 750 IOTA kept.
        producer_registration = producer.registration_id
        assert registration(database, producer_registration) == (1, None)
        hass.config_entries.async_remove_subentry(entry, PRODUCER_ID)
        await hass.async_block_till_done()
        active, removed_at = registration(database, producer_registration)
        assert active == 0
        assert removed_at is not None
        (kept,) = hass_storage["p2p_energy.retained_wallets"]["data"]["wallets"]
        assert (kept["seed"], kept["balance"]) == (PRODUCER_WALLET, PRODUCER_FUNDS - 250)

        # The node stops: send_iota names it instead of showing connection internals.
        node.terminate()
        with pytest.raises(HomeAssistantError) as failure:
            await hass.services.async_call(
                DOMAIN,
                "send_iota",
                {"device_id": find_device(hass, CONSUMER_ID).id, "address": TARGET, "amount": 1},
                blocking=True,
                return_response=True,
            )
        assert failure.value.translation_key == "node_unavailable"
        message = str(failure.value)
        assert node_url in message
        assert "Cannot connect" not in message
        assert "Connect call failed" not in message

        # The whole entry goes: the consumer leaves the grid although the node is down.
        consumer_registration = consumer.registration_id
        await hass.config_entries.async_remove(entry.entry_id)
        await hass.async_block_till_done()
        active, removed_at = registration(database, consumer_registration)
        assert active == 0
        assert removed_at is not None
