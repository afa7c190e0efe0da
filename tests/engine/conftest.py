"""The household engine's tests: no Home Assistant, loopback sockets for real nodes."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _loopback_sockets(socket_enabled: None) -> None:
    """The Home Assistant test plugin (installed for tests/components) disables sockets."""
