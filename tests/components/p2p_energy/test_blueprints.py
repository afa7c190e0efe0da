"""The automation blueprints, loaded by Home Assistant and exercised on fake sensors."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from homeassistant.components.blueprint import models, schemas
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from homeassistant.util.yaml import load_yaml
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    async_mock_service,
)

from custom_components.p2p_energy.const import DOMAIN

if TYPE_CHECKING:
    from freezegun.api import FrozenDateTimeFactory
    from homeassistant.core import HomeAssistant, ServiceCall

BLUEPRINTS = Path(__file__).resolve().parents[3] / "blueprints" / "automation" / "p2p_energy"
OWED = "sensor.home_amount_owed"
PRICE = "sensor.grid_consensus_price"
LAST_PUBLISH = "sensor.roof_last_publish"
LOAD = "input_boolean.water_heater"
MONETARY = {"device_class": "monetary", "unit_of_measurement": "IOTA"}


@pytest.fixture
async def blueprint_hass(hass: HomeAssistant, tmp_path: Path) -> HomeAssistant:
    """Home Assistant with this repository's blueprints in its configuration folder."""
    hass.config.config_dir = str(tmp_path)
    shutil.copytree(BLUEPRINTS, tmp_path / "blueprints" / "automation" / "p2p_energy")
    assert await async_setup_component(hass, "homeassistant", {})
    return hass


def participant_sensor(
    hass: HomeAssistant, name: str, model: str, key: str, object_id: str
) -> er.RegistryEntry:
    """A sensor of the integration on a participant device named ``name``."""
    entry = MockConfigEntry(domain=DOMAIN, title="Grid")
    entry.add_to_hass(hass)
    identifier = f"{model.lower()}-{name.lower().replace(' ', '-')}"
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, identifier)},
        name=name,
        model=model,
    )
    return er.async_get(hass).async_get_or_create(
        "sensor",
        DOMAIN,
        f"{identifier}-{key}",
        suggested_object_id=object_id,
        config_entry=entry,
        device_id=device.id,
    )


@pytest.fixture
def consumer_device(hass: HomeAssistant) -> str:
    """A consumer device of the integration owning the "Amount owed" sensor."""
    sensor = participant_sensor(hass, "Home", "Consumer", "amount_owed", "home_amount_owed")
    assert sensor.device_id is not None
    return sensor.device_id


async def use_blueprint(hass: HomeAssistant, path: str, inputs: dict[str, Any]) -> None:
    config = {
        "automation": {
            "id": "under_test",
            "alias": "Under test",
            "use_blueprint": {"path": f"p2p_energy/{path}", "input": inputs},
        }
    }
    assert await async_setup_component(hass, "automation", config)
    await hass.async_block_till_done()
    # An invalid blueprint or input leaves no automation behind.
    state = hass.states.get("automation.under_test")
    assert state is not None
    assert state.state == STATE_ON


async def set_state(hass: HomeAssistant, entity_id: str, state: Any, **attributes: Any) -> None:
    hass.states.async_set(entity_id, str(state), attributes)
    await hass.async_block_till_done()


@pytest.mark.parametrize("path", sorted(p.name for p in BLUEPRINTS.glob("*.yaml")))
def test_blueprints_are_valid(path: str) -> None:
    blueprint = models.Blueprint(
        load_yaml(BLUEPRINTS / path), expected_domain="automation", schema=schemas.BLUEPRINT_SCHEMA
    )
    assert blueprint.domain == "automation"
    metadata = blueprint.metadata
    assert metadata["name"].startswith("P2P Energy – ")
    assert metadata["source_url"].endswith(f"/blueprints/automation/p2p_energy/{path}")
    for name, spec in metadata["input"].items():
        assert spec.get("selector"), f"{path}: input {name} has no selector"
        assert spec.get("name"), f"{path}: input {name} has no name"


def test_there_are_the_five_blueprints() -> None:
    assert sorted(p.name for p in BLUEPRINTS.glob("*.yaml")) == [
        "cheapest_window.yaml",
        "flexible_load.yaml",
        "notify_bill.yaml",
        "pay_bill.yaml",
        "source_stopped.yaml",
    ]


async def test_notify_on_each_new_bill(blueprint_hass: HomeAssistant) -> None:
    hass = blueprint_hass
    calls = async_mock_service(hass, "test", "notify")
    await set_state(hass, OWED, 100, **MONETARY)
    await use_blueprint(
        hass,
        "notify_bill.yaml",
        {
            "owed_entity": OWED,
            "threshold": 1000,
            "actions": [
                {
                    "action": "test.notify",
                    "data": {
                        "message": "{{ reason }} {{ increase | int }} {{ owed | int }}",
                    },
                }
            ],
        },
    )
    await set_state(hass, OWED, 150, **MONETARY)
    assert [call.data["message"] for call in calls] == ["bill 50 150"]
    # A payment lowers what is owed: no notification.
    await set_state(hass, OWED, 20, **MONETARY)
    # Coming back from unavailable is not a new bill.
    await set_state(hass, OWED, STATE_UNAVAILABLE)
    await set_state(hass, OWED, 400, **MONETARY)
    assert len(calls) == 1
    await set_state(hass, OWED, 1200, **MONETARY)
    assert [call.data["message"] for call in calls][-1] == "threshold 800 1200"


async def test_notify_only_past_the_threshold(blueprint_hass: HomeAssistant) -> None:
    hass = blueprint_hass
    created = async_mock_service(hass, "persistent_notification", "create")
    await set_state(hass, OWED, 100, **MONETARY)
    await use_blueprint(
        hass,
        "notify_bill.yaml",
        {"owed_entity": OWED, "threshold": 1000, "notify_every_bill": False},
    )
    await set_state(hass, OWED, 600, **MONETARY)
    assert created == []
    await set_state(hass, OWED, 1500, **MONETARY)
    await set_state(hass, OWED, 1800, **MONETARY)
    assert len(created) == 1
    message = " ".join(created[0].data["message"].split())
    assert message == "You owe 1500 IOTA, more than 1000 IOTA."
    assert created[0].data["notification_id"] == "p2p_energy_bill"


async def test_pay_the_bill_above_the_threshold(
    blueprint_hass: HomeAssistant, consumer_device: str, freezer: FrozenDateTimeFactory
) -> None:
    hass = blueprint_hass
    freezer.move_to("2026-11-27 10:20:00+00:00")
    payments = async_mock_service(hass, DOMAIN, "pay_bill")
    after = async_mock_service(hass, "test", "paid")
    await set_state(hass, OWED, 500, **MONETARY)
    await use_blueprint(
        hass,
        "pay_bill.yaml",
        {
            "owed_entity": OWED,
            "threshold": 1000,
            "after_payment": [{"action": "test.paid", "data": {"owed": "{{ owed | int }}"}}],
        },
    )
    await set_state(hass, OWED, 900, **MONETARY)
    assert payments == []
    await set_state(hass, OWED, 1300, **MONETARY)
    assert [call.data for call in payments] == [{"device_id": consumer_device}]
    assert [call.data for call in after] == [{"owed": 1300}]
    # Nothing new before the top of the hour.
    freezer.move_to("2026-11-27 10:59:00+00:00")
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert len(payments) == 1
    # Still owed at the top of the hour (the payment did not go through): retry.
    freezer.move_to("2026-11-27 11:00:00+00:00")
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert len(payments) == 2
    # Paid: the hourly check finds nothing to do.
    await set_state(hass, OWED, 0, **MONETARY)
    freezer.move_to("2026-11-27 12:00:00+00:00")
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert len(payments) == 2


async def test_pay_nothing_for_a_sensor_without_a_consumer(blueprint_hass: HomeAssistant) -> None:
    hass = blueprint_hass
    payments = async_mock_service(hass, DOMAIN, "pay_bill")
    orphan = "sensor.orphan_amount_owed"
    await set_state(hass, orphan, 0, **MONETARY)
    await use_blueprint(hass, "pay_bill.yaml", {"owed_entity": orphan, "threshold": 10})
    await set_state(hass, orphan, 50, **MONETARY)
    assert payments == []


async def test_flexible_load_follows_the_price(blueprint_hass: HomeAssistant) -> None:
    hass = blueprint_hass
    assert await async_setup_component(
        hass, "input_boolean", {"input_boolean": {"water_heater": {"initial": False}}}
    )
    turned: list[ServiceCall] = []
    hass.bus.async_listen("call_service", lambda event: turned.append(event.data["service"]))
    await set_state(hass, PRICE, 45, unit_of_measurement="IOTA/kWh")
    await use_blueprint(
        hass,
        "flexible_load.yaml",
        {"price_entity": PRICE, "load_switch": LOAD, "price_limit": 30},
    )
    assert hass.states.get(LOAD).state == STATE_OFF
    await set_state(hass, PRICE, 25.5, unit_of_measurement="IOTA/kWh")
    assert hass.states.get(LOAD).state == STATE_ON
    # Cheaper still: already on, nothing to do.
    turned.clear()
    await set_state(hass, PRICE, 20, unit_of_measurement="IOTA/kWh")
    assert "turn_on" not in turned
    await set_state(hass, PRICE, 30, unit_of_measurement="IOTA/kWh")
    assert hass.states.get(LOAD).state == STATE_OFF
    await set_state(hass, PRICE, 10, unit_of_measurement="IOTA/kWh")
    assert hass.states.get(LOAD).state == STATE_ON
    await set_state(hass, PRICE, STATE_UNAVAILABLE)
    assert hass.states.get(LOAD).state == STATE_OFF


async def test_flexible_load_can_ride_out_an_unknown_price(blueprint_hass: HomeAssistant) -> None:
    hass = blueprint_hass
    assert await async_setup_component(
        hass, "input_boolean", {"input_boolean": {"water_heater": {"initial": True}}}
    )
    await set_state(hass, PRICE, 10, unit_of_measurement="IOTA/kWh")
    await use_blueprint(
        hass,
        "flexible_load.yaml",
        {
            "price_entity": PRICE,
            "load_switch": LOAD,
            "price_limit": 30,
            "off_when_unknown": False,
        },
    )
    await set_state(hass, PRICE, STATE_UNAVAILABLE)
    assert hass.states.get(LOAD).state == STATE_ON
    # Reloading automations checks the price again.
    await set_state(hass, PRICE, 99, unit_of_measurement="IOTA/kWh")
    assert hass.states.get(LOAD).state == STATE_OFF


@pytest.fixture
def roof_pv_sensor(hass: HomeAssistant) -> str:
    """The "Energy published" sensor of a source device named Roof PV."""
    sensor = participant_sensor(
        hass, "Roof PV", "Source", "energy_published", "roof_pv_energy_published"
    )
    return sensor.entity_id


async def publish_energy(hass: HomeAssistant, entity_id: str, energy: float) -> None:
    """The "Energy published" sensor after a publication now."""
    await set_state(
        hass,
        entity_id,
        energy,
        device_class="energy",
        unit_of_measurement="kWh",
        friendly_name="Roof PV Energy published",
        last_publish=dt_util.utcnow().isoformat(),
    )


async def test_warn_when_a_source_goes_silent(
    blueprint_hass: HomeAssistant, freezer: FrozenDateTimeFactory, roof_pv_sensor: str
) -> None:
    """The time comes from Energy published's attribute; the default warning names the
    device: "Roof PV has not published since …"."""
    hass = blueprint_hass
    freezer.move_to("2026-11-27 10:00:00+00:00")
    created = async_mock_service(hass, "persistent_notification", "create")
    published = dt_util.utcnow()
    await publish_energy(hass, roof_pv_sensor, 1.5)
    await use_blueprint(
        hass, "source_stopped.yaml", {"last_publish_entity": roof_pv_sensor, "silence_minutes": 30}
    )
    for minute in (10, 20, 29):
        freezer.move_to(published + timedelta(minutes=minute))
        async_fire_time_changed(hass)
        await hass.async_block_till_done()
    assert created == []
    freezer.move_to(published + timedelta(minutes=31))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    local = dt_util.as_local(published).strftime("%Y-%m-%d %H:%M")
    assert [call.data["message"] for call in created] == [
        f"Roof PV has not published since {local}."
    ]
    # It publishes again: the warning can come back after the next silence.
    await publish_energy(hass, roof_pv_sensor, 1.75)
    freezer.move_to(published + timedelta(minutes=45))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert len(created) == 1


async def test_warn_when_a_last_publish_sensor_stays_unavailable(
    blueprint_hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    hass = blueprint_hass
    created = async_mock_service(hass, "persistent_notification", "create")
    await set_state(hass, LAST_PUBLISH, dt_util.utcnow().isoformat(), device_class="timestamp")
    await use_blueprint(
        hass, "source_stopped.yaml", {"last_publish_entity": LAST_PUBLISH, "silence_minutes": 15}
    )
    await set_state(hass, LAST_PUBLISH, STATE_UNAVAILABLE)
    freezer.tick(timedelta(minutes=16))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert len(created) == 1
    assert created[0].data["title"] == "Energy source silent"
    assert created[0].data["notification_id"] == f"p2p_energy_silent_{LAST_PUBLISH}"
    assert "has not published for 15 minutes" in created[0].data["message"]
