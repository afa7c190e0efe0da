"""MAM's nonce search ("Hamming" search).

After the masked message a nonce of 81 trits is absorbed such that the first
``81 * security`` trits of the resulting rate (the HMAC that gets signed) sum
to zero while no shorter multiple of 81 trits does; a reader derives the
security level from where the sum first reaches zero.

Any such nonce is valid. To produce byte-identical payloads this module walks
the candidates in the order of the reference implementations: the candidate
state is the sponge state itself with trits 0..3 replaced by the pattern of a
search lane and the nonce's last third (trits 54..80), read as a balanced
number, increased by the iteration number (1, 2, ...). The first iteration
with a passing lane wins, and within it the lowest lane.

@iota/mam.js searches 64 lanes but returns the lane number with 0 meaning
"not found", so an iteration where lane 0 passes counts as a miss. The Rust
core of @iota/mam, compiled to 32-bit WebAssembly, searches 32 lanes, lane 0
included, whose patterns its ``offset()`` computes for 32-bit words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from ..curl import ALL_ONES, HASH_LENGTH, STATE_LENGTH, CurlBatch, unpack_lanes
from ..errors import MamError

if TYPE_CHECKING:
    from ..trinary import Trits
    from .reference import MamReference

NONCE_LENGTH: Final = HASH_LENGTH // 3
SECURITY_SPAN: Final = HASH_LENGTH // 3
"""Trits of the HMAC per security level."""
MAX_ITERATIONS: Final = 3_000
"""Far beyond need: an iteration fails with probability below 0.35 even for 32 lanes."""

_ROUNDS: Final = 27


@dataclass(frozen=True)
class _SearchOrder:
    low: tuple[int, ...]
    """Low bit planes of the first four nonce trits, one bit per lane."""
    high: tuple[int, ...]
    lanes: int
    lane_zero_misses: bool

    def patterns(self) -> npt.NDArray[np.int8]:
        """The first four nonce trits of every lane, ``(lanes, 4)``."""
        patterns = np.empty((self.lanes, len(self.low)), dtype=np.int8)
        for lane in range(self.lanes):
            for trit, (low, high) in enumerate(zip(self.low, self.high, strict=True)):
                patterns[lane, trit] = ((high >> lane) & 1) - ((low >> lane) & 1)
        return patterns


_ORDERS: Final[dict[MamReference, _SearchOrder]] = {
    "mam.js": _SearchOrder(
        low=(0xDB6DB6DB6DB6DB6D, 0xF1F8FC7E3F1F8FC7, 0x7FFFE00FFFFC01FF, 0xFFC0000007FFFFFF),
        high=(0xB6DB6DB6DB6DB6DB, 0x8FC7E3F1F8FC7E3F, 0xFFC01FFFF803FFFF, 0x003FFFFFFFFFFFFF),
        lanes=64,
        lane_zero_misses=True,
    ),
    "mam.client.js": _SearchOrder(
        low=(0x6DB6DB6D, 0x1F8FC7E3, 0xFFFFC01F, 0xFFFFFFFF),
        high=(0xDB6DB6DB, 0xFC7E3F1F, 0xFF803FFF, 0x0007FFFF),
        lanes=32,
        lane_zero_misses=False,
    ),
}
_PATTERNS: Final = {reference: order.patterns() for reference, order in _ORDERS.items()}


def _prefix_sums(hmacs: npt.NDArray[np.int8]) -> npt.NDArray[np.int64]:
    """Sums of the first 81, 162 and 243 trits of each row of ``(n, 243)`` HMACs."""
    blocks = hmacs.reshape(-1, 3, SECURITY_SPAN).sum(axis=2, dtype=np.int64)
    return np.cumsum(blocks, axis=1)


def hmac_security(hmacs: npt.NDArray[np.int8]) -> npt.NDArray[np.int64]:
    """The security level each row of ``(n, 243)`` HMACs encodes: the first ``k`` whose
    first ``81 * k`` trits sum to zero, or 0 when there is none."""
    zero = _prefix_sums(hmacs) == 0
    return np.where(zero.any(axis=1), zero.argmax(axis=1) + 1, 0)


def find_nonce(
    state: Trits, security: int, reference: MamReference = "mam.js", length: int = NONCE_LENGTH
) -> Trits:
    """The nonce ``reference`` would absorb next, given the full sponge ``state``.

    MAM uses 81-trit nonces; the reference search takes other lengths too (its
    counter is always the last third).
    """
    if state.shape != (STATE_LENGTH,):
        raise MamError(f"the nonce search needs the {STATE_LENGTH}-trit sponge state")
    nonce: Trits = find_nonces(state.reshape(1, STATE_LENGTH), security, reference, length)[0]
    return nonce


def _balanced_digits(values: npt.NDArray[np.int64], digits: int) -> npt.NDArray[np.int8]:
    """Balanced-ternary digits of each value, ``(n, digits)``, least significant first."""
    remaining = values.copy()
    result = np.empty((values.size, digits), dtype=np.int8)
    for digit in range(digits):
        trit = (remaining + 1) % 3 - 1
        result[:, digit] = trit
        remaining = (remaining - trit) // 3
    return result


def _word_planes(
    trits: npt.NDArray[np.int8],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """``(n, k)`` trits as ``(k, n)`` bit planes where each trit fills a whole word."""
    zero = np.uint64(0)
    return (
        np.where(trits.T != 1, ALL_ONES, zero),
        np.where(trits.T != -1, ALL_ONES, zero),
    )


def find_nonces(
    states: npt.NDArray[np.int8],
    security: int,
    reference: MamReference = "mam.js",
    length: int = NONCE_LENGTH,
) -> npt.NDArray[np.int8]:
    """:func:`find_nonce` for each row of ``(n, 729)`` states, all searched together.

    Each state's search lanes fill one 64-bit word (the reference's lane patterns
    are exactly the bits of :data:`_ORDERS`), so one transform tries an iteration
    of every state still searching.
    """
    if states.ndim != 2 or states.shape[1] != STATE_LENGTH:
        raise MamError(f"the nonce search needs (n, {STATE_LENGTH}) sponge states")
    if not 1 <= security <= 3:
        raise MamError(f"security must be 1, 2 or 3, got {security}")
    if length % 3 or not 6 <= length <= NONCE_LENGTH:
        raise MamError(f"nonce length must be a multiple of 3 in 6..81, got {length}")
    order, patterns = _ORDERS[reference], _PATTERNS[reference]
    counter_trits = slice(2 * length // 3, length)
    digits = length // 3
    modulus = 3**digits
    offset = (modulus - 1) // 2
    counters = states[:, counter_trits].astype(np.int64) @ (3 ** np.arange(digits, dtype=np.int64))
    base_low, base_high = _word_planes(states)
    base_low[: len(order.low)] = np.array(order.low, dtype=np.uint64)[:, None]
    base_high[: len(order.high)] = np.array(order.high, dtype=np.uint64)[:, None]
    nonces = np.array(states[:, :length], dtype=np.int8)
    pending = np.arange(states.shape[0])
    for iteration in range(1, MAX_ITERATIONS + 1):
        values = (counters[pending] + iteration + offset) % modulus - offset
        counter = _balanced_digits(values, digits)
        batch = CurlBatch(64 * pending.size, _ROUNDS)
        batch.low[:] = base_low[:, pending]
        batch.high[:] = base_high[:, pending]
        batch.low[counter_trits], batch.high[counter_trits] = _word_planes(counter)
        batch.transform()
        hmacs = unpack_lanes(batch.low[:HASH_LENGTH], batch.high[:HASH_LENGTH], 64 * pending.size)
        sums = _prefix_sums(hmacs)
        passing = (sums[:, security - 1] == 0) & np.all(sums[:, : security - 1] != 0, axis=1)
        per_state = passing.reshape(pending.size, 64)[:, : order.lanes]
        lowest = per_state.argmax(axis=1)
        # As in find_nonce: @iota/mam.js reads a lowest passing lane 0 as "none".
        won = per_state.any(axis=1) & ((lowest > 0) | (not order.lane_zero_misses))
        rows = pending[won]
        nonces[rows, : patterns.shape[1]] = patterns[lowest[won]]
        nonces[rows, counter_trits] = counter[won]
        pending = pending[~won]
        if pending.size == 0:
            return nonces
    raise MamError(f"no nonce found in {MAX_ITERATIONS} iterations")
