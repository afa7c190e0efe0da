"""The simulator's pieces that need no node: plans, periods, wallets, the producer API."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from p2p_energy_protocol.errors import NodeUnavailableError
from p2p_energy_protocol.signing import generate_address

from grid_server.simulator.curves import SimulationError
from grid_server.simulator.households import Period
from grid_server.simulator.producer_api import ProducerRegistrationApi, SourceRegistration
from grid_server.simulator.runner import Simulation, SimulationPlan, genesis_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ROOT = "R" * 81
SIDE_KEY = "S" * 81


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
        assert [p.name for p in simulation.producers] == ["Producer 1"]
        assert [s.name for s, _ in simulation.sources] == [
            "Producer 1 PV 1",
            "Producer 1 PV 2",
            "Producer 1 PV 3",
        ]
        assert [c.name for c in simulation.consumers] == ["Home 1"]
        # Registration ids satisfy the grid's rule (8 to 128 URL-safe characters).
        for entity in (*simulation.producers, *simulation.consumers):
            assert 8 <= len(entity.registration_id) <= 128


@dataclass
class FakeParsed:
    data: Any


class FakeNode:
    """Answers fetch_mam with a channel that starts with hello (or not)."""

    def __init__(self, hello: bool = True, down: bool = False) -> None:
        self.hello = hello
        self.down = down

    async def fetch_mam(
        self, root: str, mode: str, side_key: str | None = None, limit: int | None = None
    ) -> list[FakeParsed]:
        if self.down:
            raise NodeUnavailableError("the node is away")
        return [FakeParsed({"command": "hello" if self.hello else "output"})]


@asynccontextmanager
async def producer_api(node: FakeNode) -> AsyncIterator[tuple[TestClient[Any, Any], list[Any]]]:
    changes: list[tuple[SourceRegistration, bool]] = []

    async def on_change(registration: SourceRegistration, active: bool) -> None:
        changes.append((registration, active))

    api = ProducerRegistrationApi(node, on_change)  # type: ignore[arg-type]
    app = web.Application()
    app.add_routes(api.routes())
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, changes
    finally:
        await client.close()


async def test_producer_api_registers_and_removes_sources() -> None:
    async with producer_api(FakeNode()) as (client, changes):
        body = {"itemName": "Roof", "itemType": "solar", "root": ROOT, "sideKey": SIDE_KEY}
        response = await client.put("/registration/source-0001", json=body)
        assert response.status == 200
        assert await response.json() == {"success": True, "message": "OK"}
        # Re-registering keeps what is not sent again.
        assert (
            await client.put("/registration/source-0001", json={"itemName": "Roof 2"})
        ).status == 200
        registration, active = changes[-1]
        assert (registration.item_name, registration.item_type, registration.root) == (
            "Roof 2",
            "solar",
            ROOT,
        )
        assert active
        wrong = await client.delete(f"/registration/source-0001/{'X' * 81}")
        assert wrong.status == 400
        assert (await wrong.json())["message"] == "The parameter 'sideKey' has an invalid value."
        assert (await client.delete(f"/registration/source-0001/{SIDE_KEY}")).status == 200
        assert changes[-1][1] is False
        assert (await client.delete(f"/registration/source-0001/{SIDE_KEY}")).status == 404


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/registration/short", {}, "The parameter 'registrationId' has an invalid value."),
        ("/registration/source-0002", [], "The request body must be a JSON object."),
        ("/registration/source-0002", {"root": "abc", "sideKey": SIDE_KEY}, "'root'"),
        ("/registration/source-0002", {"root": ROOT}, "root and sideKey must be given together."),
        ("/registration/source-0002", {"itemName": 5}, "'itemName'"),
    ],
)
async def test_producer_api_refuses_bad_registrations(path: str, body: Any, message: str) -> None:
    async with producer_api(FakeNode()) as (client, changes):
        response = await client.put(path, json=body)
        assert response.status == 400
        assert message in (await response.json())["message"]
        assert changes == []


@pytest.mark.parametrize("node", [FakeNode(hello=False), FakeNode(down=True)])
async def test_producer_api_needs_the_channels_hello(node: FakeNode) -> None:
    async with producer_api(node) as (client, changes):
        body = {"root": ROOT, "sideKey": SIDE_KEY}
        response = await client.put("/registration/source-0003", json=body)
        assert response.status == 400
        assert "does not start with a hello" in (await response.json())["message"]
        assert changes == []
