"""How the grid reaches MAM channels on the Tangle (interfaces and value types).

Messages in and out are the protocol library's: a :class:`ChannelEntry` read,
a :class:`MamMessage` to attach.

The services depend on these small interfaces rather than on the node client and
the MAM module directly, so the grid's logic is testable on its own;
:mod:`grid_server.grid.tangle` implements them with the protocol library's MAM
module and the async IRI client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from p2p_energy_protocol.mam import ChannelEntry, MamMessage, MamMode


class TangleUnavailableError(RuntimeError):
    """The node could not be reached or refused a request; try again later."""


@dataclass(frozen=True, slots=True)
class NewChannel:
    """A fresh channel of the grid: its registered root, side key and resumable state."""

    root: str
    side_key: str
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CreatedMessage:
    """A message just created on a grid channel and the channel's state after it."""

    state: dict[str, Any]
    message: MamMessage
    """Ready to attach to the Tangle (publishing it twice is harmless)."""


class ChannelReader(Protocol):
    async def read_channel(
        self, root: str, mode: MamMode, side_key: str | None, limit: int | None
    ) -> list[ChannelEntry]:
        """Messages from ``root`` on, in order, at most ``limit``; raises TangleUnavailableError."""

    async def roots_with_messages(self, channels: Sequence[tuple[str, MamMode]]) -> set[str]:
        """Which ``(root, mode)`` have anything at their address (one cheap batched query).

        Lets the follower skip the many channels with nothing new; raises
        TangleUnavailableError.
        """


class ChannelWriter(Protocol):
    def new_channel(self) -> NewChannel:
        """Create a restricted channel with a random seed and side key (CPU work)."""

    def create_message(
        self, state: Mapping[str, Any], message: Mapping[str, Any]
    ) -> CreatedMessage:
        """Create the next message of the channel in ``state`` (CPU work)."""

    def open_channels(
        self, first_messages: Sequence[Mapping[str, Any]]
    ) -> list[tuple[NewChannel, CreatedMessage]]:
        """:meth:`new_channel` and its first message, for many channels at once (CPU
        work, batched; the root comes from the first message, not a tree of its own)."""

    def create_messages(
        self, items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> list[CreatedMessage]:
        """:meth:`create_message` for many ``(state, message)`` at once (CPU work, batched)."""

    async def publish(self, message: MamMessage) -> None:
        """Attach a created message to the Tangle; raises TangleUnavailableError."""

    async def publish_many(self, messages: Sequence[MamMessage]) -> None:
        """Attach several messages in one node round trip (a few dozen at most)."""
