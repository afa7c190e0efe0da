"""IOTA addresses: 81 trytes, optionally followed by a 9-tryte checksum.

The checksum is the last 9 trytes of the Kerl hash of the address, as pyota
and ``@iota/checksum`` compute it. An address that receives or spends value
must end in a 0 trit, which every Kerl-generated address does.
"""

from __future__ import annotations

from typing import Final

from .errors import InvalidAddressError, InvalidTrytesError
from .kerl import kerl_hash
from .trinary import TRYTE_ALPHABET, trits_to_trytes, trytes_to_trits, validate_trytes

ADDRESS_LENGTH: Final = 81
CHECKSUM_LENGTH: Final = 9
ADDRESS_WITH_CHECKSUM_LENGTH: Final = ADDRESS_LENGTH + CHECKSUM_LENGTH
# Trytes whose highest trit is 0: values -4..4.
_ZERO_TOP_TRIT_TRYTES: Final = frozenset(TRYTE_ALPHABET[value % 27] for value in range(-4, 5))


def _check_trytes(address: str, lengths: tuple[int, ...]) -> str:
    if not isinstance(address, str):
        raise InvalidAddressError(f"an address must be a string, got {type(address).__name__}")
    if len(address) not in lengths:
        expected = " or ".join(str(length) for length in lengths)
        raise InvalidAddressError(f"an address must be {expected} trytes long, got {len(address)}")
    try:
        validate_trytes(address, name="address")
    except InvalidTrytesError as err:
        raise InvalidAddressError(str(err)) from err
    return address


def _checksum(address: str) -> str:
    return trits_to_trytes(kerl_hash(trytes_to_trits(address)))[-CHECKSUM_LENGTH:]


def add_checksum(address: str) -> str:
    """The 90-tryte form of an 81-tryte address."""
    _check_trytes(address, (ADDRESS_LENGTH,))
    return address + _checksum(address)


def is_valid_checksum(address: str) -> bool:
    """Whether the last 9 of 90 trytes are the address's checksum (malformed input raises)."""
    _check_trytes(address, (ADDRESS_WITH_CHECKSUM_LENGTH,))
    return _checksum(address[:ADDRESS_LENGTH]) == address[ADDRESS_LENGTH:]


def remove_checksum(address: str) -> str:
    """The 81-tryte address of an address with or without its (verified) checksum."""
    return validate_address(address, allow_checksum=True)


def has_zero_last_trit(address: str) -> bool:
    """Whether the address's last trit is 0, as an address moving value must have."""
    _check_trytes(address, (ADDRESS_LENGTH, ADDRESS_WITH_CHECKSUM_LENGTH))
    return address[ADDRESS_LENGTH - 1] in _ZERO_TOP_TRIT_TRYTES


def validate_address(trytes: str, allow_checksum: bool = True, *, for_value: bool = False) -> str:
    """Return the 81-tryte address of ``trytes`` or raise :class:`InvalidAddressError`.

    With ``allow_checksum`` a 90-tryte address is accepted when its checksum
    matches. With ``for_value`` the address must end in a 0 trit.
    """
    lengths = (
        (ADDRESS_LENGTH, ADDRESS_WITH_CHECKSUM_LENGTH) if allow_checksum else (ADDRESS_LENGTH,)
    )
    _check_trytes(trytes, lengths)
    address = trytes[:ADDRESS_LENGTH]
    if len(trytes) == ADDRESS_WITH_CHECKSUM_LENGTH and not is_valid_checksum(trytes):
        raise InvalidAddressError(f"the checksum of address {trytes} does not match")
    if for_value and not has_zero_last_trit(address):
        raise InvalidAddressError(f"address {address} cannot move value: its last trit is not 0")
    return address
