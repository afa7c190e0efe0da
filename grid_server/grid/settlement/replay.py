"""Replaying a settled slot from its stored inputs, under its own or another mechanism.

Every slot stores what it was settled from (:class:`SlotInputs`: the mechanism and its
parameters, the tariff, each producer's energy and ask, each consumer's energy and
bid) in ``settlements.inputs_json``. :func:`replay` recomputes the slot with the pure
engine; :func:`stored_result` reads what was settled, so the two can be compared to
the last IOTA, and the same inputs can be settled under another mechanism ("what the
slot would have cost under X"). Slots settled before the inputs were stored are
rebuilt from their readings (which carry the id of the settlement that took them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..db.models import Bill, Payout, Settlement
from .engine import SettlementOutcome, settle_with
from .inputs import ReplayError, SlotInputs
from .mechanisms import MarketParameters
from .pricing import Tariff, check_strategy, relevant_parameters, strategy_by_name
from .service import slot_entities

__all__ = ["ReplayError", "SlotInputs", "load_slot", "replay", "report"]

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session


def replay(
    inputs: SlotInputs, mechanism: str | None = None, fallback: MarketParameters | None = None
) -> SettlementOutcome:
    """Settle ``inputs`` again: under their own mechanism, or under ``mechanism``.

    Another mechanism keeps the slot's tariff and whatever of its parameters it uses;
    what the slot's grid did not set (say, allocation shares for a slot settled by
    pay-as-clear) comes from ``fallback`` (the grid's configuration), and a mechanism
    still missing a parameter it needs is refused.
    """
    name = inputs.mechanism if mechanism is None else mechanism
    params = inputs.params
    if fallback is not None:
        params = MarketParameters(
            community_price_micro=params.community_price_micro
            if params.community_price_micro is not None
            else fallback.community_price_micro,
            shares=params.shares or fallback.shares,
            preferences=params.preferences or fallback.preferences,
        )
    try:
        info = strategy_by_name(name)
        params = relevant_parameters(info, params)
        check_strategy(name, inputs.tariff, params)
    except ValueError as err:
        raise ReplayError(str(err)) from err
    return settle_with(inputs.producers, inputs.consumers, info, inputs.tariff, params)


@dataclass(frozen=True, slots=True)
class StoredSlot:
    """A settled slot as stored: its row, its inputs, its bills and payouts."""

    settlement_id: int
    slot_start: int
    slot_end: int
    inputs: SlotInputs
    inputs_rebuilt: bool
    """The slot predates stored inputs; they were rebuilt from its readings."""
    totals: dict[str, int | None]
    bills: dict[str, int]
    payouts: dict[str, int]


TOTALS = (
    "consensus_price_micro",
    "produced_milliwh",
    "consumed_milliwh",
    "local_milliwh",
    "imported_milliwh",
    "exported_milliwh",
    "local_value",
    "import_cost",
    "export_revenue",
    "grid_cut",
    "consumer_charges",
    "producer_payouts",
)


def outcome_totals(outcome: SettlementOutcome) -> dict[str, int | None]:
    totals: dict[str, int | None] = {name: getattr(outcome, name) for name in TOTALS}
    return totals


def find_slot(session: Session, slot: str) -> Settlement:
    """The settlement of ``slot``: ``latest``, a time in it (Unix ms or ISO 8601)."""
    query = select(Settlement)
    if slot == "latest":
        row = session.scalars(query.order_by(Settlement.slot_start.desc()).limit(1)).first()
    else:
        moment = _moment(slot)
        row = session.scalars(
            query.where(Settlement.slot_start <= moment, Settlement.slot_end > moment)
        ).first()
    if row is None:
        raise ReplayError(f"no settled slot at {slot!r}")
    return row


def _moment(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise ReplayError(
            f"--slot takes 'latest', Unix milliseconds or an ISO 8601 time, got {text!r}"
        ) from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def load_slot(session: Session, slot: str, params: MarketParameters | None = None) -> StoredSlot:
    """The stored slot at ``slot`` (see :func:`find_slot`).

    ``params`` stand in for the mechanism's parameters of a slot settled before its
    inputs were stored (the grid's current configuration).
    """
    row = find_slot(session, slot)
    rebuilt = row.inputs_json is None
    if row.inputs_json is not None:
        inputs = SlotInputs.from_text(row.inputs_json)
    else:
        producers, consumers, _ = slot_entities(session, row.id, row.slot_start)
        tariff = Tariff(row.import_price_micro, row.export_price_micro, row.grid_cut_ppm)
        info = strategy_by_name(row.strategy)
        inputs = SlotInputs(
            row.strategy,
            relevant_parameters(info, params or MarketParameters()),
            tariff,
            tuple(producers),
            tuple(consumers),
        )
    bills = {
        registration_id: int(amount)
        for registration_id, amount in session.execute(
            select(Bill.registration_id, Bill.amount).where(Bill.settlement_id == row.id)
        )
    }
    payouts = {
        registration_id: int(amount)
        for registration_id, amount in session.execute(
            select(Payout.registration_id, Payout.amount).where(Payout.settlement_id == row.id)
        )
    }
    return StoredSlot(
        row.id,
        row.slot_start,
        row.slot_end,
        inputs,
        rebuilt,
        {name: getattr(row, name) for name in TOTALS},
        bills,
        payouts,
    )


def differences(stored: StoredSlot, outcome: SettlementOutcome) -> list[str]:
    """Where a replay differs from what was stored (empty: the same to the last IOTA)."""
    found: list[str] = []
    for name, value in outcome_totals(outcome).items():
        if stored.totals[name] != value:
            found.append(f"{name}: stored {stored.totals[name]}, replayed {value}")
    replayed_bills = {line.registration_id: line.amount for line in outcome.bills}
    replayed_payouts = {line.registration_id: line.amount for line in outcome.payouts}
    for kind, was, now in (
        ("bill", stored.bills, replayed_bills),
        ("payout", stored.payouts, replayed_payouts),
    ):
        for registration_id in sorted(set(was) | set(now)):
            if was.get(registration_id) != now.get(registration_id):
                found.append(
                    f"{kind} of {registration_id}: stored {was.get(registration_id)}, "
                    f"replayed {now.get(registration_id)}"
                )
    return found


def report(stored: StoredSlot, outcome: SettlementOutcome, mechanism: str) -> dict[str, Any]:
    """The replay as JSON: the stored and replayed totals and every participant's amount."""
    bills = {line.registration_id: line for line in outcome.bills}
    payouts = {line.registration_id: line for line in outcome.payouts}
    return {
        "settlementId": stored.settlement_id,
        "slotStart": stored.slot_start,
        "slotEnd": stored.slot_end,
        "settledUnder": stored.inputs.mechanism,
        "replayedUnder": mechanism,
        "inputsRebuilt": stored.inputs_rebuilt,
        "stored": stored.totals,
        "replayed": outcome_totals(outcome),
        "consumers": [
            {
                "registrationId": c.registration_id,
                "energyMilliwh": c.energy_milliwh,
                "bidMicro": c.bid_micro,
                "stored": stored.bills.get(c.registration_id),
                "replayed": bills[c.registration_id].amount,
            }
            for c in stored.inputs.consumers
        ],
        "producers": [
            {
                "registrationId": p.registration_id,
                "energyMilliwh": p.energy_milliwh,
                "askMicro": p.price_micro,
                "stored": stored.payouts.get(p.registration_id),
                "replayed": payouts[p.registration_id].amount,
            }
            for p in stored.inputs.producers
        ],
        "differences": differences(stored, outcome) if mechanism == stored.inputs.mechanism else [],
    }


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iota_per_kwh(micro: int | None) -> str:
    return "-" if micro is None else f"{micro / 1_000_000:g}"


def render_text(data: dict[str, Any]) -> str:
    """The report of :func:`report` as a table for people."""
    kwh = 1_000_000
    lines = [
        f"slot {_time(data['slotStart'])} to {_time(data['slotEnd'])} "
        f"(settlement {data['settlementId']}), settled under {data['settledUnder']}"
        + (", inputs rebuilt from its readings" if data["inputsRebuilt"] else ""),
    ]
    same = data["replayedUnder"] == data["settledUnder"]
    if same:
        verdict = (
            "the same result to the last IOTA"
            if not data["differences"]
            else "DIFFERENT from what was stored:\n  " + "\n  ".join(data["differences"])
        )
        lines.append(f"replayed under {data['replayedUnder']}: {verdict}")
    else:
        lines.append(f"what the slot would have cost under {data['replayedUnder']}:")
    stored, replayed = data["stored"], data["replayed"]
    lines.append(f"{'':28}{'stored':>14}{data['replayedUnder']:>20}")
    rows: list[tuple[str, Callable[[Any], str], str]] = [
        ("price (IOTA/kWh)", _iota_per_kwh, "consensus_price_micro"),
        ("local energy (kWh)", lambda v: f"{v / kwh:g}", "local_milliwh"),
        ("imported (kWh)", lambda v: f"{v / kwh:g}", "imported_milliwh"),
        ("exported (kWh)", lambda v: f"{v / kwh:g}", "exported_milliwh"),
        ("consumers pay (IOTA)", str, "consumer_charges"),
        ("producers get (IOTA)", str, "producer_payouts"),
        ("import cost (IOTA)", str, "import_cost"),
        ("export revenue (IOTA)", str, "export_revenue"),
        ("grid's cut (IOTA)", str, "grid_cut"),
    ]
    for label, show, name in rows:
        lines.append(f"{label:28}{show(stored[name]):>14}{show(replayed[name]):>20}")
    lines.append("")
    lines.append(f"{'participant':28}{'kWh':>10}{'bid/ask':>10}{'stored':>10}{'replayed':>14}")
    for kind, price_key in (("consumers", "bidMicro"), ("producers", "askMicro")):
        for item in data[kind]:
            lines.append(
                f"{item['registrationId'][:27]:28}{item['energyMilliwh'] / kwh:>10g}"
                f"{_iota_per_kwh(item[price_key]):>10}{item['stored']!s:>10}"
                f"{item['replayed']:>14}"
            )
    return "\n".join(lines)
