"""Bundles: hashing, building, finalizing and signing them (validating a received
bundle is :mod:`.bundle_validation`).

:class:`BundleBuilder` follows pyota's ``ProposedBundle`` and ``@iota/core``'s
``prepareTransfers``: transfers and inputs in the order they are added, an
input taking one transaction per security level, the remainder last; one
timestamp for all; the bundle hash is Kerl over the essences, and the tail's
obsolete tag is incremented until the normalized hash holds no 13 ("M"), so
that a signature never reveals an unhashed key chunk.

Where the two references differ we follow pyota: a message of exactly a
multiple of 2,187 trytes fills that many transactions (``prepareTransfers``
adds an empty one), and inputs and the remainder carry the tag they are given
(``prepareTransfers`` leaves them empty, which is the default here).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from .address import validate_address
from .errors import InvalidBundleError, InvalidSignatureError, InvalidTrytesError, ProtocolError
from .kerl import kerl_hash_many
from .signing import FRAGMENT_LENGTH as SIGNATURE_FRAGMENT_TRITS
from .signing import (
    MAX_TRYTE_VALUE,
    check_key_index,
    check_security,
    generate_address,
    key,
    normalize_hash,
    normalize_hashes,
    seed_to_trits,
    signature_fragments,
    subseed,
    validate_signature,
)
from .transaction import (
    ESSENCE_TRITS,
    FRAGMENT_LENGTH,
    HASH_LENGTH,
    MAX_INT_FIELD,
    MAX_VALUE,
    NULL_FRAGMENT,
    NULL_HASH,
    OBSOLETE_TAG_ESSENCE_OFFSET,
    TAG_LENGTH,
    Transaction,
)
from .trinary import (
    int_to_trits,
    int_to_trytes,
    pad_trytes,
    trits_to_trytes,
    trytes_to_int,
    trytes_to_trits,
    validate_trytes,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

_TAG_MODULUS: Final = 3 ** (3 * TAG_LENGTH)
_TAG_OFFSET: Final = (_TAG_MODULUS - 1) // 2
# Each attempt fails with probability about 1 - (26/27)**81 = 0.95; reaching this
# many failures means something is broken, not unlucky.
_MAX_TAG_INCREMENTS: Final = 100_000
# Candidate tags hashed at once while finalizing, and their offsets 0.._TAG_BATCH-1 in trits.
_TAG_BATCH: Final = 64
_COUNT_TRITS: Final = np.stack([int_to_trits(offset, 5) for offset in range(_TAG_BATCH)])


def bundle_hash(transactions: Sequence[Transaction]) -> str:
    """Kerl over the essences of ``transactions`` in current-index order."""
    return bundle_hashes([transactions])[0]


def bundle_hashes(bundles: Sequence[Sequence[Transaction]]) -> list[str]:
    """:func:`bundle_hash` of every bundle; bundles with equally many transactions
    absorb equally many chunks, so each such group hashes together as Kerl lanes."""
    by_size: dict[int, list[int]] = {}
    for position, transactions in enumerate(bundles):
        if not transactions:
            raise InvalidBundleError("a bundle needs at least one transaction")
        by_size.setdefault(len(transactions), []).append(position)
    hashes = [""] * len(bundles)
    for size, positions in by_size.items():
        essences = "".join(
            transaction.essence_trytes()
            for position in positions
            for transaction in sorted(bundles[position], key=_current_index)
        )
        rows = trytes_to_trits(essences).reshape(len(positions), size * ESSENCE_TRITS)
        joined = trits_to_trytes(kerl_hash_many(rows).reshape(-1))
        for row, position in enumerate(positions):
            hashes[position] = joined[row * HASH_LENGTH : (row + 1) * HASH_LENGTH]
    return hashes


def _current_index(transaction: Transaction) -> int:
    return transaction.current_index


def is_secure_bundle_hash(hash_trytes: str) -> bool:
    """Whether the normalized hash holds no 13, so signing it reveals no key chunk."""
    return MAX_TRYTE_VALUE not in normalize_hash(hash_trytes)


def increment_tag(tag: str) -> str:
    """A 27-tryte tag plus one, as balanced ternary wrapping at 81 trits."""
    validate_trytes(tag, TAG_LENGTH, "tag")
    value = (trytes_to_int(tag) + 1 + _TAG_OFFSET) % _TAG_MODULUS - _TAG_OFFSET
    return int_to_trytes(value, TAG_LENGTH)


def _tags_from(tag: str, count: int) -> npt.NDArray[np.int8]:
    """Trits of ``tag``, ``tag + 1``, … ``tag + count - 1`` (wrapping at 81 trits), as rows."""
    rows = np.tile(trytes_to_trits(tag), (count, 1))
    rows[:, : _COUNT_TRITS.shape[1]] += _COUNT_TRITS[:count]
    carry: npt.NDArray[np.int8] = np.zeros(count, dtype=np.int8)
    for position in range(rows.shape[1]):
        column = rows[:, position] + carry
        carry = ((column + 1) // 3).astype(np.int8)
        rows[:, position] = column - 3 * carry
        if position >= _COUNT_TRITS.shape[1] and not carry.any():
            break
    return rows


def _secure_tail_tags(bundles: Sequence[Sequence[Transaction]]) -> list[tuple[str, str]]:
    """For each bundle: its tail's obsolete tag, incremented until the bundle hash is
    secure, and that hash.

    Only the tail's essence changes between attempts, so the others are converted
    once. Candidate tags are hashed in batches of parallel Kerl lanes, and the
    batches of every bundle still searching go together (bundles of one size per
    hash call): a secure hash (no 13 in the normalized hash) takes ~170 attempts,
    and one call for many bundles costs far less than one per bundle. Each bundle
    gets the tag its own search would find: the first secure one counting up.
    """
    found: list[tuple[str, str]] = [("", "")] * len(bundles)
    by_size: dict[int, list[int]] = {}
    for position, transactions in enumerate(bundles):
        by_size.setdefault(len(transactions), []).append(position)
    tag_trits = slice(OBSOLETE_TAG_ESSENCE_OFFSET, OBSOLETE_TAG_ESSENCE_OFFSET + 3 * TAG_LENGTH)
    for positions in by_size.values():
        essences = {
            position: trytes_to_trits(
                "".join(transaction.essence_trytes() for transaction in bundles[position])
            )
            for position in positions
        }
        tags = {position: bundles[position][0].obsolete_tag for position in positions}
        for _ in range(0, _MAX_TAG_INCREMENTS, _TAG_BATCH):
            searching = list(tags)
            candidates = np.concatenate(
                [_tags_from(tags[position], _TAG_BATCH) for position in searching]
            )
            rows = np.repeat(
                np.stack([essences[position] for position in searching]), _TAG_BATCH, axis=0
            )
            rows[:, tag_trits] = candidates
            hashes = kerl_hash_many(rows)
            secure = ~(normalize_hashes(hashes) == MAX_TRYTE_VALUE).any(axis=1)
            for number, position in enumerate(searching):
                batch = slice(number * _TAG_BATCH, (number + 1) * _TAG_BATCH)
                hits = np.flatnonzero(secure[batch])
                if hits.size:
                    first = number * _TAG_BATCH + int(hits[0])
                    found[position] = (
                        trits_to_trytes(candidates[first]),
                        trits_to_trytes(hashes[first]),
                    )
                    del tags[position]
                else:
                    tags[position] = increment_tag(trits_to_trytes(candidates[batch.stop - 1]))
            if not tags:
                break
        else:
            raise InvalidBundleError("no secure bundle hash found; the essences look broken")
    return found


def _check_tag(tag: str) -> str:
    if not isinstance(tag, str):
        raise InvalidTrytesError(f"tag must be a string, got {type(tag).__name__}")
    if len(tag) > TAG_LENGTH:
        raise InvalidTrytesError(f"tag must be at most {TAG_LENGTH} trytes, got {len(tag)}")
    return pad_trytes(validate_trytes(tag, name="tag"), TAG_LENGTH)


def _check_amount(amount: int, name: str, *, positive: bool) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ProtocolError(f"{name} must be an int, got {type(amount).__name__}")
    lowest = 1 if positive else 0
    if not lowest <= amount <= MAX_VALUE:
        raise ProtocolError(f"{name} must lie in {lowest}..{MAX_VALUE}, got {amount}")
    return amount


@dataclasses.dataclass(frozen=True)
class _Planned:
    """A transaction before finalization."""

    address: str
    value: int
    tag: str
    message: str = NULL_FRAGMENT


@dataclasses.dataclass(frozen=True)
class _Input:
    first_position: int
    address: str
    key_index: int
    security: int


class BundleBuilder:
    """Builds a bundle: add transfers and inputs, ``finalize``, then ``sign`` the inputs."""

    def __init__(self) -> None:
        self._planned: list[_Planned] = []
        self._inputs: list[_Input] = []
        self._remainder: tuple[str, str] | None = None
        self._transactions: list[Transaction] | None = None
        self._signed = False

    def _check_open(self) -> None:
        if self._transactions is not None:
            raise ProtocolError("the bundle is finalized; no more transactions can be added")

    def add_transfer(
        self, address: str, value: int = 0, tag: str = "", message_trytes: str = ""
    ) -> None:
        """Send ``value`` (and a message of any length, 2,187 trytes per transaction)."""
        self._check_open()
        amount = _check_amount(value, "value", positive=False)
        target = validate_address(address, for_value=amount > 0)
        padded_tag = _check_tag(tag)
        validate_trytes(message_trytes, name="message_trytes")
        fragments = [
            message_trytes[start : start + FRAGMENT_LENGTH]
            for start in range(0, max(len(message_trytes), 1), FRAGMENT_LENGTH)
        ]
        for position, fragment in enumerate(fragments):
            self._planned.append(
                _Planned(
                    address=target,
                    value=amount if position == 0 else 0,
                    tag=padded_tag,
                    message=pad_trytes(fragment, FRAGMENT_LENGTH),
                )
            )

    def add_input(
        self, address: str, balance: int, key_index: int, security: int, tag: str = ""
    ) -> None:
        """Spend the whole ``balance`` of the seed's address at ``key_index``."""
        self._check_open()
        amount = _check_amount(balance, "balance", positive=True)
        source = validate_address(address, for_value=True)
        index = check_key_index(key_index)
        level = check_security(security)
        if any(existing.address == source for existing in self._inputs):
            raise ProtocolError(f"address {source} is already an input of this bundle")
        padded_tag = _check_tag(tag)
        self._inputs.append(_Input(len(self._planned), source, index, level))
        self._planned.append(_Planned(address=source, value=-amount, tag=padded_tag))
        self._planned.extend(
            _Planned(address=source, value=0, tag=padded_tag) for _ in range(level - 1)
        )

    def add_remainder(self, address: str, tag: str = "") -> None:
        """Where whatever the inputs hold beyond the transfers goes (added at ``finalize``)."""
        self._check_open()
        if self._remainder is not None:
            raise ProtocolError("the bundle already has a remainder address")
        self._remainder = (validate_address(address, for_value=True), _check_tag(tag))

    def finalize(self, timestamp: int | None = None) -> None:
        """Balance the bundle, number it, and compute a secure bundle hash."""
        finalize_bundles([self], timestamp)

    def _planned_transactions(self, timestamp: int | None) -> list[Transaction]:
        """The transactions before the tail tag search (``finalize``'s checks first)."""
        self._check_open()
        if not self._planned:
            raise InvalidBundleError("a bundle needs at least one transfer")
        issued = int(time.time()) if timestamp is None else timestamp
        if isinstance(issued, bool) or not isinstance(issued, int):
            raise ProtocolError(f"timestamp must be an int, got {type(issued).__name__}")
        if not 0 <= issued <= MAX_INT_FIELD:
            raise ProtocolError(f"timestamp must lie in 0..{MAX_INT_FIELD}, got {issued}")
        planned = list(self._planned)
        balance = sum(entry.value for entry in planned)
        if balance > 0:
            raise InvalidBundleError(f"the inputs are {balance} short of the transfers")
        if balance < 0:
            if self._remainder is None:
                raise InvalidBundleError(
                    f"the inputs exceed the transfers by {-balance}; add a remainder address"
                )
            remainder_address, remainder_tag = self._remainder
            planned.append(_Planned(address=remainder_address, value=-balance, tag=remainder_tag))
        inputs = {entry.address for entry in self._inputs}
        if any(entry.value > 0 and entry.address in inputs for entry in planned):
            raise InvalidBundleError("the bundle sends value back to one of its input addresses")

        last_index = len(planned) - 1
        return [
            Transaction(
                signature_message_fragment=entry.message,
                address=entry.address,
                value=entry.value,
                obsolete_tag=entry.tag,
                timestamp=issued,
                current_index=index,
                last_index=last_index,
                bundle=NULL_HASH,
                tag=entry.tag,
            )
            for index, entry in enumerate(planned)
        ]

    def _finish(self, transactions: list[Transaction], tail_tag: str, final_hash: str) -> None:
        transactions[0] = transactions[0].replace(obsolete_tag=tail_tag)
        self._transactions = [t.replace(bundle=final_hash) for t in transactions]

    def sign(self, seed: str) -> None:
        """Sign every input with the key of ``seed`` at its key index."""
        transactions = self._finalized()
        if self._signed:
            raise ProtocolError("the bundle's inputs are already signed")
        seed_trits = seed_to_trits(seed)
        digits = normalize_hash(transactions[0].bundle)
        for spent in self._inputs:
            signature = signature_fragments(
                digits, key(subseed(seed_trits, spent.key_index), spent.security)
            )
            fragments = [
                trits_to_trytes(signature[start : start + SIGNATURE_FRAGMENT_TRITS])
                for start in range(0, signature.size, SIGNATURE_FRAGMENT_TRITS)
            ]
            if not validate_signature(spent.address, fragments, transactions[0].bundle):
                derived = generate_address(seed, spent.key_index, spent.security)
                raise InvalidSignatureError(
                    f"the seed's address at key index {spent.key_index} (security "
                    f"{spent.security}) is {derived}, not input {spent.address}"
                )
            for offset, fragment in enumerate(fragments):
                position = spent.first_position + offset
                transactions[position] = transactions[position].replace(
                    signature_message_fragment=fragment
                )
        self._signed = True

    def _finalized(self) -> list[Transaction]:
        if self._transactions is None:
            raise ProtocolError("the bundle is not finalized yet")
        return self._transactions

    @property
    def bundle_hash(self) -> str:
        return self._finalized()[0].bundle

    @property
    def transactions(self) -> list[Transaction]:
        """The transactions in index order (a copy)."""
        return list(self._finalized())

    def to_trytes(self) -> list[str]:
        """Transaction trytes in the order attachToTangle takes them: last index first."""
        transactions = self._finalized()
        if self._inputs and not self._signed:
            raise ProtocolError("the bundle spends inputs; sign it before sending")
        return [transaction.to_trytes() for transaction in reversed(transactions)]


def finalize_bundles(builders: Sequence[BundleBuilder], timestamp: int | None = None) -> None:
    """:meth:`BundleBuilder.finalize` for many bundles at once: the same bundles,
    their secure tail tags searched together (see :func:`_secure_tail_tags`).

    Nothing is finalized if any builder is refused (finalized already, unbalanced).
    """
    if len({id(builder) for builder in builders}) != len(builders):
        raise ProtocolError("finalize_bundles takes each builder once")
    planned = [builder._planned_transactions(timestamp) for builder in builders]
    for builder, transactions, (tail_tag, final_hash) in zip(
        builders, planned, _secure_tail_tags(planned), strict=True
    ):
        builder._finish(transactions, tail_tag, final_hash)
