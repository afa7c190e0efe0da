"""The node while its database is away: a 503 that can be retried, never a 500, and
the coordinator never signs one milestone index twice."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from grid_server.node.milestones import milestone_tag
from grid_server.node.storage import TangleStore, database_unavailable

from .helpers import NULL_HASH, attach, zero_value_bundle

if TYPE_CHECKING:
    import aiohttp

    from grid_server.node import NodeServer

HEADERS = {"X-IOTA-API-Version": "1", "Content-Type": "application/json"}


def lost_connection() -> OperationalError:
    return OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))


async def post(
    session: aiohttp.ClientSession, node: NodeServer, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with session.post(node.url, data=json.dumps(body), headers=HEADERS) as response:
        return response.status, await response.json()


def test_connection_faults_count_as_unavailable_and_data_faults_do_not() -> None:
    assert database_unavailable(lost_connection())
    invalidated = DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    assert database_unavailable(invalidated)
    assert not database_unavailable(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not database_unavailable(ValueError("no database involved"))


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
