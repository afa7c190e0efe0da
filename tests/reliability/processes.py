"""Real ``p2p-energy`` processes on loopback for the reliability, fuzz and scale suites.

Each service runs as its own process (``p2p-energy node`` / ``p2p-energy grid``)
so a test can kill it with SIGKILL and start it again on the same data.
"""

from __future__ import annotations

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
from typing import Any

CONSOLE_SCRIPT = Path(sys.executable).parent / "p2p-energy"
COORDINATOR_SEED = "RELIABILITY9COORDINATOR".ljust(81, "9")
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def write_toml(path: Path, document: dict[str, Any]) -> None:
    """A TOML file from plain values and (nested) tables."""
    lines: list[str] = []

    def table(prefix: str, values: dict[str, Any]) -> None:
        if prefix:
            lines.append(f"\n[{prefix}]")
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items() if k not in nested)
        for key, inner in nested.items():
            table(f"{prefix}.{key}" if prefix else key, inner)

    table("", document)
    path.write_text("\n".join(lines) + "\n")


def post_json(
    url: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, Any]:
    return request_json("POST", url, body, headers, timeout)


def request_json(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """(status, decoded JSON body or raw text) of one HTTP request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def iri(url: str, body: dict[str, Any], timeout: float = 60.0) -> tuple[int, Any]:
    return post_json(url, body, {"X-IOTA-API-Version": "1"}, timeout)


class ServiceProcess:
    """One ``p2p-energy`` service with its arguments, log file and readiness probe."""

    def __init__(self, name: str, directory: Path, arguments: list[str], port: int) -> None:
        self.name = name
        self.directory = directory
        self.arguments = arguments
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}"
        self.log = directory / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0, env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command_line(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env={**os.environ, **(env or {})},
            )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
                if self.ready():
                    return
                time.sleep(0.1)
            raise RuntimeError(f"{self.name} did not get ready:\n{self.log_tail()}")
        except BaseException:
            self.stop()  # never leave a process behind a failed start
            raise

    def command_line(self) -> list[str]:
        return [str(CONSOLE_SCRIPT), *self.arguments]

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def log_tail(self, characters: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-characters:] if self.log.exists() else ""

    def rss_bytes(self) -> int:
        """Resident memory of the process (Linux /proc)."""
        if self.process is None:
            return 0
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024


class NodeProcess(ServiceProcess):
    """``p2p-energy node``: coordinator of its own private network by default."""

    def __init__(
        self,
        directory: Path,
        *,
        database: str | None = None,
        port: int | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        port = port or free_port()
        document: dict[str, Any] = {
            "min_weight_magnitude": 1,
            "coordinator": {"seed": COORDINATOR_SEED, "interval": 0.5},
        }
        document.update(config or {})
        config_path = directory / f"node-{port}.toml"
        write_toml(config_path, document)
        self.database = database or f"sqlite:///{directory / 'node.sqlite3'}"
        super().__init__(
            "node",
            directory,
            [
                "node",
                "--host",
                LOOPBACK,
                "--port",
                str(port),
                "--database",
                self.database,
                "--config",
                str(config_path),
                "--log-level",
                "WARNING",
            ],
            port,
        )

    def ready(self) -> bool:
        try:
            status, info = iri(self.url, {"command": "getNodeInfo"}, timeout=2)
        except OSError:
            return False
        return status == 200 and info.get("latestSolidSubtangleMilestoneIndex", 0) >= 1


WALLET_SEED = "RELIABILITY9GRID9WALLET".ljust(81, "9")


class GridProcess(ServiceProcess):
    """``p2p-energy grid`` against a node process, or (``node_url`` None) with its node
    in-process, configured by ``node`` (the configuration file's ``[node]`` table)."""

    def __init__(
        self,
        directory: Path,
        node_url: str | None,
        *,
        database: str | None = None,
        port: int | None = None,
        grid: dict[str, Any] | None = None,
        name: str = "grid",
        node: dict[str, Any] | None = None,
    ) -> None:
        port = port or free_port()
        settings: dict[str, Any] = {
            "slot_seconds": 60,
            "settlement_delay_seconds": 1.0,
            "follow_interval": 0.5,
            "publish_interval": 0.5,
            "payments_interval": 1.0,
            "payout_interval": 1.0,
            "min_weight_magnitude": 1,
            "wallet_seed": WALLET_SEED,
        }
        settings.update(grid or {})
        config_path = directory / f"{name}-{port}.toml"
        write_toml(config_path, {"grid": settings, **({"node": node} if node else {})})
        self.database = database or f"sqlite:///{directory / 'grid.sqlite3'}"
        data_dir = directory / f"{name}-data"
        data_dir.mkdir(exist_ok=True)
        super().__init__(
            name,
            directory,
            [
                "grid",
                "--host",
                LOOPBACK,
                "--port",
                str(port),
                "--database",
                self.database,
                *(["--node-url", node_url] if node_url else []),
                "--config",
                str(config_path),
                "--data-dir",
                str(data_dir),
                "--log-format",
                "text",
                "--log-level",
                "WARNING",
            ],
            port,
        )

    def ready(self) -> bool:
        try:
            status, _ = request_json("GET", f"{self.url}/health", timeout=2)
        except OSError:
            return False
        return status == 200
