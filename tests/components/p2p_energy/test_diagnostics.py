"""Diagnostics: everything useful, no secret."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from custom_components.p2p_energy.const import CONF_REGISTRATION_ID
from custom_components.p2p_energy.diagnostics import async_get_config_entry_diagnostics
from custom_components.p2p_energy.protocol.household import Consumer

from .conftest import CONSUMER_ID, PRODUCER_TOKEN, SUBENTRIES
from .test_services import call, poll, request

if TYPE_CHECKING:
    from freezegun.api import FrozenDateTimeFactory
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry
    from syrupy.assertion import SnapshotAssertion

    from tests.engine.fake_network import FakeNetwork


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


# Key names that hold secrets, matched loosely (case and "_" ignored) so a secret stored
# under a new name is caught too.
_SECRET_WORDS = ("seed", "sidekey", "token", "secret", "password", "trytes")


def _secrets(data: object, key: str = "") -> set[str]:
    """Every secret value held anywhere in ``data``, by the name it is stored under."""
    if isinstance(data, dict):
        return {found for name, value in data.items() for found in _secrets(value, str(name))}
    if isinstance(data, list | tuple):
        return {found for value in data for found in _secrets(value, key)}
    name = key.lower().replace("_", "")
    if isinstance(data, str) and data and any(word in name for word in _SECRET_WORDS):
        return {data}
    return set()


async def test_diagnostics_hold_no_secret_the_entry_holds(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    fake_network: FakeNetwork,
    trading_entry: MockConfigEntry,
    meters: dict[str, str],
) -> None:
    """Every secret in the entry, its subentries, its stored state and its runtime --
    seeds, side keys, the API token, the grid's registration tokens, a pending payment's
    signed trytes -- is absent from the download."""
    fake_network.issue_tokens = True
    freezer.move_to("2025-03-01T12:00:10+00:00")
    assert await hass.config_entries.async_setup(trading_entry.entry_id)
    await hass.async_block_till_done()
    coordinator = trading_entry.runtime_data
    consumer = coordinator.participants[CONSUMER_ID]
    assert isinstance(consumer, Consumer)
    assert consumer.wallet_address is not None
    fake_network.balances_by_address[consumer.wallet_address] = 1000
    fake_network.confirm_transfers = False
    request(fake_network, 345)
    await poll(hass, freezer)
    await call(hass, "pay_bill", CONSUMER_ID)

    held = _secrets(
        {
            "data": dict(trading_entry.data),
            "options": dict(trading_entry.options),
            "subentries": [dict(s.data) for s in trading_entry.subentries.values()],
            "stored": coordinator.store.as_dict(),
            "runtime": coordinator.diagnostics(),
        }
    )
    # The test sees each kind of secret, so the scan below means something.
    tokens = {f"token-{s['data'][CONF_REGISTRATION_ID]}" for s in SUBENTRIES}
    assert tokens & held
    assert PRODUCER_TOKEN in held
    assert consumer.state.pending_payment is not None
    assert set(consumer.state.pending_payment.trytes) <= held
    text = json.dumps(await async_get_config_entry_diagnostics(hass, trading_entry))
    leaked = sorted(secret for secret in held if secret in text)
    assert not leaked
