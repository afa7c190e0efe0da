"""Scale measurements shared by the CI scale tests (reduced sizes) and
``benchmarks/scale_bench.py`` (full sizes): settlement of one slot for N
households, MAM batch ingestion, node storeTransactions throughput, and grid API
latency under a loopback load generator. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import random
import resource
import statistics
import time
from collections import Counter
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING, Any

import aiohttp
from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.mam import channel_root, create_channel, create_message, parse_messages
from p2p_energy_protocol.pow import attach_to_tangle
from p2p_energy_protocol.trinary import int_to_trytes
from sqlalchemy import func, insert, select

from grid_server.grid.config import GridConfig
from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import Bill, FollowedChannel, Payout, Reading, Registration
from grid_server.grid.settlement.service import SettlementService
from tests.reliability.processes import iri, request_json

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

SLOT_MS = 900_000  # the default 15-minute slot
SLOT_START = 1_888_888 * SLOT_MS
NULL_HASH = "9" * 81


@dataclass(frozen=True)
class SettlementFigures:
    households: int
    seconds: float
    readings: int

    @property
    def share_of_slot(self) -> float:
        return self.seconds / (SLOT_MS / 1000)


class _FixedClock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _populate(database: Database, households: int, producer_share: float = 0.2) -> int:
    """Bulk-insert registrations, followed channels and one reading per household."""
    rng = random.Random(households)
    producers = int(households * producer_share)
    ids = [f"household-{n:06}" for n in range(households)]
    with database.write() as session:
        session.execute(
            insert(Registration),
            [
                {
                    "registration_id": rid,
                    "item_name": rid,
                    "item_type": "producer" if n < producers else "consumer",
                    "active": True,
                    "created_at": 0,
                    "updated_at": 0,
                }
                for n, rid in enumerate(ids)
            ],
        )
        session.execute(
            insert(FollowedChannel),
            [
                {
                    "registration_id": rid,
                    "role": "producer" if n < producers else "consumer",
                    "mode": "restricted",
                    "root": "R" * 81,
                    "side_key": "S" * 81,
                    "next_root": "R" * 81,
                    "next_position": 1,
                    "active": True,
                    "hello_seen": True,
                    "skipped_messages": 0,
                    "next_read_at": 0,
                    "created_at": 0,
                }
                for n, rid in enumerate(ids)
            ],
        )
        channel_ids = dict(
            session.execute(select(FollowedChannel.registration_id, FollowedChannel.id)).all()
        )
        session.execute(
            insert(Reading),
            [
                {
                    "channel_id": channel_ids[rid],
                    "registration_id": rid,
                    "kind": "output" if n < producers else "usage",
                    "position": 1,
                    "message_root": "M" * 81,
                    "start_time": SLOT_START,
                    "end_time": SLOT_START + SLOT_MS,
                    "energy_mwh": rng.randint(1, 3_000_000),
                    "price_micro": rng.randint(10, 90) * 1_000_000 if n < producers else None,
                    "payment_id_or_address": f"invoice-{n}" if n < producers else None,
                    "received_at": SLOT_START + SLOT_MS,
                    "settlement_id": None,
                }
                for n, rid in enumerate(ids)
            ],
        )
    return producers


def settle_one_slot(directory: Path, households: int) -> SettlementFigures:
    """Settle one 15-minute slot of ``households`` readings on a fresh SQLite file."""
    database = Database(f"sqlite:///{directory / f'settle-{households}.sqlite3'}", threads=1)
    try:
        database.migrate()
        producers = _populate(database, households)
        config = replace(GridConfig(), slot_seconds=SLOT_MS // 1000)
        service = SettlementService(
            database, config, _FixedClock(SLOT_START + 2 * SLOT_MS), "scale-bench"
        )
        started = time.perf_counter()
        summaries = asyncio.run(service.settle_due())
        seconds = time.perf_counter() - started
        with database.read() as session:
            bills = session.scalar(select(func.count()).select_from(Bill))
            payouts = session.scalar(select(func.count()).select_from(Payout))
        assert bills == households - producers, bills
        assert payouts == producers, payouts
        return SettlementFigures(households, seconds, sum(s.readings for s in summaries))
    finally:
        database.close()


@cache
def _sample_messages(count: int) -> tuple[tuple[str, str, str | None], ...]:
    """Distinct real MAM messages (creating one costs ~0.1 s, so a few are reused)."""
    items = []
    for n in range(count):
        channel = create_channel(chr(ord("A") + n % 26) * 80 + "9", 1, "restricted", "SCALE")
        message = create_message(
            channel,
            {
                "command": "usage",
                "startTime": SLOT_START,
                "endTime": SLOT_START + SLOT_MS,
                "usage": 0.25 + n / 1000,
            },
        )
        items.append((message.payload, message.root, channel.side_key))
    return tuple(items)


def mam_ingestion_rate(messages: int, distinct: int = 32) -> float:
    """Messages per second verified by one batch parse of ``messages`` payloads."""
    sample = _sample_messages(distinct)
    batch = [sample[n % distinct] for n in range(messages)]
    started = time.perf_counter()
    results = parse_messages(batch)
    seconds = time.perf_counter() - started
    assert all(not isinstance(result, Exception) for result in results)
    return messages / seconds


def zero_value_bundles(bundles: int, size: int) -> list[list[str]]:
    """``bundles`` attached zero-value bundles of ``size`` transactions (weight 1)."""
    rng = random.Random(bundles * 1000 + size)
    made = []
    for n in range(bundles):
        builder = BundleBuilder()
        message = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ9") for _ in range(2187 * size))
        builder.add_transfer(("SCALE" + int_to_trytes(n, 9)).ljust(81, "9"), 0, "SCALE", message)
        builder.finalize()
        made.append(attach_to_tangle(builder.to_trytes(), NULL_HASH, NULL_HASH, 1))
    return made


def node_store_rate(node_url: str, bundles: list[list[str]], per_request: int) -> float:
    """Transactions per second stored by storeTransactions, ``per_request`` bundles a call."""
    started = time.perf_counter()
    stored = 0
    for first in range(0, len(bundles), per_request):
        trytes = [t for bundle in bundles[first : first + per_request] for t in bundle]
        status, body = iri(node_url, {"command": "storeTransactions", "trytes": trytes})
        assert status == 200, body
        stored += len(trytes)
    return stored / (time.perf_counter() - started)


@dataclass(frozen=True)
class LoadFigures:
    requests: int
    seconds: float
    errors: int
    server_errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    statuses: dict[int, int]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


LOAD_OWNER = "load-generator-owner"


def register_load_owner(node_url: str, grid_url: str) -> None:
    """Register the producer whose storage the load generator writes (hello first)."""
    channel = create_channel("LOAD".ljust(81, "9"), 1, "restricted", "LOAD")
    root = channel_root(channel)

    async def publish() -> None:
        async with aiohttp.ClientSession() as session:
            hello = create_message(channel, {"command": "hello"})
            await IriClient(session, node_url).publish_mam(hello, min_weight_magnitude=1)

    asyncio.run(publish())
    status, body = request_json(
        "PUT",
        f"{grid_url}/registration/{LOAD_OWNER}",
        {"itemName": "load", "itemType": "producer", "root": root, "sideKey": channel.side_key},
    )
    assert status == 200, body


def grid_api_load(grid_url: str, seconds: float, concurrency: int) -> LoadFigures:
    """PUT and GET storage items (open storage) from ``concurrency`` loopback clients
    (call :func:`register_load_owner` first)."""

    def requests(number: int, sequence: int) -> list[tuple[str, str, Any]]:
        item = f"{grid_url}/storage/item/{LOAD_OWNER}/c{number}/r{sequence % 50}"
        return [("PUT", item, {"kWh": sequence}), ("GET", item, None)]

    return _load(requests, seconds, concurrency, {})


def node_api_load(node_url: str, seconds: float, concurrency: int) -> LoadFigures:
    """The reads a grid and its households make: getNodeInfo, findTransactions, getTips."""
    address = ("SCALE" + int_to_trytes(0, 9)).ljust(81, "9")
    bodies = [
        {"command": "getNodeInfo"},
        {"command": "findTransactions", "addresses": [address]},
        {"command": "getTips"},
    ]

    def requests(_number: int, sequence: int) -> list[tuple[str, str, Any]]:
        return [("POST", node_url, bodies[sequence % len(bodies)])]

    return _load(requests, seconds, concurrency, {"X-IOTA-API-Version": "1"})


def _load(
    requests: Callable[[int, int], list[tuple[str, str, Any]]],
    seconds: float,
    concurrency: int,
    headers: dict[str, str],
) -> LoadFigures:
    async def run() -> LoadFigures:
        latencies: list[float] = []
        errors = server_errors = 0
        statuses: Counter[int] = Counter()
        deadline = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

            async def client(number: int) -> None:
                nonlocal errors, server_errors
                sequence = 0
                while time.monotonic() < deadline:
                    sequence += 1
                    for method, item, body in requests(number, sequence):
                        started = time.perf_counter()
                        async with session.request(method, item, json=body) as response:
                            await response.read()
                            status = response.status
                        latencies.append(time.perf_counter() - started)
                        statuses[status] += 1
                        if status >= 500:
                            server_errors += 1
                        elif status >= 400:
                            errors += 1

            started = time.monotonic()
            await asyncio.gather(*(client(n) for n in range(concurrency)))
            elapsed = time.monotonic() - started
        quantiles = statistics.quantiles(latencies, n=100)
        return LoadFigures(
            len(latencies),
            elapsed,
            errors,
            server_errors,
            statistics.median(latencies) * 1000,
            quantiles[94] * 1000,
            quantiles[98] * 1000,
            dict(statuses),
        )

    return asyncio.run(run())


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
