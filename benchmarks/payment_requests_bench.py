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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.trinary import random_trytes

from grid_server.grid.billing import PaymentRequests
from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import (
    Bill,
    GridChannel,
    OutboxMessage,
    Registration,
    Settlement,
    WalletAddress,
)
from grid_server.grid.proof_of_work import ProcessPoolProofOfWork
from grid_server.grid.return_channels import ReturnChannels
from grid_server.grid.tangle import MamTangle
from grid_server.grid.wallet import GridWallet
from grid_server.node import NodeConfig, NodeServer

SEED = "BENCH9GRID9SEED".ljust(81, "9")
NOW = 1_800_000_000_000


def populate(db: Database, tangle: MamTangle, consumers: int) -> None:
    """N consumers with a channel whose hello is sent, an address and a bill each."""
    channels = [tangle.new_channel() for _ in range(consumers)]
    hellos = tangle.create_messages([(channel.state, {"command": "hello"}) for channel in channels])
    with db.write() as session:
        settlement = Settlement(
            slot_start=NOW,
            slot_end=NOW + 900_000,
            strategy="bench",
            consensus_price_micro=None,
            import_price_micro=0,
            export_price_micro=0,
            grid_cut_ppm=0,
            **dict.fromkeys(
                [
                    "produced_milliwh",
                    "consumed_milliwh",
                    "local_milliwh",
                    "imported_milliwh",
                    "exported_milliwh",
                    "local_value",
                    "consumer_charges",
                    "producer_payouts",
                    "import_cost",
                    "export_revenue",
                    "grid_cut",
                    "readings_count",
                    "adjustment_readings",
                    "producers_count",
                    "consumers_count",
                    "settled_at",
                ],
                0,
            ),
            energy_balanced=True,
            money_balanced=True,
            invariant_report="{}",
            settled_by="bench",
        )
        session.add(settlement)
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
    arguments = parser.parse_args()
    if arguments.local_pow_workers < 0:
        parser.error("--local-pow-workers must not be negative")
    with tempfile.TemporaryDirectory() as directory:
        url = arguments.database_url or f"sqlite:///{Path(directory) / 'grid.sqlite3'}"
        db = Database(url, threads=2)
        db.migrate()
        tangle = MamTangle(None)  # type: ignore[arg-type]  # creating needs no node
        load = os.getloadavg()[0]
        start = time.perf_counter()
        populate(db, tangle, arguments.consumers)
        print(f"set up {arguments.consumers} consumers in {time.perf_counter() - start:.1f} s")
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
