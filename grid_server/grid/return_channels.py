"""The grid's own MAM channels (a consumer's return channel) and their outbox.

A message is created from the channel state stored in the database, then the new
state and the message are committed together to the outbox before anything is
sent. Publishing works through the outbox in channel order and marks what was
sent, so a crash anywhere loses nothing and resumes from the stored state;
publishing a message twice after a crash is harmless (same bundle content).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from .channels import CreatedMessage, NewChannel, OutgoingMessage, TangleUnavailableError
from .db.models import GridChannel, OutboxMessage

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from concurrent.futures import Executor

    from sqlalchemy.orm import Session

    from .channels import ChannelWriter
    from .clock import Clock
    from .db.engine import Database

_LOGGER = logging.getLogger(__name__)


class ChannelConflictError(RuntimeError):
    """Another writer advanced the channel first; create the message again."""


@dataclass(frozen=True, slots=True)
class PreparedChannel:
    """A new channel and its first (hello) message, not yet stored."""

    channel: NewChannel
    hello: CreatedMessage


class ReturnChannels:
    """Creates grid channels and messages and publishes the outbox."""

    def __init__(self, db: Database, writer: ChannelWriter, cpu: Executor, clock: Clock) -> None:
        self._db = db
        self._writer = writer
        self._cpu = cpu
        self._clock = clock
        self._locks: dict[int, asyncio.Lock] = {}
        self._publish_lock = asyncio.Lock()

    async def prepare(self) -> PreparedChannel:
        """Create a channel and its hello (CPU work off the event loop)."""
        loop = asyncio.get_running_loop()
        channel = await loop.run_in_executor(self._cpu, self._writer.new_channel)
        hello = await loop.run_in_executor(
            self._cpu, self._writer.create_message, channel.state, {"command": "hello"}
        )
        return PreparedChannel(channel, hello)

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
        session.add(_outbox_row(row.id, 0, "hello", prepared.hello, {"command": "hello"}, now))
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
                    return await self._db.run_write(commit)
                except ChannelConflictError:
                    _LOGGER.warning("grid channel %s changed concurrently; retrying", channel_id)
            raise ChannelConflictError(f"grid channel {channel_id} keeps changing concurrently")

    async def publish_pending(self, limit: int = 100) -> int:
        """Publish unsent outbox messages in channel order; returns how many were sent.

        Stops at the first failure to reach the node (the rest waits for the next
        round); a message that fails otherwise is retried in later rounds.
        """
        async with self._publish_lock:
            rows = await self._db.run_read(lambda session: _unsent(session, limit))
            sent = 0
            for row_id, outgoing in rows:
                try:
                    await self._writer.publish(outgoing)
                except TangleUnavailableError as err:
                    await self._db.run_write(
                        functools.partial(_failed, row_id=row_id, error=str(err))
                    )
                    _LOGGER.warning("publishing to the Tangle failed, will retry: %s", err)
                    break
                now = self._clock()
                await self._db.run_write(functools.partial(_sent, row_id=row_id, now=now))
                sent += 1
            return sent


def _outbox_row(
    channel_id: int,
    position: int,
    kind: str,
    created: CreatedMessage,
    message: Mapping[str, Any],
    now: int,
) -> OutboxMessage:
    return OutboxMessage(
        channel_id=channel_id,
        position=position,
        kind=kind,
        root=created.message.root,
        address=created.message.address,
        next_root=created.message.next_root,
        payload=created.message.payload,
        message_json=json.dumps(dict(message), separators=(",", ":")),
        created_at=now,
        attempts=0,
    )


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


def _unsent(session: Session, limit: int) -> list[tuple[int, OutgoingMessage]]:
    rows = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.sent_at.is_(None))
        .order_by(OutboxMessage.channel_id, OutboxMessage.position)
        .limit(limit)
    ).all()
    return [
        (row.id, OutgoingMessage(row.root, row.address, row.next_root, row.payload)) for row in rows
    ]


def _sent(session: Session, row_id: int, now: int) -> None:
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id)
        .values(sent_at=now, attempts=OutboxMessage.attempts + 1, last_error=None)
    )


def _failed(session: Session, row_id: int, error: str) -> None:
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id)
        .values(attempts=OutboxMessage.attempts + 1, last_error=error[:2000])
    )
