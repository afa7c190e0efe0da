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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from grid_server.node.peer_auth import AUTH_HEADER, RESPONSE_SIGNATURE_HEADER, VerifiedPeer
from tests.reliability.processes import NodeProcess, iri

from .node_attacks import PEERING_SECRET, wait_until, zero_value_bundle

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


class HostileNeighbour(ThreadingHTTPServer):
    """Answers syncTransactions with a flood (``mode = "flood"``), with one transaction
    per page while claiming a billion more (``mode = "drip"``) or without the signature
    (``mode = "unsigned"``); everything else politely."""

    daemon_threads = True

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
        self.end_headers()
        self.wfile.write(raw)

    def _flood(self) -> None:
        # No Content-Length: the size shows only while reading.
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"9" * 65_536
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            self.wfile.write(b'd\r\n{"trytes": ["\r\n')
            while self.server.flood_sent < FLOOD:
                self.wfile.write(framed)
                self.server.flood_sent += len(chunk)
        except OSError:
            return
        self.close_connection = True


def _neighbour_state(node: NodeProcess, url: str) -> dict[str, Any]:
    status, answer = iri(node.url, {"command": "getNeighbors"})
    assert status == 200, answer
    return next(n for n in answer["neighbors"] if n["address"] == url)


@pytest.fixture
def flood(tmp_path: Path) -> Iterator[tuple[HostileNeighbour, NodeProcess]]:
    neighbour = HostileNeighbour("flood")
    node = NodeProcess(
        tmp_path,
        config={
            "neighbors": [neighbour.url],
            "sync_interval": 0.5,
            "peering": {"secret": PEERING_SECRET, "max_response_bytes": CAP},
        },
    )
    try:
        yield neighbour, node
    finally:
        node.stop()
        neighbour.close()


def test_an_oversized_answer_is_cut_off_and_its_neighbour_backed_off(
    flood: tuple[HostileNeighbour, NodeProcess],
) -> None:
    neighbour, node = flood
    node.start()
    resident = node.rss_bytes()
    wait_until(lambda: neighbour.sync_calls >= 1, what="the node pulls")
    wait_until(
        lambda: _neighbour_state(node, neighbour.url)["failures"] >= 1,
        what="the neighbour is marked as failing",
    )
    state = _neighbour_state(node, neighbour.url)
    assert "over the cap" in state["lastError"], state
    assert state["state"] == "backing off"
    time.sleep(1)
    # The node stopped reading after its cap: the rest of the flood was never sent.
    assert neighbour.flood_sent < CAP + BUFFERS, neighbour.flood_sent
    assert node.rss_bytes() - resident < 64 * 2**20, (resident, node.rss_bytes())
    status, info = iri(node.url, {"command": "getNodeInfo"})
    assert status == 200, info


def test_endless_paging_is_bounded_per_round_and_backed_off(tmp_path: Path) -> None:
    neighbour = HostileNeighbour("drip")
    node = NodeProcess(
        tmp_path,
        config={
            "neighbors": [neighbour.url],
            "sync_interval": 0.5,
            "peering": {
                "secret": PEERING_SECRET,
                "max_transactions_per_round": 50,
                "max_backoff": 5,
            },
        },
    )
    try:
        node.start()
        neighbour.drip_trytes = zero_value_bundle(node.url, "DRIP")
        calls_at_start = neighbour.sync_calls
        time.sleep(10)
        calls = neighbour.sync_calls - calls_at_start
        # A few short pages per round, rounds spaced by a doubling back-off.
        assert calls <= 40, calls
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
    finally:
        node.stop()
        neighbour.close()


def test_an_unsigned_answer_is_not_believed(tmp_path: Path) -> None:
    neighbour = HostileNeighbour("unsigned")
    node = NodeProcess(
        tmp_path,
        config={
            "neighbors": [neighbour.url],
            "sync_interval": 0.5,
            "peering": {"secret": PEERING_SECRET},
        },
    )
    try:
        node.start()
        neighbour.drip_trytes = zero_value_bundle(node.url, "FORGED")
        calls = neighbour.sync_calls
        wait_until(lambda: neighbour.sync_calls > calls + 1, what="two more pulls")
        state = _neighbour_state(node, neighbour.url)
        assert "not signed" in state["lastError"], state
        status, answer = iri(node.url, {"command": "findTransactions", "tags": ["SECURITY"]})
        assert status == 200, answer
        assert answer["hashes"] == []
    finally:
        node.stop()
        neighbour.close()
