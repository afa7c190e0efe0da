"""Where the supported Home Assistant releases differ: the one place that branches on them.

Supported: 2025.4 (the oldest, ``hacs.json``) to 2026.10 (the newest tested). Everything
else in the integration reads the same on every release. Each branch carries a comment
naming its side of the threshold (``ha>=2026.8`` or ``ha<2026.8``), from which the coverage
configuration leaves out the branch the running release never takes; once the oldest
supported release passes a threshold, its ``ha<`` branch goes.
"""

from __future__ import annotations

from typing import Final, cast

from homeassistant.const import MAJOR_VERSION, MINOR_VERSION
from homeassistant.helpers import device_registry as dr

RUNNING_RELEASE: Final = (MAJOR_VERSION, MINOR_VERSION)

# 2026.8: a device belongs to exactly one config entry (``config_entry_id``, at most one
# subentry), identifiers are unique per config entry only, and a device names its parent
# by registry id (``via_device_id``). ``via_device``, ``config_entries`` and the
# registry-wide ``async_get_device`` report a deprecation from then on.
SINGLE_ENTRY_DEVICES: Final = RUNNING_RELEASE >= (2026, 8)


def via_device(parent: dr.DeviceEntry) -> dr.DeviceInfo:
    """The device-info fields that hang a device under ``parent`` (same config entry)."""
    if SINGLE_ENTRY_DEVICES:  # ha>=2026.8
        return cast("dr.DeviceInfo", {"via_device_id": parent.id})
    else:  # ha<2026.8  # noqa: RET505 (keeps each release's branch one block)
        (identifier,) = parent.identifiers
        return dr.DeviceInfo(via_device=identifier)


def device_owners(device: dr.DeviceEntry) -> dict[str, set[str | None]]:
    """The config entries a device belongs to, each with its subentries (None: no subentry)."""
    if SINGLE_ENTRY_DEVICES:  # ha>=2026.8
        owner: str = device.config_entry_id  # type: ignore[attr-defined, unused-ignore]
        subentry: str | None = device.config_subentry_id  # type: ignore[attr-defined, unused-ignore]
        return {owner: {subentry}}
    else:  # ha<2026.8  # noqa: RET505
        return {entry_id: set(ids) for entry_id, ids in device.config_entries_subentries.items()}
