"""Following the registered producer and consumer channels through the grid's node.

Each active channel is read from the root after the last message stored, in
rounds. A round reads all due channels together: with :class:`BulkMamReader`
one findTransactions per 1,000 addresses and one getTrytes per 1,000 hashes for
each step along the channels, one batch parse, and one database transaction, so
10,000 channels cost tens of node requests rather than tens of thousands.
Every message takes the next position of its channel; readings are
stored with a unique (channel, position) so a message is stored exactly once
even when two rounds (or two grid processes) read it. ``hello`` marks the channel
as verified, ``goodbye`` closes it. A message that is not a valid reading
(garbage JSON, a wrong command, implausible numbers) is skipped and logged and
the channel moves past it; bundles at a channel address that are not MAM
messages of that channel never reach this module (the node client skips them),
so spam cannot block a channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from p2p_energy_protocol.client import EMPTY_TRYTES
from p2p_energy_protocol.errors import NodeError, PayloadError
from p2p_energy_protocol.mam import ChannelEntry, ChannelStart, walk_channels
from p2p_energy_protocol.payloads import (
    ConsumerUsage,
    Goodbye,
    Hello,
    ProducerOutput,
    parse_consumer_message,
    parse_producer_message,
)
from p2p_energy_protocol.transaction import Transaction, transactions_from_trytes
from sqlalchemy import Table, bindparam, select

from .channels import TangleUnavailableError
from .db.models import ExpectedOutputAnnouncement, FollowedChannel, Reading
from .db.upsert import insert_ignoring_duplicates
from .units import kwh_to_milliwh, price_to_micro

if TYPE_CHECKING:
    from collections.abc import Sequence

    from p2p_energy_protocol.mam import MamMode
    from sqlalchemy.orm import Session

    from .channels import ChannelReader
    from .clock import Clock
    from .config import GridConfig
    from .db.engine import Database

_LOGGER = logging.getLogger(__name__)
READINGS: Table = Reading.__table__  # type: ignore[assignment]
CHANNELS: Table = FollowedChannel.__table__  # type: ignore[assignment]
ANNOUNCEMENTS: Table = ExpectedOutputAnnouncement.__table__  # type: ignore[assignment]
ID_CHUNK = 500
"""Channel ids per IN list (well under SQLite's bound-parameter limit)."""


@runtime_checkable
class BulkChannelReader(Protocol):
    async def read_channels(
        self, channels: Sequence[ChannelStart], limit: int
    ) -> list[list[ChannelEntry]]:
        """Messages of every channel from its root on, in order, at most ``limit`` each;
        raises TangleUnavailableError."""


class TrytesLookup(Protocol):
    """What bulk reading needs of the node client (``IriClient`` provides it)."""

    async def find_transactions(self, *, addresses: Sequence[str] | None = None) -> list[str]: ...

    async def get_trytes(self, hashes: Sequence[str]) -> list[str]: ...


class BulkMamReader:
    """Reads many channels in step (:func:`walk_channels`): each step asks the node
    about every channel's next address at once, then parses all candidate payloads
    in batches.

    Bundles at an address that do not verify for the channel (spam, garbage,
    another channel's message) are skipped, as :meth:`IriClient.fetch_mam` does.
    The CPU work (addresses, decoding transactions, MAM parsing) runs in the
    default executor so the grid's API keeps answering during a large round.
    """

    def __init__(self, node: TrytesLookup) -> None:
        self._node = node

    async def read_channels(
        self, channels: Sequence[ChannelStart], limit: int
    ) -> list[list[ChannelEntry]]:
        return await walk_channels(self._transactions_at, channels, limit, offload=True)

    async def _transactions_at(self, addresses: list[str]) -> list[Transaction]:
        """The transactions at ``addresses`` (the client batches requests within the
        node's list limits), decoded off the event loop."""
        try:
            hashes = await self._node.find_transactions(addresses=addresses)
            trytes = await self._node.get_trytes(hashes) if hashes else []
        except NodeError as err:
            raise TangleUnavailableError(str(err)) from err
        return await asyncio.get_running_loop().run_in_executor(None, _transactions, trytes, hashes)


def _transactions(trytes: list[str], hashes: list[str]) -> list[Transaction]:
    # Bundle assembly needs every hash: the node's answer names them (getTrytes answers
    # hash by hash), so they are not computed again (Curl over 8,019 trits each, ~60 %
    # of decoding a step). A MAM message verifies by its signature, so a wrong hash
    # only keeps its bundle from assembling, as a node withholding it would.
    if len(trytes) != len(hashes):
        raise TangleUnavailableError(
            f"getTrytes answered {len(trytes)} transactions for {len(hashes)} hashes"
        )
    known = [(item, h) for item, h in zip(trytes, hashes, strict=True) if item != EMPTY_TRYTES]
    if not known:  # all unknown to the node
        return []
    return transactions_from_trytes([item for item, _ in known], [h for _, h in known])


class _OneByOne:
    """A reader without bulk reads: skip channels with nothing new, read the rest
    one by one (a few at a time)."""

    def __init__(self, reader: ChannelReader, concurrency: int) -> None:
        self._reader = reader
        self._concurrency = concurrency

    async def read_channels(
        self, channels: Sequence[ChannelStart], limit: int
    ) -> list[list[ChannelEntry]]:
        active = await self._reader.roots_with_messages(
            [(root, mode) for root, mode, _ in channels]
        )
        semaphore = asyncio.Semaphore(self._concurrency)

        async def read(channel: ChannelStart) -> list[ChannelEntry]:
            root, mode, side_key = channel
            if root not in active:
                return []
            async with semaphore:
                return await self._reader.read_channel(root, mode, side_key, limit)

        return list(await asyncio.gather(*(read(channel) for channel in channels)))


@dataclass(frozen=True, slots=True)
class _Due:
    id: int
    registration_id: str
    role: str
    mode: MamMode
    side_key: str | None
    next_root: str
    next_position: int


@dataclass
class FollowStats:
    channels: int = 0
    idle: int = 0
    messages: int = 0
    readings: int = 0
    skipped: int = 0
    closed: int = 0
    errors: list[str] = field(default_factory=list)
    backlog: bool = False
    """More was due than one round takes (channels or messages): not caught up yet."""

    @property
    def caught_up(self) -> bool:
        return not self.errors and not self.backlog


@dataclass
class _Batch:
    readings: list[dict[str, Any]] = field(default_factory=list)
    announcements: list[dict[str, Any]] = field(default_factory=list)
    """Producers' expected output (the price forecast's input), one per message."""
    hello: bool = False
    goodbye: bool = False
    skipped: int = 0
    consumed: int = 0
    next_root: str = ""


class ChannelFollower:
    """Reads new messages of every due channel and stores them."""

    def __init__(
        self,
        db: Database,
        reader: ChannelReader | BulkChannelReader,
        clock: Clock,
        config: GridConfig,
        *,
        channels_per_round: int = 10_000,
        messages_per_read: int = 50,
        concurrency: int = 4,
    ) -> None:
        self._db = db
        self._reader: BulkChannelReader = (
            reader if isinstance(reader, BulkChannelReader) else _OneByOne(reader, concurrency)
        )
        self._clock = clock
        self._config = config
        self._channels_per_round = channels_per_round
        self._messages_per_read = messages_per_read

    async def follow_once(self) -> FollowStats:
        """One round over the channels that are due; returns what happened."""
        now = self._clock()
        due = await self._db.run_read(lambda session: self._due(session, now))
        # One row beyond the round's share tells whether more was due than it takes.
        stats = FollowStats(backlog=len(due) > self._channels_per_round)
        del due[self._channels_per_round :]
        if not due:
            return stats
        try:
            read = await self._reader.read_channels(
                [(channel.next_root, channel.mode, channel.side_key) for channel in due],
                self._messages_per_read,
            )
        except TangleUnavailableError as err:
            stats.errors.append(str(err))
            _LOGGER.warning("cannot follow channels, the node is unavailable: %s", err)
            return stats
        idle = [channel.id for channel, entries in zip(due, read, strict=True) if not entries]
        stats.idle = len(idle)
        if idle:
            await self._db.run_write(lambda session: self._postpone(session, idle))
        batches = [
            (channel, self._interpret(channel, entries))
            for channel, entries in zip(due, read, strict=True)
            if entries
        ]
        for _channel, batch in batches:
            stats.channels += 1
            stats.messages += batch.consumed
            stats.skipped += batch.skipped
            stats.closed += batch.goodbye
            if batch.consumed >= self._messages_per_read and not batch.goodbye:
                stats.backlog = True
        if batches:
            stats.readings = await self._db.run_write(lambda session: self._store(session, batches))
        return stats

    def _postpone(self, session: Session, channel_ids: list[int]) -> None:
        """Nothing new on these channels: look again after the follow interval."""
        now = self._clock()
        # Core statements on the table: the ORM's bulk update and row loading cost
        # several times more per channel, every idle round.
        for first in range(0, len(channel_ids), ID_CHUNK):
            session.execute(
                CHANNELS.update()
                .where(CHANNELS.c.id.in_(channel_ids[first : first + ID_CHUNK]))
                .values(
                    last_read_at=now, next_read_at=now + int(self._config.follow_interval * 1000)
                )
            )

    def _due(self, session: Session, now: int) -> list[_Due]:
        """The due channels, oldest first: one more than a round takes if there are more."""
        rows = session.execute(
            select(
                CHANNELS.c.id,
                CHANNELS.c.registration_id,
                CHANNELS.c.role,
                CHANNELS.c.mode,
                CHANNELS.c.side_key,
                CHANNELS.c.next_root,
                CHANNELS.c.next_position,
            )
            .where(CHANNELS.c.active, CHANNELS.c.next_read_at <= now)
            .order_by(CHANNELS.c.next_read_at, CHANNELS.c.id)
            .limit(self._channels_per_round + 1)
        ).all()
        return [_Due(*row) for row in rows]

    def _interpret(self, channel: _Due, entries: list[ChannelEntry]) -> _Batch:
        batch = _Batch(next_root=channel.next_root)
        now = self._clock()
        for offset, entry in enumerate(entries):
            position = channel.next_position + offset
            batch.consumed += 1
            batch.next_root = entry.next_root
            try:
                message = (
                    parse_producer_message(entry.data)
                    if channel.role == "producer"
                    else parse_consumer_message(entry.data)
                )
                if isinstance(message, Hello):
                    batch.hello = True
                elif isinstance(message, Goodbye):
                    batch.goodbye = True
                    break
                else:
                    batch.readings.append(self._reading(channel, position, entry, message, now))
                    expected = (
                        message.expected_output if isinstance(message, ProducerOutput) else None
                    )
                    if expected is not None:
                        batch.announcements.append(
                            {
                                "channel_id": channel.id,
                                "position": position,
                                "registration_id": channel.registration_id,
                                "start_time": expected.start_time,
                                "end_time": expected.end_time,
                                "step_ms": expected.step_ms,
                                "outputs_json": json.dumps(
                                    [kwh_to_milliwh(kwh) for kwh in expected.outputs]
                                ),
                                "received_at": now,
                            }
                        )
            except (PayloadError, TypeError) as err:
                batch.skipped += 1
                _LOGGER.warning(
                    "skipped message %d of channel %d (%s): %s",
                    position,
                    channel.id,
                    channel.registration_id,
                    err,
                    extra={"channel_id": channel.id, "position": position},
                )
        return batch

    def _reading(
        self,
        channel: _Due,
        position: int,
        entry: ChannelEntry,
        message: ProducerOutput | ConsumerUsage,
        now: int,
    ) -> dict[str, Any]:
        energy = message.output if isinstance(message, ProducerOutput) else message.usage
        if energy > self._config.max_reading_kwh:
            raise PayloadError(
                f"{energy} kWh exceeds the plausible {self._config.max_reading_kwh} kWh per reading"
            )
        if message.end_time > now + self._config.max_future_seconds * 1000:
            raise PayloadError(f"the period ends in the future ({message.end_time})")
        price_micro = None
        bid_micro = None
        destination = None
        bid = message.max_price if isinstance(message, ConsumerUsage) else None
        # An implausible bid is dropped, not the usage: the energy is still billed.
        if bid is not None and bid <= self._config.max_price:
            bid_micro = price_to_micro(bid)
        if isinstance(message, ProducerOutput):
            if message.producer_price is not None:
                if message.producer_price > self._config.max_price:
                    raise PayloadError(
                        f"price {message.producer_price} exceeds the plausible "
                        f"{self._config.max_price} IOTA per kWh"
                    )
                price_micro = price_to_micro(message.producer_price)
            destination = message.payment_id_or_address
        return {
            "channel_id": channel.id,
            "registration_id": channel.registration_id,
            "kind": "output" if channel.role == "producer" else "usage",
            "position": position,
            "message_root": entry.root,
            "start_time": message.start_time,
            "end_time": message.end_time,
            "energy_milliwh": kwh_to_milliwh(energy),
            "price_micro": price_micro,
            "bid_micro": bid_micro,
            "payment_id_or_address": destination,
            "received_at": now,
            "settlement_id": None,
        }

    def _store(self, session: Session, batches: list[tuple[_Due, _Batch]]) -> int:
        """Move every channel on and store its readings, in the caller's transaction."""
        now = self._clock()
        # Only channels still where this round read them (and still followed) move on:
        # another round or grid process that got there first wins.
        ids = [channel.id for channel, _ in batches]
        where: dict[int, tuple[int, bool]] = {}
        for first in range(0, len(ids), ID_CHUNK):
            where.update(
                (row[0], (row[1], bool(row[2])))
                for row in session.execute(
                    select(CHANNELS.c.id, CHANNELS.c.next_position, CHANNELS.c.active).where(
                        CHANNELS.c.id.in_(ids[first : first + ID_CHUNK])
                    )
                )
            )
        kinds: dict[tuple[bool, bool], list[dict[str, Any]]] = {}
        readings: list[dict[str, Any]] = []
        announcements: list[dict[str, Any]] = []
        for channel, batch in batches:
            if where.get(channel.id) != (channel.next_position, True):
                continue
            # A channel with more messages waiting is read again in the next round.
            truncated = batch.consumed >= self._messages_per_read and not batch.goodbye
            kinds.setdefault((batch.hello, batch.goodbye), []).append(
                {
                    "b_id": channel.id,
                    "b_expected": channel.next_position,
                    "b_now": now,
                    "b_next_read": now
                    if truncated
                    else now + int(self._config.follow_interval * 1000),
                    "b_next_root": batch.next_root,
                    "b_next_position": channel.next_position + batch.consumed,
                    "b_skipped": batch.skipped,
                }
            )
            readings.extend(batch.readings)
            announcements.extend(batch.announcements)
        for (hello, goodbye), rows in kinds.items():
            values: dict[str, Any] = {
                "last_read_at": bindparam("b_now"),
                "next_read_at": bindparam("b_next_read"),
                "last_error": None,
                "next_root": bindparam("b_next_root"),
                "next_position": bindparam("b_next_position"),
                "skipped_messages": CHANNELS.c.skipped_messages + bindparam("b_skipped"),
            }
            if hello:
                values["hello_seen"] = True
            if goodbye:
                values.update(active=False, closed_reason="goodbye")
            # The guard repeats the check above for a concurrent writer (PostgreSQL).
            session.execute(
                CHANNELS.update()
                .where(
                    CHANNELS.c.id == bindparam("b_id"),
                    CHANNELS.c.next_position == bindparam("b_expected"),
                    CHANNELS.c.active,
                )
                .values(**values),
                rows,
            )
        insert_ignoring_duplicates(
            session, ANNOUNCEMENTS, announcements, ("channel_id", "position")
        )
        return insert_ignoring_duplicates(session, READINGS, readings, ("channel_id", "position"))
