"""End to end: a household set up in one step from the Energy dashboard trades for several slots.

The Energy dashboard knows a grid import meter, a return-to-grid meter and a solar meter. The
household flow turns them into a consumer, a producer of the surplus and a source; the entry
then trades through a real node and a real grid process (the fixtures of
``test_end_to_end.py``). Each slot the grid bills the consumer for what the import meter
counted and pays the producer for what the export meter counted; the panels' production is
published by the source but sold by nobody, so no energy is counted twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from homeassistant.config_entries import SOURCE_USER
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.p2p_energy.const import (
    CONF_GRID_URL,
    CONF_MAX_POWER,
    CONF_MIN_WEIGHT_MAGNITUDE,
    CONF_NODE_URL,
    CONF_PRICE,
    CONF_PUBLISH_INTERVAL,
    DOMAIN,
)
from custom_components.p2p_energy.protocol.grid_client import GridClient
from tests.grid.processes import Service, services, start_node_then_grid

from .conftest import ENERGY_ATTRIBUTES, state
from .test_end_to_end import (
    MWM,
    PRICE,
    SLOT,
    eventually,
    expected_bill_and_payout,
    grid_processes,  # noqa: F401  (the fixture: a node and a grid process)
    wait_for_period_boundary,
)
from .test_household_flow import legacy_grid, set_energy_sources, solar

if TYPE_CHECKING:
    from pathlib import Path

    from homeassistant.core import HomeAssistant

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

IMPORT, EXPORT, SOLAR = "sensor.grid_import", "sensor.grid_export", "sensor.roof_solar"
# kWh counted per slot by the import, export and solar meters. The panels make more than
# the house returns to the grid: the rest is used in the house.
SLOTS = [(1.2, 0.4, 1.5), (0.6, 0.8, 2.0)]


def set_meters(hass: HomeAssistant, imported: float, exported: float, produced: float) -> None:
    for entity_id, name, value in (
        (IMPORT, "Grid import", imported),
        (EXPORT, "Grid export", exported),
        (SOLAR, "Roof solar", produced),
    ):
        hass.states.async_set(
            entity_id, f"{value:.3f}", ENERGY_ATTRIBUTES | {"friendly_name": name}
        )


async def test_one_step_household_trades_for_several_slots(
    hass: HomeAssistant,
    grid_processes: tuple[str, str, list[Service]],  # noqa: F811  (the imported fixture)
    tmp_path: Path,
) -> None:
    node_url, grid_url, processes = grid_processes
    node, grid = processes
    with services(tmp_path) as running:
        running.extend(processes)
        start_node_then_grid(node, node_url, grid, grid_url)

        totals = [300.0, 50.0, 100.0]
        set_meters(hass, *totals)
        await set_energy_sources(hass, [legacy_grid([IMPORT], [EXPORT]), solar(SOLAR)])
        entry = MockConfigEntry(
            domain=DOMAIN,
            title="Grid",
            unique_id=grid_url,
            data={CONF_GRID_URL: grid_url, CONF_NODE_URL: node_url},
            options={
                CONF_PUBLISH_INTERVAL: SLOT,
                CONF_MAX_POWER: 10_000.0,
                CONF_MIN_WEIGHT_MAGNITUDE: MWM,
            },
        )
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()

        result = await hass.config_entries.subentries.async_init(
            (entry.entry_id, "household"), context={"source": SOURCE_USER}
        )
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"], {CONF_PRICE: PRICE}
        )
        assert result["reason"] == "household_created"
        await hass.async_block_till_done()  # the entry reloads with its new participants
        coordinator = entry.runtime_data
        by_title = {p.name: p for p in coordinator.participants.values()}
        assert sorted(by_title) == ["Grid export", "Grid import", "Roof solar"]
        consumer, producer = by_title["Grid import"], by_title["Grid export"]
        assert all(p.registered for p in by_title.values())

        # One period takes the meters' baselines; each next one publishes its slot's energy.
        for slot in SLOTS:
            await wait_for_period_boundary()
            await hass.async_block_till_done()
            totals = [total + delta for total, delta in zip(totals, slot, strict=True)]
            set_meters(hass, *totals)
        await wait_for_period_boundary()
        await hass.async_block_till_done()
        imported, exported, produced = (round(sum(s[i] for s in SLOTS), 3) for i in range(3))
        assert state(hass, "sensor.grid_import_energy_published") == str(imported)
        # The surplus only: the panels' production is published by the source, not sold.
        assert state(hass, "sensor.grid_export_energy_published") == str(exported)
        assert state(hass, "sensor.roof_solar_energy_published") == str(produced)

        expected = [expected_bill_and_payout(exp, 0.0, imp) for imp, exp, _solar in SLOTS]
        assert expected == [(100, 18), (30, 31)]
        client = GridClient(async_get_clientsession(hass), grid_url)

        async def settled(registration_id: str, token: str | None) -> list[tuple[int, int]]:
            page = await client.settled_slots(registration_id, token=token)
            return [(s.energy_milliwh, s.amount) for s in page.slots if s.energy_milliwh]

        async def both_slots_settled() -> bool:
            bills = await settled(consumer.registration_id, consumer.state.registration_token)
            return len(bills) >= len(SLOTS)

        await eventually(both_slots_settled, "both slots settled by the grid", [node, grid])
        bills = await settled(consumer.registration_id, consumer.state.registration_token)
        payouts = await settled(producer.registration_id, producer.state.registration_token)
        assert bills == [
            (round(imp * 1e6), bill) for (imp, _, _), (bill, _) in zip(SLOTS, expected, strict=True)
        ]
        assert payouts == [
            (round(exp * 1e6), payout)
            for (_, exp, _), (_, payout) in zip(SLOTS, expected, strict=True)
        ]

        async def owed_is_both_bills() -> bool:
            await coordinator.async_refresh()
            return state(hass, "sensor.grid_import_amount_owed") == str(
                sum(bill for bill, _ in expected)
            )

        await eventually(owed_is_both_bills, "both bills on the owed sensor", [node, grid])
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
