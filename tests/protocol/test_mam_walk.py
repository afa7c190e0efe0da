"""The one channel walk: several channels in step, spam, loops, limits, drivers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from p2p_energy_protocol.errors import InvalidTrytesError, MamError
from p2p_energy_protocol.mam import (
    ChannelEntry,
    ChannelWalk,
    MamMessage,
    channel_address,
    channel_addresses,
    channel_root,
    create_channel,
    create_message,
    mam_address,
    message_to_transactions,
    walk_channels,
    walk_channels_sync,
)
from p2p_energy_protocol.trinary import text_to_trytes

from .test_mam_transport import attach

if TYPE_CHECKING:
    from p2p_energy_protocol.transaction import Transaction

KEY = "WALKKEY"


class Tangle:
    """Transactions by address, as a node would find them."""

    def __init__(self) -> None:
        self.at: dict[str, list[Transaction]] = defaultdict(list)
        self.lookups: list[list[str]] = []

    def add(self, message: MamMessage) -> None:
        bundle = attach(message_to_transactions(message, timestamp=1_700_000_000))
        for transaction in bundle:
            self.at[transaction.address].append(transaction)

    def transactions_at(self, addresses: list[str]) -> list[Transaction]:
        self.lookups.append(addresses)
        return [transaction for address in addresses for transaction in self.at[address]]


def channel_of(word: str, count: int, tangle: Tangle) -> tuple[str, list[MamMessage]]:
    channel = create_channel((word * 81)[:81], 1, "restricted", KEY)
    root = channel_root(channel)
    messages = [create_message(channel, {"n": n, "of": word}) for n in range(count)]
    for message in messages:
        tangle.add(message)
    return root, messages


@pytest.fixture(scope="module")
def tangle() -> tuple[Tangle, dict[str, tuple[str, list[MamMessage]]]]:
    found = Tangle()
    channels = {word: channel_of(word, count, found) for word, count in (("A", 3), ("B", 1))}
    return found, channels


def test_channels_are_read_in_step_one_lookup_per_step(
    tangle: tuple[Tangle, dict[str, tuple[str, list[MamMessage]]]],
) -> None:
    found, channels = tangle
    found.lookups.clear()
    (a_root, a), (b_root, b) = channels["A"], channels["B"]
    results = walk_channels_sync(
        found.transactions_at, [(a_root, "restricted", KEY), (b_root, "restricted", KEY)]
    )
    assert [[entry.data for entry in result] for result in results] == [
        [{"n": 0, "of": "A"}, {"n": 1, "of": "A"}, {"n": 2, "of": "A"}],
        [{"n": 0, "of": "B"}],
    ]
    assert [entry.root for entry in results[0]] == [message.root for message in a]
    assert results[1][0].next_root == b[0].next_root
    # Both channels' first and second addresses in one lookup each; then A alone.
    assert [len(addresses) for addresses in found.lookups] == [2, 2, 1, 1]


def test_spam_at_an_address_is_skipped_and_counted(
    tangle: tuple[Tangle, dict[str, tuple[str, list[MamMessage]]]],
) -> None:
    found, channels = tangle
    root, messages = channels["A"]
    spammed = Tangle()
    # Another channel's message, attached at A's first address before A's own.
    other = create_message(create_channel("S" * 81, 1, "restricted", KEY), {"spam": True})
    spammed.add(replace(other, address=mam_address(root, "restricted")))
    for message in messages:
        spammed.add(message)
    (entries,) = walk_channels_sync(spammed.transactions_at, [(root, "restricted", KEY)])
    assert [entry.data["n"] for entry in entries] == [0, 1, 2]
    assert [entry.skipped for entry in entries] == [1, 0, 0]


def test_a_wrong_key_reads_nothing_and_a_limit_stops_early(
    tangle: tuple[Tangle, dict[str, tuple[str, list[MamMessage]]]],
) -> None:
    found, channels = tangle
    root, messages = channels["A"]
    assert walk_channels_sync(found.transactions_at, [(root, "restricted", "WRONG")]) == [[]]
    (entries,) = walk_channels_sync(found.transactions_at, [(root, "restricted", KEY)], 2)
    assert [entry.root for entry in entries] == [message.root for message in messages[:2]]
    with pytest.raises(ValueError, match="limit must be positive"):
        ChannelWalk([(root, "restricted", KEY)], 0)


def test_a_channel_that_comes_back_to_a_root_it_read_ends() -> None:
    channel = create_channel("L" * 81, 1, "restricted", KEY)
    root = channel_root(channel)
    first = create_message(channel, {"n": 0})
    looped = Tangle()
    looped.add(first)
    walk = ChannelWalk([(root, "restricted", KEY)])
    # Real MAM roots never repeat; a forged channel could point back to a root read before.
    walk._seen[0].add(first.next_root)
    walk.take(looped.transactions_at(list(walk.addresses().values())))
    assert walk.done
    assert [entry.root for entry in walk.results[0]] == [root]
    # Nothing at the first root: the walk ends at once.
    empty = ChannelWalk([(root, "restricted", KEY)])
    empty.take([])
    assert (empty.done, empty.results) == (True, [[]])


async def test_the_async_driver_with_and_without_an_executor(
    tangle: tuple[Tangle, dict[str, tuple[str, list[MamMessage]]]],
) -> None:
    found, channels = tangle
    starts = [(channels[word][0], "restricted", KEY) for word in ("A", "B")]

    async def transactions_at(addresses: list[str]) -> list[Transaction]:
        return found.transactions_at(addresses)

    expected = walk_channels_sync(found.transactions_at, starts)
    assert await walk_channels(transactions_at, starts) == expected
    assert await walk_channels(transactions_at, starts, offload=True) == expected


def test_entries_decode_text_and_json() -> None:
    entry = ChannelEntry("R" * 81, "N" * 81, text_to_trytes('{"command":"hello"}'))
    assert (entry.text, entry.data) == ('{"command":"hello"}', {"command": "hello"})
    assert ChannelEntry("R" * 81, "N" * 81, text_to_trytes("not JSON")).data is None
    assert channel_address("R" * 81, "public") == "R" * 81
    assert channel_address("R" * 81, "restricted") == mam_address("R" * 81, "restricted")


def test_many_addresses_are_hashed_together_and_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from p2p_energy_protocol.mam import walk

    roots = [
        (chr(ord("A") + n % 26) * 80 + chr(ord("A") + n // 26), mode)
        for n in range(30)
        for mode in ("restricted", "private", "public")
    ]
    assert channel_addresses(roots) == [mam_address(root, mode) for root, mode in roots]
    assert channel_addresses(roots[::-1]) == [mam_address(*key) for key in roots[::-1]]
    # Beyond the cache's size the older half is forgotten; answers stay right.
    monkeypatch.setattr(walk, "_addresses", {})
    monkeypatch.setattr(walk, "ADDRESS_CACHE_SIZE", 40)
    assert channel_addresses(roots[:30]) == [mam_address(*key) for key in roots[:30]]
    assert channel_addresses(roots[30:]) == [mam_address(*key) for key in roots[30:]]
    assert len(walk._addresses) <= 75
    assert set(roots[30:]) <= set(walk._addresses)
    with pytest.raises(InvalidTrytesError, match="root"):
        channel_addresses([*roots[:10], ("a" * 81, "restricted")])
    with pytest.raises(MamError, match="mode"):
        channel_addresses([*roots[:10], ("B" * 81, "secret")])  # type: ignore[list-item]
