"""The price forecast: its model by hand, its inputs from the database, its API."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from grid_server.grid.clock import system_clock
from grid_server.grid.config import GridConfig
from grid_server.grid.db.models import ExpectedOutputAnnouncement
from grid_server.grid.follower import ChannelFollower
from grid_server.grid.forecast import (
    DAY_MS,
    WEEK_MS,
    Announcement,
    ForecastInputs,
    ForecastService,
    Market,
    forecast,
    forecast_slot,
    load_inputs,
    typical,
)
from grid_server.grid.settlement.service import SettlementService

from .dbhelpers import add_reading, add_registration
from .fakes import FakeChannels, ManualClock
from .harness import running_api

SLOT = 900_000
HOUR = 3_600_000
S0 = 1_888_888 * SLOT
CONFIG = replace(GridConfig(), import_price=100.0, export_price=20.0, grid_cut_percent=10.0)
WEIGHTED = Market.of(CONFIG)


def inputs(**changes: object) -> ForecastInputs:
    base = ForecastInputs(
        demand_history={S0 - DAY_MS: 2_000_000, S0 - 2 * DAY_MS: 4_000_000},
        output_history={"producer-a": {S0 - DAY_MS: 500_000}},
        asks={"producer-a": 30_000_000, "producer-b": 60_000_000},
        announcements={"producer-b": [Announcement(S0 - SLOT, SLOT, (9, 500_000, 700_000))]},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_typical_is_the_daily_mean_averaged_with_last_week() -> None:
    history = {S0 - DAY_MS: 2, S0 - 3 * DAY_MS: 4, S0 - 8 * DAY_MS: 100}
    assert typical(history, S0) == 3  # eight days back is beyond the daily window
    # A week ago is one of the seven days too: (2 + 4 + 9) / 3 = 5, then (5 + 9) / 2.
    assert typical({**history, S0 - WEEK_MS: 9}, S0) == 7
    assert typical({S0 - SLOT: 5}, S0) is None


def test_an_announcement_counts_only_where_it_covers_the_whole_slot() -> None:
    hourly = Announcement(S0, HOUR, (4_000_000, 8_000_000))
    assert hourly.energy_in(S0, S0 + SLOT) == 1_000_000
    # A slot across two hours takes a share of each.
    assert hourly.energy_in(S0 + 3 * SLOT, S0 + 5 * SLOT) == 1_000_000 + 2_000_000
    assert hourly.energy_in(S0 - SLOT, S0) is None
    assert hourly.energy_in(S0 + 2 * HOUR - SLOT, S0 + 2 * HOUR + SLOT) is None


def test_a_slot_is_priced_by_the_settlement_by_hand() -> None:
    # Demand 3 kWh (mean of 2 and 4); producer-a typically 0.5 kWh at 30, producer-b
    # announced 0.5 kWh at 60: local 1 kWh at the weighted mean 45, 2 kWh imported at 100.
    slot = forecast_slot(inputs(), S0, S0 + SLOT, WEIGHTED, S0)
    assert (slot.demand_milliwh, slot.supply_milliwh, slot.announced_milliwh) == (
        3_000_000,
        1_000_000,
        500_000,
    )
    assert slot.local_price_micro == 45_000_000
    assert slot.price_micro == round((1 * 45_000_000 + 2 * 100_000_000) / 3)
    assert slot.to_json()["price"] == 81.666667
    # The newest announcement covering the slot wins.
    newer = inputs(
        announcements={
            "producer-b": [
                Announcement(S0 - SLOT, SLOT, (9, 500_000)),
                Announcement(S0, SLOT, (2_500_000,)),
            ]
        }
    )
    slot = forecast_slot(newer, S0, S0 + SLOT, WEIGHTED, S0)
    assert (slot.supply_milliwh, slot.local_price_micro) == (3_000_000, 55_000_000)
    assert slot.price_micro == 55_000_000


def test_without_demand_the_first_kwh_is_priced() -> None:
    empty = inputs(demand_history={})
    slot = forecast_slot(empty, S0, S0 + SLOT, WEIGHTED, S0)
    assert (slot.demand_milliwh, slot.price_micro) == (0, slot.local_price_micro)
    nothing = inputs(demand_history={}, asks={})
    slot = forecast_slot(nothing, S0, S0 + SLOT, WEIGHTED, S0)
    assert (slot.price_micro, slot.local_price_micro) == (100_000_000, None)


def test_a_time_without_history_falls_back_to_last_weeks_mean() -> None:
    history = {S0 - SLOT: 1_000_000, S0 - 2 * SLOT: 3_000_000, S0 - 2 * WEEK_MS: 50_000_000}
    slot = forecast_slot(inputs(demand_history=history), S0, S0 + SLOT, WEIGHTED, S0)
    assert slot.demand_milliwh == 2_000_000


def test_the_forecast_covers_24_hours_from_the_current_slot() -> None:
    slots = forecast(inputs(), S0 + 5, HOUR, WEIGHTED)
    assert len(slots) == 24
    assert slots[0].start_ms == S0 // HOUR * HOUR
    assert slots[-1].end_ms == slots[0].start_ms + DAY_MS


async def test_announcements_are_stored_once_and_read_back(db: object) -> None:
    from grid_server.grid.db.engine import Database

    assert isinstance(db, Database)
    fake = FakeChannels()
    now = S0 + SLOT
    announced = {"startTime": S0 + SLOT, "stepMs": HOUR, "output": [1.5, 0.25]}
    producer = fake.stream(
        [
            {"command": "hello"},
            {
                "command": "output",
                "startTime": S0,
                "endTime": S0 + SLOT,
                "output": 1.0,
                "producerPrice": 40,
                "paymentIdOrAddress": "A" * 81,
                "expectedOutput": announced,
            },
        ]
    )
    add_registration(db, "producer-a", "producer", producer)
    follower = ChannelFollower(db, fake, ManualClock(now), CONFIG)
    assert (await follower.follow_once()).readings == 1
    with db.read() as session:
        [row] = session.scalars(select(ExpectedOutputAnnouncement)).all()
        assert (row.start_time, row.end_time, row.outputs_json) == (
            S0 + SLOT,
            S0 + SLOT + 2 * HOUR,
            "[1500000, 250000]",
        )
        loaded = load_inputs(session, now)
    assert loaded.asks == {"producer-a": 40_000_000}
    assert loaded.announcements == {
        "producer-a": [Announcement(S0 + SLOT, HOUR, (1_500_000, 250_000))]
    }
    # Settled history: yesterday's slot at this time of day.
    add_registration(db, "consumer-x", "consumer", None)
    add_reading(db, "consumer-x", S0 + 2 * SLOT - DAY_MS, 2.0)
    add_reading(db, "producer-a", S0 + 2 * SLOT - DAY_MS, 0.5, price=40, destination="ref")
    settler = SettlementService(db, CONFIG, ManualClock(now), "test")
    assert len(await settler.settle_due()) == 1
    service = ForecastService(db, CONFIG, ManualClock(now))
    [first, *_] = await service.slots()
    # 1.5 kWh per hour announced: 0.375 kWh in the 15-minute slot, 2 kWh typical demand.
    assert (first.start_ms, first.supply_milliwh, first.demand_milliwh) == (
        S0 + SLOT,
        375_000,
        2_000_000,
    )
    assert first.price_micro == round((0.375 * 40_000_000 + 1.625 * 100_000_000) / 2)
    assert await service.slots() is await service.slots()  # computed once per slot


async def test_the_api_serves_the_forecast_and_refuses_bad_input(db: object) -> None:
    from grid_server.grid.db.engine import Database

    assert isinstance(db, Database)
    now = system_clock()
    slot = now // SLOT * SLOT
    add_registration(db, "producer-a", "producer", None)
    add_registration(db, "consumer-x", "consumer", None)
    add_reading(db, "producer-a", slot - DAY_MS + SLOT, 1.0, price=30, destination="ref")
    add_reading(db, "consumer-x", slot - DAY_MS + SLOT, 4.0)
    await SettlementService(db, CONFIG, system_clock, "test").settle_due()
    async with running_api(db, import_price=100.0, grid_cut_percent=10.0) as api:
        status, answer = await api.call("GET", "/forecast", "/forecast")
        assert status == 200
        assert (answer["slotSeconds"], answer["strategy"]) == (900, "weighted-mean")
        assert len(answer["slots"]) == 96
        current = answer["slots"][0]
        assert current["startTime"] <= system_clock() < current["endTime"]
        assert (current["demandKwh"], current["supplyKwh"]) == (4.0, 1.0)
        assert current["price"] == (1 * 30 + 3 * 100) / 4
        status, answer = await api.call("GET", "/forecast", "/forecast", params={"hours": "2"})
        assert (status, len(answer["slots"])) == (200, 8)
        for bad in ("0", "25", "x", "-1"):
            status, answer = await api.call("GET", "/forecast", "/forecast", params={"hours": bad})
            assert status == 400
            assert "hours" in answer["message"]


def test_very_short_slots_are_capped() -> None:
    slots = forecast(inputs(), S0, 10_000, WEIGHTED)
    assert len(slots) == 1_440


def test_under_allocation_keys_the_community_holds_every_share() -> None:
    config = replace(
        CONFIG,
        pricing_strategy="allocation-static",
        allocation_shares=(("consumer-x", 1), ("consumer-y", 3)),
        community_price=50.0,
    )
    market = Market.of(config)
    assert market.params.shares == (("community", 1),)
    # 1 kWh shared locally at the community price, 2 kWh imported at 100.
    slot = forecast_slot(inputs(), S0, S0 + SLOT, market, S0)
    assert slot.local_price_micro == 50_000_000
    assert slot.price_micro == round((50_000_000 + 2 * 100_000_000) / 3)


def test_a_double_auction_clears_the_community_at_its_import_bid() -> None:
    market = Market.of(replace(CONFIG, pricing_strategy="pay-as-clear"))
    slot = forecast_slot(inputs(), S0, S0 + SLOT, market, S0)
    # The last match is producer-b's ask of 60 with the community's bid of 100.
    assert slot.local_price_micro == 80_000_000
