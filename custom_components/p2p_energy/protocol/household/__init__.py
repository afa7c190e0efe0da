"""The household engine: sources, producers and consumers, written once.

A :class:`Household` runs the blueprint's roles for whoever owns them (the Home
Assistant integration, the demo's simulated market, the durable simulated
households): meter deltas, channels and the durable outbox, registration with
the grid or a producer, following sources and the grid's payment requests,
paying bills (store before send) and the producer registration API. No Home
Assistant import; the owner injects the network (:class:`GridConnection` on its
aiohttp session), the state backend, the meters, a clock and an executor.
"""

from .connection import GridConnection
from .consumer import Consumer
from .household import DEFAULT_MAX_POWER_KW, Household, utc_now
from .meter import Meter, MeterKind, MeterReading, MeterReference
from .participant import (
    PARTICIPANT_KINDS,
    Participant,
    ParticipantConfig,
    ParticipantKind,
    is_participant_kind,
)
from .producer import Producer, RegistrationRefusedError
from .roles import Source
from .state import HouseholdStore, MemoryBackend, ParticipantState, StateBackend
from .wallet import PaymentOutcome, PaymentRefusedError, PaymentUncertainError, WalletMember

__all__ = [
    "DEFAULT_MAX_POWER_KW",
    "PARTICIPANT_KINDS",
    "Consumer",
    "GridConnection",
    "Household",
    "HouseholdStore",
    "MemoryBackend",
    "Meter",
    "MeterKind",
    "MeterReading",
    "MeterReference",
    "Participant",
    "ParticipantConfig",
    "ParticipantKind",
    "ParticipantState",
    "PaymentOutcome",
    "PaymentRefusedError",
    "PaymentUncertainError",
    "Producer",
    "RegistrationRefusedError",
    "Source",
    "StateBackend",
    "WalletMember",
    "is_participant_kind",
    "utc_now",
]
