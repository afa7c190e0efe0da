"""Long-term statistics of each participant's trading, for the Energy dashboard.

Like core's Tibber integration, the grid's own figures are imported as external
statistics (``p2p_energy:…``), one row per hour: the energy a consumer was billed for
(a producer: paid for), the IOTA it was billed (paid), and, where the grid's rate is in
Home Assistant's currency, the same money in that currency. The figures are the grid's
bills and payouts of each settled slot (``GET /settlements/{registrationId}`` with the
registration token), summed per hour of the slot's start, so the dashboard's costs add
up to the grid's bills. The current hour is imported as its slots settle, so a slot's
cost shows soon after it settles: each run resumes at the last imported hour (also after
a restart) and imports it again with its sum continued from the hour before. The recorder
replaces a statistic's row of the same start, and no later row exists then, so the sums
of the hours after it stay consistent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from homeassistant.components.recorder.models import (
    StatisticData,
    StatisticMeanType,
    StatisticMetaData,
)
from homeassistant.components.recorder.statistics import (
    async_add_external_statistics,
    get_last_statistics,
)
from homeassistant.const import UnitOfEnergy
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util
from homeassistant.util.unit_conversion import EnergyConverter

from .const import DOMAIN, LOGGER, UNIT_IOTA
from .protocol.errors import GridApiError
from .protocol.household import Consumer, Producer

if TYPE_CHECKING:
    from datetime import datetime

    from homeassistant.core import HomeAssistant

    from .coordinator import GridStatus, P2PEnergyCoordinator
    from .protocol.grid_client import CurrencyRate, SettledSlot
    from .protocol.household import Participant

HOUR_MS: Final = 3_600_000
# At most this many pages of settled slots per participant and run (the rest next run).
MAX_PAGES: Final = 20
PAGE_SIZE: Final = 1000


@dataclass(frozen=True, slots=True)
class StatisticIds:
    """The statistic ids of one participant."""

    energy: str
    iota: str
    money: str


def statistic_ids(participant: Participant) -> StatisticIds:
    """``p2p_energy:<participant>_…``: energy bought and cost for a consumer, energy sold
    and compensation for a producer."""
    base = f"{DOMAIN}:{participant.participant_id.lower()}"
    if isinstance(participant, Consumer):
        return StatisticIds(f"{base}_energy_bought", f"{base}_cost_iota", f"{base}_cost")
    return StatisticIds(f"{base}_energy_sold", f"{base}_compensation_iota", f"{base}_compensation")


@dataclass(slots=True)
class _Hour:
    energy_milliwh: int = 0
    amount: int = 0


@dataclass(slots=True)
class _Series:
    """One statistic's rows to add, continuing its last sum."""

    statistic_id: str
    name: str
    unit: str
    total: float
    """Its sum before its last imported hour."""
    last: float | None
    """Start (UTC seconds) of its last imported hour, imported again (it may have grown)."""
    rows: list[StatisticData] = field(default_factory=list)

    def add(self, start: datetime, value: float) -> None:
        if self.last is not None and start.timestamp() < self.last:
            return
        self.total += value
        self.rows.append(StatisticData(start=start, state=value, sum=self.total))


# Newer releases want the unit's conversion class named; older ones refuse the key.
UNIT_CLASS: Final = "unit_class" in StatisticMetaData.__annotations__


def _metadata(series: _Series) -> StatisticMetaData:
    metadata = StatisticMetaData(
        mean_type=StatisticMeanType.NONE,
        has_sum=True,
        name=series.name,
        source=DOMAIN,
        statistic_id=series.statistic_id,
        unit_of_measurement=series.unit,
    )
    if UNIT_CLASS:  # ha>=2025.11
        energy = series.unit == UnitOfEnergy.KILO_WATT_HOUR
        metadata["unit_class"] = EnergyConverter.UNIT_CLASS if energy else None  # type: ignore[typeddict-unknown-key]
    return metadata


def hours(slots: list[SettledSlot]) -> dict[int, _Hour]:
    """The slots' figures summed per hour of their start."""
    summed: dict[int, _Hour] = {}
    for slot in slots:
        figures = summed.setdefault(slot.start_ms // HOUR_MS * HOUR_MS, _Hour())
        figures.energy_milliwh += slot.energy_milliwh
        figures.amount += slot.amount
    return summed


class StatisticsImporter:
    """Imports every producer's and consumer's settled slots, one run at a time."""

    def __init__(self, hass: HomeAssistant, coordinator: P2PEnergyCoordinator) -> None:
        self._hass = hass
        self._coordinator = coordinator
        self._lock = asyncio.Lock()
        self._imported_for: int | None = None
        """The grid's last settled slot when the last run completed."""

    def async_schedule(self, status: GridStatus) -> None:
        """Start a run in the background when the grid settled a slot since the last one."""
        if "recorder" not in self._hass.config.components:
            return
        if status.last_settled_slot is None or status.last_settled_slot == self._imported_for:
            return
        # A run already going holds the lock: this one waits, then finds nothing new or
        # imports the same hours again (the same rows: an hour's row is replaced).
        self._coordinator.config_entry.async_create_background_task(
            self._hass, self.async_import(status), f"{DOMAIN} statistics import"
        )

    async def async_import(self, status: GridStatus) -> None:
        """Import the hours settled since the last run, for every trading participant."""
        async with self._lock:
            rate = status.currency_rate
            if rate is not None and rate.currency != self._hass.config.currency:
                rate = None  # no conversion is invented (the coordinator raises an issue)
            complete = True
            for participant in self._coordinator.participants.values():
                if not isinstance(participant, Producer | Consumer):
                    continue
                if not participant.registered or participant.state.deregistered:
                    continue
                try:
                    complete &= await self._import_participant(participant, rate)
                except GridApiError as err:
                    LOGGER.warning(
                        "%s: the grid's settled slots could not be read: %s", participant.name, err
                    )
                    complete = False
            if complete:
                self._imported_for = status.last_settled_slot

    async def _last(self, statistic_id: str) -> tuple[float, float | None]:
        """A statistic's sum before its last hour, and that hour's start (0 and None: no
        rows yet). Sums are cumulative, so the row before is the base even across a gap."""
        last = await get_instance(self._hass).async_add_executor_job(
            get_last_statistics, self._hass, 2, statistic_id, True, {"sum"}
        )
        rows = last.get(statistic_id)
        if not rows:
            return 0.0, None
        before = float(rows[1].get("sum") or 0.0) if len(rows) > 1 else 0.0
        return before, float(rows[0]["start"])

    async def _import_participant(
        self, participant: Producer | Consumer, rate: CurrencyRate | None
    ) -> bool:
        """Import one participant's hours from its last imported one; whether every page
        was read."""
        ids = statistic_ids(participant)
        consumer = isinstance(participant, Consumer)
        name = participant.name
        series = [
            _Series(
                ids.energy,
                f"{name} energy {'bought' if consumer else 'sold'}",
                UnitOfEnergy.KILO_WATT_HOUR,
                *await self._last(ids.energy),
            ),
            _Series(
                ids.iota,
                f"{name} {'cost' if consumer else 'compensation'} (IOTA)",
                UNIT_IOTA,
                *await self._last(ids.iota),
            ),
        ]
        if rate is not None:
            series.append(
                _Series(
                    ids.money,
                    f"{name} {'cost' if consumer else 'compensation'}",
                    rate.currency,
                    *await self._last(ids.money),
                )
            )
        last = [item.last for item in series if item.last is not None]
        since_ms = int(min(last) * 1000) if len(last) == len(series) else 0
        slots, complete = await self._read(participant, since_ms)
        # Every hour read, the last one possibly partial: the next run reads it again.
        by_hour = hours(slots)
        for hour in sorted(by_hour):
            figures = by_hour[hour]
            start = dt_util.utc_from_timestamp(hour / 1000)
            series[0].add(start, float(Decimal(figures.energy_milliwh) / 1_000_000))
            series[1].add(start, float(figures.amount))
            if rate is not None:
                series[2].add(start, float(rate.value(figures.amount)))
        for item in series:
            if item.rows:
                async_add_external_statistics(self._hass, _metadata(item), item.rows)
        return complete

    async def _read(
        self, participant: Producer | Consumer, since_ms: int
    ) -> tuple[list[SettledSlot], bool]:
        """The settled slots from ``since_ms`` (up to MAX_PAGES pages, far more than an
        hour's slots, so each run gets past the hour it starts at), and whether that was
        all of them."""
        grid = self._coordinator.grid
        token = participant.state.registration_token
        slots: list[SettledSlot] = []
        start: int | None = since_ms
        for _ in range(MAX_PAGES):
            assert start is not None
            page = await grid.settled_slots(
                participant.registration_id, start, page_size=PAGE_SIZE, token=token
            )
            slots += page.slots
            start = page.next_from
            if start is None:
                return slots, True
        return slots, False
