"""Reading side of MAM v0: unmask, verify and decode payloads.

Parsing reverses :func:`.channel.create_message`: the clear header gives the
leaf index and the message length; the sponge (side key, root, header)
unmasks the next root, the message and the nonce; its rate is then the HMAC,
whose zero-sum prefix gives the security level; the rest unmasks to the
signature, the sibling count and the siblings. The signature's digest, hashed
to a leaf and up the siblings, must give the root the message was read with.

:func:`parse_messages` runs many payloads through the same steps side by side:
the sponges as lanes of one bit-sliced Curl batch, all signature chains of all
messages as lanes of another.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from ..curl import HASH_LENGTH, curl_hash_chains, pack_lanes, unpack_lanes
from ..errors import (
    InvalidAsciiError,
    InvalidTrytesError,
    MamAuthenticationError,
    MamError,
    MamPayloadError,
)
from ..trinary import trits_to_trytes, trytes_to_ascii, trytes_to_trits, validate_trytes
from ._lanes import MAM_ROUNDS, Counts, Flags, LaneSponges, LaneTrits, subtract_planes
from .channel import HASH_TRYTES, NO_SIDE_KEY, pad_side_key
from .nonce import NONCE_LENGTH, hmac_security
from .pascal import MAX_PASCAL_TRYTES, pascal_decode

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

FRAGMENTS_PER_LEVEL: Final = 27
SIGNATURE_LEVEL_LENGTH: Final = FRAGMENTS_PER_LEVEL * HASH_LENGTH
"""Signature trits per security level."""
MAX_SIBLINGS: Final = 32
MAX_PAYLOAD_TRYTES: Final = 100 * 2187
"""Longest payload considered (a hundred transactions); longer ones are refused unread."""
MAX_BATCH_LANES: Final = 1024
"""Messages parsed side by side; larger batches are split."""
MAX_BATCH_TRITS: Final = 1 << 25
"""Bound on lanes times the longest payload of a batch (the payloads' matrix)."""
_MAX_REST: Final = 3 * SIGNATURE_LEVEL_LENGTH + 4 * MAX_PASCAL_TRYTES + MAX_SIBLINGS * HASH_LENGTH
"""Most trits after the nonce a payload can use: the longest signature, sibling
count and siblings. Anything beyond (such as transaction padding) is dropped."""
MIN_TRYTE: Final = -13

_TRYTE_WEIGHTS: Final = np.array([1, 3, 9], dtype=np.int64)
_ESCAPE: Final = re.compile(r"\\u([0-9a-fA-F]{4})")

ParseItem = tuple[str, str, str | None]
"""``(payload, root, side_key)``; ``side_key`` is ``None`` for public and private channels."""


def _unescape_non_ascii(text: str) -> str:
    """Undo the ``\\uXXXX`` escaping MAM publishers apply to non-ASCII text."""
    unescaped = _ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), text)
    return unescaped.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class DecodedMessage:
    """The text and JSON views of a message's trytes (``message``)."""

    __slots__ = ()
    message: str

    @property
    def text(self) -> str:
        """The message as text; see :func:`decode_text`."""
        return decode_text(self.message)

    @property
    def data(self) -> Any:
        """The message as JSON; see :func:`decode_json`."""
        return decode_json(self.message)


@dataclass(frozen=True)
class ParsedMamMessage(DecodedMessage):
    """A verified message: its trytes, the root of the channel's next message,
    its Merkle path index (the leaf's position in a full tree) and the security
    level it was signed with."""

    message: str
    next_root: str
    index: int
    security: int


def decode_text(message: str) -> str:
    """Message trytes as text (trytes to ASCII, ``\\uXXXX`` unescaped).

    Raises :class:`InvalidAsciiError` when the trytes are not text.
    """
    return _unescape_non_ascii(trytes_to_ascii(message))


def decode_json(message: str) -> Any:
    """Message trytes decoded as JSON, or ``None`` when they are not JSON text."""
    try:
        return json.loads(trytes_to_ascii(message))
    except (InvalidAsciiError, ValueError):
        return None


@dataclass
class _Layout:
    """Where the parts of one payload lie, from its clear header."""

    payload: npt.NDArray[np.int8]
    root: npt.NDArray[np.int8]
    side_key: npt.NDArray[np.int8]
    index: int
    next_root_start: int
    message_length: int

    @property
    def message_start(self) -> int:
        return self.next_root_start + HASH_LENGTH

    @property
    def nonce_start(self) -> int:
        return self.message_start + self.message_length

    @property
    def rest_start(self) -> int:
        return self.nonce_start + NONCE_LENGTH


def _layout(payload: str, root: npt.NDArray[np.int8], side_key: npt.NDArray[np.int8]) -> _Layout:
    if not isinstance(payload, str):
        raise MamPayloadError(f"payload must be a tryte string, got {type(payload).__name__}")
    if len(payload) > MAX_PAYLOAD_TRYTES:
        raise MamPayloadError(f"payload of {len(payload)} trytes exceeds {MAX_PAYLOAD_TRYTES}")
    try:
        trits = trytes_to_trits(payload)
    except InvalidTrytesError as err:
        raise MamPayloadError(f"payload is not trytes: {err}") from err
    index, index_end = pascal_decode(trits, 0)
    length, header_end = pascal_decode(trits, index_end)
    if length % 3:
        raise MamPayloadError(f"message length {length} is not a whole number of trytes")
    layout = _Layout(trits, root, side_key, index, header_end, length)
    layout.payload = trits[: layout.rest_start + _MAX_REST]
    shortest = layout.rest_start + SIGNATURE_LEVEL_LENGTH + 4
    if trits.size < shortest:
        raise MamPayloadError(
            f"payload is truncated: {trits.size} trits, a {length}-trit message needs {shortest}"
        )
    return layout


_DIFFERENCE_TRITS: Final = np.array([1, -1, 0, 1, -1], dtype=np.int8)
"""Balanced trit of a difference of two trits, indexed by the difference + 2."""


def _subtract_trits(left: LaneTrits, right: LaneTrits) -> LaneTrits:
    return np.take(_DIFFERENCE_TRITS, left - right + 2)


def _lanes_where(flags: Flags) -> list[int]:
    return [int(lane) for lane in np.flatnonzero(flags)]


class _BatchParse:
    """One batch of payloads parsed side by side, one lane per payload.

    A lane that fails records its error and sits out the remaining steps.
    """

    def __init__(self, layouts: Sequence[_Layout]) -> None:
        self.layouts = layouts
        self.lanes = len(layouts)
        self.errors: list[MamError | None] = [None] * self.lanes
        self.lengths = np.array([layout.payload.size for layout in layouts], dtype=np.int64)
        width = int(self.lengths.max()) + HASH_LENGTH
        self.payloads = np.zeros((self.lanes, width), dtype=np.int8)
        for lane, layout in enumerate(layouts):
            self.payloads[lane, : layout.payload.size] = layout.payload
        self.indexes = self._column(lambda layout: layout.index)
        self.sponges = LaneSponges(self.lanes)

    def _column(self, read: Callable[[_Layout], int]) -> Counts:
        return np.array([read(layout) for layout in self.layouts], dtype=np.int64)

    @property
    def alive(self) -> Flags:
        return np.array([error is None for error in self.errors], dtype=bool)

    def fail(self, lanes: list[int], error: MamError) -> None:
        for lane in lanes:
            self.errors[lane] = error

    def unmask(self, starts: Counts, lengths: Counts, active: Flags) -> LaneTrits:
        """Unmask ``payload[start : start + length]`` of every active lane, chunk by chunk;
        returns ``(lanes, n)`` plaintext (valid up to each lane's length)."""
        chunks = np.where(active, (lengths + HASH_LENGTH - 1) // HASH_LENGTH, 0)
        most = int(chunks.max(initial=0))
        width = most * HASH_LENGTH
        # Each lane's window [start, start + width) of its payload, gathered without an
        # index matrix; beyond a payload's end it reads zeros (the matrix is zero-padded).
        payloads: LaneTrits = self.payloads
        beyond = int(starts.max(initial=0)) + width - payloads.shape[1]
        if beyond > 0:
            payloads = np.pad(payloads, ((0, 0), (0, beyond)))
        windows = np.lib.stride_tricks.sliding_window_view(payloads, width, axis=1)
        cipher = windows[np.arange(self.lanes), np.maximum(starts, 0)]
        batch = self.sponges.batch
        if batch is None:
            return self._unmask_trits(cipher, lengths, chunks)
        # Bit-sliced: pack the ciphertext once, subtract the rate as bit planes, and
        # unpack the plaintext once, instead of converting every chunk both ways.
        cipher_low, cipher_high = pack_lanes(cipher, batch.words)
        plain_low = np.empty_like(cipher_low)
        plain_high = np.empty_like(cipher_high)
        for chunk in range(most):
            offset = chunk * HASH_LENGTH
            rows = slice(offset, offset + HASH_LENGTH)
            low, high = subtract_planes(
                cipher_low[rows],
                cipher_high[rows],
                batch.low[:HASH_LENGTH],
                batch.high[:HASH_LENGTH],
            )
            plain_low[rows] = low
            plain_high[rows] = high
            sizes = np.clip(lengths - offset, 1, HASH_LENGTH)
            self.sponges.absorb_planes(low, high, sizes, chunks > chunk)
        return unpack_lanes(plain_low, plain_high, self.lanes)

    def _unmask_trits(self, cipher: LaneTrits, lengths: Counts, chunks: Counts) -> LaneTrits:
        """:meth:`unmask` for the few lanes held as single sponges."""
        plain = np.zeros_like(cipher)
        for chunk in range(int(chunks.max(initial=0))):
            offset = chunk * HASH_LENGTH
            decrypted = _subtract_trits(
                cipher[:, offset : offset + HASH_LENGTH], self.sponges.rate()
            )
            sizes = np.clip(lengths - offset, 1, HASH_LENGTH)
            self.sponges.absorb(decrypted, sizes, chunks > chunk)
            plain[:, offset : offset + HASH_LENGTH] = decrypted
        return plain

    def run(self) -> list[ParsedMamMessage | MamError]:
        everyone = np.ones(self.lanes, dtype=bool)
        self.sponges.absorb(np.stack([layout.side_key for layout in self.layouts]))
        self.sponges.absorb(np.stack([layout.root for layout in self.layouts]))
        header_lengths = self._column(lambda layout: layout.next_root_start)
        self.sponges.absorb(self.payloads[:, : int(header_lengths.max())], header_lengths)

        next_roots = self.unmask(header_lengths, np.full(self.lanes, HASH_LENGTH), everyone)
        message_lengths = self._column(lambda layout: layout.message_length)
        messages = self.unmask(
            self._column(lambda layout: layout.message_start), message_lengths, message_lengths > 0
        )
        self.unmask(
            self._column(lambda layout: layout.nonce_start),
            np.full(self.lanes, NONCE_LENGTH),
            everyone,
        )
        hmacs = self.sponges.rate()
        security = hmac_security(hmacs)
        self.fail(
            _lanes_where(security == 0),
            MamAuthenticationError(
                "the message hash has no zero-sum prefix: wrong side key or root, or an altered "
                "payload"
            ),
        )
        rest, sibling_starts, sibling_counts = self._unmask_rest(security)
        leaves = self._leaves(rest, hmacs, security)
        roots = self._climb(leaves, rest, sibling_starts, sibling_counts)

        results: list[ParsedMamMessage | MamError] = []
        for lane, layout in enumerate(self.layouts):
            error = self.errors[lane]
            if error is None and not np.array_equal(roots[lane], layout.root):
                error = MamAuthenticationError("the signature does not lead to the expected root")
            if error is not None:
                results.append(error)
                continue
            results.append(
                ParsedMamMessage(
                    message=trits_to_trytes(messages[lane, : layout.message_length]),
                    next_root=trits_to_trytes(next_roots[lane, :HASH_LENGTH]),
                    index=layout.index,
                    security=int(security[lane]),
                )
            )
        return results

    def _unmask_rest(self, security: Counts) -> tuple[LaneTrits, Counts, Counts]:
        """Unmask the signature, the sibling count and the siblings; return the plaintext
        (from the end of the nonce), where the siblings start and how many there are."""
        rest_starts = self._column(lambda layout: layout.rest_start)
        available = self.lengths - rest_starts
        signature_lengths = security * SIGNATURE_LEVEL_LENGTH
        self.fail(
            _lanes_where(self.alive & (available < signature_lengths + 4)),
            MamPayloadError("payload is truncated inside the signature"),
        )
        # The signature and one more chunk, which holds the sibling count.
        first_part = np.minimum(signature_lengths + HASH_LENGTH, available)
        rest = self.unmask(rest_starts, first_part, self.alive)
        sibling_starts = np.zeros(self.lanes, dtype=np.int64)
        sibling_counts = np.zeros(self.lanes, dtype=np.int64)
        for lane in _lanes_where(self.alive):
            try:
                count, count_end = pascal_decode(
                    rest[lane, : int(first_part[lane])], int(signature_lengths[lane])
                )
                if not 0 <= count <= MAX_SIBLINGS:
                    raise MamPayloadError(f"implausible sibling count {count}")
                if int(self.indexes[lane]) >> count:
                    raise MamPayloadError(
                        f"index {int(self.indexes[lane])} does not fit {count} Merkle levels"
                    )
                if count_end + count * HASH_LENGTH > int(available[lane]):
                    raise MamPayloadError("payload is truncated inside the siblings")
            except MamPayloadError as err:
                self.errors[lane] = err
                continue
            sibling_starts[lane] = count_end
            sibling_counts[lane] = count
        needed = sibling_starts + sibling_counts * HASH_LENGTH
        more = self.alive & (needed > first_part)
        if more.any():
            extra = self.unmask(rest_starts + first_part, needed - first_part, more)
            grown = np.zeros((self.lanes, rest.shape[1] + extra.shape[1]), dtype=np.int8)
            grown[:, : rest.shape[1]] = rest
            for lane in _lanes_where(more):
                begin, end = int(first_part[lane]), int(needed[lane])
                grown[lane, begin:end] = extra[lane, : end - begin]
            rest = grown
        return rest, sibling_starts, sibling_counts

    def _leaves(self, rest: LaneTrits, hmacs: LaneTrits, security: Counts) -> LaneTrits:
        """The leaf each signature stands for: every signature chunk hashed 13 + digit
        times (all chains of all lanes in one batch), one sponge over the chunks, and
        the hash of its output."""
        live = _lanes_where(self.alive)
        leaves = np.zeros((self.lanes, HASH_LENGTH), dtype=np.int8)
        if not live:
            return leaves
        fragments = security * FRAGMENTS_PER_LEVEL
        digits = hmacs.reshape(self.lanes, -1, 3).astype(np.int64) @ _TRYTE_WEIGHTS
        chunks = np.concatenate(
            [
                rest[lane, : int(fragments[lane]) * HASH_LENGTH].reshape(-1, HASH_LENGTH)
                for lane in live
            ]
        )
        steps = np.concatenate([digits[lane, : int(fragments[lane])] - MIN_TRYTE for lane in live])
        ends = curl_hash_chains(chunks, steps, MAM_ROUNDS)
        most = int(fragments[live].max())
        per_lane = np.zeros((self.lanes, most, HASH_LENGTH), dtype=np.int8)
        first = 0
        for lane in live:
            count = int(fragments[lane])
            per_lane[lane, :count] = ends[first : first + count]
            first += count
        alive = self.alive
        digest = LaneSponges(self.lanes)
        if digest.batch is None:
            for fragment in range(most):
                digest.absorb(per_lane[:, fragment], active=alive & (fragments > fragment))
        else:
            # Pack all fragments once rather than one chunk per absorb.
            low, high = pack_lanes(per_lane.reshape(self.lanes, -1), digest.batch.words)
            whole = np.full(self.lanes, HASH_LENGTH, dtype=np.int64)
            for fragment in range(most):
                rows = slice(fragment * HASH_LENGTH, (fragment + 1) * HASH_LENGTH)
                digest.absorb_planes(low[rows], high[rows], whole, alive & (fragments > fragment))
        leaf = LaneSponges(self.lanes)
        leaf.absorb(digest.rate(), active=alive)
        return leaf.rate()

    def _climb(
        self, leaves: LaneTrits, rest: LaneTrits, sibling_starts: Counts, sibling_counts: Counts
    ) -> LaneTrits:
        """Hash up the siblings; bit ``k`` of the index says sibling ``k`` is on the left."""
        nodes = leaves
        for level in range(int(sibling_counts.max(initial=0))):
            climbing = self.alive & (sibling_counts > level)
            siblings = np.zeros((self.lanes, HASH_LENGTH), dtype=np.int8)
            for lane in _lanes_where(climbing):
                begin = int(sibling_starts[lane]) + level * HASH_LENGTH
                siblings[lane] = rest[lane, begin : begin + HASH_LENGTH]
            sibling_first = ((self.indexes >> level) & 1).astype(bool)[:, None]
            pair = LaneSponges(self.lanes)
            pair.absorb(np.where(sibling_first, siblings, nodes), active=climbing)
            pair.absorb(np.where(sibling_first, nodes, siblings), active=climbing)
            nodes = np.where(climbing[:, None], pair.rate(), nodes)
        return nodes


def _key_trits(side_key: str | None) -> npt.NDArray[np.int8]:
    return trytes_to_trits(NO_SIDE_KEY if side_key is None else pad_side_key(side_key))


def parse_messages(items: Sequence[ParseItem]) -> list[ParsedMamMessage | MamError]:
    """Parse many ``(payload, root, side_key)`` at once.

    Each result is the parsed message or the :class:`MamError` that payload
    raised (:class:`MamPayloadError` or :class:`MamAuthenticationError`); a
    malformed root or side key raises :class:`InvalidTrytesError` for the call.
    """
    prepared: list[_Layout | MamError] = []
    for item in items:
        payload, root, side_key = item
        root_trits = trytes_to_trits(validate_trytes(root, HASH_TRYTES, "root"))
        key_trits = _key_trits(side_key)
        try:
            prepared.append(_layout(payload, root_trits, key_trits))
        except MamPayloadError as err:
            prepared.append(err)
    results: list[ParsedMamMessage | MamError | None] = [
        entry if isinstance(entry, MamError) else None for entry in prepared
    ]
    # Similar lengths side by side: fewer idle lanes and a narrow payload matrix.
    pending = sorted(
        (
            (position, entry)
            for position, entry in enumerate(prepared)
            if isinstance(entry, _Layout)
        ),
        key=lambda pair: pair[1].payload.size,
    )
    while pending:
        width = pending[0][1].payload.size
        taken = 1
        while taken < min(len(pending), MAX_BATCH_LANES):
            width = pending[taken][1].payload.size
            if (taken + 1) * width > MAX_BATCH_TRITS:
                break
            taken += 1
        batch, pending = pending[:taken], pending[taken:]
        parsed = _BatchParse([layout for _, layout in batch]).run()
        for (position, _), result in zip(batch, parsed, strict=True):
            results[position] = result
    return [result for result in results if result is not None]


def parse_message(payload: str, root: str, side_key: str | None = None) -> ParsedMamMessage:
    """Unmask and verify one payload read with ``root`` (and the channel's side key).

    Raises :class:`MamPayloadError` for a corrupt or truncated payload and
    :class:`MamAuthenticationError` when it does not verify against ``root``.
    """
    (result,) = parse_messages([(payload, root, side_key)])
    if isinstance(result, MamError):
        raise result
    return result
