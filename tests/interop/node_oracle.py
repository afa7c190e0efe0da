"""Runs the npm reference libraries (tests/interop/js) as oracles.

A script there reads one JSON document on stdin and writes one on stdout; this
helper spawns ``node`` for it so that the tests compare against the real
libraries, not recorded outputs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).parent / "js"


def node_available() -> bool:
    return shutil.which("node") is not None and (JS_DIR / "node_modules").is_dir()


def run_node(script: str, request: Any, timeout: float = 300.0) -> Any:
    """Run ``tests/interop/js/<script>`` with ``request`` as JSON; return its JSON answer."""
    if not node_available():
        raise RuntimeError("node and tests/interop/js/node_modules are required: run scripts/setup")
    completed = subprocess.run(
        ["node", str(JS_DIR / script)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=JS_DIR,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"node {script} failed ({completed.returncode}):\n{completed.stderr}")
    return json.loads(completed.stdout)
