"""Schemathesis against a real ``p2p-energy node`` process on loopback.

Every request the node's OpenAPI document allows (and many it does not) must be
answered without a 5xx and in the documented shape; the node must log no
unhandled exception and still answer afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.reliability.processes import NodeProcess, iri

from .schemathesis_runner import run_schemathesis, unexpected_tracebacks

CURL_KERNEL_INDEPENDENT = True
"""Nothing here reaches Curl: run once, not once per Curl kernel."""

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow


def test_node_api_survives_schemathesis(tmp_path: Path) -> None:
    # Proof of work is the only costly command: bound attachToTangle's weight.
    node = NodeProcess(tmp_path, config={"limits": {"max_attach_weight": 3}})
    node.start()
    try:
        result = run_schemathesis(
            f"{node.url}/api/openapi.json", tmp_path, headers={"X-IOTA-API-Version": "1"}
        )
        print(f"node API: {result.summary}")
        assert result.returncode == 0, result.output[-8000:]
        assert result.generated_cases > 0
        status, info = iri(node.url, {"command": "getNodeInfo"})
        assert status == 200, info
    finally:
        code = node.stop()
    log = node.log.read_text()
    assert code == 0, log[-4000:]
    assert unexpected_tracebacks(log) == []
