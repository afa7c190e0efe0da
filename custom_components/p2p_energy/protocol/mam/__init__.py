"""MAM v0 (Masked Authenticated Messaging) as @iota/mam.js 1.0.0-beta.10 and
@iota/mam 0.7.3 implement it, byte for byte.

Publishing: :func:`create_channel` → :func:`channel_root` (register it) →
:func:`create_message` per message (:func:`create_messages` for many channels at
once) → :func:`message_to_transactions` to attach
at :attr:`MamMessage.address`. Reading: fetch the transactions at
:func:`mam_address` of a root → :func:`payload_from_transactions` →
:func:`parse_message` (or :func:`parse_messages` for many at once) → follow
:attr:`ParsedMamMessage.next_root`; :mod:`.walk` does all of that for any reader.
"""

from .batch import create_message, create_messages
from .channel import (
    MamChannel,
    MamMessage,
    MamMode,
    channel_root,
    create_channel,
    mam_address,
    message_trytes,
)
from .parser import ParsedMamMessage, ParseItem, parse_message, parse_messages
from .pascal import pascal_decode, pascal_encode
from .reference import MamReference
from .transport import message_to_transactions, messages_to_transactions, payload_from_transactions
from .walk import (
    ChannelEntry,
    ChannelStart,
    ChannelWalk,
    channel_address,
    channel_addresses,
    walk_channels,
    walk_channels_sync,
)

__all__ = [
    "ChannelEntry",
    "ChannelStart",
    "ChannelWalk",
    "MamChannel",
    "MamMessage",
    "MamMode",
    "MamReference",
    "ParseItem",
    "ParsedMamMessage",
    "channel_address",
    "channel_addresses",
    "channel_root",
    "create_channel",
    "create_message",
    "create_messages",
    "mam_address",
    "message_to_transactions",
    "message_trytes",
    "messages_to_transactions",
    "parse_message",
    "parse_messages",
    "pascal_decode",
    "pascal_encode",
    "payload_from_transactions",
    "walk_channels",
    "walk_channels_sync",
]
