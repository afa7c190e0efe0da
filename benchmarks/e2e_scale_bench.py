"""End-to-end scale benchmark: N real MAM households through one node and one grid.

    .venv/bin/python benchmarks/e2e_scale_bench.py [--sizes 1000 10000] [--slots 2]
        [--mwm 5] [--grid-mwm 9] [--grid-pow-workers 2] [--json results.json]
        [--profile DIR] [--restart-grid] [--follow-interval 1] [--off-tangle-payouts]
        [--milestone-interval 10] [--grid-setting KEY=VALUE ...]

For each size: a node process and a grid process on loopback; every household
(20 % producers, 80 % consumers) publishes its hello and registers over HTTP; the grid
sends every hello of registration (its outbox empties) before the first slot, as
registration takes days, not a slot. Then each household publishes one MAM reading
per slot. The grid starts once, before registration, and keeps running, as users run
it: it follows the channels while a slot's readings arrive and settles the slot when
every participant's reading is in (each slot's settlement is checked to hold all N
readings and no late one: never settled half read). The households' side (MAM
creation and proof of work) runs in a process pool standing for N separate machines
and hands the node finished transactions in large storeTransactions/
broadcastTransactions batches, so the figures are the node's and the grid's. Per
slot, from the moment the last reading is stored on the node: every reading stored by
the grid, the slot settled, every payment request stored on the node and every payout
stored on the node (or recorded, for payouts paid off the Tangle); node
storeTransactions tx/s, grid API latency under a loopback load, peak RSS in the slot
of the grid, its proof-of-work workers and the node, and CPU seconds of all three per
slot and per household. Across sizes: growth and the cost ratio per household. See
tests.scale.measure.EndToEnd for the procedure.

Tips: registration leaves a tip per hello (the households attach side by side), which
days of real traffic would approve; the generator approves them pairwise before the
first slot. A milestone references the oldest tips (at most ``--milestone-references``
less one), so a slot's payouts wait behind the tips its own readings left.

Payouts: every producer names an IOTA address (derived from the generator's own seed)
and the grid pays it from its wallet, as real grids do: the grid runs with a fixed
``wallet_seed`` and the node's genesis credits its treasury (key index 0). Per slot the
payouts count as done when every payout's value bundle is stored on the node (in the
whole slot); beside that, until a milestone (every ``--milestone-interval`` s, the
node's coordinator) confirmed every one of them, with the number of value bundles and
their transactions. ``--off-tangle-payouts``: producers name invoice references
instead, recorded at settling and paid elsewhere (the earlier procedure).
``--grid-setting KEY=VALUE`` (repeatable) sets any grid configuration key over the
benchmark's own (VALUE read as a TOML value, else as text), e.g.
``--grid-setting payout_batch_size=90``.

``--restart-grid``: the earlier procedure, the grid stopped while each slot's readings
arrive and started after them inside the measured window (its start-up and its rule
of settling nothing before it followed every channel up to now once then count).

``--profile DIR``: py-spy (installed into this interpreter's environment if missing)
samples the grid with its proof-of-work workers and the node during each measured
slot; folded stacks (``DIR/<size>-slot<k>-grid.folded``, ``-node.folded``: flamegraph
and speedscope read them) and a text summary of the top functions by self and total
time per process (``DIR/<size>-slot<k>-summary.txt``, also printed).

MWM: the node accepts weight 5 by default. The node's cost per transaction (one
Curl-P-81 hash and a weight check) does not depend on the MWM; the MWM only sets the
households' own proof of work, which at the grid's default of 9 would cost the
generator ~55 ms per transaction (~80 min of CPU for 10,000 households and 3
messages each) on this 2-core machine. The grid attaches its own payment requests
with its configured MWM (9, the default) in its ``--grid-pow-workers`` worker
processes (``local_pow_workers``), so their proof of work is measured at the
realistic value.
"""

from __future__ import annotations

import argparse
import compileall
import json
import multiprocessing
import os
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.scale.measure import (
    E2E_SLOT_MS,
    E2EFigures,
    EndToEnd,
    Profiler,
    SlotFigures,
    profile_report,
    py_spy_executable,
    summarise_profile,
)

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def compile_bytecode() -> None:
    """Byte-compile the project and its installed packages once, as ``pip install`` and
    the add-on image leave them. With ``--restart-grid`` each slot starts the grid inside
    the measured window; a checkout run with PYTHONDONTWRITEBYTECODE set (as on the
    development machines) would otherwise compile every module it imports at each start
    (2.6 of 3.9 CPU seconds of importing the grid server, measured once each way)."""
    paths = sysconfig.get_paths()
    folders = [Path(paths["purelib"]), Path(paths["platlib"])]
    for folder in dict.fromkeys([*folders, ROOT / "grid_server", ROOT / "custom_components"]):
        compileall.compile_dir(folder, quiet=2)


def measure(
    size: int, args: argparse.Namespace, pool: ProcessPoolExecutor, profiler: Profiler | None
) -> E2EFigures:
    with tempfile.TemporaryDirectory(prefix=f"e2e-{size}-") as folder:
        run = EndToEnd(
            Path(folder),
            size,
            slots=args.slots,
            pool=pool,
            min_weight_magnitude=args.mwm,
            grid_min_weight_magnitude=args.grid_mwm,
            api_seconds=args.api_seconds,
            api_rate=args.api_rate or None,
            publish_wait=args.publish_wait,
            grid_pow_workers=args.grid_pow_workers,
            follow_interval=args.follow_interval,
            restart_grid=args.restart_grid,
            profiler=profiler,
            tangle_payouts=not args.off_tangle_payouts,
            milestone_interval=args.milestone_interval,
            milestone_references=args.milestone_references,
            grid_overrides=dict(args.grid_setting),
        )
        figures = run.run()
    print_size(figures)
    if profiler is not None:
        print_profiles(figures, profiler.directory)
    return figures


def grid_setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--grid-setting``: VALUE as a TOML value (90, 0.5, true,
    "text"), or as plain text when it is none (a seed)."""
    key, separator, value = text.partition("=")
    key = key.strip()
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, tomllib.loads(f"value = {value.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()


def ensure_py_spy() -> Path:
    """py-spy for ``--profile``: installed into this interpreter's environment if missing."""
    found = py_spy_executable()
    if found is None:
        print("--profile: installing py-spy into this environment (pip install py-spy)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], check=False)
        found = py_spy_executable()
    if found is None:
        raise SystemExit(
            f"--profile needs py-spy and installing it failed: run "
            f"`{sys.executable} -m pip install py-spy` (or put py-spy on PATH) and try again"
        )
    return found


def print_profiles(figures: E2EFigures, directory: Path) -> None:
    """Where CPU went in each measured slot: top functions per process, printed and
    written next to the folded stacks."""
    for number, slot in enumerate(figures.slots, start=1):
        profiles = [
            profile
            for path in slot.profiles
            for profile in summarise_profile(Path(path), Path(path).stem.rsplit("-", 1)[1])
        ]
        header = (
            f"{figures.households:,} households, slot {number}: py-spy samples of the grid, "
            f"its workers and the node (CPU from /proc: grid {slot.grid_cpu:.1f} s, workers "
            f"{slot.workers_cpu:.1f} s, node {slot.node_cpu:.1f} s; load average "
            f"{slot.load_before:.1f} before, {slot.load_after:.1f} after)"
        )
        cpu = {"grid": slot.grid_cpu, "grid workers": slot.workers_cpu, "node": slot.node_cpu}
        text = f"{header}\n{profile_report(profiles, cpu)}\n"
        (directory / f"{figures.households}-slot{number}-summary.txt").write_text(text)
        print(f"\n{text}", flush=True)


def print_size(figures: E2EFigures) -> None:
    n = figures.households
    print(
        f"\n{n:,} households: generator {figures.generate_seconds:.0f} s, "
        f"registration {figures.register_seconds:.0f} s "
        f"({n / figures.register_seconds:,.0f}/s), hellos stored at "
        f"{figures.hello_store_rate:,.0f} tx/s; grid "
        + (
            "restarted in every slot"
            if figures.restart_grid
            else (
                f"started once ({figures.grid_start_seconds:.1f} s), its registration "
                f"hellos sent {figures.outbox_drain_seconds:.0f} s after registration"
            )
        )
        + (
            f"; payouts in IOTA (milestones every {figures.milestone_interval:g} s, "
            f"at most {figures.milestone_references} references); registration's "
            f"{figures.registration_tips[0]:,} tips approved down to "
            f"{figures.registration_tips[1]:,}"
            if figures.tangle_payouts
            else "; payouts off the Tangle (invoice references)"
        )
        + f"; grid settings {figures.grid_settings}",
        flush=True,
    )


def rows(figures: list[E2EFigures]) -> list[tuple[str, list[str]]]:
    table: list[tuple[str, list[str]]] = []

    def add(label: str, render: object) -> None:
        cells = []
        for result in figures:
            cells.append(" / ".join(render(slot, result) for slot in result.slots))  # type: ignore[operator]
        table.append((label, cells))

    def since(value: float | None) -> str:
        return "not within the wait" if value is None else f"{value:.1f}"

    def confirmation(slot: SlotFigures) -> str:
        if not slot.payouts_on_tangle:
            return "none paid in IOTA"
        failed = f", {slot.payouts_failed:,} failed" if slot.payouts_failed else ""
        return (
            f"{since(slot.since_last_reading.payouts_confirmed)} "
            f"({slot.payouts_confirmed:,}/{slot.payouts_on_tangle:,}{failed})"
        )

    def bundles(slot: SlotFigures) -> str:
        sizes = slot.payout_bundles
        if not sizes:
            return "0"
        return f"{len(sizes):,}; {min(sizes)}-{max(sizes)}, {sum(sizes):,}"

    add(
        "from the last reading on the node to: every reading stored (s)",
        lambda s, r: since(s.since_last_reading.readings_stored),
    )
    add("... the slot settled (s)", lambda s, r: since(s.since_last_reading.settled))
    add(
        "... every payment request stored on the node (s)",
        lambda s, r: since(s.since_last_reading.requests_stored),
    )
    add(
        "... every payout stored on the node or recorded (s; payouts, of them IOTA transfers)",
        lambda s, r: (
            f"{since(s.since_last_reading.payouts_stored)} ({s.payouts:,}, {s.payouts_on_tangle:,})"
        ),
    )
    add("... the whole slot (s)", lambda s, r: since(s.since_last_reading.whole_slot))
    add(
        "... every IOTA payout confirmed by a milestone (s; confirmed of IOTA payouts)",
        lambda s, r: confirmation(s),
    )
    add("IOTA payout bundles (count; transactions min-max, total)", lambda s, r: bundles(s))
    add(
        "node tips before the readings / when the whole slot was done",
        lambda s, r: f"{s.node_tips[0]:,}/{s.node_tips[1]:,}",
    )
    add("grid start-up within that (s)", lambda s, r: f"{s.grid_start_seconds:.1f}")
    add(
        "readings the settlement took (of N; late ones of an earlier slot)",
        lambda s, r: f"{s.settled_readings:,}/{r.households:,}; {s.settled_adjustments}",
    )
    add("node storeTransactions (tx/s)", lambda s, r: f"{s.store_rate:,.0f}")
    add(
        "readings ingested per second (first reading sent / restarted grid ready -> all N)",
        lambda s, r: f"{s.ingest_rate(r.households):,.0f} ({s.ingest_seconds:.1f} s)",
    )
    add("grid outbox backlog when settled (messages)", lambda s, r: f"{s.outbox_backlog:,}")
    add(
        "payment requests created (of N; s after settling)",
        lambda s, r: (
            f"{s.requests_created:,}/{s.requests_expected:,}; {s.requests_created_seconds:.1f}"
        ),
    )
    add(
        "payment requests published in the wait (of N; per s)",
        lambda s, r: (f"{s.requests_published:,}/{s.requests_expected:,}; {s.publish_rate:.1f}/s"),
    )
    add(
        "grid API p50 / p95 / p99 (ms; requests/s)",
        lambda s, r: (
            f"{s.api.p50_ms:.0f}/{s.api.p95_ms:.0f}/{s.api.p99_ms:.0f}; {s.api.per_second:.0f}"
        ),
    )
    add("grid API 4xx+5xx", lambda s, r: f"{s.api.errors + s.api.server_errors}")
    add(
        "peak RSS in the slot: grid / its PoW workers / node (MiB)",
        lambda s, r: "/".join(
            f"{rss / MIB:.0f}" for rss in (s.grid_peak_rss, s.workers_peak_rss, s.node_peak_rss)
        ),
    )
    add(
        "CPU grid + workers + node (s) per slot",
        lambda s, r: f"{s.grid_cpu:.1f}+{s.workers_cpu:.1f}+{s.node_cpu:.1f}",
    )
    add(
        "CPU per household (ms)",
        lambda s, r: f"{s.cpu / r.households * 1000:.1f}",
    )
    add(
        f"CPU share of a {E2E_SLOT_MS // 1000} s slot",
        lambda s, r: f"{s.cpu_share:.2%}",
    )
    add("load average 1-min (before/after)", lambda s, r: f"{s.load_before:.1f}/{s.load_after:.1f}")
    return table


def growth(figures: list[E2EFigures]) -> list[tuple[str, str]]:
    if len(figures) < 2:
        return []
    small, large = figures[0], figures[-1]
    factor = large.households / small.households

    def last(result: E2EFigures, attribute: str) -> float:
        return float(getattr(result.slots[-1], attribute))

    lines = []
    for label, attribute in (
        ("ingestion time", "ingest_seconds"),
        ("payment-request creation", "requests_created_seconds"),
        ("store time", "store_seconds"),
    ):
        lines.append((label, f"{last(large, attribute) / max(last(small, attribute), 1e-9):.1f}x"))
    small_slot, large_slot = small.slots[-1], large.slots[-1]
    lines.append(("CPU per slot", f"{large_slot.cpu / max(small_slot.cpu, 1e-9):.1f}x"))
    # The measure: cost per household at the large size over the small one.
    per_household = (large_slot.cpu / large.households) / max(
        small_slot.cpu / small.households, 1e-12
    )
    lines.append(("cost ratio per household (CPU per household)", f"{per_household:.2f}x"))
    small_whole, large_whole = (
        small_slot.since_last_reading.whole_slot,
        large_slot.since_last_reading.whole_slot,
    )
    if small_whole is not None and large_whole is not None:
        ratio = (large_whole / large.households) / max(small_whole / small.households, 1e-12)
        lines.append(("time to the whole slot per household", f"{ratio:.2f}x"))
    return [(f"growth {small.households:,} -> {large.households:,} ({factor:.0f}x)", ""), *lines]


def print_table(results: list[E2EFigures]) -> None:
    sizes = " | ".join(f"{result.households:,}" for result in results)
    print(f"\n| measure (slot 1 / slot 2 ...) | {sizes} |")
    print("| --- |" + " --- |" * len(results))
    for label, cells in rows(results):
        print(f"| {label} | {' | '.join(cells)} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--mwm", type=int, default=5, help="the node's (and households') MWM")
    parser.add_argument("--grid-mwm", type=int, default=9, help="the grid's own bundles")
    parser.add_argument("--api-seconds", type=float, default=20.0)
    parser.add_argument(
        "--api-rate",
        type=float,
        default=50.0,
        help=(
            "storage API requests per second from 8 loopback clients while a slot's readings "
            "arrive (a household's few a slot, many times over); 0: as fast as answered, a "
            "capacity test that takes the slot's CPU (benchmarks/load_bench.py measures that)"
        ),
    )
    parser.add_argument(
        "--publish-wait",
        type=float,
        default=900.0,
        help="seconds at most to wait for every payment request and payout after settling",
    )
    parser.add_argument(
        "--grid-pow-workers",
        type=int,
        default=2,
        help="the grid's local_pow_workers (proof of work for its own bundles)",
    )
    parser.add_argument(
        "--follow-interval",
        type=float,
        default=1.0,
        help="the grid's follow_interval (s; its default is 10): how often a running grid "
        "looks at each channel again, which costs a round over every channel",
    )
    parser.add_argument(
        "--off-tangle-payouts",
        action="store_true",
        help="producers name invoice references (recorded at settling, paid elsewhere) "
        "instead of IOTA addresses the grid's wallet pays with value bundles",
    )
    parser.add_argument(
        "--milestone-interval",
        type=float,
        default=10.0,
        help="the node coordinator's milestone interval (s): what confirms IOTA payouts",
    )
    parser.add_argument(
        "--milestone-references",
        type=int,
        default=16,
        help="the node coordinator's max_references (2-64; its default 16): a milestone "
        "confirms the cones of this many tips less one, the newest and the oldest in turn",
    )
    parser.add_argument(
        "--grid-setting",
        type=grid_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a grid configuration key over the benchmark's own (repeatable), e.g. "
        "payout_batch_size=90",
    )
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument(
        "--restart-grid",
        action="store_true",
        help="stop the grid while each slot's readings arrive and start it after them "
        "(the earlier procedure; by default the grid starts once and keeps running)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy the grid, its workers and the node during each measured slot; "
        "folded stacks and top-function summaries go to DIR",
    )
    parser.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="leave Python modules uncompiled (grid start-ups then include compiling them)",
    )
    args = parser.parse_args()
    profiler = Profiler(ensure_py_spy(), args.profile) if args.profile else None
    if args.compile:
        compile_bytecode()
    results: list[E2EFigures] = []
    context = multiprocessing.get_context("spawn")  # the load generator runs threads
    with ProcessPoolExecutor(os.cpu_count() or 2, context) as pool:
        for size in args.sizes:
            results.append(measure(size, args, pool, profiler))
            # After each size, so a long run that fails later keeps what it measured.
            print_table(results)
            if args.json:
                args.json.write_text(json.dumps([asdict(result) for result in results], indent=2))
    for label, value in growth(results):
        print(f"{label}: {value}" if value else label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
