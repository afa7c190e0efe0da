"""Grid CPU for a slot's fresh payment addresses at N consumers (issue 14).

Run ``.venv/bin/python benchmarks/wallet_addresses_bench.py --consumers 8000
[--database-url URL]``. On a migrated database with N consumer registrations it
measures the grid process's CPU seconds (all threads, from ``resource``) of:

* ``derive``: ``generate_addresses`` of N addresses alone (Kerl; the line above says
  whether the compiled kernel runs);
* ``inline``: ``GridWallet.payment_addresses`` of all N with an empty pool: derive
  and record in the slot, as a grid without a pool (or before it) does;
* ``refill``: ``refill_address_pool`` to N (the idle time after a bill stage);
* ``from pool``: ``payment_addresses`` of all N taking the pool's addresses: what is
  left in the slot.

With ``--source DIR`` the ``grid_server`` package is imported from DIR (e.g. an
unpacked older revision: ``git archive REV grid_server | tar -x -C DIR``) to measure
it the same way; a revision without the pool measures ``inline`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SEED = "BENCH9WALLET" + "9" * 69


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Measured:
    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Measured:
        self.cpu, self.wall = cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        cpu, wall = cpu_seconds() - self.cpu, time.perf_counter() - self.wall
        print(f"{self.name:<34} CPU {cpu:7.2f} s   wall {wall:7.2f} s", flush=True)


class NoNode:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the node was asked for {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consumers", type=int, default=8000)
    parser.add_argument("--database-url")
    parser.add_argument("--source", help="import grid_server from this folder")
    parser.add_argument("--skip-derive", action="store_true")
    args = parser.parse_args()
    if args.source:
        sys.path.insert(0, os.path.abspath(args.source))
    from p2p_energy_protocol import kernel
    from p2p_energy_protocol.signing import generate_addresses
    from sqlalchemy import func, insert, select

    from grid_server.grid.db.engine import Database
    from grid_server.grid.db.models import Registration, WalletAddress
    from grid_server.grid.wallet import GridWallet

    print(f"grid_server from {GridWallet.__module__} in {sys.modules['grid_server'].__path__}")
    print(f"kernel: {kernel.describe()}; load average {os.getloadavg()}", flush=True)
    n = args.consumers
    if not args.skip_derive:
        with Measured(f"derive {n} (generate_addresses)"):
            generate_addresses(SEED, 1, n)

    ids = [f"consumer-{i:05d}" for i in range(n)]
    has_pool = hasattr(GridWallet, "refill_address_pool")

    def fresh_database(folder: str, name: str) -> Database:
        url = args.database_url or f"sqlite:///{folder}/{name}.sqlite3"
        database = Database(url, threads=2)
        database.migrate()
        with database.write() as session:
            session.execute(
                insert(Registration),
                [
                    {
                        "registration_id": i,
                        "item_name": i,
                        "item_type": "consumer",
                        "active": True,
                        "created_at": 0,
                        "updated_at": 0,
                    }
                    for i in ids
                ],
            )
        return database

    async def run(folder: str) -> None:
        with ThreadPoolExecutor(1) as cpu:
            db = fresh_database(folder, "inline")
            kwargs: dict[str, Any] = {"address_pool": 0} if has_pool else {}
            wallet = GridWallet(db, NoNode(), SEED, lambda: 0, cpu, **kwargs)  # type: ignore[arg-type]
            await wallet.treasury_address()
            with Measured(f"inline: payment_addresses({n})"):
                inline = await wallet.payment_addresses(ids)
            db.close()
            if not has_pool or args.database_url:
                return
            db = fresh_database(folder, "pool")
            wallet = GridWallet(db, NoNode(), SEED, lambda: 0, cpu, address_pool=n)  # type: ignore[arg-type]
            await wallet.treasury_address()
            with Measured(f"refill: refill_address_pool({n})"):
                await wallet.refill_address_pool()
            with Measured(f"from pool: payment_addresses({n})"):
                pooled = await wallet.payment_addresses(ids)
            assert pooled == inline, "the pool's addresses differ from those derived in the slot"
            with db.read() as session:
                left = session.scalar(
                    select(func.count()).where(WalletAddress.purpose == "reserved")
                )
            assert left == 0
            db.close()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(folder))
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
