"""The logbook as users read it: what the integration's entities put there."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from homeassistant.components.logbook.helpers import async_determine_event_types
from homeassistant.components.logbook.processor import EventProcessor
from homeassistant.components.recorder import get_instance
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from .conftest import ENERGY_ATTRIBUTES

if TYPE_CHECKING:
    from freezegun.api import FrozenDateTimeFactory
    from homeassistant.components.recorder import Recorder
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.typing import RecorderInstanceContextManager

CONTROL = "sensor.inverter_status"


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: RecorderInstanceContextManager) -> None:
    """The recorder (which the logbook reads) is prepared before Home Assistant starts."""


async def test_publications_stay_out_of_the_logbook(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    loaded_entry: MockConfigEntry,
) -> None:
    """Every period's publication is on Energy published (a sensor with a unit, which the
    logbook skips), not on a timestamp sensor of its own (one logbook entry per period)."""
    hass.config.components.add("frontend")  # a dependency of the logbook; not installed
    assert await async_setup_component(hass, "logbook", {})
    start = dt_util.utcnow()
    for minute in range(1, 6):
        hass.states.async_set("sensor.pv_energy", str(120.5 + minute), ENERGY_ATTRIBUTES)
        # A control: a text sensor's changes are what the logbook does show.
        hass.states.async_set(CONTROL, f"step {minute}")
        moment = dt_util.parse_datetime(f"2025-03-01T12:0{minute}:00+00:00")
        assert moment is not None
        freezer.move_to(moment)
        async_fire_time_changed(hass, moment)
        await hass.async_block_till_done()
    published = hass.states.get("sensor.roof_pv_energy_published")
    assert published is not None
    assert published.attributes["last_publish"] == "2025-03-01T12:05:00+00:00"
    await async_wait_recording_done(hass)
    # What GET /api/logbook answers (its view runs this processor in the recorder's thread).
    processor = EventProcessor(hass, async_determine_event_types(hass, None, None))
    entries = await get_instance(hass).async_add_executor_job(
        processor.get_events, start, dt_util.utcnow()
    )
    assert [entry["state"] for entry in entries if entry.get("entity_id") == CONTROL] == [
        f"step {minute}" for minute in range(2, 6)
    ]
    ours = {
        entity.entity_id
        for entity in er.async_entries_for_config_entry(er.async_get(hass), loaded_entry.entry_id)
    }
    assert [entry for entry in entries if entry.get("entity_id") in ours] == []
    # The sensor with the time itself, for those who enable it, is off by default.
    entity = er.async_get(hass).async_get("sensor.roof_pv_last_publish")
    assert entity is not None
    assert entity.disabled_by is er.RegistryEntryDisabler.INTEGRATION
