"""The IRI command API of an in-process node: answers, errors and limits."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from p2p_energy_protocol.address import add_checksum
from p2p_energy_protocol.errors import IriApiError
from p2p_energy_protocol.transaction import Transaction

from .helpers import MWM, NULL_HASH, RECEIVER, attach, funded_address, zero_value_bundle

if TYPE_CHECKING:
    import aiohttp
    from p2p_energy_protocol.client import IriClient

    from grid_server.node import NodeServer

HEADERS = {"X-IOTA-API-Version": "1", "Content-Type": "application/json"}


async def post(
    session: aiohttp.ClientSession,
    node: NodeServer,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(node.url, data=data, headers=headers or HEADERS) as response:
        return response.status, await response.json()


async def test_node_info_reports_milestones_and_coordinator(
    node: NodeServer, client: IriClient
) -> None:
    await node.runtime.issue_milestone()
    info = await client.get_node_info()
    assert info.coordinator_address == node.runtime.coordinator_address
    assert info.latest_milestone_index >= 1
    assert info.latest_solid_milestone_index == info.latest_milestone_index
    assert info.latest_milestone != NULL_HASH
    assert info.is_synced
    assert "duration" in info.raw


async def test_missing_api_version_header_is_rejected(
    node: NodeServer, session: aiohttp.ClientSession
) -> None:
    status, body = await post(
        session, node, {"command": "getNodeInfo"}, {"Content-Type": "application/json"}
    )
    assert status == 400
    assert body["error"] == "Invalid API Version"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Invalid JSON"),
        (b"[1, 2]", "JSON object"),
        ({"hashes": []}, "COMMAND parameter has not been specified"),
        ({"command": 5}, "'command' must be a string"),
        ({"command": "launchRockets"}, "Command [launchRockets] is unknown"),
        ({"command": "getTrytes"}, "'hashes' is required"),
        ({"command": "getTrytes", "hashes": "ABC"}, "must be a list"),
        ({"command": "getTrytes", "hashes": ["A" * 80]}, "item 0 is not an 81-tryte hash"),
        ({"command": "getTrytes", "hashes": ["a" * 81]}, "item 0 is not an 81-tryte hash"),
        ({"command": "findTransactions"}, "at least one of addresses"),
        ({"command": "findTransactions", "tags": ["A" * 28]}, "1 to 27 trytes"),
        ({"command": "findTransactions", "addresses": ["A" * 82]}, "item 0"),
        ({"command": "getBalances", "addresses": [RECEIVER], "threshold": 101}, "1..100"),
        ({"command": "getBalances", "addresses": [RECEIVER], "threshold": True}, "integer"),
        ({"command": "getTransactionsToApprove", "depth": 16}, "Invalid depth input"),
        ({"command": "getTransactionsToApprove", "depth": "3"}, "must be an integer"),
        ({"command": "getTransactionsToApprove", "depth": 3, "reference": "X"}, "reference"),
        ({"command": "storeTransactions", "trytes": []}, "the list is empty"),
        ({"command": "storeTransactions", "trytes": ["9" * 10]}, "2673 trytes long"),
        ({"command": "storeTransactions", "trytes": [5]}, "must be a string"),
        ({"command": "attachToTangle", "trytes": ["9" * 2673]}, "trunkTransaction"),
        (
            {
                "command": "attachToTangle",
                "trunkTransaction": NULL_HASH,
                "branchTransaction": NULL_HASH,
                "minWeightMagnitude": 0,
                "trytes": ["9" * 2673],
            },
            "minWeightMagnitude",
        ),
        ({"command": "checkConsistency", "tails": []}, "the list is empty"),
        ({"command": "addNeighbors", "uris": ["udp://1.2.3.4:14600"]}, "Invalid uris input"),
        ({"command": "wereAddressesSpentFrom", "addresses": [RECEIVER + "AAAAAAAAA"]}, "item 0"),
        ({"command": "syncTransactions", "since": -1}, "since"),
    ],
)
async def test_bad_requests_get_clear_400_errors(
    node: NodeServer, session: aiohttp.ClientSession, body: Any, message: str
) -> None:
    status, answer = await post(session, node, body)
    assert status == 400, answer
    assert message in answer["error"]
    assert isinstance(answer["duration"], int)


async def test_request_over_the_body_limit_is_refused(
    start_node: Any, sqlite_url: str, session: aiohttp.ClientSession
) -> None:
    from grid_server.node import ApiLimits

    node = await start_node(sqlite_url, limits=ApiLimits(max_body_length=1_000))
    status, answer = await post(session, node, {"command": "getTrytes", "hashes": ["A" * 81] * 20})
    assert status == 400
    assert "Request too long" in answer["error"]


async def test_list_limits_are_enforced(
    start_node: Any, sqlite_url: str, session: aiohttp.ClientSession
) -> None:
    from grid_server.node import ApiLimits

    node = await start_node(sqlite_url, limits=ApiLimits(max_get_trytes=2, max_requests_list=2))
    status, answer = await post(session, node, {"command": "getTrytes", "hashes": ["A" * 81] * 3})
    assert status == 400
    assert "at most 2" in answer["error"]
    status, answer = await post(
        session, node, {"command": "getBalances", "addresses": [RECEIVER] * 3}
    )
    assert status == 400


async def test_store_find_and_get_trytes(node: NodeServer, client: IriClient) -> None:
    sent = await client.send_trytes(zero_value_bundle(message="hello", count=3), 3, MWM)
    hashes = [tx.hash for tx in sent]
    assert [tx.current_index for tx in sent] == [0, 1, 2]
    assert sorted(await client.find_transactions(addresses=[RECEIVER])) == sorted(hashes)
    with_checksum = add_checksum(RECEIVER)
    assert sorted(await client.find_transactions(addresses=[with_checksum])) == sorted(hashes)
    assert sorted(await client.find_transactions(bundles=[sent[0].bundle])) == sorted(hashes)
    assert sorted(await client.find_transactions(tags=["NODE9TEST"])) == sorted(hashes)
    # Fields are AND-ed, values within a field OR-ed.
    assert await client.find_transactions(addresses=[RECEIVER], tags=["OTHER"]) == []
    found = await client.find_transactions(addresses=[RECEIVER, "B" * 81], bundles=[sent[0].bundle])
    assert sorted(found) == sorted(hashes)
    assert await client.find_transactions(approvees=[hashes[1]]) == [hashes[0]]
    unknown = "C" * 81
    trytes = await client.get_trytes([hashes[2], unknown, hashes[0]])
    assert trytes[1] == "9" * 2673
    assert Transaction.from_trytes(trytes[0]).hash == hashes[2]
    assert Transaction.from_trytes(trytes[2]).hash == hashes[0]
    # Storing again is a no-op, as in IRI.
    await client.store_transactions([tx.to_trytes() for tx in sent])
    assert len(await client.find_transactions(addresses=[RECEIVER])) == 3


async def test_a_broadcast_of_what_was_just_stored_is_not_stored_again(
    node: NodeServer, client: IriClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grid_server.node import runtime

    stores: list[int] = []
    store = node.runtime.tangle.store_transactions

    def counting(trytes: Any, *, from_peer: bool) -> Any:
        stores.append(len(trytes))
        return store(trytes, from_peer=from_peer)

    monkeypatch.setattr(node.runtime.tangle, "store_transactions", counting)
    sent = [tx.to_trytes() for tx in await client.send_trytes(zero_value_bundle(count=2), 3, MWM)]
    assert stores == [2]  # send_trytes stores, then broadcasts the same trytes
    await client.broadcast_transactions(sent)
    assert stores == [2]
    # Anything not stored lately takes the whole path (and is still a no-op when known).
    other = attach(zero_value_bundle(message="other"))
    await client.broadcast_transactions([*sent, *other])
    assert stores == [2, 3]
    assert len(await client.find_transactions(tags=["NODE9TEST"])) == 3
    monkeypatch.setattr(runtime, "RECENTLY_STORED", 1)
    await client.store_transactions(attach(zero_value_bundle(message="third")))
    await client.store_transactions(sent)  # forgotten: looked up, known, nothing stored
    assert stores == [2, 3, 1, 2]
    assert len(await client.find_transactions(tags=["NODE9TEST"])) == 4


async def test_find_transactions_over_the_limit_is_refused(
    start_node: Any, sqlite_url: str, session: aiohttp.ClientSession
) -> None:
    from p2p_energy_protocol.client import IriClient

    from grid_server.node import ApiLimits

    node = await start_node(sqlite_url, limits=ApiLimits(max_find_transactions=2))
    client = IriClient(session, node.url)
    await client.send_trytes(zero_value_bundle(count=3), 3, MWM)
    with pytest.raises(IriApiError, match="more than 2 transactions match"):
        await client.find_transactions(addresses=[RECEIVER])


async def test_tips_and_transactions_to_approve(node: NodeServer, client: IriClient) -> None:
    await node.runtime.issue_milestone()
    first = await client.send_trytes(zero_value_bundle(message="a"), 3, MWM)
    tips = await client.get_tips()
    assert first[0].hash in tips
    pair = await client.get_transactions_to_approve(3)
    assert pair.trunk in tips
    assert pair.branch in tips
    # A reference makes the trunk approve it (here: the reference is still a tip).
    referenced = await client.get_transactions_to_approve(3, reference=first[0].hash)
    assert referenced.trunk == first[0].hash
    second = await client.send_trytes(zero_value_bundle(message="b"), 3, MWM, first[0].hash)
    assert second[-1].trunk_transaction == first[0].hash
    walked = await client.get_transactions_to_approve(3, reference=first[0].hash)
    assert walked.trunk == second[0].hash
    with pytest.raises(IriApiError, match="One of the reference transactions is absent"):
        await client.get_transactions_to_approve(3, reference="D" * 81)


async def test_attach_to_tangle_chains_like_iri(node: NodeServer, client: IriClient) -> None:
    trunk, branch = "A" * 81, "B" * 81
    attached = await client.attach_to_tangle(trunk, branch, MWM, zero_value_bundle(count=3))
    transactions = [Transaction.from_trytes(t) for t in attached]
    assert [tx.current_index for tx in transactions] == [0, 1, 2]
    assert (transactions[2].trunk_transaction, transactions[2].branch_transaction) == (
        trunk,
        branch,
    )
    assert transactions[1].trunk_transaction == transactions[2].hash
    assert transactions[0].trunk_transaction == transactions[1].hash
    assert transactions[0].branch_transaction == trunk
    # The node never attaches below its own minimum weight magnitude.
    from p2p_energy_protocol.pow import transaction_weight

    assert all(transaction_weight(tx.hash) >= MWM for tx in transactions)


async def test_remote_proof_of_work_is_bounded(client: IriClient) -> None:
    with pytest.raises(IriApiError, match="'minWeightMagnitude' must be 1..14"):
        await client.attach_to_tangle(NULL_HASH, NULL_HASH, 15, zero_value_bundle())
    with pytest.raises(IriApiError, match="at most 100 items"):
        await client.attach_to_tangle(NULL_HASH, NULL_HASH, MWM, zero_value_bundle() * 101)


async def test_interrupt_attaching_stops_a_long_search(
    start_node: Any, sqlite_url: str, session: aiohttp.ClientSession
) -> None:
    import asyncio

    from grid_server.node import ApiLimits

    node = await start_node(sqlite_url, limits=ApiLimits(max_attach_weight=60))

    request = {
        "command": "attachToTangle",
        "trunkTransaction": NULL_HASH,
        "branchTransaction": NULL_HASH,
        "minWeightMagnitude": 60,
        "trytes": zero_value_bundle(),
    }
    attaching = asyncio.create_task(post(session, node, request))
    await asyncio.sleep(0.5)
    status, answer = await post(session, node, {"command": "interruptAttachingToTangle"})
    assert (status, answer.keys() - {"duration"}) == (200, set())
    status, answer = await asyncio.wait_for(attaching, 10)
    assert status == 400
    assert "interrupted" in answer["error"]


async def test_inclusion_states_follow_milestones(node: NodeServer, client: IriClient) -> None:
    await node.runtime.issue_milestone()
    sent = await client.send_trytes(zero_value_bundle(), 3, MWM)
    tail = sent[0].hash
    assert await client.get_inclusion_states([tail]) == [False]
    info = await client.get_node_info()
    assert await client.get_inclusion_states([tail], [info.latest_solid_milestone]) == [False]
    # An unconfirmed tip references the transaction; the milestone does not yet.
    later = await client.send_trytes(zero_value_bundle(message="x"), 3, MWM, tail)
    assert await client.get_inclusion_states([tail], [later[0].hash]) == [True]
    assert await node.runtime.issue_milestone()
    info = await client.get_node_info()
    assert await client.get_inclusion_states([tail, later[0].hash]) == [True, True]
    states = await client.get_inclusion_states([tail, "E" * 81], [info.latest_solid_milestone])
    assert states == [True, False]
    with pytest.raises(IriApiError, match="One of the tips is absent"):
        await client.get_inclusion_states([tail], ["F" * 81])


async def test_check_consistency(node: NodeServer, client: IriClient) -> None:
    sent = await client.send_trytes(zero_value_bundle(count=2), 3, MWM)
    assert await client.check_consistency([sent[0].hash]) == (True, "")
    with pytest.raises(IriApiError, match="not a tail"):
        await client.check_consistency([sent[1].hash])
    with pytest.raises(IriApiError, match="absent"):
        await client.check_consistency(["G" * 81])


async def test_non_solid_transaction_is_stored_but_not_consistent(
    node: NodeServer, client: IriClient
) -> None:
    orphan = attach(zero_value_bundle(), trunk="H" * 81, branch="H" * 81)
    await client.store_transactions(orphan)
    tail = Transaction.from_trytes(orphan[0]).hash
    state, info = await client.check_consistency([tail])
    assert state is False
    assert "not solid" in info
    assert tail not in await client.get_tips()
    assert (await client.get_node_info()).raw["transactionsToRequest"] == 1


async def test_a_parent_arriving_after_its_approver_is_no_tip(
    node: NodeServer, client: IriClient
) -> None:
    # Neighbours deliver out of order: the approver is stored first (unsolid), then its
    # parent, which some stored transaction already approves.
    pair = await client.get_transactions_to_approve(3)
    parent = attach(zero_value_bundle(message="parent"), trunk=pair.trunk, branch=pair.branch)
    parent_tail = Transaction.from_trytes(parent[-1]).hash
    child = attach(zero_value_bundle(message="child"), trunk=parent_tail, branch=parent_tail)
    child_tail = Transaction.from_trytes(child[-1]).hash
    await client.store_transactions(child)
    await client.store_transactions(parent)
    tips = await client.get_tips()
    assert parent_tail not in tips
    assert child_tail in tips


async def test_neighbors_commands(node: NodeServer, client: IriClient) -> None:
    assert await client.get_neighbors() == []
    assert await client.add_neighbors(["tcp://127.0.0.1:1", "http://localhost:2"]) == 2
    assert await client.add_neighbors(["http://127.0.0.1:1"]) == 0
    addresses = sorted(n["address"] for n in await client.get_neighbors())
    assert addresses == ["http://127.0.0.1:1", "http://localhost:2"]
    assert await client.remove_neighbors(["tcp://127.0.0.1:1", "http://127.0.0.1:9"]) == 1
    assert [n["address"] for n in await client.get_neighbors()] == ["http://localhost:2"]
    with pytest.raises(IriApiError, match="its own neighbour"):
        await client.add_neighbors([node.url])


async def test_were_addresses_spent_from_defaults_to_false(client: IriClient) -> None:
    assert await client.were_addresses_spent_from([RECEIVER, funded_address(0)]) == [False, False]


async def test_openapi_document_describes_every_command(
    node: NodeServer, session: aiohttp.ClientSession
) -> None:
    from grid_server.node.commands import COMMANDS

    async with session.get(f"{node.url}/api/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    body = document["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["discriminator"]["mapping"]) == set(COMMANDS)
    assert set(document["components"]["schemas"]) == set(COMMANDS)
    assert set(document["paths"]["/"]["post"]["responses"]) == {
        *("200", "400", "401", "403", "408", "429", "500", "503")
    }
    import jsonschema

    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


async def test_answers_match_the_openapi_document(
    node: NodeServer, client: IriClient, session: aiohttp.ClientSession
) -> None:
    import jsonschema

    async with session.get(f"{node.url}/api/openapi.json") as response:
        document = await response.json()
    responses = document["paths"]["/"]["post"]["responses"]
    ok_schema = responses["200"]["content"]["application/json"]["schema"]
    error_schema = responses["400"]["content"]["application/json"]["schema"]
    operation = document["paths"]["/"]["post"]
    requests_schema = {
        **operation["requestBody"]["content"]["application/json"]["schema"],
        "components": document["components"],
    }
    await node.runtime.issue_milestone()
    sent = await client.send_trytes(zero_value_bundle(), 3, MWM)
    bodies = [
        {"command": "getNodeInfo"},
        {"command": "getTips"},
        {"command": "findTransactions", "addresses": [RECEIVER]},
        {"command": "getTrytes", "hashes": [sent[0].hash]},
        {"command": "getTransactionsToApprove", "depth": 3},
        {"command": "getBalances", "addresses": [funded_address(0)], "threshold": 100},
        {"command": "getInclusionStates", "transactions": [sent[0].hash]},
        {"command": "wereAddressesSpentFrom", "addresses": [RECEIVER]},
        {"command": "checkConsistency", "tails": [sent[0].hash]},
        {"command": "getNeighbors"},
        {"command": "syncTransactions", "since": 0, "limit": 5},
        {"command": "storeTransactions", "trytes": [sent[0].to_trytes()]},
    ]
    for body in bodies:
        jsonschema.validate(body, requests_schema)
        status, answer = await post(session, node, body)
        assert status == 200, answer
        jsonschema.validate(answer, ok_schema)
    status, answer = await post(session, node, {"command": "nope"})
    jsonschema.validate(answer, error_schema)


async def test_a_large_request_is_read_completely(node: NodeServer, client: IriClient) -> None:
    trytes = attach(zero_value_bundle(message="many", count=60))
    assert sum(map(len, trytes)) > 150_000  # arrives in many network chunks
    await client.store_transactions(trytes)
    assert len(await client.find_transactions(addresses=[RECEIVER])) == 60
