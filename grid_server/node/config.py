"""Node configuration: defaults, a TOML or JSON file, environment variables and flags.

Later sources override earlier ones in that order. Secrets (the coordinator seed)
can come from the environment so that configuration files stay shareable.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Final

from ..config_loading import (
    ConfigError,
    check_seconds,
    config_section,
    default_data_dir,
    load_layers,
    read_config_document,
    reject_unknown,
)

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 14265
DEFAULT_MIN_WEIGHT_MAGNITUDE: Final = 9
COORDINATOR_SEED_ENV: Final = "P2P_ENERGY_NODE_COORDINATOR_SEED"
DATABASE_ENV: Final = "P2P_ENERGY_NODE_DATABASE"
PEERING_SECRET_ENV: Final = "P2P_ENERGY_NODE_PEERING_SECRET"
API_TOKEN_ENV: Final = "P2P_ENERGY_NODE_API_TOKEN"
# Commands only a loopback caller without a browser Origin, or one with the API token,
# may run (IRI's remote-limit-api): they change or reveal the node's configuration.
DEFAULT_ADMIN_COMMANDS: Final = (
    "addNeighbors",
    "removeNeighbors",
    "getNeighbors",
    "interruptAttachingToTangle",
)
# Shared secrets and tokens: printable ASCII without spaces, long enough not to be guessed.
_SECRET_PATTERN: Final = re.compile(r"[!-~]{24,256}")
_ORIGIN_PATTERN: Final = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+")
# IOTA's total supply; genesis balances can never exceed it.
MAX_SUPPLY: Final = (3**33 - 1) // 2
_HASH_PATTERN: Final = re.compile(r"[9A-Z]{81}")
_SEED_PATTERN: Final = re.compile(r"[9A-Z]{1,81}")


def default_database_url(data_dir: Path | None = None) -> str:
    directory = data_dir if data_dir is not None else default_data_dir()
    return f"sqlite:///{directory / 'node.sqlite3'}"


@dataclass(frozen=True)
class ApiLimits:
    """Request size limits, with IRI's defaults."""

    max_find_transactions: int = 100_000
    max_requests_list: int = 1_000
    max_get_trytes: int = 10_000
    max_body_length: int = 1_000_000
    max_depth: int = 15
    # Remote proof of work is costly: bound its weight (about 30 s at 14) and its size.
    max_attach_weight: int = 14
    max_attach_transactions: int = 100
    # Each attachToTangle request is stopped after this many seconds of proof of work.
    max_attach_seconds: int = 60
    # Remote proof of work waits in a fair queue: so many requests per caller (an address;
    # the demo's households all come from loopback), and in all.
    max_attach_queue_per_caller: int = 16
    max_attach_queue: int = 128

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"limits.{item.name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class CoordinatorConfig:
    """Who issues the milestones of this private network.

    ``seed`` set: this node is the coordinator. ``address`` only: this node follows
    the coordinator with that address. Neither: a stand-alone node that creates a
    coordinator seed on first start and keeps it in its database.
    """

    seed: str | None = None
    address: str | None = None
    security: int = 1
    interval: float = 10.0
    max_references: int = 16

    def __post_init__(self) -> None:
        if self.seed is not None and not _SEED_PATTERN.fullmatch(self.seed):
            raise ConfigError("coordinator.seed must be 1 to 81 trytes (9 and A-Z)")
        if self.address is not None and not _HASH_PATTERN.fullmatch(self.address):
            raise ConfigError("coordinator.address must be 81 trytes (9 and A-Z), no checksum")
        if self.security not in (1, 2, 3):
            raise ConfigError(f"coordinator.security must be 1, 2 or 3, got {self.security!r}")
        if not isinstance(self.interval, int | float) or not 0.05 <= self.interval <= 86_400:
            raise ConfigError("coordinator.interval must be between 0.05 and 86400 seconds")
        if not isinstance(self.max_references, int) or not 2 <= self.max_references <= 64:
            raise ConfigError("coordinator.max_references must be between 2 and 64")

    @property
    def issues_milestones(self) -> bool:
        return self.seed is not None or self.address is None


def check_secret(value: object, name: str) -> str:
    """A peering secret or API token: 24 to 256 printable ASCII characters, no spaces."""
    if not isinstance(value, str) or not _SECRET_PATTERN.fullmatch(value):
        raise ConfigError(
            f"{name} must be 24 to 256 printable ASCII characters without spaces "
            "(for example the output of: openssl rand -base64 32)"
        )
    return value


@dataclass(frozen=True)
class PeeringConfig:
    """How neighbours authenticate each other and how much one may cost this node.

    Every request to a neighbour and every answer is signed with the secret the two
    share (``secret``, or the neighbour's own one from ``neighbors``); a node with no
    secret configured creates one on first start and logs it once.
    """

    secret: str | None = None
    # Seconds a signed request stays valid (allowing clock skew); nonces are remembered as long.
    replay_window: float = 120.0
    # Seconds per request to a neighbour.
    timeout: float = 30.0
    # Bytes of one neighbour's answer; a bigger one is cut off and counts as misbehaviour.
    max_response_bytes: int = 4_000_000
    # Transactions taken from one neighbour per synchronisation round.
    max_transactions_per_round: int = 5_000
    # Longest wait before trying a misbehaving or unreachable neighbour again.
    max_backoff: float = 300.0

    def __post_init__(self) -> None:
        if self.secret is not None:
            check_secret(self.secret, "peering.secret")
        for name in ("replay_window", "timeout", "max_backoff"):
            check_seconds(f"peering.{name}", getattr(self, name), 1, 86_400)
        for name, low in (("max_response_bytes", 100_000), ("max_transactions_per_round", 10)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"peering.{name} must be an integer of at least {low}")


@dataclass(frozen=True)
class HttpConfig:
    """Connection timeouts of the node's HTTP server (seconds)."""

    # A connection with no request in progress is closed after this long.
    idle_timeout: float = 75.0
    # A request must arrive (headers) and its body keep arriving within this long.
    request_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "request_timeout"):
            check_seconds(f"http.{name}", getattr(self, name), 0.1, 3_600)


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to run."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str = field(default_factory=default_database_url)
    min_weight_magnitude: int = DEFAULT_MIN_WEIGHT_MAGNITUDE
    neighbors: tuple[str, ...] = ()
    # A neighbour's own shared secret (normalised URL -> secret); others use peering.secret.
    neighbor_secrets: Mapping[str, str] = field(default_factory=dict)
    peering: PeeringConfig = field(default_factory=PeeringConfig)
    # Admin commands: a loopback caller without a browser Origin, or this token.
    api_token: str | None = None
    admin_commands: tuple[str, ...] = DEFAULT_ADMIN_COMMANDS
    # Web origins (scheme://host:port) whose pages may use every command but the admin ones.
    cors_origins: tuple[str, ...] = ()
    http: HttpConfig = field(default_factory=HttpConfig)
    genesis: Mapping[str, int] = field(default_factory=dict)
    coordinator: CoordinatorConfig = field(default_factory=CoordinatorConfig)
    limits: ApiLimits = field(default_factory=ApiLimits)
    # How far a transaction's timestamp may lie in the future (IRI: two hours).
    max_future_seconds: int = 7_200
    # How often a node asks its neighbours for what it missed.
    sync_interval: float = 5.0
    # How long to wait at start for a database server that is not up yet (0: fail at once).
    database_wait: float = 60.0
    app_name: str = "P2P Energy Grid node"

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 <= self.port <= 65_535:
            raise ConfigError(f"port must be 0..65535, got {self.port!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("host must be a non-empty string")
        if not isinstance(self.database_url, str) or "://" not in self.database_url:
            raise ConfigError(
                "database must be an SQLAlchemy URL such as sqlite:///node.sqlite3 or "
                "postgresql+psycopg://user@host/db"
            )
        mwm = self.min_weight_magnitude
        if not isinstance(mwm, int) or isinstance(mwm, bool) or not 1 <= mwm <= 81:
            raise ConfigError(f"min_weight_magnitude must be 1..81, got {mwm!r}")
        total = 0
        for address, balance in self.genesis.items():
            if not isinstance(address, str) or not _HASH_PATTERN.fullmatch(address):
                raise ConfigError(f"genesis address {address!r} must be 81 trytes, no checksum")
            if not isinstance(balance, int) or isinstance(balance, bool) or balance <= 0:
                raise ConfigError(f"genesis balance of {address} must be a positive integer")
            total += balance
        if total > MAX_SUPPLY:
            raise ConfigError(f"genesis balances sum to {total}, more than the supply {MAX_SUPPLY}")
        for url in self.neighbors:
            normalize_neighbor_url(url)
        for url, secret in self.neighbor_secrets.items():
            if normalize_neighbor_url(url) != url:
                raise ConfigError(f"neighbour secret for {url!r}: use the normalised URL")
            check_secret(secret, f"the secret of neighbour {url}")
        if self.api_token is not None:
            check_secret(self.api_token, "api_token")
        if not isinstance(self.admin_commands, tuple) or not all(
            isinstance(name, str) for name in self.admin_commands
        ):
            raise ConfigError("admin_commands must be a list of command names")
        for origin in self.cors_origins:
            if not isinstance(origin, str) or not _ORIGIN_PATTERN.fullmatch(origin):
                raise ConfigError(
                    f"cors_origins: {origin!r} must be an origin such as https://host:8123"
                )
        if not isinstance(self.max_future_seconds, int) or self.max_future_seconds < 0:
            raise ConfigError("max_future_seconds must be a non-negative integer")
        if not isinstance(self.sync_interval, int | float) or self.sync_interval <= 0:
            raise ConfigError("sync_interval must be a positive number of seconds")
        wait = self.database_wait
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait < math.inf:
            raise ConfigError("database_wait must be a non-negative number of seconds")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


_NEIGHBOR_PATTERN: Final = re.compile(
    r"(?P<scheme>https?|tcp)://(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?/?"
)


def normalize_neighbor_url(url: str) -> str:
    """A neighbour's API URL as ``http(s)://host:port``.

    IRI wrote neighbours as ``tcp://host:port``; such a URL means the neighbour's
    HTTP API on that host and port, since these nodes gossip over HTTP.
    """
    if not isinstance(url, str):
        raise ConfigError(f"a neighbour must be a URL string, got {type(url).__name__}")
    match = _NEIGHBOR_PATTERN.fullmatch(url.strip())
    if match is None:
        raise ConfigError(
            f"neighbour {url!r} must look like http://host:port, https://host:port or tcp://host:port"
        )
    scheme = "http" if match["scheme"] == "tcp" else match["scheme"]
    port = int(match["port"]) if match["port"] else (443 if scheme == "https" else DEFAULT_PORT)
    if not 1 <= port <= 65_535:
        raise ConfigError(f"neighbour {url!r} has an invalid port")
    return f"{scheme}://{match['host'].lower()}:{port}"


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a table/object")
    return value


def config_from_mapping(data: Mapping[str, Any], base: NodeConfig | None = None) -> NodeConfig:
    """Apply a parsed configuration document (file contents) on top of ``base``."""
    config = base if base is not None else NodeConfig()
    top = {
        "host",
        "port",
        "database",
        "min_weight_magnitude",
        "neighbors",
        "peering",
        "api_token",
        "admin_commands",
        "cors_origins",
        "http",
        "genesis",
        "coordinator",
        "limits",
        "max_future_seconds",
        "sync_interval",
        "database_wait",
        "app_name",
    }
    reject_unknown(data, top, "the node configuration")
    changes: dict[str, Any] = {}
    for key in (
        "host",
        "port",
        "min_weight_magnitude",
        "max_future_seconds",
        "sync_interval",
        "database_wait",
    ):
        if key in data:
            changes[key] = data[key]
    if "app_name" in data:
        changes["app_name"] = str(data["app_name"])
    if "database" in data:
        changes["database_url"] = data["database"]
    if "neighbors" in data:
        changes["neighbors"], own_secrets = _neighbors(data["neighbors"])
        changes["neighbor_secrets"] = {**config.neighbor_secrets, **own_secrets}
    if "api_token" in data:
        changes["api_token"] = data["api_token"] or None
    for key in ("admin_commands", "cors_origins"):
        if key in data:
            value = data[key]
            if not isinstance(value, list):
                raise ConfigError(f"{key} must be a list")
            changes[key] = tuple(value)
    tables: tuple[tuple[str, type], ...] = (
        ("peering", PeeringConfig),
        ("http", HttpConfig),
        ("coordinator", CoordinatorConfig),
        ("limits", ApiLimits),
    )
    for key, kind in tables:
        if key in data:
            section = _section(data, key)
            reject_unknown(section, {item.name for item in fields(kind)}, key)
            changes[key] = replace(getattr(config, key), **section)
    if "genesis" in data:
        changes["genesis"] = dict(_section(data, "genesis"))
    try:
        return replace(config, **changes)
    except TypeError as err:
        raise ConfigError(f"invalid configuration: {err}") from err


def _neighbors(entries: object) -> tuple[tuple[str, ...], dict[str, str]]:
    """``neighbors``: URLs, or tables ``{url = "...", secret = "..."}`` with their own secret."""
    if not isinstance(entries, list):
        raise ConfigError("neighbors must be a list of URLs or {url, secret} tables")
    urls: list[str] = []
    own: dict[str, str] = {}
    for entry in entries:
        if isinstance(entry, Mapping):
            reject_unknown(entry, {"url", "secret"}, "a neighbour")
            url = entry.get("url")
            if not isinstance(url, str):
                raise ConfigError("a neighbour table needs its url")
            urls.append(url)
            if entry.get("secret") is not None:
                own[normalize_neighbor_url(url)] = check_secret(
                    entry["secret"], f"the secret of neighbour {url}"
                )
        else:
            urls.append(entry)
    return tuple(urls), own


def node_section(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``[node]`` table of a configuration document; a document without one is
    the node's settings itself."""
    return config_section(document, "node", default=document)


def load_config_file(path: Path, base: NodeConfig | None = None) -> NodeConfig:
    """Read a ``.toml`` or ``.json`` configuration file."""
    return config_from_mapping(node_section(read_config_document(path)), base)


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Defaults, then the file's ``[node]`` table, then ``P2P_ENERGY_NODE_*`` variables."""
    return load_layers(
        NodeConfig(),
        None if path is None else node_section(read_config_document(path)),
        config_from_mapping,
        lambda config: apply_environment(config, environ),
    )


def apply_environment(config: NodeConfig, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Override settings from ``P2P_ENERGY_NODE_*`` variables (secrets stay out of files)."""
    env = os.environ if environ is None else environ
    changes: dict[str, Any] = {}
    if env.get(DATABASE_ENV):
        changes["database_url"] = env[DATABASE_ENV]
    if env.get(COORDINATOR_SEED_ENV):
        changes["coordinator"] = replace(config.coordinator, seed=env[COORDINATOR_SEED_ENV])
    if env.get(PEERING_SECRET_ENV):
        changes["peering"] = replace(config.peering, secret=env[PEERING_SECRET_ENV])
    if env.get(API_TOKEN_ENV):
        changes["api_token"] = env[API_TOKEN_ENV]
    return replace(config, **changes) if changes else config
