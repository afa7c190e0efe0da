"""End to end with real processes: a node, the grid (killed with -9 and restarted), and
sources, producers and consumers publishing over MAM. Expected bills and payouts are
computed here by hand, independently of the grid's code."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from typing import TYPE_CHECKING

import aiohttp
import pytest
from p2p_energy_protocol.client import IriClient, Transfer
from p2p_energy_protocol.grid_client import GridClient
from p2p_energy_protocol.signing import generate_address
from sqlalchemy import func, select

from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import Bill, IncomingPayment, Payout, Settlement

from .entities import Consumer, Entity, Producer
from .processes import (
    Service,
    environment,
    grid_ready,
    grid_service,
    node_service,
    services,
    start_node_then_grid,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

MWM = 1
SLOT = 2
WALLET_SEED = "GRID9PROCESS9TEST".ljust(81, "9")
CONSUMER_SEED = "CONSUMER9ONE9PAYS".ljust(81, "K")
P1_ADDRESS = generate_address("PRODUCER9ONE".ljust(81, "R"), 0, 2)
IMPORT, EXPORT, CUT = Fraction(100), Fraction(20), Fraction(10, 100)


class Source(Entity):
    async def output(self, start: int, end: int, kwh: float) -> None:
        await self.publish({"command": "output", "startTime": start, "endTime": end, "output": kwh})


async def eventually(check: Callable[[], Awaitable[bool]], what: str, grid: Service) -> None:
    deadline = time.monotonic() + 90
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in time; grid log:\n{grid.tail()}")
        await asyncio.sleep(0.3)


def count_payments(database_url: str, status: str) -> int:
    db = Database(database_url, threads=1)
    try:
        with db.read() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(IncomingPayment)
                    .where(IncomingPayment.status == status)
                )
                or 0
            )
    finally:
        db.close()


def unsettled_payouts(database_url: str) -> int:
    db = Database(database_url, threads=1)
    try:
        with db.read() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(Payout)
                    .where(Payout.status.in_(("pending", "in_transfer")))
                )
                or 0
            )
    finally:
        db.close()


def next_slot(lead_ms: int = 4000) -> tuple[int, int]:
    """The slot that ends at least ``lead_ms`` from now (readings are in before it settles)."""
    slot_ms = SLOT * 1000
    end = ((int(time.time() * 1000) + lead_ms) // slot_ms + 1) * slot_ms
    return end - slot_ms, end


def expected(
    producers: list[tuple[Fraction, Fraction]], consumers: list[Fraction]
) -> tuple[list[int], list[int]]:
    """Bills and payouts of one slot, computed by hand from the rules in the README."""
    produced, consumed = sum(e for e, _ in producers), sum(consumers)
    price_micro = round(sum(e * p for e, p in producers) / produced * 1_000_000)
    local = min(produced, consumed)
    local_value = round(local * price_micro / 1_000_000)
    charges = local_value + round((consumed - local) * IMPORT)
    cut = round(local_value * CUT)
    payouts = local_value - cut + round((produced - local) * EXPORT)

    def share(total: int, weights: list[Fraction]) -> list[int]:
        exact = [total * w / sum(weights) for w in weights]
        floors = [int(x) for x in exact]
        order = sorted(range(len(exact)), key=lambda i: -(exact[i] - floors[i]))
        for i in order[: total - sum(floors)]:
            floors[i] += 1
        return floors

    return share(charges, consumers), share(payouts, [e for e, _ in producers])


async def test_real_processes_trade_and_survive_a_kill(tmp_path: Path, database_url: str) -> None:
    env = environment(tmp_path)
    node, node_url = node_service(
        tmp_path,
        env,
        genesis={
            generate_address(WALLET_SEED, 0, 2): 1_000_000,
            generate_address(CONSUMER_SEED, 0, 2): 5_000,
        },
        min_weight_magnitude=MWM,
    )
    grid, grid_url = grid_service(
        tmp_path,
        env,
        database=database_url,
        node_url=node_url,
        settings={
            "slot_seconds": SLOT,
            # Every slot is settled once all four households' readings are in.
            "settlement_delay_seconds": 30.0,
            "follow_interval": 0.4,
            "publish_interval": 0.4,
            "payments_interval": 0.5,
            "payout_interval": 0.5,
            "lease_seconds": 2.0,
            "min_weight_magnitude": MWM,
            "wallet_seed": WALLET_SEED,
            "import_price": 100,
            "export_price": 20,
            "grid_cut_percent": 10,
            "log_format": "text",
        },
    )
    with services(tmp_path) as running:
        running.extend([node, grid])
        start_node_then_grid(node, node_url, grid, grid_url)
        async with aiohttp.ClientSession() as session:
            iri = IriClient(session, node_url)
            client = GridClient(session, grid_url)
            # The operator portal is served by the same process.
            async with session.get(grid_url + "/portal/login") as response:
                assert response.status == 200
            sources = [Source(iri, f"source-{n}", MWM) for n in (1, 2)]
            p1, p2 = Producer(iri, "producer-1", MWM), Producer(iri, "producer-2", MWM)
            c1, c2 = Consumer(iri, "consumer-1", MWM), Consumer(iri, "consumer-2", MWM)
            for entity in (*sources, p1, p2, c1, c2):
                await entity.hello()
            await client.register(
                p1.registration_id, "Roof", "producer", root=p1.root, side_key=p1.side_key
            )
            await client.register(
                p2.registration_id, "Wind", "producer", root=p2.root, side_key=p2.side_key
            )
            r1 = await client.register(
                c1.registration_id, "Flat 1", "consumer", root=c1.root, side_key=c1.side_key
            )
            r2 = await client.register(
                c2.registration_id, "Flat 2", "consumer", root=c2.root, side_key=c2.side_key
            )
            assert r1.root is not None
            assert r1.side_key is not None
            assert r2.root is not None
            assert r2.side_key is not None

            async def trade(
                source_kwh: list[float], p2_kwh: float, usage: list[float], lead_ms: int = 7000
            ) -> None:
                start, end = next_slot(lead_ms)
                for source, kwh in zip(sources, source_kwh, strict=True):
                    await source.output(start, end, kwh)
                # The producer reads its sources' channels and publishes their sum.
                total = 0.0
                for source in sources:
                    messages = await iri.fetch_mam(source.root, "restricted", source.side_key)
                    total += sum(
                        m.data["output"]
                        for m in messages
                        if m.data.get("command") == "output" and m.data["endTime"] == end
                    )
                await p1.output(start, end, round(total, 6), 40, P1_ADDRESS)
                await p2.output(start, end, p2_kwh, 80, "invoice-P2")
                await c1.usage(start, end, usage[0])
                await c2.usage(start, end, usage[1])

            async def requests(consumer: Consumer, reply_root: str, key: str) -> list[dict]:
                data = await consumer.payment_requests(reply_root, key)
                return [d for d in data if d.get("command") == "payment-request"]

            # Slot 1: sources 0.7 + 1.1 kWh (producer 1 at 40), producer 2: 1 kWh at 80;
            # consumers 1.2 and 2.3 kWh.
            await trade([0.7, 1.1], 1.0, [1.2, 2.3])
            bills1, payouts1 = expected(
                [(Fraction("1.8"), Fraction(40)), (Fraction(1), Fraction(80))],
                [Fraction("1.2"), Fraction("2.3")],
            )
            assert (bills1, payouts1) == ([76, 146], [88, 49])

            async def both_billed(count: int) -> bool:
                return (
                    len(await requests(c1, r1.root, r1.side_key)) >= count
                    and len(await requests(c2, r2.root, r2.side_key)) >= count
                )

            await eventually(lambda: both_billed(1), "the first payment requests", grid)
            first_c1 = (await requests(c1, r1.root, r1.side_key))[0]
            first_c2 = (await requests(c2, r2.root, r2.side_key))[0]
            assert (first_c1["owed"], first_c1["usage"]) == (bills1[0], 1.2)
            assert (first_c2["owed"], first_c2["usage"]) == (bills1[1], 2.3)

            async def p1_balance(amount: int) -> bool:
                return (await iri.get_balances([P1_ADDRESS])).balances == [amount]

            await eventually(lambda: p1_balance(payouts1[0]), "the first payout", grid)

            # Consumer 1 pays its first bill; the grid sees the payment.
            await iri.send_transfer(
                CONSUMER_SEED,
                [Transfer(first_c1["paymentIdOrAddress"], first_c1["owed"], tag="BILL")],
                min_weight_magnitude=MWM,
            )

            async def payment_confirmed() -> bool:
                return bool(await asyncio.to_thread(count_payments, database_url, "confirmed"))

            # Only a payment a milestone confirmed counts; wait for the grid to see that.
            await eventually(payment_confirmed, "the grid's record of the confirmed payment", grid)

            # Crash the grid (no clean shutdown). Slot 2 is published while it is down:
            # producer 1 only (1.5 kWh from its sources), consumers 0.5 and 0.25 kWh.
            grid.kill()
            await trade([0.5, 1.0], 0.0, [0.5, 0.25], lead_ms=10000)
            grid.start()
            grid.wait_until(lambda: grid_ready(grid_url))
            bills2, payouts2 = expected(
                [(Fraction("1.5"), Fraction(40)), (Fraction(0), Fraction(80))],
                [Fraction("0.5"), Fraction("0.25")],
            )
            await eventually(lambda: both_billed(2), "the second payment requests", grid)
            await eventually(
                lambda: p1_balance(payouts1[0] + payouts2[0]), "the second payout", grid
            )
            second_c1 = (await requests(c1, r1.root, r1.side_key))[-1]
            second_c2 = (await requests(c2, r2.root, r2.side_key))[-1]
            # Consumer 1's confirmed payment counts; consumer 2 has not paid.
            assert second_c1["owed"] == bills2[0]
            assert second_c2["owed"] == bills1[1] + bills2[1]
            health = await client.health()
            assert (health["status"], health["leader"]) == ("ok", True)

            async def payouts_settled() -> bool:
                return await asyncio.to_thread(unsettled_payouts, database_url) == 0

            await eventually(payouts_settled, "the grid's record of the confirmed payouts", grid)

        assert grid.terminate() == 0
        assert node.terminate() == 0
        assert "grid stopped" in grid.tail(10)

    # Nothing was billed or paid twice across the crash.
    db = Database(database_url, threads=1)
    try:
        with db.read() as session:
            settlements = session.execute(
                select(Settlement.consumer_charges, Settlement.producer_payouts)
                .where(Settlement.readings_count > 0)
                .order_by(Settlement.slot_start)
            ).all()
            assert [tuple(row) for row in settlements if row[0] or row[1]] == [
                (sum(bills1), sum(payouts1)),
                (sum(bills2), sum(payouts2)),
            ]
            per_consumer = dict(
                session.execute(
                    select(Bill.registration_id, func.sum(Bill.amount)).group_by(
                        Bill.registration_id
                    )
                ).all()
            )
            assert per_consumer == {
                "consumer-1": bills1[0] + bills2[0],
                "consumer-2": bills1[1] + bills2[1],
            }
            paid = dict(
                session.execute(
                    select(Payout.registration_id, func.sum(Payout.amount)).group_by(
                        Payout.registration_id
                    )
                ).all()
            )
            assert paid == {
                "producer-1": payouts1[0] + payouts2[0],
                "producer-2": payouts1[1] + payouts2[1],
            }
            methods = set(
                session.execute(select(Payout.registration_id, Payout.method, Payout.status)).all()
            )
            assert ("producer-2", "off_tangle", "recorded") in methods
            assert {m for m in methods if m[0] == "producer-1"} == {
                ("producer-1", "tangle", "confirmed")
            }
    finally:
        db.close()


pytestmark = pytest.mark.slow
