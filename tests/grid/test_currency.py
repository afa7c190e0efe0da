"""The operator's currency rate: configuration, validation and exact conversion."""

from __future__ import annotations

from decimal import Decimal

import pytest

from grid_server.config_loading import ConfigError
from grid_server.grid.config import GridConfig, apply_environment, config_from_mapping
from grid_server.grid.currency import CurrencyRate, parse_rate


def test_rate_from_file_and_environment_is_exact() -> None:
    config = config_from_mapping({"currency": "eur", "currency_per_million_iota": 0.1})
    assert config.currency_rate == CurrencyRate("EUR", Decimal("0.1"))
    config = apply_environment(
        GridConfig(),
        {
            "P2P_ENERGY_GRID_CURRENCY": "CHF",
            "P2P_ENERGY_GRID_CURRENCY_PER_MILLION_IOTA": "12.345678901234567890",
        },
    )
    assert config.currency_rate == CurrencyRate("CHF", Decimal("12.345678901234567890"))
    assert GridConfig().currency_rate is None
    # Empty environment values mean "no rate".
    env = {"P2P_ENERGY_GRID_CURRENCY": "", "P2P_ENERGY_GRID_CURRENCY_PER_MILLION_IOTA": ""}
    assert apply_environment(GridConfig(), env).currency_rate is None


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"currency": "EUR"}, "together"),
        ({"currency_per_million_iota": 1}, "together"),
        ({"currency": "XYZ", "currency_per_million_iota": 1}, "currency: 'XYZ'"),
        ({"currency": "EURO", "currency_per_million_iota": 1}, "currency:"),
        ({"currency": "EUR", "currency_per_million_iota": 0}, "currency_per_million_iota"),
        ({"currency": "EUR", "currency_per_million_iota": -0.5}, "currency_per_million_iota"),
        ({"currency": "EUR", "currency_per_million_iota": "NaN"}, "currency_per_million_iota"),
        ({"currency": "EUR", "currency_per_million_iota": "1e13"}, "currency_per_million_iota"),
        ({"currency": "EUR", "currency_per_million_iota": True}, "currency_per_million_iota"),
        ({"statement_period": "week"}, "statement_period"),
        ({"statement_timezone": "Europe/Nowhere"}, "statement_timezone"),
        ({"statement_timezone": "../etc/passwd"}, "statement_timezone"),
        ({"statement_fee": -1}, "statement_fee"),
        ({"statement_fee": 1.5}, "statement_fee"),
    ],
)
def test_bad_currency_and_statement_settings_name_the_setting(
    settings: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        config_from_mapping(settings)


def test_conversions_are_decimal_and_rounded_once() -> None:
    rate = CurrencyRate("EUR", parse_rate(0.25))
    assert rate.amount(4_000_000) == Decimal("1.00")
    assert rate.amount(20_000) == Decimal("0.00")  # half a cent rounds to even
    assert rate.amount(60_000) == Decimal("0.02")  # 1.5 cents rounds to even
    assert rate.amount(-4_000_000) == Decimal("-1.00")
    # 100 IOTA per kWh (100,000,000 micro-IOTA) at 0.25 per million IOTA.
    assert rate.price(100_000_000) == Decimal("0.000025")
    assert rate.to_json() == {"currency": "EUR", "currencyPerMillionIota": "0.25"}
    assert CurrencyRate("JPY", parse_rate("1e-7")).to_json()["currencyPerMillionIota"] == (
        "0.0000001"
    )
