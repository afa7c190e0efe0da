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
from typing import TYPE_CHECKING

import pytest

from tests.reliability.processes import NodeProcess, free_port, iri, post_json

from .node_attacks import (
    ATTACKER_SEED,
    FUNDED_SEED,
    GENESIS,
    GRID_ADDRESS,
    PEERING_SECRET,
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
    from pathlib import Path

pytestmark = pytest.mark.slow


def _node(tmp_path: Path) -> tuple[NodeProcess, str]:
    """A coordinator node with one (absent) neighbour it shares the test secret with."""
    neighbour = f"http://127.0.0.1:{free_port()}"
    node = NodeProcess(
        tmp_path,
        config={
            "genesis": genesis(),
            "neighbors": [neighbour],
            "peering": {"secret": PEERING_SECRET},
        },
    )
    node.start()
    return node, neighbour


def test_a_peer_header_is_no_credential(tmp_path: Path) -> None:
    node, neighbour = _node(tmp_path)
    try:
        unfunded = value_bundle(node.url, ATTACKER_SEED, 0, 1_000_000, GRID_ADDRESS, 1_000_000)
        status, answer = post_json(
            node.url,
            {"command": "storeTransactions", "trytes": unfunded},
            {"X-IOTA-API-Version": "1", "X-P2P-Energy-Peer": neighbour},
        )
        # An ordinary client's request with every check: refused, nothing stored.
        assert status == 400, answer
        assert "holds 0 confirmed" in answer["error"]
        assert stored(node.url, [tail_hash(unfunded)]) == [False]
    finally:
        node.stop()


def test_forged_stale_and_replayed_peer_signatures_are_refused(tmp_path: Path) -> None:
    node, neighbour = _node(tmp_path)
    try:
        unfunded = value_bundle(node.url, ATTACKER_SEED, 1, 500, GRID_ADDRESS, 500)
        body = {"command": "storeTransactions", "trytes": unfunded}
        wrong = "not-the-network-secret-but-long-enough-0000"
        for status, answer, _headers in (
            peer_request(node.url, body, wrong, sender=neighbour),
            peer_request(
                node.url,
                body,
                PEERING_SECRET,
                sender=neighbour,
                now_ms=int(time.time() * 1000) - 10 * 60 * 1000,
            ),
        ):
            assert status == 401, answer
            assert "neighbour authentication failed" in answer["error"]
        assert stored(node.url, [tail_hash(unfunded)]) == [False]

        zero = {"command": "getNodeInfo"}
        status, _answer, headers = peer_request(node.url, zero, PEERING_SECRET, sender=neighbour)
        assert status == 200
        # The answer is signed for the neighbour; a replay of the same request is not accepted.
        assert "X-P2P-Energy-Peer-Signature" in headers
        signed = signed_headers(PEERING_SECRET, zero, sender=neighbour)
        first = peer_request(node.url, zero, PEERING_SECRET, replay=signed)
        again = peer_request(node.url, zero, PEERING_SECRET, replay=signed)
        assert first[0] == 200, first
        assert again[0] == 401, again
        assert "replayed" in again[1]["error"]
    finally:
        node.stop()


def test_a_hostile_neighbour_cannot_make_an_unfunded_spend_count(tmp_path: Path) -> None:
    """The neighbour holds the secret: what it sends is stored (milestones decide), but
    the ledger only ever counts what is funded, through milestones and a restart."""
    node, neighbour = _node(tmp_path)
    try:
        mule = address(ATTACKER_SEED, 0)
        now = int(time.time())
        # The neighbour relays, in one push (so one milestone confirms both), a genuine
        # transfer funding the attacker's address with 100 and a payment of those 100 to
        # the grid dated before its funding; then a payment from an address that never
        # held anything.
        funding = value_bundle(node.url, FUNDED_SEED, 0, GENESIS, mule, 100, timestamp=now)
        early = value_bundle(
            node.url, ATTACKER_SEED, 0, 100, GRID_ADDRESS, 100, timestamp=now - 600
        )
        empty = value_bundle(node.url, ATTACKER_SEED, 2, 1_000_000, GRID_ADDRESS, 1_000_000)
        for bundle in ([*funding, *early], empty):
            status, answer, _headers = peer_request(
                node.url,
                {"command": "storeTransactions", "trytes": bundle},
                PEERING_SECRET,
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
    finally:
        node.stop()


def test_a_created_peering_secret_is_shown_once_and_kept(tmp_path: Path) -> None:
    neighbour = f"http://127.0.0.1:{free_port()}"
    node = NodeProcess(tmp_path, config={"neighbors": [neighbour]})
    node.start()
    try:
        found = re.findall(r"set your own peering\.secret here: (\S+)", node.log_tail(20_000))
        assert len(found) == 1, node.log_tail()
        secret = found[0]
        node.stop()
        node.start()
        log = node.log.read_text()
        assert log.count(secret) == 1, "the secret is shown again"
        # It survived the restart: the neighbour holding it is answered, and signed for.
        status, answer, headers = peer_request(
            node.url, {"command": "getNodeInfo"}, secret, sender=neighbour
        )
        assert status == 200, answer
        assert "X-P2P-Energy-Peer-Signature" in headers
    finally:
        node.stop()
