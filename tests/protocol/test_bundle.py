"""Bundle building, signing and validation, including every way a bundle can be wrong."""

from __future__ import annotations

import random

import numpy as np
import pytest
from p2p_energy_protocol import signing
from p2p_energy_protocol.address import add_checksum
from p2p_energy_protocol.bundle import (
    BundleBuilder,
    _tags_from,
    bundle_hash,
    bundle_hashes,
    finalize_bundles,
    increment_tag,
    is_secure_bundle_hash,
)
from p2p_energy_protocol.bundle_validation import bundle_errors, bundle_from_tail, validate_bundle
from p2p_energy_protocol.errors import (
    InvalidAddressError,
    InvalidBundleError,
    InvalidSignatureError,
    InvalidTrytesError,
    ProtocolError,
)
from p2p_energy_protocol.kerl import kerl_hash
from p2p_energy_protocol.transaction import NULL_HASH, Transaction, transactions_from_trytes
from p2p_energy_protocol.trinary import TRYTE_ALPHABET, trits_to_trytes

TIMESTAMP = 1_700_000_000


def random_trytes(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(TRYTE_ALPHABET) for _ in range(length))


def value_address(rng: random.Random) -> str:
    """A random address whose last trit is 0 (last tryte in -4..4)."""
    return random_trytes(rng, 80) + rng.choice("9ABCDWXYZ")


@pytest.fixture(scope="module")
def wallet() -> dict[str, str]:
    rng = random.Random(42)
    seed = random_trytes(rng, 81)
    return {
        "seed": seed,
        "input": signing.generate_address(seed, 3, 2),
        "remainder": signing.generate_address(seed, 4, 1),
        "receiver": value_address(rng),
    }


@pytest.fixture(scope="module")
def signed_bundle(wallet: dict[str, str]) -> list[Transaction]:
    builder = BundleBuilder()
    builder.add_transfer(wallet["receiver"], 40, tag="ENERGY", message_trytes="HELLO")
    builder.add_input(wallet["input"], 100, key_index=3, security=2)
    builder.add_remainder(wallet["remainder"])
    builder.finalize(TIMESTAMP)
    builder.sign(wallet["seed"])
    return builder.transactions


# -- building ----------------------------------------------------------------------


def test_zero_value_transfer() -> None:
    builder = BundleBuilder()
    builder.add_transfer("B" * 81, tag="TAG", message_trytes="ABC")
    builder.finalize(TIMESTAMP)
    (transaction,) = builder.transactions
    assert transaction.address == "B" * 81
    assert transaction.value == 0
    assert transaction.tag == "TAG".ljust(27, "9")
    assert transaction.signature_message_fragment == "ABC".ljust(2187, "9")
    assert (transaction.timestamp, transaction.current_index, transaction.last_index) == (
        TIMESTAMP,
        0,
        0,
    )
    assert transaction.bundle == builder.bundle_hash == bundle_hash([transaction])
    assert is_secure_bundle_hash(transaction.bundle)
    assert builder.to_trytes() == [transaction.to_trytes()]
    validate_bundle(builder.transactions)


def test_bundle_hash_is_kerl_over_the_essences() -> None:
    builder = BundleBuilder()
    builder.add_transfer("C" * 81, message_trytes="X")
    builder.add_transfer("D" * 81)
    builder.finalize(TIMESTAMP)
    transactions = builder.transactions
    essences = np.concatenate([t.essence_trits() for t in transactions])
    assert builder.bundle_hash == trits_to_trytes(kerl_hash(essences))
    assert bundle_hash(list(reversed(transactions))) == builder.bundle_hash


def zero_value_bundle(rng: random.Random, size: int) -> list[Transaction]:
    builder = BundleBuilder()
    for _ in range(size):
        builder.add_transfer(random_trytes(rng, 81), tag=random_trytes(rng, 5))
    builder.finalize(TIMESTAMP + rng.randrange(1000))
    return builder.transactions


def test_bundle_hashes_of_mixed_sizes_equal_one_at_a_time() -> None:
    rng = random.Random(9)
    # Sizes 1 and 2 hash in lanes of several bundles (1 and 2 Keccak blocks each), size 3 alone.
    bundles = [zero_value_bundle(rng, size) for size in (1, 2, 1, 3, 2, 1, 2, 1)]
    bundles[1] = list(reversed(bundles[1]))  # any order within a bundle
    expected = [
        trits_to_trytes(
            kerl_hash(
                np.concatenate(
                    [t.essence_trits() for t in sorted(bundle, key=lambda t: t.current_index)]
                )
            )
        )
        for bundle in bundles
    ]
    assert bundle_hashes(bundles) == expected
    assert expected == [bundle[0].bundle for bundle in bundles]
    assert bundle_hashes([]) == []
    with pytest.raises(InvalidBundleError, match="at least one"):
        bundle_hashes([bundles[0], []])


def test_bundle_errors_name_each_bad_bundle_as_validate_bundle_would(
    signed_bundle: list[Transaction],
) -> None:
    rng = random.Random(10)
    good = [zero_value_bundle(rng, size) for size in (1, 1, 1, 2)]
    wrong_hash = [good[1][0].replace(timestamp=TIMESTAMP - 1)]
    tampered = list(signed_bundle)
    tampered[0] = tampered[0].replace(value=41)
    bundles = [good[0], wrong_hash, good[2], tampered, good[3], [], signed_bundle]
    errors = bundle_errors(bundles)
    assert [type(error) for error in errors] == [
        type(None),
        InvalidBundleError,
        type(None),
        InvalidBundleError,
        type(None),
        InvalidBundleError,
        type(None),
    ]
    for bundle, error in zip(bundles, errors, strict=True):
        if error is not None:
            with pytest.raises(InvalidBundleError) as raised:
                validate_bundle(bundle)
            assert str(raised.value) == str(error)
    assert "essences hash" in str(errors[1])
    assert "sum to 1" in str(errors[3])
    assert bundle_errors([]) == []


def test_tail_obsolete_tag_is_incremented_until_the_hash_is_secure() -> None:
    rng = random.Random(1)
    incremented = 0
    for _ in range(6):
        builder = BundleBuilder()
        tag = random_trytes(rng, 27)
        builder.add_transfer(random_trytes(rng, 81), tag=tag)
        builder.add_transfer(random_trytes(rng, 81), tag=tag)
        builder.finalize(TIMESTAMP)
        tail, other = builder.transactions
        assert is_secure_bundle_hash(builder.bundle_hash)
        assert other.obsolete_tag == tag
        assert tail.tag == other.tag == tag
        steps = 0
        candidate = tag
        while candidate != tail.obsolete_tag:
            candidate = increment_tag(candidate)
            steps += 1
            assert steps < 10_000
        # every earlier tag would have given an insecure hash
        candidate = tag
        for _ in range(steps):
            earlier = [tail.replace(obsolete_tag=candidate), other]
            assert not is_secure_bundle_hash(bundle_hash(earlier))
            candidate = increment_tag(candidate)
        incremented += steps > 0
    assert incremented > 0


def unfinalized(rng: random.Random, size: int) -> BundleBuilder:
    builder = BundleBuilder()
    tag = random_trytes(rng, 27)
    for _ in range(size):
        builder.add_transfer(random_trytes(rng, 81), tag=tag, message_trytes=random_trytes(rng, 9))
    return builder


def test_finalizing_together_gives_the_bundles_finalizing_alone_gives() -> None:
    """One secure-tag search for many bundles (mixed sizes searched per size) finds
    each bundle the tag its own search would: the first secure one counting up."""
    sizes = (1, 2, 1, 3, 1, 2, 1, 1, 4, 1)
    rng = random.Random(31)
    together = [unfinalized(rng, size) for size in sizes]
    rng = random.Random(31)
    alone = [unfinalized(rng, size) for size in sizes]
    finalize_bundles(together, TIMESTAMP)
    for builder in alone:
        builder.finalize(TIMESTAMP)
    assert [b.transactions for b in together] == [b.transactions for b in alone]
    for builder in together:
        validate_bundle(builder.transactions)
    finalize_bundles([], TIMESTAMP)


def test_finalizing_together_is_all_or_nothing() -> None:
    rng = random.Random(32)
    done = unfinalized(rng, 1)
    done.finalize(TIMESTAMP)
    pending = unfinalized(rng, 2)
    with pytest.raises(ProtocolError, match="finalized"):
        finalize_bundles([pending, done], TIMESTAMP)
    with pytest.raises(ProtocolError, match="not finalized"):
        _ = pending.transactions
    with pytest.raises(ProtocolError, match="each builder once"):
        finalize_bundles([pending, pending], TIMESTAMP)
    finalize_bundles([pending], TIMESTAMP)
    validate_bundle(pending.transactions)


@pytest.mark.parametrize(("length", "count"), [(0, 1), (1, 1), (2187, 1), (2188, 2), (5000, 3)])
def test_long_messages_span_transactions(length: int, count: int) -> None:
    message = random_trytes(random.Random(length), length)
    builder = BundleBuilder()
    builder.add_transfer("E" * 80 + "9", 5, tag="MSG", message_trytes=message)
    builder.add_input(signing.generate_address("S", 0, 1), 5, 0, 1)
    builder.finalize(TIMESTAMP)
    parts = builder.transactions[:count]
    assert [t.value for t in parts] == [5] + [0] * (count - 1)
    assert all(t.address == "E" * 80 + "9" and t.tag.startswith("MSG") for t in parts)
    joined = "".join(t.signature_message_fragment for t in parts)
    assert joined == message.ljust(2187 * count, "9")
    assert builder.transactions[count].value == -5


def test_value_bundle_layout(signed_bundle: list[Transaction], wallet: dict[str, str]) -> None:
    values = [t.value for t in signed_bundle]
    addresses = [t.address for t in signed_bundle]
    assert values == [40, -100, 0, 60]
    assert addresses == [wallet["receiver"], wallet["input"], wallet["input"], wallet["remainder"]]
    assert [t.current_index for t in signed_bundle] == [0, 1, 2, 3]
    assert all(t.last_index == 3 and t.timestamp == TIMESTAMP for t in signed_bundle)
    assert signed_bundle[1].tag == "9" * 27  # inputs and remainder default to no tag
    assert signed_bundle[1].signature_message_fragment != "9" * 2187
    validate_bundle(signed_bundle)


def test_to_trytes_lists_the_last_index_first(wallet: dict[str, str]) -> None:
    builder = BundleBuilder()
    builder.add_transfer(wallet["receiver"], 100)
    builder.add_input(wallet["input"], 100, 3, 2)
    builder.finalize(TIMESTAMP)
    with pytest.raises(ProtocolError, match="sign it"):
        builder.to_trytes()
    builder.sign(wallet["seed"])
    trytes = builder.to_trytes()
    assert trytes == [t.to_trytes() for t in reversed(builder.transactions)]
    assert transactions_from_trytes(trytes)[-1].is_tail
    with pytest.raises(ProtocolError, match="already signed"):
        builder.sign(wallet["seed"])


def test_signing_with_the_wrong_seed_names_the_derived_address(wallet: dict[str, str]) -> None:
    builder = BundleBuilder()
    builder.add_transfer(wallet["receiver"], 100)
    builder.add_input(wallet["input"], 100, 3, 2)
    builder.finalize(TIMESTAMP)
    other_seed = "X" * 81
    with pytest.raises(InvalidSignatureError, match=signing.generate_address(other_seed, 3, 2)):
        builder.sign(other_seed)


def test_exact_inputs_need_no_remainder(wallet: dict[str, str]) -> None:
    builder = BundleBuilder()
    builder.add_transfer(wallet["receiver"], 100)
    builder.add_input(wallet["input"], 100, 3, 2)
    builder.add_remainder(wallet["remainder"])
    builder.finalize(TIMESTAMP)
    assert len(builder.transactions) == 3


def test_balance_errors(wallet: dict[str, str]) -> None:
    short = BundleBuilder()
    short.add_transfer(wallet["receiver"], 101)
    short.add_input(wallet["input"], 100, 3, 2)
    with pytest.raises(InvalidBundleError, match="1 short"):
        short.finalize(TIMESTAMP)
    surplus = BundleBuilder()
    surplus.add_transfer(wallet["receiver"], 99)
    surplus.add_input(wallet["input"], 100, 3, 2)
    with pytest.raises(InvalidBundleError, match="remainder"):
        surplus.finalize(TIMESTAMP)
    back = BundleBuilder()
    back.add_transfer(wallet["input"], 10)
    back.add_input(wallet["input"], 10, 3, 2)
    with pytest.raises(InvalidBundleError, match="back to one of its input"):
        back.finalize(TIMESTAMP)
    with pytest.raises(InvalidBundleError, match="at least one"):
        BundleBuilder().finalize(TIMESTAMP)


def test_builder_state_errors() -> None:
    builder = BundleBuilder()
    with pytest.raises(ProtocolError, match="not finalized"):
        _ = builder.transactions
    with pytest.raises(ProtocolError, match="not finalized"):
        builder.sign("A")
    builder.add_transfer("A" * 81)
    builder.add_remainder("B" * 81)
    with pytest.raises(ProtocolError, match="already has a remainder"):
        builder.add_remainder("C" * 81)
    builder.finalize(TIMESTAMP)
    with pytest.raises(ProtocolError, match="finalized"):
        builder.add_transfer("A" * 81)
    with pytest.raises(ProtocolError, match="finalized"):
        builder.finalize(TIMESTAMP)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda b: b.add_transfer("A" * 81, -1), ProtocolError, "value must lie"),
        (lambda b: b.add_transfer("A" * 81, True), ProtocolError, "must be an int"),
        (lambda b: b.add_transfer("A" * 80 + "M", 1), InvalidAddressError, "last trit"),
        (lambda b: b.add_transfer("A" * 80), InvalidAddressError, "trytes long"),
        (lambda b: b.add_transfer("A" * 81, tag="A" * 28), InvalidTrytesError, "at most 27"),
        (lambda b: b.add_transfer("A" * 81, tag="a"), InvalidTrytesError, "only 9 and A-Z"),
        (lambda b: b.add_transfer("A" * 81, message_trytes="hi"), InvalidTrytesError, "A-Z"),
        (lambda b: b.add_input("A" * 81, 0, 0, 2), ProtocolError, "balance must lie"),
        (lambda b: b.add_input("A" * 81, 5, -1, 2), ProtocolError, "key index"),
        (lambda b: b.add_input("A" * 81, 5, 0, 4), ProtocolError, "security"),
        (lambda b: b.add_input("A" * 80 + "N", 5, 0, 2), InvalidAddressError, "last trit"),
        (lambda b: b.add_remainder("A" * 80 + "M"), InvalidAddressError, "last trit"),
    ],
)
def test_builder_rejects_bad_arguments(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call(BundleBuilder())  # type: ignore[operator]


def test_builder_rejects_duplicate_inputs_and_bad_timestamps() -> None:
    builder = BundleBuilder()
    builder.add_input("A" * 81, 5, 0, 1)
    with pytest.raises(ProtocolError, match="already an input"):
        builder.add_input("A" * 81, 5, 1, 1)
    builder.add_transfer("B" * 81, 5)
    with pytest.raises(ProtocolError, match="timestamp"):
        builder.finalize(-1)


def test_checksummed_addresses_are_accepted_and_stripped() -> None:
    builder = BundleBuilder()
    builder.add_transfer(add_checksum("A" * 81), 0)
    builder.finalize(TIMESTAMP)
    assert builder.transactions[0].address == "A" * 81
    wrong = add_checksum("A" * 81)[:-1] + "Z"
    with pytest.raises(InvalidAddressError, match="checksum"):
        BundleBuilder().add_transfer(wrong)


def test_increment_tag_carries_and_wraps() -> None:
    assert increment_tag("9" * 27) == "A" + "9" * 26
    assert increment_tag("M" + "9" * 26) == "NA" + "9" * 25
    assert increment_tag("M" * 27) == "N" * 27
    with pytest.raises(InvalidTrytesError):
        increment_tag("A")


def test_secure_hash_check() -> None:
    assert is_secure_bundle_hash("9" * 81)
    assert not is_secure_bundle_hash("M" * 81)


# -- validation failures --------------------------------------------------------------


def test_validation_rejects_missing_and_duplicate_transactions(
    signed_bundle: list[Transaction],
) -> None:
    with pytest.raises(InvalidBundleError, match="at least one"):
        validate_bundle([])
    with pytest.raises(InvalidBundleError, match="last index is 3"):
        validate_bundle(signed_bundle[:3])
    with pytest.raises(InvalidBundleError, match="current index 1"):
        validate_bundle([signed_bundle[0], signed_bundle[0], *signed_bundle[2:]])
    with pytest.raises(InvalidBundleError, match="Transaction objects"):
        validate_bundle(["9" * 2673])  # type: ignore[list-item]


def test_validation_accepts_any_order(signed_bundle: list[Transaction]) -> None:
    validate_bundle(list(reversed(signed_bundle)))


def test_validation_rejects_inconsistent_fields(signed_bundle: list[Transaction]) -> None:
    bundle = list(signed_bundle)
    bundle[2] = bundle[2].replace(bundle="A" * 81)
    with pytest.raises(InvalidBundleError, match="belongs to bundle"):
        validate_bundle(bundle)
    bundle = list(signed_bundle)
    bundle[0] = bundle[0].replace(value=41)
    with pytest.raises(InvalidBundleError, match="sum to 1"):
        validate_bundle(bundle)
    bundle = list(signed_bundle)
    bundle[0] = bundle[0].replace(value=41)
    bundle[3] = bundle[3].replace(value=59)
    with pytest.raises(InvalidBundleError, match="essences hash"):
        validate_bundle(bundle)
    bundle = list(signed_bundle)
    bundle[1] = bundle[1].replace(timestamp=TIMESTAMP + 1)
    with pytest.raises(InvalidBundleError, match="essences hash"):
        validate_bundle(bundle)


def test_validation_rejects_value_on_an_address_with_a_non_zero_last_trit() -> None:
    transactions = [
        Transaction(
            signature_message_fragment="9" * 2187,
            address="A" * 80 + "M",
            value=value,
            obsolete_tag="9" * 27,
            timestamp=TIMESTAMP,
            current_index=index,
            last_index=1,
            bundle="9" * 81,
        )
        for index, value in enumerate((5, -5))
    ]
    with pytest.raises(InvalidBundleError, match="last trit is not 0"):
        validate_bundle(transactions)


def test_validation_rejects_a_tampered_signature(signed_bundle: list[Transaction]) -> None:
    bundle = list(signed_bundle)
    fragment = bundle[2].signature_message_fragment
    flipped = "A" if fragment[500] != "A" else "B"
    bundle[2] = bundle[2].replace(
        signature_message_fragment=fragment[:500] + flipped + fragment[501:]
    )
    with pytest.raises(InvalidSignatureError, match="input 1"):
        validate_bundle(bundle)
    # InvalidSignatureError is an InvalidBundleError, so one except catches both
    assert issubclass(InvalidSignatureError, InvalidBundleError)


def test_validation_rejects_a_signature_over_an_insecure_hash() -> None:
    seed = "S" * 81
    spend = signing.generate_address(seed, 0, 1)
    rng = random.Random(5)
    for _ in range(200):
        tag = random_trytes(rng, 27)
        transactions = [
            Transaction(
                signature_message_fragment="9" * 2187,
                address=address,
                value=value,
                obsolete_tag=tag,
                timestamp=TIMESTAMP,
                current_index=index,
                last_index=1,
                bundle="9" * 81,
            )
            for index, (address, value) in enumerate((("A" * 81, 7), (spend, -7)))
        ]
        insecure = bundle_hash(transactions)
        if not is_secure_bundle_hash(insecure):
            break
    key = signing.key(signing.subseed(signing.seed_to_trits(seed), 0), 1)
    signature = signing.signature_fragments(signing.normalize_hash(insecure), key)
    transactions = [t.replace(bundle=insecure) for t in transactions]
    transactions[1] = transactions[1].replace(signature_message_fragment=trits_to_trytes(signature))
    assert signing.validate_signature(spend, [transactions[1].signature_message_fragment], insecure)
    with pytest.raises(InvalidSignatureError, match="13"):
        validate_bundle(transactions)


def attach(transactions: list[Transaction], rng: random.Random) -> list[Transaction]:
    """Chain trunks the way attachToTangle does (highest index first); nonces stay empty."""
    attached = list(transactions)
    trunk, branch = random_trytes(rng, 81), random_trytes(rng, 81)
    for index in reversed(range(len(attached))):
        if index == len(attached) - 1:
            attached[index] = attached[index].replace(
                trunk_transaction=trunk, branch_transaction=branch
            )
        else:
            attached[index] = attached[index].replace(
                trunk_transaction=attached[index + 1].hash, branch_transaction=trunk
            )
    return attached


def test_trunk_chain_is_checked_for_attached_bundles(signed_bundle: list[Transaction]) -> None:
    rng = random.Random(6)
    attached = attach(signed_bundle, rng)
    validate_bundle(attached)
    validate_bundle(attached, attached=True)
    broken = list(attached)
    # a new trunk changes transaction 1's hash, so the link from transaction 0 breaks
    broken[1] = broken[1].replace(trunk_transaction=random_trytes(rng, 81))
    with pytest.raises(InvalidBundleError, match="transaction 0's trunk is not transaction 1"):
        validate_bundle(broken)
    validate_bundle(broken, attached=False)
    assert all(t.trunk_transaction == NULL_HASH for t in signed_bundle)
    with pytest.raises(InvalidBundleError, match="trunk"):
        validate_bundle(signed_bundle, attached=True)


@pytest.mark.parametrize("tag", ["9" * 27, "M" * 27, "N" * 27, "M" * 26 + "A", "ABC" + "9" * 24])
def test_candidate_tags_count_up_like_increment_tag(tag: str) -> None:
    expected = tag
    for row in _tags_from(tag, 64):
        assert trits_to_trytes(row) == expected
        expected = increment_tag(expected)


def test_bundle_from_tail_follows_trunks_and_stops_where_the_chain_breaks() -> None:
    bundle = zero_value_bundle(random.Random(7), 3)
    keys = ["A" * 81, "B" * 81, "C" * 81]
    linked = [
        transaction.replace(trunk_transaction=keys[position + 1] if position < 2 else NULL_HASH)
        for position, transaction in enumerate(bundle)
    ]
    members = dict(zip(keys, linked, strict=True))
    assert bundle_from_tail(linked[0], members, lambda t: t) == linked
    # Wrapped members (as the node's parsed transactions) come back wrapped.
    wrapped = {key: (key, transaction) for key, transaction in members.items()}
    chain = bundle_from_tail(wrapped[keys[0]], wrapped, lambda member: member[1])
    assert chain is not None
    assert [key for key, _ in chain] == keys
    # A missing member, another bundle's transaction, a wrong index or last index: no bundle.
    assert bundle_from_tail(linked[0], {keys[1]: linked[1]}, lambda t: t) is None
    other = zero_value_bundle(random.Random(8), 3)[2]
    for broken in (
        other.replace(trunk_transaction=NULL_HASH),
        linked[2].replace(current_index=1),
        linked[2].replace(last_index=3),
    ):
        assert bundle_from_tail(linked[0], {**members, keys[2]: broken}, lambda t: t) is None
