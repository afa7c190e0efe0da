"""Proof of work: nonce search, weight checks and IRI's attachToTangle semantics."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from p2p_energy_protocol.curl import curl_hash
from p2p_energy_protocol.errors import (
    InvalidBundleError,
    InvalidTransactionError,
    InvalidTritsError,
    InvalidTrytesError,
    PowInterruptedError,
    ProofOfWorkError,
)
from p2p_energy_protocol.mam import create_channel, create_messages, messages_to_transactions
from p2p_energy_protocol.pow import (
    MAX_LANES,
    MAX_TIMESTAMP_VALUE,
    attach_to_tangle,
    find_nonce,
    has_valid_pow,
    transaction_weight,
)
from p2p_energy_protocol.proof_of_work import attach_messages
from p2p_energy_protocol.trinary import (
    TRYTE_ALPHABET,
    int_to_trytes,
    trits_to_trytes,
    trytes_to_int,
    trytes_to_trits,
)

TRUNK = "TRUNK" + "9" * 76
BRANCH = "BRANCH" + "9" * 75
NOW_MS = 1_700_000_000_123


def random_trytes(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(TRYTE_ALPHABET) for _ in range(length))


def make_transaction(
    rng: random.Random,
    current_index: int = 0,
    last_index: int = 0,
    *,
    bundle: str = "BUNDLE" + "9" * 75,
    tag: str = "9" * 27,
    obsolete_tag: str = "OBSOLETE" + "9" * 19,
) -> str:
    trytes = (
        random_trytes(rng, 2187)  # signature or message
        + random_trytes(rng, 81)  # address
        + int_to_trytes(0, 27)  # value
        + obsolete_tag
        + int_to_trytes(1_700_000_000, 9)  # timestamp
        + int_to_trytes(current_index, 9)
        + int_to_trytes(last_index, 9)
        + bundle
        + random_trytes(rng, 81 * 2)  # trunk and branch, replaced on attach
        + tag
        + int_to_trytes(rng.randrange(MAX_TIMESTAMP_VALUE), 9)  # attachment fields, replaced
        + int_to_trytes(rng.randrange(MAX_TIMESTAMP_VALUE), 9)
        + int_to_trytes(rng.randrange(MAX_TIMESTAMP_VALUE), 9)
        + random_trytes(rng, 27)  # nonce, replaced on attach
    )
    assert len(trytes) == 2673
    return trytes


def hash_of(transaction: str) -> str:
    return trits_to_trytes(curl_hash(trytes_to_trits(transaction)))


def bundle_head_first(
    rng: random.Random, size: int, bundle: str = "BUNDLE" + "9" * 75
) -> list[str]:
    return [
        make_transaction(rng, index, size - 1, bundle=bundle) for index in reversed(range(size))
    ]


# -- weight -------------------------------------------------------------------


def test_transaction_weight_counts_trailing_zero_trits() -> None:
    assert transaction_weight("9" * 81) == 243
    assert transaction_weight("9" * 80 + "A") == 2  # A = (1, 0, 0)
    assert transaction_weight("9" * 80 + "C") == 1  # C = (0, 1, 0)
    assert transaction_weight("9" * 80 + "I") == 0  # I = (0, 0, 1)
    assert transaction_weight("A" + "9" * 80) == 242
    trits = np.zeros(243, dtype=np.int8)
    trits[230] = -1
    assert transaction_weight(trits) == 12
    assert transaction_weight(trits.tolist()) == 12


def test_weight_of_trytes_agrees_with_the_weight_of_their_trits() -> None:
    """Hashes as trytes are weighed off the string; as trits, off the trits."""
    chooser = random.Random(14)
    for _ in range(3_000):
        zeros = chooser.randint(0, 81)
        value = "".join(chooser.choice(TRYTE_ALPHABET) for _ in range(81 - zeros)) + "9" * zeros
        assert transaction_weight(value) == transaction_weight(trytes_to_trits(value)), value


def test_has_valid_pow_is_weight_at_least_mwm() -> None:
    transaction_hash = "Z" * 76 + "A" + "9" * 4  # 12 + 2 = 14 trailing zeros
    assert transaction_weight(transaction_hash) == 14
    assert has_valid_pow(transaction_hash, 14)
    assert has_valid_pow(transaction_hash, 0)
    assert not has_valid_pow(transaction_hash, 15)
    assert has_valid_pow("9" * 81, 243)


@pytest.mark.parametrize("bad", ["9" * 80, "9" * 82, "a" * 81, "9" * 80 + "!"])
def test_weight_rejects_malformed_hash_trytes(bad: str) -> None:
    with pytest.raises(InvalidTrytesError):
        transaction_weight(bad)


def test_weight_rejects_malformed_hash_trits() -> None:
    with pytest.raises(InvalidTritsError):
        transaction_weight([0] * 242)
    with pytest.raises(InvalidTritsError):
        transaction_weight([2] * 243)


@pytest.mark.parametrize("mwm", [-1, 244, 1000, True, 9.0, "9", None])
def test_rejects_bad_min_weight_magnitudes(mwm: object) -> None:
    rng = random.Random(1)
    with pytest.raises(ProofOfWorkError, match="min weight magnitude"):
        has_valid_pow("9" * 81, mwm)  # type: ignore[arg-type]
    with pytest.raises(ProofOfWorkError, match="min weight magnitude"):
        find_nonce(make_transaction(rng), mwm)  # type: ignore[arg-type]
    with pytest.raises(ProofOfWorkError, match="min weight magnitude"):
        attach_to_tangle([make_transaction(rng)], TRUNK, BRANCH, mwm, NOW_MS)  # type: ignore[arg-type]


# -- nonce search -------------------------------------------------------------


@pytest.mark.parametrize("mwm", [1, 3, 5, 8, 10])
def test_found_nonce_reaches_the_weight(mwm: int) -> None:
    rng = random.Random(mwm)
    transaction = make_transaction(rng)
    nonce = find_nonce(transaction, mwm)
    assert len(nonce) == 27
    assert set(nonce) <= set(TRYTE_ALPHABET)
    assert transaction_weight(hash_of(transaction[:-27] + nonce)) >= mwm


def test_search_ignores_the_old_nonce_and_is_deterministic() -> None:
    rng = random.Random(20)
    transaction = make_transaction(rng)
    other_nonce = transaction[:-27] + random_trytes(rng, 27)
    nonce = find_nonce(transaction, 7)
    assert find_nonce(other_nonce, 7) == nonce
    assert find_nonce(trytes_to_trits(transaction), 7) == nonce
    assert find_nonce(trytes_to_trits(transaction).tolist(), 7) == nonce


def test_weight_zero_needs_no_search() -> None:
    rng = random.Random(21)
    transaction = make_transaction(rng)
    assert find_nonce(transaction, 0) == "9" * 27


@pytest.mark.parametrize("lanes", [64, 128, 640])
def test_other_lane_counts_find_valid_nonces(lanes: int) -> None:
    rng = random.Random(lanes)
    transaction = make_transaction(rng)
    nonce = find_nonce(transaction, 8, lanes=lanes)
    assert transaction_weight(hash_of(transaction[:-27] + nonce)) >= 8


@pytest.mark.parametrize("lanes", [0, 63, 100, -64, True, 64.0, MAX_LANES + 64])
def test_rejects_bad_lane_counts(lanes: object) -> None:
    rng = random.Random(22)
    with pytest.raises(ProofOfWorkError, match="lanes"):
        find_nonce(make_transaction(rng), 5, lanes=lanes)  # type: ignore[arg-type]
    with pytest.raises(ProofOfWorkError, match="lanes"):
        attach_to_tangle([make_transaction(rng)], TRUNK, BRANCH, 5, NOW_MS, lanes=lanes)  # type: ignore[arg-type]


def test_rejects_malformed_transactions() -> None:
    rng = random.Random(23)
    transaction = make_transaction(rng)
    with pytest.raises(InvalidTrytesError, match="2673"):
        find_nonce(transaction[:-1], 5)
    with pytest.raises(InvalidTrytesError):
        find_nonce(transaction[:-1] + "a", 5)
    with pytest.raises(InvalidTritsError, match="8019"):
        find_nonce(np.zeros(8018, dtype=np.int8), 5)
    with pytest.raises(InvalidTritsError):
        find_nonce(np.full(8019, 2, dtype=np.int8), 5)


def test_should_stop_interrupts_the_search() -> None:
    rng = random.Random(24)
    polls = 0

    def stop_after_three() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3

    with pytest.raises(PowInterruptedError):
        find_nonce(make_transaction(rng), 60, stop_after_three)
    assert polls == 4
    assert issubclass(PowInterruptedError, ProofOfWorkError)


def test_search_can_be_stopped_from_another_thread() -> None:
    rng = random.Random(25)
    stop = threading.Event()
    outcome: list[BaseException] = []

    def search() -> None:
        try:
            find_nonce(make_transaction(rng), 243, stop.is_set)
        except ProofOfWorkError as err:
            outcome.append(err)

    worker = threading.Thread(target=search)
    worker.start()
    time.sleep(0.1)
    stopped_at = time.monotonic()
    stop.set()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert time.monotonic() - stopped_at < 1
    assert len(outcome) == 1
    assert isinstance(outcome[0], PowInterruptedError)


# -- attachToTangle -----------------------------------------------------------


def test_attach_chains_a_bundle_like_iri() -> None:
    rng = random.Random(30)
    given = bundle_head_first(rng, 3)
    attached = attach_to_tangle(given, TRUNK, BRANCH, 6, NOW_MS)
    assert len(attached) == 3
    by_index = {trytes_to_int(t[2331:2340]): t for t in given}
    hashes = [hash_of(t) for t in attached]
    for index, trytes in enumerate(attached):
        assert trytes_to_int(trytes[2331:2340]) == index  # tail first
        assert transaction_weight(hashes[index]) >= 6
        # Only trunk, branch, tag, attachment timestamps and nonce change.
        assert trytes[:2430] == by_index[index][:2430]
        assert trytes_to_int(trytes[2619:2628]) == NOW_MS
        assert trytes_to_int(trytes[2628:2637]) == 0
        assert trytes_to_int(trytes[2637:2646]) == MAX_TIMESTAMP_VALUE == (3**27 - 1) // 2
        assert trytes[2592:2619] == by_index[index][2295:2322]  # empty tag <- obsolete tag
    assert attached[2][2430:2592] == TRUNK + BRANCH
    assert attached[1][2430:2592] == hashes[2] + TRUNK
    assert attached[0][2430:2592] == hashes[1] + TRUNK


def test_attach_keeps_a_set_tag() -> None:
    rng = random.Random(31)
    tag = "GRID" + "9" * 23
    transaction = make_transaction(rng, tag=tag)
    (attached,) = attach_to_tangle([transaction], TRUNK, BRANCH, 3, NOW_MS)
    assert attached[2592:2619] == tag
    assert attached[2430:2592] == TRUNK + BRANCH


def test_attach_chains_consecutive_bundles_as_iri_does() -> None:
    rng = random.Random(32)
    first = bundle_head_first(rng, 2, bundle="FIRST" + "9" * 76)
    second = bundle_head_first(rng, 2, bundle="SECOND" + "9" * 75)
    attached = attach_to_tangle(first + second, TRUNK, BRANCH, 4, NOW_MS)
    # Processing order: first head, first tail, second head, second tail; output reversed.
    second_tail, second_head, first_tail, first_head = attached
    assert first_head[2430:2592] == TRUNK + BRANCH
    assert first_tail[2430:2511] == hash_of(first_head)
    assert second_head[2430:2592] == hash_of(first_tail) + TRUNK
    assert second_tail[2430:2592] == hash_of(second_head) + TRUNK


def test_attach_uses_the_current_time_by_default() -> None:
    rng = random.Random(33)
    before = time.time_ns() // 1_000_000
    (attached,) = attach_to_tangle([make_transaction(rng)], TRUNK, BRANCH, 1)
    after = time.time_ns() // 1_000_000
    assert before <= trytes_to_int(attached[2619:2628]) <= after


def test_attach_refuses_tail_first_order() -> None:
    rng = random.Random(34)
    given = bundle_head_first(rng, 3)
    with pytest.raises(InvalidBundleError, match="head"):
        attach_to_tangle(list(reversed(given)), TRUNK, BRANCH, 1, NOW_MS)


def test_attach_refuses_incomplete_or_mixed_bundles() -> None:
    rng = random.Random(35)
    given = bundle_head_first(rng, 3)
    with pytest.raises(InvalidBundleError, match="missing"):
        attach_to_tangle(given[:2], TRUNK, BRANCH, 1, NOW_MS)
    with pytest.raises(InvalidBundleError, match="should be index 1"):
        attach_to_tangle([given[0], given[2]], TRUNK, BRANCH, 1, NOW_MS)
    other = bundle_head_first(rng, 3, bundle="OTHER" + "9" * 76)
    with pytest.raises(InvalidBundleError, match="should be index 1"):
        attach_to_tangle([given[0], other[1], given[2]], TRUNK, BRANCH, 1, NOW_MS)


def test_attach_refuses_malformed_transactions() -> None:
    rng = random.Random(36)
    with pytest.raises(InvalidTransactionError, match=r"transaction 0: current_index 3 is above"):
        attach_to_tangle([make_transaction(rng, 3, 2)], TRUNK, BRANCH, 1, NOW_MS)
    with pytest.raises(InvalidTransactionError, match="current_index must lie in"):
        attach_to_tangle([make_transaction(rng, -1, 0)], TRUNK, BRANCH, 1, NOW_MS)
    valid = make_transaction(rng)
    with pytest.raises(InvalidTransactionError, match="transaction 1: .*2673"):
        attach_to_tangle([valid, valid[:-1]], TRUNK, BRANCH, 1, NOW_MS)
    with pytest.raises(InvalidTransactionError, match="transaction 0: .*only 9 and A-Z"):
        attach_to_tangle([valid[:-1] + "a"], TRUNK, BRANCH, 1, NOW_MS)


def test_attach_rejects_bad_arguments() -> None:
    rng = random.Random(37)
    transaction = make_transaction(rng)
    with pytest.raises(InvalidTransactionError, match="at least one"):
        attach_to_tangle([], TRUNK, BRANCH, 1, NOW_MS)
    with pytest.raises(InvalidTransactionError, match="sequence"):
        attach_to_tangle(transaction, TRUNK, BRANCH, 1, NOW_MS)
    with pytest.raises(InvalidTrytesError, match="trunk"):
        attach_to_tangle([transaction], TRUNK[:-1], BRANCH, 1, NOW_MS)
    with pytest.raises(InvalidTrytesError, match="branch"):
        attach_to_tangle([transaction], TRUNK, BRANCH.lower(), 1, NOW_MS)
    for now_ms in (-1, MAX_TIMESTAMP_VALUE + 1, True, 1.5):
        with pytest.raises(ProofOfWorkError, match="now_ms"):
            attach_to_tangle([transaction], TRUNK, BRANCH, 1, now_ms)  # type: ignore[arg-type]


def test_attach_can_be_interrupted() -> None:
    rng = random.Random(38)
    with pytest.raises(PowInterruptedError):
        attach_to_tangle(
            bundle_head_first(rng, 2), TRUNK, BRANCH, 60, NOW_MS, should_stop=lambda: True
        )


@pytest.mark.parametrize("tag", ["PEERENERGYGRID", ""])
def test_attach_messages_is_publish_mams_bundles_attached(tag: str) -> None:
    """What a worker process builds and attaches for ``publish_mams`` is byte for byte
    the bundles ``messages_to_transactions`` finalises, attached by ``attach_to_tangle``."""
    channels = [create_channel(seed * 81, 2, "restricted", "KEY") for seed in "AB"]
    messages = create_messages(
        [(channel, {"command": "hello", "n": n}) for n, channel in enumerate(channels)]
    )
    timestamp = 1_700_000_000
    expected = attach_to_tangle(
        [
            tx.to_trytes()
            for bundle in messages_to_transactions(messages, tag, timestamp)
            for tx in reversed(bundle)
        ],
        TRUNK,
        BRANCH,
        5,
        NOW_MS,
    )
    attached = attach_messages(messages, tag, TRUNK, BRANCH, 5, timestamp, NOW_MS)
    assert attached == expected
    assert len(attached) == 6  # two 3-transaction bundles
