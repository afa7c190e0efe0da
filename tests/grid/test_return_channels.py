"""The outbox of the grid's channels in batches: append_many and publishing."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.mam import (
    MamChannel,
    MamMessage,
    channel_root,
    create_message,
    parse_message,
)
from p2p_energy_protocol.payloads import Hello, payload_to_json
from sqlalchemy import select, update

from grid_server.grid.channels import CreatedMessage, TangleUnavailableError
from grid_server.grid.db.models import GridChannel, OutboxMessage
from grid_server.grid.proof_of_work import ProcessPoolProofOfWork
from grid_server.grid.return_channels import PUBLISH_GROUP, Append, ReturnChannels, _groups
from grid_server.grid.tangle import MamTangle

from .dbhelpers import add_registration
from .fakes import FakeChannels, ManualClock
from .nodes import MWM, running_node

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from pathlib import Path

    from sqlalchemy.orm import Session

    from grid_server.grid.db.engine import Database

NOW = 1_700_000_000_000


@pytest.fixture
def cpu() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as executor:
        yield executor


async def open_channels(db: Database, channels: ReturnChannels, count: int) -> list[int]:
    ids = []
    for number in range(count):
        add_registration(db, f"consumer-{number:04d}", "consumer", None)
        prepared = await channels.prepare()
        with db.write() as session:
            ids.append(channels.store(session, f"consumer-{number:04d}", prepared).id)
    return ids


def outbox(db: Database) -> list[tuple[int, int, str, str]]:
    with db.read() as session:
        rows = session.scalars(
            select(OutboxMessage).order_by(OutboxMessage.channel_id, OutboxMessage.position)
        ).all()
        return [(row.channel_id, row.position, row.kind, row.payload) for row in rows]


def positions(db: Database) -> dict[int, int]:
    with db.read() as session:
        return {row.id: row.next_position for row in session.scalars(select(GridChannel))}


def test_opened_channels_equal_channels_made_one_by_one() -> None:
    """Real MAM: a batch of new channels with their hellos gives the same roots,
    messages and states as creating each channel and its hello alone."""
    tangle = MamTangle(None)  # type: ignore[arg-type]  # creating needs no node
    hello = payload_to_json(Hello())
    opened = tangle.open_channels([hello] * 3)
    assert len({channel.root for channel, _ in opened}) == 3
    for channel, created in opened:
        alone = MamChannel.from_json(channel.state)
        assert channel.root == channel_root(alone)
        assert channel.side_key == alone.side_key
        message = create_message(alone, dict(hello))
        assert created.message == message
        assert created.state == alone.to_json()
        assert parse_message(message.payload, channel.root, channel.side_key).data == hello


async def test_registrations_arriving_together_share_one_creation(
    db: Database, cpu: ThreadPoolExecutor
) -> None:
    node = FakeChannels()
    channels = ReturnChannels(db, node, cpu, ManualClock(NOW))
    first = asyncio.ensure_future(channels.prepare())
    await asyncio.sleep(0)  # the first batch is under way with one channel
    rest = [asyncio.ensure_future(channels.prepare()) for _ in range(5)]
    await asyncio.sleep(0)  # all five wait for the next batch
    rest[2].cancel()  # a registration that gave up: no channel is made for it
    prepared = await asyncio.gather(first, *rest[:2], *rest[3:])
    assert rest[2].cancelled()
    assert node.opened == [1, 4]
    assert len({item.channel.root for item in prepared}) == 5
    assert all(item.hello.message.root == item.channel.root for item in prepared)


class CountingOffload:
    """The grid's proof-of-work pool as ``offload``, counting the calls it ran."""

    def __init__(self) -> None:
        self.pool = ProcessPoolProofOfWork(1)
        self.calls: list[str] = []

    async def run[**P, R](self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        self.calls.append(func.__name__)
        return await self.pool.run(func, *args, **kwargs)


@pytest.mark.parametrize("offloaded", [False, True], ids=["in-process", "in-a-worker"])
async def test_append_many_equals_appending_one_by_one(
    db: Database, cpu: ThreadPoolExecutor, offloaded: bool
) -> None:
    """Real MAM: the batch stores the same payloads and states as single appends, also
    when the batches are created in a proof-of-work worker process (``offload``)."""
    tangle = MamTangle(None)  # type: ignore[arg-type]  # creating needs no node
    offload = CountingOffload() if offloaded else None
    try:
        await _append_many_equals_appending_one_by_one(db, cpu, tangle, offload)
    finally:
        if offload is not None:
            await offload.pool.close()
    if offload is not None:  # both batched creations ran in the worker
        assert set(offload.calls) == {"open_channels", "create_messages"}


async def _append_many_equals_appending_one_by_one(
    db: Database, cpu: ThreadPoolExecutor, tangle: MamTangle, offload: CountingOffload | None
) -> None:
    channels = ReturnChannels(db, tangle, cpu, ManualClock(NOW), offload=offload)
    ids = await open_channels(db, channels, 12)
    with db.read() as session:
        states = {row.id: row.state_json for row in session.scalars(select(GridChannel))}
    marked: list[int] = []
    result = await channels.append_many(
        [Append(channel_id, {"owed": channel_id}, "payment-request") for channel_id in ids],
        also=lambda session, stored: marked.extend(item.channel_id for item in stored),
    )
    assert result == [1] * len(ids)
    assert marked == ids
    stored = {(row[0], row[1]): row[3] for row in outbox(db)}
    with db.read() as session:
        roots = {row.id: (row.root, row.side_key) for row in session.scalars(select(GridChannel))}
    for channel_id in ids:
        expected_channel = MamChannel.from_json(json.loads(states[channel_id]))
        expected = create_message(expected_channel, {"owed": channel_id})
        assert stored[(channel_id, 1)] == expected.payload
        hello = stored[(channel_id, 0)]
        root, side_key = roots[channel_id]
        next_root = parse_message(hello, root, side_key).next_root
        assert parse_message(expected.payload, next_root, side_key).data == {"owed": channel_id}
    with db.read() as session:
        for row in session.scalars(select(GridChannel)):
            assert json.loads(row.state_json)["start"] == 2


class MovingWriter(FakeChannels):
    """Another grid process appends to ``victim`` while the batch is being created."""

    def __init__(self, db: Database, victim: int, times: int = 1) -> None:
        super().__init__()
        self.db = db
        self.victim = victim
        self.times = times
        self.batches: list[int] = []

    def create_messages(
        self, items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> list[CreatedMessage]:
        self.batches.append(len(items))
        if self.times:
            self.times -= 1
            with self.db.write() as session:
                row = session.get(GridChannel, self.victim)
                assert row is not None
                state = json.loads(row.state_json)
                moved = self.create_message(state, {"by": "other writer"})
                row.state_json = json.dumps(moved.state)
                session.add(
                    OutboxMessage(
                        channel_id=row.id,
                        position=row.next_position,
                        kind="payment-request",
                        root=moved.message.root,
                        address=moved.message.address,
                        next_root=moved.message.next_root,
                        payload=moved.message.payload,
                        message_json="{}",
                        created_at=NOW,
                        attempts=0,
                    )
                )
                row.next_position += 1
        return super().create_messages(items)


async def test_a_channel_moved_by_another_writer_is_created_again(
    db: Database, cpu: ThreadPoolExecutor
) -> None:
    setup = ReturnChannels(db, FakeChannels(), cpu, ManualClock(NOW))
    ids = await open_channels(db, setup, 5)
    writer = MovingWriter(db, ids[2])
    channels = ReturnChannels(db, writer, cpu, ManualClock(NOW))
    result = await channels.append_many([Append(i, {"n": i}, "payment-request") for i in ids])
    # The moved channel's message comes after the other writer's; only it was redone.
    assert result == [1, 1, 2, 1, 1]
    assert writer.batches == [5, 1]
    assert positions(db) == {i: (3 if i == ids[2] else 2) for i in ids}
    states = {}
    with db.read() as session:
        for row in session.scalars(select(GridChannel)):
            states[row.id] = json.loads(row.state_json)["start"]
    assert states == positions(db)


async def test_nothing_is_stored_when_the_transaction_fails(
    db: Database, cpu: ThreadPoolExecutor
) -> None:
    channels = ReturnChannels(db, FakeChannels(), cpu, ManualClock(NOW))
    ids = await open_channels(db, channels, 3)

    def fail(session: Session, stored: list[Append]) -> None:
        raise RuntimeError("crash inside the transaction")

    with pytest.raises(RuntimeError):
        await channels.append_many([Append(i, {}, "payment-request") for i in ids], also=fail)
    assert positions(db) == dict.fromkeys(ids, 1)
    assert [row[1] for row in outbox(db)] == [0, 0, 0]


async def test_closed_channels_are_skipped_and_duplicates_refused(
    db: Database, cpu: ThreadPoolExecutor
) -> None:
    channels = ReturnChannels(db, FakeChannels(), cpu, ManualClock(NOW))
    ids = await open_channels(db, channels, 3)
    with db.write() as session:
        session.execute(update(GridChannel).where(GridChannel.id == ids[1]).values(active=False))
    result = await channels.append_many(
        [Append(i, {}, "goodbye", close=True) for i in ids] + [Append(999_999, {}, "x")]
    )
    assert result == [1, None, 1, None]
    with db.read() as session:
        assert not any(row.active for row in session.scalars(select(GridChannel)))
    with pytest.raises(ValueError, match="at most once"):
        await channels.append_many([Append(ids[0], {}, "x"), Append(ids[0], {}, "y")])
    assert await channels.append_many([]) == []


class SlowNode(FakeChannels):
    """Counts how many group publications run at once; fails on request."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most = 0
        self.groups: list[int] = []
        self.fail_after: int | None = None

    async def publish_many(self, messages: Sequence[MamMessage]) -> None:
        if self.fail_after is not None and len(self.groups) >= self.fail_after:
            raise TangleUnavailableError("node down (fake)")
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        self.groups.append(len(messages))
        self.published.extend(messages)


async def test_publishing_runs_groups_concurrently_in_order_per_channel(
    db: Database, cpu: ThreadPoolExecutor
) -> None:
    node = SlowNode()
    channels = ReturnChannels(db, node, cpu, ManualClock(NOW), publish_concurrency=4)
    ids = await open_channels(db, channels, 60)
    await channels.append_many([Append(i, {"n": i}, "payment-request") for i in ids])
    assert await channels.publish_pending(limit=1000) == 120
    assert node.most == 4
    assert node.groups == [PUBLISH_GROUP] * 6
    # Within a channel, hello goes out before the payment request.
    order = [message.root for message in node.published]
    with db.read() as session:
        for channel_id in ids:
            rows = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.channel_id == channel_id)
                .order_by(OutboxMessage.position)
            ).all()
            assert order.index(rows[0].root) < order.index(rows[1].root)
            assert all(row.sent_at == NOW and row.attempts == 1 for row in rows)
    assert await channels.publish_pending() == 0


async def test_publishing_stops_when_the_node_is_down_and_resumes(
    db: Database, cpu: ThreadPoolExecutor
) -> None:
    node = SlowNode()
    channels = ReturnChannels(db, node, cpu, ManualClock(NOW), publish_concurrency=2)
    await open_channels(db, channels, 100)
    node.fail_after = 2
    sent = await channels.publish_pending(limit=1000)
    # Groups already under way finish; none starts after the failure.
    assert sent % PUBLISH_GROUP == 0
    assert 2 * PUBLISH_GROUP <= sent <= 3 * PUBLISH_GROUP
    with db.read() as session:
        rows = session.scalars(select(OutboxMessage)).all()
        assert sum(row.sent_at is not None for row in rows) == sent
        assert sum(bool(row.last_error) for row in rows) >= 1
    node.fail_after = None
    assert await channels.publish_pending(limit=1000) == 100 - sent
    assert len({message.root for message in node.published}) == 100


async def test_publish_all_sends_what_is_created_meanwhile_and_stops_at_a_failure(
    db: Database, cpu: ThreadPoolExecutor
) -> None:
    node = SlowNode()
    channels = ReturnChannels(db, node, cpu, ManualClock(NOW), publish_concurrency=3)
    ids = await open_channels(db, channels, 30)
    created: list[int] = []
    round_started = asyncio.Event()

    async def create() -> None:
        for first in range(0, len(ids), 10):  # three batches, each after publishing began
            await round_started.wait()
            round_started.clear()
            await channels.append_many(
                [Append(i, {"n": i}, "payment-request") for i in ids[first : first + 10]]
            )
            created.append(len(node.published))

    async def publish_many(messages: Sequence[MamMessage]) -> None:
        round_started.set()
        await SlowNode.publish_many(node, messages)

    node.publish_many = publish_many  # type: ignore[method-assign]
    creating = asyncio.ensure_future(create())
    assert await channels.publish_all(creating, window=20) == 60
    assert creating.done()
    assert created[0] < 60  # publishing began before the last batch was created
    with db.read() as session:
        rows = session.scalars(select(OutboxMessage)).all()
        assert len(rows) == 60
        assert all(row.sent_at == NOW and row.attempts == 1 for row in rows)
    # Each channel's hello went out before its payment request.
    order = [message.root for message in node.published]
    assert len(order) == len(set(order)) == 60
    with db.read() as session:
        for channel_id in ids:
            hello, request = session.scalars(
                select(OutboxMessage.root)
                .where(OutboxMessage.channel_id == channel_id)
                .order_by(OutboxMessage.position)
            ).all()
            assert order.index(hello) < order.index(request)

    # The node goes down: publish_all returns what it sent, the rest stays queued.
    await channels.append_many([Append(i, {"again": i}, "payment-request") for i in ids])
    node.fail_after = len(node.groups) + 1
    sent = await channels.publish_all(window=20)
    assert 0 < sent < 30
    node.fail_after = None
    assert await channels.publish_all(window=20) == 30 - sent
    assert await channels.publish_all() == 0


def test_groups_keep_each_channel_whole() -> None:
    message = MamMessage(payload="P", root="R", address="A", next_root="N")
    rows = [(row, row // 3, message) for row in range(50)]  # three messages per channel
    chunks = _groups(rows)
    assert [len(chunk) for chunk in chunks] == [21, 21, 8]
    assert [row for chunk in chunks for row, _ in chunk] == list(range(50))


async def test_published_groups_are_readable_on_a_real_node(
    db: Database, cpu: ThreadPoolExecutor, tmp_path: Path
) -> None:
    async with running_node(tmp_path, {}) as node, aiohttp.ClientSession() as session:
        client = IriClient(session, node.url)
        tangle = MamTangle(client, min_weight_magnitude=MWM)
        channels = ReturnChannels(db, tangle, cpu, ManualClock(NOW))
        ids = await open_channels(db, channels, 5)
        await channels.append_many([Append(i, {"n": i}, "payment-request") for i in ids])
        assert await channels.publish_pending() == 10
        with db.read() as session_:
            rows = session_.scalars(select(GridChannel).order_by(GridChannel.id)).all()
            found = [(row.id, row.root, row.side_key) for row in rows]
        for channel_id, root, side_key in found:
            messages = await client.fetch_mam(root, "restricted", side_key)
            assert [entry.data for entry in messages] == [
                {"command": "hello"},
                {"n": channel_id},
            ]
