"""The Energy dashboard in a real Home Assistant: the grid's costs in the household's currency.

On the session's running ``hass`` and grid (``conftest.py``; the grid values IOTA in EUR, as
Home Assistant does), a new consumer joins. The grid's database gets two hours of settled
15-minute slots of a past day billing it (what the grid would have stored settling them); the
integration imports them as hourly statistics, which must equal the grid's bills as its API
serves them. With those statistics and the consensus price in EUR/kWh configured as the
Energy dashboard's settings page saves them, ``energy/validate`` reports no issue.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from grid_server.grid.config import GridConfig
from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import Bill, Registration, Settlement
from grid_server.grid.statements import StatementService

from .conftest import CURRENCY_PER_MILLION_IOTA, ENERGY, add_participant, registries
from .hass import HassError

if TYPE_CHECKING:
    from .conftest import Household

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HOUR_MS = 3_600_000
SLOT_MS = 900_000
NAME, METER = "Dashboard house", "sensor.dashboard_house_energy"
USAGE_MILLIWH = (400_000, 1_250_000, 0, 730_000, 2_000_000, 90_000, 660_000, 1_500_000)
IMPORT_MICRO = 100_000_000  # IOTA per kWh, in micro-IOTA


def seed_past_slots(database: str, registration_id: str, first_ms: int) -> list[int]:
    """Two hours of a past day's slots, each billing only this consumer (all imported);
    the amounts billed."""
    db = Database(database, threads=1)
    amounts = []
    try:
        with db.write() as session:
            for number, usage in enumerate(USAGE_MILLIWH):
                start = first_ms + number * SLOT_MS
                amount = round(usage * IMPORT_MICRO / 1_000_000 / 1_000_000)
                settlement = Settlement(
                    slot_start=start,
                    slot_end=start + SLOT_MS,
                    strategy="pay_as_bid",
                    consensus_price_micro=50_000_000,
                    import_price_micro=IMPORT_MICRO,
                    export_price_micro=20_000_000,
                    grid_cut_ppm=100_000,
                    produced_milliwh=0,
                    consumed_milliwh=usage,
                    local_milliwh=0,
                    imported_milliwh=usage,
                    exported_milliwh=0,
                    local_value=0,
                    consumer_charges=amount,
                    producer_payouts=0,
                    import_cost=amount,
                    export_revenue=0,
                    grid_cut=0,
                    readings_count=1,
                    adjustment_readings=0,
                    producers_count=0,
                    consumers_count=1,
                    energy_balanced=True,
                    money_balanced=True,
                    invariant_report="{}",
                    settled_by="realhass-test",
                    settled_at=start + SLOT_MS,
                )
                session.add(settlement)
                session.flush()
                # Requested already: the grid's bill stage leaves it alone.
                session.add(
                    Bill(
                        settlement_id=settlement.id,
                        registration_id=registration_id,
                        usage_milliwh=usage,
                        adjustment_milliwh=0,
                        amount=amount,
                        requested_at=start + SLOT_MS,
                    )
                )
                amounts.append(amount)
    finally:
        db.close()
    return amounts


def statement_day(database: str, registration_id: str, day: date) -> dict[str, Any]:
    """The participant's line of ``day`` on the grid's statement preview of its month."""
    db = Database(database, threads=1)
    clock = lambda: int(time.time() * 1000)  # noqa: E731
    try:
        preview = asyncio.run(
            StatementService(db, GridConfig(), clock).preview(registration_id, f"{day:%Y-%m}")
        )
    finally:
        db.close()
    (line,) = [line for line in preview["days"] if line["date"] == day.isoformat()]
    return dict(line)


def registration_of(database: str, name: str) -> str:
    db = Database(database, threads=1)
    try:
        with db.read() as session:
            (registration,) = session.scalars(
                select(Registration.registration_id).where(
                    Registration.item_name == name, Registration.active.is_(True)
                )
            )
    finally:
        db.close()
    return str(registration)


def hourly(household: Household, ids: list[str], start_ms: int) -> dict[str, list[Any]]:
    (answer,) = household.hass.ws(
        {
            "type": "recorder/statistics_during_period",
            "start_time": datetime.fromtimestamp(start_ms / 1000, tz=UTC).isoformat(),
            "end_time": datetime.fromtimestamp((start_ms + 2 * HOUR_MS) / 1000, tz=UTC).isoformat(),
            "statistic_ids": ids,
            "period": "hour",
            "types": ["state", "sum"],
        }
    )
    return dict(answer)


def save_preferences(household: Household, ids: dict[str, str], price: str) -> None:
    """Grid consumption: the imported energy with its cost statistic, and the consumer's
    meter priced by the consensus price; return to grid: the inverter's meter at that price
    (both formats, as the other real-hass test)."""
    unified = [
        {
            "type": "grid",
            "stat_energy_from": ids["energy"],
            "stat_energy_to": None,
            "stat_cost": ids["cost"],
            "entity_energy_price": None,
            "number_energy_price": None,
            "stat_compensation": None,
            "entity_energy_price_export": None,
            "number_energy_price_export": None,
            "cost_adjustment_day": 0,
        },
        {
            "type": "grid",
            "stat_energy_from": METER,
            "stat_energy_to": "sensor.inverter_energy",
            "stat_cost": None,
            "entity_energy_price": price,
            "number_energy_price": None,
            "stat_compensation": None,
            "entity_energy_price_export": price,
            "number_energy_price_export": None,
            "cost_adjustment_day": 0,
        },
    ]
    priced = {"stat_cost": None, "entity_energy_price": price, "number_energy_price": None}
    legacy = [
        {
            "type": "grid",
            "flow_from": [
                {
                    "stat_energy_from": ids["energy"],
                    "stat_cost": ids["cost"],
                    "entity_energy_price": None,
                    "number_energy_price": None,
                },
                {"stat_energy_from": METER, **priced},
            ],
            "flow_to": [
                {
                    "stat_energy_to": "sensor.inverter_energy",
                    "stat_compensation": None,
                    "entity_energy_price": price,
                    "number_energy_price": None,
                }
            ],
            "cost_adjustment_day": 0,
        }
    ]
    try:
        household.hass.ws({"type": "energy/save_prefs", "energy_sources": unified})
    except HassError:
        household.hass.ws({"type": "energy/save_prefs", "energy_sources": legacy})


def test_statistics_equal_the_grids_bills_and_validate(household: Household) -> None:
    hass, grid = household.hass, household.grid
    assert hass.get("/api/config")["currency"] == "EUR"
    hass.set_state(METER, "0", {**ENERGY, "friendly_name": NAME})
    consumer = add_participant(hass, household.entry_id, "consumer", {"name": NAME, "meter": METER})

    def joined() -> bool:
        household.entities, household.devices = registries(hass)
        return household.value(consumer, "wallet_balance") == "0"

    household.wait_until(joined, "the new consumer registered with the grid")
    registration = registration_of(grid.database, NAME)
    first = (int(time.time() * 1000) // HOUR_MS - 30) * HOUR_MS  # yesterday, on the hour
    amounts = seed_past_slots(grid.database, registration, first)

    base = f"p2p_energy:{consumer.lower()}"
    ids = {"energy": f"{base}_energy_bought", "iota": f"{base}_cost_iota", "cost": f"{base}_cost"}

    def imported() -> dict[str, list[Any]] | None:
        household.refresh()  # the poll that starts an import when the grid settled a slot
        stats = hourly(household, list(ids.values()), first)
        return stats if all(len(stats.get(i, [])) == 2 for i in ids.values()) else None

    stats = household.wait_until(imported, "the two hours imported as statistics", timeout=90)
    # The grid's own figures: its statement line of that day for the participant.
    day = datetime.fromtimestamp(first / 1000, tz=UTC).date()
    assert statement_day(grid.database, registration, day)["charges"] == sum(amounts)
    per_hour = [sum(amounts[:4]), sum(amounts[4:])]
    assert [row["state"] for row in stats[ids["iota"]]] == per_hour
    assert stats[ids["iota"]][-1]["sum"] == sum(amounts)
    kwh = [sum(USAGE_MILLIWH[:4]) / 1e6, sum(USAGE_MILLIWH[4:]) / 1e6]
    assert [row["state"] for row in stats[ids["energy"]]] == pytest.approx(kwh)
    rate = float(CURRENCY_PER_MILLION_IOTA) / 1_000_000
    assert [row["state"] for row in stats[ids["cost"]]] == pytest.approx(
        [amount * rate for amount in per_hour]
    )

    price = household.entity(household.entry_id, "consensus_price_currency")
    price_state = hass.state(price)
    assert price_state is not None
    assert price_state["attributes"]["unit_of_measurement"] == "EUR/kWh"
    float(price_state["state"])  # a number
    save_preferences(household, ids, price)
    (validation,) = hass.ws({"type": "energy/validate"})
    # No issue names the integration's statistics or price entity. (The two meters may be
    # reported as having no statistics yet: the recorder compiles a sensor's every 5 minutes.)
    assert validation["energy_sources"], validation
    ours = {*ids.values(), price}
    for issues in validation["energy_sources"]:
        for issue in issues:
            affected = {entity for entity, _detail in issue["affected_entities"]}
            assert not affected & ours, validation
