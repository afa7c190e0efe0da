"""Consumers' bills on their return channels, and the payments that settle them.

Money counts when the ledger says so. What a consumer owes is everything billed,
plus what its final statements charge beyond the bills (the fixed fee, hand-given
credit notes), minus its payments that a milestone confirmed (:func:`accounts`, the
one place "owed" is computed: payment requests, the portal and the tests all use it).
Payments seen on the Tangle but not confirmed yet are *pending*: payment requests
carry them in their optional ``pending`` field so a consumer does not pay twice,
but they never lower what is owed.

Incoming payments are found at the consumers' payment addresses (value
transactions the node stored), recorded once per bundle entry and confirmed
through the node's inclusion states of any of their attachments. A pending
payment the node says can never confirm (``checkConsistency``: it spends beyond
its inputs' confirmed balance, conflicts with a confirmed spend, or is not
solid) is dropped once it stayed so for ``payment_unconfirmable_seconds``, and
any pending payment after ``payment_pending_expiry``; the portal shows dropped
payments with the reason. A dropped payment that the ledger confirms later (a
reattachment) still counts.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from p2p_energy_protocol.errors import IriApiError, NodeError
from p2p_energy_protocol.payloads import PaymentRequest, payload_to_json
from sqlalchemy import and_, bindparam, case, func, or_, select, update

from .db.models import Bill, GridChannel, IncomingPayment, Registration, Statement, WalletAddress
from .node_client import InclusionLookup, TransactionLookup
from .return_channels import Append
from .units import milliwh_to_kwh

if TYPE_CHECKING:
    from collections.abc import Sequence

    from p2p_energy_protocol.transaction import Transaction
    from sqlalchemy import ColumnElement, Select, Table
    from sqlalchemy.orm import Session

    from .clock import Clock
    from .currency import CurrencyRate
    from .db.engine import Database
    from .return_channels import ReturnChannels
    from .wallet import GridWallet

_LOGGER = logging.getLogger(__name__)
_IN_CHUNK = 500
# Dropped payments are still checked for confirmation this long (a consumer's wallet
# may reattach a payment that was only slow); after that only a new attachment counts.
DROPPED_RECHECK_MS = 7 * 86_400_000
# At most this many bundles are asked about with checkConsistency per round.
CONSISTENCY_CHECKS_PER_ROUND = 50


class PaymentNode(TransactionLookup, InclusionLookup, Protocol):
    """What payment matching needs of the node client (``IriClient`` provides it)."""

    async def check_consistency(self, tails: Sequence[str]) -> tuple[bool, str]: ...


@dataclass(frozen=True, slots=True)
class Account:
    """A consumer's money with the grid, in IOTA."""

    billed: int = 0
    charged: int = 0
    """Owed beyond the bills by final statements: fixed fees and hand-given credit notes."""
    paid: int = 0
    """Payments the ledger confirmed."""
    pending: int = 0
    """Payments seen on the Tangle, not confirmed yet (and not dropped)."""
    owed: int = 0
    """``billed + charged - paid``, never below zero: pending payments do not lower it."""
    dropped: int = 0
    """Payments that could not confirm and were dropped."""


def _owed(billed: ColumnElement[Any], paid: ColumnElement[Any]) -> ColumnElement[int]:
    """The definition of "owed": billed (and charged) minus confirmed payments, never
    below zero."""
    return case((billed > paid, billed - paid), else_=0)


def _accounts(registration_ids: Sequence[str] | None) -> Select[Any]:
    """One row per consumer: id, billed, charged, paid, pending, owed, dropped."""
    billed_query = select(
        Bill.registration_id.label("registration_id"), func.sum(Bill.amount).label("amount")
    ).group_by(Bill.registration_id)
    charged_query = select(
        Statement.registration_id.label("registration_id"),
        func.sum(Statement.account_charge).label("amount"),
    ).group_by(Statement.registration_id)
    payments_query = select(
        IncomingPayment.registration_id.label("registration_id"),
        *(
            func.sum(
                case((IncomingPayment.status == status, IncomingPayment.amount), else_=0)
            ).label(status)
            for status in ("confirmed", "pending", "dropped")
        ),
    ).group_by(IncomingPayment.registration_id)
    consumers = Registration.item_type == "consumer"
    if registration_ids is not None:
        billed_query = billed_query.where(Bill.registration_id.in_(registration_ids))
        charged_query = charged_query.where(Statement.registration_id.in_(registration_ids))
        payments_query = payments_query.where(IncomingPayment.registration_id.in_(registration_ids))
        consumers = consumers & Registration.registration_id.in_(registration_ids)
    billed_rows = billed_query.subquery()
    charged_rows = charged_query.subquery()
    payment_rows = payments_query.subquery()
    billed = func.coalesce(billed_rows.c.amount, 0)
    charged = func.coalesce(charged_rows.c.amount, 0)
    paid = func.coalesce(payment_rows.c.confirmed, 0)
    return (
        select(
            Registration.registration_id,
            billed.label("billed"),
            charged.label("charged"),
            paid.label("paid"),
            func.coalesce(payment_rows.c.pending, 0).label("pending"),
            _owed(billed + charged, paid).label("owed"),
            func.coalesce(payment_rows.c.dropped, 0).label("dropped"),
        )
        .select_from(Registration)
        .outerjoin(billed_rows, billed_rows.c.registration_id == Registration.registration_id)
        .outerjoin(charged_rows, charged_rows.c.registration_id == Registration.registration_id)
        .outerjoin(payment_rows, payment_rows.c.registration_id == Registration.registration_id)
        .where(consumers)
    )


def _account(row: Any) -> Account:
    return Account(
        billed=int(row.billed or 0),
        charged=int(row.charged or 0),
        paid=int(row.paid or 0),
        pending=int(row.pending or 0),
        owed=int(row.owed or 0),
        dropped=int(row.dropped or 0),
    )


def accounts(session: Session, registration_ids: Sequence[str]) -> dict[str, Account]:
    """Each consumer's account (an empty one for ids with no bills, payments or registration)."""
    result: dict[str, Account] = dict.fromkeys(registration_ids, Account())
    for first in range(0, len(registration_ids), _IN_CHUNK):
        chunk = list(registration_ids[first : first + _IN_CHUNK])
        for row in session.execute(_accounts(chunk)):
            result[str(row.registration_id)] = _account(row)
    return result


def account(session: Session, registration_id: str) -> Account:
    """One consumer's account."""
    return accounts(session, [registration_id])[registration_id]


def accounts_total(session: Session) -> Account:
    """Every consumer's account summed (``owed`` sums what each consumer owes, so one
    consumer's overpayment does not hide another's debt)."""
    rows = _accounts(None).subquery()
    total = session.execute(
        select(*(func.coalesce(func.sum(column), 0).label(column.name) for column in rows.c[1:]))
    ).one()
    return _account(total)


@dataclass(frozen=True, slots=True)
class _Due:
    registration_id: str
    channel_id: int
    usage_milliwh: int
    last_bill_id: int


class PaymentRequests:
    """Publishes payment requests for new bills on the consumers' return channels."""

    def __init__(
        self,
        db: Database,
        return_channels: ReturnChannels,
        wallet: GridWallet,
        clock: Clock,
        *,
        rate: CurrencyRate | None = None,
    ) -> None:
        self._db = db
        self._return_channels = return_channels
        self._wallet = wallet
        self._clock = clock
        # The operator's rate rides along so households can show the bill in a currency.
        self._rate = (
            {}
            if rate is None
            else {
                "currency": rate.currency,
                "currency_per_million_iota": rate.to_json()["currencyPerMillionIota"],
            }
        )

    async def publish_due(self, limit: int = 200) -> int:
        """Create a payment request for each consumer with unrequested bills.

        All requests of the call are created in one batched MAM creation and stored
        in one transaction together with the marks on the bills they cover.
        """
        due = await self._db.run_read(lambda session: _due(session, limit))
        if not due:
            return 0
        addresses = await self._wallet.payment_addresses([item.registration_id for item in due])
        balances = await self._db.run_read(
            functools.partial(accounts, registration_ids=[item.registration_id for item in due])
        )
        requests: dict[int, tuple[_Due, PaymentRequest]] = {}
        appends: list[Append] = []
        for item, address in zip(due, addresses, strict=True):
            balance = balances[item.registration_id]
            request = PaymentRequest(
                owed=balance.owed,
                usage=milliwh_to_kwh(item.usage_milliwh),
                payment_id_or_address=address,
                pending=balance.pending,
                **self._rate,
            )
            requests[item.channel_id] = (item, request)
            appends.append(Append(item.channel_id, payload_to_json(request), "payment-request"))

        def mark(session: Session, stored: list[Append]) -> None:
            if not stored:
                return
            now = self._clock()
            session.execute(
                _MARK_REQUESTED,
                [
                    {
                        "b_registration": requests[append.channel_id][0].registration_id,
                        "b_last_bill": requests[append.channel_id][0].last_bill_id,
                        "b_now": now,
                    }
                    for append in stored
                ],
            )

        positions = await self._return_channels.append_many(appends, also=mark)
        created = 0
        for append, position in zip(appends, positions, strict=True):
            if position is None:
                continue
            item, request = requests[append.channel_id]
            created += 1
            _LOGGER.info(
                "payment request for %s: owes %d IOTA, %d pending (%.6f kWh new)",
                item.registration_id,
                request.owed,
                request.pending,
                request.usage,
                extra={"registration_id": item.registration_id, "owed": request.owed},
            )
        return created


_BILLS = cast("Table", Bill.__table__)
_MARK_REQUESTED = (
    update(_BILLS)
    .where(
        _BILLS.c.registration_id == bindparam("b_registration"),
        _BILLS.c.requested_at.is_(None),
        _BILLS.c.id <= bindparam("b_last_bill"),
    )
    .values(requested_at=bindparam("b_now"))
)
"""A consumer's bills up to the last one a payment request covers, marked requested
(one executemany for a whole batch of requests)."""


def _due(session: Session, limit: int) -> list[_Due]:
    rows = session.execute(
        select(
            Bill.registration_id,
            func.max(GridChannel.id),
            func.sum(Bill.usage_milliwh),
            func.max(Bill.id),
        )
        .join(
            GridChannel,
            and_(GridChannel.registration_id == Bill.registration_id, GridChannel.active),
        )
        .where(Bill.requested_at.is_(None))
        .group_by(Bill.registration_id)
        .order_by(func.min(Bill.id))
        .limit(limit)
    ).all()
    return [_Due(str(r[0]), int(r[1]), int(r[2] or 0), int(r[3])) for r in rows]


class PaymentMonitor:
    """Finds consumer payments at their payment addresses, confirms or drops them."""

    SPENT_ADDRESSES_INTERVAL_MS = 300_000
    """Spent payment addresses are looked at this often, the unspent ones every scan. A
    consumer pays the address of its newest payment request, which is unspent; only a
    payment made on an older request reaches an address spent since."""

    def __init__(
        self,
        db: Database,
        node: PaymentNode,
        clock: Clock,
        *,
        unconfirmable_seconds: float,
        pending_expiry_seconds: float,
    ) -> None:
        self._db = db
        self._node = node
        self._clock = clock
        self._unconfirmable_ms = int(unconfirmable_seconds * 1000)
        self._expiry_ms = int(pending_expiry_seconds * 1000)
        self._seen: set[str] | None = None
        self._spent_scanned_at: int | None = None
        """When the spent addresses were last asked about (None: not since the start)."""

    async def scan(self) -> dict[str, int]:
        """Record new payments, confirm pending ones, drop those that cannot confirm."""
        if self._seen is None:
            self._seen = await self._db.run_read(_known_hashes)
        now = self._clock()
        with_spent = (
            self._spent_scanned_at is None
            or now - self._spent_scanned_at >= self.SPENT_ADDRESSES_INTERVAL_MS
        )
        addresses = await self._db.run_read(
            functools.partial(_consumer_addresses, with_spent=with_spent)
        )
        found = 0
        if addresses:
            try:
                hashes = await self._node.find_transactions(addresses=list(addresses))
                new = [h for h in hashes if h not in self._seen]
                transactions = await self._node.get_transactions(new) if new else []
            except NodeError as err:
                _LOGGER.warning("cannot look for payments, the node is unavailable: %s", err)
                return {"found": 0, "confirmed": 0, "dropped": 0}
            payments = [tx for tx in transactions if tx.value > 0 and tx.address in addresses]
            if payments:
                found = await self._db.run_write(
                    lambda session: _record_payments(session, payments, addresses, self._clock())
                )
            self._seen.update(tx.hash for tx in transactions)
        if with_spent:
            self._spent_scanned_at = now
        try:
            confirmed = await self._confirm()
            dropped = await self._drop_unconfirmable()
        except NodeError as err:
            _LOGGER.warning("cannot check payment confirmations: %s", err)
            return {"found": found, "confirmed": 0, "dropped": 0}
        return {"found": found, "confirmed": confirmed, "dropped": dropped}

    async def _confirm(self) -> int:
        """Mark payments confirmed once a milestone confirmed any attachment of them."""
        now = self._clock()
        unconfirmed = await self._db.run_read(
            functools.partial(_unconfirmed, dropped_since=now - DROPPED_RECHECK_MS)
        )
        if not unconfirmed:
            return 0
        hashes = [h for payment in unconfirmed for h in payment.hashes]
        states = dict(zip(hashes, await self._node.get_inclusion_states(hashes), strict=True))
        done = [payment for payment in unconfirmed if any(states[h] for h in payment.hashes)]
        if not done:
            return 0
        await self._db.run_write(
            lambda session: session.execute(
                update(IncomingPayment)
                .where(IncomingPayment.id.in_([payment.id for payment in done]))
                .values(status="confirmed", confirmed_at=self._clock())
            )
        )
        for payment in done:
            if payment.status == "dropped":
                _LOGGER.warning(
                    "payment of %d IOTA from %s (bundle %s) was dropped but confirmed after all",
                    payment.amount,
                    payment.registration_id,
                    payment.bundle,
                )
        _LOGGER.info("%d consumer payments confirmed", len(done))
        return len(done)

    async def _drop_unconfirmable(self) -> int:
        """Ask the node whether pending payments can still confirm; drop those that stayed
        unable to for ``unconfirmable_seconds``, and any pending past the expiry."""
        now = self._clock()
        pending = await self._db.run_read(
            functools.partial(_open_payments, condition=IncomingPayment.status == "pending")
        )
        if not pending:
            return 0
        # The least recently checked bundles first, a bounded number per round.
        last_checked: dict[str, int] = {}
        for payment in pending:
            last_checked[payment.bundle] = min(
                last_checked.get(payment.bundle, now), payment.checked_at or 0
            )
        bundles = sorted(last_checked, key=last_checked.__getitem__)
        problems = await self._bundle_problems(bundles[:CONSISTENCY_CHECKS_PER_ROUND])
        checks: list[_Check] = []
        for payment in pending:
            if payment.bundle not in problems:
                continue
            problem = problems[payment.bundle]
            since = payment.unconfirmable_since if problem is not None else None
            stuck = since is not None and now - since >= self._unconfirmable_ms
            expired = now - payment.first_seen_at >= self._expiry_ms
            if problem is None and expired:
                problem = f"not confirmed within {self._expiry_ms // 1000} seconds"
            checks.append(_Check(payment, problem, drop=stuck or expired))
        await self._db.run_write(functools.partial(_record_checks, checks=checks, now=now))
        dropped = [check for check in checks if check.drop]
        for check in dropped:
            payment = check.payment
            _LOGGER.warning(
                "payment of %d IOTA from %s (bundle %s) dropped: it cannot confirm (%s)",
                payment.amount,
                payment.registration_id,
                payment.bundle,
                check.problem,
                extra={"registration_id": payment.registration_id, "bundle": payment.bundle},
            )
        return len(dropped)

    async def _bundle_problems(self, bundles: Sequence[str]) -> dict[str, str | None]:
        """Why each bundle cannot confirm as the node sees it now (None: it still can)."""
        if not bundles:
            return {}
        hashes = await self._node.find_transactions(bundles=list(bundles))
        tails: dict[str, list[str]] = {bundle: [] for bundle in bundles}
        for tx in await self._node.get_transactions(hashes):
            if tx.bundle in tails and tx.is_tail:
                tails[tx.bundle].append(tx.hash)
        problems: dict[str, str | None] = {}
        for bundle, bundle_tails in tails.items():
            problem: str | None = "the node holds no tail transaction of its bundle"
            for tail in bundle_tails:
                try:
                    consistent, info = await self._node.check_consistency([tail])
                except IriApiError as err:
                    problem = f"the node refuses to check it: {err}"
                    continue
                if consistent:
                    problem = None
                    break
                problem = info or "the node says it is not consistent"
            problems[bundle] = problem
        return problems


@dataclass(frozen=True, slots=True)
class _OpenPayment:
    id: int
    registration_id: str
    bundle: str
    amount: int
    status: str
    hashes: list[str]
    first_seen_at: int
    checked_at: int | None
    unconfirmable_since: int | None


@dataclass(frozen=True, slots=True)
class _Check:
    payment: _OpenPayment
    problem: str | None
    drop: bool


def _open_payments(session: Session, condition: ColumnElement[bool]) -> list[_OpenPayment]:
    rows = session.scalars(select(IncomingPayment).where(condition).order_by(IncomingPayment.id))
    return [
        _OpenPayment(
            id=row.id,
            registration_id=row.registration_id,
            bundle=row.bundle_hash,
            amount=row.amount,
            status=row.status,
            hashes=list(json.loads(row.transaction_hashes_json)),
            first_seen_at=row.first_seen_at,
            checked_at=row.checked_at,
            unconfirmable_since=row.unconfirmable_since,
        )
        for row in rows
    ]


def _unconfirmed(session: Session, dropped_since: int) -> list[_OpenPayment]:
    """Pending payments, and those dropped recently enough to be checked again."""
    return _open_payments(
        session,
        or_(
            IncomingPayment.status == "pending",
            and_(IncomingPayment.status == "dropped", IncomingPayment.dropped_at > dropped_since),
        ),
    )


def _record_checks(session: Session, checks: Sequence[_Check], now: int) -> None:
    for check in checks:
        row = session.get(IncomingPayment, check.payment.id)
        if row is None or row.status != "pending":
            continue  # confirmed meanwhile
        row.checked_at = now
        if check.problem is None:
            row.problem = None
            row.unconfirmable_since = None
        else:
            if row.unconfirmable_since is None:
                row.unconfirmable_since = now
            row.problem = check.problem[:500]
        if check.drop:
            row.status = "dropped"
            row.dropped_at = now


def _known_hashes(session: Session) -> set[str]:
    seen: set[str] = set()
    for (hashes,) in session.execute(select(IncomingPayment.transaction_hashes_json)):
        seen.update(json.loads(hashes))
    return seen


def _consumer_addresses(session: Session, *, with_spent: bool = True) -> dict[str, str]:
    """Consumers' payment addresses and whose they are: the unspent ones, or all.

    The payouts spend addresses that were paid, and their consumers get new ones, so
    spent addresses pile up with the grid's age (up to one per paying consumer per
    slot): asking about all of them every scan would cost more every slot."""
    query = select(WalletAddress.address, WalletAddress.registration_id).where(
        WalletAddress.purpose == "consumer", WalletAddress.registration_id.is_not(None)
    )
    if not with_spent:
        query = query.where(WalletAddress.spent.is_(False))
    rows = session.execute(query).all()
    return {str(address): str(registration_id) for address, registration_id in rows}


def _record_payments(
    session: Session, transactions: list[Transaction], addresses: dict[str, str], now: int
) -> int:
    created = 0
    for tx in transactions:
        existing = session.scalars(
            select(IncomingPayment).where(
                IncomingPayment.bundle_hash == tx.bundle,
                IncomingPayment.current_index == tx.current_index,
            )
        ).first()
        if existing is not None:
            # A reattachment of a known payment: remember its hash for confirmation.
            hashes: list[str] = json.loads(existing.transaction_hashes_json)
            if tx.hash not in hashes:
                existing.transaction_hashes_json = json.dumps([*hashes, tx.hash])
            continue
        session.add(
            IncomingPayment(
                registration_id=addresses[tx.address],
                address=tx.address,
                bundle_hash=tx.bundle,
                current_index=tx.current_index,
                transaction_hashes_json=json.dumps([tx.hash]),
                amount=tx.value,
                status="pending",
                first_seen_at=now,
            )
        )
        session.flush()
        created += 1
        _LOGGER.info(
            "payment of %d IOTA from %s seen (bundle %s)",
            tx.value,
            addresses[tx.address],
            tx.bundle,
            extra={"registration_id": addresses[tx.address], "bundle": tx.bundle},
        )
    return created
