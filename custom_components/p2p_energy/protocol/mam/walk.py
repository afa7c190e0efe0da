"""Reading MAM channels: from a root on, message by message, as every reader does.

One walk serves every reader of a channel: :meth:`IriClient.fetch_mam` (one
channel through a node's API), the grid's follower (thousands of channels in
step, one node request per step for all of them) and the node's explorer (its
own database). :class:`ChannelWalk` does no I/O: its driver looks up the
transactions at :meth:`ChannelWalk.addresses` and hands them to
:meth:`ChannelWalk.take`, until :attr:`ChannelWalk.done`.

At each root the bundles found at its address are candidates (spam, garbage,
reattachments, another channel's data may sit there too); the first that
verifies for the channel is its message, the rest are counted as skipped, so
nothing at an address can block a channel. A channel ends at a root without a
verified message, after ``limit`` messages, or where its next root was seen
before (a loop).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

import numpy as np

from ..curl import MIN_BATCH_LANES, curl_hash_many
from ..errors import MamError
from ..trinary import trits_to_trytes, trytes_to_trits, validate_trytes
from .channel import ADDRESS_ROUNDS, HASH_TRYTES, MamMode, mam_address
from .parser import DecodedMessage, parse_messages
from .transport import payload_from_transactions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence
    from concurrent.futures import Executor

    from ..transaction import Transaction
    from .parser import ParseItem

type ChannelStart = tuple[str, MamMode, str | None]
"""Where to start reading a channel: ``(root, mode, side key)``."""

PARSE_CHUNK = 500
"""Channels whose candidates are parsed in one go (bounds one executor job to ~1 s)."""


@dataclass(frozen=True, slots=True)
class ChannelEntry(DecodedMessage):
    """One verified message of a channel and the root it was read at."""

    root: str
    next_root: str
    """The root of the channel's following message."""
    message: str
    """The message's trytes."""
    skipped: int = 0
    """Bundles at the address that did not verify for this channel."""


ADDRESS_CACHE_SIZE = 131_072
"""Roots whose address is remembered (a follower asks for the same roots round after
round); beyond it the older half is forgotten."""
_addresses: dict[tuple[str, MamMode], str] = {}
_addresses_lock = threading.Lock()  # walks run in executor threads


def channel_address(root: str, mode: MamMode) -> str:
    """:func:`mam_address`, cached: a follower asks for the same roots round after round."""
    (address,) = channel_addresses([(root, mode)])
    return address


def channel_addresses(roots: Sequence[tuple[str, MamMode]]) -> list[str]:
    """:func:`channel_address` of many ``(root, mode)``: the roots not remembered are
    hashed together in Curl lanes (one by one, 10,000 new roots cost ~0.8 s of CPU in a
    follow step)."""
    with _addresses_lock:
        known = {key: _addresses[key] for key in roots if key in _addresses}
    found = _addresses_of([key for key in dict.fromkeys(roots) if key not in known])
    if found:
        with _addresses_lock:
            if len(_addresses) + len(found) > ADDRESS_CACHE_SIZE:
                for key in list(_addresses)[: len(_addresses) // 2]:  # the oldest
                    del _addresses[key]
            _addresses.update(found)
    return [known[key] if key in known else found[key] for key in roots]


def _addresses_of(keys: list[tuple[str, MamMode]]) -> dict[tuple[str, MamMode], str]:
    """:func:`mam_address` of each key, the hashed ones side by side."""
    hashed = [key for key in keys if key[1] != "public"]
    if len(hashed) < MIN_BATCH_LANES:
        return {key: mam_address(*key) for key in keys}
    for root, mode in keys:  # as mam_address checks them
        validate_trytes(root, HASH_TRYTES, "root")
        if mode not in get_args(MamMode):
            raise MamError(f"mode must be public, private or restricted, got {mode!r}")
    found = {key: key[0] for key in keys if key[1] == "public"}
    trits = curl_hash_many(np.stack([trytes_to_trits(root) for root, _ in hashed]), ADDRESS_ROUNDS)
    joined = trits_to_trytes(trits.reshape(-1))
    for n, key in enumerate(hashed):
        found[key] = joined[n * HASH_TRYTES : (n + 1) * HASH_TRYTES]
    return found


class ChannelWalk:
    """Reads channels side by side, one message of each per step (no I/O).

    ``results[i]`` collects the messages of ``channels[i]`` in channel order,
    at most ``limit`` (``None``: until the channel ends).
    """

    def __init__(self, channels: Sequence[ChannelStart], limit: int | None = None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        self._channels = list(channels)
        self._limit = limit
        self.results: list[list[ChannelEntry]] = [[] for _ in self._channels]
        self._current = {index: root for index, (root, _, _) in enumerate(self._channels)}
        self._seen = [{root} for root, _, _ in self._channels]

    @property
    def done(self) -> bool:
        """Whether every channel has ended."""
        return not self._current

    def addresses(self) -> dict[int, str]:
        """The address of each walking channel's next root (CPU work: a Curl hash each)."""
        indexes = list(self._current)
        addresses = channel_addresses(
            [(self._current[index], self._channels[index][1]) for index in indexes]
        )
        return dict(zip(indexes, addresses, strict=True))

    def take(self, transactions: Iterable[Transaction], *, chunk: int | None = None) -> None:
        """Read the step's messages from ``transactions`` (found at :meth:`addresses`).

        CPU work (MAM parsing). ``chunk`` limits how many channels' candidates
        are parsed at once; :meth:`take_chunks` hands out the chunks for a driver
        that runs each in an executor.
        """
        for part in self.take_chunks(transactions, chunk or len(self._current) or 1):
            part()

    def take_chunks(
        self, transactions: Iterable[Transaction], chunk: int = PARSE_CHUNK
    ) -> list[Callable[[], None]]:
        """:meth:`take` as separate parsing jobs; the walk moves on after the last one."""
        addresses = self.addresses()
        found: dict[str, list[Transaction]] = {}
        for transaction in transactions:
            found.setdefault(transaction.address, []).append(transaction)
        pending = list(self._current.items())
        verified: dict[int, ChannelEntry] = {}
        jobs: list[Callable[[], None]] = []
        for first in range(0, len(pending), chunk):
            part = pending[first : first + chunk]
            last = first + chunk >= len(pending)

            def job(part: list[tuple[int, str]] = part, last: bool = last) -> None:
                verified.update(self._parse(part, addresses, found))
                if last:
                    self._advance(verified)

            jobs.append(job)
        if not jobs:
            jobs.append(lambda: self._advance(verified))
        return jobs

    def _parse(
        self,
        part: list[tuple[int, str]],
        addresses: dict[int, str],
        found: dict[str, list[Transaction]],
    ) -> dict[int, ChannelEntry]:
        items: list[ParseItem] = []
        owners: list[int] = []
        for index, root in part:
            for payload in payload_from_transactions(found.get(addresses[index], ())):
                items.append((payload, root, self._channels[index][2]))
                owners.append(index)
        verified: dict[int, ChannelEntry] = {}
        skipped: dict[int, int] = {}
        for index, result in zip(owners, parse_messages(items) if items else [], strict=True):
            if index in verified:
                continue
            if isinstance(result, Exception):
                skipped[index] = skipped.get(index, 0) + 1
            else:
                root = self._current[index]
                verified[index] = ChannelEntry(
                    root, result.next_root, result.message, skipped.get(index, 0)
                )
        return verified

    def _advance(self, verified: dict[int, ChannelEntry]) -> None:
        following: dict[int, str] = {}
        for index, entry in verified.items():
            self.results[index].append(entry)
            full = self._limit is not None and len(self.results[index]) >= self._limit
            if not full and entry.next_root not in self._seen[index]:
                following[index] = entry.next_root
                self._seen[index].add(entry.next_root)
        self._current = following


type TransactionsAt = Callable[[list[str]], Awaitable[list[Transaction]]]
"""The transactions at some addresses (a node's findTransactions and getTrytes)."""


async def walk_channels(
    transactions_at: TransactionsAt,
    channels: Sequence[ChannelStart],
    limit: int | None = None,
    *,
    executor: Executor | None = None,
    offload: bool = False,
) -> list[list[ChannelEntry]]:
    """Read ``channels`` through ``transactions_at``, one step for all of them at a time.

    ``offload`` runs the CPU work (addresses, parsing in chunks of
    :data:`PARSE_CHUNK` channels) in ``executor`` (``None``: the loop's
    default), so an event loop serving an API stays responsive.
    """
    walk = ChannelWalk(channels, limit)
    loop = asyncio.get_running_loop()
    while not walk.done:
        addresses = (
            await loop.run_in_executor(executor, walk.addresses) if offload else walk.addresses()
        )
        found = await transactions_at(sorted(set(addresses.values())))
        if not offload:
            walk.take(found)
            continue
        for job in walk.take_chunks(found):
            await loop.run_in_executor(executor, job)
    return walk.results


def walk_channels_sync(
    transactions_at: Callable[[list[str]], list[Transaction]],
    channels: Sequence[ChannelStart],
    limit: int | None = None,
) -> list[list[ChannelEntry]]:
    """:func:`walk_channels` for a reader with direct access to the transactions."""
    walk = ChannelWalk(channels, limit)
    while not walk.done:
        walk.take(transactions_at(sorted(set(walk.addresses().values()))))
    return walk.results
