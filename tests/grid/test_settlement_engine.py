"""Pricing strategies and the pure settlement engine: hand-computed cases and properties."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid_server.grid.settlement.engine import (
    ConsumerDemand,
    ProducerSupply,
    SettlementError,
    allocate,
    settle,
)
from grid_server.grid.settlement.pricing import (
    STRATEGIES,
    Offer,
    PricingError,
    Tariff,
    check_strategy,
    mean_price,
    merit_order_price,
    strategy_by_name,
    supply_demand_price,
    weighted_mean_price,
)
from grid_server.grid.units import (
    energy_value,
    kwh_to_milliwh,
    percent_to_ppm,
    price_to_micro,
)

KWH = 1_000_000
IOTA_PER_KWH = 1_000_000
TARIFF = Tariff(100 * IOTA_PER_KWH, 20 * IOTA_PER_KWH, 100_000)


def producers_case() -> list[ProducerSupply]:
    return [
        ProducerSupply("producer-a", 3 * KWH, 50 * IOTA_PER_KWH, "A" * 81),
        ProducerSupply("producer-b", 1 * KWH, 90 * IOTA_PER_KWH, "ref-b"),
    ]


def consumers_case() -> list[ConsumerDemand]:
    return [ConsumerDemand("consumer-x", 2 * KWH), ConsumerDemand("consumer-y", 3 * KWH)]


def offers_case() -> list[Offer]:
    return [Offer(p.registration_id, p.energy_milliwh, p.price_micro) for p in producers_case()]


def test_units_are_exact() -> None:
    assert kwh_to_milliwh(1.234) == 1_234_000
    assert kwh_to_milliwh(0.1) + kwh_to_milliwh(0.2) == kwh_to_milliwh(0.3)
    assert price_to_micro(56789) == 56_789_000_000
    assert percent_to_ppm(12.5) == 125_000
    assert energy_value(1_500_000, 3_000_000) == Fraction(9, 2)


def test_strategies_by_hand() -> None:
    demand = 5 * KWH
    assert mean_price(offers_case(), demand, TARIFF) == 70 * IOTA_PER_KWH
    assert weighted_mean_price(offers_case(), demand, TARIFF) == 60 * IOTA_PER_KWH
    # Supply (4 kWh) short of demand: every offer is taken; the marginal ask is 90.
    assert merit_order_price(offers_case(), demand, TARIFF) == 90 * IOTA_PER_KWH
    # Demand of 2 kWh is covered by the cheapest 3 kWh at 50.
    assert merit_order_price(offers_case(), 2 * KWH, TARIFF) == 50 * IOTA_PER_KWH
    # 100 * 20 / (80 * 0.8 + 20) = 23.809523809... IOTA per kWh.
    assert supply_demand_price(offers_case(), demand, TARIFF) == 23_809_524
    assert supply_demand_price(offers_case(), 4 * KWH, TARIFF) == 20 * IOTA_PER_KWH
    assert supply_demand_price(offers_case(), 0, TARIFF) == 20 * IOTA_PER_KWH


def test_merit_order_is_capped_at_the_import_price() -> None:
    expensive = [Offer("p", KWH, 150 * IOTA_PER_KWH)]
    assert merit_order_price(expensive, KWH, TARIFF) == 100 * IOTA_PER_KWH
    assert weighted_mean_price(expensive, KWH, TARIFF) == 150 * IOTA_PER_KWH


def test_no_priced_supply_means_no_price() -> None:
    idle = [Offer("p", 0, 40), Offer("q", KWH, None)]
    for strategy in (mean_price, weighted_mean_price, merit_order_price):
        assert strategy(idle, KWH, TARIFF) is None
    assert supply_demand_price([Offer("p", 0, 40)], KWH, TARIFF) is None


def test_strategy_lookup() -> None:
    assert strategy_by_name("weighted-mean").price is weighted_mean_price
    with pytest.raises(PricingError, match="unknown pricing strategy 'median'"):
        strategy_by_name("median")
    assert check_strategy("supply-demand", TARIFF).price is supply_demand_price
    with pytest.raises(PricingError, match="supply-demand strategy needs a positive export"):
        check_strategy("supply-demand", Tariff(100 * IOTA_PER_KWH, 0, 0))
    # Only supply-demand divides by the export price.
    for name in set(STRATEGIES) - {"supply-demand", "allocation-static"}:
        check_strategy(name, Tariff(100 * IOTA_PER_KWH, 0, 0))


def test_tariff_validation() -> None:
    with pytest.raises(PricingError, match="export price"):
        Tariff(10, 20, 0)
    with pytest.raises(PricingError, match="grid cut"):
        Tariff(20, 10, 1_000_001)
    with pytest.raises(PricingError, match="positive export"):
        supply_demand_price([Offer("p", 1, 1)], 2, Tariff(10, 0, 0))


def test_deficit_is_imported_at_the_retail_price() -> None:
    outcome = settle(producers_case(), consumers_case(), weighted_mean_price, TARIFF)
    assert outcome.consensus_price_micro == 60 * IOTA_PER_KWH
    assert (outcome.produced_milliwh, outcome.consumed_milliwh) == (4 * KWH, 5 * KWH)
    assert (outcome.local_milliwh, outcome.imported_milliwh, outcome.exported_milliwh) == (
        4 * KWH,
        KWH,
        0,
    )
    assert outcome.local_value == 240
    assert outcome.import_cost == 100
    assert outcome.export_revenue == 0
    assert outcome.grid_cut == 24
    assert outcome.consumer_charges == 340
    assert outcome.producer_payouts == 216
    assert [(b.registration_id, b.amount) for b in outcome.bills] == [
        ("consumer-x", 136),
        ("consumer-y", 204),
    ]
    assert [(p.registration_id, p.amount, p.destination) for p in outcome.payouts] == [
        ("producer-a", 162, "A" * 81),
        ("producer-b", 54, "ref-b"),
    ]
    report = outcome.invariant_report()
    assert report["energyBalanced"]
    assert report["moneyBalanced"]
    assert report["energyInMilliwh"] == report["energyOutMilliwh"] == 5 * KWH


def test_surplus_is_exported_at_the_feed_in_price() -> None:
    outcome = settle(
        [ProducerSupply("p", 6 * KWH, 50 * IOTA_PER_KWH, "ref")],
        [ConsumerDemand("c", 2 * KWH)],
        weighted_mean_price,
        TARIFF,
    )
    assert (outcome.local_milliwh, outcome.imported_milliwh, outcome.exported_milliwh) == (
        2 * KWH,
        0,
        4 * KWH,
    )
    assert outcome.local_value == 100
    assert outcome.export_revenue == 80
    assert outcome.grid_cut == 10
    assert outcome.consumer_charges == 100
    assert outcome.producer_payouts == 170
    assert outcome.bills[0].amount == 100
    assert outcome.payouts[0].amount == 170


def test_consumers_only_import_everything() -> None:
    outcome = settle([], [ConsumerDemand("c", kwh_to_milliwh(1.5))], weighted_mean_price, TARIFF)
    assert outcome.consensus_price_micro is None
    assert outcome.import_cost == 150
    assert outcome.bills[0].amount == 150
    assert outcome.payouts == ()


def test_producers_only_export_everything() -> None:
    outcome = settle(producers_case(), [], mean_price, TARIFF)
    assert outcome.local_value == 0
    assert outcome.export_revenue == 80
    assert [p.amount for p in outcome.payouts] == [60, 20]


def test_empty_slot() -> None:
    outcome = settle([], [], weighted_mean_price, TARIFF)
    assert outcome.consumer_charges == outcome.producer_payouts == 0
    assert outcome.invariant_report()["moneyBalanced"]


def test_negative_energy_is_refused() -> None:
    with pytest.raises(SettlementError, match="negative energy"):
        settle([], [ConsumerDemand("c", -1)], weighted_mean_price, TARIFF)


def test_unpriced_local_trade_is_refused() -> None:
    with pytest.raises(SettlementError, match="no producer named a price"):
        settle(
            [ProducerSupply("p", KWH, None, None)],
            [ConsumerDemand("c", KWH)],
            weighted_mean_price,
            TARIFF,
        )


def test_allocate_largest_remainder() -> None:
    assert allocate(10, [1, 1, 1], ["b", "a", "c"]) == [3, 4, 3]
    assert allocate(7, [0, 2, 5], ["a", "b", "c"]) == [0, 2, 5]
    assert allocate(0, [0, 0], ["a", "b"]) == [0, 0]
    with pytest.raises(SettlementError):
        allocate(3, [0, 0], ["a", "b"])


energies = st.integers(min_value=0, max_value=50 * KWH)
prices = st.integers(min_value=0, max_value=500 * IOTA_PER_KWH)


@st.composite
def tariffs(draw: st.DrawFn) -> Tariff:
    export = draw(st.integers(min_value=1, max_value=200 * IOTA_PER_KWH))
    imported = draw(st.integers(min_value=export, max_value=400 * IOTA_PER_KWH))
    return Tariff(imported, export, draw(st.integers(min_value=0, max_value=1_000_000)))


producer_lists = st.lists(st.tuples(energies, prices), max_size=12)
consumer_lists = st.lists(energies, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    producer_lists,
    consumer_lists,
    tariffs(),
    st.sampled_from(sorted(name for name, info in STRATEGIES.items() if info.price)),
)
def test_invariants_always_hold(
    producer_terms: list[tuple[int, int]],
    usages: list[int],
    tariff: Tariff,
    strategy_name: str,
) -> None:
    producers = [
        ProducerSupply(f"p{i:03}", energy, price, f"ref{i}")
        for i, (energy, price) in enumerate(producer_terms)
    ]
    consumers = [ConsumerDemand(f"c{i:03}", usage) for i, usage in enumerate(usages)]
    uniform_price = strategy_by_name(strategy_name).price
    assert uniform_price is not None
    outcome = settle(producers, consumers, uniform_price, tariff)
    report = outcome.invariant_report()
    assert report["energyBalanced"]
    assert report["moneyBalanced"]
    assert (
        outcome.produced_milliwh + outcome.imported_milliwh
        == outcome.consumed_milliwh + outcome.exported_milliwh
    )
    assert outcome.consumer_charges == (
        outcome.producer_payouts + outcome.import_cost - outcome.export_revenue + outcome.grid_cut
    )
    assert all(line.amount >= 0 for line in (*outcome.bills, *outcome.payouts))
    # Every share is within one IOTA of its exact proportional amount.
    for bill in outcome.bills:
        exact = Fraction(
            outcome.consumer_charges * bill.energy_milliwh, outcome.consumed_milliwh or 1
        )
        assert abs(bill.amount - exact) < 1
    for payout in outcome.payouts:
        exact = Fraction(
            outcome.producer_payouts * payout.energy_milliwh, outcome.produced_milliwh or 1
        )
        assert abs(payout.amount - exact) < 1
    price = outcome.consensus_price_micro
    if outcome.local_milliwh:
        assert price is not None
        if strategy_name == "supply-demand":
            assert tariff.export_price_micro <= price <= tariff.import_price_micro
        elif strategy_name == "merit-order":
            assert price <= tariff.import_price_micro
        else:
            asks = [p for e, p in producer_terms if e > 0]
            assert min(asks) <= price <= max(asks)


@settings(max_examples=100, deadline=None)
@given(st.lists(energies, min_size=1, max_size=5), energies, tariffs())
def test_supply_demand_price_falls_as_supply_grows(
    supplies: list[int], demand: int, tariff: Tariff
) -> None:
    last = None
    for total in sorted({sum(supplies[: i + 1]) for i in range(len(supplies))} - {0}):
        price = supply_demand_price([Offer("p", total, None)], demand, tariff)
        assert price is not None
        if last is not None:
            assert price <= last
        last = price
