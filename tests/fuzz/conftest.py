"""The fuzz suite talks to real processes on loopback: sockets stay enabled."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _loopback_sockets(socket_enabled: None) -> None:
    """Home Assistant's test plugin disables sockets before every test; turn them back on."""
