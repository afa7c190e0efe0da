"""Property tests of transaction parsing: every valid transaction survives a
round trip unchanged, and any other input raises InvalidTransactionError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from p2p_energy_protocol.curl import curl_hash
from p2p_energy_protocol.errors import InvalidTransactionError
from p2p_energy_protocol.transaction import (
    MAX_INT_FIELD,
    MAX_VALUE,
    TRANSACTION_LENGTH,
    Transaction,
    transactions_from_trytes,
    transactions_hashes,
)
from p2p_energy_protocol.trinary import trits_to_trytes, trytes_to_trits

from .profiles import FUZZ, scaled
from .strategies import fixed_trytes, near_trytes, trytes

int_fields = st.integers(0, MAX_INT_FIELD)


@st.composite
def transactions(draw: st.DrawFn) -> Transaction:
    last_index = draw(st.integers(0, MAX_INT_FIELD))
    return Transaction(
        signature_message_fragment=draw(fixed_trytes(2187)),
        address=draw(fixed_trytes(81)),
        value=draw(st.integers(-MAX_VALUE, MAX_VALUE)),
        obsolete_tag=draw(fixed_trytes(27)),
        timestamp=draw(int_fields),
        current_index=draw(st.integers(0, last_index)),
        last_index=last_index,
        bundle=draw(fixed_trytes(81)),
        trunk_transaction=draw(fixed_trytes(81)),
        branch_transaction=draw(fixed_trytes(81)),
        tag=draw(fixed_trytes(27)),
        attachment_timestamp=draw(int_fields),
        attachment_timestamp_lower_bound=draw(int_fields),
        attachment_timestamp_upper_bound=draw(int_fields),
        nonce=draw(fixed_trytes(27)),
    )


@FUZZ
@given(transactions())
def test_valid_transactions_round_trip(transaction: Transaction) -> None:
    trytes = transaction.to_trytes()
    assert len(trytes) == TRANSACTION_LENGTH
    parsed = Transaction.from_trytes(trytes)
    assert parsed == transaction
    assert parsed.to_trytes() == trytes
    assert parsed.hash == trits_to_trytes(curl_hash(trytes_to_trits(trytes), 81))


@FUZZ
@given(fixed_trytes(TRANSACTION_LENGTH))
def test_random_trytes_parse_exactly_or_are_rejected(trytes: str) -> None:
    # Random trytes usually break the value field's unused trits or the index order.
    try:
        parsed = Transaction.from_trytes(trytes)
    except InvalidTransactionError:
        return
    assert parsed.to_trytes() == trytes
    assert abs(parsed.value) <= MAX_VALUE
    assert parsed.current_index <= parsed.last_index


@FUZZ
@given(transactions(), st.data())
def test_one_changed_tryte_changes_the_hash_or_is_rejected(
    transaction: Transaction, data: st.DataObject
) -> None:
    trytes = transaction.to_trytes()
    position = data.draw(st.integers(0, TRANSACTION_LENGTH - 1))
    replacement = data.draw(st.sampled_from("9ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    mutated = trytes[:position] + replacement + trytes[position + 1 :]
    try:
        parsed = Transaction.from_trytes(mutated)
    except InvalidTransactionError:
        return
    assert parsed.to_trytes() == mutated
    assert (parsed.hash == transaction.hash) == (mutated == trytes)


@FUZZ
@given(
    st.one_of(
        near_trytes(max_size=3000),
        trytes(max_size=2672),
        trytes(min_size=2674, max_size=2800),
        st.integers(),
        st.none(),
        st.binary(max_size=50),
    )
)
def test_malformed_input_is_rejected(value: object) -> None:
    if isinstance(value, str) and len(value) == TRANSACTION_LENGTH:
        pytest.skip("the right length is covered by the other properties")
    with pytest.raises(InvalidTransactionError):
        Transaction.from_trytes(value)  # type: ignore[arg-type]


@scaled(0.25)
@given(st.lists(transactions(), min_size=1, max_size=8), st.data())
def test_batched_hashing_matches_single_and_rejects_any_bad_member(
    batch: list[Transaction], data: st.DataObject
) -> None:
    trytes_list = [transaction.to_trytes() for transaction in batch]
    assert transactions_hashes(trytes_list) == [t.hash for t in batch]
    assert transactions_from_trytes(trytes_list) == batch
    bad_position = data.draw(st.integers(0, len(batch) - 1))
    bad = data.draw(st.sampled_from(["short", "alphabet", "value"]))
    broken = trytes_list[bad_position]
    if bad == "short":
        broken = broken[:-1]
    elif bad == "alphabet":
        broken = broken[:100] + "a" + broken[101:]
    else:
        # A non-zero trit beyond the value field's 33 usable ones.
        broken = broken[: 2268 + 20] + "M" + broken[2268 + 21 :]
    trytes_list[bad_position] = broken
    with pytest.raises(InvalidTransactionError):
        transactions_from_trytes(trytes_list)
    if bad != "value":
        with pytest.raises(InvalidTransactionError):
            transactions_hashes(trytes_list)


@FUZZ
@given(
    st.sampled_from(
        ["value", "timestamp", "current_index", "last_index", "attachment_timestamp", "tag"]
    ),
    st.one_of(
        st.integers(min_value=MAX_INT_FIELD + 1, max_value=3**40),
        st.integers(max_value=-1, min_value=-(3**40)),
        st.booleans(),
        st.floats(),
        st.text(max_size=30),
    ),
)
def test_bad_field_values_are_rejected(field: str, value: object) -> None:
    base = Transaction(
        signature_message_fragment="9" * 2187,
        address="A" * 81,
        value=0,
        obsolete_tag="9" * 27,
        timestamp=0,
        current_index=0,
        last_index=0,
        bundle="9" * 81,
    )
    valid_value = isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_VALUE
    if field == "value" and valid_value:
        assert base.replace(value=value).value == value
        return
    with pytest.raises(InvalidTransactionError):
        base.replace(**{field: value})
