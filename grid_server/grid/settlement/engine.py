"""The settlement of one slot as pure arithmetic on exact integers.

Energy balance with the main grid: the local trade is ``min(produced, consumed)``;
a deficit is imported at the retail price, a surplus exported at the feed-in price,
so ``produced + imported = consumed + exported``.

Money, all in whole IOTA (each total rounded half-even once):

* ``local_value = local energy x consensus price``
* ``consumer_charges = local_value + import_cost`` shared by the consumers in
  proportion to their usage (everybody pays the same blended rate);
* ``grid_cut = local_value x cut`` (the grid's share of what was traded locally);
* ``producer_payouts = local_value - grid_cut + export_revenue`` shared by the
  producers in proportion to their output,

hence ``consumer_charges = producer_payouts + import_cost - export_revenue + grid_cut``
exactly. Shares are allocated by the largest-remainder method so they add up to
the totals to the last IOTA; ties go to the smaller registration id.

The matching mechanisms (:mod:`.mechanisms`, :func:`settle_clearing`) keep the same
totals and invariants, but share them by what each participant actually traded:
a consumer's weight is its local energy at its own price(s) plus its import at the
retail price, a producer's its local sales (less the grid's cut) plus its export, so
each bill and payout is its exact value to within one IOTA of rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ..units import MICRO_PER_IOTA, MILLIWH_PER_KWH, PPM, energy_value, round_iota
from .mechanisms import Bid, Clearing, MarketParameters
from .pricing import Offer, PricingStrategy, StrategyInfo, Tariff
from .split import SHARE_SCALE, SettlementError, allocate, share_units

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [  # SettlementError and allocate live in .split
    "BillLine",
    "ConsumerDemand",
    "PayoutLine",
    "ProducerSupply",
    "SettlementError",
    "SettlementOutcome",
    "allocate",
    "invariant_report",
    "settle",
    "settle_clearing",
    "settle_with",
]

_VALUE_UNIT = MILLIWH_PER_KWH * MICRO_PER_IOTA  # mWh x micro-IOTA per kWh in one IOTA


@dataclass(frozen=True, slots=True)
class ProducerSupply:
    """A producer's output in the settlement (adjustments included) and its terms."""

    registration_id: str
    energy_milliwh: int
    price_micro: int | None
    destination: str | None
    adjustment_milliwh: int = 0


@dataclass(frozen=True, slots=True)
class ConsumerDemand:
    """A consumer's usage in the settlement (adjustments included)."""

    registration_id: str
    energy_milliwh: int
    adjustment_milliwh: int = 0
    bid_micro: int | None = None
    """The most it pays per kWh of local energy (None: no bid)."""


@dataclass(frozen=True, slots=True)
class BillLine:
    registration_id: str
    energy_milliwh: int
    adjustment_milliwh: int
    amount: int
    # The part bought locally (1/SHARE_SCALE mWh) and the part of ``amount`` it costs
    # (1/SHARE_SCALE IOTA); the rest is imported. Statements read these.
    local_energy_share: int = 0
    local_amount_share: int = 0


@dataclass(frozen=True, slots=True)
class PayoutLine:
    registration_id: str
    energy_milliwh: int
    adjustment_milliwh: int
    amount: int
    destination: str | None
    # The part sold locally (1/SHARE_SCALE mWh), the part of ``amount`` it earns net of
    # the grid's cut and that cut (1/SHARE_SCALE IOTA); the rest is exported.
    local_energy_share: int = 0
    local_amount_share: int = 0
    grid_cut_share: int = 0


@dataclass(frozen=True, slots=True)
class SettlementOutcome:
    consensus_price_micro: int | None
    produced_milliwh: int
    consumed_milliwh: int
    local_milliwh: int
    imported_milliwh: int
    exported_milliwh: int
    local_value: int
    import_cost: int
    export_revenue: int
    grid_cut: int
    consumer_charges: int
    producer_payouts: int
    bills: tuple[BillLine, ...]
    payouts: tuple[PayoutLine, ...]

    def invariant_report(self) -> dict[str, Any]:
        """The invariants as figures and verdicts (recorded with every settlement)."""
        return invariant_report(
            produced_milliwh=self.produced_milliwh,
            consumed_milliwh=self.consumed_milliwh,
            imported_milliwh=self.imported_milliwh,
            exported_milliwh=self.exported_milliwh,
            consumer_charges=self.consumer_charges,
            producer_payouts=self.producer_payouts,
            import_cost=self.import_cost,
            export_revenue=self.export_revenue,
            grid_cut=self.grid_cut,
            bills_total=sum(line.amount for line in self.bills),
            payouts_total=sum(line.amount for line in self.payouts),
            usage_total=sum(line.energy_milliwh for line in self.bills),
            output_total=sum(line.energy_milliwh for line in self.payouts),
        )


def invariant_report(
    *,
    produced_milliwh: int,
    consumed_milliwh: int,
    imported_milliwh: int,
    exported_milliwh: int,
    consumer_charges: int,
    producer_payouts: int,
    import_cost: int,
    export_revenue: int,
    grid_cut: int,
    bills_total: int,
    payouts_total: int,
    usage_total: int,
    output_total: int,
) -> dict[str, Any]:
    """Check energy in = energy out and charges = payouts + import - export + cut.

    The totals of the individual bills and payouts (and their energies) must match
    the settlement's figures too; callers pass them as stored in the database.
    """
    energy_in = produced_milliwh + imported_milliwh
    energy_out = consumed_milliwh + exported_milliwh
    money_out = producer_payouts + import_cost - export_revenue + grid_cut
    energy_balanced = (
        energy_in == energy_out
        and usage_total == consumed_milliwh
        and output_total == produced_milliwh
    )
    money_balanced = (
        consumer_charges == money_out
        and bills_total == consumer_charges
        and payouts_total == producer_payouts
        and min(consumer_charges, producer_payouts, import_cost, export_revenue, grid_cut) >= 0
    )
    return {
        "energyInMilliwh": energy_in,
        "energyOutMilliwh": energy_out,
        "usageTotalMilliwh": usage_total,
        "outputTotalMilliwh": output_total,
        "energyBalanced": energy_balanced,
        "consumerCharges": consumer_charges,
        "payoutsPlusImportMinusExportPlusCut": money_out,
        "billsTotal": bills_total,
        "payoutsTotal": payouts_total,
        "moneyBalanced": money_balanced,
    }


def settle(
    producers: Sequence[ProducerSupply],
    consumers: Sequence[ConsumerDemand],
    strategy: PricingStrategy,
    tariff: Tariff,
) -> SettlementOutcome:
    """Compute one settlement; raises SettlementError on inconsistent input."""
    _check_energies(producers, consumers)
    produced = sum(p.energy_milliwh for p in producers)
    consumed = sum(c.energy_milliwh for c in consumers)
    local = min(produced, consumed)
    imported = consumed - local
    exported = produced - local
    offers = [Offer(p.registration_id, p.energy_milliwh, p.price_micro) for p in producers]
    price = strategy(offers, consumed, tariff)
    if price is None and local > 0:
        raise SettlementError("energy was traded locally but no producer named a price")
    if price is not None and price < 0:
        raise SettlementError(f"the pricing strategy returned a negative price {price}")
    local_value = round_iota(energy_value(local, price or 0))
    import_cost = round_iota(energy_value(imported, tariff.import_price_micro))
    export_revenue = round_iota(energy_value(exported, tariff.export_price_micro))
    grid_cut = round_iota(Fraction(local_value * tariff.grid_cut_ppm, PPM))
    charges = local_value + import_cost
    payouts_total = local_value - grid_cut + export_revenue

    bill_amounts = allocate(
        charges, [c.energy_milliwh for c in consumers], [c.registration_id for c in consumers]
    )
    payout_amounts = allocate(
        payouts_total, [p.energy_milliwh for p in producers], [p.registration_id for p in producers]
    )
    # Everybody trades locally in proportion to its energy at the blended rate.
    bill_local = [
        (
            share_units(c.energy_milliwh * local, consumed),
            share_units(amount * local_value, charges),
        )
        for c, amount in zip(consumers, bill_amounts, strict=True)
    ]
    payout_local = [
        (
            share_units(p.energy_milliwh * local, produced),
            share_units(amount * (local_value - grid_cut), payouts_total),
            share_units(grid_cut * p.energy_milliwh, produced),
        )
        for p, amount in zip(producers, payout_amounts, strict=True)
    ]
    return _outcome(
        price,
        producers,
        consumers,
        (produced, consumed, local, imported, exported),
        (local_value, import_cost, export_revenue, grid_cut, charges, payouts_total),
        (bill_amounts, bill_local),
        (payout_amounts, payout_local),
    )


def _check_energies(
    producers: Sequence[ProducerSupply], consumers: Sequence[ConsumerDemand]
) -> None:
    for entity_id, energy in [
        *((p.registration_id, p.energy_milliwh) for p in producers),
        *((c.registration_id, c.energy_milliwh) for c in consumers),
    ]:
        if energy < 0:
            raise SettlementError(f"{entity_id} has negative energy")


def _check_clearing(
    clearing: Clearing, producers: Sequence[ProducerSupply], consumers: Sequence[ConsumerDemand]
) -> int:
    """The local energy of a consistent clearing; SettlementError if it is not."""
    used = {c.registration_id: c.energy_milliwh for c in consumers}
    output = {p.registration_id: p.energy_milliwh for p in producers}
    for side, limits in ((clearing.bought, used), (clearing.sold, output)):
        for entity_id, (energy, value) in side.items():
            if not 0 <= energy <= limits.get(entity_id, 0) or value < 0:
                raise SettlementError(f"the clearing trades {energy} mWh for {entity_id}")
    local = sum(energy for energy, _ in clearing.bought.values())
    if local != sum(energy for energy, _ in clearing.sold.values()):
        raise SettlementError("the clearing sells another amount of energy than it buys")
    if sum(v for _, v in clearing.bought.values()) != sum(v for _, v in clearing.sold.values()):
        raise SettlementError("the clearing's buyers pay another value than its sellers get")
    return local


def settle_clearing(
    producers: Sequence[ProducerSupply],
    consumers: Sequence[ConsumerDemand],
    clearing: Clearing,
    tariff: Tariff,
) -> SettlementOutcome:
    """The money of a matching mechanism's clearing (see the module documentation)."""
    _check_energies(producers, consumers)
    local = _check_clearing(clearing, producers, consumers)
    produced = sum(p.energy_milliwh for p in producers)
    consumed = sum(c.energy_milliwh for c in consumers)
    imported, exported = consumed - local, produced - local
    local_units = sum(v for _, v in clearing.sold.values())
    local_value = round_iota(Fraction(local_units, _VALUE_UNIT))
    import_cost = round_iota(energy_value(imported, tariff.import_price_micro))
    export_revenue = round_iota(energy_value(exported, tariff.export_price_micro))
    grid_cut = round_iota(Fraction(local_value * tariff.grid_cut_ppm, PPM))
    charges = local_value + import_cost
    payouts_total = local_value - grid_cut + export_revenue

    consumer_weights = []
    for c in consumers:
        energy, value = clearing.bought.get(c.registration_id, (0, 0))
        consumer_weights.append(value + (c.energy_milliwh - energy) * tariff.import_price_micro)
    producer_weights = []
    for p in producers:
        energy, value = clearing.sold.get(p.registration_id, (0, 0))
        unsold = (p.energy_milliwh - energy) * tariff.export_price_micro
        producer_weights.append(value * (PPM - tariff.grid_cut_ppm) + unsold * PPM)
    bill_amounts = allocate(charges, consumer_weights, [c.registration_id for c in consumers])
    payout_amounts = allocate(
        payouts_total, producer_weights, [p.registration_id for p in producers]
    )
    # Each line's local part is what the clearing matched for it: its matched energy, and
    # the part of its amount that the matched value weighs in the amount's split.
    bill_local = []
    for c, amount, weight in zip(consumers, bill_amounts, consumer_weights, strict=True):
        energy, value = clearing.bought.get(c.registration_id, (0, 0))
        bill_local.append((energy * SHARE_SCALE, share_units(amount * value, weight)))
    payout_local = []
    for p, amount, weight in zip(producers, payout_amounts, producer_weights, strict=True):
        energy, value = clearing.sold.get(p.registration_id, (0, 0))
        net_value = value * (PPM - tariff.grid_cut_ppm)
        payout_local.append(
            (
                energy * SHARE_SCALE,
                share_units(amount * net_value, weight),
                share_units(grid_cut * value, local_units),
            )
        )
    return _outcome(
        clearing.price_micro,
        producers,
        consumers,
        (produced, consumed, local, imported, exported),
        (local_value, import_cost, export_revenue, grid_cut, charges, payouts_total),
        (bill_amounts, bill_local),
        (payout_amounts, payout_local),
    )


def _outcome(
    price: int | None,
    producers: Sequence[ProducerSupply],
    consumers: Sequence[ConsumerDemand],
    energies: tuple[int, int, int, int, int],
    money: tuple[int, int, int, int, int, int],
    bills: tuple[Sequence[int], Sequence[tuple[int, int]]],
    payouts: tuple[Sequence[int], Sequence[tuple[int, int, int]]],
) -> SettlementOutcome:
    """The outcome; ``bills`` and ``payouts`` are the amounts and the local parts."""
    bill_amounts, bill_local = bills
    payout_amounts, payout_local = payouts
    produced, consumed, local, imported, exported = energies
    local_value, import_cost, export_revenue, grid_cut, charges, payouts_total = money
    outcome = SettlementOutcome(
        consensus_price_micro=price,
        produced_milliwh=produced,
        consumed_milliwh=consumed,
        local_milliwh=local,
        imported_milliwh=imported,
        exported_milliwh=exported,
        local_value=local_value,
        import_cost=import_cost,
        export_revenue=export_revenue,
        grid_cut=grid_cut,
        consumer_charges=charges,
        producer_payouts=payouts_total,
        bills=tuple(
            BillLine(c.registration_id, c.energy_milliwh, c.adjustment_milliwh, amount, *part)
            for c, amount, part in zip(consumers, bill_amounts, bill_local, strict=True)
        ),
        payouts=tuple(
            PayoutLine(
                p.registration_id,
                p.energy_milliwh,
                p.adjustment_milliwh,
                amount,
                p.destination,
                *part,
            )
            for p, amount, part in zip(producers, payout_amounts, payout_local, strict=True)
        ),
    )
    report = outcome.invariant_report()
    if not (report["energyBalanced"] and report["moneyBalanced"]):
        raise SettlementError(f"settlement breaks its invariants: {report}")
    return outcome


def settle_with(
    producers: Sequence[ProducerSupply],
    consumers: Sequence[ConsumerDemand],
    mechanism: StrategyInfo,
    tariff: Tariff,
    params: MarketParameters | None = None,
) -> SettlementOutcome:
    """Settle one slot under ``mechanism`` (a uniform strategy or a matching mechanism)."""
    if mechanism.price is not None:
        return settle(producers, consumers, mechanism.price, tariff)
    if mechanism.clear is None:
        raise SettlementError("the mechanism neither prices nor clears")
    offers = [Offer(p.registration_id, p.energy_milliwh, p.price_micro) for p in producers]
    bids = [Bid(c.registration_id, c.energy_milliwh, c.bid_micro) for c in consumers]
    clearing = mechanism.clear(offers, bids, tariff, params or MarketParameters())
    return settle_clearing(producers, consumers, clearing, tariff)
