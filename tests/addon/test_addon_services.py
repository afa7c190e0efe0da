"""The add-on's files, and its service scripts run outside Docker.

Docker cannot run here, so the scripts the s6 services exec are started directly,
with ``/data`` and the Supervisor pointed at a temporary folder and a fake.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import aiohttp
import pytest
import yaml
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.signing import generate_address

from custom_components.p2p_energy.const import DOMAIN
from grid_server.addon_config import AddonConfigError, AddonOptions, parse_options, render_config
from grid_server.grid.config import GridConfig, StatementPeriod, config_from_mapping
from grid_server.grid.currency import ISO_4217_CODES, CurrencyRate
from grid_server.grid.settlement.pricing import DEFAULT_STRATEGY, STRATEGY_NAMES
from grid_server.portal.auth import verify_password
from tests.security.grid_harness import Portal

from .conftest import SUPERVISOR_TOKEN

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .conftest import FakeSupervisor

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon" / "p2p_energy_grid"
ROOTFS = ADDON / "rootfs"
S6 = ROOTFS / "etc" / "s6-overlay" / "s6-rc.d"
BIN = ROOTFS / "usr" / "bin"
PYTHON = ROOT / ".venv" / "bin" / "python"
# supervisor/apps/options.py: the option types a schema may use.
SCHEMA_ELEMENT = re.compile(
    r"^(?:|bool|email|url|port|device(?:\((?:subsystem=[a-z]+)\))?"
    r"|str(?:\((\d+)?,(\d+)?\))?|password(?:\((\d+)?,(\d+)?\))?"
    r"|int(?:\((-?\d+)?,(-?\d+)?\))?|float(?:\((-?\d*\.?\d+)?,(-?\d*\.?\d+)?\))?"
    r"|match\((.*)\)|list\((.+)\))\??$"
)
SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
SEED = "P" * 81


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_repository_and_addon_configuration_are_complete() -> None:
    repository = load(ROOT / "addon" / "repository.yaml")
    assert set(repository) >= {"name", "url", "maintainer"}
    config = load(ADDON / "config.yaml")
    for key in ("name", "version", "slug", "description", "arch"):
        assert config[key], key
    assert SLUG.fullmatch(config["slug"])
    assert set(config["arch"]) <= {"aarch64", "amd64"}
    assert config["ingress"] is True
    assert config["ingress_port"] == 8080
    assert config["ingress_entry"] == "portal/"
    assert config["discovery"] == [DOMAIN]
    assert config["backup"] == "hot"
    assert config["init"] is False  # s6-overlay is PID 1
    assert re.fullmatch(r"http://\[HOST\]:\[PORT:8080\]/health", config["watchdog"])
    assert set(config["ports"]) == {"8080/tcp", "14265/tcp"}
    assert set(config["ports_description"]) == set(config["ports"])
    assert config["backup_pre"] == "/usr/bin/p2p-energy-addon-backup-pre"
    assert (ROOTFS / config["backup_pre"].lstrip("/")).is_file()
    # The add-on's version is the integration's and the changelog's newest entry.
    manifest = json.loads((ROOT / "custom_components" / DOMAIN / "manifest.json").read_text())
    assert config["version"] == manifest["version"]
    changelog = (ADDON / "CHANGELOG.md").read_text(encoding="utf-8")
    newest = re.search(r"^## (\S+)", changelog, re.MULTILINE)
    assert newest is not None
    assert newest[1] == config["version"]


def test_pricing_strategies_everywhere_are_the_settlement_registry() -> None:
    """The add-on's schema, its documentation and the README offer exactly the registry."""
    config = load(ADDON / "config.yaml")
    strategies = re.fullmatch(r"list\((.+)\)", config["schema"]["pricing_strategy"])
    assert strategies is not None
    assert sorted(strategies[1].split("|")) == sorted(STRATEGY_NAMES)
    assert config["options"]["pricing_strategy"] == DEFAULT_STRATEGY
    for strategy in STRATEGY_NAMES:
        assert parse_options({"pricing_strategy": strategy}).pricing_strategy == strategy
    description = load(ADDON / "translations" / "en.yaml")["configuration"]["pricing_strategy"]
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (docs_row,) = (line for line in docs.splitlines() if line.startswith("| `pricing_strategy`"))
    (readme_row,) = (
        line for line in readme.splitlines() if line.startswith("| `pricing_strategy`")
    )
    named = re.compile(r"[a-z]+(?:-[a-z]+)*")
    for text in (description["description"], docs_row, readme_row):
        listed = set(named.findall(text))
        assert set(STRATEGY_NAMES) <= listed, text
    for row in (docs_row, readme_row):
        assert set(re.findall(r"`([a-z-]+)`", row)) - {"pricing_strategy"} == set(STRATEGY_NAMES)


def test_options_schema_matches_the_options_parser() -> None:
    config = load(ADDON / "config.yaml")
    schema: dict[str, Any] = config["schema"]
    options: dict[str, Any] = config["options"]
    for name, element in schema.items():
        elements = element if isinstance(element, list) else [element]
        for item in elements:
            assert SCHEMA_ELEMENT.fullmatch(item), f"{name}: {item}"
    # Every default is in the schema; every option the Supervisor may pass is parsed.
    assert set(options) <= set(schema)
    assert set(schema) == set(AddonOptions.__dataclass_fields__)
    # Optional ("?") options have no default, as the Supervisor requires.
    for name, element in schema.items():
        if isinstance(element, str) and element.endswith("?"):
            assert name not in options, name
    # The defaults are valid options.
    assert parse_options(options) == parse_options({**options})
    translations = load(ADDON / "translations" / "en.yaml")
    assert set(translations["configuration"]) == set(schema)
    for entry in translations["configuration"].values():
        assert entry["name"]
        assert entry["description"]
    assert set(translations["network"]) == set(config["ports"])


def test_dockerfile_pins_its_base_and_installs_the_services() -> None:
    dockerfile = (ADDON / "Dockerfile").read_text(encoding="utf-8")
    # The base image is the default of ARG BUILD_FROM (tests/test_release_path.py checks
    # the rest of the Dockerfile and its build context).
    base = re.search(r"^ARG BUILD_FROM=(\S+)$", dockerfile, re.MULTILINE)
    assert base is not None
    image, _, tag = base[1].rpartition(":")
    assert image == "ghcr.io/home-assistant/base-python"
    assert re.fullmatch(r"3\.13-alpine3\.\d+", tag)
    assert "COPY addon/p2p_energy_grid/rootfs /" in dockerfile
    assert "p2p-energy-grid[postgresql]" in dockerfile
    assert 'io.hass.type="addon"' in dockerfile
    for name in ("icon.png", "logo.png"):
        header = (ADDON / name).read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n"
        width = int.from_bytes(header[16:20], "big")
        height = int.from_bytes(header[20:24], "big")
        if name == "icon.png":
            assert width == height == 128
        else:
            assert (width, height) == (250, 100)
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    for option in load(ADDON / "config.yaml")["schema"]:
        assert f"`{option}`" in docs, option


def test_s6_services_are_wired() -> None:
    services = {path.name for path in S6.iterdir() if path.is_dir()} - {"user"}
    assert services == {
        "init-p2p-energy",
        "p2p-energy-node",
        "p2p-energy-grid",
        "p2p-energy-discovery",
    }
    assert {path.name for path in (S6 / "user" / "contents.d").iterdir()} == services
    order = {
        "init-p2p-energy": "base",
        "p2p-energy-node": "init-p2p-energy",
        "p2p-energy-grid": "p2p-energy-node",
        "p2p-energy-discovery": "p2p-energy-grid",
    }
    for service, dependency in order.items():
        folder = S6 / service
        kind = (folder / "type").read_text().strip()
        assert kind in ("oneshot", "longrun")
        assert [p.name for p in (folder / "dependencies.d").iterdir()] == [dependency]
        run = folder / "run"
        assert os.access(run, os.X_OK)
        lines = run.read_text().splitlines()
        assert lines[0] == "#!/command/with-contenv bash"
        target = lines[-1].removeprefix("exec ")
        assert (ROOTFS / target.lstrip("/")).is_file()
        assert os.access(ROOTFS / target.lstrip("/"), os.X_OK)
        if kind == "oneshot":
            assert (folder / "up").read_text().strip() == f"/etc/s6-overlay/s6-rc.d/{service}/run"
        else:
            assert os.access(folder / "finish", os.X_OK)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Services:
    """The add-on's scripts running against a temporary /data."""

    def __init__(self, data: Path, supervisor: FakeSupervisor) -> None:
        self.data = data
        self.grid_port = free_port()
        self.node_port = free_port()
        self.env = {
            **os.environ,
            "P2P_ADDON_PYTHON": str(PYTHON),
            "P2P_ADDON_DATA": str(data),
            "P2P_ADDON_INGRESS_ADDRESSES": "127.0.0.1",
            "P2P_ADDON_GRID_PORT": str(self.grid_port),
            "P2P_ADDON_NODE_PORT": str(self.node_port),
            "SUPERVISOR_URL": supervisor.url,
            "SUPERVISOR_TOKEN": SUPERVISOR_TOKEN,
            "PYTHONUNBUFFERED": "1",
        }
        self.running: list[subprocess.Popen[bytes]] = []

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(BIN / script)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start(self, script: str) -> subprocess.Popen[bytes]:
        log = (self.data / f"{script}.log").open("wb")
        process = subprocess.Popen(
            ["bash", str(BIN / script)], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.running.append(process)
        return process

    def log(self, script: str) -> str:
        return (self.data / f"{script}.log").read_text(encoding="utf-8", errors="replace")

    def stop(self) -> list[int]:
        codes = []
        for process in reversed(self.running):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            codes.append(process.returncode)
        return codes


@pytest.fixture
async def services(tmp_path: Path, fake_supervisor: FakeSupervisor) -> AsyncIterator[Services]:
    running = Services(tmp_path, fake_supervisor)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop)


async def wait_healthy(url: str, services: Services, timeout: float = 120) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            for process in services.running:
                assert process.poll() is None, services.log("p2p-energy-addon-grid")
            try:
                async with session.get(url) as response:
                    body = await response.json()
                    if response.status == 200 and body.get("node") == "ok":
                        return dict(body)
            except (aiohttp.ClientError, ValueError):
                pass
            await asyncio.sleep(0.5)
    raise AssertionError(
        f"the grid did not become healthy:\n{services.log('p2p-energy-addon-grid')}"
    )


@pytest.mark.slow
async def test_service_scripts_start_node_and_grid_and_announce_them(
    services: Services, fake_supervisor: FakeSupervisor
) -> None:
    options = {
        "slot_seconds": 60,
        "pricing_strategy": "merit-order",
        "import_price": 90,
        "export_price": 15,
        "grid_cut_percent": 5,
        "wallet_seed": SEED,
        "wallet_genesis_balance": 777_000,
        "neighbors": [],
        "portal_password": "addon-portal-password",
        "min_weight_magnitude": 3,
        "milestone_interval": 1,
        "log_level": "info",
    }
    (services.data / "options.json").write_text(json.dumps(options), encoding="utf-8")

    rendered = services.run("p2p-energy-addon-init")
    assert rendered.returncode == 0, rendered.stderr
    document = json.loads((services.data / "p2p-energy.json").read_text(encoding="utf-8"))
    assert document["grid"]["pricing_strategy"] == "merit-order"
    assert verify_password("addon-portal-password", document["portal"]["password_hash"])

    services.start("p2p-energy-addon-node")
    services.start("p2p-energy-addon-grid")
    grid_url = f"http://127.0.0.1:{services.grid_port}"
    node_url = f"http://127.0.0.1:{services.node_port}"
    health = await wait_healthy(f"{grid_url}/health", services)
    assert health["database"] == "ok"
    assert (services.data / "grid.sqlite3").exists()
    assert (services.data / "node.sqlite3").exists()

    async with aiohttp.ClientSession() as session:
        # The separate node credits the wallet the grid spends from.
        treasury = generate_address(SEED, 0, 2)
        balances = await IriClient(session, node_url).get_balances([treasury])
        assert balances.balances == [777_000]
        # Through ingress (the trusted address) the portal needs no password.
        headers = {"X-Ingress-Path": "/api/hassio_ingress/xyz"}
        async with session.get(f"{grid_url}/portal/api/session", headers=headers) as response:
            assert response.status == 200
            assert (await response.json())["data"]["via"] == "ingress"
        async with session.get(f"{grid_url}/portal/api/session") as response:
            assert response.status == 401
        # Elsewhere the password opens it (the sign-in form carries its CSRF token).
        assert await Portal(session, grid_url).sign_in("addon-portal-password") == 302

    announced = await asyncio.to_thread(services.run, "p2p-energy-addon-discovery")
    assert announced.returncode == 0, announced.stderr
    assert "announced to Home Assistant" in announced.stdout
    assert fake_supervisor.announcements == [
        {
            "service": DOMAIN,
            "config": {
                "host": "a0d7b954-p2p-energy-grid",
                "port": services.grid_port,
                "node_port": services.node_port,
                "grid_url": f"http://a0d7b954-p2p-energy-grid:{services.grid_port}",
                "node_url": f"http://a0d7b954-p2p-energy-grid:{services.node_port}",
            },
        }
    ]

    backup = await asyncio.to_thread(services.run, "p2p-energy-addon-backup-pre")
    assert backup.returncode == 0, backup.stderr
    assert "checkpointed" in backup.stdout
    assert "grid.sqlite3" in backup.stdout
    assert "node.sqlite3" in backup.stdout

    codes = await asyncio.to_thread(services.stop)
    assert codes == [0, 0], services.log("p2p-energy-addon-grid")


def test_a_bad_option_stops_the_init_step(tmp_path: Path, fake_supervisor: FakeSupervisor) -> None:
    services = Services(tmp_path, fake_supervisor)
    (tmp_path / "options.json").write_text(json.dumps({"export_price": 500}), encoding="utf-8")
    result = services.run("p2p-energy-addon-init")
    assert result.returncode == 2
    assert "export_price (feed-in) must not exceed import_price" in result.stderr
    assert not (tmp_path / "p2p-energy.json").exists()


def test_discovery_failure_does_not_stop_the_addon(
    tmp_path: Path, fake_supervisor: FakeSupervisor
) -> None:
    services = Services(tmp_path, fake_supervisor)
    services.env.pop("SUPERVISOR_TOKEN")
    (tmp_path / "options.json").write_text("{}", encoding="utf-8")
    assert services.run("p2p-energy-addon-init").returncode == 0
    result = services.run("p2p-energy-addon-discovery")
    assert result.returncode == 0
    assert "no SUPERVISOR_TOKEN, skipping discovery" in result.stderr


def test_grid_does_not_start_without_its_node(
    tmp_path: Path, fake_supervisor: FakeSupervisor
) -> None:
    services = Services(tmp_path, fake_supervisor)
    (tmp_path / "options.json").write_text("{}", encoding="utf-8")
    assert services.run("p2p-energy-addon-init").returncode == 0
    result = subprocess.run(
        [str(PYTHON), "-m", "grid_server.addon_config", "run", "grid", "--node-wait", "1"],
        env=services.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "did not answer" in result.stderr


def test_currency_and_statement_options_reach_the_grid_configuration(tmp_path: Path) -> None:
    """The schema's currency options, their translations and the grid's validation agree."""
    config = load(ADDON / "config.yaml")
    schema: dict[str, Any] = config["schema"]
    code = re.fullmatch(r"match\((.+)\)\?", schema["currency"])
    assert code is not None
    assert all(re.fullmatch(code[1], iso) for iso in ISO_4217_CODES)
    assert schema["currency_per_million_iota"] == "float(0,)?"
    periods = re.fullmatch(r"list\((.+)\)", schema["statement_period"])
    assert periods is not None
    assert periods[1].split("|") == list(get_args(StatementPeriod))
    assert config["options"]["statement_period"] == GridConfig().statement_period
    options = parse_options(
        {
            "currency": "eur",
            "currency_per_million_iota": 0.25,
            "statement_period": "quarter",
            "statement_timezone": "Europe/Vienna",
            "statement_fee": 250,
        }
    )
    assert schema["statement_fee"] == "int(0,)"
    assert config["options"]["statement_fee"] == GridConfig().statement_fee == 0
    document = render_config(options, tmp_path, seed="A" * 81)
    grid = config_from_mapping(document["grid"])
    assert grid.currency_rate == CurrencyRate("EUR", Decimal("0.25"))
    assert (grid.statement_period, grid.statement_timezone) == ("quarter", "Europe/Vienna")
    assert grid.statement_fee == 250
    plain = render_config(parse_options({}), tmp_path, seed="A" * 81)
    assert config_from_mapping(plain["grid"]).currency_rate is None
    for bad, named in (
        ({"currency": "EUR"}, "together"),
        ({"currency_per_million_iota": 1.0}, "together"),
        ({"currency": "ABC", "currency_per_million_iota": 1.0}, "option currency:"),
        ({"currency": "EUR", "currency_per_million_iota": 0}, "currency_per_million_iota"),
        ({"statement_period": "week"}, "statement_period"),
        ({"statement_fee": -1}, "statement_fee"),
    ):
        with pytest.raises(AddonConfigError, match=named):
            parse_options(bad)
    with pytest.raises(AddonConfigError, match="statement_timezone"):
        render_config(parse_options({"statement_timezone": "Mars/Base"}), tmp_path, seed="A" * 81)
