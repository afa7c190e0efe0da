"""Fixtures of the real Home Assistant tests: one household for the whole test session.

A grid (``p2p-energy grid`` with its in-process node) and a ``hass`` process run on loopback;
Home Assistant is onboarded and joined to the grid through its REST API, with a source, a
producer owning it and a consumer, each wrapping a meter. The card test and the end-to-end
test share it, so CI starts Home Assistant once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
import pytest_socket

from tests.browser import browser  # noqa: F401  (the fixture, for the card in the real frontend)
from tests.components.p2p_energy.test_end_to_end import (
    EXPORT_PRICE,
    GRID_CUT,
    IMPORT_PRICE,
    PRICE,
)

from .environment import real_hass
from .grid import MWM, GridWithNode
from .hass import HassProcess

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

DOMAIN = "p2p_energy"
SLOT = 10  # seconds: the grid's slot and the household's trading period (the shortest allowed)
# A 15-minute outage does not fit in CI: the copy of the integration this Home Assistant
# runs raises its repair issue after this long instead.
REPAIR_AFTER_SECONDS = 20

# The grid values IOTA in EUR, Home Assistant's currency: the currency sensors and statistics.
CURRENCY_PER_MILLION_IOTA = "2500"
ENERGY = {"unit_of_measurement": "kWh", "state_class": "total_increasing", "device_class": "energy"}
INVERTER = ENERGY | {"state_class": "total", "last_reset": None}
METERS = {
    "sensor.pv_energy": ("Roof PV energy", ENERGY),
    "sensor.inverter_energy": ("Inverter energy", INVERTER),
    "sensor.house_energy": ("House energy", ENERGY),
}


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    """Real sockets (the Home Assistant test plugin disables them), loopback only."""


@dataclass
class Household:
    """The running processes and what the flows created."""

    hass: HassProcess
    grid: GridWithNode
    entry_id: str
    source: str  # subentry ids
    producer: str
    consumer: str
    entities: dict[tuple[str, str], str] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)  # subentry id -> device id

    def entity(self, participant: str, key: str) -> str:
        return self.entities[(participant, key)]

    def value(self, participant: str, key: str) -> str | None:
        state = self.hass.state(self.entity(participant, key))
        return None if state is None else str(state["state"])

    def attribute(self, participant: str, key: str, name: str) -> str | None:
        state = self.hass.state(self.entity(participant, key))
        value = None if state is None else state["attributes"].get(name)
        return None if value is None else str(value)

    def set_meters(self, pv: float, inverter: float, house: float) -> None:
        for entity_id, reading in zip(METERS, (pv, inverter, house), strict=True):
            name, attributes = METERS[entity_id]
            self.hass.set_state(entity_id, str(reading), {**attributes, "friendly_name": name})

    def snapshot(self) -> dict[str, str | None]:
        """Every sensor of the integration, for failure messages."""
        return {entity_id: self.value(*key) for key, entity_id in sorted(self.entities.items())}

    def wait_until(self, check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
        """Like HassProcess.wait_until; a failure shows the sensors and the grid's log."""
        try:
            return self.hass.wait_until(check, what, timeout)
        except AssertionError as failure:
            raise AssertionError(
                f"{failure}\n--- sensors: {self.snapshot()}\n--- grid:\n{self.grid.log_tail()}"
            ) from None

    def wait_for_period_published(self, boundary: float) -> None:
        """Until every participant has sent the period that ended at ``boundary``."""
        participants = (self.source, self.producer, self.consumer)

        def published() -> bool:
            # When each last published: an attribute of its Energy published sensor.
            times = [
                self.attribute(participant, "energy_published", "last_publish")
                for participant in participants
            ]
            return all(
                value is not None and datetime.fromisoformat(value).timestamp() >= boundary
                for value in times
            )

        self.wait_until(published, "the period published by everyone", timeout=SLOT * 3)

    def set_meters_between_periods(self, pv: float, inverter: float, house: float) -> None:
        """Change the meters once every participant has published the period that just ended,
        so the next period carries all three changes (its readings are taken one participant
        after another when it ends, each after the previous one's proof of work and attach:
        seconds late on a busy machine)."""
        for _attempt in range(5):
            boundary = wait_for_next_period(offset=0.5)
            self.wait_for_period_published(boundary)
            if time.time() < boundary + SLOT - 3:  # time left to change all three meters
                self.set_meters(pv, inverter, house)
                assert time.time() < boundary + SLOT, "changing the meters took a whole period"
                return
        raise AssertionError("no period left time to change the meters: the machine is too busy")

    def refresh(self) -> None:
        """Poll the grid and node now (as the 30-second update would)."""
        self.hass.call_service(
            "homeassistant",
            "update_entity",
            {"entity_id": self.entity(self.consumer, "amount_owed")},
        )


def connect_grid(hass: HassProcess, grid: GridWithNode) -> str:
    """The config flow for the grid, then the options a short test needs; the entry id.

    The period is left to the grid (its /health says its slot of SLOT seconds): the
    periods the tests wait for come only if the integration takes it from there.
    """
    result = hass.flow("config", DOMAIN, {"grid_url": grid.url, "node_url": grid.node_url})
    assert result["type"] == "create_entry", result
    entry_id = str(result["result"]["entry_id"])
    options = hass.flow(
        "options",
        entry_id,
        {
            "max_power": 10_000,
            "min_weight_magnitude": MWM,
            "proof_of_work": "local",
        },
    )
    assert options["type"] == "create_entry", options
    return entry_id


def add_participant(hass: HassProcess, entry_id: str, kind: str, user_input: dict[str, Any]) -> str:
    """A source, producer or consumer through its subentry flow; the subentry id."""
    result = hass.flow("subentries", [entry_id, kind], user_input)
    assert result["type"] == "create_entry", result
    (subentries,) = hass.ws({"type": "config_entries/subentries/list", "entry_id": entry_id})
    (subentry,) = [item for item in subentries if item["title"] == user_input["name"]]
    return str(subentry["subentry_id"])


def registries(hass: HassProcess) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """The integration's entities by (device identifier, translation key), and its devices."""
    devices, entities = hass.ws(
        {"type": "config/device_registry/list"}, {"type": "config/entity_registry/list"}
    )
    identifiers = {
        device["id"]: identifier
        for device in devices
        for domain, identifier in device["identifiers"]
        if domain == DOMAIN
    }
    by_key = {
        (identifiers[entity["device_id"]], entity["translation_key"]): entity["entity_id"]
        for entity in entities
        if entity["platform"] == DOMAIN and entity["device_id"] in identifiers
    }
    return by_key, {identifier: device for device, identifier in identifiers.items()}


@pytest.fixture(scope="session")
def household(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Household]:
    release = real_hass()
    # Session fixtures set up before the per-test fixture that turns sockets back on.
    pytest_socket.enable_socket()
    directory = tmp_path_factory.mktemp("realhass")
    grid = GridWithNode(
        directory,
        {
            "slot_seconds": SLOT,
            # Readings are sent when their period ends, after the participant's refresh if one
            # is running (it holds the participant while it talks to the grid and node): on a
            # busy machine that takes many seconds (27 s seen under a load of 20), and a reading
            # later than this is billed a slot later. The grid settles as soon as every
            # reading is in, so a long deadline costs nothing when they are on time.
            "settlement_delay_seconds": 60.0,
            "import_price": IMPORT_PRICE,
            "export_price": EXPORT_PRICE,
            "grid_cut_percent": round(GRID_CUT * 100),
            "currency": "EUR",
            "currency_per_million_iota": CURRENCY_PER_MILLION_IOTA,
        },
    )
    hass = HassProcess(release, directory)
    hass.replace_in_integration(
        "const.py",
        "UNREACHABLE_ISSUE_AFTER: Final = timedelta(minutes=15)",
        f"UNREACHABLE_ISSUE_AFTER: Final = timedelta(seconds={REPAIR_AFTER_SECONDS})",
    )
    try:
        grid.start()
        hass.start()
        hass.onboard()
        household = join_grid(hass, grid)
        yield household
    finally:
        hass.stop()
        grid.stop()


def join_grid(hass: HassProcess, grid: GridWithNode) -> Household:
    """Meters, the grid connection and a source, a producer and a consumer, as a user adds them."""
    for entity_id, (name, attributes) in METERS.items():
        hass.set_state(entity_id, "0", {**attributes, "friendly_name": name})
    entry_id = connect_grid(hass, grid)
    source = add_participant(
        hass, entry_id, "source", {"name": "Roof PV", "meter": "sensor.pv_energy"}
    )
    producer = add_participant(
        hass,
        entry_id,
        "producer",
        {
            "name": "Inverter",
            "meter": "sensor.inverter_energy",
            "price": PRICE,
            "sources": [source],
        },
    )
    consumer = add_participant(
        hass, entry_id, "consumer", {"name": "House", "meter": "sensor.house_energy"}
    )
    household = Household(hass, grid, entry_id, source, producer, consumer)

    def everyone_is_there() -> bool:
        household.entities, household.devices = registries(hass)
        wanted = [(consumer, "wallet_balance"), (producer, "payments_received"),
                  (source, "energy_published")]  # fmt: skip
        return all(key in household.entities for key in wanted)

    hass.wait_until(everyone_is_there, "the participants' devices and sensors")
    # Registered with the grid: the network figures are there.
    hass.wait_until(
        lambda: household.value(consumer, "wallet_balance") == "0"
        and household.value(producer, "payments_received") == "0",
        "the consumer's and producer's figures from the grid and node",
    )
    return household


def wait_for_next_period(offset: float = 2.0) -> float:
    """Sleep until ``offset`` seconds after the next multiple of the period; that multiple."""
    now = time.time()
    boundary = (int(now // SLOT) + 1) * SLOT
    time.sleep(boundary - now + offset)
    return boundary
