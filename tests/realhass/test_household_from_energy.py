"""The one-step household set-up in a real Home Assistant, from its Energy dashboard.

On the session's running ``hass`` and grid (``conftest.py``), the Energy dashboard is given a
grid import meter, a return-to-grid meter and a solar meter over the websocket command its
settings page uses (``energy/save_prefs``). The household subentry flow, run over the REST
API as the frontend runs it, previews and then creates a consumer, a producer of the surplus
and a source; the entry reloads with them, and their next period carries each meter's energy:
the producer publishes what the export meter counted, not the panels' production, and the
grid bills the new consumer for that period.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from tests.components.p2p_energy.test_end_to_end import expected_bill_and_payout

from .conftest import ENERGY, PRICE, SLOT, registries, wait_for_next_period
from .hass import HassError

if TYPE_CHECKING:
    from .conftest import Household

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

METERS = {  # entity id -> friendly name, the subentry's title
    "sensor.home_grid_import": "Home grid import",
    "sensor.home_grid_export": "Home grid export",
    "sensor.home_solar": "Home solar",
}
IMPORT, EXPORT, SOLAR = METERS
DELTAS = {IMPORT: 0.7, EXPORT: 0.3, SOLAR: 1.1}  # kWh in one period


def save_energy_preferences(household: Household) -> None:
    """As the Energy dashboard's settings page saves them; releases since 2026 keep one grid
    source per connection, earlier ones one grid source with lists of meters."""
    price = {"stat_cost": None, "entity_energy_price": None, "number_energy_price": None}
    unified: dict[str, Any] = {
        "type": "grid",
        "stat_energy_from": IMPORT,
        "stat_energy_to": EXPORT,
        "cost_adjustment_day": 0,
    }
    legacy: dict[str, Any] = {
        "type": "grid",
        "flow_from": [{"stat_energy_from": IMPORT, **price}],
        "flow_to": [
            {
                "stat_energy_to": EXPORT,
                "stat_compensation": None,
                "entity_energy_price": None,
                "number_energy_price": None,
            }
        ],
        "cost_adjustment_day": 0,
    }
    panels = {"type": "solar", "stat_energy_from": SOLAR, "config_entry_solar_forecast": None}
    try:
        household.hass.ws({"type": "energy/save_prefs", "energy_sources": [unified, panels]})
    except HassError:
        household.hass.ws({"type": "energy/save_prefs", "energy_sources": [legacy, panels]})
    (saved,) = household.hass.ws({"type": "energy/get_prefs"})
    assert len(saved["energy_sources"]) == 2, saved


def set_meters(household: Household, readings: dict[str, float]) -> None:
    for entity_id, value in readings.items():
        household.hass.set_state(
            entity_id, str(value), {**ENERGY, "friendly_name": METERS[entity_id]}
        )


def test_household_from_the_energy_dashboard_publishes_its_meters(household: Household) -> None:
    hass = household.hass
    set_meters(household, dict.fromkeys(METERS, 0.0))
    save_energy_preferences(household)

    base = "/api/config/config_entries/subentries/flow"
    preview = hass.post(
        base, {"handler": [household.entry_id, "household"], "show_advanced_options": False}
    )
    assert preview["type"] == "form", preview
    assert preview["description_placeholders"] == {
        "consumers": f"Home grid import ({IMPORT})",
        "producers": f"Home grid export ({EXPORT})",
        "sources": f"Home solar ({SOLAR})",
        "in_use": "—",
        "unusable": "—",
    }
    done = hass.post(f"{base}/{preview['flow_id']}", {"price": PRICE})
    assert (done["type"], done["reason"]) == ("abort", "household_created"), done

    (subentries,) = hass.ws(
        {"type": "config_entries/subentries/list", "entry_id": household.entry_id}
    )
    created = {item["title"]: item for item in subentries if item["title"] in METERS.values()}
    assert {title: item["subentry_type"] for title, item in created.items()} == {
        "Home grid import": "consumer",
        "Home grid export": "producer",
        "Home solar": "source",
    }
    participants = {entity_id: created[title]["subentry_id"] for entity_id, title in METERS.items()}

    def published_sensors() -> bool:
        household.entities, household.devices = registries(hass)
        return all((p, "energy_published") in household.entities for p in participants.values())

    household.wait_until(published_sensors, "the new participants' sensors after the reload")

    def last_publish(participant: str) -> float | None:
        value = household.attribute(participant, "energy_published", "last_publish")
        return None if value is None else datetime.fromisoformat(value).timestamp()

    # Once all three have published a period (their baselines), change the meters within
    # the next one: its readings carry each meter's energy.
    for _attempt in range(5):
        boundary = wait_for_next_period(offset=0.5)
        household.wait_until(
            lambda: all((last_publish(p) or 0) >= boundary for p in participants.values()),  # noqa: B023
            "a period published by the new participants",
            timeout=SLOT * 3,
        )
        if time.time() < boundary + SLOT - 3:
            break
    else:
        raise AssertionError("no period left time to change the meters: the machine is too busy")
    set_meters(household, {entity_id: DELTAS[entity_id] for entity_id in METERS})

    household.wait_until(
        lambda: all(
            household.value(participants[entity_id], "energy_published") == str(DELTAS[entity_id])
            for entity_id in METERS
        ),
        "each meter's energy on its participant's 'energy published' sensor",
        timeout=SLOT * 4,
    )

    # The grid bills the new consumer for what the import meter counted, the new producer's
    # surplus first at its price (every producer asks PRICE, so that is the consensus price).
    bill, _payout = expected_bill_and_payout(DELTAS[EXPORT], 0.0, DELTAS[IMPORT])
    assert bill == 55
    consumer = participants[IMPORT]

    def billed() -> bool:
        hass.call_service(
            "homeassistant",
            "update_entity",
            {"entity_id": household.entity(consumer, "amount_owed")},
        )
        return household.value(consumer, "amount_owed") == str(bill)

    household.wait_until(billed, "the grid's bill on the new consumer's sensor", timeout=120)
