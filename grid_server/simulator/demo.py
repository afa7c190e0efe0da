"""``p2p-energy demo``: a node, a grid and simulated households trading, in one command.

The grid (with its node in-process) runs as a child process with its own
configuration in a data folder; the households run here and speak the real
protocol to it: MAM channels on the node, HTTP registration with the grid and with
their producers. The terminal shows one line per period; the portal shows the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import aiohttp
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.trinary import random_trytes

from ..portal.app import CSRF_FIELD, login_form_token
from ..portal.auth import hash_password
from .curves import SimulationError
from .runner import (
    DEFAULT_SOURCES_PER_PRODUCER,
    MAX_MIN_WEIGHT_MAGNITUDE,
    PeriodReport,
    Simulation,
    SimulationPlan,
    TangleSettings,
    genesis_for,
    new_wallets,
)

if TYPE_CHECKING:
    import argparse

DEFAULT_HOUSEHOLDS: Final = 7
CONSUMER_FUNDS: Final = 10_000_000
GRID_FUNDS: Final = 1_000_000_000
_LOG_FILE: Final = "grid.log"
_PASSWORD_ALPHABET: Final = "abcdefghijkmnopqrstuvwxyz23456789"


class DemoError(RuntimeError):
    """The demo could not start; the message says what to do."""


@dataclass(frozen=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    node_port: int = 14265
    households: int = DEFAULT_HOUSEHOLDS
    slot_seconds: int | None = None
    speed: float = 180.0
    start_hour: float = 9.0
    min_weight_magnitude: int = 9
    duration: float | None = None
    data_dir: Path | None = None
    password: str | None = None
    random_seed: int | None = None

    def plan(self, wallets: tuple[str, ...]) -> SimulationPlan:
        producers, consumers = SimulationPlan.split_households(self.households)
        return SimulationPlan(
            producers=producers,
            consumers=consumers,
            period_seconds=float(self.slot_length()),
            speed=self.speed,
            start_hour=self.start_hour,
            random_seed=self.random_seed,
            payment_cooldown=max(30.0, 3.0 * self.slot_length()),
            consumer_wallets=wallets,
            tangle=TangleSettings(min_weight_magnitude=self.min_weight_magnitude),
        )

    def slot_length(self) -> int:
        """The slot length: given, or long enough for every channel to publish in it."""
        if self.slot_seconds is not None:
            return self.slot_seconds
        producers, consumers = SimulationPlan.split_households(self.households)
        channels = producers * (1 + DEFAULT_SOURCES_PER_PRODUCER) + consumers
        # About 0.5 s of work (message, proof of work, following) per channel.
        return max(10, 5 * math.ceil(channels * 0.5 / 5))


def demo_password() -> str:
    """A readable random password for the portal (printed once at start)."""
    return "-".join("".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(4)) for _ in range(3))


def grid_document(
    options: DemoOptions, data_dir: Path, wallet_seed: str, genesis: dict[str, int], password: str
) -> dict[str, Any]:
    """The grid's configuration file: fast slots, a funded wallet, the portal password."""
    slot = options.slot_length()
    return {
        "grid": {
            "host": options.host,
            "port": options.port,
            "data_dir": str(data_dir),
            "slot_seconds": slot,
            # Settle soon after a slot ends: the households publish right away.
            "settlement_delay_seconds": min(5.0, slot / 2),
            "follow_interval": max(1.0, slot / 5),
            "publish_interval": 1.0,
            "payments_interval": max(2.0, slot / 3),
            "payout_interval": max(2.0, slot / 3),
            "wallet_seed": wallet_seed,
            "wallet_genesis_balance": GRID_FUNDS,
            "min_weight_magnitude": options.min_weight_magnitude,
            # Every household registers from this machine at once (and again on a restart).
            "registration_burst": max(200, 2 * options.households),
            "log_format": "text",
            "log_level": "INFO",
        },
        "node": {
            "host": options.host,
            "port": options.node_port,
            "min_weight_magnitude": options.min_weight_magnitude,
            "genesis": genesis,
            "coordinator": {"interval": 2.0},
        },
        "portal": {"password_hash": hash_password(password)},
    }


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


class Demo:
    """Runs the grid process and the households until stopped."""

    def __init__(self, options: DemoOptions, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.out = out
        self._owns_data = options.data_dir is None
        self.data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="p2p-energy-demo-"))
        self.password = options.password or demo_password()
        self.grid_url = _url(options.host, options.port)
        self.node_url = _url(options.host, options.node_port)
        self.portal_url = f"{self.grid_url}/portal/"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.reports: list[PeriodReport] = []
        # True once the households trade (a stop then waits for the period to end).
        self.trading = False
        self.plan_period = float(options.slot_length())

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def prepare(self) -> SimulationPlan:
        """Wallets, genesis and the configuration file; returns the simulation plan."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        producers, consumers = SimulationPlan.split_households(self.options.households)
        self.say(
            f"Preparing {producers} producers with {DEFAULT_SOURCES_PER_PRODUCER} sources each "
            f"and {consumers} consumers (slots of {self.options.slot_length()} s)..."
        )
        wallet_seed = random_trytes()
        wallets = new_wallets(consumers)
        genesis = genesis_for(wallets, CONSUMER_FUNDS)
        genesis[generate_address(wallet_seed, 0, 2)] = GRID_FUNDS
        document = grid_document(self.options, self.data_dir, wallet_seed, genesis, self.password)
        path = self.data_dir / "demo.json"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
        return self.options.plan(wallets)

    def start_grid(self) -> None:
        command = [
            sys.executable,
            "-m",
            "grid_server.cli",
            "grid",
            "--config",
            str(self.data_dir / "demo.json"),
            "--stop-with-parent",
        ]
        self._log = (self.data_dir / _LOG_FILE).open("ab")
        # Its own session: Ctrl-C reaches the demo, which then stops the grid in order;
        # --stop-with-parent stops it should the demo be killed outright.
        self._process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_for_grid(self, session: aiohttp.ClientSession, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise DemoError(
                    f"the grid stopped (exit code {self._process.returncode}):\n{self.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{self.grid_url}/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.5)
        raise DemoError(f"the grid did not become healthy in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = (self.data_dir / _LOG_FILE).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no grid log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop_grid(self, timeout: float = 40.0) -> int | None:
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.say("The grid did not stop in time; killing it.")
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return process.returncode

    def cleanup(self) -> None:
        if self._owns_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def banner(self) -> None:
        self.say("")
        self.say("  P2P Energy Grid demo is running")
        self.say(f"  Portal    {self.portal_url}")
        self.say(f"  Password  {self.password}")
        self.say(f"  Node      {self.node_url}  (explorer: {self.node_url}/explorer/)")
        self.say(f"  Data      {self.data_dir}  (grid log: {_LOG_FILE})")
        self.say("  Press Ctrl-C to stop.")
        self.say("")

    async def market_status(self, session: aiohttp.ClientSession) -> dict[str, Any] | None:
        """The portal's overview, read as the operator would (None while unavailable)."""
        try:
            async with session.get(f"{self.portal_url}api/overview") as response:
                if response.status == 401:
                    await self._login(session)
                    return None
                body = await response.json()
                data = body.get("data")
                return data if isinstance(data, dict) else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def _login(self, session: aiohttp.ClientSession) -> None:
        """Sign in as a browser does: the form (its CSRF token and cookie), then the post."""
        async with session.get(f"{self.portal_url}login", allow_redirects=False) as page:
            token = login_form_token(await page.text())
        async with session.post(
            f"{self.portal_url}login",
            data={"password": self.password, CSRF_FIELD: token},
            allow_redirects=False,
        ):
            pass

    def progress(self, report: PeriodReport, market: dict[str, Any] | None) -> str:
        end = datetime.fromtimestamp(report.period.end_ms / 1000).strftime("%H:%M:%S")
        parts = [
            f"[{end}] day {report.simulated_time:%H:%M}",
            f"produced {report.produced_kwh:7.3f} kWh",
            f"used {report.consumed_kwh:7.3f} kWh",
            f"owed {report.owed:>7} i",
            f"paid {report.paid:>7} i",
        ]
        if market is not None:
            settlements = market.get("settlements", {})
            price = settlements.get("latestPrice")
            parts.append(f"price {price:6.2f} i/kWh" if price is not None else "price    –  ")
            parts.append(f"{settlements.get('count', 0)} slots settled")
        if report.seconds > report.period_seconds:
            parts.append(f"behind: {report.seconds:.1f} s for a {report.period_seconds:.0f} s slot")
        if report.errors:
            parts.append(f"{len(report.errors)} errors (first: {report.errors[0]})")
        return " | ".join(parts)

    async def run(self, stop: asyncio.Event) -> None:
        plan = self.prepare()
        self.say(f"Starting the grid and its node (log in {self.data_dir / _LOG_FILE})...")
        self.start_grid()
        timeout = aiohttp.ClientTimeout(total=120)
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address host
        async with aiohttp.ClientSession(timeout=timeout, cookie_jar=jar) as session:
            await self.wait_for_grid(session)
            self.say("Households are joining the grid...")
            simulation = Simulation(plan, session, self.node_url, self.grid_url)
            async with simulation:
                await self._login(session)
                self.banner()
                self.trading = True
                deadline = (
                    None
                    if self.options.duration is None
                    else time.monotonic() + self.options.duration
                )

                async def watch_deadline() -> None:
                    if deadline is not None:
                        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                        stop.set()

                watcher = asyncio.create_task(watch_deadline())
                pending: list[asyncio.Task[None]] = []

                def report(item: PeriodReport) -> None:
                    if self._process is not None and self._process.poll() is not None:
                        code = self._process.returncode
                        raise DemoError(f"the grid stopped (exit code {code}):\n{self.log_tail()}")
                    self.reports.append(item)

                    async def show() -> None:
                        self.say(self.progress(item, await self.market_status(session)))

                    pending.append(asyncio.create_task(show()))

                try:
                    await simulation.run(stop, report)
                finally:
                    watcher.cancel()
                    await asyncio.gather(watcher, *pending, return_exceptions=True)


def add_demo_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``p2p-energy demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="run a node, a grid and simulated households trading (watch it in the portal)",
        description=(
            "Start the grid with its node and a market of simulated households that publish "
            "realistic solar output and household use over MAM, register over HTTP, get "
            "billed and pay. Prints the portal's address and password; Ctrl-C stops it."
        ),
    )
    parser.add_argument("--port", type=int, default=8080, help="grid and portal port (8080)")
    parser.add_argument("--node-port", type=int, default=14265, help="node port (14265)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--households",
        type=int,
        default=DEFAULT_HOUSEHOLDS,
        help="homes to simulate (7: 2 producers with 3 sources each and 5 consumers)",
    )
    parser.add_argument("--slot-seconds", type=int, help="settlement slot (default: by size)")
    parser.add_argument(
        "--speed", type=float, default=180.0, help="simulated seconds per second (180)"
    )
    parser.add_argument("--start-hour", type=float, default=9.0, help="simulated start (9.0)")
    parser.add_argument("--min-weight-magnitude", type=int, default=9, help="proof of work (9)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--data-dir", type=Path, help="keep the demo's data here")
    parser.add_argument("--seed", type=int, help="random seed of the households' curves")
    parser.set_defaults(handler=run_demo)


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    if not 1 <= args.households <= 100_000:
        raise DemoError("--households must be between 1 and 100000")
    for name in ("port", "node_port"):
        if not 1 <= getattr(args, name) <= 65_535:
            raise DemoError(f"--{name.replace('_', '-')} must be a TCP port (1-65535)")
    if args.port == args.node_port:
        raise DemoError("--port and --node-port must differ")
    if args.slot_seconds is not None and not 5 <= args.slot_seconds <= 3600:
        raise DemoError("--slot-seconds must be between 5 and 3600")
    if not 1 <= args.min_weight_magnitude <= MAX_MIN_WEIGHT_MAGNITUDE:
        raise DemoError(f"--min-weight-magnitude must be between 1 and {MAX_MIN_WEIGHT_MAGNITUDE}")
    if not 0 <= args.start_hour < 24:
        raise DemoError("--start-hour must be from 0 to 23.99")
    if not 1 <= args.speed <= 100_000:
        raise DemoError("--speed must be between 1 and 100000")
    if args.duration is not None and args.duration <= 0:
        raise DemoError("--duration must be positive")
    return DemoOptions(
        host=args.host,
        port=args.port,
        node_port=args.node_port,
        households=args.households,
        slot_seconds=args.slot_seconds,
        speed=args.speed,
        start_hour=args.start_hour,
        min_weight_magnitude=args.min_weight_magnitude,
        duration=args.duration,
        data_dir=args.data_dir,
        random_seed=args.seed,
    )


async def _main(demo: Demo) -> None:
    """Run the demo until Ctrl-C (or --duration); the period in progress is finished."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = asyncio.create_task(demo.run(stop))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({runner, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not runner.done():
            demo.say("\nStopping the households...")
            if demo.trading:
                # The loop ends after the period in progress; give it that long.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(runner), demo.plan_period + 30)
            if not runner.done():
                runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            if not runner.cancelled() and runner.exception() is not None:
                raise runner.exception()  # type: ignore[misc]
        else:
            runner.result()
    finally:
        stopped.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run_demo(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except DemoError as err:
        print(f"p2p-energy demo: {err}", file=sys.stderr)
        return 2
    demo = Demo(options)
    status = 0
    try:
        asyncio.run(_main(demo))
    except (DemoError, SimulationError, OSError) as err:
        print(f"p2p-energy demo: {err}", file=sys.stderr)
        status = 1
    finally:
        demo.say("Stopping the grid and its node...")
        code = demo.stop_grid()
        if code not in (None, 0, -signal.SIGTERM):
            demo.say(f"The grid exited with code {code}; its log:\n{demo.log_tail()}")
        demo.cleanup()
        demo.say("Stopped.")
    return status
