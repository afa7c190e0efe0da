"""The attack suite drives real processes on loopback: sockets stay enabled."""

from __future__ import annotations

import pytest
import pytest_socket


@pytest.fixture(autouse=True)
def _loopback_sockets(socket_enabled: None) -> None:
    """Home Assistant's test plugin disables sockets before every test; turn them back on."""


@pytest.fixture(scope="module")
def module_sockets() -> None:
    """For module-scoped process fixtures, which set up before the per-test fixture runs."""
    pytest_socket.enable_socket()
