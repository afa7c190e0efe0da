"""Property tests of the trinary conversions: exact round trips, and bad input
raising only the library's specific errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from p2p_energy_protocol.errors import InvalidAsciiError, InvalidTritsError, InvalidTrytesError
from p2p_energy_protocol.trinary import (
    ascii_to_trytes,
    int_to_trits,
    int_to_trytes,
    pad_trytes,
    text_to_trytes,
    trits_to_int,
    trits_to_trytes,
    trytes_to_ascii,
    trytes_to_int,
    trytes_to_trits,
    validate_trits,
    validate_trytes,
)

from .profiles import FUZZ
from .strategies import TRYTE_ALPHABET, near_trytes, trytes

CURL_KERNEL_INDEPENDENT = True
"""Nothing here reaches Curl: run once, not once per Curl kernel."""


@FUZZ
@given(trytes(max_size=600))
def test_trytes_trits_round_trip(value: str) -> None:
    trits = trytes_to_trits(value)
    assert trits.dtype == np.int8
    assert trits.size == 3 * len(value)
    assert set(np.unique(trits).tolist()) <= {-1, 0, 1}
    assert trits_to_trytes(trits) == value


@FUZZ
@given(near_trytes(max_size=200))
def test_any_text_is_either_trytes_or_rejected(value: str) -> None:
    if all(ch in TRYTE_ALPHABET for ch in value):
        assert validate_trytes(value) == value
        assert trits_to_trytes(trytes_to_trits(value)) == value
        return
    with pytest.raises(InvalidTrytesError):
        validate_trytes(value)
    with pytest.raises(InvalidTrytesError):
        trytes_to_trits(value)
    with pytest.raises(InvalidTrytesError):
        trytes_to_ascii(value)


@FUZZ
@given(st.one_of(st.integers(), st.binary(), st.lists(st.text(max_size=2)), st.none()))
def test_non_strings_are_rejected_as_trytes(value: object) -> None:
    with pytest.raises(InvalidTrytesError):
        validate_trytes(value)  # type: ignore[arg-type]


@FUZZ
@given(st.lists(st.integers(-3, 3), max_size=300))
def test_trits_with_bad_values_or_lengths_are_rejected(values: list[int]) -> None:
    valid_values = all(-1 <= v <= 1 for v in values)
    if valid_values and len(values) % 3 == 0:
        assert trytes_to_trits(trits_to_trytes(values)).tolist() == values
    else:
        with pytest.raises(InvalidTritsError):
            trits_to_trytes(values)
    if not valid_values:
        with pytest.raises(InvalidTritsError):
            validate_trits(values)
        with pytest.raises(InvalidTritsError):
            trits_to_int(values)


@FUZZ
@given(st.integers(min_value=-(3**200), max_value=3**200))
def test_integer_round_trip(value: int) -> None:
    trits = int_to_trits(value)
    assert trits_to_int(trits) == value
    length = (trits.size + 2) // 3
    assert trytes_to_int(int_to_trytes(value, max(length, 1))) == value


@FUZZ
@given(st.integers(min_value=1, max_value=3**60), st.integers(0, 30))
def test_integer_too_large_for_its_field_is_rejected(magnitude: int, length: int) -> None:
    needed = int_to_trits(magnitude).size
    if needed > length:
        with pytest.raises(InvalidTritsError):
            int_to_trits(magnitude, length)
        with pytest.raises(InvalidTritsError):
            int_to_trits(-magnitude, length)
    else:
        assert trits_to_int(int_to_trits(-magnitude, length)) == -magnitude


@FUZZ
@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=300))
def test_ascii_round_trip(text: str) -> None:
    encoded = ascii_to_trytes(text)
    assert len(encoded) == 2 * len(text)
    assert trytes_to_ascii(encoded) == text


@FUZZ
@given(st.text(max_size=100))
def test_text_encoding_is_ascii_trytes_or_a_clear_error(text: str) -> None:
    encoded = text_to_trytes(text)
    assert validate_trytes(encoded) == encoded
    decoded = trytes_to_ascii(encoded)
    assert all(ord(ch) < 0x7F for ch in decoded)
    if any(ord(ch) > 255 for ch in text):
        with pytest.raises(InvalidAsciiError):
            ascii_to_trytes(text)


@FUZZ
@given(trytes(max_size=400))
def test_any_trytes_decode_to_latin1_text_or_raise(value: str) -> None:
    try:
        decoded = trytes_to_ascii(value)
    except InvalidAsciiError:
        # Some pair of trytes must encode a code above 255.
        trimmed = value.rstrip("9")
        trimmed += "9" * (len(trimmed) % 2)
        codes = [
            TRYTE_ALPHABET.index(trimmed[i]) + 27 * TRYTE_ALPHABET.index(trimmed[i + 1])
            for i in range(0, len(trimmed), 2)
        ]
        assert max(codes) > 255
    else:
        assert all(ord(ch) <= 255 for ch in decoded)


@FUZZ
@given(trytes(max_size=100), st.integers(0, 120))
def test_padding_never_truncates(value: str, length: int) -> None:
    if len(value) > length:
        with pytest.raises(InvalidTrytesError):
            pad_trytes(value, length)
    else:
        padded = pad_trytes(value, length)
        assert len(padded) == length
        assert padded.startswith(value)
        assert set(padded[len(value) :]) <= {"9"}
