"""Sources, producers and consumers as the tests drive them: real MAM over a real node."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

from p2p_energy_protocol.mam import MamChannel, channel_root, create_channel, create_message
from p2p_energy_protocol.trinary import TRYTE_ALPHABET

if TYPE_CHECKING:
    from p2p_energy_protocol.client import IriClient

TAG = "GRIDTEST"


def random_trytes(length: int = 81) -> str:
    return "".join(secrets.choice(TRYTE_ALPHABET) for _ in range(length))


class Entity:
    """An entity with a restricted MAM channel it publishes to through the node."""

    def __init__(self, client: IriClient, registration_id: str, mwm: int) -> None:
        self.client = client
        self.registration_id = registration_id
        self.mwm = mwm
        self.side_key = random_trytes()
        self.channel: MamChannel = create_channel(random_trytes(), 2, "restricted", self.side_key)
        self.root = channel_root(self.channel)

    async def publish(self, data: dict[str, Any]) -> str:
        message = await asyncio.to_thread(create_message, self.channel, data)
        await self.client.publish_mam(message, tag=TAG, min_weight_magnitude=self.mwm)
        return message.root

    async def hello(self) -> None:
        await self.publish({"command": "hello"})


class Producer(Entity):
    async def output(self, start: int, end: int, kwh: float, price: float, address: str) -> None:
        await self.publish(
            {
                "command": "output",
                "startTime": start,
                "endTime": end,
                "output": kwh,
                "producerPrice": price,
                "paymentIdOrAddress": address,
            }
        )


class Consumer(Entity):
    async def usage(self, start: int, end: int, kwh: float) -> None:
        await self.publish({"command": "usage", "startTime": start, "endTime": end, "usage": kwh})

    async def payment_requests(self, root: str, side_key: str) -> list[dict[str, Any]]:
        """Everything the grid published on this consumer's return channel."""
        messages = await self.client.fetch_mam(root, "restricted", side_key)
        return [entry.data for entry in messages]
