"""``p2p-energy households``: simulated households that survive kill -9 and node outages.

The households are the household engine's producers and consumers (the code Home
Assistant runs) with simulated meters, against an existing node and grid. One
state file holds everything that must outlive the process (written atomically,
:mod:`.state`): who the households are (keys, curves) and the engine's state of
each (channel, outbound queue, meter reference, registration). A reading is taken
and its message created and queued in the same save, so a kill at any instant
loses and doubles nothing: either the save happened (the message goes out after a
restart) or it did not (the reading is taken again from the same meter, which
reads the same at the same instant, at the same channel position).

Missed periods (process down) are caught up with one reading per period, as a
meter with interval memory reports them: the grid settles per slot, so energy
stays in the slot it belongs to. Beyond :data:`MAX_CATCH_UP_PERIODS` the oldest
part of the gap goes out as one reading covering it (no energy is lost, and a
long outage does not cost hours of message creation). While the node is
unreachable the readings keep being taken and queued; the queues drain in order
once it answers again.

A producer's output is its PV arrays' (``--sources-per-producer``) as its
inverter meter sees them; sources with their own channels and the paying of
bills are the demo's (:class:`~.runner.Simulation`).
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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import aiohttp
from p2p_energy_protocol.errors import GridApiError, NodeError, ProtocolError
from p2p_energy_protocol.household import (
    Household,
    HouseholdStore,
    Participant,
    ParticipantConfig,
    ParticipantState,
)
from p2p_energy_protocol.mam import MamChannel
from p2p_energy_protocol.outbox import parse_time
from p2p_energy_protocol.trinary import random_trytes

from ..grid.units import MILLIWH_PER_KWH
from .curves import CloudCover, CurveMeter, SimulatedClock, SimulationError, SolarPanel, solar_power
from .curves import Household as Home
from .runner import (
    MAX_MIN_WEIGHT_MAGNITUDE,
    Period,
    SimulationPlan,
    TangleSettings,
    connection_for,
    simulated_max_power,
)
from .state import StateFileError, exclusive_lock, read_state, write_atomic

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from p2p_energy_protocol.household import GridConnection

_LOGGER = logging.getLogger(__name__)
STATE_FILE: Final = "households.json"
LOCK_FILE: Final = "households.lock"
STATE_FORMAT: Final = "p2p-energy-households"
STATE_VERSION: Final = 2
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


@dataclass(frozen=True)
class SimulatedHome:
    """Who one household is: its keys and its curves (its state is the engine's)."""

    registration_id: str
    name: str
    role: Role
    seed: str
    side_key: str
    first_period_start_ms: int
    # Producer: PV arrays (peak kW), asking price, payment id and how clear its sky is.
    panels: tuple[float, ...] = ()
    price: float = 0.0
    payment_id: str = ""
    clearness: float = 0.85
    # Consumer: the home's use.
    daily_kwh: float = 0.0
    routine_shift_hours: float = 0.0

    def config(self) -> ParticipantConfig:
        """The household engine's participant."""
        return ParticipantConfig(
            participant_id=self.registration_id,
            kind=self.role,
            name=self.name,
            registration_id=self.registration_id,
            seed=self.seed,
            side_key=self.side_key,
            meter_id=f"simulated:{self.registration_id}",
            price=self.price if self.role == "producer" else None,
            payment_id=self.payment_id or None,
        )

    def meter(self, clock: SimulatedClock) -> CurveMeter:
        """The inverter or house meter: zero when the household was created."""
        origin = datetime.fromtimestamp(self.first_period_start_ms / 1000, UTC)
        power: Callable[[datetime], float]
        if self.role == "consumer":
            power = Home(self.daily_kwh, self.routine_shift_hours).mean_kw
        else:
            clouds = CloudCover(random.Random(self.registration_id), self.clearness)
            power = solar_power([SolarPanel(peak) for peak in self.panels], clouds)
        return CurveMeter(power, clock, origin)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimulatedHome:
        role = data["role"]
        if role not in ("producer", "consumer"):
            raise ValueError(f"unknown role {role!r}")
        return cls(
            registration_id=str(data["registration_id"]),
            name=str(data["name"]),
            role=role,
            seed=str(data["seed"]),
            side_key=str(data["side_key"]),
            first_period_start_ms=int(data["first_period_start_ms"]),
            panels=tuple(float(peak) for peak in data["panels"]),
            price=float(data["price"]),
            payment_id=str(data["payment_id"]),
            clearness=float(data["clearness"]),
            daily_kwh=float(data["daily_kwh"]),
            routine_shift_hours=float(data["routine_shift_hours"]),
        )


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


def create_homes(plan: SimulationPlan, now: datetime) -> list[SimulatedHome]:
    """New households with fresh keys; their first period is the one in progress."""
    rng = random.Random(plan.random_seed)
    run = random_trytes(6).lower()
    length = int(plan.period_seconds * 1000)
    start_ms = int(now.timestamp() * 1000) // length * length
    homes: list[SimulatedHome] = []
    for index in range(1, plan.producers + 1):
        registration_id = f"producer-{index:05d}-{run}"
        homes.append(
            SimulatedHome(
                registration_id,
                f"Producer {index}",
                "producer",
                random_trytes(),
                random_trytes(),
                start_ms,
                panels=tuple(
                    round(rng.uniform(2.5, 9.0), 1) for _ in range(plan.sources_per_producer)
                ),
                price=round(rng.uniform(18.0, 40.0), 1),
                payment_id=f"invoice-{registration_id}",
                clearness=rng.uniform(0.55, 0.95),
            )
        )
    for index in range(1, plan.consumers + 1):
        homes.append(
            SimulatedHome(
                f"consumer-{index:05d}-{run}",
                f"Home {index}",
                "consumer",
                random_trytes(),
                random_trytes(),
                start_ms,
                daily_kwh=round(rng.uniform(6.0, 16.0), 1),
                routine_shift_hours=round(rng.uniform(-1.0, 1.0), 2),
            )
        )
    return homes


class StateFile:
    """The state file: the plan, the simulated clock, the households and the engine's
    state of each, written whole and atomically (the engine's state backend)."""

    def __init__(
        self, path: Path, plan: SimulationPlan, clock: SimulatedClock, homes: list[SimulatedHome]
    ) -> None:
        self.path = path
        self.plan = plan
        self.clock = clock
        self.homes = homes
        self.engine: dict[str, Any] = {}

    async def load(self) -> Mapping[str, Any] | None:
        return self.engine

    async def save(self, data: dict[str, Any]) -> None:
        self.engine = data
        self.write()

    def write(self) -> None:
        write_atomic(
            self.path,
            {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "plan": {name: getattr(self.plan, name) for name in _PLAN_FIELDS},
                "clock": {
                    "start": self.clock.start.isoformat(),
                    "real_start": self.clock.real_start.isoformat(),
                    "speed": self.clock.speed,
                },
                "households": [asdict(home) for home in self.homes],
                **self.engine,
            },
        )

    @classmethod
    def read(cls, path: Path) -> StateFile | None:
        """The saved state, or None when there is none; StateFileError when unusable."""
        data = read_state(path)
        if data is None:
            return None
        if data.get("format") != STATE_FORMAT or data.get("version") != STATE_VERSION:
            raise StateFileError(
                f"{path} is not a version {STATE_VERSION} {STATE_FORMAT} state file: move it "
                "away to start new households"
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
            homes = [SimulatedHome.from_dict(item) for item in data["households"]]
            participants = data["participants"]
            if set(participants) != {home.registration_id for home in homes}:
                raise ValueError("the saved households and their states do not match")
            for saved in participants.values():
                # Strict where Home Assistant's store is lenient: a household started
                # afresh would sign again with keys its channel has used.
                saved_state = ParticipantState.from_dict(saved)
                MamChannel.from_json(saved_state.channel or {})
        except (KeyError, TypeError, ValueError, ProtocolError) as err:
            raise _corrupt(path, err) from err
        state = cls(path, plan, clock, homes)
        state.engine = {"participants": participants}
        return state


def _corrupt(path: Path, err: Exception) -> StateFileError:
    return StateFileError(
        f"the state file {path} is corrupt ({type(err).__name__}: {err}); it was left "
        "unchanged: restore it or move it away to start new households"
    )


class DurableHouseholds:
    """Takes readings every period, queues them durably and sends them in order."""

    def __init__(
        self, state_dir: Path, connection: GridConnection, *, crash_window: float = 0.0
    ) -> None:
        self.path = state_dir / STATE_FILE
        # Fault tests: a pause after creating or attaching a message and before its
        # save, so a kill can be aimed at the window where a crash matters most.
        self.crash_window = crash_window
        self.connection = connection
        self.state: StateFile | None = None
        self.household: Household | None = None
        self.node_available = True
        self.stopping = asyncio.Event()

    @property
    def participants(self) -> list[Participant]:
        assert self.household is not None
        return list(self.household.participants.values())

    async def open(self, plan: SimulationPlan, now: datetime | None = None) -> bool:
        """Load the state file, or create households with their hellos queued.

        Returns True when households were created. A saved plan wins over
        ``plan``: the meters and the channels belong to it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = StateFile.read(self.path)
        created = state is None
        if state is None:
            moment = now or datetime.now(UTC)
            clock = SimulatedClock.starting_at_hour(plan.start_hour, plan.speed, moment)
            state = StateFile(self.path, plan, clock, create_homes(plan, moment))
        self.state = state
        self.household = Household(
            self.connection,
            HouseholdStore(state),
            max_power_kw=simulated_max_power(state.clock),
            checkpoint=self._checkpoint,
        )
        await self.household.open((home.config(), home.meter(state.clock)) for home in state.homes)
        if created:
            # Each meter's baseline: the first reading is of the period in progress.
            for home, participant in zip(state.homes, self.participants, strict=True):
                start = datetime.fromtimestamp(home.first_period_start_ms / 1000, UTC)
                await participant.publish_period(start)
        return created

    async def _checkpoint(self, what: str, participant: Participant, sequence: int) -> None:
        if self.crash_window > 0:
            _LOGGER.info("%s %s #%d, not saved yet", what, participant.registration_id, sequence)
            await asyncio.sleep(self.crash_window)

    def last_end_ms(self, participant: Participant) -> int:
        """The end of the last period read (the meter's last sample)."""
        assert participant.state.meter is not None
        return int(participant.state.meter.time.timestamp() * 1000)

    async def take_readings(self, now_ms: int) -> int:
        """Queue a reading for every period each household has not read yet."""
        assert self.state is not None
        length = int(self.state.plan.period_seconds * 1000)
        # Period by period across the households (in their order within a period): a
        # backlog reaches the grid slot by slot, so no slot waits for one household's
        # whole catch-up while another's is done.
        due = sorted(
            (
                (period.end, order, participant)
                for order, participant in enumerate(self.participants)
                for period in due_periods(self.last_end_ms(participant), now_ms, length)
            ),
            key=lambda item: (item[0], item[1]),
        )
        taken = 0
        for end, _, participant in due:
            # A stop is honoured between two messages (each is saved with its reading),
            # not after the whole catch-up.
            if self.stopping.is_set():
                break
            await participant.publish_period(end)
            taken += 1
        return taken

    async def sync(self) -> bool:
        """Send every queue in order and register what is new; False when the node failed."""
        assert self.household is not None
        try:
            await self.household.sync()
        except NodeError as err:
            if self.node_available:
                _LOGGER.warning("node unavailable, readings stay queued: %s", err)
            self.node_available = False
            return False
        except GridApiError as err:
            _LOGGER.warning("the grid did not answer: %s", err)
        if not self.node_available:
            _LOGGER.warning("node is back; queues drained")
        self.node_available = True
        return True

    async def step(self, now_ms: int | None = None) -> None:
        """Take due readings, then send what is queued and register what is new."""
        await self.take_readings(int(time.time() * 1000) if now_ms is None else now_ms)
        await self.sync()

    def seconds_to_next(self) -> float:
        """Until the next period's reading is due (sooner while messages wait)."""
        assert self.state is not None
        length = int(self.state.plan.period_seconds * 1000)
        next_end = min(self.last_end_ms(p) for p in self.participants) + length
        wait = next_end / 1000 + PUBLISH_DELAY - time.time()
        if any(participant.state.queue for participant in self.participants):
            wait = min(wait, RETRY_SECONDS)
        return max(0.0, wait)

    async def run(self, stop: asyncio.Event) -> None:
        self.stopping = stop
        while not stop.is_set():
            await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.seconds_to_next())


def household_summaries(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What each household of a state file did: readings taken (queued or sent) and
    sent, in mWh as the grid counts them, its periods, whether it is registered."""
    summaries: list[dict[str, Any]] = []
    for home in data["households"]:
        state = data["participants"][home["registration_id"]]
        queue = state["queue"]
        published = float(state["energy_published_kwh"])
        queued = sum(float(item["energy_kwh"]) for item in queue)
        summaries.append(
            {
                "registration_id": home["registration_id"],
                "registered": state["registered_root"] == state["channel_root"],
                "queue": queue,
                "readings": int(state["next_sequence"]) - 1,
                "first_period_start_ms": home["first_period_start_ms"],
                # Before its first reading a household's periods end where they start.
                "last_period_end_ms": (
                    int(parse_time(state["meter"]["time"]).timestamp() * 1000)
                    if state["meter"]
                    else home["first_period_start_ms"]
                ),
                "meter_milliwh": round((published + queued) * MILLIWH_PER_KWH),
                "published_milliwh": round(published * MILLIWH_PER_KWH),
            }
        )
    return summaries


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
    if not 1 <= args.min_weight_magnitude <= MAX_MIN_WEIGHT_MAGNITUDE:
        raise SimulationError(
            f"--min-weight-magnitude must be between 1 and {MAX_MIN_WEIGHT_MAGNITUDE}"
        )
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
        async with aiohttp.ClientSession(timeout=timeout) as session:
            connection = connection_for(session, node_url, grid_url, plan.tangle)
            households = DurableHouseholds(state_dir, connection, crash_window=crash_window)
            created = await households.open(plan)
            verb = "created" if created else "resumed"
            print(
                f"p2p-energy households: {verb} {len(households.participants)} households "
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
