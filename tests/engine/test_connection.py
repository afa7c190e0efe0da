"""GridConnection: how a household's calls map onto the protocol library's clients."""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import TYPE_CHECKING
from unittest.mock import AsyncMock, MagicMock, patch

import aiohttp
import pytest
from p2p_energy_protocol.bundle_validation import validate_bundle
from p2p_energy_protocol.client import (
    IriClient,
    LocalProofOfWork,
    SignedBundle,
    WalletInput,
)
from p2p_energy_protocol.errors import (
    IriApiError,
    NodeUnavailableError,
    ProofOfWorkError,
)
from p2p_energy_protocol.grid_client import RegistrationReply
from p2p_energy_protocol.household import GridConnection
from p2p_energy_protocol.household.connection import HOUSEHOLD_TAG
from p2p_energy_protocol.mam import (
    ChannelEntry,
    MamMessage,
    channel_root,
    create_channel,
    create_message,
)
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.transaction import Transaction
from p2p_energy_protocol.transfers import TransferNotSentError, TransferState
from p2p_energy_protocol.trinary import random_trytes, validate_trytes

if TYPE_CHECKING:
    from collections.abc import Generator
    from pathlib import Path

ROOT = "R" * 81
KEY = "K" * 81
PAY_TO = "P" * 80 + "9"
REMAINDER = "Q" * 80 + "9"


@pytest.fixture
def clients() -> Generator[SimpleNamespace]:
    """The IRI, grid and producer clients, mocked."""
    with (
        patch("p2p_energy_protocol.household.connection.IriClient") as iri_class,
        patch("p2p_energy_protocol.household.connection.GridClient") as grid_class,
        patch("p2p_energy_protocol.household.connection.ProducerClient") as producer_class,
    ):
        iri_class.return_value = AsyncMock()
        grid_class.return_value = AsyncMock()
        producer_class.return_value = AsyncMock()
        yield SimpleNamespace(
            iri_class=iri_class,
            grid_class=grid_class,
            producer_class=producer_class,
            iri=iri_class.return_value,
            grid=grid_class.return_value,
            producer=producer_class.return_value,
        )


def _connection() -> GridConnection:
    return GridConnection(MagicMock(), "http://grid:8080", "http://grid:14265", 5)


async def test_clients_share_the_session(clients: SimpleNamespace) -> None:
    session = MagicMock()
    connection = GridConnection(session, "http://grid:8080", "http://node:14265", 5)
    clients.iri_class.assert_called_once_with(session, "http://node:14265", proof_of_work=None)
    assert not connection.local_proof_of_work
    clients.grid_class.assert_called_once_with(session, "http://grid:8080")
    assert (connection.grid_url, connection.node_url) == ("http://grid:8080", "http://node:14265")


async def test_node_and_grid_calls(clients: SimpleNamespace) -> None:
    connection = _connection()
    clients.iri.get_node_info.return_value = SimpleNamespace(latest_solid_milestone_index=3)
    assert (await connection.node_info()).latest_solid_milestone_index == 3
    await connection.grid_health()
    clients.grid.health.assert_awaited_once_with()

    message = MamMessage(payload="P", root=ROOT, address="A" * 81, next_root="N" * 81)
    await connection.publish(message)
    clients.iri.publish_mam.assert_awaited_once_with(
        message, tag="PEERTOPEERENERGY", depth=3, min_weight_magnitude=5
    )

    clients.iri.fetch_mam.return_value = [ChannelEntry(ROOT, "N" * 81, "MESSAGE")]
    assert await connection.read_channel(ROOT, KEY, limit=3) == [
        ChannelEntry(ROOT, "N" * 81, "MESSAGE")
    ]
    clients.iri.fetch_mam.assert_awaited_once_with(ROOT, "restricted", KEY, limit=3)

    clients.iri.get_balances.return_value = SimpleNamespace(balances=[1, 2])
    assert await connection.balances(("A" * 81, "B" * 81)) == [1, 2]
    clients.iri.get_balances.assert_awaited_once_with(["A" * 81, "B" * 81])


WALLET_SEED = "WALLET" + "9" * 75


async def _signed_payment(clients: SimpleNamespace, connection: GridConnection) -> SignedBundle:
    """345 IOTA from a 1,000 IOTA input; 655 go to the remainder address."""
    # The protocol client's real bundle building, over the mocked input lookup.
    clients.iri.prepare_transfer = functools.partial(IriClient.prepare_transfer, clients.iri)
    clients.iri.find_inputs.return_value = (
        [WalletInput(generate_address(WALLET_SEED, 0, 2), 1000, 0, 2)],
        1,
    )
    return await connection.prepare_transfer(WALLET_SEED, PAY_TO, 345, REMAINDER)


async def test_prepare_transfer_signs_without_sending(clients: SimpleNamespace) -> None:
    connection = _connection()
    signed = await _signed_payment(clients, connection)
    clients.iri.find_inputs.assert_awaited_once_with(WALLET_SEED, 345, security=2, start_index=0)
    transactions = [Transaction.from_trytes(item) for item in signed.trytes]
    validate_bundle(transactions, attached=False)
    assert {t.bundle for t in transactions} == {signed.bundle_hash}
    outputs = {(t.address, t.value, t.tag) for t in transactions if t.value > 0}
    assert outputs == {(PAY_TO, 345, HOUSEHOLD_TAG + "9" * 11), (REMAINDER, 655, "9" * 27)}
    # Signed only: nothing was attached, stored or broadcast.
    clients.iri.attach.assert_not_awaited()
    clients.iri.attach_to_tangle.assert_not_awaited()
    clients.iri.store_transactions.assert_not_awaited()

    clients.iri.find_inputs.return_value = (
        [WalletInput(generate_address(WALLET_SEED, 0, 2), 345, 0, 2)],
        1,
    )
    exact = await connection.prepare_transfer(WALLET_SEED, PAY_TO, 345, REMAINDER)
    assert REMAINDER not in {Transaction.from_trytes(t).address for t in exact.trytes}


async def test_broadcast_transfer(clients: SimpleNamespace) -> None:
    connection = _connection()
    clients.iri.get_transactions_to_approve.return_value = SimpleNamespace(
        trunk="T" * 81, branch="B" * 81
    )
    clients.iri.attach.return_value = ["ATTACHED"]
    await connection.broadcast_transfer(["SIGNED"])
    clients.iri.get_transactions_to_approve.assert_awaited_once_with(3)
    # The client's configured proof of work (local, or the node's attachToTangle).
    clients.iri.attach.assert_awaited_once_with("T" * 81, "B" * 81, 5, ["SIGNED"])
    clients.iri.store_transactions.assert_awaited_once_with(["ATTACHED"])
    clients.iri.broadcast_transactions.assert_awaited_once_with(["ATTACHED"])

    # No proof of work: certainly not sent.
    clients.iri.attach.side_effect = IriApiError("attachToTangle", 400, "refused")
    with pytest.raises(TransferNotSentError) as not_sent:
        await connection.broadcast_transfer(["SIGNED"])
    assert isinstance(not_sent.value.error, IriApiError)
    # Local proof of work refused the bundle: nothing reached the node either.
    clients.iri.attach.side_effect = ProofOfWorkError("the nonce search was interrupted")
    with pytest.raises(TransferNotSentError, match="nonce search was interrupted"):
        await connection.broadcast_transfer(["SIGNED"])
    clients.iri.store_transactions.assert_awaited_once()  # only by the first, sent, call

    # Storing fails: the node may have taken it, so the node's error is passed on as it is.
    clients.iri.attach.side_effect = None
    clients.iri.store_transactions.side_effect = NodeUnavailableError("timeout")
    with pytest.raises(NodeUnavailableError):
        await connection.broadcast_transfer(["SIGNED"])


async def state(connection: GridConnection, signed: SignedBundle) -> TransferState:
    return await connection.transfer_state(signed.bundle_hash, signed.trytes)


async def test_transfer_state(clients: SimpleNamespace) -> None:
    connection = _connection()
    signed = await _signed_payment(clients, connection)
    stored = [Transaction.from_trytes(item) for item in signed.trytes]
    tail = next(t for t in stored if t.is_tail)
    other = Transaction.from_trytes(signed.trytes[0]).replace(bundle="X" * 81, current_index=0)
    clients.iri.find_transactions.return_value = [t.hash for t in stored]
    clients.iri.get_transactions.return_value = [*stored, other]
    clients.iri.get_balances.return_value = SimpleNamespace(balances=[1000])

    clients.iri.get_inclusion_states.return_value = [True]
    assert await state(connection, signed) is TransferState.CONFIRMED
    clients.iri.find_transactions.assert_awaited_with(bundles=[signed.bundle_hash])
    clients.iri.get_inclusion_states.assert_awaited_with([tail.hash])
    clients.iri.get_balances.assert_awaited_with([generate_address(WALLET_SEED, 0, 2)])

    clients.iri.get_inclusion_states.return_value = [False]
    assert await state(connection, signed) is TransferState.PENDING

    # The input was spent, and not by this bundle.
    clients.iri.get_balances.return_value = SimpleNamespace(balances=[0])
    assert await state(connection, signed) is TransferState.CONFLICTING

    # Never seen by the node: pending (it can still be attached).
    clients.iri.get_balances.return_value = SimpleNamespace(balances=[1000])
    clients.iri.find_transactions.return_value = []
    clients.iri.get_transactions.return_value = []
    clients.iri.get_inclusion_states.reset_mock()
    assert await state(connection, signed) is TransferState.PENDING
    clients.iri.get_inclusion_states.assert_not_awaited()


async def test_registration_calls(clients: SimpleNamespace) -> None:
    connection = _connection()
    clients.grid.register.return_value = RegistrationReply(root=ROOT, side_key=KEY, token="t")
    assert await connection.register("reg-123456", "House", "consumer", ROOT, KEY, None) == (
        RegistrationReply(ROOT, KEY, "t")
    )
    clients.grid.register.assert_awaited_once_with(
        "reg-123456", "House", "consumer", root=ROOT, side_key=KEY, token=None, max_price=None
    )
    await connection.deregister("reg-123456", KEY, "t")
    clients.grid.deregister.assert_awaited_once_with("reg-123456", KEY, token="t")

    await connection.register_source("http://producer/x", "src-123456", "PV", ROOT, KEY)
    clients.producer_class.assert_called_with(connection._session, "http://producer/x")
    clients.producer.register.assert_awaited_once_with(
        "src-123456", item_name="PV", item_type="source", root=ROOT, side_key=KEY
    )
    await connection.deregister_source("http://producer/x", "src-123456", KEY)
    clients.producer.deregister.assert_awaited_once_with("src-123456", KEY)


def test_tag_is_trytes() -> None:
    """The tag goes into every transaction: it must be valid trytes (27 at most)."""
    assert validate_trytes(HOUSEHOLD_TAG) == HOUSEHOLD_TAG
    assert len(HOUSEHOLD_TAG) <= 27


async def test_local_proof_of_work_through_a_real_node(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With local proof of work in the loop's executor, a reading and a payment
    reach a real node already attached: the node stores, serves and confirms them but
    does no proof of work itself."""
    from grid_server.node import NodeServer
    from tests.node.helpers import (
        FUNDED_SEED,
        MWM,
        count_remote_attaches,
        funded_address,
        node_config,
    )

    async with (
        NodeServer(node_config(f"sqlite:///{tmp_path / 'node.sqlite3'}")) as node,
        aiohttp.ClientSession() as session,
    ):
        remote = count_remote_attaches(monkeypatch, node.runtime)
        connection = GridConnection(session, "http://grid:8080", node.url, MWM, LocalProofOfWork())
        assert connection.local_proof_of_work
        channel = create_channel(random_trytes(), 2, "restricted", KEY)
        root = channel_root(channel)
        reading = {"command": "usage", "startTime": 0, "endTime": 900_000, "usage": 1.25}
        await connection.publish(create_message(channel, {"command": "hello"}))
        await connection.publish(create_message(channel, reading))
        read = await connection.read_channel(root, KEY)
        assert [item.data for item in read] == [{"command": "hello"}, reading]

        signed = await connection.prepare_transfer(FUNDED_SEED, PAY_TO, 40, REMAINDER)
        await connection.broadcast_transfer(signed.trytes)
        assert remote == []
        assert await connection.transfer_state(signed.bundle_hash, signed.trytes) is (
            TransferState.PENDING
        )
        assert await node.runtime.issue_milestone()
        assert await connection.transfer_state(signed.bundle_hash, signed.trytes) is (
            TransferState.CONFIRMED
        )
        assert await connection.balances([PAY_TO, funded_address(0)]) == [40, 0]
