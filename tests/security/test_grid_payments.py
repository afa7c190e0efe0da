"""Attack tests: a payment the ledger never confirms never clears a bill.

Live processes on loopback: the grid's node, the grid and (for the hostile neighbour) a
second node. Before this was fixed the grid counted a payment as paid as soon as it saw
it, for an hour: both tests below saw the consumer's debt go down (to 0 in the issue)
while no IOTA had moved on the grid's ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from p2p_energy_protocol.client import IriClient, Transfer

from tests.reliability.processes import GridProcess, NodeProcess, free_port

from .grid_harness import (
    CONSUMER_WALLET,
    CONSUMER_WALLET_SEED,
    IMPORT_PRICE,
    MWM,
    Household,
    Portal,
    eventually,
    grid_node,
    grid_process,
    start_grid,
    stopped_at_exit,
)
from .node_attacks import PEERING_SECRET

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("socket_enabled")]


async def billed_household(
    session: aiohttp.ClientSession, node: NodeProcess, grid: GridProcess
) -> tuple[Household, Portal, dict[str, Any]]:
    """The operator signed in, and a registered consumer with its first payment request."""
    household = Household(session, node.url, grid.url)
    portal = Portal(session, grid.url)
    assert await portal.sign_in() == 302
    await household.register()
    await household.use(1.0)
    first = await household.request_number(1, grid)
    assert first["owed"] == IMPORT_PRICE
    return household, portal, first


def dropped(portal: Portal) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        (row,) = await portal.incoming_payments()
        return bool(row["status"] == "dropped")

    return check


async def test_a_payment_no_milestone_confirms_never_clears_the_bill(tmp_path: Path) -> None:
    """The consumer's funded transfer reaches the node, but no milestone confirms it:
    the next request still asks for all of it (showing it as pending), and after the
    expiry the portal flags it as dropped."""
    node = grid_node(tmp_path, genesis={CONSUMER_WALLET: 10_000}, milestone_interval=3600)
    # Long enough that the next request is published while the payment is still pending,
    # even on a loaded machine (6 s was not).
    grid = grid_process(tmp_path, node, payment_pending_expiry=15.0)
    with stopped_at_exit(node, grid):
        node.start()
        start_grid(grid)
        async with aiohttp.ClientSession() as session:
            household, portal, first = await billed_household(session, node, grid)

            await household.node.send_transfer(
                CONSUMER_WALLET_SEED,
                [Transfer(first["paymentIdOrAddress"], first["owed"], tag="BILL")],
                min_weight_magnitude=MWM,
            )

            (payment,) = await eventually(
                portal.incoming_payments, "the grid seeing the payment", grid
            )
            assert payment["status"] == "pending"

            await household.use(0.5)
            second = await household.request_number(2, grid)
            # Seen but not confirmed: owed is all of it; pending says what is on its way.
            assert second["owed"] == first["owed"] + IMPORT_PRICE // 2
            assert second["pending"] == first["owed"]

            await eventually(dropped(portal), "the unconfirmed payment being dropped", grid)
            (row,) = await portal.incoming_payments()
            assert row["problem"] == "not confirmed within 15 seconds"
            overview = await portal.api("overview")
            assert overview["consumers"]["paid"] == 0
            assert overview["consumers"]["outstanding"] == second["owed"]
            assert overview["consumers"]["droppedPaymentCount"] == 1
            entity = await portal.api(f"entities/{household.consumer.registration_id}")
            assert (entity["outstanding"], entity["paid"], entity["pending"]) == (
                second["owed"],
                0,
                0,
            )
            # The ledger agrees: nothing arrived at the grid.
            balances = await household.node.get_balances([first["paymentIdOrAddress"]])
            assert balances.balances == [0]


async def test_an_unfunded_payment_from_a_hostile_neighbour_never_clears_the_bill(
    tmp_path: Path,
) -> None:
    """A neighbour whose own ledger funds the consumer's wallet hands the grid's node a
    signed transfer that spends IOTA the grid's network never had. The node stores it,
    the coordinator never confirms it: the grid keeps the debt and drops the payment."""
    node_port = free_port()
    (tmp_path / "neighbour").mkdir()
    hostile = NodeProcess(
        tmp_path / "neighbour",
        config={
            "genesis": {CONSUMER_WALLET: 1_000_000},
            "coordinator": {"seed": "HOSTILE9COORDINATOR".ljust(81, "9"), "interval": 0.5},
            "neighbors": [f"http://127.0.0.1:{node_port}"],
            # A neighbour the grid's node peers with: it holds their shared secret.
            "peering": {"secret": PEERING_SECRET},
        },
    )
    node = grid_node(
        tmp_path,
        genesis={},
        port=node_port,
        neighbors=[hostile.url],
        peering={"secret": PEERING_SECRET},
    )
    grid = grid_process(tmp_path, node, payment_unconfirmable_seconds=3.0)
    with stopped_at_exit(node, hostile, grid):
        node.start()
        hostile.start()
        start_grid(grid)
        async with aiohttp.ClientSession() as session:
            household, portal, first = await billed_household(session, node, grid)

            # Signed and attached on the neighbour, where the wallet is funded.
            await IriClient(session, hostile.url).send_transfer(
                CONSUMER_WALLET_SEED,
                [Transfer(first["paymentIdOrAddress"], first["owed"], tag="BILL")],
                min_weight_magnitude=MWM,
            )

            (payment,) = await eventually(
                portal.incoming_payments, "the grid's node receiving the payment", grid, hostile
            )
            assert payment["status"] != "confirmed"

            await household.use(0.5)
            second = await household.request_number(2, grid)
            assert second["owed"] == first["owed"] + IMPORT_PRICE // 2

            await eventually(dropped(portal), "the unfunded payment being dropped", grid)
            (row,) = await portal.incoming_payments()
            assert row["problem"].startswith("tails are not")
            entity = await portal.api(f"entities/{household.consumer.registration_id}")
            assert (entity["paid"], entity["outstanding"]) == (0, second["owed"])
            # On the grid's ledger the payment address received nothing.
            balances = await household.node.get_balances([first["paymentIdOrAddress"]])
            assert balances.balances == [0]
