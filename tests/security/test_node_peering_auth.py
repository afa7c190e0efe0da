"""Money cannot be faked through the node: no header, no neighbour, no restart makes an
unfunded spend count as paid.

On the last main before this suite, a request naming a configured neighbour in
``X-P2P-Energy-Peer`` skipped every spend check, and a milestone confirming a cone
whose spend was ordered before its funding marked the spend included while its
transfer was never applied (the grid saw "paid", its balance stayed 0).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.reliability.processes import NodeProcess, free_port, iri, post_json

from .node_attacks import (
    ATTACKER_SEED,
    FUNDED_SEED,
    GENESIS,
    GRID_ADDRESS,
    address,
    balances,
    genesis,
    inclusion,
    peer_request,
    signed_headers,
    stored,
    tail_hash,
    value_bundle,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow


_ANNOUNCEMENT = re.compile(r"set your own peering\.secret here: (\S+)")


@dataclass(frozen=True)
class Coordinator:
    """A coordinator node with one (absent) neighbour, sharing the secret the node created."""

    node: NodeProcess
    neighbour: str
    secret: str


@pytest.fixture(scope="module")
def coordinator(
    tmp_path_factory: pytest.TempPathFactory, module_sockets: None
) -> Iterator[Coordinator]:
    neighbour = f"http://127.0.0.1:{free_port()}"
    node = NodeProcess(
        tmp_path_factory.mktemp("peering-auth"),
        config={"genesis": genesis(), "neighbors": [neighbour]},
    )
    node.start()
    try:
        found = _ANNOUNCEMENT.findall(node.log_tail(20_000))
        assert len(found) == 1, node.log_tail()
        yield Coordinator(node, neighbour, found[0])
    finally:
        node.stop()


def test_a_peer_header_is_no_credential(coordinator: Coordinator) -> None:
    node, neighbour = coordinator.node, coordinator.neighbour
    unfunded = value_bundle(node.url, ATTACKER_SEED, 7, 1_000_000, GRID_ADDRESS, 1_000_000)
    status, answer = post_json(
        node.url,
        {"command": "storeTransactions", "trytes": unfunded},
        {"X-IOTA-API-Version": "1", "X-P2P-Energy-Peer": neighbour},
    )
    # An ordinary client's request with every check: refused, nothing stored.
    assert status == 400, answer
    assert "holds 0 confirmed" in answer["error"]
    assert stored(node.url, [tail_hash(unfunded)]) == [False]


def test_forged_stale_and_replayed_peer_signatures_are_refused(
    coordinator: Coordinator,
) -> None:
    node, neighbour, secret = coordinator.node, coordinator.neighbour, coordinator.secret
    unfunded = value_bundle(node.url, ATTACKER_SEED, 1, 500, GRID_ADDRESS, 500)
    body = {"command": "storeTransactions", "trytes": unfunded}
    wrong = "not-the-network-secret-but-long-enough-0000"
    for status, answer, _headers in (
        peer_request(node.url, body, wrong, sender=neighbour),
        peer_request(
            node.url,
            body,
            secret,
            sender=neighbour,
            now_ms=int(time.time() * 1000) - 10 * 60 * 1000,
        ),
    ):
        assert status == 401, answer
        assert "neighbour authentication failed" in answer["error"]
    assert stored(node.url, [tail_hash(unfunded)]) == [False]

    zero = {"command": "getNodeInfo"}
    status, _answer, headers = peer_request(node.url, zero, secret, sender=neighbour)
    assert status == 200
    # The answer is signed for the neighbour; a replay of the same request is not accepted.
    assert "X-P2P-Energy-Peer-Signature" in headers
    signed = signed_headers(secret, zero, sender=neighbour)
    first = peer_request(node.url, zero, secret, replay=signed)
    again = peer_request(node.url, zero, secret, replay=signed)
    assert first[0] == 200, first
    assert again[0] == 401, again
    assert "replayed" in again[1]["error"]


def test_a_hostile_neighbour_cannot_make_an_unfunded_spend_count(
    coordinator: Coordinator,
) -> None:
    """The neighbour holds the secret: what it sends is stored (milestones decide), but
    the ledger only ever counts what is funded, through milestones and a restart."""
    node, neighbour, secret = coordinator.node, coordinator.neighbour, coordinator.secret
    mule = address(ATTACKER_SEED, 0)
    now = int(time.time())
    # The neighbour relays, in one push (so one milestone confirms both), a genuine
    # transfer funding the attacker's address with 100 and a payment of those 100 to
    # the grid dated before its funding; then a payment from an address that never
    # held anything.
    funding = value_bundle(node.url, FUNDED_SEED, 0, GENESIS, mule, 100, timestamp=now)
    early = value_bundle(node.url, ATTACKER_SEED, 0, 100, GRID_ADDRESS, 100, timestamp=now - 600)
    empty = value_bundle(node.url, ATTACKER_SEED, 2, 1_000_000, GRID_ADDRESS, 1_000_000)
    for bundle in ([*funding, *early], empty):
        status, answer, _headers = peer_request(
            node.url,
            {"command": "storeTransactions", "trytes": bundle},
            secret,
            sender=neighbour,
        )
        assert status == 200, answer
    tails = [tail_hash(funding), tail_hash(early), tail_hash(empty)]
    wait_until(lambda: inclusion(node.url, tails[:1]) == [True], what="the funding confirms")
    time.sleep(2)  # a few more milestones

    def check() -> None:
        funded, paid, unfunded = inclusion(node.url, tails)
        grid, mule_balance = balances(node.url, [GRID_ADDRESS, mule])
        assert funded
        assert not unfunded, "a spend from an empty address is reported as included"
        # Included means applied: the grid holds what it was paid, the mule kept nothing.
        assert (grid, mule_balance) == ((100, 0) if paid else (0, 100)), (paid, grid)
        status, answer = iri(node.url, {"command": "checkConsistency", "tails": tails[2:]})
        assert status == 200
        assert answer["state"] is False

    check()
    node.stop()
    node.start()
    time.sleep(2)
    check()


def test_a_created_peering_secret_is_shown_once_and_kept(coordinator: Coordinator) -> None:
    node, neighbour, secret = coordinator.node, coordinator.neighbour, coordinator.secret
    node.stop()
    node.start()
    assert node.log.read_text().count(secret) == 1, "the secret is shown again"
    # It survived the restart: the neighbour holding it is answered, and signed for.
    status, answer, headers = peer_request(
        node.url, {"command": "getNodeInfo"}, secret, sender=neighbour
    )
    assert status == 200, answer
    assert "X-P2P-Energy-Peer-Signature" in headers
