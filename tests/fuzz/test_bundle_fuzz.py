"""Property tests of bundle validation: built bundles validate, and any change to
an essence, a signature, the order or the membership is rejected with
InvalidBundleError (InvalidSignatureError for signatures)."""

from __future__ import annotations

import random
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.bundle_validation import validate_bundle
from p2p_energy_protocol.errors import InvalidBundleError, InvalidSignatureError
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.trinary import trytes_to_trits

if TYPE_CHECKING:
    from p2p_energy_protocol.transaction import Transaction

from .profiles import FUZZ, scaled
from .strategies import fixed_trytes, mutate_trytes, trytes

SEED = "RELIABILITY9FUZZ9SEED" + "9" * 60
TIMESTAMP = 1_700_000_000
# Addresses whose last trit is 0 (a tryte value divisible by 3 at the end: 9, C, F, ...).
value_addresses = st.builds(
    lambda head, last: head + last, fixed_trytes(80), st.sampled_from("9CFILORUX")
)
tags = trytes(max_size=27)


@st.composite
def zero_value_bundles(draw: st.DrawFn) -> list[Transaction]:
    builder = BundleBuilder()
    for _ in range(draw(st.integers(1, 4))):
        builder.add_transfer(
            draw(fixed_trytes(81)), 0, draw(tags), draw(trytes(max_size=2 * 2187 + 10))
        )
    builder.finalize(draw(st.integers(0, 2**31)))
    return builder.transactions


@cache
def prebuilt_bundles() -> tuple[tuple[Transaction, ...], ...]:
    """A few zero-value bundles of 1..7 transactions (finalizing costs ~0.1 s of Kerl
    each, so the mutation properties draw from these instead of building anew)."""
    rng = random.Random(20260427)
    alphabet = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    bundles = []
    for transfers in (1, 1, 2, 3, 4):
        builder = BundleBuilder()
        for _ in range(transfers):
            message = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 4400)))
            address = "".join(rng.choice(alphabet) for _ in range(81))
            builder.add_transfer(address, 0, "FUZZ", message)
        builder.finalize(rng.randrange(0, 2**31))
        bundles.append(tuple(builder.transactions))
    return tuple(bundles)


prebuilt = st.integers(0, 4).map(lambda n: list(prebuilt_bundles()[n]))


@cache
def signed_value_bundle() -> tuple[Transaction, ...]:
    """One signed bundle spending a security-2 input (signing costs ~0.3 s, so made once)."""
    builder = BundleBuilder()
    builder.add_transfer("PAYEE" + "9" * 76, 1_000, "RELIABILITY")
    builder.add_input(generate_address(SEED, 0, 2), 1_500, 0, 2)
    builder.add_remainder("REMAINDER" + "9" * 72)
    builder.finalize(TIMESTAMP)
    builder.sign(SEED)
    return tuple(builder.transactions)


@scaled(0.05)
@given(zero_value_bundles())
def test_built_bundles_validate(bundle: list[Transaction]) -> None:
    validate_bundle(bundle)
    assert [t.current_index for t in bundle] == list(range(len(bundle)))
    assert len({t.bundle for t in bundle}) == 1


@FUZZ
@given(prebuilt, st.data())
def test_changing_an_essence_field_breaks_the_bundle(
    bundle: list[Transaction], data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(bundle) - 1))
    target = bundle[position]
    change = data.draw(st.sampled_from(["address", "obsolete_tag", "timestamp", "bundle", "value"]))
    if change == "timestamp":
        changed = target.replace(timestamp=(target.timestamp + data.draw(st.integers(1, 99))))
    elif change == "value":
        changed = target.replace(value=data.draw(st.integers(1, 10**6)))
    else:
        changed = target.replace(**{change: mutate_trytes(data, getattr(target, change))})
    tampered = [*bundle[:position], changed, *bundle[position + 1 :]]
    try:
        validate_bundle(tampered)
    except InvalidBundleError:
        return
    # Kerl ignores the last trit of every 243-trit chunk: the address's trit 242 is
    # the only essence trit a change can hide in (why value addresses must end in 0).
    assert change == "address"
    assert _changed_trits(target.address, changed.address) == [242]


@FUZZ
@given(prebuilt, st.data())
def test_wrong_membership_or_indexes_are_rejected(
    bundle: list[Transaction], data: st.DataObject
) -> None:
    action = data.draw(st.sampled_from(["drop", "duplicate", "reindex", "foreign"]))
    if action == "drop":
        if len(bundle) == 1:
            with pytest.raises(InvalidBundleError):
                validate_bundle([])
            return
        position = data.draw(st.integers(0, len(bundle) - 1))
        changed = bundle[:position] + bundle[position + 1 :]
    elif action == "duplicate":
        changed = [*bundle, bundle[data.draw(st.integers(0, len(bundle) - 1))]]
    elif action == "reindex":
        position = data.draw(st.integers(0, len(bundle) - 1))
        new_last = data.draw(st.integers(0, 20).filter(lambda n: n != len(bundle) - 1))
        changed = [*bundle]
        changed[position] = bundle[position].replace(
            last_index=new_last, current_index=min(bundle[position].current_index, new_last)
        )
    else:
        other = prebuilt_bundles()[data.draw(st.integers(0, 4))]
        if other[0].bundle == bundle[0].bundle:
            return
        changed = [*bundle, *[t for t in other if t.current_index == 0]]
    with pytest.raises(InvalidBundleError):
        validate_bundle(changed)


@scaled(0.25)
@given(prebuilt, st.randoms(use_true_random=False))
def test_order_of_members_does_not_matter(bundle: list[Transaction], rng: object) -> None:
    shuffled = list(bundle)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    validate_bundle(shuffled)


def test_signed_value_bundle_validates() -> None:
    validate_bundle(list(signed_value_bundle()))


@scaled(0.25)
@given(st.data())
def test_any_changed_signature_tryte_is_rejected(data: st.DataObject) -> None:
    bundle = list(signed_value_bundle())
    inputs = [position for position, t in enumerate(bundle) if t.value < 0]
    # Security 2: the input and the next transaction carry the signature.
    position = data.draw(st.sampled_from([inputs[0], inputs[0] + 1]))
    fragment = mutate_trytes(data, bundle[position].signature_message_fragment, "signature")
    original = bundle[position].signature_message_fragment
    bundle[position] = bundle[position].replace(signature_message_fragment=fragment)
    try:
        validate_bundle(bundle)
    except InvalidSignatureError:
        return
    # Only a trit Kerl ignores (the last of a 243-trit chunk) may change unnoticed.
    assert all(trit % 243 == 242 for trit in _changed_trits(original, fragment))


@scaled(0.25)
@given(st.data())
def test_redirected_value_is_rejected(data: st.DataObject) -> None:
    bundle = list(signed_value_bundle())
    payee = next(position for position, t in enumerate(bundle) if t.value > 0)
    thief = data.draw(value_addresses)
    bundle[payee] = bundle[payee].replace(address=thief)
    if thief == signed_value_bundle()[payee].address:
        return
    with pytest.raises(InvalidBundleError):
        validate_bundle(bundle)


def _changed_trits(before: str, after: str) -> list[int]:
    return np.flatnonzero(trytes_to_trits(before) != trytes_to_trits(after)).tolist()


@FUZZ
@given(st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=5))
def test_non_transactions_are_rejected(items: list[object]) -> None:
    with pytest.raises(InvalidBundleError):
        validate_bundle(items)  # type: ignore[arg-type]
