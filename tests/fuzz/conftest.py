"""The fuzz suite talks to real processes on loopback: sockets stay enabled.

The protocol properties run with both Curl kernels (tests/curl_kernels.py)."""

from __future__ import annotations

import pytest

from tests.curl_kernels import curl_kernel, pytest_generate_tests

__all__ = ["curl_kernel", "pytest_generate_tests"]


@pytest.fixture(autouse=True)
def _loopback_sockets(socket_enabled: None) -> None:
    """Home Assistant's test plugin disables sockets before every test; turn them back on."""
