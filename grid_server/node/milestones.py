"""Milestones of the private network: their format, how they are signed and checked.

A milestone with index ``i`` is a zero-value bundle at the coordinator address,
every transaction tagged with ``i``:

* transactions ``0 .. s-1`` (``s`` = security) carry a Kerl signature of the
  *commitment's transaction hash*, made with the key at seed index ``i - 1``;
* transaction ``s`` is the commitment: its message holds the address of the key
  that signs milestone ``i + 1``;
* further transactions only carry references (their branches).

The last transaction's trunk is the previous milestone, so a milestone's past
cone holds every earlier one. The signed commitment hash covers the next
address, the index and every reference (trunk chains commit to the rest), so a
milestone cannot be re-wired. Each key signs exactly once and each milestone
names the next key: nodes verify the chain from the configured coordinator
address (the address of key 0) without knowing the seed.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.errors import ProtocolError
from p2p_energy_protocol.pow import find_nonce
from p2p_energy_protocol.signing import (
    CHUNKS_PER_FRAGMENT,
    key,
    normalize_hash,
    seed_to_trits,
    signature_fragments,
    subseed,
    validate_signature,
)
from p2p_energy_protocol.transaction import Transaction, transactions_hashes
from p2p_energy_protocol.trinary import int_to_trytes, trits_to_trytes, trytes_to_int

from .storage import NULL_HASH

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

FRAGMENT_TRYTES: Final = 2187
_UPPER_BOUND: Final = (3**27 - 1) // 2
_MAX_TRYTE: Final = 13


class MilestoneError(ValueError):
    """A bundle at the coordinator address is not a valid milestone."""


def milestone_tag(index: int) -> str:
    """The 27-tryte tag of every transaction of milestone ``index``."""
    return int_to_trytes(index, 27)


def milestone_index_of(tag: str) -> int:
    return trytes_to_int(tag)


@dataclass(frozen=True, slots=True)
class VerifiedMilestone:
    index: int
    hash: str
    signing_address: str
    next_address: str
    timestamp: int


def verify_milestone(
    instance: Sequence[Transaction],
    hashes: Sequence[str],
    *,
    index: int,
    coordinator_address: str,
    signing_address: str,
    previous_milestone: str,
    security: int,
) -> VerifiedMilestone:
    """Check a complete, valid bundle (tail first) as milestone ``index``."""
    if len(instance) != len(hashes) or not instance:
        raise MilestoneError("a milestone needs its transactions and their hashes")
    if len(instance) < security + 1:
        raise MilestoneError(
            f"a milestone at security {security} has at least {security + 1} transactions"
        )
    tag = milestone_tag(index)
    for position, tx in enumerate(instance):
        if tx.address != coordinator_address or tx.value != 0:
            raise MilestoneError(f"transaction {position} is not a zero-value coordinator one")
        if tx.tag != tag:
            raise MilestoneError(f"transaction {position} is not tagged with index {index}")
    commitment = instance[security]
    commitment_hash = hashes[security]
    for position in range(security):
        if instance[position].branch_transaction != commitment_hash:
            raise MilestoneError(f"signature transaction {position} must branch to the commitment")
    if instance[-1].trunk_transaction != previous_milestone:
        raise MilestoneError("a milestone's last transaction must reference the previous milestone")
    message = commitment.signature_message_fragment
    next_address = message[:81]
    if message[81:].strip("9") or next_address == NULL_HASH:
        raise MilestoneError("the commitment must hold exactly the next signing address")
    digits = normalize_hash(commitment_hash)
    if _MAX_TRYTE in digits[: security * CHUNKS_PER_FRAGMENT]:
        raise MilestoneError("the signed hash would reveal a key chunk (holds an M)")
    try:
        valid = validate_signature(
            signing_address,
            [tx.signature_message_fragment for tx in instance[:security]],
            commitment_hash,
            "kerl",
        )
    except ProtocolError as err:
        raise MilestoneError(f"malformed milestone signature: {err}") from err
    if not valid:
        raise MilestoneError(f"the signature does not match signing address {signing_address}")
    return VerifiedMilestone(
        index=index,
        hash=hashes[0],
        signing_address=signing_address,
        next_address=next_address,
        timestamp=instance[0].timestamp,
    )


def _attach(
    tx: Transaction,
    trunk: str,
    branch: str,
    min_weight_magnitude: int,
    attachment_ms: int,
    should_stop: Callable[[], bool] | None,
) -> tuple[Transaction, str]:
    prepared = dataclasses.replace(
        tx,
        trunk_transaction=trunk,
        branch_transaction=branch,
        attachment_timestamp=attachment_ms,
        attachment_timestamp_lower_bound=0,
        attachment_timestamp_upper_bound=_UPPER_BOUND,
    )
    nonce = find_nonce(prepared.to_trytes(), min_weight_magnitude, should_stop=should_stop)
    done = dataclasses.replace(prepared, nonce=nonce)
    return done, transactions_hashes([done.to_trytes()])[0]


def build_milestone(
    *,
    seed: str,
    index: int,
    security: int,
    coordinator_address: str,
    next_address: str,
    previous_milestone: str,
    references: Sequence[str],
    min_weight_magnitude: int,
    now_ms: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[str]:
    """Create, attach and sign milestone ``index``; trytes returned tail first.

    ``references`` are the tips to confirm besides the previous milestone.
    """
    if index < 1:
        raise MilestoneError("milestone indexes start at 1")
    refs = [previous_milestone, *references]
    if len(refs) == 1:
        refs.append(previous_milestone)
    carriers = max(0, len(refs) - 2)
    tag = milestone_tag(index)
    builder = BundleBuilder()
    for _ in range(security):
        builder.add_transfer(coordinator_address, 0, tag=tag)
    builder.add_transfer(coordinator_address, 0, tag=tag, message_trytes=next_address)
    for _ in range(carriers):
        builder.add_transfer(coordinator_address, 0, tag=tag)
    stamp_ms = int(time.time() * 1000) if now_ms is None else now_ms
    builder.finalize(timestamp=stamp_ms // 1000)
    txs = list(builder.transactions)
    last = len(txs) - 1
    attached: list[Transaction | None] = [None] * len(txs)
    hashes = [""] * len(txs)

    # Highest index first: each transaction's trunk is the hash of the next one.
    extra = iter(refs[2:])
    for position in range(last, security, -1):
        if position == last:
            trunk, branch = refs[0], refs[1]
        else:
            trunk, branch = hashes[position + 1], next(extra)
        attached[position], hashes[position] = _attach(
            txs[position], trunk, branch, min_weight_magnitude, stamp_ms, should_stop
        )
    if last == security:
        commitment_trunk, commitment_branch = refs[0], refs[1]
    else:
        commitment_trunk, commitment_branch = hashes[security + 1], next(extra)
    # Retry the commitment until its normalized hash holds no 13, which would reveal
    # a key chunk unhashed.
    attempt = 0
    while True:
        commitment, commitment_hash = _attach(
            txs[security],
            commitment_trunk,
            commitment_branch,
            min_weight_magnitude,
            stamp_ms + attempt,
            should_stop,
        )
        digits = normalize_hash(commitment_hash)
        if _MAX_TRYTE not in digits[: security * CHUNKS_PER_FRAGMENT]:
            break
        attempt += 1
    attached[security], hashes[security] = commitment, commitment_hash
    signing_key = key(subseed(seed_to_trits(seed), index - 1, "kerl"), security, "kerl")
    signature = trits_to_trytes(signature_fragments(digits, signing_key, "kerl"))
    for position in range(security - 1, -1, -1):
        fragment = signature[position * FRAGMENT_TRYTES : (position + 1) * FRAGMENT_TRYTES]
        signed = dataclasses.replace(txs[position], signature_message_fragment=fragment)
        attached[position], hashes[position] = _attach(
            signed,
            hashes[position + 1],
            commitment_hash,
            min_weight_magnitude,
            stamp_ms,
            should_stop,
        )
    return [tx.to_trytes() for tx in attached if tx is not None]
