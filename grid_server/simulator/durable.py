"""``p2p-energy households``: simulated households that survive kill -9 and node outages.

Producers and consumers run against an existing node and grid and keep
everything that must outlive the process in one state file (written
atomically, :mod:`.state`): channel states, registration tokens, the outbound
queues (:mod:`p2p_energy_protocol.outbox`), the cumulative meters and the last
period read. A reading is taken and its message created and queued in the same
save, so a kill at any instant loses and doubles nothing: either the save
happened (the message goes out after a restart) or it did not (the reading is
taken again, from the same meter, at the same channel position).

Missed periods (process down) are caught up with one message per period, as a
meter with interval memory reports them: the grid settles per slot, so energy
stays in the slot it belongs to. Beyond :data:`MAX_CATCH_UP_PERIODS` the oldest
part of the gap goes out as one message covering it (no energy is lost, and a
long outage does not cost hours of message creation). While the node is
unreachable the readings keep being taken and queued; the queue drains in
order once it answers again.

A producer's output is its PV arrays' (``--sources-per-producer``) as its
inverter meter sees them; sources with their own channels and the paying of
bills are left to the in-memory :class:`~.runner.Simulation` of the demo.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import aiohttp
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.errors import GridApiError, NodeError, ProtocolError
from p2p_energy_protocol.grid_client import GridClient
from p2p_energy_protocol.mam import MamChannel, MamMessage, channel_root, create_channel
from p2p_energy_protocol.outbox import (
    QueuedMessage,
    create_queued,
    drain,
    mam_sender,
    parse_time,
)
from p2p_energy_protocol.payloads import ConsumerUsage, Hello, ProducerOutput, payload_to_json
from p2p_energy_protocol.trinary import random_trytes

from ..grid.units import MILLIWH_PER_KWH
from .channels import TangleSettings
from .curves import CloudCover, Household, SimulatedClock, SimulationError, SolarPanel
from .households import Period, solar_kwh, usage_kwh
from .runner import SimulationPlan
from .state import StateFileError, exclusive_lock, read_state, write_atomic

_LOGGER = logging.getLogger(__name__)
STATE_FILE: Final = "households.json"
LOCK_FILE: Final = "households.lock"
STATE_FORMAT: Final = "p2p-energy-households"
STATE_VERSION: Final = 1
MAX_CATCH_UP_PERIODS: Final = 96
# Wall-clock seconds after a period ends before its reading is taken.
PUBLISH_DELAY: Final = 0.2
# How often a non-empty queue is retried while the node is away.
RETRY_SECONDS: Final = 1.0

type Role = Literal["producer", "consumer"]


def due_periods(
    last_end_ms: int, now_ms: int, length_ms: int, cap: int = MAX_CATCH_UP_PERIODS
) -> list[Period]:
    """Periods ended since ``last_end_ms``, oldest first; at most ``cap`` of them.

    When more than ``cap`` periods are due, the first one returned covers the
    oldest ones together, so the periods stay contiguous and cover the whole gap.
    """
    count = (now_ms - last_end_ms) // length_ms
    if count <= 0:
        return []
    periods: list[Period] = []
    start = last_end_ms
    if count > cap:
        end = start + (count - cap + 1) * length_ms
        periods.append(Period(start, end))
        start, count = end, cap - 1
    periods.extend(
        Period(start + index * length_ms, start + (index + 1) * length_ms) for index in range(count)
    )
    return periods


@dataclass
class DurableHousehold:
    """A producer or consumer and everything about it that must survive a crash."""

    registration_id: str
    name: str
    role: Role
    channel: MamChannel
    root: str
    side_key: str
    first_period_start_ms: int
    last_period_end_ms: int
    # Producer: PV arrays (peak kW), asking price, payment id and the sky.
    panels: tuple[float, ...] = ()
    price: float = 0.0
    payment_id: str = ""
    clearness: float = 0.85
    cloud_level: float = 0.85
    # Consumer: the home's use.
    daily_kwh: float = 0.0
    routine_shift_hours: float = 0.0
    token: str | None = None
    registered: bool = False
    queue: list[QueuedMessage] = field(default_factory=list)
    next_sequence: int = 0
    # Every reading taken (queued or attached), and the attached part, in mWh.
    meter_milliwh: int = 0
    published_milliwh: int = 0
    readings: int = 0

    @property
    def hello_sent(self) -> bool:
        return self.next_sequence > 0 and (not self.queue or self.queue[0].sequence > 0)

    def reading(self, clock: SimulatedClock, period: Period) -> tuple[dict[str, Any], float]:
        """The period's message body and its kWh (moves this producer's sky on)."""
        if self.role == "consumer":
            household = Household(self.daily_kwh, self.routine_shift_hours)
            kwh = usage_kwh(household, clock, period)
            return payload_to_json(ConsumerUsage(period.start_ms, period.end_ms, kwh)), kwh
        # Seeded by position: a reading taken again after a crash comes out the same.
        clouds = CloudCover(
            random.Random(f"{self.registration_id}:{self.readings}"), self.clearness
        )
        clouds.level = self.cloud_level
        panels = [SolarPanel(peak) for peak in self.panels]
        kwh = solar_kwh(panels, clouds, clock, period)
        self.cloud_level = clouds.level
        output = ProducerOutput(
            start_time=period.start_ms,
            end_time=period.end_ms,
            output=kwh,
            producer_price=self.price,
            payment_id_or_address=self.payment_id,
        )
        return payload_to_json(output), kwh

    def to_dict(self) -> dict[str, Any]:
        return {
            "registration_id": self.registration_id,
            "name": self.name,
            "role": self.role,
            "channel": self.channel.to_json(),
            "root": self.root,
            "side_key": self.side_key,
            "first_period_start_ms": self.first_period_start_ms,
            "last_period_end_ms": self.last_period_end_ms,
            "panels": list(self.panels),
            "price": self.price,
            "payment_id": self.payment_id,
            "clearness": self.clearness,
            "cloud_level": self.cloud_level,
            "daily_kwh": self.daily_kwh,
            "routine_shift_hours": self.routine_shift_hours,
            "token": self.token,
            "registered": self.registered,
            "queue": [item.to_dict() for item in self.queue],
            "next_sequence": self.next_sequence,
            "meter_milliwh": self.meter_milliwh,
            "published_milliwh": self.published_milliwh,
            "readings": self.readings,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DurableHousehold:
        role = data["role"]
        if role not in ("producer", "consumer"):
            raise ValueError(f"unknown role {role!r}")
        token = data["token"]
        return cls(
            registration_id=str(data["registration_id"]),
            name=str(data["name"]),
            role=role,
            channel=MamChannel.from_json(data["channel"]),
            root=str(data["root"]),
            side_key=str(data["side_key"]),
            first_period_start_ms=int(data["first_period_start_ms"]),
            last_period_end_ms=int(data["last_period_end_ms"]),
            panels=tuple(float(peak) for peak in data["panels"]),
            price=float(data["price"]),
            payment_id=str(data["payment_id"]),
            clearness=float(data["clearness"]),
            cloud_level=float(data["cloud_level"]),
            daily_kwh=float(data["daily_kwh"]),
            routine_shift_hours=float(data["routine_shift_hours"]),
            token=None if token is None else str(token),
            registered=bool(data["registered"]),
            queue=[QueuedMessage.from_dict(item) for item in data["queue"]],
            next_sequence=int(data["next_sequence"]),
            meter_milliwh=int(_renamed(data, "meter_milliwh", "meter_mwh")),
            published_milliwh=int(_renamed(data, "published_milliwh", "published_mwh")),
            readings=int(data["readings"]),
        )


def _renamed(data: dict[str, Any], name: str, old_name: str) -> Any:
    """``data[name]``, or ``data[old_name]`` in a state file written before the rename."""
    return data[name] if name in data or old_name not in data else data[old_name]


_PLAN_FIELDS: Final = (
    "producers",
    "sources_per_producer",
    "consumers",
    "period_seconds",
    "speed",
    "start_hour",
    "latitude_deg",
    "random_seed",
)


@dataclass
class HouseholdsState:
    """The whole state file: the plan, the simulated clock and the households."""

    plan: SimulationPlan
    clock: SimulatedClock
    households: list[DurableHousehold]

    @property
    def period_ms(self) -> int:
        return int(self.plan.period_seconds * 1000)

    @classmethod
    def create(cls, plan: SimulationPlan, now: datetime) -> HouseholdsState:
        """New households with fresh channels; the first period is the one in progress."""
        rng = random.Random(plan.random_seed)
        run = random_trytes(6).lower()
        length = int(plan.period_seconds * 1000)
        start_ms = int(now.timestamp() * 1000) // length * length
        households: list[DurableHousehold] = []

        def new(registration_id: str, name: str, role: Role, **extra: Any) -> None:
            side_key = random_trytes()
            channel = create_channel(random_trytes(), 2, "restricted", side_key)
            households.append(
                DurableHousehold(
                    registration_id=registration_id,
                    name=name,
                    role=role,
                    channel=channel,
                    root=channel_root(channel),
                    side_key=side_key,
                    first_period_start_ms=start_ms,
                    last_period_end_ms=start_ms,
                    **extra,
                )
            )

        for index in range(1, plan.producers + 1):
            clearness = rng.uniform(0.55, 0.95)
            registration_id = f"producer-{index:05d}-{run}"
            new(
                registration_id,
                f"Producer {index}",
                "producer",
                panels=tuple(
                    round(rng.uniform(2.5, 9.0), 1) for _ in range(plan.sources_per_producer)
                ),
                price=round(rng.uniform(18.0, 40.0), 1),
                payment_id=f"invoice-{registration_id}",
                clearness=clearness,
                cloud_level=clearness,
            )
        for index in range(1, plan.consumers + 1):
            new(
                f"consumer-{index:05d}-{run}",
                f"Home {index}",
                "consumer",
                daily_kwh=round(rng.uniform(6.0, 16.0), 1),
                routine_shift_hours=round(rng.uniform(-1.0, 1.0), 2),
            )
        clock = SimulatedClock.starting_at_hour(plan.start_hour, plan.speed, now)
        return cls(plan, clock, households)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "plan": {name: getattr(self.plan, name) for name in _PLAN_FIELDS},
            "clock": {
                "start": self.clock.start.isoformat(),
                "real_start": self.clock.real_start.isoformat(),
                "speed": self.clock.speed,
            },
            "households": [household.to_dict() for household in self.households],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> HouseholdsState:
        if data.get("format") != STATE_FORMAT or data.get("version") != STATE_VERSION:
            raise StateFileError(
                f"{path} is not a version {STATE_VERSION} {STATE_FORMAT} state file"
            )
        try:
            plan = SimulationPlan(**{name: data["plan"][name] for name in _PLAN_FIELDS})
            clock_data = data["clock"]
            # The simulated start is naive local solar time; only the wall clock is UTC.
            clock = SimulatedClock(
                start=datetime.fromisoformat(clock_data["start"]),
                real_start=parse_time(clock_data["real_start"]),
                speed=float(clock_data["speed"]),
            )
            households = [DurableHousehold.from_dict(item) for item in data["households"]]
        except (KeyError, TypeError, ValueError, ProtocolError) as err:
            raise StateFileError(
                f"the state file {path} is corrupt ({type(err).__name__}: {err}); it was left "
                "unchanged: restore it or move it away to start new households"
            ) from err
        return cls(plan, clock, households)


class DurableHouseholds:
    """Takes readings every period, queues them durably and drains the queues in order."""

    def __init__(
        self,
        state_dir: Path,
        session: aiohttp.ClientSession,
        node_url: str,
        grid_url: str,
        tangle: TangleSettings,
        *,
        crash_window: float = 0.0,
    ) -> None:
        self.path = state_dir / STATE_FILE
        # Fault tests: a pause after creating or attaching a message and before its
        # save, so a kill can be aimed at the window where a crash matters most.
        self.crash_window = crash_window
        self._send = mam_sender(
            IriClient(session, node_url),
            tag=tangle.tag,
            depth=tangle.depth,
            min_weight_magnitude=tangle.min_weight_magnitude,
        )
        self.grid = GridClient(session, grid_url)
        self.state: HouseholdsState | None = None
        self.node_available = True

    @property
    def households(self) -> list[DurableHousehold]:
        assert self.state is not None
        return self.state.households

    def save(self) -> None:
        assert self.state is not None
        write_atomic(self.path, self.state.to_dict())

    async def open(self, plan: SimulationPlan, now: datetime | None = None) -> bool:
        """Load the state file, or create households with their hellos queued.

        Returns True when households were created. A saved plan wins over
        ``plan``: the meters and the channels belong to it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = read_state(self.path)
        if data is not None:
            self.state = HouseholdsState.from_dict(data, self.path)
            return False
        state = await asyncio.to_thread(HouseholdsState.create, plan, now or datetime.now(UTC))
        for household in state.households:
            hello = await asyncio.to_thread(
                create_queued, household.channel, payload_to_json(Hello()), 0
            )
            household.queue.append(hello)
            household.next_sequence = 1
        self.state = state
        self.save()
        return True

    async def take_readings(self, now_ms: int) -> int:
        """Queue a reading for every period each household has not read yet."""
        assert self.state is not None
        taken = 0
        for household in self.households:
            for period in due_periods(household.last_period_end_ms, now_ms, self.state.period_ms):
                await self._take(household, period)
                taken += 1
        return taken

    async def _take(self, household: DurableHousehold, period: Period) -> None:
        assert self.state is not None
        body, kwh = household.reading(self.state.clock, period)
        # Created on a copy: the saved channel only moves on together with the queue.
        channel = MamChannel.from_json(household.channel.to_json())
        sequence = household.next_sequence
        _LOGGER.info("creating %s #%d", household.registration_id, sequence)
        queued = await asyncio.to_thread(create_queued, channel, body, sequence, kwh)
        await self._crash_window("created", household, sequence)
        household.channel = channel
        household.queue.append(queued)
        household.next_sequence += 1
        household.meter_milliwh += round(kwh * MILLIWH_PER_KWH)
        household.readings += 1
        household.last_period_end_ms = period.end_ms
        self.save()
        _LOGGER.info(
            "queued %s #%d %d-%d %.6f kWh (%d queued)",
            household.registration_id,
            sequence,
            period.start_ms,
            period.end_ms,
            kwh,
            len(household.queue),
        )

    async def _crash_window(self, what: str, household: DurableHousehold, sequence: int) -> None:
        if self.crash_window > 0:
            _LOGGER.info("%s %s #%d, not saved yet", what, household.registration_id, sequence)
            await asyncio.sleep(self.crash_window)

    async def drain_queues(self) -> bool:
        """Attach every household's queue in order; False when the node failed."""
        for household in self.households:

            async def sent(queued: QueuedMessage, household: DurableHousehold = household) -> None:
                if queued.kind in ("output", "usage"):
                    household.published_milliwh += round(queued.energy_kwh * MILLIWH_PER_KWH)
                self.save()
                _LOGGER.info("attached %s #%d", household.registration_id, queued.sequence)

            async def send(message: MamMessage, household: DurableHousehold = household) -> None:
                _LOGGER.info(
                    "attaching %s #%d", household.registration_id, household.queue[0].sequence
                )
                await self._send(message)
                await self._crash_window("sent", household, household.queue[0].sequence)

            try:
                await drain(household.queue, send, sent)
            except NodeError as err:
                if self.node_available:
                    _LOGGER.warning("node unavailable, readings stay queued: %s", err)
                self.node_available = False
                return False
        if not self.node_available:
            _LOGGER.warning("node is back; queues drained")
        self.node_available = True
        return True

    async def register(self) -> None:
        """Register every channel whose hello is out and that the grid does not know yet."""
        for household in self.households:
            if household.registered or not household.hello_sent:
                continue
            try:
                # Re-registering after a crash is authorised by the channel's side key.
                reply = await self.grid.register(
                    household.registration_id,
                    household.name,
                    household.role,
                    root=household.root,
                    side_key=household.side_key,
                    token=household.token,
                )
            except GridApiError as err:
                _LOGGER.warning("%s: registration failed: %s", household.registration_id, err)
                continue
            household.token = reply.token or household.token
            household.registered = True
            self.save()
            _LOGGER.info("registered %s", household.registration_id)

    async def step(self, now_ms: int | None = None) -> None:
        """Take due readings, then send what is queued and register what is new."""
        await self.take_readings(int(time.time() * 1000) if now_ms is None else now_ms)
        if await self.drain_queues():
            await self.register()

    def seconds_to_next(self) -> float:
        """Until the next period's reading is due (sooner while messages wait)."""
        assert self.state is not None
        next_end = min(h.last_period_end_ms for h in self.households) + self.state.period_ms
        wait = next_end / 1000 + PUBLISH_DELAY - time.time()
        if any(household.queue for household in self.households):
            wait = min(wait, RETRY_SECONDS)
        return max(0.0, wait)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.seconds_to_next())


def add_households_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register ``p2p-energy households``."""
    parser = subparsers.add_parser(
        "households",
        help="run durable simulated households against a running node and grid",
        description=(
            "Simulated producers and consumers that keep their channels, registrations, "
            "outbound queues and meters in --state-dir (written atomically), so a kill or "
            "a node outage loses and doubles nothing. Plan options apply when the state "
            "folder is new; afterwards the saved plan is used."
        ),
    )
    parser.add_argument("--node", required=True, metavar="URL", help="the node's IRI API")
    parser.add_argument("--grid", required=True, metavar="URL", help="the grid's API")
    parser.add_argument("--state-dir", required=True, type=Path, help="durable state folder")
    parser.add_argument("--producers", type=int, default=2, help="producers (2)")
    parser.add_argument(
        "--sources-per-producer", type=int, default=3, help="PV arrays per producer (3)"
    )
    parser.add_argument("--consumers", type=int, default=5, help="consumers (5)")
    parser.add_argument(
        "--period-seconds", type=float, default=10.0, help="seconds per reading (10)"
    )
    parser.add_argument(
        "--speed", type=float, default=180.0, help="simulated seconds per second (180)"
    )
    parser.add_argument("--start-hour", type=float, default=9.0, help="simulated start (9.0)")
    parser.add_argument("--min-weight-magnitude", type=int, default=9, help="proof of work (9)")
    parser.add_argument("--seed", type=int, help="random seed of the households' curves")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    # For fault tests only (see DurableHouseholds.crash_window).
    parser.add_argument("--crash-window", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.set_defaults(handler=run_households)


def plan_from_args(args: argparse.Namespace) -> SimulationPlan:
    if not 1 <= args.min_weight_magnitude <= 14:
        raise SimulationError("--min-weight-magnitude must be between 1 and 14")
    return SimulationPlan(
        producers=args.producers,
        sources_per_producer=args.sources_per_producer,
        consumers=args.consumers,
        period_seconds=args.period_seconds,
        speed=args.speed,
        start_hour=args.start_hour,
        random_seed=args.seed,
        tangle=TangleSettings(min_weight_magnitude=args.min_weight_magnitude),
    )


async def serve_households(
    plan: SimulationPlan,
    state_dir: Path,
    node_url: str,
    grid_url: str,
    crash_window: float = 0.0,
) -> None:
    """Run until SIGINT or SIGTERM (a step in progress is finished first)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    timeout = aiohttp.ClientTimeout(total=60)
    state_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(state_dir / LOCK_FILE):
        await _serve(plan, state_dir, node_url, grid_url, crash_window, stop, timeout)


async def _serve(
    plan: SimulationPlan,
    state_dir: Path,
    node_url: str,
    grid_url: str,
    crash_window: float,
    stop: asyncio.Event,
    timeout: aiohttp.ClientTimeout,
) -> None:
    async with aiohttp.ClientSession(timeout=timeout) as session:
        households = DurableHouseholds(
            state_dir, session, node_url, grid_url, plan.tangle, crash_window=crash_window
        )
        created = await households.open(plan)
        verb = "created" if created else "resumed"
        print(
            f"p2p-energy households: {verb} {len(households.households)} households "
            f"in {households.path}",
            flush=True,
        )
        await households.run(stop)


def run_households(args: argparse.Namespace) -> int:
    try:
        plan = plan_from_args(args)
    except SimulationError as err:
        print(f"p2p-energy households: {err}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_households(plan, args.state_dir, args.node, args.grid, args.crash_window))
    except (StateFileError, OSError) as err:
        print(f"p2p-energy households: {err}", file=sys.stderr)
        return 1
    return 0
