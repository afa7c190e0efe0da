"""A real in-process node for the grid's wallet and payment tests."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from grid_server.node import CoordinatorConfig, NodeConfig, NodeServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from pathlib import Path

MWM = 1
COORDINATOR_SEED = "GRID9TEST9COORDINATOR".ljust(81, "9")


@contextlib.asynccontextmanager
async def running_node(
    directory: Path, genesis: Mapping[str, int], *, interval: float = 3600
) -> AsyncIterator[NodeServer]:
    """A coordinator node on a free port; milestones come from the test (or ``interval``)."""
    config = NodeConfig(
        host="127.0.0.1",
        port=0,
        database_url=f"sqlite:///{directory / 'node.sqlite3'}",
        min_weight_magnitude=MWM,
        genesis=dict(genesis),
        coordinator=CoordinatorConfig(seed=COORDINATOR_SEED, interval=interval),
    )
    async with NodeServer(config) as node:
        yield node
