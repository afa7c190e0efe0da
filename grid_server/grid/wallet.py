"""The grid's IOTA wallet: payment addresses for consumers and payouts to producers.

Addresses come from the wallet seed by key index: index 0 is the treasury (the
genesis balance of an in-process node), later indexes are consumers' payment
addresses and the remainders of payouts. An address is spent from at most once.

Deriving an address is Kerl work (~1 ms each), so the wallet keeps a pool of
derived, unused consumer addresses, refilled while the grid is idle (after a
slot's bill stage): their key indexes are recorded as ``reserved`` rows, so an
index is never handed out twice, even after a crash between reserving and
using it. A slot's bills then only pick addresses from the pool. Addresses are
public; the seed stays in this process.

Payouts are crash-safe: pending producer payouts are gathered into bundles,
each built and signed, then recorded (bundle trytes, inputs marked spent,
payouts linked to it) in one transaction *before* anything is sent. Sending,
re-sending after a restart and reattaching all use those recorded trytes, so a
payout can never be paid by two different bundles; whether any attachment is
confirmed comes from the protocol library's transfer lifecycle, the same one a
household's payments go through.

Several payout bundles may be in flight at once (thousands of producers are paid
within a slot, not one bundle per milestone): each spends its own inputs, which
are confirmed balances marked spent when it is recorded, so no two bundles ever
share an input, and a remainder only becomes an input once a milestone confirmed
it. A bundle stays within the attach limit of IRI nodes (100 transactions), and
its remainder is split over new addresses while the wallet holds fewer funded
addresses than bundles it may have in flight, so the next round has inputs for
all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.errors import IriApiError, NodeError, ProtocolError
from p2p_energy_protocol.signing import generate_address, generate_addresses
from p2p_energy_protocol.transaction import Transaction
from p2p_energy_protocol.transfers import (
    TransferLifecycle,
    TransferNode,
    TransferNotSentError,
    TransferState,
)
from sqlalchemy import case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .db.models import IncomingPayment, Payout, Registration, WalletAddress, WalletTransfer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from concurrent.futures import Executor

    from sqlalchemy.orm import Session

    from .clock import Clock
    from .db.engine import Database

_LOGGER = logging.getLogger(__name__)
PAYOUT_TAG = "PEERENERGYGRIDPAYOUT"
MAX_SEND_ATTEMPTS = 5
_IN_CHUNK = 500
RESERVED = "reserved"
"""The purpose of a pool address: derived and recorded, not yet given to a consumer."""
_REFILL_CHUNK = 250  # addresses derived per step of a refill (~0.3 s of the CPU thread)
_CONCURRENT_TRANSFERS = 4  # payout bundles attached or looked up at once
MAX_BUNDLE_TRANSACTIONS = 100
"""The most transactions a payout bundle has: IRI's (and this node's) attachToTangle limit."""


class WalletNode(TransferNode, Protocol):
    """What the wallet needs of the node client (``IriClient`` provides it)."""


@dataclass(frozen=True, slots=True)
class _Candidate:
    key_index: int
    address: str
    purpose: str


@dataclass
class PayoutRound:
    """What one :meth:`GridWallet.pay_out` did: bundles confirmed, attached, recorded."""

    confirmed: int = 0
    sent: int = 0
    new_transfers: list[int] = field(default_factory=list)
    waiting_for_funds: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _PlannedBundle:
    """One payout bundle's contents, before it is signed."""

    payouts: list[tuple[int, str, int]]  # (payout id, destination, amount)
    amounts: dict[str, int]  # destination -> IOTA
    inputs: list[tuple[_Candidate, int]]  # (address, its whole confirmed balance)
    remainders: int  # how many new addresses the change is split over (0: no change)

    @property
    def needed(self) -> int:
        return sum(self.amounts.values())

    @property
    def change(self) -> int:
        return sum(balance for _, balance in self.inputs) - self.needed


class GridWallet:
    def __init__(
        self,
        db: Database,
        node: WalletNode,
        seed: str,
        clock: Clock,
        cpu: Executor,
        *,
        security: int = 2,
        depth: int = 3,
        min_weight_magnitude: int = 9,
        batch_size: int = 10,
        bundles_in_flight: int = 1,
        reattach_seconds: float = 120.0,
        address_pool: int | None = None,
    ) -> None:
        """``batch_size``: payouts per bundle at most; ``bundles_in_flight``: payout
        bundles sent and not yet confirmed at most. ``address_pool``: how many unused
        addresses to keep derived in advance; by default as many as there are active
        consumers (each needs a new one in a slot after its last was spent: in a grid
        whose consumers pay, nearly all of them), 0 for none."""
        self._db = db
        self._node = node
        self._seed = seed
        self._clock = clock
        self._cpu = cpu
        self._security = security
        self._transfers = TransferLifecycle(
            node, min_weight_magnitude=min_weight_magnitude, depth=depth
        )
        self._batch_size = batch_size
        self._bundles_in_flight = bundles_in_flight
        self._reattach_ms = int(reattach_seconds * 1000)
        self._allocation_lock = asyncio.Lock()
        self._payout_lock = asyncio.Lock()
        self._address_pool = address_pool

    def address_at(self, key_index: int) -> str:
        """The wallet's address at ``key_index`` (CPU work: Kerl)."""
        return generate_address(self._seed, key_index, self._security)

    async def treasury_address(self) -> str:
        """The address at key index 0, recorded on first use."""
        existing = await self._db.run_read(lambda s: s.get(WalletAddress, 0))
        if existing is not None:
            return existing.address
        async with self._allocation_lock:
            return await self._record_treasury()

    async def _record_treasury(self) -> str:
        """Record key index 0 unless it is; call with the allocation lock held."""
        loop = asyncio.get_running_loop()
        address = await loop.run_in_executor(self._cpu, self.address_at, 0)
        # Another grid process on the same database may have recorded it first.
        with contextlib.suppress(IntegrityError):
            await self._db.run_write(
                lambda s: _record_address(s, 0, address, "treasury", None, self._clock())
            )
        return address

    async def payment_address(self, registration_id: str) -> str:
        """The consumer's current payment address (a new one once the last was spent)."""
        current = await self._db.run_read(
            functools.partial(_open_consumer_address, registration_id=registration_id)
        )
        if current is not None:
            return current
        return await self._allocate("consumer", registration_id)

    async def payment_addresses(self, registration_ids: Sequence[str]) -> list[str]:
        """:meth:`payment_address` for many consumers: one read for those that have an
        open address (the usual case every slot), and the others' new addresses derived
        in one batch and recorded in one write (a slot's first bills, for every consumer)."""
        ids = list(registration_ids)
        found = await self._db.run_read(
            functools.partial(_open_consumer_addresses, registration_ids=ids)
        )
        missing = list(dict.fromkeys(i for i in ids if i not in found))
        if missing:
            found.update(await self._allocate_consumers(missing))
        return [found[registration_id] for registration_id in ids]

    async def _allocate_consumers(self, registration_ids: list[str]) -> dict[str, str]:
        """Fresh addresses for consumers: from the pool in one write, and those the pool
        cannot cover derived at consecutive key indexes, under the allocation lock; each
        consumer still gets at most one (see :func:`_record_address`)."""
        async with self._allocation_lock:
            if await self._db.run_read(lambda s: s.get(WalletAddress, 0)) is None:
                await self._record_treasury()
            loop = asyncio.get_running_loop()
            while True:
                try:
                    found = await self._db.run_write(
                        functools.partial(
                            _assign_reserved, registration_ids=registration_ids, now=self._clock()
                        )
                    )
                except AddressInUseError:
                    # Another grid process took some of these pool addresses: look again.
                    _LOGGER.debug("pool addresses were taken meanwhile; assigning again")
                    continue
                missing = [i for i in registration_ids if i not in found]
                if not missing:
                    return found
                first = await self._db.run_read(_next_key_index)
                addresses = await loop.run_in_executor(
                    self._cpu,
                    functools.partial(
                        generate_addresses, self._seed, first, len(missing), self._security
                    ),
                )
                try:
                    await self._db.run_write(
                        functools.partial(
                            _record_consumer_addresses,
                            allocations=list(
                                zip(
                                    missing,
                                    range(first, first + len(missing)),
                                    addresses,
                                    strict=True,
                                )
                            ),
                            now=self._clock(),
                        )
                    )
                except (AddressInUseError, IntegrityError):
                    # Another grid process took an index or gave one of them an address:
                    # nothing of this batch was recorded; look again.
                    _LOGGER.debug(
                        "key indexes from %d were taken meanwhile; allocating again", first
                    )
                    continue
                found.update(zip(missing, addresses, strict=True))
                return found

    async def refill_address_pool(self) -> int:
        """Derive and reserve addresses until the pool holds its target (see ``__init__``);
        returns how many were added. Meant for idle time: it derives a few hundred at a
        time and takes the allocation lock only to record them."""
        loop = asyncio.get_running_loop()
        added = 0
        while True:
            target, pooled = await self._db.run_read(
                functools.partial(_pool_state, target=self._address_pool)
            )
            count = min(target - pooled, _REFILL_CHUNK)
            if count <= 0:
                return added
            first = await self._db.run_read(_next_key_index)
            addresses = await loop.run_in_executor(
                self._cpu,
                functools.partial(generate_addresses, self._seed, first, count, self._security),
            )
            async with self._allocation_lock:
                try:
                    await self._db.run_write(
                        functools.partial(
                            _record_reserved, first=first, addresses=addresses, now=self._clock()
                        )
                    )
                except (AddressInUseError, IntegrityError):
                    _LOGGER.debug("key indexes from %d were taken meanwhile; deriving again", first)
                    continue
            added += count

    async def _allocate(self, purpose: str, registration_id: str | None) -> str:
        """A fresh key index for ``purpose``; one at a time so no index is handed out twice."""
        async with self._allocation_lock:
            if await self._db.run_read(lambda s: s.get(WalletAddress, 0)) is None:
                await self._record_treasury()
            loop = asyncio.get_running_loop()
            while True:
                if purpose == "consumer":
                    existing = await self._db.run_read(
                        functools.partial(_open_consumer_address, registration_id=registration_id)
                    )
                    if existing is not None:
                        return existing
                index = await self._db.run_read(_next_key_index)
                address = await loop.run_in_executor(self._cpu, self.address_at, index)
                try:
                    await self._db.run_write(
                        functools.partial(
                            _record_address,
                            key_index=index,
                            address=address,
                            purpose=purpose,
                            registration_id=registration_id,
                            now=self._clock(),
                            fresh=True,
                        )
                    )
                except (AddressInUseError, IntegrityError):
                    # Another grid process on the same database took this index: the
                    # lock only covers this process, the primary key covers them all.
                    _LOGGER.debug("key index %d was taken meanwhile; allocating the next", index)
                    continue
                return address

    async def confirmed_balance(self) -> int:
        """Confirmed IOTA on the wallet's unspent addresses."""
        candidates = await self._db.run_read(_unspent)
        if not candidates:
            return 0
        balances = await self._node.get_balances([c.address for c in candidates])
        return sum(balances.balances)

    async def pay_out(self) -> PayoutRound:
        """Advance the bundles in flight, then start new ones for the pending payouts
        while fewer than ``bundles_in_flight`` are."""
        async with self._payout_lock:
            result = PayoutRound()
            in_flight = await self._db.run_read(_in_flight)
            await _each(in_flight, lambda transfer: self._advance(transfer, result))
            still = await self._db.run_read(_in_flight_count)
            if still < self._bundles_in_flight:
                await self._start_transfers(self._bundles_in_flight - still, still, result)
            return result

    async def _advance(self, transfer: WalletTransfer, result: PayoutRound) -> None:
        trytes: list[str] = json.loads(transfer.trytes_json)
        try:
            state = await self._transfers.state(transfer.bundle_hash, trytes)
        except NodeError as err:
            result.errors.append(str(err))
            return
        if state is TransferState.CONFIRMED:
            await self._db.run_write(lambda s: _confirm(s, transfer.id, self._clock()))
            result.confirmed += 1
            _LOGGER.info(
                "payout bundle %s confirmed",
                transfer.bundle_hash,
                extra={"transfer_id": transfer.id, "bundle": transfer.bundle_hash},
            )
            return
        if state is TransferState.CONFLICTING:
            message = "its inputs were spent by another bundle: it can never confirm"
            await self._db.run_write(
                lambda s: _send_failed(s, transfer.id, message, True, self._clock())
            )
            result.errors.append(message)
            _LOGGER.error("payout bundle %s failed: %s", transfer.bundle_hash, message)
            return
        sent_at = transfer.sent_at
        if sent_at is not None and self._clock() - sent_at < self._reattach_ms:
            return
        await self._send(transfer, result)

    async def _send(self, transfer: WalletTransfer, result: PayoutRound) -> None:
        """Attach the recorded trytes (first send, re-send after a restart, reattach)."""
        trytes: list[str] = json.loads(transfer.trytes_json)
        try:
            attached = await self._transfers.broadcast(trytes)
        except (IriApiError, TransferNotSentError) as err:
            if isinstance(err, TransferNotSentError) and not isinstance(err.error, IriApiError):
                # Unreachable node or no tips: nothing was stored; try again next round.
                result.errors.append(str(err))
                _LOGGER.warning("payout bundle %s not sent yet: %s", transfer.bundle_hash, err)
                return
            failed = transfer.attempts + 1 >= MAX_SEND_ATTEMPTS
            message = str(err)
            await self._db.run_write(
                lambda s: _send_failed(s, transfer.id, message, failed, self._clock())
            )
            result.errors.append(message)
            _LOGGER.error(
                "the node refused payout bundle %s%s: %s",
                transfer.bundle_hash,
                "; giving up" if failed else "",
                err,
            )
            return
        except NodeError as err:
            result.errors.append(str(err))
            _LOGGER.warning("payout bundle %s not sent yet: %s", transfer.bundle_hash, err)
            return
        tail = Transaction.from_trytes(attached[0]).hash
        await self._db.run_write(lambda s: _sent(s, transfer.id, tail, self._clock()))
        result.sent += 1
        _LOGGER.info(
            "payout bundle %s attached (tail %s)",
            transfer.bundle_hash,
            tail,
            extra={"transfer_id": transfer.id, "bundle": transfer.bundle_hash},
        )

    async def _start_transfers(self, count: int, in_flight: int, result: PayoutRound) -> None:
        """Record up to ``count`` new bundles for the oldest pending payouts, each on its
        own confirmed inputs, then send them (``in_flight``: bundles not yet confirmed,
        whose change the wallet will have once they are)."""
        payouts = await self._db.run_read(
            functools.partial(_pending_payouts, limit=count * self._batch_size)
        )
        if not payouts:
            return
        await self.treasury_address()
        candidates = await self._db.run_read(_unspent)
        try:
            balances = (await self._node.get_balances([c.address for c in candidates])).balances
        except NodeError as err:
            result.errors.append(str(err))
            return
        plan = plan_bundles(
            payouts,
            [(c, b) for c, b in zip(candidates, balances, strict=True) if b > 0],
            count=count,
            batch_size=self._batch_size,
            security=self._security,
            funded_target=self._bundles_in_flight,
            awaiting=in_flight,
        )
        if plan.shortfall is not None:
            if in_flight or plan.bundles:
                # Their change is what the next bundles spend once a milestone confirms it.
                _LOGGER.debug("payouts wait for the change of bundles in flight")
            else:
                result.waiting_for_funds = True
                _LOGGER.warning(
                    "the wallet holds %d confirmed IOTA, %d are needed for %d payouts; waiting",
                    *plan.shortfall,
                )
        if plan.error is not None:
            result.errors.append(plan.error)
            _LOGGER.error("cannot pay out: %s", plan.error)
        recorded: list[int] = []
        for bundle in plan.bundles:
            transfer_id = await self._record(bundle, result)
            if transfer_id is None:
                break
            recorded.append(transfer_id)
        transfers = await self._db.run_read(functools.partial(_transfers, ids=recorded))
        await _each(transfers, lambda transfer: self._send(transfer, result))

    async def _record(self, bundle: _PlannedBundle, result: PayoutRound) -> int | None:
        """Sign ``bundle`` and record it (inputs spent, payouts claimed): its id, or
        ``None`` when it cannot be built."""
        remainders = [await self._allocate("treasury", None) for _ in range(bundle.remainders)]
        loop = asyncio.get_running_loop()
        try:
            bundle_hash, trytes = await loop.run_in_executor(
                self._cpu, self._build, bundle.amounts, bundle.inputs, remainders, bundle.change
            )
        except ProtocolError as err:
            result.errors.append(str(err))
            _LOGGER.error("cannot build the payout bundle: %s", err)
            return None
        payout_ids = [payout_id for payout_id, _, _ in bundle.payouts]
        spent = [candidate.key_index for candidate, _ in bundle.inputs]
        needed = bundle.needed
        transfer_id = await self._db.run_write(
            lambda s: _record_transfer(
                s, bundle_hash, trytes, needed, payout_ids, spent, self._clock()
            )
        )
        result.new_transfers.append(transfer_id)
        _LOGGER.info(
            "payout bundle %s recorded: %d IOTA to %d addresses for %d payouts",
            bundle_hash,
            needed,
            len(bundle.amounts),
            len(bundle.payouts),
            extra={"transfer_id": transfer_id, "bundle": bundle_hash},
        )
        return transfer_id

    def _build(
        self,
        amounts: dict[str, int],
        inputs: list[tuple[_Candidate, int]],
        remainders: list[str],
        change: int,
    ) -> tuple[str, list[str]]:
        """Sign a bundle paying ``amounts`` from ``inputs``; the ``change`` is split
        evenly over the ``remainders`` (the last one takes what does not divide)."""
        builder = BundleBuilder()
        for destination, amount in sorted(amounts.items()):
            builder.add_transfer(destination, amount, tag=PAYOUT_TAG)
        for candidate, balance in inputs:
            builder.add_input(candidate.address, balance, candidate.key_index, self._security)
        if remainders:
            share = change // len(remainders)
            for address in remainders[:-1]:
                builder.add_transfer(address, share, tag=PAYOUT_TAG)
            builder.add_remainder(remainders[-1], tag=PAYOUT_TAG)
        builder.finalize(self._clock() // 1000)
        builder.sign(self._seed)
        return builder.bundle_hash, builder.to_trytes()


@dataclass
class PayoutPlan:
    """The bundles :func:`plan_bundles` chose, and why it stopped short, if it did."""

    bundles: list[_PlannedBundle] = field(default_factory=list)
    shortfall: tuple[int, int, int] | None = None
    """(confirmed IOTA left, IOTA needed, payouts) when the next bundle lacks funds."""
    error: str | None = None


def plan_bundles(
    payouts: Sequence[tuple[int, str, int]],
    funded: Sequence[tuple[_Candidate, int]],
    *,
    count: int,
    batch_size: int,
    security: int,
    funded_target: int,
    awaiting: int,
) -> PayoutPlan:
    """Up to ``count`` bundles for the oldest ``payouts`` (payout id, destination,
    amount), each of at most ``batch_size`` payouts and :data:`MAX_BUNDLE_TRANSACTIONS`
    transactions, on inputs of its own from ``funded`` (addresses with their confirmed
    balance), largest first so a bundle needs few. A bundle's change is split over as
    many new addresses as the wallet lacks to have ``funded_target`` funded ones
    (counting one for each of the ``awaiting`` bundles not yet confirmed: their change
    will be), so the next round can have that many bundles in flight. Payouts are paid
    oldest first: planning stops at the first group the funds left cannot pay."""
    plan = PayoutPlan()
    available = sorted(funded, key=lambda item: (-item[1], item[0].key_index))
    position = 0
    while position < len(payouts) and len(plan.bundles) < count:
        group = list(payouts[position : position + batch_size])
        while group:
            amounts: dict[str, int] = defaultdict(int)
            for _, destination, amount in group:
                amounts[destination] += amount
            needed = sum(amounts.values())
            inputs: list[tuple[_Candidate, int]] = []
            total = 0
            for candidate, balance in available:
                if total >= needed:
                    break
                inputs.append((candidate, balance))
                total += balance
            if total < needed:
                plan.shortfall = (total, needed, len(group))
                return plan
            fixed = len(amounts) + len(inputs) * security
            if fixed + (total > needed) <= MAX_BUNDLE_TRANSACTIONS:
                break
            group.pop()  # too many transactions: one payout fewer
        else:
            plan.error = (
                f"payout {payouts[position][0]} needs more inputs than a bundle of "
                f"{MAX_BUNDLE_TRANSACTIONS} transactions holds"
            )
            return plan
        used = {candidate.key_index for candidate, _ in inputs}
        available = [item for item in available if item[0].key_index not in used]
        remainders = 0
        if total > needed:
            lacking = funded_target - len(available) - awaiting
            remainders = max(1, min(lacking, MAX_BUNDLE_TRANSACTIONS - fixed, total - needed))
            awaiting += remainders
        plan.bundles.append(_PlannedBundle(group, dict(amounts), inputs, remainders))
        position += len(group)
    return plan


async def _each(
    transfers: Sequence[WalletTransfer],
    step: Callable[[WalletTransfer], Awaitable[None]],
) -> None:
    """``step`` for every transfer, :data:`_CONCURRENT_TRANSFERS` at a time (their proof
    of work and node calls overlap); the first error is raised once all have ended."""
    gate = asyncio.Semaphore(_CONCURRENT_TRANSFERS)

    async def gated(transfer: WalletTransfer) -> None:
        async with gate:
            await step(transfer)

    outcomes = await asyncio.gather(*map(gated, transfers), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


class AddressInUseError(RuntimeError):
    """A key index was about to be handed out a second time."""


def _record_address(
    session: Session,
    key_index: int,
    address: str,
    purpose: str,
    registration_id: str | None,
    now: int,
    *,
    fresh: bool = False,
) -> None:
    """Record an address; ``fresh`` ones must be new (an address never serves two uses)."""
    if fresh and purpose == "consumer":
        # Another grid process on the same database may have given this consumer an address
        # since it was looked for: decided inside this write (SQLite writes one at a time;
        # PostgreSQL waits here on the registration's row), so a consumer never gets two.
        session.get(Registration, registration_id, with_for_update=True)
        if _open_consumer_address(session, registration_id) is not None:
            raise AddressInUseError(f"{registration_id} was given an address meanwhile")
    if session.get(WalletAddress, key_index) is not None:
        if fresh:
            raise AddressInUseError(f"key index {key_index} is already in use")
        return
    session.add(
        WalletAddress(
            key_index=key_index,
            address=address,
            purpose=purpose,
            registration_id=registration_id,
            spent=False,
            created_at=now,
        )
    )


def _record_consumer_addresses(
    session: Session, allocations: list[tuple[str, int, str]], now: int
) -> None:
    """Record fresh consumer addresses ``(registration id, key index, address)``, all
    of them or (raising) none, with a few set-based statements: the guarantees of
    :func:`_record_address` (one current address per consumer, no key index twice)."""
    registration_ids = [registration_id for registration_id, _, _ in allocations]
    _lock_registrations(session, registration_ids)
    if _open_consumer_addresses(session, registration_ids):
        raise AddressInUseError("a consumer was given an address meanwhile")
    _check_unused(session, [key_index for _, key_index, _ in allocations])
    session.execute(
        insert(WalletAddress),
        [
            {
                "key_index": key_index,
                "address": address,
                "purpose": "consumer",
                "registration_id": registration_id,
                "spent": False,
                "created_at": now,
            }
            for registration_id, key_index, address in allocations
        ],
    )


def _lock_registrations(session: Session, registration_ids: Sequence[str]) -> None:
    """Lock the consumers' registration rows, in one order (PostgreSQL; SQLite writes one
    at a time anyway): two processes allocating for overlapping consumers then wait for
    each other before either inserts anything (locking while inserting could deadlock)."""
    ordered = sorted(set(registration_ids))
    for first in range(0, len(ordered), _IN_CHUNK):
        session.execute(
            select(Registration.registration_id)
            .where(Registration.registration_id.in_(ordered[first : first + _IN_CHUNK]))
            .order_by(Registration.registration_id)
            .with_for_update()
        ).all()


def _check_unused(session: Session, key_indexes: Sequence[int]) -> None:
    """Raise :class:`AddressInUseError` if any of ``key_indexes`` is recorded already."""
    for first in range(0, len(key_indexes), _IN_CHUNK):
        taken = session.scalars(
            select(WalletAddress.key_index)
            .where(WalletAddress.key_index.in_(key_indexes[first : first + _IN_CHUNK]))
            .limit(1)
        ).first()
        if taken is not None:
            raise AddressInUseError(f"key index {taken} is already in use")


def _next_key_index(session: Session) -> int:
    """The first key index after every recorded one (pool addresses included)."""
    return int(session.scalar(select(func.max(WalletAddress.key_index))) or 0) + 1


def _pool_state(session: Session, target: int | None) -> tuple[int, int]:
    """The pool's target size (by default: the active consumers) and its size."""
    if target is None:
        target = int(
            session.scalar(
                select(func.count()).where(
                    Registration.item_type == "consumer", Registration.active.is_(True)
                )
            )
            or 0
        )
    pooled = int(session.scalar(select(func.count()).where(WalletAddress.purpose == RESERVED)) or 0)
    return target, pooled


def _record_reserved(session: Session, first: int, addresses: Sequence[str], now: int) -> None:
    """Reserve key indexes ``first ..`` with their derived addresses for the pool."""
    indexes = list(range(first, first + len(addresses)))
    _check_unused(session, indexes)
    session.execute(
        insert(WalletAddress),
        [
            {
                "key_index": key_index,
                "address": address,
                "purpose": RESERVED,
                "registration_id": None,
                "spent": False,
                "created_at": now,
            }
            for key_index, address in zip(indexes, addresses, strict=True)
        ],
    )


def _assign_reserved(session: Session, registration_ids: Sequence[str], now: int) -> dict[str, str]:
    """Every consumer's open address: those without one take pool addresses, oldest
    first, in this write (consumers' rows locked first, as
    :func:`_record_consumer_addresses` does). Returns only the consumers that have one."""
    _lock_registrations(session, registration_ids)
    found = _open_consumer_addresses(session, registration_ids)
    missing = list(dict.fromkeys(i for i in registration_ids if i not in found))
    if not missing:
        return found
    pool = session.execute(
        select(WalletAddress.key_index, WalletAddress.address)
        .where(WalletAddress.purpose == RESERVED)
        .order_by(WalletAddress.key_index)
        .limit(len(missing))
        .with_for_update(skip_locked=True)
    ).all()
    assigned = list(zip(missing, pool, strict=False))
    for first in range(0, len(assigned), _IN_CHUNK):
        chunk = assigned[first : first + _IN_CHUNK]
        owner = case(
            {key_index: registration_id for registration_id, (key_index, _) in chunk},
            value=WalletAddress.key_index,
        )
        updated = session.execute(
            update(WalletAddress)
            .where(
                WalletAddress.key_index.in_([key_index for _, (key_index, _) in chunk]),
                WalletAddress.purpose == RESERVED,
            )
            .values(purpose="consumer", registration_id=owner, created_at=now)
            .execution_options(synchronize_session=False)
        )
        if updated.rowcount != len(chunk):  # another process took some since they were read
            raise AddressInUseError("pool addresses were taken meanwhile")
    found.update((registration_id, str(address)) for registration_id, (_, address) in assigned)
    return found


def _open_consumer_addresses(session: Session, registration_ids: Sequence[str]) -> dict[str, str]:
    """:func:`_open_consumer_address` of each consumer that has one, in chunks of ids."""
    found: dict[str, str] = {}
    for first in range(0, len(registration_ids), _IN_CHUNK):
        rows = session.execute(
            select(WalletAddress.registration_id, WalletAddress.address)
            .where(
                WalletAddress.registration_id.in_(registration_ids[first : first + _IN_CHUNK]),
                WalletAddress.purpose == "consumer",
                WalletAddress.spent.is_(False),
            )
            .order_by(WalletAddress.key_index)
        ).all()
        found.update((str(registration_id), str(address)) for registration_id, address in rows)
    return found  # the newest wins: rows come oldest first


def _open_consumer_address(session: Session, registration_id: str | None) -> str | None:
    """The consumer's newest unspent payment address, if it has one."""
    return session.scalars(
        select(WalletAddress.address)
        .where(
            WalletAddress.registration_id == registration_id,
            WalletAddress.purpose == "consumer",
            WalletAddress.spent.is_(False),
        )
        .order_by(WalletAddress.key_index.desc())
        .limit(1)
    ).first()


def _unspent(session: Session) -> list[_Candidate]:
    """Unspent addresses that may hold funds: the treasury's, and consumers' that were paid."""
    paid = select(IncomingPayment.address).where(IncomingPayment.status == "confirmed")
    rows = session.execute(
        select(WalletAddress.key_index, WalletAddress.address, WalletAddress.purpose)
        .where(
            WalletAddress.spent.is_(False),
            (WalletAddress.purpose == "treasury") | WalletAddress.address.in_(paid),
        )
        .order_by((WalletAddress.purpose != "treasury"), WalletAddress.key_index)
    ).all()
    return [_Candidate(*row) for row in rows]


_IN_FLIGHT = ("signed", "sent")


def _in_flight(session: Session) -> list[WalletTransfer]:
    """Payout bundles recorded and not yet confirmed (or given up), oldest first."""
    return list(
        session.scalars(
            select(WalletTransfer)
            .where(WalletTransfer.status.in_(_IN_FLIGHT))
            .order_by(WalletTransfer.id)
        )
    )


def _transfers(session: Session, ids: Sequence[int]) -> list[WalletTransfer]:
    return list(
        session.scalars(
            select(WalletTransfer).where(WalletTransfer.id.in_(ids)).order_by(WalletTransfer.id)
        )
    )


def _in_flight_count(session: Session) -> int:
    return int(
        session.scalar(select(func.count()).where(WalletTransfer.status.in_(_IN_FLIGHT))) or 0
    )


def _pending_payouts(session: Session, limit: int) -> list[tuple[int, str, int]]:
    rows = session.execute(
        select(Payout.id, Payout.destination, Payout.amount)
        .where(Payout.status == "pending", Payout.method == "tangle", Payout.amount > 0)
        .order_by(Payout.id)
        .limit(limit)
    ).all()
    return [(row[0], str(row[1]), int(row[2])) for row in rows]


def _record_transfer(
    session: Session,
    bundle_hash: str,
    trytes: list[str],
    total: int,
    payout_ids: list[int],
    spent_indexes: list[int],
    now: int,
) -> int:
    transfer = WalletTransfer(
        bundle_hash=bundle_hash,
        trytes_json=json.dumps(trytes),
        tails_json="[]",
        total=total,
        status="signed",
        attempts=0,
        created_at=now,
    )
    session.add(transfer)
    session.flush()
    claimed = session.execute(
        update(Payout)
        .where(Payout.id.in_(payout_ids), Payout.status == "pending")
        .values(status="in_transfer", transfer_id=transfer.id, updated_at=now)
    ).rowcount
    if claimed != len(payout_ids):
        raise RuntimeError("payouts changed while their bundle was built; not recording it")
    marked = session.execute(
        update(WalletAddress)
        .where(WalletAddress.key_index.in_(spent_indexes), WalletAddress.spent.is_(False))
        .values(spent=True)
    ).rowcount
    if marked != len(spent_indexes):
        raise RuntimeError("an input was spent while the bundle was built; not recording it")
    return transfer.id


def _sent(session: Session, transfer_id: int, tail: str, now: int) -> None:
    transfer = session.get(WalletTransfer, transfer_id)
    if transfer is None:
        return
    tails: list[str] = json.loads(transfer.tails_json)
    if tail not in tails:
        tails.append(tail)
    transfer.tails_json = json.dumps(tails)
    transfer.status = "sent"
    transfer.sent_at = now
    transfer.attempts += 1
    transfer.last_error = None


def _send_failed(session: Session, transfer_id: int, error: str, give_up: bool, now: int) -> None:
    transfer = session.get(WalletTransfer, transfer_id)
    if transfer is None:
        return
    transfer.attempts += 1
    transfer.last_error = error[:2000]
    if give_up:
        transfer.status = "failed"
        session.execute(
            update(Payout)
            .where(Payout.transfer_id == transfer_id)
            .values(status="failed", updated_at=now)
        )


def _confirm(session: Session, transfer_id: int, now: int) -> None:
    session.execute(
        update(WalletTransfer)
        .where(WalletTransfer.id == transfer_id)
        .values(status="confirmed", confirmed_at=now)
    )
    session.execute(
        update(Payout)
        .where(Payout.transfer_id == transfer_id)
        .values(status="confirmed", updated_at=now)
    )


def transfer_summary(session: Session) -> dict[str, Any]:
    """Counts of transfers by status (for health and the portal)."""
    rows = session.execute(
        select(WalletTransfer.status, func.count()).group_by(WalletTransfer.status)
    ).all()
    return {status: int(count) for status, count in rows}
