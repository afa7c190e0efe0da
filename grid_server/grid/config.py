"""Grid configuration: defaults, a TOML/JSON file (``[grid]`` table), environment, flags.

Later sources override earlier ones in that order. Every setting can come from
the environment as ``P2P_ENERGY_GRID_<NAME>`` (for example
``P2P_ENERGY_GRID_WALLET_SEED``), so secrets stay out of configuration files.
The same file may hold a ``[node]`` table for the node the grid starts in-process.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..config_loading import (
    ConfigError,
    check_seconds,
    config_section,
    default_data_dir,
    load_layers,
    read_config_document,
    reject_unknown,
)
from .currency import CurrencyError, CurrencyRate, check_currency, parse_rate
from .settlement.mechanisms import MarketParameters
from .settlement.pricing import (
    DEFAULT_STRATEGY,
    STRATEGY_NAMES,
    PricingError,
    PricingStrategyName,
    Tariff,
    check_strategy,
)
from .units import percent_to_ppm, price_to_micro

if TYPE_CHECKING:
    from collections.abc import Mapping

ENV_PREFIX: Final = "P2P_ENERGY_GRID_"
_SEED_PATTERN: Final = re.compile(r"[9A-Z]{81}")

StorageAuth = Literal["token", "none"]
LogFormat = Literal["json", "text"]
StatementPeriod = Literal["month", "quarter", "year"]


# Settings checked by their bounds alone (inclusive); the error names the setting.
_RANGES: Final[dict[str, tuple[float, float]]] = {
    "slot_seconds": (1, 86_400),
    "grid_cut_percent": (0, 100),
    "hello_search_limit": (1, 100),
    "min_weight_magnitude": (1, 81),
    "depth": (1, 15),
    "payout_batch_size": (1, 100),
    "payout_bundles_in_flight": (1, 64),
    "max_item_bytes": (1, 10_000_000),
    "max_page_size": (1, 10_000),
}
_NON_NEGATIVE: Final = (
    "settlement_delay_seconds",
    "statement_fee",
    "max_future_seconds",
    "database_wait",
    "wallet_genesis_balance",
    "registrations_per_minute",
    "registration_quota",
)
_POSITIVE: Final = (
    "follow_interval",
    "publish_interval",
    "payments_interval",
    "payout_interval",
    "lease_seconds",
    "reattach_seconds",
    "payment_unconfirmable_seconds",
    "payment_pending_expiry",
    "shutdown_timeout",
    "node_timeout",
    "max_reading_kwh",
    "max_price",
    "max_items_per_registration",
    "registration_burst",
)


@dataclass(frozen=True)
class GridConfig:
    """Everything the grid server needs to run. Prices are IOTA per kWh."""

    host: str = "127.0.0.1"
    port: int = 8080
    # None: an SQLite file in the data folder.
    database: str | None = None
    # None: start a node in-process (configured by the file's [node] table).
    node_url: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)

    # Settlement.
    slot_seconds: int = 900
    settlement_delay_seconds: float = 60.0
    pricing_strategy: PricingStrategyName = DEFAULT_STRATEGY
    import_price: float = 100.0
    export_price: float = 20.0
    grid_cut_percent: float = 10.0
    # The mechanisms' settings (see docs/mechanisms.md): the allocation keys' fixed price
    # (IOTA per kWh; None: midway between import and export price), the static key's
    # shares per consumer registration id, and pay-as-bid's preferred producers per
    # consumer. A file gives them as tables, the environment as JSON objects.
    community_price: float | None = None
    allocation_shares: tuple[tuple[str, int], ...] = ()
    preferences: tuple[tuple[str, tuple[str, ...]], ...] = ()

    # The community's IOTA in a currency (ISO 4217): currency_per_million_iota units buy
    # 1,000,000 IOTA. Both or neither; without them amounts are in IOTA only.
    currency: str | None = None
    currency_per_million_iota: Decimal | None = None

    # Statements: one per participant and period, months (etc.) in this time zone; a
    # fixed fee in IOTA is charged on each consumer's statement.
    statement_period: StatementPeriod = "month"
    statement_timezone: str = "UTC"
    statement_fee: int = 0

    # Background work (seconds between rounds).
    follow_interval: float = 10.0
    publish_interval: float = 2.0
    payments_interval: float = 15.0
    payout_interval: float = 10.0
    lease_seconds: float = 30.0

    # Channel following and validation of what is read.
    hello_search_limit: int = 5
    max_reading_kwh: float = 1000.0
    max_price: float = 1e9
    max_future_seconds: int = 3600

    # Tangle and wallet.
    min_weight_magnitude: int = 9
    depth: int = 3
    wallet_seed: str | None = None
    wallet_security: int = 2
    # Genesis balance of the wallet's first address on an in-process node with no genesis.
    wallet_genesis_balance: int = 1_000_000_000
    # Payouts per value bundle at most (a bundle also stays within 100 transactions),
    # and bundles sent but not yet confirmed at most: 2,000 producers in one round.
    payout_batch_size: int = 90
    payout_bundles_in_flight: int = 24
    reattach_seconds: float = 120.0
    # Only confirmed consumer payments reduce what is owed. A pending payment the node
    # says cannot confirm (spends beyond its inputs, conflicts with a confirmed spend)
    # is dropped once it stayed so this long, and any pending payment after the expiry.
    payment_unconfirmable_seconds: float = 300.0
    payment_pending_expiry: float = 3600.0
    # Worker processes doing the proof of work of the grid's own bundles (payment
    # requests, payouts); 0: the node's attachToTangle does it (remote proof of work).
    local_pow_workers: int = 1

    # Storage API.
    storage_auth: StorageAuth = "token"
    max_item_bytes: int = 65_536
    max_page_size: int = 100
    max_items_per_registration: int = 10_000

    # Registrations: each one costs a hello search and, for a consumer, a return channel.
    # New registrations (and channel changes) from one client address: a burst, then a
    # steady rate (0: no limit per address). At most registration_quota active
    # registrations in the grid (0: no quota).
    registration_burst: int = 200
    registrations_per_minute: float = 30.0
    registration_quota: int = 100_000

    # Operations.
    log_format: LogFormat = "json"
    log_level: str = "INFO"
    shutdown_timeout: float = 30.0
    node_timeout: float = 30.0
    # How long to wait at start for a database server that is not up yet (0: fail at once).
    database_wait: float = 60.0
    # HTTP connections: closed after so long without a request; a request must arrive
    # (headers) and its body keep arriving within http_request_timeout.
    http_idle_timeout: float = 75.0
    http_request_timeout: float = 30.0

    def __post_init__(self) -> None:
        _check_type(self)
        if not self.host:
            raise ConfigError("host must not be empty")
        if not 0 <= self.port <= 65_535:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        if self.node_url is not None and not re.fullmatch(r"https?://[^\s/]+/?", self.node_url):
            raise ConfigError(f"node_url must look like http://host:port, got {self.node_url!r}")
        for name, (low, high) in _RANGES.items():
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name} must be between {low} and {high}")
        for name in _NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        for name in ("import_price", "export_price"):
            value = getattr(self, name)
            if not 0 <= value <= self.max_price:
                raise ConfigError(f"{name} must be between 0 and max_price ({self.max_price})")
        if self.export_price > self.import_price:
            raise ConfigError("export_price (feed-in) must not exceed import_price (retail)")
        _check_currency(self.currency, self.currency_per_million_iota)
        try:
            ZoneInfo(self.statement_timezone)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ConfigError(
                f"statement_timezone must be an IANA time zone such as Europe/Vienna, "
                f"got {self.statement_timezone!r}"
            ) from err
        if self.community_price is not None and not 0 <= self.community_price <= self.max_price:
            raise ConfigError(f"community_price must be between 0 and max_price ({self.max_price})")
        try:
            check_strategy(self.pricing_strategy, self.tariff, self.market_parameters)
        except PricingError as err:
            raise ConfigError(f"pricing_strategy: {err}") from err
        for name in _POSITIVE:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")
        for name in ("http_idle_timeout", "http_request_timeout"):
            check_seconds(name, getattr(self, name), 0.1, 3_600)
        if not 0 <= self.local_pow_workers <= 64:
            raise ConfigError(
                "local_pow_workers must be between 0 (proof of work on the node) and 64"
            )
        if self.wallet_seed is not None and not _SEED_PATTERN.fullmatch(self.wallet_seed):
            raise ConfigError("wallet_seed must be 81 trytes (9 and A-Z)")
        if self.wallet_security not in (1, 2, 3):
            raise ConfigError("wallet_security must be 1, 2 or 3")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"log_level {self.log_level!r} is not a logging level")

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the database (default: SQLite in the data folder)."""
        if self.database is not None:
            return self.database
        return f"sqlite:///{self.data_dir / 'grid.sqlite3'}"

    @property
    def tariff(self) -> Tariff:
        """The import and export prices and the grid's cut in the settlement's units."""
        return Tariff(
            import_price_micro=price_to_micro(self.import_price),
            export_price_micro=price_to_micro(self.export_price),
            grid_cut_ppm=percent_to_ppm(self.grid_cut_percent),
        )

    @property
    def market_parameters(self) -> MarketParameters:
        """The mechanisms' settings in the settlement's units."""
        return MarketParameters(
            community_price_micro=None
            if self.community_price is None
            else price_to_micro(self.community_price),
            shares=self.allocation_shares,
            preferences=self.preferences,
        )

    @property
    def slot_ms(self) -> int:
        return self.slot_seconds * 1000

    @property
    def currency_rate(self) -> CurrencyRate | None:
        """The configured value of IOTA in a currency, or None without one."""
        if self.currency is None or self.currency_per_million_iota is None:
            return None
        return CurrencyRate(self.currency, self.currency_per_million_iota)

    @property
    def statement_zone(self) -> ZoneInfo:
        return ZoneInfo(self.statement_timezone)


def _check_currency(currency: str | None, rate: Decimal | None) -> None:
    if (currency is None) != (rate is None):
        raise ConfigError("currency and currency_per_million_iota are set together or not at all")
    try:
        if currency is not None:
            check_currency(currency)
    except CurrencyError as err:
        raise ConfigError(f"currency: {err}") from err
    try:
        if rate is not None:
            parse_rate(rate)
    except CurrencyError as err:
        raise ConfigError(f"currency_per_million_iota: {err}") from err


_FIELDS: Final = {item.name: item for item in fields(GridConfig)}
_TYPES: Final[dict[str, Any]] = {
    "host": str,
    "port": int,
    "database": (str, type(None)),
    "node_url": (str, type(None)),
    "data_dir": Path,
    "wallet_seed": (str, type(None)),
    "log_level": str,
    "currency": (str, type(None)),
    "currency_per_million_iota": (Decimal, type(None)),
    "statement_timezone": str,
    "community_price": (float, int, type(None)),
    "allocation_shares": tuple,
    "preferences": tuple,
}


_LITERALS: Final[dict[str, tuple[str, ...]]] = {
    "pricing_strategy": STRATEGY_NAMES,
    "storage_auth": get_args(StorageAuth),
    "log_format": get_args(LogFormat),
    "statement_period": get_args(StatementPeriod),
}


def _check_type(config: GridConfig) -> None:
    for name in _FIELDS:
        value = getattr(config, name)
        if name in _LITERALS:
            if value not in _LITERALS[name]:
                options = ", ".join(_LITERALS[name])
                raise ConfigError(f"{name} must be one of {options}, got {value!r}")
            continue
        if name in _TYPES:
            expected = _TYPES[name]
            allowed = expected if isinstance(expected, tuple) else (expected,)
        elif name in _INT_FIELDS:
            allowed = (int,)
        else:
            allowed = (float, int)
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise ConfigError(f"{name} has the wrong type: {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} must be finite")


_INT_FIELDS: Final = frozenset(
    {
        "port",
        "slot_seconds",
        "hello_search_limit",
        "max_future_seconds",
        "min_weight_magnitude",
        "depth",
        "local_pow_workers",
        "wallet_security",
        "wallet_genesis_balance",
        "payout_batch_size",
        "payout_bundles_in_flight",
        "max_item_bytes",
        "max_page_size",
        "max_items_per_registration",
        "registration_burst",
        "registration_quota",
        "statement_fee",
    }
)


def _market_table(name: str, value: Any, *, from_text: bool) -> Any:
    """A table of the mechanisms' settings as a sorted tuple of (registration id, value)."""
    if from_text:
        text = str(value).strip()
        try:
            value = json.loads(text) if text else {}
        except ValueError as err:
            raise ConfigError(f"{name} must be a JSON object: {err}") from err
    if isinstance(value, tuple):
        return value
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ConfigError(f"{name} must be a table of registration ids")
    entries: list[tuple[str, Any]] = []
    for key, item in value.items():
        if name == "allocation_shares":
            if isinstance(item, bool) or not isinstance(item, int) or item < 0:
                raise ConfigError(f"{name}: the share of {key!r} must be a whole number >= 0")
            entries.append((key, item))
        else:
            if not isinstance(item, list) or not all(isinstance(p, str) for p in item):
                raise ConfigError(f"{name}: {key!r} needs a list of producer registration ids")
            entries.append((key, tuple(item)))
    return tuple(sorted(entries))


def _coerce(name: str, value: Any, *, from_text: bool) -> Any:
    """Convert a file or environment value to the setting's type."""
    if name in ("allocation_shares", "preferences"):
        return _market_table(name, value, from_text=from_text)
    if name == "community_price":
        if value is None or (from_text and not str(value).strip()):
            return None
        if from_text:
            try:
                return float(str(value).strip())
            except ValueError as err:
                raise ConfigError(f"{name} must be a number, got {value!r}") from err
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if name == "data_dir":
        return Path(value) if isinstance(value, str) else value
    if name == "currency_per_million_iota":
        if value is None or (from_text and not str(value).strip()):
            return None
        try:
            return parse_rate(value)
        except CurrencyError as err:
            raise ConfigError(f"{name}: {err}") from err
    if name == "currency" and isinstance(value, str):
        return value.strip().upper() or None
    if not from_text:
        is_float_setting = name not in _INT_FIELDS and name not in _TYPES and name not in _LITERALS
        if is_float_setting and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    text = str(value).strip()
    if name in ("database", "node_url", "wallet_seed"):
        return text or None
    if name in _INT_FIELDS:
        try:
            return int(text)
        except ValueError as err:
            raise ConfigError(f"{name} must be an integer, got {text!r}") from err
    if name in _TYPES or name in _LITERALS:
        return text
    try:
        return float(text)
    except ValueError as err:
        raise ConfigError(f"{name} must be a number, got {text!r}") from err


def config_from_mapping(data: Mapping[str, Any], base: GridConfig | None = None) -> GridConfig:
    """Apply the ``[grid]`` table of a configuration file on top of ``base``."""
    reject_unknown(data, _FIELDS, "the grid configuration")
    changes = {name: _coerce(name, value, from_text=False) for name, value in data.items()}
    return replace(base if base is not None else GridConfig(), **changes)


def apply_environment(config: GridConfig, environ: Mapping[str, str] | None = None) -> GridConfig:
    """Override settings from ``P2P_ENERGY_GRID_<NAME>`` variables."""
    env = os.environ if environ is None else environ
    changes: dict[str, Any] = {}
    for name in _FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in env:
            changes[name] = _coerce(name, env[key], from_text=True)
    return replace(config, **changes) if changes else config


def grid_section(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``[grid]`` table of a configuration document (empty when absent)."""
    return config_section(document, "grid")


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> GridConfig:
    """Defaults, then the file's ``[grid]`` table, then the environment, then ``overrides``."""
    config = load_layers(
        GridConfig(),
        None if path is None else grid_section(read_config_document(path)),
        config_from_mapping,
        lambda config: apply_environment(config, environ),
    )
    if overrides:
        config = config_from_mapping(
            {name: value for name, value in overrides.items() if value is not None}, config
        )
    return config
