"""The coordinator of a grid connection: the household engine, polling, the period timer.

Everything a household does on the grid is the engine's
(:mod:`.protocol.household`); this module builds it from the config entry
(one participant per subentry, meters are sensors, the store is Home
Assistant's), runs its periods on wall-clock boundaries and polls it, turning
network failures into ``UpdateFailed`` and, after a while, a repair issue.
"""

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
    MAX_PUBLISH_INTERVAL,
    POW_LOCAL,
    UNREACHABLE_ISSUE_AFTER,
    UPDATE_INTERVAL,
)
from .meter import EntityMeter
from .participants import participant_config, save_keys
from .protocol.client import LocalProofOfWork
from .protocol.errors import GridApiError, NodeError
from .protocol.household import GridConnection, Household, HouseholdStore
from .store import EntryStoreBackend, connection_store

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .protocol.household import Participant, Producer

type P2PEnergyConfigEntry = ConfigEntry[P2PEnergyCoordinator]


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


def slot_seconds_of(health: Mapping[str, Any]) -> int | None:
    """The grid's settlement slot in seconds (``slotSeconds`` of its health answer);
    None when it does not say (an older grid) or says something unusable."""
    slot = health.get("slotSeconds")
    if isinstance(slot, bool) or not isinstance(slot, int):
        return None
    return slot if 1 <= slot <= MAX_PUBLISH_INTERVAL else None


def next_period_boundary(now: datetime, interval_seconds: int) -> datetime:
    """The next wall-clock multiple of the period, so periods line up with grid slots."""
    epoch = now.timestamp()
    boundary = (math.floor(epoch / interval_seconds) + 1) * interval_seconds
    return dt_util.utc_from_timestamp(boundary)


class P2PEnergyCoordinator(DataUpdateCoordinator[GridStatus]):
    """Polls the grid and node, syncs the household, runs the period timer."""

    config_entry: P2PEnergyConfigEntry

    def __init__(self, hass: HomeAssistant, entry: P2PEnergyConfigEntry) -> None:
        """Create the connection and the (not yet opened) household."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {entry.title}",
            update_interval=UPDATE_INTERVAL,
        )
        options = entry.options
        override = options.get(CONF_PUBLISH_INTERVAL)
        self._interval_override = None if override is None else int(override)
        # What the grid said its slot is, kept (with when an outage began) across restarts.
        self._grid_slot_seconds: int | None = None
        self._facts = connection_store(hass, entry.entry_id)
        # Local proof of work runs in the loop's default executor: Home Assistant's.
        local_pow = options.get(CONF_PROOF_OF_WORK, DEFAULT_PROOF_OF_WORK) == POW_LOCAL
        self.connection = GridConnection(
            async_get_clientsession(hass),
            entry.data[CONF_GRID_URL],
            entry.data[CONF_NODE_URL],
            int(options.get(CONF_MIN_WEIGHT_MAGNITUDE, DEFAULT_MIN_WEIGHT_MAGNITUDE)),
            LocalProofOfWork() if local_pow else None,
        )
        self.store = HouseholdStore(EntryStoreBackend(hass, entry.entry_id))
        self.household = Household(
            self.connection,
            self.store,
            clock=dt_util.utcnow,
            executor=hass.async_add_executor_job,
            max_power_kw=float(options.get(CONF_MAX_POWER, DEFAULT_MAX_POWER)),
            on_change=self.async_update_listeners,
            on_keys_changed=lambda participant: save_keys(hass, entry, participant),
        )
        self._unreachable_since: datetime | None = None
        self._unsub_period: CALLBACK_TYPE | None = None

    @property
    def publish_interval(self) -> int:
        """Seconds per period: the user's override, else the grid's slot, else 15 minutes."""
        if self._interval_override is not None:
            return self._interval_override
        return self.grid_period

    @property
    def grid_period(self) -> int:
        """The period without an override: the grid's slot as it last reported it."""
        return self._grid_slot_seconds or DEFAULT_PUBLISH_INTERVAL

    @property
    def participants(self) -> dict[str, Participant]:
        """The participants by subentry id."""
        return self.household.participants

    def producer_by_token(self, token: str) -> Producer | None:
        """The producer whose registration API token is ``token``."""
        return self.household.producer_by_token(token)

    async def async_prepare(self) -> None:
        """Load the durable state and open every participant's channel."""
        facts = await self._facts.async_load() or {}
        if isinstance(slot := facts.get("grid_slot_seconds"), int):
            self._grid_slot_seconds = slot
        if isinstance(since := facts.get("unreachable_since"), str):
            self._unreachable_since = dt_util.parse_datetime(since)
        members = []
        for subentry in self.config_entry.subentries.values():
            config = participant_config(subentry)
            if config is None:
                LOGGER.warning("Ignoring subentry of unknown type %s", subentry.subentry_type)
                continue
            members.append((config, EntityMeter(self.hass, config.meter_id)))
        await self.household.open(members)

    @callback
    def async_start_periods(self) -> None:
        """Start the period timer."""
        self._schedule_period()

    @callback
    def _reschedule_period(self) -> None:
        """The period changed: the next boundary is one of the new period."""
        if self._unsub_period is not None:
            self._unsub_period()
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
        await self.household.publish_period(now)

    async def async_publish(self, participants: Iterable[Participant], now: datetime) -> None:
        """Publish the period's reading of ``participants`` (sources first)."""
        await self.household.publish_period(now, participants)

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
            await self.household.sync()
        except GridApiError as err:
            await self._note_unreachable()
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="grid_unreachable",
                translation_placeholders=placeholders | {"error": str(err)},
            ) from err
        except NodeError as err:
            await self._note_unreachable()
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="node_unreachable",
                translation_placeholders=placeholders | {"error": str(err)},
            ) from err
        await self._note_reachable()
        await self._note_grid_slot(slot_seconds_of(health))
        return GridStatus(
            milestone_index=node_info.latest_solid_milestone_index,
            consensus_price=consensus_price_of(health),
        )

    async def _save_facts(self) -> None:
        since = self._unreachable_since
        await self._facts.async_save(
            {
                "grid_slot_seconds": self._grid_slot_seconds,
                "unreachable_since": since.isoformat() if since else None,
            }
        )

    async def _note_grid_slot(self, slot: int | None) -> None:
        if slot is None or slot == self._grid_slot_seconds:
            return
        LOGGER.debug("%s: the grid's slot is %s s", self.config_entry.title, slot)
        before = self.publish_interval
        self._grid_slot_seconds = slot
        await self._save_facts()
        if self.publish_interval != before:
            self._reschedule_period()

    async def _note_unreachable(self) -> None:
        now = dt_util.utcnow()
        if self._unreachable_since is None:
            # Kept, so the repair issue's 15 minutes do not start again after a restart.
            self._unreachable_since = now
            await self._save_facts()
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

    async def _note_reachable(self) -> None:
        if self._unreachable_since is not None:
            self._unreachable_since = None
            await self._save_facts()
            ir.async_delete_issue(
                self.hass, DOMAIN, f"{ISSUE_GRID_UNREACHABLE}_{self.config_entry.entry_id}"
            )

    def diagnostics(self) -> dict[str, Any]:
        """Runtime facts for the diagnostics download."""
        return {
            "publish_interval": self.publish_interval,
            "grid_slot_seconds": self._grid_slot_seconds,
            "max_power_kw": self.household.max_power_kw,
            "min_weight_magnitude": self.connection.min_weight_magnitude,
            "local_proof_of_work": self.connection.local_proof_of_work,
            "last_update_success": self.last_update_success,
            "unreachable_since": self._unreachable_since.isoformat()
            if self._unreachable_since
            else None,
            "participants": self.household.diagnostics(),
        }
