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

from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from .const import (
    CONF_CURRENCY_RATE,
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
    ISSUE_CURRENCY_MISMATCH,
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
from .protocol.grid_client import CurrencyRate, GridClient, currency_rate_of
from .protocol.household import GridConnection, Household, HouseholdStore
from .statistics import StatisticsImporter
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
    currency_rate: CurrencyRate | None = None
    """The grid operator's rate of IOTA in a currency (None: the grid has none)."""
    last_settled_slot: int | None = None
    """Start (ms) of the grid's last settled slot."""


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


def last_settled_slot_of(health: Mapping[str, Any]) -> int | None:
    """The start (ms) of the grid's last settled slot (``lastSettledSlot``), if any."""
    slot = health.get("lastSettledSlot")
    return slot if isinstance(slot, int) and not isinstance(slot, bool) else None


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
        # The rate the grid last published, kept so the currency sensors exist after a
        # restart while the grid is away.
        self.known_rate: CurrencyRate | None = None
        # Statements and settled slots are read with the participants' registration tokens.
        self.grid = GridClient(async_get_clientsession(hass), entry.data[CONF_GRID_URL])
        self.statistics = StatisticsImporter(hass, self)

    @property
    def portal_url(self) -> str:
        """The grid's portal, where its operator keeps the statements."""
        return f"{self.connection.grid_url.rstrip('/')}/portal/"

    def participant_portal_url(self, registration_id: str) -> str:
        """The portal page of one participant, with its statements."""
        return f"{self.portal_url}#entities/{registration_id}"

    def home_currency_rate(self) -> CurrencyRate | None:
        """The grid's rate when it is in Home Assistant's currency (no conversion invented)."""
        rate = self.data.currency_rate if self.data is not None else None
        return rate if rate is not None and rate.currency == self.hass.config.currency else None

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
        if isinstance(rate := facts.get(CONF_CURRENCY_RATE), dict):
            self.known_rate = currency_rate_of(rate)
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
        rate = currency_rate_of(health)
        await self._note_currency_rate(rate)
        status = GridStatus(
            milestone_index=node_info.latest_solid_milestone_index,
            consensus_price=consensus_price_of(health),
            currency_rate=rate,
            last_settled_slot=last_settled_slot_of(health),
        )
        self.statistics.async_schedule(status)
        return status

    async def _save_facts(self) -> None:
        since = self._unreachable_since
        rate = self.known_rate
        await self._facts.async_save(
            {
                "grid_slot_seconds": self._grid_slot_seconds,
                "unreachable_since": since.isoformat() if since else None,
                CONF_CURRENCY_RATE: {
                    "currency": rate.currency,
                    "currencyPerMillionIota": f"{rate.per_million_iota:f}",
                }
                if rate
                else None,
            }
        )

    async def _note_currency_rate(self, rate: CurrencyRate | None) -> None:
        """Keep the grid's rate; tell the user when it is not in Home Assistant's currency."""
        issue_id = f"{ISSUE_CURRENCY_MISMATCH}_{self.config_entry.entry_id}"
        home = self.hass.config.currency
        if rate is not None and rate.currency != home:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                issue_id,
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key=ISSUE_CURRENCY_MISMATCH,
                translation_placeholders={
                    "title": self.config_entry.title,
                    "grid_currency": rate.currency,
                    "home_currency": home,
                },
            )
        else:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
        if rate == self.known_rate:
            return
        first = self.known_rate is None
        self.known_rate = rate
        await self._save_facts()
        if first and self.config_entry.state is ConfigEntryState.LOADED:
            # The currency sensors are made at setup when a rate is known: now there is one.
            self.hass.config_entries.async_schedule_reload(self.config_entry.entry_id)

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
