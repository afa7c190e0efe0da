"""Following the registered producer and consumer channels through the grid's node.

Each active channel is read from the root after the last message stored, in
rounds. Every message takes the next position of its channel; readings are
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
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from p2p_energy_protocol.errors import PayloadError
from p2p_energy_protocol.payloads import (
    ConsumerUsage,
    Goodbye,
    Hello,
    ProducerOutput,
    parse_consumer_message,
    parse_producer_message,
)
from sqlalchemy import Table, select, update

from .channels import TangleUnavailableError
from .db.models import FollowedChannel, Reading
from .db.upsert import insert_ignoring_duplicates
from .units import kwh_to_mwh, price_to_micro

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .channels import ChannelEntry, ChannelReader, MamMode
    from .clock import Clock
    from .config import GridConfig
    from .db.engine import Database

_LOGGER = logging.getLogger(__name__)
READINGS: Table = Reading.__table__  # type: ignore[assignment]


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
        reader: ChannelReader,
        clock: Clock,
        config: GridConfig,
        *,
        channels_per_round: int = 500,
        messages_per_read: int = 50,
        concurrency: int = 4,
    ) -> None:
        self._db = db
        self._reader = reader
        self._clock = clock
        self._config = config
        self._channels_per_round = channels_per_round
        self._messages_per_read = messages_per_read
        self._concurrency = concurrency

    async def follow_once(self) -> FollowStats:
        """One round over the channels that are due; returns what happened."""
        now = self._clock()
        due = await self._db.run_read(lambda session: self._due(session, now))
        stats = FollowStats(backlog=len(due) >= self._channels_per_round)
        if not due:
            return stats
        try:
            active = await self._reader.roots_with_messages(
                [(channel.next_root, channel.mode) for channel in due]
            )
        except TangleUnavailableError as err:
            stats.errors.append(str(err))
            _LOGGER.warning("cannot follow channels, the node is unavailable: %s", err)
            return stats
        idle = [channel.id for channel in due if channel.next_root not in active]
        stats.idle = len(idle)
        if idle:
            await self._db.run_write(lambda session: self._postpone(session, idle))
        semaphore = asyncio.Semaphore(self._concurrency)
        node_down = asyncio.Event()

        async def follow(channel: _Due) -> None:
            async with semaphore:
                if node_down.is_set():
                    return
                try:
                    await self._follow_channel(channel, stats)
                except TangleUnavailableError as err:
                    node_down.set()
                    stats.errors.append(str(err))
                    _LOGGER.warning("cannot follow channels, the node is unavailable: %s", err)

        await asyncio.gather(*(follow(channel) for channel in due if channel.next_root in active))
        return stats

    def _postpone(self, session: Session, channel_ids: list[int]) -> None:
        """Nothing new on these channels: look again after the follow interval."""
        now = self._clock()
        session.execute(
            update(FollowedChannel)
            .where(FollowedChannel.id.in_(channel_ids))
            .values(last_read_at=now, next_read_at=now + int(self._config.follow_interval * 1000))
        )

    def _due(self, session: Session, now: int) -> list[_Due]:
        rows = session.execute(
            select(
                FollowedChannel.id,
                FollowedChannel.registration_id,
                FollowedChannel.role,
                FollowedChannel.mode,
                FollowedChannel.side_key,
                FollowedChannel.next_root,
                FollowedChannel.next_position,
            )
            .where(FollowedChannel.active, FollowedChannel.next_read_at <= now)
            .order_by(FollowedChannel.next_read_at, FollowedChannel.id)
            .limit(self._channels_per_round)
        ).all()
        return [_Due(*row) for row in rows]

    async def _follow_channel(self, channel: _Due, stats: FollowStats) -> None:
        entries = await self._reader.read_channel(
            channel.next_root, channel.mode, channel.side_key, self._messages_per_read
        )
        stats.channels += 1
        batch = self._interpret(channel, entries)
        if len(entries) >= self._messages_per_read and not batch.goodbye:
            stats.backlog = True
        stats.messages += batch.consumed
        stats.skipped += batch.skipped
        stored = await self._db.run_write(lambda session: self._store(session, channel, batch))
        stats.readings += stored
        if batch.goodbye:
            stats.closed += 1

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
        destination = None
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
            "energy_mwh": kwh_to_mwh(energy),
            "price_micro": price_micro,
            "payment_id_or_address": destination,
            "received_at": now,
            "settlement_id": None,
        }

    def _store(self, session: Session, channel: _Due, batch: _Batch) -> int:
        now = self._clock()
        # A channel with more messages waiting is read again in the next round.
        truncated = batch.consumed >= self._messages_per_read and not batch.goodbye
        values: dict[str, Any] = {
            "last_read_at": now,
            "next_read_at": now if truncated else now + int(self._config.follow_interval * 1000),
            "last_error": None,
        }
        if batch.consumed:
            values.update(
                next_root=batch.next_root,
                next_position=channel.next_position + batch.consumed,
                skipped_messages=FollowedChannel.skipped_messages + batch.skipped,
            )
        if batch.hello:
            values["hello_seen"] = True
        if batch.goodbye:
            values.update(active=False, closed_reason="goodbye")
        # Only the process that still sees the old position moves the channel on.
        moved = session.execute(
            update(FollowedChannel)
            .where(
                FollowedChannel.id == channel.id,
                FollowedChannel.next_position == channel.next_position,
                FollowedChannel.active,
            )
            .values(**values)
        ).rowcount
        if moved != 1 or not batch.readings:
            return 0
        return insert_ignoring_duplicates(
            session, READINGS, batch.readings, ("channel_id", "position")
        )
