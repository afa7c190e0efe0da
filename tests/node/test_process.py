"""``p2p-energy node`` as a real process: start, stop, errors, and a kill -9 mid-stream."""

from __future__ import annotations

import signal
import subprocess
import threading
from typing import TYPE_CHECKING

import pytest
from p2p_energy_protocol.pow import attach_to_tangle
from p2p_energy_protocol.transaction import Transaction

from .helpers import COORDINATOR_SEED, MWM, NULL_HASH, zero_value_bundle
from .process import CONSOLE_SCRIPT, NodeProcess, command, free_port

if TYPE_CHECKING:
    from pathlib import Path

CONFIG = {"min_weight_magnitude": MWM, "coordinator": {"seed": COORDINATOR_SEED, "interval": 0.3}}

pytestmark = pytest.mark.slow


def test_help_lists_the_node_options() -> None:
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "node", "--help"], capture_output=True, text=True, check=True
    )
    for option in ("--host", "--port", "--database", "--config", "--neighbor"):
        assert option in result.stdout


def test_configuration_errors_exit_with_2(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('min_weight_magnitude = 9\nspeed = "fast"\n')
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "node", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown setting(s) in the node configuration: speed" in result.stderr
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "node", "--port", "70000"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "port must be 0..65535" in result.stderr


def test_a_busy_port_is_reported(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                str(CONSOLE_SCRIPT),
                "node",
                "--port",
                str(port),
                "--database",
                f"sqlite:///{tmp_path / 'n.sqlite3'}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_sigterm_stops_the_node_cleanly(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, CONFIG)
    node.start()
    assert node.stop(signal.SIGTERM) == 0
    assert "p2p-energy node listening on" in node.log.read_text()


def test_kill_9_mid_stream_leaves_only_whole_bundles(tmp_path: Path) -> None:
    bundles = [
        attach_to_tangle(
            zero_value_bundle(message=f"bundle {i}", count=3), NULL_HASH, NULL_HASH, MWM
        )
        for i in range(30)
    ]
    node = NodeProcess(tmp_path, CONFIG, port=free_port())
    node.start()
    sent: list[int] = []

    def stream() -> None:
        for position, trytes in enumerate(bundles):
            try:
                command(node.url, {"command": "storeTransactions", "trytes": trytes}, timeout=5)
            except OSError:
                return
            sent.append(position)

    sender = threading.Thread(target=stream)
    sender.start()
    while len(sent) < 8:
        sender.join(0.01)
    node.stop(signal.SIGKILL)
    sender.join()

    node.start()
    complete = 0
    for position, trytes in enumerate(bundles):
        hashes = [Transaction.from_trytes(t).hash for t in trytes]
        status, body = command(node.url, {"command": "getTrytes", "hashes": hashes})
        assert status == 200
        stored = [t != "9" * 2673 for t in body["trytes"]]
        assert all(stored) or not any(stored), f"bundle {position} is partly stored"
        if all(stored):
            complete += 1
        if position in sent:
            assert all(stored), f"bundle {position} was acknowledged but is lost"
    assert complete >= 8
    assert node.stop() == 0
