"""A producer: sells its inverter's and its sources' output to the grid.

Energy is priced in the slot it was produced: the output a producer publishes
for a period holds its inverter's energy of that period plus its sources'
readings *of that period* (the one a reading's end falls in), whenever the
producer read them. A period's output therefore waits until every followed
source has reported beyond the period's end, or until ``source_wait`` has
passed after it (a source that has gone quiet cannot hold the producer back);
nothing goes out while the sources cannot be read at all (the node is away):
after an outage each period's output is published with its sources' readings.
A source reading that arrives after its period went out is published on its
own, with the source's period, so the grid still prices it in its slot (as an
adjustment when the slot is settled already).

The blueprint's producer registration API is :meth:`Producer.register_source`
and :meth:`Producer.deregister_source` (HTTP in :mod:`.producer_api`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import GridApiError, GridUnavailableError, NodeError, PayloadError
from ..payloads import (
    HELLO_SEARCH_DEPTH,
    Goodbye,
    ProducerOutput,
    SourceOutput,
    has_hello,
    parse_source_message,
)
from .meter import ENERGY_DECIMALS
from .participant import unix_ms
from .roles import Source
from .state import FollowedChannel, OpenPeriod, SourceReading, SourceRegistration
from .wallet import WalletMember

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from ..expected_output import ExpectedOutput
    from ..mam import ChannelEntry

_LOGGER = logging.getLogger(__name__)
SOURCES_CONTEXT = "sources"
"""The grid storage context where a producer keeps its source list."""


class RegistrationRefusedError(Exception):
    """A producer's registration API refuses a request (HTTP status and message)."""

    def __init__(self, status: int, message: str) -> None:
        """Keep the status for the HTTP answer."""
        super().__init__(message)
        self.status = status
        self.message = message


class Producer(WalletMember):
    """An inverter selling its and its sources' output to the grid."""

    kind = "producer"
    item_type = "producer"
    payments_received: int | None = None
    """Confirmed IOTA at the payment address, as of the last sync."""
    expected_output: ExpectedOutput | None = None
    """An announcement of coming output waiting for the next output message."""

    def announce_expected_output(self, expected: ExpectedOutput | None) -> None:
        """Send ``expected`` once, with the next output published (None: nothing).

        The grid keeps the newest announcement per period, so only a changed
        forecast needs announcing again; one that has ended by then is dropped.
        """
        self.expected_output = expected

    @property
    def payment_address(self) -> str | None:
        """Where the grid pays: the wallet's newest address (key index 0 until IOTA was
        sent from the wallet; then the transfer's fresh change address)."""
        return self.wallet_address

    @property
    def api_token(self) -> str | None:
        """The secret path segment of this producer's registration API."""
        return self.config.api_token

    @property
    def price(self) -> float:
        """Asking price in IOTA per kWh."""
        return self.config.price or 0.0

    @property
    def payment_id_or_address(self) -> str:
        """What the outputs name for payment: a configured reference, else the address."""
        target = self.config.payment_id or self.payment_address
        assert target is not None, "a producer needs a wallet seed or a payment id"
        return target

    @property
    def local_source_ids(self) -> list[str]:
        """Participant ids of the sources in this household the producer owns."""
        return list(self.config.sources)

    @property
    def registered_sources(self) -> int:
        """Local sources still registered plus sources registered through the API
        (a deregistered source no longer counts)."""
        return len(self._source_items())

    # Periods ----------------------------------------------------------------

    async def publish_period(self, now: datetime) -> float | None:
        """Read the sources first, so their readings of this period join its output."""
        try:
            await self.follow_sources()
        except NodeError as err:
            _LOGGER.debug("%s: sources not read, node unavailable: %s", self.name, err)
        return await super().publish_period(now)

    _sources_read = True
    """Whether the last attempt to read the sources succeeded."""

    async def _take_period_locked(self, now: datetime) -> float | None:
        """Keep the inverter's energy of the period, then publish what is due."""
        previous = self.state.meter
        delta = self._measure(now)
        end = unix_ms(now)
        known = self.state.open_periods[-1].end_ms if self.state.open_periods else None
        known = known if known is not None else self.state.published_until_ms
        if delta is not None:
            start = unix_ms(delta.start)
        elif known is not None:
            start = known
        else:
            start = unix_ms(previous.time) if previous is not None else end
        self.state.open_periods.append(
            OpenPeriod(min(start, end), end, delta.energy_kwh if delta else None)
        )
        published = await self._publish_due_locked(now)
        if published is None:
            await self.household.store.save()
        return published

    def _sources_complete(self, end_ms: int) -> bool:
        """Whether every followed source has reported up to ``end_ms``."""
        return all(
            channel.ended or (channel.read_until_ms or 0) >= end_ms
            for channel in self.state.followed
        )

    async def _publish_due_locked(self, now: datetime) -> float | None:
        """Queue the outputs that are due: late source readings, then complete periods.

        Returns the energy queued, None when nothing was.
        """
        if not self._sources_read:
            return None  # after the outage, with the sources' readings
        queued: float | None = None
        until = self.state.published_until_ms
        late = [
            reading
            for reading in self.state.source_readings
            if until is not None and reading.end_ms is not None and reading.end_ms <= until
        ]
        by_period: dict[tuple[int, int], list[SourceReading]] = {}
        for reading in late:
            assert reading.end_ms is not None
            start = reading.start_ms if reading.start_ms is not None else reading.end_ms
            by_period.setdefault((start, reading.end_ms), []).append(reading)
        for (start, end), readings in sorted(by_period.items(), key=lambda item: item[0][1]):
            energy = await self._queue_output_locked(start, end, readings, None)
            queued = (queued or 0.0) + energy
        deadline = unix_ms(now) - int(self.household.source_wait.total_seconds() * 1000)
        while self.state.open_periods:
            period = self.state.open_periods[0]
            if not (self._sources_complete(period.end_ms) or period.end_ms <= deadline):
                break
            readings = [
                reading
                for reading in self.state.source_readings
                if reading.end_ms is None or reading.end_ms <= period.end_ms
            ]
            if period.energy_kwh is None and not readings:
                self.state.open_periods.pop(0)
                self.state.published_until_ms = period.end_ms
                continue
            energy = await self._queue_output_locked(
                period.start_ms, period.end_ms, readings, period
            )
            queued = (queued or 0.0) + energy
        return queued

    async def _queue_output_locked(
        self, start_ms: int, end_ms: int, readings: list[SourceReading], period: OpenPeriod | None
    ) -> float:
        """Queue one output of ``period`` (the inverter's energy) and ``readings``; the
        readings and the period leave the state in the same save."""
        own = period.energy_kwh if period is not None and period.energy_kwh is not None else 0.0
        output = round(own + sum(reading.output_kwh for reading in readings), ENERGY_DECIMALS)
        expected = self.expected_output
        payload = ProducerOutput(
            start_time=min(start_ms, end_ms),
            end_time=end_ms,
            output=output,
            producer_price=self.price,
            payment_id_or_address=self.payment_id_or_address,
            expected_output=expected if expected and expected.end_time > end_ms else None,
        )
        taken = {id(reading) for reading in readings}

        def consume() -> None:
            if self.expected_output is expected:
                self.expected_output = None
            self.state.source_readings = [
                reading for reading in self.state.source_readings if id(reading) not in taken
            ]
            if period is not None:
                self.state.open_periods.remove(period)
                self.state.published_until_ms = period.end_ms

        await self._enqueue_locked(payload, output, consume)
        return output

    async def sync(self) -> None:
        """Also read the sources, publish what became due, keep the source list in the
        grid's storage and read the payments received."""
        await super().sync()
        await self._store_source_list()
        await self.follow_sources()
        async with self.lock:
            if not self.state.deregistered and (
                await self._publish_due_locked(self.household.clock()) is not None
            ):
                await self._flush_locked()
        if self.address_balances:
            self.payments_received = self.address_balances[-1]

    async def _store_source_list(self) -> None:
        """Keep the sources' names in the grid's storage API (context ``sources``), as
        the blueprint suggests: a safe place for them, and the grid's portal shows them."""
        if not self.registered:
            return
        wanted = self._source_items()
        stored = self.state.stored_sources
        connection = self.household.connection
        token = self.state.registration_token
        try:
            for registration_id, item in wanted.items():
                if stored.get(registration_id) != item:
                    await connection.store_item(
                        self.registration_id, SOURCES_CONTEXT, registration_id, item, token
                    )
                    stored[registration_id] = item
            for registration_id in [key for key in stored if key not in wanted]:
                await connection.delete_item(
                    self.registration_id, SOURCES_CONTEXT, registration_id, token
                )
                del stored[registration_id]
        except GridUnavailableError:
            raise
        except GridApiError as err:
            _LOGGER.warning("%s: the source list could not be stored: %s", self.name, err.message)
        finally:
            await self.household.store.save()

    def _source_items(self) -> dict[str, dict[str, Any]]:
        """Every source's item for the grid's storage: registration id -> name and type."""
        items: dict[str, dict[str, Any]] = {}
        for source_id in self.local_source_ids:
            source = self.household.participants.get(source_id)
            if isinstance(source, Source) and not source.state.deregistered:
                items[source.registration_id] = {"itemName": source.name, "itemType": "source"}
        for registration in self.state.remote_sources.values():
            items[registration.registration_id] = {
                "itemName": registration.item_name,
                "itemType": registration.item_type,
            }
        return items

    # Following the sources ----------------------------------------------------

    def _wanted_channels(self) -> dict[str, tuple[str, str, str]]:
        """Current channel of every source: registration id -> (root, side key, name)."""
        wanted: dict[str, tuple[str, str, str]] = {}
        for source_id in self.local_source_ids:
            source = self.household.participants.get(source_id)
            if (
                isinstance(source, Source)
                and source.channel_root is not None
                and not source.state.deregistered
            ):
                wanted[source.registration_id] = (source.channel_root, source.side_key, source.name)
        for registration in self.state.remote_sources.values():
            if registration.root and registration.side_key:
                wanted[registration.registration_id] = (
                    registration.root,
                    registration.side_key,
                    registration.item_name or registration.registration_id,
                )
        return wanted

    async def follow_sources(self) -> None:
        """Read every source channel from where it was left; keep each reading once.

        Raises NodeError when the node cannot be read (what was read is kept).
        """
        async with self.lock:
            self._sources_read = False
            wanted = self._wanted_channels()
            followed = {channel.root: channel for channel in self.state.followed}
            for registration_id, (root, side_key, name) in wanted.items():
                if root not in followed:
                    followed[root] = FollowedChannel(root, side_key, root, name, registration_id)
            # A rotated source's old channel is read until its goodbye.
            before = [channel.root for channel in self.state.followed]
            self.state.followed = [
                channel
                for channel in followed.values()
                if channel.registration_id in wanted
                and (not channel.ended or wanted[channel.registration_id][0] == channel.root)
            ]
            changed = False
            try:
                for channel in self.state.followed:
                    if not channel.ended:
                        changed |= await self._read_source(channel)
                self._sources_read = True
            finally:
                # Nothing to keep when there is nothing to follow (no save per period).
                if self.state.followed or before:
                    await self.household.store.save()
        if changed:
            self.household.changed()

    async def _read_source(self, channel: FollowedChannel) -> bool:
        messages = await self.household.connection.read_channel(channel.next_root, channel.side_key)
        known = {reading.message_root for reading in self.state.source_readings}
        for message in messages:
            self._take_source_message(channel, message, known)
            channel.next_root = message.next_root
        return bool(messages)

    def _take_source_message(
        self, channel: FollowedChannel, message: ChannelEntry, known: set[str]
    ) -> None:
        try:
            payload = parse_source_message(message.data)
        except PayloadError as err:
            _LOGGER.warning(
                "%s: skipping unreadable message of source %s at %s: %s",
                self.name,
                channel.name,
                message.root,
                err,
            )
            return
        if isinstance(payload, SourceOutput) and message.root not in known:
            self.state.source_readings.append(
                SourceReading(
                    channel.root, message.root, payload.output, payload.start_time, payload.end_time
                )
            )
            channel.read_until_ms = max(channel.read_until_ms or 0, payload.end_time)
        elif isinstance(payload, Goodbye):
            channel.ended = True

    # The producer registration API -----------------------------------------------

    async def register_source(self, registration_id: str, body: Mapping[str, Any]) -> None:
        """Register (or update) a remote source; its channel must start with hello.

        ``body`` holds the blueprint's validated fields (itemName, itemType, root,
        sideKey); what is not sent again is kept.
        """
        current = self.state.remote_sources.get(registration_id)
        merged = SourceRegistration(
            registration_id=registration_id,
            item_name=body.get("itemName", current.item_name if current else None),
            item_type=body.get("itemType", current.item_type if current else None),
            root=body.get("root", current.root if current else None),
            side_key=body.get("sideKey", current.side_key if current else None),
        )
        if merged.root and not merged.side_key:
            raise RegistrationRefusedError(400, "The parameter 'sideKey' has an invalid value.")
        if (
            merged.root
            and merged.side_key
            and (
                current is None
                or current.root != merged.root
                or current.side_key != merged.side_key
            )
        ):
            await self._check_hello(merged.root, merged.side_key)
        async with self.lock:
            self.state.remote_sources[registration_id] = merged
            await self.household.store.save()
        self.household.changed()

    async def _check_hello(self, root: str, side_key: str) -> None:
        try:
            messages = await self.household.connection.read_channel(
                root, side_key, limit=HELLO_SEARCH_DEPTH
            )
        except NodeError as err:
            raise RegistrationRefusedError(503, f"The channel could not be read: {err}") from err
        if not has_hello(message.data for message in messages):
            raise RegistrationRefusedError(
                400, "The channel does not start with a 'hello' message."
            )

    async def deregister_source(self, registration_id: str, side_key: str) -> None:
        """Remove a remote source; its side key authenticates the request.

        An unknown registration is 404; a side key that does not match is 403
        (well formed, but not the key of this registration).
        """
        current = self.state.remote_sources.get(registration_id)
        if current is None:
            raise RegistrationRefusedError(404, "The registration does not exist.")
        if current.side_key is None or current.side_key != side_key:
            raise RegistrationRefusedError(403, "The parameter 'sideKey' does not match.")
        async with self.lock:
            del self.state.remote_sources[registration_id]
            self.state.followed = [
                channel
                for channel in self.state.followed
                if channel.registration_id != registration_id
            ]
            await self.household.store.save()
        self.household.changed()

    def diagnostics(self) -> dict[str, Any]:
        """Also the sources and what is pending from them."""
        return (
            super().diagnostics()
            | self.wallet_diagnostics()
            | {
                "local_sources": self.local_source_ids,
                "remote_sources": sorted(self.state.remote_sources),
                "followed_channels": [
                    {"root": channel.root, "name": channel.name, "ended": channel.ended}
                    for channel in self.state.followed
                ],
                "pending_source_readings": len(self.state.source_readings),
                "open_periods": len(self.state.open_periods),
            }
        )
