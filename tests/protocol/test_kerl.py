"""Kerl and its Keccak-384 core: published vectors, sponge laws and bad input."""

from __future__ import annotations

import random

import numpy as np
import pytest
from p2p_energy_protocol.errors import InvalidTritsError, ProtocolError
from p2p_energy_protocol.kerl import (
    HASH_LENGTH,
    Keccak384,
    Kerl,
    keccak384,
    keccak_f1600,
    kerl_hash,
    kerl_hash_many,
    kerl_hash_repeated,
)
from p2p_energy_protocol.trinary import trits_to_trytes, trytes_to_trits

CURL_KERNEL_INDEPENDENT = True
"""Nothing here reaches Curl: run once, not once per Curl kernel."""

# Published vectors (IOTA's Kerl test suites and the Keccak reference).
KECCAK_384_VECTORS = [
    (
        b"",
        "2c23146a63a29acf99e73b88f8c24eaa7dc60aa771780ccc006afbfa8fe2479b"
        "2dd2b21362337441ac12b515911957ff",
    ),
    (
        b"Message",
        "0c8d6ff6e6a1cf18a0d55b20f0bca160d0d1c914a5e842f3707a25eeb20a279f"
        "6b4e83eda8e43a67697832c7f69f53ca",
    ),
]
KERL_VECTORS = [
    (
        "GYOMKVTSNHVJNCNFBBAH9AAMXLPLLLROQY99QN9DLSJUHDPBLCFFAIQXZA9BKMBJCYSFHFPXAHDWZFEIZ",
        "OXJCNFHUNAHWDLKKPELTBFUCVW9KLXKOGWERKTJXQMXTKFKNWNNXYD9DMJJABSEIONOSJTTEVKVDQEWTW",
    ),
    (
        "EMIDYNHBWMBCXVDEFOFWINXTERALUKYYPPHKP9JJFGJEIUY9MUDVNFZHMMWZUYUSWAIOWEVTHNWMHANBH",
        "EJEAOOZYSAWFPZQESYDHZCGYNSTWXUMVJOVDWUNZJXDGWCLUFGIMZRMGCAZGKNPLBRLGUNYWKLJTYEAQX",
    ),
]
KERL_MULTI_SQUEEZE = (
    "9MIDYNHBWMBCXVDEFOFWINXTERALUKYYPPHKP9JJFGJEIUY9MUDVNFZHMMWZUYUSWAIOWEVTHNWMHANBH",
    "G9JYBOMPUXHYHKSNRNMMSSZCSHOFYOYNZRSZMAAYWDYEIMVVOGKPJBVBM9TDPULSFUNMTVXRKFIDOHUXXVYDLFS"
    "ZYZTWQYTE9SPYYWYTXJYQ9IFGYOLZXWZBKWZN9QOOTBQMWMUBLEWUEEASRHRTNIQWJQNDWRYLCA",
)


def random_trits(rng: random.Random, length: int) -> np.ndarray:
    return np.array([rng.choice((-1, 0, 1)) for _ in range(length)], dtype=np.int8)


@pytest.mark.parametrize(("message", "digest"), KECCAK_384_VECTORS)
def test_keccak384_matches_published_vectors(message: bytes, digest: str) -> None:
    assert keccak384(message).hex() == digest


def test_keccak384_is_not_sha3() -> None:
    import hashlib

    assert keccak384(b"Message") != hashlib.sha3_384(b"Message").digest()


@pytest.mark.parametrize("length", [0, 1, 103, 104, 105, 207, 208, 209, 500])
def test_keccak384_incremental_updates_match_one_shot(length: int) -> None:
    rng = random.Random(length)
    data = bytes(rng.randrange(256) for _ in range(length))
    hasher = Keccak384()
    position = 0
    while position < length:
        step = rng.randrange(1, 60)
        hasher.update(data[position : position + step])
        position += step
    assert hasher.digest() == keccak384(data)
    # digest() leaves the state usable and unchanged
    assert hasher.digest() == keccak384(data)


def test_keccak384_copy_is_independent() -> None:
    hasher = Keccak384()
    hasher.update(b"abc")
    clone = hasher.copy()
    clone.update(b"def")
    assert hasher.digest() == keccak384(b"abc")
    assert clone.digest() == keccak384(b"abcdef")


def test_keccak_f1600_of_zero_state_matches_reference() -> None:
    # First lane of Keccak-f[1600] applied to the all-zero state (Keccak team's KAT).
    lanes = [0] * 25
    keccak_f1600(lanes)
    assert lanes[0] == 0xF1258F7940E1DDE7
    assert lanes[1] == 0x84D5CCF933C0478A


@pytest.mark.parametrize(("message", "expected"), KERL_VECTORS)
def test_kerl_matches_published_vectors(message: str, expected: str) -> None:
    assert trits_to_trytes(kerl_hash(trytes_to_trits(message))) == expected


def test_kerl_multi_squeeze_matches_published_vector() -> None:
    message, expected = KERL_MULTI_SQUEEZE
    assert trits_to_trytes(kerl_hash(trytes_to_trits(message), 2 * HASH_LENGTH)) == expected


def test_kerl_absorbing_in_parts_equals_absorbing_at_once() -> None:
    rng = random.Random(7)
    trits = random_trits(rng, 3 * HASH_LENGTH)
    sponge = Kerl()
    for start in range(0, trits.size, HASH_LENGTH):
        sponge.absorb(trits[start : start + HASH_LENGTH])
    assert np.array_equal(sponge.squeeze(), kerl_hash(trits))


def test_kerl_squeezing_in_parts_equals_one_long_squeeze() -> None:
    rng = random.Random(8)
    trits = random_trits(rng, HASH_LENGTH)
    sponge = Kerl()
    sponge.absorb(trits)
    parts = [sponge.squeeze() for _ in range(3)]
    assert np.array_equal(np.concatenate(parts), kerl_hash(trits, 3 * HASH_LENGTH))


def test_kerl_ignores_the_last_trit_of_each_chunk_and_zeroes_it_in_output() -> None:
    rng = random.Random(9)
    trits = random_trits(rng, 2 * HASH_LENGTH)
    changed = trits.copy()
    changed[HASH_LENGTH - 1] = 1 - abs(changed[HASH_LENGTH - 1])
    changed[-1] = -1 if changed[-1] != -1 else 1
    output = kerl_hash(trits, 4 * HASH_LENGTH)
    assert np.array_equal(output, kerl_hash(changed, 4 * HASH_LENGTH))
    assert (output.reshape(-1, HASH_LENGTH)[:, -1] == 0).all()


def test_kerl_handles_extreme_chunk_values() -> None:
    # All 1s and all -1s are the largest magnitudes a chunk carries into 384 bits.
    highest = kerl_hash(np.ones(HASH_LENGTH, dtype=np.int8))
    lowest = kerl_hash(-np.ones(HASH_LENGTH, dtype=np.int8))
    zero = kerl_hash(np.zeros(HASH_LENGTH, dtype=np.int8))
    assert len({trits_to_trytes(highest), trits_to_trytes(lowest), trits_to_trytes(zero)}) == 3


def test_kerl_reset_and_copy() -> None:
    rng = random.Random(10)
    first, second = random_trits(rng, HASH_LENGTH), random_trits(rng, HASH_LENGTH)
    sponge = Kerl()
    sponge.absorb(first)
    clone = sponge.copy()
    clone.absorb(second)
    assert np.array_equal(sponge.squeeze(), kerl_hash(first))
    sponge.reset()
    sponge.absorb(second)
    assert np.array_equal(sponge.squeeze(), kerl_hash(second))
    assert np.array_equal(clone.squeeze(), kerl_hash(np.concatenate([first, second])))


def test_kerl_does_not_modify_its_input() -> None:
    trits = np.ones(HASH_LENGTH, dtype=np.int8)
    kerl_hash(trits)
    assert (trits == 1).all()


@pytest.mark.parametrize("length", [0, 1, 242, 244, 486 + 1])
def test_kerl_absorb_rejects_partial_chunks(length: int) -> None:
    with pytest.raises(InvalidTritsError, match="multiple of 243"):
        Kerl().absorb(np.zeros(length, dtype=np.int8))


@pytest.mark.parametrize("length", [0, -243, 100])
def test_kerl_squeeze_rejects_bad_lengths(length: int) -> None:
    sponge = Kerl()
    sponge.absorb(np.zeros(HASH_LENGTH, dtype=np.int8))
    with pytest.raises(InvalidTritsError):
        sponge.squeeze(length)


def test_kerl_squeeze_rejects_non_integer_length() -> None:
    with pytest.raises(ProtocolError, match="must be an int"):
        Kerl().squeeze(True)


def test_kerl_rejects_values_outside_trits() -> None:
    trits = np.zeros(HASH_LENGTH, dtype=np.int8)
    trits[5] = 2
    with pytest.raises(InvalidTritsError):
        kerl_hash(trits)


@pytest.mark.parametrize("rows", [1, 2, 3, 6])
# 1 and 2 chunks fit one Keccak block, 3 need two and 5 three.
@pytest.mark.parametrize("chunks", [1, 2, 3, 5])
def test_kerl_hash_many_equals_row_by_row(rows: int, chunks: int) -> None:
    rng = random.Random(rows * 10 + chunks)
    matrix = np.stack([random_trits(rng, chunks * HASH_LENGTH) for _ in range(rows)])
    for length in (HASH_LENGTH, 3 * HASH_LENGTH):
        hashed = kerl_hash_many(matrix, length)
        assert hashed.shape == (rows, length)
        for row in range(rows):
            assert np.array_equal(hashed[row], kerl_hash(matrix[row], length))


def test_kerl_hash_many_rejects_bad_shapes() -> None:
    with pytest.raises(InvalidTritsError):
        kerl_hash_many(np.zeros(HASH_LENGTH, dtype=np.int8))
    with pytest.raises(InvalidTritsError):
        kerl_hash_many(np.zeros((0, HASH_LENGTH), dtype=np.int8))
    with pytest.raises(InvalidTritsError):
        kerl_hash_many(np.zeros((2, 100), dtype=np.int8))


def test_kerl_hash_repeated_equals_hashing_in_a_loop() -> None:
    rng = random.Random(11)
    counts = [0, 1, 2, 5, 13, 26, 3]
    chunks = np.stack([random_trits(rng, HASH_LENGTH) for _ in counts])
    chunks[0, -1] = 1  # a row hashed 0 times keeps even its ignored last trit
    hashed = kerl_hash_repeated(chunks, counts)
    for row, count in enumerate(counts):
        expected = chunks[row]
        for _ in range(count):
            expected = kerl_hash(expected)
        assert np.array_equal(hashed[row], expected), row


def test_kerl_hash_repeated_accepts_numpy_counts() -> None:
    chunks = np.zeros((3, HASH_LENGTH), dtype=np.int8)
    counts = np.array([1, 2, 0])
    hashed = kerl_hash_repeated(chunks, list(counts))
    assert np.array_equal(hashed[0], kerl_hash(chunks[0]))


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ([1], "2 chunks"),
        ([1, -1], "non-negative"),
        ([1, 1.5], "integers"),
        ([1, True], "non-negative"),
    ],
)
def test_kerl_hash_repeated_rejects_bad_counts(counts: list[object], message: str) -> None:
    chunks = np.zeros((2, HASH_LENGTH), dtype=np.int8)
    with pytest.raises(ProtocolError, match=message):
        kerl_hash_repeated(chunks, counts)  # type: ignore[arg-type]


def test_kerl_hash_repeated_rejects_wrong_chunk_width() -> None:
    with pytest.raises(InvalidTritsError, match="shape"):
        kerl_hash_repeated(np.zeros((2, 2 * HASH_LENGTH), dtype=np.int8), [1, 1])
