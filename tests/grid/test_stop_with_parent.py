"""A grid started with ``--stop-with-parent`` (as the demo starts it) stops by itself
when the process that started it is killed outright: nothing is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .processes import CONSOLE_SCRIPT, environment, free_port, grid_ready

# Starts the grid in its own session (as the demo does), says its pid, then waits.
LAUNCHER = """
import subprocess, sys, time
log = open(sys.argv[1], "ab")
grid = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
print(grid.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it has stopped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_grid_stops_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    port, node_port = free_port(), free_port()
    log = tmp_path / "grid.log"
    grid = [
        str(CONSOLE_SCRIPT), "grid",
        "--port", str(port),
        "--data-dir", str(tmp_path / "data"),
        "--config", str(tmp_path / "grid.toml"),
        "--stop-with-parent",
    ]  # fmt: skip
    (tmp_path / "grid.toml").write_text(f"[node]\nport = {node_port}\n")
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(log), *grid],
        stdout=subprocess.PIPE,
        env=environment(tmp_path),
    )
    assert launcher.stdout is not None
    grid_pid = int(launcher.stdout.readline())
    try:
        deadline = time.monotonic() + 90
        while not grid_ready(f"http://127.0.0.1:{port}"):
            assert _alive(grid_pid), log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.3)

        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)

        deadline = time.monotonic() + 60
        while _alive(grid_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        text = log.read_text(errors="replace")
        assert not _alive(grid_pid), text
        assert "is gone; stopping" in text
        assert "grid stopped" in text
    finally:
        if _alive(grid_pid):
            os.kill(grid_pid, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()
