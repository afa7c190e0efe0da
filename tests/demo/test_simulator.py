"""The simulator's pieces that need no node: plans, periods, wallets, the roster.

The producers' registration API is the household engine's (tests/engine/test_producer_api.py).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from p2p_energy_protocol.signing import generate_address

from grid_server.simulator.curves import SimulationError
from grid_server.simulator.runner import (
    Period,
    SimulatedMarket,
    Simulation,
    SimulationPlan,
    genesis_for,
)


@pytest.fixture(autouse=True)
def _loopback_sockets(socket_enabled: None) -> None:
    """The Home Assistant test plugin disables sockets; these tests use loopback."""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"producers": 0, "consumers": 0}, "at least one household"),
        ({"sources_per_producer": 0}, "sources_per_producer"),
        ({"period_seconds": 0.5}, "period_seconds"),
        ({"start_hour": 24}, "start_hour"),
        ({"consumers": 2, "consumer_wallets": ("A" * 81,)}, "one wallet seed per consumer"),
    ],
)
def test_plans_are_validated(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        SimulationPlan(**options)


def test_split_needs_a_household() -> None:
    with pytest.raises(SimulationError, match="at least 1"):
        SimulationPlan.split_households(0)
    plan = SimulationPlan.for_households(14, period_seconds=30.0)
    assert (plan.producers, plan.consumers, plan.period_seconds) == (4, 10, 30.0)


def test_genesis_credits_each_wallets_first_address() -> None:
    seeds = ("A" * 81, "B" * 81)
    assert genesis_for(seeds, 50) == {
        generate_address("A" * 81, 0, 2): 50,
        generate_address("B" * 81, 0, 2): 50,
    }


async def test_periods_are_aligned_to_the_slot_length() -> None:
    plan = SimulationPlan(producers=1, consumers=1, period_seconds=10.0)
    async with aiohttp.ClientSession() as session:
        simulation = Simulation(plan, session, "http://127.0.0.1:9", "http://127.0.0.1:9")
        assert simulation.current_period(1_790_000_012_345) == Period(
            1_790_000_000_000, 1_790_000_010_000
        )
        roster = simulation.roster
        assert [(config.kind, config.name) for config in roster] == [
            ("producer", "Producer 1"),
            ("consumer", "Home 1"),
            ("source", "Producer 1 PV 1"),
            ("source", "Producer 1 PV 2"),
            ("source", "Producer 1 PV 3"),
        ]
        # Registration ids satisfy the grid's rule (8 to 128 URL-safe characters).
        for config in roster:
            assert 8 <= len(config.registration_id or "") <= 128
        assert len({config.seed for config in roster}) == len(roster)


def test_a_seed_draws_the_same_market() -> None:
    plan = SimulationPlan(producers=2, consumers=3, sources_per_producer=2, random_seed=7)
    market, again = SimulatedMarket.draw(plan), SimulatedMarket.draw(plan)
    assert (market.prices, market.homes) == (again.prices, again.homes)
    assert [(panel, clouds.waves) for _, panel, clouds in market.arrays] == [
        (panel, clouds.waves) for _, panel, clouds in again.arrays
    ]
    assert len(market.prices) == 2
    assert all(18.0 <= price <= 40.0 for price in market.prices)
    assert [owner for owner, _panel, _clouds in market.arrays] == [0, 0, 1, 1]
    assert len(market.homes) == 3
    other = SimulatedMarket.draw(SimulationPlan(producers=2, consumers=3, random_seed=8))
    assert other.prices != market.prices
