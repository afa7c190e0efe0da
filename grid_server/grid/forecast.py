"""An indicative price for each slot of the next 24 hours.

The model is deliberately simple, so a household can follow it:

1. **Demand** of a slot is the community's typical consumption at that time: the mean
   of what was settled at the same time of day on the last seven days, averaged
   half and half with the same slot a week earlier when there is one (weekdays and
   weekends differ). Without any history at that time of day it is the mean of all
   settled slots of the last week, and 0 without any history at all.
2. **Supply** of each producer is what it announced for the slot (the newest
   ``expectedOutput`` covering the whole slot, see
   :mod:`p2p_energy_protocol.expected_output`), else its typical output at that time
   of day by the same rule as demand.
3. **Price**: the slot is settled as the grid will settle it, by the settlement's own
   :func:`~.settlement.engine.settle_with` with the grid's mechanism, tariff and
   parameters, each producer at its latest asking price and the whole community as one
   consumer without a bid (so it bids the import price; under static allocation keys
   it holds every share). The
   forecast ``price`` is what a consumer pays per kWh in that slot (local energy at
   the consensus price, the rest imported), ``localPrice`` the consensus price. A
   slot without demand is priced for the first kWh used: the consensus price if
   anything is expected to be produced, else the import price.

Nothing is billed from a forecast; its error against the settled price is measured
by ``benchmarks/forecast_error.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select

from .clock import system_clock
from .db.models import ExpectedOutputAnnouncement, Payout, Reading, Settlement
from .settlement.engine import ConsumerDemand, ProducerSupply, SettlementOutcome, settle_with
from .settlement.mechanisms import MarketParameters
from .settlement.pricing import StrategyInfo, Tariff, check_strategy, relevant_parameters
from .units import MILLIWH_PER_KWH, micro_to_price

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.orm import Session

    from .clock import Clock
    from .config import GridConfig
    from .db.engine import Database

DAY_MS: Final = 86_400_000
WEEK_MS: Final = 7 * DAY_MS
HORIZON_MS: Final = DAY_MS
HISTORY_DAYS: Final = 7
MAX_SLOTS: Final = 1_440
"""Slots in one forecast: 24 hours of one-minute slots (shorter slots cover less)."""
COMMUNITY: Final = "community"
"""The one consumer standing for the whole community in a forecast's settlement."""


@dataclass(frozen=True, slots=True)
class Announcement:
    """One producer's expected output: ``outputs_milliwh[i]`` from ``start + i * step``."""

    start_ms: int
    step_ms: int
    outputs_milliwh: tuple[int, ...]

    def energy_in(self, start_ms: int, end_ms: int) -> int | None:
        """The energy announced for ``[start_ms, end_ms)``; None unless it is covered."""
        if start_ms < self.start_ms or end_ms > self.start_ms + self.step_ms * len(
            self.outputs_milliwh
        ):
            return None
        total = Fraction(0)
        first = (start_ms - self.start_ms) // self.step_ms
        last = (end_ms - 1 - self.start_ms) // self.step_ms
        for index in range(first, last + 1):
            step_start = self.start_ms + index * self.step_ms
            overlap = min(end_ms, step_start + self.step_ms) - max(start_ms, step_start)
            total += Fraction(self.outputs_milliwh[index] * overlap, self.step_ms)
        return round(total)


@dataclass(frozen=True, slots=True)
class Market:
    """How the grid settles: its mechanism, tariff and the parameters a forecast uses."""

    mechanism: StrategyInfo
    tariff: Tariff
    params: MarketParameters

    @classmethod
    def of(cls, config: GridConfig) -> Market:
        tariff = config.tariff
        mechanism = check_strategy(config.pricing_strategy, tariff, config.market_parameters)
        params = relevant_parameters(mechanism, config.market_parameters)
        # The community is one consumer: it holds every static share; preferences are
        # per consumer and do not apply.
        return cls(
            mechanism,
            tariff,
            MarketParameters(
                community_price_micro=params.community_price_micro,
                shares=((COMMUNITY, 1),) if params.shares else (),
            ),
        )


@dataclass(frozen=True, slots=True)
class ForecastInputs:
    """What a forecast is made from (all energies in mWh, prices in micro-IOTA/kWh)."""

    demand_history: Mapping[int, int]
    """Settled consumption by slot start."""
    output_history: Mapping[str, Mapping[int, int]]
    """Each producer's settled output by slot start."""
    asks: Mapping[str, int]
    """Each producer's latest asking price; only these producers are forecast."""
    announcements: Mapping[str, Sequence[Announcement]]
    """Each producer's announcements, oldest first (the newest covering a slot wins)."""


@dataclass(frozen=True, slots=True)
class SlotForecast:
    start_ms: int
    end_ms: int
    price_micro: int
    """What a consumer is expected to pay per kWh in the slot."""
    local_price_micro: int | None
    """The expected consensus price of the energy traded locally."""
    demand_milliwh: int
    supply_milliwh: int
    announced_milliwh: int
    """The part of the supply that producers announced (the rest is typical output)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "startTime": self.start_ms,
            "endTime": self.end_ms,
            "price": micro_to_price(self.price_micro),
            "localPrice": None
            if self.local_price_micro is None
            else micro_to_price(self.local_price_micro),
            "demandKwh": self.demand_milliwh / MILLIWH_PER_KWH,
            "supplyKwh": self.supply_milliwh / MILLIWH_PER_KWH,
            "announcedKwh": self.announced_milliwh / MILLIWH_PER_KWH,
        }


def typical(history: Mapping[int, int], slot_start: int) -> int | None:
    """The typical value at ``slot_start``: the mean of the same time on the last seven
    days, averaged with the same slot a week earlier when there is one."""
    daily = [
        history[slot_start - day * DAY_MS]
        for day in range(1, HISTORY_DAYS + 1)
        if slot_start - day * DAY_MS in history
    ]
    if not daily:
        return None
    value = Fraction(sum(daily), len(daily))
    week_ago = history.get(slot_start - WEEK_MS)
    if week_ago is not None:
        value = (value + week_ago) / 2
    return round(value)


def consumer_price_micro(outcome: SettlementOutcome, tariff: Tariff) -> int:
    """What a consumer pays per kWh in a settlement, exactly (before bills are rounded
    to whole IOTA): local energy at the consensus price, the rest at the import price.
    Without consumption it is the price of the first kWh: the consensus price when
    something was produced, else the import price."""
    local_price = outcome.consensus_price_micro
    if outcome.consumed_milliwh == 0:
        return local_price if local_price is not None else tariff.import_price_micro
    paid = outcome.local_milliwh * (local_price or 0) + (
        outcome.imported_milliwh * tariff.import_price_micro
    )
    return round(Fraction(paid, outcome.consumed_milliwh))


def _recent_mean(history: Mapping[int, int], before_ms: int) -> int:
    recent = [value for start, value in history.items() if before_ms - WEEK_MS <= start]
    return round(Fraction(sum(recent), len(recent))) if recent else 0


def forecast_slot(
    inputs: ForecastInputs,
    start_ms: int,
    end_ms: int,
    market: Market,
    issued_ms: int,
) -> SlotForecast:
    """One slot's forecast (see the module documentation for the model)."""
    demand = typical(inputs.demand_history, start_ms)
    if demand is None:
        demand = _recent_mean(inputs.demand_history, issued_ms)
    supplies: list[ProducerSupply] = []
    announced = 0
    for producer, ask in sorted(inputs.asks.items()):
        energy = None
        for announcement in reversed(inputs.announcements.get(producer, ())):
            energy = announcement.energy_in(start_ms, end_ms)
            if energy is not None:
                announced += energy
                break
        if energy is None:
            energy = typical(inputs.output_history.get(producer, {}), start_ms) or 0
        supplies.append(ProducerSupply(producer, energy, ask, None))
    outcome = settle_with(
        supplies,
        [ConsumerDemand(COMMUNITY, demand)],
        market.mechanism,
        market.tariff,
        market.params,
    )
    return SlotForecast(
        start_ms,
        end_ms,
        consumer_price_micro(outcome, market.tariff),
        outcome.consensus_price_micro,
        demand,
        outcome.produced_milliwh,
        announced,
    )


def forecast(
    inputs: ForecastInputs,
    now_ms: int,
    slot_ms: int,
    market: Market,
) -> list[SlotForecast]:
    """The forecast of every slot from the current one to 24 hours ahead."""
    first = now_ms // slot_ms * slot_ms
    count = min(MAX_SLOTS, max(1, -(-HORIZON_MS // slot_ms)))
    return [
        forecast_slot(inputs, first + i * slot_ms, first + (i + 1) * slot_ms, market, now_ms)
        for i in range(count)
    ]


def load_inputs(session: Session, now_ms: int) -> ForecastInputs:
    """The forecast's inputs from the grid's database (the last eight days)."""
    since = now_ms - WEEK_MS - DAY_MS
    # A Result has keys(), so dict() would take it for a mapping: go through all().
    demand = dict(
        session.execute(
            select(Settlement.slot_start, Settlement.consumed_milliwh).where(
                Settlement.slot_start >= since
            )
        )
        .tuples()
        .all()
    )
    outputs: dict[str, dict[int, int]] = {}
    for producer, slot_start, energy in session.execute(
        select(Payout.registration_id, Settlement.slot_start, Payout.energy_milliwh)
        .join(Settlement, Payout.settlement_id == Settlement.id)
        .where(Settlement.slot_start >= since)
    ).tuples():
        outputs.setdefault(producer, {})[slot_start] = energy
    asks: dict[str, int] = {}
    for producer, price in session.execute(
        select(Reading.registration_id, Reading.price_micro)
        .where(
            Reading.kind == "output",
            Reading.price_micro.is_not(None),
            Reading.received_at >= now_ms - WEEK_MS,
        )
        .order_by(Reading.received_at, Reading.id)
    ).tuples():
        if price is not None:
            asks[producer] = price
    announcements: dict[str, list[Announcement]] = {}
    for row in session.scalars(
        select(ExpectedOutputAnnouncement)
        .where(ExpectedOutputAnnouncement.end_time > now_ms)
        .order_by(ExpectedOutputAnnouncement.received_at, ExpectedOutputAnnouncement.id)
    ):
        announcements.setdefault(row.registration_id, []).append(
            Announcement(row.start_time, row.step_ms, tuple(json.loads(row.outputs_json)))
        )
    return ForecastInputs(demand, outputs, asks, announcements)


class ForecastService:
    """The grid's forecast, computed once per slot and kept for the rest of it."""

    def __init__(
        self,
        db: Database,
        config: GridConfig,
        clock: Clock = system_clock,
    ) -> None:
        self._db = db
        self._config = config
        self._market = Market.of(config)
        self._clock = clock
        self._cached: tuple[int, list[SlotForecast]] | None = None

    async def slots(self) -> list[SlotForecast]:
        now = self._clock()
        slot = now // self._config.slot_ms
        if self._cached is not None and self._cached[0] == slot:
            return self._cached[1]
        inputs = await self._db.run_read(lambda session: load_inputs(session, now))
        result = forecast(inputs, now, self._config.slot_ms, self._market)
        self._cached = (slot, result)
        return result
