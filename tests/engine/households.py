"""A household on the fake network: settable meters, a clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from p2p_energy_protocol.household import (
    Household,
    HouseholdStore,
    MemoryBackend,
    MeterReading,
    ParticipantConfig,
)

from .fake_network import FakeNetwork

if TYPE_CHECKING:
    from p2p_energy_protocol.household import Participant

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def seed(word: str) -> str:
    """An 81-tryte seed made from ``word``."""
    return (word + "9" * 81)[:81]


def ms(moment: datetime) -> int:
    """Unix milliseconds."""
    return int(moment.timestamp() * 1000)


@dataclass
class FixedMeter:
    """A meter whose running total the test sets (None: unavailable)."""

    kwh: float | None = 0.0

    def read(self, now: datetime) -> MeterReading | None:
        return None if self.kwh is None else MeterReading(self.kwh, now)


@dataclass
class Clock:
    """The household's wall clock, moved by the test."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


def config(kind: str, name: str, **extra: object) -> ParticipantConfig:
    """A participant of ``kind`` named ``name`` (ids and keys derived from the name)."""
    word = name.upper().replace(" ", "9")
    wallet = seed(word + "WALLET") if kind in ("producer", "consumer") else None
    return ParticipantConfig(
        participant_id=f"{kind}-{name}",
        kind=kind,  # type: ignore[arg-type]
        name=name,
        registration_id=f"{kind}-registration-{word.lower()}",
        seed=seed(word + "SEED"),
        side_key=seed(word + "KEY"),
        meter_id=f"meter.{name}",
        wallet_seed=wallet,
        **extra,  # type: ignore[arg-type]
    )


@dataclass
class Home:
    """A household, its network, meters and clock."""

    network: FakeNetwork = field(default_factory=FakeNetwork)
    clock: Clock = field(default_factory=Clock)
    meters: dict[str, FixedMeter] = field(default_factory=dict)
    backend: MemoryBackend = field(default_factory=MemoryBackend)
    household: Household | None = None

    async def open(self, *configs: ParticipantConfig, source_wait: float = 20) -> Household:
        """Open a household of ``configs`` (again, for a restart: same store)."""
        for item in configs:
            self.meters.setdefault(item.participant_id, FixedMeter())
        self.household = Household(
            self.network,  # type: ignore[arg-type]
            HouseholdStore(self.backend),
            clock=self.clock,
            source_wait=timedelta(seconds=source_wait),
        )
        await self.household.open((item, self.meters[item.participant_id]) for item in configs)
        return self.household

    def __getitem__(self, participant_id: str) -> Participant:
        assert self.household is not None
        return self.household.participants[participant_id]

    async def period(self, minutes: float, **readings: float | None) -> None:
        """Move to ``T0 + minutes``, set meters (by participant id) and publish the period."""
        assert self.household is not None
        self.clock.now = T0 + minutes * MINUTE
        for participant_id, kwh in readings.items():
            self.meters[participant_id.replace("_", "-")].kwh = kwh
        await self.household.publish_period(self.clock.now)

    async def sync(self, seconds: float = 0) -> None:
        """Let ``seconds`` pass, then sync."""
        assert self.household is not None
        self.clock.now += timedelta(seconds=seconds)
        await self.household.sync()

    def bodies(self, participant_id: str) -> list[dict[str, object]]:
        """Everything a participant published, decoded."""
        participant = self[participant_id]
        assert participant.channel_root is not None
        return self.network.bodies(participant.channel_root, participant.side_key)
