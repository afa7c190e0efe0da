"""Exact integer units of the grid.

* energy: milliwatt-hours (mWh), 1 kWh = 1,000,000 mWh;
* prices: micro-IOTA per kWh, 1 IOTA/kWh = 1,000,000;
* money: whole IOTA (the smallest unit the Tangle moves);
* rates: parts per million (ppm), 1 % = 10,000 ppm.

Payloads carry kWh and IOTA/kWh as JSON numbers; they are converted once, through
their shortest decimal representation, so 1.234 kWh is exactly 1,234,000 mWh.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Final

MILLIWH_PER_KWH: Final = 1_000_000
MICRO_PER_IOTA: Final = 1_000_000
PPM: Final = 1_000_000


def _scaled(value: float, scale: int) -> int:
    return int((Decimal(repr(float(value))) * scale).to_integral_value(ROUND_HALF_EVEN))


def kwh_to_milliwh(kwh: float) -> int:
    """kWh as a whole number of mWh (half-even rounding below one mWh)."""
    return _scaled(kwh, MILLIWH_PER_KWH)


def milliwh_to_kwh(milliwh: int) -> float:
    return milliwh / MILLIWH_PER_KWH


def price_to_micro(iota_per_kwh: float) -> int:
    """IOTA per kWh as micro-IOTA per kWh."""
    return _scaled(iota_per_kwh, MICRO_PER_IOTA)


def micro_to_price(micro: int) -> float:
    return micro / MICRO_PER_IOTA


def percent_to_ppm(percent: float) -> int:
    return _scaled(percent, PPM // 100)


def energy_value(milliwh: int, price_micro: int) -> Fraction:
    """The exact value in IOTA of ``milliwh`` at ``price_micro`` micro-IOTA per kWh."""
    return Fraction(milliwh * price_micro, MILLIWH_PER_KWH * MICRO_PER_IOTA)


def round_iota(amount: Fraction) -> int:
    """Round an exact amount to whole IOTA, half to even (no drift either way)."""
    return round(amount)
