"""The node while its database is away: a 503 that can be retried, never a 500, and
the coordinator never signs one milestone index twice."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.exc import OperationalError

from grid_server.database_availability import DatabaseUnavailableError
from grid_server.node import NodeServer
from grid_server.node.milestones import milestone_tag
from grid_server.node.storage import TangleStore

from .helpers import NULL_HASH, attach, node_config, zero_value_bundle
from .process import free_port

if TYPE_CHECKING:
    import aiohttp

HEADERS = {"X-IOTA-API-Version": "1", "Content-Type": "application/json"}


def lost_connection() -> OperationalError:
    return OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))


async def post(
    session: aiohttp.ClientSession, node: NodeServer, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with session.post(node.url, data=json.dumps(body), headers=HEADERS) as response:
        return response.status, await response.json()


async def test_a_node_waits_for_its_database_at_start_and_answers_503_json_meanwhile(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on this port: every connection is refused, as while PostgreSQL boots.
    database = f"postgresql+psycopg://p2p@127.0.0.1:{free_port()}/node"
    # Long enough for two attempts even on a loaded machine (the first one imports the driver).
    node = NodeServer(node_config(database, database_wait=4.0), session=session)
    starting = asyncio.create_task(node.start())
    try:
        while node.url.endswith(":0") and not starting.done():
            await asyncio.sleep(0.01)  # until the port is bound
        status, body = await post(session, node, {"command": "getNodeInfo"})
        assert status == 503
        assert body == {"error": "The node is starting; try again shortly."}
    finally:
        with pytest.raises(DatabaseUnavailableError, match=r"after waiting 4 s: .*refused"):
            await starting
    waits = [r for r in caplog.records if "the database is unavailable (attempt" in r.message]
    assert len(waits) >= 2
    assert all(record.exc_info is None for record in waits)


async def test_a_lost_connection_mid_store_is_a_503_and_the_same_request_succeeds_later(
    node: NodeServer, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    trytes = attach(zero_value_bundle(message="OUTAGE"), NULL_HASH, NULL_HASH)
    real_insert = TangleStore.insert_transactions
    failures = [lost_connection()]

    def insert_failing_once(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real_insert(*args, **kwargs)

    monkeypatch.setattr(TangleStore, "insert_transactions", staticmethod(insert_failing_once))
    request = {"command": "storeTransactions", "trytes": trytes}
    status, body = await post(session, node, request)
    assert status == 503
    assert body["error"] == "The node's database is unavailable; try again later."
    find = {"command": "findTransactions", "tags": ["NODE9TEST"]}
    status, body = await post(session, node, find)
    assert status == 200
    assert body["hashes"] == []  # rolled back: nothing half stored

    status, body = await post(session, node, request)
    assert status == 200, body
    status, body = await post(session, node, find)
    assert status == 200
    assert len(body["hashes"]) == 1


async def test_a_milestone_stored_by_a_failed_round_is_recognised_not_signed_again(
    node: NodeServer, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = node.runtime
    await runtime.issue_milestone()
    status, _ = await post(
        session,
        node,
        {"command": "storeTransactions", "trytes": attach(zero_value_bundle(message="TIP"))},
    )
    assert status == 200
    before = (await runtime.read(runtime.tangle.milestone_state)).latest
    assert before is not None
    index = before.index + 1

    tangle = runtime.tangle
    real_process, real_store = tangle.process_milestones, tangle.store_transactions
    storing = False
    failures = [lost_connection()]

    def store(trytes: Any, *, from_peer: bool) -> Any:
        nonlocal storing
        storing = True
        try:
            return real_store(trytes, from_peer=from_peer)
        finally:
            storing = False

    def process_failing_after_store() -> bool:
        # The milestone's transactions are committed, then the database goes away
        # before they are recognised.
        if storing and failures:
            raise failures.pop()
        return real_process()

    monkeypatch.setattr(tangle, "store_transactions", store)
    monkeypatch.setattr(tangle, "process_milestones", process_failing_after_store)
    with pytest.raises(OperationalError):
        await runtime.issue_milestone()
    assert not failures
    await runtime.issue_milestone()

    latest = (await runtime.read(runtime.tangle.milestone_state)).latest
    assert latest is not None
    assert latest.index >= index
    with runtime.store.connect() as conn:
        signed = TangleStore.tails_at(conn, runtime.coordinator_address, milestone_tag(index))
    assert len(signed) == 1  # one milestone for the index, not two competing ones
