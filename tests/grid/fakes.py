"""Test doubles for the Tangle side of the grid's services (no MAM, no node).

They record what the services ask for and answer from a table the test fills, so
the HTTP API and the database logic can be tested quickly and deterministically;
the end-to-end tests use the real node and MAM instead.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import TYPE_CHECKING, Any

from p2p_energy_protocol.mam import ChannelEntry, MamMessage
from p2p_energy_protocol.trinary import text_to_trytes

from grid_server.grid.channels import CreatedMessage, NewChannel, TangleUnavailableError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from p2p_energy_protocol.mam import MamMode

ALPHABET = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def random_trytes(rng: random.Random, length: int = 81) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(length))


class FakeStream:
    """One channel: its roots in order and the messages published so far."""

    def __init__(self, rng: random.Random, mode: MamMode, side_key: str | None) -> None:
        self.rng = rng
        self.mode = mode
        self.side_key = side_key
        self.roots = [random_trytes(rng)]
        self.messages: list[Any] = []

    @property
    def root(self) -> str:
        return self.roots[0]

    def publish(self, *messages: Any) -> None:
        for data in messages:
            self.messages.append(data)
            self.roots.append(random_trytes(self.rng))

    def entries_from(self, root: str) -> list[ChannelEntry]:
        start = self.roots.index(root)
        return [
            ChannelEntry(self.roots[i], self.roots[i + 1], message_trytes(self.messages[i]))
            for i in range(start, len(self.messages))
        ]


def message_trytes(data: Any) -> str:
    """``data`` as JSON message trytes; ``None`` stands for a message that is not JSON."""
    return text_to_trytes("not JSON" if data is None else json.dumps(data))


class FakeChannels:
    """Channels keyed by any of their roots, mode and side key."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.streams: list[FakeStream] = []
        self.published: list[MamMessage] = []
        self.available = True
        self.reads: list[str] = []
        self.prechecks = 0
        self.opened: list[int] = []
        """Channels per :meth:`open_channels` call."""
        self._ids = itertools.count()

    def stream(
        self, messages: list[Any], *, mode: MamMode = "restricted", side_key: str | None = None
    ) -> FakeStream:
        side = side_key if side_key is not None or mode != "restricted" else random_trytes(self.rng)
        stream = FakeStream(self.rng, mode, side)
        stream.publish(*messages)
        self.streams.append(stream)
        return stream

    def add_channel(
        self, messages: list[Any], *, mode: MamMode = "restricted", side_key: str | None = None
    ) -> tuple[str, str | None]:
        """A channel holding ``messages``; returns (root, side key)."""
        stream = self.stream(messages, mode=mode, side_key=side_key)
        return stream.root, stream.side_key

    async def read_channel(
        self, root: str, mode: MamMode, side_key: str | None, limit: int | None
    ) -> list[ChannelEntry]:
        if not self.available:
            raise TangleUnavailableError("node down (fake)")
        self.reads.append(root)
        for stream in self.streams:
            if root in stream.roots and (stream.mode, stream.side_key) == (mode, side_key):
                entries = stream.entries_from(root)
                return entries if limit is None else entries[:limit]
        return []

    async def roots_with_messages(self, channels: list[tuple[str, MamMode]]) -> set[str]:
        if not self.available:
            raise TangleUnavailableError("node down (fake)")
        self.prechecks += 1
        return {
            root
            for root, mode in channels
            for stream in self.streams
            if stream.mode == mode and root in stream.roots[:-1]
        }

    def new_channel(self) -> NewChannel:
        number = next(self._ids)
        root = random_trytes(self.rng)
        side_key = random_trytes(self.rng)
        return NewChannel(root, side_key, {"channel": number, "start": 0, "root": root})

    def create_message(
        self, state: Mapping[str, Any], message: Mapping[str, Any]
    ) -> CreatedMessage:
        start = int(state["start"])
        root = str(state["root"])
        next_root = random_trytes(self.rng)
        payload = f"{state['channel']}:{start}:{sorted(message.items())}"
        return CreatedMessage(
            {**state, "start": start + 1, "root": next_root},
            MamMessage(payload=payload, root=root, address="A" * 81, next_root=next_root),
        )

    def create_messages(
        self, items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> list[CreatedMessage]:
        return [self.create_message(state, message) for state, message in items]

    def open_channels(
        self, first_messages: Sequence[Mapping[str, Any]]
    ) -> list[tuple[NewChannel, CreatedMessage]]:
        self.opened.append(len(first_messages))
        channels = [self.new_channel() for _ in first_messages]
        return [
            (channel, self.create_message(channel.state, message))
            for channel, message in zip(channels, first_messages, strict=True)
        ]

    async def publish(self, message: MamMessage) -> None:
        if not self.available:
            raise TangleUnavailableError("node down (fake)")
        self.published.append(message)

    async def publish_many(self, messages: Sequence[MamMessage]) -> None:
        for message in messages:
            await self.publish(message)


class ManualClock:
    """A clock the test moves by hand (Unix milliseconds)."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)
