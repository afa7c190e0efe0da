"""A durable, ordered outbound queue of MAM messages.

A message is created at its channel position when it is queued (the caller
saves the advanced channel and the queue in one write), then attached in queue
order; draining stops at the first node failure so a channel is never attached
out of order and nothing is sent twice by this queue. The Home Assistant
integration and the grid's simulated households share this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .mam import MamChannel, MamMessage, create_message

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from .client import IriClient

type Send = Callable[[MamMessage], Awaitable[object]]
"""Attaches one created message (e.g. :func:`mam_sender`); raises NodeError on failure."""


@dataclass(slots=True)
class QueuedMessage:
    """A MAM message created at its channel position and waiting to be attached."""

    sequence: int
    kind: str
    body: dict[str, Any]
    message: MamMessage
    """The created message, as the transport attaches it."""
    created: datetime
    energy_kwh: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "sequence": self.sequence,
            "kind": self.kind,
            "body": self.body,
            "payload": self.message.payload,
            "root": self.message.root,
            "address": self.message.address,
            "next_root": self.message.next_root,
            "created": self.created.isoformat(),
            "energy_kwh": self.energy_kwh,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueuedMessage:
        """Load the stored form (KeyError, TypeError or ValueError when malformed)."""
        return cls(
            sequence=int(data["sequence"]),
            kind=str(data["kind"]),
            body=dict(data["body"]),
            message=MamMessage(
                payload=str(data["payload"]),
                root=str(data["root"]),
                address=str(data["address"]),
                next_root=str(data["next_root"]),
            ),
            created=parse_time(data["created"]),
            energy_kwh=float(data.get("energy_kwh", 0.0)),
        )


def parse_time(value: Any) -> datetime:
    """An ISO 8601 timestamp as stored by :meth:`QueuedMessage.to_dict` (naive means UTC)."""
    if not isinstance(value, str):
        raise ValueError(f"invalid timestamp {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"invalid timestamp {value!r}") from err
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def create_queued(
    channel: MamChannel,
    body: dict[str, Any],
    sequence: int,
    energy_kwh: float = 0.0,
    created: datetime | None = None,
) -> QueuedMessage:
    """Create ``body`` at the channel's next position (advancing ``channel``).

    CPU-bound (Merkle tree and signature): run it in a worker thread. Save the
    channel and the queue holding the result in one write before attaching it,
    or a restart would create a different message at the same position.
    """
    return QueuedMessage(
        sequence=sequence,
        kind=str(body.get("command", "output")),
        body=body,
        message=create_message(channel, body),
        created=created if created is not None else datetime.now(UTC),
        energy_kwh=energy_kwh,
    )


async def drain(
    queue: list[QueuedMessage],
    send: Send,
    on_sent: Callable[[QueuedMessage], Awaitable[None]],
) -> int:
    """Attach ``queue`` in order, removing each message once attached; returns how many.

    ``on_sent`` runs after each removal (save there). The first failure of
    ``send`` propagates with the failed message still first in the queue. A
    crash between attaching and saving attaches that message again on the next
    drain: a second copy of the same message at the same channel position, which
    a follower reads as one message.
    """
    sent = 0
    while queue:
        queued = queue[0]
        await send(queued.message)
        queue.pop(0)
        await on_sent(queued)
        sent += 1
    return sent


def mam_sender(
    client: IriClient, *, tag: str = "", depth: int = 3, min_weight_magnitude: int = 9
) -> Send:
    """A :data:`Send` attaching through the node with :meth:`IriClient.publish_mam`."""

    async def send(message: MamMessage) -> object:
        return await client.publish_mam(
            message, tag=tag, depth=depth, min_weight_magnitude=min_weight_magnitude
        )

    return send
