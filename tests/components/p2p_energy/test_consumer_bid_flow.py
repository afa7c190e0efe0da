"""A consumer's optional bid (maximum price) in the consumer and household flows."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER
from homeassistant.const import CONF_NAME
from homeassistant.data_entry_flow import FlowResultType, InvalidData

from custom_components.p2p_energy.const import (
    CONF_MAX_PRICE,
    CONF_METER,
    CONF_PRICE,
    CONF_SEED,
    CONF_WALLET_SEED,
)
from custom_components.p2p_energy.participants import participant_config

from .test_config_flow import suggested
from .test_household_flow import (
    GRID_EXPORT,
    GRID_IMPORT,
    by_title,
    connect,
    legacy_grid,
    set_energy_sources,
    set_meter,
    start,
)

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry

pytestmark = pytest.mark.usefixtures("mock_setup_entry")

HOUSE = {CONF_NAME: "House", CONF_METER: "sensor.house_energy"}


async def _consumer_form(
    hass: HomeAssistant, entry: MockConfigEntry, subentry_id: str | None = None
) -> Any:
    context: dict[str, Any] = {"source": SOURCE_USER}
    if subentry_id is not None:
        context = {"source": SOURCE_RECONFIGURE, "subentry_id": subentry_id}
    return await hass.config_entries.subentries.async_init(
        (entry.entry_id, "consumer"), context=context
    )


@pytest.mark.usefixtures("meters")
@pytest.mark.parametrize(("entered", "stored"), [(12.5, 12.5), (0, 0.0), (None, None)])
async def test_a_consumer_bids_or_not(
    hass: HomeAssistant, config_entry: MockConfigEntry, entered: float | None, stored: float | None
) -> None:
    """A bid (0 included) is stored in IOTA per kWh and reaches the engine; empty is no bid."""
    result = await _consumer_form(hass, config_entry)
    user_input = HOUSE if entered is None else HOUSE | {CONF_MAX_PRICE: entered}
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], user_input)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    (subentry,) = config_entry.subentries.values()
    assert subentry.data[CONF_MAX_PRICE] == stored
    config = participant_config(subentry)
    assert config is not None
    assert (config.max_price, config.price) == (stored, None)


@pytest.mark.usefixtures("meters")
@pytest.mark.parametrize("bid", [-1, 1e10, math.inf, "cheap"])
async def test_the_form_refuses_an_implausible_bid(
    hass: HomeAssistant, config_entry: MockConfigEntry, bid: Any
) -> None:
    """Negative, beyond the asking prices' range or no number: the field is marked."""
    result = await _consumer_form(hass, config_entry)
    with pytest.raises(InvalidData) as refused:
        await hass.config_entries.subentries.async_configure(
            result["flow_id"], HOUSE | {CONF_MAX_PRICE: bid}
        )
    assert CONF_MAX_PRICE in refused.value.schema_errors
    assert config_entry.subentries == {}


@pytest.mark.usefixtures("meters")
async def test_a_bid_past_the_selector_is_a_form_error(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Not a number (which the selector's range check lets through) is refused by the flow."""
    result = await _consumer_form(hass, config_entry)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], HOUSE | {CONF_MAX_PRICE: math.nan}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_MAX_PRICE: "invalid_bid"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], HOUSE | {CONF_MAX_PRICE: 20}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.usefixtures("meters")
async def test_reconfigure_changes_and_removes_the_bid(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """The form shows the bid; a new one replaces it, an empty field removes it; keys stay."""
    result = await _consumer_form(hass, config_entry)
    await hass.config_entries.subentries.async_configure(
        result["flow_id"], HOUSE | {CONF_MAX_PRICE: 40}
    )
    (subentry_id,) = config_entry.subentries
    keys = {k: config_entry.subentries[subentry_id].data[k] for k in (CONF_SEED, CONF_WALLET_SEED)}

    for bid in (25.5, None):
        result = await _consumer_form(hass, config_entry, subentry_id)
        assert result["step_id"] == "reconfigure"
        shown = suggested(result["data_schema"].schema, CONF_MAX_PRICE)
        assert shown == config_entry.subentries[subentry_id].data[CONF_MAX_PRICE]
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"], HOUSE if bid is None else HOUSE | {CONF_MAX_PRICE: bid}
        )
        assert result["reason"] == "reconfigure_successful"
        data = config_entry.subentries[subentry_id].data
        assert data[CONF_MAX_PRICE] == bid
        assert {k: data[k] for k in keys} == keys

    result = await _consumer_form(hass, config_entry, subentry_id)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], HOUSE | {CONF_MAX_PRICE: math.nan}
    )
    assert result["errors"] == {CONF_MAX_PRICE: "invalid_bid"}
    assert config_entry.subentries[subentry_id].data[CONF_MAX_PRICE] is None


async def test_the_household_flow_gives_its_consumer_the_bid(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Only the consumer bids; the producer keeps its asking price; NaN is a form error."""
    set_meter(hass, GRID_IMPORT, "Grid import")
    set_meter(hass, GRID_EXPORT, "Grid export")
    await set_energy_sources(hass, [legacy_grid([GRID_IMPORT], [GRID_EXPORT])])
    result = await start(hass, config_entry)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_PRICE: 30, CONF_MAX_PRICE: math.nan}
    )
    assert result["errors"] == {CONF_MAX_PRICE: "invalid_bid"}
    assert config_entry.subentries == {}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_PRICE: 30, CONF_MAX_PRICE: 45}
    )
    assert result["reason"] == "household_created"
    created = by_title(config_entry)
    assert created["Grid import"].data[CONF_MAX_PRICE] == 45
    assert CONF_MAX_PRICE not in created["Grid export"].data
    assert created["Grid export"].data[CONF_PRICE] == 30


@pytest.mark.usefixtures("mock_test_connection")
async def test_connecting_a_grid_sets_up_a_bidding_household(hass: HomeAssistant) -> None:
    set_meter(hass, GRID_IMPORT, "Grid import")
    await set_energy_sources(hass, [legacy_grid([GRID_IMPORT], [])])
    result = await connect(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "energy_household"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_MAX_PRICE: math.nan}
    )
    assert result["errors"] == {CONF_MAX_PRICE: "invalid_bid"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_MAX_PRICE: 8})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert by_title(result["result"])["Grid import"].data[CONF_MAX_PRICE] == 8
