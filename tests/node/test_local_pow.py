"""Local proof of work: bundles the client attaches itself are stored and confirmed by
the node exactly like bundles the node attached (``IriClient(proof_of_work=...)``)."""

from __future__ import annotations

import itertools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from p2p_energy_protocol.client import IriClient, LocalProofOfWork, ProofOfWork, Transfer
from p2p_energy_protocol.errors import InvalidTrytesError, IriApiError, ProofOfWorkError
from p2p_energy_protocol.mam import channel_root, create_channel, create_message
from p2p_energy_protocol.pow import MAX_TIMESTAMP_VALUE, transaction_weight
from p2p_energy_protocol.transaction import Transaction

from .helpers import (
    FUNDED_SEED,
    GENESIS_BALANCE,
    MWM,
    NULL_HASH,
    RECEIVER,
    count_remote_attaches,
    funded_address,
    zero_value_bundle,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import aiohttp

    from grid_server.node import NodeServer

SIDE_KEY = "LOCALPOWSIDEKEY"


@pytest.fixture
def process_pool() -> Iterator[ProcessPoolExecutor]:
    """One worker process, started the way the grid starts its pool (spawn); per test,
    as the test plugin checks that no thread outlives a test."""
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def remote_attaches(node: NodeServer, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Transactions the node was asked to attach (remote proof of work), per request."""
    return count_remote_attaches(monkeypatch, node.runtime)


@pytest.fixture
def local_client(
    node: NodeServer, session: aiohttp.ClientSession, process_pool: ProcessPoolExecutor
) -> IriClient:
    return IriClient(session, node.url, proof_of_work=LocalProofOfWork(process_pool))


def _check_chain(attached: list[Transaction], trunk: str, branch: str, mwm: int) -> None:
    """IRI's attachToTangle shape: tail first, the head on (trunk, branch), each
    transaction below it on (the one above, trunk), proof of work and timestamps set."""
    for tx in attached:
        assert transaction_weight(tx.hash) >= mwm
        assert tx.attachment_timestamp > 0
        assert tx.attachment_timestamp_lower_bound == 0
        assert tx.attachment_timestamp_upper_bound == MAX_TIMESTAMP_VALUE
    head = attached[-1]
    assert (head.trunk_transaction, head.branch_transaction) == (trunk, branch)
    for lower, upper in itertools.pairwise(attached):
        assert (lower.trunk_transaction, lower.branch_transaction) == (upper.hash, trunk)


async def test_mam_messages_attached_locally_are_stored_and_read_back(
    node: NodeServer,
    session: aiohttp.ClientSession,
    local_client: IriClient,
    remote_attaches: list[int],
) -> None:
    channel = create_channel("L" * 81, 2, "restricted", SIDE_KEY)
    root = channel_root(channel)
    texts: list[Any] = [{"command": "hello"}, {"command": "usage", "usage": 2.5}]
    texts += [{"command": "usage", "usage": float(n)} for n in range(3)]
    messages = [create_message(channel, text) for text in texts]

    first = await local_client.publish_mam(messages[0], tag="LOCAL9POW", min_weight_magnitude=MWM)
    batch = await local_client.publish_mams(messages[1:], min_weight_magnitude=MWM)
    assert remote_attaches == []  # the node did no proof of work
    assert {tx.address for tx in first} == {messages[0].address}
    assert len(batch) == 4 * len(first)

    # Byte for byte what was attached is what the node stored.
    stored = await local_client.get_trytes([tx.hash for tx in first + batch])
    assert stored == [tx.to_trytes() for tx in first + batch]
    assert all(tx.tag.startswith("LOCAL9POW") for tx in first)

    # A reader with remote proof of work (the node's own client) follows the channel.
    reader = IriClient(session, node.url)
    fetched = await reader.fetch_mam(root, "restricted", SIDE_KEY)
    assert [entry.data for entry in fetched] == texts
    assert remote_attaches == []

    # Confirmed by the next milestone like any other transaction.
    assert await node.runtime.issue_milestone()
    tails = [tx.hash for tx in first + batch if tx.is_tail]
    assert len(tails) == 5
    assert await reader.get_inclusion_states(tails) == [True] * 5
    consistent, info = await reader.check_consistency(tails)
    assert consistent, info


async def test_send_trytes_chains_like_the_node(
    local_client: IriClient, remote_attaches: list[int]
) -> None:
    trytes = zero_value_bundle(message="chain", count=3)
    tips = await local_client.get_transactions_to_approve(3)
    attached_trytes = await local_client.attach(tips.trunk, tips.branch, MWM, trytes)
    attached = [Transaction.from_trytes(item) for item in attached_trytes]
    assert [tx.current_index for tx in attached] == [0, 1, 2]
    _check_chain(attached, tips.trunk, tips.branch, MWM)
    # Everything but the attachment fields is what the client built.
    built = sorted(map(Transaction.from_trytes, trytes), key=lambda tx: tx.current_index)
    assert [(tx.address, tx.bundle, tx.signature_message_fragment) for tx in attached] == [
        (tx.address, tx.bundle, tx.signature_message_fragment) for tx in built
    ]

    sent = await local_client.send_trytes(trytes, 3, MWM)
    assert remote_attaches == []
    assert len(await local_client.find_transactions(bundles=[sent[0].bundle])) >= 3
    consistent, info = await local_client.check_consistency([sent[0].hash])
    assert consistent, info


async def test_value_transfer_attached_locally_is_confirmed(
    node: NodeServer, local_client: IriClient, remote_attaches: list[int]
) -> None:
    sent = await local_client.send_transfer(
        FUNDED_SEED, [Transfer(RECEIVER, 125, tag="LOCALPAYMENT")], min_weight_magnitude=MWM
    )
    assert remote_attaches == []
    assert sum(tx.value for tx in sent) == 0
    assert [tx.current_index for tx in sent] == list(range(len(sent)))
    assert await local_client.were_addresses_spent_from([funded_address(0)]) == [True]
    assert await local_client.get_inclusion_states([sent[0].hash]) == [False]

    assert await node.runtime.issue_milestone()
    assert await local_client.get_inclusion_states([sent[0].hash]) == [True]
    balances = await local_client.get_balances([funded_address(0), RECEIVER, funded_address(1)])
    assert balances.balances == [0, 125, GENESIS_BALANCE - 125]


async def test_the_default_is_the_nodes_proof_of_work(
    client: IriClient, remote_attaches: list[int]
) -> None:
    assert client.proof_of_work is None
    await client.send_trytes(zero_value_bundle(count=2), 3, MWM)
    assert remote_attaches == [2]


async def test_default_executor_and_a_custom_strategy(
    node: NodeServer, session: aiohttp.ClientSession, remote_attaches: list[int]
) -> None:
    """``LocalProofOfWork()`` uses the loop's default executor (Home Assistant's), and
    any object with a matching ``attach`` is a strategy."""
    local = LocalProofOfWork()
    assert local.executor is None
    seen: list[tuple[str, str, int, int]] = []

    class Recording:
        async def attach(
            self, trunk: str, branch: str, min_weight_magnitude: int, trytes: Any
        ) -> list[str]:
            seen.append((trunk, branch, min_weight_magnitude, len(trytes)))
            return await local.attach(trunk, branch, min_weight_magnitude, trytes)

    strategy: ProofOfWork = Recording()
    client = IriClient(session, node.url, proof_of_work=strategy)
    sent = await client.send_trytes(zero_value_bundle(count=2), 3, MWM + 1)
    assert remote_attaches == []
    assert len(seen) == 1
    assert seen[0][2:] == (MWM + 1, 2)
    assert all(transaction_weight(tx.hash) >= MWM + 1 for tx in sent)
    assert await client.get_trytes([tx.hash for tx in sent]) == [tx.to_trytes() for tx in sent]


async def test_bad_input_fails_in_the_worker_and_nothing_is_stored(
    local_client: IriClient, process_pool: ProcessPoolExecutor
) -> None:
    local = LocalProofOfWork(process_pool)
    trytes = zero_value_bundle(count=1)
    with pytest.raises(InvalidTrytesError, match="trunk transaction"):
        await local.attach("BAD", NULL_HASH, MWM, trytes)
    with pytest.raises(ProofOfWorkError, match="min weight magnitude"):
        await local.attach(NULL_HASH, NULL_HASH, 244, trytes)
    with pytest.raises(ProofOfWorkError, match="lanes"):
        await LocalProofOfWork(process_pool, lanes=65).attach(NULL_HASH, NULL_HASH, MWM, trytes)
    bundle = Transaction.from_trytes(trytes[0]).bundle
    assert await local_client.find_transactions(bundles=[bundle]) == []


async def test_a_shut_down_executor_sends_nothing(
    node: NodeServer, session: aiohttp.ClientSession, remote_attaches: list[int]
) -> None:
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    pool.shutdown()
    client = IriClient(session, node.url, proof_of_work=LocalProofOfWork(pool))
    trytes = zero_value_bundle(count=1)
    with pytest.raises(RuntimeError, match="shutdown"):
        await client.send_trytes(trytes, 3, MWM)
    assert remote_attaches == []
    bundle = Transaction.from_trytes(trytes[0]).bundle
    assert await client.find_transactions(bundles=[bundle]) == []


async def test_a_node_requiring_more_weight_refuses_lighter_local_work(
    start_node: Any, sqlite_url: str, session: aiohttp.ClientSession
) -> None:
    """Remote proof of work is raised to the node's minimum weight; local work is done
    at the caller's, and the node refuses it loudly (never drops it silently)."""
    node: NodeServer = await start_node(sqlite_url, min_weight_magnitude=6)
    local = IriClient(session, node.url, proof_of_work=LocalProofOfWork())
    trytes = zero_value_bundle(message="light", count=3)
    with pytest.raises(IriApiError, match="below this node's minimum weight magnitude 6"):
        await local.send_trytes(trytes, 3, 1)
    # At the node's weight it goes through.
    sent = await local.send_trytes(trytes, 3, 6)
    assert await local.get_trytes([tx.hash for tx in sent]) == [tx.to_trytes() for tx in sent]
    # The node's own proof of work used its minimum, as IRI does.
    remote = await IriClient(session, node.url).send_trytes(trytes, 3, 1)
    assert all(transaction_weight(tx.hash) >= 6 for tx in remote)
