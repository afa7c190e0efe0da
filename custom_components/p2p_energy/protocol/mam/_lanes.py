"""Many independent Curl-P-27 sponges stepped together.

MAM spends its time in two shapes of Curl work: long sequential sponges (one
per message or Merkle leaf) and short hash chains (one per signature or key
fragment, 0 to 27 links each). :class:`LaneSponges` runs a group of sequential
sponges side by side, each able to sit out a step or absorb fewer trits than
its neighbours; hash chains of different lengths run through
``curl.curl_hash_chains``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from ..curl import HASH_LENGTH, STATE_LENGTH, Curl, CurlBatch, pack_lanes, unpack_lanes

if TYPE_CHECKING:
    from ..trinary import Trits

MAM_ROUNDS: Final = 27
LANE_BITS: Final = 64
SINGLE_SPONGE_LANES: Final = 4
"""Up to this many lanes, separate single sponges beat one bit-sliced batch."""

LaneTrits = npt.NDArray[np.int8]
Planes = npt.NDArray[np.uint64]
Counts = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]


def subtract_planes(
    a_low: Planes, a_high: Planes, b_low: Planes, b_high: Planes
) -> tuple[Planes, Planes]:
    """``a - b`` (balanced, mod 3) for trits given as bit planes (see :mod:`..curl`)."""
    a_pos, a_neg, a_zero = ~a_low, ~a_high, a_low & a_high
    b_pos, b_neg, b_zero = ~b_low, ~b_high, b_low & b_high
    positive = (a_pos & b_zero) | (a_zero & b_neg) | (a_neg & b_pos)
    negative = (a_neg & b_zero) | (a_zero & b_pos) | (a_pos & b_neg)
    return ~positive, ~negative


def _lane_mask(active: Flags, words: int) -> npt.NDArray[np.uint64]:
    """One bit per lane, set for active lanes, as ``(words,)`` uint64."""
    bits = np.zeros(words * LANE_BITS, dtype=bool)
    bits[: active.size] = active
    return np.packbits(bits, bitorder="little").view(np.uint64)


class LaneSponges:
    """``lanes`` Curl-P-27 sponges with MAM's absorb semantics.

    Absorbing overwrites the first trits of the state (243 at most) and then
    transforms, as the MAM libraries do; a short chunk leaves the rest of the
    rate as it was.
    """

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        self._singles: list[Curl] | None = None
        self._batch: CurlBatch | None = None
        if lanes <= SINGLE_SPONGE_LANES:
            self._singles = [Curl(MAM_ROUNDS) for _ in range(lanes)]
        else:
            self._batch = CurlBatch(lanes, MAM_ROUNDS)

    def rate(self) -> LaneTrits:
        """The first 243 trits of every lane's state, ``(lanes, 243)``."""
        if self._singles is not None:
            return np.stack([sponge.state[:HASH_LENGTH] for sponge in self._singles])
        assert self._batch is not None
        return unpack_lanes(
            self._batch.low[:HASH_LENGTH], self._batch.high[:HASH_LENGTH], self.lanes
        )

    def states(self) -> LaneTrits:
        """The full 729-trit state of every lane, ``(lanes, 729)``."""
        if self._singles is not None:
            return np.stack([sponge.state for sponge in self._singles])
        assert self._batch is not None
        return unpack_lanes(self._batch.low, self._batch.high, self.lanes)

    def absorb(
        self,
        chunk: LaneTrits,
        lengths: Counts | None = None,
        active: Flags | None = None,
    ) -> None:
        """Each active lane overwrites its first ``lengths[lane]`` trits (at least one)
        with its row of ``chunk`` (at most 243 wide) and transforms; other lanes stay
        untouched."""
        width = chunk.shape[1]
        if self._singles is not None:
            for lane, sponge in enumerate(self._singles):
                if active is not None and not active[lane]:
                    continue
                length = width if lengths is None else int(lengths[lane])
                sponge.absorb(chunk[lane, :length])
            return
        batch = self._batch
        assert batch is not None
        if lengths is not None and bool((lengths < width).any()):
            keep = np.arange(width) >= lengths[:, None]
            chunk = np.where(keep, self.rate()[:, :width], chunk)
        low, high = pack_lanes(chunk, batch.words)
        if active is None or bool(active.all()):
            batch.low[:width] = low
            batch.high[:width] = high
            batch.transform()
            return
        saved_low = batch.low[:STATE_LENGTH].copy()
        saved_high = batch.high[:STATE_LENGTH].copy()
        batch.low[:width] = low
        batch.high[:width] = high
        batch.transform()
        mask = _lane_mask(active, batch.words)
        keep_old = ~mask
        batch.low[:STATE_LENGTH] = (batch.low[:STATE_LENGTH] & mask) | (saved_low & keep_old)
        batch.high[:STATE_LENGTH] = (batch.high[:STATE_LENGTH] & mask) | (saved_high & keep_old)

    @property
    def batch(self) -> CurlBatch | None:
        """The bit-sliced sponges, or ``None`` when the lanes are single sponges."""
        return self._batch

    def absorb_planes(
        self, low: Planes, high: Planes, lengths: Counts, active: Flags | None = None
    ) -> None:
        """:meth:`absorb` for a chunk given as ``(243, words)`` bit planes (batch only)."""
        batch = self._batch
        assert batch is not None
        if bool((lengths < HASH_LENGTH).any()):
            # Rows at or beyond a lane's length keep that lane's rate.
            keep_rows = np.arange(HASH_LENGTH)[:, None] >= lengths[None, :]
            keep = np.zeros((HASH_LENGTH, batch.words * LANE_BITS), dtype=bool)
            keep[:, : self.lanes] = keep_rows
            keep_bits = np.packbits(keep, axis=1, bitorder="little").view(np.uint64)
            low = (low & ~keep_bits) | (batch.low[:HASH_LENGTH] & keep_bits)
            high = (high & ~keep_bits) | (batch.high[:HASH_LENGTH] & keep_bits)
        if active is None or bool(active.all()):
            batch.low[:HASH_LENGTH] = low
            batch.high[:HASH_LENGTH] = high
            batch.transform()
            return
        saved_low = batch.low.copy()
        saved_high = batch.high.copy()
        batch.low[:HASH_LENGTH] = low
        batch.high[:HASH_LENGTH] = high
        batch.transform()
        mask = _lane_mask(active, batch.words)
        keep_old = ~mask
        batch.low[:] = (batch.low & mask) | (saved_low & keep_old)
        batch.high[:] = (batch.high & mask) | (saved_high & keep_old)

    def absorb_all(self, trits: LaneTrits) -> None:
        """Absorb ``(lanes, n)`` trits in 243-trit chunks, every lane alike."""
        for offset in range(0, trits.shape[1], HASH_LENGTH):
            self.absorb(trits[:, offset : offset + HASH_LENGTH])

    def squeeze_block(self) -> LaneTrits:
        """Read the rate of every lane, then transform (one squeeze step)."""
        rate = self.rate()
        if self._singles is not None:
            for sponge in self._singles:
                sponge.transform()
        else:
            assert self._batch is not None
            self._batch.transform()
        return rate

    def state(self, lane: int) -> Trits:
        """The full 729-trit state of one lane."""
        if self._singles is not None:
            return self._singles[lane].state
        assert self._batch is not None
        words = slice(lane // LANE_BITS, lane // LANE_BITS + 1)
        trits = unpack_lanes(
            self._batch.low[:STATE_LENGTH, words], self._batch.high[:STATE_LENGTH, words], LANE_BITS
        )
        state: Trits = trits[lane % LANE_BITS]
        return state
