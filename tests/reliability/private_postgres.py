"""A PostgreSQL cluster of one test's own, which the test may restart or crash.

The suite's shared cluster (``scripts/test-postgres``) serves every engineer's tests,
so a fault test must never stop it; this one lives in its own folder on a free port.
As root the server runs as the ``postgres`` user (PostgreSQL refuses root), in a
folder that user can reach: pytest's ``tmp_path`` sits under a 0700 folder of root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .processes import LOOPBACK, free_port


def server_binaries() -> Path | None:
    """Debian's newest ``/usr/lib/postgresql/<version>/bin`` (None when not installed)."""
    candidates = sorted(
        (path for path in Path("/usr/lib/postgresql").glob("*/bin") if (path / "initdb").exists()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    return candidates[-1] if candidates else None


class PrivatePostgres:
    """``initdb`` into a folder of its own; ``start``, ``stop``, ``restart`` and ``crash``."""

    def __init__(self, tmp_path: Path, binaries: Path) -> None:
        self.binaries = binaries
        self.tmp_path = tmp_path
        self.as_root = os.geteuid() == 0
        if self.as_root:
            # Reachable by the postgres user; removed by close().
            self.root = Path(tempfile.mkdtemp(prefix="p2p-private-pg-"))
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres")
        else:
            self.root = tmp_path / "postgres"
            self.root.mkdir()
        self.data = self.root / "data"
        self.log = tmp_path / "postgres.log" if not self.as_root else self.root / "server.log"
        self.port = free_port()
        self._run("initdb", "-D", str(self.data), "-U", "p2p", "--auth=trust", "-E", "UTF8")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://p2p@{LOOPBACK}:{self.port}/{database}"

    def _run(self, tool: str, *arguments: str) -> None:
        command = [str(self.binaries / tool), *arguments]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n{self.log_tail()}"
            )

    def start(self) -> None:
        """Start on the existing data (after a crash PostgreSQL replays its WAL)."""
        options = (
            f"-c listen_addresses={LOOPBACK} -c port={self.port} "
            # TCP only: a Unix socket path under tmp_path may exceed the 107-byte limit.
            "-c unix_socket_directories='' -c max_connections=60"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown that ends sessions; ``immediate``: no checkpoint, as a
        crash (the next start runs recovery)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def crash(self) -> None:
        self.stop("immediate")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            host=LOOPBACK, port=self.port, user="p2p", dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [str(self.binaries / "pg_isready"), "-h", LOOPBACK, "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not accept connections:\n{self.log_tail()}")

    def log_tail(self, characters: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-characters:]
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the server (if running) and remove its files."""
        subprocess.run(
            [
                *(["runuser", "-u", "postgres", "--"] if self.as_root else []),
                str(self.binaries / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            check=False,
        )
        if self.as_root:
            if self.log.exists():  # kept with the test's other logs
                shutil.copyfile(self.log, self.tmp_path / "postgres.log")
            shutil.rmtree(self.root, ignore_errors=True)
