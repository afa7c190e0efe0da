"""PostgreSQL still booting when the node and the grid start (as after a power cut,
when every container comes up at once): both services wait for it, logging one line
per attempt, and come up on their own once it accepts connections."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest

from .processes import GridProcess, NodeProcess, iri, request_json

if TYPE_CHECKING:
    from pathlib import Path

    from .private_postgres import PrivatePostgres

pytestmark = pytest.mark.slow

DOWN_SECONDS = 4.0


def test_node_and_grid_wait_for_postgres_that_starts_after_them(
    tmp_path: Path, postgres: PrivatePostgres
) -> None:
    node = NodeProcess(tmp_path, database=postgres.create_database("node"))
    grid = GridProcess(
        tmp_path,
        node.url,
        database=postgres.create_database("grid"),
        grid={"storage_auth": "none"},
    )
    postgres.stop()
    errors: list[BaseException] = []

    def start(service: NodeProcess | GridProcess) -> None:
        try:
            service.start(timeout=60)
        except BaseException as err:
            errors.append(err)

    starters = [threading.Thread(target=start, args=(service,)) for service in (node, grid)]
    try:
        for starter in starters:
            starter.start()
        # Both have found the database down and retried at least once (a loaded machine
        # may take longer than DOWN_SECONDS just to start the interpreters).
        time.sleep(DOWN_SECONDS)
        deadline = time.monotonic() + 60
        while not all(_retried(service) for service in (node, grid)):
            assert time.monotonic() < deadline, (node.log_tail(), grid.log_tail())
            assert node.running, node.log_tail()
            assert grid.running, grid.log_tail()
            time.sleep(0.2)
        # Both are still waiting: running, and not ready.
        assert node.running, node.log_tail()
        assert grid.running, grid.log_tail()
        assert not node.ready()
        assert not grid.ready()
        postgres.start()
        for starter in starters:
            starter.join(90)
        assert not errors, errors

        status, info = iri(node.url, {"command": "getNodeInfo"})
        assert status == 200
        assert info["latestSolidSubtangleMilestoneIndex"] >= 1
        status, health = request_json("GET", f"{grid.url}/health")
        assert status == 200, health
        for service, purpose in (
            (node, "opening the node's database"),
            (grid, "bringing the grid's database schema up to date"),
        ):
            log = service.log.read_text(errors="replace")
            assert f"{purpose}: the database is unavailable (attempt 2" in log, log[-3000:]
            assert "Traceback" not in log, log[-3000:]
    finally:
        for starter in starters:
            starter.join(5)
        grid.stop()
        node.stop()


def _retried(service: NodeProcess | GridProcess) -> bool:
    """Whether ``service`` has logged its second attempt at the database."""
    if not service.log.exists():
        return False
    return "the database is unavailable (attempt 2" in service.log.read_text(errors="replace")
