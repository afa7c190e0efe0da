"""Balanced-ternary conversions: trits, trytes, integers and ASCII text.

Trits are ``numpy.int8`` arrays with values -1, 0 and 1, least significant
trit first. Trytes are strings over ``9A-Z`` where ``9`` is 0, ``A``..``M`` are
1..13 and ``N``..``Z`` are -13..-1.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from .errors import InvalidAsciiError, InvalidTritsError, InvalidTrytesError

Trits = npt.NDArray[np.int8]
"""A one-dimensional ``int8`` array of balanced trits."""

TritsLike = Trits | Sequence[int]

TRYTE_ALPHABET: Final = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TRYTES_PATTERN: Final = re.compile(r"[9A-Z]*")

# Lookup tables between a tryte's character and its three trits.
_TRYTE_TRITS: Final = np.array(
    [
        [
            ((value + 13) // 1 % 3) - 1,
            ((value + 13) // 3 % 3) - 1,
            ((value + 13) // 9 % 3) - 1,
        ]
        for value in range(-13, 14)
    ],
    dtype=np.int8,
)
# Tryte value v (-13..13) -> character index in the alphabet.
_VALUE_TO_CHAR: Final = np.frombuffer(
    "".join(TRYTE_ALPHABET[v % 27] for v in range(-13, 14)).encode("ascii"),
    dtype=np.uint8,
)
# ASCII code -> its three trits (zeros for characters outside the alphabet).
_CHAR_TRITS: Final = np.zeros((256, 3), dtype=np.int8)
for _value in range(-13, 14):
    _CHAR_TRITS[ord(TRYTE_ALPHABET[_value % 27])] = _TRYTE_TRITS[_value + 13]


def random_trytes(length: int = 81) -> str:
    """``length`` trytes from the operating system's CSPRNG: seeds and side keys.

    The one source of random trytes: a seed is the key to a MAM channel or a
    wallet, so nothing weaker may make one (81 trytes: 3^243, about 385 bits).
    """
    return "".join(secrets.choice(TRYTE_ALPHABET) for _ in range(length))


def is_trytes(value: object, length: int | None = None) -> bool:
    """Whether ``value`` is a tryte string (of ``length``), without raising."""
    return (
        isinstance(value, str)
        and (length is None or len(value) == length)
        and TRYTES_PATTERN.fullmatch(value) is not None
    )


def validate_trytes(trytes: str, length: int | None = None, name: str = "trytes") -> str:
    """Return ``trytes`` if it only holds tryte characters (and has ``length``)."""
    if not isinstance(trytes, str):
        raise InvalidTrytesError(f"{name} must be a string, got {type(trytes).__name__}")
    if not TRYTES_PATTERN.fullmatch(trytes):
        bad = next(ch for ch in trytes if ch not in TRYTE_ALPHABET)
        raise InvalidTrytesError(f"{name} contains {bad!r}; only 9 and A-Z are trytes")
    if length is not None and len(trytes) != length:
        raise InvalidTrytesError(f"{name} must be {length} trytes long, got {len(trytes)}")
    return trytes


def validate_trits(trits: TritsLike, length: int | None = None, name: str = "trits") -> Trits:
    """Return ``trits`` as an ``int8`` array after checking values (and length)."""
    try:
        array = np.asarray(trits)
    except (TypeError, ValueError) as err:
        raise InvalidTritsError(f"{name} is not a sequence of integers") from err
    if array.ndim != 1:
        raise InvalidTritsError(f"{name} must be one-dimensional")
    if array.size and (
        not np.issubdtype(array.dtype, np.integer) or array.min() < -1 or array.max() > 1
    ):
        raise InvalidTritsError(f"{name} may only hold -1, 0 and 1")
    if length is not None and array.size != length:
        raise InvalidTritsError(f"{name} must be {length} trits long, got {array.size}")
    return array.astype(np.int8, copy=False)


def trytes_to_trits(trytes: str) -> Trits:
    """Convert a tryte string to trits (three per tryte)."""
    validate_trytes(trytes)
    # np.take gathers rows several times faster than fancy indexing.
    codes = np.frombuffer(trytes.encode("ascii"), dtype=np.uint8)
    return np.take(_CHAR_TRITS, codes, axis=0).reshape(-1)


def trits_to_trytes(trits: TritsLike) -> str:
    """Convert trits to trytes; the length must be a multiple of three."""
    array = validate_trits(trits)
    if array.size % 3:
        raise InvalidTritsError(f"trit count {array.size} is not a multiple of 3")
    groups = array.reshape(-1, 3).astype(np.int16)
    values = groups[:, 0] + 3 * groups[:, 1] + 9 * groups[:, 2] + 13
    encoded: bytes = _VALUE_TO_CHAR[values].tobytes()
    return encoded.decode("ascii")


def int_to_trits(value: int, length: int | None = None) -> Trits:
    """Balanced-ternary digits of ``value``, padded with zeros to ``length``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTritsError(f"only integers convert to trits, got {type(value).__name__}")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
        raise InvalidTritsError(f"a trit length must be an integer, got {length!r}")
    if length is not None and length < 0:
        raise InvalidTritsError(f"a trit length cannot be negative, got {length}")
    digits: list[int] = []
    remaining = value
    while remaining:
        digit = remaining % 3
        remaining //= 3
        if digit == 2:
            digit = -1
            remaining += 1
        digits.append(digit)
    if length is not None:
        if len(digits) > length:
            raise InvalidTritsError(f"{value} does not fit in {length} trits")
        digits.extend([0] * (length - len(digits)))
    return np.array(digits, dtype=np.int8)


def trits_to_int(trits: TritsLike) -> int:
    """The integer value of balanced trits (least significant first)."""
    array = validate_trits(trits)
    value = 0
    digits: list[int] = [int(trit) for trit in array]
    for trit in reversed(digits):
        value = value * 3 + trit
    return value


def int_to_trytes(value: int, length: int) -> str:
    """``value`` as ``length`` trytes (its balanced base-27 digits, least significant first)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTritsError(f"only integers convert to trits, got {type(value).__name__}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise InvalidTritsError(f"a tryte length must be a non-negative integer, got {length!r}")
    # Digit by digit in Python ints: several times faster than through trit arrays for
    # the short fields (values, timestamps, indexes) transactions are made of.
    chars: list[str] = []
    remaining = value
    for _ in range(length):
        remaining, digit = divmod(remaining, 27)
        if digit > 13:
            digit -= 27
            remaining += 1
        chars.append(TRYTE_ALPHABET[digit % 27])
    if remaining:
        raise InvalidTritsError(f"{value} does not fit in {3 * length} trits")
    return "".join(chars)


def trytes_to_int(trytes: str) -> int:
    """The integer value of a tryte string."""
    return trits_to_int(trytes_to_trits(trytes))


def ascii_to_trytes(text: str) -> str:
    """Encode text as the JS converter's ``asciiToTrytes`` does.

    Each code c (0..255) becomes two trytes: ``ALPHABET[c % 27]``, ``ALPHABET[c // 27]``.
    """
    if not isinstance(text, str):
        raise InvalidAsciiError(f"only text converts to trytes, got {type(text).__name__}")
    codes = [ord(ch) for ch in text]
    if any(code > 255 for code in codes):
        bad = next(ch for ch in text if ord(ch) > 255)
        raise InvalidAsciiError(f"{bad!r} is not a character of 0..255; use text_to_trytes")
    return "".join(TRYTE_ALPHABET[code % 27] + TRYTE_ALPHABET[code // 27] for code in codes)


def text_to_trytes(text: str) -> str:
    """Encode any text as the MAM libraries do: escape U+007F and above as ``\\uXXXX``
    (UTF-16 code units, lower-case hex), then :func:`ascii_to_trytes`."""
    return ascii_to_trytes("".join(ch if ord(ch) < 0x7F else _escape_utf16(ch) for ch in text))


def _escape_utf16(char: str) -> str:
    encoded = char.encode("utf-16-be")
    return "".join(
        f"\\u{int.from_bytes(encoded[i : i + 2], 'big'):04x}" for i in range(0, len(encoded), 2)
    )


def trytes_to_ascii(trytes: str) -> str:
    """Decode trytes made by :func:`ascii_to_trytes`.

    Trailing ``9`` padding is trimmed first (a pair ``99`` is NUL, never used in
    payloads); an odd remainder is padded back with one ``9``.
    """
    validate_trytes(trytes)
    trimmed = trytes.rstrip("9")
    if len(trimmed) % 2:
        trimmed += "9"
    codes = bytearray()
    for i in range(0, len(trimmed), 2):
        code = TRYTE_ALPHABET.index(trimmed[i]) + 27 * TRYTE_ALPHABET.index(trimmed[i + 1])
        if code > 255:
            raise InvalidAsciiError(f"trytes {trimmed[i : i + 2]!r} at {i} are not a character")
        codes.append(code)
    return codes.decode("latin-1")


def pad_trytes(trytes: str, length: int) -> str:
    """Right-pad ``trytes`` with ``9`` to ``length`` (never truncates)."""
    validate_trytes(trytes)
    if len(trytes) > length:
        raise InvalidTrytesError(f"trytes longer than {length}: {len(trytes)}")
    return trytes.ljust(length, "9")
