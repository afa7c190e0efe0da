"""Services: pay the bill, publish now, rotate a channel, deregister."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    ATTR_DEVICE_ID,
    DOMAIN,
    SERVICE_DEREGISTER,
    SERVICE_PAY_BILL,
    SERVICE_PUBLISH_NOW,
    SERVICE_ROTATE_CHANNEL,
)
from .protocol.errors import (
    GridApiError,
    InsufficientBalanceError,
    NodeError,
    ProofOfWorkError,
)
from .protocol.household import Consumer, PaymentRefusedError, PaymentUncertainError

if TYPE_CHECKING:
    from .coordinator import P2PEnergyConfigEntry, P2PEnergyCoordinator
    from .protocol.household import Participant

SERVICE_SCHEMA = vol.Schema({vol.Required(ATTR_DEVICE_ID): cv.string})


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


def _node_error(err: NodeError) -> HomeAssistantError:
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="node_error",
        translation_placeholders={"error": str(err)},
    )


def _grid_error(err: GridApiError) -> HomeAssistantError:
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="grid_error",
        translation_placeholders={"error": err.message},
    )


async def _async_pay_bill(call: ServiceCall) -> ServiceResponse:
    coordinator, participant = _resolve(call.hass, call)
    if not isinstance(participant, Consumer):
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="not_a_consumer",
            translation_placeholders={"name": participant.name},
        )
    try:
        outcome = await participant.pay_bill()
    except PaymentRefusedError as err:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key=err.reason,
            translation_placeholders={"name": participant.name, **err.placeholders},
        ) from err
    except InsufficientBalanceError as err:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="insufficient_balance",
            translation_placeholders={"name": participant.name, "error": str(err)},
        ) from err
    except PaymentUncertainError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="payment_pending",
            translation_placeholders={
                "name": participant.name,
                "amount": str(err.amount),
                "error": str(err.error),
            },
        ) from err
    except NodeError as err:
        raise _node_error(err) from err
    except ProofOfWorkError as err:  # local proof of work: nothing was sent
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="proof_of_work_failed",
            translation_placeholders={"name": participant.name, "error": str(err)},
        ) from err
    await coordinator.async_request_refresh()
    payment = outcome.payment
    return {
        "amount": payment.amount,
        "address": payment.address,
        "bundle": payment.bundle,
        "status": "confirmed" if outcome.confirmed else "pending",
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
    _, participant = _resolve(call.hass, call)
    _refuse_if_deregistered(participant)
    try:
        await participant.deregister()
    except GridApiError as err:
        raise _grid_error(err) from err


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
        DOMAIN, SERVICE_PUBLISH_NOW, _async_publish_now, schema=SERVICE_SCHEMA
    )
    hass.services.async_register(
        DOMAIN, SERVICE_ROTATE_CHANNEL, _async_rotate_channel, schema=SERVICE_SCHEMA
    )
    hass.services.async_register(
        DOMAIN, SERVICE_DEREGISTER, _async_deregister, schema=SERVICE_SCHEMA
    )
