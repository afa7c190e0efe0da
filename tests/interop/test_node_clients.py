"""The real pyota 2.1.0 and @iota/core 1.0.0-beta.30 clients against a real node process.

One ``p2p-energy node`` process (started from the console script on a free
loopback port) serves the whole module; every test uses its own seeds and
addresses.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import pytest_socket
from p2p_energy_protocol.client import IriClient, Transfer
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.trinary import TRYTE_ALPHABET

from tests.node.process import NodeProcess, command

from .node_oracle import run_node

CURL_KERNEL_INDEPENDENT = True
"""Run once: the clients talk to one node process for the whole module (a second pass
would find the first pass's transactions), and that process picks its own kernel."""

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

pytestmark = [pytest.mark.interop, pytest.mark.slow]

MWM = 3
FUNDED_SEED = "INTEROP9GENESIS9WALLET".ljust(81, "9")
COORDINATOR_SEED = "INTEROP9COORDINATOR".ljust(81, "9")
SUPPLY = 1_000_000_000
_random = random.Random(20_261_127)


def new_seed() -> str:
    return "".join(_random.choice(TRYTE_ALPHABET) for _ in range(81))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    pytest_socket.enable_socket()
    process = NodeProcess(
        tmp_path_factory.mktemp("interop-node"),
        {
            "min_weight_magnitude": MWM,
            "genesis": {generate_address(FUNDED_SEED, 0, 2): SUPPLY},
            "coordinator": {"seed": COORDINATOR_SEED, "interval": 0.5},
        },
    )
    process.start()
    yield process
    assert process.stop() == 0


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    """The Home Assistant test plugin disables sockets; these tests talk to a real node."""


@pytest.fixture
async def client(node: NodeProcess) -> Any:
    async with aiohttp.ClientSession() as session:
        yield IriClient(session, node.url)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


async def confirmed(client: IriClient, tail: str) -> None:
    async def check() -> bool:
        return (await client.get_inclusion_states([tail]))[0]

    await eventually(check)


async def fund(client: IriClient, address: str, amount: int) -> None:
    """Pay ``amount`` from the genesis wallet and wait until a milestone confirms it."""
    sent = await client.send_transfer(
        FUNDED_SEED, [Transfer(address, amount, tag="FUNDING")], min_weight_magnitude=MWM
    )
    await confirmed(client, sent[0].hash)


async def test_pyota_zero_value_transfer_and_queries(node: NodeProcess, client: IriClient) -> None:
    from iota import Address, Iota, ProposedTransaction, Tag, TryteString

    receiver = generate_address(new_seed(), 0, 2)
    api = Iota(node.url, seed=new_seed().encode())

    def send() -> Any:
        return api.send_transfer(
            depth=3,
            transfers=[
                ProposedTransaction(
                    address=Address(receiver.encode()),
                    value=0,
                    tag=Tag(b"PYOTA9ZERO"),
                    message=TryteString.from_unicode("hello from pyota"),
                )
            ],
            min_weight_magnitude=MWM,
        )

    bundle = (await asyncio.to_thread(send))["bundle"]
    tail = str(bundle.tail_transaction.hash)
    found = await asyncio.to_thread(api.find_transactions, addresses=[Address(receiver.encode())])
    assert [str(h) for h in found["hashes"]] == [tail]
    assert await client.find_transactions(tags=["PYOTA9ZERO"]) == [tail]
    tips = await asyncio.to_thread(api.get_transactions_to_approve, 3)
    assert len(str(tips["trunkTransaction"])) == 81
    assert len(str(tips["branchTransaction"])) == 81

    async def included() -> bool:
        states = await asyncio.to_thread(api.get_latest_inclusion, [bundle.tail_transaction.hash])
        return bool(states["states"][bundle.tail_transaction.hash])

    await eventually(included)
    info = await asyncio.to_thread(api.get_node_info)
    states = await asyncio.to_thread(
        api.get_inclusion_states,
        [bundle.tail_transaction.hash],
        [info["latestSolidSubtangleMilestone"]],
    )
    assert states["states"] == [True]
    objects = await asyncio.to_thread(api.find_transaction_objects, addresses=[receiver])
    assert objects["transactions"][0].signature_message_fragment.decode() == "hello from pyota"


async def test_pyota_value_transfer(node: NodeProcess, client: IriClient) -> None:
    from iota import Address, Iota, ProposedTransaction

    seed = new_seed()
    first, remainder = (generate_address(seed, index, 2) for index in (0, 1))
    receiver = generate_address(new_seed(), 0, 2)
    await fund(client, first, 5_000)
    api = Iota(node.url, seed=seed.encode())
    balances = await asyncio.to_thread(api.get_balances, [Address(first.encode())])
    assert balances["balances"] == [5_000]

    def pay() -> Any:
        return api.send_transfer(
            depth=3,
            transfers=[ProposedTransaction(address=Address(receiver.encode()), value=1_234)],
            min_weight_magnitude=MWM,
        )

    bundle = (await asyncio.to_thread(pay))["bundle"]
    await confirmed(client, str(bundle.tail_transaction.hash))
    assert (await client.get_balances([receiver, first, remainder])).balances == [1_234, 0, 3_766]
    spent = await asyncio.to_thread(api.were_addresses_spent_from, [Address(first.encode())])
    assert spent["states"] == [True]
    account = await asyncio.to_thread(api.get_account_data)
    assert account["balance"] == 3_766


async def test_iota_core_transfers_and_queries(node: NodeProcess, client: IriClient) -> None:
    seed = new_seed()
    first, remainder = (generate_address(seed, index, 2) for index in (0, 1))
    receiver = generate_address(new_seed(), 0, 2)
    zero = await asyncio.to_thread(
        run_node,
        "node_clients.js",
        {
            "action": "coreSend",
            "url": node.url,
            "seed": seed,
            "mwm": MWM,
            "transfers": [{"address": receiver, "value": 0, "tag": "CORE9ZERO", "message": "hi"}],
        },
    )
    assert await client.find_transactions(tags=["CORE9ZERO"]) == [zero["tail"]]

    await fund(client, first, 9_000)
    paid = await asyncio.to_thread(
        run_node,
        "node_clients.js",
        {
            "action": "coreSend",
            "url": node.url,
            "seed": seed,
            "mwm": MWM,
            "transfers": [{"address": receiver, "value": 4_000, "tag": "CORE9PAY"}],
            "inputs": [{"address": first, "keyIndex": 0, "security": 2, "balance": 9_000}],
            "remainderAddress": remainder,
        },
    )
    assert sorted(paid["values"]) == [-9_000, 0, 4_000, 5_000]
    await confirmed(client, paid["tail"])
    answer = await asyncio.to_thread(
        run_node,
        "node_clients.js",
        {
            "action": "coreQuery",
            "url": node.url,
            "addresses": [receiver, first, remainder],
            "tails": [zero["tail"], paid["tail"]],
        },
    )
    assert answer["balances"] == [4_000, 0, 5_000]
    assert answer["states"] == [True, True]
    assert answer["spent"] == [False, True, False]
    assert answer["milestoneIndex"] >= 1
    assert {tx["hash"] for tx in answer["transactions"]} >= {zero["tail"], paid["tail"]}
    assert {tx["value"] for tx in answer["transactions"] if tx["address"] == receiver} == {0, 4_000}


def _without_proof_of_work() -> str:
    """Attached-looking trytes (clients check that) whose hash lacks the node's weight."""
    import time

    from p2p_energy_protocol.pow import transaction_weight
    from p2p_energy_protocol.transaction import Transaction

    from tests.node.helpers import zero_value_bundle

    now_ms = int(time.time() * 1000)
    for attempt in range(100):
        (trytes,) = zero_value_bundle(message=f"unattached {attempt}")
        tx = Transaction.from_trytes(trytes).replace(
            trunk_transaction="A" * 81,
            branch_transaction="B" * 81,
            attachment_timestamp=now_ms,
            attachment_timestamp_upper_bound=(3**27 - 1) // 2,
        )
        if transaction_weight(tx.hash) < MWM:
            return tx.to_trytes()
    raise AssertionError("every candidate happened to carry proof of work")


async def test_clients_get_clear_errors_and_nothing_is_stored(node: NodeProcess) -> None:
    garbage = _without_proof_of_work()
    answer = await asyncio.to_thread(
        run_node,
        "node_clients.js",
        {"action": "coreBadRequest", "url": node.url, "trytes": garbage},
    )
    assert "proof of work" in answer["error"]
    status, body = await asyncio.to_thread(
        command, node.url, {"command": "storeTransactions", "trytes": [garbage]}
    )
    assert status == 400
    assert "minimum weight magnitude" in body["error"]

    from iota import Iota
    from iota.adapter import BadApiResponse

    api = Iota(node.url)
    with pytest.raises(BadApiResponse, match="minimum weight magnitude"):
        await asyncio.to_thread(api.store_transactions, [garbage])
    status, body = await asyncio.to_thread(
        command, node.url, {"command": "findTransactions", "tags": ["NODE9TEST"]}
    )
    assert (status, body["hashes"]) == (200, [])
    status, body = await asyncio.to_thread(
        command, node.url, {"command": "storeTransactions", "trytes": ["A" * 2673]}
    )
    assert status == 400
    assert "trytes[0] is not a valid transaction" in body["error"]


async def test_iota_mam_messages_are_fetched_by_our_client(
    node: NodeProcess, client: IriClient
) -> None:
    side_key = new_seed()
    texts = ['{"command":"hello"}', '{"command":"usage","usage":2.5}', "plain text"]
    answer = await asyncio.to_thread(
        run_node,
        "node_clients.js",
        {
            "action": "mamPublish",
            "url": node.url,
            "seed": new_seed(),
            "sideKey": side_key,
            "messages": texts,
            "mwm": MWM,
        },
    )
    first_root = answer["published"][0]["root"]
    fetched = await client.fetch_mam(first_root, "restricted", side_key)
    assert [entry.text for entry in fetched] == texts
    assert [entry.root for entry in fetched] == [p["root"] for p in answer["published"]]


async def test_our_messages_are_fetched_by_both_mam_libraries(
    node: NodeProcess, client: IriClient
) -> None:
    from p2p_energy_protocol.mam import channel_root, create_channel, create_message

    side_key = new_seed()
    channel = create_channel(new_seed(), 2, "restricted", side_key)
    root = channel_root(channel)
    texts = [{"command": "hello"}, {"command": "output", "output": 1.25, "note": "ünïcode"}]
    for text in texts:
        await client.publish_mam(create_message(channel, text), min_weight_magnitude=MWM)
    import json

    expected = [json.dumps(text, separators=(",", ":")) for text in texts]
    for action in ("mamFetch", "mamJsFetch"):
        answer = await asyncio.to_thread(
            run_node,
            "node_clients.js",
            {"action": action, "url": node.url, "root": root, "sideKey": side_key},
        )
        decoded = [json.loads(message) for message in answer["messages"]]
        assert decoded == texts, action
        assert len(answer["messages"]) == len(expected)
