"""The private network's ledger: confirmation by milestones, balances and consistency.

Balances are the genesis balances plus every value bundle confirmed by a
milestone. A milestone confirms its past cone (trunk/branch closure); a bundle
counts once per bundle hash however often it was reattached. A set of
transactions is *consistent* when applying the unconfirmed value bundles of its
past cone leaves no address below zero.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .storage import NULL_HASH, MilestoneRecord, TangleStore, TransactionInfo

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from sqlalchemy import Connection

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Cone:
    """The unconfirmed part of a past cone, and what it references but the node lacks."""

    members: Mapping[str, TransactionInfo]
    missing: frozenset[str]


def unconfirmed_cone(conn: Connection, starts: Iterable[str]) -> Cone:
    """Trunk/branch closure of ``starts``, stopping at confirmed transactions."""
    members, missing = TangleStore.unconfirmed_cone(conn, starts)
    return Cone(members, frozenset(missing))


def _bundle_order(info: TransactionInfo) -> tuple[int, int, str]:
    # Every node must apply a milestone's bundles in the same order.
    return (info.timestamp, info.attachment_timestamp, info.hash)


def pending_bundles(conn: Connection, cone: Cone) -> list[tuple[str, list[tuple[str, int]]]]:
    """The value bundles whose tails are in ``cone`` and that are not applied yet, in order."""
    tails = sorted(
        (info for info in cone.members.values() if info.current_index == 0), key=_bundle_order
    )
    if not tails:
        return []
    entries = TangleStore.value_entries(conn, sorted({tail.bundle for tail in tails}))
    if not entries:
        return []
    already = TangleStore.applied(conn, entries)
    ordered: list[tuple[str, list[tuple[str, int]]]] = []
    taken: set[str] = set()
    for tail in tails:
        if tail.bundle in entries and tail.bundle not in already and tail.bundle not in taken:
            taken.add(tail.bundle)
            ordered.append((tail.bundle, entries[tail.bundle]))
    return ordered


def cone_delta(conn: Connection, cone: Cone) -> dict[str, int]:
    delta: dict[str, int] = {}
    for _bundle, entries in pending_bundles(conn, cone):
        for address, value in entries:
            delta[address] = delta.get(address, 0) + value
    return delta


def is_consistent(conn: Connection, starts: Iterable[str]) -> bool:
    """Whether the past cones of ``starts`` are solid and keep every balance >= 0."""
    wanted = {start for start in starts if start != NULL_HASH}
    known = TangleStore.infos(conn, wanted)
    # A solid transaction's whole past cone is stored, so checking the starts suffices.
    if len(known) < len(wanted) or not all(info.solid for info in known.values()):
        return False
    if not TangleStore.has_pending_spends(conn) or TangleStore.pending_spends_covered(conn):
        return True
    cone = unconfirmed_cone(conn, wanted)
    delta = cone_delta(conn, cone)
    spenders = [address for address, change in delta.items() if change < 0]
    current = TangleStore.balances_of(conn, spenders)
    return all(current.get(address, 0) + delta[address] >= 0 for address in spenders)


def confirm(conn: Connection, milestone: MilestoneRecord) -> bool:
    """Confirm the milestone's past cone and apply its value bundles.

    The cone's transfers are applied together, as IRI did: the coordinator only
    confirms a cone whose net change keeps every balance at or above zero (the same
    test as :func:`is_consistent`), whatever order its bundles were made in. Should a
    cone overspend all the same (another coordinator's rules, a diverged ledger),
    the bundles that fit are applied in a fixed order and the others stay
    unconfirmed, so no node ever reports an unfunded transfer as included.

    Returns False (and changes nothing) while the cone is not solid yet.
    """
    tail = TangleStore.infos(conn, [milestone.hash]).get(milestone.hash)
    if tail is None or not tail.solid:
        return False
    cone = unconfirmed_cone(conn, [milestone.hash])
    bundles = pending_bundles(conn, cone)
    addresses = {address for _bundle, entries in bundles for address, _value in entries}
    working = TangleStore.balances_of(conn, addresses)
    net: dict[str, int] = {}
    for _bundle, entries in bundles:
        for address, value in entries:
            net[address] = net.get(address, 0) + value
    if all(working.get(address, 0) + change >= 0 for address, change in net.items()):
        applied = [bundle for bundle, _entries in bundles]
        changed = {address: working.get(address, 0) + change for address, change in net.items()}
    else:
        applied, changed = _apply_what_fits(milestone, bundles, working)
    refused = {bundle for bundle, _entries in bundles} - set(applied)
    confirmed = sorted(h for h, info in cone.members.items() if info.bundle not in refused)
    TangleStore.mark_confirmed(conn, confirmed, milestone.index)
    TangleStore.set_balances(conn, changed)
    TangleStore.mark_applied(conn, applied, milestone.index)
    TangleStore.mark_milestone_applied(conn, milestone.index)
    return True


def _apply_what_fits(
    milestone: MilestoneRecord,
    bundles: list[tuple[str, list[tuple[str, int]]]],
    working: dict[str, int],
) -> tuple[list[str], dict[str, int]]:
    """Bundles in order, each applied only if its inputs hold enough at that point."""
    changed: dict[str, int] = {}
    applied: list[str] = []
    for bundle, entries in bundles:
        trial = dict.fromkeys({address for address, _value in entries}, 0)
        for address, value in entries:
            trial[address] += value
        if any(working.get(address, 0) + change < 0 for address, change in trial.items()):
            _LOGGER.warning(
                "milestone %d confirms bundle %s that spends more than its inputs hold; "
                "it stays unconfirmed and its transfer is not applied",
                milestone.index,
                bundle,
            )
            continue
        for address, change in trial.items():
            working[address] = working.get(address, 0) + change
            changed[address] = working[address]
        applied.append(bundle)
    return applied, changed
