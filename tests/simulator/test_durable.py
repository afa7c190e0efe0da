"""Durable simulated households: atomic state, crashes in between, catch-up, outages."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import aiohttp
import pytest
from p2p_energy_protocol.errors import GridUnavailableError, NodeUnavailableError
from p2p_energy_protocol.grid_client import RegistrationReply
from p2p_energy_protocol.mam import parse_message

from grid_server.cli import build_parser
from grid_server.simulator import durable
from grid_server.simulator.channels import Publisher, TangleSettings
from grid_server.simulator.durable import (
    DurableHouseholds,
    HouseholdsState,
    due_periods,
    plan_from_args,
    run_households,
)
from grid_server.simulator.households import Period
from grid_server.simulator.runner import SimulationPlan
from grid_server.simulator.state import (
    StateFileError,
    exclusive_lock,
    read_state,
    temporary_path,
    write_atomic,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from p2p_energy_protocol.mam import MamMessage

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


class FakeNode:
    def __init__(self) -> None:
        self.attached: list[str] = []
        self.down = False

    async def send(self, message: MamMessage) -> None:
        if self.down:
            raise NodeUnavailableError("node down")
        self.attached.append(message.root)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _households(
    state_dir: Path, session: aiohttp.ClientSession, node: FakeNode
) -> DurableHouseholds:
    households = DurableHouseholds(
        state_dir, session, "http://127.0.0.1:9", "http://127.0.0.1:9", TangleSettings()
    )
    households._send = node.send  # no node process in unit tests
    return households


async def test_created_with_hellos_queued_and_saved(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    node = FakeNode()
    first = _households(tmp_path, session, node)
    assert await first.open(PLAN, START)
    again = _households(tmp_path, session, node)
    assert not await again.open(SimulationPlan(consumers=9), START)  # the saved plan wins
    assert again.state is not None
    assert again.state.plan == PLAN
    assert [h.to_dict() for h in again.households] == [h.to_dict() for h in first.households]
    for household in again.households:
        assert [item.kind for item in household.queue] == ["hello"]
        assert household.queue[0].message.root == household.root
        assert household.last_period_end_ms == START_MS // LENGTH_MS * LENGTH_MS


async def test_reading_taken_and_queued_in_one_save(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    node = FakeNode()
    households = _households(tmp_path, session, node)
    await households.open(PLAN, START)
    base = households.households[0].last_period_end_ms
    assert await households.take_readings(base + 3 * LENGTH_MS + 10) == 6
    saved = _households(tmp_path, session, node)
    await saved.open(PLAN)
    for memory, disk in zip(households.households, saved.households, strict=True):
        assert disk.to_dict() == memory.to_dict()
        assert disk.readings == 3
        assert [item.sequence for item in disk.queue] == [0, 1, 2, 3]
        assert disk.meter_milliwh == sum(round(item.energy_kwh * 1e6) for item in disk.queue)
        # Every message is at the position its predecessor announced.
        roots = [item.message.root for item in disk.queue]
        assert roots[1:] == [item.message.next_root for item in disk.queue[:-1]]
        body = parse_message(
            disk.queue[3].message.payload, disk.queue[3].message.root, disk.side_key
        )
        assert body.next_root == disk.queue[3].message.next_root


async def test_crash_before_the_save_takes_the_same_reading_again(
    tmp_path: Path, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = FakeNode()
    households = _households(tmp_path, session, node)
    await households.open(PLAN, START)
    base = households.households[0].last_period_end_ms
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
    restarted = _households(tmp_path, session, node)
    await restarted.open(PLAN)
    await restarted.take_readings(base + 2 * LENGTH_MS)
    # The producer's reading was created (in memory only) when the process died.
    lost, again = households.households[0], restarted.households[0]
    assert again.queue[-1].body == lost.queue[-1].body
    assert again.queue[-1].message.root == lost.queue[-1].message.root
    assert again.meter_milliwh == lost.meter_milliwh
    for household in restarted.households:
        assert household.readings == 2
        assert household.queue[-1].body["endTime"] == base + 2 * LENGTH_MS


async def test_outage_queues_then_drains_in_order_and_counts_once(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    node = FakeNode()
    households = _households(tmp_path, session, node)
    await households.open(PLAN, START)
    base = households.households[0].last_period_end_ms
    node.down = True
    for period in range(1, 5):
        await households.step(base + period * LENGTH_MS)
        assert not households.node_available
    assert [len(h.queue) for h in households.households] == [5, 5]
    expected = [item.message.root for h in households.households for item in h.queue]
    node.down = False
    assert await households.drain_queues()
    assert node.attached == expected
    reloaded = _households(tmp_path, session, node)
    await reloaded.open(PLAN)
    for household in reloaded.households:
        assert household.queue == []
        assert household.published_milliwh == household.meter_milliwh > 0
        assert household.readings == 4


async def test_crash_after_attaching_before_the_save_attaches_again(
    tmp_path: Path, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = FakeNode()
    households = _households(tmp_path, session, node)
    await households.open(PLAN, START)

    def crash(*_args: object) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(durable, "write_atomic", crash)
    with pytest.raises(SystemExit):
        await households.drain_queues()
    monkeypatch.undo()
    restarted = _households(tmp_path, session, node)
    await restarted.open(PLAN)
    assert await restarted.drain_queues()
    first_hello = restarted.households[0].root
    # The same message at the same position once more: the grid reads it once.
    assert node.attached.count(first_hello) == 2


async def test_corrupt_state_is_not_overwritten(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    node = FakeNode()
    households = _households(tmp_path, session, node)
    await households.open(PLAN, START)
    path = tmp_path / durable.STATE_FILE
    data = json.loads(path.read_text())
    data["households"][0]["channel"]["seed"] = "not trytes"
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    with pytest.raises(StateFileError, match="corrupt"):
        await _households(tmp_path, session, node).open(PLAN)
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(StateFileError, match="not a version 1"):
        await _households(tmp_path, session, node).open(PLAN)
    path.write_bytes(before)
    with pytest.raises(StateFileError):
        await _households(tmp_path, session, node).open(PLAN)
    assert path.read_bytes() == before


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


def test_state_round_trip(tmp_path: Path) -> None:
    state = HouseholdsState.create(PLAN, START)
    again = HouseholdsState.from_dict(json.loads(json.dumps(state.to_dict())), tmp_path)
    assert again.to_dict() == state.to_dict()
    assert again.clock == state.clock


def test_state_written_before_the_milliwh_rename_loads(tmp_path: Path) -> None:
    state = HouseholdsState.create(PLAN, START)
    state.households[0].meter_milliwh, state.households[0].published_milliwh = 1_500, 1_000
    data = json.loads(json.dumps(state.to_dict()))
    for household in data["households"]:
        household["meter_mwh"] = household.pop("meter_milliwh")
        household["published_mwh"] = household.pop("published_milliwh")
    again = HouseholdsState.from_dict(data, tmp_path)
    assert again.to_dict() == state.to_dict()


class FakeGrid:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.down = True

    async def register(
        self, registration_id: str, _name: str, _role: str, **options: str | None
    ) -> RegistrationReply:
        self.calls.append((registration_id, options["token"]))
        if self.down:
            raise GridUnavailableError("grid down", 0)
        return RegistrationReply(root=None, side_key=None, token=f"token-{registration_id}")


async def test_registers_once_the_hello_is_out_and_keeps_the_token(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    node, grid = FakeNode(), FakeGrid()
    households = _households(tmp_path, session, node)
    households.grid = grid  # type: ignore[assignment]
    await households.open(PLAN, START)
    base = households.households[0].last_period_end_ms
    node.down = True
    await households.step(base + 10)
    assert grid.calls == []  # no hello on the channel yet: the grid would refuse
    node.down = False
    await households.step(base + 20)
    assert len(grid.calls) == 2
    assert not any(h.registered for h in households.households)
    grid.down = False
    await households.step(base + 30)
    reloaded = _households(tmp_path, session, node)
    await reloaded.open(PLAN)
    for household in reloaded.households:
        assert household.registered
        assert household.token == f"token-{household.registration_id}"
    await reloaded.register()
    assert len(grid.calls) == 4  # registered households are not registered again


async def test_waits_for_the_next_period_or_retries_a_waiting_queue(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    node = FakeNode()
    households = _households(tmp_path, session, node)
    await households.open(PLAN)
    assert 0 <= households.seconds_to_next() <= durable.RETRY_SECONDS  # hellos wait
    await households.drain_queues()
    assert 0 <= households.seconds_to_next() <= PLAN.period_seconds + durable.PUBLISH_DELAY
    stop = asyncio.Event()
    stop.set()
    await households.run(stop)


async def test_demo_publisher_keeps_a_refused_message_first_in_line() -> None:
    node = FakeNode()

    class Client:
        async def publish_mam(self, message: MamMessage, **_options: object) -> None:
            await node.send(message)

    publisher = Publisher(Client(), TangleSettings())  # type: ignore[arg-type]
    node.down = True
    with pytest.raises(NodeUnavailableError):
        await publisher.publish({"command": "hello"})
    assert (publisher.published, len(publisher.queue)) == (0, 1)
    node.down = False
    second = await publisher.publish({"command": "usage", "usage": 1.0})
    assert publisher.published == 2
    assert node.attached == [publisher.root, second]


async def test_crash_window_pauses_before_each_save(
    tmp_path: Path, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    node = FakeNode()
    households = _households(tmp_path, session, node)
    households.crash_window = 0.001
    households.grid = FakeGrid()  # type: ignore[assignment]
    await households.open(PLAN, START)
    base = households.households[0].last_period_end_ms
    caplog.set_level("INFO", logger="grid_server.simulator.durable")
    await households.step(base + LENGTH_MS)
    lines = [record.getMessage() for record in caplog.records]
    first = households.households[0].registration_id
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
