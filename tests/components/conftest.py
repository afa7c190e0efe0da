"""Home Assistant test set-up shared by the integration's tests.

The integration package is imported here, before the ``hass`` fixture starts,
so that Home Assistant resolves ``custom_components`` to this repository's
package and not to the one bundled with pytest-homeassistant-custom-component.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from homeassistant.const import MAJOR_VERSION, MINOR_VERSION
from homeassistant.helpers import frame
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension

import custom_components.p2p_energy  # noqa: F401

if TYPE_CHECKING:
    from collections.abc import Iterator

    from syrupy.assertion import SnapshotAssertion
    from syrupy.location import PyTestLocation

# How Home Assistant's frame helper reports a custom integration's use of a deprecated
# API (homeassistant/helpers/frame.py): logged as a warning, not raised.
DEPRECATION_REPORT = "Detected that custom integration 'p2p_energy'"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom integrations in every test."""


class ReleaseSnapshotExtension(HomeAssistantSnapshotExtension):
    """Home Assistant's snapshots (registry ids left out), one folder per tested release.

    How Home Assistant serializes registry entries and states changed between the
    supported releases, so ``snapshots/ha-2025.4`` and ``snapshots/ha-2026.10`` each hold
    what that release produces; update them with ``--snapshot-update`` under each
    (``scripts/ha-current python -m pytest ... --snapshot-update`` for the newest).
    """

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        folder = Path(super().dirname(test_location=test_location))
        return str(folder / f"ha-{MAJOR_VERSION}.{MINOR_VERSION}")


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Snapshots of the running release, leaving out what changes from run to run."""
    return snapshot.use_extension(ReleaseSnapshotExtension)


@pytest.fixture(autouse=True)
def no_deprecation_reports(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Fail a test during which Home Assistant reported a deprecated use by this integration.

    Home Assistant reports each deprecated use once per process; a fresh record of what
    was reported makes every test that uses it fail, whatever ran before.
    """
    monkeypatch.setattr(frame, "_REPORTED_INTEGRATIONS", set())
    yield
    reports = [
        record.getMessage()
        for when in ("setup", "call", "teardown")
        for record in caplog.get_records(when)
        if DEPRECATION_REPORT in record.getMessage()
    ]
    if reports:
        pytest.fail("Home Assistant reported deprecated uses:\n" + "\n".join(reports))
