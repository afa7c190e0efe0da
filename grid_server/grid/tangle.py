"""The grid's channels on the Tangle: the protocol library's MAM over the node client."""

from __future__ import annotations

import functools
import secrets
from typing import TYPE_CHECKING, Any, Final, Protocol

from p2p_energy_protocol.errors import NodeError
from p2p_energy_protocol.mam import (
    MamChannel,
    MamMessage,
    channel_root,
    create_channel,
    create_message,
    create_messages,
    mam_address,
)
from p2p_energy_protocol.trinary import TRYTE_ALPHABET

from .channels import (
    ChannelEntry,
    CreatedMessage,
    NewChannel,
    OutgoingMessage,
    TangleUnavailableError,
)
from .node_client import TransactionLookup

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from p2p_energy_protocol.mam import ParsedMamMessage

    from .channels import MamMode

GRID_TAG: Final = "PEERENERGYGRID"
SECURITY: Final = 2


def random_trytes(length: int = 81) -> str:
    """Cryptographically random trytes (seeds and side keys)."""
    return "".join(secrets.choice(TRYTE_ALPHABET) for _ in range(length))


class MamNode(TransactionLookup, Protocol):
    """The node client's MAM operations (``IriClient`` provides them)."""

    async def fetch_mam(
        self, root: str, mode: MamMode, side_key: str | None = None, limit: int | None = None
    ) -> list[tuple[str, ParsedMamMessage]]: ...

    async def publish_mam(
        self,
        message: MamMessage,
        tag: str = "",
        depth: int = 3,
        min_weight_magnitude: int = 9,
    ) -> Any: ...

    async def publish_mams(
        self,
        messages: Sequence[MamMessage],
        tag: str = "",
        depth: int = 3,
        min_weight_magnitude: int = 9,
    ) -> Any: ...


@functools.lru_cache(maxsize=131_072)
def channel_address(root: str, mode: MamMode) -> str:
    """Where the message with ``root`` is attached (cached: following asks often)."""
    return mam_address(root, mode)


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
            messages = await self._node.fetch_mam(root, mode, side_key, limit=limit)
        except NodeError as err:
            raise TangleUnavailableError(str(err)) from err
        return [
            ChannelEntry(message_root, parsed.next_root, parsed.data)
            for message_root, parsed in messages
        ]

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

    def create_message(
        self, state: Mapping[str, Any], message: Mapping[str, Any]
    ) -> CreatedMessage:
        channel = MamChannel.from_json(state)
        created = create_message(channel, dict(message))
        return CreatedMessage(
            channel.to_json(),
            OutgoingMessage(created.root, created.address, created.next_root, created.payload),
        )

    def create_messages(
        self, items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> list[CreatedMessage]:
        channels = [MamChannel.from_json(state) for state, _ in items]
        created = create_messages(
            [
                (channel, dict(message))
                for channel, (_, message) in zip(channels, items, strict=True)
            ]
        )
        return [
            CreatedMessage(
                channel.to_json(),
                OutgoingMessage(made.root, made.address, made.next_root, made.payload),
            )
            for channel, made in zip(channels, created, strict=True)
        ]

    async def publish(self, message: OutgoingMessage) -> None:
        try:
            await self._node.publish_mam(
                MamMessage(
                    payload=message.payload,
                    root=message.root,
                    address=message.address,
                    next_root=message.next_root,
                ),
                tag=GRID_TAG,
                depth=self._depth,
                min_weight_magnitude=self._mwm,
            )
        except NodeError as err:
            raise TangleUnavailableError(str(err)) from err

    async def publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        try:
            await self._node.publish_mams(
                [
                    MamMessage(
                        payload=message.payload,
                        root=message.root,
                        address=message.address,
                        next_root=message.next_root,
                    )
                    for message in messages
                ],
                tag=GRID_TAG,
                depth=self._depth,
                min_weight_magnitude=self._mwm,
            )
        except NodeError as err:
            raise TangleUnavailableError(str(err)) from err
