"""Node configuration: files, environment, flags and their validation."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from grid_server.cli import build_parser, node_config_from_args
from grid_server.config_loading import ConfigError
from grid_server.node.config import (
    ApiLimits,
    CoordinatorConfig,
    NodeConfig,
    apply_environment,
    config_from_mapping,
    default_database_url,
    load_config_file,
    normalize_neighbor_url,
)

if TYPE_CHECKING:
    from pathlib import Path

ADDRESS = "A" * 81


def test_defaults_follow_iri() -> None:
    config = NodeConfig()
    assert (config.host, config.port, config.min_weight_magnitude) == ("127.0.0.1", 14265, 9)
    assert config.database_url.startswith("sqlite:///")
    assert config.limits == ApiLimits(100_000, 1_000, 10_000, 1_000_000, 15, 14, 100, 60, 16, 128)
    # Secure by default: admin commands local only, no browser origin may change the node.
    assert config.api_token is None
    assert config.cors_origins == ()
    assert config.admin_commands == (
        "addNeighbors",
        "removeNeighbors",
        "getNeighbors",
        "interruptAttachingToTangle",
    )
    assert config.coordinator.issues_milestones
    assert config.url == "http://127.0.0.1:14265"


def test_default_database_lives_in_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2P_ENERGY_DATA_DIR", "/srv/p2p")
    assert default_database_url() == "sqlite:////srv/p2p/node.sqlite3"


def test_toml_file_with_every_section(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        f"""
[node]
host = "0.0.0.0"
port = 15000
database = "postgresql+psycopg://p2p@localhost/node"
min_weight_magnitude = 14
neighbors = ["tcp://peer.example:15600"]
max_future_seconds = 60
sync_interval = 2.5

[node.genesis]
{ADDRESS} = 1000

[node.coordinator]
address = "{"B" * 81}"
interval = 30

[node.limits]
max_get_trytes = 50
"""
    )
    config = load_config_file(path)
    assert config.port == 15000
    assert config.database_url == "postgresql+psycopg://p2p@localhost/node"
    assert config.genesis == {ADDRESS: 1000}
    assert config.coordinator == CoordinatorConfig(address="B" * 81, interval=30)
    assert not config.coordinator.issues_milestones
    assert config.limits.max_get_trytes == 50
    assert config.limits.max_requests_list == 1_000
    assert config.neighbors == ("tcp://peer.example:15600",)


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    path.write_text(json.dumps({"port": 1, "coordinator": {"security": 2}}))
    config = load_config_file(path)
    assert (config.port, config.coordinator.security) == (1, 2)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"colour": "blue"}, "unknown setting(s) in the node configuration: colour"),
        ({"port": 99999}, "port must be 0..65535"),
        ({"port": "80"}, "port must be 0..65535"),
        ({"min_weight_magnitude": 0}, "min_weight_magnitude must be 1..81"),
        ({"database": "node.sqlite3"}, "SQLAlchemy URL"),
        ({"genesis": {"abc": 1}}, "must be 81 trytes"),
        ({"genesis": {ADDRESS: 0}}, "must be a positive integer"),
        ({"genesis": {ADDRESS: 3**33}}, "more than the supply"),
        ({"genesis": [ADDRESS]}, "genesis must be a table"),
        ({"coordinator": {"seed": "lower"}}, "coordinator.seed"),
        ({"coordinator": {"address": "A" * 90}}, "coordinator.address"),
        ({"coordinator": {"security": 4}}, "coordinator.security"),
        ({"coordinator": {"interval": 0}}, "coordinator.interval"),
        ({"coordinator": {"max_references": 1}}, "coordinator.max_references"),
        ({"coordinator": {"speed": 1}}, "unknown setting(s) in coordinator: speed"),
        ({"limits": {"max_depth": -1}}, "limits.max_depth"),
        ({"neighbors": "http://a:1"}, "neighbors must be a list"),
        ({"neighbors": ["ftp://a:1"]}, "must look like http://host:port"),
        ({"sync_interval": 0}, "sync_interval"),
        ({"neighbors": [{"url": "http://a:1", "secret": "short"}]}, "secret of neighbour"),
        ({"neighbors": [{"secret": "x" * 30}]}, "a neighbour table needs its url"),
        ({"neighbors": [{"url": "http://a:1", "key": 1}]}, "unknown setting(s) in a neighbour"),
        ({"peering": {"secret": "with spaces in it, long enough"}}, "peering.secret must be"),
        ({"peering": {"timeout": 0}}, "peering.timeout must be between"),
        ({"peering": {"max_response_bytes": 10}}, "peering.max_response_bytes"),
        ({"peering": {"colour": 1}}, "unknown setting(s) in peering: colour"),
        ({"api_token": "short"}, "api_token must be 24 to 256"),
        ({"admin_commands": "addNeighbors"}, "admin_commands must be a list"),
        ({"cors_origins": ["*"]}, "cors_origins: '*' must be an origin"),
        ({"http": {"idle_timeout": 0}}, "http.idle_timeout must be between"),
    ],
)
def test_invalid_settings_are_named(document: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_mapping(document)
    assert message in str(err.value)


def test_credentials_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        """
[node]
neighbors = [
    "http://10.0.0.2:14265",
    {url = "tcp://10.0.0.3:15600", secret = "own-secret-of-this-link-0123"},
]
api_token = "remote-admin-token-0123456789"
admin_commands = ["addNeighbors", "removeNeighbors"]
cors_origins = ["https://wallet.example:8443"]

[node.peering]
secret = "network-wide-secret-0123456789"
max_transactions_per_round = 100

[node.http]
request_timeout = 5
"""
    )
    config = load_config_file(path)
    assert config.neighbors == ("http://10.0.0.2:14265", "tcp://10.0.0.3:15600")
    assert config.neighbor_secrets == {"http://10.0.0.3:15600": "own-secret-of-this-link-0123"}
    assert config.peering.secret == "network-wide-secret-0123456789"
    assert config.peering.max_transactions_per_round == 100
    assert config.api_token == "remote-admin-token-0123456789"
    assert config.admin_commands == ("addNeighbors", "removeNeighbors")
    assert config.cors_origins == ("https://wallet.example:8443",)
    assert config.http.request_timeout == 5


def test_unknown_admin_commands_are_refused() -> None:
    from grid_server.node.access import AccessPolicy
    from grid_server.node.commands import COMMANDS

    config = config_from_mapping({"admin_commands": ["addNeighbours"]})
    with pytest.raises(ConfigError, match="unknown command"):
        AccessPolicy(config, COMMANDS)


def test_unreadable_or_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config_file(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("port = ")
    with pytest.raises(ConfigError, match="is not valid"):
        load_config_file(broken)
    listed = tmp_path / "listed.json"
    listed.write_text("[1]")
    with pytest.raises(ConfigError, match="must hold a table"):
        load_config_file(listed)


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("tcp://Peer.Example:15600", "http://peer.example:15600"),
        ("http://127.0.0.1", "http://127.0.0.1:14265"),
        ("https://node.example/", "https://node.example:443"),
        ("http://[::1]:5", "http://[::1]:5"),
    ],
)
def test_neighbor_urls_are_normalized(url: str, normalized: str) -> None:
    assert normalize_neighbor_url(url) == normalized


@pytest.mark.parametrize("url", ["udp://a:1", "http://a:0", "http://a b:1", "a:1", ""])
def test_bad_neighbor_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        normalize_neighbor_url(url)


def test_environment_overrides_the_file() -> None:
    config = apply_environment(
        NodeConfig(),
        {
            "P2P_ENERGY_NODE_DATABASE": "sqlite:///env.sqlite3",
            "P2P_ENERGY_NODE_COORDINATOR_SEED": "SECRET",
            "P2P_ENERGY_NODE_PEERING_SECRET": "peering-secret-from-the-environment",
            "P2P_ENERGY_NODE_API_TOKEN": "api-token-from-the-environment",
        },
    )
    assert config.database_url == "sqlite:///env.sqlite3"
    assert config.coordinator.seed == "SECRET"
    assert config.peering.secret == "peering-secret-from-the-environment"
    assert config.api_token == "api-token-from-the-environment"


def test_flags_override_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "node.toml"
    path.write_text('port = 1\nneighbors = ["http://a:1"]\n')
    monkeypatch.setenv("P2P_ENERGY_NODE_DATABASE", "sqlite:///env.sqlite3")
    args = build_parser().parse_args(
        [
            "node",
            "--config",
            str(path),
            "--port",
            "2",
            "--neighbor",
            "http://b:2",
            "--min-weight-magnitude",
            "5",
            "--milestone-interval",
            "1.5",
        ]
    )
    config = node_config_from_args(args)
    assert config.port == 2
    assert config.database_url == "sqlite:///env.sqlite3"
    assert config.neighbors == ("http://a:1", "http://b:2")
    assert config.min_weight_magnitude == 5
    assert config.coordinator.interval == 1.5
