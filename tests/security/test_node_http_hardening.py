"""HTTP hardening of both services (node and grid): malformed input gets a 4xx, stalled
connections are closed, an aborted upload is one log line, pages carry browser protections.

On the last main before this suite, lone surrogates in JSON (``{"a": "\\ud800"}``) and a
body that was not what its Content-Encoding said were answered 500 (a traceback on the
grid, plain text on the node); idle and half-sent requests held their connection for
ever; every aborted upload logged a 17-line traceback; the explorer sent no CSP,
frame-ancestors or nosniff.
"""

from __future__ import annotations

import gzip
import json
import socket
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from tests.reliability.processes import GridProcess, NodeProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

# Short timeouts so the test sees them act; the defaults are 75 s idle, 30 s per request.
IDLE, REQUEST = 3.0, 2.0
IRI = {"X-IOTA-API-Version": "1"}
SURROGATE = b'"\\ud800"'
REGISTRATION = "/registration/hardening-test-1"


@pytest.fixture(scope="module")
def services(
    tmp_path_factory: pytest.TempPathFactory, module_sockets: None
) -> Iterator[tuple[NodeProcess, GridProcess]]:
    directory = tmp_path_factory.mktemp("hardening")
    node = NodeProcess(
        directory, config={"http": {"idle_timeout": IDLE, "request_timeout": REQUEST}}
    )
    node.start()
    grid = GridProcess(
        directory,
        node.url,
        grid={"http_idle_timeout": IDLE, "http_request_timeout": REQUEST, "storage_auth": "none"},
    )
    try:
        grid.start()
        yield node, grid
    finally:
        grid.stop()
        node.stop()


def send(url: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def raw_exchange(url: str, payload: bytes, wait: float = 10.0) -> bytes:
    """Send raw bytes, return what comes back until the server closes (or ``wait``)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=wait) as connection:
        connection.sendall(payload)
        received = b""
        try:
            while chunk := connection.recv(65_536):
                received += chunk
        except TimeoutError:
            pass
    return received


def closed_within(url: str, payload: bytes, seconds: float) -> float:
    """Seconds until the server closes a connection that sent ``payload`` and stalls."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=seconds) as connection:
        if payload:
            connection.sendall(payload)
        try:
            while connection.recv(65_536):
                pass
        except TimeoutError:
            return float("inf")
    return time.monotonic() - started


def test_malformed_json_is_a_400_on_both_services(
    services: tuple[NodeProcess, GridProcess],
) -> None:
    node, grid = services
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[str, str, str, bytes, dict[str, str]]] = [
        ("node", node.url, "POST", b'{"command": ' + SURROGATE + b"}", IRI),
        (
            "node",
            node.url,
            "POST",
            b'{"command": "getBalances", "addresses": [' + SURROGATE + b"]}",
            IRI,
        ),
        ("node", node.url, "POST", b'{"command": "getNodeInfo", ' + SURROGATE + b": 1}", IRI),
        ("node", node.url, "POST", b'{"command": "getNodeInfo", "x": NaN}', IRI),
        ("node", node.url, "POST", b'{"command": "getNodeInfo"}\xff', IRI),
        (
            "grid",
            grid.url,
            "PUT",
            b'{"itemName": '
            + SURROGATE
            + b', "itemType": "consumer", "root": "'
            + b"A" * 81
            + b'", "sideKey": "B"}',
            json_type,
        ),
        ("grid", grid.url, "PUT", b'{"a": ' + SURROGATE + b"}", json_type),
    ]
    for service, url, method, body, headers in cases:
        path = "/" if service == "node" else REGISTRATION
        if body.startswith(b'{"a"'):
            path = "/storage/item/hardening-test-1/ctx/item"
        status, text = send(url, method, path, body, headers)
        assert 400 <= status < 500, (service, body[:60], status, text[:300])


def test_a_body_that_is_not_what_its_encoding_says_is_a_400(
    services: tuple[NodeProcess, GridProcess],
) -> None:
    node, grid = services
    plain = b'{"command": "getNodeInfo"}'
    for encoding in ("gzip", "deflate", "br"):
        status, text = send(node.url, "POST", "/", plain, {**IRI, "Content-Encoding": encoding})
        assert status == 400, (encoding, status, text[:300])
        status, text = send(
            grid.url,
            "PUT",
            "/storage/item/hardening-test-1/ctx/item",
            b'{"a": 1}',
            {"Content-Type": "application/json", "Content-Encoding": encoding},
        )
        assert 400 <= status < 500, (encoding, status, text[:300])
    # What is compressed as it says still works.
    status, text = send(
        node.url, "POST", "/", gzip.compress(plain), {**IRI, "Content-Encoding": "gzip"}
    )
    assert status == 200, text[:300]


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nX-IOTA-API-Version: \xff\xfe\r\n"
        b"Content-Length: 2\r\n\r\n{}",
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /explorer/api/transaction/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /storage/%00/../%ff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
    ],
)
def test_bad_requests_get_a_4xx_never_a_5xx(
    services: tuple[NodeProcess, GridProcess], head: bytes
) -> None:
    for service in services:
        answer = raw_exchange(service.url, head)
        status_line = answer.split(b"\r\n", 1)[0]
        if status_line:  # the server may also just close the connection
            status = int(status_line.split()[1])
            assert 400 <= status < 500, (service.name, head[:80], answer[:300])


def test_idle_and_half_sent_requests_are_closed(services: tuple[NodeProcess, GridProcess]) -> None:
    patience = IDLE + REQUEST + 5
    for service in services:
        # Nothing at all, half the request line, headers without their end, half a body.
        for payload in (
            b"",
            b"POST / HT",
            b"POST / HTTP/1.1\r\nHost: x\r\nX-IOTA-API-Version: 1\r\n",
            b"PUT /registration/hardening-test-2 HTTP/1.1\r\nHost: x\r\n"
            b"X-IOTA-API-Version: 1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{",
        ):
            seconds = closed_within(service.url, payload, patience)
            assert seconds < patience, (service.name, payload[:40])


def test_an_aborted_upload_is_one_log_line(services: tuple[NodeProcess, GridProcess]) -> None:
    node, grid = services
    uploads = (
        (node, b"POST / HTTP/1.1\r\n", b'{"command": "storeTransactions", "trytes": ["'),
        (grid, b"PUT /storage/item/hardening-test-1/ctx/aborted HTTP/1.1\r\n", b'{"a": "'),
    )
    for service, request_line, start in uploads:
        before = len(service.log.read_text(errors="replace"))
        host, port = service.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(
                request_line
                + b"Host: x\r\nX-IOTA-API-Version: 1\r\nContent-Type: application/json\r\n"
                + b"Content-Length: 50000\r\n\r\n"
                + start
                + b"9" * 5000
            )
        # The client is gone; give the service a moment to notice.
        time.sleep(1.5)
        added = service.log.read_text(errors="replace")[before:]
        assert "Traceback" not in added, added[-3000:]
        assert len([line for line in added.splitlines() if line.strip()]) <= 1, added


def test_the_explorer_sends_the_portals_browser_protections(
    services: tuple[NodeProcess, GridProcess],
) -> None:
    node, _grid = services
    for path in ("/explorer/", "/explorer/static/explorer.js", "/explorer/api/status"):
        with urllib.request.urlopen(node.url + path, timeout=30) as response:
            headers: Any = response.headers
        policy = headers["Content-Security-Policy"]
        assert "frame-ancestors 'self'" in policy, policy
        assert "default-src 'self'" in policy, policy
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"


def test_json_answers_stay_parseable(services: tuple[NodeProcess, GridProcess]) -> None:
    """Refusals are JSON in each API's shape, so clients can show the reason."""
    node, grid = services
    status, text = send(node.url, "POST", "/", b'{"command": ' + SURROGATE + b"}", IRI)
    assert status == 400
    assert "error" in json.loads(text)
    status, text = send(
        grid.url,
        "PUT",
        REGISTRATION,
        b"{" + SURROGATE + b": 1}",
        {"Content-Type": "application/json"},
    )
    assert status == 400
    assert json.loads(text)["success"] is False
