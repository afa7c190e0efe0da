"""Node benchmark: storeTransactions and attachToTangle on a real ``p2p-energy node``.

Run: ``.venv/bin/python benchmarks/node_bench.py [--transactions N] [--quick]``

The node runs as its own process with the default settings (SQLite file,
minimum weight magnitude 9) pinned to one CPU core. The benchmark sends
valid zero-value transactions (each a one-transaction bundle approving the two
before it, proof of work at weight 9) in storeTransactions requests and
reports the sustained rate, then measures remote proof of work. Generating
the transactions takes a while, so they are cached in ``.benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from p2p_energy_protocol.bundle import bundle_hash
from p2p_energy_protocol.pow import find_nonce
from p2p_energy_protocol.transaction import Transaction
from p2p_energy_protocol.trinary import ascii_to_trytes

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".benchmarks" / "node_bench"
CONSOLE_SCRIPT = Path(sys.executable).parent / "p2p-energy"
WEIGHT = 9
NULL_HASH = "9" * 81
UPPER_BOUND = (3**27 - 1) // 2
ADDRESS = "NODE9BENCHMARK".ljust(81, "9")


def make_transactions(count: int) -> list[str]:
    """Valid one-transaction zero-value bundles, each approving the two before it."""
    cache = CACHE / f"transactions_{count}_mwm{WEIGHT}.json"
    if cache.exists():
        cached: list[str] = json.loads(cache.read_text())
        return cached
    print(f"generating {count} transactions with proof of work at weight {WEIGHT} (cached)…")
    started = time.perf_counter()
    approved = [NULL_HASH, NULL_HASH]
    trytes: list[str] = []
    now = int(time.time())
    for index in range(count):
        draft = Transaction(
            signature_message_fragment=ascii_to_trytes(f"reading {index}").ljust(2187, "9"),
            address=ADDRESS,
            value=0,
            obsolete_tag="BENCH".ljust(27, "9"),
            timestamp=now,
            current_index=0,
            last_index=0,
            bundle=NULL_HASH,
            trunk_transaction=approved[-1],
            branch_transaction=approved[-2],
            tag="BENCH".ljust(27, "9"),
            attachment_timestamp=now * 1000 + index,
            attachment_timestamp_upper_bound=UPPER_BOUND,
        )
        unsigned = draft.replace(bundle=bundle_hash([draft]))
        done = unsigned.replace(nonce=find_nonce(unsigned.to_trytes(), WEIGHT))
        trytes.append(done.to_trytes())
        approved.append(done.hash)
        if (index + 1) % 500 == 0:
            print(f"  {index + 1}/{count} ({time.perf_counter() - started:.0f} s)")
    CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(trytes))
    return trytes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command(url: str, body: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"X-IOTA-API-Version": "1", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"{body['command']} failed: {err.read().decode()}") from err


def start_node(directory: Path, core: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (directory / "node.log").open("wb")
    process = subprocess.Popen(
        [
            str(CONSOLE_SCRIPT),
            "node",
            "--port",
            str(port),
            "--database",
            f"sqlite:///{directory / 'node.sqlite3'}",
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # Threads the node starts later inherit this.
    os.sched_setaffinity(process.pid, {core})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            command(url, {"command": "getNodeInfo"}, timeout=2)
            return process, url
        except (OSError, RuntimeError):
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the node did not start: {(directory / 'node.log').read_text()}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_store(url: str, pid: int, trytes: list[str], batch: int) -> dict[str, float]:
    durations: list[float] = []
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    for start in range(0, len(trytes), batch):
        chunk = trytes[start : start + batch]
        before = time.perf_counter()
        command(url, {"command": "storeTransactions", "trytes": chunk})
        durations.append(time.perf_counter() - before)
    total = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    rates = [batch / d for d in durations[:-1]] or [len(trytes) / total]
    stored = command(url, {"command": "findTransactions", "tags": ["BENCH"]})["hashes"]
    if len(stored) != len(trytes):
        raise RuntimeError(f"only {len(stored)} of {len(trytes)} transactions were stored")
    return {
        "transactions": len(trytes),
        "seconds": total,
        "rate": len(trytes) / total,
        "cpu_rate": len(trytes) / cpu,
        "slowest_batch_rate": min(rates),
        "median_batch_ms": statistics.median(durations) * 1000,
    }


def bench_attach(url: str, count: int, bundle_size: int) -> dict[str, float]:
    template = Transaction(
        signature_message_fragment="9" * 2187,
        address=ADDRESS,
        value=0,
        obsolete_tag="ATTACH".ljust(27, "9"),
        timestamp=int(time.time()),
        current_index=0,
        last_index=bundle_size - 1,
        bundle=NULL_HASH,
    )
    members = [template.replace(current_index=i) for i in range(bundle_size)]
    hashed = bundle_hash(members)
    trytes = [m.replace(bundle=hashed).to_trytes() for m in reversed(members)]
    durations: list[float] = []
    for _ in range(count):
        tips = command(url, {"command": "getTransactionsToApprove", "depth": 3})
        before = time.perf_counter()
        command(
            url,
            {
                "command": "attachToTangle",
                "trunkTransaction": tips["trunkTransaction"],
                "branchTransaction": tips["branchTransaction"],
                "minWeightMagnitude": WEIGHT,
                "trytes": trytes,
            },
        )
        durations.append(time.perf_counter() - before)
    total = sum(durations)
    return {
        "requests": count,
        "bundle_size": bundle_size,
        "transactions_per_second": count * bundle_size / total,
        "median_request_ms": statistics.median(durations) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=300, help="transactions per request")
    parser.add_argument("--attach", type=int, default=20, help="attachToTangle requests")
    parser.add_argument("--quick", action="store_true", help="1,000 transactions, 5 attaches")
    args = parser.parse_args()
    count, attaches = (1000, 5) if args.quick else (args.transactions, args.attach)
    trytes = make_transactions(count)
    core = sorted(os.sched_getaffinity(0))[0]
    with tempfile.TemporaryDirectory() as directory:
        process, url = start_node(Path(directory), core)
        try:
            store = bench_store(url, process.pid, trytes, args.batch)
            single = bench_attach(url, attaches, 1)
            bundle = bench_attach(url, max(1, attaches // 5), 10)
        finally:
            process.terminate()
            process.wait(30)
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    load = os.getloadavg()[0]
    print(
        f"\nNode benchmark, {when}, {platform.machine()} with {os.cpu_count()} cores (load "
        f"average {load:.1f} during the run); the node process pinned to core {core}, SQLite "
        f"(default database), minimum weight magnitude {WEIGHT}.\n"
    )
    print("| measurement | result |")
    print("| --- | --- |")
    print(
        f"| storeTransactions, {store['transactions']:,} valid zero-value transactions in "
        f"requests of {args.batch}, per second of node CPU time | "
        f"**{store['cpu_rate']:,.0f} tx/s** |"
    )
    print(
        f"| the same, per second of wall-clock time | {store['rate']:,.0f} tx/s sustained "
        f"(slowest request {store['slowest_batch_rate']:,.0f} tx/s, median request "
        f"{store['median_batch_ms']:.0f} ms) |"
    )
    print(
        f"| attachToTangle at weight {WEIGHT}, one-transaction bundles | "
        f"{single['transactions_per_second']:.1f} tx/s (median {single['median_request_ms']:.0f} "
        "ms per request) |"
    )
    print(
        f"| attachToTangle at weight {WEIGHT}, ten-transaction bundles | "
        f"{bundle['transactions_per_second']:.1f} tx/s (median {bundle['median_request_ms']:.0f} "
        "ms per bundle) |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
