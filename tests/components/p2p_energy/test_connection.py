"""Checking a grid connection before it is saved: the config flow's connection test."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING
from unittest.mock import AsyncMock, patch

import pytest

from custom_components.p2p_energy.connection import async_test_connection
from custom_components.p2p_energy.protocol.errors import (
    GridApiError,
    GridUnavailableError,
    IriApiError,
    NodeUnavailableError,
)

if TYPE_CHECKING:
    from collections.abc import Generator

    from homeassistant.core import HomeAssistant


@pytest.fixture
def clients() -> Generator[SimpleNamespace]:
    """The IRI and grid clients of the engine's connection, mocked."""
    module = "custom_components.p2p_energy.protocol.household.connection"
    with (
        patch(f"{module}.IriClient") as iri_class,
        patch(f"{module}.GridClient") as grid_class,
    ):
        iri_class.return_value = AsyncMock()
        grid_class.return_value = AsyncMock()
        yield SimpleNamespace(iri=iri_class.return_value, grid=grid_class.return_value)


async def test_connection_test(hass: HomeAssistant, clients: SimpleNamespace) -> None:
    await async_test_connection(hass, "http://grid:8080", "http://grid:14265")

    clients.grid.health.side_effect = GridUnavailableError("refused")
    with pytest.raises(GridUnavailableError, match="refused"):
        await async_test_connection(hass, "http://grid:8080", "http://grid:14265")
    clients.grid.health.side_effect = GridApiError("not a grid", 404)
    with pytest.raises(GridUnavailableError, match="not a grid"):
        await async_test_connection(hass, "http://grid:8080", "http://grid:14265")

    clients.grid.health.side_effect = None
    clients.iri.get_node_info.side_effect = NodeUnavailableError("timeout")
    with pytest.raises(NodeUnavailableError, match="timeout"):
        await async_test_connection(hass, "http://grid:8080", "http://grid:14265")
    clients.iri.get_node_info.side_effect = IriApiError("getNodeInfo", 401, "forbidden")
    with pytest.raises(NodeUnavailableError, match="forbidden"):
        await async_test_connection(hass, "http://grid:8080", "http://grid:14265")
