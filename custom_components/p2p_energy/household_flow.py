"""A household in one step, from the meters the Energy dashboard already knows.

A home with solar panels behind one grid connection trades what crosses that
connection: its grid import meter becomes a consumer (billed for what it draws)
and its return-to-grid meter a producer (paid for the surplus it feeds in, at
the asking price the user enters). The solar production meters become sources
that publish the panels' production on their own channels, but the producer
does not follow them: the part of that production the grid received is already
in the export meter, and the part the house used itself was never delivered to
anyone. Selling both would count the exported energy twice.

Meters that cannot be wrapped (not a sensor, not a running energy total, already
wrapped by a subentry) are left out and listed in the preview.

Two ways in: the ``household`` subentry flow on an existing grid connection, and a
step of the main config flow right after the connection test, which creates the
entry with its participants at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import voluptuous as vol
from homeassistant.components.energy.data import async_get_manager
from homeassistant.config_entries import (
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentry,
    ConfigSubentryData,
    ConfigSubentryFlow,
    SubentryFlowResult,
)
from homeassistant.core import split_entity_id
from homeassistant.helpers import entity_registry as er

from .const import (
    CONF_MAX_PRICE,
    CONF_METER,
    CONF_PRICE,
    CONF_PRODUCER_URL,
    CONF_SOURCES,
    SUBENTRY_CONSUMER,
    SUBENTRY_PRODUCER,
    SUBENTRY_SOURCE,
)
from .meter import meter_problem
from .subentries import (
    INVALID_BID,
    PRICE_SELECTOR,
    bid_from_form,
    meters_in_use,
    new_subentry_data,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from homeassistant.core import HomeAssistant

SUBENTRY_HOUSEHOLD: Final = "household"
"""The flow's type; it creates sources, producers and consumers, never a subentry of its own."""

NOTHING: Final = "—"
"""What the preview shows for an empty list."""


@dataclass(frozen=True)
class EnergyDashboardMeters:
    """The statistics the Energy dashboard uses for the grid connection and the panels."""

    grid_import: tuple[str, ...] = ()
    grid_export: tuple[str, ...] = ()
    solar: tuple[str, ...] = ()


def energy_dashboard_meters(preferences: Mapping[str, Any]) -> EnergyDashboardMeters:
    """The grid and solar meters of the Energy dashboard's preferences, each once.

    Home Assistant up to 2025 keeps one grid source with lists of import
    (``flow_from``) and export (``flow_to``) meters; later releases keep one grid
    source per connection with one import and one export statistic, either unset.
    """
    grid_import: list[str] = []
    grid_export: list[str] = []
    solar: list[str] = []
    for source in preferences.get("energy_sources", []):
        if source.get("type") == "grid":
            if "flow_from" in source or "flow_to" in source:
                grid_import += [flow["stat_energy_from"] for flow in source.get("flow_from", [])]
                grid_export += [flow["stat_energy_to"] for flow in source.get("flow_to", [])]
            else:
                if statistic := source.get("stat_energy_from"):
                    grid_import.append(statistic)
                if statistic := source.get("stat_energy_to"):
                    grid_export.append(statistic)
        elif source.get("type") == "solar":
            solar.append(source["stat_energy_from"])
    return EnergyDashboardMeters(
        tuple(dict.fromkeys(grid_import)),
        tuple(dict.fromkeys(grid_export)),
        tuple(dict.fromkeys(solar)),
    )


@dataclass(frozen=True)
class PlannedParticipant:
    """A subentry the set-up will create."""

    subentry_type: str
    title: str
    meter: str


@dataclass
class HouseholdPlan:
    """What the set-up creates, and which of the dashboard's meters it leaves out."""

    participants: list[PlannedParticipant] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    """Meters a subentry of this grid connection wraps already (or the plan, when the
    dashboard lists a meter twice)."""
    unusable: list[str] = field(default_factory=list)
    """Statistics that are no sensor, or no running energy total in Wh, kWh or MWh."""

    def of_type(self, subentry_type: str) -> list[PlannedParticipant]:
        """The planned participants of one type."""
        return [p for p in self.participants if p.subentry_type == subentry_type]


def meter_name(hass: HomeAssistant, entity_id: str) -> str:
    """How the meter is called in Home Assistant: its state's name, else the registry's."""
    if (state := hass.states.get(entity_id)) is not None:
        return state.name
    entry = er.async_get(hass).async_get(entity_id)
    return (entry.name or entry.original_name or entity_id) if entry else entity_id


def plan_household(
    hass: HomeAssistant,
    meters: EnergyDashboardMeters,
    in_use: Iterable[str],
    titles: Iterable[str],
) -> HouseholdPlan:
    """Decide which subentries the dashboard's meters become.

    ``in_use`` are the meters the grid connection's subentries wrap, ``titles``
    their names: a new subentry is called like its meter, numbered when the name
    is taken.
    """
    plan = HouseholdPlan()
    wrapped = set(in_use)
    taken = set(titles)
    for subentry_type, statistics in (
        (SUBENTRY_CONSUMER, meters.grid_import),
        (SUBENTRY_PRODUCER, meters.grid_export),
        (SUBENTRY_SOURCE, meters.solar),
    ):
        for statistic in statistics:
            # External statistics (domain:name) are no entity a participant could read.
            problem = (
                meter_problem(hass, statistic, wrapped)
                if _is_sensor(statistic)
                else "meter_not_found"
            )
            if problem == "meter_in_use":
                plan.in_use.append(statistic)
                continue
            if problem is not None:
                plan.unusable.append(statistic)
                continue
            title = base = meter_name(hass, statistic)
            number = 2
            while title in taken:
                title, number = f"{base} {number}", number + 1
            taken.add(title)
            # A meter the dashboard lists twice is wrapped once.
            wrapped.add(statistic)
            plan.participants.append(PlannedParticipant(subentry_type, title, statistic))
    return plan


def _is_sensor(statistic: str) -> bool:
    try:
        return split_entity_id(statistic)[0] == "sensor"
    except ValueError:
        return False


def participant_settings(
    planned: PlannedParticipant, price: int | None, bid: float | None = None
) -> dict[str, Any]:
    """What the manual subentry flows would store for the same meter (keys aside)."""
    settings: dict[str, Any] = {CONF_METER: planned.meter}
    if planned.subentry_type == SUBENTRY_CONSUMER:
        settings[CONF_MAX_PRICE] = bid
    elif planned.subentry_type == SUBENTRY_PRODUCER:
        # Only the surplus through the export meter: no sources (see the module's docstring).
        settings |= {CONF_PRICE: price, CONF_SOURCES: []}
    elif planned.subentry_type == SUBENTRY_SOURCE:
        settings[CONF_PRODUCER_URL] = ""
    return settings


@dataclass(frozen=True)
class NoHousehold:
    """Why the Energy dashboard's meters make no household: an abort reason."""

    reason: str
    placeholders: dict[str, str] | None = None


async def async_household_plan(
    hass: HomeAssistant, in_use: Iterable[str] = (), titles: Iterable[str] = ()
) -> HouseholdPlan | NoHousehold:
    """The plan for the dashboard's meters now (see :func:`plan_household`), or why none."""
    preferences = (await async_get_manager(hass)).data
    if preferences is None:
        return NoHousehold("energy_not_configured")
    meters = energy_dashboard_meters(preferences)
    if not meters.grid_import and not meters.grid_export:
        return NoHousehold("no_grid_meter")
    plan = plan_household(hass, meters, in_use, titles)
    if not plan.of_type(SUBENTRY_CONSUMER) and not plan.of_type(SUBENTRY_PRODUCER):
        # Sources alone would trade nothing.
        return NoHousehold("nothing_to_set_up", _skipped(plan))
    return plan


def household_subentries(
    plan: HouseholdPlan, price: float | None, bid: float | None = None
) -> list[ConfigSubentryData]:
    """The planned participants as new subentries, keys generated as for the manual flows."""
    asking = None if price is None else int(price)
    return [
        ConfigSubentryData(
            data=new_subentry_data(
                planned.subentry_type, participant_settings(planned, asking, bid)
            ),
            subentry_type=planned.subentry_type,
            title=planned.title,
            unique_id=None,
        )
        for planned in plan.participants
    ]


def _household_schema(plan: HouseholdPlan) -> vol.Schema:
    """The asking price when there is a producer to ask it, the optional bid when a consumer."""
    fields: dict[vol.Marker, Any] = {}
    if plan.of_type(SUBENTRY_PRODUCER):
        fields[vol.Required(CONF_PRICE)] = PRICE_SELECTOR
    if plan.of_type(SUBENTRY_CONSUMER):
        fields[vol.Optional(CONF_MAX_PRICE)] = PRICE_SELECTOR
    return vol.Schema(fields)


def _household_form(
    plan: HouseholdPlan, user_input: Mapping[str, Any]
) -> tuple[list[ConfigSubentryData], dict[str, str]]:
    """The subentries a confirmed form creates, or its errors (the bid's)."""
    try:
        bid = bid_from_form(user_input.get(CONF_MAX_PRICE))
    except (TypeError, ValueError):
        return [], {CONF_MAX_PRICE: INVALID_BID}
    return household_subentries(plan, user_input.get(CONF_PRICE), bid), {}


class HouseholdSubentryFlow(ConfigSubentryFlow):
    """Consumer, producer and sources from the Energy dashboard's meters, with a preview."""

    _shown: list[PlannedParticipant]

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Preview what the dashboard's meters become; create it on confirmation."""
        entry = self._get_entry()
        plan = await async_household_plan(
            self.hass,
            meters_in_use(entry),
            (subentry.title for subentry in entry.subentries.values()),
        )
        if isinstance(plan, NoHousehold):
            return self.async_abort(reason=plan.reason, description_placeholders=plan.placeholders)
        errors: dict[str, str] = {}
        if user_input is not None:
            if plan.participants != self._shown:
                # A meter or subentry changed while the preview was open: show the new one.
                errors["base"] = "plan_changed"
            else:
                subentries, errors = _household_form(plan, user_input)
            if not errors:
                for subentry in subentries:
                    # As the subentry flows' manager adds the subentry a flow created.
                    self.hass.config_entries.async_add_subentry(
                        entry,
                        ConfigSubentry(
                            data=MappingProxyType(subentry["data"]),
                            subentry_type=subentry["subentry_type"],
                            title=subentry["title"],
                            unique_id=subentry["unique_id"],
                        ),
                    )
                return self.async_abort(
                    reason="household_created",
                    description_placeholders={"created": _names(plan.participants)},
                )
        self._shown = plan.participants
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(_household_schema(plan), user_input),
            description_placeholders=household_preview(plan),
            errors=errors,
        )


class EnergyDashboardConfigFlow(ConfigFlow):
    """A grid connection that, once it works, offers the Energy dashboard's household.

    The subclass calls :meth:`async_create_connection` instead of creating its entry;
    the entry is then created with the household's subentries, or without any.
    """

    _connection: tuple[str, dict[str, str]]
    _plan: HouseholdPlan

    async def async_create_connection(self, title: str, data: dict[str, str]) -> ConfigFlowResult:
        """Create the entry, or first offer the household when the dashboard has one."""
        plan = await async_household_plan(self.hass)
        if isinstance(plan, NoHousehold):
            return self.async_create_entry(title=title, data=data)
        self._connection, self._plan = (title, data), plan
        return await self.async_step_energy_dashboard()

    async def async_step_energy_dashboard(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Set up the household now, or only connect."""
        return self.async_show_menu(
            step_id="energy_dashboard",
            menu_options=["energy_household", "connect_only"],
            description_placeholders=household_preview(self._plan),
        )

    async def async_step_connect_only(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The connection without participants."""
        title, data = self._connection
        return self.async_create_entry(title=title, data=data)

    async def async_step_energy_household(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The connection with the household's participants, after the preview."""
        errors: dict[str, str] = {}
        if user_input is not None:
            plan = await async_household_plan(self.hass)
            if isinstance(plan, NoHousehold):
                return self.async_abort(
                    reason=plan.reason, description_placeholders=plan.placeholders
                )
            if plan.participants != self._plan.participants:
                errors["base"] = "plan_changed"
            else:
                subentries, errors = _household_form(plan, user_input)
            if not errors:
                title, data = self._connection
                return self.async_create_entry(title=title, data=data, subentries=subentries)
            self._plan = plan
        return self.async_show_form(
            step_id="energy_household",
            data_schema=self.add_suggested_values_to_schema(
                _household_schema(self._plan), user_input
            ),
            description_placeholders=household_preview(self._plan),
            errors=errors,
        )


def _names(participants: Iterable[PlannedParticipant]) -> str:
    return ", ".join(f"{p.title} ({p.meter})" for p in participants) or NOTHING


def _skipped(plan: HouseholdPlan) -> dict[str, str]:
    return {
        "in_use": ", ".join(plan.in_use) or NOTHING,
        "unusable": ", ".join(plan.unusable) or NOTHING,
    }


def household_preview(plan: HouseholdPlan) -> dict[str, str]:
    """The preview's placeholders: names and entity ids only, the words are translated."""
    return {
        "consumers": _names(plan.of_type(SUBENTRY_CONSUMER)),
        "producers": _names(plan.of_type(SUBENTRY_PRODUCER)),
        "sources": _names(plan.of_type(SUBENTRY_SOURCE)),
    } | _skipped(plan)
