"""The node's Tangle: storing validated transactions, milestones, tips and queries.

Methods here are synchronous and touch the database; the web layer runs them in
worker threads (all writes in one thread, so ledger checks never race).
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from p2p_energy_protocol.client import EMPTY_TRYTES
from p2p_energy_protocol.transaction import transactions_from_trytes

from . import ledger
from .errors import CommandError
from .milestones import MilestoneError, milestone_tag, verify_milestone
from .storage import NULL_HASH, MilestoneRecord, TangleStore, TransactionInfo
from .validation import (
    ParsedTransaction,
    assemble_bundles,
    bundle_problems,
    check_transaction,
    incomplete_error,
    parse_trytes,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from sqlalchemy import Connection

    from .config import NodeConfig

TIP_WINDOW = 256
"""Tips at each end (newest, oldest) that getTransactionsToApprove chooses among."""
_TIP_TRIES = 16  # tips tried for a consistent pair before falling back
_LOGGER = logging.getLogger(__name__)


@dataclass
class StoreOutcome:
    """What a store request changed."""

    stored: list[ParsedTransaction] = field(default_factory=list)
    # Peer mode only: transactions dropped as invalid, bundles still incomplete.
    invalid: int = 0
    incomplete_bundles: set[str] = field(default_factory=set)
    milestones_changed: bool = False


@dataclass(frozen=True, slots=True)
class MilestoneState:
    latest: MilestoneRecord | None
    latest_solid: MilestoneRecord | None


class Tangle:
    """Validation, storage and queries over one node's database."""

    def __init__(self, config: NodeConfig, store: TangleStore, coordinator_address: str) -> None:
        self.config = config
        self.store = store
        self.coordinator_address = coordinator_address
        self.security = config.coordinator.security
        self._random = random.Random()

    # -- storing ---------------------------------------------------------------

    def store_transactions(self, trytes: Sequence[object], *, from_peer: bool) -> StoreOutcome:
        """Validate and store transactions.

        From a client, any invalid transaction rejects the whole request and nothing
        is stored. From a neighbour, invalid or incomplete bundles are dropped and the
        rest stored, so one bad bundle never stalls synchronisation.
        """
        outcome = StoreOutcome()
        parsed = self._parse(trytes, lenient=from_peer, outcome=outcome)
        if not parsed:
            return outcome
        now_ms = int(time.time() * 1000)
        with self.store.begin() as conn:
            known = TangleStore.existing_hashes(conn, (p.hash for p in parsed))
            unique: dict[str, ParsedTransaction] = {}
            for item in parsed:
                if item.hash not in known:
                    unique.setdefault(item.hash, item)
            new = list(unique.values())
            if not new:
                return outcome
            valid = self._checked(new, now_ms, from_peer, outcome)
            instances, uncovered = assemble_bundles(valid, lambda b: self._load_bundles(conn, b))
            if uncovered:
                if not from_peer:
                    raise incomplete_error(uncovered)
                outcome.incomplete_bundles.update(item.bundle for item in uncovered)
            accepted: list[list[ParsedTransaction]] = []
            for instance, problem in zip(instances, bundle_problems(instances), strict=True):
                if problem is not None:
                    if not from_peer:
                        raise problem
                    outcome.invalid += len(instance)
                    _LOGGER.warning(
                        "dropped invalid bundle %s from a neighbour", instance[0].bundle
                    )
                    continue
                accepted.append(instance)
            if not from_peer:
                self._check_spends(conn, accepted)
            covered = {item.hash for instance in accepted for item in instance}
            to_store = [item for item in valid if item.hash in covered]
            self._insert(conn, to_store, accepted, now_ms)
            outcome.stored = to_store
        if any(item.transaction.address == self.coordinator_address for item in to_store):
            outcome.milestones_changed = self.process_milestones()
        elif to_store:
            # New transactions may complete the cone of a milestone waiting for them.
            outcome.milestones_changed = self._apply_ready_milestones()
        return outcome

    def _parse(
        self, trytes: Sequence[object], *, lenient: bool, outcome: StoreOutcome
    ) -> list[ParsedTransaction]:
        if not lenient:
            return parse_trytes(trytes)
        parsed: list[ParsedTransaction] = []
        for item in trytes:
            try:
                parsed.extend(parse_trytes([item]))
            except CommandError:
                outcome.invalid += 1
        return parsed

    def _checked(
        self,
        new: Sequence[ParsedTransaction],
        now_ms: int,
        from_peer: bool,
        outcome: StoreOutcome,
    ) -> list[ParsedTransaction]:
        valid: list[ParsedTransaction] = []
        for item in new:
            try:
                check_transaction(
                    item,
                    self.config.min_weight_magnitude,
                    now_ms,
                    self.config.max_future_seconds,
                )
            except CommandError:
                if not from_peer:
                    raise
                outcome.invalid += 1
                continue
            valid.append(item)
        return valid

    def _load_bundles(self, conn: Connection, bundles: Iterable[str]) -> list[ParsedTransaction]:
        infos = TangleStore.infos_by_bundle(conn, bundles)
        found = TangleStore.trytes_of(conn, (info.hash for info in infos))
        trytes = [found[info.hash] for info in infos]
        return [
            ParsedTransaction(tx, tx.hash, item)
            for tx, item in zip(transactions_from_trytes(trytes), trytes, strict=True)
        ]

    def _check_spends(
        self, conn: Connection, instances: Sequence[Sequence[ParsedTransaction]]
    ) -> None:
        """No spending beyond the confirmed balance, nor in conflict with pending spends."""
        spends_by_bundle: dict[str, dict[str, int]] = {}
        for instance in instances:
            bundle = instance[0].bundle
            if bundle in spends_by_bundle:
                continue
            spends: dict[str, int] = {}
            for item in instance:
                if item.transaction.value < 0:
                    address = item.transaction.address
                    spends[address] = spends.get(address, 0) - item.transaction.value
            spends_by_bundle[bundle] = spends
        spending = {b: s for b, s in spends_by_bundle.items() if s}
        if not spending:
            return
        already = TangleStore.applied(conn, spending)
        addresses = sorted({a for b, s in spending.items() if b not in already for a in s})
        if not addresses:
            return
        confirmed = TangleStore.balances_of(conn, addresses)
        pending = TangleStore.pending_spends(conn, addresses, spending)
        claimed: dict[str, int] = {}
        for bundle, spends in spending.items():
            if bundle in already:
                continue
            for address, amount in spends.items():
                balance = confirmed.get(address, 0)
                others = pending.get(address, 0) + claimed.get(address, 0)
                if others:
                    raise CommandError(
                        f"bundle {bundle} spends from address {address}, which another "
                        "unconfirmed bundle already spends from (conflicting spend)"
                    )
                if amount > balance:
                    raise CommandError(
                        f"bundle {bundle} spends {amount} from address {address}, which holds "
                        f"{balance} confirmed"
                    )
                claimed[address] = claimed.get(address, 0) + amount

    def _insert(
        self,
        conn: Connection,
        to_store: Sequence[ParsedTransaction],
        instances: Sequence[Sequence[ParsedTransaction]],
        now_ms: int,
    ) -> None:
        if not to_store:
            return
        batch = {item.hash: item for item in to_store}
        parents = {
            h
            for item in to_store
            for h in (item.transaction.trunk_transaction, item.transaction.branch_transaction)
        }
        stored_parents = TangleStore.infos(conn, parents - batch.keys() - {NULL_HASH})
        solid: dict[str, bool] = {}

        def is_solid(parent: str) -> bool | None:
            if parent == NULL_HASH:
                return True
            if parent in stored_parents:
                return stored_parents[parent].solid
            return solid.get(parent) if parent in batch else False

        # Resolve solidity inside the batch in as many passes as its depth.
        unresolved = list(to_store)
        while unresolved:
            remaining = []
            for item in unresolved:
                trunk = is_solid(item.transaction.trunk_transaction)
                branch = is_solid(item.transaction.branch_transaction)
                if trunk is None or branch is None:
                    remaining.append(item)
                else:
                    solid[item.hash] = trunk and branch
            if len(remaining) == len(unresolved):
                # A cycle is impossible with real hashes; treat leftovers as not solid.
                solid.update(dict.fromkeys((item.hash for item in remaining), False))
                break
            unresolved = remaining
        TangleStore.insert_transactions(
            conn,
            [item.record() for item in to_store],
            solid,
            now_ms,
            {parent: info.seq for parent, info in stored_parents.items()},
        )
        spenders = {
            item.transaction.address
            for instance in instances
            for item in instance
            if item.transaction.value < 0
        }
        TangleStore.add_spent(conn, spenders)
        self._propagate_solidity(conn, [h for h, is_ok in solid.items() if is_ok])

    @staticmethod
    def _propagate_solidity(conn: Connection, newly_solid: list[str]) -> None:
        if not newly_solid or not TangleStore.has_unsolid(conn):
            return
        frontier = newly_solid
        while frontier:
            candidates = TangleStore.unsolid_approvers(conn, frontier)
            parents = {h for info in candidates for h in (info.trunk, info.branch)} - {NULL_HASH}
            known = TangleStore.infos(conn, parents)
            ready = [
                info.hash
                for info in candidates
                if all(
                    parent == NULL_HASH or (parent in known and known[parent].solid)
                    for parent in (info.trunk, info.branch)
                )
            ]
            TangleStore.mark_solid(conn, ready)
            frontier = ready

    # -- milestones --------------------------------------------------------------

    def milestone_state(self) -> MilestoneState:
        with self.store.connect() as conn:
            return MilestoneState(
                TangleStore.latest_milestone(conn),
                TangleStore.latest_milestone(conn, applied_only=True),
            )

    def process_milestones(self) -> bool:
        """Recognise new milestones in order, then confirm those whose cone is solid."""
        changed = False
        with self.store.begin() as conn:
            latest = TangleStore.latest_milestone(conn)
            while True:
                index = latest.index + 1 if latest else 1
                found = self._find_milestone(conn, index, latest)
                if found is None:
                    break
                TangleStore.add_milestone(conn, found)
                _LOGGER.info("milestone %d: %s", found.index, found.hash)
                latest = found
                changed = True
        return self._apply_ready_milestones() or changed

    def _apply_ready_milestones(self) -> bool:
        changed = False
        while True:
            with self.store.begin() as conn:
                solid = TangleStore.latest_milestone(conn, applied_only=True)
                following = TangleStore.milestone(conn, solid.index + 1 if solid else 1)
                if following is None or not ledger.confirm(conn, following):
                    return changed
                changed = True

    def _find_milestone(
        self, conn: Connection, index: int, previous: MilestoneRecord | None
    ) -> MilestoneRecord | None:
        signing_address = previous.next_address if previous else self.coordinator_address
        for tail in TangleStore.tails_at(conn, self.coordinator_address, milestone_tag(index)):
            instance = self._instance_from_tail(conn, tail)
            if instance is None:
                continue
            try:
                verified = verify_milestone(
                    [item.transaction for item in instance],
                    [item.hash for item in instance],
                    index=index,
                    coordinator_address=self.coordinator_address,
                    signing_address=signing_address,
                    previous_milestone=previous.hash if previous else NULL_HASH,
                    security=self.security,
                )
            except MilestoneError as err:
                _LOGGER.warning("bundle %s is not milestone %d: %s", tail.bundle, index, err)
                continue
            return MilestoneRecord(
                index=verified.index,
                hash=verified.hash,
                signing_address=verified.signing_address,
                next_address=verified.next_address,
                applied=False,
                timestamp=verified.timestamp,
            )
        return None

    def _instance_from_tail(
        self, conn: Connection, tail: TransactionInfo
    ) -> list[ParsedTransaction] | None:
        chain: list[ParsedTransaction] = []
        current = tail.hash
        for expected_index in range(tail.last_index + 1):
            trytes = TangleStore.trytes_of(conn, [current]).get(current)
            if trytes is None:
                return None
            (tx,) = transactions_from_trytes([trytes])
            if tx.current_index != expected_index or tx.bundle != tail.bundle:
                return None
            chain.append(ParsedTransaction(tx, current, trytes))
            current = tx.trunk_transaction
        return chain

    def milestone_plan(self, max_references: int) -> tuple[int, str, str, list[str]] | None:
        """What the coordinator's next milestone confirms, or None if nothing is new.

        Returns (index, signing address, previous milestone, references): first (up to
        half of them) the tails of the oldest pending value bundles, so payments and
        payouts confirm with the next milestones wherever they lie in the Tangle; then
        the newest and the oldest tips in turn, so what was just attached confirms soon
        and nothing is left behind for long. All of them if their cones are consistent
        together, else each kept only if the cones chosen so far stay consistent with it.
        """
        with self.store.connect() as conn:
            latest = TangleStore.latest_milestone(conn)
            previous = latest.hash if latest else NULL_HASH
            references = max_references - 1
            payments = TangleStore.pending_value_tails(conn, references // 2)
            newest = TangleStore.tips(conn, references * 4)
            oldest = TangleStore.tips(conn, references * 4, oldest_first=True)
            candidates = [
                tip
                for tip in dict.fromkeys(
                    [
                        *payments,
                        *(tip for pair in itertools.zip_longest(newest, oldest) for tip in pair),
                    ]
                )
                if tip and tip != previous
            ]
            if latest is not None and not candidates:
                return None
            chosen = candidates[:references]
            # Usually the whole choice is consistent: one cone walk instead of one a tip.
            if not ledger.is_consistent(conn, [previous, *chosen]):
                chosen = []
                for tip in candidates:
                    if len(chosen) >= references:
                        break
                    if ledger.is_consistent(conn, [previous, *chosen, tip]):
                        chosen.append(tip)
            if latest is not None and not chosen:
                return None
            index = latest.index + 1 if latest else 1
            signing = latest.next_address if latest else self.coordinator_address
            return index, signing, previous, chosen

    # -- queries -----------------------------------------------------------------

    def find_transactions(
        self,
        addresses: Sequence[str] | None,
        bundles: Sequence[str] | None,
        tags: Sequence[str] | None,
        approvees: Sequence[str] | None,
    ) -> list[str]:
        limit = self.config.limits.max_find_transactions
        with self.store.connect() as conn:
            found = TangleStore.find_hashes(conn, addresses, bundles, tags, approvees, limit)
        if found is None:
            raise CommandError(
                f"Could not complete request: more than {limit} transactions match "
                "(narrow the search)"
            )
        return found

    def get_trytes(self, hashes: Sequence[str]) -> list[str]:
        with self.store.connect() as conn:
            found = TangleStore.trytes_of(conn, hashes)
        return [found.get(h, EMPTY_TRYTES) for h in hashes]

    def tips(self) -> list[str]:
        with self.store.connect() as conn:
            return TangleStore.tips(conn, self.config.limits.max_find_transactions)

    def counts(self) -> tuple[int, int]:
        """(tips, transactions to request): cheap enough for every getNodeInfo."""
        with self.store.connect() as conn:
            return TangleStore.count_tips(conn), len(TangleStore.missing_parents(conn, 1000))

    def transaction_count(self) -> int:
        with self.store.connect() as conn:
            return TangleStore.count_transactions(conn)

    def missing_transactions(self, limit: int) -> list[str]:
        with self.store.connect() as conn:
            return TangleStore.missing_parents(conn, limit)

    def page_since(self, since: int, limit: int) -> tuple[list[str], int, int]:
        """Trytes stored after ``since`` (arrival order), the last seq included, the head."""
        with self.store.connect() as conn:
            rows = TangleStore.page_since(conn, since, limit)
            head = TangleStore.max_seq(conn)
        following = rows[-1][0] if rows else max(since, 0)
        return [row[2] for row in rows], min(following, head), head

    def were_spent(self, addresses: Sequence[str]) -> list[bool]:
        with self.store.connect() as conn:
            spent = TangleStore.spent(conn, addresses)
        return [address in spent for address in addresses]

    def balances(
        self, addresses: Sequence[str], tips: Sequence[str]
    ) -> tuple[list[int], list[str], int]:
        """Confirmed balances (plus the unconfirmed cones of ``tips``), references, index."""
        with self.store.connect() as conn:
            latest = TangleStore.latest_milestone(conn, applied_only=True)
            confirmed = TangleStore.balances_of(conn, addresses)
            if tips:
                self._require_stored(conn, tips, "tips")
                cone = ledger.unconfirmed_cone(conn, tips)
                if cone.missing:
                    raise CommandError("the tips' past cones are not solid on this node")
                delta = ledger.cone_delta(conn, cone)
                values = [confirmed.get(a, 0) + delta.get(a, 0) for a in addresses]
                if any(value < 0 for value in values):
                    raise CommandError("the tips are not consistent (they spend beyond balances)")
                references = list(tips)
            else:
                values = [confirmed.get(a, 0) for a in addresses]
                references = [latest.hash if latest else NULL_HASH]
        return values, references, latest.index if latest else 0

    @staticmethod
    def _require_stored(
        conn: Connection, hashes: Sequence[str], name: str
    ) -> dict[str, TransactionInfo]:
        wanted = [h for h in hashes if h != NULL_HASH]
        found = TangleStore.infos(conn, wanted)
        absent = [h for h in wanted if h not in found]
        if absent:
            raise CommandError(
                f"One of the {name} is absent: {absent[0]} is not stored on this node"
            )
        return found

    def inclusion_states(self, hashes: Sequence[str], tips: Sequence[str]) -> list[bool]:
        """Whether each transaction is referenced by ``tips`` (by any milestone if empty)."""
        with self.store.connect() as conn:
            targets = TangleStore.infos(conn, hashes)
            if not tips:
                return [h in targets and targets[h].confirmed is not None for h in hashes]
            tip_infos = self._require_stored(conn, tips, "tips")
            included: set[str] = set()
            for tip in tips:
                if tip == NULL_HASH:
                    continue
                milestone = TangleStore.milestone_by_hash(conn, tip)
                if milestone is not None and milestone.applied:
                    included.update(
                        h
                        for h, info in targets.items()
                        if info.confirmed is not None and info.confirmed <= milestone.index
                    )
                else:
                    included.update(self._referenced_by(conn, tip_infos[tip], targets))
            return [h in included for h in hashes]

    def _referenced_by(
        self, conn: Connection, tip: TransactionInfo, targets: dict[str, TransactionInfo]
    ) -> set[str]:
        """Targets in ``tip``'s past cone; confirmed transactions older than every
        confirmed target cannot reach one, so the walk skips them."""
        if not targets:
            return set()
        confirmed = [info.confirmed for info in targets.values() if info.confirmed is not None]
        floor = min(confirmed) if confirmed else None
        budget = self.config.limits.max_find_transactions
        found: set[str] = set()
        frontier = {tip.hash}
        seen = set(frontier)
        while frontier:
            infos = TangleStore.infos(conn, frontier)
            following: set[str] = set()
            for info in infos.values():
                if info.hash in targets:
                    found.add(info.hash)
                if info.confirmed is not None and (floor is None or info.confirmed < floor):
                    continue
                for parent in (info.trunk, info.branch):
                    if parent != NULL_HASH and parent not in seen:
                        seen.add(parent)
                        following.add(parent)
            if len(seen) > budget:
                raise CommandError(
                    "getInclusionStates would walk too much of the Tangle for these tips; "
                    "use the latest solid milestone as tip"
                )
            frontier = following
        return found

    def check_consistency(self, tails: Sequence[str]) -> tuple[bool, str]:
        with self.store.connect() as conn:
            infos = self._require_stored(conn, tails, "transactions")
            for h in tails:
                if h == NULL_HASH or infos[h].current_index != 0:
                    raise CommandError(f"Invalid transaction, not a tail: {h}")
            unsolid = [h for h in tails if not infos[h].solid]
            if unsolid:
                return (
                    False,
                    f"tails are not solid (missing a referenced transaction): {unsolid[0]}",
                )
            if not ledger.is_consistent(conn, tails):
                return (
                    False,
                    "tails are not consistent (would lead to an inconsistent ledger state)",
                )
        return True, ""

    def transactions_to_approve(self, depth: int, reference: str | None) -> tuple[str, str]:
        """Two solid tips consistent together: a trunk among the newest tips (or one
        approving ``reference`` if given) and a branch among the oldest, so every new
        transaction also approves one left behind and a burst of tips (a slot's readings
        attached at once) is approved by the traffic that follows it."""
        max_depth = self.config.limits.max_depth
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= max_depth:
            raise CommandError(f"Invalid depth input: depth must be an integer 0..{max_depth}")
        with self.store.connect() as conn:
            latest = TangleStore.latest_milestone(conn, applied_only=True)
            entry = latest.hash if latest else NULL_HASH
            newest = TangleStore.tips(conn, TIP_WINDOW)
            oldest = TangleStore.tips(conn, TIP_WINDOW, oldest_first=True)
            self._random.shuffle(newest)
            self._random.shuffle(oldest)
            if reference is not None:
                trunk = self._tip_approving(conn, reference, depth, latest)
                branch = self._pick_partner(conn, trunk, oldest[:_TIP_TRIES])
                return trunk, branch or trunk
            for trunk in newest[:_TIP_TRIES]:
                # The pair is what the new transaction's cone holds (one check, usually).
                if ledger.is_consistent(conn, [trunk]):
                    return trunk, self._pick_partner(conn, trunk, oldest[:_TIP_TRIES]) or trunk
            return entry, entry

    @staticmethod
    def _pick_partner(conn: Connection, trunk: str, candidates: Sequence[str]) -> str | None:
        for candidate in candidates:
            if candidate != trunk and ledger.is_consistent(conn, [trunk, candidate]):
                return candidate
        return None

    def _tip_approving(
        self, conn: Connection, reference: str, depth: int, latest: MilestoneRecord | None
    ) -> str:
        info = self._require_stored(conn, [reference], "reference transactions").get(reference)
        if info is None:
            return NULL_HASH
        if not info.solid:
            raise CommandError(f"reference transaction {reference} is not solid")
        if (
            info.confirmed is not None
            and latest is not None
            and info.confirmed < latest.index - depth
        ):
            raise CommandError(f"Reference transaction is too old: {reference}")
        if not ledger.is_consistent(conn, [reference]):
            raise CommandError(f"reference transaction {reference} is not consistent")
        # Walk forward from the reference to a tip along consistent approvers.
        current = reference
        for _ in range(10_000):
            approvers = [
                a for a in TangleStore.approvers(conn, [current]) if a.solid and a.hash != current
            ]
            self._random.shuffle(approvers)
            following = next(
                (a.hash for a in approvers if ledger.is_consistent(conn, [a.hash])), None
            )
            if following is None:
                return current
            current = following
        return current
