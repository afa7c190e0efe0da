"""The protocol library against pyota 2.1.0, run in-process on random inputs.

Every case comes from ``random.Random`` with a fixed seed, so a failure names
inputs that reproduce it.
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
from p2p_energy_protocol import signing
from p2p_energy_protocol.address import add_checksum, is_valid_checksum, validate_address
from p2p_energy_protocol.kerl import Kerl, kerl_hash
from p2p_energy_protocol.transaction import Transaction, transactions_hashes
from p2p_energy_protocol.trinary import TRYTE_ALPHABET, trits_to_trytes, trytes_to_trits

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pyota imports the deprecated pkg_resources
    import iota
    from iota.crypto.addresses import AddressGenerator
    from iota.crypto.kerl import Kerl as PyotaKerl
    from iota.crypto.signing import (
        KeyGenerator,
        SignatureFragmentGenerator,
        normalize,
        validate_signature_fragments,
    )
    from iota.crypto.types import Seed
    from iota.transaction.types import BundleHash, Fragment, Nonce, TransactionHash
    from iota.trits import add_trits, trits_from_int

pytestmark = pytest.mark.interop


def random_trytes(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(TRYTE_ALPHABET) for _ in range(length))


def pyota_kerl(trits: list[int], squeeze_length: int) -> list[int]:
    sponge = PyotaKerl()
    sponge.absorb(list(trits))
    output = [0] * squeeze_length
    sponge.squeeze(output)
    return output


# -- Kerl ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", range(12))
def test_kerl_matches_pyota(case: int) -> None:
    rng = random.Random(1000 + case)
    chunks, squeezes = rng.randint(1, 4), rng.randint(1, 3)
    trits = [rng.choice((-1, 0, 1)) for _ in range(243 * chunks)]
    expected = pyota_kerl(trits, 243 * squeezes)
    assert kerl_hash(trits, 243 * squeezes).tolist() == expected
    # the same through an incremental sponge
    sponge = Kerl()
    for start in range(0, len(trits), 243):
        sponge.absorb(trits[start : start + 243])
    assert np.concatenate([sponge.squeeze() for _ in range(squeezes)]).tolist() == expected


@pytest.mark.parametrize("fill", [-1, 0, 1])
def test_kerl_matches_pyota_on_extreme_chunks(fill: int) -> None:
    trits = [fill] * 243
    assert kerl_hash(trits, 486).tolist() == pyota_kerl(trits, 486)


# -- subseeds, keys, digests, addresses -----------------------------------------------


@pytest.mark.parametrize("case", range(6))
def test_subseed_key_and_digests_match_pyota(case: int) -> None:
    rng = random.Random(2000 + case)
    seed = random_trytes(rng, 81)
    index, security = rng.randrange(0, 10_000), rng.randint(1, 3)
    seed_trits = trytes_to_trits(seed)

    # pyota's KeyIterator: subseed = Kerl(seed + index)
    expected_subseed = pyota_kerl(add_trits(seed_trits.tolist(), trits_from_int(index)), 243)
    subseed = signing.subseed(seed_trits, index)
    assert subseed.tolist() == expected_subseed

    private_key = KeyGenerator(Seed(seed)).get_key(index, security)
    key = signing.key(subseed, security)
    assert trits_to_trytes(key) == str(private_key)
    assert trits_to_trytes(signing.digests(key)) == str(private_key.get_digest())


@pytest.mark.parametrize("case", range(9))
def test_addresses_match_pyota(case: int) -> None:
    rng = random.Random(3000 + case)
    seed = random_trytes(rng, rng.choice((81, 81, 40)))  # short seeds are padded alike
    security = case % 3 + 1
    start = rng.randrange(0, 1000)
    count = 2 if case < 3 else 1
    generator = AddressGenerator(Seed(seed), security_level=security, checksum=False)
    expected = [str(address) for address in generator.get_addresses(start, count)]
    assert signing.generate_addresses(seed, start, count, security) == expected


# -- normalization and signatures --------------------------------------------------


def test_normalize_hash_matches_pyota() -> None:
    rng = random.Random(4000)
    hashes = [random_trytes(rng, 81) for _ in range(30)]
    hashes += ["M" * 81, "N" * 81, "9" * 81, "A" * 27 + "Z" * 27 + "M" * 27]
    for bundle_hash in hashes:
        expected = [value for chunk in normalize(iota.Hash(bundle_hash)) for value in chunk]
        assert signing.normalize_hash(bundle_hash) == expected, bundle_hash


@pytest.mark.parametrize("case", range(6))
def test_signatures_match_pyota_both_ways(case: int) -> None:
    rng = random.Random(5000 + case)
    seed = random_trytes(rng, 81)
    index, security = rng.randrange(0, 100), case % 3 + 1
    bundle_hash = random_trytes(rng, 81)

    private_key = KeyGenerator(Seed(seed)).get_key(index, security)
    generator = SignatureFragmentGenerator(private_key, iota.Hash(bundle_hash))
    expected = [str(next(generator)) for _ in range(security)]

    key = signing.key(signing.subseed(signing.seed_to_trits(seed), index), security)
    signature = signing.signature_fragments(signing.normalize_hash(bundle_hash), key)
    fragments = [trits_to_trytes(f) for f in signature.reshape(security, -1)]
    assert fragments == expected

    address = signing.generate_address(seed, index, security)
    # pyota accepts ours (identical, but checked through its own validator) ...
    assert validate_signature_fragments(
        [iota.TryteString(f) for f in fragments], iota.Hash(bundle_hash), iota.Address(address)
    )
    # ... and we accept pyota's, but not for another hash
    assert signing.validate_signature(address, expected, bundle_hash)
    assert not signing.validate_signature(address, expected, random_trytes(rng, 81))


# -- address checksums ----------------------------------------------------------------


def test_address_checksums_match_pyota() -> None:
    rng = random.Random(6000)
    for _ in range(15):
        address = random_trytes(rng, 81)
        expected = str(iota.Address(address).with_valid_checksum())
        assert add_checksum(address) == expected
        assert is_valid_checksum(expected)
        assert iota.Address(expected).is_checksum_valid()
        assert validate_address(expected) == address
        broken = expected[:-1] + ("9" if expected[-1] != "9" else "A")
        assert iota.Address(broken).is_checksum_valid() == is_valid_checksum(broken)


# -- transactions ------------------------------------------------------------------


def pyota_transaction(rng: random.Random) -> iota.Transaction:
    last_index = rng.randrange(0, 6)
    return iota.Transaction(
        hash_=None,
        signature_message_fragment=Fragment(random_trytes(rng, 2187)),
        address=iota.Address(random_trytes(rng, 81)),
        value=rng.randrange(-(10**15), 10**15),
        timestamp=rng.randrange(0, 2**32),
        current_index=rng.randrange(0, last_index + 1),
        last_index=last_index,
        bundle_hash=BundleHash(random_trytes(rng, 81)),
        trunk_transaction_hash=TransactionHash(random_trytes(rng, 81)),
        branch_transaction_hash=TransactionHash(random_trytes(rng, 81)),
        tag=iota.Tag(random_trytes(rng, 27)),
        attachment_timestamp=rng.randrange(0, 2**40),
        attachment_timestamp_lower_bound=0,
        attachment_timestamp_upper_bound=(3**27 - 1) // 2,
        nonce=Nonce(random_trytes(rng, 27)),
        legacy_tag=iota.Tag(random_trytes(rng, 27)),
    )


def test_transactions_round_trip_and_hash_like_pyota() -> None:
    rng = random.Random(7000)
    made = [pyota_transaction(rng) for _ in range(15)]
    trytes = [str(transaction.as_tryte_string()) for transaction in made]
    ours = [Transaction.from_trytes(t) for t in trytes]
    for theirs, mine, raw in zip(made, ours, trytes, strict=True):
        assert mine.to_trytes() == raw
        assert mine.address == str(theirs.address)
        assert mine.value == theirs.value
        assert mine.obsolete_tag == str(theirs.legacy_tag)
        assert mine.tag == str(theirs.tag)
        assert (mine.timestamp, mine.current_index, mine.last_index) == (
            theirs.timestamp,
            theirs.current_index,
            theirs.last_index,
        )
        assert mine.attachment_timestamp == theirs.attachment_timestamp
        assert mine.bundle == str(theirs.bundle_hash)
        assert mine.trunk_transaction == str(theirs.trunk_transaction_hash)
        assert mine.branch_transaction == str(theirs.branch_transaction_hash)
        assert mine.nonce == str(theirs.nonce)
        assert mine.essence_trits().tolist() == (
            theirs.get_signature_validation_trytes().as_trits()
        )
    expected_hashes = [str(iota.Transaction.from_tryte_string(t).hash) for t in trytes]
    assert transactions_hashes(trytes) == expected_hashes
    assert [t.hash for t in ours] == expected_hashes
