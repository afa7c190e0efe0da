"""Test doubles for the Tangle side of the grid's services (no MAM, no node).

They record what the services ask for and answer from a table the test fills, so
the HTTP API and the database logic can be tested quickly and deterministically;
the end-to-end tests use the real node and MAM instead.
"""

from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING, Any

from grid_server.grid.channels import (
    ChannelEntry,
    CreatedMessage,
    MamMode,
    NewChannel,
    OutgoingMessage,
    TangleUnavailableError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

ALPHABET = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def random_trytes(rng: random.Random, length: int = 81) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(length))


class FakeChannels:
    """Channels keyed by (root, side key): a list of (root, next_root, data) in order."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.channels: dict[tuple[str, MamMode, str | None], list[ChannelEntry]] = {}
        self.published: list[OutgoingMessage] = []
        self.available = True
        self.reads: list[str] = []
        self._ids = itertools.count()

    def add_channel(
        self, messages: list[Any], *, mode: MamMode = "restricted", side_key: str | None = None
    ) -> tuple[str, str | None]:
        """A channel holding ``messages``; returns (root, side key)."""
        side = side_key if side_key is not None or mode != "restricted" else random_trytes(self.rng)
        roots = [random_trytes(self.rng) for _ in range(len(messages) + 1)]
        entries = [ChannelEntry(roots[i], roots[i + 1], data) for i, data in enumerate(messages)]
        for i in range(len(messages)):
            self.channels[(roots[i], mode, side)] = entries[i:]
        if not messages:
            self.channels[(roots[0], mode, side)] = []
        return roots[0], side

    async def read_channel(
        self, root: str, mode: MamMode, side_key: str | None, limit: int | None
    ) -> list[ChannelEntry]:
        if not self.available:
            raise TangleUnavailableError("node down (fake)")
        self.reads.append(root)
        entries = self.channels.get((root, mode, side_key), [])
        return entries if limit is None else entries[:limit]

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
            OutgoingMessage(root, "A" * 81, next_root, payload),
        )

    async def publish(self, message: OutgoingMessage) -> None:
        if not self.available:
            raise TangleUnavailableError("node down (fake)")
        self.published.append(message)
