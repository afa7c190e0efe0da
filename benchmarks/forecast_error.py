"""The price forecast's error against the settled price over the demo's simulated week.

Run ``.venv/bin/python benchmarks/forecast_error.py [--seed 1] [--start 2026-04-06]
[--days 7] [--slot-minutes 15]``.

The market is the demo's (``p2p-energy demo``: 7 households, 2 producers with 3 solar
arrays each, 5 homes, drawn from ``--seed`` by the simulator), run in simulated time
from ``--start``: one day of history, then ``--days`` days measured. Every slot is
settled by the grid's settlement (the default strategy and tariff), and every hour
the forecast is issued for the next 24 hours from what the grid knew then: the
settled history and, in the full model, each producer's announced output. A
producer announces what a Forecast.Solar-style service would predict: its arrays'
clear-sky output times their sky's typical clearness, not the passing clouds.

Printed: the mean absolute error (IOTA per kWh) of the price a consumer pays and of
the local (consensus) price, for the full model, for the model without
announcements, and for the naive forecast "the price settled at this time yesterday".
The settled price a consumer pays is exact (before bills are rounded to whole IOTA).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

from grid_server.grid.config import GridConfig
from grid_server.grid.forecast import (
    DAY_MS,
    Announcement,
    ForecastInputs,
    Market,
    consumer_price_micro,
    forecast,
)
from grid_server.grid.settlement.engine import ConsumerDemand, ProducerSupply, settle_with
from grid_server.grid.units import kwh_to_milliwh, price_to_micro
from grid_server.simulator.curves import CurveMeter, SimulatedClock, solar_power
from grid_server.simulator.demo import DEFAULT_HOUSEHOLDS
from grid_server.simulator.runner import SimulatedMarket, SimulationPlan

HOUR_MS = 3_600_000
_EPOCH = datetime(1970, 1, 1)


@dataclass
class Settled:
    """The simulated grid's settled history, by slot start (Unix ms of simulated time)."""

    demand: dict[int, int] = field(default_factory=dict)
    outputs: dict[str, dict[int, int]] = field(default_factory=dict)
    price: dict[int, int] = field(default_factory=dict)
    local_price: dict[int, int | None] = field(default_factory=dict)


@dataclass
class Errors:
    price: list[int] = field(default_factory=list)
    local: list[int] = field(default_factory=list)

    def add(
        self, forecast_price: int, settled: int, local: int | None, settled_local: int | None
    ) -> None:
        self.price.append(abs(forecast_price - settled))
        if local is not None and settled_local is not None:
            self.local.append(abs(local - settled_local))

    @staticmethod
    def mean(values: list[int]) -> float:
        return float(Fraction(sum(values), len(values)) / 1_000_000) if values else float("nan")


def ms(when: datetime) -> int:
    return int((when - _EPOCH).total_seconds() * 1000)


def run(seed: int, start: datetime, days: int, slot_minutes: int) -> dict[str, Errors]:
    producers, consumers = SimulationPlan.split_households(DEFAULT_HOUSEHOLDS)
    market = SimulatedMarket.draw(
        SimulationPlan(producers=producers, consumers=consumers, random_seed=seed)
    )
    config = GridConfig()
    tariff = config.tariff
    pricing = Market.of(config)
    clock = SimulatedClock(start=start, real_start=start, speed=1)
    names = [f"producer-{index + 1}" for index in range(len(market.prices))]
    asks = {name: price_to_micro(price) for name, price in zip(names, market.prices, strict=True)}
    arrays = [
        (names[owner], CurveMeter(solar_power((panel,), clouds), clock, start))
        for owner, panel, clouds in market.arrays
    ]
    homes = [CurveMeter(home.mean_kw, clock, start) for home in market.homes]
    slot = timedelta(minutes=slot_minutes)
    slot_ms = slot_minutes * 60_000
    total_slots = (days + 1) * DAY_MS // slot_ms

    def energy(meter: CurveMeter, begin: datetime) -> int:
        return kwh_to_milliwh(round(meter.total_kwh(begin + slot) - meter.total_kwh(begin), 6))

    settled = Settled()
    for index in range(total_slots):
        begin = start + index * slot
        key = ms(begin)
        supply: dict[str, int] = dict.fromkeys(names, 0)
        for name, meter in arrays:
            supply[name] += energy(meter, begin)
        usage = [energy(meter, begin) for meter in homes]
        outcome = settle_with(
            [ProducerSupply(name, supply[name], asks[name], None) for name in names],
            [ConsumerDemand(f"home-{i}", used) for i, used in enumerate(usage)],
            pricing.mechanism,
            tariff,
            pricing.params,
        )
        settled.demand[key] = outcome.consumed_milliwh
        for name in names:
            settled.outputs.setdefault(name, {})[key] = supply[name]
        settled.price[key] = consumer_price_micro(outcome, tariff)
        settled.local_price[key] = outcome.consensus_price_micro

    def announcement(name: str, issued: datetime) -> Announcement:
        """What a solar forecast service predicts for ``name``'s arrays from ``issued``."""
        steps = DAY_MS // slot_ms
        values = []
        for step in range(steps):
            begin = issued + step * slot
            samples = [begin + slot * (i + 0.5) / 3 for i in range(3)]
            kwh = (
                sum(
                    panel.clear_sky_kw(moment) * clouds.clearness
                    for owner, panel, clouds in market.arrays
                    if names[owner] == name
                    for moment in samples
                )
                / len(samples)
                * slot_minutes
                / 60
            )
            values.append(kwh_to_milliwh(round(kwh, 6)))
        return Announcement(ms(issued), slot_ms, tuple(values))

    results = {name: Errors() for name in ("full model", "without announcements", "yesterday")}
    end = ms(start) + total_slots * slot_ms
    for hour in range(24, (days + 1) * 24):
        issued = start + timedelta(hours=hour)
        now = ms(issued)
        history = Settled(
            {k: v for k, v in settled.demand.items() if k < now},
            {n: {k: v for k, v in o.items() if k < now} for n, o in settled.outputs.items()},
        )
        announced = {name: [announcement(name, issued)] for name in names}
        for label, announcements in (("full model", announced), ("without announcements", {})):
            inputs = ForecastInputs(history.demand, history.outputs, asks, announcements)
            for slot_forecast in forecast(inputs, now, slot_ms, pricing):
                if slot_forecast.start_ms >= end:
                    break
                results[label].add(
                    slot_forecast.price_micro,
                    settled.price[slot_forecast.start_ms],
                    slot_forecast.local_price_micro,
                    settled.local_price[slot_forecast.start_ms],
                )
        for key in range(now, min(now + DAY_MS, end), slot_ms):
            results["yesterday"].add(
                settled.price[key - DAY_MS],
                settled.price[key],
                settled.local_price[key - DAY_MS],
                settled.local_price[key],
            )
    measured = [settled.price[key] for key in settled.price if key >= ms(start) + DAY_MS]
    print(
        f"{days} simulated days from {start:%Y-%m-%d} (seed {seed}, {slot_minutes}-minute "
        f"slots, {config.pricing_strategy}, import {config.import_price:g}, export "
        f"{config.export_price:g} IOTA/kWh): settled price paid "
        f"{min(measured) / 1e6:.1f} to {max(measured) / 1e6:.1f}, mean "
        f"{Errors.mean(measured):.1f} IOTA/kWh"
    )
    print("| forecast | MAE price paid (IOTA/kWh) | MAE local price (IOTA/kWh) | forecasts |")
    print("|---|---|---|---|")
    for label, errors in results.items():
        print(
            f"| {label} | {Errors.mean(errors.price):.2f} | {Errors.mean(errors.local):.2f} "
            f"| {len(errors.price)} |"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", default="2026-04-06", help="first simulated day (history)")
    parser.add_argument("--days", type=int, default=7, help="days measured after the first")
    parser.add_argument("--slot-minutes", type=int, default=15)
    args = parser.parse_args()
    run(args.seed, datetime.fromisoformat(args.start), args.days, args.slot_minutes)


if __name__ == "__main__":
    main()
