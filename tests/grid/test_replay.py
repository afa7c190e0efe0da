"""Replaying settled slots: the same result under their own mechanism, what-ifs under others."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select, update

from grid_server.cli import main
from grid_server.grid.config import GridConfig
from grid_server.grid.db.models import Bill, Registration, Settlement
from grid_server.grid.settlement.mechanisms import MarketParameters
from grid_server.grid.settlement.pricing import STRATEGY_NAMES
from grid_server.grid.settlement.replay import ReplayError, load_slot, replay, report
from grid_server.grid.settlement.service import SettlementService

from .dbhelpers import add_reading, add_registration
from .fakes import ManualClock

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database

SLOT = 900_000
S0 = 1_888_888 * SLOT
CONFIG = replace(
    GridConfig(), import_price=100.0, export_price=20.0, grid_cut_percent=10.0, slot_seconds=900
)
SETTINGS: dict[str, dict[str, object]] = {
    "allocation-static": {"allocation_shares": (("c-keen", 3), ("c-mid", 1))},
    "allocation-dynamic": {"community_price": 50.0},
    "pay-as-bid": {"preferences": (("c-keen", ("p-dear",)),)},
}


def market(db: Database) -> None:
    """The mechanisms' hand-computed market (tests/grid/test_market_mechanisms.py)."""
    for name, kind in (
        ("p-cheap", "producer"),
        ("p-dear", "producer"),
        ("c-keen", "consumer"),
        ("c-mid", "consumer"),
        ("c-thrifty", "consumer"),
    ):
        add_registration(db, name, kind, None)
    with db.write() as session:
        # c-keen bids by its registration; the others with their usage.
        session.execute(
            update(Registration)
            .where(Registration.registration_id == "c-keen")
            .values(max_price_micro=90_000_000)
        )
    add_reading(db, "p-cheap", S0 + SLOT, 3.0, price=40, destination="ref-a")
    add_reading(db, "p-dear", S0 + SLOT, 2.0, price=80, destination="ref-b")
    add_reading(db, "c-keen", S0 + SLOT, 2.0)
    add_reading(db, "c-mid", S0 + SLOT, 2.0, bid=60)
    add_reading(db, "c-thrifty", S0 + SLOT, 2.0, bid=30)


async def settle(db: Database, mechanism: str) -> GridConfig:
    config = replace(CONFIG, pricing_strategy=mechanism, **SETTINGS.get(mechanism, {}))  # type: ignore[arg-type]
    service = SettlementService(db, config, ManualClock(S0 + 2 * SLOT), "test")
    [summary] = await service.settle_due()
    assert summary.slot_start == S0
    return config


@pytest.mark.parametrize("mechanism", STRATEGY_NAMES)
async def test_a_replay_gives_the_same_result(db: Database, mechanism: str) -> None:
    market(db)
    await settle(db, mechanism)
    with db.read() as session:
        stored = load_slot(session, str(S0 + 1))
    assert not stored.inputs_rebuilt
    assert stored.inputs.mechanism == mechanism
    bids = {c.registration_id: c.bid_micro for c in stored.inputs.consumers}
    assert bids == {"c-keen": 90_000_000, "c-mid": 60_000_000, "c-thrifty": 30_000_000}
    outcome = replay(stored.inputs)
    data = report(stored, outcome, mechanism)
    assert data["differences"] == []
    assert data["stored"] == data["replayed"]
    assert sum(stored.bills.values()) == outcome.consumer_charges


async def test_what_the_slot_would_have_cost_under_another_mechanism(db: Database) -> None:
    market(db)
    await settle(db, "weighted-mean")
    with db.read() as session:
        stored = load_slot(session, "latest")
    # The slot's inputs under pay-as-clear are the hand-computed auction.
    auction = replay(stored.inputs, "pay-as-clear")
    assert auction.consensus_price_micro == 50_000_000
    amounts = {line.registration_id: line.amount for line in (*auction.bills, *auction.payouts)}
    assert amounts == {
        "c-keen": 100,
        "c-mid": 150,
        "c-thrifty": 200,
        "p-cheap": 135,
        "p-dear": 40,
    }
    # A mechanism that needs what the slot's grid did not configure is refused.
    with pytest.raises(ReplayError, match="allocation shares"):
        replay(stored.inputs, "allocation-static")
    # ... unless the grid's configuration gives it (the replay command's fallback).
    shares = MarketParameters(shares=(("c-keen", 3), ("c-mid", 1)))
    static = replay(stored.inputs, "allocation-static", shares)
    assert static.local_milliwh == 3_250_000


async def test_a_tampered_slot_is_reported_and_the_command_line_agrees(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    market(db)
    await settle(db, "pay-as-clear")
    url = db.url.render_as_string(hide_password=False)
    assert main(["replay", "--slot", "latest", "--database", url]) == 0
    assert "the same result to the last IOTA" in capsys.readouterr().out
    assert main(["replay", "--slot", str(S0), "--database", url, "--mechanism", "mean"]) == 0
    text = capsys.readouterr().out
    assert "what the slot would have cost under mean" in text
    assert main(["replay", "--slot", "2000-01-01T00:00Z", "--database", url]) == 1
    assert "no settled slot" in capsys.readouterr().err
    with db.write() as session:
        session.execute(
            update(Bill).where(Bill.registration_id == "c-mid").values(amount=Bill.amount + 1)
        )
    assert main(["replay", "--slot", "latest", "--database", url, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["differences"] == ["bill of c-mid: stored 151, replayed 150"]


async def test_a_slot_settled_before_inputs_were_stored_is_rebuilt(db: Database) -> None:
    market(db)
    config = await settle(db, "pay-as-clear")
    with db.write() as session:
        session.execute(update(Settlement).values(inputs_json=None))
    with db.read() as session:
        stored = load_slot(session, "latest", config.market_parameters)
        assert session.scalars(select(Settlement.inputs_json)).one() is None
    assert stored.inputs_rebuilt
    assert report(stored, replay(stored.inputs), "pay-as-clear")["differences"] == []
