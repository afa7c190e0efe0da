"""Schemathesis against a real ``p2p-energy grid`` process (and its node) on loopback.

Run with the storage API open (the blueprint's unauthenticated shape, which lets
generated requests reach storage and listing code) and with registration tokens
(the default). Zero 5xx, zero schema violations, no unhandled exception logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.reliability.processes import GridProcess, NodeProcess, request_json

from .schemathesis_runner import run_schemathesis, unexpected_tracebacks

CURL_KERNEL_INDEPENDENT = True
"""Nothing here reaches Curl: run once, not once per Curl kernel."""

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("storage_auth", ["none", "token"])
def test_grid_api_survives_schemathesis(tmp_path: Path, storage_auth: str) -> None:
    node = NodeProcess(tmp_path)
    node.start()
    grid = GridProcess(tmp_path, node.url, grid={"storage_auth": storage_auth})
    try:
        grid.start()
        # Generated bearer tokens hold raw non-ASCII bytes, which aiohttp's HTTP parser refuses
        # (plain-text 400) before the grid sees them: send a well-formed wrong token instead.
        headers = {"Authorization": "Bearer not-the-registration-token"}
        result = run_schemathesis(
            f"{grid.url}/api/openapi.json",
            tmp_path,
            headers=headers if storage_auth == "token" else None,
        )
        print(f"grid API ({storage_auth}): {result.summary}")
        assert result.returncode == 0, result.output[-8000:]
        assert result.generated_cases > 0
        status, health = request_json("GET", f"{grid.url}/health")
        assert status == 200, health
    finally:
        grid_code = grid.stop()
        node.stop()
    log = grid.log.read_text()
    assert grid_code == 0, log[-4000:]
    assert unexpected_tracebacks(log) == []
