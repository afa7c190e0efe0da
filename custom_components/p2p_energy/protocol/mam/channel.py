"""Publishing side of MAM v0: channel state and message creation.

A channel is a seed and a position: message ``k`` of a tree is signed with leaf
``start + index`` of the tree over leaves ``start .. start + count - 1`` and
announces the root of the next tree, over ``next_count`` leaves from
``start + count``. The original project used one-leaf trees: each message's
root is leaf ``k`` and its next root leaf ``k + 1``.

Payload layout (trits), as @iota/mam.js and @iota/mam build it::

    pascal(path index) pascal(len(message))                     clear
    mask(next_root || message)                                  243 + len(message)
    mask(nonce)                                                 81
    mask(signature || pascal(len(siblings)) || siblings)        6561 * security + ...
    0-2 zero trits to a whole tryte

The mask is a Curl-P-27 sponge that first absorbs the side key (81 ``9`` for
public and private channels), the root and the clear header; each 243-trit
chunk is added (mod 3) to the sponge's rate before the chunk is absorbed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast, get_args

import numpy as np

from .. import signing
from ..curl import HASH_LENGTH, Curl, curl_hash
from ..errors import InvalidTrytesError, MamError
from ..trinary import (
    TRYTE_ALPHABET,
    TRYTES_PATTERN,
    Trits,
    text_to_trytes,
    trits_to_trytes,
    trytes_to_trits,
    validate_trytes,
)
from .merkle import build_trees
from .nonce import NONCE_LENGTH
from .pascal import pascal_encoded_length
from .reference import MamReference

MamMode = Literal["public", "private", "restricted"]

HASH_TRYTES: Final = HASH_LENGTH // 3
MAX_LEAF_COUNT: Final = 1024
"""Largest tree a channel may use; every message derives all leaves of both trees."""
MAX_START: Final = 2**53 - 1
"""Leaf indexes stay exact JavaScript numbers, so channel state moves between libraries."""
MAX_MESSAGE_TRYTES: Final = 40 * 2187
"""Forty transactions' worth. Far longer messages (beyond 88,492 trytes) would get
a length header that @iota/mam writes differently from @iota/mam.js."""
SPONGE_ROUNDS: Final = 27
ADDRESS_ROUNDS: Final = 81
NO_SIDE_KEY: Final = "9" * HASH_TRYTES

_JSON_KEYS: Final = frozenset(
    {"seed", "mode", "sideKey", "security", "start", "count", "nextCount", "index", "reference"}
)
_IGNORED_JSON_KEYS: Final = frozenset({"nextRoot"})


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MamError(f"{name} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise MamError(f"{name} must lie in {low}..{high}, got {value}")
    return value


def pad_side_key(side_key: str) -> str:
    """A side key of up to 81 trytes, padded with ``9`` as the MAM libraries do."""
    validate_trytes(side_key, name="side key")
    if not side_key:
        raise InvalidTrytesError("side key must not be empty")
    if len(side_key) > HASH_TRYTES:
        raise InvalidTrytesError(f"side key must be at most 81 trytes, got {len(side_key)}")
    return side_key.ljust(HASH_TRYTES, "9")


@dataclass
class MamChannel:
    """A publisher's channel and its position; :func:`create_message` advances it.

    ``index`` is the position inside the current tree (always 0 with one-leaf
    trees). ``reference`` picks which library's bytes payloads reproduce:
    ``"mam.js"`` (@iota/mam.js) or ``"mam.client.js"`` (@iota/mam); either
    library reads both (see :mod:`.reference`).

    Every leaf is a one-time signing key: save :meth:`to_json` after each
    :func:`create_message` and before publishing, so a restart never signs a
    second message with a used leaf.
    """

    seed: str = field(repr=False)
    mode: MamMode
    side_key: str | None = field(repr=False)
    security: int = 2
    start: int = 0
    count: int = 1
    next_count: int = 1
    index: int = 0
    reference: MamReference = "mam.js"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field (the dataclass is mutable); pads a short side key."""
        validate_trytes(self.seed, HASH_TRYTES, "seed")
        if self.mode not in get_args(MamMode):
            raise MamError(f"mode must be public, private or restricted, got {self.mode!r}")
        if self.mode == "restricted":
            if self.side_key is None:
                raise MamError("restricted mode needs a side key")
            self.side_key = pad_side_key(self.side_key)
        elif self.side_key is not None:
            raise MamError(f"a side key is only used in restricted mode, not {self.mode}")
        _check_int("security", self.security, 1, 3)
        _check_int("start", self.start, 0, MAX_START)
        _check_int("count", self.count, 1, MAX_LEAF_COUNT)
        _check_int("next_count", self.next_count, 1, MAX_LEAF_COUNT)
        _check_int("index", self.index, 0, self.count - 1)
        if self.start + self.count + self.next_count > MAX_START:
            raise MamError("the channel has reached its last leaf")
        if self.reference not in get_args(MamReference):
            raise MamError(f"reference must be one of {get_args(MamReference)}")

    @property
    def sponge_key(self) -> str:
        """The 81 trytes the message sponge starts with."""
        return self.side_key if self.side_key is not None else NO_SIDE_KEY

    def to_json(self) -> dict[str, Any]:
        """The channel state in @iota/mam.js's field names (plus ``reference``)."""
        state: dict[str, Any] = {
            "seed": self.seed,
            "mode": self.mode,
            "security": self.security,
            "start": self.start,
            "count": self.count,
            "nextCount": self.next_count,
            "index": self.index,
            "reference": self.reference,
        }
        if self.side_key is not None:
            state["sideKey"] = self.side_key
        return state

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> MamChannel:
        """Load state saved by :meth:`to_json` (or by @iota/mam.js); every field is checked."""
        if not isinstance(state, Mapping):
            raise MamError(f"channel state must be a mapping, got {type(state).__name__}")
        unknown = set(state) - _JSON_KEYS - _IGNORED_JSON_KEYS
        if unknown:
            raise MamError(f"unknown channel state fields: {', '.join(sorted(unknown))}")
        missing = {"seed", "mode", "security", "start", "count", "nextCount", "index"} - set(state)
        if missing:
            raise MamError(f"channel state lacks: {', '.join(sorted(missing))}")
        seed, mode, side_key = state["seed"], state["mode"], state.get("sideKey")
        reference = state.get("reference", "mam.js")
        for name, value in (("seed", seed), ("mode", mode), ("reference", reference)):
            if not isinstance(value, str):
                raise MamError(f"channel state field {name} must be a string")
        if side_key is not None and not isinstance(side_key, str):
            raise MamError("channel state field sideKey must be a string")
        return cls(
            seed=seed,
            mode=cast("MamMode", mode),
            side_key=side_key,
            security=state["security"],
            start=state["start"],
            count=state["count"],
            next_count=state["nextCount"],
            index=state["index"],
            reference=cast("MamReference", reference),
        )


@dataclass(frozen=True)
class MamMessage:
    """A created message: the payload to attach at ``address``."""

    payload: str
    root: str
    address: str
    next_root: str


def create_channel(
    seed: str,
    security: int = 2,
    mode: MamMode = "restricted",
    side_key: str | None = None,
    *,
    reference: MamReference = "mam.js",
) -> MamChannel:
    """A new channel at leaf 0 with one-leaf trees, as the original project used."""
    return MamChannel(
        seed=seed, mode=mode, side_key=side_key, security=security, reference=reference
    )


def mam_address(root: str, mode: MamMode) -> str:
    """Where a message with ``root`` is attached: the root itself for public
    channels, its Curl-P-81 hash for private and restricted ones."""
    validate_trytes(root, HASH_TRYTES, "root")
    if mode == "public":
        return root
    if mode not in get_args(MamMode):
        raise MamError(f"mode must be public, private or restricted, got {mode!r}")
    return trits_to_trytes(curl_hash(trytes_to_trits(root), ADDRESS_ROUNDS))


def channel_root(channel: MamChannel) -> str:
    """The root of the channel's current tree: the root its next message is read with."""
    channel.validate()
    seed = trytes_to_trits(channel.seed)
    (tree,), _ = build_trees(seed, channel.security, [(channel.start, channel.count)])
    return trits_to_trytes(tree.root)


def message_trytes(message: str | Mapping[str, Any] | list[Any]) -> str:
    """Trytes as given, or a JSON value as compact JSON text with non-ASCII escaped."""
    if isinstance(message, str):
        if not TRYTES_PATTERN.fullmatch(message):
            raise MamError(
                "a str message must be trytes (9, A-Z); pass a dict or list to send JSON, "
                "or encode text with text_to_trytes"
            )
        trytes = message
    elif isinstance(message, Mapping | list):
        try:
            text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise MamError(f"message is not JSON serialisable: {err}") from err
        trytes = _ascii_json_trytes(text) if text.isascii() else text_to_trytes(text)
    else:
        raise MamError(f"message must be trytes, a mapping or a list, not {type(message).__name__}")
    if len(trytes) > MAX_MESSAGE_TRYTES:
        raise MamError(f"a message may be at most {MAX_MESSAGE_TRYTES} trytes, got {len(trytes)}")
    return trytes


_ALPHABET_CODES: Final = np.frombuffer(TRYTE_ALPHABET.encode("ascii"), dtype=np.uint8)


def _ascii_json_trytes(text: str) -> str:
    """``text_to_trytes`` for ASCII text, vectorised (JSON of many messages goes through
    here). DEL (0x7F) is escaped like any non-ASCII character, so it takes the slow path."""
    codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    if codes.size and int(codes.max()) >= 0x7F:
        return text_to_trytes(text)
    trytes = np.empty(2 * codes.size, dtype=np.uint8)
    trytes[0::2] = _ALPHABET_CODES[codes % 27]
    trytes[1::2] = _ALPHABET_CODES[codes // 27]
    return trytes.tobytes().decode("ascii")


def _add_trits(left: Trits, right: Trits) -> Trits:
    total = left.astype(np.int16) + right
    return ((total + 1) % 3 - 1).astype(np.int8)


def mask(sponge: Curl, plain: Trits) -> Trits:
    """MAM's mask: each 243-trit chunk of ``plain`` plus the sponge's rate before the
    chunk is absorbed (balanced, mod 3)."""
    masked = np.empty_like(plain)
    for offset in range(0, plain.size, HASH_LENGTH):
        chunk = plain[offset : offset + HASH_LENGTH]
        key = sponge.state[: chunk.size]
        sponge.absorb(chunk)
        masked[offset : offset + chunk.size] = _add_trits(chunk, key)
    return masked


def _payload_length(
    content: int, path_bits: int, message_length: int, siblings: int, channel: MamChannel
) -> int:
    """Trits of the finished payload: the content padded with zeros to a whole tryte,
    or, for @iota/mam, to the length its Rust core estimates in advance (which
    sizes the header for a message 243 trits longer)."""
    if channel.reference == "mam.js":
        return content + (-content) % 3
    estimate = (
        pascal_encoded_length(path_bits, "mam.client.js")
        + pascal_encoded_length(HASH_LENGTH + message_length, "mam.client.js")
        + HASH_LENGTH
        + message_length
        + NONCE_LENGTH
        + channel.security * signing.FRAGMENT_LENGTH
        + pascal_encoded_length(siblings, "mam.client.js")
        + siblings * HASH_LENGTH
    )
    return estimate + (-estimate) % 3
