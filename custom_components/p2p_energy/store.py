"""Durable runtime state of a grid connection.

Everything that must survive a restart and is not configuration lives here, in
one Home Assistant ``Store`` per config entry: MAM channel positions, meter
references, the outbound message queues, registrations, what has been read from
followed channels and what has been paid (and a payment signed but not yet
confirmed, recorded before it is broadcast). A reading is taken from the meter and
queued in the same save, so no energy is lost or counted twice across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeassistant.helpers.storage import Store

from .const import DOMAIN, LOGGER
from .meter import MeterReference
from .protocol.outbox import QueuedMessage, parse_time

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from homeassistant.core import HomeAssistant

STORAGE_VERSION = 1


@dataclass(slots=True)
class FollowedChannel:
    """A restricted MAM channel read message by message from ``next_root``."""

    root: str
    side_key: str
    next_root: str
    name: str = ""
    registration_id: str | None = None
    ended: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "root": self.root,
            "side_key": self.side_key,
            "next_root": self.next_root,
            "name": self.name,
            "registration_id": self.registration_id,
            "ended": self.ended,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FollowedChannel:
        """Load the stored form."""
        return cls(
            root=str(data["root"]),
            side_key=str(data["side_key"]),
            next_root=str(data["next_root"]),
            name=str(data.get("name", "")),
            registration_id=data.get("registration_id"),
            ended=bool(data.get("ended", False)),
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
    def from_dict(cls, data: dict[str, Any]) -> SourceRegistration:
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
    """A source's output read from its channel, not yet in a producer output."""

    channel_root: str
    message_root: str
    output_kwh: float

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "channel_root": self.channel_root,
            "message_root": self.message_root,
            "output_kwh": self.output_kwh,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceReading:
        """Load the stored form."""
        return cls(
            channel_root=str(data["channel_root"]),
            message_root=str(data["message_root"]),
            output_kwh=float(data["output_kwh"]),
        )


@dataclass(slots=True)
class PaymentRequest:
    """The latest payment request the grid published for a consumer."""

    root: str
    owed: int
    usage_kwh: float
    payment_id_or_address: str
    pending: int = 0
    """IOTA of this consumer's payments the grid saw but the ledger has not confirmed."""

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "root": self.root,
            "owed": self.owed,
            "usage_kwh": self.usage_kwh,
            "payment_id_or_address": self.payment_id_or_address,
            "pending": self.pending,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaymentRequest:
        """Load the stored form (saved before ``pending`` existed: none)."""
        return cls(
            root=str(data["root"]),
            owed=int(data["owed"]),
            usage_kwh=float(data["usage_kwh"]),
            payment_id_or_address=str(data["payment_id_or_address"]),
            pending=int(data.get("pending", 0)),
        )


@dataclass(slots=True)
class Payment:
    """A value transfer this integration made to pay a payment request."""

    request_root: str
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
    def from_dict(cls, data: dict[str, Any]) -> Payment:
        """Load the stored form."""
        return cls(
            request_root=str(data["request_root"]),
            amount=int(data["amount"]),
            address=str(data["address"]),
            bundle=str(data["bundle"]),
            time=parse_time(data["time"]),
        )


@dataclass(slots=True)
class PendingPayment:
    """A signed payment recorded before it is broadcast, until the Tangle settles it.

    While it exists no other transfer is signed: a new attempt attaches these
    same trytes again, so the bill cannot be paid twice, whatever happened to
    an earlier attempt (a lost answer, a restart half-way).
    """

    request_root: str
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
    def from_dict(cls, data: dict[str, Any]) -> PendingPayment:
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


@dataclass(slots=True)
class ParticipantState:
    """Durable state of one source, producer or consumer."""

    channel: dict[str, Any] | None = None
    channel_root: str | None = None
    meter: MeterReference | None = None
    meter_entity_id: str | None = None
    queue: list[QueuedMessage] = field(default_factory=list)
    next_sequence: int = 0
    energy_published_kwh: float = 0.0
    last_publish: datetime | None = None
    registered_root: str | None = None
    registration_token: str | None = None
    deregistered: bool = False
    # Consumer: the grid's return channel and what it asked for.
    return_channel: FollowedChannel | None = None
    payment_request: PaymentRequest | None = None
    payments: list[Payment] = field(default_factory=list)
    """Confirmed payments."""
    pending_payment: PendingPayment | None = None
    wallet_addresses: list[str] = field(default_factory=list)
    # Producer: the sources it follows and what they reported.
    remote_sources: dict[str, SourceRegistration] = field(default_factory=dict)
    followed: list[FollowedChannel] = field(default_factory=list)
    source_readings: list[SourceReading] = field(default_factory=list)

    @property
    def paid_total(self) -> int:
        """IOTA paid so far by this consumer (confirmed payments, each once)."""
        return sum(payment.amount for payment in self.payments)

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "channel": self.channel,
            "channel_root": self.channel_root,
            "meter": self.meter.to_dict() if self.meter else None,
            "meter_entity_id": self.meter_entity_id,
            "queue": [message.to_dict() for message in self.queue],
            "next_sequence": self.next_sequence,
            "energy_published_kwh": self.energy_published_kwh,
            "last_publish": self.last_publish.isoformat() if self.last_publish else None,
            "registered_root": self.registered_root,
            "registration_token": self.registration_token,
            "deregistered": self.deregistered,
            "return_channel": self.return_channel.to_dict() if self.return_channel else None,
            "payment_request": self.payment_request.to_dict() if self.payment_request else None,
            "payments": [payment.to_dict() for payment in self.payments],
            "pending_payment": self.pending_payment.to_dict() if self.pending_payment else None,
            "wallet_addresses": list(self.wallet_addresses),
            "remote_sources": {
                key: source.to_dict() for key, source in self.remote_sources.items()
            },
            "followed": [channel.to_dict() for channel in self.followed],
            "source_readings": [reading.to_dict() for reading in self.source_readings],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParticipantState:
        """Load the stored form."""
        return cls(
            channel=data.get("channel"),
            channel_root=data.get("channel_root"),
            meter=MeterReference.from_dict(data["meter"]) if data.get("meter") else None,
            meter_entity_id=data.get("meter_entity_id"),
            queue=[QueuedMessage.from_dict(item) for item in data.get("queue", [])],
            next_sequence=int(data.get("next_sequence", 0)),
            energy_published_kwh=float(data.get("energy_published_kwh", 0.0)),
            last_publish=parse_time(data["last_publish"]) if data.get("last_publish") else None,
            registered_root=data.get("registered_root"),
            registration_token=data.get("registration_token"),
            deregistered=bool(data.get("deregistered", False)),
            return_channel=(
                FollowedChannel.from_dict(data["return_channel"])
                if data.get("return_channel")
                else None
            ),
            payment_request=(
                PaymentRequest.from_dict(data["payment_request"])
                if data.get("payment_request")
                else None
            ),
            payments=[Payment.from_dict(item) for item in data.get("payments", [])],
            pending_payment=(
                PendingPayment.from_dict(data["pending_payment"])
                if data.get("pending_payment")
                else None
            ),
            wallet_addresses=[str(item) for item in data.get("wallet_addresses", [])],
            remote_sources={
                key: SourceRegistration.from_dict(value)
                for key, value in data.get("remote_sources", {}).items()
            },
            followed=[FollowedChannel.from_dict(item) for item in data.get("followed", [])],
            source_readings=[
                SourceReading.from_dict(item) for item in data.get("source_readings", [])
            ],
        )


class RuntimeStore:
    """The durable state of every participant of one config entry."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Bind the store to its config entry."""
        self._store: Store[dict[str, Any]] = Store(
            hass, STORAGE_VERSION, f"{DOMAIN}.{entry_id}", atomic_writes=True
        )
        self.participants: dict[str, ParticipantState] = {}

    async def async_load(self) -> None:
        """Load the saved state; a corrupt participant starts afresh with a warning."""
        data = await self._store.async_load() or {}
        self.participants = {}
        for subentry_id, raw in data.get("participants", {}).items():
            try:
                self.participants[subentry_id] = ParticipantState.from_dict(raw)
            except (KeyError, TypeError, ValueError) as err:
                LOGGER.warning("Discarding unreadable saved state of %s: %s", subentry_id, err)

    def participant(self, subentry_id: str) -> ParticipantState:
        """Return (creating if needed) the state of a participant."""
        return self.participants.setdefault(subentry_id, ParticipantState())

    def forget(self, keep: Iterable[str]) -> list[str]:
        """Drop the state of participants not in ``keep``; return the dropped ids."""
        kept = set(keep)
        dropped = [key for key in self.participants if key not in kept]
        for key in dropped:
            del self.participants[key]
        return dropped

    async def async_save(self) -> None:
        """Write the state now (atomically); called after every durable change."""
        await self._store.async_save(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """Return the stored form of everything."""
        return {"participants": {key: state.to_dict() for key, state in self.participants.items()}}

    async def async_remove(self) -> None:
        """Delete the file when the config entry is removed."""
        await self._store.async_remove()
