"""A statement's local and imported (or exported) lines are what the settlement matched.

Under the uniform strategies everybody trades locally at the slot's blended rate; under the
matching mechanisms each participant's local energy and value are its own, so statements
must read what each bill and payout recorded rather than re-derive it from slot totals.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from fractions import Fraction
from random import Random
from typing import TYPE_CHECKING

import pytest

from grid_server.grid.settlement.mechanisms import Bid
from grid_server.grid.settlement.pricing import STRATEGIES, STRATEGY_NAMES, Offer
from grid_server.grid.settlement.replay import load_slot
from grid_server.grid.settlement.service import SettlementService
from grid_server.grid.statements import StatementService, period_containing
from grid_server.grid.units import MICRO_PER_IOTA, MILLIWH_PER_KWH, PPM

from .dbhelpers import add_reading, add_registration
from .fakes import ManualClock
from .test_replay import CONFIG, SETTINGS

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database
    from grid_server.grid.settlement.inputs import SlotInputs

SLOT = 900_000
DAY_START = 1_888_896 * SLOT  # a UTC midnight
SLOTS = 5
PRODUCERS = ("p-cheap", "p-dear")
CONSUMERS = ("c-keen", "c-mid", "c-thrifty")
VALUE_UNIT = MILLIWH_PER_KWH * MICRO_PER_IOTA


def random_slots(db: Database, rng: Random) -> None:
    for name in PRODUCERS:
        add_registration(db, name, "producer", None)
    for name in CONSUMERS:
        add_registration(db, name, "consumer", None)
    for slot in range(SLOTS):
        end = DAY_START + (slot + 1) * SLOT
        for name in PRODUCERS:
            kwh = rng.choice((0.0, rng.uniform(0.1, 4.0)))
            add_reading(db, name, end, kwh, price=rng.randint(20, 95), destination=f"ref-{name}")
        for name in CONSUMERS:
            bid = rng.choice((None, rng.randint(10, 100)))
            add_reading(db, name, end, rng.uniform(0.0, 4.0), bid=bid)


def _matched(inputs: SlotInputs) -> dict[str, tuple[Fraction, Fraction]]:
    """Each participant's local energy (mWh) and its value (IOTA) net of the grid's cut
    for producers, computed from the slot's inputs independently of the engine."""
    tariff = inputs.tariff
    info = STRATEGIES[inputs.mechanism]
    keep = Fraction(PPM - tariff.grid_cut_ppm, PPM)
    offers = [Offer(p.registration_id, p.energy_milliwh, p.price_micro) for p in inputs.producers]
    matched: dict[str, tuple[Fraction, Fraction]] = {}
    if info.price is not None:
        produced = sum(p.energy_milliwh for p in inputs.producers)
        consumed = sum(c.energy_milliwh for c in inputs.consumers)
        local = min(produced, consumed)
        offers = [
            Offer(p.registration_id, p.energy_milliwh, p.price_micro) for p in inputs.producers
        ]
        price = info.price(offers, consumed, tariff) or 0
        for side, total, factor in (
            (inputs.consumers, consumed, Fraction(1)),
            (inputs.producers, produced, keep),
        ):
            for line in side:
                energy = Fraction(line.energy_milliwh * local, total) if total else Fraction(0)
                matched[line.registration_id] = (energy, energy * price * factor / VALUE_UNIT)
        return matched
    assert info.clear is not None
    bids = [Bid(c.registration_id, c.energy_milliwh, c.bid_micro) for c in inputs.consumers]
    clearing = info.clear(offers, bids, tariff, inputs.params)
    for c in inputs.consumers:
        energy, value = clearing.bought.get(c.registration_id, (0, 0))
        matched[c.registration_id] = (Fraction(energy), Fraction(value, VALUE_UNIT))
    for p in inputs.producers:
        energy, value = clearing.sold.get(p.registration_id, (0, 0))
        matched[p.registration_id] = (Fraction(energy), value * keep / VALUE_UNIT)
    return matched


@pytest.mark.parametrize("mechanism", STRATEGY_NAMES)
@pytest.mark.parametrize("seed", [1, 2])
async def test_statement_lines_are_what_the_settlement_matched(
    db: Database, mechanism: str, seed: int
) -> None:
    rng = Random(f"{mechanism}-{seed}")
    random_slots(db, rng)
    config = replace(CONFIG, pricing_strategy=mechanism, **SETTINGS.get(mechanism, {}))  # type: ignore[arg-type]
    clock = ManualClock(DAY_START + (SLOTS + 1) * SLOT)
    settlement = SettlementService(db, config, clock, "test")
    settled = await settlement.settle_due()
    assert len(settled) == SLOTS
    expected: dict[str, list[Fraction]] = defaultdict(lambda: [Fraction(0), Fraction(0)])
    with db.read() as session:
        for slot in range(SLOTS):
            stored = load_slot(session, str(DAY_START + slot * SLOT + 1))
            assert stored.inputs.mechanism == mechanism
            for name, (energy, value) in _matched(stored.inputs).items():
                expected[name][0] += energy
                expected[name][1] += value
    label = period_containing(DAY_START, config.statement_period, config.statement_zone).label
    statements = StatementService(db, config, clock)
    some_local = False
    for name in (*PRODUCERS, *CONSUMERS):
        document = await statements.preview(name, label)
        energy, amounts = document["energy"], document["amounts"]
        consumer = name in CONSUMERS
        local_energy = energy["boughtLocallyMilliwh" if consumer else "soldLocallyMilliwh"]
        other_energy = energy["importedMilliwh" if consumer else "exportedMilliwh"]
        local_money = amounts["localPurchases" if consumer else "localSalesNet"]
        total_money = amounts["charges" if consumer else "credits"]
        other_money = amounts["imports" if consumer else "exports"]
        want_energy, want_value = expected[name]
        # One day of slots: energy rounded once; each slot's money within an IOTA.
        assert abs(local_energy - want_energy) <= Fraction(1, 2), name
        assert local_energy + other_energy == sum(
            line["boughtLocallyMilliwh" if consumer else "soldLocallyMilliwh"]
            + line["importedMilliwh" if consumer else "exportedMilliwh"]
            for line in document["days"]
        )
        assert abs(local_money - want_value) <= SLOTS, (name, local_money, float(want_value))
        assert local_money + other_money == total_money
        some_local = some_local or want_energy > 0
    assert some_local
