"""Every user-facing key the code uses has English text, as hassfest would demand."""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Formatter
from typing import Any

import pytest
import yaml

from custom_components.p2p_energy.forecast import PRICE_FORECAST
from custom_components.p2p_energy.sensor import GRID_SENSORS, PARTICIPANT_SENSORS

PACKAGE = Path(__file__).parents[3] / "custom_components" / "p2p_energy"
STRINGS: dict[str, Any] = json.loads((PACKAGE / "translations" / "en.json").read_text())
ICONS: dict[str, Any] = json.loads((PACKAGE / "icons.json").read_text())
# Keyed by the path inside the package: the household engine's refusals are translated too.
SOURCES = {path.relative_to(PACKAGE).as_posix(): path.read_text() for path in PACKAGE.rglob("*.py")}


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name}


def _used(pattern: str, *files: str) -> set[str]:
    found: set[str] = set()
    for name in files or tuple(SOURCES):
        found |= set(re.findall(pattern, SOURCES[name]))
    return found


def test_exception_keys_exist() -> None:
    keys = _used(r'translation_key="(\w+)"', "coordinator.py", "services.py")
    refusals = _used(r'PaymentRefusedError\(\s*"(\w+)"', "protocol/household/consumer.py")
    assert len(refusals) >= 5
    keys |= refusals
    assert keys <= set(STRINGS["exceptions"]), keys - set(STRINGS["exceptions"])


def test_config_flow_keys_exist() -> None:
    config = STRINGS["config"]
    errors = _used(r'"base": "(\w+)"', "config_flow.py") | {"invalid_url"}
    assert errors <= set(config["error"])
    aborts = _used(r'reason="(\w+)"', "config_flow.py") | {"already_configured"}
    assert aborts <= set(config["abort"])
    for step in ("user", "reconfigure"):
        assert set(config["step"][step]["data"]) == set(config["step"][step]["data_description"])


def test_subentry_strings() -> None:
    meter_errors = _used(r'return "(meter_\w+)"', "meter.py")
    assert len(meter_errors) == 4
    for kind, extra in (
        ("source", {"invalid_url"}),
        ("producer", {"unknown_source", "source_in_use"}),
        ("consumer", set()),
    ):
        strings = STRINGS["config_subentries"][kind]
        assert meter_errors | extra <= set(strings["error"])
        assert set(strings["initiate_flow"]) == {"user", "reconfigure"}
        assert set(strings["step"]) == {"user", "reconfigure"}


def test_entities_have_names_and_icons() -> None:
    keys = {d.translation_key for d in (*PARTICIPANT_SENSORS, *GRID_SENSORS, PRICE_FORECAST)}
    assert keys == set(STRINGS["entity"]["sensor"])
    assert keys == set(ICONS["entity"]["sensor"])


def test_services_are_described() -> None:
    services = yaml.safe_load((PACKAGE / "services.yaml").read_text())
    assert set(services) == set(STRINGS["services"]) == set(ICONS["services"])
    for name, service in services.items():
        assert set(service["fields"]) == set(STRINGS["services"][name]["fields"])


@pytest.mark.parametrize(
    ("section", "key", "expected"),
    [
        ("exceptions", "already_paid", {"name", "amount"}),
        ("exceptions", "payment_reference", {"name", "reference"}),
        ("exceptions", "grid_unreachable", {"grid_url", "error"}),
        ("exceptions", "forecast_unavailable", {"grid_url", "error"}),
        ("issues", "grid_unreachable", {"title", "grid_url", "node_url", "minutes"}),
    ],
)
def test_placeholders_match(section: str, key: str, expected: set[str]) -> None:
    entry = STRINGS[section][key]
    text = entry.get("message") or entry["title"] + entry["description"]
    assert _placeholders(text) == expected
