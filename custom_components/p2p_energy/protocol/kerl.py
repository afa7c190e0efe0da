"""Kerl, IOTA's ternary sponge on top of Keccak-384.

Kerl absorbs and squeezes 243-trit chunks. A chunk's first 242 trits are read
as a balanced-ternary integer (its last trit is ignored) and fed to Keccak-384
as 48 bytes of big-endian two's complement; a digest maps back the same way,
reduced to 242 trits with a zero 243rd trit. After each squeeze the Keccak
state restarts from the bitwise complement of the digest.

Keccak-f[1600] is implemented here in pure Python because ``hashlib`` only
offers SHA-3, whose padding differs from the original Keccak that IOTA uses,
and Home Assistant cannot install a C Keccak package for us. Where the compiled
kernel runs (:mod:`.kernel`), :func:`kerl_hash_many` and :func:`kerl_hash_repeated`
hash in it instead, with the same results.
"""

from __future__ import annotations

import operator
import struct
from typing import TYPE_CHECKING, Final, Self, cast

import numpy as np
import numpy.typing as npt

from . import kernel
from .errors import InvalidTritsError, ProtocolError
from .trinary import Trits, TritsLike, validate_trits

if TYPE_CHECKING:
    from collections.abc import Sequence

HASH_LENGTH: Final = 243
BYTE_HASH_LENGTH: Final = 48
_KECCAK_RATE: Final = 104  # bytes per block of Keccak-384: (1600 - 2 * 384) / 8
_MASK: Final = (1 << 64) - 1
_DIGEST_MASK: Final = (1 << 384) - 1
_ROUND_CONSTANTS: Final = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A,
    0x8000000080008000, 0x000000000000808B, 0x0000000080000001,
    0x8000000080008081, 0x8000000000008009, 0x000000000000008A,
    0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089,
    0x8000000000008003, 0x8000000000008002, 0x8000000000000080,
    0x000000000000800A, 0x800000008000000A, 0x8000000080008081,
    0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)  # fmt: skip
_RATE_LANES: Final = _KECCAK_RATE // 8
_DIGEST_LANES: Final = struct.Struct("<6Q")
_BLOCK_LANES: Final = struct.Struct(f"<{_RATE_LANES}Q")

# Balanced ternary over 242 trits, the part of a chunk Kerl actually hashes.
_TRIT_MODULUS: Final = 3**242
_TRIT_OFFSET: Final = (_TRIT_MODULUS - 1) // 2
_GROUP: Final = 27  # trits per machine-word group when converting
_GROUP_MODULUS: Final = 3**_GROUP
_GROUP_POWERS: Final = 3 ** np.arange(_GROUP, dtype=np.int64)
_GROUPS: Final = HASH_LENGTH // _GROUP

# Lane-parallel Keccak-f over a (5, 5, n) uint64 array indexed [y, x, message].
_ROTATIONS: Final = (
    (0, 1, 62, 28, 27),
    (36, 44, 6, 55, 20),
    (3, 10, 43, 25, 39),
    (41, 45, 15, 21, 8),
    (18, 2, 61, 56, 14),
)  # [y][x]
_ROTATE_LEFT: Final = np.array(_ROTATIONS, dtype=np.uint64)[:, :, np.newaxis]
_ROTATE_RIGHT: Final = (np.uint64(64) - _ROTATE_LEFT) % np.uint64(64)
# Pi moves lane (x, y) to (y, 2x + 3y); as a gather over the flat index 5y + x.
_PI_SOURCE: Final = np.array(
    sorted(
        range(25), key=lambda source: 5 * ((2 * (source % 5) + 3 * (source // 5)) % 5) + source // 5
    ),
    dtype=np.intp,
)
_NEXT_X: Final = np.array([1, 2, 3, 4, 0], dtype=np.intp)
_NEXT2_X: Final = np.array([2, 3, 4, 0, 1], dtype=np.intp)
_PREVIOUS_X: Final = np.array([4, 0, 1, 2, 3], dtype=np.intp)
_ROUND_CONSTANT_WORDS: Final = np.array(_ROUND_CONSTANTS, dtype=np.uint64)
_ONE: Final = np.uint64(1)
_SIXTY_THREE: Final = np.uint64(63)
# Below this many messages the scalar permutation is faster than numpy's.
_MIN_PARALLEL_MESSAGES: Final = 3


def keccak_f1600(lanes: list[int]) -> None:
    """Apply the Keccak-f[1600] permutation in place to 25 lanes (index x + 5y)."""
    (
        a00, a10, a20, a30, a40,
        a01, a11, a21, a31, a41,
        a02, a12, a22, a32, a42,
        a03, a13, a23, a33, a43,
        a04, a14, a24, a34, a44,
    ) = lanes  # fmt: skip
    for round_constant in _ROUND_CONSTANTS:
        # theta
        c0 = a00 ^ a01 ^ a02 ^ a03 ^ a04
        c1 = a10 ^ a11 ^ a12 ^ a13 ^ a14
        c2 = a20 ^ a21 ^ a22 ^ a23 ^ a24
        c3 = a30 ^ a31 ^ a32 ^ a33 ^ a34
        c4 = a40 ^ a41 ^ a42 ^ a43 ^ a44
        d0 = c4 ^ (((c1 << 1) | (c1 >> 63)) & _MASK)
        d1 = c0 ^ (((c2 << 1) | (c2 >> 63)) & _MASK)
        d2 = c1 ^ (((c3 << 1) | (c3 >> 63)) & _MASK)
        d3 = c2 ^ (((c4 << 1) | (c4 >> 63)) & _MASK)
        d4 = c3 ^ (((c0 << 1) | (c0 >> 63)) & _MASK)
        a00, a10, a20, a30, a40 = (a00 ^ d0, a10 ^ d1, a20 ^ d2, a30 ^ d3, a40 ^ d4)
        a01, a11, a21, a31, a41 = (a01 ^ d0, a11 ^ d1, a21 ^ d2, a31 ^ d3, a41 ^ d4)
        a02, a12, a22, a32, a42 = (a02 ^ d0, a12 ^ d1, a22 ^ d2, a32 ^ d3, a42 ^ d4)
        a03, a13, a23, a33, a43 = (a03 ^ d0, a13 ^ d1, a23 ^ d2, a33 ^ d3, a43 ^ d4)
        a04, a14, a24, a34, a44 = (a04 ^ d0, a14 ^ d1, a24 ^ d2, a34 ^ d3, a44 ^ d4)
        # rho and pi: B[y, 2x + 3y] = rot(A[x, y], r[x, y])
        b00 = a00
        b13 = ((a01 << 36) | (a01 >> 28)) & _MASK
        b21 = ((a02 << 3) | (a02 >> 61)) & _MASK
        b34 = ((a03 << 41) | (a03 >> 23)) & _MASK
        b42 = ((a04 << 18) | (a04 >> 46)) & _MASK
        b02 = ((a10 << 1) | (a10 >> 63)) & _MASK
        b10 = ((a11 << 44) | (a11 >> 20)) & _MASK
        b23 = ((a12 << 10) | (a12 >> 54)) & _MASK
        b31 = ((a13 << 45) | (a13 >> 19)) & _MASK
        b44 = ((a14 << 2) | (a14 >> 62)) & _MASK
        b04 = ((a20 << 62) | (a20 >> 2)) & _MASK
        b12 = ((a21 << 6) | (a21 >> 58)) & _MASK
        b20 = ((a22 << 43) | (a22 >> 21)) & _MASK
        b33 = ((a23 << 15) | (a23 >> 49)) & _MASK
        b41 = ((a24 << 61) | (a24 >> 3)) & _MASK
        b01 = ((a30 << 28) | (a30 >> 36)) & _MASK
        b14 = ((a31 << 55) | (a31 >> 9)) & _MASK
        b22 = ((a32 << 25) | (a32 >> 39)) & _MASK
        b30 = ((a33 << 21) | (a33 >> 43)) & _MASK
        b43 = ((a34 << 56) | (a34 >> 8)) & _MASK
        b03 = ((a40 << 27) | (a40 >> 37)) & _MASK
        b11 = ((a41 << 20) | (a41 >> 44)) & _MASK
        b24 = ((a42 << 39) | (a42 >> 25)) & _MASK
        b32 = ((a43 << 8) | (a43 >> 56)) & _MASK
        b40 = ((a44 << 14) | (a44 >> 50)) & _MASK
        # chi and iota
        a00 = b00 ^ (~b10 & b20) ^ round_constant
        a10 = b10 ^ (~b20 & b30)
        a20 = b20 ^ (~b30 & b40)
        a30 = b30 ^ (~b40 & b00)
        a40 = b40 ^ (~b00 & b10)
        a01 = b01 ^ (~b11 & b21)
        a11 = b11 ^ (~b21 & b31)
        a21 = b21 ^ (~b31 & b41)
        a31 = b31 ^ (~b41 & b01)
        a41 = b41 ^ (~b01 & b11)
        a02 = b02 ^ (~b12 & b22)
        a12 = b12 ^ (~b22 & b32)
        a22 = b22 ^ (~b32 & b42)
        a32 = b32 ^ (~b42 & b02)
        a42 = b42 ^ (~b02 & b12)
        a03 = b03 ^ (~b13 & b23)
        a13 = b13 ^ (~b23 & b33)
        a23 = b23 ^ (~b33 & b43)
        a33 = b33 ^ (~b43 & b03)
        a43 = b43 ^ (~b03 & b13)
        a04 = b04 ^ (~b14 & b24)
        a14 = b14 ^ (~b24 & b34)
        a24 = b24 ^ (~b34 & b44)
        a34 = b34 ^ (~b44 & b04)
        a44 = b44 ^ (~b04 & b14)

    lanes[:] = (
        a00, a10, a20, a30, a40,
        a01, a11, a21, a31, a41,
        a02, a12, a22, a32, a42,
        a03, a13, a23, a33, a43,
        a04, a14, a24, a34, a44,
    )  # fmt: skip


def _keccak_f1600_parallel(state: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Keccak-f[1600] of many states at once: ``(25, n)`` lanes in, ``(25, n)`` out."""
    lanes: npt.NDArray[np.uint64] = state.reshape(5, 5, -1).copy()
    for round_constant in _ROUND_CONSTANT_WORDS:
        columns = np.bitwise_xor.reduce(lanes, axis=0)
        right = columns[_NEXT_X]
        lanes ^= columns[_PREVIOUS_X] ^ ((right << _ONE) | (right >> _SIXTY_THREE))
        rotated = (lanes << _ROTATE_LEFT) | (lanes >> _ROTATE_RIGHT)
        moved = rotated.reshape(25, -1)[_PI_SOURCE].reshape(5, 5, -1)
        lanes = moved ^ (~moved[:, _NEXT_X] & moved[:, _NEXT2_X])
        lanes[0, 0] ^= round_constant
    return lanes.reshape(25, -1)


class Keccak384:
    """Keccak-384 with the original padding (``0x01 … 0x80``), as Kerl needs."""

    __slots__ = ("_lanes", "_pending")

    def __init__(self) -> None:
        self._lanes = [0] * 25
        self._pending = b""

    def copy(self) -> Keccak384:
        clone = Keccak384()
        clone._lanes = self._lanes.copy()
        clone._pending = self._pending
        return clone

    def update(self, data: bytes) -> None:
        pending = self._pending + data
        lanes = self._lanes
        offset = 0
        while len(pending) - offset >= _KECCAK_RATE:
            block = _BLOCK_LANES.unpack_from(pending, offset)
            for index, word in enumerate(block):
                lanes[index] ^= word
            keccak_f1600(lanes)
            offset += _KECCAK_RATE
        self._pending = pending[offset:]

    def digest(self) -> bytes:
        """The 48-byte digest of everything absorbed so far (the state is kept)."""
        pending = self._pending
        block = bytearray(_KECCAK_RATE)
        block[: len(pending)] = pending
        block[len(pending)] ^= 0x01
        block[-1] ^= 0x80
        lanes = self._lanes.copy()
        for index, word in enumerate(_BLOCK_LANES.unpack(block)):
            lanes[index] ^= word
        keccak_f1600(lanes)
        return _DIGEST_LANES.pack(*lanes[:6])


def keccak384(data: bytes) -> bytes:
    """Keccak-384 digest of ``data`` (not SHA3-384: the padding differs)."""
    hasher = Keccak384()
    hasher.update(data)
    return hasher.digest()


def _chunk_values(chunks: npt.NDArray[np.int8]) -> list[int]:
    """The balanced integer of the first 242 trits of each ``(n, 243)`` row."""
    rows = chunks.astype(np.int64)
    rows[:, HASH_LENGTH - 1] = 0
    group_values = cast(
        "list[list[int]]", (rows.reshape(-1, _GROUPS, _GROUP) @ _GROUP_POWERS).tolist()
    )
    values: list[int] = []
    for groups in group_values:
        value = 0
        for group in reversed(groups):
            value = value * _GROUP_MODULUS + group
        values.append(value)
    return values


def _values_to_chunks(values: Sequence[int]) -> npt.NDArray[np.int8]:
    """Balanced trits of each value reduced to 242 trits, plus a zero 243rd trit."""
    groups: list[int] = []
    for value in values:
        remaining = (value + _TRIT_OFFSET) % _TRIT_MODULUS
        for _ in range(_GROUPS):
            remaining, group = divmod(remaining, _GROUP_MODULUS)
            groups.append(group)
    grouped = np.array(groups, dtype=np.int64).reshape(len(values), _GROUPS)
    digits = (grouped[:, :, np.newaxis] // _GROUP_POWERS) % 3 - 1
    chunks = digits.reshape(len(values), HASH_LENGTH).astype(np.int8)
    chunks[:, HASH_LENGTH - 1] = 0
    return chunks


def _value_to_bytes(value: int) -> bytes:
    return value.to_bytes(BYTE_HASH_LENGTH, "big", signed=True)


def _bytes_to_value(digest: bytes) -> int:
    return int.from_bytes(digest, "big", signed=True)


def _reduce(value: int) -> int:
    """``value`` as the balanced integer of 242 trits (the symmetric residue)."""
    return (value + _TRIT_OFFSET) % _TRIT_MODULUS - _TRIT_OFFSET


def _flip(digest: bytes) -> bytes:
    """The bitwise complement that Kerl absorbs after each squeeze."""
    return (int.from_bytes(digest, "big") ^ _DIGEST_MASK).to_bytes(BYTE_HASH_LENGTH, "big")


def _keccak_many(messages: Sequence[bytes]) -> list[bytes]:
    """Keccak-384 of equally long messages, each from a fresh state.

    Many messages run as parallel numpy lanes, absorbing one block of every
    message per permutation; a few use the scalar permutation.
    """
    if len(messages) < _MIN_PARALLEL_MESSAGES:
        return [keccak384(message) for message in messages]
    count, length = len(messages), len(messages[0])
    if any(len(message) != length for message in messages):
        raise ProtocolError("lane-parallel Keccak needs messages of equal length")
    blocks = length // _KECCAK_RATE + 1
    padded = np.zeros((count, blocks * _KECCAK_RATE), dtype=np.uint8)
    padded[:, :length] = np.frombuffer(b"".join(messages), dtype=np.uint8).reshape(count, length)
    padded[:, length] = 0x01
    padded[:, -1] |= 0x80
    words = padded.view("<u8").reshape(count, blocks, _RATE_LANES)
    state: npt.NDArray[np.uint64] = np.zeros((25, count), dtype=np.uint64)
    for block in range(blocks):
        state[:_RATE_LANES] ^= words[:, block].T
        state = _keccak_f1600_parallel(state)
    joined = state[:6].T.astype("<u8").tobytes()
    return [joined[i : i + BYTE_HASH_LENGTH] for i in range(0, len(joined), BYTE_HASH_LENGTH)]


def _check_length(length: int, what: str) -> int:
    if isinstance(length, bool) or not isinstance(length, int):
        raise ProtocolError(f"{what} length must be an int, got {type(length).__name__}")
    if length <= 0 or length % HASH_LENGTH:
        raise InvalidTritsError(
            f"Kerl {what}s a positive multiple of {HASH_LENGTH} trits, got {length}"
        )
    return length


def _trit_matrix(trits: npt.NDArray[np.int8], name: str) -> npt.NDArray[np.int8]:
    matrix = np.asarray(trits)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise InvalidTritsError(f"{name} must be a non-empty (rows, trits) matrix")
    return validate_trits(matrix.reshape(-1), name=name).reshape(matrix.shape)


class Kerl:
    """IOTA's Kerl sponge: absorb and squeeze whole 243-trit chunks."""

    __slots__ = ("_keccak",)

    def __init__(self) -> None:
        self._keccak = Keccak384()

    def reset(self) -> None:
        self._keccak = Keccak384()

    def copy(self) -> Self:
        clone = type(self)()
        clone._keccak = self._keccak.copy()
        return clone

    def absorb(self, trits: TritsLike) -> None:
        """Absorb trits; the length must be a positive multiple of 243."""
        array = validate_trits(trits)
        _check_length(array.size, "absorb")
        for value in _chunk_values(array.reshape(-1, HASH_LENGTH)):
            self._keccak.update(_value_to_bytes(value))

    def squeeze(self, length: int = HASH_LENGTH) -> Trits:
        """Squeeze ``length`` trits (a positive multiple of 243)."""
        _check_length(length, "squeeze")
        values: list[int] = []
        for _ in range(length // HASH_LENGTH):
            digest = self._keccak.digest()
            values.append(_bytes_to_value(digest))
            self._keccak = Keccak384()
            self._keccak.update(_flip(digest))
        return _values_to_chunks(values).reshape(-1)


def kerl_hash(trits: TritsLike, length: int = HASH_LENGTH) -> Trits:
    """Absorb ``trits`` into a fresh Kerl and squeeze ``length`` trits."""
    if kernel.native() is not None:
        array = validate_trits(trits)
        _check_length(array.size, "absorb")
        return kerl_hash_many(array.reshape(1, -1), length).reshape(-1)
    sponge = Kerl()
    sponge.absorb(trits)
    return sponge.squeeze(length)


def kerl_hash_many(trits: npt.NDArray[np.int8], length: int = HASH_LENGTH) -> npt.NDArray[np.int8]:
    """:func:`kerl_hash` of every row of ``(n, m)`` trits, returned as ``(n, length)``.

    The rows absorb together as parallel Keccak lanes (rows of equal length
    take equally many Keccak blocks), and so does every squeeze step.
    """
    matrix = _trit_matrix(trits, "trits")
    _check_length(matrix.shape[1], "absorb")
    _check_length(length, "squeeze")
    compiled = kernel.native()
    if compiled is not None:
        hashed: npt.NDArray[np.int8] = np.empty((matrix.shape[0], length), dtype=np.int8)
        compiled.kerl_hash(
            np.ascontiguousarray(matrix, dtype=np.int8),
            matrix.shape[0],
            matrix.shape[1],
            length // HASH_LENGTH,
            hashed,
        )
        return hashed
    chunks_per_row = matrix.shape[1] // HASH_LENGTH
    encoded = [_value_to_bytes(v) for v in _chunk_values(matrix.reshape(-1, HASH_LENGTH))]
    digests = _keccak_many(
        [
            b"".join(encoded[start : start + chunks_per_row])
            for start in range(0, len(encoded), chunks_per_row)
        ]
    )
    squeezes = length // HASH_LENGTH
    values: list[int] = []  # step-major: every row's first chunk, then every second chunk
    for step in range(squeezes):
        values.extend(_bytes_to_value(digest) for digest in digests)
        if step + 1 < squeezes:
            digests = _keccak_many([_flip(digest) for digest in digests])
    chunks = _values_to_chunks(values).reshape(squeezes, matrix.shape[0], HASH_LENGTH)
    return np.ascontiguousarray(chunks.transpose(1, 0, 2).reshape(matrix.shape[0], length))


def _hash_counts(counts: Sequence[int], rows: int) -> list[int]:
    if len(counts) != rows:
        raise ProtocolError(f"{len(counts)} hash counts for {rows} chunks")
    try:
        checked = [operator.index(count) for count in counts]
    except TypeError as err:
        raise ProtocolError("hash counts must be integers") from err
    if any(isinstance(count, bool) or count < 0 for count in counts):
        raise ProtocolError("hash counts must be non-negative integers")
    return checked


def kerl_hash_repeated(chunks: npt.NDArray[np.int8], counts: Sequence[int]) -> npt.NDArray[np.int8]:
    """Hash row ``i`` of ``(n, 243)`` chunks ``counts[i]`` times, each time with a fresh Kerl.

    This is the hash chain of IOTA's Winternitz signatures; all rows advance
    together as parallel Keccak lanes. Between steps the chain stays in the
    integer domain, which is exact because a Kerl output's 243rd trit is
    always 0; a row hashed 0 times comes back unchanged.
    """
    matrix = _trit_matrix(chunks, "chunks")
    if matrix.shape[1] != HASH_LENGTH:
        raise InvalidTritsError(f"chunks must have shape (n, {HASH_LENGTH})")
    checked = _hash_counts(counts, matrix.shape[0])
    compiled = kernel.native()
    if compiled is not None:
        chained: npt.NDArray[np.int8] = np.empty_like(matrix, dtype=np.int8)
        compiled.kerl_chains(
            np.ascontiguousarray(matrix, dtype=np.int8),
            matrix.shape[0],
            np.asarray(checked, dtype=np.int64),
            chained,
        )
        return chained
    values = _chunk_values(matrix)
    for step in range(max(checked)):
        active = [row for row, count in enumerate(checked) if count > step]
        messages = [_value_to_bytes(values[row]) for row in active]
        for row, digest in zip(active, _keccak_many(messages), strict=True):
            values[row] = _reduce(_bytes_to_value(digest))
    hashed = _values_to_chunks(values)
    unchanged = np.asarray(checked) == 0
    hashed[unchanged] = matrix[unchanged]
    return hashed
