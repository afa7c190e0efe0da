"""The whole grid in-process (its own node too), driven as the entities would."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING

import aiohttp
from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.client import IriClient, Transfer
from p2p_energy_protocol.grid_client import GridClient
from p2p_energy_protocol.mam import channel_root, mam_address
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.trinary import text_to_trytes
from sqlalchemy import func, select

from grid_server.grid.config import GridConfig
from grid_server.grid.db.models import Settlement
from grid_server.grid.server import GridServer

from .entities import Consumer, Producer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

MWM = 1
SLOT = 2
WALLET_SEED = "GRID9SERVER9TEST".ljust(81, "9")
CONSUMER_SEED = "CONSUMER9PAYS".ljust(81, "P")
PRODUCER_ADDRESS = generate_address("PRODUCER9PAID".ljust(81, "Q"), 0, 2)


def grid_config(tmp_path: Path, database_url: str) -> GridConfig:
    return replace(
        GridConfig(),
        port=0,
        database=database_url,
        data_dir=tmp_path,
        slot_seconds=SLOT,
        # The slot is settled once both households' readings are in; the deadline only
        # matters on a machine so loaded that one takes longer than this.
        settlement_delay_seconds=30.0,
        follow_interval=0.3,
        publish_interval=0.3,
        payments_interval=0.3,
        payout_interval=0.3,
        lease_seconds=3.0,
        min_weight_magnitude=MWM,
        wallet_seed=WALLET_SEED,
        import_price=100.0,
        export_price=20.0,
        grid_cut_percent=10.0,
        log_format="text",
    )


def node_document(tmp_path: Path) -> dict[str, object]:
    return {
        "port": 0,
        "database": f"sqlite:///{tmp_path / 'node.sqlite3'}",
        "min_weight_magnitude": MWM,
        "genesis": {
            generate_address(WALLET_SEED, 0, 2): 1_000_000,
            generate_address(CONSUMER_SEED, 0, 2): 10_000,
        },
        "coordinator": {"interval": 0.5},
    }


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


async def test_one_command_runs_the_whole_grid(tmp_path: Path, database_url: str) -> None:
    # The operator's currency rate is published beside the price (health, payment requests).
    config = replace(
        grid_config(tmp_path, database_url),
        currency="EUR",
        currency_per_million_iota=Decimal("0.25"),
    )
    async with (
        GridServer(config, node_document=node_document(tmp_path)) as grid,
        aiohttp.ClientSession() as session,
    ):
        node = IriClient(session, grid.node_url)
        client = GridClient(session, grid.url)
        health = await client.health()
        assert (health["database"], health["node"]) == ("ok", "ok")
        assert (health["currency"], health["currencyPerMillionIota"]) == ("EUR", "0.25")

        producer = Producer(node, "producer-0001", MWM)
        consumer = Consumer(node, "consumer-0001", MWM)
        await producer.hello()
        await consumer.hello()
        # Spam at the address of the producer's next message must not block its channel.
        spam = BundleBuilder()
        spam.add_transfer(
            mam_address(channel_root(producer.channel), "restricted"),
            0,
            tag="SPAM",
            message_trytes=text_to_trytes('{"command":"output","output":1e9}'),
        )
        spam.finalize()
        await node.send_trytes(spam.to_trytes(), min_weight_magnitude=MWM)
        await client.register(
            producer.registration_id,
            "PV",
            "producer",
            root=producer.root,
            side_key=producer.side_key,
        )
        reply = await client.register(
            consumer.registration_id,
            "Flat",
            "consumer",
            root=consumer.root,
            side_key=consumer.side_key,
        )
        assert reply.root is not None
        assert reply.side_key is not None

        # Readings of a slot ending a few seconds from now: the grid settles it once both
        # are in (one arriving after the deadline would be billed in the next slot).
        slot_ms = SLOT * 1000
        end = ((int(time.time() * 1000) + 3000) // slot_ms + 1) * slot_ms
        start = end - slot_ms
        await producer.output(start, end, 2.0, 50, PRODUCER_ADDRESS)
        await consumer.usage(start, end, 1.5)

        # Computed by hand: 1.5 kWh local at 50 = 75 IOTA; 0.5 kWh exported at 20 = 10;
        # cut 10 % of 75 = 7.5, rounded half to even = 8; payout 75 - 8 + 10 = 77.
        async def billed() -> bool:
            data = await consumer.payment_requests(reply.root or "", reply.side_key or "")
            return any(d.get("command") == "payment-request" for d in data)

        await eventually(billed)
        messages = await consumer.payment_requests(reply.root, reply.side_key)
        assert messages[0] == {"command": "hello"}
        request = messages[1]
        assert (request["owed"], request["usage"]) == (75, 1.5)
        assert (request["currency"], request["currencyPerMillionIota"]) == ("EUR", "0.25")
        payment_address = request["paymentIdOrAddress"]
        # A fresh wallet address: key index 1, or 2 when the producer's payout took index 1
        # for its remainder first (the publisher and payout workers run concurrently).
        assert payment_address in {generate_address(WALLET_SEED, index, 2) for index in (1, 2)}

        async def producer_paid() -> bool:
            return (await node.get_balances([PRODUCER_ADDRESS])).balances == [77]

        await eventually(producer_paid)

        # The consumer pays; the grid matches and confirms it.
        await node.send_transfer(
            CONSUMER_SEED, [Transfer(payment_address, 75, tag="BILL")], min_weight_magnitude=MWM
        )
        assert grid.db is not None

        async def payment_confirmed() -> bool:
            assert grid.db is not None
            from grid_server.grid.db.models import IncomingPayment

            return bool(
                await grid.db.run_read(
                    lambda s: s.scalar(
                        select(func.count())
                        .select_from(IncomingPayment)
                        .where(IncomingPayment.status == "confirmed")
                    )
                )
            )

        await eventually(payment_confirmed)
        settlements = await grid.db.run_read(
            lambda s: s.execute(
                select(
                    Settlement.consumer_charges, Settlement.producer_payouts, Settlement.grid_cut
                )
            ).all()
        )
        assert [tuple(row) for row in settlements] == [(75, 77, 8)]
        # The one producer asked 50 IOTA/kWh, so that is the consensus price households see.
        assert (await client.health())["consensusPrice"] == 50.0

        # Deregistration: goodbye on the return channel.
        await client.deregister(consumer.registration_id, consumer.side_key)

        async def said_goodbye() -> bool:
            data = await consumer.payment_requests(reply.root or "", reply.side_key or "")
            return data[-1] == {"command": "goodbye"}

        await eventually(said_goodbye)
