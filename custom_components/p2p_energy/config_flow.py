"""Config flow: a grid connection, then sources, producers and consumers as subentries.

One config entry is one grid (its registration API and its Tangle node). Every
source, producer and consumer is a config subentry of that entry, so one
connection holds any number of them and each can be added, reconfigured or
removed on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import voluptuous as vol
from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
    ConfigFlowResult,
    ConfigSubentryFlow,
    OptionsFlow,
    SubentryFlowResult,
)
from homeassistant.const import CONF_NAME
from homeassistant.core import callback
from homeassistant.helpers.selector import (
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)

from .connection import async_test_connection, default_node_url, normalize_url
from .const import (
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
    CONF_SOURCES,
    DEFAULT_MAX_POWER,
    DEFAULT_MIN_WEIGHT_MAGNITUDE,
    DEFAULT_PROOF_OF_WORK,
    DEFAULT_PUBLISH_INTERVAL,
    DOMAIN,
    LOGGER,
    MAX_PUBLISH_INTERVAL,
    MIN_PUBLISH_INTERVAL,
    PROOF_OF_WORK_CHOICES,
    SUBENTRY_CONSUMER,
    SUBENTRY_PRODUCER,
    SUBENTRY_SOURCE,
)
from .household_flow import SUBENTRY_HOUSEHOLD, EnergyDashboardConfigFlow, HouseholdSubentryFlow
from .meter import meter_problem
from .protocol.errors import GridUnavailableError, NodeUnavailableError
from .subentries import (
    INVALID_BID,
    PRICE_SELECTOR,
    bid_from_form,
    meters_in_use,
    new_subentry_data,
)

if TYPE_CHECKING:
    from homeassistant.helpers.service_info.hassio import HassioServiceInfo

URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
NAME_SELECTOR = TextSelector()
METER_SELECTOR = EntitySelector(
    EntitySelectorConfig(domain="sensor", device_class=SensorDeviceClass.ENERGY)
)


class P2PEnergyConfigFlow(EnergyDashboardConfigFlow, domain=DOMAIN):
    """Connect Home Assistant to a P2P energy grid (and offer the Energy dashboard's household)."""

    VERSION = 1
    MINOR_VERSION = 1

    _discovered: dict[str, str]
    _addon_name: str

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> P2PEnergyOptionsFlow:
        """Return the options flow."""
        return P2PEnergyOptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Sources, producers and consumers are subentries of a grid connection; a
        household flow creates them in one step from the Energy dashboard's meters."""
        return {
            SUBENTRY_SOURCE: SourceSubentryFlow,
            SUBENTRY_PRODUCER: ProducerSubentryFlow,
            SUBENTRY_CONSUMER: ConsumerSubentryFlow,
            SUBENTRY_HOUSEHOLD: HouseholdSubentryFlow,
        }

    async def _async_test(self, grid_url: str, node_url: str) -> dict[str, str]:
        """Test the connection; return form errors (empty when it works)."""
        try:
            await async_test_connection(self.hass, grid_url, node_url)
        except GridUnavailableError as err:
            LOGGER.debug("Grid %s unavailable: %s", grid_url, err)
            return {"base": "cannot_connect_grid"}
        except NodeUnavailableError as err:
            LOGGER.debug("Node %s unavailable: %s", node_url, err)
            return {"base": "cannot_connect_node"}
        return {}

    async def _async_validate(
        self, user_input: dict[str, Any]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Normalise and test the URLs of a user form; return (data, errors)."""
        try:
            grid_url = normalize_url(user_input[CONF_GRID_URL])
        except vol.Invalid:
            return {}, {CONF_GRID_URL: "invalid_url"}
        try:
            node_url = (
                normalize_url(user_input[CONF_NODE_URL])
                if user_input.get(CONF_NODE_URL)
                else default_node_url(grid_url)
            )
        except vol.Invalid:
            return {}, {CONF_NODE_URL: "invalid_url"}
        data = {CONF_GRID_URL: grid_url, CONF_NODE_URL: node_url}
        return data, await self._async_test(grid_url, node_url)

    @staticmethod
    def _connection_schema(defaults: dict[str, Any]) -> vol.Schema:
        return vol.Schema(
            {
                vol.Required(
                    CONF_GRID_URL, default=defaults.get(CONF_GRID_URL, vol.UNDEFINED)
                ): URL_SELECTOR,
                vol.Optional(
                    CONF_NODE_URL,
                    description={"suggested_value": defaults.get(CONF_NODE_URL)},
                ): URL_SELECTOR,
            }
        )

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Connect to a grid by URL."""
        errors: dict[str, str] = {}
        if user_input is not None:
            data, errors = await self._async_validate(user_input)
            if not errors:
                await self.async_set_unique_id(data[CONF_GRID_URL])
                self._abort_if_unique_id_configured()
                return await self.async_create_connection(
                    urlsplit(data[CONF_GRID_URL]).netloc, data
                )
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                self._connection_schema({}), user_input
            ),
            errors=errors,
        )

    async def async_step_hassio(self, discovery_info: HassioServiceInfo) -> ConfigFlowResult:
        """A grid add-on announced itself through the Supervisor."""
        config = discovery_info.config
        try:
            if CONF_GRID_URL in config:
                grid_url = normalize_url(str(config[CONF_GRID_URL]))
            else:
                grid_url = normalize_url(f"http://{config['host']}:{int(config['port'])}")
            if CONF_NODE_URL in config:
                node_url = normalize_url(str(config[CONF_NODE_URL]))
            elif "node_port" in config:
                node_url = normalize_url(f"http://{config['host']}:{int(config['node_port'])}")
            else:
                node_url = default_node_url(grid_url)
        except (KeyError, TypeError, ValueError, vol.Invalid):
            LOGGER.warning("Ignoring unusable discovery from %s: %s", discovery_info.name, config)
            return self.async_abort(reason="invalid_discovery_info")
        self._discovered = {CONF_GRID_URL: grid_url, CONF_NODE_URL: node_url}
        self._addon_name = discovery_info.name
        # The add-on is identified by its slug (a discovery's UUID changes with every
        # announcement), so an add-on announcing a new address updates its entry.
        await self.async_set_unique_id(f"addon_{discovery_info.slug}")
        # The entry's update listener reloads it when the address changed.
        self._abort_if_unique_id_configured(updates=self._discovered, reload_on_update=False)
        # The same grid may already be configured by URL.
        self._async_abort_entries_match({CONF_GRID_URL: grid_url})
        self.context["title_placeholders"] = {"name": discovery_info.name}
        return await self.async_step_hassio_confirm()

    async def async_step_hassio_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Confirm the discovered grid, then test it."""
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = await self._async_test(
                self._discovered[CONF_GRID_URL], self._discovered[CONF_NODE_URL]
            )
            if not errors:
                return await self.async_create_connection(self._addon_name, self._discovered)
        return self.async_show_form(
            step_id="hassio_confirm",
            description_placeholders={"addon": self._addon_name, **self._discovered},
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Point the connection at another grid URL or node URL."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data, errors = await self._async_validate(user_input)
            if not errors:
                updates: dict[str, Any] = {"data": entry.data | data}
                # A URL-identified grid follows its URL; an add-on keeps its slug.
                if entry.unique_id == entry.data[CONF_GRID_URL]:
                    other = self.hass.config_entries.async_entry_for_domain_unique_id(
                        DOMAIN, data[CONF_GRID_URL]
                    )
                    if other is not None and other.entry_id != entry.entry_id:
                        return self.async_abort(reason="already_configured")
                    updates["unique_id"] = data[CONF_GRID_URL]
                # The entry's update listener reloads it.
                self.hass.config_entries.async_update_entry(entry, **updates)
                return self.async_abort(reason="reconfigure_successful")
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                self._connection_schema({}), user_input or dict(entry.data)
            ),
            errors=errors,
        )


class P2PEnergyOptionsFlow(OptionsFlow):
    """Trading period, plausibility limit, proof-of-work weight and where it is done."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show and save the options."""
        if user_input is not None:
            options: dict[str, Any] = {
                CONF_MAX_POWER: float(user_input[CONF_MAX_POWER]),
                CONF_MIN_WEIGHT_MAGNITUDE: int(user_input[CONF_MIN_WEIGHT_MAGNITUDE]),
                CONF_PROOF_OF_WORK: user_input[CONF_PROOF_OF_WORK],
            }
            # Left empty, the period follows the grid's slot length.
            if user_input.get(CONF_PUBLISH_INTERVAL) is not None:
                options[CONF_PUBLISH_INTERVAL] = int(user_input[CONF_PUBLISH_INTERVAL])
            return self.async_create_entry(data=options)
        current = self.config_entry.options
        schema = vol.Schema(
            {
                vol.Optional(
                    CONF_PUBLISH_INTERVAL,
                    description={"suggested_value": current.get(CONF_PUBLISH_INTERVAL)},
                ): NumberSelector(
                    NumberSelectorConfig(
                        min=MIN_PUBLISH_INTERVAL,
                        max=MAX_PUBLISH_INTERVAL,
                        step=1,
                        mode=NumberSelectorMode.BOX,
                        unit_of_measurement="s",
                    )
                ),
                vol.Required(
                    CONF_MAX_POWER, default=current.get(CONF_MAX_POWER, DEFAULT_MAX_POWER)
                ): NumberSelector(
                    NumberSelectorConfig(
                        min=0.1,
                        max=1_000_000,
                        step=0.1,
                        mode=NumberSelectorMode.BOX,
                        unit_of_measurement="kW",
                    )
                ),
                vol.Required(
                    CONF_MIN_WEIGHT_MAGNITUDE,
                    default=current.get(CONF_MIN_WEIGHT_MAGNITUDE, DEFAULT_MIN_WEIGHT_MAGNITUDE),
                ): NumberSelector(
                    NumberSelectorConfig(min=1, max=27, step=1, mode=NumberSelectorMode.BOX)
                ),
                vol.Required(
                    CONF_PROOF_OF_WORK,
                    default=current.get(CONF_PROOF_OF_WORK, DEFAULT_PROOF_OF_WORK),
                ): SelectSelector(
                    SelectSelectorConfig(
                        options=list(PROOF_OF_WORK_CHOICES), translation_key=CONF_PROOF_OF_WORK
                    )
                ),
            }
        )
        return self.async_show_form(
            step_id="init",
            data_schema=schema,
            description_placeholders={"grid_period": self._grid_period()},
        )

    def _grid_period(self) -> str:
        """The period without an override (15 minutes while the entry is not loaded)."""
        entry = self.config_entry
        if entry.state is ConfigEntryState.LOADED:
            return str(entry.runtime_data.grid_period)
        return str(DEFAULT_PUBLISH_INTERVAL)


class _ParticipantSubentryFlow(ConfigSubentryFlow):
    """Steps shared by sources, producers and consumers: a name and a wrapped meter.

    Keys (channel seed, side key, wallet seed, registration id) are generated
    when the subentry is created and never shown or changed by reconfiguring.
    """

    def _schema(self) -> dict[vol.Marker, Any]:
        """Form fields; subclasses add their own."""
        return {
            vol.Required(CONF_NAME): NAME_SELECTOR,
            vol.Required(CONF_METER): METER_SELECTOR,
        }

    def _settings(
        self, user_input: dict[str, Any], own_id: str | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Validate the form; return (subentry data without keys, errors)."""
        meter = user_input[CONF_METER]
        if problem := meter_problem(self.hass, meter, meters_in_use(self._get_entry(), own_id)):
            return {}, {CONF_METER: problem}
        return {CONF_METER: meter}, {}

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Add a source, producer or consumer."""
        errors: dict[str, str] = {}
        if user_input is not None:
            settings, errors = self._settings(user_input, None)
            if not errors:
                return self.async_create_entry(
                    title=user_input[CONF_NAME].strip(),
                    data=new_subentry_data(self.handler[1], settings),
                )
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(vol.Schema(self._schema()), user_input),
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Change what a source, producer or consumer wraps; its keys stay."""
        subentry = self._get_reconfigure_subentry()
        errors: dict[str, str] = {}
        if user_input is not None:
            settings, errors = self._settings(user_input, subentry.subentry_id)
            if not errors:
                return self.async_update_and_abort(
                    self._get_entry(),
                    subentry,
                    title=user_input[CONF_NAME].strip(),
                    data_updates=settings,
                )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema(self._schema()),
                user_input or {CONF_NAME: subentry.title, **subentry.data},
            ),
            errors=errors,
        )


class SourceSubentryFlow(_ParticipantSubentryFlow):
    """A source: a generation meter publishing its output on its own channel.

    A local producer that selects it follows it directly; a producer elsewhere
    is given by the base URL of its registration API.
    """

    def _schema(self) -> dict[vol.Marker, Any]:
        return super()._schema() | {vol.Optional(CONF_PRODUCER_URL): URL_SELECTOR}

    def _settings(
        self, user_input: dict[str, Any], own_id: str | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        settings, errors = super()._settings(user_input, own_id)
        if errors:
            return settings, errors
        producer_url = ""
        if raw_url := user_input.get(CONF_PRODUCER_URL, "").strip():
            try:
                producer_url = normalize_url(raw_url)
            except vol.Invalid:
                return {}, {CONF_PRODUCER_URL: "invalid_url"}
        return settings | {CONF_PRODUCER_URL: producer_url}, {}


class ProducerSubentryFlow(_ParticipantSubentryFlow):
    """A producer: an inverter selling its and its sources' output to the grid."""

    def _schema(self) -> dict[vol.Marker, Any]:
        sources = [
            SelectOptionDict(value=subentry_id, label=subentry.title)
            for subentry_id, subentry in self._get_entry().subentries.items()
            if subentry.subentry_type == SUBENTRY_SOURCE
        ]
        return super()._schema() | {
            vol.Required(CONF_PRICE): PRICE_SELECTOR,
            vol.Optional(CONF_SOURCES, default=[]): SelectSelector(
                SelectSelectorConfig(options=sources, multiple=True)
            ),
            vol.Optional(CONF_FORECAST_ENTITY): EntitySelector(
                EntitySelectorConfig(domain="sensor")
            ),
        }

    def _settings(
        self, user_input: dict[str, Any], own_id: str | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        settings, errors = super()._settings(user_input, own_id)
        if errors:
            return settings, errors
        entry = self._get_entry()
        sources: list[str] = list(dict.fromkeys(user_input.get(CONF_SOURCES, [])))
        taken = {
            source
            for subentry_id, subentry in entry.subentries.items()
            if subentry.subentry_type == SUBENTRY_PRODUCER and subentry_id != own_id
            for source in subentry.data.get(CONF_SOURCES, [])
        }
        for source in sources:
            known = entry.subentries.get(source)
            if known is None or known.subentry_type != SUBENTRY_SOURCE:
                return {}, {CONF_SOURCES: "unknown_source"}
            if source in taken:
                # Two producers selling the same source would sell its energy twice.
                return {}, {CONF_SOURCES: "source_in_use"}
        return settings | {
            CONF_SOURCES: sources,
            CONF_PRICE: int(user_input[CONF_PRICE]),
            CONF_FORECAST_ENTITY: user_input.get(CONF_FORECAST_ENTITY),
        }, {}


class ConsumerSubentryFlow(_ParticipantSubentryFlow):
    """A consumer: a household meter billed by the grid, paying from its wallet."""

    def _schema(self) -> dict[vol.Marker, Any]:
        # Optional: without a bid the consumer buys at whatever the market clears.
        return super()._schema() | {vol.Optional(CONF_MAX_PRICE): PRICE_SELECTOR}

    def _settings(
        self, user_input: dict[str, Any], own_id: str | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        settings, errors = super()._settings(user_input, own_id)
        if errors:
            return settings, errors
        try:
            bid = bid_from_form(user_input.get(CONF_MAX_PRICE))
        except (TypeError, ValueError):
            return {}, {CONF_MAX_PRICE: INVALID_BID}
        # Stored even when None, so a reconfigure that clears the field removes the bid.
        return settings | {CONF_MAX_PRICE: bid}, {}
