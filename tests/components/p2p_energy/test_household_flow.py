"""The one-step household set-up from the Energy dashboard's meters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from homeassistant.components.energy.data import async_get_manager
from homeassistant.config_entries import SOURCE_HASSIO, SOURCE_USER, ConfigSubentry
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.hassio import HassioServiceInfo

from custom_components.p2p_energy.config_flow import P2PEnergyConfigFlow
from custom_components.p2p_energy.const import (
    CONF_API_TOKEN,
    CONF_GRID_URL,
    CONF_MAX_PRICE,
    CONF_METER,
    CONF_NODE_URL,
    CONF_PRICE,
    CONF_PRODUCER_URL,
    CONF_REGISTRATION_ID,
    CONF_SEED,
    CONF_SIDE_KEY,
    CONF_SOURCES,
    CONF_WALLET_SEED,
    DOMAIN,
)
from custom_components.p2p_energy.credentials import is_trytes_81
from custom_components.p2p_energy.household_flow import (
    EnergyDashboardMeters,
    HouseholdSubentryFlow,
    energy_dashboard_meters,
)

from .conftest import ENERGY_ATTRIBUTES, GRID_URL, NODE_URL

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant
    from homeassistant.helpers import entity_registry as er
    from pytest_homeassistant_custom_component.common import MockConfigEntry

pytestmark = pytest.mark.usefixtures("mock_setup_entry")

GRID_IMPORT, GRID_EXPORT, SOLAR = "sensor.grid_import", "sensor.grid_export", "sensor.roof_solar"


def legacy_grid(imports: list[str], exports: list[str]) -> dict[str, Any]:
    """A grid source as Home Assistant up to 2025 keeps it: lists of meters."""
    return {
        "type": "grid",
        "flow_from": [
            {
                "stat_energy_from": statistic,
                "stat_cost": None,
                "entity_energy_price": None,
                "number_energy_price": 0.3,
            }
            for statistic in imports
        ],
        "flow_to": [
            {
                "stat_energy_to": statistic,
                "stat_compensation": None,
                "entity_energy_price": None,
                "number_energy_price": 0.08,
            }
            for statistic in exports
        ],
        "cost_adjustment_day": 0.0,
    }


def grid_connection(imported: str | None, exported: str | None) -> dict[str, Any]:
    """A grid source as later releases keep it: one per connection."""
    return {
        "type": "grid",
        "stat_energy_from": imported,
        "stat_energy_to": exported,
        "stat_cost": None,
        "stat_compensation": None,
        "entity_energy_price": None,
        "number_energy_price": None,
        "entity_energy_price_export": None,
        "number_energy_price_export": None,
        "cost_adjustment_day": 0.0,
    }


def solar(statistic: str) -> dict[str, Any]:
    return {"type": "solar", "stat_energy_from": statistic, "config_entry_solar_forecast": None}


async def set_energy_sources(hass: HomeAssistant, sources: list[dict[str, Any]]) -> None:
    """Configure the Energy dashboard, as its settings page does through the manager."""
    manager = await async_get_manager(hass)
    await manager.async_update(
        {"energy_sources": sources, "device_consumption": [], "device_consumption_water": []}
    )


def set_meter(hass: HomeAssistant, entity_id: str, name: str, **attributes: Any) -> None:
    hass.states.async_set(
        entity_id, "10.0", ENERGY_ATTRIBUTES | {"friendly_name": name} | attributes
    )


@pytest.fixture
def dashboard_meters(hass: HomeAssistant) -> None:
    set_meter(hass, GRID_IMPORT, "Grid import")
    set_meter(hass, GRID_EXPORT, "Grid export", unit_of_measurement="Wh")
    set_meter(hass, SOLAR, "Roof solar", state_class="total", last_reset=None)


async def start(hass: HomeAssistant, entry: MockConfigEntry) -> Any:
    return await hass.config_entries.subentries.async_init(
        (entry.entry_id, "household"), context={"source": SOURCE_USER}
    )


def by_title(entry: MockConfigEntry) -> dict[str, ConfigSubentry]:
    return {subentry.title: subentry for subentry in entry.subentries.values()}


def add_subentry(hass: HomeAssistant, entry: MockConfigEntry, kind: str, title: str, meter: str):
    hass.config_entries.async_add_subentry(
        entry,
        ConfigSubentry(data={CONF_METER: meter}, subentry_type=kind, title=title, unique_id=None),
    )


@pytest.mark.usefixtures("dashboard_meters")
async def test_preview_then_consumer_producer_and_sources(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Import meter -> consumer, export meter -> producer of the surplus, panels -> sources."""
    hass.states.async_set("sensor.grid_power", "300", {"unit_of_measurement": "W"})
    await set_energy_sources(
        hass,
        [
            # A power sensor and an external statistic cannot be wrapped.
            legacy_grid([GRID_IMPORT, "sensor.grid_power"], [GRID_EXPORT]),
            solar(SOLAR),
            solar("tibber:solar_production"),
        ],
    )
    result = await start(hass, config_entry)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["description_placeholders"] == {
        "consumers": f"Grid import ({GRID_IMPORT})",
        "producers": f"Grid export ({GRID_EXPORT})",
        "sources": f"Roof solar ({SOLAR})",
        "in_use": "—",
        "unusable": "sensor.grid_power, tibber:solar_production",
    }
    assert list(result["data_schema"].schema) == [CONF_PRICE, CONF_MAX_PRICE]
    assert config_entry.subentries == {}  # a preview creates nothing

    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_PRICE: 42.0}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "household_created"
    assert result["description_placeholders"] == {
        "created": (
            f"Grid import ({GRID_IMPORT}), Grid export ({GRID_EXPORT}), Roof solar ({SOLAR})"
        )
    }
    created = by_title(config_entry)
    assert sorted(created) == ["Grid export", "Grid import", "Roof solar"]
    consumer, producer, source = (
        created["Grid import"],
        created["Grid export"],
        created["Roof solar"],
    )
    assert (consumer.subentry_type, producer.subentry_type, source.subentry_type) == (
        "consumer",
        "producer",
        "source",
    )
    # The same data the manual flows store, with fresh keys for each.
    assert set(consumer.data) == {
        CONF_MAX_PRICE,
        CONF_METER,
        CONF_SEED,
        CONF_SIDE_KEY,
        CONF_REGISTRATION_ID,
        CONF_WALLET_SEED,
    }
    assert consumer.data[CONF_METER] == GRID_IMPORT
    assert producer.data[CONF_METER] == GRID_EXPORT
    assert producer.data[CONF_PRICE] == 42
    assert isinstance(producer.data[CONF_PRICE], int)
    # The producer sells the export meter's surplus only; the panels are not added to it.
    assert producer.data[CONF_SOURCES] == []
    assert len(producer.data[CONF_API_TOKEN]) >= 32
    assert source.data == {
        CONF_METER: SOLAR,
        CONF_PRODUCER_URL: "",
        CONF_SEED: source.data[CONF_SEED],
        CONF_SIDE_KEY: source.data[CONF_SIDE_KEY],
        CONF_REGISTRATION_ID: source.data[CONF_REGISTRATION_ID],
    }
    seeds = [
        subentry.data[key]
        for subentry in created.values()
        for key in (CONF_SEED, CONF_SIDE_KEY, CONF_WALLET_SEED)
        if key in subentry.data
    ]
    assert len(seeds) == 8
    assert all(is_trytes_81(seed) for seed in seeds)
    assert len(set(seeds)) == len(seeds)
    assert len({subentry.data[CONF_REGISTRATION_ID] for subentry in created.values()}) == 3


async def test_several_grid_connections_of_later_releases(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """One consumer per import meter and one producer per export meter; names stay unique."""
    for entity_id in ("sensor.import_t1", "sensor.import_t2"):
        set_meter(hass, entity_id, "Import")
    set_meter(hass, "sensor.export", "Feed-in")
    add_subentry(hass, config_entry, "consumer", "Import", "sensor.elsewhere")
    await set_energy_sources(
        hass,
        [
            grid_connection("sensor.import_t1", "sensor.export"),
            grid_connection("sensor.import_t2", None),
            # Listed twice: wrapped once.
            grid_connection(None, "sensor.export"),
        ],
    )
    result = await start(hass, config_entry)
    assert result["description_placeholders"]["consumers"] == (
        "Import 2 (sensor.import_t1), Import 3 (sensor.import_t2)"
    )
    assert result["description_placeholders"]["producers"] == "Feed-in (sensor.export)"
    assert result["description_placeholders"]["sources"] == "—"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_PRICE: 7}
    )
    assert result["reason"] == "household_created"
    created = by_title(config_entry)
    assert {title: subentry.data[CONF_METER] for title, subentry in created.items()} == {
        "Import": "sensor.elsewhere",
        "Import 2": "sensor.import_t1",
        "Import 3": "sensor.import_t2",
        "Feed-in": "sensor.export",
    }


@pytest.mark.usefixtures("dashboard_meters")
async def test_import_only_needs_no_price(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Without a return-to-grid meter the preview is a plain confirmation."""
    await set_energy_sources(hass, [legacy_grid([GRID_IMPORT], [])])
    result = await start(hass, config_entry)
    assert list(result["data_schema"].schema) == [CONF_MAX_PRICE]
    assert result["description_placeholders"]["producers"] == "—"
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], {})
    assert result["reason"] == "household_created"
    assert [(s.subentry_type, s.title) for s in config_entry.subentries.values()] == [
        ("consumer", "Grid import")
    ]


@pytest.mark.usefixtures("dashboard_meters")
async def test_meters_already_wrapped_are_left_out(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    add_subentry(hass, config_entry, "consumer", "House", GRID_IMPORT)
    await set_energy_sources(hass, [legacy_grid([GRID_IMPORT], [GRID_EXPORT]), solar(SOLAR)])
    result = await start(hass, config_entry)
    placeholders = result["description_placeholders"]
    assert placeholders["consumers"] == "—"
    assert placeholders["in_use"] == GRID_IMPORT
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_PRICE: 10}
    )
    assert sorted(by_title(config_entry)) == ["Grid export", "House", "Roof solar"]


async def test_energy_dashboard_not_configured(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    result = await start(hass, config_entry)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "energy_not_configured"


@pytest.mark.usefixtures("dashboard_meters")
@pytest.mark.parametrize(
    "sources",
    [
        [],
        [solar(SOLAR)],
        [legacy_grid([], [])],
        [grid_connection(None, None), {"type": "gas", "stat_energy_from": "sensor.gas"}],
    ],
    ids=["empty", "solar_only", "empty_legacy_grid", "power_only_grid"],
)
async def test_no_grid_meter(
    hass: HomeAssistant, config_entry: MockConfigEntry, sources: list[dict[str, Any]]
) -> None:
    await set_energy_sources(hass, sources)
    result = await start(hass, config_entry)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_grid_meter"
    assert config_entry.subentries == {}


async def test_nothing_to_set_up(hass: HomeAssistant, config_entry: MockConfigEntry) -> None:
    """Grid meters already wrapped or with wrong units; the panels alone trade nothing."""
    set_meter(hass, GRID_IMPORT, "Grid import")
    hass.states.async_set("sensor.export_power", "20", {"unit_of_measurement": "kW"})
    set_meter(hass, "sensor.export_daily", "Daily", state_class="measurement")
    set_meter(hass, SOLAR, "Roof solar")
    add_subentry(hass, config_entry, "consumer", "House", GRID_IMPORT)
    await set_energy_sources(
        hass,
        [
            legacy_grid(
                [GRID_IMPORT, "sensor.missing"], ["sensor.export_power", "sensor.export_daily"]
            ),
            solar(SOLAR),
        ],
    )
    result = await start(hass, config_entry)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "nothing_to_set_up"
    assert result["description_placeholders"] == {
        "in_use": GRID_IMPORT,
        "unusable": "sensor.missing, sensor.export_power, sensor.export_daily",
    }
    assert len(config_entry.subentries) == 1


@pytest.mark.usefixtures("dashboard_meters")
async def test_changes_while_the_preview_is_open(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Nothing is created that the user did not see; the new preview is shown instead."""
    await set_energy_sources(hass, [legacy_grid([GRID_IMPORT], [GRID_EXPORT])])
    result = await start(hass, config_entry)
    add_subentry(hass, config_entry, "consumer", "House", GRID_IMPORT)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_PRICE: 10}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "plan_changed"}
    assert result["description_placeholders"]["consumers"] == "—"
    assert len(config_entry.subentries) == 1

    # The meters may also go away: then the flow says why it cannot go on.
    await set_energy_sources(hass, [])
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_PRICE: 10}
    )
    assert result["reason"] == "no_grid_meter"
    assert len(config_entry.subentries) == 1


async def test_meter_without_state_is_named_from_the_registry(
    hass: HomeAssistant, config_entry: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """A meter whose integration is still starting is named as the registry calls it."""
    for unique_id, name in (("import", "Smart meter import"), ("export", None)):
        entity_registry.async_get_or_create(
            "sensor",
            "smart_meter",
            unique_id,
            suggested_object_id=f"smart_meter_{unique_id}",
            original_name=name,
            unit_of_measurement="kWh",
            capabilities={"state_class": "total_increasing"},
        )
    await set_energy_sources(
        hass, [legacy_grid(["sensor.smart_meter_import"], ["sensor.smart_meter_export"])]
    )
    result = await start(hass, config_entry)
    assert result["description_placeholders"]["consumers"] == (
        "Smart meter import (sensor.smart_meter_import)"
    )
    assert result["description_placeholders"]["producers"] == (
        "sensor.smart_meter_export (sensor.smart_meter_export)"
    )


async def test_household_is_no_subentry_of_its_own(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """The household flow creates participants and offers no reconfiguration."""
    flows = P2PEnergyConfigFlow.async_get_supported_subentry_types(config_entry)
    assert flows["household"] is HouseholdSubentryFlow
    assert not hasattr(HouseholdSubentryFlow, "async_step_reconfigure")
    assert hasattr(flows["consumer"], "async_step_reconfigure")


def test_energy_dashboard_meters_of_both_formats() -> None:
    legacy = {"energy_sources": [legacy_grid(["sensor.a", "sensor.a"], ["sensor.b"])]}
    unified = {
        "energy_sources": [
            grid_connection("sensor.a", "sensor.b"),
            solar("sensor.c"),
            {"type": "battery", "stat_energy_from": "sensor.d", "stat_energy_to": "sensor.e"},
        ]
    }
    assert energy_dashboard_meters(legacy) == EnergyDashboardMeters(("sensor.a",), ("sensor.b",))
    assert energy_dashboard_meters(unified) == EnergyDashboardMeters(
        ("sensor.a",), ("sensor.b",), ("sensor.c",)
    )
    assert energy_dashboard_meters({}) == EnergyDashboardMeters()


# While connecting a grid ------------------------------------------------------------------


async def connect(hass: HomeAssistant) -> Any:
    """The main flow up to its answer after a working connection."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    return await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_GRID_URL: GRID_URL}
    )


@pytest.mark.usefixtures("dashboard_meters", "mock_test_connection")
async def test_connecting_a_grid_sets_up_the_household_in_the_same_step(
    hass: HomeAssistant,
) -> None:
    """The new entry comes with its participants: no subentry added later, no reload."""
    await set_energy_sources(hass, [legacy_grid([GRID_IMPORT], [GRID_EXPORT]), solar(SOLAR)])
    result = await connect(hass)
    assert result["type"] is FlowResultType.MENU
    assert result["step_id"] == "energy_dashboard"
    assert result["menu_options"] == ["energy_household", "connect_only"]
    assert result["description_placeholders"]["producers"] == f"Grid export ({GRID_EXPORT})"

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "energy_household"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "energy_household"
    assert list(result["data_schema"].schema) == [CONF_PRICE, CONF_MAX_PRICE]
    assert result["description_placeholders"]["sources"] == f"Roof solar ({SOLAR})"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_PRICE: 33})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    assert entry.data == {CONF_GRID_URL: GRID_URL, CONF_NODE_URL: NODE_URL}
    created = by_title(entry)
    assert {title: s.subentry_type for title, s in created.items()} == {
        "Grid import": "consumer",
        "Grid export": "producer",
        "Roof solar": "source",
    }
    assert created["Grid export"].data[CONF_PRICE] == 33
    assert created["Grid export"].data[CONF_SOURCES] == []
    assert is_trytes_81(created["Grid import"].data[CONF_WALLET_SEED])


@pytest.mark.usefixtures("dashboard_meters", "mock_test_connection")
async def test_connecting_a_grid_only(hass: HomeAssistant) -> None:
    await set_energy_sources(hass, [legacy_grid([GRID_IMPORT], [])])
    result = await connect(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "connect_only"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "grid.example:8080"
    assert result["result"].subentries == {}


@pytest.mark.usefixtures("mock_test_connection")
async def test_connecting_without_a_usable_dashboard_creates_the_entry_at_once(
    hass: HomeAssistant,
) -> None:
    hass.states.async_set("sensor.grid_power", "300", {"unit_of_measurement": "W"})
    await set_energy_sources(hass, [legacy_grid(["sensor.grid_power"], [])])
    result = await connect(hass)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].subentries == {}


@pytest.mark.usefixtures("dashboard_meters", "mock_test_connection")
async def test_connecting_while_the_dashboard_changes(hass: HomeAssistant) -> None:
    """A changed plan is shown again before anything is created; a vanished one aborts."""
    await set_energy_sources(hass, [legacy_grid([GRID_IMPORT], [GRID_EXPORT])])
    result = await connect(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "energy_household"}
    )
    set_meter(hass, GRID_EXPORT, "Grid export", unit_of_measurement="W")
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_PRICE: 5})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "plan_changed"}
    assert result["description_placeholders"]["unusable"] == GRID_EXPORT
    assert list(result["data_schema"].schema) == [CONF_MAX_PRICE]  # no producer left to ask

    await set_energy_sources(hass, [])
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_grid_meter"
    assert hass.config_entries.async_entries(DOMAIN) == []


@pytest.mark.usefixtures("dashboard_meters", "mock_test_connection")
async def test_discovered_add_on_offers_the_household(hass: HomeAssistant) -> None:
    await set_energy_sources(hass, [legacy_grid([GRID_IMPORT], [])])
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_HASSIO},
        data=HassioServiceInfo(
            config={"host": "grid-addon", "port": 8080},
            name="P2P Energy Grid",
            slug="abcd1234_p2p_energy_grid",
            uuid="1234",
        ),
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.MENU
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "energy_household"}
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "P2P Energy Grid"
    assert [s.title for s in result["result"].subentries.values()] == ["Grid import"]
