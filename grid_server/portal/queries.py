"""Read-only queries behind the portal, on the grid's schema.

Every function takes an open SQLAlchemy session (run them through
``Database.run_read``) and returns JSON-ready dictionaries. Aggregates are computed
by the database with GROUP BY over the page being shown, so the cost of a page does
not grow with the number of households. Energies leave here in kWh, prices in IOTA
per kWh and money in whole IOTA.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from sqlalchemy import Select, and_, case, func, or_, select

from ..grid.billing import accounts, accounts_total
from ..grid.db.models import (
    Bill,
    FollowedChannel,
    IncomingPayment,
    Payout,
    Reading,
    Registration,
    Settlement,
    StorageItem,
    WalletTransfer,
)
from ..grid.units import MICRO_PER_IOTA, MILLIWH_PER_KWH

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from sqlalchemy.orm import Session

EntityKind = Literal["all", "producer", "consumer"]
PaymentKind = Literal["payouts", "incoming"]
# Payouts that reached the producer: confirmed transfers and off-Tangle records.
PAID_PAYOUT_STATES: Final = ("confirmed", "recorded")
DETAIL_ROWS: Final = 50
SERIES_POINTS: Final = 288


class QueryError(ValueError):
    """A portal query parameter is out of range; the message names it."""


@dataclass(frozen=True)
class PageRequest:
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return self.page * self.page_size


def _kwh(milliwh: int | None) -> float:
    return round((milliwh or 0) / MILLIWH_PER_KWH, 6)


def _price(micro: int | None) -> float | None:
    return None if micro is None else round(micro / MICRO_PER_IOTA, 6)


def _int(value: Any) -> int:
    return int(value or 0)


def _page(total: int, request: PageRequest, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "items": items,
        "page": request.page,
        "pageSize": request.page_size,
        "totalItems": total,
        "totalPages": math.ceil(total / request.page_size) if total else 0,
    }


def _count(session: Session, query: Select[Any]) -> int:
    return _int(session.execute(select(func.count()).select_from(query.subquery())).scalar())


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _sums_by_status(session: Session, status: Any, amount: Any) -> dict[str, int]:
    rows = session.execute(select(status, func.sum(amount)).group_by(status)).tuples().all()
    return {str(key): _int(total) for key, total in rows}


def overview(session: Session) -> dict[str, Any]:
    """The market at a glance: participants, energy, money and the grid's own account."""
    participants = {
        (kind, bool(active)): _int(count)
        for kind, active, count in session.execute(
            select(Registration.item_type, Registration.active, func.count()).group_by(
                Registration.item_type, Registration.active
            )
        )
    }
    s = Settlement
    row = session.execute(
        select(
            func.count(s.id),
            func.sum(s.produced_milliwh),
            func.sum(s.consumed_milliwh),
            func.sum(s.local_milliwh),
            func.sum(s.imported_milliwh),
            func.sum(s.exported_milliwh),
            func.sum(s.consumer_charges),
            func.sum(s.producer_payouts),
            func.sum(s.import_cost),
            func.sum(s.export_revenue),
            func.sum(s.grid_cut),
            func.sum(case((and_(s.energy_balanced, s.money_balanced), 0), else_=1)),
        )
    ).one()
    latest = session.execute(
        select(s.slot_start, s.slot_end, s.consensus_price_micro).order_by(s.slot_start.desc())
    ).first()
    consumers = accounts_total(session)
    payouts = _sums_by_status(session, Payout.status, Payout.amount)
    received = consumers.paid
    paid_out = sum(_int(payouts.get(state)) for state in PAID_PAYOUT_STATES)
    import_cost, export_revenue, grid_cut = _int(row[8]), _int(row[9]), _int(row[10])
    dropped_count = _int(
        session.scalar(
            select(func.count(IncomingPayment.id)).where(IncomingPayment.status == "dropped")
        )
    )
    return {
        "producers": {
            "active": participants.get(("producer", True), 0),
            "removed": participants.get(("producer", False), 0),
            "outputKwh": _kwh(row[1]),
            "earned": _int(row[7]),
            "paid": paid_out,
            "pendingPayouts": sum(
                _int(amount) for state, amount in payouts.items() if state not in PAID_PAYOUT_STATES
            ),
        },
        "consumers": {
            "active": participants.get(("consumer", True), 0),
            "removed": participants.get(("consumer", False), 0),
            "usageKwh": _kwh(row[2]),
            "billed": consumers.billed,
            "paid": received,
            "pendingPayments": consumers.pending,
            "outstanding": consumers.owed,
            # Payments that could not confirm (see the payments list for why).
            "droppedPayments": consumers.dropped,
            "droppedPaymentCount": dropped_count,
        },
        "energy": {
            "localKwh": _kwh(row[3]),
            "importedKwh": _kwh(row[4]),
            "exportedKwh": _kwh(row[5]),
        },
        "grid": {
            # What the grid pays the main grid for imported energy.
            "runningCosts": import_cost,
            "exportRevenue": export_revenue,
            "gridCut": grid_cut,
            # Money taken in that still belongs to producers.
            "distributionAvailable": received - paid_out - import_cost + export_revenue - grid_cut,
        },
        "settlements": {
            "count": _int(row[0]),
            "failedInvariants": _int(row[11]),
            "latestSlotStart": latest[0] if latest else None,
            "latestSlotEnd": latest[1] if latest else None,
            "latestPrice": _price(latest[2]) if latest else None,
        },
    }


def entities(
    session: Session, kind: EntityKind, search: str, request: PageRequest
) -> dict[str, Any]:
    """One page of producers and/or consumers matching ``search``, with their totals."""
    query = select(Registration)
    if kind != "all":
        query = query.where(Registration.item_type == kind)
    text = search.strip()
    if text:
        pattern = _like(text)
        query = query.where(
            or_(
                func.lower(Registration.item_name).like(pattern, escape="\\"),
                func.lower(Registration.registration_id).like(pattern, escape="\\"),
            )
        )
    total = _count(session, query)
    rows = (
        session.execute(
            query.order_by(
                Registration.item_type.desc(),
                Registration.item_name,
                Registration.registration_id,
            )
            .offset(request.offset)
            .limit(request.page_size)
        )
        .scalars()
        .all()
    )
    ids = [row.registration_id for row in rows]
    totals = _entity_totals(session, ids)
    items = [
        {**_registration(row), **totals.get(row.registration_id, _empty_totals())} for row in rows
    ]
    return _page(total, request, items)


def _registration(row: Registration) -> dict[str, Any]:
    return {
        "id": row.registration_id,
        "name": row.item_name,
        "type": row.item_type,
        "active": bool(row.active),
        "createdAt": row.created_at,
        "removedAt": row.removed_at,
    }


def _empty_totals() -> dict[str, Any]:
    return {
        "energyKwh": 0.0,
        "lastReadingAt": None,
        "billed": 0,
        "charged": 0,
        "paid": 0,
        "pending": 0,
        "dropped": 0,
        "outstanding": 0,
        "earned": 0,
    }


def _entity_totals(session: Session, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {key: _empty_totals() for key in ids}
    if not ids:
        return totals
    for registration_id, energy, last in session.execute(
        select(
            Reading.registration_id, func.sum(Reading.energy_milliwh), func.max(Reading.end_time)
        )
        .where(Reading.registration_id.in_(ids))
        .group_by(Reading.registration_id)
    ):
        totals[registration_id]["energyKwh"] = _kwh(energy)
        totals[registration_id]["lastReadingAt"] = last
    for registration_id, consumer in accounts(session, ids).items():
        totals[registration_id].update(
            billed=consumer.billed,
            # Fixed fees and hand-given credit notes of its final statements.
            charged=consumer.charged,
            paid=consumer.paid,
            pending=consumer.pending,
            dropped=consumer.dropped,
            outstanding=consumer.owed,
        )
    for registration_id, status, amount in session.execute(
        select(Payout.registration_id, Payout.status, func.sum(Payout.amount))
        .where(Payout.registration_id.in_(ids))
        .group_by(Payout.registration_id, Payout.status)
    ):
        entry = totals[registration_id]
        entry["earned"] += _int(amount)
        entry["paid" if status in PAID_PAYOUT_STATES else "pending"] += _int(amount)
    return totals


def entity(session: Session, registration_id: str) -> dict[str, Any] | None:
    """Everything the portal shows about one producer or consumer (None: unknown id)."""
    row = session.get(Registration, registration_id)
    if row is None:
        return None
    readings = session.execute(
        select(
            Reading.start_time,
            Reading.end_time,
            Reading.energy_milliwh,
            Reading.price_micro,
            Reading.settlement_id,
        )
        .where(Reading.registration_id == registration_id)
        .order_by(Reading.end_time.desc(), Reading.id.desc())
        .limit(SERIES_POINTS)
    ).all()
    result: dict[str, Any] = {
        **_registration(row),
        **_entity_totals(session, [registration_id])[registration_id],
        "series": [
            {
                "startTime": start,
                "endTime": end,
                "kwh": _kwh(energy),
                "price": _price(price),
                "settled": settlement is not None,
            }
            for start, end, energy, price, settlement in reversed(readings)
        ],
        "channels": _channels(session, registration_id),
    }
    if row.item_type == "producer":
        result["sources"] = _sources(session, registration_id)
        result["payouts"] = _payout_rows(
            session, select_payouts().where(Payout.registration_id == registration_id), 0
        )
    else:
        result["bills"] = _bills(session, registration_id)
        result["payments"] = _incoming_rows(
            session,
            select_incoming().where(IncomingPayment.registration_id == registration_id),
            0,
        )
    return result


def _channels(session: Session, registration_id: str) -> list[dict[str, Any]]:
    return [
        {
            "role": channel.role,
            "root": channel.root,
            "nextRoot": channel.next_root,
            "messagesRead": channel.next_position,
            "active": bool(channel.active),
            "helloSeen": bool(channel.hello_seen),
            "skippedMessages": channel.skipped_messages,
            "lastError": channel.last_error,
            "lastReadAt": channel.last_read_at,
            "closedReason": channel.closed_reason,
        }
        for channel in session.execute(
            select(FollowedChannel)
            .where(FollowedChannel.registration_id == registration_id)
            .order_by(FollowedChannel.id)
        ).scalars()
    ]


def _sources(session: Session, registration_id: str) -> list[dict[str, Any]]:
    """The producer's sources, as it keeps them in the storage API's ``sources`` context."""
    sources: list[dict[str, Any]] = []
    for item in session.execute(
        select(StorageItem)
        .where(StorageItem.registration_id == registration_id, StorageItem.context == "sources")
        .order_by(StorageItem.item_id)
        .limit(DETAIL_ROWS)
    ).scalars():
        try:
            value = json.loads(item.value_json)
        except ValueError:
            value = None
        details = value if isinstance(value, dict) else {}
        name = details.get("itemName") or details.get("name") or item.item_id
        kind = details.get("itemType") or details.get("type") or ""
        sources.append(
            {"id": item.item_id, "name": str(name), "type": str(kind), "updatedAt": item.updated_at}
        )
    return sources


def _bills(session: Session, registration_id: str) -> list[dict[str, Any]]:
    return [
        {
            "slotStart": slot_start,
            "slotEnd": slot_end,
            "usageKwh": _kwh(usage),
            "adjustmentKwh": _kwh(adjustment),
            "amount": amount,
            "requested": requested is not None,
        }
        for slot_start, slot_end, usage, adjustment, amount, requested in session.execute(
            select(
                Settlement.slot_start,
                Settlement.slot_end,
                Bill.usage_milliwh,
                Bill.adjustment_milliwh,
                Bill.amount,
                Bill.requested_at,
            )
            .join(Settlement, Settlement.id == Bill.settlement_id)
            .where(Bill.registration_id == registration_id)
            .order_by(Settlement.slot_start.desc())
            .limit(DETAIL_ROWS)
        )
    ]


def price_history(session: Session, limit: int) -> list[dict[str, Any]]:
    """The consensus price of the last ``limit`` settled slots, oldest first."""
    rows = session.execute(
        select(
            Settlement.slot_start,
            Settlement.slot_end,
            Settlement.consensus_price_micro,
            Settlement.import_price_micro,
            Settlement.export_price_micro,
            Settlement.produced_milliwh,
            Settlement.consumed_milliwh,
        )
        .order_by(Settlement.slot_start.desc())
        .limit(limit)
    ).all()
    return [
        {
            "slotStart": start,
            "slotEnd": end,
            "price": _price(price),
            "importPrice": _price(import_price),
            "exportPrice": _price(export_price),
            "producedKwh": _kwh(produced),
            "consumedKwh": _kwh(consumed),
        }
        for start, end, price, import_price, export_price, produced, consumed in reversed(rows)
    ]


def settlements(session: Session, request: PageRequest, failed_only: bool) -> dict[str, Any]:
    """Settled slots, newest first, each with its invariant checks."""
    query = select(Settlement)
    if failed_only:
        query = query.where(or_(~Settlement.energy_balanced, ~Settlement.money_balanced))
    total = _count(session, query)
    rows = session.execute(
        query.order_by(Settlement.slot_start.desc()).offset(request.offset).limit(request.page_size)
    ).scalars()
    return _page(total, request, [_settlement(row) for row in rows])


def _settlement(row: Settlement) -> dict[str, Any]:
    try:
        report: Any = json.loads(row.invariant_report)
    except ValueError:
        report = row.invariant_report
    return {
        "id": row.id,
        "slotStart": row.slot_start,
        "slotEnd": row.slot_end,
        "strategy": row.strategy,
        "price": _price(row.consensus_price_micro),
        "producedKwh": _kwh(row.produced_milliwh),
        "consumedKwh": _kwh(row.consumed_milliwh),
        "localKwh": _kwh(row.local_milliwh),
        "importedKwh": _kwh(row.imported_milliwh),
        "exportedKwh": _kwh(row.exported_milliwh),
        "consumerCharges": row.consumer_charges,
        "producerPayouts": row.producer_payouts,
        "importCost": row.import_cost,
        "exportRevenue": row.export_revenue,
        "gridCut": row.grid_cut,
        "readings": row.readings_count,
        "adjustments": row.adjustment_readings,
        "producers": row.producers_count,
        "consumers": row.consumers_count,
        "energyBalanced": bool(row.energy_balanced),
        "moneyBalanced": bool(row.money_balanced),
        "invariants": report,
        "settledAt": row.settled_at,
    }


def select_payouts() -> Select[Any]:
    return (
        select(
            Payout.id,
            Payout.registration_id,
            Registration.item_name,
            Settlement.slot_start,
            Payout.energy_milliwh,
            Payout.amount,
            Payout.destination,
            Payout.method,
            Payout.status,
            Payout.updated_at,
            WalletTransfer.bundle_hash,
            WalletTransfer.tails_json,
        )
        .join(Registration, Registration.registration_id == Payout.registration_id)
        .join(Settlement, Settlement.id == Payout.settlement_id)
        .outerjoin(WalletTransfer, WalletTransfer.id == Payout.transfer_id)
    )


def select_incoming() -> Select[Any]:
    return select(
        IncomingPayment.id,
        IncomingPayment.registration_id,
        Registration.item_name,
        IncomingPayment.address,
        IncomingPayment.bundle_hash,
        IncomingPayment.transaction_hashes_json,
        IncomingPayment.amount,
        IncomingPayment.status,
        IncomingPayment.first_seen_at,
        IncomingPayment.confirmed_at,
        IncomingPayment.dropped_at,
        IncomingPayment.problem,
    ).join(Registration, Registration.registration_id == IncomingPayment.registration_id)


def _hashes(raw: str | None) -> list[str]:
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _payout_rows(session: Session, query: Select[Any], offset: int) -> list[dict[str, Any]]:
    rows: Iterable[Any] = session.execute(
        query.order_by(Payout.id.desc()).offset(offset).limit(DETAIL_ROWS)
    )
    return [_payout(row) for row in rows]


def _payout(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "registrationId": row.registration_id,
        "name": row.item_name,
        "slotStart": row.slot_start,
        "energyKwh": _kwh(row.energy_milliwh),
        "amount": row.amount,
        "destination": row.destination,
        "method": row.method,
        "status": row.status,
        "updatedAt": row.updated_at,
        "bundle": row.bundle_hash,
        "transactions": _hashes(row.tails_json),
    }


def _incoming_rows(session: Session, query: Select[Any], offset: int) -> list[dict[str, Any]]:
    rows: Iterable[Any] = session.execute(
        query.order_by(IncomingPayment.id.desc()).offset(offset).limit(DETAIL_ROWS)
    )
    return [_incoming(row) for row in rows]


def _incoming(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "registrationId": row.registration_id,
        "name": row.item_name,
        "address": row.address,
        "bundle": row.bundle_hash,
        "transactions": _hashes(row.transaction_hashes_json),
        "amount": row.amount,
        "status": row.status,
        "seenAt": row.first_seen_at,
        "confirmedAt": row.confirmed_at,
        "droppedAt": row.dropped_at,
        # Why it has not confirmed (yet), as the node answered; None while all is well.
        "problem": row.problem,
    }


def payments(session: Session, kind: PaymentKind, request: PageRequest) -> dict[str, Any]:
    """Payouts to producers or payments from consumers, newest first."""
    if kind == "payouts":
        query = select_payouts()
        total = _int(session.execute(select(func.count(Payout.id))).scalar())
        rows = session.execute(
            query.order_by(Payout.id.desc()).offset(request.offset).limit(request.page_size)
        )
        return _page(total, request, [_payout(row) for row in rows])
    query = select_incoming()
    total = _int(session.execute(select(func.count(IncomingPayment.id))).scalar())
    rows = session.execute(
        query.order_by(IncomingPayment.id.desc()).offset(request.offset).limit(request.page_size)
    )
    return _page(total, request, [_incoming(row) for row in rows])
