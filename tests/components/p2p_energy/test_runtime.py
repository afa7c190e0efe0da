"""Publishing per period, the durable queue, following channels, availability."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.p2p_energy.const import DOMAIN
from custom_components.p2p_energy.protocol.payloads import ConsumerUsage

from .conftest import CONSUMER_ID, ENERGY_ATTRIBUTES, ENTRY_ID, PRODUCER_ID, SOURCE_ID, state

if TYPE_CHECKING:
    from freezegun.api import FrozenDateTimeFactory
    from homeassistant.core import HomeAssistant
    from homeassistant.helpers import issue_registry as ir

    from tests.engine.fake_network import FakeNetwork

INVERTER_ATTRIBUTES = ENERGY_ATTRIBUTES | {
    "state_class": "total",
    "last_reset": "2025-01-01T00:00:00+00:00",
}


def ms(text: str) -> int:
    """Unix milliseconds of an ISO time."""
    moment = dt_util.parse_datetime(text)
    assert moment is not None
    return int(moment.timestamp() * 1000)


async def next_period(hass: HomeAssistant, freezer: FrozenDateTimeFactory, moment: str) -> datetime:
    """Move the clock to ``moment`` (a period boundary) and let the timers run."""
    now = dt_util.parse_datetime(moment)
    assert now is not None
    freezer.move_to(now)
    async_fire_time_changed(hass, now)
    await hass.async_block_till_done()
    return now


async def poll(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """Let the coordinator poll once (its refresh is a background task)."""
    freezer.tick(timedelta(seconds=31))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)


def usage_body(start: str, end: str, usage: float) -> dict[str, Any]:
    """A consumer's usage message for the period from ``start`` to ``end``."""
    return {"command": "usage", "startTime": ms(start), "endTime": ms(end), "usage": usage}


def set_meters(hass: HomeAssistant, pv: float, inverter: float, house: float) -> None:
    """New meter states."""
    hass.states.async_set("sensor.pv_energy", str(pv), ENERGY_ATTRIBUTES)
    hass.states.async_set("sensor.inverter_energy", str(inverter), INVERTER_ATTRIBUTES)
    hass.states.async_set("sensor.house_energy", str(house), ENERGY_ATTRIBUTES)


def channel_bodies(entry: MockConfigEntry, network: FakeNetwork, subentry_id: str) -> list[Any]:
    """Everything a participant published, decoded."""
    participant = entry.runtime_data.participants[subentry_id]
    assert participant.channel_root is not None
    return network.bodies(participant.channel_root, participant.side_key)


async def test_periods_publish_deltas(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """Sources, producers and consumers publish their deltas per period."""
    # The first period only takes the meters' baselines.
    await next_period(hass, freezer, "2025-03-01T12:01:00+00:00")
    assert channel_bodies(loaded_entry, fake_network, SOURCE_ID) == [{"command": "hello"}]
    assert channel_bodies(loaded_entry, fake_network, PRODUCER_ID) == [{"command": "hello"}]

    set_meters(hass, pv=121.0, inverter=231.0, house=5000.75)
    await next_period(hass, freezer, "2025-03-01T12:02:00+00:00")

    period = {
        "startTime": ms("2025-03-01T12:01:00+00:00"),
        "endTime": ms("2025-03-01T12:02:00+00:00"),
    }
    assert channel_bodies(loaded_entry, fake_network, SOURCE_ID)[1:] == [
        {"command": "output", **period, "output": 0.5}
    ]
    producer = loaded_entry.runtime_data.participants[PRODUCER_ID]
    # The producer read its source's reading in the same period: inverter 1.0 + source 0.5.
    assert channel_bodies(loaded_entry, fake_network, PRODUCER_ID)[1:] == [
        {
            "command": "output",
            **period,
            "output": 1.5,
            "producerPrice": 50,
            "paymentIdOrAddress": producer.payment_address,
        }
    ]
    assert channel_bodies(loaded_entry, fake_network, CONSUMER_ID)[1:] == [
        {"command": "usage", **period, "usage": 0.5}
    ]
    assert state(hass, "sensor.roof_pv_energy_published") == "0.5"
    assert state(hass, "sensor.inverter_energy_published") == "1.5"
    assert state(hass, "sensor.house_energy_published") == "0.5"
    published = hass.states.get("sensor.house_energy_published")
    assert published is not None
    assert published.attributes["last_publish"] == "2025-03-01T12:02:00+00:00"

    # A meter that is unavailable publishes nothing; its energy arrives later.
    hass.states.async_set("sensor.house_energy", STATE_UNAVAILABLE)
    await next_period(hass, freezer, "2025-03-01T12:03:00+00:00")
    assert len(channel_bodies(loaded_entry, fake_network, CONSUMER_ID)) == 2
    hass.states.async_set("sensor.house_energy", "5001.75", ENERGY_ATTRIBUTES)
    await next_period(hass, freezer, "2025-03-01T12:04:00+00:00")
    assert channel_bodies(loaded_entry, fake_network, CONSUMER_ID)[2:] == [
        usage_body("2025-03-01T12:02:00+00:00", "2025-03-01T12:04:00+00:00", 1.0)
    ]


async def test_absurd_and_reset_meters(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A glitch is not published; a reset publishes the energy since the reset."""
    await next_period(hass, freezer, "2025-03-01T12:01:00+00:00")
    # 100 kW for a minute is at most 1.67 kWh.
    set_meters(hass, pv=1000.0, inverter=230.0, house=1.0)
    await next_period(hass, freezer, "2025-03-01T12:02:00+00:00")
    assert "sensor.pv_energy jumped to 1000.0" in caplog.text
    assert "sensor.house_energy was reset" in caplog.text
    assert channel_bodies(loaded_entry, fake_network, SOURCE_ID) == [{"command": "hello"}]
    assert channel_bodies(loaded_entry, fake_network, CONSUMER_ID)[1]["usage"] == 1.0
    # The inverter did not move and its source has no reading for the period: once the
    # producer has waited long enough for one, it publishes zero output.
    assert channel_bodies(loaded_entry, fake_network, PRODUCER_ID) == [{"command": "hello"}]
    await poll(hass, freezer)
    assert channel_bodies(loaded_entry, fake_network, PRODUCER_ID)[1]["output"] == 0.0

    set_meters(hass, pv=999.0, inverter=230.0, house=1.0)
    await next_period(hass, freezer, "2025-03-01T12:03:00+00:00")
    assert channel_bodies(loaded_entry, fake_network, SOURCE_ID)[1]["output"] == 0.0


async def test_outage_queues_durably_and_sends_in_order(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """Readings made while the node is down survive a restart and go out in order."""
    await next_period(hass, freezer, "2025-03-01T12:01:00+00:00")
    fake_network.node_up = False
    set_meters(hass, pv=121.0, inverter=231.0, house=5001.0)
    await next_period(hass, freezer, "2025-03-01T12:02:00+00:00")
    set_meters(hass, pv=121.5, inverter=231.0, house=5001.5)
    await next_period(hass, freezer, "2025-03-01T12:03:00+00:00")
    assert state(hass, "sensor.roof_pv_queued_messages") == "2"
    assert state(hass, "sensor.house_queued_messages") == "2"
    assert state(hass, "sensor.roof_pv_energy_published") == "0.0"

    # Home Assistant restarts while the node is still down.
    assert await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert state(hass, "sensor.roof_pv_queued_messages") == "2"

    fake_network.node_up = True
    await poll(hass, freezer)
    assert state(hass, "sensor.roof_pv_queued_messages") == "0"
    outputs = [body["output"] for body in channel_bodies(loaded_entry, fake_network, SOURCE_ID)[1:]]
    assert outputs == [0.5, 0.5]
    usages = [body["usage"] for body in channel_bodies(loaded_entry, fake_network, CONSUMER_ID)[1:]]
    assert usages == [0.75, 0.5]
    assert state(hass, "sensor.roof_pv_energy_published") == "1.0"

    # While the node was down the producer could not read its source: its periods
    # waited, and went out with the source's readings of the same period once it
    # could (inverter 1.0 + source 0.5, then 0.0 + 0.5), each in its own period.
    set_meters(hass, pv=121.5, inverter=231.0, house=5001.5)
    await next_period(hass, freezer, "2025-03-01T12:04:00+00:00")
    bodies = channel_bodies(loaded_entry, fake_network, PRODUCER_ID)[1:]
    assert [(body["output"], body["endTime"]) for body in bodies] == [
        (1.5, ms("2025-03-01T12:02:00+00:00")),
        (0.5, ms("2025-03-01T12:03:00+00:00")),
        (0.0, ms("2025-03-01T12:04:00+00:00")),
    ]


def logged(caplog: pytest.LogCaptureFixture, text: str) -> int:
    """How many log records say ``text`` (their own message, not a traceback attached)."""
    return sum(text in record.getMessage() for record in caplog.records)


async def test_network_sensors_unavailable_and_repair_issue(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    issue_registry: ir.IssueRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Figures from the grid go unavailable with one log line; a lasting outage raises an issue."""
    fake_network.balances_by_address.clear()
    await poll(hass, freezer)
    assert state(hass, "sensor.house_wallet_balance") == "0"
    fake_network.grid_up = False
    for _ in range(3):
        await poll(hass, freezer)
    assert state(hass, "sensor.house_wallet_balance") == STATE_UNAVAILABLE
    assert state(hass, "sensor.house_amount_owed") == STATE_UNAVAILABLE
    assert state(hass, "sensor.grid_consensus_price") == STATE_UNAVAILABLE
    # Local figures stay.
    assert state(hass, "sensor.house_energy_published") == "0.0"
    # One log line (counted by message: Home Assistant 2026.x adds the traceback at debug level).
    assert logged(caplog, "cannot be reached") == 1
    assert not issue_registry.async_get_issue(DOMAIN, f"grid_unreachable_{ENTRY_ID}")

    freezer.tick(timedelta(minutes=15))
    await poll(hass, freezer)
    issue = issue_registry.async_get_issue(DOMAIN, f"grid_unreachable_{ENTRY_ID}")
    assert issue is not None
    assert issue.translation_placeholders == {
        "title": "grid.example:8080",
        "grid_url": fake_network.grid_url,
        "node_url": fake_network.node_url,
        "minutes": "15",
    }

    fake_network.grid_up = True
    await poll(hass, freezer)
    assert state(hass, "sensor.house_wallet_balance") == "0"
    assert not issue_registry.async_get_issue(DOMAIN, f"grid_unreachable_{ENTRY_ID}")
    assert logged(caplog, "recovered") == 1

    fake_network.node_up = False
    await poll(hass, freezer)
    assert "node at http://grid.example:14265 cannot be reached: node down" in caplog.text
    assert state(hass, "sensor.house_wallet_balance") == STATE_UNAVAILABLE


async def test_consumer_follows_payment_requests(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The latest payment request on the grid's return channel is what is owed."""
    assert state(hass, "sensor.house_amount_owed") == STATE_UNKNOWN
    fake_network.grid_publish(
        "consumer-registration-1",
        {"command": "payment-request", "owed": 345, "usage": 1.5, "paymentIdOrAddress": "W" * 81},
    )
    fake_network.grid_publish("consumer-registration-1", {"command": "nonsense"})
    await poll(hass, freezer)
    assert state(hass, "sensor.house_amount_owed") == "345"
    assert "skipping unreadable grid message" in caplog.text

    fake_network.grid_publish(
        "consumer-registration-1",
        {"command": "payment-request", "owed": 400, "usage": 2.0, "paymentIdOrAddress": "W" * 81},
    )
    fake_network.grid_publish("consumer-registration-1", {"command": "goodbye"})
    await poll(hass, freezer)
    assert state(hass, "sensor.house_amount_owed") == "400"
    consumer = loaded_entry.runtime_data.participants[CONSUMER_ID]
    assert consumer.state.return_channel is not None
    assert consumer.state.return_channel.ended
    # An ended channel is not read any more.
    fake_network.grid_publish(
        "consumer-registration-1",
        {"command": "payment-request", "owed": 1, "usage": 2.0, "paymentIdOrAddress": "W" * 81},
    )
    await poll(hass, freezer)
    assert state(hass, "sensor.house_amount_owed") == "400"


async def test_wallet_and_payments_received(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """Balances come from the node: the consumer's wallet, the producer's payment address."""
    participants = loaded_entry.runtime_data.participants
    consumer = participants[CONSUMER_ID]
    producer = participants[PRODUCER_ID]
    fake_network.balances_by_address[consumer.wallet_address] = 1000
    fake_network.balances_by_address[producer.payment_address] = 250
    await poll(hass, freezer)
    assert state(hass, "sensor.house_wallet_balance") == "1000"
    assert state(hass, "sensor.inverter_payments_received") == "250"
    assert state(hass, "sensor.inverter_registered_sources") == "1"
    for entity_id, address in (
        ("sensor.house_wallet_address", consumer.wallet_address),
        ("sensor.inverter_wallet_address", producer.payment_address),
    ):
        # The device page shows it shortened; the attribute holds all 81 trytes.
        wallet = hass.states.get(entity_id)
        assert wallet is not None
        assert address is not None
        assert wallet.attributes["address"] == address
        assert wallet.state == f"{address[:9]}…{address[-9:]}"


async def test_registration_refused_then_accepted(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    fake_network: FakeNetwork,
    trading_entry: MockConfigEntry,
    meters: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused registration is logged once and retried until the grid accepts it."""
    fake_network.refuse_registrations = "The parameter 'itemName' has an invalid value."
    fake_network.issue_tokens = True
    assert await hass.config_entries.async_setup(trading_entry.entry_id)
    await hass.async_block_till_done()
    await poll(hass, freezer)
    assert caplog.text.count("registration refused") == 2
    assert fake_network.registrations == {}

    fake_network.refuse_registrations = None
    await poll(hass, freezer)
    assert set(fake_network.registrations) == {"producer-registration-1", "consumer-registration-1"}
    assert "House: registered" in caplog.text
    consumer = trading_entry.runtime_data.participants[CONSUMER_ID]
    assert consumer.state.registration_token == "token-consumer-registration-1"


async def test_garbage_on_a_source_channel_is_skipped(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A message that is not a source reading is logged and passed over."""
    coordinator = loaded_entry.runtime_data
    source = coordinator.participants[SOURCE_ID]
    producer = coordinator.participants[PRODUCER_ID]
    async with source.lock:
        await source._enqueue_locked(  # a buggy publisher's message
            ConsumerUsage(start_time=1, end_time=2, usage=1.0), 0.0
        )
        await source._flush_locked()
    await poll(hass, freezer)
    assert "skipping unreadable message of source Roof PV" in caplog.text
    assert producer.state.source_readings == []
    assert producer.state.followed[0].next_root != source.channel_root


@pytest.mark.parametrize(
    ("reported", "shown"),
    [
        (42.5, "42.5"),
        (40, "40.0"),
        (None, STATE_UNKNOWN),
        ("42", STATE_UNKNOWN),
        (True, STATE_UNKNOWN),
        (-1, STATE_UNKNOWN),
        (float("inf"), STATE_UNKNOWN),
    ],
)
async def test_consensus_price_from_the_grid(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    reported: Any,
    shown: str,
) -> None:
    """The grid's health answer carries the last slot's consensus price."""
    fake_network.health["consensusPrice"] = reported
    await poll(hass, freezer)
    assert state(hass, "sensor.grid_consensus_price") == shown


async def test_registration_outages(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    fake_network: FakeNetwork,
    trading_entry: MockConfigEntry,
    meters: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unreachable grid fails the poll; an unreachable remote producer only its source."""
    subentry = trading_entry.subentries[SOURCE_ID]
    hass.config_entries.async_update_subentry(
        trading_entry, subentry, data={**subentry.data, "producer_url": "http://neighbour:8123/p"}
    )
    fake_network.registration_outage = True
    fake_network.remote_producer_up = False
    assert await hass.config_entries.async_setup(trading_entry.entry_id)
    await hass.async_block_till_done()
    coordinator = trading_entry.runtime_data
    assert not coordinator.last_update_success
    assert "The grid at http://grid.example:8080 cannot be reached: connection reset" in caplog.text

    fake_network.registration_outage = False
    await poll(hass, freezer)
    assert coordinator.last_update_success
    assert "Roof PV: registration refused: producer unreachable" in caplog.text
    assert not coordinator.participants[SOURCE_ID].registered

    fake_network.remote_producer_up = True
    await poll(hass, freezer)
    assert coordinator.participants[SOURCE_ID].registered


async def test_new_meter_starts_from_a_new_baseline(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """Wrapping another sensor never publishes the difference between two meters."""
    await next_period(hass, freezer, "2025-03-01T12:01:00+00:00")
    hass.states.async_set("sensor.other_house_energy", "10.0", ENERGY_ATTRIBUTES)
    subentry = loaded_entry.subentries[CONSUMER_ID]
    hass.config_entries.async_update_subentry(
        loaded_entry, subentry, data={**subentry.data, "meter": "sensor.other_house_energy"}
    )
    await hass.async_block_till_done()
    consumer = loaded_entry.runtime_data.participants[CONSUMER_ID]
    assert consumer.state.meter is None
    await next_period(hass, freezer, "2025-03-01T12:02:00+00:00")
    assert channel_bodies(loaded_entry, fake_network, CONSUMER_ID) == [{"command": "hello"}]
    hass.states.async_set("sensor.other_house_energy", "10.5", ENERGY_ATTRIBUTES)
    await next_period(hass, freezer, "2025-03-01T12:03:00+00:00")
    assert channel_bodies(loaded_entry, fake_network, CONSUMER_ID)[1]["usage"] == 0.5


async def test_repair_issue_counts_the_outage_from_before_a_restart(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
    issue_registry: ir.IssueRegistry,
) -> None:
    """The 15 minutes before the repair issue run from when the outage began, also when
    Home Assistant restarted in between."""
    issue_id = f"grid_unreachable_{ENTRY_ID}"
    fake_network.grid_up = False
    await poll(hass, freezer)
    freezer.tick(timedelta(minutes=10))
    await poll(hass, freezer)
    assert not issue_registry.async_get_issue(DOMAIN, issue_id)

    assert await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    freezer.tick(timedelta(minutes=4))
    await poll(hass, freezer)
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is not None

    fake_network.grid_up = True
    await poll(hass, freezer)
    assert not issue_registry.async_get_issue(DOMAIN, issue_id)
    # Back: a later outage starts its own 15 minutes, after a restart too.
    assert await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    fake_network.grid_up = False
    await poll(hass, freezer)
    assert not issue_registry.async_get_issue(DOMAIN, issue_id)


@pytest.mark.usefixtures("meters")
async def test_period_follows_the_grids_slot(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    fake_network: FakeNetwork,
    trading_entry: MockConfigEntry,
) -> None:
    """Without an override the period is the slot length from the grid's health answer:
    followed when it changes, kept for a restart while the grid is away."""
    options = {k: v for k, v in trading_entry.options.items() if k != "publish_interval"}
    hass.config_entries.async_update_entry(trading_entry, options=options)
    fake_network.health["slotSeconds"] = 120
    freezer.move_to("2025-03-01T12:00:10+00:00")
    assert await hass.config_entries.async_setup(trading_entry.entry_id)
    await hass.async_block_till_done()
    assert trading_entry.runtime_data.publish_interval == 120

    await next_period(hass, freezer, "2025-03-01T12:02:00+00:00")  # the baselines
    set_meters(hass, pv=121.0, inverter=231.0, house=5000.75)
    await next_period(hass, freezer, "2025-03-01T12:03:00+00:00")
    assert channel_bodies(trading_entry, fake_network, CONSUMER_ID)[1:] == []
    await next_period(hass, freezer, "2025-03-01T12:04:00+00:00")
    assert channel_bodies(trading_entry, fake_network, CONSUMER_ID)[1:] == [
        usage_body("2025-03-01T12:02:00+00:00", "2025-03-01T12:04:00+00:00", 0.5)
    ]

    # The grid's slot changes: the next period is one of the new length.
    fake_network.health["slotSeconds"] = 60
    await poll(hass, freezer)
    assert trading_entry.runtime_data.publish_interval == 60
    set_meters(hass, pv=121.0, inverter=231.0, house=5001.0)
    await next_period(hass, freezer, "2025-03-01T12:05:00+00:00")
    assert channel_bodies(trading_entry, fake_network, CONSUMER_ID)[-1]["endTime"] == ms(
        "2025-03-01T12:05:00+00:00"
    )

    # A restart while the grid is away keeps the grid's last slot.
    fake_network.grid_up = False
    assert await hass.config_entries.async_reload(trading_entry.entry_id)
    await hass.async_block_till_done()
    assert trading_entry.runtime_data.publish_interval == 60

    # The options form says which period an empty field means.
    result = await hass.config_entries.options.async_init(trading_entry.entry_id)
    assert result["description_placeholders"] == {"grid_period": "60"}
    # The user's period overrides the grid's.
    await hass.config_entries.options.async_configure(
        result["flow_id"], {**options, "publish_interval": 300}
    )
    await hass.async_block_till_done()
    assert trading_entry.runtime_data.publish_interval == 300
    assert trading_entry.runtime_data.grid_period == 60


@pytest.mark.usefixtures("meters")
async def test_period_without_a_slot_from_the_grid(
    hass: HomeAssistant, fake_network: FakeNetwork, trading_entry: MockConfigEntry
) -> None:
    """A grid that does not say its slot (or says nonsense) leaves the 15-minute default."""
    options = {k: v for k, v in trading_entry.options.items() if k != "publish_interval"}
    hass.config_entries.async_update_entry(trading_entry, options=options)
    fake_network.health["slotSeconds"] = True
    assert await hass.config_entries.async_setup(trading_entry.entry_id)
    await hass.async_block_till_done()
    assert trading_entry.runtime_data.publish_interval == 900
