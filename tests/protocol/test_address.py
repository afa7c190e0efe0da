"""Address checksums and validation."""

from __future__ import annotations

import random

import pytest
from p2p_energy_protocol.address import (
    add_checksum,
    has_zero_last_trit,
    is_valid_checksum,
    remove_checksum,
    validate_address,
)
from p2p_energy_protocol.errors import InvalidAddressError, ProtocolError
from p2p_energy_protocol.kerl import kerl_hash
from p2p_energy_protocol.trinary import TRYTE_ALPHABET, trits_to_trytes, trytes_to_trits


def random_address(rng: random.Random) -> str:
    return "".join(rng.choice(TRYTE_ALPHABET) for _ in range(81))


def test_checksum_is_the_last_nine_trytes_of_the_kerl_hash() -> None:
    address = random_address(random.Random(1))
    with_checksum = add_checksum(address)
    assert len(with_checksum) == 90
    assert with_checksum[:81] == address
    assert with_checksum[81:] == trits_to_trytes(kerl_hash(trytes_to_trits(address)))[-9:]


def test_checksum_round_trip_and_tamper_detection() -> None:
    rng = random.Random(2)
    for _ in range(5):
        address = random_address(rng)
        with_checksum = add_checksum(address)
        assert is_valid_checksum(with_checksum)
        assert remove_checksum(with_checksum) == address
        assert remove_checksum(address) == address
        wrong = with_checksum[:-1] + ("A" if with_checksum[-1] != "A" else "B")
        assert not is_valid_checksum(wrong)
        with pytest.raises(InvalidAddressError, match="checksum"):
            remove_checksum(wrong)
        # a change in the address part breaks the checksum too
        changed = ("B" if address[0] != "B" else "C") + with_checksum[1:]
        assert not is_valid_checksum(changed)


@pytest.mark.parametrize("length", [0, 80, 82, 89, 91])
def test_bad_lengths_are_rejected(length: int) -> None:
    trytes = "A" * length
    with pytest.raises(InvalidAddressError, match="trytes long"):
        validate_address(trytes)
    with pytest.raises(InvalidAddressError):
        add_checksum(trytes)
    with pytest.raises(InvalidAddressError):
        is_valid_checksum(trytes)


def test_bad_characters_and_types_are_rejected() -> None:
    with pytest.raises(InvalidAddressError, match="only 9 and A-Z"):
        validate_address("a" * 81)
    with pytest.raises(InvalidAddressError, match="must be a string"):
        validate_address(b"A" * 81)  # type: ignore[arg-type]
    assert issubclass(InvalidAddressError, ProtocolError)


def test_checksum_can_be_refused() -> None:
    with_checksum = add_checksum("A" * 81)
    assert validate_address(with_checksum) == "A" * 81
    with pytest.raises(InvalidAddressError, match="81 trytes"):
        validate_address(with_checksum, allow_checksum=False)


@pytest.mark.parametrize("tryte", list(TRYTE_ALPHABET))
def test_zero_last_trit_follows_the_top_trit_of_the_last_tryte(tryte: str) -> None:
    address = "9" * 80 + tryte
    expected = bool(trytes_to_trits(tryte)[2] == 0)
    assert has_zero_last_trit(address) is expected
    assert has_zero_last_trit(add_checksum(address)) is expected
    if expected:
        assert validate_address(address, for_value=True) == address
    else:
        with pytest.raises(InvalidAddressError, match="last trit"):
            validate_address(address, for_value=True)
