"""A household: sources, producers and consumers sharing a grid connection and a store.

Everything a household does on the grid lives here and in the roles, whoever
runs it: the Home Assistant integration (meters are sensors, the store is Home
Assistant's), the demo's simulated market and the durable simulated households
(meters are curves, the store is memory or a file). The owner injects what
differs: the network (:class:`GridConnection` on its aiohttp session), the
:class:`HouseholdStore` backend, the meters, a clock and an executor for the
CPU-bound work (MAM messages, addresses, signatures).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

from .consumer import Consumer
from .producer import Producer
from .roles import Source

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from .connection import GridConnection
    from .meter import Meter
    from .participant import Participant, ParticipantConfig, ParticipantKind
    from .state import HouseholdStore

_LOGGER = logging.getLogger(__name__)
ROLES: Final[dict[ParticipantKind, type[Participant]]] = {
    "source": Source,
    "producer": Producer,
    "consumer": Consumer,
}
PUBLISH_ORDER: Final[dict[ParticipantKind, int]] = {"source": 0, "producer": 1, "consumer": 2}
"""Sources publish before producers read them; consumers come last."""
DEFAULT_MAX_POWER_KW: Final = 250.0
DEFAULT_SOURCE_WAIT: Final = timedelta(seconds=20)


class JobRunner(Protocol):
    """Runs a blocking job off the event loop (Home Assistant's ``async_add_executor_job``)."""

    def __call__[T](self, job: Callable[[], T], /) -> Awaitable[T]:
        """Start ``job``; the result is awaited."""
        ...


def utc_now() -> datetime:
    """The wall clock, timezone-aware."""
    return datetime.now(UTC)


async def _no_checkpoint(_what: str, _participant: Participant, _sequence: int) -> None:
    return None


class Household:
    """The participants of one owner, with what they share."""

    def __init__(
        self,
        connection: GridConnection,
        store: HouseholdStore,
        *,
        clock: Callable[[], datetime] = utc_now,
        executor: Executor | JobRunner | None = None,
        max_power_kw: float = DEFAULT_MAX_POWER_KW,
        source_wait: timedelta = DEFAULT_SOURCE_WAIT,
        on_change: Callable[[], None] | None = None,
        on_keys_changed: Callable[[Participant], None] | None = None,
        checkpoint: Callable[[str, Participant, int], Awaitable[None]] = _no_checkpoint,
    ) -> None:
        """Share ``connection`` and ``store``.

        ``executor`` runs the CPU-bound work: an ``Executor`` (``None``: the event
        loop's default one) or a job runner such as Home Assistant's
        ``async_add_executor_job``, which also lets it wait for the jobs. ``max_power_kw`` bounds
        a plausible meter jump; ``source_wait`` is how long a producer's period
        waits for its sources' readings. ``on_change`` hears of every change a
        display would show; ``on_keys_changed`` of a participant's new seed and
        side key (a channel rotation), to keep them before anything is queued on
        the new channel. ``checkpoint(what, participant, sequence)`` runs after a
        message was created and after it was attached, each before the save that
        records it (fault tests pause there).
        """
        self.connection = connection
        self.store = store
        self.clock = clock
        self.executor = executor
        self.max_power_kw = max_power_kw
        self.source_wait = source_wait
        self._on_change = on_change
        self._on_keys_changed = on_keys_changed
        self.checkpoint = checkpoint
        self.participants: dict[str, Participant] = {}

    async def run[**P, R](self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run CPU-bound ``func`` in the executor, keeping the event loop responsive."""
        call = functools.partial(func, *args, **kwargs)
        if self.executor is None or isinstance(self.executor, Executor):
            return await asyncio.get_running_loop().run_in_executor(self.executor, call)
        return await self.executor(call)

    def changed(self) -> None:
        """Tell the owner something it may display has changed."""
        if self._on_change is not None:
            self._on_change()

    def keys_changed(self, participant: Participant) -> None:
        """Tell the owner a participant's seed and side key changed."""
        if self._on_keys_changed is not None:
            self._on_keys_changed(participant)

    async def open(self, members: Iterable[tuple[ParticipantConfig, Meter]]) -> None:
        """Load the saved state and open every participant's channel.

        The state of participants no longer among ``members`` is dropped.
        """
        await self.store.load()
        members = list(members)
        dropped = self.store.forget(config.participant_id for config, _ in members)
        if dropped:
            _LOGGER.debug("Forgetting the state of participants that left: %s", dropped)
        for config, meter in members:
            state = self.store.participant(config.participant_id)
            self.participants[config.participant_id] = ROLES[config.kind](
                self, config, meter, state
            )
        for participant in self.ordered:
            await participant.prepare()
        await self.store.save()

    @property
    def ordered(self) -> list[Participant]:
        """Participants in publishing order: sources, producers, consumers."""
        return sorted(self.participants.values(), key=lambda p: PUBLISH_ORDER[p.kind])

    def producer_by_token(self, token: str) -> Producer | None:
        """The producer whose registration API token is ``token``."""
        for participant in self.participants.values():
            if isinstance(participant, Producer) and participant.api_token == token:
                return participant
        return None

    async def publish_period(
        self,
        now: datetime,
        participants: Iterable[Participant] | None = None,
        *,
        concurrency: int = 1,
    ) -> dict[str, float | None]:
        """Publish the period ending ``now`` of ``participants`` (default: all).

        Sources first, then producers, then consumers; within a kind up to
        ``concurrency`` at a time. Returns each participant's energy queued.
        """
        chosen = self.participants.values() if participants is None else participants
        queued: dict[str, float | None] = {}

        async def publish(participant: Participant) -> None:
            queued[participant.participant_id] = await participant.publish_period(now)

        await _in_order(chosen, publish, concurrency)
        return queued

    async def sync(self, *, concurrency: int = 1) -> None:
        """Send what is queued, register, follow channels, settle payments.

        Every participant has its turn (sources, then producers, then consumers);
        then the first failure is raised (a NodeError, or a producer's or
        consumer's GridApiError).
        """
        errors: list[Exception] = []

        async def sync(participant: Participant) -> None:
            try:
                await participant.sync()
            except Exception as err:  # raised after the others had their turn
                errors.append(err)

        await _in_order(self.participants.values(), sync, concurrency)
        if errors:
            raise errors[0]

    def diagnostics(self) -> dict[str, Any]:
        """Runtime facts of every participant (no secrets)."""
        return {
            participant_id: participant.diagnostics()
            for participant_id, participant in self.participants.items()
        }


async def _in_order(
    participants: Iterable[Participant],
    work: Callable[[Participant], Awaitable[None]],
    concurrency: int,
) -> None:
    """``work`` on each participant, kind by kind in publishing order, up to
    ``concurrency`` at a time within a kind (one at a time: no tasks are created,
    so an owner waiting for its own tasks sees the work finished)."""
    by_kind = sorted(participants, key=lambda participant: PUBLISH_ORDER[participant.kind])
    if concurrency <= 1:
        for participant in by_kind:
            await work(participant)
        return
    limit = asyncio.Semaphore(concurrency)

    async def limited(participant: Participant) -> None:
        async with limit:
            await work(participant)

    for kind in sorted(PUBLISH_ORDER, key=PUBLISH_ORDER.__getitem__):
        await asyncio.gather(*(limited(p) for p in by_kind if p.kind == kind))
