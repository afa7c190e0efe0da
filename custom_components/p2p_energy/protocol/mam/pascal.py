"""MAM's "pascal" encoding of non-negative integers as self-delimiting trits.

The value's balanced-ternary trits are padded to whole trytes; every tryte but
the last is made non-positive and the last positive by negating it where
needed, and a balanced integer after them records, bit by bit, which trytes
were negated. A decoder finds the end of the number at the first positive
tryte. Zero is the special word ``1, 0, 0, -1``.

The references differ in two details that never change the decoded value:
@iota/mam.js flags zero trytes as negated and gives the flags one trit per
tryte; the Rust core of @iota/mam leaves zero trytes unflagged and gives the
flags only as many trits as the largest flag value needs (fewer from five
trytes on, so the two formats part ways above 265,720). Decoding follows
@iota/mam.js.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np

from ..errors import MamError, MamPayloadError
from ..trinary import Trits, int_to_trits

if TYPE_CHECKING:
    from .reference import MamReference

ZERO_ENCODING: Final = (1, 0, 0, -1)
MAX_PASCAL_TRYTES: Final = 20
"""Longest number accepted: 20 trytes hold values beyond 10^28."""

_TRYTE_WEIGHTS: Final = np.array([1, 3, 9], dtype=np.int64)


def _digits_needed(value: int) -> int:
    """Fewest balanced trits that hold ``value`` (at least one)."""
    digits, largest = 1, 1
    while value > largest:
        largest = 3 * largest + 1
        digits += 1
    return digits


def _flag_trits(trytes: int, reference: MamReference) -> int:
    return trytes if reference == "mam.js" else _digits_needed(2**trytes - 1)


def pascal_encoded_length(value: int, reference: MamReference = "mam.js") -> int:
    """How many trits :func:`pascal_encode` writes for ``value``."""
    if value == 0:
        return len(ZERO_ENCODING)
    digits = _digits_needed(value)
    length = digits + (-digits) % 3
    return length + _flag_trits(length // 3, reference)


def pascal_encode(value: int, reference: MamReference = "mam.js") -> Trits:
    """Encode a non-negative integer the way ``reference`` does."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"pascal encoding needs a non-negative integer, got {value!r}")
    if value == 0:
        return np.array(ZERO_ENCODING, dtype=np.int8)
    digits = _digits_needed(value)
    length = digits + (-digits) % 3
    if length // 3 > MAX_PASCAL_TRYTES:
        raise MamError(f"{value} needs more than the {MAX_PASCAL_TRYTES} trytes a decoder reads")
    trytes = int_to_trits(value, length).reshape(-1, 3)
    values = trytes.astype(np.int64) @ _TRYTE_WEIGHTS
    negate = np.empty(len(values), dtype=bool)
    negate[:-1] = values[:-1] >= 0 if reference == "mam.js" else values[:-1] > 0
    negate[-1] = values[-1] < 0
    trytes[negate] *= -1
    flags = sum(1 << int(position) for position in np.flatnonzero(negate))
    return np.concatenate(
        [trytes.reshape(-1), int_to_trits(flags, _flag_trits(len(values), reference))]
    )


def pascal_decode(trits: Trits, offset: int = 0) -> tuple[int, int]:
    """Decode the number starting at ``trits[offset]``; return it and where it ends.

    Raises :class:`MamPayloadError` when the trits end before the number does,
    the number is longer than :data:`MAX_PASCAL_TRYTES` or it is not one an
    encoder writes (negative, or sign flags beyond its trytes).
    """
    if (
        trits.size - offset >= 4
        and tuple(int(t) for t in trits[offset : offset + 4]) == ZERO_ENCODING
    ):
        return 0, offset + 4
    available = min((trits.size - offset) // 3, MAX_PASCAL_TRYTES)
    if available <= 0:
        raise MamPayloadError(f"payload ends where a number should start (trit {offset})")
    values = trits[offset : offset + 3 * available].reshape(-1, 3).astype(np.int64) @ _TRYTE_WEIGHTS
    positive = np.flatnonzero(values > 0)
    if positive.size == 0:
        raise MamPayloadError(f"no end of the number starting at trit {offset}")
    tryte_count = int(positive[0]) + 1
    flags_start = offset + 3 * tryte_count
    flags_end = flags_start + tryte_count
    if flags_end > trits.size:
        raise MamPayloadError(f"payload ends inside the number starting at trit {offset}")
    flags = 0
    for trit in trits[flags_start:flags_end][::-1]:
        flags = 3 * flags + int(trit)
    if not 0 <= flags < 1 << tryte_count:
        raise MamPayloadError(f"the number at trit {offset} has invalid sign flags")
    result = 0
    for position in range(tryte_count - 1, -1, -1):
        tryte = int(values[position])
        result = 27 * result + (-tryte if (flags >> position) & 1 else tryte)
    if result < 0:
        raise MamPayloadError(f"the number at trit {offset} is negative")
    return result, flags_end
