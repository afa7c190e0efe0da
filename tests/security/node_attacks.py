"""What the node attack tests share: signed neighbour requests and value bundles."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from functools import cache
from typing import Any

from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.pow import attach_to_tangle
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.transaction import Transaction

from grid_server.node.peer_auth import sign_request
from tests.reliability.processes import iri

# The test network: a funded wallet in the genesis, an attacker with empty addresses,
# the grid's wallet being paid, and the secret the node shares with its neighbours.
FUNDED_SEED = "SECURITY9FUNDED9WALLET".ljust(81, "9")
ATTACKER_SEED = "SECURITY9ATTACKER".ljust(81, "9")
GRID_ADDRESS = "SECURITY9GRID9WALLET".ljust(80, "9") + "9"
GENESIS = 1_000_000
PEERING_SECRET = "security-suite-peering-secret-0123456789"
EMPTY_TRYTES = "9" * 2673


@cache
def address(seed: str, index: int) -> str:
    return generate_address(seed, index, 2)


def genesis() -> dict[str, int]:
    return {address(FUNDED_SEED, 0): GENESIS}


def latest_milestone(url: str) -> str:
    status, info = iri(url, {"command": "getNodeInfo"})
    assert status == 200, info
    return str(info["latestSolidSubtangleMilestone"])


def value_bundle(
    url: str,
    seed: str,
    key_index: int,
    balance: int,
    receiver: str,
    amount: int,
    *,
    timestamp: int | None = None,
) -> list[str]:
    """A signed bundle paying ``amount`` from ``seed``'s address ``key_index`` (claimed to
    hold ``balance``), attached on the node's latest milestone at weight 1, tail first."""
    builder = BundleBuilder()
    builder.add_transfer(receiver, amount, tag="SECURITY")
    builder.add_input(address(seed, key_index), balance, key_index, 2)
    if balance > amount:
        builder.add_remainder(address(seed, key_index + 1))
    builder.finalize(timestamp)
    builder.sign(seed)
    milestone = latest_milestone(url)
    return attach_to_tangle(builder.to_trytes(), milestone, milestone, 1)


def zero_value_bundle(url: str, message: str = "") -> list[str]:
    """A one-transaction zero-value bundle to the grid, attached at weight 1."""
    builder = BundleBuilder()
    builder.add_transfer(GRID_ADDRESS, 0, tag="SECURITY", message_trytes=message)
    builder.finalize()
    milestone = latest_milestone(url)
    return attach_to_tangle(builder.to_trytes(), milestone, milestone, 1)


def tail_hash(trytes: list[str]) -> str:
    return Transaction.from_trytes(trytes[0]).hash


def peer_request(
    url: str,
    body: dict[str, Any],
    secret: str,
    *,
    sender: str = "http://127.0.0.1:9",
    now_ms: int | None = None,
    replay: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """POST ``body`` as a neighbour would (signed with ``secret``); (status, JSON, headers).

    ``replay`` sends earlier signed headers again instead of signing afresh."""
    raw = json.dumps(body).encode()
    if replay is None:
        headers = sign_request(secret, "POST", "/", raw, sender=sender, now_ms=now_ms).headers
    else:
        headers = replay
    request = urllib.request.Request(
        url,
        data=raw,
        method="POST",
        headers={"X-IOTA-API-Version": "1", "Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def signed_headers(
    secret: str, body: dict[str, Any], *, sender: str = "http://127.0.0.1:9"
) -> dict[str, str]:
    """Headers signing ``body`` as :func:`peer_request` sends it."""
    return sign_request(secret, "POST", "/", json.dumps(body).encode(), sender=sender).headers


def stored(url: str, hashes: list[str]) -> list[bool]:
    status, answer = iri(url, {"command": "getTrytes", "hashes": hashes})
    assert status == 200, answer
    return [trytes != EMPTY_TRYTES for trytes in answer["trytes"]]


def inclusion(url: str, hashes: list[str]) -> list[bool]:
    status, answer = iri(url, {"command": "getInclusionStates", "transactions": hashes})
    assert status == 200, answer
    return [bool(state) for state in answer["states"]]


def balances(url: str, addresses: list[str]) -> list[int]:
    status, answer = iri(url, {"command": "getBalances", "addresses": addresses})
    assert status == 200, answer
    return [int(value) for value in answer["balances"]]


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.2)
