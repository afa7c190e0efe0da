"""Neighbours: pushing what this node accepts, pulling what it missed, at a bounded cost.

Push: every transaction this node stores for the first time is sent to each
neighbour (``storeTransactions``), except to the one it came from; a neighbour
forwards only what is new to it, so floods end.
Pull: every ``sync_interval`` (and at start) the node pages through each
neighbour's transactions in arrival order (``syncTransactions``) from a
remembered cursor, so a node that was down catches up; transactions that
unsolid ones reference are fetched by hash, bundle by bundle.

Every request to a neighbour and every answer is signed with the secret the two
share (:mod:`.peer_auth`). What one neighbour may cost is bounded: a timeout per
request, a size cap per answer (bodies are read as they arrive and cut off), a
number of transactions and pages per round, and a back-off (doubling up to
``peering.max_backoff``) after a failure or a protocol violation, shown in
``getNeighbors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import aiohttp
from p2p_energy_protocol.client import API_VERSION_HEADER, EMPTY_TRYTES
from p2p_energy_protocol.transaction import Transaction

from ..database_availability import database_unavailable
from ..http_safety import MalformedJsonError, parse_json
from .peer_auth import RESPONSE_SIGNATURE_HEADER, neighbor_secrets, sign_request
from .storage import TangleStore

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .config import PeeringConfig
    from .runtime import NodeRuntime
    from .tangle import StoreOutcome

_LOGGER = logging.getLogger(__name__)
_PUSH_BATCH: Final = 200
_PULL_PAGE: Final = 300
_MISSING_BATCH: Final = 100
_MISSING_ROUNDS: Final = 20
# Transactions fetched for one set of bundles; real bundles are far smaller.
_MAX_BUNDLE_FETCH: Final = 1_000
_HASH_LENGTH: Final = 81
_TRYTES_LENGTH: Final = 2673


class PeerError(Exception):
    """A neighbour could not be reached or answered wrongly (it is backed off)."""


class PeerMisbehavingError(PeerError):
    """A neighbour broke the protocol: an unsigned, oversized or malformed answer."""


class PeerLink:
    """Signed, bounded requests to one neighbour."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        secret: str,
        sender: str,
        settings: PeeringConfig,
    ) -> None:
        self.url = url
        self._session = session
        self._secret = secret
        self._sender = sender
        self._settings = settings
        self._path = urlsplit(url).path or "/"

    async def call(self, command: str, **params: Any) -> dict[str, Any]:
        body = json.dumps({"command": command, **params}, separators=(",", ":")).encode()
        signed = sign_request(self._secret, "POST", self._path, body, sender=self._sender)
        headers = {
            API_VERSION_HEADER: "1",
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",
            **signed.headers,
        }
        cap = self._settings.max_response_bytes
        try:
            async with self._session.post(
                self.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
                # A compressed answer could expand far beyond the cap before it is counted.
                auto_decompress=False,
            ) as response:
                try:
                    raw = await _read_capped(response, cap, command)
                except PeerMisbehavingError:
                    response.close()  # drop the connection: the rest is never read
                    raise
                status = response.status
                signature = response.headers.get(RESPONSE_SIGNATURE_HEADER)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise PeerError(f"{command}: unreachable: {type(err).__name__}: {err}") from err
        if not signed.answer_is_genuine(status, raw, signature):
            if status in (401, 403):
                raise PeerError(
                    f"{command}: the neighbour refused this node's signature (HTTP {status}); "
                    "does it list this node with the same peering secret?"
                )
            raise PeerMisbehavingError(f"{command}: the answer is not signed with our secret")
        try:
            answer = parse_json(raw)
        except MalformedJsonError as err:
            raise PeerMisbehavingError(f"{command}: the answer is not JSON: {err}") from err
        if not isinstance(answer, dict):
            raise PeerMisbehavingError(f"{command}: the answer is not a JSON object")
        if status >= 400:
            raise PeerError(f"{command}: HTTP {status}: {str(answer.get('error', ''))[:200]}")
        return answer


async def _read_capped(response: aiohttp.ClientResponse, cap: int, command: str) -> bytes:
    if response.headers.get("Content-Encoding", "identity") != "identity":
        raise PeerMisbehavingError(f"{command}: the answer is compressed")
    if response.content_length is not None and response.content_length > cap:
        raise PeerMisbehavingError(
            f"{command}: the answer of {response.content_length} bytes is over the cap of {cap}"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65_536):
        size += len(chunk)
        if size > cap:
            raise PeerMisbehavingError(f"{command}: the answer is over the cap of {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class _Health:
    """Back-off state of one neighbour."""

    failures: int = 0
    retry_at: float = 0.0
    last_error: str | None = None

    def waiting(self, now: float) -> float:
        return max(0.0, self.retry_at - now)


class _Neighbor:
    def __init__(self, url: str, link: PeerLink) -> None:
        self.url = url
        self.link = link
        self.queue: asyncio.Queue[list[str]] = asyncio.Queue(maxsize=10_000)
        self.sender: asyncio.Task[None] | None = None
        self.health = _Health()


class _Round:
    """What one synchronisation round may still take from a neighbour."""

    def __init__(self, transactions: int) -> None:
        self.transactions = transactions
        self.pages = transactions // _PULL_PAGE + 3

    def take(self, count: int) -> None:
        self.transactions -= count

    @property
    def spent(self) -> bool:
        return self.transactions <= 0 or self.pages <= 0


class Peering:
    """The neighbours of one node."""

    def __init__(
        self, node: NodeRuntime, session: aiohttp.ClientSession, peering_secret: str
    ) -> None:
        self._node = node
        self._session = session
        self._secret = peering_secret
        self._settings = node.config.peering
        self._neighbors: dict[str, _Neighbor] = {}
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_now = asyncio.Event()
        self._sync_lock = asyncio.Lock()

    def urls(self) -> set[str]:
        return set(self._neighbors)

    def secrets(self) -> dict[str, str]:
        """Each neighbour's shared secret (for verifying what they send)."""
        return neighbor_secrets(self._neighbors, self._node.config.neighbor_secrets, self._secret)

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
        secret = self._node.config.neighbor_secrets.get(url, self._secret)
        link = PeerLink(self._session, url, secret, self._node.url, self._settings)
        neighbor = _Neighbor(url, link)
        neighbor.sender = asyncio.create_task(self._send_loop(neighbor), name=f"node-push-{url}")
        self._neighbors[url] = neighbor
        self._node.neighbors_changed()

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
        self._node.neighbors_changed()
        return int(removed)

    async def describe(self) -> list[dict[str, Any]]:
        rows = await self._node.read(self._rows)
        now = time.monotonic()
        described = []
        for row in rows:
            neighbor = self._neighbors.get(row["url"])
            health = neighbor.health if neighbor is not None else _Health()
            waiting = health.waiting(now)
            described.append(
                {
                    "address": row["url"],
                    "connectionType": "http",
                    "numberOfAllTransactions": row["all_transactions"],
                    "numberOfInvalidTransactions": row["invalid_transactions"],
                    "numberOfNewTransactions": row["new_transactions"],
                    "numberOfRandomTransactionRequests": 0,
                    "numberOfSentTransactions": row["sent_transactions"],
                    "numberOfStaleTransactions": 0,
                    "state": "backing off" if waiting > 0 else "ok",
                    "backoffSeconds": round(waiting, 1),
                    "failures": health.failures,
                    "lastError": health.last_error,
                }
            )
        return described

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

    def _failed(self, neighbor: _Neighbor, err: PeerError) -> None:
        health = neighbor.health
        health.failures += 1
        delay = min(
            self._settings.max_backoff, self._node.config.sync_interval * 2 ** (health.failures - 1)
        )
        health.retry_at = time.monotonic() + delay
        message = str(err)[:300]
        if health.failures == 1 or message != health.last_error:
            _LOGGER.warning(
                "neighbour %s: %s; backing off for %.1f s (failure %d)",
                neighbor.url,
                message,
                delay,
                health.failures,
            )
        health.last_error = message

    @staticmethod
    def _succeeded(neighbor: _Neighbor) -> None:
        health = neighbor.health
        if health.failures:
            _LOGGER.info("neighbour %s answers properly again", neighbor.url)
        health.failures = 0
        health.retry_at = 0.0

    async def _send_loop(self, neighbor: _Neighbor) -> None:
        while True:
            batch = await neighbor.queue.get()
            waiting = neighbor.health.waiting(time.monotonic())
            if waiting > 0:
                await asyncio.sleep(waiting)
            while len(batch) < _PUSH_BATCH and not neighbor.queue.empty():
                batch.extend(neighbor.queue.get_nowait())
            try:
                await neighbor.link.call("storeTransactions", trytes=batch)
            except PeerError as err:
                # What this push loses the neighbour pulls later.
                self._failed(neighbor, err)
                continue
            # Only a clean pull round clears a back-off: a neighbour that floods its
            # answers but accepts what it is sent must stay marked.
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
        """Pull from every neighbour what this node lacks; returns how many were new.

        A neighbour that is backing off is skipped; each one gives at most
        ``peering.max_transactions_per_round`` transactions per round.
        """
        async with self._sync_lock:
            new = 0
            cursors = {row["url"]: int(row["cursor"]) for row in await self._node.read(self._rows)}
            for url, neighbor in list(self._neighbors.items()):
                if neighbor.health.waiting(time.monotonic()) > 0:
                    continue
                budget = _Round(self._settings.max_transactions_per_round)
                try:
                    new += await self._pull(neighbor, cursors.get(url, 0), budget)
                    if not budget.spent:
                        new += await self._fetch_missing(neighbor, budget)
                except PeerError as err:
                    self._failed(neighbor, err)
                else:
                    self._succeeded(neighbor)
            return new

    async def _pull(self, neighbor: _Neighbor, cursor: int, budget: _Round) -> int:
        new = 0
        pages = short_pages = 0
        while not budget.spent:
            limit = min(_PULL_PAGE, budget.transactions)
            body = await neighbor.link.call("syncTransactions", since=cursor, limit=limit)
            budget.pages -= 1
            pages += 1
            trytes, following, head = _sync_page(body, limit, neighbor.url)
            if head < cursor:
                # The neighbour lost its database; start over from its beginning.
                cursor = 0
                continue
            if trytes:
                budget.take(len(trytes))
                new += await self._store(neighbor, trytes, budget)
            if trytes and following <= cursor:
                raise PeerMisbehavingError("syncTransactions did not advance its cursor")
            if following > head:
                raise PeerMisbehavingError("syncTransactions answered a cursor beyond its head")
            if len(trytes) < limit and following < head:
                short_pages += 1
            cursor = following
            await self._count(neighbor.url, cursor=cursor)
            if not trytes or cursor >= head:
                return new
        if pages >= 3 and short_pages == pages:
            # An honest node fills every page up to its head; tiny pages only waste rounds.
            raise PeerMisbehavingError(
                f"syncTransactions gave {pages} pages smaller than asked while claiming more"
            )
        return new

    async def _store(self, neighbor: _Neighbor, trytes: list[str], budget: _Round) -> int:
        outcome = await self._node.accept(trytes, peer=neighbor.url)
        await self._count(
            neighbor.url,
            received=len(trytes),
            invalid=outcome.invalid,
            new=len(outcome.stored),
        )
        new = len(outcome.stored)
        if outcome.incomplete_bundles and not budget.spent:
            new += await self._fetch_bundles(neighbor, sorted(outcome.incomplete_bundles), budget)
        return new

    async def _fetch_missing(self, neighbor: _Neighbor, budget: _Round) -> int:
        """Ask a neighbour for transactions referenced here but not stored."""
        new = 0
        for _round in range(_MISSING_ROUNDS):
            if budget.spent:
                break
            missing = await self._node.read(self._node.tangle.missing_transactions, _MISSING_BATCH)
            if not missing:
                break
            answer = await neighbor.link.call("getTrytes", hashes=missing)
            budget.pages -= 1
            found = [t for t in _trytes_list(answer, len(missing)) if t != EMPTY_TRYTES]
            if not found:
                break
            bundles = set()
            for item in found:
                try:
                    bundles.add(Transaction.from_trytes(item).bundle)
                except ValueError:
                    continue
            added = await self._fetch_bundles(neighbor, sorted(bundles), budget)
            if not added:
                break
            new += added
        return new

    async def _fetch_bundles(
        self, neighbor: _Neighbor, bundles: Sequence[str], budget: _Round
    ) -> int:
        answer = await neighbor.link.call("findTransactions", bundles=list(bundles))
        budget.pages -= 1
        hashes = answer.get("hashes")
        if not isinstance(hashes, list) or not all(
            isinstance(h, str) and len(h) == _HASH_LENGTH for h in hashes
        ):
            raise PeerMisbehavingError("findTransactions answered without a list of hashes")
        wanted = hashes[: min(_MAX_BUNDLE_FETCH, max(budget.transactions, 0))]
        if not wanted:
            return 0
        answer = await neighbor.link.call("getTrytes", hashes=wanted)
        budget.pages -= 1
        trytes = [t for t in _trytes_list(answer, len(wanted)) if t != EMPTY_TRYTES]
        budget.take(len(trytes))
        outcome = await self._node.accept(trytes, peer=neighbor.url)
        return len(outcome.stored)


def _sync_page(body: dict[str, Any], limit: int, url: str) -> tuple[list[str], int, int]:
    trytes = body.get("trytes")
    following = body.get("next")
    head = body.get("head")
    if (
        not isinstance(trytes, list)
        or isinstance(following, bool)
        or not isinstance(following, int)
        or isinstance(head, bool)
        or not isinstance(head, int)
    ):
        raise PeerMisbehavingError("syncTransactions answered without trytes, next and head")
    if len(trytes) > limit:
        raise PeerMisbehavingError(f"syncTransactions answered {len(trytes)} for a page of {limit}")
    return _checked_trytes(trytes), following, head


def _trytes_list(answer: dict[str, Any], expected: int) -> list[str]:
    trytes = answer.get("trytes")
    if not isinstance(trytes, list) or len(trytes) != expected:
        raise PeerMisbehavingError("getTrytes answered without one entry per hash")
    return _checked_trytes(trytes)


def _checked_trytes(trytes: list[Any]) -> list[str]:
    if not all(isinstance(item, str) and len(item) == _TRYTES_LENGTH for item in trytes):
        raise PeerMisbehavingError("an answer holds something other than transaction trytes")
    return trytes
