"""Who may run which command: callers by address, browser origin, proxy and API token.

The live-process attacks are in ``tests/security/test_node_admin.py``; here the policy
meets callers a loopback test cannot be (another machine, IPv6, IPv4-mapped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from grid_server.node.access import AccessPolicy, is_loopback
from grid_server.node.commands import COMMANDS
from grid_server.node.config import NodeConfig
from grid_server.node.errors import CommandError

if TYPE_CHECKING:
    from aiohttp import web

TOKEN = "unit-test-api-token-0123456789"


def _request(remote: str, headers: dict[str, str] | None = None) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (remote, 40000) if name == "peername" else default
    )
    return make_mocked_request("POST", "/", headers=headers or {}, transport=transport)


@pytest.fixture
def policy() -> AccessPolicy:
    return AccessPolicy(NodeConfig(api_token=TOKEN, cors_origins=("https://ok.example",)), COMMANDS)


@pytest.mark.parametrize("remote", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_programs_on_this_machine_run_admin_commands(policy: AccessPolicy, remote: str) -> None:
    policy.check(_request(remote), "addNeighbors")


@pytest.mark.parametrize(
    ("remote", "headers", "status"),
    [
        ("192.0.2.10", {}, 403),
        ("2001:db8::1", {}, 403),
        ("::ffff:192.0.2.10", {}, 403),
        ("127.0.0.1", {"Origin": "http://127.0.0.1:14265"}, 403),
        ("127.0.0.1", {"Origin": "null"}, 403),
        ("127.0.0.1", {"Forwarded": "for=192.0.2.10"}, 403),
        ("127.0.0.1", {"X-Real-IP": "192.0.2.10"}, 403),
        ("192.0.2.10", {"Authorization": "Bearer wrong-token"}, 401),
        ("192.0.2.10", {"Authorization": f"Basic {TOKEN}"}, 401),
    ],
)
def test_everyone_else_needs_the_token(
    policy: AccessPolicy, remote: str, headers: dict[str, str], status: int
) -> None:
    with pytest.raises(CommandError) as refused:
        policy.check(_request(remote, headers), "removeNeighbors")
    assert refused.value.status == status


def test_the_token_opens_admin_commands_from_anywhere_but_a_foreign_page(
    policy: AccessPolicy,
) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    policy.check(_request("192.0.2.10", bearer), "getNeighbors")
    # A listed origin may use the token; another origin may not change anything.
    listed = {**bearer, "Origin": "https://ok.example"}
    policy.check(_request("192.0.2.10", listed), "addNeighbors")
    with pytest.raises(CommandError):
        policy.check(
            _request("192.0.2.10", {**bearer, "Origin": "https://evil.example"}), "addNeighbors"
        )


def test_without_a_configured_token_no_token_is_valid() -> None:
    policy = AccessPolicy(NodeConfig(), COMMANDS)
    with pytest.raises(CommandError) as refused:
        policy.check(
            _request("192.0.2.10", {"Authorization": "Bearer anything-at-all-0123456789"}),
            "addNeighbors",
        )
    assert refused.value.status == 401


def test_ordinary_commands_are_open_and_pages_only_read(policy: AccessPolicy) -> None:
    policy.check(_request("192.0.2.10"), "storeTransactions")
    page = _request("192.0.2.10", {"Origin": "https://evil.example"})
    policy.check(page, "getBalances")
    for command in ("storeTransactions", "broadcastTransactions", "attachToTangle"):
        with pytest.raises(CommandError):
            policy.check(page, command)
    assert policy.cors_headers(page, "getBalances") == {"Access-Control-Allow-Origin": "*"}
    assert policy.cors_headers(page, "attachToTangle") == {}
    listed = _request("192.0.2.10", {"Origin": "https://ok.example"})
    policy.check(listed, "attachToTangle")
    assert policy.cors_headers(listed, "attachToTangle")["Access-Control-Allow-Origin"] == (
        "https://ok.example"
    )


@pytest.mark.parametrize(
    ("address", "loopback"),
    [(None, False), ("", False), ("localhost", False), ("fe80::1%eth0", False), ("::1", True)],
)
def test_loopback_addresses(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback
