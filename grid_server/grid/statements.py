"""Statements: each participant's money with the grid per period, and credit notes.

A statement covers one period (a calendar month by default; a quarter or a year) in
the configured time zone and is computed from what the grid recorded: the settled
slots that start in the period (the participant's bills or payouts), the payments the
ledger confirmed in it, and the payouts that reached the producer. A *preview* is
computed on demand. *Finalising* stores the document as it is, with the next number of
the grid's sequence (statements and credit notes share it; no gaps): it never changes
afterwards. A correction of a final statement is a *credit note*, a new numbered
document referring to it.

Balances are IOTA the participant owes the grid (negative: the grid owes the
participant). A statement's opening balance is the sum of the changes of every final
document of the participant for earlier periods (statements and their credit notes),
so each opening balance carries the previous closing balance and any correction.

A consumer's fixed fee (``statement_fee``, once per final statement) and a hand-given
credit note of a consumer are owed beyond its bills: once the document is final they are
in the consumer's account (``billing.accounts``), so its next payment request's ``owed``
includes them and Home Assistant pays them with the bills. A preview charges nothing.
Producers pay no fee; a hand-given credit note of a producer stays on its statements (the
operator settles it outside the slots' payouts).

Money is whole IOTA; a consumer's charges are split into the local purchases and the
imports (and a producer's credits into the local sales, the grid's cut and the
exports) as the settlement recorded them with each bill and payout (what the mechanism
matched for that participant), summed and rounded once per day. Currency
figures use the rate configured when the document is computed.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import func, literal, or_, select
from sqlalchemy.exc import IntegrityError

from .db.models import (
    Bill,
    IncomingPayment,
    Payout,
    Reading,
    Registration,
    Settlement,
    Statement,
)
from .errors import RequestError
from .settlement.split import SHARE_SCALE, share_units
from .units import MICRO_PER_IOTA, MILLIWH_PER_KWH

if TYPE_CHECKING:
    from collections.abc import Sequence
    from zoneinfo import ZoneInfo

    from sqlalchemy.orm import Session

    from .clock import Clock
    from .config import GridConfig, StatementPeriod
    from .currency import CurrencyRate
    from .db.engine import Database

STATEMENT: Final = "statement"
CREDIT_NOTE: Final = "credit_note"
PREVIEW: Final = "preview"
MAX_REASON_LENGTH: Final = 500
MAX_CORRECTION: Final = 2_779_530_283_277_761
# Finalising a period corrects (credit notes) the participant's final statements of this
# many earlier periods when late readings or late slots changed them.
CORRECTED_PERIODS: Final = 12
# The money lines of a document, in the order the CSV and PDF print them.
AMOUNT_FIELDS: Final = (
    "localPurchases",
    "imports",
    "charges",
    "localSalesGross",
    "gridCut",
    "localSalesNet",
    "exports",
    "credits",
    "fixedFee",
    "paymentsReceived",
    "payoutsSent",
)
ENERGY_FIELDS: Final = (
    "boughtLocallyMilliwh",
    "importedMilliwh",
    "soldLocallyMilliwh",
    "exportedMilliwh",
    "adjustmentMilliwh",
)
_PERIOD_PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    "month": re.compile(r"(\d{4})-(0[1-9]|1[0-2])"),
    "quarter": re.compile(r"(\d{4})-Q([1-4])"),
    "year": re.compile(r"(\d{4})"),
}
_PERIOD_EXAMPLES: Final = {"month": "2026-11", "quarter": "2026-Q4", "year": "2026"}


@dataclass(frozen=True, slots=True)
class Period:
    """``[start_ms, end_ms)``: local midnights of the configured time zone."""

    label: str
    start_ms: int
    end_ms: int


def _midnight_ms(year: int, month: int, zone: ZoneInfo) -> int:
    return int(datetime(year, month, 1, tzinfo=zone).timestamp() * 1000)


def _bounds(year: int, first_month: int, months: int) -> tuple[int, int, int, int]:
    end_month = first_month + months
    return year, first_month, year + (end_month - 1) // 12, (end_month - 1) % 12 + 1


def parse_period(label: str, length: StatementPeriod, zone: ZoneInfo) -> Period:
    """The period named ``label`` (``2026-11``, ``2026-Q4`` or ``2026``); 400 otherwise."""
    match = _PERIOD_PATTERNS[length].fullmatch(label.strip())
    if match is None or not 1970 <= int(match[1]) <= 9998:
        raise RequestError(
            f"The parameter 'period' has an invalid value. Statements cover a {length}: "
            f"use the form {_PERIOD_EXAMPLES[length]}.",
            400,
        )
    year = int(match[1])
    if length == "month":
        first, months = int(match[2]), 1
    elif length == "quarter":
        first, months = 3 * int(match[2]) - 2, 3
    else:
        first, months = 1, 12
    start_year, start_month, end_year, end_month = _bounds(year, first, months)
    return Period(
        label=match[0],
        start_ms=_midnight_ms(start_year, start_month, zone),
        end_ms=_midnight_ms(end_year, end_month, zone),
    )


def period_containing(moment_ms: int, length: StatementPeriod, zone: ZoneInfo) -> Period:
    """The period that ``moment_ms`` falls in."""
    local = datetime.fromtimestamp(moment_ms / 1000, tz=zone)
    label = {
        "month": f"{local.year:04d}-{local.month:02d}",
        "quarter": f"{local.year:04d}-Q{(local.month - 1) // 3 + 1}",
        "year": f"{local.year:04d}",
    }[length]
    return parse_period(label, length, zone)


def previous_period(period: Period, length: StatementPeriod, zone: ZoneInfo) -> Period:
    return period_containing(period.start_ms - 1, length, zone)


def kwh_text(milliwh: int) -> str:
    """mWh as exact decimal kWh text (six places)."""
    return f"{Decimal(milliwh) / MILLIWH_PER_KWH:.6f}"


def _price_text(iota: int, milliwh: int) -> str | None:
    """The average price in IOTA per kWh of ``iota`` for ``milliwh`` (None without energy)."""
    if milliwh == 0:
        return None
    exact = Decimal(iota) * MILLIWH_PER_KWH / Decimal(milliwh)
    return f"{exact.quantize(Decimal('0.000001'), ROUND_HALF_EVEN)}"


# Shares of a slot's figures are summed in units of 1/SHARE_SCALE (the unit in which each
# bill and payout records its local part) and rounded to whole IOTA or mWh once per day.
SCALE: Final = SHARE_SCALE


def _part(scaled: int, part: int, whole: int) -> int:
    """``scaled x part / whole`` rounded half up (all of it when ``part == whole``)."""
    if part == whole:
        return scaled
    quotient, remainder = divmod(scaled * part, whole)
    return quotient + (2 * remainder >= whole)


def _whole(scaled: int) -> int:
    """A sum of shares rounded half-even to a whole unit."""
    return round(Fraction(scaled, SCALE))


@dataclass
class _Day:
    """One local day's figures of one participant, summed in 1/SCALE units."""

    slots: int = 0
    energy: int = 0
    adjustment: int = 0
    local_energy: int = 0
    amount: int = 0
    local_money: int = 0
    cut: int = 0

    def close(self, day: date, consumer: bool) -> dict[str, Any]:
        local_energy = _whole(self.local_energy)
        local_money = _whole(self.local_money)
        amount = _whole(self.amount)
        line: dict[str, Any] = {"date": day.isoformat(), "slots": self.slots}
        if consumer:
            line.update(
                boughtLocallyMilliwh=local_energy,
                importedMilliwh=self.energy - local_energy,
                adjustmentMilliwh=self.adjustment,
                localPurchases=local_money,
                imports=amount - local_money,
                charges=amount,
            )
        else:
            cut = _whole(self.cut)
            line.update(
                soldLocallyMilliwh=local_energy,
                exportedMilliwh=self.energy - local_energy,
                adjustmentMilliwh=self.adjustment,
                localSalesGross=local_money + cut,
                gridCut=cut,
                localSalesNet=local_money,
                exports=amount - local_money,
                credits=amount,
            )
        return line


@dataclass(frozen=True, slots=True)
class _Late:
    """A late reading (billed in a slot after its own) and the period it belongs to."""

    settlement_id: int
    end_time: int
    energy: int
    period: str


def _late_readings(
    session: Session, registration_id: str, period: Period, config: GridConfig
) -> list[_Late]:
    """The participant's late readings billed in the period's slots or belonging to it.

    A reading belongs to the slot its period ends in, so to that slot's statement period,
    whichever later slot billed it.
    """
    slot_ms = config.slot_ms
    rows = session.execute(
        select(Reading.settlement_id, Reading.end_time, Reading.energy_milliwh)
        .join(Settlement, Settlement.id == Reading.settlement_id)
        .where(
            Reading.registration_id == registration_id,
            Reading.end_time <= Settlement.slot_start,
            or_(
                (Settlement.slot_start >= period.start_ms)
                & (Settlement.slot_start < period.end_ms),
                (Reading.end_time > period.start_ms - slot_ms)
                & (Reading.end_time <= period.end_ms + slot_ms),
            ),
        )
    ).all()
    zone = config.statement_zone
    return [
        _Late(
            settlement_id=int(row.settlement_id),
            end_time=int(row.end_time),
            energy=int(row.energy_milliwh),
            period=period_containing(
                (row.end_time - 1) // slot_ms * slot_ms, config.statement_period, zone
            ).label,
        )
        for row in rows
    ]


def _local_days(period: Period, zone: ZoneInfo) -> tuple[list[int], list[date]]:
    """The local midnights (ms) of the period's days, and those days."""
    first = datetime.fromtimestamp(period.start_ms / 1000, tz=zone).date()
    midnights: list[int] = []
    dates: list[date] = []
    day = first
    while True:
        midnight = int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)
        if midnight >= period.end_ms:
            return midnights, dates
        midnights.append(midnight)
        dates.append(day)
        day += timedelta(days=1)


def _days(
    session: Session, registration: Registration, period: Period, config: GridConfig
) -> list[dict[str, Any]]:
    """The participant's daily lines: its bills (or payouts) of the period's slots, less
    the late readings of earlier periods they include, plus the share of later slots'
    bills that is late readings of this period (in proportion to energy, exactly)."""
    zone = config.statement_zone
    consumer = registration.item_type == "consumer"
    line = Bill if consumer else Payout
    energy = Bill.usage_milliwh if consumer else Payout.energy_milliwh
    late = _late_readings(session, registration.registration_id, period, config)
    late_by_slot: dict[int, list[_Late]] = defaultdict(list)
    for reading in late:
        late_by_slot[reading.settlement_id].append(reading)
    borrowed = {reading.settlement_id for reading in late if reading.period == period.label}
    in_period = (Settlement.slot_start >= period.start_ms) & (Settlement.slot_start < period.end_ms)
    rows = session.execute(
        select(
            Settlement.id,
            Settlement.slot_start,
            energy.label("energy"),
            line.adjustment_milliwh,
            line.amount,
            line.local_energy_share,
            line.local_amount_share,
            literal(0).label("cut") if consumer else Payout.grid_cut_share,
        )
        .join(Settlement, Settlement.id == line.settlement_id)
        .where(
            line.registration_id == registration.registration_id,
            or_(in_period, Settlement.id.in_(borrowed)) if borrowed else in_period,
        )
        .order_by(Settlement.slot_start)
    ).all()
    midnights, dates = _local_days(period, zone)
    days: dict[date, _Day] = defaultdict(_Day)
    for (
        settlement_id,
        slot_start,
        energy_milliwh,
        adjustment_milliwh,
        amount,
        local_energy_share,
        local_amount_share,
        grid_cut_share,
    ) in rows:
        own = period.start_ms <= slot_start < period.end_ms
        readings = late_by_slot.get(settlement_id)
        if own:
            moved = sum(r.energy for r in readings if r.period != period.label) if readings else 0
            share = energy_milliwh - moved
            adjustment = adjustment_milliwh - moved
            moment = slot_start
        else:
            mine = [r for r in readings or () if r.period == period.label]
            share = adjustment = sum(r.energy for r in mine)
            moment = max(r.end_time for r in mine) - 1
        # This period's part of the row: all of it, or the energy share of late readings.
        part, whole = (share, energy_milliwh) if energy_milliwh else (int(own), 1)
        day = days[dates[max(0, bisect_right(midnights, moment) - 1)]]
        day.slots += own
        day.energy += share
        day.adjustment += adjustment
        day.amount += share_units(amount * part, whole)
        # The local parts are what the settlement recorded with the bill or payout.
        day.local_energy += _part(local_energy_share, part, whole)
        day.local_money += _part(local_amount_share, part, whole)
        if not consumer:
            day.cut += _part(grid_cut_share, part, whole)
    return [days[day].close(day, consumer) for day in sorted(days)]


def _payments(session: Session, registration_id: str, period: Period) -> list[dict[str, Any]]:
    rows = session.execute(
        select(IncomingPayment.confirmed_at, IncomingPayment.amount, IncomingPayment.bundle_hash)
        .where(
            IncomingPayment.registration_id == registration_id,
            IncomingPayment.status == "confirmed",
            IncomingPayment.confirmed_at >= period.start_ms,
            IncomingPayment.confirmed_at < period.end_ms,
        )
        .order_by(IncomingPayment.confirmed_at, IncomingPayment.id)
    ).all()
    return [
        {"confirmedAt": row.confirmed_at, "amount": row.amount, "bundleHash": row.bundle_hash}
        for row in rows
    ]


def _payouts_sent(session: Session, registration_id: str, period: Period) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(Payout.amount), 0)).where(
            Payout.registration_id == registration_id,
            Payout.status == "confirmed",
            Payout.updated_at >= period.start_ms,
            Payout.updated_at < period.end_ms,
        )
    )
    return int(total or 0)


def _carried(session: Session, registration_id: str, before_ms: int | None) -> int:
    """The sum of the changes of the participant's final documents (for earlier periods)."""
    query = select(func.coalesce(func.sum(Statement.balance_change), 0)).where(
        Statement.registration_id == registration_id
    )
    if before_ms is not None:
        query = query.where(Statement.period_start < before_ms)
    return int(session.scalar(query) or 0)


def _sum_lines(days: Sequence[dict[str, Any]], name: str) -> int:
    return sum(int(day.get(name, 0)) for day in days)


def _currency_figures(
    rate: CurrencyRate | None, amounts: dict[str, int], balance: dict[str, int]
) -> dict[str, Any] | None:
    if rate is None:
        return None

    def text(iota: int) -> str:
        # A few IOTA owed to a participant round to 0.00, never to "-0.00".
        return f"{rate.amount(iota) + 0}"

    return {
        **rate.to_json(),
        "amounts": {name: text(value) for name, value in amounts.items()},
        "balance": {name: text(value) for name, value in balance.items()},
    }


def compute(
    session: Session,
    registration: Registration,
    period: Period,
    config: GridConfig,
    now_ms: int,
) -> dict[str, Any]:
    """The statement of ``registration`` for ``period`` as it stands now (a preview)."""
    consumer = registration.item_type == "consumer"
    days = _days(session, registration, period, config)
    payments = _payments(session, registration.registration_id, period) if consumer else []
    amounts = {name: _sum_lines(days, name) for name in AMOUNT_FIELDS}
    amounts["fixedFee"] = config.statement_fee if consumer else 0
    amounts["paymentsReceived"] = sum(payment["amount"] for payment in payments)
    amounts["payoutsSent"] = (
        0 if consumer else _payouts_sent(session, registration.registration_id, period)
    )
    energy = {name: _sum_lines(days, name) for name in ENERGY_FIELDS}
    change = (
        amounts["charges"]
        + amounts["fixedFee"]
        - amounts["paymentsReceived"]
        - amounts["credits"]
        + amounts["payoutsSent"]
    )
    opening = _carried(session, registration.registration_id, period.start_ms)
    balance = {"opening": opening, "change": change, "closing": opening + change}
    local_energy = energy["boughtLocallyMilliwh"] if consumer else energy["soldLocallyMilliwh"]
    local_money = amounts["localPurchases"] if consumer else amounts["localSalesGross"]
    return {
        "kind": PREVIEW,
        "number": None,
        "registrationId": registration.registration_id,
        "itemName": registration.item_name,
        "itemType": registration.item_type,
        "period": period.label,
        "periodStart": period.start_ms,
        "periodEnd": period.end_ms,
        "timeZone": config.statement_timezone,
        "computedAt": now_ms,
        "issuedAt": None,
        "refersTo": None,
        "reason": None,
        "slots": sum(day["slots"] for day in days),
        "energy": energy,
        "energyKwh": {
            name.removesuffix("Milliwh"): kwh_text(value) for name, value in energy.items()
        },
        "prices": {
            "averageLocalPrice": _price_text(local_money, local_energy),
            "importPrice": _price_text(
                config.tariff.import_price_micro, MILLIWH_PER_KWH * MICRO_PER_IOTA
            ),
            "exportPrice": _price_text(
                config.tariff.export_price_micro, MILLIWH_PER_KWH * MICRO_PER_IOTA
            ),
            "gridCutPercent": config.grid_cut_percent,
        },
        "amounts": amounts,
        "balance": balance,
        "currency": _currency_figures(config.currency_rate, amounts, balance),
        "days": days,
        "payments": payments,
    }


def summary(row: Statement) -> dict[str, Any]:
    """The list entry of a final document."""
    document = json.loads(row.document_json)
    return {
        "number": row.number,
        "kind": row.kind,
        "registrationId": row.registration_id,
        "itemName": document.get("itemName"),
        "itemType": document.get("itemType"),
        "period": row.period,
        "periodStart": row.period_start,
        "periodEnd": row.period_end,
        "refersTo": document.get("refersTo"),
        "openingBalance": row.opening_balance,
        "balanceChange": row.balance_change,
        "closingBalance": row.closing_balance,
        "issuedAt": row.created_at,
        "currency": (document.get("currency") or {}).get("currency"),
        "closingBalanceInCurrency": ((document.get("currency") or {}).get("balance") or {}).get(
            "closing"
        ),
    }


def _participants(
    session: Session, period: Period, registration_id: str | None
) -> list[Registration]:
    query = select(Registration).where(Registration.item_type.in_(("consumer", "producer")))
    if registration_id is not None:
        query = query.where(Registration.registration_id == registration_id)
    else:
        paid_in_period = select(IncomingPayment.registration_id).where(
            IncomingPayment.confirmed_at >= period.start_ms,
            IncomingPayment.confirmed_at < period.end_ms,
        )
        query = query.where(
            or_(
                (Registration.created_at < period.end_ms)
                & (
                    Registration.removed_at.is_(None) | (Registration.removed_at >= period.start_ms)
                ),
                Registration.registration_id.in_(paid_in_period),
            )
        )
    return list(session.scalars(query.order_by(Registration.registration_id)))


def _registration(session: Session, registration_id: str) -> Registration:
    row = session.get(Registration, registration_id)
    if row is None or row.item_type not in ("consumer", "producer"):
        raise RequestError(f"The registration '{registration_id}' does not exist.", 404)
    return row


def _next_number(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(Statement.number), 0))) or 0) + 1


def _store(
    session: Session,
    document: dict[str, Any],
    *,
    kind: str,
    number: int,
    now_ms: int,
    by: str,
    refers_to: Statement | None = None,
) -> Statement:
    document.update(kind=kind, number=number, issuedAt=now_ms)
    row = Statement(
        number=number,
        kind=kind,
        registration_id=document["registrationId"],
        period=document["period"],
        period_start=document["periodStart"],
        period_end=document["periodEnd"],
        statement_key=(
            f"{document['registrationId']}/{document['period']}" if kind == STATEMENT else None
        ),
        refers_to=None if refers_to is None else refers_to.id,
        opening_balance=document["balance"]["opening"],
        balance_change=document["balance"]["change"],
        closing_balance=document["balance"]["closing"],
        account_charge=account_charge(kind, document),
        document_json=json.dumps(document, separators=(",", ":"), sort_keys=True),
        reason=document.get("reason"),
        created_by=by[:64],
        created_at=now_ms,
    )
    session.add(row)
    session.flush()
    return row


def account_charge(kind: str, document: dict[str, Any]) -> int:
    """What a final document adds to the consumer's account beyond its bills: the fixed
    fee of a statement, the amount of a hand-given credit note (a recomputed one corrects
    bills the account holds already)."""
    if document["itemType"] != "consumer":
        return 0
    if kind == STATEMENT:
        return int(document["amounts"]["fixedFee"])
    return int(document["balance"]["change"]) if document.get("correction") == "manual" else 0


@dataclass(frozen=True, slots=True)
class _Difference:
    """What a credit note changes: figures and the balance (IOTA owed to the grid)."""

    amounts: dict[str, int]
    energy: dict[str, int]
    change: int


def _difference(
    session: Session, original: Statement, config: GridConfig, now_ms: int
) -> _Difference | None:
    """What recomputing ``original``'s period gives now, less the statement and its credit
    notes so far (None: nothing changed)."""
    issued = json.loads(original.document_json)
    notes = [
        json.loads(text)
        for text in session.scalars(
            select(Statement.document_json).where(Statement.refers_to == original.id)
        )
    ]
    registration = _registration(session, original.registration_id)
    period = Period(original.period, original.period_start, original.period_end)
    now = compute(session, registration, period, config, now_ms)

    def delta(section: str, name: str) -> int:
        before = issued[section][name] + sum(note[section][name] for note in notes)
        return int(now[section][name] - before)

    amounts = {name: delta("amounts", name) for name in AMOUNT_FIELDS}
    # The fee is charged once per statement, whatever the fee is today.
    amounts["fixedFee"] = 0
    energy = {name: delta("energy", name) for name in ENERGY_FIELDS}
    if not any(amounts.values()) and not any(energy.values()):
        return None
    change = (
        amounts["charges"]
        - amounts["paymentsReceived"]
        - amounts["credits"]
        + amounts["payoutsSent"]
    )
    return _Difference(amounts, energy, change)


def _issue_credit_note(
    session: Session,
    original: Statement,
    difference: _Difference,
    *,
    reason: str,
    correction: str,
    config: GridConfig,
    now_ms: int,
    by: str,
) -> dict[str, Any]:
    issued = json.loads(original.document_json)
    opening = _carried(session, original.registration_id, None)
    change = difference.change
    balance = {"opening": opening, "change": change, "closing": opening + change}
    document = {
        **{key: issued[key] for key in ("registrationId", "itemName", "itemType")},
        **{key: issued[key] for key in ("period", "periodStart", "periodEnd", "timeZone")},
        "computedAt": now_ms,
        "refersTo": original.number,
        "reason": reason,
        "correction": correction,
        "slots": 0,
        "energy": difference.energy,
        "energyKwh": {
            name.removesuffix("Milliwh"): kwh_text(value)
            for name, value in difference.energy.items()
        },
        "prices": issued["prices"],
        "amounts": difference.amounts,
        "balance": balance,
        "currency": _currency_figures(config.currency_rate, difference.amounts, balance),
        "days": [],
        "payments": [],
    }
    _store(
        session,
        document,
        kind=CREDIT_NOTE,
        number=_next_number(session),
        now_ms=now_ms,
        by=by,
        refers_to=original,
    )
    return document


@dataclass(slots=True)
class _Planned:
    """A statement to issue, the credit notes to issue before it, and what they assumed."""

    document: dict[str, Any]
    carried: int
    corrections: list[tuple[int, _Difference]]
    note_counts: dict[int, int]


def _note_counts(session: Session, statement_ids: Sequence[int]) -> dict[int, int]:
    if not statement_ids:
        return {}
    rows = session.execute(
        select(Statement.refers_to, func.count())
        .where(Statement.refers_to.in_(statement_ids))
        .group_by(Statement.refers_to)
    ).all()
    counts = dict.fromkeys(statement_ids, 0)
    counts.update({int(refers_to): int(count) for refers_to, count in rows})
    return counts


class StatementService:
    """Previews, final statements and credit notes (the API and the portal use it)."""

    def __init__(self, db: Database, config: GridConfig, clock: Clock) -> None:
        self.db = db
        self.config = config
        self._clock = clock

    def period(self, label: str | None) -> Period:
        """The period named ``label``; without one the current period."""
        config = self.config
        if label is None or not label.strip():
            return period_containing(self._clock(), config.statement_period, config.statement_zone)
        return parse_period(label, config.statement_period, config.statement_zone)

    def last_complete_period(self) -> Period:
        config = self.config
        current = period_containing(self._clock(), config.statement_period, config.statement_zone)
        return previous_period(current, config.statement_period, config.statement_zone)

    @property
    def settle_margin_ms(self) -> int:
        """How long after a period's end its last slot may still be settled."""
        return self.config.slot_ms + int(self.config.settlement_delay_seconds * 1000)

    async def preview(self, registration_id: str, label: str | None) -> dict[str, Any]:
        period = self.period(label)
        now = self._clock()

        def run(session: Session) -> dict[str, Any]:
            return compute(
                session, _registration(session, registration_id), period, self.config, now
            )

        return await self.db.run_read(run)

    async def previews(
        self, label: str | None, *, page: int = 0, page_size: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The participants' previews of one period (a page of them), and how many there are."""
        period = self.period(label)
        now = self._clock()

        def run(session: Session) -> tuple[list[dict[str, Any]], int]:
            participants = _participants(session, period, None)
            chosen = (
                participants
                if page_size is None
                else participants[page * page_size : (page + 1) * page_size]
            )
            documents = [
                compute(session, registration, period, self.config, now) for registration in chosen
            ]
            return documents, len(participants)

        return await self.db.run_read(run)

    async def finalise(
        self, label: str, registration_id: str | None, *, by: str
    ) -> list[dict[str, Any]]:
        """Issue the final statements of a period (one participant's or every one's)."""
        period = self.period(label)
        now = self._clock()
        if now < period.end_ms + self.settle_margin_ms:
            ready = datetime.fromtimestamp(
                (period.end_ms + self.settle_margin_ms) / 1000, tz=UTC
            ).isoformat(timespec="seconds")
            raise RequestError(
                f"The period {period.label} is not over or its last slots may still be "
                f"settled: finalise it after {ready}.",
                409,
            )

        # Computing takes a while for many participants; it reads, and only storing the
        # result writes (a short transaction that first checks nothing changed meanwhile).
        plan = await self.db.run_read(
            lambda session: self._finalise_plan(session, period, registration_id, now)
        )

        def store(session: Session) -> list[dict[str, Any]]:
            for item in plan:
                rid = item.document["registrationId"]
                carried = _carried(session, rid, period.start_ms)
                notes = _note_counts(session, [original for original, _ in item.corrections])
                if carried != item.carried or notes != item.note_counts:
                    raise RequestError(
                        f"The statements of '{rid}' changed while {period.label} was being "
                        "finalised; try again.",
                        409,
                    )
            for item in plan:
                for original_id, difference in item.corrections:
                    original = session.get(Statement, original_id)
                    assert original is not None
                    _issue_credit_note(
                        session,
                        original,
                        difference,
                        reason=f"Found when finalising {period.label}: readings or slots "
                        f"of {original.period} settled after statement {original.number}.",
                        correction="recomputed",
                        config=self.config,
                        now_ms=now,
                        by=by,
                    )
            for item in plan:
                _store(
                    session,
                    item.document,
                    kind=STATEMENT,
                    number=_next_number(session),
                    now_ms=now,
                    by=by,
                )
            return [item.document for item in plan]

        return await self._write(store)

    def _finalise_plan(
        self, session: Session, period: Period, registration_id: str | None, now: int
    ) -> list[_Planned]:
        if registration_id is not None:
            _registration(session, registration_id)
        participants = _participants(session, period, registration_id)
        final = {
            row.registration_id: row
            for row in session.scalars(
                select(Statement).where(
                    Statement.kind == STATEMENT,
                    Statement.period_end > period.start_ms,
                    Statement.registration_id.in_([item.registration_id for item in participants]),
                )
            )
        }
        if registration_id is not None and registration_id in final:
            existing = final[registration_id]
            raise RequestError(
                f"The statement of '{registration_id}' for {existing.period} is final "
                f"already (number {existing.number}); correct it with a credit note.",
                409,
            )
        pending = [item for item in participants if item.registration_id not in final]
        if not pending:
            raise RequestError(
                f"Every statement for {period.label} is final already; correct one with a "
                "credit note.",
                409,
            )
        plan = []
        for registration in pending:
            # Late readings (or slots settled late) of an earlier final period become its
            # credit notes first, so this period's carried balance includes them.
            earlier = list(
                session.scalars(
                    select(Statement)
                    .where(
                        Statement.registration_id == registration.registration_id,
                        Statement.kind == STATEMENT,
                        Statement.period_start < period.start_ms,
                    )
                    .order_by(Statement.period_start.desc())
                    .limit(CORRECTED_PERIODS)
                )
            )[::-1]
            corrections = [
                (original.id, difference)
                for original in earlier
                if (difference := _difference(session, original, self.config, now)) is not None
            ]
            document = compute(session, registration, period, self.config, now)
            carried = document["balance"]["opening"]
            corrected = sum(difference.change for _, difference in corrections)
            if corrected:
                balance = document["balance"]
                balance["opening"] += corrected
                balance["closing"] += corrected
                document["currency"] = _currency_figures(
                    self.config.currency_rate, document["amounts"], balance
                )
            plan.append(
                _Planned(
                    document=document,
                    carried=carried,
                    corrections=corrections,
                    note_counts=_note_counts(session, [original for original, _ in corrections]),
                )
            )
        return plan

    async def credit_note(
        self, number: int, reason: str, amount: int | None, *, by: str
    ) -> dict[str, Any]:
        """Correct final statement ``number``: by ``amount`` IOTA (positive: the participant
        owes more), or without one by what recomputing its period now gives."""
        reason = reason.strip()
        if not 1 <= len(reason) <= MAX_REASON_LENGTH:
            raise RequestError(
                f"The parameter 'reason' has an invalid value. Say why in 1 to "
                f"{MAX_REASON_LENGTH} characters.",
                400,
            )
        if amount is not None and not (0 < abs(amount) <= MAX_CORRECTION):
            raise RequestError(
                "The parameter 'amount' has an invalid value. It is a non-zero whole number "
                "of IOTA (positive: the participant owes more).",
                400,
            )
        now = self._clock()

        def run(session: Session) -> dict[str, Any]:
            original = session.scalar(select(Statement).where(Statement.number == number))
            if original is None:
                raise RequestError(f"There is no statement number {number}.", 404)
            if original.kind != STATEMENT:
                raise RequestError(
                    f"Document {number} is a credit note; correct the statement it refers to.",
                    409,
                )
            if amount is None:
                difference = _difference(session, original, self.config, now)
                if difference is None:
                    raise RequestError(
                        f"Nothing changed in statement {number}'s period since it was issued; "
                        "give an 'amount' to correct it by hand.",
                        409,
                    )
            else:
                difference = _Difference(
                    dict.fromkeys(AMOUNT_FIELDS, 0), dict.fromkeys(ENERGY_FIELDS, 0), amount
                )
            return _issue_credit_note(
                session,
                original,
                difference,
                reason=reason,
                correction="manual" if amount is not None else "recomputed",
                config=self.config,
                now_ms=now,
                by=by,
            )

        return await self._write(run)

    async def _write[T](self, function: Any) -> T:
        try:
            result: T = await self.db.run_write(function)
        except IntegrityError as err:
            # Two operators issued documents at the same instant: one number, one wins.
            raise RequestError(
                "Another statement was issued at the same time; try again.", 409
            ) from err
        return result

    async def document(self, number: int, registration_id: str | None = None) -> dict[str, Any]:
        """Final document ``number`` as issued (404 if it is not ``registration_id``'s)."""

        def run(session: Session) -> dict[str, Any]:
            row = session.scalar(select(Statement).where(Statement.number == number))
            if row is None or (
                registration_id is not None and row.registration_id != registration_id
            ):
                raise RequestError(f"There is no statement number {number}.", 404)
            document: dict[str, Any] = json.loads(row.document_json)
            return document

        return await self.db.run_read(run)

    async def list(
        self,
        *,
        registration_id: str | None = None,
        period: str | None = None,
        page: int = 0,
        page_size: int = 50,
    ) -> dict[str, Any]:
        """Final documents, newest first."""

        def run(session: Session) -> dict[str, Any]:
            query = select(Statement)
            if registration_id is not None:
                query = query.where(Statement.registration_id == registration_id)
            if period is not None:
                query = query.where(Statement.period == period)
            total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
            rows = session.scalars(
                query.order_by(Statement.number.desc()).offset(page * page_size).limit(page_size)
            )
            return {
                "items": [summary(row) for row in rows],
                "total": total,
                "totalPages": -(-total // page_size),
                "page": page,
                "pageSize": page_size,
            }

        return await self.db.run_read(run)
