"""Leaving the grid when an entry or subentry is removed, without losing a wallet's IOTA.

Home Assistant asks nothing before it removes an entry or subentry, so the
warning comes first: a repair issue stays up while a producer's or consumer's
wallet holds IOTA that no bill needs, telling the user to send or export it.
On removal each participant leaves the grid (DELETE of its registration, then
its goodbye), bounded in time so a grid that is down cannot hold the removal
up. A wallet that still holds IOTA, or whose balance cannot be read, is not
deleted with the entry: its seed is kept in ``.storage/p2p_energy.retained_wallets``
and a repair issue says where (never the seed itself). A registration the grid
did not take off is kept there too, and removed on a later start of Home
Assistant, once the grid answers.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util

from .const import CONF_GRID_URL, CONF_NODE_URL, DOMAIN, LOGGER
from .protocol.errors import GridApiError, NodeError
from .protocol.household import GridConnection, WalletMember

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterable

    from .coordinator import P2PEnergyConfigEntry, P2PEnergyCoordinator
    from .protocol.household import Participant

RETAINED_STORAGE_KEY: Final = f"{DOMAIN}.retained_wallets"
RETAINED_STORAGE_VERSION: Final = 1
# Leaving the grid (and reading the balance) may not hold the removal up longer than this.
LEAVE_TIMEOUT: Final = 10.0
ISSUE_WALLET_HOLDS_IOTA: Final = "wallet_holds_iota"
ISSUE_WALLET_RETAINED: Final = "wallet_retained"


def _retained_store(hass: HomeAssistant) -> Store[dict[str, Any]]:
    return Store(hass, RETAINED_STORAGE_VERSION, RETAINED_STORAGE_KEY, atomic_writes=True)


async def _load_retained(store: Store[dict[str, Any]]) -> dict[str, Any]:
    data = await store.async_load() or {}
    return {
        "wallets": list(data.get("wallets", [])),
        "departures": list(data.get("departures", [])),
    }


@callback
def async_update_wallet_issues(hass: HomeAssistant, coordinator: P2PEnergyCoordinator) -> None:
    """Raise the warning while a wallet holds spare IOTA; take it down once it is empty."""
    entry = coordinator.config_entry
    for participant in coordinator.participants.values():
        if not isinstance(participant, WalletMember) or not participant.has_wallet:
            continue
        if participant.participant_id not in entry.subentries:
            continue  # removed, leaving: async_participants_leave settles its issues
        spare = participant.spare_balance
        if spare is None:
            continue  # unknown: keep whatever was last said
        issue_id = f"{ISSUE_WALLET_HOLDS_IOTA}_{participant.participant_id}"
        if spare > 0:
            ir.async_create_issue(
                hass,
                DOMAIN,
                issue_id,
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key=ISSUE_WALLET_HOLDS_IOTA,
                translation_placeholders={
                    "name": participant.name,
                    "title": entry.title,
                    "amount": str(spare),
                },
            )
        else:
            ir.async_delete_issue(hass, DOMAIN, issue_id)


async def _bounded[T](what: str, name: str, work: Awaitable[T]) -> tuple[bool, T | None]:
    """Await ``work`` for at most LEAVE_TIMEOUT; log (not raise) a failure."""
    try:
        async with asyncio.timeout(LEAVE_TIMEOUT):
            return True, await work
    except TimeoutError:
        LOGGER.warning("%s: %s did not finish within %.0f s", name, what, LEAVE_TIMEOUT)
    except (GridApiError, NodeError) as err:
        LOGGER.warning("%s: %s failed: %s", name, what, err)
    return False, None


async def async_participants_leave(
    hass: HomeAssistant, entry: P2PEnergyConfigEntry, participants: Iterable[Participant]
) -> None:
    """Deregister ``participants`` at the grid (or their producer); keep a funded wallet's seed.

    Never raises: a removal goes ahead whatever the network does.
    """
    store = _retained_store(hass)
    retained = await _load_retained(store)
    now = dt_util.utcnow().isoformat()
    for participant in participants:
        name = participant.name
        if isinstance(participant, WalletMember) and participant.has_wallet:
            _, balance = await _bounded(
                "reading the wallet's balance", name, participant.read_balance()
            )
            if balance != 0:
                _retain_wallet(hass, retained, entry, participant, balance, now)
        if not participant.state.deregistered:
            left, _ = await _bounded("leaving the grid", name, participant.deregister())
            if left:
                LOGGER.info("%s: deregistered (%s)", name, participant.registration_id)
            else:
                retained["departures"].append(_departure(entry, participant, now))
                LOGGER.warning(
                    "%s: its registration %s stays at %s for now; it is removed when Home "
                    "Assistant starts again and the grid answers",
                    name,
                    participant.registration_id,
                    _counterpart(entry, participant),
                )
        # Gone with its subentry: the warning about it is over (a kept wallet has its own).
        ir.async_delete_issue(
            hass, DOMAIN, f"{ISSUE_WALLET_HOLDS_IOTA}_{participant.participant_id}"
        )
    await store.async_save(retained)


def _counterpart(entry: P2PEnergyConfigEntry, participant: Participant) -> str:
    return participant.config.producer_url or str(entry.data[CONF_GRID_URL])


def _departure(
    entry: P2PEnergyConfigEntry, participant: Participant, removed: str
) -> dict[str, Any]:
    return {
        "name": participant.name,
        "grid_url": entry.data[CONF_GRID_URL],
        "node_url": entry.data[CONF_NODE_URL],
        "producer_url": participant.config.producer_url,
        "kind": participant.kind,
        "registration_id": participant.registration_id,
        "side_key": participant.side_key,
        "token": participant.state.registration_token,
        "removed": removed,
    }


def _retain_wallet(
    hass: HomeAssistant,
    retained: dict[str, Any],
    entry: P2PEnergyConfigEntry,
    participant: WalletMember,
    balance: int | None,
    removed: str,
) -> None:
    """Keep the seed of a wallet that may hold IOTA, and say where it is (not what it is)."""
    retained["wallets"].append(
        {
            "name": participant.name,
            "kind": participant.kind,
            "grid": entry.title,
            "seed": participant.wallet_seed,
            "security": 2,
            "addresses": list(participant.state.wallet_addresses),
            "balance": balance,
            "removed": removed,
        }
    )
    amount = "an unknown amount of" if balance is None else str(balance)
    LOGGER.warning(
        "%s was removed while its wallet held %s IOTA: its seed is kept in .storage/%s",
        participant.name,
        amount,
        RETAINED_STORAGE_KEY,
    )
    ir.async_delete_issue(hass, DOMAIN, f"{ISSUE_WALLET_HOLDS_IOTA}_{participant.participant_id}")
    ir.async_create_issue(
        hass,
        DOMAIN,
        f"{ISSUE_WALLET_RETAINED}_{participant.participant_id}",
        is_fixable=False,
        is_persistent=True,
        severity=ir.IssueSeverity.WARNING,
        translation_key=ISSUE_WALLET_RETAINED,
        translation_placeholders={"name": participant.name, "amount": amount, "removed": removed},
    )


async def async_retry_departures(hass: HomeAssistant) -> None:
    """Remove the registrations a grid did not take off at removal (once per start)."""
    store = _retained_store(hass)
    retained = await _load_retained(store)
    if not retained["departures"]:
        return
    session = async_get_clientsession(hass)
    remaining = []
    for departure in retained["departures"]:
        connection = GridConnection(session, departure["grid_url"], departure["node_url"], 9)
        if departure["producer_url"]:
            work = connection.deregister_source(
                departure["producer_url"], departure["registration_id"], departure["side_key"]
            )
        else:
            work = connection.deregister(
                departure["registration_id"], departure["side_key"], departure["token"]
            )
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await work
        except GridApiError as err:
            if err.status in (403, 404):  # gone already, or no longer ours to remove
                LOGGER.info("%s: registration already removed (%s)", departure["name"], err)
                continue
            remaining.append(departure)
        except TimeoutError:
            remaining.append(departure)
        else:
            LOGGER.info("%s: deregistered after its removal", departure["name"])
    retained["departures"] = remaining
    await store.async_save(retained)
