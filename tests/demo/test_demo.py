"""``p2p-energy demo``: options, and the whole demo run as a newcomer runs it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from grid_server.cli import build_parser
from grid_server.grid.config import config_from_mapping
from grid_server.node.config import config_from_mapping as node_config_from_mapping
from grid_server.portal.auth import verify_password
from grid_server.portal.config import load_portal_config
from grid_server.simulator.demo import DemoError, DemoOptions, grid_document, options_from_args
from grid_server.simulator.runner import SimulationPlan
from tests.browser import CHROMIUM, launch_chromium, screenshot
from tests.security.grid_harness import hidden_fields

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _loopback_sockets(socket_enabled: None) -> None:
    """The Home Assistant test plugin disables sockets; the demo test uses loopback."""


def parse(*argv: str) -> DemoOptions:
    return options_from_args(build_parser().parse_args(["demo", *argv]))


def test_default_market_is_two_producers_and_five_consumers() -> None:
    options = parse()
    assert (options.port, options.node_port, options.households) == (8080, 14265, 7)
    plan = options.plan(tuple("A" * 81 for _ in range(5)))
    assert (plan.producers, plan.sources_per_producer, plan.consumers) == (2, 3, 5)
    assert options.slot_length() == 10
    assert plan.period_seconds == 10.0


@pytest.mark.parametrize(
    ("households", "split"), [(1, (0, 1)), (2, (1, 1)), (7, (2, 5)), (100, (29, 71))]
)
def test_households_scale_in_the_default_ratio(households: int, split: tuple[int, int]) -> None:
    assert SimulationPlan.split_households(households) == split


def test_bigger_markets_get_longer_slots() -> None:
    assert parse("--households", "100").slot_length() == 95
    assert parse("--households", "100", "--slot-seconds", "30").slot_length() == 30


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--households", "0"], "--households must be between"),
        (["--port", "0"], "--port must be a TCP port"),
        (["--port", "9000", "--node-port", "9000"], "must differ"),
        (["--slot-seconds", "2"], "--slot-seconds must be between 5 and 3600"),
        (["--min-weight-magnitude", "20"], "--min-weight-magnitude must be between 1 and 14"),
        (["--duration", "0"], "--duration must be positive"),
        (["--start-hour", "24"], "--start-hour must be from 0 to 23.99"),
        (["--speed", "0.5"], "--speed must be between 1 and 100000"),
    ],
)
def test_bad_options_are_explained(argv: list[str], message: str) -> None:
    with pytest.raises(DemoError, match=message):
        parse(*argv)


def test_grid_document_funds_the_wallets_and_protects_the_portal(tmp_path: Path) -> None:
    options = parse("--port", "9100", "--node-port", "9101")
    genesis = {"A" * 81: 5, "B" * 81: 7}
    document = grid_document(options, tmp_path, "C" * 81, genesis, "demo-password-1")
    grid = config_from_mapping(document["grid"])
    node = node_config_from_mapping(document["node"])
    portal = load_portal_config(document, environ={})
    assert (grid.port, grid.slot_seconds, grid.wallet_seed) == (9100, 10, "C" * 81)
    assert grid.settlement_delay_seconds <= grid.slot_seconds
    # The demo's households all register from this machine at once.
    assert grid.registration_burst >= 2 * options.households
    assert node.port == 9101
    assert dict(node.genesis) == genesis
    assert portal.password_hash is not None
    assert verify_password("demo-password-1", portal.password_hash)
    assert "demo-password-1" not in json.dumps(document)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DemoProcess:
    """``p2p-energy demo`` in a child process, with its output collected line by line."""

    def __init__(self, data_dir: Path, *argv: str) -> None:
        self.lines: list[str] = []
        self.port = free_port()
        self.node_port = free_port()
        command = [
            sys.executable,
            "-m",
            "grid_server.cli",
            "demo",
            "--port",
            str(self.port),
            "--node-port",
            str(self.node_port),
            "--data-dir",
            str(data_dir),
            *argv,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )

    async def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """Read output until a line matches ``pattern``."""
        assert self.process.stdout is not None
        stream = self.process.stdout
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        while time.monotonic() < deadline:
            line = await asyncio.to_thread(stream.readline)
            if not line:
                break
            text = line.decode(errors="replace").rstrip()
            self.lines.append(text)
            match = compiled.search(text)
            if match:
                return match
        output = "\n".join(self.lines)
        raise AssertionError(f"no line matching {pattern!r} in the demo's output:\n{output}")

    def rest(self, timeout: float) -> str:
        out, _ = self.process.communicate(timeout=timeout)
        self.lines += out.decode(errors="replace").splitlines()
        return "\n".join(self.lines)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoProcess]:
    # Weight 6 keeps proof of work cheap on a busy test machine; the protocol is the same.
    process = DemoProcess(
        tmp_path,
        "--slot-seconds",
        "10",
        "--seed",
        "7",
        "--duration",
        "240",
        "--min-weight-magnitude",
        "6",
    )
    try:
        yield process
    finally:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait()
        # The grid child runs in its own session; make sure it is gone too.
        log = tmp_path / "grid.log"
        assert log.exists()


async def portal_get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["data"]


@pytest.mark.slow
async def test_demo_trades_and_stops_cleanly_on_ctrl_c(demo: DemoProcess, tmp_path: Path) -> None:
    portal = (await demo.wait_for_line(r"Portal\s+(\S+)", timeout=180)).group(1)
    password = (await demo.wait_for_line(r"Password\s+(\S+)", timeout=10)).group(1)
    assert portal == f"http://127.0.0.1:{demo.port}/portal/"
    # Households publish; the grid settles slots and bills consumers.
    await demo.wait_for_line(r"\[\d\d:\d\d:\d\d\] day \d\d:\d\d \| produced", timeout=60)
    await demo.wait_for_line(r"[1-9]\d* slots settled", timeout=90)

    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(f"{portal}login") as page:
            # The sign-in form's CSRF token, as a browser sends it.
            form = {"password": password, **hidden_fields(await page.text())}
        async with session.post(f"{portal}login", data=form, allow_redirects=False) as response:
            assert response.status == 302
        overview = await portal_get(session, f"{portal}api/overview")
        assert overview["producers"]["active"] == 2
        assert overview["consumers"]["active"] == 5
        assert overview["consumers"]["usageKwh"] > 0
        assert overview["settlements"]["count"] >= 1
        assert overview["settlements"]["failedInvariants"] == 0
        producers = await portal_get(session, f"{portal}api/entities?type=producer")
        first = await portal_get(session, f"{portal}api/entities/{producers['items'][0]['id']}")
        assert len(first["sources"]) == 3
        assert first["channels"][0]["helloSeen"] is True
        consumers = await portal_get(session, f"{portal}api/entities?type=consumer")
        assert sum(item["billed"] for item in consumers["items"]) > 0
        # Synced means the newest milestone is solid too; right after one is issued it may
        # not be yet, so ask again for a little while.
        for _ in range(60):
            node = await portal_get(session, f"{portal}api/node")
            if node["node"]["synced"]:
                break
            await asyncio.sleep(0.5)
        assert node["node"]["synced"] is True, node

    if CHROMIUM.exists():
        await screenshot_live_portal(portal, password)

    # Ctrl-C: the demo finishes the period, stops the grid and exits 0.
    demo.process.send_signal(signal.SIGINT)
    output = demo.rest(timeout=90)
    assert demo.process.returncode == 0, output
    assert "Stopping the households..." in output
    assert "Stopping the grid and its node..." in output
    assert output.rstrip().endswith("Stopped.")
    assert "Traceback" not in output
    # Both ports are free again: the grid and its node are gone.
    for port in (demo.port, demo.node_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert "grid stopped" in (tmp_path / "grid.log").read_text(encoding="utf-8")


async def screenshot_live_portal(portal: str, password: str) -> None:
    async with launch_chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(portal)
        await page.fill("#password", password)
        await page.click("button[type=submit]")
        await page.wait_for_selector("#cards .card")
        for _ in range(50):
            drawn = await page.evaluate(
                "() => !!(window.Chart && Chart.getChart(document.getElementById('energy-chart')))"
            )
            if drawn:
                break
            await asyncio.sleep(0.1)
        await screenshot(page, "demo-portal")
