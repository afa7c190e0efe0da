"""A market of simulated households trading through a real node and grid.

Used by ``p2p-energy demo``, the benchmarks and the scale tests::

    plan = SimulationPlan.for_households(7)
    async with Simulation(plan, session, node_url, grid_url) as simulation:
        report = await simulation.run_period(period)
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Self

from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.grid_client import GridClient
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.trinary import random_trytes

from .channels import TangleSettings
from .curves import CloudCover, Household, SimulatedClock, SimulationError, SolarPanel
from .households import Period, SimConsumer, SimProducer, SimSource

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    import aiohttp

# Default market of the demo: 2 producers with 3 sources each, 5 consumers.
DEFAULT_PRODUCERS: Final = 2
DEFAULT_CONSUMERS: Final = 5
DEFAULT_SOURCES_PER_PRODUCER: Final = 3
# Entities doing network work at once (keeps a large market from flooding the node).
_CONCURRENCY: Final = 8


@dataclass(frozen=True)
class SimulationPlan:
    """Who takes part and how the simulated day runs."""

    producers: int = DEFAULT_PRODUCERS
    sources_per_producer: int = DEFAULT_SOURCES_PER_PRODUCER
    consumers: int = DEFAULT_CONSUMERS
    # Wall-clock seconds per publishing period (the grid's slot length).
    period_seconds: float = 10.0
    # Simulated seconds per wall-clock second (180: a day in 8 minutes).
    speed: float = 180.0
    start_hour: float = 6.0
    latitude_deg: float = 48.0
    random_seed: int | None = None
    pay_bills: bool = True
    payment_cooldown: float = 60.0
    # Wallet seeds of the consumers (their genesis balances pay the bills).
    consumer_wallets: tuple[str, ...] = ()
    tangle: TangleSettings = field(default_factory=TangleSettings)

    def __post_init__(self) -> None:
        if not 0 <= self.producers <= 100_000 or not 0 <= self.consumers <= 100_000:
            raise SimulationError("producers and consumers must be between 0 and 100000")
        if self.producers + self.consumers == 0:
            raise SimulationError("a market needs at least one household")
        if not 1 <= self.sources_per_producer <= 50:
            raise SimulationError("sources_per_producer must be between 1 and 50")
        if not 1 <= self.period_seconds <= 86_400:
            raise SimulationError("period_seconds must be between 1 and 86400")
        if not 0 <= self.start_hour < 24:
            raise SimulationError("start_hour must be in [0, 24)")
        if self.consumer_wallets and len(self.consumer_wallets) != self.consumers:
            raise SimulationError("give one wallet seed per consumer (or none)")

    @staticmethod
    def split_households(households: int) -> tuple[int, int]:
        """(producers, consumers) for ``households`` homes, in the default 2:5 ratio."""
        if households < 1:
            raise SimulationError(f"households must be at least 1, got {households}")
        if households == 1:
            return 0, 1
        producers = max(1, round(households * DEFAULT_PRODUCERS / 7))
        return producers, households - producers

    @classmethod
    def for_households(cls, households: int, **options: object) -> SimulationPlan:
        producers, consumers = cls.split_households(households)
        return cls(producers=producers, consumers=consumers, **options)  # type: ignore[arg-type]


def new_wallets(count: int) -> tuple[str, ...]:
    return tuple(random_trytes() for _ in range(count))


def genesis_for(wallets: Sequence[str], balance: int) -> dict[str, int]:
    """Genesis balances crediting each wallet's first address (key index 0, security 2)."""
    return {generate_address(seed, 0, 2): balance for seed in wallets}


@dataclass
class PeriodReport:
    """What the households did in one period."""

    period: Period
    simulated_time: datetime
    produced_kwh: float = 0.0
    consumed_kwh: float = 0.0
    owed: int = 0
    paid: int = 0
    bills_seen: int = 0
    errors: list[str] = field(default_factory=list)
    # Wall-clock seconds the households needed for the period.
    seconds: float = 0.0

    @property
    def period_seconds(self) -> float:
        return (self.period.end_ms - self.period.start_ms) / 1000


class Simulation:
    """Builds the households, registers them, and runs one period at a time."""

    def __init__(
        self,
        plan: SimulationPlan,
        session: aiohttp.ClientSession,
        node_url: str,
        grid_url: str,
        *,
        clock: SimulatedClock | None = None,
    ) -> None:
        self.plan = plan
        self.client = IriClient(session, node_url)
        self.grid = GridClient(session, grid_url)
        self.clock = clock or SimulatedClock.starting_at_hour(plan.start_hour, plan.speed)
        rng = random.Random(plan.random_seed)
        wallets = plan.consumer_wallets or new_wallets(plan.consumers)
        run = random_trytes(6).lower()
        self.producers: list[SimProducer] = []
        self.sources: list[tuple[SimSource, SimProducer]] = []
        for index in range(1, plan.producers + 1):
            producer = SimProducer(
                name=f"Producer {index}",
                registration_id=f"producer-{index:05d}-{run}",
                seed=random_trytes(),
                price=round(rng.uniform(18.0, 40.0), 1),
                client=self.client,
                session=session,
                settings=plan.tangle,
            )
            self.producers.append(producer)
            for number in range(1, plan.sources_per_producer + 1):
                panel = SolarPanel(
                    peak_kw=round(rng.uniform(2.5, 9.0), 1), latitude_deg=plan.latitude_deg
                )
                source = SimSource(
                    name=f"Producer {index} PV {number}",
                    registration_id=f"source-{index:05d}-{number:02d}-{run}",
                    panel=panel,
                    clouds=CloudCover(random.Random(rng.random()), rng.uniform(0.55, 0.95)),
                    client=self.client,
                    settings=plan.tangle,
                )
                self.sources.append((source, producer))
        self.consumers = [
            SimConsumer(
                name=f"Home {index}",
                registration_id=f"consumer-{index:05d}-{run}",
                household=Household(
                    daily_kwh=round(rng.uniform(6.0, 16.0), 1),
                    routine_shift_hours=round(rng.uniform(-1.0, 1.0), 2),
                ),
                wallet_seed=wallets[index - 1],
                client=self.client,
                settings=plan.tangle,
                pay_bills=plan.pay_bills,
                payment_cooldown=plan.payment_cooldown,
            )
            for index in range(1, plan.consumers + 1)
        ]
        self._limit = asyncio.Semaphore(_CONCURRENCY)

    async def _each[T](
        self, items: Sequence[T], work: Callable[[T], Awaitable[object]]
    ) -> list[str]:
        """Run ``work`` on every item (bounded concurrency); returns the errors."""

        async def guarded(item: T) -> str | None:
            async with self._limit:
                try:
                    await work(item)
                except Exception as err:
                    who = item[0] if isinstance(item, tuple) else item
                    return f"{getattr(who, 'name', who)}: {type(err).__name__}: {err}"
                return None

        results = await asyncio.gather(*(guarded(item) for item in items))
        return [result for result in results if result is not None]

    async def start(self) -> None:
        """Publish every channel's hello and register everything (sources via producers)."""
        producer_clients = {}
        for producer in self.producers:
            producer_clients[id(producer)] = await producer.serve()
        errors = await self._each(self.producers, lambda p: p.register(self.grid))
        errors += await self._each(
            self.sources, lambda pair: pair[0].start(producer_clients[id(pair[1])])
        )
        errors += await self._each(self.consumers, lambda c: c.register(self.grid))
        if errors:
            raise SimulationError("households could not join the grid: " + "; ".join(errors))

    async def close(self) -> None:
        for producer in self.producers:
            await producer.close()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def current_period(self, now_ms: int | None = None) -> Period:
        """The last complete period before ``now_ms`` (aligned to the period length)."""
        length = int(self.plan.period_seconds * 1000)
        now = int(time.time() * 1000) if now_ms is None else now_ms
        end = now // length * length
        return Period(end - length, end)

    async def run_period(self, period: Period) -> PeriodReport:
        """Sources and consumers, then producers publish ``period``; then bills are paid."""
        started = time.monotonic()
        report = PeriodReport(period, self.clock.simulated(_utc(period.end_ms)))
        produced: list[float] = []
        consumed: list[float] = []

        async def source_publish(pair: tuple[SimSource, SimProducer]) -> None:
            await pair[0].publish(self.clock, period)

        async def producer_publish(producer: SimProducer) -> None:
            produced.append(await producer.publish(period))

        async def consumer_publish(consumer: SimConsumer) -> None:
            consumed.append(await consumer.publish(self.clock, period))

        async def consumer_bills(consumer: SimConsumer) -> None:
            bill = await consumer.read_bills()
            report.owed += bill.owed
            report.bills_seen += bill.requests
            report.paid += await consumer.pay()

        # Producers aggregate what their sources published; consumers are independent.
        source_errors, consumer_errors = await asyncio.gather(
            self._each(self.sources, source_publish),
            self._each(self.consumers, consumer_publish),
        )
        report.errors += source_errors + consumer_errors
        report.errors += await self._each(self.producers, producer_publish)
        report.errors += await self._each(self.consumers, consumer_bills)
        report.produced_kwh = round(sum(produced), 6)
        report.consumed_kwh = round(sum(consumed), 6)
        report.seconds = time.monotonic() - started
        return report

    async def run(
        self,
        stop: asyncio.Event,
        on_report: Callable[[PeriodReport], None],
        *,
        publish_delay: float = 0.5,
    ) -> None:
        """Publish every period just after it ends, in order, until ``stop`` is set.

        When a period takes longer than its length the next ones follow without a
        pause, so no period is ever skipped.
        """
        length_ms = int(self.plan.period_seconds * 1000)
        period = self.current_period()
        while not stop.is_set():
            wait = period.end_ms / 1000 + publish_delay - time.time()
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                    break
                except TimeoutError:
                    pass
            on_report(await self.run_period(period))
            period = Period(period.end_ms, period.end_ms + length_ms)


def _utc(milliseconds: int) -> datetime:
    return datetime.fromtimestamp(milliseconds / 1000, UTC)
