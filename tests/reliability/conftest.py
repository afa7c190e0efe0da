"""The reliability suite drives to real processes on loopback: sockets stay enabled."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import pytest_socket

from .private_postgres import PrivatePostgres, server_binaries

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(autouse=True)
def _loopback_sockets(socket_enabled: None) -> None:
    """Home Assistant's test plugin disables sockets before every test; turn them back on."""


@pytest.fixture(scope="module")
def module_sockets() -> None:
    """For module-scoped process fixtures, which set up before the per-test fixture runs."""
    pytest_socket.enable_socket()


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    """A running PostgreSQL cluster of this test's own, which it may stop and crash."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    cluster = PrivatePostgres(tmp_path, binaries)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
