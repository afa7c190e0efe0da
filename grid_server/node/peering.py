"""Neighbours: pushing what this node accepts, pulling what it missed.

Push: every transaction this node stores for the first time is sent to each
neighbour (``storeTransactions`` marked with this node's URL), except to the one
it came from; a neighbour forwards only what is new to it, so floods end.
Pull: every ``sync_interval`` (and at start) the node pages through each
neighbour's transactions in arrival order (``syncTransactions``) from a
remembered cursor, so a node that was down catches up; transactions that
unsolid ones reference are fetched by hash, bundle by bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Final

from p2p_energy_protocol.client import EMPTY_TRYTES, IriClient
from p2p_energy_protocol.errors import NodeError
from p2p_energy_protocol.transaction import Transaction

from ..database_availability import database_unavailable
from .storage import TangleStore

if TYPE_CHECKING:
    from collections.abc import Sequence

    import aiohttp

    from .runtime import NodeRuntime
    from .tangle import StoreOutcome

_LOGGER = logging.getLogger(__name__)
PEER_HEADER: Final = "X-P2P-Energy-Peer"
_PUSH_BATCH: Final = 200
_PULL_PAGE: Final = 300
_MISSING_BATCH: Final = 100


class _Neighbor:
    def __init__(self, url: str, client: IriClient) -> None:
        self.url = url
        self.client = client
        self.queue: asyncio.Queue[list[str]] = asyncio.Queue(maxsize=10_000)
        self.sender: asyncio.Task[None] | None = None
        self.reachable = True


class Peering:
    """The neighbours of one node."""

    def __init__(self, node: NodeRuntime, session: aiohttp.ClientSession) -> None:
        self._node = node
        self._session = session
        self._neighbors: dict[str, _Neighbor] = {}
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_now = asyncio.Event()
        self._sync_lock = asyncio.Lock()

    def _client(self, url: str) -> IriClient:
        return IriClient(self._session, url, timeout=30.0, headers={PEER_HEADER: self._node.url})

    def urls(self) -> set[str]:
        return set(self._neighbors)

    def queued(self) -> int:
        return sum(neighbor.queue.qsize() for neighbor in self._neighbors.values())

    async def start(self) -> None:
        rows = await self._node.read(self._rows)
        for row in rows:
            self._attach(row["url"])
        self._sync_task = asyncio.create_task(self._sync_loop(), name="node-sync")

    def _rows(self) -> list[dict[str, Any]]:
        with self._node.store.connect() as conn:
            return TangleStore.neighbor_rows(conn)

    def _attach(self, url: str) -> None:
        neighbor = _Neighbor(url, self._client(url))
        neighbor.sender = asyncio.create_task(self._send_loop(neighbor), name=f"node-push-{url}")
        self._neighbors[url] = neighbor

    async def stop(self) -> None:
        tasks = [n.sender for n in self._neighbors.values() if n.sender is not None]
        if self._sync_task is not None:
            tasks.append(self._sync_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._neighbors.clear()

    async def add(self, url: str) -> int:
        def run() -> bool:
            with self._node.store.begin() as conn:
                return TangleStore.add_neighbor(conn, url)

        added = await self._node.write(run)
        if url not in self._neighbors:
            self._attach(url)
        self._sync_now.set()
        return int(added)

    async def remove(self, url: str) -> int:
        def run() -> bool:
            with self._node.store.begin() as conn:
                return TangleStore.remove_neighbor(conn, url)

        removed = await self._node.write(run)
        neighbor = self._neighbors.pop(url, None)
        if neighbor is not None and neighbor.sender is not None:
            neighbor.sender.cancel()
        return int(removed)

    async def describe(self) -> list[dict[str, Any]]:
        rows = await self._node.read(self._rows)
        return [
            {
                "address": row["url"],
                "connectionType": "http",
                "numberOfAllTransactions": row["all_transactions"],
                "numberOfInvalidTransactions": row["invalid_transactions"],
                "numberOfNewTransactions": row["new_transactions"],
                "numberOfRandomTransactionRequests": 0,
                "numberOfSentTransactions": row["sent_transactions"],
                "numberOfStaleTransactions": 0,
            }
            for row in rows
        ]

    def broadcast(self, trytes: Sequence[str], exclude: str | None) -> None:
        for url, neighbor in self._neighbors.items():
            if url == exclude:
                continue
            try:
                neighbor.queue.put_nowait(list(trytes))
            except asyncio.QueueFull:
                # The pull side catches up whatever a full queue drops.
                _LOGGER.warning("push queue to %s is full; it will catch up by syncing", url)

    def note_problems(self, url: str, outcome: StoreOutcome) -> None:
        if outcome.incomplete_bundles:
            self._sync_now.set()

    async def _send_loop(self, neighbor: _Neighbor) -> None:
        while True:
            batch = await neighbor.queue.get()
            while len(batch) < _PUSH_BATCH and not neighbor.queue.empty():
                batch.extend(neighbor.queue.get_nowait())
            try:
                await neighbor.client.store_transactions(batch)
            except NodeError as err:
                if neighbor.reachable:
                    _LOGGER.warning("cannot push to neighbour %s: %s", neighbor.url, err)
                neighbor.reachable = False
                continue
            if not neighbor.reachable:
                _LOGGER.info("neighbour %s is reachable again", neighbor.url)
                neighbor.reachable = True
            await self._count(neighbor.url, sent=len(batch))

    async def _count(self, url: str, **counts: int) -> None:
        def run() -> None:
            with self._node.store.begin() as conn:
                TangleStore.update_neighbor(conn, url, **counts)

        await self._node.write(run)

    async def _sync_loop(self) -> None:
        while True:
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if not database_unavailable(err):
                    _LOGGER.exception("synchronising with neighbours failed")
                else:
                    _LOGGER.warning("database unavailable for synchronising: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sync_now.wait(), self._node.config.sync_interval)
            self._sync_now.clear()

    async def sync_once(self) -> int:
        """Pull from every neighbour what this node lacks; returns how many were new."""
        async with self._sync_lock:
            new = 0
            cursors = {row["url"]: int(row["cursor"]) for row in await self._node.read(self._rows)}
            for url, neighbor in list(self._neighbors.items()):
                try:
                    new += await self._pull(neighbor, cursors.get(url, 0))
                    new += await self._fetch_missing(neighbor)
                except NodeError as err:
                    if neighbor.reachable:
                        _LOGGER.warning("cannot sync with neighbour %s: %s", url, err)
                    neighbor.reachable = False
            return new

    async def _pull(self, neighbor: _Neighbor, cursor: int) -> int:
        new = 0
        while True:
            body = await neighbor.client.call("syncTransactions", since=cursor, limit=_PULL_PAGE)
            trytes = body.get("trytes")
            following = body.get("next")
            head = body.get("head")
            if (
                not isinstance(trytes, list)
                or not isinstance(following, int)
                or not isinstance(head, int)
            ):
                raise NodeError(f"neighbour {neighbor.url} answered syncTransactions oddly")
            if head < cursor:
                # The neighbour lost its database; start over from its beginning.
                cursor = 0
                continue
            if trytes:
                outcome = await self._node.accept(trytes, peer=neighbor.url)
                new += len(outcome.stored)
                await self._count(
                    neighbor.url,
                    received=len(trytes),
                    invalid=outcome.invalid,
                    new=len(outcome.stored),
                )
                if outcome.incomplete_bundles:
                    new += await self._fetch_bundles(neighbor, sorted(outcome.incomplete_bundles))
            if following <= cursor and trytes:
                raise NodeError(f"neighbour {neighbor.url} did not advance its sync cursor")
            cursor = following
            await self._count(neighbor.url, cursor=cursor)
            if not trytes or cursor >= head:
                return new

    async def _fetch_missing(self, neighbor: _Neighbor) -> int:
        """Ask a neighbour for transactions referenced here but not stored."""
        new = 0
        for _round in range(20):
            missing = await self._node.read(self._node.tangle.missing_transactions, _MISSING_BATCH)
            if not missing:
                break
            found = [t for t in await neighbor.client.get_trytes(missing) if t != EMPTY_TRYTES]
            if not found:
                break
            bundles = sorted({Transaction.from_trytes(t).bundle for t in found})
            added = await self._fetch_bundles(neighbor, bundles)
            if not added:
                break
            new += added
        return new

    async def _fetch_bundles(self, neighbor: _Neighbor, bundles: Sequence[str]) -> int:
        hashes = await neighbor.client.find_transactions(bundles=list(bundles))
        if not hashes:
            return 0
        trytes = [t for t in await neighbor.client.get_trytes(hashes) if t != EMPTY_TRYTES]
        outcome = await self._node.accept(trytes, peer=neighbor.url)
        return len(outcome.stored)
