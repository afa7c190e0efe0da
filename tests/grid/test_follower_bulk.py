"""Bulk following with real MAM messages: few node requests for many channels,
spam skipped, exactly once, and the node's list limits respected."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from p2p_energy_protocol.errors import NodeUnavailableError
from p2p_energy_protocol.mam import (
    MamChannel,
    channel_root,
    create_channel,
    create_message,
    message_to_transactions,
)
from sqlalchemy import select

from grid_server.grid.config import GridConfig
from grid_server.grid.db.models import FollowedChannel, Reading, Registration
from grid_server.grid.follower import BulkMamReader, ChannelFollower

from .fakes import ManualClock

if TYPE_CHECKING:
    from collections.abc import Sequence

    from p2p_energy_protocol.transaction import Transaction

    from grid_server.grid.db.engine import Database

NOW = 1_700_000_000_000
CONFIG = replace(GridConfig(), follow_interval=10.0)
LIST_LIMIT = 1_000


class FakeNode:
    """findTransactions/getTrytes over stored bundles, counting calls and refusing
    lists longer than the node's limit (as IriClient would never send)."""

    def __init__(self) -> None:
        self.transactions: dict[str, Transaction] = {}
        self.find_calls = 0
        self.get_calls = 0
        self.available = True

    def attach(self, transactions: Sequence[Transaction]) -> None:
        for transaction in transactions:
            self.transactions[transaction.hash] = transaction

    async def find_transactions(self, *, addresses: Sequence[str] | None = None) -> list[str]:
        if not self.available:
            raise NodeUnavailableError("node down (fake)")
        assert addresses is not None
        wanted = set(addresses)
        self.find_calls += (len(wanted) + LIST_LIMIT - 1) // LIST_LIMIT
        return [h for h, tx in self.transactions.items() if tx.address in wanted]

    async def get_trytes(self, hashes: Sequence[str]) -> list[str]:
        self.get_calls += (len(hashes) + LIST_LIMIT - 1) // LIST_LIMIT
        return [
            self.transactions[h].to_trytes() if h in self.transactions else "9" * 2673
            for h in hashes
        ]


def publish(node: FakeNode, channel: MamChannel, message: dict[str, object]) -> None:
    node.attach(message_to_transactions(create_message(channel, message), timestamp=1))


def follow(db: Database, registration: str, role: str, channel: MamChannel) -> str:
    root = channel_root(channel)
    with db.write() as session:
        session.add(
            Registration(
                registration_id=registration,
                item_name=registration,
                item_type=role,
                root=root,
                side_key=channel.side_key,
                active=True,
                created_at=0,
                updated_at=0,
            )
        )
        session.flush()
        session.add(
            FollowedChannel(
                registration_id=registration,
                role=role,
                mode="restricted",
                root=root,
                side_key=channel.side_key,
                next_root=root,
                next_position=0,
                active=True,
                hello_seen=False,
                skipped_messages=0,
                next_read_at=0,
                created_at=0,
            )
        )
    return root


def usage(n: int) -> dict[str, object]:
    start = NOW - 1_800_000
    return {"startTime": start, "endTime": start + 900_000, "usage": round(0.1 + n / 100, 2)}


async def test_many_channels_in_few_requests_exactly_once(db: Database) -> None:
    node = FakeNode()
    channels = [
        create_channel(chr(ord("A") + n) * 81, 1, "restricted", f"KEY{chr(ord('A') + n)}")
        for n in range(6)
    ]
    for n, channel in enumerate(channels):
        follow(db, f"consumer-{n}", "consumer", channel)
        publish(node, channel, {"command": "hello"})
        publish(node, channel, usage(n))
    follower = ChannelFollower(db, BulkMamReader(node), ManualClock(NOW), CONFIG)
    stats = await follower.follow_once()
    assert (stats.channels, stats.messages, stats.readings, stats.skipped) == (6, 12, 6, 0)
    assert stats.caught_up
    # One step per message along the channels plus the step that finds nothing new.
    assert node.find_calls == 3
    assert node.get_calls == 2
    again = ChannelFollower(db, BulkMamReader(node), ManualClock(NOW + 60_000), CONFIG)
    stats = await again.follow_once()
    assert (stats.channels, stats.readings, stats.idle) == (0, 0, 6)
    with db.read() as session:
        rows = session.execute(select(Reading.registration_id, Reading.position)).all()
        hello = session.scalars(select(FollowedChannel.hello_seen)).all()
    assert sorted(rows) == [(f"consumer-{n}", 1) for n in range(6)]
    assert all(hello)


async def test_spam_at_a_channel_address_is_skipped(db: Database) -> None:
    node = FakeNode()
    channel = create_channel("Q" * 81, 1, "restricted", "KEYQ")
    follow(db, "consumer-q", "consumer", channel)
    publish(node, channel, {"command": "hello"})
    # Before the reading: another channel's message attached at the next address.
    other = create_channel("P" * 81, 1, "restricted", "KEYP")
    intruder = create_message(other, usage(7))
    upcoming = create_message(MamChannel.from_json(channel.to_json()), usage(1))
    node.attach(message_to_transactions(replace(intruder, address=upcoming.address), timestamp=2))
    publish(node, channel, usage(1))
    stats = await ChannelFollower(db, BulkMamReader(node), ManualClock(NOW), CONFIG).follow_once()
    assert (stats.messages, stats.readings, stats.skipped) == (2, 1, 0)
    with db.read() as session:
        assert session.scalars(select(Reading.energy_milliwh)).all() == [110_000]


async def test_node_down_stores_nothing_and_reports(db: Database) -> None:
    node = FakeNode()
    channel = create_channel("R" * 81, 1, "restricted", "KEYR")
    follow(db, "consumer-r", "consumer", channel)
    publish(node, channel, {"command": "hello"})
    node.available = False
    stats = await ChannelFollower(db, BulkMamReader(node), ManualClock(NOW), CONFIG).follow_once()
    assert stats.errors
    assert not stats.caught_up
    node.available = True
    stats = await ChannelFollower(db, BulkMamReader(node), ManualClock(NOW), CONFIG).follow_once()
    assert (stats.channels, stats.messages) == (1, 1)


class ShortNode(FakeNode):
    """Answers getTrytes with one entry fewer than asked for."""

    async def get_trytes(self, hashes: Sequence[str]) -> list[str]:
        return (await super().get_trytes(hashes))[:-1]


async def test_a_node_answering_fewer_trytes_than_hashes_is_unavailable(db: Database) -> None:
    node = ShortNode()
    channel = create_channel("S" * 81, 1, "restricted", "KEYS")
    follow(db, "consumer-s", "consumer", channel)
    publish(node, channel, {"command": "hello"})
    stats = await ChannelFollower(db, BulkMamReader(node), ManualClock(NOW), CONFIG).follow_once()
    assert stats.errors
    assert "getTrytes answered" in stats.errors[0]
    assert (stats.channels, stats.messages) == (0, 0)
