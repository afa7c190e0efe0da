"""Curl-P sponge (27 or 81 rounds), bit-sliced over numpy ``uint64`` words.

Each trit of the 729-trit state is held as two bit planes so that one word
carries the same trit of 64 independent sponges ("lanes"). Encoding per lane:
-1 -> (low=1, high=0), 0 -> (1, 1), 1 -> (0, 1).

One round computes ``new[i] = S(s[P(i)], s[P(i + 1)])`` with
``P(i) = 364 * i mod 729``. Since ``P(2k) = -k`` and ``P(2k + 1) = 364 - k``,
the inputs of all even outputs followed by all odd outputs are two reversed
contiguous slices of the state extended by a mirror of its first 365 trits,
so a round is a handful of whole-array operations with no fancy indexing.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from .errors import InvalidTritsError, ProtocolError
from .trinary import Trits, TritsLike, validate_trits

HASH_LENGTH: Final = 243
STATE_LENGTH: Final = 3 * HASH_LENGTH
_MIRROR: Final = 365  # state rows 0..364 are mirrored after row 728
_EVEN: Final = 365  # outputs 0, 2, ..., 728
ALL_ONES: Final = np.uint64(0xFFFFFFFFFFFFFFFF)

Planes = npt.NDArray[np.uint64]
LaneTrits = npt.NDArray[np.int8]
"""Trits of several lanes: shape ``(lanes, n)``."""


def pack_lanes(trits: LaneTrits, words: int) -> tuple[Planes, Planes]:
    """Bit-slice ``(lanes, n)`` trits into two ``(n, words)`` planes."""
    lanes, length = trits.shape
    if lanes > 64 * words:
        raise ProtocolError(f"{lanes} lanes do not fit in {words} words")
    padded = np.zeros((64 * words, length), dtype=np.int8)
    padded[:lanes] = trits
    low = np.packbits(np.ascontiguousarray((padded != 1).T), axis=1, bitorder="little")
    high = np.packbits(np.ascontiguousarray((padded != -1).T), axis=1, bitorder="little")
    return np.ascontiguousarray(low).view(np.uint64), np.ascontiguousarray(high).view(np.uint64)


def unpack_lanes(low: Planes, high: Planes, lanes: int) -> LaneTrits:
    """Inverse of :func:`pack_lanes`: ``(n, words)`` planes to ``(lanes, n)`` trits."""
    low_bits = np.unpackbits(np.ascontiguousarray(low).view(np.uint8), axis=1, bitorder="little")
    high_bits = np.unpackbits(np.ascontiguousarray(high).view(np.uint8), axis=1, bitorder="little")
    trits = high_bits.astype(np.int8) - low_bits.astype(np.int8)
    return np.ascontiguousarray(trits.T[:lanes])


class CurlBatch:
    """Many Curl-P sponges run in lock-step, one per lane."""

    def __init__(self, lanes: int, rounds: int = 81) -> None:
        if lanes < 1:
            raise ProtocolError("a Curl batch needs at least one lane")
        if rounds not in (27, 81):
            raise ProtocolError(f"Curl-P rounds must be 27 or 81, got {rounds}")
        self.lanes = lanes
        self.rounds = rounds
        self.words = (lanes + 63) // 64
        shape = (STATE_LENGTH + _MIRROR, self.words)
        self.low: Planes = np.empty(shape, dtype=np.uint64)
        self.high: Planes = np.empty(shape, dtype=np.uint64)
        self._t1: Planes = np.empty((STATE_LENGTH, self.words), dtype=np.uint64)
        self._t2: Planes = np.empty((STATE_LENGTH, self.words), dtype=np.uint64)
        self.reset()

    def reset(self) -> None:
        """Set every lane's state to all zero trits."""
        self.low.fill(ALL_ONES)
        self.high.fill(ALL_ONES)

    def copy(self) -> CurlBatch:
        clone = CurlBatch.__new__(CurlBatch)
        clone.lanes, clone.rounds, clone.words = self.lanes, self.rounds, self.words
        clone.low, clone.high = self.low.copy(), self.high.copy()
        clone._t1, clone._t2 = np.empty_like(self._t1), np.empty_like(self._t2)
        return clone

    def transform(self) -> None:
        """Apply the Curl-P permutation to every lane."""
        low, high, t1, t2 = self.low, self.high, self._t1, self._t2
        a_low, a_high = low[STATE_LENGTH:0:-1], high[STATE_LENGTH:0:-1]
        b_low = low[STATE_LENGTH + _MIRROR - 1 : _MIRROR - 1 : -1]
        b_high = high[STATE_LENGTH + _MIRROR - 1 : _MIRROR - 1 : -1]
        even_low, odd_low = low[0:STATE_LENGTH:2], low[1:STATE_LENGTH:2]
        even_high, odd_high = high[0:STATE_LENGTH:2], high[1:STATE_LENGTH:2]
        for _ in range(self.rounds):
            low[STATE_LENGTH:] = low[:_MIRROR]
            high[STATE_LENGTH:] = high[:_MIRROR]
            # delta = (low_a | ~high_b) & (low_b ^ high_a)
            np.invert(b_high, out=t1)
            np.bitwise_or(a_low, t1, out=t1)
            np.bitwise_xor(b_low, a_high, out=t2)
            np.bitwise_and(t1, t2, out=t1)
            # new_high = (low_a ^ high_b) | delta ; new_low = ~delta
            np.bitwise_xor(a_low, b_high, out=t2)
            np.bitwise_or(t2[:_EVEN], t1[:_EVEN], out=even_high)
            np.bitwise_or(t2[_EVEN:], t1[_EVEN:], out=odd_high)
            np.invert(t1[:_EVEN], out=even_low)
            np.invert(t1[_EVEN:], out=odd_low)

    def absorb(self, trits: LaneTrits) -> None:
        """Absorb ``(lanes, n)`` trits, 243 per transform (a short tail is allowed)."""
        if trits.ndim != 2 or trits.shape[0] != self.lanes:
            raise InvalidTritsError(f"expected trits of shape ({self.lanes}, n)")
        length = trits.shape[1]
        low, high = pack_lanes(trits, self.words)
        offset = 0
        while True:
            chunk = min(HASH_LENGTH, length - offset)
            self.low[:chunk] = low[offset : offset + chunk]
            self.high[:chunk] = high[offset : offset + chunk]
            self.transform()
            offset += HASH_LENGTH
            if offset >= length:
                break

    def squeeze(self, length: int = HASH_LENGTH) -> LaneTrits:
        """Squeeze ``length`` trits from every lane, 243 per transform."""
        parts: list[LaneTrits] = []
        remaining = length
        while remaining > 0:
            chunk = min(HASH_LENGTH, remaining)
            parts.append(unpack_lanes(self.low[:chunk], self.high[:chunk], self.lanes))
            self.transform()
            remaining -= HASH_LENGTH
        return np.concatenate(parts, axis=1)

    def state(self) -> LaneTrits:
        """The full 729-trit state of every lane (for tests and MAM's sponge)."""
        return unpack_lanes(self.low[:STATE_LENGTH], self.high[:STATE_LENGTH], self.lanes)

    def set_state(self, trits: LaneTrits) -> None:
        low, high = pack_lanes(trits, self.words)
        self.low[:STATE_LENGTH] = low
        self.high[:STATE_LENGTH] = high


class Curl:
    """A single Curl-P sponge over trit arrays."""

    def __init__(self, rounds: int = 81) -> None:
        self._batch = CurlBatch(1, rounds)

    @property
    def rounds(self) -> int:
        return self._batch.rounds

    def reset(self) -> None:
        self._batch.reset()

    def copy(self) -> Curl:
        clone = Curl.__new__(Curl)
        clone._batch = self._batch.copy()
        return clone

    def absorb(self, trits: TritsLike) -> None:
        array = validate_trits(trits)
        if array.size == 0:
            raise InvalidTritsError("cannot absorb an empty trit sequence")
        self._batch.absorb(array.reshape(1, -1))

    def squeeze(self, length: int = HASH_LENGTH) -> Trits:
        return self._batch.squeeze(length)[0]

    def transform(self) -> None:
        self._batch.transform()

    @property
    def state(self) -> Trits:
        return self._batch.state()[0]

    @state.setter
    def state(self, trits: TritsLike) -> None:
        self._batch.set_state(validate_trits(trits, STATE_LENGTH).reshape(1, -1))


def curl_hash(trits: TritsLike, rounds: int = 81, length: int = HASH_LENGTH) -> Trits:
    """Absorb ``trits`` into a fresh sponge and squeeze ``length`` trits."""
    sponge = Curl(rounds)
    sponge.absorb(trits)
    return sponge.squeeze(length)


def curl_hash_many(trits: LaneTrits, rounds: int = 81, length: int = HASH_LENGTH) -> LaneTrits:
    """Hash each row of ``(n_messages, n_trits)`` in parallel lanes."""
    matrix = np.asarray(trits, dtype=np.int8)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise InvalidTritsError("curl_hash_many expects a non-empty (messages, trits) matrix")
    if matrix.size and (matrix.min() < -1 or matrix.max() > 1):
        raise InvalidTritsError("trits may only hold -1, 0 and 1")
    sponge = CurlBatch(matrix.shape[0], rounds)
    sponge.absorb(matrix)
    return sponge.squeeze(length)
