"""The protocol library against pyota 2.1.0, run in-process on random inputs.

Every case comes from ``random.Random`` with a fixed seed, so a failure names
inputs that reproduce it.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from p2p_energy_protocol import signing
from p2p_energy_protocol.address import add_checksum, is_valid_checksum, validate_address
from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.bundle_validation import validate_bundle
from p2p_energy_protocol.errors import InvalidBundleError
from p2p_energy_protocol.kerl import Kerl, kerl_hash
from p2p_energy_protocol.transaction import (
    Transaction,
    transactions_from_trytes,
    transactions_hashes,
)
from p2p_energy_protocol.trinary import TRYTE_ALPHABET, trits_to_trytes, trytes_to_trits

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pyota imports the deprecated pkg_resources
    import iota
    import iota.transaction.creation
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
    made = [pyota_transaction(rng) for _ in range(8)]  # pyota's Curl takes 0.2 s per hash
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


# -- bundles ---------------------------------------------------------------------------

TIMESTAMP = 1_700_000_000


@dataclass(frozen=True)
class PlannedTransfer:
    address: str
    value: int
    tag: str
    message: str


@dataclass(frozen=True)
class PlannedInput:
    key_index: int
    security: int
    balance: int


def safe_tag(rng: random.Random) -> str:
    """A tag whose value is not negative: pyota's finalize resets a tag that counts up
    to all-9s back to the transfer tag and can then loop forever (see protocol.md)."""
    length = rng.randrange(0, 28)
    if length == 0:
        return ""
    return random_trytes(rng, length - 1) + rng.choice("ABCDEFGHIJKLM")


def value_address(rng: random.Random) -> str:
    return random_trytes(rng, 80) + rng.choice("9ABCDWXYZ")


def plan_bundle(
    rng: random.Random, with_value: bool
) -> tuple[str, list[PlannedTransfer], list[PlannedInput], str | None]:
    seed = random_trytes(rng, 81)
    inputs = (
        [
            PlannedInput(key_index, rng.choice((1, 2, 2, 3)), rng.randrange(1, 10**9))
            for key_index in rng.sample(range(50), rng.randint(1, 2))
        ]
        if with_value
        else []
    )
    budget = sum(spent.balance for spent in inputs)
    transfers = []
    for _ in range(rng.randint(1, 2)):
        value = rng.randrange(0, budget + 1) if with_value else 0
        budget -= value
        # pyota parses every transaction with its pure-Python Curl, so keep bundles short
        message = random_trytes(rng, rng.choice((0, 10, 2188)))
        transfers.append(PlannedTransfer(value_address(rng), value, safe_tag(rng), message))
    remainder = signing.generate_address(seed, 60, 1) if budget > 0 else None
    return seed, transfers, inputs, remainder


def pyota_bundle(
    monkeypatch: pytest.MonkeyPatch,
    seed: str,
    transfers: list[PlannedTransfer],
    inputs: list[PlannedInput],
    remainder: str | None,
) -> list[str]:
    # pyota stamps inputs and the change transaction with the current time
    monkeypatch.setattr(iota.transaction.creation, "get_current_timestamp", lambda: TIMESTAMP)
    bundle = iota.ProposedBundle(
        transactions=[
            iota.ProposedTransaction(
                address=iota.Address(t.address),
                value=t.value,
                tag=iota.Tag(t.tag),
                message=iota.TryteString(t.message),
                timestamp=TIMESTAMP,
            )
            for t in transfers
        ],
        inputs=[
            iota.Address(
                signing.generate_address(seed, spent.key_index, spent.security),
                balance=spent.balance,
                key_index=spent.key_index,
                security_level=spent.security,
            )
            for spent in inputs
        ],
        change_address=iota.Address(remainder) if remainder else None,
    )
    bundle.finalize()
    if inputs:
        bundle.sign_inputs(KeyGenerator(Seed(seed)))
    return [str(trytes) for trytes in bundle.as_tryte_strings()]


def our_bundle(
    seed: str,
    transfers: list[PlannedTransfer],
    inputs: list[PlannedInput],
    remainder: str | None,
    input_tag: str,
) -> list[str]:
    builder = BundleBuilder()
    for t in transfers:
        builder.add_transfer(t.address, t.value, t.tag, t.message)
    for spent in inputs:
        address = signing.generate_address(seed, spent.key_index, spent.security)
        builder.add_input(address, spent.balance, spent.key_index, spent.security, input_tag)
    if remainder:
        builder.add_remainder(remainder, input_tag)
    builder.finalize(TIMESTAMP)
    builder.sign(seed)
    return builder.to_trytes()


def pyota_bundle_of(trytes: list[str]) -> iota.Bundle:
    """pyota's Bundle of our trytes, handing it our hashes: its pure-Python Curl takes
    0.2 s per transaction, and its validator does not look at hashes."""
    return iota.Bundle(
        iota.Transaction.from_tryte_string(t, hash_=TransactionHash(h))
        for t, h in zip(trytes, transactions_hashes(trytes), strict=True)
    )


@pytest.mark.parametrize("case", range(6))
def test_bundles_match_pyota_byte_for_byte(case: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(8000 + case)
    seed, transfers, inputs, remainder = plan_bundle(rng, with_value=case >= 2)
    # pyota tags inputs and change with the last non-empty transfer tag
    input_tag = next((t.tag for t in reversed(transfers) if t.tag.strip("9")), "")
    theirs = pyota_bundle(monkeypatch, seed, transfers, inputs, remainder)
    ours = our_bundle(seed, transfers, inputs, remainder, input_tag)
    assert ours == theirs

    # pyota's trytes parse and serialize back unchanged, and both validators accept the bundle
    parsed = transactions_from_trytes(theirs)
    assert [t.to_trytes() for t in parsed] == theirs
    validate_bundle(parsed)
    assert iota.BundleValidator(pyota_bundle_of(ours)).is_valid()

    if inputs:
        transactions = transactions_from_trytes(theirs)
        spender = next(t for t in transactions if t.value < 0)
        fragment = spender.signature_message_fragment
        tampered = fragment[:-1] + ("A" if fragment[-1] != "A" else "B")
        broken = [
            t.replace(signature_message_fragment=tampered) if t is spender else t
            for t in transactions
        ]
        with pytest.raises(InvalidBundleError):
            validate_bundle(broken)
