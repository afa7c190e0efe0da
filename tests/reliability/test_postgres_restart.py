"""PostgreSQL restarted twice under load (a clean fast restart, then a crash): nothing
lost, nothing counted twice, no 500, and both services recover without a restart.

A private cluster (never the suite's shared one) holds the node's and the grid's
databases. Households publish readings through the node while the grid follows and
settles, and a load generator on loopback hits the grid's registration and storage
API and the node's IRI API. While PostgreSQL is down the services may answer 503
with a message; afterwards every acknowledged write must be there exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.errors import NodeError
from p2p_energy_protocol.mam import channel_root, create_channel, create_message
from p2p_energy_protocol.transaction import transactions_hashes
from p2p_energy_protocol.trinary import ascii_to_trytes
from sqlalchemy import create_engine, func, select

from grid_server.node.storage import meta as node_meta
from grid_server.node.storage import transactions as node_transactions

from .households import (
    MESSAGES,
    check_settlements,
    energy_milliwh,
    readings_for,
    register_households,
    stored_readings,
    wait_until_settled,
)
from .processes import GridProcess, NodeProcess, iri, request_json

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .households import Households
    from .private_postgres import PrivatePostgres

pytestmark = pytest.mark.slow

SIDE_KEY = "PGRESTART"
STORAGE_CLIENTS = 2
DOWN_SECONDS = 3.0
# A publishing round (one reading per household) starts at most this often, so the
# readings span both outages.
ROUND_SECONDS = 1.5
LOAD_RECEIVER = "PGRESTART9LOAD9RECEIVER".ljust(81, "9")


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    service: str
    what: str
    status: int | None  # None: no HTTP answer at all
    message: str


@dataclass
class Load:
    """Loopback clients of the grid's and the node's APIs, recording every answer."""

    grid_url: str
    node_url: str
    storage_owner: str
    registrations: dict[str, dict[str, str]]
    samples: list[Sample] = field(default_factory=list)
    acknowledged_items: dict[str, int] = field(default_factory=dict)
    acknowledged_hashes: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        workers: list[Callable[[], None]] = [
            *(functools.partial(self._storage_client, n) for n in range(STORAGE_CLIENTS)),
            self._registration_client,
            self._node_client,
        ]
        self._threads = [threading.Thread(target=work, daemon=True) for work in workers]
        for thread in self._threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)

    def record(self, service: str, what: str, status: int | None, message: str) -> None:
        with self._lock:
            self.samples.append(Sample(time.monotonic(), service, what, status, message))

    def _call(
        self, service: str, what: str, method: str, url: str, body: Any = None
    ) -> tuple[int | None, Any]:
        headers = {"X-IOTA-API-Version": "1"} if service == "node" else None
        try:
            status, answer = request_json(method, url, body, headers, timeout=20)
        except OSError as err:
            self.record(service, what, None, repr(err))
            return None, None
        message = ""
        if isinstance(answer, dict):
            message = str(answer.get("message") or answer.get("error") or answer.get("exception"))
        elif status >= 400:
            message = str(answer)[:200]
        self.record(service, what, status, message)
        return status, answer

    def _storage_client(self, number: int) -> None:
        base = f"{self.grid_url}/storage"
        count = 0
        while not self.stop.is_set():
            item = f"load-{number}-{count}"
            status, _ = self._call(
                "grid",
                "storage-put",
                "PUT",
                f"{base}/item/{self.storage_owner}/load/{item}",
                {"client": number, "count": count},
            )
            if status == 200:
                with self._lock:
                    self.acknowledged_items[item] = count
                self._call("grid", "storage-get", "GET", f"{base}/{self.storage_owner}/load/{item}")
            self._call(
                "grid", "storage-list", "GET", f"{base}/{self.storage_owner}/load?pageSize=5"
            )
            count += 1

    def _registration_client(self) -> None:
        while not self.stop.is_set():
            for registration, body in self.registrations.items():
                # Registering again with the same channel is an idempotent update.
                self._call(
                    "grid",
                    "registration",
                    "PUT",
                    f"{self.grid_url}/registration/{registration}",
                    body,
                )
            self._call("grid", "health", "GET", f"{self.grid_url}/health")
            time.sleep(0.05)

    def _node_client(self) -> None:
        count = 0
        while not self.stop.is_set():
            self._call("node", "getNodeInfo", "POST", self.node_url, {"command": "getNodeInfo"})
            status, tips = self._call(
                "node",
                "getTransactionsToApprove",
                "POST",
                self.node_url,
                {"command": "getTransactionsToApprove", "depth": 3},
            )
            if status != 200:
                time.sleep(0.1)
                continue
            builder = BundleBuilder()
            builder.add_transfer(
                LOAD_RECEIVER, 0, tag="PGRESTART", message_trytes=ascii_to_trytes(f"load {count}")
            )
            builder.finalize()
            count += 1
            status, attached = self._call(
                "node",
                "attachToTangle",
                "POST",
                self.node_url,
                {
                    "command": "attachToTangle",
                    "trunkTransaction": tips["trunkTransaction"],
                    "branchTransaction": tips["branchTransaction"],
                    "minWeightMagnitude": 1,
                    "trytes": builder.to_trytes(),
                },
            )
            if status != 200:
                continue
            trytes = attached["trytes"]
            status, _ = self._call(
                "node",
                "storeTransactions",
                "POST",
                self.node_url,
                {"command": "storeTransactions", "trytes": trytes},
            )
            if status == 200:
                with self._lock:
                    self.acknowledged_hashes.extend(transactions_hashes(trytes))


@dataclass
class Publisher:
    """Households publishing one reading each per round, retrying through outages as the
    integration's durable queue does (the same message again, never a new one)."""

    node_url: str
    households: Households
    now_ms: int
    acknowledged_hashes: list[str] = field(default_factory=list)
    failures: list[tuple[float, int | None, str]] = field(default_factory=list)
    published: int = 0

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        readings = {
            name: readings_for(role, self.now_ms) for name, (role, _) in self.households.items()
        }
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            client = IriClient(session, self.node_url, timeout=20)
            for position in range(MESSAGES):
                await asyncio.sleep(max(0.0, started + position * ROUND_SECONDS - time.monotonic()))
                for name, (_, channel) in self.households.items():
                    message = create_message(channel, readings[name][position])
                    while True:
                        try:
                            sent = await client.publish_mam(message, min_weight_magnitude=1)
                        except NodeError as err:
                            status = getattr(err, "status", None)
                            self.failures.append((time.monotonic(), status, str(err)))
                            await asyncio.sleep(0.3)
                            continue
                        self.acknowledged_hashes.extend(tx.hash for tx in sent)
                        self.published += 1
                        break


@dataclass(frozen=True, slots=True)
class Outage:
    kind: str
    stopped_at: float
    started_at: float
    grid_recovered_at: float
    node_recovered_at: float


def _wait_healthy(grid: GridProcess, node: NodeProcess, since: float) -> tuple[float, float]:
    """When the grid's /health and the node's getNodeInfo (both read the database)
    answered 200 again."""
    grid_at = node_at = 0.0
    deadline = since + 60
    while time.monotonic() < deadline and not (grid_at and node_at):
        if not grid_at and request_json("GET", f"{grid.url}/health", timeout=10)[0] == 200:
            grid_at = time.monotonic()
        if not node_at and iri(node.url, {"command": "getNodeInfo"}, timeout=10)[0] == 200:
            node_at = time.monotonic()
        time.sleep(0.05)
    assert grid_at, f"the grid did not recover:\n{grid.log_tail()}"
    assert node_at, f"the node did not recover:\n{node.log_tail()}"
    return grid_at, node_at


def _present_hashes(database: str, hashes: list[str]) -> set[str]:
    engine = create_engine(database)
    try:
        found: set[str] = set()
        with engine.connect() as connection:
            for start in range(0, len(hashes), 500):
                chunk = hashes[start : start + 500]
                found.update(
                    connection.execute(
                        select(node_transactions.c.hash).where(node_transactions.c.hash.in_(chunk))
                    ).scalars()
                )
        return found
    finally:
        engine.dispose()


def _reused_milestone_indexes(database: str) -> list[str]:
    """Milestone indexes (tags) the coordinator issued more than one milestone for."""
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            coordinator = connection.execute(
                select(node_meta.c.value).where(node_meta.c.key == "coordinator_address")
            ).scalar_one()
            rows = connection.execute(
                select(node_transactions.c.tag)
                .where(
                    node_transactions.c.address == coordinator,
                    node_transactions.c.current_index == 0,
                )
                .group_by(node_transactions.c.tag)
                .having(func.count() > 1)
            ).scalars()
            return list(rows)
    finally:
        engine.dispose()


def _visible_seconds(samples: list[Sample], outage: Outage) -> tuple[int, float]:
    """(503 answers, seconds from the first to the last) around one outage."""
    window = [
        sample.at
        for sample in samples
        if sample.status == 503
        and outage.stopped_at - 1 <= sample.at <= outage.grid_recovered_at + 5
    ]
    return len(window), (max(window) - min(window)) if window else 0.0


def test_postgres_restart_and_crash_under_load(tmp_path: Path, postgres: PrivatePostgres) -> None:
    node = NodeProcess(tmp_path, database=postgres.create_database("node"))
    grid = GridProcess(
        tmp_path,
        node.url,
        database=postgres.create_database("grid"),
        grid={"slot_seconds": 60, "storage_auth": "none", "lease_seconds": 3.0},
    )
    households: Households = {
        "pgrestart-consumer": ("consumer", create_channel("K" * 81, 1, "restricted", SIDE_KEY)),
        "pgrestart-producer": ("producer", create_channel("R" * 81, 1, "restricted", SIDE_KEY)),
    }
    roots = {name: channel_root(channel) for name, (_, channel) in households.items()}
    now_ms = int(time.time() * 1000)
    expected = {
        name: energy_milliwh(role, readings_for(role, now_ms))
        for name, (role, _) in households.items()
    }
    load: Load | None = None
    publisher_thread: threading.Thread | None = None
    test_started = time.monotonic()
    try:
        node.start()
        grid.start()
        pids = (node.process.pid if node.process else 0, grid.process.pid if grid.process else 0)
        asyncio.run(register_households(node.url, households, [grid.url]))
        load = Load(
            grid.url,
            node.url,
            storage_owner="pgrestart-consumer",
            registrations={
                name: {
                    "itemName": name,
                    "itemType": role,
                    "root": roots[name],
                    "sideKey": channel.side_key or "",
                }
                for name, (role, channel) in households.items()
            },
        )
        publisher = Publisher(node.url, households, now_ms)
        publisher_thread = threading.Thread(target=publisher.run, daemon=True)
        load.start()
        publisher_thread.start()

        outages: list[Outage] = []
        for kind in ("fast", "immediate"):
            time.sleep(5)
            stopped_at = time.monotonic()
            postgres.stop(kind)
            time.sleep(DOWN_SECONDS)
            assert grid.running, f"the grid died without its database:\n{grid.log_tail()}"
            assert node.running, f"the node died without its database:\n{node.log_tail()}"
            postgres.start()
            started_at = time.monotonic()
            grid_at, node_at = _wait_healthy(grid, node, started_at)
            outages.append(Outage(kind, stopped_at, started_at, grid_at, node_at))

        publisher_thread.join(120)
        assert not publisher_thread.is_alive(), "the households could not publish"
        time.sleep(2)  # some load after the last outage
        load.finish()

        # Every reading the households published, stored exactly once.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts = stored_readings(grid.database)
            if sum(count for count, _, _ in counts.values()) >= len(households) * MESSAGES:
                break
            time.sleep(0.3)
        counts = stored_readings(grid.database)
        for registration, energy in expected.items():
            assert counts.get(registration) == (MESSAGES, MESSAGES, energy), (
                f"{registration}: {counts.get(registration)}\n{grid.log_tail()}"
            )
        wait_until_settled(grid.database)
        check_settlements(grid.database)

        # Every write the load generator saw acknowledged is there, with its value.
        for item, count in load.acknowledged_items.items():
            client = int(item.split("-")[1])
            status, body = request_json(
                "GET", f"{grid.url}/storage/pgrestart-consumer/load/{item}", timeout=20
            )
            assert status == 200, (item, body)
            assert body["item"] == {"client": client, "count": count}, (item, body)
        acknowledged = sorted(set(load.acknowledged_hashes + publisher.acknowledged_hashes))
        missing = set(acknowledged) - _present_hashes(node.database, acknowledged)
        assert not missing, f"{len(missing)} acknowledged node transactions are missing"

        assert not _reused_milestone_indexes(node.database)

        # Every answer a success, or while the database was away a 503 with a message:
        # never a 500, never a dropped connection.
        unexpected = [s for s in load.samples if s.status not in (200, 503)]
        assert not unexpected, unexpected[:5]
        unavailable = [s for s in load.samples if s.status == 503]
        assert unavailable, "no request saw PostgreSQL down"
        assert all("unavailable" in s.message for s in unavailable), unavailable[:5]
        assert not [f for f in publisher.failures if f[1] is not None and f[1] != 503], (
            publisher.failures[:5]
        )
        # The same processes all along: they recovered on their own.
        assert grid.running
        assert node.running
        assert pids == (
            node.process.pid if node.process else 0,
            grid.process.pid if grid.process else 0,
        )
        for service in (grid, node):
            log = service.log.read_text(errors="replace")
            assert "Traceback" not in log, f"{service.name} logged a traceback:\n{log[-6000:]}"

        report = {
            "seconds": round(time.monotonic() - test_started, 1),
            "requests": len(load.samples),
            "by_status": _by_status(load.samples),
            "publish_retries": len(publisher.failures),
            "readings": sum(count for count, _, _ in counts.values()),
            "storage_items_checked": len(load.acknowledged_items),
            "node_transactions_checked": len(acknowledged),
            "outages": [
                {
                    "kind": outage.kind,
                    "down_s": round(outage.started_at - outage.stopped_at, 2),
                    "503s_and_visible_s": _visible_seconds(load.samples, outage),
                    "grid_recovered_s": round(outage.grid_recovered_at - outage.started_at, 2),
                    "node_recovered_s": round(outage.node_recovered_at - outage.started_at, 2),
                }
                for outage in outages
            ],
        }
        print("postgres restart report:", json.dumps(report))
    finally:
        if load is not None:
            load.finish()
        grid.stop()
        node.stop()
        with contextlib.suppress(Exception):
            if publisher_thread is not None:
                publisher_thread.join(5)


def _by_status(samples: list[Sample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sample in samples:
        key = f"{sample.service} {sample.status}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
