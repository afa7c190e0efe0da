"""What one follow round costs the grid and its node at N channels (issue 14).

    .venv/bin/python benchmarks/follow_bench.py [--channels 10000] [--idle-rounds 3]
        [--reference main [--rounds 1]] [--profile DIR] [--json FILE]

The grid follows every registered channel in rounds (``ChannelFollower.follow_once``
with the grid's ``BulkMamReader`` over a node client, as ``server.py`` builds it).
N households' hello and first reading are stored on a ``p2p-energy node`` process
(messages from ``tests/scale/measure.py``, attached on the households' side), then:

* **first round**: the follower reads every channel from its root (hello + reading);
* **idle rounds**: nothing new on any channel (what runs again and again while the
  grid bills, every ``follow_interval``);
* **ingest round**: one new reading stored on every channel, read in one round.

CPU seconds of the follower (this process, all threads) and of the node process are
measured around each round, with wall time and the load average. ``--reference REV``
runs this tree and the git revision's ``grid_server`` and protocol library in turns
(each a process of its own against a copy of one node database), as
``payment_requests_bench.py --reference`` does. ``--profile DIR`` records py-spy
profiles (speedscope) of both processes during the idle and the ingest rounds.
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from p2p_energy_protocol.client import IriClient
from sqlalchemy import insert

from grid_server.grid.config import GridConfig
from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import FollowedChannel, Registration
from grid_server.grid.follower import BulkMamReader, ChannelFollower

# For tests.*; a --reference run has the repository on PYTHONPATH already, after the
# reference's code, which must come first.
if str(Path(__file__).resolve().parent.parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.reliability.processes import COORDINATOR_SEED, NodeProcess, iri
from tests.scale.measure import (
    E2E_SLOT_MS,
    STORE_BATCH,
    attach_bundles,
    cpu_seconds,
    household,
    make_messages,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

MWM = 1
"""The households' proof of work does not matter here: the node stores at weight 1."""
CHUNK = 250
"""Households per message-creation job."""


def node_config() -> dict[str, Any]:
    # Milestones rarely: the node's CPU in a round is then the round's requests.
    return {
        "min_weight_magnitude": MWM,
        "coordinator": {"seed": COORDINATOR_SEED, "interval": 60.0},
    }


# -- set-up (once per run, not measured) ---------------------------------------------------


def generate(channels: int, windows: list[int], pool: ProcessPoolExecutor) -> list[list[list[str]]]:
    """Unattached bundles per phase: [hello + first reading], [second reading]."""
    ranges = [range(n, min(n + CHUNK, channels)) for n in range(0, channels, CHUNK)]
    first = [
        pool.submit(make_messages, numbers, None, ["hello", f"{windows[0]}:{E2E_SLOT_MS}"])
        for numbers in ranges
    ]
    states = []
    phases: list[list[list[str]]] = [[], []]
    for job in first:
        state, bundles = job.result()
        states.append(state)
        phases[0].extend(bundles)
    second = [
        pool.submit(make_messages, numbers, state, [f"{windows[1]}:{E2E_SLOT_MS}"])
        for numbers, state in zip(ranges, states, strict=True)
    ]
    for job in second:
        phases[1].extend(job.result()[1])
    return phases


def attach(node_url: str, bundles: list[list[str]], pool: ProcessPoolExecutor) -> list[str]:
    status, tips = iri(node_url, {"command": "getTransactionsToApprove", "depth": 3})
    assert status == 200, tips
    trunk, branch = tips["trunkTransaction"], tips["branchTransaction"]
    jobs = [
        pool.submit(attach_bundles, bundles[n : n + 200], trunk, branch, MWM)
        for n in range(0, len(bundles), 200)
    ]
    return [trytes for job in jobs for bundle in job.result() for trytes in bundle]


def store(node_url: str, trytes: list[str]) -> None:
    for first in range(0, len(trytes), STORE_BATCH):
        batch = trytes[first : first + STORE_BATCH]
        status, body = iri(node_url, {"command": "storeTransactions", "trytes": batch}, 300)
        assert status == 200, body


def prepare(channels: int, directory: Path) -> None:
    """``directory``/node.sqlite3 with phase 1 stored, phase 2 attached in second.json."""
    now = int(time.time() * 1000)
    first_window = (now // E2E_SLOT_MS - 3) * E2E_SLOT_MS
    windows = [first_window, first_window + E2E_SLOT_MS]
    started = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        phases = generate(channels, windows, pool)
        print(f"created {sum(map(len, phases))} messages in {time.perf_counter() - started:.0f} s")
        node = NodeProcess(
            directory, database=f"sqlite:///{directory / 'node.sqlite3'}", config=node_config()
        )
        node.start()
        try:
            store(node.url, attach(node.url, phases[0], pool))
            second = attach(node.url, phases[1], pool)
        finally:
            node.stop()
    (directory / "second.json").write_text(json.dumps(second))
    print(f"set up {channels} channels on the node in {time.perf_counter() - started:.0f} s")


# -- one measured run ----------------------------------------------------------------------


class SteppedClock:
    """Real time at the start, moved on by hand so every channel is due each round."""

    def __init__(self) -> None:
        self.now = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now


def register(db: Database, channels: int, now: int) -> None:
    homes = [household(n) for n in range(channels)]
    with db.write() as session:
        session.execute(
            insert(Registration),
            [
                {
                    "registration_id": home.registration_id,
                    "item_name": home.registration_id,
                    "item_type": home.role,
                    "root": home.root,
                    "side_key": home.side_key,
                    "active": True,
                    "created_at": now,
                    "updated_at": now,
                }
                for home in homes
            ],
        )
        session.execute(
            insert(FollowedChannel),
            [
                {
                    "registration_id": home.registration_id,
                    "role": home.role,
                    "mode": "restricted",
                    "root": home.root,
                    "side_key": home.side_key,
                    "next_root": home.root,
                    "next_position": 0,
                    "active": True,
                    "hello_seen": False,
                    "skipped_messages": 0,
                    "next_read_at": 0,
                    "created_at": now,
                }
                for home in homes
            ],
        )


@contextmanager
def profiled(directory: Path | None, name: str, pids: dict[str, int]) -> Iterator[None]:
    if directory is None:
        yield
        return
    recorders = [
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--rate",
                "100",
                "--threads",
                "--format",
                "speedscope",
                "-o",
                str(directory / f"{name}-{side}.json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for side, pid in pids.items()
    ]
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(2)  # SIGINT: py-spy writes its file
            recorder.wait(60)


async def measure(
    arguments: argparse.Namespace, template: Path, work: Path
) -> list[dict[str, Any]]:
    shutil.copy(template / "node.sqlite3", work / "node.sqlite3")
    second = json.loads((template / "second.json").read_text())
    node = NodeProcess(work, database=f"sqlite:///{work / 'node.sqlite3'}", config=node_config())
    node.start()
    assert node.process is not None
    node_pid = node.process.pid
    db = Database(f"sqlite:///{work / 'grid.sqlite3'}", threads=2)
    db.migrate()
    clock = SteppedClock()
    register(db, arguments.channels, clock.now)
    config = replace(GridConfig(), follow_interval=1.0)
    pids = {"grid": os.getpid(), "node": node_pid}
    rounds: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as session:
            client = IriClient(session, node.url, timeout=600)
            follower = ChannelFollower(db, BulkMamReader(client), clock, config)

            async def one(kind: str) -> None:
                clock.now += 2_000  # past the follow interval: every channel due again
                load = os.getloadavg()[0]
                grid_before, node_before = time.process_time(), cpu_seconds(node_pid)
                started = time.perf_counter()
                stats = await follower.follow_once()
                wall = time.perf_counter() - started
                figures = {
                    "round": kind,
                    "wall": wall,
                    "cpu_grid": time.process_time() - grid_before,
                    "cpu_node": cpu_seconds(node_pid) - node_before,
                    "channels_due": arguments.channels,
                    "messages": stats.messages,
                    "readings": stats.readings,
                    "idle": stats.idle,
                    "caught_up": stats.caught_up,
                    "load": load,
                }
                rounds.append(figures)
                print(
                    f"  {kind}: {wall:.2f} s wall, CPU grid {figures['cpu_grid']:.2f} s + node "
                    f"{figures['cpu_node']:.2f} s; {stats.messages} messages, {stats.readings} "
                    f"readings, {stats.idle} idle, caught up {stats.caught_up}; load {load:.2f}",
                    flush=True,
                )

            await one("first")
            with profiled(arguments.profile, "idle", pids):
                for _ in range(arguments.idle_rounds):
                    await one("idle")
            store(node.url, second)
            with profiled(arguments.profile, "ingest", pids):
                await one("ingest")
            await one("idle")
    finally:
        db.close()
        node.stop()
    return rounds


def run_here(arguments: argparse.Namespace, template: Path) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="follow-run-") as scratch:
        return asyncio.run(measure(arguments, template, Path(scratch)))


def summary(runs: list[dict[str, Any]], names: list[str]) -> None:
    print()
    print("| code | round | runs | wall s | CPU grid s | CPU node s | messages | load |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in names:
        for kind in ("first", "idle", "ingest"):
            mine = [run for run in runs if run["tree"] == name and run["round"] == kind]
            if not mine:
                continue
            count = len(mine)
            loads = [run["load"] for run in mine]
            print(
                f"| {name} | {kind} | {count} | {sum(r['wall'] for r in mine) / count:.2f} | "
                f"{sum(r['cpu_grid'] for r in mine) / count:.2f} | "
                f"{sum(r['cpu_node'] for r in mine) / count:.2f} | "
                f"{sum(r['messages'] for r in mine) // count} | "
                f"{min(loads):.1f}-{max(loads):.1f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--idle-rounds", type=int, default=3)
    parser.add_argument("--reference", help="also run this git revision's code, in turns")
    parser.add_argument("--rounds", type=int, default=1, help="turns each with --reference")
    parser.add_argument("--profile", type=Path, help="py-spy speedscope files into this folder")
    parser.add_argument("--json", type=Path, help="every round's figures as JSON")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the node set-up in this folder and reuse it when it is there (same --channels)",
    )
    parser.add_argument("--template", type=Path, help=argparse.SUPPRESS)  # one turn
    arguments = parser.parse_args()
    if arguments.profile is not None:
        arguments.profile.mkdir(parents=True, exist_ok=True)
    if arguments.template is not None:
        runs = run_here(arguments, arguments.template)
        if arguments.json:
            arguments.json.write_text(json.dumps(runs))
        return
    with tempfile.TemporaryDirectory(prefix="follow-bench-") as scratch:
        template = arguments.keep or Path(scratch) / "template"
        if not (template / "second.json").exists():
            template.mkdir(parents=True, exist_ok=True)
            prepare(arguments.channels, template)
        environments = {"this tree": dict(os.environ)}
        if arguments.reference:
            from benchmarks.payment_requests_bench import reference_code

            code = Path(scratch) / "reference"
            code.mkdir()
            environments[arguments.reference] = reference_code(arguments.reference, code)
        runs: list[dict[str, Any]] = []
        for number in range(arguments.rounds):
            for name, environment in environments.items():
                print(f"[{name}, turn {number + 1}]", flush=True)
                output = Path(scratch) / f"{len(runs)}-{number}.json"
                command = [
                    sys.executable,
                    __file__,
                    "--channels",
                    str(arguments.channels),
                    "--idle-rounds",
                    str(arguments.idle_rounds),
                    "--template",
                    str(template),
                    "--json",
                    str(output),
                ]
                if arguments.profile is not None:
                    folder = arguments.profile / f"{number}-{name.replace(' ', '-')}"
                    command += ["--profile", str(folder)]
                subprocess.run(command, check=True, env=environment)
                runs.extend({**run, "tree": name} for run in json.loads(output.read_text()))
        summary(runs, list(environments))
        if arguments.json:
            arguments.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
