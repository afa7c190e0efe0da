"""The value of the community's IOTA in a currency: a fixed rate the operator sets.

The rate is a decimal (currency units per 1,000,000 IOTA) and every conversion is
exact :class:`~decimal.Decimal` arithmetic, rounded once at the end, never a float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Final

IOTA_PER_RATE_UNIT: Final = 1_000_000
# Active ISO 4217 codes (the ones Home Assistant accepts as its configured currency).
ISO_4217_CODES: Final = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD
    BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN
    ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD
    IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD
    MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB
    PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS
    SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED
    VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL
    """.split()  # noqa: SIM905 (a compact table; a list literal would be 160 lines)
)
_CODE: Final = re.compile(r"[A-Z]{3}")
MAX_RATE: Final = Decimal("1e12")
_CENTS: Final = Decimal("0.01")
_PRICE_PLACES: Final = Decimal("0.000001")


class CurrencyError(ValueError):
    """A currency code or rate is not valid; the message says why."""


def check_currency(code: str) -> str:
    """code if it is an active ISO 4217 currency code (upper case, e.g. EUR)."""
    if not _CODE.fullmatch(code) or code not in ISO_4217_CODES:
        raise CurrencyError(f"{code!r} is not an ISO 4217 currency code such as EUR")
    return code


def parse_rate(value: Any) -> Decimal:
    """A positive decimal rate from a number or text (floats through their shortest text)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise CurrencyError(f"the rate must be a positive decimal number, got {value!r}")
    try:
        rate = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation as err:
        raise CurrencyError(f"the rate must be a positive decimal number, got {value!r}") from err
    if not rate.is_finite() or not Decimal(0) < rate <= MAX_RATE:
        raise CurrencyError(
            f"the rate must be a positive decimal up to {MAX_RATE:f}, got {value!r}"
        )
    return rate


@dataclass(frozen=True, slots=True)
class CurrencyRate:
    """per_million_iota units of currency buy 1,000,000 IOTA."""

    currency: str
    per_million_iota: Decimal

    def amount(self, iota: int) -> Decimal:
        """iota in the currency, rounded half-even to the cent."""
        return (Decimal(iota) * self.per_million_iota / IOTA_PER_RATE_UNIT).quantize(
            _CENTS, ROUND_HALF_EVEN
        )

    def price(self, micro_iota_per_kwh: int) -> Decimal:
        """A price in micro-IOTA per kWh as currency per kWh (six decimal places)."""
        exact = Decimal(micro_iota_per_kwh) * self.per_million_iota / IOTA_PER_RATE_UNIT**2
        return exact.quantize(_PRICE_PLACES, ROUND_HALF_EVEN)

    def to_json(self) -> dict[str, str]:
        """The published form: the code and the rate as decimal text (exact for any reader)."""
        return {"currency": self.currency, "currencyPerMillionIota": f"{self.per_million_iota:f}"}
