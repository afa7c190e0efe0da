"""The grid's price forecast (``GET /forecast``) as typed values, and the cheapest window.

Prices are IOTA per kWh, times Unix milliseconds. The forecast is indicative: slots
are billed at their settled price.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import GridUnavailableError


@dataclass(frozen=True, slots=True)
class ForecastSlot:
    """One slot of the forecast."""

    start_ms: int
    end_ms: int
    price: float
    """What a consumer is expected to pay per kWh."""
    local_price: float | None
    """The expected consensus price of local energy."""
    demand_kwh: float
    supply_kwh: float
    announced_kwh: float


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of time and its mean forecast price."""

    start_ms: int
    end_ms: int
    price: float


@dataclass(frozen=True, slots=True)
class PriceForecast:
    """The forecast of each slot from the current one to 24 hours ahead, in order."""

    slot_seconds: int
    slots: tuple[ForecastSlot, ...]

    def slot_at(self, when_ms: int) -> ForecastSlot | None:
        """The slot holding ``when_ms``; None outside the forecast."""
        for slot in self.slots:
            if slot.start_ms <= when_ms < slot.end_ms:
                return slot
        return None

    def mean_price(self, start_ms: int, end_ms: int) -> float | None:
        """The time-weighted mean price over ``[start_ms, end_ms)``; None unless covered."""
        covered = 0
        total = 0.0
        for slot in self.slots:
            overlap = min(end_ms, slot.end_ms) - max(start_ms, slot.start_ms)
            if overlap > 0:
                covered += overlap
                total += slot.price * overlap
        if end_ms <= start_ms or covered != end_ms - start_ms:
            return None
        return total / covered

    def cheapest_window(
        self, duration_ms: int, earliest_ms: int, deadline_ms: int
    ) -> Window | None:
        """Where a load running ``duration_ms`` costs least, starting at ``earliest_ms`` or
        later and ending by ``deadline_ms``. Starts are ``earliest_ms`` and slot starts;
        ties go to the earliest. None when no such window lies within the forecast."""
        if duration_ms <= 0:
            raise ValueError("a window needs a positive duration")
        starts = [earliest_ms] + [
            slot.start_ms for slot in self.slots if slot.start_ms > earliest_ms
        ]
        best: Window | None = None
        for start in starts:
            end = start + duration_ms
            if end > deadline_ms:
                break
            price = self.mean_price(start, end)
            if price is not None and (best is None or price < best.price - 1e-9):
                best = Window(start, end, price)
        return best


def parse_price_forecast(answer: Mapping[str, Any]) -> PriceForecast:
    """The grid's answer as a :class:`PriceForecast`; a malformed answer is the grid's
    fault (:class:`GridUnavailableError`)."""
    slot_seconds = answer.get("slotSeconds")
    rows = answer.get("slots")
    if isinstance(slot_seconds, bool) or not isinstance(slot_seconds, int) or slot_seconds < 1:
        raise GridUnavailableError("the forecast has no slot length")
    if not isinstance(rows, Sequence) or isinstance(rows, str):
        raise GridUnavailableError("the forecast has no slots")
    slots: list[ForecastSlot] = []
    for row in rows:
        if not isinstance(row, Mapping):
            raise GridUnavailableError("a forecast slot is not an object")
        slot = ForecastSlot(
            start_ms=_whole(row, "startTime"),
            end_ms=_whole(row, "endTime"),
            price=_number(row, "price"),
            local_price=None if row.get("localPrice") is None else _number(row, "localPrice"),
            demand_kwh=_number(row, "demandKwh"),
            supply_kwh=_number(row, "supplyKwh"),
            announced_kwh=_number(row, "announcedKwh"),
        )
        if slot.end_ms <= slot.start_ms or (slots and slot.start_ms < slots[-1].end_ms):
            raise GridUnavailableError("the forecast's slots are not in order")
        slots.append(slot)
    return PriceForecast(slot_seconds, tuple(slots))


def _number(row: Mapping[str, Any], key: str) -> float:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GridUnavailableError(f"the forecast's '{key}' is not a number")
    if value < 0:
        raise GridUnavailableError(f"the forecast's '{key}' is negative")
    return float(value)


def _whole(row: Mapping[str, Any], key: str) -> int:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise GridUnavailableError(f"the forecast's '{key}' is not a time")
    return value
