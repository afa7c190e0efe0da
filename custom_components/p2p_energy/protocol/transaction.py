"""IOTA legacy transactions: 2,673 trytes with a fixed field layout.

Field (trytes): signatureMessageFragment 2187, address 81, value 27 (only the
first 33 trits may be non-zero), obsoleteTag 27, timestamp 9, currentIndex 9,
lastIndex 9, bundle 81, trunkTransaction 81, branchTransaction 81, tag 27,
attachmentTimestamp 9, its lower and upper bounds 9 each, nonce 27. The hash is
Curl-P-81 over all 8,019 trits; the bundle essence is address..lastIndex.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
import numpy.typing as npt

from .curl import LaneTrits, curl_hash, curl_hash_many
from .errors import InvalidTransactionError, InvalidTrytesError
from .trinary import (
    Trits,
    int_to_trytes,
    is_trytes,
    trits_to_trytes,
    trytes_to_trits,
    validate_trytes,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

TRANSACTION_LENGTH: Final = 2673
TRANSACTION_TRITS: Final = 3 * TRANSACTION_LENGTH
FRAGMENT_LENGTH: Final = 2187
HASH_LENGTH: Final = 81
TAG_LENGTH: Final = 27
NONCE_LENGTH: Final = 27
VALUE_LENGTH: Final = 27
VALUE_USABLE_TRITS: Final = 33
INT_FIELD_LENGTH: Final = 9  # timestamps and indexes
ESSENCE_TRITS: Final = 486
OBSOLETE_TAG_ESSENCE_OFFSET: Final = 324  # trits before it in the essence: address, value
NULL_HASH: Final = "9" * HASH_LENGTH
NULL_TAG: Final = "9" * TAG_LENGTH
NULL_FRAGMENT: Final = "9" * FRAGMENT_LENGTH

MAX_VALUE: Final = (3**VALUE_USABLE_TRITS - 1) // 2  # 2,779,530,283,277,761: the whole supply
MAX_INT_FIELD: Final = (3 ** (3 * INT_FIELD_LENGTH) - 1) // 2

_CURL_ROUNDS: Final = 81

# (name, start, length) of every field in the transaction trytes.
_LAYOUT: Final = (
    ("signature_message_fragment", 0, FRAGMENT_LENGTH),
    ("address", 2187, HASH_LENGTH),
    ("value", 2268, VALUE_LENGTH),
    ("obsolete_tag", 2295, TAG_LENGTH),
    ("timestamp", 2322, INT_FIELD_LENGTH),
    ("current_index", 2331, INT_FIELD_LENGTH),
    ("last_index", 2340, INT_FIELD_LENGTH),
    ("bundle", 2349, HASH_LENGTH),
    ("trunk_transaction", 2430, HASH_LENGTH),
    ("branch_transaction", 2511, HASH_LENGTH),
    ("tag", 2592, TAG_LENGTH),
    ("attachment_timestamp", 2619, INT_FIELD_LENGTH),
    ("attachment_timestamp_lower_bound", 2628, INT_FIELD_LENGTH),
    ("attachment_timestamp_upper_bound", 2637, INT_FIELD_LENGTH),
    ("nonce", 2646, NONCE_LENGTH),
)
_SLICES: Final = {name: slice(start, start + length) for name, start, length in _LAYOUT}
_ESSENCE: Final = slice(_SLICES["address"].start, _SLICES["last_index"].stop)
_INT_FIELDS: Final = frozenset(
    {
        "value",
        "timestamp",
        "current_index",
        "last_index",
        "attachment_timestamp",
        "attachment_timestamp_lower_bound",
        "attachment_timestamp_upper_bound",
    }
)
# Powers of 3 for reading integer fields of many transactions at once; every
# field's value fits an int64 (at most 33 significant trits).
_POWERS_OF_THREE: Final = 3 ** np.arange(VALUE_USABLE_TRITS, dtype=np.int64)
# Where each integer field's trits start in a row of the whole transaction's trits, and
# in a row of just the integer fields (value to last index, then the attachment
# timestamps: the trytes of _INTEGER_SPANS, side by side).
_INTEGER_SPANS: Final = (
    slice(_SLICES["value"].start, _SLICES["last_index"].stop),
    slice(_SLICES["attachment_timestamp"].start, _SLICES["attachment_timestamp_upper_bound"].stop),
)
_FULL_STARTS: Final = {name: 3 * _SLICES[name].start for name in _INT_FIELDS}
_INTEGER_STARTS: Final = {
    name: 3 * (before + _SLICES[name].start - span.start)
    for name in _INT_FIELDS
    for before, span in zip(
        (0, _INTEGER_SPANS[0].stop - _INTEGER_SPANS[0].start), _INTEGER_SPANS, strict=True
    )
    if span.start <= _SLICES[name].start < span.stop
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Transaction:
    """One transaction; every field is checked on construction."""

    signature_message_fragment: str
    address: str
    value: int
    obsolete_tag: str
    timestamp: int
    current_index: int
    last_index: int
    bundle: str
    trunk_transaction: str = NULL_HASH
    branch_transaction: str = NULL_HASH
    tag: str = NULL_TAG
    attachment_timestamp: int = 0
    attachment_timestamp_lower_bound: int = 0
    attachment_timestamp_upper_bound: int = 0
    nonce: str = "9" * NONCE_LENGTH
    _hash: str | None = dataclasses.field(default=None, init=False, repr=False, compare=False)
    _trytes: str | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, _, length in _LAYOUT:
            value = getattr(self, name)
            if name in _INT_FIELDS:
                _check_int(name, value)
            else:
                _check_trytes(name, value, length)
        if abs(self.value) > MAX_VALUE:
            raise InvalidTransactionError(
                f"value {self.value} exceeds the total supply of {MAX_VALUE}"
            )
        if self.current_index > self.last_index:
            raise InvalidTransactionError(
                f"current_index {self.current_index} is above last_index {self.last_index}"
            )

    @classmethod
    def from_trytes(cls, trytes: str) -> Transaction:
        """Parse 2,673 trytes; raises :class:`InvalidTransactionError` on any malformed field."""
        if not isinstance(trytes, str):
            raise InvalidTransactionError(
                f"transaction trytes must be a string, got {type(trytes).__name__}"
            )
        if len(trytes) != TRANSACTION_LENGTH:
            raise InvalidTransactionError(
                f"a transaction is {TRANSACTION_LENGTH} trytes long, got {len(trytes)}"
            )
        try:
            validate_trytes(trytes, name="transaction")
        except InvalidTrytesError as err:
            raise InvalidTransactionError(str(err)) from err
        matrix = trytes_to_trits(trytes).reshape(1, TRANSACTION_TRITS)
        return _decode([trytes], matrix, _FULL_STARTS)[0]

    def to_trytes(self) -> str:
        """The 2,673 trytes (computed once; a parsed transaction keeps its own)."""
        cached = self._trytes
        if cached is None:
            parts: list[str] = []
            for name, _, length in _LAYOUT:
                value = getattr(self, name)
                parts.append(int_to_trytes(value, length) if name in _INT_FIELDS else value)
            cached = "".join(parts)
            object.__setattr__(self, "_trytes", cached)
        return cached

    def to_trits(self) -> Trits:
        return trytes_to_trits(self.to_trytes())

    @property
    def hash(self) -> str:
        """The transaction hash: Curl-P-81 of its 8,019 trits (computed once)."""
        cached = self._hash
        if cached is None:
            cached = trits_to_trytes(curl_hash(self.to_trits()))
            object.__setattr__(self, "_hash", cached)
        return cached

    def essence_trytes(self) -> str:
        """The 162 trytes the bundle hash covers: address, value, obsolete tag,
        timestamp, current and last index (contiguous in the transaction)."""
        return self.to_trytes()[_ESSENCE]

    def essence_trits(self) -> Trits:
        """:meth:`essence_trytes` as 486 trits."""
        return trytes_to_trits(self.essence_trytes())

    @property
    def is_tail(self) -> bool:
        return self.current_index == 0

    def replace(self, **changes: Any) -> Transaction:
        """A copy with some fields changed (checked like any new transaction)."""
        return dataclasses.replace(self, **changes)


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTransactionError(f"{name} must be an int, got {type(value).__name__}")
    if name != "value" and not 0 <= value <= MAX_INT_FIELD:
        raise InvalidTransactionError(f"{name} must lie in 0..{MAX_INT_FIELD}, got {value}")


def _check_trytes(name: str, value: object, length: int) -> None:
    if not isinstance(value, str):
        raise InvalidTransactionError(f"{name} must be a string, got {type(value).__name__}")
    try:
        validate_trytes(value, length, name)
    except InvalidTrytesError as err:
        raise InvalidTransactionError(str(err)) from err


def _trytes_matrix(trytes_list: Sequence[str], first: int = 0) -> LaneTrits:
    """All transactions' trits as one ``(n, 8019)`` matrix, each checked for length and
    alphabet (errors name positions from ``first`` on)."""
    for position, trytes in enumerate(trytes_list, first):
        if not isinstance(trytes, str) or len(trytes) != TRANSACTION_LENGTH:
            raise InvalidTransactionError(
                f"transaction {position} is not a string of {TRANSACTION_LENGTH} trytes"
            )
    try:
        # Checks the alphabet of all transactions in one pass.
        trits = trytes_to_trits("".join(trytes_list))
    except InvalidTrytesError:
        for position, trytes in enumerate(trytes_list, first):
            try:
                validate_trytes(trytes, name=f"transaction {position}")
            except InvalidTrytesError as err:
                raise InvalidTransactionError(str(err)) from err
        raise
    return trits.reshape(len(trytes_list), TRANSACTION_TRITS)


LANE_CHUNK: Final = 1_000
"""Transactions converted to trits and hashed together (an 8 MB matrix). Wider is no
faster: 30,000 at once (a follow step at 10,000 channels) took twice the CPU, in page
faults and cache misses, and ~900 MiB more memory."""


def _chunks(trytes_list: Sequence[str]) -> list[tuple[int, Sequence[str]]]:
    return [
        (first, trytes_list[first : first + LANE_CHUNK])
        for first in range(0, len(trytes_list), LANE_CHUNK)
    ]


def transactions_hashes(trytes_list: Sequence[str]) -> list[str]:
    """The hashes of many transactions, computed together as Curl-P-81 lanes."""
    if isinstance(trytes_list, str):
        raise InvalidTransactionError("expected a sequence of transaction trytes, got one string")
    return [
        transaction_hash
        for first, chunk in _chunks(trytes_list)
        for transaction_hash in _hashes_of_matrix(_trytes_matrix(chunk, first))
    ]


def _hashes_of_matrix(matrix: LaneTrits) -> list[str]:
    joined = trits_to_trytes(curl_hash_many(matrix, _CURL_ROUNDS).reshape(-1))
    return [joined[i : i + HASH_LENGTH] for i in range(0, len(joined), HASH_LENGTH)]


def transactions_from_trytes(
    trytes_list: Sequence[str], hashes: Sequence[str] | None = None
) -> list[Transaction]:
    """Parse many transactions, decoding their fields and hashing them all at once.

    ``hashes`` are the transactions' hashes as the node storing them told (getTrytes
    answers by hash), taken instead of computed: this skips the Curl hashing and all
    but the integer fields' trits (~70 % of the work). Only for readers that verify
    what they read above the transaction layer, such as MAM messages (signed): there a
    wrong hash only keeps a bundle from assembling, as the node could by withholding it.
    """
    if isinstance(trytes_list, str):
        raise InvalidTransactionError("expected a sequence of transaction trytes, got one string")
    if hashes is not None and len(hashes) != len(trytes_list):
        raise InvalidTransactionError(
            f"{len(hashes)} hashes given for {len(trytes_list)} transactions"
        )
    many = len(trytes_list) > 1
    transactions: list[Transaction] = []
    for first, chunk in _chunks(trytes_list):
        if hashes is None:
            matrix = _trytes_matrix(chunk, first)
            decoded = _decode(chunk, matrix, _FULL_STARTS, first, many=many)
            _remember_hashes(decoded, _hashes_of_matrix(matrix))
        else:
            integers = _integer_trits(chunk, first)
            decoded = _decode(chunk, integers, _INTEGER_STARTS, first, many=many)
            _remember_hashes(decoded, hashes[first : first + LANE_CHUNK])
        transactions.extend(decoded)
    return transactions


def _integer_trits(trytes_list: Sequence[str], first: int) -> LaneTrits:
    """The integer fields' trits of each transaction (:data:`_INTEGER_STARTS`), each
    transaction checked for length and alphabet as :func:`_trytes_matrix` does."""
    for position, trytes in enumerate(trytes_list, first):
        if not isinstance(trytes, str) or len(trytes) != TRANSACTION_LENGTH:
            raise InvalidTransactionError(
                f"transaction {position} is not a string of {TRANSACTION_LENGTH} trytes"
            )
    if not is_trytes("".join(trytes_list)):
        for position, trytes in enumerate(trytes_list, first):
            try:
                validate_trytes(trytes, name=f"transaction {position}")
            except InvalidTrytesError as err:
                raise InvalidTransactionError(str(err)) from err
    low, high = _INTEGER_SPANS
    trits = trytes_to_trits("".join(trytes[low] + trytes[high] for trytes in trytes_list))
    return trits.reshape(len(trytes_list), -1)


def _decode(
    trytes_list: Sequence[str],
    matrix: LaneTrits,
    starts: Mapping[str, int],
    first: int = 0,
    *,
    many: bool = False,
) -> list[Transaction]:
    """Transactions from checked trytes and trits holding their integer fields (at
    ``starts``: the whole ``(n, 8019)`` trits or just those fields); the integer fields
    of all rows are read at once, then each transaction checks itself. Errors name
    positions from ``first`` on when ``many`` (or the list holds several)."""

    def where(position: int) -> str:
        return f"transaction {first + position}: " if many or len(trytes_list) > 1 else ""

    value = starts["value"]
    unusable = matrix[:, value + VALUE_USABLE_TRITS : value + 3 * VALUE_LENGTH]
    if unusable.any():
        position = int(np.flatnonzero(unusable.any(axis=1))[0])
        raise InvalidTransactionError(
            f"{where(position)}the value field may only use its first {VALUE_USABLE_TRITS} trits"
        )
    integers = {name: _field_integers(matrix, starts[name], name) for name in _INT_FIELDS}
    # Every text field of checked trytes is trytes of its length and every integer
    # within its trits' range, so only these checks of Transaction can fail here. Rows
    # that fail them are built the checking way (which raises the error); the rest are
    # built without repeating the per-field checks (~40 % of decoding a transaction).
    failing = integers["current_index"] > integers["last_index"]
    for name in _INT_FIELDS - {"value"}:
        failing |= integers[name] < 0
    checked = {int(position) for position in np.flatnonzero(failing)}
    numbers = {name: cast("list[int]", column.tolist()) for name, column in integers.items()}
    transactions: list[Transaction] = []
    for position, trytes in enumerate(trytes_list):
        fields: dict[str, Any] = {
            "signature_message_fragment": trytes[_SLICES["signature_message_fragment"]],
            "address": trytes[_SLICES["address"]],
            "value": numbers["value"][position],
            "obsolete_tag": trytes[_SLICES["obsolete_tag"]],
            "timestamp": numbers["timestamp"][position],
            "current_index": numbers["current_index"][position],
            "last_index": numbers["last_index"][position],
            "bundle": trytes[_SLICES["bundle"]],
            "trunk_transaction": trytes[_SLICES["trunk_transaction"]],
            "branch_transaction": trytes[_SLICES["branch_transaction"]],
            "tag": trytes[_SLICES["tag"]],
            "attachment_timestamp": numbers["attachment_timestamp"][position],
            "attachment_timestamp_lower_bound": numbers["attachment_timestamp_lower_bound"][
                position
            ],
            "attachment_timestamp_upper_bound": numbers["attachment_timestamp_upper_bound"][
                position
            ],
            "nonce": trytes[_SLICES["nonce"]],
        }
        if position in checked:
            try:
                Transaction(**fields)
            except InvalidTransactionError as err:
                raise InvalidTransactionError(f"{where(position)}{err}") from err
        transaction = object.__new__(Transaction)
        vars(transaction).update(fields, _hash=None, _trytes=trytes)
        transactions.append(transaction)
    return transactions


def _field_integers(matrix: LaneTrits, start: int, name: str) -> npt.NDArray[np.int64]:
    """The balanced-ternary integer field ``name`` of every row (from column ``start``)."""
    width = VALUE_USABLE_TRITS if name == "value" else 3 * INT_FIELD_LENGTH
    trits = matrix[:, start : start + width].astype(np.int64)
    return cast("npt.NDArray[np.int64]", trits @ _POWERS_OF_THREE[:width])


def hashes_of(transactions: Sequence[Transaction]) -> list[str]:
    """The hashes of ``transactions``; those not yet known are computed together as lanes."""
    missing = [transaction for transaction in transactions if transaction._hash is None]
    if missing:
        _remember_hashes(missing, transactions_hashes([t.to_trytes() for t in missing]))
    return [transaction.hash for transaction in transactions]


def _remember_hashes(transactions: Sequence[Transaction], hashes: Sequence[str]) -> None:
    for transaction, transaction_hash in zip(transactions, hashes, strict=True):
        object.__setattr__(transaction, "_hash", transaction_hash)
