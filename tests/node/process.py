"""Runs ``p2p-energy node`` as a real process for end-to-end tests."""

from __future__ import annotations

import json
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return str(value)


def write_toml(path: Path, config: dict[str, Any]) -> None:
    lines: list[str] = []
    tables = {key: value for key, value in config.items() if isinstance(value, dict)}
    for key, value in config.items():
        if key not in tables:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables.items():
        lines.append(f"\n[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
    path.write_text("\n".join(lines) + "\n")


def command(url: str, body: dict[str, Any], timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"X-IOTA-API-Version": "1", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class NodeProcess:
    """``p2p-energy node`` with a configuration file, on a free loopback port."""

    def __init__(self, directory: Path, config: dict[str, Any], port: int | None = None) -> None:
        self.directory = directory
        self.config = config
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = f"sqlite:///{directory / 'node.sqlite3'}"
        self.log = directory / "node.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready_milestone: int = 1, timeout: float = 60.0) -> None:
        config_path = self.directory / "node.toml"
        write_toml(config_path, self.config)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(CONSOLE_SCRIPT),
                    "node",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--database",
                    self.database,
                    "--config",
                    str(config_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready(ready_milestone, timeout)
        except BaseException:
            self.stop()  # never leave a node process behind a failed start
            raise

    def _wait_ready(self, ready_milestone: int, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the node exited early:\n{self.log.read_text()}")
            try:
                status, info = command(self.url, {"command": "getNodeInfo"}, timeout=2)
            except OSError:
                time.sleep(0.1)
                continue
            if status == 200 and info["latestSolidSubtangleMilestoneIndex"] >= ready_milestone:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the node did not get ready:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
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
