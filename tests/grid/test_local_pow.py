"""The grid's own proof of work in worker processes (``local_pow_workers``)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.grid_client import GridClient
from p2p_energy_protocol.pow import transaction_weight
from p2p_energy_protocol.transaction import Transaction

from grid_server.config_loading import ConfigError
from grid_server.grid.config import GridConfig, load_config
from grid_server.grid.proof_of_work import ProcessPoolProofOfWork
from grid_server.grid.server import GridServer
from tests.node.helpers import count_remote_attaches

from .entities import Consumer
from .test_server import MWM, eventually, grid_config, node_document

if TYPE_CHECKING:
    from pathlib import Path

NULL_HASH = "9" * 81


def _bundle(text: str = "LOCAL") -> list[str]:
    builder = BundleBuilder()
    builder.add_transfer("R" * 81, 0, tag=text)
    builder.add_transfer("S" * 81, 0, tag=text)
    builder.finalize()
    return builder.to_trytes()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _worker_pids(pool: ProcessPoolProofOfWork) -> set[int]:
    processes: dict[int, Any] = getattr(pool.executor, "_processes", None) or {}
    return set(processes)


def _children() -> set[int]:
    return {child.pid for child in multiprocessing.active_children() if child.pid is not None}


# Configuration ------------------------------------------------------------------------


def test_default_and_sources() -> None:
    assert GridConfig().local_pow_workers == 1
    assert load_config(environ={"P2P_ENERGY_GRID_LOCAL_POW_WORKERS": "0"}).local_pow_workers == 0
    assert load_config(overrides={"local_pow_workers": 3}, environ={}).local_pow_workers == 3


def test_load_from_file(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text("[grid]\nlocal_pow_workers = 2\n")
    assert load_config(path, environ={}).local_pow_workers == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "local_pow_workers must be between 0 .* and 64"),
        (65, "local_pow_workers must be between 0 .* and 64"),
        (1.5, "local_pow_workers has the wrong type"),
        (True, "local_pow_workers has the wrong type"),
        ("2", "local_pow_workers has the wrong type"),
    ],
)
def test_bad_values(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace(GridConfig(), local_pow_workers=value)  # type: ignore[arg-type]


def test_bad_environment_value() -> None:
    with pytest.raises(ConfigError, match="local_pow_workers must be an integer"):
        load_config(environ={"P2P_ENERGY_GRID_LOCAL_POW_WORKERS": "two"})
    with pytest.raises(ConfigError, match="local_pow_workers must be between"):
        load_config(environ={"P2P_ENERGY_GRID_LOCAL_POW_WORKERS": "-2"})


# The pool ------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, -1, True])
def test_a_pool_needs_workers(workers: int) -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        ProcessPoolProofOfWork(workers)


async def test_a_dead_worker_is_replaced_and_close_stops_the_workers() -> None:
    pool = ProcessPoolProofOfWork(2)
    try:
        attached = await pool.attach(NULL_HASH, NULL_HASH, 3, _bundle())
        assert len(attached) == 2
        assert all(transaction_weight(Transaction.from_trytes(t).hash) >= 3 for t in attached)
        first = pool.executor
        pids = _worker_pids(pool)
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        # The broken pool is replaced; the attach is done by the new one.
        again = await pool.attach(NULL_HASH, NULL_HASH, 3, _bundle("AGAIN"))
        assert len(again) == 2
        assert pool.executor is not first
        new_pids = _worker_pids(pool)
        assert new_pids
        assert not new_pids & pids
    finally:
        await pool.close()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in new_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in new_pids | pids)
    with pytest.raises(RuntimeError):
        await pool.attach(NULL_HASH, NULL_HASH, 3, _bundle())


# The grid ------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 0])
async def test_grid_publishes_with_its_own_proof_of_work(
    tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With workers the grid's return-channel messages are attached in its worker
    processes (the node attaches nothing), which stop with the grid; with 0 the node
    does the proof of work as before."""
    config = replace(
        grid_config(tmp_path, f"sqlite:///{tmp_path / 'grid.sqlite3'}"),
        local_pow_workers=workers,
    )
    children_before = _children()
    async with (
        GridServer(config, node_document=node_document(tmp_path)) as grid,
        aiohttp.ClientSession() as session,
    ):
        assert grid._node_server is not None
        remote = count_remote_attaches(monkeypatch, grid._node_server.runtime)
        node = IriClient(session, grid.node_url)
        consumer = Consumer(node, "consumer-localpow", MWM)
        await consumer.hello()
        remote.clear()  # the household's own (remote) attach
        reply = await GridClient(session, grid.url).register(
            consumer.registration_id,
            "Flat",
            "consumer",
            root=consumer.root,
            side_key=consumer.side_key,
        )
        assert reply.root is not None
        assert reply.side_key is not None
        root, side_key = reply.root, reply.side_key

        async def greeted() -> bool:
            return bool(await consumer.payment_requests(root, side_key))

        # The grid's hello on the consumer's return channel is stored and readable.
        await eventually(greeted)
        assert (await consumer.payment_requests(root, side_key))[0] == {"command": "hello"}
        workers_running = _children() - children_before
        if workers:
            assert remote == []
            assert grid._proof_of_work is not None
            assert len(workers_running) == workers
        else:
            assert remote
            assert grid._proof_of_work is None
            assert workers_running == set()
    # No worker process outlives the grid.
    assert _children() <= children_before
    assert not any(_alive(pid) for pid in workers_running)


_ORPHAN_SCRIPT = """
import asyncio, os, sys, time
from grid_server.grid.proof_of_work import ProcessPoolProofOfWork
from p2p_energy_protocol.bundle import BundleBuilder

async def main():
    pool = ProcessPoolProofOfWork(1)
    builder = BundleBuilder()
    builder.add_transfer("R" * 81, 0)
    builder.finalize()
    await pool.attach("9" * 81, "9" * 81, 1, builder.to_trytes())
    print(*pool.executor._processes, flush=True)
    # A search that never ends (weight 200), as the grid would be mid-attach.
    await pool.attach("9" * 81, "9" * 81, 200, builder.to_trytes())

asyncio.run(main())
"""


async def test_workers_die_with_a_killed_grid_process() -> None:
    """SIGKILL leaves the pool no chance to close: its workers must not live on."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _ORPHAN_SCRIPT, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    pids = {int(pid) for pid in line.split()}
    assert len(pids) == 1
    await asyncio.sleep(0.3)  # the worker is inside the endless search now
    assert all(_alive(pid) for pid in pids)
    process.kill()
    await process.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


async def test_a_node_needing_more_weight_than_local_work_is_a_config_error(
    tmp_path: Path,
) -> None:
    """Locally attached work is not raised to the node's minimum, so a mismatch would
    have every grid bundle refused: refuse to start instead of failing forever."""
    config = replace(
        grid_config(tmp_path, f"sqlite:///{tmp_path / 'grid.sqlite3'}"), local_pow_workers=1
    )
    document = {**node_document(tmp_path), "min_weight_magnitude": MWM + 1}
    children_before = _children()
    with pytest.raises(ConfigError, match=f"below the node's {MWM + 1}"):
        await GridServer(config, node_document=document).start()
    assert _children() - children_before == set()
