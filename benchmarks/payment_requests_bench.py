"""What the grid spends per slot on payment requests for N consumers (issue 7).

Run ``.venv/bin/python benchmarks/payment_requests_bench.py --consumers 1000
[--database-url URL] [--publish 200] [--mwm 9] [--concurrency 1,4]
[--local-pow-workers N]``. It builds a
migrated grid database with N consumers, their return channels (hello already
sent), payment addresses and one unrequested bill each, then times:

* creation: ``PaymentRequests.publish_due`` in batches of ``--batch`` (the server's
  ``PUBLISH_BATCH``), i.e. batched MAM creation plus one transaction per batch;
* publishing: ``ReturnChannels.publish_pending`` of ``--publish`` of those messages
  through a real node at ``--mwm``, once per concurrency: in-process on SQLite, or
  ``--node-url`` (a ``p2p-energy node`` process, as the grid runs it). Proof of work
  is the node's ``attachToTangle`` (remote), or with ``--local-pow-workers N`` the
  grid's own pool of N worker processes (its ``local_pow_workers`` setting), warmed
  up before timing as in a running grid.

``--end-to-end`` measures what a settled slot costs the grid from its bills to every
payment request stored on a ``p2p-energy node`` process at ``--mwm``, with
``--local-pow-workers`` (default 2 here) worker processes, twice on copies of one
database in the same run: ``sequential`` is the bill stage as it was (create every
request, then publish the outbox in rounds of 100, each round waiting for its last
group), ``pipelined`` is today's (``GridPipeline.bill``: publishing starts on the
first batch while the next are created, rounds of ``PUBLISH_WINDOW``). CPU seconds
of the grid side, its workers and the node are reported with the load average.

``--end-to-end --reference main`` runs the pipelined bill stage of this tree and of the
git revision in turns (``--rounds`` each), each run a process of its own: the
reference's ``grid_server``, protocol library and compiled Curl kernel are unpacked and
built in a scratch folder and put first on ``PYTHONPATH`` (for the grid side, its
proof-of-work workers and the node process), so both see the same machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.trinary import random_trytes

from grid_server.grid import pipeline
from grid_server.grid.billing import PaymentRequests
from grid_server.grid.config import GridConfig
from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import (
    Bill,
    GridChannel,
    OutboxMessage,
    Registration,
    WalletAddress,
)
from grid_server.grid.pipeline import PUBLISH_BATCH
from grid_server.grid.proof_of_work import ProcessPoolProofOfWork
from grid_server.grid.return_channels import DEFAULT_PUBLISH_CONCURRENCY, ReturnChannels
from grid_server.grid.settlement.service import SettlementService
from grid_server.grid.tangle import MamTangle
from grid_server.grid.wallet import GridWallet
from grid_server.node import NodeConfig, NodeServer

# For tests.reliability; a --reference run has the repository on PYTHONPATH already, after
# the reference's code, which must come first (spawned workers inherit this path).
if str(Path(__file__).resolve().parent.parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.reliability.processes import NodeProcess

SEED = "BENCH9GRID9SEED".ljust(81, "9")
NOW = 1_800_000_000_000


def populate(db: Database, tangle: MamTangle, consumers: int) -> None:
    """N consumers with a channel whose hello is sent, an address and a bill each."""
    opened = [
        item
        for first in range(0, consumers, 500)
        for item in tangle.open_channels([{"command": "hello"}] * min(500, consumers - first))
    ]
    channels = [channel for channel, _ in opened]
    hellos = [hello for _, hello in opened]
    with db.write() as session:
        # An empty slot settled by the grid's own code: the bills below hang on it.
        settlement = SettlementService(db, GridConfig(), lambda: NOW, "bench").settle_slot(
            session, NOW, NOW + 900_000
        )
        session.add(
            WalletAddress(
                key_index=0, address="T" * 81, purpose="treasury", spent=False, created_at=NOW
            )
        )
        session.flush()
        for number, (channel, hello) in enumerate(zip(channels, hellos, strict=True)):
            registration_id = f"consumer-{number:06d}"
            session.add(
                Registration(
                    registration_id=registration_id,
                    item_name=registration_id,
                    item_type="consumer",
                    active=True,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
            session.flush()
            row = GridChannel(
                registration_id=registration_id,
                root=channel.root,
                side_key=channel.side_key,
                state_json=json.dumps(hello.state),
                next_position=1,
                active=True,
                created_at=NOW,
            )
            session.add(row)
            session.add(
                WalletAddress(
                    key_index=number + 1,
                    address=random_trytes(),
                    purpose="consumer",
                    registration_id=registration_id,
                    spent=False,
                    created_at=NOW,
                )
            )
            session.add(
                Bill(
                    settlement_id=settlement.id,
                    registration_id=registration_id,
                    usage_milliwh=1_234_000,
                    adjustment_milliwh=0,
                    amount=123,
                )
            )


async def create_requests(
    db: Database, tangle: MamTangle, cpu: ThreadPoolExecutor, batch: int
) -> tuple[float, float, int]:
    clock = lambda: NOW  # noqa: E731
    channels = ReturnChannels(db, tangle, cpu, clock)
    wallet = GridWallet(db, None, SEED, clock, cpu)  # type: ignore[arg-type]
    requests = PaymentRequests(db, channels, wallet, clock)
    created = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while (made := await requests.publish_due(batch)) > 0:
        created += made
    return time.perf_counter() - start, time.process_time() - cpu_start, created


async def publish(
    db: Database,
    cpu: ThreadPoolExecutor,
    count: int,
    mwm: int,
    concurrency: int,
    node_dir: Path,
    node_url: str | None,
    proof_of_work: ProcessPoolProofOfWork | None = None,
) -> dict[str, Any]:
    config = NodeConfig(
        host="127.0.0.1",
        port=0,
        database_url=f"sqlite:///{node_dir / f'node-{concurrency}.sqlite3'}",
        min_weight_magnitude=mwm,
    )
    # Mark everything sent but the first ``count`` payment requests.
    with db.write() as session:
        session.query(OutboxMessage).update({"sent_at": None, "attempts": 0})
        keep = [
            row.id
            for row in session.query(OutboxMessage)
            .filter(OutboxMessage.kind == "payment-request")
            .order_by(OutboxMessage.id)
            .limit(count)
        ]
        session.query(OutboxMessage).filter(OutboxMessage.id.not_in(keep)).update(
            {"sent_at": NOW}, synchronize_session=False
        )
    async with contextlib.AsyncExitStack() as stack:
        url = node_url or (await stack.enter_async_context(NodeServer(config))).url
        http = await stack.enter_async_context(aiohttp.ClientSession())
        client = IriClient(http, url, proof_of_work=proof_of_work)
        tangle = MamTangle(client, min_weight_magnitude=mwm)
        channels = ReturnChannels(db, tangle, cpu, lambda: NOW, publish_concurrency=concurrency)
        start = time.perf_counter()
        sent = 0
        while (done := await channels.publish_pending(100)) > 0:
            sent += done
        seconds = time.perf_counter() - start
    return {"concurrency": concurrency, "sent": sent, "seconds": seconds}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def end_to_end(
    mode: str,
    url: str,
    directory: Path,
    arguments: argparse.Namespace,
    pool: ProcessPoolProofOfWork,
) -> dict[str, Any]:
    """Bills to every payment request stored on a fresh node process, one way."""
    node = NodeProcess(
        directory,
        config={"min_weight_magnitude": arguments.mwm},
    )
    node.database = f"sqlite:///{directory / 'node.sqlite3'}"
    node.start()
    db = Database(url, threads=2)
    try:
        workers = [
            process.pid for process in pool.executor._processes.values() if process.pid is not None
        ]
        async with aiohttp.ClientSession() as http:
            client = IriClient(http, node.url, proof_of_work=pool)
            tangle = MamTangle(client, min_weight_magnitude=arguments.mwm)
            with ThreadPoolExecutor(1) as cpu:
                clock = lambda: NOW  # noqa: E731
                # As the grid wires it: batched creation on the proof-of-work workers
                # (a --reference revision without ``offload`` creates in ``cpu``).
                offload = (
                    {"offload": pool}
                    if "offload" in inspect.signature(ReturnChannels).parameters
                    else {}
                )
                channels = ReturnChannels(
                    db,
                    tangle,
                    cpu,
                    clock,
                    publish_concurrency=arguments.e2e_concurrency,
                    **offload,
                )
                wallet = GridWallet(db, None, SEED, clock, cpu)  # type: ignore[arg-type]
                requests = PaymentRequests(db, channels, wallet, clock)

                async def create_all() -> None:
                    # The bill stage's own steps (a --reference revision may predate them).
                    create_due = getattr(pipeline, "create_due_requests", None)
                    if create_due is not None:
                        await create_due(requests)
                        return
                    while await requests.publish_due(PUBLISH_BATCH) == PUBLISH_BATCH:
                        pass

                load = os.getloadavg()[0]
                pids = [os.getpid(), node.process.pid if node.process else 0, *workers]
                before = [cpu_seconds(pid) for pid in pids]
                start = time.perf_counter()
                if mode == "sequential":
                    await create_all()
                    sent = 0
                    while (done := await channels.publish_pending(PUBLISH_BATCH)) > 0:
                        sent += done
                elif mode == "windowed":  # created first, then published in windows
                    await create_all()
                    sent = await channels.publish_all()
                else:
                    creating = asyncio.ensure_future(create_all())
                    sent = await channels.publish_all(creating)
                    await creating
                seconds = time.perf_counter() - start
                after = [cpu_seconds(pid) for pid in pids]
                used = [end - begin for begin, end in zip(before, after, strict=True)]
                stored = len(await client.find_transactions(tags=["PEERENERGYGRID".ljust(27, "9")]))
    finally:
        db.close()
        node.stop()
    return {
        "mode": mode,
        "sent": sent,
        "stored_transactions": stored,
        "seconds": seconds,
        "cpu_grid": used[0],
        "cpu_node": used[1],
        "cpu_workers": sum(used[2:]),
        "load_before": load,
        "load_after": os.getloadavg()[0],
    }


async def compare(arguments: argparse.Namespace, template: Path, directory: Path) -> None:
    """``--end-to-end``: the sequential and the pipelined bill stage on copies of one
    database, each against its own node process, in one run."""
    pool = ProcessPoolProofOfWork(arguments.local_pow_workers or 2)
    await warm_up(pool)
    results = []
    try:
        for number, mode in enumerate(arguments.modes.split(",")):
            folder = directory / f"{number}-{mode}"
            folder.mkdir()
            shutil.copy(template, folder / "grid.sqlite3")
            result = await end_to_end(
                mode, f"sqlite:///{folder / 'grid.sqlite3'}", folder, arguments, pool
            )
            results.append(result)
            print(
                f"{mode}: {result['sent']} payment requests created, attached at MWM "
                f"{arguments.mwm} on {pool.workers} workers and stored on the node "
                f"({result['stored_transactions']} transactions) in {result['seconds']:.1f} s "
                f"({result['sent'] / result['seconds']:.1f}/s); CPU grid {result['cpu_grid']:.1f}"
                f" + workers {result['cpu_workers']:.1f} + node {result['cpu_node']:.1f} s; "
                f"load {result['load_before']:.2f} -> {result['load_after']:.2f}",
                flush=True,
            )
    finally:
        await pool.close()
    for mode in dict.fromkeys(result["mode"] for result in results):
        runs = [result for result in results if result["mode"] == mode]
        seconds = sum(result["seconds"] for result in runs)
        cpu = sum(
            result["cpu_grid"] + result["cpu_workers"] + result["cpu_node"] for result in runs
        )
        sent = sum(result["sent"] for result in runs)
        print(
            f"{mode} ({len(runs)} runs): {sent / seconds:.1f} requests/s, "
            f"{cpu / sent * 1000:.1f} ms CPU per request, {cpu / seconds:.2f} cores busy"
        )
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2))


ROOT = Path(__file__).resolve().parent.parent


def reference_code(revision: str, directory: Path) -> dict[str, str]:
    """``grid_server``, the protocol library and the Curl kernel of ``revision``, unpacked
    into ``directory`` with the kernel compiled there; the environment that runs them."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "grid_server", "custom_components", "native"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    (directory / "p2p_energy_protocol").symlink_to(
        directory / "custom_components/p2p_energy/protocol"
    )
    compiler = sysconfig.get_config_var("CC") or "cc"
    flags = (sysconfig.get_config_var("CFLAGS") or "-O3").split()
    subprocess.run(
        [
            *compiler.split(),
            *flags,
            "-fPIC",
            "-shared",
            f"-I{sysconfig.get_paths()['include']}",
            str(directory / "native/p2p_energy_curl.c"),
            "-o",
            str(directory / f"p2p_energy_curl{sysconfig.get_config_var('EXT_SUFFIX')}"),
        ],
        check=True,
    )
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(directory), str(ROOT)])}


def compare_with_reference(arguments: argparse.Namespace) -> None:
    """``--reference``: this tree's pipelined bill stage and the revision's, in turns."""
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        environments = {
            "this tree": dict(os.environ),
            arguments.reference: reference_code(arguments.reference, Path(scratch)),
        }
        for number in range(arguments.rounds):
            for name, environment in environments.items():
                output = Path(scratch) / f"{number}-{len(runs)}.json"
                command = [
                    sys.executable,
                    __file__,
                    "--end-to-end",
                    "--modes",
                    "pipelined",
                    "--consumers",
                    str(arguments.consumers),
                    "--mwm",
                    str(arguments.mwm),
                    "--local-pow-workers",
                    str(arguments.local_pow_workers or 2),
                    "--json",
                    str(output),
                ]
                print(f"[{name}, round {number + 1}]", flush=True)
                subprocess.run(command, check=True, env=environment)
                (result,) = json.loads(output.read_text())
                runs.append({**result, "tree": name})
    print()
    print("| code | runs | requests/s | CPU ms per request: grid + workers + node = all | load |")
    print("| --- | ---: | ---: | --- | --- |")
    for name in environments:
        mine = [run for run in runs if run["tree"] == name]
        sent = sum(run["sent"] for run in mine)
        seconds = sum(run["seconds"] for run in mine)
        parts = [sum(run[key] for run in mine) / sent * 1000 for key in CPU_KEYS]
        loads = [run["load_before"] for run in mine] + [run["load_after"] for run in mine]
        print(
            f"| {name} | {len(mine)} | {sent / seconds:.1f} | "
            f"{' + '.join(f'{part:.1f}' for part in parts)} = {sum(parts):.1f} | "
            f"{min(loads):.1f}-{max(loads):.1f} |"
        )
    if arguments.json:
        arguments.json.write_text(json.dumps(runs, indent=2))


CPU_KEYS = ("cpu_grid", "cpu_workers", "cpu_node")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumers", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100, help="publish_due limit per call")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--publish", type=int, default=100, help="messages to publish (0: none)")
    parser.add_argument("--mwm", type=int, default=9)
    parser.add_argument(
        "--node-url", default=None, help="publish through this node (default: one in-process)"
    )
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument(
        "--local-pow-workers",
        type=int,
        default=0,
        help="proof of work in this many grid worker processes (default 0: on the node)",
    )
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="bills to every request stored on a node process: sequential vs pipelined",
    )
    parser.add_argument(
        "--modes",
        default="sequential,pipelined",
        help="with --end-to-end, in this order (repeat them to alternate: a,b,a,b)",
    )
    parser.add_argument(
        "--e2e-concurrency",
        type=int,
        default=DEFAULT_PUBLISH_CONCURRENCY,
        help="groups in flight with --end-to-end (the grid's default)",
    )
    parser.add_argument("--json", type=Path, help="--end-to-end figures as JSON")
    parser.add_argument(
        "--reference",
        help="with --end-to-end: this tree's pipelined bill stage against this git revision's",
    )
    parser.add_argument("--rounds", type=int, default=2, help="turns each with --reference")
    arguments = parser.parse_args()
    if arguments.reference:
        if not arguments.end_to_end:
            parser.error("--reference compares --end-to-end runs")
        compare_with_reference(arguments)
        return
    if arguments.local_pow_workers < 0:
        parser.error("--local-pow-workers must not be negative")
    if arguments.end_to_end and arguments.database_url:
        parser.error("--end-to-end copies a SQLite database per mode; leave --database-url out")
    with tempfile.TemporaryDirectory() as directory:
        url = arguments.database_url or f"sqlite:///{Path(directory) / 'grid.sqlite3'}"
        db = Database(url, threads=2)
        db.migrate()
        tangle = MamTangle(None)  # type: ignore[arg-type]  # creating needs no node
        load = os.getloadavg()[0]
        start = time.perf_counter()
        populate(db, tangle, arguments.consumers)
        print(f"set up {arguments.consumers} consumers in {time.perf_counter() - start:.1f} s")
        if arguments.end_to_end:
            db.close()
            await compare(arguments, Path(directory) / "grid.sqlite3", Path(directory))
            return
        pool = None
        if arguments.local_pow_workers > 0:
            pool = ProcessPoolProofOfWork(arguments.local_pow_workers)
            await warm_up(pool)
        try:
            await run(arguments, db, tangle, Path(directory), pool)
        finally:
            if pool is not None:
                await pool.close()
        db.close()
        print(f"load average (1 min) {load:.2f} before, {os.getloadavg()[0]:.2f} after")


async def warm_up(pool: ProcessPoolProofOfWork) -> None:
    """Start every worker (spawned on first use) as a running grid has them."""
    builder = BundleBuilder()
    builder.add_transfer("9" * 81, 0)
    builder.finalize()
    trytes = builder.to_trytes()
    await asyncio.gather(*(pool.attach("9" * 81, "9" * 81, 1, trytes) for _ in range(pool.workers)))


async def run(
    arguments: argparse.Namespace,
    db: Database,
    tangle: MamTangle,
    directory: Path,
    pool: ProcessPoolProofOfWork | None,
) -> None:
    """Create every payment request, then publish ``--publish`` of them per concurrency."""
    with ThreadPoolExecutor(1) as cpu:
        wall, cpu_seconds, created = await create_requests(db, tangle, cpu, arguments.batch)
        print(
            f"payment requests: {created} created and stored in {wall:.1f} s wall, "
            f"{cpu_seconds:.1f} s CPU ({wall / created * 1000:.2f} ms each; "
            f"batches of {arguments.batch}; {db})"
        )
        where = f"{pool.workers} local worker(s)" if pool is not None else "the node"
        for concurrency in (int(c) for c in arguments.concurrency.split(",")):
            if arguments.publish <= 0:
                break
            result = await publish(
                db,
                cpu,
                arguments.publish,
                arguments.mwm,
                concurrency,
                directory,
                arguments.node_url,
                pool,
            )
            rate = result["sent"] / result["seconds"]
            print(
                f"published {result['sent']} at MWM {arguments.mwm}, concurrency "
                f"{concurrency}, proof of work on {where}: {result['seconds']:.1f} s "
                f"({rate:.1f} messages/s; {arguments.consumers / rate:.0f} s for all "
                f"{arguments.consumers}; load {os.getloadavg()[0]:.2f})"
            )


if __name__ == "__main__":
    asyncio.run(main())
