"""Durable simulated households: atomic state, crashes in between, catch-up, outages."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from p2p_energy_protocol.mam import parse_message

from grid_server.cli import build_parser
from grid_server.simulator import durable
from grid_server.simulator.durable import (
    DurableHouseholds,
    due_periods,
    household_summaries,
    plan_from_args,
    run_households,
)
from grid_server.simulator.runner import Period, SimulationPlan
from grid_server.simulator.state import (
    StateFileError,
    exclusive_lock,
    read_state,
    temporary_path,
    write_atomic,
)
from tests.engine.fake_network import FakeNetwork

if TYPE_CHECKING:
    from pathlib import Path

PLAN = SimulationPlan(
    producers=1,
    sources_per_producer=2,
    consumers=1,
    period_seconds=4,
    speed=225,
    start_hour=12,
    random_seed=3,
)
START = datetime(2026, 11, 27, 12, 0, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
LENGTH_MS = 4000


# Atomic state files ----------------------------------------------------------


def test_write_atomic_replaces_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, {"a": 1})
    write_atomic(path, {"a": 2, "b": [1, 2]})
    assert read_state(path) == {"a": 2, "b": [1, 2]}
    assert not temporary_path(path).exists()
    assert read_state(tmp_path / "missing.json") is None


def test_crash_before_the_rename_keeps_the_previous_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, {"save": 1})

    def power_cut(*_args: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        write_atomic(path, {"save": 2})
    monkeypatch.undo()
    # The temporary file holds the unfinished save; the state file the last whole one.
    assert json.loads(temporary_path(path).read_text()) == {"save": 2}
    assert read_state(path) == {"save": 1}
    write_atomic(path, {"save": 3})
    assert read_state(path) == {"save": 3}


def test_half_written_temporary_file_is_ignored_and_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, {"save": 1})
    temporary_path(path).write_text('{"save": 2, "cut')
    assert read_state(path) == {"save": 1}
    write_atomic(path, {"save": 2})
    assert read_state(path) == {"save": 2}


@pytest.mark.parametrize("content", ['{"households": [', "[1, 2]", "\udcff"])
def test_corrupt_state_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content.encode(errors="surrogateescape"))
    with pytest.raises(StateFileError, match=str(path)):
        read_state(path)


# Catch-up -----------------------------------------------------------------------


def test_due_periods_one_per_missed_period() -> None:
    assert due_periods(8000, 11_999, 4000) == []
    assert due_periods(8000, 12_000, 4000) == [Period(8000, 12_000)]
    assert due_periods(8000, 21_000, 4000) == [
        Period(8000, 12_000),
        Period(12_000, 16_000),
        Period(16_000, 20_000),
    ]


def test_due_periods_beyond_the_cap_cover_the_oldest_gap_in_one() -> None:
    periods = due_periods(0, 10 * 4000 + 5, 4000, cap=4)
    assert periods == [
        Period(0, 28_000),
        Period(28_000, 32_000),
        Period(32_000, 36_000),
        Period(36_000, 40_000),
    ]


# Durable households ---------------------------------------------------------


def _households(state_dir: Path, network: FakeNetwork) -> DurableHouseholds:
    """Households on an in-memory node and grid (no processes in unit tests)."""
    return DurableHouseholds(state_dir, network)  # type: ignore[arg-type]


def _summaries(state_dir: Path) -> list[dict[str, object]]:
    data = read_state(state_dir / durable.STATE_FILE)
    assert data is not None
    return household_summaries(data)


async def test_created_with_hellos_queued_and_saved(tmp_path: Path) -> None:
    network = FakeNetwork()
    network.node_up = False
    first = _households(tmp_path, network)
    assert await first.open(PLAN, START)
    again = _households(tmp_path, network)
    assert not await again.open(SimulationPlan(consumers=9), START)  # the saved plan wins
    assert again.state is not None
    assert again.state.plan == PLAN
    assert again.state.homes == first.state.homes  # type: ignore[union-attr]
    assert [p.state for p in again.participants] == [p.state for p in first.participants]
    for participant, summary in zip(again.participants, _summaries(tmp_path), strict=True):
        assert [item.kind for item in participant.state.queue] == ["hello"]
        assert participant.state.queue[0].message.root == participant.channel_root
        assert summary["last_period_end_ms"] == START_MS // LENGTH_MS * LENGTH_MS
        assert summary["readings"] == 0


async def test_reading_taken_and_queued_in_one_save(tmp_path: Path) -> None:
    network = FakeNetwork()
    network.node_up = False
    households = _households(tmp_path, network)
    await households.open(PLAN, START)
    base = households.last_end_ms(households.participants[0])
    assert await households.take_readings(base + 3 * LENGTH_MS + 10) == 6
    saved = _households(tmp_path, network)
    await saved.open(PLAN)
    for memory, disk in zip(households.participants, saved.participants, strict=True):
        assert disk.state == memory.state
        assert [item.sequence for item in disk.state.queue] == [0, 1, 2, 3]
        # Every message is at the position its predecessor announced.
        roots = [item.message.root for item in disk.state.queue]
        assert roots[1:] == [item.message.next_root for item in disk.state.queue[:-1]]
        last = disk.state.queue[3].message
        assert parse_message(last.payload, last.root, disk.side_key).next_root == last.next_root
        periods = [(item.body["startTime"], item.body["endTime"]) for item in disk.state.queue[1:]]
        assert periods == [(base + n * LENGTH_MS, base + (n + 1) * LENGTH_MS) for n in range(3)]
    for summary in _summaries(tmp_path):
        assert summary["readings"] == 3
        assert summary["published_milliwh"] == 0
        assert summary["meter_milliwh"] > 0


async def test_crash_before_the_save_takes_the_same_reading_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = FakeNetwork()
    network.node_up = False
    households = _households(tmp_path, network)
    await households.open(PLAN, START)
    base = households.last_end_ms(households.participants[0])
    await households.take_readings(base + LENGTH_MS)
    before = (tmp_path / durable.STATE_FILE).read_bytes()

    def crash(*_args: object) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(durable, "write_atomic", crash)
    with pytest.raises(SystemExit):
        await households.take_readings(base + 2 * LENGTH_MS)
    monkeypatch.undo()
    assert (tmp_path / durable.STATE_FILE).read_bytes() == before
    # Restart: nothing of the lost step was saved; the reading comes out the same.
    lost = households.participants[0].state.queue[-1]
    restarted = _households(tmp_path, network)
    await restarted.open(PLAN)
    await restarted.take_readings(base + 2 * LENGTH_MS)
    again = restarted.participants[0].state.queue[-1]
    assert again.body == lost.body
    assert again.message.root == lost.message.root
    for summary in _summaries(tmp_path):
        assert summary["readings"] == 2
        assert summary["last_period_end_ms"] == base + 2 * LENGTH_MS


async def test_outage_queues_then_drains_in_order_and_counts_once(tmp_path: Path) -> None:
    network = FakeNetwork()
    network.node_up = False
    households = _households(tmp_path, network)
    await households.open(PLAN, START)
    base = households.last_end_ms(households.participants[0])
    for period in range(1, 5):
        await households.step(base + period * LENGTH_MS)
        assert not households.node_available
    assert [len(p.state.queue) for p in households.participants] == [5, 5]
    expected = [item.message.root for p in households.participants for item in p.state.queue]
    network.node_up = True
    assert await households.sync()
    assert [message.root for message in network.published] == expected
    for summary in _summaries(tmp_path):
        assert summary["queue"] == []
        assert summary["published_milliwh"] == summary["meter_milliwh"] > 0
        assert summary["registered"]


async def test_crash_after_attaching_before_the_save_attaches_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = FakeNetwork()
    households = _households(tmp_path, network)
    network.node_up = False
    await households.open(PLAN, START)
    network.node_up = True

    def crash(*_args: object) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(durable, "write_atomic", crash)
    with pytest.raises(SystemExit):
        await households.sync()
    monkeypatch.undo()
    restarted = _households(tmp_path, network)
    await restarted.open(PLAN)
    assert await restarted.sync()
    first_hello = restarted.participants[0].channel_root
    # The same message at the same position once more: the grid reads it once.
    assert [message.root for message in network.published].count(first_hello) == 2


async def test_corrupt_state_is_not_overwritten(tmp_path: Path) -> None:
    network = FakeNetwork()
    network.node_up = False
    households = _households(tmp_path, network)
    await households.open(PLAN, START)
    path = tmp_path / durable.STATE_FILE
    good = json.loads(path.read_text())
    first = good["households"][0]["registration_id"]
    for corrupt in (
        {**good, "households": [{**good["households"][0], "role": "inverter"}]},
        {**good, "participants": {}},
        {**good, "participants": {**good["participants"], first: {"queue": [{}]}}},
        {
            **good,
            "participants": {
                **good["participants"],
                first: {**good["participants"][first], "channel": {"seed": "not trytes"}},
            },
        },
    ):
        path.write_text(json.dumps(corrupt))
        before = path.read_bytes()
        with pytest.raises(StateFileError, match="corrupt"):
            await _households(tmp_path, network).open(PLAN)
        assert path.read_bytes() == before
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(StateFileError, match="not a version 2"):
        await _households(tmp_path, network).open(PLAN)


def test_cli_refuses_a_corrupt_state_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / durable.STATE_FILE).write_text("{")
    args = build_parser().parse_args(
        [
            "households",
            "--node",
            "http://127.0.0.1:9",
            "--grid",
            "http://127.0.0.1:9",
            "--state-dir",
            str(tmp_path),
            "--min-weight-magnitude",
            "1",
        ]
    )
    assert plan_from_args(args).tangle.min_weight_magnitude == 1
    assert run_households(args) == 1
    assert "corrupt" in capsys.readouterr().err
    assert (tmp_path / durable.STATE_FILE).read_text() == "{"
    args.min_weight_magnitude = 20
    assert run_households(args) == 2


async def test_registers_once_the_hello_is_out_and_keeps_the_token(tmp_path: Path) -> None:
    network = FakeNetwork()
    network.issue_tokens = True
    households = _households(tmp_path, network)
    network.node_up = False
    await households.open(PLAN, START)
    base = households.last_end_ms(households.participants[0])
    network.grid_up = False
    await households.step(base + 10)
    assert network.registrations == {}  # no hello on the channel yet: the grid would refuse
    network.node_up = True
    await households.step(base + 20)
    assert network.registrations == {}  # the grid is down
    assert not any(p.registered for p in households.participants)
    network.grid_up = True
    await households.step(base + 30)
    reloaded = _households(tmp_path, network)
    await reloaded.open(PLAN)
    for participant in reloaded.participants:
        assert participant.registered
        assert participant.state.registration_token == f"token-{participant.registration_id}"
    assert set(network.registrations) == {p.registration_id for p in reloaded.participants}


async def test_waits_for_the_next_period_or_retries_a_waiting_queue(tmp_path: Path) -> None:
    network = FakeNetwork()
    network.node_up = False
    households = _households(tmp_path, network)
    await households.open(PLAN)
    assert 0 <= households.seconds_to_next() <= durable.RETRY_SECONDS  # hellos wait
    network.node_up = True
    await households.sync()
    assert 0 <= households.seconds_to_next() <= PLAN.period_seconds + durable.PUBLISH_DELAY
    stop = asyncio.Event()
    stop.set()
    await households.run(stop)


async def test_crash_window_pauses_before_each_save(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    network = FakeNetwork()
    households = _households(tmp_path, network)
    households.crash_window = 0.001
    await households.open(PLAN, START)
    base = households.last_end_ms(households.participants[0])
    caplog.set_level("INFO", logger="grid_server.simulator.durable")
    await households.step(base + LENGTH_MS)
    lines = [record.getMessage() for record in caplog.records]
    first = households.participants[0].registration_id
    assert f"created {first} #1, not saved yet" in lines
    assert f"sent {first} #1, not saved yet" in lines


def test_one_process_per_state_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / durable.LOCK_FILE
    with exclusive_lock(lock):
        with (
            pytest.raises(StateFileError, match="locked by another process"),
            exclusive_lock(lock),
        ):
            pass
        args = build_parser().parse_args(
            [
                "households",
                "--node",
                "http://127.0.0.1:9",
                "--grid",
                "http://127.0.0.1:9",
                "--state-dir",
                str(tmp_path),
            ]
        )
        assert run_households(args) == 1
        assert "locked by another process" in capsys.readouterr().err
        assert not (tmp_path / durable.STATE_FILE).exists()
    # Released with its holder.
    with exclusive_lock(lock):
        pass
