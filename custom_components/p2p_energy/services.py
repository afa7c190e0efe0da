"""Services: pay the bill, send IOTA, export the wallet seed, get the latest statement,
publish now, rotate a channel, deregister."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.util import dt as dt_util

from .compat import device_owners
from .const import (
    ATTR_ADDRESS,
    ATTR_AMOUNT,
    ATTR_DEVICE_ID,
    DOMAIN,
    LOGGER,
    SERVICE_DEREGISTER,
    SERVICE_EXPORT_SEED,
    SERVICE_GET_STATEMENT,
    SERVICE_PAY_BILL,
    SERVICE_PUBLISH_NOW,
    SERVICE_ROTATE_CHANNEL,
    SERVICE_SEND_IOTA,
)
from .forecast import async_setup_forecast_service
from .protocol.errors import (
    GridApiError,
    GridUnavailableError,
    InsufficientBalanceError,
    IriApiError,
    NodeError,
    ProofOfWorkError,
)
from .protocol.household import (
    Consumer,
    PaymentRefusedError,
    PaymentUncertainError,
    Producer,
    WalletMember,
)
from .protocol.household.connection import WALLET_SECURITY

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from .coordinator import P2PEnergyConfigEntry, P2PEnergyCoordinator
    from .protocol.household import Participant, PaymentOutcome

SERVICE_SCHEMA = vol.Schema({vol.Required(ATTR_DEVICE_ID): cv.string})
ATTR_PREVIEW = "preview"
STATEMENT_SCHEMA = SERVICE_SCHEMA.extend({vol.Optional(ATTR_PREVIEW, default=False): cv.boolean})
SEND_IOTA_SCHEMA = SERVICE_SCHEMA.extend(
    {
        vol.Required(ATTR_ADDRESS): cv.string,
        vol.Required(ATTR_AMOUNT): vol.All(vol.Coerce(int), vol.Range(min=1)),
    }
)


def _resolve(hass: HomeAssistant, call: ServiceCall) -> tuple[P2PEnergyCoordinator, Participant]:
    """The loaded participant behind the call's device."""
    device_id: str = call.data[ATTR_DEVICE_ID]
    device = dr.async_get(hass).async_get(device_id)
    if device is None:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="unknown_device",
            translation_placeholders={"device_id": device_id},
        )
    identifiers = {identifier for domain, identifier in device.identifiers if domain == DOMAIN}
    for entry_id in device_owners(device):
        entry: P2PEnergyConfigEntry | None = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            continue
        for identifier in identifiers & set(entry.subentries):
            if entry.state is not ConfigEntryState.LOADED:
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="entry_not_loaded",
                    translation_placeholders={"name": device.name or device_id},
                )
            coordinator = entry.runtime_data
            return coordinator, coordinator.participants[identifier]
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="not_a_participant",
        translation_placeholders={"name": device.name or device_id},
    )


def _refuse_if_deregistered(participant: Participant) -> None:
    """A deregistered participant has left the grid: nothing more to publish or withdraw."""
    if participant.state.deregistered:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="deregistered",
            translation_placeholders={"name": participant.name},
        )


def _grid_error(err: GridApiError, grid_url: str) -> HomeAssistantError:
    """A translated error for a grid that refused or did not answer."""
    if isinstance(err, GridUnavailableError):  # its text is the network library's
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="grid_unavailable",
            translation_placeholders={"grid_url": grid_url},
        )
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="grid_error",
        translation_placeholders={"error": err.message},
    )


def _wallet_error(
    err: Exception, participant: Participant, coordinator: P2PEnergyCoordinator
) -> HomeAssistantError:
    """A translated error for a failed wallet operation (never the network library's text)."""
    name = participant.name
    node_url = coordinator.connection.node_url
    if isinstance(err, PaymentRefusedError):
        return ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key=err.reason,
            translation_placeholders={"name": name, **err.placeholders},
        )
    if isinstance(err, InsufficientBalanceError):
        return ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="insufficient_balance",
            translation_placeholders={"name": name, "error": str(err)},
        )
    if isinstance(err, PaymentUncertainError):
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="payment_pending",
            translation_placeholders={
                "name": name,
                "amount": str(err.amount),
                "node_url": node_url,
            },
        )
    if isinstance(err, IriApiError):  # the node answered: its own explanation
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="node_error",
            translation_placeholders={"node_url": node_url, "error": err.message},
        )
    if isinstance(err, ProofOfWorkError):  # local proof of work: nothing was sent
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="proof_of_work_failed",
            translation_placeholders={"name": name, "error": str(err)},
        )
    return HomeAssistantError(  # unreachable, timed out, or not an IOTA node
        translation_domain=DOMAIN,
        translation_key="node_unavailable",
        translation_placeholders={"node_url": node_url},
    )


WALLET_ERRORS = (
    PaymentRefusedError,
    InsufficientBalanceError,
    PaymentUncertainError,
    NodeError,
    ProofOfWorkError,
)


def _wallet_holder(participant: Participant) -> WalletMember:
    """The participant as a wallet holder (producers and consumers with a wallet seed)."""
    if not isinstance(participant, WalletMember) or not participant.has_wallet:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="no_wallet",
            translation_placeholders={"name": participant.name},
        )
    return participant


async def _async_transfer(
    coordinator: P2PEnergyCoordinator,
    participant: Participant,
    transfer: Coroutine[Any, Any, PaymentOutcome],
) -> ServiceResponse:
    """Run a transfer from the wallet; its outcome as the response, failures translated."""
    try:
        outcome = await transfer
    except WALLET_ERRORS as err:
        LOGGER.debug("%s: the transfer failed: %r", participant.name, err)
        raise _wallet_error(err, participant, coordinator) from err
    await coordinator.async_request_refresh()
    payment = outcome.payment
    return {
        "amount": payment.amount,
        "address": payment.address,
        "bundle": payment.bundle,
        "status": "confirmed" if outcome.confirmed else "pending",
    }


async def _async_pay_bill(call: ServiceCall) -> ServiceResponse:
    coordinator, participant = _resolve(call.hass, call)
    if not isinstance(participant, Consumer):
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="not_a_consumer",
            translation_placeholders={"name": participant.name},
        )
    return await _async_transfer(coordinator, participant, participant.pay_bill())


async def _async_send_iota(call: ServiceCall) -> ServiceResponse:
    coordinator, participant = _resolve(call.hass, call)
    wallet = _wallet_holder(participant)
    address: str = call.data[ATTR_ADDRESS].strip().upper()
    transfer = wallet.send(address, call.data[ATTR_AMOUNT])
    return await _async_transfer(coordinator, participant, transfer)


async def _async_export_seed(call: ServiceCall) -> ServiceResponse:
    _, participant = _resolve(call.hass, call)
    wallet = _wallet_holder(participant)
    # Only in the response: never logged, never in diagnostics.
    return {
        "seed": wallet.wallet_seed,
        "security": WALLET_SECURITY,
        "addresses": list(wallet.state.wallet_addresses),
    }


async def _async_get_statement(call: ServiceCall) -> ServiceResponse:
    """The participant's latest final statement (or its current period's preview) and
    the portal page where its statements are."""
    coordinator, participant = _resolve(call.hass, call)
    if not isinstance(participant, Producer | Consumer):
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="no_statements",
            translation_placeholders={"name": participant.name},
        )
    _refuse_if_deregistered(participant)
    if not participant.registered:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="not_registered",
            translation_placeholders={"name": participant.name},
        )
    grid = coordinator.grid
    registration_id = participant.registration_id
    token = participant.state.registration_token
    statement: dict[str, Any] | None
    try:
        if call.data[ATTR_PREVIEW]:
            statement = await grid.statement_preview(registration_id, token=token)
        else:
            statement = await grid.latest_statement(registration_id, token=token)
    except GridApiError as err:
        raise _grid_error(err, coordinator.connection.grid_url) from err
    return {
        "statement": statement,
        "portal_url": coordinator.participant_portal_url(registration_id),
    }


async def _async_publish_now(call: ServiceCall) -> None:
    coordinator, participant = _resolve(call.hass, call)
    _refuse_if_deregistered(participant)
    await coordinator.async_publish([participant], dt_util.utcnow())


async def _async_rotate_channel(call: ServiceCall) -> None:
    coordinator, participant = _resolve(call.hass, call)
    await participant.rotate()
    await coordinator.async_request_refresh()


async def _async_deregister(call: ServiceCall) -> None:
    coordinator, participant = _resolve(call.hass, call)
    _refuse_if_deregistered(participant)
    try:
        await participant.deregister()
    except GridApiError as err:
        raise _grid_error(err, coordinator.connection.grid_url) from err


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's services (once, for every grid connection)."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_PAY_BILL,
        _async_pay_bill,
        schema=SERVICE_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_SEND_IOTA,
        _async_send_iota,
        schema=SEND_IOTA_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_EXPORT_SEED,
        _async_export_seed,
        schema=SERVICE_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_GET_STATEMENT,
        _async_get_statement,
        schema=STATEMENT_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
    hass.services.async_register(
        DOMAIN, SERVICE_PUBLISH_NOW, _async_publish_now, schema=SERVICE_SCHEMA
    )
    hass.services.async_register(
        DOMAIN, SERVICE_ROTATE_CHANNEL, _async_rotate_channel, schema=SERVICE_SCHEMA
    )
    hass.services.async_register(
        DOMAIN, SERVICE_DEREGISTER, _async_deregister, schema=SERVICE_SCHEMA
    )
    async_setup_forecast_service(hass)
