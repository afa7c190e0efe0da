"""``p2p-energy node`` and ``p2p-energy grid`` as real processes for end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

CONSOLE_SCRIPT = Path(sys.executable).parent / "p2p-energy"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def toml(document: dict[str, Any]) -> str:
    """A small TOML writer for configuration tables (strings, numbers, nested tables)."""
    lines: list[str] = []

    def table(prefix: str, values: dict[str, Any]) -> None:
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{json.dumps(key)} = {json.dumps(value)}")
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{prefix}.{json.dumps(key)}" if prefix else json.dumps(key), value)

    table("", document)
    return "\n".join(lines) + "\n"


class Service:
    """One running console-script process with its log file."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.args = args
        self.log = log
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(CONSOLE_SCRIPT), *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait for the graceful exit; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.tail()}")
            if ready():
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not become ready:\n{self.tail()}")


def _answers(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> bool:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def node_ready(url: str) -> bool:
    return _answers(
        url,
        json.dumps({"command": "getNodeInfo"}).encode(),
        {"X-IOTA-API-Version": "1", "Content-Type": "application/json"},
    )


def grid_ready(url: str) -> bool:
    return _answers(url + "/health")


@contextlib.contextmanager
def services(directory: Path) -> Iterator[list[Service]]:
    """Collects started services and kills whatever still runs at the end."""
    started: list[Service] = []
    try:
        yield started
    finally:
        for service in started:
            service.kill()


def environment(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["P2P_ENERGY_DATA_DIR"] = str(directory)
    env.pop("P2P_ENERGY_GRID_WALLET_SEED", None)
    return env


def node_service(
    directory: Path, env: dict[str, str], *, genesis: dict[str, int], min_weight_magnitude: int
) -> tuple[Service, str]:
    """A loopback node on SQLite in ``directory`` (configuration written there), and its URL."""
    port = free_port()
    config = directory / "node.toml"
    config.write_text(
        toml(
            {
                "node": {
                    "host": "127.0.0.1",
                    "port": port,
                    "database": f"sqlite:///{directory / 'node.sqlite3'}",
                    "min_weight_magnitude": min_weight_magnitude,
                    "genesis": genesis,
                    "coordinator": {"interval": 0.5},
                }
            }
        )
    )
    service = Service("node", ["node", "--config", str(config)], directory / "node.log", env)
    return service, f"http://127.0.0.1:{port}"


def grid_service(
    directory: Path,
    env: dict[str, str],
    *,
    database: str,
    node_url: str,
    settings: dict[str, Any],
) -> tuple[Service, str]:
    """A loopback grid with ``settings`` as its ``[grid]`` configuration, and its URL."""
    port = free_port()
    config = directory / "grid.toml"
    config.write_text(toml({"grid": settings}))
    args = [
        "grid",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--database", database,
        "--node-url", node_url,
        "--config", str(config),
    ]  # fmt: skip
    return Service("grid", args, directory / "grid.log", env), f"http://127.0.0.1:{port}"


def start_node_then_grid(node: Service, node_url: str, grid: Service, grid_url: str) -> None:
    """The grid follows the node, so the node answers before the grid starts."""
    node.start()
    node.wait_until(lambda: node_ready(node_url))
    grid.start()
    grid.wait_until(lambda: grid_ready(grid_url))
