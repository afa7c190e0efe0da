"""Home Assistant test set-up shared by the integration's tests.

The integration package is imported here, before the ``hass`` fixture starts,
so that Home Assistant resolves ``custom_components`` to this repository's
package and not to the one bundled with pytest-homeassistant-custom-component.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension

import custom_components.p2p_energy  # noqa: F401

if TYPE_CHECKING:
    from syrupy.assertion import SnapshotAssertion


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom integrations in every test."""


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Snapshots that leave out what changes from run to run (registry ids)."""
    return snapshot.use_extension(HomeAssistantSnapshotExtension)
