"""Hypothesis strategies shared by the fuzz tests: trytes, near-trytes and JSON."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

TRYTE_ALPHABET = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def trytes(min_size: int = 0, max_size: int | None = None) -> st.SearchStrategy[str]:
    """Strings over the tryte alphabet."""
    return st.text(alphabet=TRYTE_ALPHABET, min_size=min_size, max_size=max_size)


def fixed_trytes(length: int) -> st.SearchStrategy[str]:
    return trytes(length, length)


# Text that is mostly trytes with the odd hostile character: lower case, digits,
# NUL, non-ASCII letters that upper-case to ASCII, emoji.
near_tryte_chars = st.one_of(
    st.sampled_from(TRYTE_ALPHABET),
    st.sampled_from(["a", "z", "0", "1", "8", "\x00", " ", "\n", "ß", "ı", "Ａ", "😀", "-", "@"]),
)


def near_trytes(min_size: int = 0, max_size: int | None = None) -> st.SearchStrategy[str]:
    return st.text(alphabet=near_tryte_chars, min_size=min_size, max_size=max_size)


def json_values(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    """Any JSON value, including non-ASCII text and extreme numbers."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=6),
            st.dictionaries(st.text(max_size=12), children, max_size=6),
        ),
        max_leaves=max_leaves,
    )


def mutate_trytes(data: st.DataObject, original: str, label: str = "mutation") -> str:
    """``original`` with one tryte replaced by a different one."""
    position = data.draw(st.integers(0, len(original) - 1), label=f"{label} position")
    replacement = data.draw(
        st.sampled_from([c for c in TRYTE_ALPHABET if c != original[position]]),
        label=f"{label} tryte",
    )
    return original[:position] + replacement + original[position + 1 :]
