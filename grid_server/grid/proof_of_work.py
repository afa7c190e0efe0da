"""The grid's own proof of work: worker processes instead of the node's attachToTangle.

With ``local_pow_workers`` > 0 the grid attaches its payment requests, channel
messages and payouts itself, in a pool of that many worker processes, and only
stores and broadcasts them on the node. The node's single proof-of-work thread
then stays free for the households that attach remotely, and the nonce search
runs outside the grid process (no contention with its event loop, nor, for an
in-process node, with the node).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from p2p_energy_protocol.proof_of_work import LocalProofOfWork

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from p2p_energy_protocol.mam import MamMessage

_LOGGER = logging.getLogger(__name__)


def exit_with_parent() -> None:
    """Worker initializer: end this worker as soon as the process that started it is
    gone, even in the middle of a nonce search (an orphan would search or idle on)."""
    parent = multiprocessing.parent_process()
    if parent is None:  # not a multiprocessing child: nothing to watch
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class ProcessPoolProofOfWork:
    """A :class:`~p2p_energy_protocol.proof_of_work.ProofOfWork` on a pool of worker processes.

    Workers are started with ``spawn`` (a fresh interpreter: forking a process
    that runs threads, as the grid does, can deadlock the child) when first
    needed. A pool whose worker died (killed, out of memory) is replaced and
    the attach tried once more on the new one: proof of work sends nothing, so
    a repeat is harmless. :meth:`close` stops the workers; a grid process that
    dies without closing (SIGKILL, a crash) takes them along, since each worker
    exits when its parent process is gone.
    """

    def __init__(self, workers: int) -> None:
        """Create a pool of ``workers`` processes (at least 1)."""
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"a proof-of-work pool needs at least one worker, got {workers!r}")
        self.workers = workers
        self._pool = self._new_pool()
        self._closed = False

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=exit_with_parent,
        )

    @property
    def executor(self) -> ProcessPoolExecutor:
        """The current pool (replaced when a worker dies)."""
        return self._pool

    async def attach(
        self, trunk: str, branch: str, min_weight_magnitude: int, trytes: Sequence[str]
    ) -> list[str]:
        """``attachToTangle`` in a worker process; see ``ProofOfWork``."""
        return await self._in_worker(
            lambda pool: LocalProofOfWork(pool).attach(trunk, branch, min_weight_magnitude, trytes)
        )

    async def attach_messages(
        self,
        trunk: str,
        branch: str,
        min_weight_magnitude: int,
        messages: Sequence[MamMessage],
        tag: str = "",
    ) -> list[str]:
        """MAM messages' bundles finalised and attached in a worker process (see
        ``MessageProofOfWork``): the grid's event-loop process only stores them."""
        return await self._in_worker(
            lambda pool: LocalProofOfWork(pool).attach_messages(
                trunk, branch, min_weight_magnitude, messages, tag
            )
        )

    async def run[**P, R](self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Any other CPU-bound call in a worker (the grid's batched MAM creation), so it
        runs beside the nonce searches instead of on the grid's event-loop process.
        ``func`` and its arguments must pickle (a module-level function or static
        method, plain data); the call must be safe to repeat (it is tried once more
        on a new pool if a worker died)."""
        call = functools.partial(func, *args, **kwargs)
        return await self._in_worker(
            lambda pool: asyncio.get_running_loop().run_in_executor(pool, call)
        )

    async def _in_worker[R](self, call: Callable[[ProcessPoolExecutor], Awaitable[R]]) -> R:
        pool = self._pool
        try:
            return await call(pool)
        except BrokenProcessPool:
            if self._closed:
                raise
            if pool is self._pool:  # not yet replaced by a concurrent attach
                _LOGGER.warning("a proof-of-work worker process died; starting a new pool")
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            return await call(self._pool)

    async def close(self) -> None:
        """Stop the workers: queued searches are cancelled, a running one is waited
        for (in a thread, so the event loop keeps serving meanwhile)."""
        self._closed = True
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
