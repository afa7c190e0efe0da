"""Consumers' bills on their return channels, and the payments that settle them.

After a settlement, every consumer with new bills gets a ``payment-request`` on
its return channel: ``owed`` is everything billed minus what was paid, where
payments still awaiting confirmation count as paid so the consumer is never
asked twice for the same IOTA ("owed excludes pending payments"); a pending
payment that does not confirm within the expiry stops counting.

Incoming payments are found at the consumers' payment addresses (value
transactions of valid bundles the node accepted), recorded once per bundle entry
and confirmed through the node's inclusion states of any of their attachments.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from p2p_energy_protocol.errors import NodeError
from p2p_energy_protocol.payloads import PaymentRequest, payload_to_json
from sqlalchemy import and_, func, select, update

from .db.models import Bill, GridChannel, IncomingPayment, WalletAddress, WalletTransfer
from .node_client import InclusionLookup, TransactionLookup
from .return_channels import Append
from .units import milliwh_to_kwh

if TYPE_CHECKING:
    from collections.abc import Sequence

    from p2p_energy_protocol.transaction import Transaction
    from sqlalchemy import ColumnElement
    from sqlalchemy.orm import Session

    from .clock import Clock
    from .db.engine import Database
    from .return_channels import ReturnChannels
    from .wallet import GridWallet

_LOGGER = logging.getLogger(__name__)
_IN_CHUNK = 500


class PaymentNode(TransactionLookup, InclusionLookup, Protocol):
    """What payment matching needs of the node client (``IriClient`` provides it)."""


def _counted(now: int, expiry_ms: int) -> ColumnElement[bool]:
    """Payments that count as paid: confirmed, or pending and not yet expired."""
    return (IncomingPayment.status == "confirmed") | and_(
        IncomingPayment.status == "pending",
        IncomingPayment.first_seen_at > now - expiry_ms,
    )


def counted_payments(session: Session, registration_id: str, now: int, expiry_ms: int) -> int:
    """IOTA a consumer has paid: confirmed plus recent pending payments."""
    total = session.scalar(
        select(func.coalesce(func.sum(IncomingPayment.amount), 0)).where(
            IncomingPayment.registration_id == registration_id, _counted(now, expiry_ms)
        )
    )
    return int(total or 0)


def owed(session: Session, registration_id: str, now: int, expiry_ms: int) -> int:
    billed = session.scalar(
        select(func.coalesce(func.sum(Bill.amount), 0)).where(
            Bill.registration_id == registration_id
        )
    )
    return max(0, int(billed or 0) - counted_payments(session, registration_id, now, expiry_ms))


def owed_many(
    session: Session, registration_ids: Sequence[str], now: int, expiry_ms: int
) -> dict[str, int]:
    """:func:`owed` for many consumers in two grouped queries per chunk of ids."""
    result: dict[str, int] = {}
    for first in range(0, len(registration_ids), _IN_CHUNK):
        chunk = list(registration_ids[first : first + _IN_CHUNK])
        billed: dict[str, int] = {
            str(registration_id): int(amount or 0)
            for registration_id, amount in session.execute(
                select(Bill.registration_id, func.coalesce(func.sum(Bill.amount), 0))
                .where(Bill.registration_id.in_(chunk))
                .group_by(Bill.registration_id)
            ).all()
        }
        paid: dict[str, int] = {
            str(registration_id): int(amount or 0)
            for registration_id, amount in session.execute(
                select(
                    IncomingPayment.registration_id,
                    func.coalesce(func.sum(IncomingPayment.amount), 0),
                )
                .where(IncomingPayment.registration_id.in_(chunk), _counted(now, expiry_ms))
                .group_by(IncomingPayment.registration_id)
            ).all()
        }
        for registration_id in chunk:
            total = billed.get(registration_id, 0) - paid.get(registration_id, 0)
            result[registration_id] = max(0, total)
    return result


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
        pending_expiry_seconds: float,
    ) -> None:
        self._db = db
        self._return_channels = return_channels
        self._wallet = wallet
        self._clock = clock
        self._expiry_ms = int(pending_expiry_seconds * 1000)

    async def publish_due(self, limit: int = 200) -> int:
        """Create a payment request for each consumer with unrequested bills.

        All requests of the call are created in one batched MAM creation and stored
        in one transaction together with the marks on the bills they cover.
        """
        due = await self._db.run_read(lambda session: _due(session, limit))
        if not due:
            return 0
        addresses = [await self._wallet.payment_address(item.registration_id) for item in due]
        amounts = await self._db.run_read(
            functools.partial(
                owed_many,
                registration_ids=[item.registration_id for item in due],
                now=self._clock(),
                expiry_ms=self._expiry_ms,
            )
        )
        requests: dict[int, tuple[_Due, PaymentRequest]] = {}
        appends: list[Append] = []
        for item, address in zip(due, addresses, strict=True):
            request = PaymentRequest(
                owed=amounts[item.registration_id],
                usage=milliwh_to_kwh(item.usage_milliwh),
                payment_id_or_address=address,
            )
            requests[item.channel_id] = (item, request)
            appends.append(Append(item.channel_id, payload_to_json(request), "payment-request"))

        def mark(session: Session, stored: list[Append]) -> None:
            now = self._clock()
            for append in stored:
                item = requests[append.channel_id][0]
                session.execute(
                    update(Bill)
                    .where(
                        Bill.registration_id == item.registration_id,
                        Bill.requested_at.is_(None),
                        Bill.id <= item.last_bill_id,
                    )
                    .values(requested_at=now)
                )

        positions = await self._return_channels.append_many(appends, also=mark)
        created = 0
        for append, position in zip(appends, positions, strict=True):
            if position is None:
                continue
            item, request = requests[append.channel_id]
            created += 1
            _LOGGER.info(
                "payment request for %s: owes %d IOTA (%.6f kWh new)",
                item.registration_id,
                request.owed,
                request.usage,
                extra={"registration_id": item.registration_id, "owed": request.owed},
            )
        return created


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
    """Finds consumer payments at their payment addresses and confirms them."""

    def __init__(self, db: Database, node: PaymentNode, clock: Clock) -> None:
        self._db = db
        self._node = node
        self._clock = clock
        self._seen: set[str] | None = None

    async def scan(self) -> dict[str, int]:
        """Record new payments and confirm pending ones; returns counts."""
        if self._seen is None:
            self._seen = await self._db.run_read(_known_hashes)
        addresses = await self._db.run_read(_consumer_addresses)
        found = 0
        if addresses:
            try:
                hashes = await self._node.find_transactions(addresses=list(addresses))
                new = [h for h in hashes if h not in self._seen]
                transactions = await self._node.get_transactions(new) if new else []
            except NodeError as err:
                _LOGGER.warning("cannot look for payments, the node is unavailable: %s", err)
                return {"found": 0, "confirmed": 0}
            payments = [tx for tx in transactions if tx.value > 0 and tx.address in addresses]
            if payments:
                found = await self._db.run_write(
                    lambda session: _record_payments(session, payments, addresses, self._clock())
                )
            self._seen.update(tx.hash for tx in transactions)
        confirmed = await self._confirm()
        return {"found": found, "confirmed": confirmed}

    async def _confirm(self) -> int:
        pending = await self._db.run_read(_pending)
        if not pending:
            return 0
        hashes = [h for _, tx_hashes in pending for h in tx_hashes]
        try:
            states = dict(zip(hashes, await self._node.get_inclusion_states(hashes), strict=True))
        except NodeError as err:
            _LOGGER.warning("cannot check payment confirmations: %s", err)
            return 0
        done = [
            payment_id for payment_id, tx_hashes in pending if any(states[h] for h in tx_hashes)
        ]
        if done:
            now = self._clock()
            await self._db.run_write(
                lambda session: session.execute(
                    update(IncomingPayment)
                    .where(IncomingPayment.id.in_(done))
                    .values(status="confirmed", confirmed_at=now)
                )
            )
            _LOGGER.info("%d consumer payments confirmed", len(done))
        return len(done)


def _own_bundles(session: Session, bundles: set[str]) -> set[str]:
    if not bundles:
        return set()
    rows = session.scalars(
        select(WalletTransfer.bundle_hash).where(WalletTransfer.bundle_hash.in_(bundles))
    ).all()
    return set(rows)


def _known_hashes(session: Session) -> set[str]:
    seen: set[str] = set()
    for (hashes,) in session.execute(select(IncomingPayment.transaction_hashes_json)):
        seen.update(json.loads(hashes))
    return seen


def _consumer_addresses(session: Session) -> dict[str, str]:
    rows = session.execute(
        select(WalletAddress.address, WalletAddress.registration_id).where(
            WalletAddress.purpose == "consumer", WalletAddress.registration_id.is_not(None)
        )
    ).all()
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


def _pending(session: Session) -> list[tuple[int, list[str]]]:
    rows: Sequence[Any] = session.execute(
        select(IncomingPayment.id, IncomingPayment.transaction_hashes_json).where(
            IncomingPayment.status == "pending"
        )
    ).all()
    return [(int(row[0]), list(json.loads(row[1]))) for row in rows]
