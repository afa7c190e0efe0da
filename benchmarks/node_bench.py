"""Node benchmark: storeTransactions and attachToTangle on a real ``p2p-energy node``.

Run: ``.venv/bin/python benchmarks/node_bench.py [--transactions N] [--quick]``

The node runs as its own process with the default settings (SQLite file,
minimum weight magnitude 9) pinned to one CPU core. The benchmark sends
valid zero-value transactions (each a one-transaction bundle approving the two
before it, proof of work at weight 9) in storeTransactions requests and
reports the sustained rate, then measures remote proof of work. Generating
the transactions takes a while, so they are cached in ``.benchmarks/``.

``--stored 0 200000 1000000`` measures instead how storing grows with the Tangle,
side by side with a reference (``--reference main``, its ``grid_server`` taken
with ``git archive``, so both run the same protocol library): for each size, each
schema's database is first filled directly through that version's own
``TangleStore.insert_transactions`` (not through the API) with that many synthetic
transactions (random hashes and 2,673-tryte payloads, 10,000 addresses, each
approving the two before it, all confirmed), then the node starts on it and the
same storeTransactions stream is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
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


_RUN_CLI = "import sys; from grid_server.cli import main; sys.exit(main())"
_TRYTES = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TO_TRYTES = bytes(ord(_TRYTES[byte % 27]) for byte in range(256))
PREFILL_BATCH = 20_000


def _with_code(code: Path | None) -> dict[str, str]:
    """The environment that makes Python import ``grid_server`` from ``code``."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    return env


def random_trytes(length: int) -> str:
    return os.urandom(length).translate(_TO_TRYTES).decode()


def prefill(url: str, count: int) -> None:
    """Store ``count`` synthetic transactions through the storage layer of whichever
    ``grid_server`` this process imports (bulk inserts, no validation, no API)."""
    from grid_server.node.storage import TangleStore, TransactionRecord

    store = TangleStore.open(url)
    # A bulk load: no fsync per commit and a larger page cache, for this process only.
    with store.connect() as conn:
        conn.exec_driver_sql("PRAGMA synchronous=OFF")
        conn.exec_driver_sql("PRAGMA cache_size=-262144")
    chooser = random.Random(7)
    addresses = [random_trytes(81) for _ in range(10_000)]
    tags = [f"BENCH9PREFILL9{index}".ljust(27, "9") for index in range(100)]
    previous = [NULL_HASH, NULL_HASH]
    now = int(time.time())
    done = 0
    while done < count:
        records = []
        for _ in range(min(PREFILL_BATCH, count - done)):
            transaction_hash = random_trytes(81)
            records.append(
                TransactionRecord(
                    hash=transaction_hash,
                    address=chooser.choice(addresses),
                    bundle=random_trytes(81),
                    tag=chooser.choice(tags),
                    value=0,
                    current_index=0,
                    last_index=0,
                    timestamp=now,
                    attachment_timestamp=now * 1000,
                    trunk=previous[-1],
                    branch=previous[-2],
                    trytes=random_trytes(2673),
                )
            )
            previous = [previous[-1], transaction_hash]
        hashes = [record.hash for record in records]
        with store.begin() as conn:
            TangleStore.insert_transactions(conn, records, dict.fromkeys(hashes, True), now)
            # Confirmed (by a milestone before the benchmark's), as on a node in service:
            # the coordinator's cone walks stop at them.
            TangleStore.mark_confirmed(conn, hashes, 0)
        done += len(records)
    store.close()


def reference_code(revision: str, directory: Path) -> Path:
    """``grid_server`` of ``revision`` (e.g. main) unpacked into ``directory``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "grid_server"],
        check=True,
        capture_output=True,
    ).stdout
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def bench_growth(
    sizes: list[int], revision: str, trytes: list[str], batch: int, core: int, rounds: int
) -> list[dict[str, Any]]:
    """storeTransactions on databases already holding each of ``sizes`` transactions,
    the reference's schema and this tree's side by side: each is filled once, then each
    round stores the stream into a fresh copy of each in turn (interleaved, so both see
    the same machine load); the median round counts."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        reference = reference_code(revision, Path(scratch) / "code")
        variants = ((revision, reference), ("this tree", None))
        for stored in sizes:
            filled: dict[str, tuple[Path, float, int]] = {}
            try:
                for name, code in variants:
                    template = Path(tempfile.mkdtemp(prefix="node_bench_"))
                    started = time.perf_counter()
                    database = f"sqlite:///{template / 'node.sqlite3'}"
                    subprocess.run(
                        [sys.executable, __file__, "--prefill", database, str(stored)],
                        check=True,
                        env=_with_code(code),
                    )
                    size = sum(f.stat().st_size for f in template.glob("node.sqlite3*"))
                    filled[name] = (template, time.perf_counter() - started, size)
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _code in variants}
                for _round in range(rounds):
                    for name, code in variants:
                        template, seconds, size = filled[name]
                        run = store_on_copy(template, code, trytes, batch, core)
                        run.update(
                            schema=name, stored=stored, prefill_seconds=seconds, database_bytes=size
                        )
                        runs[name].append(run)
                        print(
                            f"  {stored:>9,} stored, {name}: {run['rate']:,.0f} tx/s "
                            f"(load {run['load']:.1f})",
                            flush=True,
                        )
                for name, _code in variants:
                    ordered = sorted(runs[name], key=lambda run: run["rate"])
                    median = dict(ordered[len(ordered) // 2])
                    median["rates"] = [run["rate"] for run in ordered]
                    median["loads"] = [run["load"] for run in runs[name]]
                    results.append(median)
            finally:
                for template, _seconds, _size in filled.values():
                    shutil.rmtree(template, ignore_errors=True)
    return results


def store_on_copy(
    template: Path, code: Path | None, trytes: list[str], batch: int, core: int
) -> dict[str, Any]:
    """Run the node on a copy of ``template``'s database and store ``trytes`` into it."""
    directory = Path(tempfile.mkdtemp(prefix="node_bench_run_"))
    try:
        for file in template.glob("node.sqlite3*"):
            shutil.copy(file, directory / file.name)
        # A node in service has its file on disk; left dirty, the copy's gigabytes would
        # be written back by the node's first checkpoint (fsync) and timed as storing.
        os.sync()
        process, url = start_node(directory, core, code)
        try:
            run: dict[str, Any] = dict(bench_store(url, process.pid, trytes, batch))
        finally:
            process.terminate()
            process.wait(30)
        run["load"] = os.getloadavg()[0]
        return run
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def print_growth(results: list[dict[str, Any]], batch: int, core: int, rounds: int) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\nstoreTransactions as the Tangle grows, {when}, {platform.machine()} with "
        f"{os.cpu_count()} cores; the node pinned to core {core}, SQLite, weight {WEIGHT}; "
        f"{results[0]['transactions']:,} transactions in requests of {batch}; the median "
        f"of {rounds} rounds (all rounds' rates in brackets).\n"
    )
    print(
        "| stored before | schema | tx/s wall clock | tx/s per CPU second | slowest request "
        "| database | prefill | load average |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for item in results:
        rates = ", ".join(f"{rate:,.0f}" for rate in item["rates"])
        loads = "–".join(f"{load:.1f}" for load in (min(item["loads"]), max(item["loads"])))
        print(
            f"| {item['stored']:,} | {item['schema']} | **{item['rate']:,.0f}** ({rates}) | "
            f"{item['cpu_rate']:,.0f} | {item['slowest_batch_rate']:,.0f} tx/s | "
            f"{item['database_bytes'] / 2**30:.2f} GiB | {item['prefill_seconds']:.0f} s | "
            f"{loads} |"
        )


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


def start_node(
    directory: Path, core: int, code: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A node on ``directory``'s database; ``code``: run the ``grid_server`` found there."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (directory / "node.log").open("wb")
    program = [str(CONSOLE_SCRIPT)] if code is None else [sys.executable, "-P", "-c", _RUN_CLI]
    process = subprocess.Popen(
        [
            *program,
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
        env=_with_code(code),
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
    parser.add_argument(
        "--stored",
        type=int,
        nargs="+",
        metavar="N",
        help="measure storing on databases already holding N transactions (no attaches)",
    )
    parser.add_argument(
        "--reference", default="main", help="the git revision --stored compares with"
    )
    parser.add_argument("--rounds", type=int, default=3, help="--stored rounds per size")
    parser.add_argument("--prefill", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prefill:
        prefill(args.prefill[0], int(args.prefill[1]))
        return 0
    count, attaches = (1000, 5) if args.quick else (args.transactions, args.attach)
    trytes = make_transactions(count)
    core = sorted(os.sched_getaffinity(0))[0]
    if args.stored:
        results = bench_growth(args.stored, args.reference, trytes, args.batch, core, args.rounds)
        print_growth(results, args.batch, core, args.rounds)
        return 0
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
