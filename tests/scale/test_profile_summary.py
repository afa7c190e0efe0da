"""The benchmark's text summary of py-spy's folded stacks (``e2e_scale_bench.py --profile``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .measure import profile_report, summarise_profile

if TYPE_CHECKING:
    from pathlib import Path

GRID = 'process 10:"p2p-energy grid --port 1"'
# A worker's command line holds a ';' (python -c "...; spawn_main(...)").
SETTLE = "settle (grid_server/grid/pipeline.py:113)"  # a frame of the project's own code
WORKER = 'process 11:"python -c from multiprocessing.spawn import spawn_main; spawn_main(fd=6)"'


def test_samples_split_by_process_with_self_and_total_time(tmp_path: Path) -> None:
    folded = tmp_path / "1000-slot1-grid.folded"
    folded.write_text(
        "\n".join(
            (
                f"{GRID};<module> (main.py:1);{SETTLE};execute (engine.py:9) 30",
                f"{GRID};<module> (main.py:1);{SETTLE} 10",
                f"{GRID};<module> (main.py:1);bill (pipeline.py:119);execute (engine.py:9) 20",
                # A thread waiting for work, caught as it woke: left out, and counted.
                f"{GRID};Thread.run (threading.py:981);_worker (concurrent/futures/thread.py:69) 7",
                f"{GRID};{WORKER};<module> (<string>:1);attach (pow.py:108);_search (pow.py:2) 40",
                f"{GRID};{WORKER};<module> (<string>:1);attach (pow.py:108) 5",
                "not a stack line",
            )
        )
    )
    grid, workers = summarise_profile(folded, "grid")
    assert (grid.process, grid.samples, grid.idle_samples) == ("grid", 60, 7)
    assert grid.top(2) == [("execute (engine.py:9)", 50), (SETTLE, 10)]
    # Total time: everything under a function; the <module> frame under all is left out.
    assert grid.top(3, by_total=True) == [
        ("execute (engine.py:9)", 50),
        (SETTLE, 40),
        ("bill (pipeline.py:119)", 20),
    ]
    # The project's own functions by total time: library frames are left out.
    assert grid.top_project(2) == [(SETTLE, 40)]
    assert (workers.process, workers.samples) == ("grid workers", 45)
    assert workers.top(1) == [("_search (pow.py:2)", 40)]
    assert workers.top(1, by_total=True) == [("attach (pow.py:108)", 45)]
    report = profile_report([grid, workers], {"grid": 6.0}, top=1)
    # Shares of the samples, turned into CPU seconds where /proc gave the process's CPU.
    assert "83.3%     5.0 s  execute (engine.py:9)" in report
    assert "88.9%   _search (pow.py:2)" in report


def test_a_single_process_file_has_no_process_frames(tmp_path: Path) -> None:
    folded = tmp_path / "1000-slot1-node.folded"
    folded.write_text("store (tangle.py:70);_parse (tangle.py:121) 3\nstore (tangle.py:70) 1\n")
    (node,) = summarise_profile(folded, "node")
    assert (node.process, node.samples) == ("node", 4)
    assert node.top(1, by_total=True) == [("store (tangle.py:70)", 4)]
