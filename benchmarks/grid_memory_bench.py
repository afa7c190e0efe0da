"""Where the grid process holds memory in a slot of N households, stage by stage.

Run ``.venv/bin/python benchmarks/grid_memory_bench.py --households 10000
[--workdir DIR] [--tracemalloc] [--stages follow,settle,bill,pay,collect]``.

It prepares once (and keeps in ``--workdir`` for the next run): a ``p2p-energy node``
database holding every household's hello and one reading of a past slot (the
households' MAM messages and proof of work at MWM 5 made in a process pool, as
``tests/scale/measure.py`` does), and a grid database with every household
registered, following its channel from the reading on (the grid read the hello at
registration), and every consumer's return channel (its hello sent). Each run copies
both, starts the node process, and drives the grid's own pipeline in this process,
one stage after the other (as a freshly started grid runs a slot in
``benchmarks/e2e_scale_bench.py``): follow rounds until the grid has caught up (the
readings, then rounds that find nothing new), settle, bill (creating and publishing every
payment request through ``local_pow_workers`` proof-of-work worker processes at MWM
9), pay, and collect (``PaymentMonitor.scan``).

Per stage it reports the process's resident memory after the stage, its peak during
the stage (VmHWM, reset before each stage through /proc/self/clear_refs), the CPU
seconds of this process and of the node, and with ``--tracemalloc`` the peak of
Python's own allocations (numpy's included) and the largest allocation sites held
at the end of the stage. ``--scans N`` repeats the collect stage (steady-state
payment scans, CPU per scan).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import resource
import shutil
import sys
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.mam import (
    channel_root,
    create_channel,
    create_messages,
    message_to_transactions,
)
from sqlalchemy import func, insert, select

if str(Path(__file__).resolve().parent.parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grid_server.grid.billing import PaymentMonitor, PaymentRequests
from grid_server.grid.config import GridConfig
from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import (
    Bill,
    FollowedChannel,
    GridChannel,
    OutboxMessage,
    Reading,
    Registration,
)
from grid_server.grid.follower import BulkMamReader, ChannelFollower
from grid_server.grid.pipeline import GridPipeline
from grid_server.grid.proof_of_work import ProcessPoolProofOfWork
from grid_server.grid.return_channels import ReturnChannels
from grid_server.grid.settlement.service import SettlementService
from grid_server.grid.tangle import MamTangle
from grid_server.grid.wallet import GridWallet
from tests.reliability.processes import COORDINATOR_SEED, NodeProcess, iri
from tests.scale.measure import (
    HOUSEHOLD_TAG,
    PRODUCER_EVERY,
    STORE_BATCH,
    attach_bundles,
    cpu_seconds,
    slot_reading,
)

SLOT_MS = 900_000
SEED = "MEMORY9BENCH9GRID9SEED".ljust(81, "9")
HOUSEHOLD_MWM = 5
GRID_MWM = 9
CHUNK = 100
MAX_FOLLOW_ROUNDS = 10


def _node(directory: Path) -> NodeProcess:
    """The benchmark's node process on ``directory/node.sqlite3`` (households' MWM)."""
    return NodeProcess(
        directory,
        database=f"sqlite:///{directory / 'node.sqlite3'}",
        config={
            "min_weight_magnitude": HOUSEHOLD_MWM,
            "coordinator": {"seed": COORDINATOR_SEED, "interval": 10.0},
        },
    )


def _trytes(prefix: str, number: int) -> str:
    from p2p_energy_protocol.trinary import int_to_trytes

    return (prefix + int_to_trytes(number, 12)).ljust(81, "9")


def household_messages(numbers: range, window: int) -> list[dict[str, Any]]:
    """Hello and one reading of each household (pool worker: the households' own CPU)."""
    channels = []
    items = []
    for number in numbers:
        role = "producer" if number % PRODUCER_EVERY == 0 else "consumer"
        side_key = _trytes("KEY", number)
        channel = create_channel(_trytes("MEMORY", number), 2, "restricted", side_key)
        channels.append((number, role, channel_root(channel), side_key))
        items.append((channel, {"command": "hello"}))
        items.append((channel, slot_reading(role, number, window, SLOT_MS)))
    messages = create_messages(items)
    made = []
    for offset, (number, role, root, side_key) in enumerate(channels):
        hello, reading = messages[2 * offset], messages[2 * offset + 1]
        made.append(
            {
                "number": number,
                "role": role,
                "root": root,
                "side_key": side_key,
                "reading_root": reading.root,
                "bundles": [
                    [
                        tx.to_trytes()
                        for tx in reversed(message_to_transactions(message, tag=HOUSEHOLD_TAG))
                    ]
                    for message in (hello, reading)
                ],
            }
        )
    return made


def prepare(workdir: Path, households: int, window: int) -> None:
    """The node's and the grid's databases before the slot (kept for later runs)."""
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        jobs = [
            pool.submit(household_messages, range(n, min(n + CHUNK, households)), window)
            for n in range(0, households, CHUNK)
        ]
        homes = [home for job in jobs for home in job.result()]
        print(f"households' messages made in {time.perf_counter() - started:.0f} s", flush=True)
        node = _node(workdir)
        node.start()
        try:
            status, tips = iri(node.url, {"command": "getTransactionsToApprove", "depth": 3})
            assert status == 200, tips
            bundles = [bundle for home in homes for bundle in home["bundles"]]
            jobs = [
                pool.submit(
                    attach_bundles,
                    bundles[n : n + 200],
                    tips["trunkTransaction"],
                    tips["branchTransaction"],
                    HOUSEHOLD_MWM,
                )
                for n in range(0, len(bundles), 200)
            ]
            trytes = [t for job in jobs for bundle in job.result() for t in bundle]
            for first in range(0, len(trytes), STORE_BATCH):
                batch = trytes[first : first + STORE_BATCH]
                for command in ("storeTransactions", "broadcastTransactions"):
                    status, body = iri(node.url, {"command": command, "trytes": batch}, timeout=300)
                    assert status == 200, body
        finally:
            node.stop()
    print(f"node database ready after {time.perf_counter() - started:.0f} s", flush=True)
    db = Database(f"sqlite:///{workdir / 'grid.sqlite3'}", threads=1)
    try:
        db.migrate()
        consumers = [home for home in homes if home["role"] == "consumer"]
        tangle = MamTangle(None)  # type: ignore[arg-type]  # creating needs no node
        opened = [
            item
            for first in range(0, len(consumers), 500)
            for item in tangle.open_channels(
                [{"command": "hello"}] * min(500, len(consumers) - first)
            )
        ]
        with db.write() as session:
            session.execute(
                insert(Registration),
                [
                    {
                        "registration_id": f"memory-{home['number']:06}",
                        "item_name": f"memory-{home['number']:06}",
                        "item_type": home["role"],
                        "active": True,
                        "created_at": 0,
                        "updated_at": 0,
                    }
                    for home in homes
                ],
            )
            session.execute(
                insert(FollowedChannel),
                [
                    {
                        "registration_id": f"memory-{home['number']:06}",
                        "role": home["role"],
                        "mode": "restricted",
                        "root": home["root"],
                        "side_key": home["side_key"],
                        "next_root": home["reading_root"],
                        "next_position": 1,
                        "active": True,
                        "hello_seen": True,
                        "skipped_messages": 0,
                        "next_read_at": 0,
                        "created_at": 0,
                    }
                    for home in homes
                ],
            )
            session.execute(
                insert(GridChannel),
                [
                    {
                        "registration_id": f"memory-{home['number']:06}",
                        "root": channel.root,
                        "side_key": channel.side_key,
                        "state_json": json.dumps(hello.state),
                        "next_position": 1,
                        "active": True,
                        "created_at": 0,
                    }
                    for home, (channel, hello) in zip(consumers, opened, strict=True)
                ],
            )
    finally:
        db.close()
    (workdir / "prepared.json").write_text(json.dumps({"households": households, "window": window}))
    print(f"grid database ready after {time.perf_counter() - started:.0f} s", flush=True)


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def _malloc_trim() -> None:
    ctypes.CDLL("libc.so.6").malloc_trim(0)


MIB = 1024 * 1024


async def run(workdir: Path, arguments: argparse.Namespace) -> None:
    prepared = json.loads((workdir / "prepared.json").read_text())
    run_dir = workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    for name in ("node.sqlite3", "grid.sqlite3"):
        shutil.copy(workdir / name, run_dir / name)
    node = _node(run_dir)
    node.start()
    try:
        await _drive(run_dir, node, prepared, arguments)
    finally:
        node.stop()


async def _drive(
    run_dir: Path, node: NodeProcess, prepared: dict[str, Any], arguments: argparse.Namespace
) -> None:
    """The grid's stages against the running ``node``, one after the other."""
    assert node.process is not None
    config = replace(
        GridConfig(),
        database=f"sqlite:///{run_dir / 'grid.sqlite3'}",
        node_url=node.url,
        slot_seconds=SLOT_MS // 1000,
        settlement_delay_seconds=1.0,
        follow_interval=1.0,
        min_weight_magnitude=GRID_MWM,
        storage_auth="none",
        local_pow_workers=arguments.pow_workers,
        wallet_seed=SEED,
    )
    clock = lambda: int(time.time() * 1000)  # noqa: E731
    db = Database(config.database_url)
    db.migrate()  # the prepared database may predate a migration
    pool = ProcessPoolProofOfWork(arguments.pow_workers)
    stopping = asyncio.Event()
    rows: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as http:
            with ThreadPoolExecutor(1, thread_name_prefix="grid-cpu") as cpu:
                client = IriClient(http, node.url, timeout=300, proof_of_work=pool)
                wallet = GridWallet(
                    db,
                    client,
                    SEED,
                    clock,
                    cpu,
                    min_weight_magnitude=GRID_MWM,
                    batch_size=config.payout_batch_size,
                    bundles_in_flight=config.payout_bundles_in_flight,
                )
                await wallet.treasury_address()
                tangle = MamTangle(client, min_weight_magnitude=GRID_MWM)
                # As the grid wires it: batched MAM creation on the proof-of-work workers.
                return_channels = ReturnChannels(db, tangle, cpu, clock, offload=pool)
                monitor = PaymentMonitor(
                    db,
                    client,
                    clock,
                    unconfirmable_seconds=config.payment_unconfirmable_seconds,
                    pending_expiry_seconds=config.payment_pending_expiry,
                )
                pipeline = GridPipeline(
                    config,
                    follower=ChannelFollower(db, BulkMamReader(client), clock, config),
                    settlement=SettlementService(db, config, clock, "memory-bench"),
                    requests=PaymentRequests(db, return_channels, wallet, clock),
                    return_channels=return_channels,
                    wallet=wallet,
                    monitor=monitor,
                    stopping=stopping,
                    clock=clock,
                )
                stages = {
                    "follow": pipeline.follow,
                    "settle": pipeline.settle,
                    "bill": pipeline.bill,
                    "pay": pipeline.pay,
                    "collect": pipeline.collect,
                    "addresses": pipeline.addresses,  # refills the payment address pool
                }
                plan = [
                    name
                    for stage in arguments.stages.split(",")
                    for name in (["collect"] * arguments.scans if stage == "collect" else [stage])
                ]
                if arguments.tracemalloc:
                    tracemalloc.start(arguments.frames)
                print(
                    f"{prepared['households']} households; grid process RSS "
                    f"{_status('VmRSS') / MIB:.0f} MiB before the slot; load "
                    f"{os.getloadavg()[0]:.2f}",
                    flush=True,
                )
                while plan:
                    name = plan.pop(0)
                    if name == "settle":  # its deadline counts from catching up
                        await asyncio.sleep(config.settlement_delay_seconds + 0.2)
                    _reset_peak()
                    if arguments.tracemalloc:
                        tracemalloc.reset_peak()
                    load = os.getloadavg()[0]
                    node_cpu = cpu_seconds(node.process.pid)
                    own = resource.getrusage(resource.RUSAGE_SELF)
                    workers = [
                        p.pid for p in pool.executor._processes.values() if p.pid is not None
                    ]
                    worker_cpu = sum(cpu_seconds(pid) for pid in workers)
                    started = time.perf_counter()
                    result = await stages[name]()
                    seconds = time.perf_counter() - started
                    after = resource.getrusage(resource.RUSAGE_SELF)
                    workers = [
                        p.pid for p in pool.executor._processes.values() if p.pid is not None
                    ]
                    row = {
                        "stage": name,
                        "seconds": seconds,
                        "cpu": after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime,
                        "node_cpu": cpu_seconds(node.process.pid) - node_cpu,
                        "workers_cpu": sum(cpu_seconds(pid) for pid in workers) - worker_cpu,
                        "peak_mib": _status("VmHWM") / MIB,
                        "rss_mib": _status("VmRSS") / MIB,
                        "load": load,
                    }
                    if arguments.tracemalloc:
                        current, peak = tracemalloc.get_traced_memory()
                        row["traced_mib"] = current / MIB
                        row["traced_peak_mib"] = peak / MIB
                    trimming = time.perf_counter()
                    _malloc_trim()
                    row["trim_ms"] = (time.perf_counter() - trimming) * 1000
                    row["trimmed_mib"] = _status("VmRSS") / MIB
                    rows.append(row)
                    print(
                        f"{name:8} {seconds:7.1f} s  CPU grid {row['cpu']:6.2f} s, node "
                        f"{row['node_cpu']:6.2f} s, workers {row['workers_cpu']:6.2f} s  "
                        f"peak {row['peak_mib']:6.0f} MiB, after {row['rss_mib']:6.0f} MiB "
                        f"({row['trimmed_mib']:.0f} after malloc_trim, {row['trim_ms']:.0f} ms)"
                        + (
                            f"  traced peak {row['traced_peak_mib']:.0f} MiB, held "
                            f"{row['traced_mib']:.0f} MiB"
                            if arguments.tracemalloc
                            else ""
                        )
                        + (f"  {result}" if isinstance(result, dict) else "")
                        + f"  load {load:.2f}",
                        flush=True,
                    )
                    if name == "follow" and pipeline.following_since is None:
                        # Not caught up yet: the stage runs again (every 0.5 s in a grid).
                        if sum(row["stage"] == "follow" for row in rows) >= MAX_FOLLOW_ROUNDS:
                            raise RuntimeError("the follower did not catch up")
                        await asyncio.sleep(config.follow_interval / 2)
                        plan.insert(0, "follow")
                    if arguments.tracemalloc and arguments.top:
                        snapshot = tracemalloc.take_snapshot()
                        for stat in snapshot.statistics("lineno")[: arguments.top]:
                            print(f"    {stat}")
                with db.read() as session:
                    counts = {
                        "readings": session.scalar(select(func.count()).select_from(Reading)),
                        "bills": session.scalar(select(func.count()).select_from(Bill)),
                        "requests sent": session.scalar(
                            select(func.count()).where(
                                OutboxMessage.kind == "payment-request",
                                OutboxMessage.sent_at.is_not(None),
                            )
                        ),
                    }
                print(
                    f"stored: {counts}; grid peak RSS over the run "
                    f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB",
                    flush=True,
                )
    finally:
        await pool.close()
        db.close()
    if arguments.json:
        arguments.json.write_text(json.dumps(rows, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--stages", default="follow,settle,bill,pay,collect")
    parser.add_argument("--scans", type=int, default=1, help="collect rounds")
    parser.add_argument("--pow-workers", type=int, default=2)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc frames")
    parser.add_argument("--top", type=int, default=0, help="allocation sites per stage")
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    workdir = arguments.workdir or Path(f"/tmp/grid-memory-{arguments.households}")
    if not (workdir / "prepared.json").exists():
        now = int(time.time() * 1000)
        prepare(workdir, arguments.households, (now // SLOT_MS - 2) * SLOT_MS)
    asyncio.run(run(workdir, arguments))


if __name__ == "__main__":
    main()
