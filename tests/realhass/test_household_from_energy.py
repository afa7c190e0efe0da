"""The one-step household set-up in a real Home Assistant, from its Energy dashboard.

On the session's running ``hass`` and grid (``conftest.py``), the Energy dashboard is given a
grid import meter, a return-to-grid meter and a solar meter over the websocket command its
settings page uses (``energy/save_prefs``). The household subentry flow, run over the REST
API as the frontend runs it, previews and then creates a consumer, a producer of the surplus
and a source; the entry reloads with them, and their next period carries each meter's energy:
the producer publishes what the export meter counted, not the panels' production, and the
grid bills the new consumer for that period. Over further periods the household trades on;
the recorder's hourly statistics of its consumer and producer (the current hour too) equal
the grid's bills and payouts of those slots, in IOTA and to the cent in EUR, and with them
as the Energy dashboard's grid consumption, return and costs, ``energy/validate`` names none
of them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
from sqlalchemy import select

from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import Bill, Payout, Registration, Settlement
from tests.components.p2p_energy.test_end_to_end import expected_bill_and_payout

from .conftest import (
    CURRENCY_PER_MILLION_IOTA,
    ENERGY,
    PRICE,
    SLOT,
    registries,
    wait_for_next_period,
)
from .hass import HassError

if TYPE_CHECKING:
    from .conftest import Household

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

METERS = {  # entity id -> friendly name, the subentry's title
    "sensor.home_grid_import": "Home grid import",
    "sensor.home_grid_export": "Home grid export",
    "sensor.home_solar": "Home solar",
}
IMPORT, EXPORT, SOLAR = METERS
DELTAS = {IMPORT: 0.7, EXPORT: 0.3, SOLAR: 1.1}  # kWh in one period
# The meters after two more periods: imports and exports in different amounts.
LATER = ({IMPORT: 1.1, EXPORT: 0.8, SOLAR: 2.0}, {IMPORT: 2.3, EXPORT: 1.0, SOLAR: 2.5})
TRADED_SLOTS = 1 + len(LATER)  # each billing the consumer and paying the producer
HOUR_MS = 3_600_000
CENT = Decimal("0.01")
Hours = dict[int, tuple[int, int]]  # hour start (ms) -> energy (mWh), IOTA


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

    set_meters_in_next_period(household, participants, DELTAS)
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

    # Two more periods of trade, then the recorder's statistics equal the grid's figures.
    for readings in LATER:
        set_meters_in_next_period(household, participants, readings)
    statistics_equal_the_grids_figures(household, consumer, participants[EXPORT])


def set_meters_in_next_period(
    household: Household, participants: dict[str, str], readings: dict[str, float]
) -> None:
    """Once all of them have published a period, change the meters within the next one:
    its readings carry each meter's change."""

    def last_publish(participant: str) -> float | None:
        value = household.attribute(participant, "energy_published", "last_publish")
        return None if value is None else datetime.fromisoformat(value).timestamp()

    for _attempt in range(5):
        boundary = wait_for_next_period(offset=0.5)
        household.wait_until(
            lambda: all((last_publish(p) or 0) >= boundary for p in participants.values()),  # noqa: B023
            "a period published by the new participants",
            timeout=SLOT * 3,
        )
        if time.time() < boundary + SLOT - 3:
            set_meters(household, readings)
            return
    raise AssertionError("no period left time to change the meters: the machine is too busy")


def grid_figures(
    database: str, name: str, consumer: bool
) -> tuple[dict[int, tuple[int, int]], int]:
    """A participant's bills (consumer) or payouts (producer) from the grid's database, per
    hour of the slot's start (energy in mWh and IOTA), and how many slots had an amount."""
    line = Bill if consumer else Payout
    energy = Bill.usage_milliwh if consumer else Payout.energy_milliwh
    db = Database(database, threads=1)
    try:
        with db.read() as session:
            rows = session.execute(
                select(Settlement.slot_start, energy, line.amount)
                .join(Settlement, Settlement.id == line.settlement_id)
                .join(Registration, Registration.registration_id == line.registration_id)
                .where(Registration.item_name == name, Registration.active.is_(True))
            ).all()
    finally:
        db.close()
    hours: Hours = {}
    for start, milliwh, amount in rows:
        hour = start // HOUR_MS * HOUR_MS
        before = hours.get(hour, (0, 0))
        hours[hour] = (before[0] + milliwh, before[1] + amount)
    return hours, sum(1 for _start, _milliwh, amount in rows if amount)


class StatisticIds(NamedTuple):
    energy: str
    iota: str
    money: str


def statistic_ids(participant: str, energy: str, money: str) -> StatisticIds:
    """The integration's statistic ids of a participant (its subentry id)."""
    base = f"p2p_energy:{participant.lower()}"
    return StatisticIds(f"{base}_{energy}", f"{base}_{money}_iota", f"{base}_{money}")


def euros(amount: float | int) -> Decimal:
    return (Decimal(amount) * Decimal(CURRENCY_PER_MILLION_IOTA) / 1_000_000).quantize(CENT)


def statistics_equal_the_grids_figures(household: Household, consumer: str, producer: str) -> None:
    """Hour by hour, the consumer's and producer's statistics are the grid's bills and
    payouts (kWh, IOTA, EUR to the cent), the hour still going included; then the Energy
    dashboard's grid is set up with them and ``energy/validate`` names none of them."""
    hass, grid = household.hass, household.grid
    ids = {
        consumer: statistic_ids(consumer, "energy_bought", "cost"),
        producer: statistic_ids(producer, "energy_sold", "compensation"),
    }
    wanted = [statistic for of in ids.values() for statistic in of]

    def caught_up() -> tuple[dict[str, Hours], dict[str, Any]] | None:
        household.refresh()  # the poll that starts an import once the grid settled a slot
        figures = {}
        for participant, meter in ((consumer, IMPORT), (producer, EXPORT)):
            of, paid = grid_figures(grid.database, METERS[meter], participant == consumer)
            if paid < TRADED_SLOTS:
                return None  # the last periods are not settled yet
            figures[participant] = of
        first = min(min(of) for of in figures.values())
        (answer,) = hass.ws(
            {
                "type": "recorder/statistics_during_period",
                "start_time": datetime.fromtimestamp(first / 1000, tz=UTC).isoformat(),
                "statistic_ids": wanted,
                "period": "hour",
                "types": ["state", "sum"],
            }
        )
        rows = {i: {row["start"]: row for row in answer.get(i, [])} for i in wanted}
        for participant, of in figures.items():
            _energy, iota, money = ids[participant]
            if sorted(rows[iota]) != sorted(of) or sorted(rows[money]) != sorted(of):
                return None
            if any(rows[iota][hour]["state"] != amount for hour, (_e, amount) in of.items()):
                return None
        return figures, rows

    # Each settled slot starts an import on the next poll: its hour's row grows.
    figures, rows = household.wait_until(
        caught_up, "the statistics caught up with the grid's bills and payouts", timeout=120
    )
    for participant, of in figures.items():
        energy, iota, money = ids[participant]
        total = 0
        for hour, (milliwh, amount) in sorted(of.items()):
            total += amount
            assert rows[energy][hour]["state"] == pytest.approx(milliwh / 1e6)
            assert rows[iota][hour]["sum"] == total
            assert Decimal(repr(rows[money][hour]["state"])).quantize(CENT) == euros(amount)
            assert Decimal(repr(rows[money][hour]["sum"])).quantize(CENT) == euros(total)

    # The Energy dashboard's grid: the statistics with their costs, as its settings page
    # saves them (either release's format); the panels' meter stays the solar production.
    unified: dict[str, Any] = {
        "type": "grid",
        "stat_energy_from": ids[consumer].energy,
        "stat_energy_to": ids[producer].energy,
        "stat_cost": ids[consumer].money,
        "entity_energy_price": None,
        "number_energy_price": None,
        "stat_compensation": ids[producer].money,
        "entity_energy_price_export": None,
        "number_energy_price_export": None,
        "cost_adjustment_day": 0,
    }
    none = {"entity_energy_price": None, "number_energy_price": None}
    legacy: dict[str, Any] = {
        "type": "grid",
        "flow_from": [
            {"stat_energy_from": unified["stat_energy_from"], "stat_cost": unified["stat_cost"]}
            | none
        ],
        "flow_to": [
            {
                "stat_energy_to": unified["stat_energy_to"],
                "stat_compensation": unified["stat_compensation"],
            }
            | none
        ],
        "cost_adjustment_day": 0,
    }
    panels = {"type": "solar", "stat_energy_from": SOLAR, "config_entry_solar_forecast": None}
    try:
        hass.ws({"type": "energy/save_prefs", "energy_sources": [unified, panels]})
    except HassError:
        hass.ws({"type": "energy/save_prefs", "energy_sources": [legacy, panels]})
    (validation,) = hass.ws({"type": "energy/validate"})
    assert validation["energy_sources"], validation
    for issues in validation["energy_sources"]:
        for issue in issues:
            affected = {entity for entity, _detail in issue["affected_entities"]}
            assert not affected & set(wanted), validation
            # The panels' meter may have no statistics yet: the recorder compiles a sensor's
            # every 5 minutes, so this short run can end before the first compile. Its unit,
            # device and state class are what the recorder needs (those issues would fail).
            assert (issue["type"], affected) == ("statistics_not_defined", {SOLAR}), validation
