"""Sources, producers and consumers at run time.

Each participant owns a restricted MAM channel (seed and side key from its
config subentry) and a durable outbound queue. A message is created at its
channel position when it is queued, in the same store save that consumes the
meter reading, and attached in queue order whenever the node is reachable, so
readings survive restarts and outages and channels never fork.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from homeassistant.util import dt as dt_util

from .const import (
    CONF_API_TOKEN,
    CONF_METER,
    CONF_PRICE,
    CONF_PRODUCER_URL,
    CONF_REGISTRATION_ID,
    CONF_SEED,
    CONF_SIDE_KEY,
    CONF_SOURCES,
    CONF_WALLET_SEED,
    LOGGER,
    MAM_MODE,
    MAM_SECURITY,
    SUBENTRY_CONSUMER,
    SUBENTRY_PRODUCER,
    SUBENTRY_SOURCE,
    WALLET_SECURITY,
)
from .credentials import generate_seed, generate_side_key
from .meter import MeterDelta, MeterOutcome, MeterReference, advance_meter, reading_from_state
from .protocol.address import validate_address
from .protocol.errors import (
    GridApiError,
    GridUnavailableError,
    InvalidAddressError,
    NodeError,
    PayloadError,
    ProtocolError,
)
from .protocol.mam import MamChannel, channel_root, create_channel
from .protocol.outbox import QueuedMessage, create_queued, drain
from .protocol.payloads import (
    HELLO_SEARCH_DEPTH,
    ConsumerUsage,
    Goodbye,
    Hello,
    Payload,
    ProducerOutput,
    SourceOutput,
    decode_message_trytes,
    has_hello,
    parse_grid_message,
    parse_source_message,
    payload_to_json,
)
from .protocol.payloads import PaymentRequest as PaymentRequestPayload
from .protocol.signing import generate_address
from .protocol.transfers import TransferNotSentError, TransferState
from .store import (
    FollowedChannel,
    ParticipantState,
    Payment,
    PaymentRequest,
    PendingPayment,
    RuntimeStore,
    SourceReading,
    SourceRegistration,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from datetime import datetime

    from homeassistant.config_entries import ConfigEntry, ConfigSubentry
    from homeassistant.core import HomeAssistant

    from .connection import GridConnection, Registration
    from .protocol.grid_client import ItemType
    from .protocol.mam import ChannelEntry

ENERGY_DECIMALS = 6


def unix_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch, as the payloads carry time."""
    return int(moment.timestamp() * 1000)


@dataclass(slots=True)
class RuntimeContext:
    """What every participant of a grid connection shares."""

    hass: HomeAssistant
    entry: ConfigEntry
    connection: GridConnection
    store: RuntimeStore
    max_power_kw: float
    participants: dict[str, Participant]
    on_change: Callable[[], None]


class RegistrationRefusedError(Exception):
    """A producer's registration API refuses a request (HTTP status and message)."""

    def __init__(self, status: int, message: str) -> None:
        """Keep the status for the HTTP answer."""
        super().__init__(message)
        self.status = status
        self.message = message


class PaymentRefusedError(Exception):
    """A bill cannot be paid; ``reason`` is a translation key of the service error."""

    def __init__(self, reason: str, placeholders: dict[str, str] | None = None) -> None:
        """Keep the reason and its placeholders for the translated message."""
        super().__init__(reason)
        self.reason = reason
        self.placeholders = placeholders or {}


class PaymentUncertainError(Exception):
    """The node failed after a payment may have reached it; the payment stays pending."""

    def __init__(self, amount: int, error: ProtocolError) -> None:
        """Keep the amount and the node's (or local proof of work's) error for the message."""
        super().__init__(str(error))
        self.amount = amount
        self.error = error


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """What ``pay_bill`` achieved: a payment and whether the Tangle confirmed it yet."""

    payment: Payment
    confirmed: bool


class Participant(ABC):
    """What sources, producers and consumers share: a meter, a channel, a queue."""

    kind: ClassVar[str]
    registers_with_grid: ClassVar[bool] = False

    def __init__(
        self, context: RuntimeContext, subentry: ConfigSubentry, state: ParticipantState
    ) -> None:
        """Bind the participant to its subentry and durable state."""
        self.context = context
        self.subentry = subentry
        self.state = state
        self.lock = asyncio.Lock()
        self._channel: MamChannel | None = None
        self.channel_root: str | None = None
        self.registration_problem: str | None = None

    @property
    def subentry_id(self) -> str:
        """The subentry id: stable for the participant's lifetime."""
        return self.subentry.subentry_id

    @property
    def name(self) -> str:
        """The name the user gave."""
        return self.subentry.title

    @property
    def meter_entity_id(self) -> str:
        """The wrapped energy sensor."""
        return str(self.subentry.data[CONF_METER])

    @property
    def registration_id(self) -> str:
        """This participant's registration id with the grid or its producer."""
        return str(self.subentry.data[CONF_REGISTRATION_ID])

    @property
    def side_key(self) -> str:
        """The side key of the current channel."""
        return str(self.subentry.data[CONF_SIDE_KEY])

    @property
    def registered(self) -> bool:
        """Whether the counterpart knows the current channel."""
        return self.channel_root is not None and self.state.registered_root == self.channel_root

    # Channel and queue ---------------------------------------------------------

    async def async_prepare(self) -> None:
        """Load the channel, or open a new one (with its hello) for a new seed."""
        if self.state.meter_entity_id != self.meter_entity_id:
            # Another sensor now: its running total has nothing to do with the old one's.
            self.state.meter = None
            self.state.meter_entity_id = self.meter_entity_id
        seed = str(self.subentry.data[CONF_SEED])
        channel: MamChannel | None = None
        if self.state.channel is not None:
            try:
                channel = MamChannel.from_json(self.state.channel)
            except ProtocolError as err:
                LOGGER.warning(
                    "Saved channel of %s is unreadable (%s); opening a new one", self.name, err
                )
        if (
            channel is not None
            and channel.seed == seed
            and channel.side_key == self.side_key
            and self.state.channel_root is not None
        ):
            self._channel = channel
            self.channel_root = self.state.channel_root
            return
        await self._async_open_channel(seed, self.side_key)
        if not self.state.deregistered:
            await self._async_enqueue_locked(Hello(), 0.0)
        else:
            await self.context.store.async_save()

    async def _async_open_channel(self, seed: str, side_key: str) -> None:
        """Start a new channel; its first root is the one to register."""
        hass = self.context.hass
        channel = await hass.async_add_executor_job(self._new_channel, seed, side_key)
        self.channel_root = await hass.async_add_executor_job(channel_root, channel)
        self._channel = channel
        self.state.channel = channel.to_json()
        self.state.channel_root = self.channel_root

    @staticmethod
    def _new_channel(seed: str, side_key: str) -> MamChannel:
        return create_channel(seed, security=MAM_SECURITY, mode=MAM_MODE, side_key=side_key)

    def _create(self, body: dict[str, Any], sequence: int, energy_kwh: float) -> QueuedMessage:
        """Create the next message of the channel (CPU-bound: runs in an executor)."""
        assert self._channel is not None
        return create_queued(self._channel, body, sequence, energy_kwh, dt_util.utcnow())

    async def _async_enqueue_locked(self, payload: Payload, energy_kwh: float) -> QueuedMessage:
        """Create ``payload`` at the channel's next position and queue it durably."""
        body = payload_to_json(payload)
        queued = await self.context.hass.async_add_executor_job(
            self._create, body, self.state.next_sequence, energy_kwh
        )
        assert self._channel is not None
        self.state.next_sequence += 1
        self.state.channel = self._channel.to_json()
        self.state.queue.append(queued)
        await self.context.store.async_save()
        return queued

    async def _async_flush_locked(self) -> int:
        """Attach queued messages in order; stop at the first failure (NodeError)."""
        sent = await drain(self.state.queue, self.context.connection.publish, self._async_sent)
        if sent:
            self.context.on_change()
        return sent

    async def _async_sent(self, queued: QueuedMessage) -> None:
        """Count an attached message's energy as published, durably."""
        if queued.kind in ("output", "usage"):
            self.state.energy_published_kwh = round(
                self.state.energy_published_kwh + queued.energy_kwh, ENERGY_DECIMALS
            )
        self.state.last_publish = dt_util.utcnow()
        await self.context.store.async_save()

    # Meter ------------------------------------------------------------------

    def _measure(self, now: datetime) -> MeterDelta | None:
        """Advance the meter reference; return the delta to publish, if any."""
        state = self.context.hass.states.get(self.meter_entity_id)
        step = advance_meter(
            self.state.meter,
            reading_from_state(state, now),
            max_power_kw=self.context.max_power_kw,
        )
        if step.outcome is MeterOutcome.ABSURD:
            LOGGER.warning(
                "%s: %s jumped to %s, more than %s kW can deliver; the jump is not published",
                self.name,
                self.meter_entity_id,
                state.state if state else None,
                self.context.max_power_kw,
            )
        elif step.outcome is MeterOutcome.RESET:
            LOGGER.info(
                "%s: %s was reset; publishing the energy since the reset",
                self.name,
                self.meter_entity_id,
            )
        elif step.outcome is MeterOutcome.DIP:
            LOGGER.debug(
                "%s: %s went down; keeping its highest reading", self.name, self.meter_entity_id
            )
        self.state.meter = step.reference
        return step.delta

    @abstractmethod
    def period_payload(
        self, now: datetime, previous: MeterReference | None, delta: MeterDelta | None
    ) -> tuple[Payload, float] | None:
        """The period's message and its energy, or None when there is nothing to say.

        ``previous`` is the meter reference before this period's sample.
        """

    async def async_publish_period(self, now: datetime) -> None:
        """Take this period's reading, queue it and try to send the queue."""
        async with self.lock:
            if self.state.deregistered:
                return
            previous = self.state.meter
            delta = self._measure(now)
            if (item := self.period_payload(now, previous, delta)) is None:
                await self.context.store.async_save()
            else:
                await self._async_enqueue_locked(*item)
            try:
                await self._async_flush_locked()
            except NodeError as err:
                LOGGER.debug(
                    "%s: %d message(s) queued, node unavailable: %s",
                    self.name,
                    len(self.state.queue),
                    err,
                )
        self.context.on_change()

    # Registration -----------------------------------------------------------

    async def async_sync(self) -> None:
        """Send what is queued, then register the channel once its hello is out."""
        async with self.lock:
            await self._async_flush_locked()
            if self.state.deregistered or self.registered or self.state.queue:
                return
            assert self.channel_root is not None
            try:
                await self._async_register_locked(self.channel_root)
            except GridUnavailableError as err:
                if self.registers_with_grid:
                    raise  # the coordinator reports the grid unreachable
                self._note_registration_problem(err.message)
                return
            except GridApiError as err:
                self._note_registration_problem(err.message)
                return
            if self.registration_problem is not None:
                LOGGER.info("%s: registered", self.name)
            self.registration_problem = None
            self.state.registered_root = self.channel_root
            await self.context.store.async_save()

    def _note_registration_problem(self, message: str) -> None:
        """Log a refused registration once per distinct reason; it is retried every poll."""
        if self.registration_problem != message:
            LOGGER.warning("%s: registration refused: %s", self.name, message)
        self.registration_problem = message

    @abstractmethod
    async def _async_register_locked(self, root: str) -> None:
        """Tell the counterpart (grid or producer) about the channel at ``root``."""

    @abstractmethod
    async def _async_deregister_remote(self) -> None:
        """Remove the registration at the counterpart."""

    async def async_deregister(self) -> None:
        """Leave: remove the registration, say goodbye, stop publishing."""
        async with self.lock:
            if self.state.deregistered:
                return
            await self._async_deregister_remote()
            await self._async_enqueue_locked(Goodbye(), 0.0)
            self.state.deregistered = True
            self.state.registered_root = None
            await self.context.store.async_save()
            try:
                await self._async_flush_locked()
            except NodeError as err:
                LOGGER.debug("%s: goodbye queued, node unavailable: %s", self.name, err)
        self.context.on_change()

    async def async_rotate(self) -> None:
        """Say goodbye on the channel and continue on a new one.

        The new seed and side key are stored in the subentry; the new channel's
        hello is queued behind the old channel's goodbye, and the channel is
        registered again once the hello is out.
        """
        async with self.lock:
            seed, side_key = generate_seed(), generate_side_key()
            hass = self.context.hass
            channel = await hass.async_add_executor_job(self._new_channel, seed, side_key)
            root = await hass.async_add_executor_job(channel_root, channel)
            # Keys first: if Home Assistant stops half-way, the next start opens
            # the new channel instead of writing after the old one's goodbye.
            entry = self.context.entry
            hass.config_entries.async_update_subentry(
                entry,
                self.subentry,
                data={**self.subentry.data, CONF_SEED: seed, CONF_SIDE_KEY: side_key},
            )
            self.subentry = entry.subentries[self.subentry_id]
            if not self.state.deregistered:
                await self._async_enqueue_locked(Goodbye(), 0.0)
            self._channel, self.channel_root = channel, root
            self.state.channel = channel.to_json()
            self.state.channel_root = root
            self.state.deregistered = False
            await self._async_enqueue_locked(Hello(), 0.0)
        self.context.on_change()

    def diagnostics(self) -> dict[str, Any]:
        """Runtime facts for the diagnostics download (no secrets)."""
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


def _delta_report(
    delta: MeterDelta | None, message: Callable[[int, int, float], Payload]
) -> tuple[Payload, float] | None:
    """The period's meter delta as ``message(start_ms, end_ms, kwh)``; None without a delta."""
    if delta is None:
        return None
    payload = message(unix_ms(delta.start), unix_ms(delta.end), delta.energy_kwh)
    return payload, delta.energy_kwh


class Source(Participant):
    """A generation meter reporting to a producer."""

    kind = SUBENTRY_SOURCE

    @property
    def producer_url(self) -> str:
        """Base URL of a remote producer's registration API ('' when local)."""
        return str(self.subentry.data.get(CONF_PRODUCER_URL) or "")

    def period_payload(
        self, now: datetime, previous: MeterReference | None, delta: MeterDelta | None
    ) -> tuple[Payload, float] | None:
        """A source reports its output."""
        return _delta_report(
            delta, lambda start, end, kwh: SourceOutput(start_time=start, end_time=end, output=kwh)
        )

    async def _async_register_locked(self, root: str) -> None:
        # A local producer finds the channel itself; a remote one is told.
        if self.producer_url:
            await self.context.connection.register_source(
                self.producer_url, self.registration_id, self.name, root, self.side_key
            )

    async def _async_deregister_remote(self) -> None:
        if self.producer_url:
            await self.context.connection.deregister_source(
                self.producer_url, self.registration_id, self.side_key
            )


class GridMember(Participant):
    """A producer or consumer: registered with the grid itself."""

    item_type: ClassVar[ItemType]
    registers_with_grid = True

    async def _async_grid_register(self, root: str) -> Registration:
        registration = await self.context.connection.register(
            self.registration_id,
            self.name,
            self.item_type,
            root,
            self.side_key,
            self.state.registration_token,
        )
        if registration.token is not None:
            self.state.registration_token = registration.token
        return registration

    async def _async_register_locked(self, root: str) -> None:
        await self._async_grid_register(root)

    async def _async_deregister_remote(self) -> None:
        await self.context.connection.deregister(
            self.registration_id, self.side_key, self.state.registration_token
        )


class Consumer(GridMember):
    """A household meter billed by the grid."""

    kind = SUBENTRY_CONSUMER
    item_type = "consumer"

    def __init__(
        self, context: RuntimeContext, subentry: ConfigSubentry, state: ParticipantState
    ) -> None:
        """Also remember the wallet."""
        super().__init__(context, subentry, state)
        self.wallet_balance: int | None = None

    @property
    def wallet_seed(self) -> str:
        """The seed of the wallet bills are paid from."""
        return str(self.subentry.data[CONF_WALLET_SEED])

    @property
    def wallet_address(self) -> str | None:
        """Where to put IOTA into the wallet: its newest address, never spent from."""
        return self.state.wallet_addresses[-1] if self.state.wallet_addresses else None

    async def _async_new_wallet_address(self) -> str:
        index = len(self.state.wallet_addresses)
        return await self.context.hass.async_add_executor_job(
            generate_address, self.wallet_seed, index, WALLET_SECURITY
        )

    async def async_prepare(self) -> None:
        """Also derive the wallet's first address."""
        await super().async_prepare()
        if not self.state.wallet_addresses:
            self.state.wallet_addresses.append(await self._async_new_wallet_address())
            await self.context.store.async_save()

    def period_payload(
        self, now: datetime, previous: MeterReference | None, delta: MeterDelta | None
    ) -> tuple[Payload, float] | None:
        """A consumer reports its usage."""
        return _delta_report(
            delta, lambda start, end, kwh: ConsumerUsage(start_time=start, end_time=end, usage=kwh)
        )

    async def _async_register_locked(self, root: str) -> None:
        registration = await self._async_grid_register(root)
        if registration.root and registration.side_key:
            current = self.state.return_channel
            if current is None or current.root != registration.root:
                self.state.return_channel = FollowedChannel(
                    root=registration.root,
                    side_key=registration.side_key,
                    next_root=registration.root,
                    name="grid",
                )

    async def async_sync(self) -> None:
        """Also read the grid's payment requests and the wallet balance."""
        await super().async_sync()
        await self._async_read_return_channel()
        await self.async_settle_pending_payment()
        balances = await self.context.connection.balances(self.state.wallet_addresses)
        self.wallet_balance = sum(balances)

    async def _async_read_return_channel(self) -> None:
        channel = self.state.return_channel
        if channel is None or channel.ended:
            return
        messages = await self.context.connection.read_channel(channel.next_root, channel.side_key)
        if not messages:
            return
        for message in messages:
            try:
                payload = parse_grid_message(decode_message_trytes(message.message))
            except PayloadError as err:
                LOGGER.warning(
                    "%s: skipping unreadable grid message at %s: %s", self.name, message.root, err
                )
            else:
                if isinstance(payload, PaymentRequestPayload):
                    self.state.payment_request = PaymentRequest(
                        root=message.root,
                        owed=payload.owed,
                        usage_kwh=payload.usage,
                        payment_id_or_address=payload.payment_id_or_address,
                        pending=payload.pending,
                    )
                elif isinstance(payload, Goodbye):
                    channel.ended = True
            channel.next_root = message.next_root
        await self.context.store.async_save()
        self.context.on_change()

    async def async_pay_bill(self) -> PaymentOutcome:
        """Pay the latest payment request from the wallet, once.

        While an earlier payment is pending, it is checked and attached again
        (the same signed bundle) instead of signing a new transfer.
        """
        async with self.lock:
            if self.state.pending_payment is not None:
                outcome = await self._async_retry_pending_locked(self.state.pending_payment)
            else:
                outcome = await self._async_pay_locked()
        self.context.on_change()
        return outcome

    async def _async_pay_locked(self) -> PaymentOutcome:
        request = self.state.payment_request
        if request is None or request.owed <= 0:
            raise PaymentRefusedError("nothing_owed")
        if any(payment.request_root == request.root for payment in self.state.payments):
            raise PaymentRefusedError("already_paid", {"amount": str(request.owed)})
        # Payments the grid saw but the ledger has not confirmed are not paid again.
        amount = max(0, request.owed - request.pending)
        if amount <= 0:
            raise PaymentRefusedError("payment_confirming", {"amount": str(request.pending)})
        try:
            address = validate_address(request.payment_id_or_address)
        except InvalidAddressError as err:
            raise PaymentRefusedError(
                "payment_reference", {"reference": request.payment_id_or_address}
            ) from err
        connection = self.context.connection
        # The surplus of the inputs goes to a fresh address, the next deposit address.
        remainder = await self._async_new_wallet_address()
        signed = await connection.prepare_transfer(self.wallet_seed, address, amount, remainder)
        pending = PendingPayment(
            request_root=request.root,
            amount=amount,
            address=address,
            bundle=signed.bundle_hash,
            time=dt_util.utcnow(),
            trytes=signed.trytes,
        )
        # Recorded before anything leaves: from here on this bill has exactly one bundle.
        self.state.pending_payment = pending
        self.state.wallet_addresses.append(remainder)
        await self.context.store.async_save()
        try:
            await connection.broadcast_transfer(signed.trytes)
        except TransferNotSentError as err:
            # Nothing reached the node: the next attempt may sign afresh.
            self.state.pending_payment = None
            self.state.wallet_addresses.remove(remainder)
            await self.context.store.async_save()
            raise err.error from err
        except NodeError as err:
            LOGGER.warning(
                "%s: the node failed while paying %d IOTA (bundle %s): %s; "
                "the payment is kept pending and will be attached again, never signed anew",
                self.name,
                pending.amount,
                pending.bundle,
                err,
            )
            raise PaymentUncertainError(pending.amount, err) from err
        LOGGER.info(
            "%s: paid %d IOTA to %s (bundle %s), awaiting confirmation",
            self.name,
            pending.amount,
            address,
            pending.bundle,
        )
        return PaymentOutcome(pending.confirmed(), confirmed=False)

    async def _async_retry_pending_locked(self, pending: PendingPayment) -> PaymentOutcome:
        """Settle the pending payment, or attach its bundle again."""
        if await self._async_settle_pending_locked(pending) is TransferState.CONFIRMED:
            return PaymentOutcome(pending.confirmed(), confirmed=True)
        if self.state.pending_payment is None:
            raise PaymentRefusedError("payment_conflicting", {"amount": str(pending.amount)})
        try:
            await self.context.connection.broadcast_transfer(pending.trytes)
        except TransferNotSentError as err:
            raise PaymentUncertainError(pending.amount, err.error) from err
        except NodeError as err:
            raise PaymentUncertainError(pending.amount, err) from err
        LOGGER.info(
            "%s: attached the pending payment of %d IOTA (bundle %s) again",
            self.name,
            pending.amount,
            pending.bundle,
        )
        return PaymentOutcome(pending.confirmed(), confirmed=False)

    async def _async_settle_pending_locked(self, pending: PendingPayment) -> TransferState:
        """Record the pending payment as paid once confirmed; drop it if it never can be."""
        state = await self.context.connection.transfer_state(pending.bundle, pending.trytes)
        if state is TransferState.CONFIRMED:
            self.state.payments.append(pending.confirmed())
            self.state.pending_payment = None
            await self.context.store.async_save()
            LOGGER.info(
                "%s: payment of %d IOTA confirmed (bundle %s)",
                self.name,
                pending.amount,
                pending.bundle,
            )
        elif state is TransferState.CONFLICTING:
            self.state.pending_payment = None
            await self.context.store.async_save()
            LOGGER.warning(
                "%s: the pending payment of %d IOTA (bundle %s) can never confirm: another "
                "transfer spent its wallet addresses; it is dropped and the bill can be paid again",
                self.name,
                pending.amount,
                pending.bundle,
            )
        return state

    async def async_settle_pending_payment(self) -> None:
        """Check a pending payment on the Tangle (each poll; after a restart too)."""
        async with self.lock:
            pending = self.state.pending_payment
            if pending is None:
                return
            if await self._async_settle_pending_locked(pending) is TransferState.PENDING:
                return
        self.context.on_change()

    def diagnostics(self) -> dict[str, Any]:
        """Also the payments (no wallet secrets)."""
        pending = self.state.pending_payment
        return super().diagnostics() | {
            "payments": len(self.state.payments),
            "paid_total": self.state.paid_total,
            "pending_payment": {
                "amount": pending.amount,
                "bundle": pending.bundle,
                "transactions": len(pending.trytes),
                "time": pending.time.isoformat(),
            }
            if pending
            else None,
        }


class Producer(GridMember):
    """An inverter selling its and its sources' output to the grid."""

    kind = SUBENTRY_PRODUCER
    item_type = "producer"

    def __init__(
        self, context: RuntimeContext, subentry: ConfigSubentry, state: ParticipantState
    ) -> None:
        """Also remember the payment address."""
        super().__init__(context, subentry, state)
        self.payment_address: str | None = None
        self.payments_received: int | None = None

    @property
    def api_token(self) -> str:
        """The secret path segment of this producer's registration API."""
        return str(self.subentry.data[CONF_API_TOKEN])

    @property
    def price(self) -> int:
        """Asking price in IOTA per kWh."""
        return int(self.subentry.data[CONF_PRICE])

    @property
    def local_source_ids(self) -> list[str]:
        """Subentry ids of the sources in this Home Assistant the producer owns."""
        return list(self.subentry.data.get(CONF_SOURCES, []))

    @property
    def registered_sources(self) -> int:
        """Local sources plus sources registered through the API."""
        return len(self.local_source_ids) + len(self.state.remote_sources)

    async def async_prepare(self) -> None:
        """Also derive the payment address (index 0 of the producer's wallet)."""
        await super().async_prepare()
        self.payment_address = await self.context.hass.async_add_executor_job(
            generate_address, str(self.subentry.data[CONF_WALLET_SEED]), 0, WALLET_SECURITY
        )

    def period_payload(
        self, now: datetime, previous: MeterReference | None, delta: MeterDelta | None
    ) -> tuple[Payload, float] | None:
        """The inverter's delta plus every source reading read since the last output."""
        readings = self.state.source_readings
        if delta is None and not readings:
            return None
        output = round(
            (delta.energy_kwh if delta else 0.0) + sum(r.output_kwh for r in readings),
            ENERGY_DECIMALS,
        )
        start = delta.start if delta is not None else previous.time if previous is not None else now
        assert self.payment_address is not None
        self.state.source_readings = []
        payload = ProducerOutput(
            start_time=unix_ms(start),
            end_time=unix_ms(now),
            output=output,
            producer_price=self.price,
            payment_id_or_address=self.payment_address,
        )
        return payload, output

    async def async_publish_period(self, now: datetime) -> None:
        """Read the sources first, so local sources' readings join this period."""
        try:
            await self.async_follow_sources()
        except NodeError as err:
            LOGGER.debug("%s: sources not read, node unavailable: %s", self.name, err)
        await super().async_publish_period(now)

    async def async_sync(self) -> None:
        """Also read the sources and the payments received."""
        await super().async_sync()
        await self.async_follow_sources()
        assert self.payment_address is not None
        (self.payments_received,) = await self.context.connection.balances([self.payment_address])

    def _wanted_channels(self) -> dict[str, tuple[str, str, str]]:
        """Current channel of every source: registration id -> (root, side key, name)."""
        wanted: dict[str, tuple[str, str, str]] = {}
        for source_id in self.local_source_ids:
            source = self.context.participants.get(source_id)
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

    async def async_follow_sources(self) -> None:
        """Read every source channel from where it was left; keep each reading once."""
        async with self.lock:
            wanted = self._wanted_channels()
            followed = {channel.root: channel for channel in self.state.followed}
            for registration_id, (root, side_key, name) in wanted.items():
                if root not in followed:
                    followed[root] = FollowedChannel(root, side_key, root, name, registration_id)
            # A rotated source's old channel is read until its goodbye.
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
                        changed |= await self._async_read_source(channel)
            finally:
                await self.context.store.async_save()
        if changed:
            self.context.on_change()

    async def _async_read_source(self, channel: FollowedChannel) -> bool:
        messages = await self.context.connection.read_channel(channel.next_root, channel.side_key)
        known = {reading.message_root for reading in self.state.source_readings}
        for message in messages:
            self._take_source_message(channel, message, known)
            channel.next_root = message.next_root
        return bool(messages)

    def _take_source_message(
        self, channel: FollowedChannel, message: ChannelEntry, known: set[str]
    ) -> None:
        try:
            payload = parse_source_message(decode_message_trytes(message.message))
        except PayloadError as err:
            LOGGER.warning(
                "%s: skipping unreadable message of source %s at %s: %s",
                self.name,
                channel.name,
                message.root,
                err,
            )
            return
        if isinstance(payload, SourceOutput) and message.root not in known:
            self.state.source_readings.append(
                SourceReading(channel.root, message.root, payload.output)
            )
        elif isinstance(payload, Goodbye):
            channel.ended = True

    # The producer registration API -----------------------------------------------

    async def async_register_source(self, registration_id: str, body: Mapping[str, Any]) -> None:
        """Register (or update) a remote source; its channel must start with hello."""
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
            await self._async_check_hello(merged.root, merged.side_key)
        async with self.lock:
            self.state.remote_sources[registration_id] = merged
            await self.context.store.async_save()
        self.context.on_change()

    async def _async_check_hello(self, root: str, side_key: str) -> None:
        try:
            messages = await self.context.connection.read_channel(
                root, side_key, limit=HELLO_SEARCH_DEPTH
            )
        except NodeError as err:
            raise RegistrationRefusedError(503, f"The channel could not be read: {err}") from err
        if not has_hello(message.data for message in messages):
            raise RegistrationRefusedError(
                400, "The channel does not start with a 'hello' message."
            )

    async def async_deregister_source(self, registration_id: str, side_key: str) -> None:
        """Remove a remote source; its side key authenticates the request."""
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
            await self.context.store.async_save()
        self.context.on_change()

    def diagnostics(self) -> dict[str, Any]:
        """Also the sources and what is pending from them."""
        return super().diagnostics() | {
            "local_sources": self.local_source_ids,
            "remote_sources": sorted(self.state.remote_sources),
            "followed_channels": [
                {"root": channel.root, "name": channel.name, "ended": channel.ended}
                for channel in self.state.followed
            ],
            "pending_source_readings": len(self.state.source_readings),
        }


PARTICIPANT_TYPES: dict[str, type[Participant]] = {
    SUBENTRY_SOURCE: Source,
    SUBENTRY_PRODUCER: Producer,
    SUBENTRY_CONSUMER: Consumer,
}


def build_participants(
    context: RuntimeContext, subentries: Iterable[ConfigSubentry]
) -> dict[str, Participant]:
    """One participant per subentry, with its durable state."""
    participants: dict[str, Participant] = {}
    for subentry in subentries:
        participant_type = PARTICIPANT_TYPES.get(subentry.subentry_type)
        if participant_type is None:
            LOGGER.warning("Ignoring subentry of unknown type %s", subentry.subentry_type)
            continue
        state = context.store.participant(subentry.subentry_id)
        participants[subentry.subentry_id] = participant_type(context, subentry, state)
    return participants
