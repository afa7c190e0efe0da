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
    POW_LOCAL,
    UNREACHABLE_ISSUE_AFTER,
    UPDATE_INTERVAL,
)
from .meter import EntityMeter
from .participants import participant_config, save_keys
from .protocol.client import LocalProofOfWork
from .protocol.errors import GridApiError, NodeError
from .protocol.household import GridConnection, Household, HouseholdStore
from .store import EntryStoreBackend

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
    def participants(self) -> dict[str, Participant]:
        """The participants by subentry id."""
        return self.household.participants

    def producer_by_token(self, token: str) -> Producer | None:
        """The producer whose registration API token is ``token``."""
        return self.household.producer_by_token(token)

    async def async_prepare(self) -> None:
        """Load the durable state and open every participant's channel."""
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
            "max_power_kw": self.household.max_power_kw,
            "min_weight_magnitude": self.connection.min_weight_magnitude,
            "local_proof_of_work": self.connection.local_proof_of_work,
            "last_update_success": self.last_update_success,
            "unreachable_since": self._unreachable_since.isoformat()
            if self._unreachable_since
            else None,
            "participants": self.household.diagnostics(),
        }
