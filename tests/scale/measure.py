"""Scale measurements shared by the CI scale tests (reduced sizes) and
``benchmarks/scale_bench.py`` (full sizes): settlement of one slot for N
households, MAM batch ingestion, node storeTransactions throughput, and grid API
latency under a loopback load generator. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np
import numpy.typing as npt
from p2p_energy_protocol.bundle import BundleBuilder, finalize_bundles
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.curl import HASH_LENGTH, CurlBatch, unpack_lanes
from p2p_energy_protocol.mam import (
    MamChannel,
    channel_root,
    create_channel,
    create_message,
    create_messages,
    message_to_transactions,
    parse_messages,
)
from p2p_energy_protocol.pow import MAX_TIMESTAMP_VALUE, attach_to_tangle
from p2p_energy_protocol.signing import generate_address, generate_addresses
from p2p_energy_protocol.transaction import NULL_TAG, TRANSACTION_TRITS, Transaction
from p2p_energy_protocol.trinary import int_to_trytes, trits_to_trytes
from sqlalchemy import create_engine, func, insert, select, update

from grid_server.grid.config import GridConfig
from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import (
    Bill,
    FollowedChannel,
    OutboxMessage,
    Payout,
    Reading,
    Registration,
    Settlement,
    WalletTransfer,
)
from grid_server.grid.settlement.service import SettlementService
from tests.reliability.processes import (
    COORDINATOR_SEED,
    WALLET_SEED,
    GridProcess,
    NodeProcess,
    iri,
    request_json,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from concurrent.futures import Executor

    from sqlalchemy import Connection, Engine, Select

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
        channel_ids: dict[str, int] = {
            row[0]: row[1]
            for row in session.execute(select(FollowedChannel.registration_id, FollowedChannel.id))
        }
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
                    "energy_milliwh": rng.randint(1, 3_000_000),
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


def grid_api_load(
    grid_url: str,
    seconds: float,
    concurrency: int,
    owner: str = LOAD_OWNER,
    rate: float | None = None,
) -> LoadFigures:
    """PUT and GET storage items (open storage) from ``concurrency`` loopback clients
    (call :func:`register_load_owner` first, or pass a registered ``owner``): as fast as
    they are answered, or ``rate`` requests per second in all (the clients then start
    them on a schedule, so a slow answer delays only its own client)."""

    def requests(number: int, sequence: int) -> list[tuple[str, str, Any]]:
        item = f"{grid_url}/storage/item/{owner}/c{number}/r{sequence % 50}"
        return [("PUT", item, {"kWh": sequence}), ("GET", item, None)]

    return _load(requests, seconds, concurrency, {}, rate)


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
    rate: float | None = None,
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
                start = time.monotonic()
                while time.monotonic() < deadline:
                    sequence += 1
                    batch = requests(number, sequence)
                    if rate:  # this client's share of the rate, its batches evenly spaced
                        due = start + (sequence - 1) * len(batch) * concurrency / rate
                        await asyncio.sleep(max(0.0, due - time.monotonic()))
                        if time.monotonic() >= deadline:
                            break
                    for method, item, body in batch:
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


# -- end to end: real households through a real node and grid ---------------------------
#
# The household side stands for N separate machines: it creates MAM messages and does
# their proof of work itself (in a process pool, outside the measured processes) and
# hands the node finished transactions in large storeTransactions batches.

E2E_SLOT_MS = 900_000
PRODUCER_EVERY = 5
"""Every fifth household is a producer (20 %), the rest consumers."""
STORE_BATCH = 300
"""Transactions per storeTransactions call: 300 x 2,673 trytes stay under the node's
1 MB body limit."""
POW_CHUNK = 400
"""Transactions per lane-parallel nonce search (bounds the search's memory)."""


def _household_trytes(number: int, length: int = 81) -> str:
    """A distinct deterministic tryte string per household (seeds, side keys)."""
    return ("HOUSEHOLD" + int_to_trytes(number, 12)).ljust(length, "9")


@dataclass(frozen=True)
class Household:
    registration_id: str
    role: str
    root: str
    side_key: str


def household(number: int) -> Household:
    role = "producer" if number % PRODUCER_EVERY == 0 else "consumer"
    channel = create_channel(_household_trytes(number), 2, "restricted", _side_key(number))
    return Household(f"e2e-{number:06}", role, channel_root(channel), _side_key(number))


def _side_key(number: int) -> str:
    return ("KEY" + int_to_trytes(number, 12)).ljust(81, "9")


PAYOUT_SEED = "PRODUCERS9PAYOUT9ADDRESSES".ljust(81, "9")
"""The seed of the producers' IOTA payout addresses (the generator's, not the grid's)."""
PAYOUT_ADDRESS_SECURITY = 1
"""A destination's security does not matter to the payer; 1 is the cheapest to derive."""


def payout_addresses(numbers: range) -> dict[int, str]:
    """The IOTA payout address of each producer among households ``numbers``: key index
    ``number // PRODUCER_EVERY`` of :data:`PAYOUT_SEED` (Kerl addresses end in a 0 trit,
    so the node accepts value sent to them), derived in one batch."""
    producers = [number for number in numbers if number % PRODUCER_EVERY == 0]
    if not producers:
        return {}
    first, last = producers[0] // PRODUCER_EVERY, producers[-1] // PRODUCER_EVERY
    derived = generate_addresses(PAYOUT_SEED, first, last - first + 1, PAYOUT_ADDRESS_SECURITY)
    return {number: derived[number // PRODUCER_EVERY - first] for number in producers}


def slot_reading(
    role: str,
    number: int,
    slot_start: int,
    slot_ms: int = E2E_SLOT_MS,
    payout_address: str | None = None,
) -> dict[str, object]:
    """One household's reading of the slot; the energy is derived from the household
    and slot so the benchmark can check sums. A producer names ``payout_address`` (paid
    in IOTA by the grid's wallet) or, without one, an invoice reference (paid off the
    Tangle: only recorded)."""
    energy = reading_kwh(number, slot_start)
    reading: dict[str, object] = {"startTime": slot_start, "endTime": slot_start + slot_ms}
    if role == "consumer":
        return reading | {"command": "usage", "usage": energy}
    return reading | {
        "command": "output",
        "output": energy,
        "producerPrice": 30 + number % 40,
        "paymentIdOrAddress": payout_address or f"invoice-{number}",
    }


def reading_kwh(number: int, slot_start: int) -> float:
    return round(0.05 + ((number * 7919 + slot_start // E2E_SLOT_MS) % 1000) / 1000, 3)


HOUSEHOLD_TAG = "PEERENERGYHOUSEHOLD"


def make_messages(
    numbers: range,
    channels: list[dict[str, Any]] | None,
    contents: list[str],
    tangle_payouts: bool = False,
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Next messages of households ``numbers``: each of ``contents`` is "hello" or
    "start:length" of a slot in ms. With ``tangle_payouts`` producers name their IOTA
    payout address (:func:`payout_addresses`), otherwise an invoice reference.

    Returns the channels' states (to continue from next time) and each message as an
    unattached bundle, head first. Runs in a pool worker: MAM creation is the
    households' own CPU.
    """
    households: list[MamChannel] = []
    items: list[tuple[MamChannel, dict[str, object]]] = []
    addresses = payout_addresses(numbers) if tangle_payouts else {}
    for offset, number in enumerate(numbers):
        if channels is None:
            channel = create_channel(_household_trytes(number), 2, "restricted", _side_key(number))
        else:
            channel = MamChannel.from_json(channels[offset])
        households.append(channel)
        role = "producer" if number % PRODUCER_EVERY == 0 else "consumer"
        for content in contents:
            body: dict[str, object] = {"command": "hello"}
            if content != "hello":
                start, length = map(int, content.split(":"))
                body = slot_reading(role, number, start, length, addresses.get(number))
            items.append((channel, body))
    # One batched creation (a channel listed again gets its next message).
    bundles = [
        [tx.to_trytes() for tx in reversed(message_to_transactions(message, tag=HOUSEHOLD_TAG))]
        for message in create_messages(items)
    ]
    states = [channel.to_json() for channel in households]
    return states, bundles


SWEEP_TAG = "PEERENERGYTIPSWEEP"


def approve_tips(tips: list[str], min_weight_magnitude: int) -> list[str]:
    """One zero-value transaction per pair of ``tips`` approving both (an odd last tip
    pairs with the first): the traffic that approves a Tangle's tips in days of use,
    halving their number. Attached trytes; runs in a pool worker."""
    pairs = [(tips[n], tips[(n + 1) % len(tips)]) for n in range(0, len(tips), 2)]
    builders = []
    for n in range(len(pairs)):
        builder = BundleBuilder()
        builder.add_transfer(("SWEEP" + int_to_trytes(n, 9)).ljust(81, "9"), 0, SWEEP_TAG)
        builders.append(builder)
    finalize_bundles(builders)
    bundles = [builder.to_trytes() for builder in builders]
    return [
        trytes
        for bundle in attach_bundles(bundles, "", "", min_weight_magnitude, parents=pairs)
        for trytes in bundle
    ]


def attach_bundles(
    bundles: list[list[str]],
    trunk: str,
    branch: str,
    min_weight_magnitude: int,
    parents: list[tuple[str, str]] | None = None,
) -> list[list[str]]:
    """attachToTangle for many bundles (each head first), tail first in the result;
    ``parents`` gives each bundle its own (trunk, branch) instead.

    Chaining is as in :func:`p2p_energy_protocol.pow.attach_to_tangle`; the nonce
    searches of the bundles' k-th transactions run side by side in Curl lanes, so a
    household's proof of work costs a fraction of a millisecond here instead of
    ~20 ms of per-call setup.
    """
    approved = parents or [(trunk, branch)] * len(bundles)
    pending = [[Transaction.from_trytes(trytes) for trytes in bundle] for bundle in bundles]
    attached: list[list[str]] = [[] for _ in bundles]
    previous: list[str | None] = [None] * len(bundles)
    now = int(time.time() * 1000)
    for level in range(max(len(bundle) for bundle in pending)):
        rows = [n for n, bundle in enumerate(pending) if level < len(bundle)]
        prepared = []
        for n in rows:
            transaction = pending[n][level]
            before = previous[n]
            first_trunk, first_branch = approved[n]
            prepared.append(
                transaction.replace(
                    trunk_transaction=first_trunk if before is None else before,
                    branch_transaction=first_branch if before is None else first_trunk,
                    tag=transaction.obsolete_tag
                    if transaction.tag == NULL_TAG
                    else transaction.tag,
                    attachment_timestamp=now,
                    attachment_timestamp_lower_bound=0,
                    attachment_timestamp_upper_bound=MAX_TIMESTAMP_VALUE,
                )
            )
        for first in range(0, len(rows), POW_CHUNK):
            chunk = prepared[first : first + POW_CHUNK]
            nonces, hashes = _nonces(
                np.stack([tx.to_trits() for tx in chunk]), min_weight_magnitude
            )
            for k, transaction in enumerate(chunk):
                n = rows[first + k]
                done = transaction.replace(nonce=trits_to_trytes(nonces[k]))
                attached[n].append(done.to_trytes())
                previous[n] = trits_to_trytes(hashes[k])
    return [list(reversed(bundle)) for bundle in attached]


def _nonces(
    transactions: npt.NDArray[np.int8], weight: int
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
    """A nonce per row giving its Curl-P-81 hash ``weight`` trailing zero trits, and
    the hashes: random candidates, several lanes per transaction, until all succeed."""
    rows = transactions.shape[0]
    sponge = CurlBatch(rows)
    sponge.absorb(transactions[:, : TRANSACTION_TRITS - HASH_LENGTH])
    base = sponge.state()
    base[:, :HASH_LENGTH] = transactions[:, TRANSACTION_TRITS - HASH_LENGTH :]
    nonces = np.zeros((rows, HASH_LENGTH // 3), dtype=np.int8)
    hashes = np.zeros((rows, HASH_LENGTH), dtype=np.int8)
    copies = max(1, min(3**weight // 4, 64))
    rng = np.random.default_rng(rows * 31 + weight)
    pending = np.arange(rows)
    while pending.size:
        states = np.repeat(base[pending], copies, axis=0)
        candidates = rng.integers(-1, 2, size=(states.shape[0], HASH_LENGTH // 3), dtype=np.int8)
        states[:, HASH_LENGTH - HASH_LENGTH // 3 : HASH_LENGTH] = candidates
        batch = CurlBatch(states.shape[0])
        batch.set_state(states)
        batch.transform()
        found = unpack_lanes(batch.low[:HASH_LENGTH], batch.high[:HASH_LENGTH], states.shape[0])
        good = (found[:, HASH_LENGTH - weight :] == 0).all(axis=1).reshape(pending.size, copies)
        solved = good.any(axis=1)
        pick = np.arange(pending.size) * copies + good.argmax(axis=1)
        nonces[pending[solved]] = candidates[pick[solved]]
        hashes[pending[solved]] = found[pick[solved]]
        pending = pending[~solved]
    return nonces, hashes


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass
class Timeline:
    """Seconds from the last reading reaching the node until each step was done for
    the whole slot (``None``: not within the wait); includes the grid's start when the
    grid is restarted for the slot (``restart_grid``)."""

    readings_stored: float
    settled: float
    requests_stored: float | None
    payouts_stored: float | None
    payouts_confirmed: float | None = None
    """Until a milestone confirmed every IOTA payout of the slot (``None``: not within
    the wait, or none was paid on the Tangle); reported beside the whole slot, not in
    it: a confirmation waits for the coordinator's next milestone."""

    @property
    def whole_slot(self) -> float | None:
        """Until the last of them: the slot ingested, settled, billed and paid (every
        payout's bundle stored on the node)."""
        if self.requests_stored is None or self.payouts_stored is None:
            return None
        return max(self.readings_stored, self.settled, self.requests_stored, self.payouts_stored)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM, Linux /proc)."""
    return _status_kib(pid, "VmHWM")


def reset_peak_rss(pid: int) -> None:
    """Start the process's VmHWM again from its current RSS (Linux clear_refs "5"), so a
    process that keeps running reports the peak of the window that follows."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (Linux /proc)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            children.extend(int(child) for child in (task / "children").read_text().split())
    return children


def _cpu_of(pids: list[int]) -> dict[int, float]:
    found: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError):  # a child that ended in between
            found[pid] = cpu_seconds(pid)
    return found


# -- sampling profiles of the measured processes (py-spy) --------------------------------

PROFILE_RATE = 50
"""py-spy samples per second and process: enough for a slot's top functions, little
enough that the sampler itself stays a few percent of a core."""


def py_spy_executable() -> Path | None:
    """py-spy next to this interpreter (the venv) or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return beside
    found = shutil.which("py-spy")
    return Path(found) if found else None


class Profiler:
    """``py-spy record`` of running processes over one measured window: one raw
    (folded-stack, one ``frame;frame;... count`` line per stack) file per process
    tree, aggregated by function (``--function``). Speedscope and flamegraph tools
    read the folded format; :func:`summarise_profile` reads it for a text summary."""

    def __init__(self, executable: Path, directory: Path, rate: int = PROFILE_RATE) -> None:
        self.executable = executable
        self.directory = directory
        self.rate = rate
        self.recording: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, pid: int, *, subprocesses: bool = False) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        output = self.directory / f"{name}.folded"
        log = self.directory / f"{name}.py-spy.log"
        command = [
            str(self.executable),
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--function",
            "--output",
            str(output),
            *(["--subprocesses"] if subprocesses else []),
        ]
        with log.open("wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        self.recording.append((process, output))
        return output

    def stop(self) -> list[Path]:
        """Stop every recording (SIGINT: py-spy writes its file) and return the files."""
        for process, _ in self.recording:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        written: list[Path] = []
        for process, output in self.recording:
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if output.exists():
                written.append(output)
        self.recording = []
        return written


@dataclass
class ProcessProfile:
    """Samples of one process (or of a group, such as the grid's workers) by function."""

    process: str
    samples: int
    self_samples: Counter[str]
    """Samples with the function at the top of the stack (its own code running)."""
    total_samples: Counter[str]
    """Samples with the function anywhere on the stack (it or what it called)."""
    idle_samples: int = 0
    """Samples of threads waiting for work (:data:`IDLE_LEAVES`), left out of the rest."""

    def top(self, count: int, *, by_total: bool = False) -> list[tuple[str, int]]:
        return (self.total_samples if by_total else self.self_samples).most_common(count)

    def top_project(self, count: int) -> list[tuple[str, int]]:
        """By total time, only this project's functions: which of its code paths the
        library frames (SQLAlchemy, numpy, aiohttp) ran under."""
        found = (
            (function, samples)
            for function, samples in self.total_samples.most_common()
            if function.partition(" (")[2].startswith(PROJECT_PACKAGES)
        )
        return list(itertools.islice(found, count))


_PROCESS_FRAMES = re.compile(r'((?:process \d+:"[^"]*";)*)(.*)')
IDLE_LEAVES = frozenset(
    {
        "_worker (concurrent/futures/thread.py",
        "Condition.wait (threading.py",
        "Event.wait (threading.py",
        "EpollSelector.select (selectors.py",
        "_PollLikeSelector.select (selectors.py",
        "Connection._recv (multiprocessing/connection.py",
        "wait (multiprocessing/connection.py",
        "_ChannelShutdownManager._run_safe_shutdown_loop (pycares/__init__.py",
    }
)
"""Leaf frames of threads waiting for work: py-spy counts a waiting thread now and then
(about 2 % of an idle thread's samples here, caught as it wakes), which in processes
with many idle threads adds up; the summary leaves them out and says how many."""
PROJECT_PACKAGES = ("grid_server/", "custom_components/")
_PLUMBING = ("threading.py", "multiprocessing/", "concurrent/futures/", "asyncio/", "selectors.py")


def _frame_key(frame: str) -> str:
    """``name (file:line)`` without the line."""
    return frame.rpartition(":")[0] if frame.endswith(")") else frame


def _plumbing(frame: str) -> bool:
    """Thread, process and event-loop frames under everything: not worth a line."""
    name, _, place = frame.partition(" (")
    return name == "<module>" or place.startswith(_PLUMBING)


def summarise_profile(path: Path, name: str) -> list[ProcessProfile]:
    """Per process: a folded file of one process tree (``--subprocesses``) starts each
    stack with ``process PID:"command line"`` frames; the first process is ``name``,
    the ones below it are grouped as ``name workers``."""
    profiles: dict[str, ProcessProfile] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        match = _PROCESS_FRAMES.match(stack)
        assert match is not None  # the pattern matches every string
        processes = match.group(1).count("process ")
        label = name if processes <= 1 else f"{name} workers"
        functions = match.group(2).split(";") if match.group(2) else []
        if not functions:
            continue
        profile = profiles.setdefault(label, ProcessProfile(label, 0, Counter(), Counter()))
        if _frame_key(functions[-1]) in IDLE_LEAVES:
            profile.idle_samples += count
            continue
        profile.samples += count
        profile.self_samples[functions[-1]] += count
        for function in set(functions):
            if not _plumbing(function):
                profile.total_samples[function] += count
    return sorted(profiles.values(), key=lambda profile: profile.process)


def profile_report(
    profiles: list[ProcessProfile],
    cpu: dict[str, float] | None = None,
    rate: int = PROFILE_RATE,
    top: int = 12,
) -> str:
    """The top functions of each process by self time and by total time, as text; with
    the process's CPU seconds (``cpu``, from /proc), each share is also given as CPU
    seconds (samples count a thread that is runnable, also while it waits for a core)."""
    lines: list[str] = []
    for profile in profiles:
        seconds = (cpu or {}).get(profile.process)
        lines.append(
            f"{profile.process}: {profile.samples:,} samples at {rate}/s "
            f"({profile.idle_samples:,} of waiting threads left out)"
            + ("" if seconds is None else f", {seconds:.1f} CPU s from /proc")
        )
        for title, found in (
            ("self time", profile.top(top)),
            ("total time", profile.top(top, by_total=True)),
            ("total time, this project's functions", profile.top_project(top)),
        ):
            lines.append(f"  top by {title} (share of samples, ~CPU s):")
            for function, samples in found:
                share = samples / max(profile.samples, 1)
                estimate = "" if seconds is None else f"{share * seconds:7.1f} s"
                lines.append(f"    {share:6.1%} {estimate}  {function}")
    return "\n".join(lines)


@dataclass
class SlotFigures:
    slot_start: int
    transactions: int
    store_seconds: float
    grid_start_seconds: float
    """The grid's start-up inside the slot (0 when it keeps running)."""
    ingest_seconds: float
    """Until the grid stored all N readings: from its start (``restart_grid``) or from
    the first reading sent to the node (a running grid follows while they arrive)."""
    settle_seconds: float
    outbox_backlog: int
    """The grid's unsent outbox messages when the slot was settled."""
    requests_created: int
    requests_created_seconds: float
    requests_published: int
    requests_expected: int
    requests_publish_seconds: float
    api: LoadFigures
    node_cpu: float
    grid_cpu: float
    node_rss: int
    grid_rss: int
    load_before: float
    load_after: float
    since_last_reading: Timeline
    """From the last reading stored on the node (wall clock)."""
    node_peak_rss: int
    grid_peak_rss: int
    workers_peak_rss: int
    """The grid's proof-of-work worker processes together."""
    workers_cpu: float
    """CPU of the grid's worker processes in the slot."""
    payouts: int
    payouts_on_tangle: int
    payouts_confirmed: int = 0
    """IOTA payouts of the slot a milestone confirmed within the wait."""
    payouts_failed: int = 0
    """IOTA payouts of the slot the wallet gave up on (never confirmed)."""
    payout_bundles: list[int] = field(default_factory=list)
    """Transactions of each value bundle (wallet_transfers row) paying the slot's payouts."""
    node_tips: tuple[int, int] = (0, 0)
    """The node's tips before the slot's readings and when the whole slot was done: a
    milestone references the oldest few (``milestone_references``), so a payout bundle
    waits behind the tips older than it."""
    settled_readings: int = 0
    """Readings the slot's settlement took (N: it waited for every one)."""
    settled_adjustments: int = 0
    """Late readings of an earlier slot it took (0: no slot was settled half read)."""
    profiles: list[str] = field(default_factory=list)
    """py-spy folded-stack files of the slot (``profile_dir``)."""

    @property
    def store_rate(self) -> float:
        return self.transactions / self.store_seconds

    def ingest_rate(self, households: int) -> float:
        return households / self.ingest_seconds

    @property
    def publish_rate(self) -> float:
        return self.requests_published / max(self.requests_publish_seconds, 1e-9)

    @property
    def cpu_share(self) -> float:
        return self.cpu / (E2E_SLOT_MS / 1000)

    @property
    def cpu(self) -> float:
        """CPU seconds of the node, the grid and its workers in the slot's window."""
        return self.node_cpu + self.grid_cpu + self.workers_cpu


@dataclass
class E2EFigures:
    households: int
    min_weight_magnitude: int
    grid_min_weight_magnitude: int
    generate_seconds: float
    register_seconds: float
    hello_store_rate: float
    slots: list[SlotFigures]
    load_average: tuple[float, float, float]
    restart_grid: bool = False
    """True: the grid was stopped while each slot's readings arrived and started after."""
    grid_start_seconds: float = 0.0
    """The grid's start-up before registration."""
    outbox_drain_seconds: float = 0.0
    """After registration, until the grid had sent every hello (before the first slot)."""
    registration_peak_rss: tuple[int, int] = (0, 0)
    """Peak RSS of the grid and the node from their start through registration."""
    grid_settings: dict[str, Any] = field(default_factory=dict)
    """The grid's configuration (follow interval, settlement delay, workers...)."""
    tangle_payouts: bool = False
    """True: producers named IOTA addresses, paid by the grid wallet's value bundles."""
    milestone_interval: float = 0.0
    """The node's coordinator interval (s): how often a milestone can confirm payouts."""
    milestone_references: int = 0
    """Tips a milestone references at most (the node's coordinator.max_references)."""
    registration_tips: tuple[int, int] = (0, 0)
    """The node's tips after registration, and after the generator approved them."""


REGISTERED_BEFORE_MS = 86_400_000
"""The households registered a day before the first measured slot (registration takes
days, not a slot): their channels are then followed before the slot ends, so the grid
waits for their readings instead of settling the slot at its first reading."""
TREASURY_GENESIS = 1_000_000_000_000
"""IOTA on the grid treasury (key index 0 of its wallet seed) at the node's genesis: a
slot's payouts are a few hundred IOTA per producer at most, so this pays any run."""
MILESTONE_INTERVAL = 10.0
"""The node's coordinator interval (s) in the benchmark, as a private network runs."""
MILESTONE_REFERENCES = 16
"""The node's coordinator.max_references default: a milestone confirms the cones of
its 15 oldest tips besides the previous milestone."""
SWEEP_CHUNK = 400
"""Tips per pool job approving them."""
RUNNING_GRID_SETTLEMENT_DELAY = 86_400.0
"""A running grid's settlement delay (s): longer than a whole run, so a slot is settled
when every participant's reading is in and never half read (the benchmark's slot
windows lie in the past, so a short delay would already have expired)."""


class EndToEnd:
    """N households, one node process, one grid process; readings every slot.

    The grid starts once, before registration, and keeps running, as users run it; the
    hellos of registration are sent before the first slot. Each slot: the households
    store their readings on the node (measured: storeTransactions tx/s) while the grid
    follows the channels; the grid settles the slot when every participant's reading is
    in, then creates and publishes the payment requests and payouts. Measured from the
    last reading on the node until each of those is done, with the API under a loopback
    load and CPU and peak RSS of every process from /proc. The slot windows lie in the
    past and the settlement delay is longer than the run, so only the readings being in
    settle a slot; each slot's settlement is checked to hold every reading.

    ``restart_grid``: the earlier procedure, the grid stopped while the readings arrive
    and started after them, inside the measured window (with its start-up and its rule
    of settling nothing before it has followed every channel up to now once).

    ``tangle_payouts``: every producer names an IOTA address and the grid pays it from
    its wallet (a fixed ``wallet_seed``; the node's genesis credits the treasury); each
    slot is then also measured until a milestone confirmed every payout (after the CPU
    and memory window, which ends with the whole slot). Without it producers name
    invoice references, recorded at settling. ``grid_overrides`` go into the grid's
    configuration over the benchmark's own settings.

    Registration leaves a tip per hello on the node (the households attach side by
    side), which in days of real use other traffic approves and milestones confirm;
    here the generator approves them (:func:`approve_tips`, pairwise until few are
    left) before the first slot, so a slot's payouts wait behind that slot's own tips
    only. ``milestone_references``: the node's coordinator.max_references.
    """

    def __init__(
        self,
        directory: Path,
        households: int,
        *,
        slots: int,
        pool: Executor,
        min_weight_magnitude: int = 5,
        grid_min_weight_magnitude: int = 9,
        slot_seconds: int = 900,
        api_seconds: float = 20.0,
        api_rate: float | None = 50.0,
        publish_wait: float = 900.0,
        database: str | None = None,
        grid_pow_workers: int = 2,
        follow_interval: float = 1.0,
        restart_grid: bool = False,
        profiler: Profiler | None = None,
        tangle_payouts: bool = True,
        milestone_interval: float = MILESTONE_INTERVAL,
        milestone_references: int = MILESTONE_REFERENCES,
        grid_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.directory = directory
        self.households = households
        self.slots = slots
        self.pool = pool
        self.mwm = min_weight_magnitude
        self.grid_mwm = grid_min_weight_magnitude
        self.slot_ms = slot_seconds * 1000
        self.api_seconds = api_seconds
        self.api_rate = api_rate
        self.publish_wait = publish_wait
        self.restart_grid = restart_grid
        self.profiler = profiler
        now = int(time.time() * 1000)
        # Past windows, oldest first, ending before now: due as soon as the readings are in.
        first = (now // self.slot_ms - slots - 1) * self.slot_ms
        self.windows = [first + k * self.slot_ms for k in range(slots)]
        self.tangle_payouts = tangle_payouts
        self.milestone_interval = milestone_interval
        self.milestone_references = milestone_references
        self.grid_settings: dict[str, Any] = {
            "slot_seconds": slot_seconds,
            "settlement_delay_seconds": 1.0 if restart_grid else RUNNING_GRID_SETTLEMENT_DELAY,
            "follow_interval": follow_interval,
            "min_weight_magnitude": grid_min_weight_magnitude,
            "storage_auth": "none",
            # The generator registers every household from one address.
            "registrations_per_minute": 0,
            "local_pow_workers": grid_pow_workers,
            "wallet_seed": WALLET_SEED,
            **(grid_overrides or {}),
        }
        node_config: dict[str, Any] = {
            "min_weight_magnitude": min_weight_magnitude,
            "coordinator": {
                "seed": COORDINATOR_SEED,
                "interval": milestone_interval,
                "max_references": milestone_references,
            },
        }
        if tangle_payouts:
            node_config["genesis"] = {self.treasury_address(): TREASURY_GENESIS}
        self.node = NodeProcess(directory, config=node_config)
        self.grid_database = database
        self.grid: GridProcess | None = None
        self.phases: list[list[list[str]]] = []
        self.ids = [f"e2e-{n:06}" for n in range(households)]

    def treasury_address(self) -> str:
        """The grid wallet's treasury: key index 0 of its seed at its security."""
        security = int(self.grid_settings.get("wallet_security", GridConfig.wallet_security))
        return generate_address(str(self.grid_settings["wallet_seed"]), 0, security)

    # -- household side (the generator: not measured) --------------------------------

    def generate(self) -> float:
        """Every household's hello and readings, as unattached bundles (pool)."""
        started = time.perf_counter()
        chunk = 100
        ranges = [
            range(n, min(n + chunk, self.households)) for n in range(0, self.households, chunk)
        ]
        contents = ["hello", *(f"{window}:{self.slot_ms}" for window in self.windows)]
        per_message = len(contents)
        self.phases = [[] for _ in contents]
        jobs = [
            self.pool.submit(make_messages, numbers, None, contents, self.tangle_payouts)
            for numbers in ranges
        ]
        for job in jobs:
            _, bundles = job.result()
            for offset, bundle in enumerate(bundles):
                self.phases[offset % per_message].append(bundle)
        return time.perf_counter() - started

    def attach(self, bundles: list[list[str]]) -> list[str]:
        """Proof of work on the households' side (pool), approving the node's tips."""
        status, tips = iri(self.node.url, {"command": "getTransactionsToApprove", "depth": 3})
        assert status == 200, tips
        trunk, branch = tips["trunkTransaction"], tips["branchTransaction"]
        chunk = 200
        jobs = [
            self.pool.submit(attach_bundles, bundles[n : n + chunk], trunk, branch, self.mwm)
            for n in range(0, len(bundles), chunk)
        ]
        return [trytes for job in jobs for bundle in job.result() for trytes in bundle]

    def store(self, trytes: list[str]) -> tuple[float, float]:
        """storeTransactions + broadcastTransactions in large batches, two at a time:
        (seconds it took, wall time when the node had stored the last transaction)."""
        stored_at = 0.0

        async def send_all() -> None:
            nonlocal stored_at
            async with aiohttp.ClientSession() as session:
                client = IriClient(session, self.node.url, timeout=300)
                batches = [trytes[n : n + STORE_BATCH] for n in range(0, len(trytes), STORE_BATCH)]
                queue = iter(batches)

                async def sender() -> None:
                    nonlocal stored_at
                    for batch in queue:
                        await client.store_transactions(batch)
                        stored_at = max(stored_at, time.time())
                        await client.broadcast_transactions(batch)

                await asyncio.gather(sender(), sender())

        started = time.perf_counter()
        asyncio.run(send_all())
        return time.perf_counter() - started, stored_at

    def register(self) -> float:
        """Real registration over HTTP, 16 at a time (the grid checks each hello)."""

        async def register_all() -> None:
            semaphore = asyncio.Semaphore(16)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:

                async def one(number: int) -> None:
                    home = household(number)
                    async with (
                        semaphore,
                        session.put(
                            f"{self.grid_url}/registration/{home.registration_id}",
                            json={
                                "itemName": home.registration_id,
                                "itemType": home.role,
                                "root": home.root,
                                "sideKey": home.side_key,
                            },
                        ) as response,
                    ):
                        body = await response.text()
                        assert response.status == 200, body

                await asyncio.gather(*(one(n) for n in range(self.households)))

        started = time.perf_counter()
        asyncio.run(register_all())
        return time.perf_counter() - started

    def _grid_engine(self) -> Engine:
        database = self.grid_database or ""
        # SQLite: wait for the running grid's write lock rather than fail.
        arguments = {"timeout": 60} if database.startswith("sqlite") else {}
        return create_engine(database, connect_args=arguments)

    def node_tips(self) -> int:
        status, info = iri(self.node.url, {"command": "getNodeInfo"})
        assert status == 200, info
        return int(info["tips"])

    def approve_registration_tips(self, keep: int = MILESTONE_REFERENCES) -> tuple[int, int]:
        """Approve the node's tips pairwise (pool) until at most ``keep`` are left, as
        days of traffic after registration would: (tips before, tips after)."""
        before = left = self.node_tips()
        for _ in range(40):  # halves them each round: 40 rounds are 2**40 tips
            if left <= keep:
                break
            status, body = iri(self.node.url, {"command": "getTips"})
            assert status == 200, body
            tips: list[str] = body["hashes"]
            jobs = [
                self.pool.submit(approve_tips, tips[n : n + SWEEP_CHUNK], self.mwm)
                for n in range(0, len(tips), SWEEP_CHUNK)
            ]
            self.store([trytes for job in jobs for trytes in job.result()])
            left = self.node_tips()
        return before, left

    def backdate_registrations(self) -> None:
        """Registration takes days, not a slot: move the households' registrations and
        channels to a day before the first slot, so the grid counts them as participants
        of every measured slot and waits for their readings."""
        since = self.windows[0] - REGISTERED_BEFORE_MS
        engine = self._grid_engine()
        try:
            with engine.begin() as connection:
                connection.execute(update(Registration).values(created_at=since))
                connection.execute(update(FollowedChannel).values(created_at=since))
        finally:
            engine.dispose()

    def drain_outbox(self, timeout: float) -> float:
        """Wait until the grid has sent every outbox message (the registration hellos);
        returns the seconds it took."""
        started = time.perf_counter()
        engine = self._grid_engine()
        try:
            with engine.connect() as connection:
                unsent = select(func.count()).where(OutboxMessage.sent_at.is_(None))
                deadline = time.monotonic() + timeout
                while True:
                    left = connection.execute(unsent).scalar_one()
                    connection.rollback()
                    if not left:
                        break
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{left} outbox messages unsent after {timeout} s")
                    time.sleep(POLL * 4)
        finally:
            engine.dispose()
        return time.perf_counter() - started

    # -- the measured processes ------------------------------------------------------

    @property
    def grid_url(self) -> str:
        assert self.grid is not None
        return self.grid.url

    def start_grid(self) -> float:
        self.grid = GridProcess(
            self.directory, self.node.url, grid=self.grid_settings, database=self.grid_database
        )
        self.grid_database = self.grid.database
        started = time.perf_counter()
        self.grid.start(timeout=300)
        return time.perf_counter() - started

    def stop_grid(self) -> None:
        if self.grid is not None:
            self.grid.stop(timeout=120)

    def run(self) -> E2EFigures:
        generate_seconds = self.generate()
        self.node.start()
        try:
            hellos = self.attach(self.phases[0])
            hello_seconds, _ = self.store(hellos)
            grid_start_seconds = self.start_grid()
            register_seconds = self.register()
            self.backdate_registrations()
            drain_seconds = self.drain_outbox(timeout=max(self.publish_wait, 3600.0))
            assert self.grid is not None
            assert self.grid.process is not None
            assert self.node.process is not None
            registration_peak = (
                peak_rss(self.grid.process.pid),
                peak_rss(self.node.process.pid),
            )
            registration_tips = self.approve_registration_tips()
            slots = [self.run_slot(k) for k in range(self.slots)]
        finally:
            if self.profiler is not None:
                self.profiler.stop()
            self.stop_grid()
            self.node.stop()
        return E2EFigures(
            self.households,
            self.mwm,
            self.grid_mwm,
            generate_seconds,
            register_seconds,
            len(hellos) / hello_seconds,
            slots,
            os.getloadavg(),
            restart_grid=self.restart_grid,
            grid_start_seconds=grid_start_seconds,
            outbox_drain_seconds=drain_seconds,
            registration_peak_rss=registration_peak,
            # The seed is the benchmark's published test seed; still, settings only.
            grid_settings={k: v for k, v in self.grid_settings.items() if k != "wallet_seed"},
            tangle_payouts=self.tangle_payouts,
            milestone_interval=self.milestone_interval,
            milestone_references=self.milestone_references,
            registration_tips=registration_tips,
        )

    def _profile(self, k: int, grid_pid: int, node_pid: int) -> None:
        if self.profiler is None:
            return
        prefix = f"{self.households}-slot{k + 1}"
        self.profiler.start(f"{prefix}-grid", grid_pid, subprocesses=True)
        self.profiler.start(f"{prefix}-node", node_pid)

    def run_slot(self, k: int) -> SlotFigures:
        window = self.windows[k]
        if self.restart_grid:
            self.stop_grid()
        trytes = self.attach(self.phases[k + 1])
        tips_before = self.node_tips()
        assert self.node.process is not None
        node_pid = self.node.process.pid
        load_before = load_average()
        node_cpu = cpu_seconds(node_pid)
        reset_peak_rss(node_pid)
        api: list[LoadFigures] = []
        grid_start_seconds = 0.0
        if self.restart_grid:
            store_seconds, last_reading = self.store(trytes)
            grid_start_seconds = self.start_grid()
        assert self.grid is not None
        assert self.grid.process is not None
        grid_pid = self.grid.process.pid
        grid_cpu = cpu_seconds(grid_pid)
        workers_cpu = _cpu_of(child_pids(grid_pid))
        for pid in (grid_pid, *workers_cpu):
            reset_peak_rss(pid)
        self._profile(k, grid_pid, node_pid)
        ready = time.time()
        loader = threading.Thread(
            target=lambda: api.append(
                grid_api_load(
                    self.grid_url, self.api_seconds, 8, owner=self.ids[0], rate=self.api_rate
                )
            )
        )
        loader.start()
        if not self.restart_grid:
            # The running grid follows the channels while the readings arrive.
            store_seconds, last_reading = self.store(trytes)
        consumers = self.households - len(range(0, self.households, PRODUCER_EVERY))
        engine = self._grid_engine()
        try:
            with engine.connect() as connection:
                readings = select(func.count()).select_from(Reading)
                ingested = _wait_for(
                    connection, readings.where(Reading.start_time == window), self.households
                )
                # When the grid stored the last one (its clock, not this poll's).
                last_stored = connection.execute(
                    select(func.max(Reading.received_at)).where(Reading.start_time == window)
                ).scalar_one()
                connection.rollback()
                settlement_id, settled_at, settled_readings, adjustments = _wait_for_row(
                    connection,
                    select(
                        Settlement.id,
                        Settlement.settled_at,
                        Settlement.readings_count,
                        Settlement.adjustment_readings,
                    ).where(Settlement.slot_start == window),
                )
                seen = time.time()
                backlog = connection.execute(
                    select(func.count()).where(OutboxMessage.sent_at.is_(None))
                ).scalar_one()
                connection.rollback()
                until = seen + self.publish_wait
                created, last_created, published, last_sent = _wait_requests(
                    connection, settlement_id, settled_at, consumers, until
                )
                payouts, on_tangle, payouts_done = _wait_payouts(connection, settlement_id, until)
                # The slot's window ends here: CPU, memory and profiles are the slot's.
                profiles = [str(path) for path in self.profiler.stop()] if self.profiler else []
                workers = child_pids(grid_pid)
                node_used = cpu_seconds(node_pid) - node_cpu
                grid_used = cpu_seconds(grid_pid) - grid_cpu
                workers_used = sum(
                    cpu - workers_cpu.get(pid, 0.0) for pid, cpu in _cpu_of(workers).items()
                )
                peaks = (peak_rss(node_pid), peak_rss(grid_pid), sum(map(peak_rss, workers)))
                load_after = load_average()
                tips_after = self.node_tips()
                confirmation = (
                    _wait_payouts_confirmed(connection, settlement_id, until)
                    if on_tangle
                    else PayoutConfirmation(0, 0, None, [])
                )
        finally:
            engine.dispose()
        loader.join()
        if settled_readings != self.households or adjustments:
            raise AssertionError(
                f"slot {window} was settled with {settled_readings} of {self.households} "
                f"readings ({adjustments} late ones of an earlier slot): settled half read"
            )
        confirmed_at = confirmation.confirmed_at
        return SlotFigures(
            slot_start=window,
            transactions=len(trytes),
            store_seconds=store_seconds,
            grid_start_seconds=grid_start_seconds,
            ingest_seconds=ingested - ready,
            settle_seconds=seen - settled_at / 1000,
            outbox_backlog=int(backlog),
            requests_created=created,
            requests_created_seconds=max(last_created - seen, 0.0),
            requests_published=published,
            requests_expected=consumers,
            requests_publish_seconds=max(last_sent - seen, 0.0),
            api=api[0],
            node_rss=self.node.rss_bytes(),
            grid_rss=self.grid.rss_bytes(),
            load_before=load_before,
            load_after=load_after,
            since_last_reading=Timeline(
                readings_stored=last_stored / 1000 - last_reading,
                settled=settled_at / 1000 - last_reading,
                requests_stored=last_sent - last_reading if published >= consumers else None,
                payouts_stored=payouts_done - last_reading if payouts_done is not None else None,
                payouts_confirmed=confirmed_at - last_reading if confirmed_at is not None else None,
            ),
            node_cpu=node_used,
            grid_cpu=grid_used,
            workers_cpu=workers_used,
            node_peak_rss=peaks[0],
            grid_peak_rss=peaks[1],
            workers_peak_rss=peaks[2],
            payouts=payouts,
            payouts_on_tangle=on_tangle,
            payouts_confirmed=confirmation.confirmed,
            payouts_failed=confirmation.failed,
            payout_bundles=confirmation.bundle_transactions,
            node_tips=(tips_before, tips_after),
            settled_readings=int(settled_readings),
            settled_adjustments=int(adjustments),
            profiles=profiles,
        )


POLL = 0.05


def _wait_for(
    connection: Connection, count: Select[Any], target: int, timeout: float = 900
) -> float:
    """Wall-clock time when ``count`` reaches ``target`` (polled; each poll ends its
    read transaction so SQLite shows new commits)."""
    deadline = time.monotonic() + timeout
    while True:
        value = connection.execute(count).scalar_one()
        connection.rollback()
        if value >= target:
            return time.time()
        if time.monotonic() > deadline:
            raise AssertionError(f"{value} of {target} after {timeout} s")
        time.sleep(POLL)


def _wait_for_row(connection: Connection, query: Select[Any], timeout: float = 900) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        row = connection.execute(query).first()
        connection.rollback()
        if row is not None:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"no row after {timeout} s")
        time.sleep(POLL)


def _wait_requests(
    connection: Connection, settlement_id: int, since_ms: int, expected: int, until: float
) -> tuple[int, float, int, float]:
    """Payment requests of a settlement: (created, wall time of the last creation,
    published, wall time of the last publication), polled until all ``expected`` are
    published or the wall clock reaches ``until`` (the grid's outbox is first in,
    first out, so at scale its registration hellos may still be ahead of them)."""
    created_query = select(func.count(), func.max(Bill.requested_at)).where(
        Bill.settlement_id == settlement_id, Bill.requested_at.is_not(None)
    )
    sent_query = select(func.count(), func.max(OutboxMessage.sent_at)).where(
        OutboxMessage.kind == "payment-request",
        OutboxMessage.created_at >= since_ms,
        OutboxMessage.sent_at.is_not(None),
    )
    while True:
        created, last_created = connection.execute(created_query).one()
        sent, last_sent = connection.execute(sent_query).one()
        connection.rollback()
        now = time.time()
        if sent >= expected or now >= until:
            return (
                int(created),
                last_created / 1000 if last_created else now,
                int(sent),
                last_sent / 1000 if last_sent else now,
            )
        time.sleep(POLL * 4)


def _wait_payouts(
    connection: Connection, settlement_id: int, until: float
) -> tuple[int, int, float | None]:
    """A settlement's payouts: (count, how many are IOTA transfers, wall time when none
    was pending any more: each transfer's bundle stored on the node, the others
    recorded), polled until then or until the wall clock reaches ``until``."""
    unsent = (Payout.status == "pending") | (
        (Payout.status == "in_transfer") & WalletTransfer.sent_at.is_(None)
    )
    query = (
        select(
            func.count(),
            func.count().filter(Payout.method == "tangle"),
            func.count().filter(unsent),
            func.max(func.coalesce(WalletTransfer.sent_at, Payout.updated_at)),
        )
        .select_from(Payout)
        .outerjoin(WalletTransfer, WalletTransfer.id == Payout.transfer_id)
        .where(Payout.settlement_id == settlement_id)
    )
    while True:
        total, on_tangle, pending, last = connection.execute(query).one()
        connection.rollback()
        if not pending:
            return int(total), int(on_tangle), last / 1000 if last else time.time()
        if time.time() >= until:
            return int(total), int(on_tangle), None
        time.sleep(POLL * 4)


@dataclass(frozen=True)
class PayoutConfirmation:
    """A settlement's IOTA payouts once none is waiting any more (or the wait ended)."""

    confirmed: int
    failed: int
    confirmed_at: float | None
    """Wall time of the last confirmation, when a milestone confirmed every one."""
    bundle_transactions: list[int]
    """Transactions of each value bundle that pays some of them."""


def _wait_payouts_confirmed(
    connection: Connection, settlement_id: int, until: float
) -> PayoutConfirmation:
    """Poll a settlement's IOTA payouts until none is pending or in a transfer any more
    (each confirmed by a milestone, or given up) or the wall clock reaches ``until``."""
    tangle = (Payout.settlement_id == settlement_id) & (Payout.method == "tangle")
    status_query = (
        select(
            func.count().filter(Payout.status.in_(("pending", "in_transfer"))),
            func.count().filter(Payout.status == "confirmed"),
            func.count().filter(Payout.status == "failed"),
            func.max(WalletTransfer.confirmed_at),
        )
        .select_from(Payout)
        .outerjoin(WalletTransfer, WalletTransfer.id == Payout.transfer_id)
        .where(tangle)
    )
    while True:
        waiting, confirmed, failed, last = connection.execute(status_query).one()
        connection.rollback()
        if not waiting or time.time() >= until:
            break
        time.sleep(POLL * 4)
    bundles = connection.execute(
        select(WalletTransfer.trytes_json).where(
            WalletTransfer.id.in_(select(Payout.transfer_id).where(tangle))
        )
    ).all()
    connection.rollback()
    done = not waiting and not failed and last is not None
    return PayoutConfirmation(
        int(confirmed),
        int(failed),
        last / 1000 if done else None,
        sorted(len(json.loads(trytes)) for (trytes,) in bundles),
    )
