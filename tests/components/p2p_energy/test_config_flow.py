"""Config flow, options flow and subentry flows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from homeassistant.config_entries import (
    SOURCE_HASSIO,
    SOURCE_RECONFIGURE,
    SOURCE_USER,
    ConfigSubentryData,
)
from homeassistant.const import CONF_NAME
from homeassistant.data_entry_flow import FlowResultType, InvalidData
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.p2p_energy.connection import default_node_url, normalize_url
from custom_components.p2p_energy.const import (
    CONF_API_TOKEN,
    CONF_FORECAST_ENTITY,
    CONF_GRID_URL,
    CONF_MAX_POWER,
    CONF_MAX_PRICE,
    CONF_METER,
    CONF_MIN_WEIGHT_MAGNITUDE,
    CONF_NODE_URL,
    CONF_PRICE,
    CONF_PRODUCER_URL,
    CONF_PROOF_OF_WORK,
    CONF_PUBLISH_INTERVAL,
    CONF_REGISTRATION_ID,
    CONF_SEED,
    CONF_SIDE_KEY,
    CONF_SOURCES,
    CONF_WALLET_SEED,
    DOMAIN,
    POW_LOCAL,
    POW_NODE,
)
from custom_components.p2p_energy.credentials import is_trytes_81
from custom_components.p2p_energy.protocol.errors import GridUnavailableError, NodeUnavailableError

from .conftest import GRID_URL, NODE_URL

if TYPE_CHECKING:
    from unittest.mock import AsyncMock

    from homeassistant.core import HomeAssistant
    from homeassistant.helpers import entity_registry as er

pytestmark = pytest.mark.usefixtures("mock_setup_entry")


def _hassio_info(config: dict[str, Any], uuid: str = "1234") -> HassioServiceInfo:
    return HassioServiceInfo(
        config=config, name="P2P Energy Grid", slug="abcd1234_p2p_energy_grid", uuid=uuid
    )


# Main flow ----------------------------------------------------------------------------


async def test_user_flow_derives_node_url(
    hass: HomeAssistant, mock_test_connection: AsyncMock
) -> None:
    """A grid URL alone is normalised and its node assumed on port 14265."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_GRID_URL: " HTTP://Grid.Example:8080/ "}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "grid.example:8080"
    assert result["data"] == {CONF_GRID_URL: GRID_URL, CONF_NODE_URL: NODE_URL}
    assert result["result"].unique_id == GRID_URL
    mock_test_connection.assert_awaited_once_with(hass, GRID_URL, NODE_URL)


async def test_user_flow_with_node_url(
    hass: HomeAssistant, mock_test_connection: AsyncMock
) -> None:
    """An explicit node URL is kept (normalised)."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_GRID_URL: "https://grid.example/api/", CONF_NODE_URL: "http://[::1]:14265"},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {
        CONF_GRID_URL: "https://grid.example/api",
        CONF_NODE_URL: "http://[::1]:14265",
    }


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (GridUnavailableError("refused"), "cannot_connect_grid"),
        (NodeUnavailableError("timeout"), "cannot_connect_node"),
    ],
)
async def test_user_flow_connection_errors(
    hass: HomeAssistant, mock_test_connection: AsyncMock, error: Exception, message: str
) -> None:
    """A failed connection test shows an error; the flow recovers once it works."""
    mock_test_connection.side_effect = error
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_GRID_URL: GRID_URL}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": message}

    mock_test_connection.side_effect = None
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_GRID_URL: GRID_URL}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    ("user_input", "field"),
    [
        ({CONF_GRID_URL: "ftp://grid.example"}, CONF_GRID_URL),
        ({CONF_GRID_URL: "grid.example"}, CONF_GRID_URL),
        ({CONF_GRID_URL: "http://grid.example:99999"}, CONF_GRID_URL),
        ({CONF_GRID_URL: GRID_URL, CONF_NODE_URL: "node:14265"}, CONF_NODE_URL),
    ],
)
async def test_user_flow_invalid_urls(
    hass: HomeAssistant,
    mock_test_connection: AsyncMock,
    user_input: dict[str, str],
    field: str,
) -> None:
    """Malformed URLs are refused before anything is contacted."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {field: "invalid_url"}
    mock_test_connection.assert_not_awaited()


async def test_user_flow_already_configured(
    hass: HomeAssistant, mock_test_connection: AsyncMock, config_entry: MockConfigEntry
) -> None:
    """The same grid cannot be added twice."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_GRID_URL: "http://GRID.example:8080"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


def test_url_helpers() -> None:
    """URL normalisation keeps paths and IPv6 hosts intact."""
    assert normalize_url("http://[FE80::1]:8080/x/") == "http://[fe80::1]:8080/x"
    assert default_node_url("https://[fe80::1]:8443/grid") == "http://[fe80::1]:14265"


# Supervisor discovery -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"host": "local-p2p-grid", "port": 8080},
            {
                CONF_GRID_URL: "http://local-p2p-grid:8080",
                CONF_NODE_URL: "http://local-p2p-grid:14265",
            },
        ),
        (
            {"host": "local-p2p-grid", "port": "8080", "node_port": 14266},
            {
                CONF_GRID_URL: "http://local-p2p-grid:8080",
                CONF_NODE_URL: "http://local-p2p-grid:14266",
            },
        ),
        (
            {CONF_GRID_URL: "http://10.0.0.2:8080", CONF_NODE_URL: "http://10.0.0.3:14265"},
            {CONF_GRID_URL: "http://10.0.0.2:8080", CONF_NODE_URL: "http://10.0.0.3:14265"},
        ),
        (
            # What the project's add-on announces.
            {
                "host": "abcd1234-p2p-energy-grid",
                "port": 8080,
                "node_port": 14265,
                "grid_url": "http://abcd1234-p2p-energy-grid:8080",
                "node_url": "http://abcd1234-p2p-energy-grid:14265",
            },
            {
                CONF_GRID_URL: "http://abcd1234-p2p-energy-grid:8080",
                CONF_NODE_URL: "http://abcd1234-p2p-energy-grid:14265",
            },
        ),
    ],
)
async def test_hassio_discovery(
    hass: HomeAssistant,
    mock_test_connection: AsyncMock,
    config: dict[str, Any],
    expected: dict[str, str],
) -> None:
    """A grid add-on is offered; confirming tests and creates the entry."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_HASSIO}, data=_hassio_info(config)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "hassio_confirm"
    assert result["description_placeholders"] == {"addon": "P2P Energy Grid", **expected}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "P2P Energy Grid"
    assert result["data"] == expected
    assert result["result"].unique_id == "addon_abcd1234_p2p_energy_grid"


async def test_hassio_discovery_connection_error(
    hass: HomeAssistant, mock_test_connection: AsyncMock
) -> None:
    """A discovered grid that does not answer shows an error on the confirm form."""
    mock_test_connection.side_effect = NodeUnavailableError("down")
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_HASSIO},
        data=_hassio_info({"host": "grid", "port": 8080}),
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect_node"}

    mock_test_connection.side_effect = None
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    "config",
    [{"port": 8080}, {"host": "grid", "port": "eighty"}, {CONF_GRID_URL: "grid:8080"}, {}],
)
async def test_hassio_discovery_invalid(hass: HomeAssistant, config: dict[str, Any]) -> None:
    """Unusable discovery information aborts."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_HASSIO}, data=_hassio_info(config)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"


async def test_hassio_discovery_updates_entry(hass: HomeAssistant) -> None:
    """A known add-on announcing a new address updates its entry."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="addon_abcd1234_p2p_energy_grid",
        data={CONF_GRID_URL: "http://old:8080", CONF_NODE_URL: "http://old:14265"},
    )
    entry.add_to_hass(hass)
    # A restarted add-on announces itself again under a new discovery UUID.
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_HASSIO},
        data=_hassio_info({"host": "new", "port": 8080}, uuid="5678"),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data == {CONF_GRID_URL: "http://new:8080", CONF_NODE_URL: "http://new:14265"}


async def test_hassio_discovery_of_grid_configured_by_url(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """A grid already added by URL is not offered again."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_HASSIO},
        data=_hassio_info({CONF_GRID_URL: GRID_URL}),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


# Reconfigure --------------------------------------------------------------------------


async def test_reconfigure(
    hass: HomeAssistant, mock_test_connection: AsyncMock, config_entry: MockConfigEntry
) -> None:
    """A URL-identified entry moves to its new URL, tested first."""
    result = await config_entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"

    mock_test_connection.side_effect = GridUnavailableError("down")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_GRID_URL: "http://grid2.example:8080"}
    )
    assert result["errors"] == {"base": "cannot_connect_grid"}

    mock_test_connection.side_effect = None
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_GRID_URL: "http://grid2.example:8080", CONF_NODE_URL: "http://node2:1"},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert config_entry.data == {
        CONF_GRID_URL: "http://grid2.example:8080",
        CONF_NODE_URL: "http://node2:1",
    }
    assert config_entry.unique_id == "http://grid2.example:8080"


async def test_reconfigure_to_other_grid_aborts(
    hass: HomeAssistant, mock_test_connection: AsyncMock, config_entry: MockConfigEntry
) -> None:
    """Reconfiguring onto a grid that has its own entry is refused."""
    MockConfigEntry(
        domain=DOMAIN,
        unique_id="http://other:8080",
        data={CONF_GRID_URL: "http://other:8080", CONF_NODE_URL: "http://other:14265"},
    ).add_to_hass(hass)
    result = await config_entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_GRID_URL: "http://other:8080"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert config_entry.data[CONF_GRID_URL] == GRID_URL


async def test_reconfigure_same_url_and_addon_entry(
    hass: HomeAssistant, mock_test_connection: AsyncMock
) -> None:
    """An add-on entry keeps its UUID; an invalid URL is refused first."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="addon-uuid",
        data={CONF_GRID_URL: GRID_URL, CONF_NODE_URL: NODE_URL},
    )
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_GRID_URL: "nonsense"}
    )
    assert result["errors"] == {CONF_GRID_URL: "invalid_url"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_GRID_URL: "http://moved:8080"}
    )
    assert result["reason"] == "reconfigure_successful"
    assert entry.unique_id == "addon-uuid"
    assert entry.data[CONF_GRID_URL] == "http://moved:8080"


# Options ------------------------------------------------------------------------------


async def test_options_flow(hass: HomeAssistant, config_entry: MockConfigEntry) -> None:
    """Defaults are offered and the chosen options saved with proper types; the period is
    empty (the grid's slot) unless the user sets one."""
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    schema = result["data_schema"].schema
    defaults = {str(key): key.default() for key in schema if str(key) != CONF_PUBLISH_INTERVAL}
    assert defaults == {
        CONF_MAX_POWER: 250.0,
        CONF_MIN_WEIGHT_MAGNITUDE: 9,
        CONF_PROOF_OF_WORK: POW_LOCAL,
    }
    assert suggested(schema, CONF_PUBLISH_INTERVAL) is None
    assert result["description_placeholders"] == {"grid_period": "900"}
    chosen = {CONF_MAX_POWER: 12.5, CONF_MIN_WEIGHT_MAGNITUDE: 3.0, CONF_PROOF_OF_WORK: POW_NODE}
    result = await hass.config_entries.options.async_configure(result["flow_id"], chosen)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert config_entry.options == {
        CONF_MAX_POWER: 12.5,
        CONF_MIN_WEIGHT_MAGNITUDE: 3,
        CONF_PROOF_OF_WORK: POW_NODE,
    }

    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**chosen, CONF_PUBLISH_INTERVAL: 60.0}
    )
    assert config_entry.options[CONF_PUBLISH_INTERVAL] == 60

    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    schema = result["data_schema"].schema
    assert suggested(schema, CONF_PUBLISH_INTERVAL) == 60
    (proof_of_work,) = [key for key in schema if str(key) == CONF_PROOF_OF_WORK]
    assert proof_of_work.default() == POW_NODE


def suggested(schema: dict[Any, Any], name: str) -> Any:
    """The suggested value of a form field."""
    (key,) = [key for key in schema if str(key) == name]
    return (key.description or {}).get("suggested_value")


async def test_options_flow_refuses_an_unknown_proof_of_work(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    with pytest.raises(InvalidData):
        await hass.config_entries.options.async_configure(
            result["flow_id"],
            {
                CONF_PUBLISH_INTERVAL: 60,
                CONF_MAX_POWER: 12.5,
                CONF_MIN_WEIGHT_MAGNITUDE: 3,
                CONF_PROOF_OF_WORK: "gpu",
            },
        )
    assert CONF_PROOF_OF_WORK not in config_entry.options


# Subentries ---------------------------------------------------------------------------


async def _start_subentry(
    hass: HomeAssistant, entry: MockConfigEntry, kind: str, subentry_id: str | None = None
) -> Any:
    context: dict[str, Any] = {"source": SOURCE_USER}
    if subentry_id is not None:
        context = {"source": SOURCE_RECONFIGURE, "subentry_id": subentry_id}
    return await hass.config_entries.subentries.async_init((entry.entry_id, kind), context=context)


def _add_subentry(
    hass: HomeAssistant, entry: MockConfigEntry, kind: str, title: str, data: dict[str, Any]
) -> str:
    subentry_data = ConfigSubentryData(data=data, subentry_type=kind, title=title, unique_id=None)
    hass.config_entries.async_add_subentry(entry, _config_subentry(subentry_data))
    return next(
        subentry_id for subentry_id, subentry in entry.subentries.items() if subentry.title == title
    )


def _config_subentry(data: ConfigSubentryData) -> Any:
    from homeassistant.config_entries import ConfigSubentry

    return ConfigSubentry(
        data=data["data"],
        subentry_type=data["subentry_type"],
        title=data["title"],
        unique_id=data["unique_id"],
    )


@pytest.mark.usefixtures("meters")
async def test_add_source(hass: HomeAssistant, config_entry: MockConfigEntry) -> None:
    """A source gets fresh keys; a remote producer URL is normalised."""
    result = await _start_subentry(hass, config_entry, "source")
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            CONF_NAME: " Roof PV ",
            CONF_METER: "sensor.pv_energy",
            CONF_PRODUCER_URL: "http://Neighbour:8123/api/p2p_energy/producer/abc/",
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Roof PV"
    (subentry,) = config_entry.subentries.values()
    assert subentry.subentry_type == "source"
    data = dict(subentry.data)
    assert is_trytes_81(data.pop(CONF_SEED))
    assert is_trytes_81(data.pop(CONF_SIDE_KEY))
    assert len(data.pop(CONF_REGISTRATION_ID)) == 32
    assert data == {
        CONF_METER: "sensor.pv_energy",
        CONF_PRODUCER_URL: "http://neighbour:8123/api/p2p_energy/producer/abc",
    }


@pytest.mark.usefixtures("meters")
async def test_add_source_invalid_producer_url(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """A malformed producer URL is refused; an empty one means a local producer."""
    result = await _start_subentry(hass, config_entry, "source")
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {CONF_NAME: "PV", CONF_METER: "sensor.pv_energy", CONF_PRODUCER_URL: "neighbour"},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_PRODUCER_URL: "invalid_url"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {CONF_NAME: "PV", CONF_METER: "sensor.pv_energy", CONF_PRODUCER_URL: "  "},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    (subentry,) = config_entry.subentries.values()
    assert subentry.data[CONF_PRODUCER_URL] == ""


@pytest.mark.usefixtures("meters")
@pytest.mark.parametrize(
    ("meter", "error"),
    [
        ("sensor.missing", "meter_not_found"),
        ("sensor.house_power", "meter_not_energy"),
        ("sensor.daily_energy", "meter_not_total"),
        ("sensor.pv_energy", "meter_in_use"),
    ],
)
async def test_add_meter_errors(
    hass: HomeAssistant, config_entry: MockConfigEntry, meter: str, error: str
) -> None:
    """Only running energy totals, each wrapped once, are accepted."""
    _add_subentry(hass, config_entry, "consumer", "Existing", {CONF_METER: "sensor.pv_energy"})
    for kind in ("source", "producer", "consumer"):
        result = await _start_subentry(hass, config_entry, kind)
        user_input = {CONF_NAME: "X", CONF_METER: meter}
        if kind == "producer":
            user_input[CONF_PRICE] = 10
        result = await hass.config_entries.subentries.async_configure(result["flow_id"], user_input)
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {CONF_METER: error}


@pytest.mark.parametrize(
    ("unit", "capabilities", "error"),
    [
        ("kWh", {"state_class": "total"}, None),
        ("kWh", None, "meter_not_total"),
        ("W", {"state_class": "total"}, "meter_not_energy"),
    ],
)
async def test_meter_without_state_uses_registry(
    hass: HomeAssistant,
    entity_registry: er.EntityRegistry,
    config_entry: MockConfigEntry,
    unit: str,
    capabilities: dict[str, str] | None,
    error: str | None,
) -> None:
    """A registered sensor that has no state yet is judged by its registry entry."""
    entity_registry.async_get_or_create(
        "sensor",
        "test",
        "late-meter",
        suggested_object_id="late_meter",
        unit_of_measurement=unit,
        capabilities=capabilities,
    )
    result = await _start_subentry(hass, config_entry, "consumer")
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_NAME: "House", CONF_METER: "sensor.late_meter"}
    )
    if error is None:
        assert result["type"] is FlowResultType.CREATE_ENTRY
    else:
        assert result["errors"] == {CONF_METER: error}


@pytest.mark.usefixtures("meters")
async def test_add_consumer(hass: HomeAssistant, config_entry: MockConfigEntry) -> None:
    """A consumer also gets a wallet seed."""
    result = await _start_subentry(hass, config_entry, "consumer")
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_NAME: "House", CONF_METER: "sensor.house_energy"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    (subentry,) = config_entry.subentries.values()
    assert subentry.subentry_type == "consumer"
    assert set(subentry.data) == {
        CONF_MAX_PRICE,
        CONF_METER,
        CONF_SEED,
        CONF_SIDE_KEY,
        CONF_REGISTRATION_ID,
        CONF_WALLET_SEED,
    }
    assert subentry.data[CONF_MAX_PRICE] is None  # left empty: no bid
    assert is_trytes_81(subentry.data[CONF_WALLET_SEED])
    assert subentry.data[CONF_WALLET_SEED] != subentry.data[CONF_SEED]


@pytest.mark.usefixtures("meters")
async def test_add_producer(hass: HomeAssistant, config_entry: MockConfigEntry) -> None:
    """A producer lists the local sources, and sells each source at most once."""
    pv = _add_subentry(hass, config_entry, "source", "PV", {CONF_METER: "sensor.pv_energy"})
    wind = _add_subentry(hass, config_entry, "source", "Wind", {CONF_METER: "sensor.wind_energy"})
    _add_subentry(
        hass, config_entry, "producer", "Other", {CONF_METER: "sensor.x", CONF_SOURCES: [wind]}
    )
    _add_subentry(hass, config_entry, "consumer", "House", {CONF_METER: "sensor.y"})
    gone = _add_subentry(hass, config_entry, "source", "Gone", {CONF_METER: "sensor.z"})

    result = await _start_subentry(hass, config_entry, "producer")
    options = result["data_schema"].schema[CONF_SOURCES].config["options"]
    assert options == [
        {"value": pv, "label": "PV"},
        {"value": wind, "label": "Wind"},
        {"value": gone, "label": "Gone"},
    ]

    base = {CONF_NAME: "Inverter", CONF_METER: "sensor.inverter_energy", CONF_PRICE: 25.0}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], base | {CONF_SOURCES: [pv, wind]}
    )
    assert result["errors"] == {CONF_SOURCES: "source_in_use"}
    # A source removed while the form is open.
    hass.config_entries.async_remove_subentry(config_entry, gone)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], base | {CONF_SOURCES: [gone]}
    )
    assert result["errors"] == {CONF_SOURCES: "unknown_source"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], base | {CONF_SOURCES: [pv, pv]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    producer = next(s for s in config_entry.subentries.values() if s.title == "Inverter")
    assert producer.data[CONF_SOURCES] == [pv]
    assert producer.data[CONF_PRICE] == 25
    assert isinstance(producer.data[CONF_PRICE], int)
    assert is_trytes_81(producer.data[CONF_WALLET_SEED])
    assert len(producer.data[CONF_API_TOKEN]) >= 32


@pytest.mark.usefixtures("meters")
async def test_reconfigure_source_keeps_keys(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Reconfiguring changes name and meter; keys stay; its own meter is allowed."""
    result = await _start_subentry(hass, config_entry, "source")
    await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_NAME: "PV", CONF_METER: "sensor.pv_energy"}
    )
    (subentry_id,) = config_entry.subentries
    keys = dict(config_entry.subentries[subentry_id].data)

    result = await _start_subentry(hass, config_entry, "source", subentry_id)
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_NAME: "PV", CONF_METER: "sensor.house_power"}
    )
    assert result["errors"] == {CONF_METER: "meter_not_energy"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {CONF_NAME: "Roof", CONF_METER: "sensor.pv_energy", CONF_PRODUCER_URL: ""},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    subentry = config_entry.subentries[subentry_id]
    assert subentry.title == "Roof"
    assert subentry.data == keys

    result = await _start_subentry(hass, config_entry, "source", subentry_id)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_NAME: "Roof", CONF_METER: "sensor.wind_energy"}
    )
    assert result["reason"] == "reconfigure_successful"
    assert config_entry.subentries[subentry_id].data[CONF_METER] == "sensor.wind_energy"
    assert config_entry.subentries[subentry_id].data[CONF_SEED] == keys[CONF_SEED]


@pytest.mark.usefixtures("meters")
async def test_reconfigure_producer_sources(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """A producer may keep its own sources when reconfigured."""
    pv = _add_subentry(hass, config_entry, "source", "PV", {CONF_METER: "sensor.pv_energy"})
    producer = _add_subentry(
        hass,
        config_entry,
        "producer",
        "Inverter",
        {
            CONF_METER: "sensor.inverter_energy",
            CONF_SOURCES: [pv],
            CONF_PRICE: 5,
            CONF_SEED: "A" * 81,
        },
    )
    result = await _start_subentry(hass, config_entry, "producer", producer)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            CONF_NAME: "Inverter",
            CONF_METER: "sensor.inverter_energy",
            CONF_PRICE: 7,
            CONF_SOURCES: [pv],
        },
    )
    assert result["reason"] == "reconfigure_successful"
    assert config_entry.subentries[producer].data == {
        CONF_METER: "sensor.inverter_energy",
        CONF_SOURCES: [pv],
        CONF_PRICE: 7,
        CONF_SEED: "A" * 81,
        CONF_FORECAST_ENTITY: None,
    }
