"""The durable state of a household's sources, producers and consumers.

Everything a participant must keep across restarts and is not configuration:
its MAM channel position, meter reference, outbound queue, registration, what
it read from followed channels, what it paid (and a payment signed but not yet
confirmed, recorded before it is broadcast). A reading is taken from the meter
and queued in the same save, so no energy is lost or counted twice.

:class:`HouseholdStore` keeps every participant's state and writes all of it
through a :class:`StateBackend` (Home Assistant's ``Store``, an atomically
written file, memory) after every durable change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import PayloadError
from ..outbox import QueuedMessage, parse_time
from ..payloads import PaymentRequest, parse_grid_message, payload_to_json
from .meter import MeterReference

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from datetime import datetime

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class FollowedChannel:
    """A restricted MAM channel read message by message from ``next_root``."""

    root: str
    side_key: str
    next_root: str
    name: str = ""
    registration_id: str | None = None
    ended: bool = False
    read_until_ms: int | None = None
    """The latest end of a reading read from the channel: its periods up to there are in."""

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "root": self.root,
            "side_key": self.side_key,
            "next_root": self.next_root,
            "name": self.name,
            "registration_id": self.registration_id,
            "ended": self.ended,
            "read_until_ms": self.read_until_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FollowedChannel:
        """Load the stored form."""
        until = data.get("read_until_ms")
        return cls(
            root=str(data["root"]),
            side_key=str(data["side_key"]),
            next_root=str(data["next_root"]),
            name=str(data.get("name", "")),
            registration_id=data.get("registration_id"),
            ended=bool(data.get("ended", False)),
            read_until_ms=None if until is None else int(until),
        )


@dataclass(slots=True)
class SourceRegistration:
    """A source registered with a producer through its registration API."""

    registration_id: str
    item_name: str | None = None
    item_type: str | None = None
    root: str | None = None
    side_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "registration_id": self.registration_id,
            "item_name": self.item_name,
            "item_type": self.item_type,
            "root": self.root,
            "side_key": self.side_key,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceRegistration:
        """Load the stored form."""
        return cls(
            registration_id=str(data["registration_id"]),
            item_name=data.get("item_name"),
            item_type=data.get("item_type"),
            root=data.get("root"),
            side_key=data.get("side_key"),
        )


@dataclass(slots=True)
class SourceReading:
    """A source's output read from its channel, not yet in a producer output.

    ``end_ms`` says which period it belongs to (the one its end falls in);
    ``None`` for readings saved before periods were kept, which join the next output.
    """

    channel_root: str
    message_root: str
    output_kwh: float
    start_ms: int | None = None
    end_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "channel_root": self.channel_root,
            "message_root": self.message_root,
            "output_kwh": self.output_kwh,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceReading:
        """Load the stored form."""
        start, end = data.get("start_ms"), data.get("end_ms")
        return cls(
            channel_root=str(data["channel_root"]),
            message_root=str(data["message_root"]),
            output_kwh=float(data["output_kwh"]),
            start_ms=None if start is None else int(start),
            end_ms=None if end is None else int(end),
        )


@dataclass(slots=True)
class OpenPeriod:
    """A producer's own (inverter) energy for a period whose output is not out yet:
    it waits for its sources' readings of the same period."""

    start_ms: int
    end_ms: int
    energy_kwh: float | None
    """None when the inverter had nothing to say for the period."""

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {"start_ms": self.start_ms, "end_ms": self.end_ms, "energy_kwh": self.energy_kwh}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpenPeriod:
        """Load the stored form."""
        energy = data.get("energy_kwh")
        return cls(
            int(data["start_ms"]), int(data["end_ms"]), None if energy is None else float(energy)
        )


@dataclass(slots=True)
class ReceivedRequest:
    """The latest payment request the grid published, and the root it was read at."""

    root: str
    request: PaymentRequest

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form (the request as it came over the wire)."""
        return {"root": self.root, "message": payload_to_json(self.request)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReceivedRequest:
        """Load the stored form (also the flattened form saved by earlier versions)."""
        message = data.get("message")
        if message is None:
            message = {
                "command": "payment-request",
                "owed": data["owed"],
                "usage": data["usage_kwh"],
                "paymentIdOrAddress": data["payment_id_or_address"],
                "pending": data.get("pending", 0),
            }
        request = parse_grid_message(message)
        if not isinstance(request, PaymentRequest):
            raise PayloadError("a stored payment request must be a payment-request")
        return cls(str(data["root"]), request)


@dataclass(slots=True)
class Payment:
    """A value transfer from a wallet: a bill's payment, or a send to an address."""

    request_root: str | None
    """The payment request it pays (None for a send to an address)."""
    amount: int
    address: str
    bundle: str
    time: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "request_root": self.request_root,
            "amount": self.amount,
            "address": self.address,
            "bundle": self.bundle,
            "time": self.time.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Payment:
        """Load the stored form."""
        request_root = data.get("request_root")
        return cls(
            request_root=None if request_root is None else str(request_root),
            amount=int(data["amount"]),
            address=str(data["address"]),
            bundle=str(data["bundle"]),
            time=parse_time(data["time"]),
        )


@dataclass(slots=True)
class PendingPayment:
    """A signed transfer recorded before it is broadcast, until the Tangle settles it.

    While it exists no other transfer is signed: a new attempt attaches these
    same trytes again, so nothing is paid or sent twice, whatever happened to
    an earlier attempt (a lost answer, a restart half-way).
    """

    request_root: str | None
    amount: int
    address: str
    bundle: str
    time: datetime
    trytes: list[str]

    def confirmed(self) -> Payment:
        """The payment as recorded once confirmed."""
        return Payment(self.request_root, self.amount, self.address, self.bundle, self.time)

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return self.confirmed().to_dict() | {"trytes": list(self.trytes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingPayment:
        """Load the stored form."""
        payment = Payment.from_dict(data)
        trytes = data["trytes"]
        if not isinstance(trytes, list) or not trytes:
            raise ValueError("a pending payment needs its signed trytes")
        return cls(
            payment.request_root,
            payment.amount,
            payment.address,
            payment.bundle,
            payment.time,
            [str(item) for item in trytes],
        )


def _optional[T](data: Mapping[str, Any], key: str, load: Callable[[Any], T]) -> T | None:
    value = data.get(key)
    return load(value) if value else None


@dataclass(slots=True)
class ParticipantState:
    """Durable state of one source, producer or consumer."""

    channel: dict[str, Any] | None = None
    channel_root: str | None = None
    meter: MeterReference | None = None
    meter_id: str | None = None
    """Which meter the reference is of: another meter's total means nothing to it."""
    queue: list[QueuedMessage] = field(default_factory=list)
    next_sequence: int = 0
    energy_published_kwh: float = 0.0
    last_publish: datetime | None = None
    registered_root: str | None = None
    registration_token: str | None = None
    registered_bid: float | None = None
    """Consumer: the standing bid its registration stated (a changed bid registers again)."""
    deregistered: bool = False
    # Consumer: the grid's return channel and what it asked for.
    return_channel: FollowedChannel | None = None
    payment_request: ReceivedRequest | None = None
    payments: list[Payment] = field(default_factory=list)
    """Confirmed payments."""
    # Producer and consumer: the wallet (addresses by key index) and its transfers.
    pending_payment: PendingPayment | None = None
    """The one transfer from the wallet signed but not yet confirmed (a bill or a send)."""
    sent: list[Payment] = field(default_factory=list)
    """Confirmed sends from the wallet to an address (not bill payments)."""
    wallet_addresses: list[str] = field(default_factory=list)
    # Producer: the sources it follows, what they reported, its periods not out yet.
    remote_sources: dict[str, SourceRegistration] = field(default_factory=dict)
    followed: list[FollowedChannel] = field(default_factory=list)
    source_readings: list[SourceReading] = field(default_factory=list)
    open_periods: list[OpenPeriod] = field(default_factory=list)
    published_until_ms: int | None = None
    """End of the producer's last published period: a source reading ending at or
    before it arrived late and goes out on its own, in its own period."""
    stored_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The source list as kept in the grid's storage API (registration id -> item)."""

    @property
    def paid_total(self) -> int:
        """IOTA paid so far by this consumer (confirmed payments, each once)."""
        return sum(payment.amount for payment in self.payments)

    @property
    def energy_measured_kwh(self) -> float:
        """Energy of every reading taken: published or still queued."""
        return self.energy_published_kwh + sum(item.energy_kwh for item in self.queue)

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "channel": self.channel,
            "channel_root": self.channel_root,
            "meter": self.meter.to_dict() if self.meter else None,
            "meter_entity_id": self.meter_id,
            "queue": [message.to_dict() for message in self.queue],
            "next_sequence": self.next_sequence,
            "energy_published_kwh": self.energy_published_kwh,
            "last_publish": self.last_publish.isoformat() if self.last_publish else None,
            "registered_root": self.registered_root,
            "registration_token": self.registration_token,
            "registered_bid": self.registered_bid,
            "deregistered": self.deregistered,
            "return_channel": self.return_channel.to_dict() if self.return_channel else None,
            "payment_request": self.payment_request.to_dict() if self.payment_request else None,
            "payments": [payment.to_dict() for payment in self.payments],
            "pending_payment": self.pending_payment.to_dict() if self.pending_payment else None,
            "sent": [payment.to_dict() for payment in self.sent],
            "wallet_addresses": list(self.wallet_addresses),
            "remote_sources": {
                key: source.to_dict() for key, source in self.remote_sources.items()
            },
            "followed": [channel.to_dict() for channel in self.followed],
            "source_readings": [reading.to_dict() for reading in self.source_readings],
            "open_periods": [period.to_dict() for period in self.open_periods],
            "published_until_ms": self.published_until_ms,
            "stored_sources": {key: dict(item) for key, item in self.stored_sources.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParticipantState:
        """Load the stored form (KeyError, TypeError or ValueError when corrupt)."""
        published_until = data.get("published_until_ms")
        registered_bid = data.get("registered_bid")  # 0 is a bid
        return cls(
            channel=data.get("channel"),
            channel_root=data.get("channel_root"),
            meter=_optional(data, "meter", MeterReference.from_dict),
            meter_id=data.get("meter_entity_id"),
            queue=[QueuedMessage.from_dict(item) for item in data.get("queue", [])],
            next_sequence=int(data.get("next_sequence", 0)),
            energy_published_kwh=float(data.get("energy_published_kwh", 0.0)),
            last_publish=_optional(data, "last_publish", parse_time),
            registered_root=data.get("registered_root"),
            registration_token=data.get("registration_token"),
            registered_bid=None if registered_bid is None else float(registered_bid),
            deregistered=bool(data.get("deregistered", False)),
            return_channel=_optional(data, "return_channel", FollowedChannel.from_dict),
            payment_request=_optional(data, "payment_request", ReceivedRequest.from_dict),
            payments=[Payment.from_dict(item) for item in data.get("payments", [])],
            pending_payment=_optional(data, "pending_payment", PendingPayment.from_dict),
            sent=[Payment.from_dict(item) for item in data.get("sent", [])],
            wallet_addresses=[str(item) for item in data.get("wallet_addresses", [])],
            remote_sources={
                key: SourceRegistration.from_dict(value)
                for key, value in data.get("remote_sources", {}).items()
            },
            followed=[FollowedChannel.from_dict(item) for item in data.get("followed", [])],
            source_readings=[
                SourceReading.from_dict(item) for item in data.get("source_readings", [])
            ],
            open_periods=[OpenPeriod.from_dict(item) for item in data.get("open_periods", [])],
            published_until_ms=None if published_until is None else int(published_until),
            stored_sources={
                str(key): dict(item) for key, item in data.get("stored_sources", {}).items()
            },
        )


class StateBackend(Protocol):
    """Where a household's state is kept (written whole, atomically)."""

    async def load(self) -> Mapping[str, Any] | None:
        """The saved state, or None when there is none yet."""
        ...

    async def save(self, data: dict[str, Any]) -> None:
        """Replace the saved state with ``data`` (all or nothing)."""
        ...


class MemoryBackend:
    """Keeps the state in memory only (a household that need not survive its process)."""

    def __init__(self) -> None:
        """Start empty."""
        self.data: dict[str, Any] | None = None

    async def load(self) -> Mapping[str, Any] | None:
        """What was saved last."""
        return self.data

    async def save(self, data: dict[str, Any]) -> None:
        """Keep ``data``."""
        self.data = data


class HouseholdStore:
    """The durable state of every participant of one household."""

    def __init__(self, backend: StateBackend) -> None:
        """Keep the state in ``backend``."""
        self.backend = backend
        self.participants: dict[str, ParticipantState] = {}

    async def load(self) -> None:
        """Load the saved state; a corrupt participant starts afresh with a warning."""
        data = await self.backend.load() or {}
        self.participants = {}
        for participant_id, raw in data.get("participants", {}).items():
            try:
                self.participants[participant_id] = ParticipantState.from_dict(raw)
            except (KeyError, TypeError, ValueError) as err:
                _LOGGER.warning("Discarding unreadable saved state of %s: %s", participant_id, err)

    def participant(self, participant_id: str) -> ParticipantState:
        """Return (creating if needed) the state of a participant."""
        return self.participants.setdefault(participant_id, ParticipantState())

    def forget(self, keep: Iterable[str]) -> list[str]:
        """Drop the state of participants not in ``keep``; return the dropped ids."""
        kept = set(keep)
        dropped = [key for key in self.participants if key not in kept]
        for key in dropped:
            del self.participants[key]
        return dropped

    async def save(self) -> None:
        """Write the state now; called after every durable change."""
        await self.backend.save(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """Return the stored form of everything."""
        return {"participants": {key: state.to_dict() for key, state in self.participants.items()}}
