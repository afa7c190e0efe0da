"""A hostile neighbour costs the node a bounded amount: its answers are capped, its pages
counted, and it is backed off, visibly in getNeighbors.

On the last main before this suite, a 400 MB syncTransactions answer was read whole
(the grid process went from 225 to 1,556 MiB) and a neighbour paging one transaction
at a time (``next = since + 1``) was followed for ever, starving milestones.

The hostile neighbour here is a small HTTP server of the test's own that holds the
network's secret: it signs what it sends, so only the bounds stop it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from grid_server.node.peer_auth import AUTH_HEADER, RESPONSE_SIGNATURE_HEADER, VerifiedPeer
from tests.reliability.processes import NodeProcess, iri

from .node_attacks import PEERING_SECRET, stored, tail_hash, wait_until, zero_value_bundle

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

CAP = 1_000_000
FLOOD = 100_000_000


def _socket_buffers() -> int:
    """What the kernel may hold between the two ends (sent, never read by the node)."""
    try:
        receive = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
        send = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 40_000_000
    return receive + send + 1_000_000


BUFFERS = _socket_buffers()


class HostileNeighbour(HTTPServer):
    """Answers syncTransactions with a flood (``mode = "flood"``), with one transaction
    per page while claiming a billion more (``mode = "drip"``) or without the signature
    (``mode = "unsigned"``); everything else politely."""

    # One thread serving one request at a time (each answer closes its connection): no
    # thread is left behind by a test while the module's node keeps pulling.

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.sync_calls = 0
        self.flood_sent = 0
        self.drip_trytes: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: HostileNeighbour
    protocol_version = "HTTP/1.1"
    _NONCE: ClassVar = re.compile(r"nonce=([0-9a-f]{32})")

    def log_message(self, *_args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        match = self._NONCE.search(self.headers.get(AUTH_HEADER, ""))
        nonce = match[1] if match else ""
        command = body.get("command")
        if command == "syncTransactions":
            self.server.sync_calls += 1
            if self.server.mode == "flood":
                self._flood()
                return
            since = int(body["since"])
            if self.server.mode == "unsigned":
                # Genuine transactions, but not signed: someone else answering for it.
                self._answer("", {"trytes": self.server.drip_trytes, "next": 1, "head": 1})
                return
            self._answer(
                nonce, {"trytes": self.server.drip_trytes, "next": since + 1, "head": 10**9}
            )
            return
        if command == "getTrytes":
            self._answer(nonce, {"trytes": ["9" * 2673 for _ in body["hashes"]]})
            return
        if command == "findTransactions":
            self._answer(nonce, {"hashes": []})
            return
        self._answer(nonce, {})

    def _answer(self, nonce: str, answer: dict[str, Any]) -> None:
        raw = json.dumps(answer).encode()
        signature = VerifiedPeer(self.server.url, PEERING_SECRET, nonce).sign_answer(200, raw)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header(RESPONSE_SIGNATURE_HEADER, signature)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(raw)

    def _flood(self) -> None:
        # No Content-Length: the size shows only while reading.
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = b"9" * 65_536
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            self.wfile.write(b'd\r\n{"trytes": ["\r\n')
            sent = 0
            while sent < FLOOD:
                self.wfile.write(framed)
                sent += len(chunk)
                # The most one answer got out (the node pulls again after its back-off).
                self.server.flood_sent = max(self.server.flood_sent, sent)
        except OSError:
            return
        self.close_connection = True


def _neighbour_state(node: NodeProcess, url: str) -> dict[str, Any]:
    status, answer = iri(node.url, {"command": "getNeighbors"})
    assert status == 200, answer
    return next(n for n in answer["neighbors"] if n["address"] == url)


@dataclass
class Network:
    """One node peered with a flooding, a dripping and an unsigned neighbour."""

    node: NodeProcess
    flood: HostileNeighbour
    drip: HostileNeighbour
    unsigned: HostileNeighbour
    resident_at_start: int


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory, module_sockets: None) -> Iterator[Network]:
    neighbours = {mode: HostileNeighbour(mode) for mode in ("flood", "drip", "unsigned")}
    node = NodeProcess(
        tmp_path_factory.mktemp("peering-limits"),
        config={
            "neighbors": [neighbour.url for neighbour in neighbours.values()],
            "sync_interval": 0.5,
            "peering": {
                "secret": PEERING_SECRET,
                "max_response_bytes": CAP,
                "max_transactions_per_round": 50,
                "max_backoff": 2,
            },
        },
    )
    try:
        node.start()
        resident = node.rss_bytes()
        for mode in ("drip", "unsigned"):
            neighbours[mode].drip_trytes = zero_value_bundle(node.url, mode.upper())
        yield Network(node, resident_at_start=resident, **neighbours)
    finally:
        node.stop()
        for neighbour in neighbours.values():
            neighbour.close()


def test_an_oversized_answer_is_cut_off_and_its_neighbour_backed_off(network: Network) -> None:
    node, neighbour = network.node, network.flood
    wait_until(lambda: neighbour.sync_calls >= 1, what="the node pulls")
    wait_until(
        lambda: _neighbour_state(node, neighbour.url)["failures"] >= 1,
        what="the neighbour is marked as failing",
    )
    # It stays marked (the polite answers to the node's pushes do not clear it).
    time.sleep(1)
    state = _neighbour_state(node, neighbour.url)
    assert "over the cap" in state["lastError"], state
    assert state["failures"] >= 1, state
    # The node stopped reading after its cap: the rest of the flood was never sent.
    assert neighbour.flood_sent < CAP + BUFFERS, neighbour.flood_sent
    grown = node.rss_bytes() - network.resident_at_start
    print(f"flood: at most {neighbour.flood_sent:,} bytes sent per answer; node grew {grown:,} B")
    assert grown < 64 * 2**20, grown
    status, info = iri(node.url, {"command": "getNodeInfo"})
    assert status == 200, info


def test_endless_paging_is_bounded_per_round_and_backed_off(network: Network) -> None:
    node, neighbour = network.node, network.drip
    calls_at_start = neighbour.sync_calls
    time.sleep(6)
    calls = neighbour.sync_calls - calls_at_start
    print(f"drip: {calls} syncTransactions calls in 6 s")
    # At most three short pages per round, rounds spaced by a doubling back-off (the old
    # main paged on for ever: thousands of calls).
    assert calls <= 30, calls
    state = _neighbour_state(node, neighbour.url)
    assert state["failures"] >= 1, state
    assert "smaller than asked" in state["lastError"], state
    # Meanwhile the node serves and issues milestones as usual.
    fresh = zero_value_bundle(node.url, "FRESH")
    status, answer = iri(node.url, {"command": "storeTransactions", "trytes": fresh})
    assert status == 200, answer
    status, info = iri(node.url, {"command": "getNodeInfo"})
    before = info["latestMilestoneIndex"]
    wait_until(
        lambda: iri(node.url, {"command": "getNodeInfo"})[1]["latestMilestoneIndex"] > before,
        timeout=10,
        what="a milestone",
    )


def test_an_unsigned_answer_is_not_believed(network: Network) -> None:
    node, neighbour = network.node, network.unsigned
    calls = neighbour.sync_calls
    wait_until(lambda: neighbour.sync_calls > calls + 1, what="two more pulls")
    state = _neighbour_state(node, neighbour.url)
    assert "not signed" in state["lastError"], state
    assert stored(node.url, [tail_hash(neighbour.drip_trytes)]) == [False]
