"""Migration 0002 (narrow transaction rows, payload and approval apart) keeps every answer.

A node stores a Tangle with everything the schema records (value bundles, a milestone,
tips, an unsolid transaction, spent addresses); the database is taken back to revision
0001 and checked against what that schema means; a node on it then upgrades and must
answer every query exactly as before.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from typing import TYPE_CHECKING, Any

from p2p_energy_protocol.client import IriClient, Transfer
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.pool import NullPool

from grid_server.db_migrations import sqlite_transactions
from grid_server.node import CoordinatorConfig
from grid_server.node.storage import MIGRATIONS, TangleStore, lookup_key

from . import legacy_schema as legacy
from .helpers import FUNDED_SEED, MWM, RECEIVER, attach, funded_address, zero_value_bundle

if TYPE_CHECKING:
    import aiohttp

    from grid_server.node import NodeServer

# Fields that change with the clock or the process, not with the stored Tangle.
_VOLATILE = {"duration", "time", "jreFreeMemory", "jreMaxMemory", "jreTotalMemory"}
UNKNOWN_PARENT = "UNKNOWN9PARENT".ljust(81, "9")


async def answer(session: aiohttp.ClientSession, url: str, **body: Any) -> dict[str, Any]:
    async with session.post(url, json=body, headers={"X-IOTA-API-Version": "1"}) as response:
        assert response.status == 200, await response.text()
        answered: dict[str, Any] = json.loads(await response.read())
    return {key: value for key, value in answered.items() if key not in _VOLATILE}


async def every_answer(
    session: aiohttp.ClientSession, node: NodeServer, hashes: list[str]
) -> dict[str, Any]:
    url = node.url
    addresses = [RECEIVER, funded_address(0), funded_address(1), node.runtime.coordinator_address]
    found: dict[str, Any] = {
        "info": await answer(session, url, command="getNodeInfo"),
        "tips": await answer(session, url, command="getTips"),
        "trytes": await answer(session, url, command="getTrytes", hashes=hashes),
        "by_address": await answer(session, url, command="findTransactions", addresses=addresses),
        "by_tag": await answer(session, url, command="findTransactions", tags=["NODE9TEST"]),
        "by_approvee": await answer(
            session, url, command="findTransactions", approvees=[*hashes, UNKNOWN_PARENT]
        ),
        "balances": await answer(
            session, url, command="getBalances", addresses=addresses, threshold=100
        ),
        "spent": await answer(session, url, command="wereAddressesSpentFrom", addresses=addresses),
        "included": await answer(
            session, url, command="getInclusionStates", transactions=hashes, tips=[]
        ),
    }
    bundles = sorted({tx["bundle"] for tx in await trytes_fields(session, url, hashes)})
    found["by_bundle"] = await answer(session, url, command="findTransactions", bundles=bundles)
    tips = found["tips"]["hashes"]
    found["included_by_tips"] = await answer(
        session, url, command="getInclusionStates", transactions=hashes, tips=tips
    )
    tails = [
        h
        for h, tx in zip(hashes, await trytes_fields(session, url, hashes), strict=True)
        if tx["current_index"] == 0 and tx["trunk"] != UNKNOWN_PARENT
    ]
    found["consistent"] = await answer(session, url, command="checkConsistency", tails=tails)
    with node.runtime.store.connect() as conn:
        found["page"] = TangleStore.page_since(conn, 0, 10_000)
        found["infos"] = sorted(TangleStore.infos(conn, hashes).values(), key=lambda i: i.seq)
        found["missing"] = TangleStore.missing_parents(conn, 100)
    return found


async def trytes_fields(
    session: aiohttp.ClientSession, url: str, hashes: list[str]
) -> list[dict[str, Any]]:
    from p2p_energy_protocol.transaction import Transaction

    trytes = (await answer(session, url, command="getTrytes", hashes=hashes))["trytes"]
    return [
        {
            "bundle": tx.bundle,
            "current_index": tx.current_index,
            "trunk": tx.trunk_transaction,
        }
        for tx in map(Transaction.from_trytes, trytes)
    ]


def downgrade_to_0001(database_url: str) -> None:
    engine = create_engine(
        database_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=NullPool
    )
    if engine.dialect.name == "sqlite":
        sqlite_transactions(engine, immediate=True)
    try:
        with engine.begin() as conn:
            MIGRATIONS.downgrade(conn, "0001")
        with engine.connect() as conn:
            assert MIGRATIONS.current(conn) == "0001"
            assert not inspect(conn).has_table("node_trytes")
            rows = conn.execute(select(legacy.transactions).order_by(legacy.transactions.c.seq))
            return check_legacy_rows([row._asdict() for row in rows])
    finally:
        engine.dispose()


def check_legacy_rows(rows: list[dict[str, Any]]) -> None:
    """What revision 0001's flags mean, checked from the rows themselves."""
    from p2p_energy_protocol.transaction import Transaction

    stored = {row["hash"] for row in rows}
    referenced = {parent for row in rows for parent in (row["trunk"], row["branch"])}
    assert rows
    for row in rows:
        tx = Transaction.from_trytes(row["trytes"])
        assert (tx.hash, tx.address, tx.bundle) == (row["hash"], row["address"], row["bundle"])
        assert bool(row["approved"]) == (row["hash"] in referenced)
        parents_stored = {row["trunk"], row["branch"]} <= stored | {"9" * 81}
        if not parents_stored:
            assert not row["solid"]
    assert any(not row["solid"] for row in rows)
    assert any(row["confirmed"] is not None for row in rows)


async def test_upgrading_from_0001_keeps_every_answer(
    start_node: Any, database_url: str, session: aiohttp.ClientSession
) -> None:
    node: NodeServer = await start_node(database_url)
    client = IriClient(session, node.url)
    messages = await client.send_trytes(zero_value_bundle(message="kept", count=3), 3, MWM)
    payment = await client.send_transfer(
        FUNDED_SEED, [Transfer(RECEIVER, 42)], min_weight_magnitude=MWM
    )
    assert await node.runtime.issue_milestone()
    pending = await client.send_trytes(zero_value_bundle(message="pending", count=2), 3, MWM)
    orphan = attach(zero_value_bundle(message="orphan"), UNKNOWN_PARENT, UNKNOWN_PARENT)
    await client.store_transactions(orphan)
    from p2p_energy_protocol.transaction import Transaction

    hashes = [
        *(tx.hash for tx in [*messages, *payment, *pending]),
        *(Transaction.from_trytes(t).hash for t in orphan),
    ]
    coordinator = node.runtime.coordinator_address
    before = await every_answer(session, node, hashes)
    assert before["missing"] == [UNKNOWN_PARENT]
    assert before["tips"]["hashes"]
    await node.stop()

    downgrade_to_0001(database_url)
    # A follower, so no milestone round changes the Tangle between the two readings.
    node = await start_node(database_url, coordinator=CoordinatorConfig(address=coordinator))
    after = await every_answer(session, node, hashes)
    assert after == before
    with node.runtime.store.connect() as conn:
        assert MIGRATIONS.current(conn) == MIGRATIONS.head() == "0003"


def test_the_migration_computes_the_same_keys_as_the_node() -> None:
    migration = importlib.import_module(
        "grid_server.node.migrations.versions.0002_compact_transactions"
    )
    for value in ("9" * 81, "A" * 81, "NODE9TEST".ljust(27, "9"), "Z" * 27):
        assert migration._lookup_key(value) == lookup_key(value)
        digest = hashlib.sha256(value.encode()).digest()
        assert lookup_key(value) == int.from_bytes(digest[:8], "big", signed=True)
