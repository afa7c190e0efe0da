"""A running node: its Tangle, worker threads, proof of work, peering and coordinator."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Final

from p2p_energy_protocol.errors import PowInterruptedError
from p2p_energy_protocol.pow import attach_to_tangle
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.trinary import random_trytes

from ..database_availability import database_unavailable
from .config import NodeConfig, normalize_neighbor_url
from .errors import CommandError
from .milestones import build_milestone
from .peer_auth import PeerVerifier, generate_secret
from .peering import Peering
from .pow_queue import ProofOfWorkQueue
from .storage import StorageError, TangleStore
from .tangle import StoreOutcome, Tangle

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import aiohttp

_LOGGER = logging.getLogger(__name__)
_SEED_KEY: Final = "coordinator_seed"
_ADDRESS_KEY: Final = "coordinator_address"
_PEERING_SECRET_KEY: Final = "peering_secret"
RECENTLY_STORED: Final = 4096
"""Transactions remembered as stored (about 11 MB of trytes): a broadcast of a batch
just stored, as clients send it, finds them all."""


def resolve_coordinator(config: NodeConfig, store: TangleStore) -> tuple[str, str | None]:
    """The network's coordinator address and, on the coordinator, its seed.

    A stand-alone node creates its seed once and keeps it in its database. The
    address is remembered too, so a node never follows another network's milestones.
    """
    coordinator = config.coordinator
    with store.begin() as conn:
        seed = coordinator.seed
        if seed is None and coordinator.address is None:
            seed = TangleStore.get_meta(conn, _SEED_KEY)
            if seed is None:
                seed = random_trytes()
                TangleStore.set_meta(conn, _SEED_KEY, seed)
        address = coordinator.address
        if seed is not None:
            derived = generate_address(seed, 0, coordinator.security)
            if address is not None and address != derived:
                raise StorageError(
                    f"coordinator.address {address} is not the address of coordinator.seed "
                    f"at security {coordinator.security} ({derived})"
                )
            address = derived
        assert address is not None
        stored = TangleStore.get_meta(conn, _ADDRESS_KEY)
        if stored is None:
            TangleStore.set_meta(conn, _ADDRESS_KEY, address)
        elif stored != address:
            raise StorageError(
                f"this database belongs to the network of coordinator {stored}, not {address}"
            )
    return address, seed


def resolve_peering_secret(config: NodeConfig, store: TangleStore) -> str:
    """The configured peering secret, else the one this node created on its first start.

    A created secret is logged once, when it is created: the operator gives it to
    each neighbour (as its ``peering.secret``, or this node's entry's ``secret``).
    """
    if config.peering.secret is not None:
        return config.peering.secret
    with store.begin() as conn:
        stored = TangleStore.get_meta(conn, _PEERING_SECRET_KEY)
        if stored is not None:
            return stored
        secret = generate_secret()
        TangleStore.set_meta(conn, _PEERING_SECRET_KEY, secret)
    _LOGGER.warning(
        "created this node's peering secret; it is shown only this once. Configure it on "
        "every neighbour of this node (peering.secret, or secret in its entry for this "
        "node), or set your own peering.secret here: %s",
        secret,
    )
    return secret


class NodeRuntime:
    """Owns the threads and background tasks of one node."""

    def __init__(self, config: NodeConfig, session: aiohttp.ClientSession, url: str) -> None:
        self.config = config
        self.url = url
        self.store = TangleStore.open(config.database_url)
        try:
            self.store.ensure_genesis(config.genesis)
            self.coordinator_address, self._coordinator_seed = resolve_coordinator(
                config, self.store
            )
            peering_secret = resolve_peering_secret(config, self.store)
        except BaseException:
            self.store.close()
            raise
        self.tangle = Tangle(config, self.store, self.coordinator_address)
        # One writer thread: validation and ledger checks never race each other.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="node-writer")
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="node-reader")
        # Remote proof of work takes turns in its own thread; milestones have theirs, so
        # the coordinator never waits behind a client's search.
        self._pow = ThreadPoolExecutor(1, thread_name_prefix="node-pow")
        self._milestone_pow = ThreadPoolExecutor(1, thread_name_prefix="node-milestone-pow")
        limits = config.limits
        self.pow_queue = ProofOfWorkQueue(
            self._pow,
            per_caller=limits.max_attach_queue_per_caller,
            total=limits.max_attach_queue,
            max_seconds=limits.max_attach_seconds,
        )
        self._closing = threading.Event()
        self.peer_verifier = PeerVerifier(config.peering.replay_window)
        self.peering = Peering(self, session, peering_secret)
        self._tasks: list[asyncio.Task[None]] = []
        # Each key signs one milestone only: never build two milestones at once.
        self._milestone_lock = asyncio.Lock()
        # The trytes of the latest transactions stored (see accept), oldest first.
        self._recently_stored: OrderedDict[str, None] = OrderedDict()

    @property
    def issues_milestones(self) -> bool:
        return self._coordinator_seed is not None

    async def start(self) -> None:
        with self.store.begin() as conn:
            for url in self.config.neighbors:
                TangleStore.add_neighbor(conn, normalize_neighbor_url(url))
        await self.write(self.tangle.process_milestones)
        await self.peering.start()
        # The first round runs before the node is reported started, so clients find a
        # milestone at once and nobody races the coordinator's first round.
        if self.issues_milestones and await self._coordinator_round():
            self._tasks.append(asyncio.create_task(self._coordinate(), name="node-coordinator"))

    async def close(self) -> None:
        self._closing.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pow_queue.close()
        await self.peering.stop()
        for executor in (self._pow, self._milestone_pow, self._writer, self._readers):
            executor.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    def neighbors_changed(self) -> None:
        """Verify what neighbours send with the secrets of the current neighbour list."""
        self.peer_verifier.set_neighbors(self.peering.secrets())

    async def read[T](self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, function, *args)

    async def write[T](self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, function, *args)

    async def accept(self, trytes: Sequence[object], *, peer: str | None) -> StoreOutcome:
        """Store transactions and pass what was new to the neighbours."""
        if self._all_stored_lately(trytes):
            # IRI clients store, then broadcast the same trytes: the second request finds
            # them here instead of parsing, hashing and looking them up again.
            return StoreOutcome()
        from_peer = peer is not None and peer in self.peering.urls()

        def run() -> StoreOutcome:
            return self.tangle.store_transactions(trytes, from_peer=from_peer)

        outcome = await self.write(run)
        if outcome.stored:
            self._remember_stored([item.trytes for item in outcome.stored])
            self.peering.broadcast([item.trytes for item in outcome.stored], exclude=peer)
        if from_peer and peer is not None and (outcome.invalid or outcome.incomplete_bundles):
            self.peering.note_problems(peer, outcome)
        return outcome

    def _all_stored_lately(self, trytes: Sequence[object]) -> bool:
        """Whether every item is, byte for byte, a transaction this process stored lately
        (stored transactions are never deleted, so these need no check at all)."""
        recent = self._recently_stored
        return bool(trytes) and all(isinstance(item, str) and item in recent for item in trytes)

    def _remember_stored(self, trytes: Sequence[str]) -> None:
        recent = self._recently_stored
        for item in trytes:
            recent[item] = None
        while len(recent) > RECENTLY_STORED:
            recent.popitem(last=False)

    async def attach(
        self,
        trytes: Sequence[str],
        trunk: str,
        branch: str,
        min_weight_magnitude: int,
        *,
        caller: str,
        waiting: Callable[[], bool] | None = None,
    ) -> list[str]:
        """Remote proof of work for ``caller``, in its turn (see :mod:`.pow_queue`);
        ``waiting()`` says whether the caller still wants it."""
        weight = max(min_weight_magnitude, self.config.min_weight_magnitude)

        def work(should_stop: Callable[[], bool]) -> list[str]:
            return attach_to_tangle(list(trytes), trunk, branch, weight, should_stop=should_stop)

        if waiting is None:
            return await self.pow_queue.run(caller, work)
        return await self.pow_queue.run(caller, work, waiting)

    def interrupt_attaching(self, caller: str) -> None:
        """Stop ``caller``'s own proof of work, queued or running; nobody else's."""
        self.pow_queue.interrupt(caller)

    async def issue_milestone(self) -> bool:
        """Issue the next milestone now if anything is new; True if one was stored."""
        async with self._milestone_lock:
            return await self._issue_milestone()

    async def _issue_milestone(self) -> bool:
        seed = self._coordinator_seed
        if seed is None:
            raise CommandError("this node is not the coordinator of its network")
        # A milestone stored by a round whose processing then failed (the database went
        # away) is recognised first, so its index is never signed a second time.
        await self.write(self.tangle.process_milestones)
        plan = await self.write(self.tangle.milestone_plan, self.config.coordinator.max_references)
        if plan is None:
            return False
        index, _signing_address, previous, tips = plan
        security = self.config.coordinator.security

        def build() -> list[str]:
            return build_milestone(
                seed=seed,
                index=index,
                security=security,
                coordinator_address=self.coordinator_address,
                next_address=generate_address(seed, index, security),
                previous_milestone=previous,
                references=tips,
                min_weight_magnitude=self.config.min_weight_magnitude,
                should_stop=self._closing.is_set,
            )

        trytes = await asyncio.get_running_loop().run_in_executor(self._milestone_pow, build)
        outcome = await self.accept(trytes, peer=None)
        state = await self.read(self.tangle.milestone_state)
        if state.latest is None or state.latest.index < index:
            _LOGGER.error("milestone %d was built but not recognised: %s", index, outcome)
            return False
        return True

    async def _coordinate(self) -> None:
        while True:
            await asyncio.sleep(self.config.coordinator.interval)
            if not await self._coordinator_round():
                return

    async def _coordinator_round(self) -> bool:
        """One round of the coordinator; False once the node is closing."""
        try:
            await self.issue_milestone()
        except PowInterruptedError:
            return False
        except Exception as err:
            if not database_unavailable(err):
                _LOGGER.exception(
                    "issuing a milestone failed; retrying in %s s", self.config.coordinator.interval
                )
            else:
                _LOGGER.warning("database unavailable for the next milestone: %s", err)
        return True
