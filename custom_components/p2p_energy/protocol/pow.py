"""Proof of work: the Curl-P-81 nonce search and IRI's ``attachToTangle``.

A transaction's hash is Curl-P-81 over its 8,019 trits; its weight is the
number of trailing zero trits of that hash, and proof of work is valid when
the weight reaches the minimum weight magnitude (MWM). Only the last 243-trit
block holds the nonce (its last 81 trits), so the search absorbs the first
32 blocks once and then tries one candidate per lane of a :class:`CurlBatch`
with a single transform per batch.

Nonce layout of a candidate: trits ``0..k`` number the lane, the next 27 trits
count batches, the rest are zero. The search is deterministic: the compiled
kernel (:mod:`.kernel`), when installed, walks the same candidates in the same
order and finds the same nonce.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import Final

import numpy as np

from . import kernel
from .curl import ALL_ONES, HASH_LENGTH, Curl, CurlBatch, Planes, pack_lanes
from .errors import (
    InvalidBundleError,
    InvalidTransactionError,
    PowInterruptedError,
    ProofOfWorkError,
)
from .transaction import (
    FRAGMENT_LENGTH,
    NONCE_LENGTH,
    NULL_TAG,
    TRANSACTION_LENGTH,
    TRANSACTION_TRITS,
    Transaction,
)
from .trinary import (
    TRYTE_ALPHABET,
    Trits,
    TritsLike,
    trits_to_trytes,
    trytes_to_trits,
    validate_trits,
    validate_trytes,
)

HASH_TRYTES: Final = HASH_LENGTH // 3
NONCE_TRITS: Final = 3 * NONCE_LENGTH
MAX_MIN_WEIGHT_MAGNITUDE: Final = HASH_LENGTH
"""IRI accepts any MWM up to the hash length (a high one simply never finishes)."""
MAX_TIMESTAMP_VALUE: Final = (3**27 - 1) // 2
"""Largest value of a 27-trit timestamp field: IRI's attachment upper bound."""
DEFAULT_LANES: Final = 1024
"""Candidates per Curl transform; about the fastest on a 1 MiB L2 cache."""
MAX_LANES: Final = 65536

_LAST_BLOCK_START: Final = TRANSACTION_TRITS - HASH_LENGTH
_FRAGMENT_TRITS: Final = 3 * FRAGMENT_LENGTH  # 27 blocks of 243
_NONCE_ROW: Final = HASH_LENGTH - NONCE_TRITS  # nonce position within the last block
_COUNTER_TRITS: Final = 27
_COUNTER_POWERS: Final = 3 ** np.arange(_COUNTER_TRITS, dtype=np.int64)
_COUNTERS: Final = 3**_COUNTER_TRITS
_NATIVE_CANDIDATES_PER_CALL: Final = 16384
"""Candidates per call of the compiled search (a few ms): ``should_stop`` is polled
between calls, and the GIL is free during them."""

StopCheck = Callable[[], bool]

# Trailing zero trits of each tryte other than 9 (its trits are little-endian).
_TRYTE_TRAILING_ZEROS: Final = {
    char: 2 if trits[1] == trits[2] == 0 else 1 if trits[2] == 0 else 0
    for char in TRYTE_ALPHABET[1:]
    for trits in [trytes_to_trits(char)]
}


def transaction_weight(transaction_hash: str | TritsLike) -> int:
    """Number of trailing zero trits of a hash (81 trytes or 243 trits)."""
    if isinstance(transaction_hash, str):
        # Read off the trytes (a node checks every transaction it stores): trailing 9s
        # are three zero trits each, then the last other tryte's own trailing zeros.
        validate_trytes(transaction_hash, HASH_TRYTES, "transaction hash")
        significant = transaction_hash.rstrip("9")
        if not significant:
            return HASH_LENGTH
        trailing = 3 * (HASH_TRYTES - len(significant))
        return trailing + _TRYTE_TRAILING_ZEROS[significant[-1]]
    trits = _hash_trits(transaction_hash)
    nonzero = np.flatnonzero(trits)
    return HASH_LENGTH if nonzero.size == 0 else HASH_LENGTH - 1 - int(nonzero[-1])


def has_valid_pow(transaction_hash: str | TritsLike, min_weight_magnitude: int) -> bool:
    """Whether the hash's last ``min_weight_magnitude`` trits are all zero."""
    weight = _check_weight(min_weight_magnitude)
    return transaction_weight(transaction_hash) >= weight


def find_nonce(
    transaction: str | TritsLike,
    min_weight_magnitude: int,
    should_stop: StopCheck | None = None,
    *,
    lanes: int = DEFAULT_LANES,
) -> str:
    """Search a 27-tryte nonce that gives the transaction ``min_weight_magnitude``.

    ``transaction`` is 2,673 trytes or 8,019 trits; its current nonce is
    ignored. ``should_stop`` is polled between batches (about every
    millisecond); when it returns true the search raises
    :class:`PowInterruptedError`. ``lanes`` (a multiple of 64) is the number
    of candidates tried per Curl transform.
    """
    trits = _transaction_trits(transaction)
    weight = _check_weight(min_weight_magnitude)
    _check_lanes(lanes)
    nonce, _ = _nonce_and_hash(trits, weight, should_stop, lanes)
    return trits_to_trytes(nonce)


def attach_to_tangle(
    trytes_list: Sequence[str],
    trunk_transaction: str,
    branch_transaction: str,
    min_weight_magnitude: int,
    now_ms: int | None = None,
    *,
    should_stop: StopCheck | None = None,
    lanes: int = DEFAULT_LANES,
) -> list[str]:
    """IRI's ``attachToTangle``: chain the transactions and do their proof of work.

    Transactions are processed in the order given, which clients send head
    first (last index first): the first gets ``(trunk, branch)``, each later
    one gets ``(hash of the one before it, trunk)``. An all-9 tag is replaced
    by the obsolete tag, the attachment timestamp is ``now_ms`` (default: the
    current time) with bounds 0 and :data:`MAX_TIMESTAMP_VALUE`. The result is
    in the reverse order, tail (index 0) first, as IRI returns it.

    Unlike IRI, input that would chain into a broken bundle is refused: each
    bundle must be complete and given from its last index down to 0.
    """
    if isinstance(trytes_list, str) or not isinstance(trytes_list, Sequence):
        raise InvalidTransactionError("trytes_list must be a sequence of transaction trytes")
    if not trytes_list:
        raise InvalidTransactionError("attachToTangle needs at least one transaction")
    transactions: list[Transaction] = []
    for position, trytes in enumerate(trytes_list):
        try:
            transactions.append(Transaction.from_trytes(trytes))
        except InvalidTransactionError as err:
            raise InvalidTransactionError(f"transaction {position}: {err}") from err
    return attach_transactions(
        transactions,
        trunk_transaction,
        branch_transaction,
        min_weight_magnitude,
        now_ms,
        should_stop=should_stop,
        lanes=lanes,
    )


def attach_transactions(
    transactions: list[Transaction],
    trunk_transaction: str,
    branch_transaction: str,
    min_weight_magnitude: int,
    now_ms: int | None = None,
    *,
    should_stop: StopCheck | None = None,
    lanes: int = DEFAULT_LANES,
) -> list[str]:
    """:func:`attach_to_tangle` of transactions at hand (bundles just finalised, head
    first), without their trytes parsed once more."""
    if not transactions:
        raise InvalidTransactionError("attachToTangle needs at least one transaction")
    trunk = validate_trytes(trunk_transaction, HASH_TRYTES, "trunk transaction")
    branch = validate_trytes(branch_transaction, HASH_TRYTES, "branch transaction")
    weight = _check_weight(min_weight_magnitude)
    _check_lanes(lanes)
    timestamp = _now_ms() if now_ms is None else now_ms
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ProofOfWorkError(f"now_ms must be an integer, got {timestamp!r}")
    if not 0 <= timestamp <= MAX_TIMESTAMP_VALUE:
        raise ProofOfWorkError(f"now_ms {timestamp} is outside 0..{MAX_TIMESTAMP_VALUE}")
    _check_head_first_order(transactions)

    fragment_states = _fragment_states(transactions)
    attached: list[str] = []
    previous_hash: str | None = None
    for transaction, fragment_state in zip(transactions, fragment_states, strict=True):
        prepared = transaction.replace(
            trunk_transaction=trunk if previous_hash is None else previous_hash,
            branch_transaction=branch if previous_hash is None else trunk,
            tag=transaction.obsolete_tag if transaction.tag == NULL_TAG else transaction.tag,
            attachment_timestamp=timestamp,
            attachment_timestamp_lower_bound=0,
            attachment_timestamp_upper_bound=MAX_TIMESTAMP_VALUE,
        ).to_trytes()
        nonce, hash_trits = _nonce_and_hash(
            trytes_to_trits(prepared), weight, should_stop, lanes, fragment_state
        )
        attached.append(prepared[:-NONCE_LENGTH] + trits_to_trytes(nonce))
        previous_hash = trits_to_trytes(hash_trits)
    attached.reverse()
    return attached


def _fragment_states(transactions: Sequence[Transaction]) -> list[Trits]:
    """Each transaction's sponge state after its signature or message fragment (its first
    27 blocks), which attaching does not change: absorbed for all of them at once in
    the lanes of one batch instead of one sponge after another."""
    fragments = np.stack(
        [trytes_to_trits(transaction.signature_message_fragment) for transaction in transactions]
    )
    batch = CurlBatch(len(transactions), 81)
    batch.absorb(fragments)
    return list(batch.state())


def _nonce_and_hash(
    trits: Trits,
    weight: int,
    should_stop: StopCheck | None,
    lanes: int,
    fragment_state: Trits | None = None,
) -> tuple[Trits, Trits]:
    """The nonce (81 trits) for a transaction's trits and the hash it gives.

    The sponge absorbs the first 32 blocks once (from ``fragment_state``, the state
    after the first 27, when given): the search starts from that state, and the hash
    is that state absorbing the last block with the nonce (which also guards the
    bit-sliced search: a wrong nonce fails the weight check).
    """
    sponge = Curl(81)
    if fragment_state is None:
        sponge.absorb(trits[:_LAST_BLOCK_START])
    else:
        sponge.state = fragment_state
        sponge.absorb(trits[_FRAGMENT_TRITS:_LAST_BLOCK_START])
    last_block = trits[_LAST_BLOCK_START:].copy()
    last_block[_NONCE_ROW:] = _search(sponge, last_block, weight, should_stop, lanes)
    sponge.absorb(last_block)
    hash_trits = sponge.squeeze()
    if transaction_weight(hash_trits) < weight:
        raise ProofOfWorkError("the nonce search produced a nonce that does not verify")
    return last_block[_NONCE_ROW:], hash_trits


def _search(
    sponge: Curl, last_block: Trits, weight: int, should_stop: StopCheck | None, lanes: int
) -> Trits:
    """Nonce trits (81) that give a transaction at least ``weight`` trailing zero trits;
    ``sponge`` has absorbed its first 32 blocks, ``last_block`` is its last one."""
    lane_numbers, lane_low, lane_high = _lane_planes(lanes)
    counter_row = _NONCE_ROW + lane_numbers.shape[1]
    last_block = last_block.copy()
    last_block[_NONCE_ROW:] = 0
    if weight == 0:
        return last_block[_NONCE_ROW:]

    # Every lane starts from the sponge's state with the last block in its first rows:
    # a set bit is a full word of ones (-1 as uint64).
    low_bits, high_bits = sponge.bit_planes()
    low_bits[:HASH_LENGTH] = last_block != 1
    high_bits[:HASH_LENGTH] = last_block != -1
    words = lanes // 64
    base_low = np.repeat((-low_bits.astype(np.int64)).view(np.uint64)[:, None], words, axis=1)
    base_high = np.repeat((-high_bits.astype(np.int64)).view(np.uint64)[:, None], words, axis=1)
    base_low[_NONCE_ROW:counter_row] = lane_low
    base_high[_NONCE_ROW:counter_row] = lane_high

    compiled = kernel.native()
    if compiled is not None:
        step = max(1, _NATIVE_CANDIDATES_PER_CALL // lanes)
        for first in range(0, _COUNTERS, step):
            if should_stop is not None and should_stop():
                raise PowInterruptedError("proof of work was interrupted")
            hit = compiled.search_nonce(
                base_low, base_high, lanes, counter_row, weight, first, min(first + step, _COUNTERS)
            )
            if hit is not None:
                counter, lane = hit
                return _nonce(lane_numbers[lane], _counter_digits(counter))
        raise ProofOfWorkError("the nonce space is exhausted")

    batch = CurlBatch(lanes, 81)
    counter_rows = slice(counter_row, counter_row + _COUNTER_TRITS)
    hash_end = slice(HASH_LENGTH - weight, HASH_LENGTH)
    zero_trits = np.empty((weight, words), dtype=np.uint64)
    for counter in range(_COUNTERS):
        if should_stop is not None and should_stop():
            raise PowInterruptedError("proof of work was interrupted")
        digits = _counter_digits(counter)
        np.copyto(batch.low, base_low)
        np.copyto(batch.high, base_high)
        batch.low[counter_rows] = np.where(digits != 1, ALL_ONES, np.uint64(0))[:, None]
        batch.high[counter_rows] = np.where(digits != -1, ALL_ONES, np.uint64(0))[:, None]
        batch.transform()
        np.bitwise_and(batch.low[hash_end], batch.high[hash_end], out=zero_trits)
        found = np.bitwise_and.reduce(zero_trits, axis=0)
        if found.any():
            word = int(np.flatnonzero(found)[0])
            bits = int(found[word])
            lane = 64 * word + (bits & -bits).bit_length() - 1
            return _nonce(lane_numbers[lane], digits)
    raise ProofOfWorkError("the nonce space is exhausted")


def _counter_digits(counter: int) -> Trits:
    """The counter's base-3 digits minus one: the nonce trits after the lane's."""
    digits: Trits = (counter // _COUNTER_POWERS % 3).astype(np.int8) - 1
    return digits


def _nonce(lane_digits: Trits, counter_digits: Trits) -> Trits:
    nonce = np.zeros(NONCE_TRITS, dtype=np.int8)
    nonce[: lane_digits.size] = lane_digits
    nonce[lane_digits.size : lane_digits.size + _COUNTER_TRITS] = counter_digits
    return nonce


@cache
def _lane_planes(lanes: int) -> tuple[Trits, Planes, Planes]:
    """Lane ``i``'s base-3 digits as trits (a distinct nonce prefix per lane), as rows
    and bit-sliced; the same for every transaction, so made once per lane count (they
    are read-only)."""
    lane_trits = 1
    while 3**lane_trits < lanes:
        lane_trits += 1
    powers = 3 ** np.arange(lane_trits, dtype=np.int64)
    numbers: Trits = (np.arange(lanes, dtype=np.int64)[:, None] // powers % 3).astype(np.int8) - 1
    low, high = pack_lanes(numbers, lanes // 64)
    for array in (numbers, low, high):
        array.setflags(write=False)
    return numbers, low, high


def _check_head_first_order(transactions: list[Transaction]) -> None:
    """Each bundle complete and given last index first, so the trunk chain is valid."""
    expected_next: int | None = None
    bundle = ""
    for position, transaction in enumerate(transactions):
        current, last = transaction.current_index, transaction.last_index
        if expected_next is None:
            if current != last:
                raise InvalidBundleError(
                    f"transaction {position} (index {current} of {last}) must be a bundle's "
                    "head: attachToTangle takes each bundle last index first"
                )
            bundle = transaction.bundle
        elif current != expected_next or transaction.bundle != bundle:
            raise InvalidBundleError(
                f"transaction {position} should be index {expected_next} of bundle "
                f"{bundle}: attachToTangle takes each bundle complete, last index first"
            )
        expected_next = current - 1 if current > 0 else None
    if expected_next is not None:
        raise InvalidBundleError(
            f"the bundle ends at index {expected_next + 1}; its lower indexes are missing"
        )


def _transaction_trits(transaction: str | TritsLike) -> Trits:
    if isinstance(transaction, str):
        return trytes_to_trits(validate_trytes(transaction, TRANSACTION_LENGTH, "transaction"))
    return validate_trits(transaction, TRANSACTION_TRITS, "transaction").copy()


def _hash_trits(transaction_hash: str | TritsLike) -> Trits:
    if isinstance(transaction_hash, str):
        return trytes_to_trits(validate_trytes(transaction_hash, HASH_TRYTES, "transaction hash"))
    return validate_trits(transaction_hash, HASH_LENGTH, "transaction hash")


def _check_weight(min_weight_magnitude: int) -> int:
    if isinstance(min_weight_magnitude, bool) or not isinstance(min_weight_magnitude, int):
        raise ProofOfWorkError(
            f"min weight magnitude must be an integer, got {min_weight_magnitude!r}"
        )
    if not 0 <= min_weight_magnitude <= MAX_MIN_WEIGHT_MAGNITUDE:
        raise ProofOfWorkError(
            f"min weight magnitude must be within 0..{MAX_MIN_WEIGHT_MAGNITUDE}, "
            f"got {min_weight_magnitude}"
        )
    return min_weight_magnitude


def _check_lanes(lanes: int) -> None:
    if (
        isinstance(lanes, bool)
        or not isinstance(lanes, int)
        or not 64 <= lanes <= MAX_LANES
        or lanes % 64
    ):
        raise ProofOfWorkError(f"lanes must be a multiple of 64 in 64..{MAX_LANES}, got {lanes!r}")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
