"""The configuration loading the node and the grid share (grid_server.config_loading)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pytest

from grid_server.config_loading import (
    ConfigError,
    check_seconds,
    config_section,
    default_data_dir,
    load_layers,
    read_config_document,
    reject_unknown,
)
from grid_server.grid.config import load_config as load_grid_config
from grid_server.node.config import load_config as load_node_config

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


def test_data_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("P2P_ENERGY_DATA_DIR", raising=False)
    assert str(default_data_dir()) == "data"
    monkeypatch.setenv("P2P_ENERGY_DATA_DIR", "/srv/p2p")
    assert str(default_data_dir()) == "/srv/p2p"


def test_documents_are_read_by_their_suffix(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("[grid]\nport = 1\n[node]\nport = 2\n", encoding="utf-8")
    (tmp_path / "a.json").write_text('{"grid": {"port": 1}}', encoding="utf-8")
    assert read_config_document(tmp_path / "a.toml") == {"grid": {"port": 1}, "node": {"port": 2}}
    assert read_config_document(tmp_path / "a.json") == {"grid": {"port": 1}}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.toml", None, "cannot read configuration file"),
        ("bad.toml", "port = ", "is not valid"),
        ("bad.json", "{", "is not valid"),
        ("list.json", "[1]", "must hold a table/object"),
        ("binary.toml", b"\xff\xfe", "is not valid"),
    ],
)
def test_unreadable_documents_name_the_file(
    tmp_path: Path, name: str, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as caught:
        read_config_document(path)
    assert name in str(caught.value)


def test_sections() -> None:
    document = {"grid": {"port": 1}, "node": [1]}
    assert config_section(document, "grid") == {"port": 1}
    assert config_section(document, "portal") == {}
    assert config_section(document, "portal", default=document) is document
    with pytest.raises(ConfigError, match=r"\[node\] must be a table/object"):
        config_section(document, "node")


def test_unknown_settings_are_named_sorted() -> None:
    reject_unknown({"a": 1}, {"a", "b"}, "x")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) in x: c, d$"):
        reject_unknown({"d": 1, "a": 1, "c": 2}, {"a"}, "x")


def test_durations_are_numbers_within_bounds() -> None:
    check_seconds("http.timeout", 0.1, 0.1, 3_600)
    check_seconds("http.timeout", 3_600, 0.1, 3_600)
    with pytest.raises(ConfigError, match=r"^http.timeout must be between 0.1 and 3600 seconds$"):
        check_seconds("http.timeout", 0.05, 0.1, 3_600)
    for value in (True, "30", None):
        with pytest.raises(ConfigError, match="must be a number of seconds"):
            check_seconds("http.timeout", value, 0.1, 3_600)


@dataclass(frozen=True)
class _Settings:
    file: str = "default"
    environment: str = "default"


def test_layers_apply_file_then_environment() -> None:
    def from_mapping(data: Mapping[str, Any], base: _Settings) -> _Settings:
        return replace(base, **data)

    def from_environment(config: _Settings) -> _Settings:
        return replace(config, environment="environment")

    layered = load_layers(
        _Settings(), {"file": "file", "environment": "file"}, from_mapping, from_environment
    )
    assert layered == _Settings(file="file", environment="environment")
    assert load_layers(_Settings(), None, from_mapping, from_environment) == _Settings(
        environment="environment"
    )


def test_node_and_grid_load_their_tables_of_one_file(tmp_path: Path) -> None:
    path = tmp_path / "p2p.toml"
    path.write_text("[grid]\nport = 8081\n[node]\nport = 14266\n", encoding="utf-8")
    environ = {"P2P_ENERGY_GRID_SLOT_SECONDS": "60"}
    grid = load_grid_config(path, environ=environ)
    assert (grid.port, grid.slot_seconds) == (8081, 60)
    node = load_node_config(path, environ={"P2P_ENERGY_NODE_API_TOKEN": "t" * 24})
    assert (node.port, node.api_token) == (14266, "t" * 24)
    # A node file without a [node] table is the node's settings itself.
    flat = tmp_path / "node.toml"
    flat.write_text("port = 14267\n", encoding="utf-8")
    assert load_node_config(flat, environ={}).port == 14267
    # The same errors for both.
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\ncolour = 1\n[node]\ncolour = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="in the grid configuration: colour"):
        load_grid_config(bad, environ={})
    with pytest.raises(ConfigError, match="in the node configuration: colour"):
        load_node_config(bad, environ={})


def test_market_settings_come_from_tables_and_json() -> None:
    from grid_server.grid.config import GridConfig, apply_environment, config_from_mapping

    config = config_from_mapping(
        {
            "pricing_strategy": "allocation-static",
            "community_price": 50,
            "allocation_shares": {"c-b": 1, "c-a": 3},
        }
    )
    assert config.allocation_shares == (("c-a", 3), ("c-b", 1))
    assert config.market_parameters.community_price_micro == 50_000_000
    environ = {
        "P2P_ENERGY_GRID_PRICING_STRATEGY": "pay-as-bid",
        "P2P_ENERGY_GRID_ALLOCATION_SHARES": "",
        "P2P_ENERGY_GRID_COMMUNITY_PRICE": "",
        "P2P_ENERGY_GRID_PREFERENCES": '{"c-a": ["p-1", "p-2"]}',
    }
    bidding = apply_environment(config, environ)
    assert bidding.preferences == (("c-a", ("p-1", "p-2")),)
    assert bidding.market_parameters.shares == ()
    with pytest.raises(ConfigError, match="needs the consumers' allocation shares"):
        config_from_mapping({"pricing_strategy": "allocation-static"}, GridConfig())
    with pytest.raises(ConfigError, match="only used by pay-as-bid"):
        config_from_mapping({"preferences": {"c": ["p"]}}, GridConfig())
    with pytest.raises(ConfigError, match="whole number"):
        config_from_mapping({"allocation_shares": {"c": 1.5}})
    with pytest.raises(ConfigError, match="JSON object"):
        apply_environment(GridConfig(), {"P2P_ENERGY_GRID_PREFERENCES": "{"})
    with pytest.raises(ConfigError, match="between the export and import"):
        config_from_mapping({"pricing_strategy": "allocation-dynamic", "community_price": 500})
