"""The node's admin commands answer only this machine or the API token, never a web page.

On the last main before this suite, every command answered anyone with
``Access-Control-Allow-Origin: *``: a page in a household's browser could add or
remove the grid node's neighbours and interrupt its proof of work.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from tests.reliability.processes import NodeProcess, iri, request_json

from .node_attacks import genesis, stored, tail_hash, zero_value_bundle

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow

API_TOKEN = "security-suite-node-api-token-0123456789"
FOREIGN = "http://evil.example"
STRANGER = "http://127.0.0.1:1"


def _raw(
    url: str, body: dict[str, Any], headers: dict[str, str], method: str = "POST"
) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if method == "POST" else None,
        method=method,
        headers={"X-IOTA-API-Version": "1", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw, status, answer_headers = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as err:
        raw, status, answer_headers = err.read(), err.code, dict(err.headers)
    return status, json.loads(raw) if raw else None, answer_headers


def _neighbours(url: str) -> list[str]:
    status, answer = iri(url, {"command": "getNeighbors"})
    assert status == 200, answer
    return [n["address"] for n in answer["neighbors"]]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, module_sockets: None) -> Iterator[NodeProcess]:
    process = NodeProcess(
        tmp_path_factory.mktemp("admin"), config={"genesis": genesis(), "api_token": API_TOKEN}
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_a_web_page_of_another_origin_cannot_change_the_node(node: NodeProcess) -> None:
    # A form or fetch() with a text/plain body needs no preflight: the browser sends it.
    page = {"Origin": FOREIGN, "Content-Type": "text/plain"}
    for body in (
        {"command": "addNeighbors", "uris": [STRANGER]},
        {"command": "removeNeighbors", "uris": [STRANGER]},
        {"command": "interruptAttachingToTangle"},
        {"command": "getNeighbors"},
    ):
        status, answer, headers = _raw(node.url, body, page)
        assert status == 403, (body, answer)
        assert headers.get("Access-Control-Allow-Origin") is None
    # Not even with the token: a page holding it is still a page.
    status, _answer, _headers = _raw(
        node.url,
        {"command": "addNeighbors", "uris": [STRANGER]},
        {**page, "Authorization": f"Bearer {API_TOKEN}"},
    )
    assert status == 403
    assert _neighbours(node.url) == []

    # Nothing else that changes the node either: storing, attaching.
    payment = zero_value_bundle(node.url)
    status, answer, _headers = _raw(
        node.url, {"command": "storeTransactions", "trytes": payment}, page
    )
    assert status == 403, answer
    assert stored(node.url, [tail_hash(payment)]) == [False]

    # Reading the public Tangle stays open to any page.
    status, answer, headers = _raw(node.url, {"command": "getNodeInfo"}, page)
    assert status == 200, answer
    assert headers["Access-Control-Allow-Origin"] == "*"
    status, _answer, headers = _raw(
        node.url, {}, {"Origin": FOREIGN, "Access-Control-Request-Method": "POST"}, "OPTIONS"
    )
    assert status == 204
    assert "Authorization" not in headers["Access-Control-Allow-Headers"]


def test_admin_commands_need_this_machine_or_the_api_token(node: NodeProcess) -> None:
    add = {"command": "addNeighbors", "uris": [STRANGER]}
    # Through a proxy on this machine the caller is somewhere else: the token is needed.
    proxied = {"X-Forwarded-For": "203.0.113.7", "Content-Type": "application/json"}
    status, answer, _headers = _raw(node.url, add, proxied)
    assert status == 403, answer
    assert "API token" in answer["error"]
    status, answer, _headers = _raw(node.url, add, {**proxied, "Authorization": "Bearer wrong"})
    assert status == 401, answer
    assert _neighbours(node.url) == []
    status, answer, _headers = _raw(
        node.url, add, {**proxied, "Authorization": f"Bearer {API_TOKEN}"}
    )
    assert status == 200, answer
    assert answer["addedNeighbors"] == 1
    # A program on this machine (no browser Origin) needs no token: IRI's remote-limit-api.
    status, answer = iri(node.url, {"command": "removeNeighbors", "uris": [STRANGER]})
    assert status == 200, answer
    assert _neighbours(node.url) == []
    # Ordinary commands stay open to everyone, as pyota and @iota/core expect.
    status, answer, _headers = _raw(node.url, {"command": "getNodeInfo"}, proxied)
    assert status == 200, answer


def test_the_admin_command_list_is_configurable(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, config={"admin_commands": ["addNeighbors", "attachToTangle"]})
    node.start()
    try:
        proxied = {"X-Forwarded-For": "203.0.113.7", "Content-Type": "application/json"}
        status, answer = request_json(
            "POST",
            node.url,
            {
                "command": "attachToTangle",
                "trunkTransaction": "9" * 81,
                "branchTransaction": "9" * 81,
                "minWeightMagnitude": 1,
                "trytes": ["9" * 2673],
            },
            {"X-IOTA-API-Version": "1", **proxied},
        )
        assert status == 403, answer
        # getNeighbors is no longer on the list: anyone may read it.
        status, answer, _headers = _raw(node.url, {"command": "getNeighbors"}, proxied)
        assert status == 200, answer
    finally:
        node.stop()
