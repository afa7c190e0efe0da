"""Remote proof of work is bounded and fair: no caller stalls milestones or other callers.

On the last main before this suite, attachToTangle ran one request after another on
the thread the coordinator's milestones used too: weight 14 with 20 transactions froze
milestones for over 40 s, a caller's pile of requests kept everyone else waiting, and
interruptAttachingToTangle stopped whoever's search was running.

Callers are told apart by their address: the tests connect from 127.0.0.2, 127.0.0.3
and 127.0.0.4 (all loopback).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.reliability.processes import NodeProcess, iri

from .node_attacks import zero_value_bundle

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

NULL_HASH = "9" * 81
# Searches at this weight never finish: only the time limit or an interrupt ends them.
ENDLESS = 40
TIME_LIMIT = 4


def call_from(source: str, url: str, body: dict[str, Any], timeout: float = 60) -> tuple[int, Any]:
    """POST ``body`` to the node from the loopback address ``source``."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(
        host, int(port), timeout=timeout, source_address=(source, 0)
    )
    try:
        connection.request(
            "POST",
            "/",
            body=json.dumps(body),
            headers={"X-IOTA-API-Version": "1", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def attach(trytes: list[str], weight: int) -> dict[str, Any]:
    return {
        "command": "attachToTangle",
        "trunkTransaction": NULL_HASH,
        "branchTransaction": NULL_HASH,
        "minWeightMagnitude": weight,
        "trytes": trytes,
    }


class Background:
    """A request running in a thread; ``result`` once it is answered, with when."""

    def __init__(self, source: str, url: str, body: dict[str, Any]) -> None:
        self.result: tuple[int, Any] | None = None
        self.finished_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(source, url, body), daemon=True)
        self._thread.start()

    def _run(self, source: str, url: str, body: dict[str, Any]) -> None:
        self.result = call_from(source, url, body, timeout=120)
        self.finished_at = time.monotonic()

    def join(self, timeout: float = 120) -> tuple[int, Any]:
        self._thread.join(timeout)
        assert self.result is not None, "the request did not finish"
        return self.result


def milestone_index(url: str) -> int:
    status, info = iri(url, {"command": "getNodeInfo"})
    assert status == 200, info
    return int(info["latestMilestoneIndex"])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, module_sockets: None) -> Iterator[NodeProcess]:
    """One node for the module: every test waits for its own searches to end."""
    process = NodeProcess(
        tmp_path_factory.mktemp("proof-of-work"),
        config={
            "limits": {
                "max_attach_weight": ENDLESS,
                "max_attach_seconds": TIME_LIMIT,
                "max_attach_queue_per_caller": 3,
            }
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_milestones_never_wait_behind_a_callers_search(node: NodeProcess) -> None:
    """The coordinator (0.5 s interval) keeps issuing milestones during endless searches."""
    work = zero_value_bundle(node.url)
    searches = [Background("127.0.0.2", node.url, attach(work, ENDLESS)) for _ in range(2)]
    time.sleep(0.5)
    before = milestone_index(node.url)
    # A milestone needs something new to confirm: a client stores a transaction meanwhile
    # (attached on its own machine).
    fresh = zero_value_bundle(node.url, "NEW")
    status, answer = iri(node.url, {"command": "storeTransactions", "trytes": fresh})
    assert status == 200, answer
    # The caller's two searches take turns: together they run for 2 x TIME_LIMIT s
    # (on the old main, for ever). A milestone must come while one still runs.
    deadline = time.monotonic() + 2 * TIME_LIMIT + 10
    while time.monotonic() < deadline:
        searching = any(search.result is None for search in searches)
        if milestone_index(node.url) > before or not searching:
            break
        time.sleep(0.2)
    assert milestone_index(node.url) > before, "no milestone while a caller's search ran"
    assert searching, "the milestone came only after the caller's searches had ended"
    # Every search ends by the time limit with a clear answer.
    for search in searches:
        status, answer = search.join()
        assert status == 400, answer
        assert f"stopped after {TIME_LIMIT} s" in answer["error"]


def test_a_caller_with_a_pile_of_searches_delays_another_by_one_at_most(
    node: NodeProcess,
) -> None:
    work = zero_value_bundle(node.url)
    started = time.monotonic()
    pile = [Background("127.0.0.2", node.url, attach(work, ENDLESS)) for _ in range(3)]
    time.sleep(0.5)
    # A fourth request of the same caller is over its share: refused at once.
    status, answer = call_from("127.0.0.2", node.url, attach(work, ENDLESS))
    assert status == 429, answer
    light = Background("127.0.0.3", node.url, attach(work, 1))
    status, answer = light.join()
    assert status == 200, answer
    finished = sorted(search.finished_at or float("inf") for search in pile)
    # The other caller's light search came right after the first of the pile...
    assert light.finished_at < finished[1], (light.finished_at - started, finished)
    for search in pile:
        search.join()


def test_interrupting_stops_only_the_callers_own_search(node: NodeProcess) -> None:
    work = zero_value_bundle(node.url)
    mine = Background("127.0.0.2", node.url, attach(work, ENDLESS))
    time.sleep(0.5)
    # Another program's interrupt leaves this caller's search alone...
    status, answer = call_from("127.0.0.3", node.url, {"command": "interruptAttachingToTangle"})
    assert status == 200, answer
    time.sleep(0.5)
    assert mine.result is None, mine.result
    # ...the caller's own interrupt stops it at once.
    status, answer = call_from("127.0.0.2", node.url, {"command": "interruptAttachingToTangle"})
    assert status == 200, answer
    status, answer = mine.join(timeout=TIME_LIMIT)
    assert status == 400, answer
    assert "interrupted" in answer["error"]
