"""What sources, producers and consumers share: a meter, a channel, a durable queue.

Each participant owns a restricted MAM channel (seed and side key from its
configuration) and an outbound queue (:mod:`..outbox`). A message is created at
its channel position when it is queued, in the same save that consumes the
meter reading, and attached in queue order whenever the node is reachable, so
readings survive restarts and outages and channels never fork. Once its hello
is out, the channel is registered with the counterpart (the grid, or a source's
producer).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeGuard

from ..errors import GridApiError, GridUnavailableError, NodeError, ProtocolError
from ..mam import MamChannel, channel_root, create_channel
from ..outbox import QueuedMessage, create_queued, drain
from ..payloads import Goodbye, Hello, payload_to_json
from ..trinary import random_trytes
from .connection import MAM_MODE, MAM_SECURITY
from .meter import ENERGY_DECIMALS, MeterOutcome, advance_meter

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from ..payloads import Payload
    from .household import Household
    from .meter import Meter, MeterDelta
    from .state import ParticipantState

_LOGGER = logging.getLogger(__name__)

type ParticipantKind = Literal["source", "producer", "consumer"]
PARTICIPANT_KINDS: tuple[ParticipantKind, ...] = ("source", "producer", "consumer")


def is_participant_kind(value: object) -> TypeGuard[ParticipantKind]:
    """Whether ``value`` names a role (a subentry type, a saved kind)."""
    return value in PARTICIPANT_KINDS


READING_KINDS = frozenset({"output", "usage"})


def unix_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch, as the payloads carry time."""
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class ParticipantConfig:
    """Who a participant is: set by its owner (a config subentry, a simulation plan)."""

    participant_id: str
    """Stable for the participant's lifetime (the key of its saved state)."""
    kind: ParticipantKind
    name: str
    registration_id: str
    seed: str
    side_key: str
    meter_id: str
    """Names the meter; a different one starts the meter reference afresh."""
    wallet_seed: str | None = None
    """Producer: where it is paid (key index 0); consumer: what it pays from."""
    price: float | None = None
    """Producer: asking price in IOTA per kWh."""
    max_price: float | None = None
    """Consumer: its bid, the most it pays per kWh of local energy (None: no bid)."""
    payment_id: str | None = None
    """Producer: a payment reference to publish instead of its wallet address."""
    api_token: str | None = None
    """Producer: the secret of its registration API's base URL."""
    sources: tuple[str, ...] = ()
    """Producer: participant ids of its sources in the same household."""
    producer_url: str = ""
    """Source: a remote producer's registration API ('' when its producer is local)."""


class Participant(ABC):
    """A source, producer or consumer of one household."""

    kind: ClassVar[ParticipantKind]
    registers_with_grid: ClassVar[bool] = False

    def __init__(
        self,
        household: Household,
        config: ParticipantConfig,
        meter: Meter,
        state: ParticipantState,
    ) -> None:
        """Bind the participant to its configuration, meter and durable state."""
        self.household = household
        self.config = config
        self.meter = meter
        self.state = state
        self.lock = asyncio.Lock()
        self._channel: MamChannel | None = None
        self.channel_root: str | None = None
        self.registration_problem: str | None = None

    @property
    def participant_id(self) -> str:
        """Stable for the participant's lifetime."""
        return self.config.participant_id

    @property
    def name(self) -> str:
        """The name its owner gave."""
        return self.config.name

    @property
    def registration_id(self) -> str:
        """This participant's registration id with the grid or its producer."""
        return self.config.registration_id

    @property
    def side_key(self) -> str:
        """The side key of the current channel."""
        return self.config.side_key

    @property
    def registered(self) -> bool:
        """Whether the counterpart knows the current channel."""
        return self.channel_root is not None and self.state.registered_root == self.channel_root

    # Channel and queue ---------------------------------------------------------

    async def prepare(self) -> None:
        """Load the channel, or open a new one (with its hello) for a new seed."""
        if self.state.meter_id != self.config.meter_id:
            # Another meter now: its running total has nothing to do with the old one's.
            self.state.meter = None
            self.state.meter_id = self.config.meter_id
        channel: MamChannel | None = None
        if self.state.channel is not None:
            try:
                channel = MamChannel.from_json(self.state.channel)
            except ProtocolError as err:
                _LOGGER.warning(
                    "Saved channel of %s is unreadable (%s); opening a new one", self.name, err
                )
        if (
            channel is not None
            and channel.seed == self.config.seed
            and channel.side_key == self.side_key
            and self.state.channel_root is not None
        ):
            self._channel = channel
            self.channel_root = self.state.channel_root
            return
        self._channel, self.channel_root = await self._new_channel(self.config.seed, self.side_key)
        self.state.channel = self._channel.to_json()
        self.state.channel_root = self.channel_root
        if not self.state.deregistered:
            await self._enqueue_locked(Hello(), 0.0)
        else:
            await self.household.store.save()

    async def _new_channel(self, seed: str, side_key: str) -> tuple[MamChannel, str]:
        """A new channel and its first root, the one to register (CPU work)."""

        def create() -> tuple[MamChannel, str]:
            channel = create_channel(seed, security=MAM_SECURITY, mode=MAM_MODE, side_key=side_key)
            return channel, channel_root(channel)

        return await self.household.run(create)

    async def _enqueue_locked(
        self,
        payload: Payload,
        energy_kwh: float,
        along: Callable[[], None] | None = None,
    ) -> QueuedMessage:
        """Create ``payload`` at the channel's next position and queue it durably.

        The message is created on a copy of the channel: the saved channel moves on
        only together with the queue holding the message, so a crash before the save
        creates the same message at the same position again. ``along`` changes the
        state that goes with the message (what it consumed) in the same save.
        """
        assert self._channel is not None
        sequence = self.state.next_sequence
        channel = MamChannel.from_json(self._channel.to_json())
        _LOGGER.debug("creating %s #%d", self.registration_id, sequence)
        queued = await self.household.run(
            create_queued,
            channel,
            payload_to_json(payload),
            sequence,
            energy_kwh,
            self.household.clock(),
        )
        await self.household.checkpoint("created", self, sequence)
        self._channel = channel
        self.state.channel = channel.to_json()
        self.state.next_sequence += 1
        self.state.queue.append(queued)
        if along is not None:
            along()
        await self.household.store.save()
        _LOGGER.debug(
            "queued %s #%d %.6f kWh (%d queued)",
            self.registration_id,
            sequence,
            energy_kwh,
            len(self.state.queue),
        )
        return queued

    async def _flush_locked(self) -> int:
        """Attach queued messages in order; stop at the first failure (NodeError)."""

        async def send(message: Any) -> None:
            sequence = self.state.queue[0].sequence
            _LOGGER.debug("attaching %s #%d", self.registration_id, sequence)
            await self.household.connection.publish(message)
            await self.household.checkpoint("sent", self, sequence)

        sent = await drain(self.state.queue, send, self._sent)
        if sent:
            self.household.changed()
        return sent

    async def _sent(self, queued: QueuedMessage) -> None:
        """Count an attached message's energy as published, durably."""
        if queued.kind in READING_KINDS:
            self.state.energy_published_kwh = round(
                self.state.energy_published_kwh + queued.energy_kwh, ENERGY_DECIMALS
            )
        self.state.last_publish = self.household.clock()
        await self.household.store.save()
        _LOGGER.debug("attached %s #%d", self.registration_id, queued.sequence)

    async def _flush_quietly_locked(self, what: str) -> None:
        """Try to send the queue; a node outage only leaves it queued."""
        try:
            await self._flush_locked()
        except NodeError as err:
            _LOGGER.debug(
                "%s: %s; %d message(s) queued, node unavailable: %s",
                self.name,
                what,
                len(self.state.queue),
                err,
            )

    # Meter ------------------------------------------------------------------

    def _measure(self, now: datetime) -> MeterDelta | None:
        """Advance the meter reference; return the delta to publish, if any."""
        reading = self.meter.read(now)
        step = advance_meter(self.state.meter, reading, max_power_kw=self.household.max_power_kw)
        if step.outcome is MeterOutcome.ABSURD:
            _LOGGER.warning(
                "%s: %s jumped to %s kWh, more than %s kW can deliver; the jump is not published",
                self.name,
                self.config.meter_id,
                reading.energy_kwh if reading is not None else None,
                self.household.max_power_kw,
            )
        elif step.outcome is MeterOutcome.RESET:
            _LOGGER.info(
                "%s: %s was reset; publishing the energy since the reset",
                self.name,
                self.config.meter_id,
            )
        elif step.outcome is MeterOutcome.DIP:
            _LOGGER.debug(
                "%s: %s went down; keeping its highest reading", self.name, self.config.meter_id
            )
        self.state.meter = step.reference
        return step.delta

    async def publish_period(self, now: datetime) -> float | None:
        """Take this period's reading, queue it and try to send the queue.

        Returns the energy queued (kWh), or None when nothing was.
        """
        async with self.lock:
            if self.state.deregistered:
                return None
            energy = await self._take_period_locked(now)
            await self._flush_quietly_locked("period")
        self.household.changed()
        return energy

    @abstractmethod
    async def _take_period_locked(self, now: datetime) -> float | None:
        """Measure the period ending ``now`` and queue what it says; the energy queued."""

    async def _queue_delta_locked(
        self, now: datetime, message: Callable[[int, int, float], Payload]
    ) -> float | None:
        """Queue the meter's delta since the last sample as ``message(start_ms, end_ms, kwh)``
        (nothing without a delta: a baseline, an unavailable or implausible meter)."""
        delta = self._measure(now)
        if delta is None:
            await self.household.store.save()
            return None
        payload = message(unix_ms(delta.start), unix_ms(delta.end), delta.energy_kwh)
        await self._enqueue_locked(payload, delta.energy_kwh)
        return delta.energy_kwh

    # Registration -----------------------------------------------------------

    async def sync(self) -> None:
        """Send what is queued, then register the channel once its hello is out."""
        async with self.lock:
            await self._flush_locked()
            if self.state.deregistered or self.registered or self.state.queue:
                return
            assert self.channel_root is not None
            try:
                await self._register_locked(self.channel_root)
            except GridUnavailableError as err:
                if self.registers_with_grid:
                    raise  # the owner reports the grid unreachable
                self._note_registration_problem(err.message)
                return
            except GridApiError as err:
                self._note_registration_problem(err.message)
                return
            if self.registration_problem is not None:
                _LOGGER.info("%s: registered", self.name)
            self.registration_problem = None
            self.state.registered_root = self.channel_root
            await self.household.store.save()
            _LOGGER.debug("registered %s", self.registration_id)

    def _note_registration_problem(self, message: str) -> None:
        """Log a refused registration once per distinct reason; it is retried every sync."""
        if self.registration_problem != message:
            _LOGGER.warning("%s: registration refused: %s", self.name, message)
        self.registration_problem = message

    @abstractmethod
    async def _register_locked(self, root: str) -> None:
        """Tell the counterpart (grid or producer) about the channel at ``root``."""

    @abstractmethod
    async def _deregister_remote(self) -> None:
        """Remove the registration at the counterpart."""

    async def deregister(self) -> None:
        """Leave: remove the registration, say goodbye, stop publishing."""
        async with self.lock:
            if self.state.deregistered:
                return
            await self._deregister_remote()
            await self._enqueue_locked(Goodbye(), 0.0)
            self.state.deregistered = True
            self.state.registered_root = None
            await self.household.store.save()
            await self._flush_quietly_locked("goodbye")
        self.household.changed()

    async def rotate(self) -> None:
        """Say goodbye on the channel and continue on a new one.

        The new seed and side key go to the owner first (so a restart half-way
        opens the new channel instead of writing after the old one's goodbye);
        the new channel's hello is queued behind the old channel's goodbye, and
        the channel is registered again once the hello is out.
        """
        async with self.lock:
            seed, side_key = random_trytes(), random_trytes()
            channel, root = await self._new_channel(seed, side_key)
            self.config = replace(self.config, seed=seed, side_key=side_key)
            self.household.keys_changed(self)
            if not self.state.deregistered:
                await self._enqueue_locked(Goodbye(), 0.0)
            self._channel, self.channel_root = channel, root
            self.state.channel = channel.to_json()
            self.state.channel_root = root
            self.state.deregistered = False
            await self._enqueue_locked(Hello(), 0.0)
        self.household.changed()

    def diagnostics(self) -> dict[str, Any]:
        """Runtime facts for a diagnostics download (no secrets)."""
        return {
            "kind": self.kind,
            "channel_root": self.channel_root,
            "registered": self.registered,
            "deregistered": self.state.deregistered,
            "registration_problem": self.registration_problem,
            "queued_messages": [
                {"sequence": item.sequence, "kind": item.kind, "created": item.created.isoformat()}
                for item in self.state.queue
            ],
            "energy_published_kwh": self.state.energy_published_kwh,
            "last_publish": self.state.last_publish.isoformat()
            if self.state.last_publish
            else None,
        }
