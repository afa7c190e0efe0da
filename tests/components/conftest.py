"""Home Assistant test set-up shared by the integration's tests.

The integration package is imported here, before the ``hass`` fixture starts,
so that Home Assistant resolves ``custom_components`` to this repository's
package and not to the one bundled with pytest-homeassistant-custom-component.
"""

from __future__ import annotations

import pytest

import custom_components.p2p_energy  # noqa: F401


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom integrations in every test."""
