"""GridConnection: how the integration's calls map onto the protocol library's clients."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING
from unittest.mock import AsyncMock, MagicMock, patch

import pytest

from custom_components.p2p_energy.connection import (
    GridConnection,
    GridUnreachableError,
    NodeUnreachableError,
    ReadMessage,
    Registration,
    async_test_connection,
)
from custom_components.p2p_energy.const import MAM_TAG
from custom_components.p2p_energy.protocol.client import Transfer
from custom_components.p2p_energy.protocol.errors import (
    GridApiError,
    GridUnavailableError,
    IriApiError,
    NodeUnavailableError,
)
from custom_components.p2p_energy.protocol.grid_client import RegistrationReply
from custom_components.p2p_energy.protocol.mam import MamMessage
from custom_components.p2p_energy.protocol.trinary import validate_trytes

if TYPE_CHECKING:
    from collections.abc import Generator

    from homeassistant.core import HomeAssistant

ROOT = "R" * 81
KEY = "K" * 81


@pytest.fixture
def clients() -> Generator[SimpleNamespace]:
    """The IRI, grid and producer clients, mocked."""
    with (
        patch("custom_components.p2p_energy.connection.IriClient") as iri_class,
        patch("custom_components.p2p_energy.connection.GridClient") as grid_class,
        patch("custom_components.p2p_energy.connection.ProducerClient") as producer_class,
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
    clients.iri_class.assert_called_once_with(session, "http://node:14265")
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
        message, tag="PEERTOPEERENERGY", min_weight_magnitude=5
    )

    clients.iri.fetch_mam.return_value = [
        (ROOT, SimpleNamespace(message="MESSAGE", next_root="N" * 81))
    ]
    assert await connection.read_channel(ROOT, KEY, limit=3) == [
        ReadMessage(ROOT, "N" * 81, "MESSAGE")
    ]
    clients.iri.fetch_mam.assert_awaited_once_with(ROOT, "restricted", KEY, limit=3)

    clients.iri.get_balances.return_value = SimpleNamespace(balances=[1, 2])
    assert await connection.balances(("A" * 81, "B" * 81)) == [1, 2]
    clients.iri.get_balances.assert_awaited_once_with(["A" * 81, "B" * 81])

    clients.iri.send_transfer.return_value = [SimpleNamespace(bundle="B" * 81)]
    assert await connection.send_transfer("S" * 81, "P" * 81, 345, "Q" * 81) == "B" * 81
    clients.iri.send_transfer.assert_awaited_once_with(
        "S" * 81,
        [Transfer(address="P" * 81, value=345, tag="PEERTOPEERENERGY")],
        security=2,
        remainder_address="Q" * 81,
        min_weight_magnitude=5,
    )


async def test_registration_calls(clients: SimpleNamespace) -> None:
    connection = _connection()
    clients.grid.register.return_value = RegistrationReply(root=ROOT, side_key=KEY, token="t")
    assert await connection.register("reg-123456", "House", "consumer", ROOT, KEY, None) == (
        Registration(ROOT, KEY, "t")
    )
    clients.grid.register.assert_awaited_once_with(
        "reg-123456", "House", "consumer", root=ROOT, side_key=KEY, token=None
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


async def test_connection_test(hass: HomeAssistant, clients: SimpleNamespace) -> None:
    await async_test_connection(hass, "http://grid:8080", "http://grid:14265")

    clients.grid.health.side_effect = GridUnavailableError("refused")
    with pytest.raises(GridUnreachableError, match="refused"):
        await async_test_connection(hass, "http://grid:8080", "http://grid:14265")
    clients.grid.health.side_effect = GridApiError("not a grid", 404)
    with pytest.raises(GridUnreachableError, match="not a grid"):
        await async_test_connection(hass, "http://grid:8080", "http://grid:14265")

    clients.grid.health.side_effect = None
    clients.iri.get_node_info.side_effect = NodeUnavailableError("timeout")
    with pytest.raises(NodeUnreachableError, match="timeout"):
        await async_test_connection(hass, "http://grid:8080", "http://grid:14265")
    clients.iri.get_node_info.side_effect = IriApiError("getNodeInfo", 401, "forbidden")
    with pytest.raises(NodeUnreachableError, match="forbidden"):
        await async_test_connection(hass, "http://grid:8080", "http://grid:14265")


def test_tag_is_trytes() -> None:
    """The tag goes into every transaction: it must be valid trytes (27 at most)."""
    assert validate_trytes(MAM_TAG) == MAM_TAG
    assert len(MAM_TAG) <= 27
