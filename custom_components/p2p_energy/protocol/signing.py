"""IOTA's Winternitz one-time signatures (ISS) over Kerl or Curl-P-27.

A key is ``27 * security`` chunks of 243 trits. Signing hashes key chunk ``i``
``13 - d[i]`` times, where ``d`` are the 81 base-27 digits of the signed hash;
verifying hashes signature chunk ``i`` another ``13 + d[i]`` times, which
lands on the key chunk hashed 26 times, the public digest material.

Two flavours exist and both are implemented here:

* ``"kerl"``: value bundles (pyota, ``@iota/signing``). The subseed is Kerl of
  seed + index; the key is squeezed from Kerl(subseed); every 27-chunk
  fragment gets its own digest, the address is Kerl of the digests; the
  signed digits are the *normalized* bundle hash (each third summing to 0).
* ``"curl27"``: MAM v0 (``@iota/mam.js``, ``@iota/mam``). The subseed is
  Curl-P-27 of seed + index; each squeezed key chunk is hashed once more;
  all hashed chunks of all fragments go into *one* sponge, so the digest is
  243 trits at every security level and the address is its hash; the
  signed digits are the raw trytes of MAM's HMAC, which MAM balances by its
  nonce search instead of normalizing.

The Curl-P-27 paths run every chunk of every key as a lane of
:class:`~.curl.CurlBatch`, and the Kerl chains as parallel Keccak lanes, so
the ``*_many`` functions cost about the same for one key as for dozens.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Final, Literal, cast, get_args

import numpy as np
import numpy.typing as npt

from .curl import CurlBatch, curl_hash_chains, curl_hash_many
from .errors import InvalidTritsError, InvalidTrytesError, ProtocolError
from .kerl import kerl_hash_many, kerl_hash_repeated
from .trinary import (
    Trits,
    TritsLike,
    trits_to_int,
    trits_to_trytes,
    trytes_to_trits,
    validate_trits,
    validate_trytes,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

HashKind = Literal["kerl", "curl27"]
"""The sponge a signature uses: Kerl for value bundles, Curl-P-27 for MAM."""

HASH_LENGTH: Final = 243
SEED_LENGTH: Final = 243
SEED_TRYTES: Final = 81
CHUNKS_PER_FRAGMENT: Final = 27
FRAGMENT_LENGTH: Final = CHUNKS_PER_FRAGMENT * HASH_LENGTH  # 6,561 trits, 2,187 trytes
MAX_SECURITY: Final = 3
DIGITS_LENGTH: Final = 81  # base-27 digits of a 243-trit hash
MIN_TRYTE_VALUE: Final = -13
MAX_TRYTE_VALUE: Final = 13
CHAIN_LENGTH: Final = MAX_TRYTE_VALUE - MIN_TRYTE_VALUE  # 26 hashes from key to public chunk

_CURL_ROUNDS: Final = 27
_SEED_MODULUS: Final = 3**SEED_LENGTH
_PREIMAGE_GROUP_TRITS: Final = 27  # 3^27 < 2^63: one int64 per group of digits
_PREIMAGE_GROUPS: Final = 243 // _PREIMAGE_GROUP_TRITS
_PREIMAGE_GROUP_MODULUS: Final = 3**_PREIMAGE_GROUP_TRITS
_PREIMAGE_POWERS: Final = 3 ** np.arange(_PREIMAGE_GROUP_TRITS, dtype=np.int64)
_SEED_OFFSET: Final = (_SEED_MODULUS - 1) // 2
_TRYTE_WEIGHTS: Final = np.array([1, 3, 9], dtype=np.int64)

TritMatrix = npt.NDArray[np.int8]
"""Rows of trits, shape ``(n, length)``."""


def _first_row(matrix: TritMatrix) -> Trits:
    row: Trits = matrix[0]
    return row


def _check_kind(kind: str) -> HashKind:
    if kind == "kerl":
        return "kerl"
    if kind == "curl27":
        return "curl27"
    raise ProtocolError(f"hash kind must be one of {get_args(HashKind)}, got {kind!r}")


def check_security(security: int) -> int:
    """``security`` if it is a security level (1, 2 or 3), else :class:`ProtocolError`."""
    if isinstance(security, bool) or not isinstance(security, int):
        raise ProtocolError(f"security must be an int, got {type(security).__name__}")
    if not 1 <= security <= MAX_SECURITY:
        raise ProtocolError(f"security must be 1, 2 or 3, got {security}")
    return security


def check_key_index(index: int) -> int:
    """``index`` if it is a key index (a non-negative int), else :class:`ProtocolError`."""
    if isinstance(index, bool):
        raise ProtocolError("key index must be an int, got bool")
    try:
        checked = operator.index(index)
    except TypeError as err:
        raise ProtocolError(f"key index must be an int, got {type(index).__name__}") from err
    if checked < 0:
        raise ProtocolError(f"key index must not be negative, got {checked}")
    return checked


def _hash_trits(value: str | TritsLike, name: str) -> Trits:
    """A 243-trit hash given as 81 trytes or as trits."""
    if isinstance(value, str):
        return trytes_to_trits(validate_trytes(value, HASH_LENGTH // 3, name))
    return validate_trits(value, HASH_LENGTH, name)


def _matrix(rows: TritMatrix | TritsLike, name: str) -> TritMatrix:
    """Validated ``(n, length)`` trits; a single row may be given one-dimensional."""
    array = np.asarray(rows)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidTritsError(f"{name} must be a non-empty (rows, trits) matrix")
    return validate_trits(array.reshape(-1), name=name).reshape(array.shape)


def _fragment_count(length: int, name: str) -> int:
    if length % FRAGMENT_LENGTH:
        raise InvalidTritsError(
            f"{name} must be a whole number of {FRAGMENT_LENGTH}-trit fragments, got {length} trits"
        )
    return length // FRAGMENT_LENGTH


def _check_digits(digits: Sequence[int], length: int, name: str) -> list[int]:
    try:
        checked = [operator.index(digit) for digit in digits]
    except TypeError as err:
        raise ProtocolError(f"{name} must be integers") from err
    if len(checked) != length:
        raise ProtocolError(f"{name} must hold {length} values, got {len(checked)}")
    if any(not MIN_TRYTE_VALUE <= digit <= MAX_TRYTE_VALUE for digit in checked):
        raise ProtocolError(f"{name} must lie in {MIN_TRYTE_VALUE}..{MAX_TRYTE_VALUE}")
    return checked


# -- hashing primitives shared by both kinds ---------------------------------------------


def _hash_chunks_repeated(chunks: TritMatrix, counts: Sequence[int], kind: HashKind) -> TritMatrix:
    if kind == "kerl":
        return kerl_hash_repeated(chunks, counts)
    return curl_hash_chains(chunks, counts, _CURL_ROUNDS)


def _hash_rows(rows: TritMatrix, kind: HashKind) -> TritMatrix:
    """Hash every row with a fresh sponge of ``kind``."""
    if kind == "kerl":
        return kerl_hash_many(rows)
    return curl_hash_many(rows, _CURL_ROUNDS)


# -- seeds, subseeds, keys, digests, addresses --------------------------------------------


def seed_to_trits(seed: str) -> Trits:
    """The 243 trits of a seed of up to 81 trytes, padded with ``9`` as the clients do."""
    validate_trytes(seed, name="seed")
    if not seed:
        raise InvalidTrytesError("seed must not be empty")
    if len(seed) > SEED_TRYTES:
        raise InvalidTrytesError(f"seed must be at most {SEED_TRYTES} trytes, got {len(seed)}")
    return trytes_to_trits(seed.ljust(SEED_TRYTES, "9"))


def _subseed_preimages(seed_trits: TritsLike, indexes: Sequence[int]) -> TritMatrix:
    """Seed + index as balanced ternary, wrapping around at 243 trits.

    Balanced digits are the plain base-3 digits of value + offset, minus one: taken
    27 at a time with one ``divmod`` each, the digits of all rows at once in numpy
    (digit by digit in Python took most of a batch's non-Kerl time).
    """
    seed_value = trits_to_int(validate_trits(seed_trits, SEED_LENGTH, "seed"))
    groups = np.empty((len(indexes), _PREIMAGE_GROUPS), dtype=np.int64)
    for row, index in enumerate(indexes):
        remaining = (seed_value + index + _SEED_OFFSET) % _SEED_MODULUS
        for group in range(_PREIMAGE_GROUPS):
            remaining, groups[row, group] = divmod(remaining, _PREIMAGE_GROUP_MODULUS)
    digits = (groups[:, :, np.newaxis] // _PREIMAGE_POWERS) % 3
    return (digits.reshape(len(indexes), SEED_LENGTH) - 1).astype(np.int8)


def subseeds_many(
    seed_trits: TritsLike, indexes: Sequence[int], kind: HashKind = "kerl"
) -> TritMatrix:
    """The subseeds of ``indexes``: the hash of seed + index (wrapping), one row each."""
    checked_kind = _check_kind(kind)
    checked = [check_key_index(index) for index in indexes]
    if not checked:
        raise ProtocolError("at least one key index is needed")
    return _hash_rows(_subseed_preimages(seed_trits, checked), checked_kind)


def subseed(seed_trits: TritsLike, index: int, kind: HashKind = "kerl") -> Trits:
    """The subseed of key ``index``: the hash of seed + index (wrapping at 243 trits)."""
    return _first_row(subseeds_many(seed_trits, [index], kind))


def keys_many(subseeds: TritMatrix, security: int, kind: HashKind = "kerl") -> TritMatrix:
    """Private keys (``27 * 243 * security`` trits each) of ``(n, 243)`` subseeds.

    Kerl squeezes the key from Kerl(subseed); Curl-P-27 squeezes from
    Curl-P-27(subseed) and hashes each chunk once more, as MAM v0 does.
    """
    checked_kind = _check_kind(kind)
    length = check_security(security) * FRAGMENT_LENGTH
    rows = _matrix(subseeds, "subseeds")
    if rows.shape[1] != HASH_LENGTH:
        raise InvalidTritsError(f"subseeds must be {HASH_LENGTH} trits, got {rows.shape[1]}")
    if checked_kind == "kerl":
        return kerl_hash_many(rows, length)
    sponge = CurlBatch(rows.shape[0], _CURL_ROUNDS)
    sponge.absorb(rows)
    squeezed = sponge.squeeze(length).reshape(-1, HASH_LENGTH)
    hashed = curl_hash_chains(squeezed, [1] * squeezed.shape[0], _CURL_ROUNDS)
    return hashed.reshape(rows.shape[0], length)


def key(subseed_trits: TritsLike, security: int, kind: HashKind = "kerl") -> Trits:
    """The private key of one subseed; see :func:`keys_many`."""
    return _first_row(
        keys_many(validate_trits(subseed_trits, HASH_LENGTH, "subseed"), security, kind)
    )


def digests_many(keys: TritMatrix, kind: HashKind = "kerl") -> TritMatrix:
    """Public digests of ``(n, 6561 * security)`` private keys.

    Every key chunk is hashed 26 times. Kerl then hashes each 27-chunk fragment
    on its own (``243 * security`` trits); Curl-P-27 absorbs all chunks into one
    sponge (243 trits at any security level), as MAM v0 does.
    """
    checked_kind = _check_kind(kind)
    rows = _matrix(keys, "keys")
    security = check_security(_fragment_count(rows.shape[1], "a key"))
    chunks = rows.reshape(-1, HASH_LENGTH)
    hashed = _hash_chunks_repeated(chunks, [CHAIN_LENGTH] * chunks.shape[0], checked_kind)
    if checked_kind == "kerl":
        per_fragment = _hash_rows(hashed.reshape(-1, FRAGMENT_LENGTH), checked_kind)
        return per_fragment.reshape(rows.shape[0], security * HASH_LENGTH)
    return _hash_rows(hashed.reshape(rows.shape[0], -1), checked_kind)


def digests(key_trits: TritsLike, kind: HashKind = "kerl") -> Trits:
    """The public digests of one private key; see :func:`digests_many`."""
    return _first_row(digests_many(validate_trits(key_trits, name="key"), kind))


def addresses_from_digests_many(digests: TritMatrix, kind: HashKind = "kerl") -> TritMatrix:
    """The address (hash of the digests) of every row of ``(n, 243 * k)`` digests."""
    checked_kind = _check_kind(kind)
    rows = _matrix(digests, "digests")
    if rows.shape[1] % HASH_LENGTH:
        raise InvalidTritsError(f"digests must be a multiple of {HASH_LENGTH} trits")
    return _hash_rows(rows, checked_kind)


def address_from_digests(digests_trits: TritsLike, kind: HashKind = "kerl") -> Trits:
    """The address of one key's digests."""
    return _first_row(
        addresses_from_digests_many(validate_trits(digests_trits, name="digests"), kind)
    )


def addresses_many(
    seed_trits: TritsLike, indexes: Sequence[int], security: int, kind: HashKind = "kerl"
) -> TritMatrix:
    """Addresses of the keys at ``indexes`` of a seed, all computed in parallel lanes."""
    subseeds = subseeds_many(seed_trits, indexes, kind)
    return addresses_from_digests_many(
        digests_many(keys_many(subseeds, security, kind), kind), kind
    )


def generate_address(seed: str, index: int, security: int = 2) -> str:
    """The 81-tryte Kerl address (no checksum) of key ``index``, as pyota and @iota/core make it."""
    return generate_addresses(seed, index, 1, security)[0]


def generate_addresses(seed: str, start: int, count: int, security: int = 2) -> list[str]:
    """The Kerl addresses of keys ``start .. start + count - 1`` (no checksums)."""
    first = check_key_index(start)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ProtocolError(f"count must be a positive int, got {count!r}")
    rows = addresses_many(seed_to_trits(seed), range(first, first + count), security, "kerl")
    return [trits_to_trytes(row) for row in rows]


# -- signing and verification ----------------------------------------------------------


def normalize_hash(hash_value: str | TritsLike) -> list[int]:
    """The normalized hash: 81 tryte values in three chunks of 27, each shifted to sum 0.

    A positive sum is removed by lowering values from the front of the chunk
    down to -13, a negative one by raising them up to 13, as every IOTA client
    does; a 13 ("M") left in it would reveal a key chunk unhashed.
    """
    trits = _hash_trits(hash_value, "hash")
    return [int(value) for value in normalize_hashes(trits.reshape(1, HASH_LENGTH))[0]]


def normalize_hashes(hashes: TritMatrix) -> npt.NDArray[np.int16]:
    """:func:`normalize_hash` of every row of ``(n, 243)`` trits, as ``(n, 81)`` values.

    Lowering values from the front until the sum is gone takes from each value
    its whole room (down to -13) until what is left of the sum is smaller, so
    each step is the chunk's sum minus the room before it, clipped to the room.
    Small integer types throughout (a chunk's sum and rooms stay within ±729): a
    bundle's secure-tag search normalizes thousands of candidate hashes at once.
    """
    rows = hashes.shape[0]
    trits = hashes.reshape(rows, DIGITS_LENGTH, 3).astype(np.int8, copy=False)
    values = trits[:, :, 0] + 3 * trits[:, :, 1] + 9 * trits[:, :, 2]
    chunks = values.reshape(rows, -1, CHUNKS_PER_FRAGMENT).astype(np.int16)
    sums = chunks.sum(axis=2, keepdims=True, dtype=np.int16)
    room_down = chunks - MIN_TRYTE_VALUE
    room_up = MAX_TRYTE_VALUE - chunks
    before_down = np.cumsum(room_down, axis=2, dtype=np.int16) - room_down
    before_up = np.cumsum(room_up, axis=2, dtype=np.int16) - room_up
    down = np.clip(sums - before_down, 0, room_down)
    up = np.clip(-sums - before_up, 0, room_up)
    normalized = chunks - np.where(sums > 0, down, 0) + np.where(sums < 0, up, 0)
    return cast("npt.NDArray[np.int16]", normalized.reshape(rows, DIGITS_LENGTH).astype(np.int16))


def hash_digits(hash_value: str | TritsLike, kind: HashKind) -> list[int]:
    """The 81 digits a signature of ``kind`` encodes for a hash.

    Kerl signs the normalized hash (:func:`normalize_hash`); MAM's Curl-P-27
    signs the raw tryte values of its HMAC.
    """
    if _check_kind(kind) == "kerl":
        return normalize_hash(hash_value)
    trits = _hash_trits(hash_value, "hash").astype(np.int64)
    return cast("list[int]", (trits.reshape(-1, 3) @ _TRYTE_WEIGHTS).tolist())


def _digit_for_chunk(digits: Sequence[int], chunk: int) -> int:
    # Fragment f uses digits (f mod 3) * 27 .. + 26, so chunk i uses digit i mod 81.
    return digits[chunk % DIGITS_LENGTH]


def signature_fragments(
    digits: Sequence[int], key_trits: TritsLike, kind: HashKind = "kerl"
) -> Trits:
    """Sign: key chunk ``i`` hashed ``13 - digits[i mod 81]`` times, for a whole key.

    ``digits`` are 81 values from :func:`hash_digits`; the result is as long as the key.
    """
    checked_kind = _check_kind(kind)
    checked = _check_digits(digits, DIGITS_LENGTH, "digits")
    key_array = validate_trits(key_trits, name="key")
    check_security(_fragment_count(key_array.size, "a key"))
    chunks = key_array.reshape(-1, HASH_LENGTH)
    counts = [MAX_TRYTE_VALUE - _digit_for_chunk(checked, i) for i in range(chunks.shape[0])]
    return _hash_chunks_repeated(chunks, counts, checked_kind).reshape(-1)


def signature_fragment(
    normalized_chunk: Sequence[int], key_fragment: TritsLike, kind: HashKind = "kerl"
) -> Trits:
    """One 6,561-trit signature fragment from a key fragment and its 27 digits."""
    checked_kind = _check_kind(kind)
    checked = _check_digits(normalized_chunk, CHUNKS_PER_FRAGMENT, "normalized_chunk")
    chunks = validate_trits(key_fragment, FRAGMENT_LENGTH, "key_fragment").reshape(-1, HASH_LENGTH)
    counts = [MAX_TRYTE_VALUE - digit for digit in checked]
    return _hash_chunks_repeated(chunks, counts, checked_kind).reshape(-1)


def digest_from_signature(
    normalized_chunk: Sequence[int], signature_fragment_trits: TritsLike, kind: HashKind = "kerl"
) -> Trits:
    """The 243-trit digest of one signature fragment (its key fragment's public digest)."""
    checked_kind = _check_kind(kind)
    checked = _check_digits(normalized_chunk, CHUNKS_PER_FRAGMENT, "normalized_chunk")
    chunks = validate_trits(signature_fragment_trits, FRAGMENT_LENGTH, "signature_fragment")
    counts = [digit - MIN_TRYTE_VALUE for digit in checked]
    hashed = _hash_chunks_repeated(chunks.reshape(-1, HASH_LENGTH), counts, checked_kind)
    return _first_row(_hash_rows(hashed.reshape(1, -1), checked_kind))


def digests_from_signature(
    digits: Sequence[int], signature: TritsLike, kind: HashKind = "kerl"
) -> Trits:
    """The digests a whole signature stands for, laid out as :func:`digests` returns them.

    Signature chunk ``i`` is hashed ``13 + digits[i mod 81]`` more times. Any
    number of fragments is accepted (a bundle may carry more than three); the
    result then simply fails to match an address.
    """
    checked_kind = _check_kind(kind)
    checked = _check_digits(digits, DIGITS_LENGTH, "digits")
    signature_array = validate_trits(signature, name="signature")
    if _fragment_count(signature_array.size, "a signature") == 0:
        raise InvalidTritsError("a signature needs at least one fragment")
    chunks = signature_array.reshape(-1, HASH_LENGTH)
    counts = [_digit_for_chunk(checked, i) - MIN_TRYTE_VALUE for i in range(chunks.shape[0])]
    hashed = _hash_chunks_repeated(chunks, counts, checked_kind)
    if checked_kind == "kerl":
        return _hash_rows(hashed.reshape(-1, FRAGMENT_LENGTH), checked_kind).reshape(-1)
    return _first_row(_hash_rows(hashed.reshape(1, -1), checked_kind))


def _fragment_trits(fragment: str | TritsLike, position: int) -> Trits:
    name = f"signature fragment {position}"
    if isinstance(fragment, str):
        return trytes_to_trits(validate_trytes(fragment, FRAGMENT_LENGTH // 3, name))
    return validate_trits(fragment, FRAGMENT_LENGTH, name)


def validate_signature(
    expected_address_trits: str | TritsLike,
    fragments: Sequence[str | TritsLike],
    bundle_hash: str | TritsLike,
    kind: HashKind = "kerl",
) -> bool:
    """Whether ``fragments`` (2,187 trytes or 6,561 trits each) sign ``bundle_hash``
    with the key of ``expected_address_trits`` (81 trytes or 243 trits).

    Malformed input raises; a well-formed signature that does not verify gives ``False``.
    """
    checked_kind = _check_kind(kind)
    expected = _hash_trits(expected_address_trits, "expected address")
    if isinstance(fragments, str) or not fragments:
        raise ProtocolError("fragments must be a non-empty sequence of signature fragments")
    signature = np.concatenate(
        [_fragment_trits(fragment, position) for position, fragment in enumerate(fragments)]
    )
    digits = hash_digits(bundle_hash, checked_kind)
    actual = address_from_digests(digests_from_signature(digits, signature, checked_kind), kind)
    return bool(np.array_equal(actual, expected))
