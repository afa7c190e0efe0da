"""Curl-P: the bit-sliced sponges against a plain scalar reference and published vectors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from p2p_energy_protocol.curl import (
    HASH_LENGTH,
    STATE_LENGTH,
    Curl,
    CurlBatch,
    curl_hash,
    curl_hash_many,
    pack_lanes,
    unpack_lanes,
)
from p2p_energy_protocol.errors import InvalidTritsError, ProtocolError
from p2p_energy_protocol.trinary import trits_to_trytes, trytes_to_trits

# The textbook definition: walk the state with steps +364 / -365 and look up
# each pair (a, b) in the S-box table indexed by a + 4 * b + 5.
_TRUTH_TABLE = (1, 0, -1, 2, 1, -1, 0, 2, -1, 1, 0)


def reference_transform(state: list[int], rounds: int) -> list[int]:
    for _ in range(rounds):
        previous = state[:]
        index = 0
        for position in range(STATE_LENGTH):
            a = previous[index]
            index += 364 if index < 365 else -365
            state[position] = _TRUTH_TABLE[a + (previous[index] << 2) + 5]
    return state


def reference_hash(trits: list[int], rounds: int, length: int) -> list[int]:
    state = [0] * STATE_LENGTH
    for offset in range(0, len(trits), HASH_LENGTH):
        chunk = trits[offset : offset + HASH_LENGTH]
        state[: len(chunk)] = chunk
        reference_transform(state, rounds)
    output: list[int] = []
    while len(output) < length:
        output.extend(state[: min(HASH_LENGTH, length - len(output))])
        reference_transform(state, rounds)
    return output


def random_trits(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(-1, 2, size=shape, dtype=np.int8)


# Published by pyota (test/crypto/pycurl_test.py): Curl-P-81 of 81 and 162 trytes.
PYOTA_VECTORS = [
    (
        "EMIDYNHBWMBCXVDEFOFWINXTERALUKYYPPHKP9JJFGJEIUY9MUDVNFZHMMWZUYUSWAIOWEVTHNWMHANBH",
        "AQBOPUMJMGVHFOXSMUAGZNACKUTISDPBSILMRAGIGRXXS9JJTLIKZUW9BCJWKSTFBDSBLNVEEGVGAMSSM",
    ),
    (
        "G9JYBOMPUXHYHKSNRNMMSSZCSHOFYOYNZRSZMAAYWDYEIMVVOGKPJBVBM9TDPULSFUNMTVXRKFIDOHUXXVYDLFSZ"
        "YZTWQYTE9SPYYWYTXJYQ9IFGYOLZXWZBKWZN9QOOTBQMWMUBLEWUEEASRHRTNIQWJQNDWRYLCA",
        "RWCBOLRFANOAYQWXXTFQJYQFAUTEEBSZWTIRSSDREYGCNFRLHQVDZXYXSJKCQFQLJMMRHYAZKRRLQZDKR",
    ),
]


@pytest.mark.parametrize(("message", "expected"), PYOTA_VECTORS)
def test_published_curl_p81_vectors(message: str, expected: str) -> None:
    assert trits_to_trytes(curl_hash(trytes_to_trits(message))) == expected
    batch = curl_hash_many(np.stack([trytes_to_trits(message)] * 3))
    assert {trits_to_trytes(row) for row in batch} == {expected}


@pytest.mark.parametrize("rounds", [27, 81])
@pytest.mark.parametrize(("length", "squeeze"), [(1, 243), (243, 243), (244, 500), (729, 729)])
def test_single_sponge_matches_reference(rounds: int, length: int, squeeze: int) -> None:
    rng = np.random.default_rng(rounds * 1000 + length)
    trits = random_trits(rng, length)
    expected = reference_hash(trits.tolist(), rounds, squeeze)
    assert curl_hash(trits, rounds, squeeze).tolist() == expected


@pytest.mark.parametrize("rounds", [27, 81])
def test_transform_matches_reference_on_full_state(rounds: int) -> None:
    rng = np.random.default_rng(rounds)
    state = random_trits(rng, STATE_LENGTH)
    sponge = Curl(rounds)
    sponge.state = state
    sponge.transform()
    assert sponge.state.tolist() == reference_transform(state.tolist(), rounds)


@pytest.mark.parametrize("rounds", [27, 81])
@pytest.mark.parametrize("lanes", [1, 2, 5, 6, 63, 64, 65, 130, 200])  # 5|6: single|batched
def test_batch_matches_single_sponges(rounds: int, lanes: int) -> None:
    rng = np.random.default_rng(lanes)
    messages = random_trits(rng, lanes, 600)
    hashes = curl_hash_many(messages, rounds, 300)
    assert hashes.shape == (lanes, 300)
    for row in (0, lanes // 2, lanes - 1):
        assert (hashes[row] == curl_hash(messages[row], rounds, 300)).all()


@pytest.mark.parametrize("rounds", [27, 81])
def test_batch_transform_matches_reference_per_lane(rounds: int) -> None:
    rng = np.random.default_rng(7)
    states = random_trits(rng, 70, STATE_LENGTH)
    batch = CurlBatch(70, rounds)
    batch.set_state(states)
    batch.transform()
    result = batch.state()
    for lane in (0, 63, 64, 69):
        assert result[lane].tolist() == reference_transform(states[lane].tolist(), rounds)


@settings(max_examples=25, deadline=None)
@given(
    lanes=st.integers(1, 140),
    length=st.integers(1, 800),
    squeeze=st.integers(1, 800),
    seed=st.integers(0, 2**32 - 1),
)
def test_batch_and_single_agree_on_shapes(lanes: int, length: int, squeeze: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    messages = random_trits(rng, lanes, length)
    batch = CurlBatch(lanes, 27)
    batch.absorb(messages)
    out = batch.squeeze(squeeze)
    lane = seed % lanes
    single = Curl(27)
    single.absorb(messages[lane])
    assert (out[lane] == single.squeeze(squeeze)).all()


def test_absorb_in_pieces_equals_absorb_at_once() -> None:
    rng = np.random.default_rng(11)
    trits = random_trits(rng, 3 * HASH_LENGTH)
    whole, pieces = Curl(), Curl()
    whole.absorb(trits)
    for start in range(0, trits.size, HASH_LENGTH):
        pieces.absorb(trits[start : start + HASH_LENGTH])
    assert (whole.squeeze() == pieces.squeeze()).all()


def test_short_absorb_overwrites_only_its_prefix() -> None:
    rng = np.random.default_rng(12)
    sponge = Curl(27)
    sponge.state = random_trits(rng, STATE_LENGTH)
    before = sponge.state.copy()
    chunk = random_trits(rng, 10)
    sponge.absorb(chunk)
    state = before.tolist()
    state[:10] = chunk.tolist()
    assert sponge.state.tolist() == reference_transform(state, 27)


def test_state_copy_and_reset_are_independent() -> None:
    rng = np.random.default_rng(13)
    sponge = Curl()
    sponge.absorb(random_trits(rng, 300))
    clone = sponge.copy()
    first = sponge.squeeze()
    assert (clone.squeeze() == first).all()
    sponge.reset()
    assert not sponge.state.any()

    batch = CurlBatch(5)
    batch.absorb(random_trits(rng, 5, 300))
    batch_clone = batch.copy()
    assert (batch_clone.squeeze() == batch.squeeze()).all()
    batch.reset()
    assert not batch.state().any()
    assert batch_clone.state().any()


def test_pack_and_unpack_lanes_round_trip() -> None:
    rng = np.random.default_rng(14)
    trits = random_trits(rng, 100, 50)
    low, high = pack_lanes(trits, 2)
    assert low.shape == high.shape == (50, 2)
    assert (unpack_lanes(low, high, 100) == trits).all()
    with pytest.raises(ProtocolError, match="do not fit"):
        pack_lanes(trits, 1)


def test_zero_trit_is_both_bits_set() -> None:
    batch = CurlBatch(3)
    batch.set_state(np.zeros((3, STATE_LENGTH), dtype=np.int8))
    # Proof of work reads "trit == 0" straight off the planes.
    assert (batch.low & batch.high == np.uint64(2**64 - 1)).all()


@pytest.mark.parametrize("rounds", [0, 26, 80, 82, True, "81"])
def test_rejects_unsupported_round_counts(rounds: object) -> None:
    with pytest.raises(ProtocolError, match="rounds"):
        Curl(rounds)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="rounds"):
        CurlBatch(4, rounds)  # type: ignore[arg-type]


@pytest.mark.parametrize("lanes", [0, -3, True, 2.5])
def test_rejects_bad_lane_counts(lanes: object) -> None:
    with pytest.raises(ProtocolError, match="lane"):
        CurlBatch(lanes)  # type: ignore[arg-type]


def test_rejects_bad_trits_and_shapes() -> None:
    sponge = Curl()
    with pytest.raises(InvalidTritsError):
        sponge.absorb([0, 2, 1])
    with pytest.raises(InvalidTritsError):
        sponge.absorb([])
    with pytest.raises(InvalidTritsError):
        sponge.state = np.zeros(728, dtype=np.int8)
    batch = CurlBatch(4)
    with pytest.raises(InvalidTritsError):
        batch.absorb(np.zeros((3, 10), dtype=np.int8))
    with pytest.raises(InvalidTritsError):
        batch.absorb(np.zeros((4, 0), dtype=np.int8))
    with pytest.raises(InvalidTritsError):
        batch.set_state(np.zeros((4, 10), dtype=np.int8))
    with pytest.raises(InvalidTritsError):
        curl_hash_many(np.zeros(10, dtype=np.int8))
    with pytest.raises(InvalidTritsError):
        curl_hash_many(np.full((2, 10), 2, dtype=np.int8))
    with pytest.raises(InvalidTritsError):
        curl_hash_many(np.zeros((2, 10), dtype=np.float64))


@pytest.mark.parametrize("length", [0, -1, True])
def test_rejects_bad_squeeze_lengths(length: int) -> None:
    with pytest.raises(ProtocolError, match="squeeze length"):
        Curl().squeeze(length)
    with pytest.raises(ProtocolError, match="squeeze length"):
        CurlBatch(2).squeeze(length)
