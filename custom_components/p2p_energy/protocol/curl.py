"""Curl-P sponge (27 or 81 rounds).

Each trit is held as two bits ``(low, high)``: -1 -> (1, 0), 0 -> (1, 1),
1 -> (0, 1). In this encoding the Curl S-box ``S(a, b)`` is five AND/XOR gates
and needs no negation (found by exhaustive search over small circuits)::

    t     = low_a & low_b
    high' = (high_a & high_b) ^ t
    low'  = low_a ^ high_a ^ t

A round computes ``new[i] = S(s[P(i)], s[P(i + 1)])`` with
``P(i) = 364 * i = -i / 2 (mod 729)``. Rather than gathering ``s[P(i)]``, the
state is kept in a permuted order that changes every round: after ``r`` rounds
row ``j`` holds ``s[m_r * j]`` with ``m_r = (-2)^r (mod 729)``. Then output row
``j`` reads input row ``j`` as ``a`` and row ``j + 364 / m_r`` (wrapping) as
``b``, so every operand is a contiguous block of rows; the wrapped part of
``b`` is mirrored into a margin beside the state first. After the last round
one gather restores the natural order.

:class:`CurlBatch` runs many sponges in lock-step, bit-sliced over numpy
``uint64`` words: one word holds the same trit of 64 sponges ("lanes").
:class:`Curl` is a single sponge whose two bit planes are 729-bit Python
integers, so a round is a few big-integer operations instead of numpy calls.

When the compiled kernel is installed (:mod:`.kernel`), :meth:`CurlBatch.transform`
runs it on the same planes in place; everything else stays as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

from . import kernel
from .errors import InvalidTritsError, ProtocolError
from .trinary import Trits, TritsLike, validate_trits

HASH_LENGTH: Final = 243
STATE_LENGTH: Final = 3 * HASH_LENGTH
ALL_ONES: Final = np.uint64(0xFFFFFFFFFFFFFFFF)
SUPPORTED_ROUNDS: Final = (27, 81)
# A lane batch costs about as much as five single sponges whatever its size (numpy
# call overhead), so curl_hash_many hashes fewer rows than this one by one.
MIN_BATCH_LANES: Final = 6
CHAIN_GROUP_LANES: Final = 1024
"""Lanes per batch of hash chains: wider batches fall out of the cache."""

_HALF: Final = 364  # -1/2 (mod 729)
_MARGIN: Final = _HALF  # mirrored rows on each side of the state; |offset| <= 364
_BUFFER_ROWS: Final = _MARGIN + STATE_LENGTH + _MARGIN
_STATE_MASK: Final = (1 << STATE_LENGTH) - 1
_STATE_BYTES: Final = (STATE_LENGTH + 7) // 8
_SINGLE_PLANE_BYTES: Final = 96
"""A plane of one sponge for the compiled kernel: 729 bits in twelve 64-bit words."""

Planes = npt.NDArray[np.uint64]
LaneTrits = npt.NDArray[np.int8]
"""Trits of several lanes: shape ``(lanes, n)``."""


@dataclass(frozen=True)
class _RoundPlan:
    """Where each round's ``b`` operand starts, and how to undo the permutation."""

    offsets: tuple[int, ...]
    """Per round: row offset of ``b`` relative to ``a``, in -364..364."""
    natural_order: npt.NDArray[np.intp]
    """Row of the final permuted state that holds natural trit ``x``."""


@cache
def _round_plan(rounds: int) -> _RoundPlan:
    multiplier = 1
    offsets: list[int] = []
    for _ in range(rounds):
        offset = _HALF * pow(multiplier, -1, STATE_LENGTH) % STATE_LENGTH
        offsets.append(offset if offset <= _MARGIN else offset - STATE_LENGTH)
        multiplier = -2 * multiplier % STATE_LENGTH
    inverse = pow(multiplier, -1, STATE_LENGTH)
    order = np.arange(STATE_LENGTH, dtype=np.intp) * inverse % STATE_LENGTH
    order.setflags(write=False)
    return _RoundPlan(tuple(offsets), order)


def _check_rounds(rounds: int) -> None:
    if isinstance(rounds, bool) or rounds not in SUPPORTED_ROUNDS:
        raise ProtocolError(f"Curl-P rounds must be 27 or 81, got {rounds!r}")


def pack_lanes(trits: LaneTrits, words: int) -> tuple[Planes, Planes]:
    """Bit-slice ``(lanes, n)`` trits into two ``(n, words)`` planes."""
    lanes, length = trits.shape
    if lanes > 64 * words:
        raise ProtocolError(f"{lanes} lanes do not fit in {words} words")
    compiled = kernel.native()
    if compiled is not None and lanes and length:
        low_plane: Planes = np.empty((length, words), dtype=np.uint64)
        high_plane: Planes = np.empty((length, words), dtype=np.uint64)
        source = np.ascontiguousarray(trits, dtype=np.int8)
        compiled.pack_trits(source, lanes, length, low_plane, high_plane)
        return low_plane, high_plane
    padded = np.zeros((64 * words, length), dtype=np.int8)
    padded[:lanes] = trits
    low = np.packbits(np.ascontiguousarray((padded != 1).T), axis=1, bitorder="little")
    high = np.packbits(np.ascontiguousarray((padded != -1).T), axis=1, bitorder="little")
    return np.ascontiguousarray(low).view(np.uint64), np.ascontiguousarray(high).view(np.uint64)


def unpack_lanes(low: Planes, high: Planes, lanes: int) -> LaneTrits:
    """Inverse of :func:`pack_lanes`: ``(n, words)`` planes to ``(lanes, n)`` trits."""
    compiled = kernel.native()
    length = low.shape[0]
    if compiled is not None and lanes > 0 and length and lanes <= 64 * low.shape[1]:
        trits: LaneTrits = np.empty((lanes, length), dtype=np.int8)
        compiled.unpack_trits(
            np.ascontiguousarray(low), np.ascontiguousarray(high), length, lanes, trits
        )
        return trits
    low_bits = np.unpackbits(np.ascontiguousarray(low).view(np.uint8), axis=1, bitorder="little")
    high_bits = np.unpackbits(np.ascontiguousarray(high).view(np.uint8), axis=1, bitorder="little")
    trits = high_bits.astype(np.int8) - low_bits.astype(np.int8)
    return np.ascontiguousarray(trits.T[:lanes])


class CurlBatch:
    """Many Curl-P sponges run in lock-step, one per lane.

    ``low`` and ``high`` are the bit planes of the state in natural trit order,
    shape ``(729, words)``; bit ``k`` of word ``w`` belongs to lane ``64 * w + k``.
    """

    def __init__(self, lanes: int, rounds: int = 81) -> None:
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise ProtocolError(f"a Curl batch needs a positive lane count, got {lanes!r}")
        _check_rounds(rounds)
        self.lanes = lanes
        self.rounds = rounds
        self.words = (lanes + 63) // 64
        # Two buffers (the rounds alternate between them), each with margins
        # for the mirrored rows; buffer 0's middle rows are the public state.
        self._low: Planes = np.empty((2, _BUFFER_ROWS, self.words), dtype=np.uint64)
        self._high: Planes = np.empty((2, _BUFFER_ROWS, self.words), dtype=np.uint64)
        self._scratch: Planes = np.empty((STATE_LENGTH, self.words), dtype=np.uint64)
        self._prepare_views()
        self.reset()

    def _prepare_views(self) -> None:
        state = slice(_MARGIN, _MARGIN + STATE_LENGTH)
        self.low: Planes = self._low[0, state]
        self.high: Planes = self._high[0, state]
        self._plan = _round_plan(self.rounds)
        # The numpy rounds' operands, sliced on their first use (the compiled kernel
        # needs none of them, and slicing them costs more than a small batch's work).
        self._steps: list[tuple[Planes, ...]] | None = None

    def _prepare_steps(self) -> list[tuple[Planes, ...]]:
        """Slice every operand of every round once, so a round is only ufunc calls."""
        state = slice(_MARGIN, _MARGIN + STATE_LENGTH)
        plan = self._plan
        steps: list[tuple[Planes, ...]] = []
        source = 0
        for offset in plan.offsets:
            low, high = self._low[source], self._high[source]
            target = 1 - source
            if offset > 0:  # b runs past the end: mirror the first rows after it
                mirror_to = slice(_MARGIN + STATE_LENGTH, _MARGIN + STATE_LENGTH + offset)
                mirror_from = slice(_MARGIN, _MARGIN + offset)
            else:  # b starts before the state: mirror the last rows in front of it
                mirror_to = slice(_MARGIN + offset, _MARGIN)
                mirror_from = slice(_MARGIN + STATE_LENGTH + offset, _MARGIN + STATE_LENGTH)
            b_rows = slice(_MARGIN + offset, _MARGIN + offset + STATE_LENGTH)
            steps.append(
                (
                    low[mirror_to],
                    low[mirror_from],
                    high[mirror_to],
                    high[mirror_from],
                    low[state],
                    high[state],
                    low[b_rows],
                    high[b_rows],
                    self._low[target, state],
                    self._high[target, state],
                )
            )
            source = target
        self._final_low: Planes = self._low[source, state]
        self._final_high: Planes = self._high[source, state]
        self._steps = steps
        return steps

    def reset(self) -> None:
        """Set every lane's state to all zero trits."""
        self.low.fill(ALL_ONES)
        self.high.fill(ALL_ONES)

    def copy(self) -> CurlBatch:
        clone = CurlBatch(self.lanes, self.rounds)
        clone.low[:] = self.low
        clone.high[:] = self.high
        return clone

    def transform(self) -> None:
        """Apply the Curl-P permutation to every lane."""
        compiled = kernel.native()
        if compiled is not None:
            compiled.transform(self.low, self.high, self.rounds)
            return
        scratch = self._scratch
        steps = self._steps if self._steps is not None else self._prepare_steps()
        bitwise_and, bitwise_xor, copyto = np.bitwise_and, np.bitwise_xor, np.copyto
        for (
            low_mirror_to,
            low_mirror_from,
            high_mirror_to,
            high_mirror_from,
            a_low,
            a_high,
            b_low,
            b_high,
            new_low,
            new_high,
        ) in steps:
            low_mirror_to[...] = low_mirror_from  # cheaper than np.copyto on small arrays
            high_mirror_to[...] = high_mirror_from
            bitwise_and(a_low, b_low, out=scratch)
            bitwise_and(a_high, b_high, out=new_high)
            bitwise_xor(new_high, scratch, out=new_high)
            bitwise_xor(a_low, a_high, out=new_low)
            bitwise_xor(new_low, scratch, out=new_low)
        order = self._plan.natural_order
        for final, state in ((self._final_low, self.low), (self._final_high, self.high)):
            if final is state:  # cannot gather in place (even round counts)
                np.take(final, order, axis=0, out=scratch, mode="clip")
                copyto(state, scratch)
            else:
                np.take(final, order, axis=0, out=state, mode="clip")

    def absorb(self, trits: LaneTrits) -> None:
        """Absorb ``(lanes, n)`` trits, 243 per transform (a short tail is allowed)."""
        if trits.ndim != 2 or trits.shape[0] != self.lanes or trits.shape[1] == 0:
            raise InvalidTritsError(f"expected trits of shape ({self.lanes}, n) with n > 0")
        length = trits.shape[1]
        low, high = pack_lanes(trits, self.words)
        for offset in range(0, length, HASH_LENGTH):
            chunk = min(HASH_LENGTH, length - offset)
            self.low[:chunk] = low[offset : offset + chunk]
            self.high[:chunk] = high[offset : offset + chunk]
            self.transform()

    def squeeze(self, length: int = HASH_LENGTH) -> LaneTrits:
        """Squeeze ``length`` trits from every lane, 243 per transform."""
        _check_length(length)
        parts: list[LaneTrits] = []
        for offset in range(0, length, HASH_LENGTH):
            chunk = min(HASH_LENGTH, length - offset)
            parts.append(unpack_lanes(self.low[:chunk], self.high[:chunk], self.lanes))
            self.transform()
        return np.concatenate(parts, axis=1)

    def state(self) -> LaneTrits:
        """The full 729-trit state of every lane (for tests and MAM's sponge)."""
        return unpack_lanes(self.low, self.high, self.lanes)

    def set_state(self, trits: LaneTrits) -> None:
        if trits.shape != (self.lanes, STATE_LENGTH):
            raise InvalidTritsError(f"a batch state has shape ({self.lanes}, {STATE_LENGTH})")
        low, high = pack_lanes(trits, self.words)
        self.low[:] = low
        self.high[:] = high


def _check_length(length: int) -> None:
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ProtocolError(f"squeeze length must be a positive integer, got {length!r}")


def _bits_to_int(bits: npt.NDArray[np.bool_] | npt.NDArray[np.uint8]) -> int:
    return int.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little")


def _int_to_bits(value: int, length: int) -> npt.NDArray[np.uint8]:
    size = max(_STATE_BYTES, (length + 7) // 8)  # callers may read fewer bits than a state
    raw = np.frombuffer(value.to_bytes(size, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:length]


@cache
def _pair_order(rounds: int) -> npt.NDArray[np.intp]:
    """The single sponge's final gather for both planes side by side."""
    order = _round_plan(rounds).natural_order
    return np.concatenate([order, order + STATE_LENGTH])


class Curl:
    """A single Curl-P sponge over trit arrays.

    Its bit planes are 729-bit integers (bit ``x`` is trit ``x``), which makes
    one sponge several times faster than a one-lane :class:`CurlBatch`.
    """

    def __init__(self, rounds: int = 81) -> None:
        _check_rounds(rounds)
        self._rounds = rounds
        plan = _round_plan(rounds)
        # Rotating right by d brings row j + d to row j.
        self._shifts = tuple(
            (offset % STATE_LENGTH, STATE_LENGTH - offset % STATE_LENGTH) for offset in plan.offsets
        )
        self._natural_order = plan.natural_order
        self._pair_order = _pair_order(rounds)
        self._low = _STATE_MASK
        self._high = _STATE_MASK

    @property
    def rounds(self) -> int:
        return self._rounds

    def reset(self) -> None:
        self._low = _STATE_MASK
        self._high = _STATE_MASK

    def copy(self) -> Curl:
        clone = Curl.__new__(Curl)
        clone._rounds, clone._shifts = self._rounds, self._shifts
        clone._natural_order, clone._pair_order = self._natural_order, self._pair_order
        clone._low, clone._high = self._low, self._high
        return clone

    def transform(self) -> None:
        compiled = kernel.native()
        if compiled is not None:
            planes = self._planes()
            compiled.transform_single(planes, self._rounds)
            self._set_planes(planes)
            return
        low, high, mask = self._low, self._high, _STATE_MASK
        for right, left in self._shifts:
            low_b = (low >> right) | ((low << left) & mask)
            high_b = (high >> right) | ((high << left) & mask)
            carry = low & low_b
            low, high = low ^ high ^ carry, (high & high_b) ^ carry
        # Both planes in one gather: half the numpy calls of gathering each.
        both = _bits_to_int(
            _int_to_bits(low | (high << STATE_LENGTH), 2 * STATE_LENGTH)[self._pair_order]
        )
        self._low = both & mask
        self._high = both >> STATE_LENGTH

    def _planes(self) -> bytearray:
        """The state as the compiled kernel takes one sponge: low plane, high plane."""
        return bytearray(
            self._low.to_bytes(_SINGLE_PLANE_BYTES, "little")
            + self._high.to_bytes(_SINGLE_PLANE_BYTES, "little")
        )

    def _set_planes(self, planes: bytearray) -> None:
        self._low = int.from_bytes(planes[:_SINGLE_PLANE_BYTES], "little")
        self._high = int.from_bytes(planes[_SINGLE_PLANE_BYTES:], "little")

    def absorb(self, trits: TritsLike) -> None:
        """Absorb trits, 243 per transform (a short tail is allowed)."""
        array = validate_trits(trits)
        if array.size == 0:
            raise InvalidTritsError("cannot absorb an empty trit sequence")
        compiled = kernel.native()
        if compiled is not None:
            planes = self._planes()
            compiled.absorb_single(planes, self._rounds, np.ascontiguousarray(array, np.int8))
            self._set_planes(planes)
            return
        for offset in range(0, array.size, HASH_LENGTH):
            chunk = array[offset : offset + HASH_LENGTH]
            keep = _STATE_MASK ^ ((1 << chunk.size) - 1)
            self._low = (self._low & keep) | _bits_to_int(chunk != 1)
            self._high = (self._high & keep) | _bits_to_int(chunk != -1)
            self.transform()

    def squeeze(self, length: int = HASH_LENGTH) -> Trits:
        """Squeeze ``length`` trits, 243 per transform."""
        _check_length(length)
        parts: list[Trits] = []
        for offset in range(0, length, HASH_LENGTH):
            chunk = min(HASH_LENGTH, length - offset)
            parts.append(self._trits(chunk))
            self.transform()
        return np.concatenate(parts)

    def _trits(self, length: int) -> Trits:
        low = _int_to_bits(self._low, length).view(np.int8)
        high = _int_to_bits(self._high, length).view(np.int8)
        return high - low

    @property
    def state(self) -> Trits:
        return self._trits(STATE_LENGTH)

    @state.setter
    def state(self, trits: TritsLike) -> None:
        array = validate_trits(trits, STATE_LENGTH)
        self._low = _bits_to_int(array != 1)
        self._high = _bits_to_int(array != -1)

    def bit_planes(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """The state's low and high bits (729 each, 0 or 1, writable copies): what a
        bit-sliced batch starts from without going through trits."""
        return (
            _int_to_bits(self._low, STATE_LENGTH).copy(),
            _int_to_bits(self._high, STATE_LENGTH).copy(),
        )


def curl_hash(trits: TritsLike, rounds: int = 81, length: int = HASH_LENGTH) -> Trits:
    """Absorb ``trits`` into a fresh sponge and squeeze ``length`` trits."""
    sponge = Curl(rounds)
    sponge.absorb(trits)
    return sponge.squeeze(length)


def curl_hash_many(trits: LaneTrits, rounds: int = 81, length: int = HASH_LENGTH) -> LaneTrits:
    """Hash each row of ``(n_messages, n_trits)`` in parallel lanes."""
    matrix = np.asarray(trits)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise InvalidTritsError("curl_hash_many expects a non-empty (messages, trits) matrix")
    if not np.issubdtype(matrix.dtype, np.integer) or matrix.min() < -1 or matrix.max() > 1:
        raise InvalidTritsError("trits may only hold -1, 0 and 1")
    rows = matrix.astype(np.int8, copy=False)
    if rows.shape[0] < MIN_BATCH_LANES:
        return np.stack([curl_hash(row, rounds, length) for row in rows])
    sponge = CurlBatch(rows.shape[0], rounds)
    sponge.absorb(rows)
    return sponge.squeeze(length)


def curl_hash_chains(chunks: LaneTrits, counts: npt.ArrayLike, rounds: int = 81) -> LaneTrits:
    """Hash each 243-trit row of ``chunks`` ``counts[row]`` times, all rows in lanes.

    One link of a chain is a fresh sponge absorbing the row and squeezing 243
    trits (ISS key and signature chains). Rows are sorted by chain length and run
    in groups of :data:`CHAIN_GROUP_LANES` (a batch much wider than that leaves
    the cache and runs several times slower per lane); within a group the lanes
    still running are always a prefix, which shrinks a word at a time.
    """
    _check_rounds(rounds)
    steps = np.asarray(counts, dtype=np.int64)
    if chunks.ndim != 2 or chunks.shape[1] != HASH_LENGTH or steps.shape != (chunks.shape[0],):
        raise InvalidTritsError("curl_hash_chains expects (n, 243) chunks and n counts")
    if steps.size and steps.min() < 0:
        raise ProtocolError("a hash chain cannot have a negative length")
    result = np.array(chunks, dtype=np.int8)
    order = np.argsort(-steps, kind="stable")
    running = int(np.count_nonzero(steps > 0))
    for first in range(0, running, CHAIN_GROUP_LANES):
        group = order[first : min(first + CHAIN_GROUP_LANES, running)]
        result[group] = _run_chains(result[group], steps[group], rounds)
    return result


def _run_chains(rows: LaneTrits, sorted_steps: npt.NDArray[np.int64], rounds: int) -> LaneTrits:
    """Chains of lengths ``sorted_steps`` (descending, all positive) on ``rows``."""
    result = rows.copy()
    running = rows.shape[0]
    longest = int(sorted_steps[0])
    batch = CurlBatch(running, rounds)
    low, high = pack_lanes(result, batch.words)
    batch.low[:HASH_LENGTH] = low
    batch.high[:HASH_LENGTH] = high
    # Lanes finishing after step k occupy sorted positions [ends[k + 1], ends[k]).
    ends = [int(np.count_nonzero(sorted_steps >= k)) for k in range(longest + 2)]
    for step in range(1, longest + 1):
        batch.transform()
        first, last = ends[step + 1], ends[step]
        if last > first:
            first_word, last_word = first // 64, (last - 1) // 64 + 1
            words = slice(first_word, last_word)
            done = unpack_lanes(
                batch.low[:HASH_LENGTH, words],
                batch.high[:HASH_LENGTH, words],
                (last_word - first_word) * 64,
            )
            offset = first_word * 64
            result[first:last] = done[first - offset : last - offset]
        still = ends[step + 1]
        if still == 0:
            break
        batch.low[HASH_LENGTH:] = ALL_ONES
        batch.high[HASH_LENGTH:] = ALL_ONES
        needed_words = (still + 63) // 64
        if needed_words < batch.words:
            smaller = CurlBatch(still, rounds)
            smaller.low[:] = batch.low[:, :needed_words]
            smaller.high[:] = batch.high[:, :needed_words]
            batch = smaller
    return result
