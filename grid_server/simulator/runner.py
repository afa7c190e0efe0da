"""A market of simulated households trading through a real node and grid.

The households are the household engine's (``p2p_energy_protocol.household``),
the same code Home Assistant runs: only their meters are simulated (solar arrays
under a drifting cloud cover, homes with morning and evening peaks). Each
producer serves the blueprint's registration API on a loopback port of its own,
where its sources (separate devices, a household of their own) register over
HTTP; producers and consumers register with the grid, consumers pay their bills.

Used by ``p2p-energy demo``::

    plan = SimulationPlan.for_households(7)
    async with Simulation(plan, session, node_url, grid_url) as simulation:
        report = await simulation.run_period(period)
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Self

from aiohttp import web
from p2p_energy_protocol.errors import InsufficientBalanceError
from p2p_energy_protocol.household import (
    DEFAULT_MAX_POWER_KW,
    Consumer,
    GridConnection,
    Household,
    HouseholdStore,
    MemoryBackend,
    ParticipantConfig,
    PaymentRefusedError,
    Producer,
)
from p2p_energy_protocol.household.producer_api import producer_routes
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.trinary import random_trytes

from ..node.config import ApiLimits
from .curves import (
    CloudCover,
    CurveMeter,
    SimulatedClock,
    SimulationError,
    SolarPanel,
    solar_power,
)
from .curves import (
    Household as Home,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    import aiohttp
    from p2p_energy_protocol.household import Meter

# Default market of the demo: 2 producers with 3 sources each, 5 consumers.
DEFAULT_PRODUCERS: Final = 2
DEFAULT_CONSUMERS: Final = 5
DEFAULT_SOURCES_PER_PRODUCER: Final = 3
# Households doing network work at once (keeps a large market from flooding the node).
_CONCURRENCY: Final = 8
SIMULATION_TAG: Final = "ENERGYSIM"
# Simulated households attach remotely, and a node does proof of work for a caller up
# to its max_attach_weight (14 by default): a heavier weight could never publish.
MAX_MIN_WEIGHT_MAGNITUDE: Final = ApiLimits.max_attach_weight


@dataclass(frozen=True)
class TangleSettings:
    """How simulated households attach their messages."""

    min_weight_magnitude: int = 9
    depth: int = 3
    tag: str = SIMULATION_TAG


@dataclass(frozen=True)
class Period:
    """One publishing period in wall-clock Unix milliseconds."""

    start_ms: int
    end_ms: int

    @property
    def end(self) -> datetime:
        """The period's end as a wall-clock instant."""
        return datetime.fromtimestamp(self.end_ms / 1000, UTC)


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


@dataclass(frozen=True)
class SimulatedMarket:
    """What a plan's random seed draws: the producers' prices, their arrays, the homes."""

    prices: tuple[float, ...]
    """Each producer's asking price (IOTA per kWh)."""
    arrays: tuple[tuple[int, SolarPanel, CloudCover], ...]
    """Each source: its producer's index, its panel and its sky."""
    homes: tuple[Home, ...]
    """Each consumer's home."""

    @classmethod
    def draw(cls, plan: SimulationPlan) -> SimulatedMarket:
        """The market of ``plan`` (the same seed draws the same market)."""
        rng = random.Random(plan.random_seed)
        prices: list[float] = []
        arrays: list[tuple[int, SolarPanel, CloudCover]] = []
        for index in range(plan.producers):
            prices.append(round(rng.uniform(18.0, 40.0), 1))
            for _number in range(plan.sources_per_producer):
                panel = SolarPanel(
                    peak_kw=round(rng.uniform(2.5, 9.0), 1), latitude_deg=plan.latitude_deg
                )
                clouds = CloudCover(random.Random(rng.random()), rng.uniform(0.55, 0.95))
                arrays.append((index, panel, clouds))
        homes = tuple(
            Home(
                daily_kwh=round(rng.uniform(6.0, 16.0), 1),
                routine_shift_hours=round(rng.uniform(-1.0, 1.0), 2),
            )
            for _ in range(plan.consumers)
        )
        return cls(tuple(prices), tuple(arrays), homes)


def new_wallets(count: int) -> tuple[str, ...]:
    return tuple(random_trytes() for _ in range(count))


def genesis_for(wallets: Sequence[str], balance: int) -> dict[str, int]:
    """Genesis balances crediting each wallet's first address (key index 0, security 2)."""
    return {generate_address(seed, 0, 2): balance for seed in wallets}


def simulated_config(
    kind: str, registration_id: str, name: str, **extra: object
) -> ParticipantConfig:
    """A simulated participant with fresh channel keys."""
    return ParticipantConfig(
        participant_id=registration_id,
        kind=kind,  # type: ignore[arg-type]
        name=name,
        registration_id=registration_id,
        seed=random_trytes(),
        side_key=random_trytes(),
        meter_id=f"simulated:{registration_id}",
        **extra,  # type: ignore[arg-type]
    )


def connection_for(
    session: aiohttp.ClientSession, node_url: str, grid_url: str, tangle: TangleSettings
) -> GridConnection:
    """The households' network: the node's proof of work, the simulation's tag."""
    return GridConnection(
        session,
        grid_url,
        node_url,
        tangle.min_weight_magnitude,
        tag=tangle.tag,
        depth=tangle.depth,
    )


def simulated_max_power(clock: SimulatedClock) -> float:
    """The largest plausible meter jump: simulated hours pass ``speed`` times faster."""
    return DEFAULT_MAX_POWER_KW * clock.speed


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
        self.clock = clock or SimulatedClock.starting_at_hour(plan.start_hour, plan.speed)
        self.connection = connection_for(session, node_url, grid_url, plan.tangle)
        market = SimulatedMarket.draw(plan)
        wallets = plan.consumer_wallets or new_wallets(plan.consumers)
        run = random_trytes(6).lower()
        origin = datetime.now(UTC)
        # The homes of producers and consumers; the sources are devices of their own.
        power = simulated_max_power(self.clock)
        self.homes = Household(self.connection, HouseholdStore(MemoryBackend()), max_power_kw=power)
        self.devices = Household(
            self.connection, HouseholdStore(MemoryBackend()), max_power_kw=power
        )
        self._members: list[tuple[ParticipantConfig, Meter]] = []
        self._sources: list[tuple[int, ParticipantConfig, Meter]] = []
        for index, price in enumerate(market.prices, start=1):
            registration_id = f"producer-{index:05d}-{run}"
            self._members.append(
                (
                    simulated_config(
                        "producer",
                        registration_id,
                        f"Producer {index}",
                        wallet_seed=random_trytes(),
                        price=price,
                    ),
                    CurveMeter(lambda _when: 0.0, self.clock, origin),  # its arrays are sources
                )
            )
        numbers: dict[int, int] = {}
        for owner, panel, clouds in market.arrays:
            number = numbers[owner] = numbers.get(owner, 0) + 1
            config = simulated_config(
                "source",
                f"source-{owner + 1:05d}-{number:02d}-{run}",
                f"Producer {owner + 1} PV {number}",
            )
            meter = CurveMeter(solar_power((panel,), clouds), self.clock, origin)
            self._sources.append((owner, config, meter))
        for index, home in enumerate(market.homes, start=1):
            self._members.append(
                (
                    simulated_config(
                        "consumer",
                        f"consumer-{index:05d}-{run}",
                        f"Home {index}",
                        wallet_seed=wallets[index - 1],
                    ),
                    CurveMeter(home.mean_kw, self.clock, origin),
                )
            )
        self._runners: list[web.AppRunner] = []
        self._paid_at: dict[str, float] = {}

    @property
    def roster(self) -> list[ParticipantConfig]:
        """Who takes part (producers and consumers, then the sources), before start."""
        return [config for config, _ in self._members] + [config for _, config, _ in self._sources]

    @property
    def producers(self) -> list[Producer]:
        return [p for p in self.homes.participants.values() if isinstance(p, Producer)]

    @property
    def consumers(self) -> list[Consumer]:
        return [p for p in self.homes.participants.values() if isinstance(p, Consumer)]

    @property
    def sources(self) -> list[tuple[ParticipantConfig, Producer]]:
        """Each source and its producer."""
        producers = self.producers
        return [(config, producers[owner]) for owner, config, _ in self._sources]

    async def _serve(self, producer: Producer, host: str = "127.0.0.1") -> str:
        """Start the producer's registration API on a free port; returns its URL."""
        app = web.Application()
        app.add_routes(producer_routes(producer))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, host, 0).start()
        return f"http://{host}:{runner.addresses[0][1]}"

    async def start(self) -> None:
        """Open the households, serve the producers' APIs, say hello and register."""
        await self.homes.open(self._members)
        urls = [await self._serve(producer) for producer in self.producers]
        await self.devices.open(
            (replace(config, producer_url=urls[owner]), meter)
            for owner, config, meter in self._sources
        )
        await self.homes.sync(concurrency=_CONCURRENCY)
        await self.devices.sync(concurrency=_CONCURRENCY)
        problems = [
            f"{participant.name}: {participant.registration_problem or 'not registered'}"
            for household in (self.homes, self.devices)
            for participant in household.participants.values()
            if not participant.registered
        ]
        if problems:
            raise SimulationError("households could not join the grid: " + "; ".join(problems))

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners = []

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
        report = PeriodReport(period, self.clock.simulated(period.end))
        await self.devices.publish_period(period.end, concurrency=_CONCURRENCY)
        queued = await self.homes.publish_period(period.end, concurrency=_CONCURRENCY)
        for participant in self.homes.participants.values():
            energy = queued.get(participant.participant_id) or 0.0
            if isinstance(participant, Producer):
                report.produced_kwh += energy
            else:
                report.consumed_kwh += energy
        report.errors += await self._each(
            [*self.homes.participants.values(), *self.devices.participants.values()],
            lambda participant: participant.sync(),
        )
        if self.plan.pay_bills:
            report.errors += await self._each(
                self.consumers, lambda consumer: self._pay(consumer, report)
            )
        for consumer in self.consumers:
            received = consumer.state.payment_request
            if received is not None:
                report.owed += received.request.owed
                report.bills_seen += 1
        report.produced_kwh = round(report.produced_kwh, 6)
        report.consumed_kwh = round(report.consumed_kwh, 6)
        report.seconds = time.monotonic() - started
        return report

    async def _each[T](
        self, items: Sequence[T], work: Callable[[T], Awaitable[object]]
    ) -> list[str]:
        """Run ``work`` on every item (bounded concurrency); returns the errors."""
        limit = asyncio.Semaphore(_CONCURRENCY)

        async def guarded(item: T) -> str | None:
            async with limit:
                try:
                    await work(item)
                except Exception as err:
                    return f"{getattr(item, 'name', item)}: {type(err).__name__}: {err}"
                return None

        results = await asyncio.gather(*(guarded(item) for item in items))
        return [result for result in results if result is not None]

    async def _pay(self, consumer: Consumer, report: PeriodReport) -> None:
        """Pay what the latest bill asks, as a household's automation would: not while a
        payment is pending, and not until the grid had time to see the last one."""
        received = consumer.state.payment_request
        # What the grid saw confirming is not paid again (the engine refuses it too).
        if received is None or received.request.amount_due <= 0:
            return
        if consumer.state.pending_payment is not None:
            return
        last = self._paid_at.get(consumer.participant_id)
        if last is not None and time.monotonic() - last < self.plan.payment_cooldown:
            return
        try:
            outcome = await consumer.pay_bill()
        except (PaymentRefusedError, InsufficientBalanceError):
            return  # paid already, a reference to pay elsewhere, or no funds
        self._paid_at[consumer.participant_id] = time.monotonic()
        report.paid += outcome.payment.amount

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
