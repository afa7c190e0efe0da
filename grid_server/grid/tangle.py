"""The grid's channels on the Tangle: the protocol library's MAM over the node client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from p2p_energy_protocol.errors import NodeError
from p2p_energy_protocol.mam import (
    MamChannel,
    MamMessage,
    channel_address,
    channel_root,
    create_channel,
    create_message,
    create_messages,
)
from p2p_energy_protocol.trinary import random_trytes

from .channels import CreatedMessage, NewChannel, TangleUnavailableError
from .node_client import TransactionLookup

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from p2p_energy_protocol.mam import ChannelEntry, MamMode

GRID_TAG: Final = "PEERENERGYGRID"
SECURITY: Final = 2


class MamNode(TransactionLookup, Protocol):
    """The node client's MAM operations (``IriClient`` provides them)."""

    async def fetch_mam(
        self, root: str, mode: MamMode, side_key: str | None = None, limit: int | None = None
    ) -> list[ChannelEntry]: ...

    async def publish_mam(
        self,
        message: MamMessage,
        tag: str = "",
        depth: int = 3,
        min_weight_magnitude: int = 9,
    ) -> Any: ...

    async def publish_mams_trytes(
        self,
        messages: Sequence[MamMessage],
        tag: str = "",
        depth: int = 3,
        min_weight_magnitude: int = 9,
    ) -> Any: ...


class MamTangle:
    """Reads entities' channels and writes the grid's own through the node."""

    def __init__(self, node: MamNode, *, depth: int = 3, min_weight_magnitude: int = 9) -> None:
        self._node = node
        self._depth = depth
        self._mwm = min_weight_magnitude

    async def read_channel(
        self, root: str, mode: MamMode, side_key: str | None, limit: int | None
    ) -> list[ChannelEntry]:
        try:
            return await self._node.fetch_mam(root, mode, side_key, limit=limit)
        except NodeError as err:
            raise TangleUnavailableError(str(err)) from err

    async def roots_with_messages(self, channels: Sequence[tuple[str, MamMode]]) -> set[str]:
        by_address: dict[str, set[str]] = {}
        for root, mode in channels:
            by_address.setdefault(channel_address(root, mode), set()).add(root)
        try:
            hashes = await self._node.find_transactions(addresses=list(by_address))
            transactions = await self._node.get_transactions(hashes) if hashes else []
        except NodeError as err:
            raise TangleUnavailableError(str(err)) from err
        return {root for tx in transactions for root in by_address.get(tx.address, ())}

    def new_channel(self) -> NewChannel:
        side_key = random_trytes()
        channel = create_channel(random_trytes(), SECURITY, "restricted", side_key)
        return NewChannel(channel_root(channel), side_key, channel.to_json())

    @staticmethod
    def open_channels(
        first_messages: Sequence[Mapping[str, Any]],
    ) -> list[tuple[NewChannel, CreatedMessage]]:
        """New channels with their first messages, batched (a plain function, so it can
        run in a worker process: see ``ReturnChannels``' ``offload``)."""
        side_keys = [random_trytes() for _ in first_messages]
        channels = [
            create_channel(random_trytes(), SECURITY, "restricted", side_key)
            for side_key in side_keys
        ]
        initial = [channel.to_json() for channel in channels]
        created = create_messages(
            [
                (channel, dict(message))
                for channel, message in zip(channels, first_messages, strict=True)
            ]
        )
        return [
            (NewChannel(made.root, side_key, state), CreatedMessage(channel.to_json(), made))
            for side_key, channel, state, made in zip(
                side_keys, channels, initial, created, strict=True
            )
        ]

    def create_message(
        self, state: Mapping[str, Any], message: Mapping[str, Any]
    ) -> CreatedMessage:
        channel = MamChannel.from_json(state)
        created = create_message(channel, dict(message))
        return CreatedMessage(channel.to_json(), created)

    @staticmethod
    def create_messages(
        items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
    ) -> list[CreatedMessage]:
        """The next message of each channel state, batched (a plain function, so it can
        run in a worker process: see ``ReturnChannels``' ``offload``)."""
        channels = [MamChannel.from_json(state) for state, _ in items]
        created = create_messages(
            [
                (channel, dict(message))
                for channel, (_, message) in zip(channels, items, strict=True)
            ]
        )
        return [
            CreatedMessage(channel.to_json(), made)
            for channel, made in zip(channels, created, strict=True)
        ]

    async def publish(self, message: MamMessage) -> None:
        try:
            await self._node.publish_mam(
                message,
                tag=GRID_TAG,
                depth=self._depth,
                min_weight_magnitude=self._mwm,
            )
        except NodeError as err:
            raise TangleUnavailableError(str(err)) from err

    async def publish_many(self, messages: Sequence[MamMessage]) -> None:
        try:
            await self._node.publish_mams_trytes(
                messages,
                tag=GRID_TAG,
                depth=self._depth,
                min_weight_magnitude=self._mwm,
            )
        except NodeError as err:
            raise TangleUnavailableError(str(err)) from err
