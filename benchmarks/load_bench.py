"""API load benchmark: latency percentiles of the grid's storage API and the node's
read commands at rising client counts, from a load generator on loopback.

    .venv/bin/python benchmarks/load_bench.py [--seconds 15] [--clients 1 8 32 128]

Prints a markdown table (requests/s, p50/p95/p99 ms, 4xx/5xx counts) for RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.reliability.processes import GridProcess, NodeProcess
from tests.scale.measure import (
    LoadFigures,
    grid_api_load,
    node_api_load,
    node_store_rate,
    register_load_owner,
    zero_value_bundles,
)


def _row(api: str, clients: int, figures: LoadFigures) -> str:
    f = figures
    return (
        f"| {api} | {clients} | {f.per_second:,.0f} | {f.p50_ms:.1f} | "
        f"{f.p95_ms:.1f} | {f.p99_ms:.1f} | {f.errors} / {f.server_errors} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per load level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    args = parser.parse_args()
    lines = [
        "| API | clients | requests/s | p50 ms | p95 ms | p99 ms | 4xx / 5xx |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory(prefix="load-bench-") as folder:
        directory = Path(folder)
        node = NodeProcess(directory)
        node.start()
        grid = GridProcess(directory, node.url, grid={"storage_auth": "none"})
        try:
            grid.start()
            # Something for findTransactions to find.
            node_store_rate(node.url, zero_value_bundles(4, 10), per_request=1)
            register_load_owner(node.url, grid.url)
            for clients in args.clients:
                lines.append(
                    _row(
                        "grid storage PUT+GET",
                        clients,
                        grid_api_load(grid.url, args.seconds, clients),
                    )
                )
            for clients in args.clients:
                lines.append(
                    _row("node reads", clients, node_api_load(node.url, args.seconds, clients))
                )
        finally:
            grid.stop()
            node.stop()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
