"""MAM publishing and following for simulated entities, over the real node API."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from p2p_energy_protocol.mam import channel_root, create_channel
from p2p_energy_protocol.outbox import QueuedMessage, create_queued, drain, mam_sender
from p2p_energy_protocol.trinary import random_trytes

if TYPE_CHECKING:
    from collections.abc import Mapping

    from p2p_energy_protocol.client import IriClient
    from p2p_energy_protocol.mam import ChannelEntry, MamChannel

# Messages read from one channel per poll; a producer polls every period.
_FOLLOW_LIMIT: Final = 50


@dataclass(frozen=True)
class TangleSettings:
    """How simulated entities attach their messages."""

    min_weight_magnitude: int = 9
    depth: int = 3
    tag: str = "ENERGYSIM"


class Publisher:
    """A restricted MAM channel an entity publishes to through the node.

    Messages go through the shared outbound queue (:mod:`p2p_energy_protocol.outbox`):
    one the node refused stays first in the queue and goes out before the next,
    so a node failure never leaves a hole in the channel.
    """

    def __init__(self, client: IriClient, settings: TangleSettings) -> None:
        self._send = mam_sender(
            client,
            tag=settings.tag,
            depth=settings.depth,
            min_weight_magnitude=settings.min_weight_magnitude,
        )
        self.side_key = random_trytes()
        self._channel: MamChannel = create_channel(random_trytes(), 2, "restricted", self.side_key)
        # The root to register: where the first message (hello) is attached.
        self.root = channel_root(self._channel)
        self.queue: list[QueuedMessage] = []
        self.published = 0
        self._sequence = 0
        # Creating a message advances the channel; one at a time.
        self._lock = asyncio.Lock()

    async def publish(self, data: Mapping[str, Any]) -> str:
        """Create the next message, then attach everything queued; returns its root.

        A NodeError propagates with the message (and any before it) still queued.
        """
        async with self._lock:
            # Merkle trees and signing are CPU work: keep the event loop responsive.
            queued = await asyncio.to_thread(
                create_queued, self._channel, dict(data), self._sequence
            )
            self._sequence += 1
            self.queue.append(queued)
            await drain(self.queue, self._send, self._sent)
            return queued.message.root

    async def _sent(self, _queued: QueuedMessage) -> None:
        self.published += 1


@dataclass
class Follower:
    """Reads a restricted channel from where it last stopped."""

    root: str
    side_key: str
    next_root: str = field(init=False)
    read: int = 0

    def __post_init__(self) -> None:
        self.next_root = self.root

    async def read_new(self, client: IriClient) -> list[ChannelEntry]:
        messages = await client.fetch_mam(
            self.next_root, "restricted", self.side_key, limit=_FOLLOW_LIMIT
        )
        if messages:
            self.next_root = messages[-1].next_root
            self.read += len(messages)
        return messages
