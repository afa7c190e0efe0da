"""The grid's own MAM channels (a consumer's return channel) and their outbox.

A message is created from the channel state stored in the database, then the new
state and the message are committed together to the outbox before anything is
sent. Publishing works through the outbox in channel order and marks what was
sent, so a crash anywhere loses nothing and resumes from the stored state;
publishing a message twice after a crash is harmless (same bundle content).

At scale (a payment request per consumer per slot) :meth:`ReturnChannels.append_many`
creates many channels' messages in one batched MAM creation and one transaction,
with the same guarantees per channel, and publishing sends groups of messages per
node round trip, several groups at a time, each channel's messages in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from p2p_energy_protocol.mam import MamMessage
from p2p_energy_protocol.payloads import Hello, payload_to_json
from sqlalchemy import bindparam, insert, select, update

from .channels import CreatedMessage, NewChannel, TangleUnavailableError
from .db.models import GridChannel, OutboxMessage

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from concurrent.futures import Executor

    from sqlalchemy import Table
    from sqlalchemy.orm import Session

    from .channels import ChannelWriter
    from .clock import Clock
    from .db.engine import Database

_LOGGER = logging.getLogger(__name__)
_IN_CHUNK = 500
DEFAULT_PUBLISH_CONCURRENCY = 4
"""Groups published at once: enough to overlap the node's round trips and its
proof of work (one attachToTangle at a time on our node) without flooding it."""
PUBLISH_GROUP = 20
"""Messages per attachToTangle: a payment request is 3 transactions, so a group stays
far below IRI's request limits (1,000 trytes, 1 MB per request)."""
PREPARE_BATCH = 100
"""New channels (with their hellos) created together at most, see
:meth:`ReturnChannels.prepare`."""
PUBLISH_WINDOW = 1000
"""Outbox messages read per round of :meth:`ReturnChannels.publish_all`: enough groups
that the concurrent publishers rarely run out before the round ends."""


class Offload(Protocol):
    """Where batched MAM creation can run outside the grid's process (its pool of
    proof-of-work workers: :meth:`~.proof_of_work.ProcessPoolProofOfWork.run`)."""

    async def run[**P, R](self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``func(*args, **kwargs)`` elsewhere; ``func`` and its arguments pickle."""
        ...


class ChannelConflictError(RuntimeError):
    """Another writer advanced the channel first; create the message again."""


class _ChannelsMovedError(ChannelConflictError):
    """Some channels of a batch moved on; the transaction is rolled back."""

    def __init__(self, ids: set[int]) -> None:
        super().__init__(f"grid channels {sorted(ids)} moved on")
        self.ids = ids


@dataclass(frozen=True, slots=True)
class Append:
    """One message for :meth:`ReturnChannels.append_many`."""

    channel_id: int
    message: Mapping[str, Any]
    kind: str
    close: bool = False


@dataclass(frozen=True, slots=True)
class PreparedChannel:
    """A new channel and its first (hello) message, not yet stored."""

    channel: NewChannel
    hello: CreatedMessage


class ReturnChannels:
    """Creates grid channels and messages and publishes the outbox."""

    def __init__(
        self,
        db: Database,
        writer: ChannelWriter,
        cpu: Executor,
        clock: Clock,
        *,
        publish_concurrency: int = DEFAULT_PUBLISH_CONCURRENCY,
        offload: Offload | None = None,
    ) -> None:
        """``cpu`` runs the writer's CPU work (creating messages) unless ``offload`` is
        given: then batched creation (a slot's payment requests, hellos of channels
        opened together) runs there, with the writer's ``create_messages`` and
        ``open_channels``, which must then pickle (``MamTangle``'s are static)."""
        if publish_concurrency < 1:
            raise ValueError("publish_concurrency must be at least 1")
        self._offload = offload
        self._publish_concurrency = publish_concurrency
        self._db = db
        self._writer = writer
        self._cpu = cpu
        self._clock = clock
        self._locks: dict[int, asyncio.Lock] = {}
        self._publish_lock = asyncio.Lock()
        self._to_prepare: list[asyncio.Future[PreparedChannel]] = []
        self._preparing: asyncio.Future[None] | None = None
        self._queued = asyncio.Event()
        """Set when a message is added to the outbox (wakes :meth:`publish_all`)."""

    async def prepare(self) -> PreparedChannel:
        """Create a channel and its hello (CPU work off the event loop).

        Calls that arrive together (registrations of many households) share one
        batched creation of up to :data:`PREPARE_BATCH` channels: the next batch
        starts with whatever arrived while the current one was being created.
        """
        waiter: asyncio.Future[PreparedChannel] = asyncio.get_running_loop().create_future()
        self._to_prepare.append(waiter)
        if self._preparing is None or self._preparing.done():
            self._preparing = asyncio.ensure_future(self._prepare_waiting())
        return await waiter

    async def _batched[T, R](self, create: Callable[[T], R], items: T) -> R:
        """A batched creation off the event loop: in ``offload`` if given, else ``cpu``."""
        if self._offload is not None:
            return await self._offload.run(create, items)
        return await asyncio.get_running_loop().run_in_executor(self._cpu, create, items)

    async def _prepare_waiting(self) -> None:
        hello = payload_to_json(Hello())
        batch: list[asyncio.Future[PreparedChannel]] = []
        try:
            while self._to_prepare:
                batch = [waiter for waiter in self._to_prepare[:PREPARE_BATCH] if not waiter.done()]
                del self._to_prepare[:PREPARE_BATCH]
                if not batch:  # every one of them gave up
                    continue
                try:
                    opened = await self._batched(self._writer.open_channels, [hello] * len(batch))
                except Exception as err:  # each waiting registration gets the error
                    for waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(err)
                    continue
                for waiter, (channel, created) in zip(batch, opened, strict=True):
                    if not waiter.done():  # a registration cancelled meanwhile drops its own
                        waiter.set_result(PreparedChannel(channel, created))
        finally:  # cancelled (shutting down): nobody may wait forever
            for waiter in [*batch, *self._to_prepare]:
                if not waiter.done():
                    waiter.cancel()

    def store(
        self, session: Session, registration_id: str, prepared: PreparedChannel
    ) -> GridChannel:
        """Add a prepared channel and its hello to the outbox, in the caller's transaction."""
        now = self._clock()
        row = GridChannel(
            registration_id=registration_id,
            root=prepared.channel.root,
            side_key=prepared.channel.side_key,
            state_json=json.dumps(prepared.hello.state),
            next_position=1,
            active=True,
            created_at=now,
        )
        session.add(row)
        session.flush()
        session.add(_outbox_row(row.id, 0, "hello", prepared.hello, payload_to_json(Hello()), now))
        self._queued.set()
        return row

    async def append(
        self,
        channel_id: int,
        message: Mapping[str, Any],
        *,
        kind: str,
        also: Callable[[Session], None] | None = None,
        close: bool = False,
    ) -> int:
        """Create the next message of a channel and store it in the outbox.

        ``also(session)`` runs in the same transaction (for example marking the
        bills a payment-request covers). ``close`` deactivates the channel after
        this message (goodbye). Returns the message's position.
        """
        lock = self._locks.setdefault(channel_id, asyncio.Lock())
        async with lock:
            for _attempt in range(5):
                state, position = await self._db.run_read(
                    lambda session: _channel_state(session, channel_id)
                )
                loop = asyncio.get_running_loop()
                created = await loop.run_in_executor(
                    self._cpu, self._writer.create_message, state, dict(message)
                )

                def commit(
                    session: Session, created: CreatedMessage = created, position: int = position
                ) -> int:
                    changed = session.execute(
                        update(GridChannel)
                        .where(GridChannel.id == channel_id, GridChannel.next_position == position)
                        .values(
                            state_json=json.dumps(created.state),
                            next_position=position + 1,
                            active=not close,
                        )
                    ).rowcount
                    if changed != 1:
                        raise ChannelConflictError(f"grid channel {channel_id} moved on")
                    session.add(
                        _outbox_row(channel_id, position, kind, created, message, self._clock())
                    )
                    if also is not None:
                        also(session)
                    return position

                try:
                    stored = await self._db.run_write(commit)
                except ChannelConflictError:
                    _LOGGER.warning("grid channel %s changed concurrently; retrying", channel_id)
                    continue
                self._queued.set()
                return stored
            raise ChannelConflictError(f"grid channel {channel_id} keeps changing concurrently")

    async def append_many(
        self,
        appends: Sequence[Append],
        *,
        also: Callable[[Session, list[Append]], None] | None = None,
    ) -> list[int | None]:
        """:meth:`append` for many channels: one batched MAM creation, one transaction.

        Every channel's new state and outbox message are committed together (all
        of them or none), each channel guarded against concurrent writers by its
        position as in :meth:`append`; a channel another writer moved gets its
        message created again from the new state. ``also(session, stored)`` runs
        in the same transaction with the appends that were stored. A channel that
        is missing or closed is skipped: its result is ``None``.
        """
        ids = [item.channel_id for item in appends]
        if len(set(ids)) != len(ids):
            raise ValueError("append_many takes each channel at most once")
        async with contextlib.AsyncExitStack() as stack:
            for channel_id in sorted(ids):  # one order for everyone: no lock cycles
                await stack.enter_async_context(self._locks.setdefault(channel_id, asyncio.Lock()))
            states = await self._db.run_read(functools.partial(_channel_states, ids=ids))
            skipped = [channel_id for channel_id in ids if channel_id not in states]
            if skipped:
                _LOGGER.warning("grid channels %s are closed or gone; skipped", skipped)
            live = [item for item in appends if item.channel_id in states]
            created: dict[int, CreatedMessage] = {}
            stale = live
            for _attempt in range(5):
                made = await self._batched(
                    self._writer.create_messages,
                    [(states[item.channel_id][0], dict(item.message)) for item in stale],
                )
                created.update(
                    (item.channel_id, message) for item, message in zip(stale, made, strict=True)
                )
                try:
                    await self._db.run_write(
                        functools.partial(
                            self._commit_many,
                            appends=live,
                            states=states,
                            created=created,
                            also=also,
                        )
                    )
                except _ChannelsMovedError as moved:
                    fresh = await self._db.run_read(
                        functools.partial(_channel_states, ids=sorted(moved.ids))
                    )
                    # A channel closed meanwhile is skipped like one closed before; one
                    # whose position is still the same did not move, its message stands.
                    live = [
                        item
                        for item in live
                        if item.channel_id not in moved.ids or item.channel_id in fresh
                    ]
                    stale = [
                        item
                        for item in live
                        if item.channel_id in fresh
                        and fresh[item.channel_id][1] != states[item.channel_id][1]
                    ]
                    _LOGGER.warning(
                        "grid channels %s changed concurrently; retrying",
                        sorted(item.channel_id for item in stale) or sorted(moved.ids - set(fresh)),
                    )
                    states.update(fresh)
                    continue
                stored = {item.channel_id for item in live}
                self._queued.set()
                return [
                    states[channel_id][1] if channel_id in stored else None for channel_id in ids
                ]
            raise ChannelConflictError("grid channels keep changing concurrently")
        raise AssertionError("unreachable")  # pragma: no cover  (mypy: the stack may swallow)

    def _commit_many(
        self,
        session: Session,
        appends: list[Append],
        states: dict[int, tuple[dict[str, Any], int]],
        created: dict[int, CreatedMessage],
        also: Callable[[Session, list[Append]], None] | None,
    ) -> None:
        if not appends:  # every channel closed or gone: nothing to write but ``also``
            if also is not None:
                also(session, appends)
            return
        now = self._clock()
        # One executemany for the channels and one for the outbox (not a statement per
        # message): each channel's update matches its row only at the position its
        # message was created from, so a total short of the batch means some moved.
        advance = [
            {
                "b_id": item.channel_id,
                "b_position": states[item.channel_id][1],
                "b_state": json.dumps(created[item.channel_id].state),
                "b_next": states[item.channel_id][1] + 1,
                "b_active": not item.close,
            }
            for item in appends
        ]
        changed = session.execute(_ADVANCE_CHANNEL, advance).rowcount
        if changed != len(appends):
            raise _ChannelsMovedError({item.channel_id for item in appends})  # rolls back
        session.execute(
            insert(_OUTBOX),
            [
                _outbox_values(
                    item.channel_id,
                    states[item.channel_id][1],
                    item.kind,
                    created[item.channel_id],
                    item.message,
                    now,
                )
                for item in appends
            ],
        )
        if also is not None:
            also(session, appends)

    async def publish_pending(self, limit: int = 100) -> int:
        """Publish up to ``limit`` unsent outbox messages; returns how many were sent.

        Messages go to the node :data:`PUBLISH_GROUP` at a time (one attachToTangle,
        storeTransactions and broadcastTransactions for the group), and up to
        ``publish_concurrency`` groups at once, so building bundles, proof of work
        and the node's storage overlap. A channel's messages stay in one group
        sequence, in order. Each group is marked sent as soon as the node stored
        it, so a crash repeats at most the groups under way. Stops starting new
        groups at the first failure to reach the node (the rest waits for the next
        round); a message that fails otherwise is retried in later rounds.
        """
        sent, _failed = await self._publish_round(limit)
        return sent

    async def publish_all(
        self,
        producing: asyncio.Future[Any] | None = None,
        *,
        stopping: asyncio.Event | None = None,
        window: int = PUBLISH_WINDOW,
    ) -> int:
        """Publish the outbox until it is empty, also what is queued meanwhile while
        ``producing`` (a task creating messages alongside, such as a slot's payment
        requests) runs. Rounds read ``window`` messages each, so proof of work never
        waits for the whole backlog to be created. Returns how many were sent; ends
        early at a failure to reach the node (the rest waits for the next call) or
        when ``stopping`` is set."""
        total = 0
        while stopping is None or not stopping.is_set():
            self._queued.clear()
            sent, failed = await self._publish_round(window)
            total += sent
            if failed:
                break
            if sent == window:
                continue
            if producing is None or producing.done():
                if self._queued.is_set():
                    continue  # queued while this round ran: one more
                break
            queued = asyncio.ensure_future(self._queued.wait())
            try:
                await asyncio.wait({queued, producing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                queued.cancel()
        return total

    async def _publish_round(self, limit: int) -> tuple[int, bool]:
        """One round of :meth:`publish_pending`: (messages sent, whether the node failed)."""
        async with self._publish_lock:
            rows = await self._db.run_read(lambda session: _unsent(session, limit))
            queue: collections.deque[list[tuple[int, MamMessage]]] = collections.deque(
                _groups(rows)
            )
            sent = 0
            failed: list[tuple[int, str]] = []

            async def worker() -> None:
                nonlocal sent
                while not failed and queue:
                    chunk = queue.popleft()
                    for first in range(0, len(chunk), PUBLISH_GROUP):
                        group = chunk[first : first + PUBLISH_GROUP]
                        if failed:
                            return
                        try:
                            await self._writer.publish_many([message for _, message in group])
                        except TangleUnavailableError as err:
                            failed.extend((row_id, str(err)) for row_id, _ in group)
                            return
                        # Recorded alongside: the next group goes on while this one's
                        # mark waits for the database (a batch being created holds it).
                        ids = [row_id for row_id, _ in group]
                        records.append(
                            asyncio.ensure_future(
                                self._db.run_write(
                                    functools.partial(
                                        _record, sent=ids, failed=[], now=self._clock()
                                    )
                                )
                            )
                        )
                        sent += len(ids)

            workers = min(self._publish_concurrency, len(queue))
            records: list[asyncio.Future[None]] = []
            try:
                await asyncio.gather(*(worker() for _ in range(workers)))
            finally:
                # Marked even when a worker raised: what went out is not sent again.
                await asyncio.gather(*records)
                if failed:
                    await self._db.run_write(
                        functools.partial(_record, sent=[], failed=failed, now=self._clock())
                    )
            if failed:
                _LOGGER.warning("publishing to the Tangle failed, will retry: %s", failed[0][1])
            return sent, bool(failed)


def _groups(
    rows: list[tuple[int, int, MamMessage]],
) -> list[list[tuple[int, MamMessage]]]:
    """Whole channels (ordered by channel and position) in chunks of about
    :data:`PUBLISH_GROUP` messages; a channel is never split across chunks."""
    chunks: list[list[tuple[int, MamMessage]]] = []
    current: list[tuple[int, MamMessage]] = []
    previous: int | None = None
    for row_id, channel_id, message in rows:
        if channel_id != previous and len(current) >= PUBLISH_GROUP:
            chunks.append(current)
            current = []
        current.append((row_id, message))
        previous = channel_id
    if current:
        chunks.append(current)
    return chunks


def _outbox_row(
    channel_id: int,
    position: int,
    kind: str,
    created: CreatedMessage,
    message: Mapping[str, Any],
    now: int,
) -> OutboxMessage:
    return OutboxMessage(**_outbox_values(channel_id, position, kind, created, message, now))


def _outbox_values(
    channel_id: int,
    position: int,
    kind: str,
    created: CreatedMessage,
    message: Mapping[str, Any],
    now: int,
) -> dict[str, Any]:
    return {
        "channel_id": channel_id,
        "position": position,
        "kind": kind,
        "root": created.message.root,
        "address": created.message.address,
        "next_root": created.message.next_root,
        "payload": created.message.payload,
        "message_json": json.dumps(dict(message), separators=(",", ":")),
        "created_at": now,
        "attempts": 0,
    }


_CHANNELS = cast("Table", GridChannel.__table__)
_OUTBOX = cast("Table", OutboxMessage.__table__)
_ADVANCE_CHANNEL = (
    update(_CHANNELS)
    .where(
        _CHANNELS.c.id == bindparam("b_id"),
        _CHANNELS.c.next_position == bindparam("b_position"),
    )
    .values(
        state_json=bindparam("b_state"),
        next_position=bindparam("b_next"),
        active=bindparam("b_active"),
    )
)
"""A channel's new state after a message, guarded by the position it was created at."""


def _channel_states(session: Session, ids: Sequence[int]) -> dict[int, tuple[dict[str, Any], int]]:
    """State and position of each active channel among ``ids`` (missing or closed ones
    are left out), read in chunks that stay below any database's parameter limit."""
    found: dict[int, tuple[dict[str, Any], int]] = {}
    for first in range(0, len(ids), _IN_CHUNK):
        rows = session.execute(
            select(GridChannel.id, GridChannel.state_json, GridChannel.next_position).where(
                GridChannel.id.in_(ids[first : first + _IN_CHUNK]), GridChannel.active
            )
        ).all()
        for channel_id, state_json, position in rows:
            state = json.loads(state_json)
            if not isinstance(state, dict):
                raise ValueError(f"grid channel {channel_id} has a corrupt state")
            found[int(channel_id)] = (state, int(position))
    return found


def _channel_state(session: Session, channel_id: int) -> tuple[dict[str, Any], int]:
    row = session.get(GridChannel, channel_id)
    if row is None:
        raise LookupError(f"grid channel {channel_id} does not exist")
    if not row.active:
        raise ChannelConflictError(f"grid channel {channel_id} is closed")
    state = json.loads(row.state_json)
    if not isinstance(state, dict):
        raise ValueError(f"grid channel {channel_id} has a corrupt state")
    return state, row.next_position


def _unsent(session: Session, limit: int) -> list[tuple[int, int, MamMessage]]:
    rows = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.sent_at.is_(None))
        .order_by(OutboxMessage.channel_id, OutboxMessage.position)
        .limit(limit)
    ).all()
    return [
        (
            row.id,
            row.channel_id,
            MamMessage(
                payload=row.payload, root=row.root, address=row.address, next_root=row.next_root
            ),
        )
        for row in rows
    ]


def _record(session: Session, sent: list[int], failed: list[tuple[int, str]], now: int) -> None:
    """Mark what was published (in chunks of ids) and count the failed attempts."""
    for first in range(0, len(sent), _IN_CHUNK):
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(sent[first : first + _IN_CHUNK]))
            .values(sent_at=now, attempts=OutboxMessage.attempts + 1, last_error=None)
        )
    for row_id, error in failed:
        _failed(session, row_id, error)


def _failed(session: Session, row_id: int, error: str) -> None:
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id)
        .values(attempts=OutboxMessage.attempts + 1, last_error=error[:2000])
    )
