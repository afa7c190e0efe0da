"""The coordinator of a grid connection: polling the network, the period timer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from .connection import GridConnection
from .const import (
    CONF_GRID_URL,
    CONF_MAX_POWER,
    CONF_MIN_WEIGHT_MAGNITUDE,
    CONF_NODE_URL,
    CONF_PROOF_OF_WORK,
    CONF_PUBLISH_INTERVAL,
    DEFAULT_MAX_POWER,
    DEFAULT_MIN_WEIGHT_MAGNITUDE,
    DEFAULT_PROOF_OF_WORK,
    DEFAULT_PUBLISH_INTERVAL,
    DOMAIN,
    ISSUE_GRID_UNREACHABLE,
    LOGGER,
    POW_LOCAL,
    SUBENTRY_CONSUMER,
    SUBENTRY_PRODUCER,
    SUBENTRY_SOURCE,
    UNREACHABLE_ISSUE_AFTER,
    UPDATE_INTERVAL,
)
from .participants import Participant, Producer, RuntimeContext, build_participants
from .protocol.client import LocalProofOfWork
from .protocol.errors import GridApiError, NodeError
from .store import RuntimeStore

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

type P2PEnergyConfigEntry = ConfigEntry[P2PEnergyCoordinator]

# Sources publish before producers read them; consumers come last.
PUBLISH_ORDER = {SUBENTRY_SOURCE: 0, SUBENTRY_PRODUCER: 1, SUBENTRY_CONSUMER: 2}


@dataclass(frozen=True, slots=True)
class GridStatus:
    """What the last poll learned about the grid and its node."""

    milestone_index: int | None
    consensus_price: float | None


def consensus_price_of(health: Mapping[str, Any]) -> float | None:
    """The last settled slot's consensus price (IOTA per kWh) from the grid's health answer.

    A grid reports it as ``consensusPrice``; None when it does not, or no slot
    had any production yet.
    """
    price = health.get("consensusPrice")
    if isinstance(price, bool) or not isinstance(price, int | float):
        return None
    if not math.isfinite(price) or price < 0:
        return None
    return float(price)


def next_period_boundary(now: datetime, interval_seconds: int) -> datetime:
    """The next wall-clock multiple of the period, so periods line up with grid slots."""
    epoch = now.timestamp()
    boundary = (math.floor(epoch / interval_seconds) + 1) * interval_seconds
    return dt_util.utc_from_timestamp(boundary)


class P2PEnergyCoordinator(DataUpdateCoordinator[GridStatus]):
    """Polls the grid and node, syncs every participant, runs the period timer."""

    config_entry: P2PEnergyConfigEntry

    def __init__(self, hass: HomeAssistant, entry: P2PEnergyConfigEntry) -> None:
        """Create the connection and the (not yet loaded) store."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {entry.title}",
            update_interval=UPDATE_INTERVAL,
        )
        options = entry.options
        self.publish_interval = int(options.get(CONF_PUBLISH_INTERVAL, DEFAULT_PUBLISH_INTERVAL))
        # Local proof of work runs in the loop's default executor: Home Assistant's.
        local_pow = options.get(CONF_PROOF_OF_WORK, DEFAULT_PROOF_OF_WORK) == POW_LOCAL
        self.connection = GridConnection(
            async_get_clientsession(hass),
            entry.data[CONF_GRID_URL],
            entry.data[CONF_NODE_URL],
            int(options.get(CONF_MIN_WEIGHT_MAGNITUDE, DEFAULT_MIN_WEIGHT_MAGNITUDE)),
            LocalProofOfWork() if local_pow else None,
        )
        self.store = RuntimeStore(hass, entry.entry_id)
        self.participants: dict[str, Participant] = {}
        self.context = RuntimeContext(
            hass=hass,
            entry=entry,
            connection=self.connection,
            store=self.store,
            max_power_kw=float(options.get(CONF_MAX_POWER, DEFAULT_MAX_POWER)),
            participants=self.participants,
            on_change=self.async_update_listeners,
        )
        self._unreachable_since: datetime | None = None
        self._unsub_period: CALLBACK_TYPE | None = None

    @property
    def ordered_participants(self) -> list[Participant]:
        """Participants in publishing order: sources, producers, consumers."""
        return sorted(self.participants.values(), key=lambda p: PUBLISH_ORDER[p.kind])

    def producer_by_token(self, token: str) -> Producer | None:
        """The producer whose registration API token is ``token``."""
        for participant in self.participants.values():
            if isinstance(participant, Producer) and participant.api_token == token:
                return participant
        return None

    async def async_prepare(self) -> None:
        """Load the durable state and open every participant's channel."""
        await self.store.async_load()
        dropped = self.store.forget(self.config_entry.subentries)
        if dropped:
            LOGGER.debug("Forgetting the state of removed subentries %s", dropped)
        self.participants.update(
            build_participants(self.context, self.config_entry.subentries.values())
        )
        for participant in self.ordered_participants:
            await participant.async_prepare()
        await self.store.async_save()

    @callback
    def async_start_periods(self) -> None:
        """Start the period timer."""
        self._schedule_period()

    @callback
    def _schedule_period(self) -> None:
        self._unsub_period = async_track_point_in_utc_time(
            self.hass,
            self._async_period_elapsed,
            next_period_boundary(dt_util.utcnow(), self.publish_interval),
        )

    async def _async_period_elapsed(self, now: datetime) -> None:
        self._schedule_period()
        await self.async_publish(self.ordered_participants, now)

    async def async_publish(self, participants: Iterable[Participant], now: datetime) -> None:
        """Publish the period's reading of ``participants`` (sources first)."""
        for participant in sorted(participants, key=lambda p: PUBLISH_ORDER[p.kind]):
            await participant.async_publish_period(now)

    async def async_shutdown(self) -> None:
        """Stop the timer as well as polling."""
        await super().async_shutdown()
        if self._unsub_period is not None:
            self._unsub_period()
            self._unsub_period = None

    async def _async_update_data(self) -> GridStatus:
        """Check the grid and node, then let every participant catch up."""
        placeholders = {"grid_url": self.connection.grid_url, "node_url": self.connection.node_url}
        try:
            health = await self.connection.grid_health()
            node_info = await self.connection.node_info()
            for participant in self.ordered_participants:
                await participant.async_sync()
        except GridApiError as err:
            self._note_unreachable()
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="grid_unreachable",
                translation_placeholders=placeholders | {"error": str(err)},
            ) from err
        except NodeError as err:
            self._note_unreachable()
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="node_unreachable",
                translation_placeholders=placeholders | {"error": str(err)},
            ) from err
        self._note_reachable()
        return GridStatus(
            milestone_index=node_info.latest_solid_milestone_index,
            consensus_price=consensus_price_of(health),
        )

    def _note_unreachable(self) -> None:
        now = dt_util.utcnow()
        if self._unreachable_since is None:
            self._unreachable_since = now
        if now - self._unreachable_since >= UNREACHABLE_ISSUE_AFTER:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                f"{ISSUE_GRID_UNREACHABLE}_{self.config_entry.entry_id}",
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key=ISSUE_GRID_UNREACHABLE,
                translation_placeholders={
                    "title": self.config_entry.title,
                    "grid_url": self.connection.grid_url,
                    "node_url": self.connection.node_url,
                    "minutes": str(int(UNREACHABLE_ISSUE_AFTER / timedelta(minutes=1))),
                },
            )

    def _note_reachable(self) -> None:
        if self._unreachable_since is not None:
            self._unreachable_since = None
            ir.async_delete_issue(
                self.hass, DOMAIN, f"{ISSUE_GRID_UNREACHABLE}_{self.config_entry.entry_id}"
            )

    def diagnostics(self) -> dict[str, Any]:
        """Runtime facts for the diagnostics download."""
        return {
            "publish_interval": self.publish_interval,
            "max_power_kw": self.context.max_power_kw,
            "min_weight_magnitude": self.connection.min_weight_magnitude,
            "local_proof_of_work": self.connection.local_proof_of_work,
            "last_update_success": self.last_update_success,
            "unreachable_since": self._unreachable_since.isoformat()
            if self._unreachable_since
            else None,
            "participants": {
                subentry_id: participant.diagnostics()
                for subentry_id, participant in self.participants.items()
            },
        }
