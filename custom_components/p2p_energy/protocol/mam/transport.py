"""MAM messages as Tangle transactions, without any I/O.

A message travels as a zero-value bundle at its address, the payload split
into 2,187-tryte message fragments, exactly as the reference clients attach
it (``prepareTransfers`` with seed ``9...9``). Reading is the other way round:
the transactions found at an address are grouped by bundle, each tail's trunk
chain is followed to the last index, and the fragments are concatenated. Any
number of bundles may sit at an address (spam, reattachments, another
channel's data); incomplete or inconsistent ones are skipped, so they can
never block a channel, and every remaining candidate goes to the parser.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..bundle import BundleBuilder, finalize_bundles
from ..bundle_validation import bundle_from_tail
from ..errors import ProtocolError
from ..transaction import Transaction

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .channel import MamMessage


def message_to_transactions(
    message: MamMessage, tag: str = "", timestamp: int | None = None
) -> list[Transaction]:
    """The finalized zero-value bundle carrying ``message``, in index order.

    ``timestamp`` (Unix seconds) defaults to now. Attach it with the trytes in
    the order attachToTangle takes them (last index first).
    """
    (bundle,) = messages_to_transactions([message], tag, timestamp)
    return bundle


def messages_to_transactions(
    messages: Sequence[MamMessage], tag: str = "", timestamp: int | None = None
) -> list[list[Transaction]]:
    """:func:`message_to_transactions` for many messages, finalized together
    (:func:`~..bundle.finalize_bundles`: one secure-tag search for all of them)."""
    builders = []
    for message in messages:
        builder = BundleBuilder()
        builder.add_transfer(message.address, 0, tag, message.payload)
        builders.append(builder)
    finalize_bundles(builders, int(time.time()) if timestamp is None else timestamp)
    return [builder.transactions for builder in builders]


def _itself(transaction: Transaction) -> Transaction:
    return transaction


def _chain_by_index(members: dict[str, Transaction]) -> list[Transaction] | None:
    """An unattached bundle (no trunk links) in index order, if exactly one
    transaction holds each index."""
    by_index: dict[int, list[Transaction]] = {}
    for transaction in members.values():
        by_index.setdefault(transaction.current_index, []).append(transaction)
    last_indexes = {transaction.last_index for transaction in members.values()}
    if len(last_indexes) != 1:
        return None
    (last_index,) = last_indexes
    if sorted(by_index) != list(range(last_index + 1)):
        return None
    if any(len(found) != 1 for found in by_index.values()):
        return None
    return [by_index[index][0] for index in range(last_index + 1)]


def payload_from_transactions(transactions: Iterable[Transaction]) -> list[str]:
    """Candidate payloads from the transactions found at a MAM address.

    Bundles are taken in the order their first transaction appears, tails in
    input order; duplicates (reattachments) are returned once. The caller
    parses each candidate and keeps the first that verifies.
    """
    bundles: dict[str, dict[str, Transaction]] = {}
    for transaction in transactions:
        if not isinstance(transaction, Transaction):
            raise ProtocolError(f"expected Transaction objects, got {type(transaction).__name__}")
        bundles.setdefault(transaction.bundle, {})[transaction.hash] = transaction
    payloads: list[str] = []
    seen: set[str] = set()
    for members in bundles.values():
        chains = [
            chain
            for tail in members.values()
            if tail.current_index == 0
            and (chain := bundle_from_tail(tail, members, _itself)) is not None
        ]
        if not chains and (by_index := _chain_by_index(members)) is not None:
            chains = [by_index]
        for chain in chains:
            payload = "".join(part.signature_message_fragment for part in chain)
            if payload not in seen:
                seen.add(payload)
                payloads.append(payload)
    return payloads
