"""Validating a received bundle: structure, bundle hash, value balance, signatures.

The checks a node makes before it stores a bundle and a client makes before it
trusts one; many bundles are checked together, their hashes computed in one Kerl
batch (:func:`~.bundle.bundle_hashes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .address import has_zero_last_trit
from .bundle import bundle_hashes, is_secure_bundle_hash
from .errors import InvalidBundleError, InvalidSignatureError, ProtocolError
from .signing import validate_signature
from .transaction import NULL_HASH, Transaction, hashes_of

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence


def bundle_from_tail[T](
    tail: T, members: Mapping[str, T], transaction_of: Callable[[T], Transaction]
) -> list[T] | None:
    """The attached bundle instance from ``tail`` along trunks through ``members`` (by
    hash), tail first, or ``None`` where it breaks off: a member missing, of another
    bundle, out of index order or with another last index. ``transaction_of`` reads a
    member's transaction (a member may carry more, as the node's parsed ones do)."""
    first = transaction_of(tail)
    chain = [tail]
    current = first
    while current.current_index < first.last_index:
        following = members.get(current.trunk_transaction)
        if following is None:
            return None
        candidate = transaction_of(following)
        if (
            candidate.bundle != first.bundle
            or candidate.current_index != current.current_index + 1
            or candidate.last_index != first.last_index
        ):
            return None
        chain.append(following)
        current = candidate
    return chain


def validate_bundle(transactions: Sequence[Transaction], *, attached: bool | None = None) -> None:
    """Raise :class:`InvalidBundleError` (or :class:`InvalidSignatureError`) unless
    ``transactions`` form one complete, consistent, correctly signed bundle.

    Checks: indexes 0..last exactly once with a common last index and bundle
    hash; the bundle hash recomputed from the essences; values summing to 0;
    value-moving addresses ending in a 0 trit; each input's signature (its
    transaction plus the following zero-value ones at the same address) against
    the input address, over a hash that normalizes without 13. With
    ``attached`` (by default: when any trunk is set) transaction ``i``'s trunk
    must be the hash of transaction ``i + 1``.
    """
    (error,) = bundle_errors([transactions], attached=attached)
    if error is not None:
        raise error


def bundle_errors(
    bundles: Sequence[Sequence[Transaction]], *, attached: bool | None = None
) -> list[ProtocolError | None]:
    """What :func:`validate_bundle` would raise for each bundle (None if it is valid).

    The bundle hashes of all bundles are computed together (see :func:`bundle_hashes`).
    """
    errors: list[ProtocolError | None] = [None] * len(bundles)
    well_formed: list[tuple[int, list[Transaction]]] = []
    for position, transactions in enumerate(bundles):
        try:
            well_formed.append((position, _ordered_members(transactions)))
        except ProtocolError as err:
            errors[position] = err
    recomputed = bundle_hashes([ordered for _, ordered in well_formed])
    for (position, ordered), actual_hash in zip(well_formed, recomputed, strict=True):
        try:
            _check_hashed_bundle(ordered, actual_hash, attached)
        except ProtocolError as err:
            errors[position] = err
    return errors


def _ordered_members(transactions: Sequence[Transaction]) -> list[Transaction]:
    """The transactions in index order, after every check that needs no hashing."""
    if not transactions:
        raise InvalidBundleError("a bundle needs at least one transaction")
    if not all(isinstance(t, Transaction) for t in transactions):
        raise InvalidBundleError("a bundle is a sequence of Transaction objects")
    ordered = sorted(transactions, key=lambda transaction: transaction.current_index)
    expected_hash = ordered[0].bundle
    last_index = len(ordered) - 1
    for position, transaction in enumerate(ordered):
        if transaction.current_index != position:
            raise InvalidBundleError(
                f"expected a transaction with current index {position}, "
                f"found {transaction.current_index}: indexes must run 0..{last_index} once each"
            )
        if transaction.last_index != last_index:
            raise InvalidBundleError(
                f"transaction {position} says the last index is {transaction.last_index}, "
                f"but the bundle has {len(ordered)} transactions"
            )
        if transaction.bundle != expected_hash:
            raise InvalidBundleError(
                f"transaction {position} belongs to bundle {transaction.bundle}, "
                f"not {expected_hash}"
            )
        if transaction.value != 0 and not has_zero_last_trit(transaction.address):
            raise InvalidBundleError(
                f"transaction {position} moves value with address {transaction.address}, "
                "whose last trit is not 0"
            )
    total = sum(transaction.value for transaction in ordered)
    if total != 0:
        raise InvalidBundleError(f"the values sum to {total}, not 0")
    return ordered


def _check_hashed_bundle(
    ordered: Sequence[Transaction], actual_hash: str, attached: bool | None
) -> None:
    """The checks of :func:`validate_bundle` from the recomputed bundle hash on."""
    expected_hash = ordered[0].bundle
    if actual_hash != expected_hash:
        raise InvalidBundleError(
            f"the essences hash to {actual_hash}, not the bundle hash {expected_hash}"
        )
    if attached is None:
        attached = any(transaction.trunk_transaction != NULL_HASH for transaction in ordered)
    if attached and len(ordered) > 1:
        hashes = hashes_of(ordered)
        for position in range(len(ordered) - 1):
            if ordered[position].trunk_transaction != hashes[position + 1]:
                raise InvalidBundleError(
                    f"transaction {position}'s trunk is not transaction {position + 1}"
                )
    _validate_signatures(ordered)


def _validate_signatures(ordered: Sequence[Transaction]) -> None:
    inputs = [position for position, t in enumerate(ordered) if t.value < 0]
    if inputs and not is_secure_bundle_hash(ordered[0].bundle):
        raise InvalidSignatureError(
            "the bundle spends inputs over a hash that normalizes with a 13 ('M'), "
            "which would reveal part of a private key"
        )
    for position in inputs:
        spent = ordered[position]
        fragments = [spent.signature_message_fragment]
        following = position + 1
        while (
            following < len(ordered)
            and ordered[following].address == spent.address
            and ordered[following].value == 0
        ):
            fragments.append(ordered[following].signature_message_fragment)
            following += 1
        if not validate_signature(spent.address, fragments, spent.bundle):
            raise InvalidSignatureError(
                f"the signature of input {position} ({spent.address}, "
                f"{len(fragments)} fragments) does not verify"
            )
