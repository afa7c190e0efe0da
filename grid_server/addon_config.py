"""The Home Assistant add-on's glue: options → configuration, service start, discovery, backup.

The add-on's service scripts call this module so that everything they decide can be
tested outside Docker::

    python -m grid_server.addon_config render      # /data/options.json -> /data/p2p-energy.json
    python -m grid_server.addon_config run node    # exec the node with that configuration
    python -m grid_server.addon_config run grid    # exec the grid (after the node answers)
    python -m grid_server.addon_config discover    # announce the grid to Supervisor discovery
    python -m grid_server.addon_config checkpoint  # fold SQLite WAL files before a hot backup

Paths and endpoints come from the environment so tests can point them elsewhere:
``P2P_ADDON_DATA`` (default ``/data``), ``P2P_ADDON_OPTIONS`` (``$P2P_ADDON_DATA/options.json``),
``SUPERVISOR_URL`` (``http://supervisor``), ``SUPERVISOR_TOKEN`` (set by the Supervisor),
``P2P_ADDON_INGRESS_ADDRESSES`` (the Supervisor's ingress gateway), ``P2P_ADDON_GRID_PORT``
and ``P2P_ADDON_NODE_PORT`` (8080 and 14265, the ports ``config.yaml`` maps).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import re
import socket
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, get_args

import aiohttp
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.trinary import random_trytes

from .config_loading import ConfigError
from .grid.config import GridConfig, StatementPeriod, config_from_mapping
from .grid.currency import CurrencyError, check_currency, parse_rate
from .grid.settlement.pricing import DEFAULT_STRATEGY, STRATEGY_NAMES
from .node.config import check_secret, default_database_url, normalize_neighbor_url
from .node.config import config_from_mapping as node_config_from_mapping
from .portal.auth import PasswordError, hash_password
from .portal.config import (
    SUPERVISOR_INGRESS_ADDRESS,
    PortalConfigError,
    load_portal_config,
    unsafe_ingress_address,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from contextlib import AbstractAsyncContextManager

_LOGGER = logging.getLogger(__name__)

DOMAIN: Final = "p2p_energy"
CONFIG_FILE: Final = "p2p-energy.json"
WALLET_SEED_FILE: Final = "wallet-seed"
GRID_PORT: Final = 8080
NODE_PORT: Final = 14265
_SEED_PATTERN: Final = re.compile(r"[9A-Z]{81}")
_LOG_LEVELS: Final = ("debug", "info", "warning", "error")
Service = Literal["node", "grid"]


class AddonConfigError(ValueError):
    """The add-on's options cannot run a grid; the message names the option."""


@dataclass(frozen=True)
class AddonOptions:
    """The add-on options of ``config.yaml``, validated."""

    slot_seconds: int = 900
    pricing_strategy: str = DEFAULT_STRATEGY
    import_price: float = 100.0
    export_price: float = 20.0
    grid_cut_percent: float = 10.0
    community_price: float | None = None
    # "consumer-id=share" and "consumer-id=producer-id,producer-id" entries.
    allocation_shares: tuple[tuple[str, int], ...] = ()
    preferences: tuple[tuple[str, tuple[str, ...]], ...] = ()
    currency: str | None = None
    currency_per_million_iota: float | None = None
    statement_period: StatementPeriod = "month"
    statement_timezone: str | None = None
    # IOTA charged on each consumer's final statement and collected with its next
    # payment request.
    statement_fee: int = 0
    wallet_seed: str | None = None
    wallet_genesis_balance: int = 1_000_000_000
    neighbors: tuple[str, ...] = ()
    # None: the node creates its peering secret and shows it once in the log.
    node_peering_secret: str | None = None
    # None: the node's admin commands answer only callers inside the add-on.
    node_api_token: str | None = None
    database_url: str | None = None
    portal_password: str | None = None
    min_weight_magnitude: int = 9
    local_pow_workers: int = 1
    milestone_interval: float = 10.0
    log_level: str = "info"


def _number(data: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AddonConfigError(f"option {name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise AddonConfigError(f"option {name} must be between {low:g} and {high:g}, got {value}")
    return float(value)


def _integer(data: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value: object = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AddonConfigError(f"option {name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise AddonConfigError(f"option {name} must be between {low} and {high}, got {value}")
    return value


def _optional_text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AddonConfigError(f"option {name} must be text")
    return value.strip() or None


def _secret_option(data: Mapping[str, Any], name: str) -> str | None:
    value = _optional_text(data, name)
    if value is None:
        return None
    try:
        return check_secret(value, f"option {name}")
    except ConfigError as err:
        raise AddonConfigError(str(err)) from err


def parse_options(data: Mapping[str, Any]) -> AddonOptions:
    """Validate the Supervisor's ``options.json`` (it checks the schema; we check meaning)."""
    known = set(AddonOptions.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        # Options removed in an update linger in options.json; they are harmless.
        _LOGGER.warning("ignoring unknown add-on option(s): %s", ", ".join(unknown))
    strategy = data.get("pricing_strategy", DEFAULT_STRATEGY)
    if strategy not in STRATEGY_NAMES:
        raise AddonConfigError(
            f"option pricing_strategy must be one of {', '.join(STRATEGY_NAMES)}"
        )
    log_level = data.get("log_level", "info")
    if log_level not in _LOG_LEVELS:
        raise AddonConfigError(f"option log_level must be one of {', '.join(_LOG_LEVELS)}")
    seed = _optional_text(data, "wallet_seed")
    if seed is not None and not _SEED_PATTERN.fullmatch(seed):
        raise AddonConfigError(
            "option wallet_seed must be 81 characters of 9 and A-Z (leave it empty to have "
            "the add-on create one)"
        )
    neighbors_raw = data.get("neighbors", [])
    if not isinstance(neighbors_raw, list) or not all(isinstance(n, str) for n in neighbors_raw):
        raise AddonConfigError("option neighbors must be a list of URLs")
    neighbors: list[str] = []
    for url in neighbors_raw:
        try:
            neighbors.append(normalize_neighbor_url(url))
        except ConfigError as err:
            raise AddonConfigError(f"option neighbors: {err}") from err
    peering_secret = _secret_option(data, "node_peering_secret")
    api_token = _secret_option(data, "node_api_token")
    database_url = _optional_text(data, "database_url")
    if database_url is not None and not database_url.startswith(
        ("postgresql://", "postgresql+psycopg://")
    ):
        raise AddonConfigError(
            "option database_url must be a PostgreSQL URL such as "
            "postgresql://user:password@host:5432/grid (leave it empty for SQLite in /data)"
        )
    password = _optional_text(data, "portal_password")
    currency, rate = _currency_options(data)
    period = data.get("statement_period", "month")
    if period not in get_args(StatementPeriod):
        raise AddonConfigError(
            f"option statement_period must be one of {', '.join(get_args(StatementPeriod))}"
        )
    import_price = _number(data, "import_price", 100.0, 0, 1e9)
    export_price = _number(data, "export_price", 20.0, 0, 1e9)
    if export_price > import_price:
        raise AddonConfigError("option export_price (feed-in) must not exceed import_price")
    community_price = (
        None
        if data.get("community_price") is None
        else _number(data, "community_price", 0.0, export_price, import_price)
    )
    shares, preferences = _market_options(data)
    return AddonOptions(
        slot_seconds=_integer(data, "slot_seconds", 900, 10, 86_400),
        pricing_strategy=str(strategy),
        import_price=import_price,
        export_price=export_price,
        grid_cut_percent=_number(data, "grid_cut_percent", 10.0, 0, 100),
        community_price=community_price,
        allocation_shares=shares,
        preferences=preferences,
        currency=currency,
        currency_per_million_iota=rate,
        statement_period=period,
        statement_timezone=_optional_text(data, "statement_timezone"),
        statement_fee=_integer(data, "statement_fee", 0, 0, (3**33 - 1) // 2),
        wallet_seed=seed,
        wallet_genesis_balance=_integer(
            data, "wallet_genesis_balance", 1_000_000_000, 0, (3**33 - 1) // 2
        ),
        neighbors=tuple(neighbors),
        node_peering_secret=peering_secret,
        node_api_token=api_token,
        database_url=database_url,
        portal_password=password,
        min_weight_magnitude=_integer(data, "min_weight_magnitude", 9, 1, 14),
        local_pow_workers=_integer(data, "local_pow_workers", 1, 0, 16),
        milestone_interval=_number(data, "milestone_interval", 10.0, 1, 3600),
        log_level=str(log_level),
    )


def _entries(data: Mapping[str, Any], name: str) -> list[tuple[str, str]]:
    """A list option of ``registration-id=value`` texts as (id, value) pairs."""
    raw = data.get(name, [])
    if not isinstance(raw, list) or not all(isinstance(entry, str) for entry in raw):
        raise AddonConfigError(f"option {name} must be a list of registration-id=value entries")
    pairs: list[tuple[str, str]] = []
    for entry in raw:
        key, sign, value = entry.partition("=")
        if not sign or not key.strip() or not value.strip():
            raise AddonConfigError(f"option {name}: {entry!r} is not registration-id=value")
        pairs.append((key.strip(), value.strip()))
    return pairs


def _market_options(
    data: Mapping[str, Any],
) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, tuple[str, ...]], ...]]:
    """The allocation shares and the preferences (see the grid's configuration)."""
    shares: dict[str, int] = {}
    for consumer, share in _entries(data, "allocation_shares"):
        if not share.isdigit():
            raise AddonConfigError(
                f"option allocation_shares: the share of {consumer} must be a whole number"
            )
        shares[consumer] = int(share)
    preferences = {
        consumer: tuple(p.strip() for p in producers.split(",") if p.strip())
        for consumer, producers in _entries(data, "preferences")
    }
    return tuple(sorted(shares.items())), tuple(sorted(preferences.items()))


def _currency_options(data: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """The currency code and rate: both or neither (the Supervisor checks only types)."""
    currency = _optional_text(data, "currency")
    rate = data.get("currency_per_million_iota")
    if (currency is None) != (rate is None):
        raise AddonConfigError(
            "options currency and currency_per_million_iota are set together (e.g. EUR and "
            "0.25) or both left empty"
        )
    if currency is None or rate is None:
        return None, None
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise AddonConfigError(f"option currency_per_million_iota must be a number, got {rate!r}")
    try:
        parse_rate(rate)
        return check_currency(currency.upper()), float(rate)
    except CurrencyError as err:
        name = "currency_per_million_iota" if "rate" in str(err) else "currency"
        raise AddonConfigError(f"option {name}: {err}") from err


def _read_json_object(path: Path, *, name: str, if_missing: str) -> dict[str, Any]:
    """The JSON object in ``path`` (called ``name`` in errors); ``if_missing`` says what to do."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise AddonConfigError(f"{path} {if_missing}") from err
    except (OSError, ValueError) as err:
        raise AddonConfigError(f"cannot read {name}: {err}") from err
    if not isinstance(document, dict):
        raise AddonConfigError(f"{path} must hold a JSON object")
    return document


def read_options(path: Path) -> AddonOptions:
    return parse_options(
        _read_json_object(
            path,
            name=f"the add-on options {path}",
            if_missing="does not exist (is this running as an add-on?)",
        )
    )


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically with mode 0600 (the file may hold seeds and hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def wallet_seed(options: AddonOptions, data_dir: Path) -> str:
    """The configured wallet seed, else one created once and kept in ``data_dir``."""
    if options.wallet_seed is not None:
        return options.wallet_seed
    path = data_dir / WALLET_SEED_FILE
    if path.exists():
        stored = path.read_text(encoding="ascii").strip()
        if not _SEED_PATTERN.fullmatch(stored):
            raise AddonConfigError(f"{path} does not hold an 81-tryte seed")
        return stored
    seed = random_trytes()
    _write_private(path, seed + "\n")
    _LOGGER.info("created a wallet seed for the grid in %s", path)
    return seed


def render_config(
    options: AddonOptions,
    data_dir: Path,
    *,
    seed: str,
    ingress_addresses: Sequence[str] = (SUPERVISOR_INGRESS_ADDRESS,),
    grid_port: int = GRID_PORT,
    node_port: int = NODE_PORT,
) -> dict[str, Any]:
    """The grid's configuration document (``[grid]``, ``[node]``, ``[portal]`` tables)."""
    grid: dict[str, Any] = {
        "host": "0.0.0.0",
        "port": grid_port,
        "data_dir": str(data_dir),
        "node_url": f"http://127.0.0.1:{node_port}",
        "slot_seconds": options.slot_seconds,
        "pricing_strategy": options.pricing_strategy,
        "import_price": options.import_price,
        "export_price": options.export_price,
        "grid_cut_percent": options.grid_cut_percent,
        "statement_period": options.statement_period,
        "statement_fee": options.statement_fee,
        "wallet_seed": seed,
        "wallet_genesis_balance": options.wallet_genesis_balance,
        "min_weight_magnitude": options.min_weight_magnitude,
        "local_pow_workers": options.local_pow_workers,
        "log_level": options.log_level.upper(),
        "log_format": "text",
    }
    if options.community_price is not None:
        grid["community_price"] = options.community_price
    if options.allocation_shares:
        grid["allocation_shares"] = dict(options.allocation_shares)
    if options.preferences:
        grid["preferences"] = {c: list(p) for c, p in options.preferences}
    if options.database_url is not None:
        grid["database"] = options.database_url
    if options.currency is not None:
        grid["currency"] = options.currency
        grid["currency_per_million_iota"] = options.currency_per_million_iota
    if options.statement_timezone is not None:
        grid["statement_timezone"] = options.statement_timezone
    node: dict[str, Any] = {
        "host": "0.0.0.0",
        "port": node_port,
        "database": default_database_url(data_dir),
        "min_weight_magnitude": options.min_weight_magnitude,
        "neighbors": list(options.neighbors),
        "coordinator": {"interval": options.milestone_interval},
    }
    if options.node_peering_secret is not None:
        node["peering"] = {"secret": options.node_peering_secret}
    if options.node_api_token is not None:
        node["api_token"] = options.node_api_token
    if options.wallet_genesis_balance > 0:
        security = GridConfig().wallet_security
        node["genesis"] = {generate_address(seed, 0, security): options.wallet_genesis_balance}
    portal: dict[str, Any] = {"trusted_ingress_addresses": list(ingress_addresses)}
    if any(_unsafe_ingress(address) for address in ingress_addresses):
        # Only P2P_ADDON_INGRESS_ADDRESSES (tests, development) names such an address;
        # that explicit choice forces it, and the grid warns at every start.
        portal["allow_unsafe_ingress_addresses"] = True
    if options.portal_password is not None:
        try:
            portal["password_hash"] = hash_password(options.portal_password)
        except PasswordError as err:
            raise AddonConfigError(f"option portal_password: {err}") from err
    document = {"grid": grid, "node": node, "portal": portal}
    check_document(document)
    return document


def _unsafe_ingress(address: str) -> bool:
    try:
        return unsafe_ingress_address(ipaddress.ip_address(address))
    except ValueError:
        return False  # check_document names the address that is not one


def check_document(document: Mapping[str, Any]) -> None:
    """Load every table the way the services will, so a bad value fails here, clearly."""
    try:
        config_from_mapping(document["grid"])
        node_config_from_mapping(document["node"])
        load_portal_config(document, environ={})
    except (ConfigError, PortalConfigError) as err:
        raise AddonConfigError(f"the rendered configuration is invalid: {err}") from err


def render(
    options_path: Path,
    data_dir: Path,
    ingress_addresses: Sequence[str],
    *,
    grid_port: int = GRID_PORT,
    node_port: int = NODE_PORT,
) -> Path:
    """Render ``options_path`` into ``data_dir/p2p-energy.json`` (mode 0600) and return it."""
    options = read_options(options_path)
    document = render_config(
        options,
        data_dir,
        seed=wallet_seed(options, data_dir),
        ingress_addresses=ingress_addresses,
        grid_port=grid_port,
        node_port=node_port,
    )
    target = data_dir / CONFIG_FILE
    _write_private(target, json.dumps(document, indent=2, sort_keys=True) + "\n")
    return target


def read_document(data_dir: Path) -> dict[str, Any]:
    path = data_dir / CONFIG_FILE
    return _read_json_object(
        path, name=str(path), if_missing="is missing: run the render step first"
    )


def service_command(service: Service, data_dir: Path) -> list[str]:
    """The command line that runs ``service`` with the rendered configuration."""
    document = read_document(data_dir)
    config_path = str(data_dir / CONFIG_FILE)
    command = [sys.executable, "-m", "grid_server.cli", service, "--config", config_path]
    if service == "node":
        level = str(document.get("grid", {}).get("log_level", "INFO"))
        command += ["--log-level", level]
    return command


async def _wait_for_ok(
    request: Callable[[aiohttp.ClientSession], AbstractAsyncContextManager[aiohttp.ClientResponse]],
    timeout: float,
) -> bool:
    """Repeat ``request`` until it answers 200 (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                async with request(session) as response:
                    if response.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.5)


async def wait_for_node(url: str, timeout: float) -> bool:
    """Wait until the node at ``url`` answers getNodeInfo; False after ``timeout`` seconds."""
    body = {"command": "getNodeInfo"}
    headers = {"X-IOTA-API-Version": "1"}
    return await _wait_for_ok(
        lambda session: session.post(url, json=body, headers=headers), timeout
    )


async def wait_for_health(url: str, timeout: float) -> bool:
    """Wait until ``url`` (the grid's /health) answers 200; False after ``timeout`` seconds."""
    return await _wait_for_ok(lambda session: session.get(url), timeout)


class DiscoveryError(RuntimeError):
    """The Supervisor refused or could not be reached for the discovery announcement."""


async def announce(
    session: aiohttp.ClientSession,
    supervisor_url: str,
    token: str,
    *,
    grid_port: int = GRID_PORT,
    node_port: int = NODE_PORT,
    attempts: int = 5,
    retry_delay: float = 2.0,
) -> str:
    """POST the grid's address to Supervisor discovery; returns the discovery UUID.

    The host is the add-on's name on the Supervisor network (from ``/addons/self/info``),
    which Home Assistant reaches without any port mapping.
    """
    headers = {"Authorization": f"Bearer {token}"}
    host = await _addon_hostname(session, supervisor_url, headers)
    config = {
        "host": host,
        "port": grid_port,
        "node_port": node_port,
        "grid_url": f"http://{host}:{grid_port}",
        "node_url": f"http://{host}:{node_port}",
    }
    last_error = "no attempt made"
    for attempt in range(1, attempts + 1):
        try:
            async with session.post(
                f"{supervisor_url}/discovery",
                json={"service": DOMAIN, "config": config},
                headers=headers,
            ) as response:
                body = await response.json(content_type=None)
                if response.status == 200 and isinstance(body, dict):
                    data = body.get("data")
                    if body.get("result") == "ok" and isinstance(data, dict) and "uuid" in data:
                        return str(data["uuid"])
                last_error = f"HTTP {response.status}: {body!r}"
                if response.status in (401, 403):
                    break
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            last_error = f"{type(err).__name__}: {err}"
        _LOGGER.warning("discovery attempt %d failed: %s", attempt, last_error)
        if attempt < attempts:
            await asyncio.sleep(retry_delay * attempt)
    raise DiscoveryError(f"the Supervisor did not accept the discovery: {last_error}")


async def _addon_hostname(
    session: aiohttp.ClientSession, supervisor_url: str, headers: Mapping[str, str]
) -> str:
    try:
        async with session.get(f"{supervisor_url}/addons/self/info", headers=headers) as response:
            body = await response.json(content_type=None)
            if response.status == 200 and isinstance(body, dict):
                data = body.get("data")
                if isinstance(data, dict) and isinstance(data.get("hostname"), str):
                    return str(data["hostname"])
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        _LOGGER.warning("cannot ask the Supervisor for the add-on's hostname: %s", err)
    return socket.gethostname()


def checkpoint_databases(data_dir: Path) -> list[Path]:
    """Fold every SQLite WAL in ``data_dir`` into its database so a hot backup is consistent."""
    done: list[Path] = []
    for path in sorted(data_dir.glob("*.sqlite3")):
        connection = sqlite3.connect(path, timeout=30)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
        done.append(path)
    return done


def _ingress_addresses() -> tuple[str, ...]:
    raw = os.environ.get("P2P_ADDON_INGRESS_ADDRESSES", SUPERVISOR_INGRESS_ADDRESS)
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _port(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "")
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65_535:
        raise AddonConfigError(f"{variable} must be a TCP port, got {raw!r}")
    return int(raw)


def _data_dir() -> Path:
    return Path(os.environ.get("P2P_ADDON_DATA", "/data"))


def _run_service(service: Service, data_dir: Path, node_wait: float) -> int:
    command = service_command(service, data_dir)
    if service == "grid":
        node_url = str(read_document(data_dir)["grid"]["node_url"])
        if not asyncio.run(wait_for_node(node_url, node_wait)):
            print(f"p2p-energy add-on: the node at {node_url} did not answer", file=sys.stderr)
            return 1
    return _exec(command)


def _exec(command: list[str]) -> NoReturn:
    """Replace this process with ``command`` (s6 then supervises the service itself)."""
    sys.stdout.flush()
    os.execv(command[0], command)


async def _discover(data_dir: Path, health_wait: float) -> int:
    token = os.environ.get("SUPERVISOR_TOKEN", "")
    if not token:
        print("p2p-energy add-on: no SUPERVISOR_TOKEN, skipping discovery", file=sys.stderr)
        return 0
    document = read_document(data_dir)
    grid_port = int(document["grid"]["port"])
    node_port = int(document["node"]["port"])
    if not await wait_for_health(f"http://127.0.0.1:{grid_port}/health", health_wait):
        print("p2p-energy add-on: the grid did not become healthy", file=sys.stderr)
        return 1
    supervisor_url = os.environ.get("SUPERVISOR_URL", "http://supervisor").rstrip("/")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        try:
            uuid = await announce(
                session, supervisor_url, token, grid_port=grid_port, node_port=node_port
            )
        except DiscoveryError as err:
            print(f"p2p-energy add-on: {err}", file=sys.stderr)
            return 1
    print(f"p2p-energy add-on: announced to Home Assistant (discovery {uuid})", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grid_server.addon_config", description="P2P Energy Grid add-on steps"
    )
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("render", help="render /data/options.json into the grid's configuration")
    run = sub.add_parser("run", help="exec a service with the rendered configuration")
    run.add_argument("service", choices=("node", "grid"))
    run.add_argument("--node-wait", type=float, default=120.0)
    discover = sub.add_parser("discover", help="announce the grid to Supervisor discovery")
    discover.add_argument("--health-wait", type=float, default=300.0)
    sub.add_parser("checkpoint", help="checkpoint the SQLite databases before a backup")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data_dir = _data_dir()
    try:
        if args.step == "render":
            options_path = Path(os.environ.get("P2P_ADDON_OPTIONS", data_dir / "options.json"))
            target = render(
                options_path,
                data_dir,
                _ingress_addresses(),
                grid_port=_port("P2P_ADDON_GRID_PORT", GRID_PORT),
                node_port=_port("P2P_ADDON_NODE_PORT", NODE_PORT),
            )
            print(f"p2p-energy add-on: configuration written to {target}", flush=True)
            return 0
        if args.step == "run":
            return _run_service(args.service, data_dir, args.node_wait)
        if args.step == "discover":
            return asyncio.run(_discover(data_dir, args.health_wait))
        for path in checkpoint_databases(data_dir):
            print(f"p2p-energy add-on: checkpointed {path}", flush=True)
        return 0
    except AddonConfigError as err:
        print(f"p2p-energy add-on: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
