"""Rendering the add-on's options into the grid's configuration, discovery and backups."""

from __future__ import annotations

import json
import sqlite3
import stat
from typing import TYPE_CHECKING

import aiohttp
import pytest
from p2p_energy_protocol.signing import generate_address

from grid_server import addon_config
from grid_server.addon_config import (
    AddonConfigError,
    AddonOptions,
    DiscoveryError,
    announce,
    checkpoint_databases,
    parse_options,
    render,
    render_config,
    wallet_seed,
)
from grid_server.grid.config import config_from_mapping
from grid_server.node.config import config_from_mapping as node_config_from_mapping
from grid_server.portal.auth import verify_password
from grid_server.portal.config import load_portal_config

from .conftest import SUPERVISOR_TOKEN

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import FakeSupervisor

SEED = "A" * 80 + "9"


def write_options(path: Path, **options: object) -> Path:
    path.write_text(json.dumps(options), encoding="utf-8")
    return path


def test_defaults_match_the_grid_defaults() -> None:
    options = parse_options({})
    grid = config_from_mapping({})
    assert options.slot_seconds == grid.slot_seconds
    assert options.pricing_strategy == grid.pricing_strategy
    assert options.import_price == grid.import_price
    assert options.export_price == grid.export_price
    assert options.grid_cut_percent == grid.grid_cut_percent
    assert options.wallet_genesis_balance == grid.wallet_genesis_balance
    assert options.min_weight_magnitude == grid.min_weight_magnitude
    assert options.local_pow_workers == grid.local_pow_workers


def test_options_are_parsed() -> None:
    options = parse_options(
        {
            "slot_seconds": 60,
            "pricing_strategy": "merit-order",
            "import_price": 120,
            "export_price": 15.5,
            "grid_cut_percent": 5,
            "wallet_seed": f"  {SEED}  ",
            "neighbors": ["tcp://Peer.example:15600", "http://10.0.0.2:14265"],
            "database_url": "postgresql://grid:secret@db:5432/grid",
            "portal_password": "correct horse",
            "min_weight_magnitude": 5,
            "local_pow_workers": 0,
            "milestone_interval": 2,
            "log_level": "debug",
        }
    )
    assert options == AddonOptions(
        slot_seconds=60,
        pricing_strategy="merit-order",
        import_price=120.0,
        export_price=15.5,
        grid_cut_percent=5.0,
        wallet_seed=SEED,
        neighbors=("http://peer.example:15600", "http://10.0.0.2:14265"),
        database_url="postgresql://grid:secret@db:5432/grid",
        portal_password="correct horse",
        min_weight_magnitude=5,
        local_pow_workers=0,
        milestone_interval=2.0,
        log_level="debug",
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"slot_seconds": 5}, "slot_seconds must be between 10 and 86400"),
        ({"slot_seconds": 60.5}, "slot_seconds must be a whole number"),
        ({"slot_seconds": True}, "slot_seconds must be a whole number"),
        ({"pricing_strategy": "cheapest"}, "pricing_strategy must be one of"),
        ({"import_price": -1}, "import_price must be between 0"),
        ({"import_price": "100"}, "import_price must be a number"),
        ({"import_price": 10, "export_price": 20}, "export_price (feed-in) must not exceed"),
        ({"grid_cut_percent": 101}, "grid_cut_percent must be between 0 and 100"),
        ({"wallet_seed": "abc"}, "wallet_seed must be 81 characters"),
        ({"wallet_seed": "A" * 82}, "wallet_seed must be 81 characters"),
        ({"wallet_seed": 5}, "wallet_seed must be text"),
        ({"neighbors": "http://a:1"}, "neighbors must be a list of URLs"),
        ({"neighbors": ["ftp://a:1"]}, "option neighbors: neighbour 'ftp://a:1'"),
        ({"database_url": "mysql://x/y"}, "database_url must be a PostgreSQL URL"),
        ({"node_peering_secret": "short"}, "option node_peering_secret must be 24 to 256"),
        ({"node_api_token": "has spaces in it, twenty-four+"}, "option node_api_token must be"),
        ({"min_weight_magnitude": 0}, "min_weight_magnitude must be between 1 and 14"),
        ({"local_pow_workers": -1}, "local_pow_workers must be between 0 and 16"),
        ({"local_pow_workers": 1.5}, "local_pow_workers must be a whole number"),
        ({"milestone_interval": 0.5}, "milestone_interval must be between 1 and 3600"),
        ({"log_level": "trace"}, "log_level must be one of"),
        ({"community_price": 500}, "community_price must be between 20 and 100"),
        ({"allocation_shares": ["c-1"]}, "'c-1' is not registration-id=value"),
        ({"allocation_shares": ["c-1=half"]}, "the share of c-1 must be a whole number"),
        ({"preferences": "c-1=p-1"}, "preferences must be a list"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], message: str) -> None:
    with pytest.raises(AddonConfigError) as caught:
        parse_options(options)
    assert message in str(caught.value)


def test_unknown_options_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert parse_options({"old_option": 1}) == AddonOptions()
    assert "old_option" in caplog.text


def test_rendered_document_runs_grid_node_and_portal(tmp_path: Path) -> None:
    options = parse_options(
        {
            "slot_seconds": 120,
            "neighbors": ["http://10.0.0.2:14265"],
            "portal_password": "operator-secret",
            "wallet_genesis_balance": 5000,
            "local_pow_workers": 2,
        }
    )
    document = render_config(options, tmp_path, seed=SEED, ingress_addresses=("127.0.0.1",))
    grid = config_from_mapping(document["grid"])
    node = node_config_from_mapping(document["node"])
    portal = load_portal_config(document, environ={})
    assert grid.port == 8080
    assert grid.host == "0.0.0.0"
    assert grid.slot_seconds == 120
    assert grid.wallet_seed == SEED
    assert grid.data_dir == tmp_path
    assert grid.database_url == f"sqlite:///{tmp_path / 'grid.sqlite3'}"
    assert grid.node_url == "http://127.0.0.1:14265"
    assert grid.log_format == "text"
    assert grid.local_pow_workers == 2
    assert node.port == 14265
    assert node.database_url == f"sqlite:///{tmp_path / 'node.sqlite3'}"
    assert node.neighbors == ("http://10.0.0.2:14265",)
    # The node credits the grid wallet's first address, where the grid spends from.
    assert dict(node.genesis) == {generate_address(SEED, 0, grid.wallet_security): 5000}
    assert portal.trusted_ingress_addresses == ("127.0.0.1",)
    assert portal.password_hash is not None
    assert "operator-secret" not in json.dumps(document)
    assert verify_password("operator-secret", portal.password_hash)
    assert not verify_password("operator-secreT", portal.password_hash)


def test_node_credentials_reach_the_node_only(tmp_path: Path) -> None:
    secret, token = "peering-secret-of-this-grid-0123", "api-token-of-this-grid-456789"
    options = parse_options({"node_peering_secret": secret, "node_api_token": f" {token} "})
    document = render_config(options, tmp_path, seed=SEED)
    node = node_config_from_mapping(document["node"])
    assert (node.peering.secret, node.api_token) == (secret, token)
    assert secret not in json.dumps(document["grid"])
    # Absent: the node creates its peering secret itself, and admin stays local.
    plain = node_config_from_mapping(render_config(AddonOptions(), tmp_path, seed=SEED)["node"])
    assert (plain.peering.secret, plain.api_token) == (None, None)


def test_postgresql_url_goes_to_the_grid_only(tmp_path: Path) -> None:
    options = parse_options({"database_url": "postgresql://g:p@db/grid"})
    document = render_config(options, tmp_path, seed=SEED)
    assert config_from_mapping(document["grid"]).database_url == "postgresql://g:p@db/grid"
    assert document["node"]["database"].startswith("sqlite:///")


def test_no_genesis_and_no_password(tmp_path: Path) -> None:
    options = parse_options({"wallet_genesis_balance": 0})
    document = render_config(options, tmp_path, seed=SEED)
    assert "genesis" not in document["node"]
    assert "password_hash" not in document["portal"]
    assert document["portal"]["trusted_ingress_addresses"] == ["172.30.32.2"]


def test_short_portal_password_is_refused(tmp_path: Path) -> None:
    options = parse_options({"portal_password": "short"})
    with pytest.raises(AddonConfigError, match="portal_password: the portal password needs"):
        render_config(options, tmp_path, seed=SEED)


def test_wallet_seed_is_created_once_and_kept_private(tmp_path: Path) -> None:
    first = wallet_seed(AddonOptions(), tmp_path)
    assert len(first) == 81
    assert set(first) <= set("9ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    path = tmp_path / "wallet-seed"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert wallet_seed(AddonOptions(), tmp_path) == first
    # A configured seed wins over the stored one.
    assert wallet_seed(AddonOptions(wallet_seed=SEED), tmp_path) == SEED
    path.write_text("not a seed\n", encoding="ascii")
    with pytest.raises(AddonConfigError, match="does not hold an 81-tryte seed"):
        wallet_seed(AddonOptions(), tmp_path)


def test_render_writes_a_private_file(tmp_path: Path) -> None:
    options_path = write_options(tmp_path / "options.json", slot_seconds=60)
    target = render(options_path, tmp_path, ("172.30.32.2",))
    assert target == tmp_path / "p2p-energy.json"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    document = json.loads(target.read_text(encoding="utf-8"))
    assert document["grid"]["slot_seconds"] == 60
    # The seed was created and is reused on the next start.
    seed = (tmp_path / "wallet-seed").read_text(encoding="ascii").strip()
    assert document["grid"]["wallet_seed"] == seed
    render(options_path, tmp_path, ("172.30.32.2",))
    again = json.loads(target.read_text(encoding="utf-8"))
    assert again["grid"]["wallet_seed"] == seed
    assert again["node"]["genesis"] == document["node"]["genesis"]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{", "cannot read the add-on options"), ("[]", "JSON object")],
)
def test_render_reports_unreadable_options(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "options.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(AddonConfigError, match=message):
        render(path, tmp_path, ())


def test_main_render_reports_errors_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("P2P_ADDON_DATA", str(tmp_path))
    write_options(tmp_path / "options.json", slot_seconds=1)
    assert addon_config.main(["render"]) == 2
    assert "slot_seconds must be between 10 and 86400" in capsys.readouterr().err
    write_options(tmp_path / "options.json", slot_seconds=30)
    monkeypatch.setenv("P2P_ADDON_INGRESS_ADDRESSES", "127.0.0.1, ::1")
    assert addon_config.main(["render"]) == 0
    document = json.loads((tmp_path / "p2p-energy.json").read_text(encoding="utf-8"))
    assert document["portal"]["trusted_ingress_addresses"] == ["127.0.0.1", "::1"]


def test_service_commands_use_the_rendered_file(tmp_path: Path) -> None:
    render(write_options(tmp_path / "options.json", log_level="warning"), tmp_path, ())
    config = str(tmp_path / "p2p-energy.json")
    node = addon_config.service_command("node", tmp_path)
    grid = addon_config.service_command("grid", tmp_path)
    assert node[1:] == [
        "-m",
        "grid_server.cli",
        "node",
        "--config",
        config,
        "--log-level",
        "WARNING",
    ]
    assert grid[1:] == ["-m", "grid_server.cli", "grid", "--config", config]
    with pytest.raises(AddonConfigError, match="run the render step first"):
        addon_config.service_command("grid", tmp_path / "elsewhere")


async def test_announce_posts_the_grid_address(fake_supervisor: FakeSupervisor) -> None:
    async with aiohttp.ClientSession() as session:
        uuid = await announce(session, fake_supervisor.url, SUPERVISOR_TOKEN)
    assert len(uuid) == 32
    host = "a0d7b954-p2p-energy-grid"
    assert fake_supervisor.announcements == [
        {
            "service": "p2p_energy",
            "config": {
                "host": host,
                "port": 8080,
                "node_port": 14265,
                "grid_url": f"http://{host}:8080",
                "node_url": f"http://{host}:14265",
            },
        }
    ]


async def test_announce_retries_transient_failures(fake_supervisor: FakeSupervisor) -> None:
    fake_supervisor.failures = [500, 502]
    async with aiohttp.ClientSession() as session:
        await announce(session, fake_supervisor.url, SUPERVISOR_TOKEN, retry_delay=0.01)
    assert fake_supervisor.attempts == 3
    assert len(fake_supervisor.announcements) == 1


async def test_announce_falls_back_to_the_container_hostname(
    fake_supervisor: FakeSupervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_supervisor.hostname = None
    monkeypatch.setattr(addon_config.socket, "gethostname", lambda: "container-host")
    async with aiohttp.ClientSession() as session:
        await announce(session, fake_supervisor.url, SUPERVISOR_TOKEN)
    assert fake_supervisor.announcements[0]["config"]["host"] == "container-host"


async def test_announce_does_not_retry_a_refusal(fake_supervisor: FakeSupervisor) -> None:
    fake_supervisor.allowed_services = ()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DiscoveryError, match="HTTP 403"):
            await announce(session, fake_supervisor.url, SUPERVISOR_TOKEN, retry_delay=0.01)
    assert fake_supervisor.attempts == 1
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DiscoveryError, match="HTTP 401"):
            await announce(session, fake_supervisor.url, "wrong-token", retry_delay=0.01)


async def test_announce_gives_up_when_the_supervisor_is_unreachable() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DiscoveryError, match="ClientConnectorError"):
            await announce(session, "http://127.0.0.1:9", "token", attempts=2, retry_delay=0.01)


def test_checkpoint_folds_the_write_ahead_log(tmp_path: Path) -> None:
    path = tmp_path / "grid.sqlite3"
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (v INTEGER)")
    writer.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(500)])
    writer.commit()
    wal = tmp_path / "grid.sqlite3-wal"
    assert wal.stat().st_size > 0
    assert checkpoint_databases(tmp_path) == [path]
    assert wal.stat().st_size == 0
    writer.close()
    # The database file alone now holds everything, as a backup copies it.
    copy = tmp_path / "copy.db"
    copy.write_bytes(path.read_bytes())
    assert sqlite3.connect(copy).execute("SELECT COUNT(*) FROM t").fetchone() == (500,)


def test_market_options_reach_the_grid(tmp_path: Path) -> None:
    options = parse_options(
        {
            "pricing_strategy": "allocation-static",
            "community_price": 60,
            "allocation_shares": ["c-1=3", " c-2 = 1 "],
        }
    )
    document = render_config(options, tmp_path, seed=SEED)
    grid = config_from_mapping(document["grid"])
    assert grid.pricing_strategy == "allocation-static"
    assert grid.allocation_shares == (("c-1", 3), ("c-2", 1))
    assert grid.market_parameters.community_price_micro == 60_000_000
    bidding = parse_options({"pricing_strategy": "pay-as-bid", "preferences": ["c-1=p-2, p-1"]})
    grid = config_from_mapping(render_config(bidding, tmp_path, seed=SEED)["grid"])
    assert grid.preferences == (("c-1", ("p-2", "p-1")),)
