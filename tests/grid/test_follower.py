"""Channel following: exactly-once readings, hello/goodbye, garbage skipped."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from grid_server.grid.config import GridConfig
from grid_server.grid.db.models import FollowedChannel, Reading
from grid_server.grid.follower import ChannelFollower

from .dbhelpers import add_registration
from .fakes import FakeChannels, ManualClock

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database

NOW = 1_700_000_000_000
HELLO = {"command": "hello"}
CONFIG = replace(GridConfig(), follow_interval=10.0)


def output(start: int, kwh: float, price: float = 50, address: str = "A" * 81) -> dict[str, object]:
    return {
        "command": "output",
        "startTime": start,
        "endTime": start + 900_000,
        "output": kwh,
        "producerPrice": price,
        "paymentIdOrAddress": address,
    }


def usage(start: int, kwh: float) -> dict[str, object]:
    return {"startTime": start, "endTime": start + 900_000, "usage": kwh}


def channel(db: Database, channel_id: int) -> FollowedChannel:
    with db.read() as session:
        row = session.get(FollowedChannel, channel_id)
        assert row is not None
        return row


def readings(db: Database) -> list[tuple[str, int, int, int | None]]:
    with db.read() as session:
        return [
            (r.registration_id, r.position, r.energy_milliwh, r.price_micro)
            for r in session.scalars(
                select(Reading).order_by(Reading.registration_id, Reading.position)
            )
        ]


async def test_readings_are_stored_exactly_once(db: Database) -> None:
    fake = FakeChannels()
    clock = ManualClock(NOW)
    producer = fake.stream([HELLO, output(NOW - 1_800_000, 1.5)])
    consumer = fake.stream([HELLO, usage(NOW - 1_800_000, 0.25)])
    producer_channel = add_registration(db, "producer-1", "producer", producer)
    consumer_channel = add_registration(db, "consumer-1", "consumer", consumer)
    assert producer_channel is not None
    assert consumer_channel is not None
    follower = ChannelFollower(db, fake, clock, CONFIG)
    stats = await follower.follow_once()
    assert (stats.channels, stats.messages, stats.readings, stats.skipped) == (2, 4, 2, 0)
    assert readings(db) == [
        ("consumer-1", 1, 250_000, None),
        ("producer-1", 1, 1_500_000, 50_000_000),
    ]
    state = channel(db, producer_channel)
    assert state.hello_seen
    assert (state.next_root, state.next_position) == (producer.roots[2], 2)
    # Not due again until the follow interval has passed.
    assert (await follower.follow_once()).channels == 0
    clock.advance(10)
    producer.publish(output(NOW - 900_000, 2.0, price=60, address="ref-7"))
    reads_before = len(fake.reads)
    stats = await follower.follow_once()
    # The consumer's channel has nothing new: found idle by the batched pre-check, not read.
    assert (stats.channels, stats.idle, stats.readings) == (1, 1, 1)
    assert fake.reads[reads_before:] == [producer.roots[2]]
    assert readings(db)[-1] == ("producer-1", 2, 2_000_000, 60_000_000)
    with db.read() as session:
        reading = session.scalars(select(Reading).where(Reading.position == 2)).one()
        assert (reading.kind, reading.payment_id_or_address) == ("output", "ref-7")
        assert reading.message_root == producer.roots[2]
        assert reading.end_time == NOW


async def test_a_usage_is_stored_with_its_bid(db: Database) -> None:
    fake = FakeChannels()
    start = NOW - 2_700_000
    consumer = fake.stream(
        [
            HELLO,
            {**usage(start, 1.0), "maxPrice": 45.5},
            usage(start + 900_000, 1.0),
            {**usage(start + 1_800_000, 1.0), "maxPrice": 1e12},  # beyond max_price
        ]
    )
    add_registration(db, "consumer-1", "consumer", consumer)
    stats = await ChannelFollower(db, fake, ManualClock(NOW), CONFIG).follow_once()
    assert (stats.readings, stats.skipped) == (3, 0)
    with db.read() as session:
        bids = session.scalars(select(Reading.bid_micro).order_by(Reading.position)).all()
    assert bids == [45_500_000, None, None]


async def test_goodbye_closes_the_channel(db: Database) -> None:
    fake = FakeChannels()
    clock = ManualClock(NOW)
    stream = fake.stream([HELLO, usage(NOW - 900_000, 1), {"command": "goodbye"}, usage(NOW, 9)])
    channel_id = add_registration(db, "consumer-1", "consumer", stream)
    assert channel_id is not None
    stats = await ChannelFollower(db, fake, clock, CONFIG).follow_once()
    assert (stats.readings, stats.closed) == (1, 1)
    state = channel(db, channel_id)
    assert (state.active, state.closed_reason, state.next_position) == (False, "goodbye", 3)
    clock.advance(60)
    assert (await ChannelFollower(db, fake, clock, CONFIG).follow_once()).channels == 0


async def test_garbage_is_skipped_and_never_blocks_the_channel(db: Database) -> None:
    fake = FakeChannels()
    clock = ManualClock(NOW)
    stream = fake.stream(
        [
            HELLO,
            None,  # not JSON
            "text",
            {"command": "usage"},  # wrong command on a producer channel
            {"command": "output", "startTime": 1, "endTime": 2},  # no output
            output(NOW - 900_000, -1),  # negative
            output(NOW - 900_000, 5000),  # above max_reading_kwh
            output(NOW - 900_000, 1, price=1e12),  # above max_price
            output(NOW + 7_200_000, 1),  # ends two hours in the future
            {
                "command": "output",
                "startTime": NOW,
                "endTime": NOW - 1,
                "output": 1,
                "producerPrice": 1,
                "paymentIdOrAddress": "x",
            },
            output(NOW - 900_000, 3),
        ]
    )
    channel_id = add_registration(db, "producer-1", "producer", stream)
    assert channel_id is not None
    stats = await ChannelFollower(db, fake, clock, CONFIG).follow_once()
    assert (stats.messages, stats.skipped, stats.readings) == (11, 9, 1)
    assert readings(db) == [("producer-1", 10, 3_000_000, 50_000_000)]
    state = channel(db, channel_id)
    assert (state.skipped_messages, state.next_position, state.active) == (9, 11, True)


async def test_node_down_changes_nothing(db: Database) -> None:
    fake = FakeChannels()
    stream = fake.stream([HELLO, usage(NOW - 900_000, 1)])
    channel_id = add_registration(db, "consumer-1", "consumer", stream)
    assert channel_id is not None
    fake.available = False
    stats = await ChannelFollower(db, fake, ManualClock(NOW), CONFIG).follow_once()
    assert stats.errors
    assert readings(db) == []
    assert channel(db, channel_id).next_position == 0


async def test_concurrent_followers_store_each_reading_once(db: Database) -> None:
    fake = FakeChannels()
    clock = ManualClock(NOW)
    for number in range(6):
        stream = fake.stream([HELLO] + [usage(NOW - 900_000 * (k + 1), 0.1 * k) for k in range(5)])
        add_registration(db, f"consumer-{number}", "consumer", stream)
    followers = [ChannelFollower(db, fake, clock, CONFIG) for _ in range(3)]
    await asyncio.gather(*(f.follow_once() for f in followers))
    clock.advance(30)
    await asyncio.gather(*(f.follow_once() for f in followers))
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Reading)) == 30
        positions = session.execute(
            select(Reading.channel_id, Reading.position).order_by(
                Reading.channel_id, Reading.position
            )
        ).all()
    assert len(set(positions)) == 30


async def test_a_backlog_is_read_in_consecutive_rounds(db: Database) -> None:
    fake = FakeChannels()
    clock = ManualClock(NOW)
    stream = fake.stream([HELLO] + [usage(NOW - 900_000 * (k + 1), 0.01) for k in range(119)])
    add_registration(db, "consumer-1", "consumer", stream)
    follower = ChannelFollower(db, fake, clock, CONFIG, messages_per_read=50)
    counts = []
    for _ in range(4):
        stats = await follower.follow_once()  # the clock does not move: no waiting between
        counts.append((stats.messages, stats.caught_up))
    assert counts == [(50, False), (50, False), (20, True), (0, True)]
    assert len(readings(db)) == 119


async def test_a_round_that_takes_every_due_channel_is_caught_up(db: Database) -> None:
    # Exactly channels_per_round due channels: nothing is left for another round.
    fake = FakeChannels()
    clock = ManualClock(NOW)
    for n in range(3):
        stream = fake.stream([HELLO, usage(NOW - 1_800_000, 0.1 + n / 10)])
        add_registration(db, f"consumer-{n}", "consumer", stream)
    exact = ChannelFollower(db, fake, clock, CONFIG, channels_per_round=3)
    stats = await exact.follow_once()
    assert (stats.channels, stats.caught_up) == (3, True)


async def test_more_due_channels_than_a_round_takes_is_a_backlog(db: Database) -> None:
    fake = FakeChannels()
    clock = ManualClock(NOW)
    for n in range(3):
        stream = fake.stream([HELLO, usage(NOW - 1_800_000, 0.1 + n / 10)])
        add_registration(db, f"consumer-{n}", "consumer", stream)
    follower = ChannelFollower(db, fake, clock, CONFIG, channels_per_round=2)
    first = await follower.follow_once()
    second = await follower.follow_once()
    assert [(first.channels, first.caught_up), (second.channels, second.caught_up)] == [
        (2, False),
        (1, True),
    ]
    assert len(readings(db)) == 3
