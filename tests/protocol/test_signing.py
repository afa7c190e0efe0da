"""ISS signatures over Kerl and Curl-P-27: definitions, round trips and bad input.

The references here are written the slow, obvious way (one hash at a time with
the scalar sponges) so they check the batched lanes of the library.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from p2p_energy_protocol import signing
from p2p_energy_protocol.curl import CurlBatch, curl_hash
from p2p_energy_protocol.errors import InvalidTritsError, InvalidTrytesError, ProtocolError
from p2p_energy_protocol.kerl import kerl_hash
from p2p_energy_protocol.signing import (
    CHUNKS_PER_FRAGMENT,
    FRAGMENT_LENGTH,
    HASH_LENGTH,
    HashKind,
    normalize_hash,
    normalize_hashes,
)
from p2p_energy_protocol.trinary import (
    TRYTE_ALPHABET,
    int_to_trits,
    trits_to_int,
    trits_to_trytes,
    trytes_to_trits,
)

KINDS: list[HashKind] = ["kerl", "curl27"]


def random_trytes(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(TRYTE_ALPHABET) for _ in range(length))


def random_trits(rng: random.Random, length: int) -> np.ndarray:
    return np.array([rng.choice((-1, 0, 1)) for _ in range(length)], dtype=np.int8)


def scalar_hash(trits: np.ndarray, kind: HashKind) -> np.ndarray:
    return kerl_hash(trits) if kind == "kerl" else curl_hash(trits, rounds=27)


def scalar_chain(chunk: np.ndarray, times: int, kind: HashKind) -> np.ndarray:
    for _ in range(times):
        chunk = scalar_hash(chunk, kind)
    return chunk


# -- seeds and subseeds ---------------------------------------------------------------


def test_seed_to_trits_pads_short_seeds_with_nines() -> None:
    assert np.array_equal(signing.seed_to_trits("ABC"), trytes_to_trits("ABC".ljust(81, "9")))


@pytest.mark.parametrize(
    ("seed", "error"),
    [("", InvalidTrytesError), ("A" * 82, InvalidTrytesError), ("abc", InvalidTrytesError)],
)
def test_seed_to_trits_rejects_bad_seeds(seed: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        signing.seed_to_trits(seed)


@pytest.mark.parametrize("kind", KINDS)
def test_subseed_zero_is_the_hash_of_the_seed(kind: HashKind) -> None:
    seed = signing.seed_to_trits(random_trytes(random.Random(1), 81))
    assert np.array_equal(signing.subseed(seed, 0, kind), scalar_hash(seed, kind))


@pytest.mark.parametrize("kind", KINDS)
def test_subseed_index_is_added_to_the_seed_in_balanced_ternary(kind: HashKind) -> None:
    seed = signing.seed_to_trits(random_trytes(random.Random(2), 81))
    seed[:3] = [0, 0, 0]
    plus_five = seed.copy()
    plus_five[:3] = [-1, -1, 1]  # 5 = -1 - 3 + 9
    assert np.array_equal(signing.subseed(seed, 5, kind), signing.subseed(plus_five, 0, kind))


@pytest.mark.parametrize("kind", KINDS)
def test_subseed_wraps_around_at_243_trits(kind: HashKind) -> None:
    highest = np.ones(HASH_LENGTH, dtype=np.int8)
    lowest = -np.ones(HASH_LENGTH, dtype=np.int8)
    assert np.array_equal(signing.subseed(highest, 1, kind), signing.subseed(lowest, 0, kind))


def test_subseed_preimages_are_seed_plus_index_in_balanced_ternary() -> None:
    """The batched conversion equals the one integer at a time, wrap-around included."""
    rng = random.Random(12)
    seeds = [
        signing.seed_to_trits(random_trytes(rng, 81)),
        np.ones(HASH_LENGTH, dtype=np.int8),
        -np.ones(HASH_LENGTH, dtype=np.int8),
    ]
    indexes = [0, 1, 2, 26, 27, 3**27, 3**40 + 5, 2**64, *rng.sample(range(10**9), 20)]
    modulus = 3**HASH_LENGTH
    for seed in seeds:
        value = trits_to_int(seed)
        expected = np.stack(
            [
                int_to_trits((value + i + modulus // 2) % modulus - modulus // 2, HASH_LENGTH)
                for i in indexes
            ]
        )
        preimages = signing._subseed_preimages(seed, indexes)
        assert preimages.dtype == np.int8
        assert np.array_equal(preimages, expected)


@pytest.mark.parametrize("index", [-1, True, 1.0])
def test_subseed_rejects_bad_indexes(index: object) -> None:
    with pytest.raises(ProtocolError, match="key index"):
        signing.subseed(np.zeros(HASH_LENGTH, dtype=np.int8), index)  # type: ignore[arg-type]


def test_subseed_rejects_short_seed_trits_and_unknown_kinds() -> None:
    with pytest.raises(InvalidTritsError):
        signing.subseed(np.zeros(81, dtype=np.int8), 0)
    with pytest.raises(ProtocolError, match="hash kind"):
        signing.subseed(np.zeros(HASH_LENGTH, dtype=np.int8), 0, "curl81")  # type: ignore[arg-type]


def test_subseeds_many_matches_single_subseeds_and_needs_indexes() -> None:
    seed = signing.seed_to_trits(random_trytes(random.Random(3), 81))
    many = signing.subseeds_many(seed, [0, 7, 3], "kerl")
    for row, index in enumerate([0, 7, 3]):
        assert np.array_equal(many[row], signing.subseed(seed, index))
    with pytest.raises(ProtocolError, match="at least one"):
        signing.subseeds_many(seed, [])


# -- keys, digests, addresses ----------------------------------------------------------


def test_kerl_key_is_squeezed_from_kerl_of_the_subseed() -> None:
    subseed = random_trits(random.Random(4), HASH_LENGTH)
    subseed[-1] = 0
    for security in (1, 2):
        assert np.array_equal(
            signing.key(subseed, security, "kerl"),
            kerl_hash(subseed, security * FRAGMENT_LENGTH),
        )


def test_curl27_key_hashes_each_squeezed_chunk_once_more() -> None:
    subseed = random_trits(random.Random(5), HASH_LENGTH)
    sponge = CurlBatch(1, 27)
    sponge.absorb(subseed.reshape(1, -1))
    squeezed = sponge.squeeze(2 * FRAGMENT_LENGTH)[0].reshape(-1, HASH_LENGTH)
    expected = np.concatenate([curl_hash(chunk, rounds=27) for chunk in squeezed])
    assert np.array_equal(signing.key(subseed, 2, "curl27"), expected)


@pytest.mark.parametrize("kind", KINDS)
def test_security_one_digest_hashes_every_chunk_26_times(kind: HashKind) -> None:
    key = random_trits(random.Random(6), FRAGMENT_LENGTH)
    hashed = np.concatenate(
        [scalar_chain(chunk, 26, kind) for chunk in key.reshape(-1, HASH_LENGTH)]
    )
    assert np.array_equal(signing.digests(key, kind), scalar_hash(hashed, kind))


def test_kerl_digests_are_per_fragment_and_curl27_digest_is_one_hash() -> None:
    rng = random.Random(7)
    keys = np.stack([random_trits(rng, 2 * FRAGMENT_LENGTH) for _ in range(2)])
    kerl_digests = signing.digests_many(keys, "kerl")
    assert kerl_digests.shape == (2, 2 * HASH_LENGTH)
    # each Kerl fragment digest only depends on its own fragment
    assert np.array_equal(
        kerl_digests[0, :HASH_LENGTH], signing.digests(keys[0, :FRAGMENT_LENGTH], "kerl")
    )
    curl_digests = signing.digests_many(keys, "curl27")
    assert curl_digests.shape == (2, HASH_LENGTH)
    for row in range(2):
        assert np.array_equal(curl_digests[row], signing.digests(keys[row], "curl27"))


def test_curl27_digest_of_a_security_two_key_takes_few_batched_transforms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transforms = 0
    original = CurlBatch.transform

    def counting_transform(self: CurlBatch) -> None:
        nonlocal transforms
        transforms += 1
        original(self)

    monkeypatch.setattr(CurlBatch, "transform", counting_transform)
    signing.digests(np.zeros(2 * FRAGMENT_LENGTH, dtype=np.int8), "curl27")
    # 26 batched chain steps for all 54 chunks at once (a chunk-by-chunk implementation
    # would need 54 * 26 = 1,404); the one-row digest sponge runs on a single Curl.
    assert transforms == 26


@pytest.mark.parametrize("kind", KINDS)
def test_address_is_the_hash_of_the_digests(kind: HashKind) -> None:
    digests = random_trits(random.Random(8), 2 * HASH_LENGTH)
    assert np.array_equal(signing.address_from_digests(digests, kind), scalar_hash(digests, kind))


@pytest.mark.parametrize("kind", KINDS)
def test_addresses_many_chains_subseed_key_digests_address(kind: HashKind) -> None:
    seed = signing.seed_to_trits(random_trytes(random.Random(9), 81))
    addresses = signing.addresses_many(seed, [4, 2], 1, kind)
    for row, index in enumerate([4, 2]):
        key = signing.key(signing.subseed(seed, index, kind), 1, kind)
        expected = signing.address_from_digests(signing.digests(key, kind), kind)
        assert np.array_equal(addresses[row], expected)


def test_generate_addresses_equals_generate_address_and_ends_in_a_zero_trit() -> None:
    seed = random_trytes(random.Random(10), 81)
    batch = signing.generate_addresses(seed, 3, 3, security=1)
    assert batch == [signing.generate_address(seed, index, 1) for index in (3, 4, 5)]
    assert all(trytes_to_trits(address)[-1] == 0 for address in batch)


@pytest.mark.parametrize("security", [0, 4, True, "2"])
def test_keys_reject_bad_security_levels(security: object) -> None:
    with pytest.raises(ProtocolError, match="security"):
        signing.key(np.zeros(HASH_LENGTH, dtype=np.int8), security)  # type: ignore[arg-type]


def test_bad_lengths_are_rejected() -> None:
    with pytest.raises(InvalidTritsError):
        signing.key(np.zeros(HASH_LENGTH - 1, dtype=np.int8), 1)
    with pytest.raises(InvalidTritsError, match="fragments"):
        signing.digests(np.zeros(FRAGMENT_LENGTH + HASH_LENGTH, dtype=np.int8))
    with pytest.raises(ProtocolError, match="security"):
        signing.digests(np.zeros(4 * FRAGMENT_LENGTH, dtype=np.int8))
    with pytest.raises(InvalidTritsError):
        signing.address_from_digests(np.zeros(100, dtype=np.int8))
    with pytest.raises(ProtocolError, match="count"):
        signing.generate_addresses("A", 0, 0)


# -- normalization -----------------------------------------------------------------


def test_normalize_hash_balances_each_third() -> None:
    rng = random.Random(11)
    for _ in range(20):
        normalized = signing.normalize_hash(random_trytes(rng, 81))
        assert len(normalized) == 81
        assert all(-13 <= value <= 13 for value in normalized)
        for start in (0, 27, 54):
            assert sum(normalized[start : start + 27]) == 0


def test_normalize_hash_lowers_from_the_front_and_raises_from_the_front() -> None:
    # 27 "M" (13 each, sum 351): thirteen drop to -13, the next to 0, the rest stay 13.
    assert signing.normalize_hash("M" * 27 + "9" * 54)[:27] == [-13] * 13 + [0] + [13] * 13
    # 27 "N" (-13 each) mirror that.
    assert signing.normalize_hash("N" * 27 + "9" * 54)[:27] == [13] * 13 + [0] + [-13] * 13
    # A balanced third stays as it is.
    assert signing.normalize_hash("AZ" * 13 + "9" + "9" * 54)[:27] == [1, -1] * 13 + [0]


def test_normalize_hash_accepts_trits_and_rejects_bad_hashes() -> None:
    trytes = random_trytes(random.Random(12), 81)
    assert signing.normalize_hash(trytes_to_trits(trytes)) == signing.normalize_hash(trytes)
    with pytest.raises(InvalidTrytesError):
        signing.normalize_hash("A" * 80)
    with pytest.raises(InvalidTrytesError):
        signing.normalize_hash("a" * 81)
    with pytest.raises(InvalidTritsError):
        signing.normalize_hash(np.zeros(242, dtype=np.int8))


def test_hash_digits_are_normalized_for_kerl_and_raw_for_curl27() -> None:
    trytes = "ABCMNZ9" + "9" * 74
    assert signing.hash_digits(trytes, "curl27")[:7] == [1, 2, 3, 13, -13, -1, 0]
    assert signing.hash_digits(trytes, "kerl") == signing.normalize_hash(trytes)


# -- signing and verification ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("security", [1, 2, 3])
def test_signatures_verify_and_recover_the_digests(kind: HashKind, security: int) -> None:
    rng = random.Random(security * 7 + len(kind))
    seed = signing.seed_to_trits(random_trytes(rng, 81))
    key = signing.key(signing.subseed(seed, rng.randrange(100), kind), security, kind)
    key_digests = signing.digests(key, kind)
    address = signing.address_from_digests(key_digests, kind)
    signed_hash = random_trytes(rng, 81)
    digits = signing.hash_digits(signed_hash, kind)
    signature = signing.signature_fragments(digits, key, kind)
    assert signature.shape == key.shape
    assert np.array_equal(signing.digests_from_signature(digits, signature, kind), key_digests)
    fragments = list(signature.reshape(security, FRAGMENT_LENGTH))
    assert signing.validate_signature(address, fragments, signed_hash, kind)
    assert signing.validate_signature(
        trits_to_trytes(address), [trits_to_trytes(f) for f in fragments], signed_hash, kind
    )


@pytest.mark.parametrize("kind", KINDS)
def test_signature_fragment_hashes_each_chunk_13_minus_digit_times(kind: HashKind) -> None:
    rng = random.Random(13)
    key_fragment = random_trits(rng, FRAGMENT_LENGTH)
    digits = [rng.randrange(-13, 14) for _ in range(CHUNKS_PER_FRAGMENT)]
    fragment = signing.signature_fragment(digits, key_fragment, kind)
    for position in (0, 5, 26):
        chunk = key_fragment[position * HASH_LENGTH : (position + 1) * HASH_LENGTH]
        expected = scalar_chain(chunk, 13 - digits[position], kind)
        assert np.array_equal(
            fragment[position * HASH_LENGTH : (position + 1) * HASH_LENGTH], expected
        )
    digest = signing.digest_from_signature(digits, fragment, kind)
    assert np.array_equal(digest, signing.digests(key_fragment, kind))


def test_validate_signature_rejects_tampering() -> None:
    rng = random.Random(14)
    seed = random_trytes(rng, 81)
    key = signing.key(signing.subseed(signing.seed_to_trits(seed), 0), 2)
    address = signing.generate_address(seed, 0, 2)
    bundle_hash = random_trytes(rng, 81)
    signature = signing.signature_fragments(signing.normalize_hash(bundle_hash), key)
    fragments = [signature[:FRAGMENT_LENGTH], signature[FRAGMENT_LENGTH:]]
    assert signing.validate_signature(address, fragments, bundle_hash)
    tampered = fragments[1].copy()
    tampered[1000] = 1 if tampered[1000] != 1 else 0
    assert not signing.validate_signature(address, [fragments[0], tampered], bundle_hash)
    assert not signing.validate_signature(address, fragments[:1], bundle_hash)
    assert not signing.validate_signature(address, fragments, random_trytes(rng, 81))
    assert not signing.validate_signature(
        signing.generate_address(seed, 1, 2), fragments, bundle_hash
    )


def test_validate_signature_rejects_malformed_input() -> None:
    fragment = "9" * 2187
    address = "9" * 81
    with pytest.raises(ProtocolError, match="non-empty"):
        signing.validate_signature(address, [], address)
    with pytest.raises(InvalidTrytesError, match="signature fragment 1"):
        signing.validate_signature(address, [fragment, fragment[:-1]], address)
    with pytest.raises(InvalidTrytesError):
        signing.validate_signature(address + "9", [fragment], address)
    with pytest.raises(InvalidTritsError):
        signing.validate_signature(address, [np.zeros(FRAGMENT_LENGTH - 1, dtype=np.int8)], address)


@pytest.mark.parametrize(
    ("digits", "message"),
    [([0] * 80, "81 values"), ([14] + [0] * 80, "-13..13"), ([0.5] * 81, "integers")],
)
def test_signing_rejects_bad_digits(digits: list[object], message: str) -> None:
    key = np.zeros(FRAGMENT_LENGTH, dtype=np.int8)
    with pytest.raises(ProtocolError, match=message):
        signing.signature_fragments(digits, key)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match=message):
        signing.digests_from_signature(digits, key)  # type: ignore[arg-type]


def test_signature_helpers_reject_bad_fragment_lengths() -> None:
    with pytest.raises(InvalidTritsError):
        signing.signature_fragment([0] * 27, np.zeros(FRAGMENT_LENGTH - 3, dtype=np.int8))
    with pytest.raises(InvalidTritsError):
        signing.digest_from_signature([0] * 27, np.zeros(FRAGMENT_LENGTH + 3, dtype=np.int8))
    with pytest.raises(ProtocolError, match="27 values"):
        signing.signature_fragment([0] * 26, np.zeros(FRAGMENT_LENGTH, dtype=np.int8))
    with pytest.raises(InvalidTritsError, match="fragment"):
        signing.digests_from_signature([0] * 81, np.zeros(0, dtype=np.int8))


def _normalize_step_by_step(values: list[int]) -> list[int]:
    """The IOTA clients' loop: move a chunk's sum to 0 one unit at a time from the front."""
    values = list(values)
    for start in range(0, 81, 27):
        total = sum(values[start : start + 27])
        while total > 0:
            position = next(p for p in range(start, start + 27) if values[p] > -13)
            values[position] -= 1
            total -= 1
        while total < 0:
            position = next(p for p in range(start, start + 27) if values[p] < 13)
            values[position] += 1
            total += 1
    return values


def test_normalize_hashes_matches_the_step_by_step_loop() -> None:
    rng = np.random.default_rng(7)
    hashes = rng.integers(-1, 2, size=(3000, 243)).astype(np.int8)
    # chunks near the extremes, where whole chunks end at -13 or 13
    hashes[:500] = np.where(rng.random((500, 243)) < 0.9, 1, hashes[:500])
    hashes[500:1000] = np.where(rng.random((500, 243)) < 0.9, -1, hashes[500:1000])
    normalized = normalize_hashes(hashes)
    for row, result in zip(hashes, normalized, strict=True):
        raw = [int(a) + 3 * int(b) + 9 * int(c) for a, b, c in row.reshape(81, 3)]
        assert list(result) == _normalize_step_by_step(raw)
        assert list(result) == normalize_hash(row)
