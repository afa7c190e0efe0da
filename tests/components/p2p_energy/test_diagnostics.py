"""Diagnostics: everything useful, no secret."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from custom_components.p2p_energy.diagnostics import async_get_config_entry_diagnostics

from .conftest import PRODUCER_TOKEN, SUBENTRIES

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry
    from syrupy.assertion import SnapshotAssertion


async def test_diagnostics(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    """The download matches the snapshot and holds no seed, side key or token."""
    # Called directly: the download view trips over the frozen clock of these tests.
    diagnostics = await async_get_config_entry_diagnostics(hass, loaded_entry)
    assert diagnostics == snapshot
    text = json.dumps(diagnostics)
    for subentry in SUBENTRIES:
        for key in ("seed", "side_key", "wallet_seed"):
            if key in subentry["data"]:
                assert subentry["data"][key] not in text
    assert PRODUCER_TOKEN not in text
