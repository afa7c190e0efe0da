"""Scale benchmark: the grid and node at 1,000 and 10,000 households on this machine.

    .venv/bin/python benchmarks/scale_bench.py [--quick]

Measures, side by side for each size: settlement time of one 15-minute slot (target:
under 10 % of the slot at 10,000 households), MAM batch ingestion (target: 1,000
messages/s), node storeTransactions throughput, grid API latency percentiles under a
loopback load generator, and memory. Prints a markdown table for RELIABILITY.md.
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.reliability.processes import GridProcess, NodeProcess
from tests.scale.measure import (
    grid_api_load,
    mam_ingestion_rate,
    node_store_rate,
    peak_rss_bytes,
    register_load_owner,
    settle_one_slot,
    zero_value_bundles,
)

MIB = 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    sizes = (100, 1_000) if args.quick else (1_000, 10_000)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as folder:
        directory = Path(folder)
        settled = [settle_one_slot(directory, size) for size in sizes]
        rows.append(
            (
                "settle one 15-min slot (s)",
                f"{settled[0].seconds:.2f} ({settled[0].share_of_slot:.2%} of slot)",
                f"{settled[1].seconds:.2f} ({settled[1].share_of_slot:.2%} of slot)",
            )
        )
        growth = settled[1].seconds / settled[0].seconds
        rows.append(("settlement growth for 10x households", "", f"{growth:.1f}x"))
        rates = [mam_ingestion_rate(size) for size in sizes]
        rows.append(("MAM batch ingestion (messages/s)", f"{rates[0]:,.0f}", f"{rates[1]:,.0f}"))
        node = NodeProcess(directory)
        node.start()
        grid = GridProcess(directory, node.url, grid={"storage_auth": "none"})
        try:
            grid.start()
            bundles = zero_value_bundles(20 if args.quick else 40, 50)
            one = node_store_rate(node.url, bundles[: len(bundles) // 2], per_request=1)
            many = node_store_rate(node.url, bundles[len(bundles) // 2 :], per_request=5)
            rows.append(
                (
                    "node storeTransactions (tx/s; 50-tx bundles, 1 and 5 per call)",
                    f"{one:,.0f}",
                    f"{many:,.0f}",
                )
            )
            register_load_owner(node.url, grid.url)
            seconds = 5 if args.quick else 15
            loads = [grid_api_load(grid.url, seconds, clients) for clients in (8, 64)]
            for label, attribute in (
                ("grid API requests/s (8 / 64 clients)", "per_second"),
                ("grid API p50 latency (ms)", "p50_ms"),
                ("grid API p95 latency (ms)", "p95_ms"),
                ("grid API p99 latency (ms)", "p99_ms"),
            ):
                rows.append(
                    (
                        label,
                        f"{getattr(loads[0], attribute):,.1f}",
                        f"{getattr(loads[1], attribute):,.1f}",
                    )
                )
            rows.append(
                (
                    "grid API 4xx / 5xx answers",
                    f"{loads[0].errors} / {loads[0].server_errors}",
                    f"{loads[1].errors} / {loads[1].server_errors}",
                )
            )
            rows.append(
                (
                    "memory RSS after load: grid / node (MiB)",
                    "",
                    f"{grid.rss_bytes() / MIB:.0f} / {node.rss_bytes() / MIB:.0f}",
                )
            )
        finally:
            grid.stop()
            node.stop()
        rows.append(("benchmark process peak RSS (MiB)", "", f"{peak_rss_bytes() / MIB:.0f}"))
    # Settlement and ingestion rows compare the two market sizes; the process rows
    # compare two load settings (named in their labels).
    print(f"| measure | {sizes[0]:,} households / first setting | {sizes[1]:,} / second |")
    print("| --- | --- | --- |")
    for label, small, large in rows:
        print(f"| {label} | {small} | {large} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
