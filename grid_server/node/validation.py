"""Checks every transaction must pass before the node stores it.

Structure, proof of work, timestamps and bundles (completeness, hash,
signatures) are checked here; ledger rules live in :mod:`.ledger`. Hashes of a
whole request are computed at once in Curl lanes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from p2p_energy_protocol.bundle_validation import bundle_errors, bundle_from_tail
from p2p_energy_protocol.errors import ProtocolError
from p2p_energy_protocol.pow import transaction_weight
from p2p_energy_protocol.transaction import Transaction, transactions_from_trytes

from .errors import CommandError
from .storage import NULL_HASH, TransactionRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

TRANSACTION_TRYTES: Final = 2673
# Attachment timestamps are milliseconds; the upper bound clients set is (3^27 - 1) / 2.
_MAX_ATTACHMENT_BOUND: Final = (3**27 - 1) // 2


@dataclass(frozen=True, slots=True)
class ParsedTransaction:
    """A transaction with its hash (computed in a batch) and its original trytes."""

    transaction: Transaction
    hash: str
    trytes: str

    @property
    def bundle(self) -> str:
        return self.transaction.bundle

    def record(self) -> TransactionRecord:
        tx = self.transaction
        return TransactionRecord(
            hash=self.hash,
            address=tx.address,
            bundle=tx.bundle,
            tag=tx.tag,
            value=tx.value,
            current_index=tx.current_index,
            last_index=tx.last_index,
            timestamp=tx.timestamp,
            attachment_timestamp=tx.attachment_timestamp,
            trunk=tx.trunk_transaction,
            branch=tx.branch_transaction,
            trytes=self.trytes,
        )


def parse_trytes(trytes_list: Sequence[object], name: str = "trytes") -> list[ParsedTransaction]:
    """Parse and hash transactions; the first malformed one rejects the request."""
    checked: list[str] = []
    for position, trytes in enumerate(trytes_list):
        if not isinstance(trytes, str):
            raise CommandError(
                f"{name}[{position}] must be a string of {TRANSACTION_TRYTES} trytes"
            )
        if len(trytes) != TRANSACTION_TRYTES:
            raise CommandError(
                f"{name}[{position}] must be {TRANSACTION_TRYTES} trytes long, got {len(trytes)}"
            )
        checked.append(trytes)
    try:
        # Parses and hashes the whole request at once in Curl lanes.
        parsed_transactions = transactions_from_trytes(checked)
    except ProtocolError:
        for position, trytes in enumerate(checked):
            try:
                Transaction.from_trytes(trytes)
            except ProtocolError as err:
                raise CommandError(f"{name}[{position}] is not a valid transaction: {err}") from err
        raise
    return [
        ParsedTransaction(tx, tx.hash, trytes)
        for tx, trytes in zip(parsed_transactions, checked, strict=True)
    ]


def check_transaction(
    parsed: ParsedTransaction, min_weight_magnitude: int, now_ms: int, max_future_seconds: int
) -> None:
    """Proof of work and timestamps of one transaction."""
    weight = transaction_weight(parsed.hash)
    if weight < min_weight_magnitude:
        raise CommandError(
            f"transaction {parsed.hash} has a proof of work of weight {weight}, below this "
            f"node's minimum weight magnitude {min_weight_magnitude}"
        )
    if parsed.hash == NULL_HASH:
        raise CommandError("a transaction cannot have the null hash")
    tx = parsed.transaction
    latest_ms = now_ms + max_future_seconds * 1000
    if tx.timestamp * 1000 > latest_ms:
        raise CommandError(
            f"transaction {parsed.hash} has timestamp {tx.timestamp}, more than "
            f"{max_future_seconds} s in the future"
        )
    if tx.attachment_timestamp:
        if tx.attachment_timestamp > latest_ms:
            raise CommandError(
                f"transaction {parsed.hash} has attachment timestamp {tx.attachment_timestamp}, "
                f"more than {max_future_seconds} s in the future"
            )
        lower = tx.attachment_timestamp_lower_bound
        upper = tx.attachment_timestamp_upper_bound
        if not 0 <= lower <= tx.attachment_timestamp <= upper <= _MAX_ATTACHMENT_BOUND:
            raise CommandError(
                f"transaction {parsed.hash} has attachment timestamp {tx.attachment_timestamp} "
                f"outside its bounds {lower}..{upper}"
            )
    elif tx.attachment_timestamp_lower_bound or tx.attachment_timestamp_upper_bound:
        raise CommandError(
            f"transaction {parsed.hash} has attachment timestamp bounds but no attachment timestamp"
        )


def _transaction(parsed: ParsedTransaction) -> Transaction:
    return parsed.transaction


def assemble_bundles(
    new: Sequence[ParsedTransaction],
    load_stored: Callable[[Iterable[str]], Sequence[ParsedTransaction]],
) -> tuple[list[list[ParsedTransaction]], list[ParsedTransaction]]:
    """Complete bundle instances holding the new transactions.

    Returns the instances (each tail first) and the new transactions that belong to no
    complete instance. ``load_stored`` supplies stored members of given bundles, needed
    only when a request completes a bundle that is partly stored already.
    """
    pool = {parsed.hash: parsed for parsed in new}
    instances: list[list[ParsedTransaction]] = []
    covered: set[str] = set()

    def collect(candidates: Iterable[ParsedTransaction]) -> None:
        for parsed in candidates:
            if parsed.transaction.current_index != 0:
                continue
            chain = bundle_from_tail(parsed, pool, _transaction) or []
            hashes = {member.hash for member in chain}
            if chain and not hashes <= covered and any(h in new_hashes for h in hashes):
                instances.append(chain)
                covered.update(hashes)

    new_hashes = set(pool)
    collect(new)
    uncovered = [parsed for parsed in new if parsed.hash not in covered]
    if uncovered:
        stored = load_stored({parsed.bundle for parsed in uncovered})
        for parsed in stored:
            pool.setdefault(parsed.hash, parsed)
        collect([*uncovered, *(parsed for parsed in stored if parsed.hash not in covered)])
        uncovered = [parsed for parsed in new if parsed.hash not in covered]
    return instances, uncovered


def bundle_problems(
    instances: Sequence[Sequence[ParsedTransaction]],
) -> list[CommandError | None]:
    """Why each bundle instance is invalid, or None: bundle hash, value sum, signatures
    (via the protocol library) and trunk chaining. All bundle hashes are computed at once."""
    errors = bundle_errors([[member.transaction for member in instance] for instance in instances])
    problems: list[CommandError | None] = []
    for instance, error in zip(instances, errors, strict=True):
        if error is None:
            problems.append(None)
            continue
        problem = CommandError(f"bundle {instance[0].bundle} is invalid: {error}")
        problem.__cause__ = error
        problems.append(problem)
    return problems


def incomplete_error(uncovered: Sequence[ParsedTransaction]) -> CommandError:
    first = uncovered[0].transaction
    return CommandError(
        f"transaction {uncovered[0].hash} (index {first.current_index} of "
        f"{first.last_index}) belongs to bundle {first.bundle}, which is incomplete: every "
        "transaction of a bundle, from index 0 to the last, chained by trunk, must be sent "
        "together or be stored already"
    )
