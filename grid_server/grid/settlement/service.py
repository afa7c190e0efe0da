"""Settling slots in the database, one transaction per slot.

A slot is due once it has ended and either every active participant's reading for
it is in or its deadline has passed, whichever comes first. A participant is active
when its registration is and the grid followed its channel before the slot ended;
its reading for the slot is in once the grid stored one of its readings ending at
or after the slot's end (a channel's readings arrive in period order).
The deadline is ``settlement_delay_seconds`` after the slot's end, or after the
grid could follow the channels again (its start, a change of leader, the node back
after an outage) when that is later: time in which no reading could arrive does
not count against the participants.

A slot ``[start, end)`` takes every reading not settled yet whose period ended by
``end``: the slot's own readings and late ones of earlier, already settled slots
(billed here as adjustments, never dropped and never counted twice, because a
reading carries the id of the one settlement that took it). The work is
set-based: one UPDATE marks the readings, GROUP BY queries aggregate them per
entity, the bills and payouts are bulk-inserted, and the invariants are checked
again from the stored rows before the transaction commits. A crash or shutdown
mid-slot rolls everything back; a slot is settled at most once (unique slot,
plus a PostgreSQL transaction lock so concurrent grid processes queue up).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from p2p_energy_protocol.address import validate_address
from p2p_energy_protocol.errors import InvalidAddressError
from sqlalchemy import Table, case, exists, func, insert, select, text, update

from ..db.models import Bill, FollowedChannel, Payout, Reading, Registration, Settlement
from .engine import (
    ConsumerDemand,
    ProducerSupply,
    SettlementError,
    SettlementOutcome,
    invariant_report,
    settle_with,
)
from .inputs import SlotInputs
from .pricing import Tariff, check_strategy, relevant_parameters

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..clock import Clock
    from ..config import GridConfig
    from ..db.engine import Database

_LOGGER = logging.getLogger(__name__)
_SETTLEMENT_LOCK_KEY = 0x50325053455454
_ADDRESS_LIKE = re.compile(r"[A-Z9]{81}([A-Z9]{9})?")
SLOTS_PER_ROUND = 96

# The settlement row's totals, named as in the engine's outcome they are copied from.
_OUTCOME_TOTALS = (
    "produced_milliwh",
    "consumed_milliwh",
    "local_milliwh",
    "imported_milliwh",
    "exported_milliwh",
    "local_value",
    "consumer_charges",
    "producer_payouts",
    "import_cost",
    "export_revenue",
    "grid_cut",
)
_COUNTS = ("readings_count", "adjustment_readings", "producers_count", "consumers_count")
BILLS: Table = Bill.__table__  # type: ignore[assignment]
PAYOUTS: Table = Payout.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class SettlementSummary:
    id: int
    slot_start: int
    slot_end: int
    consensus_price_micro: int | None
    consumer_charges: int
    producer_payouts: int
    grid_cut: int
    readings: int
    adjustments: int


def slot_bounds(time_ms: int, slot_ms: int) -> tuple[int, int]:
    """The slot ``[start, end)`` that contains ``time_ms`` (aligned to the epoch)."""
    start = time_ms // slot_ms * slot_ms
    return start, start + slot_ms


def payment_method(destination: str | None) -> tuple[str, str | None, str]:
    """How a payout to ``destination`` is made: (method, normalised destination, status).

    An IOTA address (81 trytes, or 90 with a valid checksum) is paid by a value
    transfer; anything else is a reference for paying another way (recorded).
    """
    if destination is None:
        return "off_tangle", None, "recorded"
    if _ADDRESS_LIKE.fullmatch(destination):
        try:
            return "tangle", validate_address(destination, for_value=True), "pending"
        except InvalidAddressError as err:
            _LOGGER.warning("payout address %s is unusable: %s", destination, err)
            return "tangle", destination, "failed"
    return "off_tangle", destination, "recorded"


def waiting_for(session: Session, slot_end: int) -> list[str]:
    """The active participants whose reading for the slot ending at ``slot_end`` is not in."""
    participant = FollowedChannel.registration_id
    reached = exists().where(Reading.registration_id == participant, Reading.end_time >= slot_end)
    # Driven by the active channels (an index), one index probe of readings each.
    return list(
        session.scalars(
            select(participant)
            .join(Registration, Registration.registration_id == participant)
            .where(
                FollowedChannel.active,
                FollowedChannel.created_at < slot_end,
                Registration.active,
                ~reached,
            )
            .distinct()
            .order_by(participant)
        )
    )


def slot_entities(
    session: Session, settlement_id: int, slot_start: int
) -> tuple[list[ProducerSupply], list[ConsumerDemand], int]:
    """The producers and consumers of the settlement's readings, and how many were late."""
    late = case((Reading.end_time <= slot_start, 1), else_=0)
    totals = session.execute(
        select(
            Reading.registration_id,
            Reading.kind,
            func.sum(Reading.energy_milliwh),
            func.sum(late * Reading.energy_milliwh),
            func.sum(late),
        )
        .where(Reading.settlement_id == settlement_id)
        .group_by(Reading.registration_id, Reading.kind)
        .order_by(Reading.registration_id)
    ).all()
    terms = _producer_terms(session, settlement_id)
    bids = _consumer_bids(session, settlement_id)
    producers: list[ProducerSupply] = []
    consumers: list[ConsumerDemand] = []
    adjustments = 0
    for registration_id, kind, energy, adjustment, late_count in totals:
        adjustments += int(late_count or 0)
        if kind == "output":
            price, destination = terms.get(registration_id, (None, None))
            producers.append(
                ProducerSupply(
                    registration_id, int(energy), price, destination, int(adjustment or 0)
                )
            )
        else:
            consumers.append(
                ConsumerDemand(
                    registration_id,
                    int(energy),
                    int(adjustment or 0),
                    bids.get(registration_id),
                )
            )
    return producers, consumers, adjustments


def _consumer_bids(session: Session, settlement_id: int) -> dict[str, int]:
    """Each bidding consumer's bid: its usages' bids (else its standing bid) by energy.

    Usages without any bid do not count; a consumer with none has no bid.
    """
    bid = func.coalesce(Reading.bid_micro, Registration.max_price_micro)
    rows = session.execute(
        select(Reading.registration_id, Reading.energy_milliwh, bid)
        .join(Registration, Registration.registration_id == Reading.registration_id)
        .where(Reading.settlement_id == settlement_id, Reading.kind == "usage", bid.is_not(None))
        .order_by(Reading.registration_id, Reading.end_time, Reading.position)
    ).all()
    weighted: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    last: dict[str, int] = {}
    for registration_id, energy, price in rows:
        last[registration_id] = int(price)
        weighted[registration_id][0] += energy * int(price)
        weighted[registration_id][1] += energy
    return {
        registration_id: round(Fraction(value, weight)) if weight else last[registration_id]
        for registration_id, (value, weight) in weighted.items()
    }


def _producer_terms(
    session: Session, settlement_id: int
) -> dict[str, tuple[int | None, str | None]]:
    """Each producer's output-weighted asking price and its latest payment address."""
    rows = session.execute(
        select(
            Reading.registration_id,
            Reading.energy_milliwh,
            Reading.price_micro,
            Reading.payment_id_or_address,
        )
        .where(Reading.settlement_id == settlement_id, Reading.kind == "output")
        .order_by(Reading.registration_id, Reading.end_time, Reading.position)
    ).all()
    weighted: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    last_price: dict[str, int | None] = {}
    destination: dict[str, str | None] = {}
    for registration_id, energy, price, address in rows:
        if price is not None:
            last_price[registration_id] = price
            if energy > 0:
                weighted[registration_id][0] += energy * price
                weighted[registration_id][1] += energy
        if address is not None:
            destination[registration_id] = address
    terms: dict[str, tuple[int | None, str | None]] = {}
    for registration_id in {row[0] for row in rows}:
        value, weight = weighted.get(registration_id, (0, 0))
        price = round(Fraction(value, weight)) if weight else last_price.get(registration_id)
        terms[registration_id] = (price, destination.get(registration_id))
    return terms


class SettlementService:
    def __init__(self, db: Database, config: GridConfig, clock: Clock, holder: str) -> None:
        self._db = db
        self._config = config
        self._clock = clock
        self._holder = holder
        self._tariff = config.tariff
        self._mechanism = check_strategy(
            config.pricing_strategy, self._tariff, config.market_parameters
        )
        self._params = relevant_parameters(self._mechanism, config.market_parameters)

    @property
    def tariff(self) -> Tariff:
        return self._tariff

    def next_slot(self, session: Session) -> tuple[int, int] | None:
        """The next slot to settle: after the last settled one, at the earliest reading."""
        last_end = session.scalar(select(func.max(Settlement.slot_end)))
        earliest = session.scalar(
            select(func.min(Reading.end_time)).where(Reading.settlement_id.is_(None))
        )
        if earliest is None:
            return None
        slot_ms = self._config.slot_ms
        start, end = slot_bounds(max(earliest - 1, 0), slot_ms)
        if last_end is not None and start < last_end:
            # Late readings of settled slots ride along with the next slot.
            start = last_end
            end = slot_bounds(last_end, slot_ms)[1]
        return start, end

    async def settle_due(self, following_since: int | None = None) -> list[SettlementSummary]:
        """Settle every slot that is due (see the module documentation).

        ``following_since`` is when the grid last became able to follow the channels
        (ms); a slot's deadline never falls earlier than the settlement delay after it.
        """
        settled: list[SettlementSummary] = []
        for _ in range(SLOTS_PER_ROUND):
            summary = await self._db.run_write(
                functools.partial(
                    self._settle_next, now=self._clock(), following_since=following_since
                )
            )
            if summary is None:
                break
            settled.append(summary)
            _LOGGER.info(
                "settled slot %d-%d: price %s micro-IOTA/kWh, charges %d, payouts %d, cut %d",
                summary.slot_start,
                summary.slot_end,
                summary.consensus_price_micro,
                summary.consumer_charges,
                summary.producer_payouts,
                summary.grid_cut,
                extra={"settlement_id": summary.id, "slot_start": summary.slot_start},
            )
        return settled

    def deadline(self, slot_end: int, following_since: int | None = None) -> int:
        """When a slot ending at ``slot_end`` is settled even with readings missing."""
        start = slot_end if following_since is None else max(slot_end, following_since)
        return start + int(self._config.settlement_delay_seconds * 1000)

    def _settle_next(
        self, session: Session, now: int, following_since: int | None
    ) -> SettlementSummary | None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SETTLEMENT_LOCK_KEY}
            )
        slot = self.next_slot(session)
        if slot is None or slot[1] > now:
            return None
        if now < self.deadline(slot[1], following_since):
            if waiting_for(session, slot[1]):
                return None
        else:
            missing = waiting_for(session, slot[1])
            if missing:
                _LOGGER.info(
                    "settling slot %d-%d at its deadline without the readings of %d "
                    "participant(s), e.g. %s; they will be billed as adjustments",
                    *slot,
                    len(missing),
                    ", ".join(missing[:5]),
                )
        return self.settle_slot(session, *slot)

    def settle_slot(self, session: Session, slot_start: int, slot_end: int) -> SettlementSummary:
        """Settle ``[slot_start, slot_end)`` in the caller's transaction."""
        now = self._clock()
        tariff = self._tariff
        row = Settlement(
            slot_start=slot_start,
            slot_end=slot_end,
            strategy=self._config.pricing_strategy,
            import_price_micro=tariff.import_price_micro,
            export_price_micro=tariff.export_price_micro,
            grid_cut_ppm=tariff.grid_cut_ppm,
            settled_by=self._holder,
            settled_at=now,
            invariant_report="{}",
            energy_balanced=False,
            money_balanced=False,
            # Placeholders: the row needs its id before the slot's lines can be settled.
            **dict.fromkeys((*_OUTCOME_TOTALS, *_COUNTS), 0),
        )
        session.add(row)
        session.flush()
        settlement_id = row.id
        readings_count = session.execute(
            update(Reading)
            .where(Reading.settlement_id.is_(None), Reading.end_time <= slot_end)
            .values(settlement_id=settlement_id)
        ).rowcount
        producers, consumers, adjustments = slot_entities(session, settlement_id, slot_start)
        outcome = settle_with(producers, consumers, self._mechanism, tariff, self._params)
        row.inputs_json = SlotInputs(
            self._config.pricing_strategy, self._params, tariff, tuple(producers), tuple(consumers)
        ).to_text()
        self._store_lines(session, settlement_id, outcome, now)
        report = self._check(session, settlement_id, outcome)
        row.consensus_price_micro = outcome.consensus_price_micro
        for name in _OUTCOME_TOTALS:
            setattr(row, name, getattr(outcome, name))
        row.readings_count = readings_count
        row.adjustment_readings = adjustments
        row.producers_count = len(producers)
        row.consumers_count = len(consumers)
        row.energy_balanced = report["energyBalanced"]
        row.money_balanced = report["moneyBalanced"]
        row.invariant_report = json.dumps(report, sort_keys=True)
        return SettlementSummary(
            id=settlement_id,
            slot_start=slot_start,
            slot_end=slot_end,
            consensus_price_micro=outcome.consensus_price_micro,
            consumer_charges=outcome.consumer_charges,
            producer_payouts=outcome.producer_payouts,
            grid_cut=outcome.grid_cut,
            readings=readings_count,
            adjustments=adjustments,
        )

    @staticmethod
    def _store_lines(
        session: Session, settlement_id: int, outcome: SettlementOutcome, now: int
    ) -> None:
        if outcome.bills:
            session.execute(
                insert(BILLS),
                [
                    {
                        "settlement_id": settlement_id,
                        "registration_id": line.registration_id,
                        "usage_milliwh": line.energy_milliwh,
                        "adjustment_milliwh": line.adjustment_milliwh,
                        "amount": line.amount,
                        "local_energy_share": line.local_energy_share,
                        "local_amount_share": line.local_amount_share,
                        "requested_at": None,
                    }
                    for line in outcome.bills
                ],
            )
        if outcome.payouts:
            rows: list[dict[str, Any]] = []
            for line in outcome.payouts:
                method, destination, status = payment_method(line.destination)
                if line.amount == 0 and status == "pending":
                    status = "recorded"
                rows.append(
                    {
                        "settlement_id": settlement_id,
                        "registration_id": line.registration_id,
                        "energy_milliwh": line.energy_milliwh,
                        "adjustment_milliwh": line.adjustment_milliwh,
                        "amount": line.amount,
                        "local_energy_share": line.local_energy_share,
                        "local_amount_share": line.local_amount_share,
                        "grid_cut_share": line.grid_cut_share,
                        "destination": destination,
                        "method": method,
                        "status": status,
                        "transfer_id": None,
                        "updated_at": now,
                    }
                )
            session.execute(insert(PAYOUTS), rows)

    @staticmethod
    def _check(session: Session, settlement_id: int, outcome: SettlementOutcome) -> dict[str, Any]:
        """Check the invariants again from what was stored; raise to roll back."""
        energy: dict[str, int] = {
            kind: int(total or 0)
            for kind, total in session.execute(
                select(Reading.kind, func.sum(Reading.energy_milliwh))
                .where(Reading.settlement_id == settlement_id)
                .group_by(Reading.kind)
            ).all()
        }
        bills = session.execute(
            select(
                func.coalesce(func.sum(Bill.amount), 0),
                func.coalesce(func.sum(Bill.usage_milliwh), 0),
            ).where(Bill.settlement_id == settlement_id)
        ).one()
        payouts = session.execute(
            select(
                func.coalesce(func.sum(Payout.amount), 0),
                func.coalesce(func.sum(Payout.energy_milliwh), 0),
            ).where(Payout.settlement_id == settlement_id)
        ).one()
        report = invariant_report(
            produced_milliwh=energy.get("output", 0),
            consumed_milliwh=energy.get("usage", 0),
            imported_milliwh=outcome.imported_milliwh,
            exported_milliwh=outcome.exported_milliwh,
            consumer_charges=outcome.consumer_charges,
            producer_payouts=outcome.producer_payouts,
            import_cost=outcome.import_cost,
            export_revenue=outcome.export_revenue,
            grid_cut=outcome.grid_cut,
            bills_total=int(bills[0]),
            payouts_total=int(payouts[0]),
            usage_total=int(bills[1]),
            output_total=int(payouts[1]),
        )
        if not (report["energyBalanced"] and report["moneyBalanced"]):
            _LOGGER.error("settlement %d breaks its invariants: %s", settlement_id, report)
            raise SettlementError(f"settlement breaks its invariants: {report}")
        return report
