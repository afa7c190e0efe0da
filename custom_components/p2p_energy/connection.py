"""A grid connection's URLs, checked before they are saved (config and reconfigure flows)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import voluptuous as vol
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .const import DEFAULT_NODE_PORT
from .protocol.errors import GridApiError, GridUnavailableError, NodeError, NodeUnavailableError
from .protocol.household import GridConnection

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant


def normalize_url(value: str) -> str:
    """Return ``value`` as a canonical http(s) base URL; raise vol.Invalid if it is not one."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise vol.Invalid("invalid_url")
    try:
        port = parts.port
    except ValueError as err:
        raise vol.Invalid("invalid_url") from err
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def default_node_url(grid_url: str) -> str:
    """The grid's node on its default port, on the grid's host."""
    parts = urlsplit(grid_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit(("http", f"{host}:{DEFAULT_NODE_PORT}", "", "", ""))


async def async_test_connection(hass: HomeAssistant, grid_url: str, node_url: str) -> None:
    """Check that ``grid_url`` is a grid and ``node_url`` its node.

    Any failure, including an answer that is not a grid's or a node's, is reported
    as that service being unavailable.
    """
    connection = GridConnection(async_get_clientsession(hass), grid_url, node_url, 9)
    try:
        await connection.grid_health()
    except GridUnavailableError:
        raise
    except GridApiError as err:
        raise GridUnavailableError(err.message, err.status) from err
    try:
        await connection.node_info()
    except NodeUnavailableError:
        raise
    except NodeError as err:
        raise NodeUnavailableError(str(err)) from err
