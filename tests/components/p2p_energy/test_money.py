"""Money in Home Assistant: the grid's currency rate, the Energy dashboard's statistics and
the statement action, against the grid's real API and database (in process, on loopback)
and Home Assistant's real recorder. The household's node and channels are the fake network.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from homeassistant.components.recorder.statistics import statistics_during_period
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.recorder import get_instance
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from sqlalchemy import func, select, update

from custom_components.p2p_energy import statistics as money_statistics
from custom_components.p2p_energy.const import (
    CONF_GRID_URL,
    CONF_MAX_POWER,
    CONF_MIN_WEIGHT_MAGNITUDE,
    CONF_NODE_URL,
    CONF_PUBLISH_INTERVAL,
    DOMAIN,
)
from custom_components.p2p_energy.statistics import statistic_ids
from grid_server.grid.api.context import GridServices
from grid_server.grid.app import create_app
from grid_server.grid.auth import token_hash
from grid_server.grid.clock import system_clock
from grid_server.grid.config import GridConfig
from grid_server.grid.currency import CurrencyRate
from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import Bill, Registration, Settlement
from grid_server.grid.registrations import RegistrationService
from grid_server.grid.return_channels import ReturnChannels
from grid_server.grid.settlement.service import SettlementService
from grid_server.grid.statements import StatementService
from grid_server.grid.storage import StorageService
from tests.grid.dbhelpers import add_reading, add_registration
from tests.grid.fakes import FakeChannels, ManualClock

from .conftest import CONSUMER_ID, NODE_URL, PRODUCER_ID, SOURCE_ID, SUBENTRIES, find_device, state

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from homeassistant.components.recorder import Recorder
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.typing import RecorderInstanceContextManager

    from tests.engine.fake_network import FakeNetwork

SLOT_MS = 900_000
HOUR_MS = 3_600_000
DAY = datetime(2026, 11, 2, tzinfo=UTC)
DAY_MS = int(DAY.timestamp() * 1000)
CONSUMER, PRODUCER = "consumer-registration-1", "producer-registration-1"
CONFIG = replace(
    GridConfig(),
    slot_seconds=SLOT_MS // 1000,
    import_price=100.0,
    export_price=20.0,
    grid_cut_percent=10.0,
    settlement_delay_seconds=60.0,
    currency="EUR",
    currency_per_million_iota=Decimal("2500"),
    statement_timezone="UTC",
)
GRID_RATE = CurrencyRate("EUR", Decimal("2500"))


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: RecorderInstanceContextManager) -> None:
    """The recorder (statistics are imported into it) is prepared before Home Assistant."""


@contextlib.asynccontextmanager
async def serving_grid(db: Database) -> AsyncIterator[str]:
    """The grid's web application on a loopback port (its URL); its Tangle is fake."""
    fake = FakeChannels()
    cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-cpu")

    async def health() -> tuple[bool, dict[str, Any]]:
        return True, {"status": "ok"}

    services = GridServices(
        config=CONFIG,
        db=db,
        registrations=RegistrationService(
            db,
            fake,
            ReturnChannels(db, fake, cpu, system_clock),
            system_clock,
            auth=CONFIG.storage_auth,
            hello_search_limit=CONFIG.hello_search_limit,
            notify_outbox=lambda: None,
        ),
        storage=StorageService(
            db,
            system_clock,
            auth=CONFIG.storage_auth,
            max_item_bytes=CONFIG.max_item_bytes,
            max_items=CONFIG.max_items_per_registration,
        ),
        health=health,
    )
    runner = web.AppRunner(create_app(services))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        cpu.shutdown(wait=True)


class Grid:
    """The grid's API with its database, and the clock its settlement runs by."""

    def __init__(self, url: str, db: Database) -> None:
        self.url = url
        self.db = db
        self.clock = ManualClock(DAY_MS)

    async def trade(self, slot_ends: range) -> None:
        """Both participants' readings of each slot, then settle every slot due."""
        for number, end in enumerate(slot_ends):
            usage = 0.2 + (end // SLOT_MS) % 7 * 0.15
            output = (end // SLOT_MS) % 5 * 0.1
            add_reading(self.db, CONSUMER, end, usage, duration_ms=SLOT_MS)
            add_reading(
                self.db, PRODUCER, end, output, price=40 + number % 3 * 5, duration_ms=SLOT_MS
            )
        self.clock.now = slot_ends[-1] + 120_000
        service = SettlementService(self.db, CONFIG, self.clock, "test")
        while await service.settle_due():
            pass

    def health(self) -> dict[str, Any]:
        return {
            "success": True,
            "message": "OK",
            "status": "ok",
            "consensusPrice": 45.0,
            "lastSettledSlot": self.clock.now - 120_000 - SLOT_MS,
            "currency": "EUR",
            "currencyPerMillionIota": "2500",
        }

    def billed(self, registration_id: str, start_ms: int, end_ms: int) -> int:
        """The grid's bills to the consumer for the slots starting in [start_ms, end_ms)."""
        with self.db.read() as session:
            total = session.scalar(
                select(func.sum(Bill.amount))
                .join(Settlement, Settlement.id == Bill.settlement_id)
                .where(
                    Bill.registration_id == registration_id,
                    Settlement.slot_start >= start_ms,
                    Settlement.slot_start < end_ms,
                )
            )
        return int(total or 0)

    async def day_line(self, registration_id: str) -> dict[str, Any]:
        """The statement's line of DAY for the participant (the grid's own figures)."""
        preview = await StatementService(self.db, CONFIG, self.clock).preview(
            registration_id, "2026-11"
        )
        (line,) = [day for day in preview["days"] if day["date"] == DAY.date().isoformat()]
        return line


@pytest.fixture
async def grid(tmp_path: Path, socket_enabled: None) -> AsyncIterator[Grid]:
    """The grid's API on loopback with the household's consumer and producer registered
    (their tokens are the ones the fake network issues to Home Assistant)."""
    db = Database(f"sqlite:///{tmp_path / 'grid.sqlite3'}", threads=1)
    db.migrate()
    for registration_id, kind in ((CONSUMER, "consumer"), (PRODUCER, "producer")):
        add_registration(db, registration_id, kind, None)
        with db.write() as session:
            session.execute(
                update(Registration)
                .where(Registration.registration_id == registration_id)
                .values(token_hash=token_hash(f"token-{registration_id}"))
            )
    try:
        async with serving_grid(db) as url:
            yield Grid(url, db)
    finally:
        db.close()


async def _set_up(hass: HomeAssistant, fake_network: FakeNetwork, grid: Grid) -> MockConfigEntry:
    hass.states.async_set("sensor.pv_energy", "1", {"unit_of_measurement": "kWh"})
    fake_network.issue_tokens = True
    fake_network.health = grid.health()
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="grid",
        data={CONF_GRID_URL: grid.url, CONF_NODE_URL: NODE_URL},
        options={CONF_PUBLISH_INTERVAL: 3600, CONF_MAX_POWER: 100.0, CONF_MIN_WEIGHT_MAGNITUDE: 9},
        subentries_data=SUBENTRIES,
    )
    entry.add_to_hass(hass)
    for entity_id in ("sensor.inverter_energy", "sensor.house_energy"):
        hass.states.async_set(entity_id, "100", {"unit_of_measurement": "kWh"})
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    return entry


async def _statistics(
    hass: HomeAssistant, ids: set[str], start: datetime, end: datetime
) -> dict[str, list[dict[str, Any]]]:
    await async_wait_recording_done(hass)
    return await get_instance(hass).async_add_executor_job(
        statistics_during_period, hass, start, end, ids, "hour", None, {"state", "sum"}
    )


async def test_energy_dashboard_statistics_equal_the_grids_bills(
    recorder_mock: Recorder, hass: HomeAssistant, fake_network: FakeNetwork, grid: Grid
) -> None:
    """A day of 15-minute slots: the recorder's hourly statistics of that day add up to
    the grid's settled slots of that day, for the consumer and for the producer."""
    hass.config.currency = "EUR"
    # The day, and half an hour of the next: that hour is imported so far (two slots).
    await grid.trade(range(DAY_MS + SLOT_MS, DAY_MS + 86_400_000 + 2 * SLOT_MS + 1, SLOT_MS))
    entry = await _set_up(hass, fake_network, grid)
    coordinator = entry.runtime_data
    await hass.async_block_till_done(wait_background_tasks=True)

    participants = coordinator.participants
    day_end = DAY + timedelta(days=1)
    for participant_id, registration_id, energy_fields, money_field in (
        (CONSUMER_ID, CONSUMER, ("boughtLocallyMilliwh", "importedMilliwh"), "charges"),
        (PRODUCER_ID, PRODUCER, ("soldLocallyMilliwh", "exportedMilliwh"), "credits"),
    ):
        ids = statistic_ids(participants[participant_id])
        line = await grid.day_line(registration_id)
        stats = await _statistics(hass, {ids.energy, ids.iota, ids.money}, DAY, day_end)
        assert len(stats[ids.energy]) == 24, "one row per hour of the day"
        energy = sum(row["state"] for row in stats[ids.energy])
        assert energy == pytest.approx(sum(line[name] for name in energy_fields) / 1e6, abs=1e-9)
        iota = sum(row["state"] for row in stats[ids.iota])
        assert iota == line[money_field] > 0
        assert stats[ids.iota][-1]["sum"] == iota  # the sums start at the first slot
        money = Decimal(repr(sum(row["state"] for row in stats[ids.money])))
        assert money.quantize(Decimal("0.01")) == GRID_RATE.amount(line[money_field])
        assert stats[ids.money][-1]["sum"] == pytest.approx(iota * 2500 / 1_000_000)

    # The next day's first hour so far: its two settled slots, not waiting for the hour.
    next_hour_ms = DAY_MS + 86_400_000
    ids = statistic_ids(participants[CONSUMER_ID])
    stats = await _statistics(hass, {ids.iota}, DAY, day_end + DAY_HOUR)
    partial = grid.billed(CONSUMER, next_hour_ms, next_hour_ms + HOUR_MS)
    assert partial == grid.billed(CONSUMER, next_hour_ms, next_hour_ms + 2 * SLOT_MS) > 0
    assert [row["state"] for row in stats[ids.iota][-1:]] == [partial]
    assert stats[ids.iota][-1]["sum"] == grid.billed(CONSUMER, DAY_MS, next_hour_ms + HOUR_MS)

    # The rest of that hour and a slot of the next settle; after a restart (here a reload)
    # the import resumes at the partial hour: it grows in place (the recorder replaces the
    # row of that start) and the next hour's sum carries on from the grown one.
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    await grid.trade(range(next_hour_ms + 3 * SLOT_MS, next_hour_ms + 5 * SLOT_MS + 1, SLOT_MS))
    fake_network.health = grid.health()
    await entry.runtime_data.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)
    ids = statistic_ids(entry.runtime_data.participants[CONSUMER_ID])
    stats = await _statistics(hass, {ids.iota}, DAY, day_end + 2 * DAY_HOUR)
    rows = stats[ids.iota]
    assert len(rows) == 26
    states = [row["state"] for row in rows[-2:]]
    assert states == [
        grid.billed(CONSUMER, next_hour_ms, next_hour_ms + HOUR_MS),
        grid.billed(CONSUMER, next_hour_ms + HOUR_MS, next_hour_ms + 2 * HOUR_MS),
    ]
    assert states[0] > partial
    assert [row["sum"] for row in rows] == [
        sum(row["state"] for row in rows[: number + 1]) for number in range(len(rows))
    ]
    assert rows[-1]["sum"] == grid.billed(CONSUMER, DAY_MS, next_hour_ms + 2 * HOUR_MS)

    # The currency sensors: the consensus price is the Energy dashboard's price entity.
    price = hass.states.get("sensor.grid_consensus_price_eur")
    assert price is not None
    assert price.attributes["unit_of_measurement"] == "EUR/kWh"
    assert Decimal(price.state) == GRID_RATE.per_million_iota * 45 / 1_000_000
    owed = hass.states.get("sensor.house_amount_paid_eur")
    assert owed is not None
    assert owed.attributes["device_class"] == "monetary"
    assert (owed.state, owed.attributes["unit_of_measurement"]) == ("0.00", "EUR")


DAY_HOUR = timedelta(hours=1)


async def test_statement_action_returns_the_grids_latest_statement(
    hass: HomeAssistant, fake_network: FakeNetwork, grid: Grid
) -> None:
    """The response is the grid's final document, with the participant's portal page."""
    hass.config.currency = "EUR"
    await grid.trade(range(DAY_MS + SLOT_MS, DAY_MS + 4 * SLOT_MS + 1, SLOT_MS))
    entry = await _set_up(hass, fake_network, grid)
    house = find_device(hass, CONSUMER_ID)
    assert house.configuration_url == f"{fake_network.grid_url}/portal/#entities/{CONSUMER}"

    async def get_statement(device_id: str, **extra: Any) -> dict[str, Any]:
        response = await hass.services.async_call(
            DOMAIN,
            "get_statement",
            {"device_id": device_id, **extra},
            blocking=True,
            return_response=True,
        )
        assert response is not None
        return response

    response = await get_statement(house.id)
    assert response == {
        "statement": None,
        "portal_url": f"{fake_network.grid_url}/portal/#entities/{CONSUMER}",
    }
    grid.clock.now = int(datetime(2026, 12, 2, tzinfo=UTC).timestamp() * 1000)
    [document] = [
        item
        for item in await StatementService(grid.db, CONFIG, grid.clock).finalise(
            "2026-11", None, by="test"
        )
        if item["registrationId"] == CONSUMER
    ]
    response = await get_statement(house.id)
    assert response["statement"] == document
    assert response["statement"]["number"] >= 1
    preview = (await get_statement(house.id, preview=True))["statement"]
    assert (preview["kind"], preview["period"]) == ("preview", "2026-12")

    with pytest.raises(ServiceValidationError) as caught:
        await get_statement(find_device(hass, SOURCE_ID).id)
    assert caught.value.translation_key == "no_statements"
    # A token the grid does not know: its refusal, translated.
    entry.runtime_data.participants[CONSUMER_ID].state.registration_token = "token-other"
    with pytest.raises(HomeAssistantError) as caught:
        await get_statement(house.id)
    assert caught.value.translation_key == "grid_error"


async def test_another_currency_is_not_converted(
    hass: HomeAssistant, fake_network: FakeNetwork, grid: Grid
) -> None:
    """A grid valuing IOTA in EUR, Home Assistant in USD: a repair issue, the currency
    sensors unavailable, no conversion invented."""
    hass.config.currency = "USD"
    entry = await _set_up(hass, fake_network, grid)
    issue_id = f"currency_mismatch_{entry.entry_id}"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders == {
        "title": "grid",
        "grid_currency": "EUR",
        "home_currency": "USD",
    }
    assert state(hass, "sensor.grid_consensus_price_usd") == "unavailable"
    assert state(hass, "sensor.house_amount_paid_usd") == "unavailable"
    assert state(hass, "sensor.grid_consensus_price") == "45.0"

    # The grid drops its rate: the notice goes.
    fake_network.health = {**grid.health(), "currency": None}
    await entry.runtime_data.async_refresh()
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_a_rate_appearing_later_adds_the_currency_sensors(
    hass: HomeAssistant, fake_network: FakeNetwork, grid: Grid
) -> None:
    """Without a rate there are no currency sensors; the first rate reloads the entry and
    they appear (and stay over a restart while the grid is away)."""
    hass.config.currency = "EUR"
    fake_network.health = {"success": True, "message": "OK", "status": "ok"}
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="grid",
        data={CONF_GRID_URL: grid.url, CONF_NODE_URL: NODE_URL},
        subentries_data=SUBENTRIES,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert hass.states.get("sensor.grid_consensus_price_eur") is None
    fake_network.health = grid.health()
    await entry.runtime_data.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)
    assert hass.states.get("sensor.grid_consensus_price_eur") is not None
    fake_network.grid_up = False
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert state(hass, "sensor.grid_consensus_price_eur") == "unavailable"
    assert entry.runtime_data.known_rate is not None


async def test_statistics_resume_by_pages_past_refusals_and_into_a_currency(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    fake_network: FakeNetwork,
    grid: Grid,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One page per run: each run imports the hours read (the last one so far) and the
    next goes on from that last one; a refused token leaves the participant for the next
    run; the money statistic starts when the grid's rate is in Home Assistant's currency."""
    hass.config.currency = "USD"
    monkeypatch.setattr(money_statistics, "PAGE_SIZE", 5)
    monkeypatch.setattr(money_statistics, "MAX_PAGES", 1)
    entry = await _set_up(hass, fake_network, grid)  # nothing settled yet
    coordinator = entry.runtime_data
    consumer = coordinator.participants[CONSUMER_ID]
    ids = statistic_ids(consumer)
    producer_ids = statistic_ids(coordinator.participants[PRODUCER_ID])
    await grid.trade(range(DAY_MS + SLOT_MS, DAY_MS + 3 * HOUR_MS + 1, SLOT_MS))
    fake_network.health = grid.health()
    token = consumer.state.registration_token
    consumer.state.registration_token = "token-other"

    async def refresh() -> dict[str, list[dict[str, Any]]]:
        await coordinator.async_refresh()
        await hass.async_block_till_done(wait_background_tasks=True)
        return await _statistics(
            hass,
            {ids.iota, ids.money, producer_ids.energy},
            DAY,
            DAY + timedelta(days=1),
        )

    stats = await refresh()
    assert ids.iota not in stats  # refused
    # Five slots read: the first hour and the next one's first slot (imported so far).
    assert len(stats[producer_ids.energy]) == 2
    consumer.state.registration_token = token
    for _ in range(4):
        stats = await refresh()
    assert len(stats[producer_ids.energy]) == len(stats[ids.iota]) == 3
    line = await grid.day_line(CONSUMER)
    assert stats[ids.iota][-1]["sum"] == line["charges"]
    assert ids.money not in stats

    hass.config.currency = "EUR"
    await grid.trade(range(DAY_MS + 3 * HOUR_MS + SLOT_MS, DAY_MS + 4 * HOUR_MS + 1, SLOT_MS))
    fake_network.health = grid.health()
    for _ in range(5):
        stats = await refresh()
    line = await grid.day_line(CONSUMER)
    assert len(stats[ids.iota]) == len(stats[ids.money]) == 4
    assert stats[ids.iota][-1]["sum"] == line["charges"]
    assert stats[ids.money][-1]["sum"] == pytest.approx(line["charges"] * 2500 / 1_000_000)


async def test_no_statement_before_registration(
    recorder_mock: Recorder, hass: HomeAssistant, fake_network: FakeNetwork, grid: Grid
) -> None:
    """A participant the grid has not registered yet has no statement to ask for (nor
    statistics: it is left out of the import)."""
    fake_network.refuse_registrations = "Not now."
    await _set_up(hass, fake_network, grid)
    with pytest.raises(ServiceValidationError) as caught:
        await hass.services.async_call(
            DOMAIN,
            "get_statement",
            {"device_id": find_device(hass, CONSUMER_ID).id},
            blocking=True,
            return_response=True,
        )
    assert caught.value.translation_key == "not_registered"
