"""Balanced-ternary conversions: known values, round trips and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from p2p_energy_protocol.errors import InvalidAsciiError, InvalidTritsError, InvalidTrytesError
from p2p_energy_protocol.trinary import (
    TRYTE_ALPHABET,
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

CURL_KERNEL_INDEPENDENT = True
"""Nothing here reaches Curl: run once, not once per Curl kernel."""

trytes_strategy = st.text(alphabet=TRYTE_ALPHABET, max_size=200)
trit_lists = st.lists(st.sampled_from([-1, 0, 1]), max_size=300)


@pytest.mark.parametrize(
    ("tryte", "trits", "value"),
    [
        ("9", [0, 0, 0], 0),
        ("A", [1, 0, 0], 1),
        ("C", [0, 1, 0], 3),
        ("I", [0, 0, 1], 9),
        ("M", [1, 1, 1], 13),
        ("N", [-1, -1, -1], -13),
        ("Z", [-1, 0, 0], -1),
    ],
)
def test_known_trytes(tryte: str, trits: list[int], value: int) -> None:
    assert trytes_to_trits(tryte).tolist() == trits
    assert trits_to_trytes(trits) == tryte
    assert trytes_to_int(tryte) == value
    assert int_to_trytes(value, 1) == tryte


def test_every_tryte_value_once() -> None:
    values = [trytes_to_int(tryte) for tryte in TRYTE_ALPHABET]
    assert sorted(values) == list(range(-13, 14))
    assert trytes_to_trits(TRYTE_ALPHABET).dtype == np.int8


@given(trytes_strategy)
def test_trytes_round_trip(trytes: str) -> None:
    trits = trytes_to_trits(trytes)
    assert trits.size == 3 * len(trytes)
    assert trits_to_trytes(trits) == trytes


@given(trit_lists.filter(lambda trits: len(trits) % 3 == 0))
def test_trits_round_trip(trits: list[int]) -> None:
    assert trytes_to_trits(trits_to_trytes(trits)).tolist() == trits


@given(st.integers(-(10**40), 10**40))
def test_integers_round_trip_with_minimal_digits(value: int) -> None:
    trits = int_to_trits(value)
    assert trits_to_int(trits) == value
    assert trits.size == 0 or trits[-1] != 0
    padded = int_to_trits(value, trits.size + 5)
    assert padded.tolist() == [*trits.tolist(), 0, 0, 0, 0, 0]


@given(st.integers(1, 30), st.data())
def test_fixed_width_tryte_integers_round_trip(width: int, data: st.DataObject) -> None:
    limit = (3 ** (3 * width) - 1) // 2
    value = data.draw(st.integers(-limit, limit))
    trytes = int_to_trytes(value, width)
    assert len(trytes) == width
    assert trytes_to_int(trytes) == value


def test_integer_too_wide_for_its_field() -> None:
    assert int_to_trits(13, 3).tolist() == [1, 1, 1]
    with pytest.raises(InvalidTritsError, match="does not fit"):
        int_to_trits(14, 3)
    with pytest.raises(InvalidTritsError, match="does not fit"):
        int_to_trytes(-(3**27), 9)


def test_ascii_uses_two_trytes_per_code() -> None:
    # Each code c is ALPHABET[c % 27] then ALPHABET[c // 27], as @iota/converter does.
    for code in range(256):
        assert ascii_to_trytes(chr(code)) == TRYTE_ALPHABET[code % 27] + TRYTE_ALPHABET[code // 27]
    # Value from @iota/converter's asciiToTrytes.
    assert ascii_to_trytes('{"command":"hello"}') == "ODGARCCDADADPCBDSCGADBGAWCTC9D9DCDGAQD"
    assert ascii_to_trytes("") == ""


@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255)))
def test_latin1_text_round_trips(text: str) -> None:
    trytes = ascii_to_trytes(text)
    assert len(trytes) == 2 * len(text)
    assert trytes_to_ascii(trytes) == text


def test_decoding_trims_padding_like_the_mam_libraries() -> None:
    hello = ascii_to_trytes("hello")
    assert trytes_to_ascii(hello + "9" * 7) == "hello"  # message fragments are 9-padded
    assert trytes_to_ascii("TC9") == "e"  # odd remainder is padded back with one 9
    assert trytes_to_ascii("TCA") == "e\x01"
    assert trytes_to_ascii("") == ""
    assert trytes_to_ascii("9999") == ""
    assert trytes_to_ascii("A999A9") == "\x01\x00\x01"  # inner NUL pairs are kept


def test_text_escapes_non_ascii_as_mam_does() -> None:
    assert text_to_trytes("plain ASCII") == ascii_to_trytes("plain ASCII")
    assert text_to_trytes("é") == ascii_to_trytes("\\u00e9")
    assert text_to_trytes("\x7f") == ascii_to_trytes("\\u007f")
    assert text_to_trytes("kWh €") == ascii_to_trytes("kWh \\u20ac")
    # Outside the basic plane: a UTF-16 surrogate pair, as JavaScript strings hold it.
    assert text_to_trytes("😀") == ascii_to_trytes("\\ud83d\\ude00")


def test_pad_trytes() -> None:
    assert pad_trytes("AB", 5) == "AB999"
    assert pad_trytes("ABCDE", 5) == "ABCDE"
    with pytest.raises(InvalidTrytesError, match="longer than 4"):
        pad_trytes("ABCDE", 4)
    with pytest.raises(InvalidTrytesError):
        pad_trytes("ab", 5)


@pytest.mark.parametrize("bad", ["abc", "A B", "AÉ", "A-9", "\n"])
def test_rejects_non_tryte_characters(bad: str) -> None:
    with pytest.raises(InvalidTrytesError, match="only 9 and A-Z"):
        trytes_to_trits(bad)
    with pytest.raises(InvalidTrytesError):
        trytes_to_ascii(bad)
    with pytest.raises(InvalidTrytesError):
        trytes_to_int(bad)


def test_validate_trytes() -> None:
    assert validate_trytes("ABC", 3) == "ABC"
    with pytest.raises(InvalidTrytesError, match="must be 4 trytes long, got 3"):
        validate_trytes("ABC", 4)
    with pytest.raises(InvalidTrytesError, match="seed must be a string"):
        validate_trytes(b"ABC", name="seed")  # type: ignore[arg-type]
    with pytest.raises(InvalidTrytesError, match="must be a string"):
        validate_trytes(None)  # type: ignore[arg-type]


def test_validate_trits() -> None:
    assert validate_trits([1, 0, -1]).dtype == np.int8
    assert validate_trits(np.array([1, 0, -1], dtype=np.int64), 3).tolist() == [1, 0, -1]
    assert validate_trits([]).size == 0
    with pytest.raises(InvalidTritsError, match="only hold -1, 0 and 1"):
        validate_trits([0, 2])
    with pytest.raises(InvalidTritsError, match="only hold -1, 0 and 1"):
        validate_trits([0.0, 1.0])
    with pytest.raises(InvalidTritsError, match="only hold -1, 0 and 1"):
        validate_trits([True, False])
    with pytest.raises(InvalidTritsError, match="one-dimensional"):
        validate_trits([[0, 1], [1, 0]])
    with pytest.raises(InvalidTritsError, match="must be 4 trits long"):
        validate_trits([0, 1, 0], 4)
    with pytest.raises(InvalidTritsError):
        validate_trits(["a", "b"])  # type: ignore[list-item]


def test_trits_to_trytes_needs_whole_trytes() -> None:
    with pytest.raises(InvalidTritsError, match="not a multiple of 3"):
        trits_to_trytes([1, 0])
    with pytest.raises(InvalidTritsError):
        trits_to_trytes([1, 0, 5])


def test_ascii_rejects_codes_above_255() -> None:
    with pytest.raises(InvalidAsciiError, match="use text_to_trytes"):
        ascii_to_trytes("Ā")
    # "ZZ" would be code 26 + 26 * 27 = 728.
    with pytest.raises(InvalidAsciiError, match="not a character"):
        trytes_to_ascii("ABZZ")


@pytest.mark.parametrize("value", [2.5, True, "12", None])
def test_int_to_trits_refuses_what_is_not_an_integer(value: object) -> None:
    with pytest.raises(InvalidTritsError, match="only integers"):
        int_to_trits(value, 9)  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [-1, 2.0, True])
def test_int_to_trits_refuses_a_bad_length(length: object) -> None:
    with pytest.raises(InvalidTritsError, match="length"):
        int_to_trits(5, length)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [b"ab", 12, None])
def test_ascii_to_trytes_refuses_what_is_not_text(text: object) -> None:
    with pytest.raises(InvalidAsciiError, match="only text"):
        ascii_to_trytes(text)  # type: ignore[arg-type]
