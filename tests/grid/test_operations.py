"""Operations: configuration layering, structured logs, leader lease, health, two grids."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from p2p_energy_protocol.grid_client import GridClient

from grid_server.config_loading import ConfigError
from grid_server.grid.config import (
    GridConfig,
    apply_environment,
    config_from_mapping,
    load_config,
)
from grid_server.grid.db.engine import Database
from grid_server.grid.lease import LeaderLease
from grid_server.grid.logs import JsonFormatter
from grid_server.grid.main import build_parser, config_from_args
from grid_server.grid.server import GridServer

from .fakes import ManualClock
from .processes import free_port


def test_defaults() -> None:
    config = GridConfig()
    assert (config.host, config.port, config.node_url) == ("127.0.0.1", 8080, None)
    assert config.database_url == f"sqlite:///{Path('data') / 'grid.sqlite3'}"
    assert (config.slot_seconds, config.pricing_strategy) == (900, "weighted-mean")


def test_file_environment_and_flags_layer(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(
        "[grid]\nport = 9000\nslot_seconds = 60\ngrid_cut_percent = 5\n"
        'pricing_strategy = "merit-order"\n\n[node]\nport = 14999\n'
    )
    environ = {"P2P_ENERGY_GRID_PORT": "9100", "P2P_ENERGY_GRID_IMPORT_PRICE": "120.5"}
    config = load_config(path, {"port": 9200, "host": None}, environ)
    assert (config.port, config.slot_seconds, config.grid_cut_percent) == (9200, 60, 5.0)
    assert (config.import_price, config.pricing_strategy) == (120.5, "merit-order")
    json_path = tmp_path / "grid.json"
    json_path.write_text(json.dumps({"grid": {"storage_auth": "none", "data_dir": "/srv"}}))
    config = load_config(json_path, environ={})
    assert (config.storage_auth, config.data_dir) == ("none", Path("/srv"))
    assert config.database_url == "sqlite:////srv/grid.sqlite3"


def test_command_line(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text("[grid]\nslot_seconds = 30\n[node]\nport = 0\n")
    parser = build_parser()
    args = parser.parse_args(
        [
            "--host",
            "0.0.0.0",
            "--port",
            "8081",
            "--database",
            "sqlite:////tmp/x.db",
            "--node-url",
            "http://127.0.0.1:14265",
            "--config",
            str(path),
            "--log-level",
            "DEBUG",
        ]
    )
    config, node_document, document = config_from_args(args)
    assert (config.host, config.port, config.slot_seconds) == ("0.0.0.0", 8081, 30)
    assert (config.database, config.node_url, config.log_level) == (
        "sqlite:////tmp/x.db",
        "http://127.0.0.1:14265",
        "DEBUG",
    )
    assert node_document == {"port": 0}
    assert document["grid"] == {"slot_seconds": 30}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"colour": "blue"}, "unknown setting\\(s\\) in the grid configuration: colour"),
        ({"port": "eighty"}, "wrong type"),
        ({"port": 70000}, "port"),
        ({"slot_seconds": 0}, "slot_seconds"),
        ({"export_price": 200.0}, "must not exceed"),
        ({"pricing_strategy": "median"}, "pricing_strategy"),
        ({"pricing_strategy": "supply-demand", "export_price": 0.0}, "positive export price"),
        ({"grid_cut_percent": 101}, "grid_cut_percent"),
        ({"wallet_seed": "abc"}, "81 trytes"),
        ({"node_url": "ftp://x"}, "node_url"),
        ({"storage_auth": "maybe"}, "storage_auth"),
        ({"log_level": "LOUD"}, "logging level"),
        ({"follow_interval": 0}, "positive"),
        ({"max_page_size": 0}, "max_page_size"),
    ],
)
def test_bad_settings(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(settings)


def test_bad_environment_values() -> None:
    with pytest.raises(ConfigError, match="integer"):
        apply_environment(GridConfig(), {"P2P_ENERGY_GRID_PORT": "x"})
    with pytest.raises(ConfigError, match="number"):
        apply_environment(GridConfig(), {"P2P_ENERGY_GRID_IMPORT_PRICE": "cheap"})


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[grid\n")
    with pytest.raises(ConfigError, match="not valid"):
        load_config(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"grid": [1]}')
    with pytest.raises(ConfigError, match="table"):
        load_config(wrong)


def test_json_logs() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("grid", logging.WARNING, __file__, 1, "slot %d", (7,), None)
    record.registration_id = "consumer-1"
    record.amounts = [1, 2]
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "slot 7"
    assert (entry["level"], entry["logger"], entry["registration_id"]) == (
        "warning",
        "grid",
        "consumer-1",
    )
    assert entry["amounts"] == "[1, 2]"
    assert entry["time"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("grid", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(formatter.format(failed))["exception"]


async def test_leader_lease(db: Database) -> None:
    clock = ManualClock(1_000_000)
    first = LeaderLease(db, "grid", "first", 10, clock)
    second = LeaderLease(db, "grid", "second", 10, clock)
    assert await first.acquire_or_renew()
    assert not await second.acquire_or_renew()
    clock.advance(5)
    assert await first.acquire_or_renew()  # renewed until t + 15 s
    clock.advance(9)
    assert not await second.acquire_or_renew()
    clock.advance(2)
    assert await second.acquire_or_renew()  # the first stopped renewing: taken over
    assert not await first.acquire_or_renew()
    await second.release()
    assert await first.acquire_or_renew()


async def test_health_degrades_without_the_node(tmp_path: Path, database_url: str) -> None:
    config = replace(
        GridConfig(),
        port=0,
        database=database_url,
        data_dir=tmp_path,
        node_url=f"http://127.0.0.1:{free_port()}",
        node_timeout=2.0,
        log_format="text",
        slot_seconds=60,
    )
    async with GridServer(config) as grid, aiohttp.ClientSession() as session:
        async with session.get(grid.url + "/health") as response:
            assert response.status == 200
            health = await response.json()
        assert (health["status"], health["database"], health["node"]) == (
            "degraded",
            "ok",
            "unavailable",
        )
        assert health["schemaRevision"] == Database.head_revision()
        assert health["consensusPrice"] is None  # nothing settled yet
        # Households take their publishing period from the grid's slot.
        assert health["slotSeconds"] == 60
        client = GridClient(session, grid.url)
        # Registering a channel needs the node: a clear 503, nothing stored.
        with pytest.raises(Exception, match="Tangle node is unavailable") as caught:
            await client.register("producer-1", "PV", "producer", root="A" * 81, side_key="B" * 81)
        assert getattr(caught.value, "status", None) == 503


async def test_two_grids_share_one_database(tmp_path: Path, database_url: str) -> None:
    base = replace(
        GridConfig(),
        port=0,
        database=database_url,
        data_dir=tmp_path,
        node_url=f"http://127.0.0.1:{free_port()}",
        node_timeout=1.0,
        lease_seconds=1.0,
        storage_auth="none",
        log_format="text",
    )
    async with GridServer(base) as one, GridServer(base) as two:
        deadline = time.monotonic() + 10
        while not (one.is_leader or two.is_leader):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert one.is_leader != two.is_leader
        async with aiohttp.ClientSession() as session:
            # Both serve the APIs from the same database.
            await GridClient(session, one.url).register("consumer-9", "Flat", "consumer")
            page = await GridClient(session, two.url).list_items("consumer-9")
            assert page.total_items == 0
        leader, other = (one, two) if one.is_leader else (two, one)
        await leader.stop()
        deadline = time.monotonic() + 10
        while not other.is_leader:
            assert time.monotonic() < deadline, "the lease was not taken over"
            await asyncio.sleep(0.1)
