"""The matching mechanisms: hand-computed cases and their properties (hypothesis)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid_server.grid.settlement.engine import (
    ConsumerDemand,
    ProducerSupply,
    SettlementError,
    SettlementOutcome,
    settle_clearing,
    settle_with,
)
from grid_server.grid.settlement.mechanisms import (
    Bid,
    Clearing,
    MarketParameters,
    ask_price,
    bid_price,
)
from grid_server.grid.settlement.pricing import (
    STRATEGIES,
    Offer,
    PricingError,
    Tariff,
    check_strategy,
    relevant_parameters,
    strategy_by_name,
)

KWH = 1_000_000
IOTA = 1_000_000  # micro-IOTA per kWh in 1 IOTA per kWh
VALUE_UNIT = 10**12  # mWh x micro-IOTA per kWh in one IOTA
TARIFF = Tariff(100 * IOTA, 20 * IOTA, 100_000)
MATCHING = sorted(name for name, info in STRATEGIES.items() if info.clear)


def producers_case() -> list[ProducerSupply]:
    return [
        ProducerSupply("p-cheap", 3 * KWH, 40 * IOTA, "ref-a"),
        ProducerSupply("p-dear", 2 * KWH, 80 * IOTA, "ref-b"),
    ]


def consumers_case() -> list[ConsumerDemand]:
    return [
        ConsumerDemand("c-keen", 2 * KWH, bid_micro=90 * IOTA),
        ConsumerDemand("c-mid", 2 * KWH, bid_micro=60 * IOTA),
        ConsumerDemand("c-thrifty", 2 * KWH, bid_micro=30 * IOTA),
    ]


def run(name: str, params: MarketParameters | None = None) -> SettlementOutcome:
    return settle_with(producers_case(), consumers_case(), strategy_by_name(name), TARIFF, params)


def amounts(outcome: SettlementOutcome) -> dict[str, int]:
    return {line.registration_id: line.amount for line in (*outcome.bills, *outcome.payouts)}


def test_pay_as_clear_by_hand() -> None:
    # Bids 90, 60, 30 against asks 40, 80: keen (2 kWh) and mid (1 kWh) buy p-cheap's
    # 3 kWh; mid's 60 does not cover p-dear's 80. Marginal pair 60/40 clears at 50.
    outcome = run("pay-as-clear")
    assert outcome.consensus_price_micro == 50 * IOTA
    assert outcome.local_milliwh == 3 * KWH
    assert outcome.imported_milliwh == 3 * KWH  # mid 1 kWh, thrifty 2 kWh
    assert outcome.exported_milliwh == 2 * KWH  # p-dear
    assert outcome.local_value == 150
    assert outcome.grid_cut == 15
    assert amounts(outcome) == {
        "c-keen": 100,  # 2 kWh x 50
        "c-mid": 150,  # 1 kWh x 50 + 1 kWh x 100
        "c-thrifty": 200,  # 2 kWh imported
        "p-cheap": 135,  # 3 kWh x 50 less 10 %
        "p-dear": 40,  # 2 kWh exported at 20
    }


def test_pay_as_bid_by_hand() -> None:
    # Same matches, each at the buyer's bid: keen 2 x 90, mid 1 x 60.
    outcome = run("pay-as-bid")
    assert outcome.local_value == 240
    assert outcome.consensus_price_micro == 80 * IOTA  # 240 IOTA over 3 kWh
    assert amounts(outcome) == {
        "c-keen": 180,
        "c-mid": 160,
        "c-thrifty": 200,
        "p-cheap": 216,  # 240 less 24
        "p-dear": 40,
    }


def test_preferences_are_matched_first() -> None:
    # c-keen prefers p-dear (ask 80 <= bid 90): it buys p-dear's 2 kWh at 90; then
    # c-mid takes 2 kWh of p-cheap at 60 and c-thrifty's 30 covers no ask.
    preferences = MarketParameters(preferences=(("c-keen", ("p-dear",)),))
    outcome = run("pay-as-bid", preferences)
    assert outcome.local_milliwh == 4 * KWH
    assert amounts(outcome)["c-keen"] == 180
    assert amounts(outcome)["c-mid"] == 120
    assert amounts(outcome)["p-dear"] == 162  # 180 less 10 %
    assert amounts(outcome)["p-cheap"] == 108 + 20  # 2 kWh x 60 less 10 %, 1 kWh exported
    # A preferred producer asking more than the bid is not matched.
    dear = MarketParameters(preferences=(("c-mid", ("p-dear",)),))
    assert amounts(run("pay-as-bid", dear)) == amounts(run("pay-as-bid"))


def test_allocation_keys_by_hand() -> None:
    # Dynamic: 5 kWh produced shared by 6 kWh of use, 5/6 each ... at the midpoint 60.
    dynamic = run("allocation-dynamic")
    assert dynamic.consensus_price_micro == 60 * IOTA
    assert dynamic.local_milliwh == 5 * KWH
    assert dynamic.exported_milliwh == 0
    # Each consumer: 5/3 kWh at 60 + 1/3 kWh at 100 = 133.33 IOTA.
    assert sorted(amounts(dynamic)[c] for c in ("c-keen", "c-mid", "c-thrifty")) == [
        133,
        133,
        134,
    ]
    # Static 3:1:0 at 50: keen is entitled to 3.75 kWh (takes its 2), mid to 1.25 kWh;
    # the rest of keen's share is exported.
    shares = MarketParameters(community_price_micro=50 * IOTA, shares=(("c-keen", 3), ("c-mid", 1)))
    static = run("allocation-static", shares)
    assert static.local_milliwh == 3_250_000
    assert static.exported_milliwh == 1_750_000
    assert amounts(static)["c-keen"] == 100
    assert amounts(static)["c-mid"] == 62 + 75  # 1.25 kWh x 50 + 0.75 kWh x 100 = 137.5
    assert amounts(static)["c-thrifty"] == 200


def test_bids_are_not_used_by_the_uniform_strategies() -> None:
    without = [ConsumerDemand(c.registration_id, c.energy_milliwh) for c in consumers_case()]
    for name, info in STRATEGIES.items():
        if info.price is None or info.needs_export_price:
            continue
        with_bids = settle_with(producers_case(), consumers_case(), info, TARIFF)
        assert with_bids == settle_with(producers_case(), without, info, TARIFF), name


def test_bids_and_asks_beyond_the_main_grid_prices_are_capped() -> None:
    # A bid above retail is taken at retail; an ask below feed-in at feed-in.
    producers = [ProducerSupply("p", 2 * KWH, 5 * IOTA, None)]
    consumers = [ConsumerDemand("c", 2 * KWH, bid_micro=500 * IOTA)]
    outcome = settle_with(producers, consumers, strategy_by_name("pay-as-bid"), TARIFF)
    assert outcome.consensus_price_micro == 100 * IOTA
    clear = settle_with(producers, consumers, strategy_by_name("pay-as-clear"), TARIFF)
    assert clear.consensus_price_micro == 60 * IOTA  # midway between 100 and 20


def test_configuration_checks() -> None:
    with pytest.raises(PricingError, match="allocation shares"):
        check_strategy("allocation-static", TARIFF)
    with pytest.raises(PricingError, match="only used by allocation-static"):
        check_strategy("pay-as-clear", TARIFF, MarketParameters(shares=(("c", 1),)))
    with pytest.raises(PricingError, match="only used by pay-as-bid"):
        check_strategy("pay-as-clear", TARIFF, MarketParameters(preferences=(("c", ("p",)),)))
    with pytest.raises(PricingError, match="between the export and import"):
        check_strategy("allocation-dynamic", TARIFF, MarketParameters(community_price_micro=1))
    params = MarketParameters(
        community_price_micro=50 * IOTA,
        shares=(("c", 1),),
        preferences=(("c", ("p",)),),
    )
    for name, info in STRATEGIES.items():
        check_strategy(name, TARIFF, relevant_parameters(info, params))
    assert MarketParameters.from_json(params.to_json()) == params


def test_an_inconsistent_clearing_is_refused() -> None:
    producers, consumers = producers_case(), consumers_case()
    too_much = Clearing(1, {"c-keen": (3 * KWH, 3)}, {"p-cheap": (3 * KWH, 3)})
    with pytest.raises(SettlementError, match="trades"):
        settle_clearing(producers, consumers, too_much, TARIFF)
    unequal = Clearing(1, {"c-keen": (KWH, 5)}, {"p-cheap": (KWH, 4)})
    with pytest.raises(SettlementError, match="value"):
        settle_clearing(producers, consumers, unequal, TARIFF)


energies = st.integers(min_value=0, max_value=20 * KWH)
prices = st.integers(min_value=0, max_value=300 * IOTA)
optional_prices = st.none() | prices


@st.composite
def tariffs(draw: st.DrawFn) -> Tariff:
    export = draw(st.integers(min_value=0, max_value=150 * IOTA))
    imported = draw(st.integers(min_value=export, max_value=300 * IOTA))
    return Tariff(imported, export, draw(st.integers(min_value=0, max_value=1_000_000)))


@st.composite
def markets(
    draw: st.DrawFn,
) -> tuple[list[ProducerSupply], list[ConsumerDemand], Tariff, MarketParameters]:
    tariff = draw(tariffs())
    producers = [
        ProducerSupply(f"p{i:02}", energy, price, None)
        for i, (energy, price) in enumerate(
            draw(st.lists(st.tuples(energies, optional_prices), max_size=8))
        )
    ]
    consumers = [
        ConsumerDemand(f"c{i:02}", energy, bid_micro=bid)
        for i, (energy, bid) in enumerate(
            draw(st.lists(st.tuples(energies, optional_prices), max_size=8))
        )
    ]
    consumer_ids = [c.registration_id for c in consumers] + ["c-absent"]
    producer_ids = [p.registration_id for p in producers] + ["p-absent"]
    shares = draw(st.dictionaries(st.sampled_from(consumer_ids), st.integers(1, 100), min_size=1))
    preferences = draw(
        st.dictionaries(
            st.sampled_from(consumer_ids),
            st.lists(st.sampled_from(producer_ids), max_size=3, unique=True).map(tuple),
        )
    )
    community = draw(
        st.none()
        | st.integers(min_value=tariff.export_price_micro, max_value=tariff.import_price_micro)
    )
    params = MarketParameters(community, tuple(sorted(shares.items())), tuple(preferences.items()))
    return producers, consumers, tariff, params


@settings(max_examples=200, deadline=None)
@given(markets(), st.sampled_from(MATCHING))
def test_every_mechanism_conserves_energy_and_money(
    market: tuple[list[ProducerSupply], list[ConsumerDemand], Tariff, MarketParameters],
    name: str,
) -> None:
    producers, consumers, tariff, params = market
    info = strategy_by_name(name)
    params = relevant_parameters(info, params)
    outcome = settle_with(producers, consumers, info, tariff, params)
    report = outcome.invariant_report()
    assert report["energyBalanced"]
    assert report["moneyBalanced"]
    assert outcome.produced_milliwh + outcome.imported_milliwh == (
        outcome.consumed_milliwh + outcome.exported_milliwh
    )
    assert outcome.consumer_charges == (
        outcome.producer_payouts + outcome.import_cost - outcome.export_revenue + outcome.grid_cut
    )
    assert sum(b.amount for b in outcome.bills) == outcome.consumer_charges
    assert sum(p.amount for p in outcome.payouts) == outcome.producer_payouts
    assert outcome.local_milliwh <= min(outcome.produced_milliwh, outcome.consumed_milliwh)
    assert (outcome.local_milliwh == 0) == (outcome.consensus_price_micro is None)


@settings(max_examples=200, deadline=None)
@given(markets(), st.sampled_from(MATCHING))
def test_nobody_pays_above_its_bid_or_gets_below_its_ask(
    market: tuple[list[ProducerSupply], list[ConsumerDemand], Tariff, MarketParameters],
    name: str,
) -> None:
    producers, consumers, tariff, params = market
    info = strategy_by_name(name)
    params = relevant_parameters(info, params)
    assert info.clear is not None
    clearing = info.clear(
        [_offer(p) for p in producers], [_bid(c) for c in consumers], tariff, params
    )
    outcome = settle_clearing(producers, consumers, clearing, tariff)
    bids = {c.registration_id: c for c in consumers}
    asks = {p.registration_id: p for p in producers}
    cut = Fraction(1_000_000 - tariff.grid_cut_ppm, 1_000_000)
    for line in outcome.bills:
        energy, value = clearing.bought.get(line.registration_id, (0, 0))
        bid = bids[line.registration_id].bid_micro
        limit = tariff.import_price_micro if bid is None else bid
        if info.bids_respected:
            assert value <= energy * limit  # the clearing itself, exactly
        # Local energy never costs more than importing it.
        assert value <= energy * tariff.import_price_micro
        exact = Fraction(value + (line.energy_milliwh - energy) * tariff.import_price_micro)
        # The bill is its exact value to within the rounding of whole IOTA.
        assert line.amount <= math.ceil(exact / VALUE_UNIT) + 1
        assert line.amount >= math.floor(exact / VALUE_UNIT) - 2
    for line in outcome.payouts:
        energy, value = clearing.sold.get(line.registration_id, (0, 0))
        ask = asks[line.registration_id].price_micro
        floor_price = tariff.export_price_micro if ask is None else ask
        if info.bids_respected:
            assert value >= energy * floor_price
        # ... nor earns less than exporting it.
        assert value >= energy * tariff.export_price_micro
        exact = value * cut + (line.energy_milliwh - energy) * tariff.export_price_micro
        assert line.amount >= math.floor(exact / VALUE_UNIT) - 2
        assert line.amount <= math.ceil(exact / VALUE_UNIT) + 2
    if name == "pay-as-clear" and outcome.local_milliwh:
        price = outcome.consensus_price_micro
        assert price is not None
        assert all(v == e * price for e, v in clearing.bought.values())
    if info.uses_community_price and outcome.local_milliwh:
        price = outcome.consensus_price_micro
        assert price is not None
        assert tariff.export_price_micro <= price <= tariff.import_price_micro
        # Nobody is allocated more than it used.
        for consumer in consumers:
            bought = clearing.bought.get(consumer.registration_id, (0, 0))[0]
            assert bought <= consumer.energy_milliwh


def _offer(producer: ProducerSupply) -> Offer:
    return Offer(producer.registration_id, producer.energy_milliwh, producer.price_micro)


def _bid(consumer: ConsumerDemand) -> Bid:
    return Bid(consumer.registration_id, consumer.energy_milliwh, consumer.bid_micro)


@settings(max_examples=100, deadline=None)
@given(markets())
def test_pay_as_clear_trades_as_much_as_any_feasible_price_would(
    market: tuple[list[ProducerSupply], list[ConsumerDemand], Tariff, MarketParameters],
) -> None:
    """The double auction is efficient: no unmatched bid covers an unmatched ask."""
    producers, consumers, tariff, _ = market
    info = strategy_by_name("pay-as-clear")
    assert info.clear is not None
    clearing = info.clear(
        [_offer(p) for p in producers],
        [_bid(c) for c in consumers],
        tariff,
        MarketParameters(),
    )
    left_bids = [
        bid_price(_bid(c), tariff)
        for c in consumers
        if c.energy_milliwh > clearing.bought.get(c.registration_id, (0, 0))[0]
    ]
    left_asks = [
        ask_price(_offer(p), tariff)
        for p in producers
        if p.energy_milliwh > clearing.sold.get(p.registration_id, (0, 0))[0]
    ]
    if left_bids and left_asks:
        assert max(left_bids) < min(left_asks)
