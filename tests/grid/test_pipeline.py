"""The grid's background pipeline: its stages, their order and how they hand work on."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field

import pytest

from grid_server.grid.config import GridConfig
from grid_server.grid.follower import FollowStats
from grid_server.grid.pipeline import CREATE_AHEAD_BATCH, PUBLISH_BATCH, GridPipeline

from .fakes import ManualClock


@dataclass
class Calls:
    log: list[str] = field(default_factory=list)
    caught_up: bool = False
    node_down: bool = False
    readings: int = 0
    settled: list[int] = field(default_factory=list)
    following_since: list[int | None] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    creating_when_publishing: list[bool] = field(default_factory=list)
    limits: list[int] = field(default_factory=list)
    """The limit of each ``publish_due`` call."""
    publishing_fails: bool = False


FULL = 1_000_000_000
"""A scripted ``publish_due`` step that creates as many requests as it was asked for."""


class Follower:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    async def follow_once(self) -> FollowStats:
        self.calls.log.append("follow")
        return FollowStats(
            readings=self.calls.readings,
            backlog=not self.calls.caught_up,
            errors=["node unavailable"] if self.calls.node_down else [],
        )


class Settlement:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    async def settle_due(self, following_since: int | None = None) -> list[int]:
        self.calls.log.append("settle")
        self.calls.following_since.append(following_since)
        return self.calls.settled


class Requests:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    async def publish_due(self, limit: int) -> int:
        self.calls.log.append("requests")
        await asyncio.sleep(0)  # as a database round trip would: publishing runs meanwhile
        if self.calls.requests and self.calls.requests[0] < 0:
            raise ConnectionError("database gone (fake)")
        self.calls.limits.append(limit)
        due = self.calls.requests.pop(0) if self.calls.requests else 0
        return limit if due == FULL else due


class ReturnChannels:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    async def publish_all(
        self, producing: asyncio.Future[object] | None, *, stopping: asyncio.Event
    ) -> int:
        self.calls.log.append("publish")
        self.calls.creating_when_publishing.append(producing is not None and not producing.done())
        if producing is not None:
            await asyncio.wait({producing})
        if self.calls.publishing_fails:
            raise ConnectionError("database gone for publishing too (fake)")
        self.calls.log.append("messages")
        return 0


class Wallet:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    async def pay_out(self) -> None:
        self.calls.log.append("pay")

    async def refill_address_pool(self) -> int:
        self.calls.log.append("addresses")
        return 0


class Monitor:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    async def scan(self) -> None:
        self.calls.log.append("collect")


def pipeline(
    calls: Calls, config: GridConfig | None = None, clock: ManualClock | None = None
) -> GridPipeline:
    return GridPipeline(
        config or GridConfig(),
        follower=Follower(calls),  # type: ignore[arg-type]
        settlement=Settlement(calls),  # type: ignore[arg-type]
        requests=Requests(calls),  # type: ignore[arg-type]
        return_channels=ReturnChannels(calls),  # type: ignore[arg-type]
        wallet=Wallet(calls),  # type: ignore[arg-type]
        monitor=Monitor(calls),  # type: ignore[arg-type]
        stopping=asyncio.Event(),
        clock=clock or ManualClock(0),
    )


async def test_the_stages_are_follow_settle_bill_pay_collect_addresses() -> None:
    calls = Calls(caught_up=True)
    grid = pipeline(calls, GridConfig(slot_seconds=60, follow_interval=4, publish_interval=2))
    stages = grid.stages()
    assert [stage.name for stage in stages] == [
        "follow",
        "settle",
        "bill",
        "pay",
        "collect",
        "addresses",
    ]
    assert [stage.interval for stage in stages[:3]] == [2.0, 15.0, 2.0]
    assert (stages[1].wake, stages[2].wake, stages[3].wake, stages[5].wake) == (
        grid.settle_due,
        grid.bill_due,
        grid.pay_due,
        grid.addresses_due,
    )
    assert not grid.addresses_due.is_set()
    for stage in stages:
        await stage.run()
    assert grid.addresses_due.is_set()  # a finished bill stage wakes the pool refill
    assert calls.log == [
        "follow",
        "settle",
        "publish",
        "requests",
        "messages",
        "pay",
        "collect",
        "addresses",
    ]


async def test_nothing_is_settled_before_the_channels_were_followed_up_to_now() -> None:
    calls = Calls(settled=[1], readings=3)
    clock = ManualClock(1_000)
    grid = pipeline(calls, clock=clock)
    await grid.follow()
    assert grid.settle_due.is_set()  # stored readings wake the settle stage
    await grid.settle()  # the follower is not caught up yet
    assert calls.log == ["follow"]
    assert not grid.bill_due.is_set()
    assert not grid.pay_due.is_set()

    calls.caught_up = True
    clock.advance(2)
    await grid.follow()
    clock.advance(5)
    await grid.follow()  # still following since the first round that caught up
    await grid.settle()
    assert calls.log == ["follow"] * 3 + ["settle"]
    assert calls.following_since == [3_000]
    assert grid.bill_due.is_set()  # settled slots wake the bill stage
    assert grid.pay_due.is_set()  # and the pay stage: their payouts are due

    grid.bill_due.clear()
    grid.became_leader()  # a new leader follows up to now again first
    await grid.settle()
    assert calls.log == ["follow"] * 3 + ["settle"]


async def test_settlement_waits_out_a_node_outage_and_counts_its_deadline_from_the_return() -> None:
    calls = Calls(caught_up=True)
    clock = ManualClock(0)
    grid = pipeline(calls, clock=clock)
    await grid.follow()
    await grid.settle()
    calls.node_down = True
    clock.advance(600)
    await grid.follow()
    await grid.settle()  # no settling while the channels cannot be read
    calls.node_down = False
    clock.advance(600)
    await grid.follow()
    await grid.settle()
    assert calls.log == ["follow", "settle", "follow", "follow", "settle"]
    assert calls.following_since == [0, 1_200_000]


async def test_a_failed_follow_round_stops_settling_until_caught_up_again() -> None:
    calls = Calls(caught_up=True)
    grid = pipeline(calls)
    await grid.follow()

    async def fail() -> FollowStats:
        raise ConnectionError("database away")

    grid._follower.follow_once = fail  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await grid.follow()
    await grid.settle()
    assert "settle" not in calls.log


async def test_bill_creates_every_full_batch_while_publishing() -> None:
    calls = Calls(requests=[FULL, FULL, 3])
    await pipeline(calls).bill()
    # Publishing starts on the first batch, while the others are still being created.
    assert calls.creating_when_publishing == [True]
    assert calls.log == ["publish", "requests", "requests", "requests", "messages"]
    # A small first step, so proof of work starts early; larger ones to stay ahead.
    assert calls.limits == [PUBLISH_BATCH, CREATE_AHEAD_BATCH, CREATE_AHEAD_BATCH]


async def test_bill_ends_with_the_creation_error_and_stops_when_asked() -> None:
    calls = Calls(requests=[FULL, -1])
    with pytest.raises(ConnectionError):
        await pipeline(calls).bill()
    assert calls.log[-1] == "messages"
    calls = Calls(requests=[FULL] * 5)
    grid = pipeline(calls)
    grid._stopping.set()
    await grid.bill()
    assert calls.log.count("requests") == 1


async def test_bill_retrieves_the_creation_error_when_publishing_failed_too() -> None:
    # A database outage fails both lanes: the stage ends with publishing's error and
    # creation's is retrieved, not left for asyncio to log as never retrieved.
    unretrieved: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    try:
        calls = Calls(requests=[FULL, -1], publishing_fails=True)
        with pytest.raises(ConnectionError, match="publishing too"):
            await pipeline(calls).bill()
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert unretrieved == []
