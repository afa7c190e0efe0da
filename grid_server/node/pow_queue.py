"""Remote proof of work (attachToTangle): one search at a time, fair between callers.

Each caller (an IP address; an IPv6 /64) has its own first-in-first-out queue of at
most ``max_attach_queue_per_caller`` requests, and the node at most
``max_attach_queue`` in all; the next search is taken from the callers in turn, so
one caller's many or heavy requests delay another's by one request at most. A
search stops after ``max_attach_seconds``, and a request whose caller has gone
(closed the connection) is dropped from the queue or stopped, so no work is done
for nobody. ``interruptAttachingToTangle`` stops only the caller's own searches.
Milestones never come through here: the coordinator has a thread of its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from p2p_energy_protocol.errors import PowInterruptedError

from .errors import CommandError

if TYPE_CHECKING:
    from concurrent.futures import Executor

_LOGGER = logging.getLogger(__name__)
_RETRY_AFTER: Final = 5

Work = Callable[[Callable[[], bool]], list[str]]


def caller_of(remote: str | None) -> str:
    """Whose proof of work a request is: its IP address, an IPv6 network by its /64."""
    if not remote:
        return "unknown"
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _busy(message: str, status: int) -> CommandError:
    """Too much proof of work queued: the request may come again later."""
    return CommandError(message, status, retry_after=_RETRY_AFTER)


def _always() -> bool:
    return True


@dataclass(eq=False)
class _Job:
    caller: str
    work: Work
    future: asyncio.Future[list[str]]
    # Whether whoever asked is still waiting for the answer.
    waiting: Callable[[], bool] = _always
    stop: threading.Event = field(default_factory=threading.Event)


class ProofOfWorkQueue:
    """Runs remote proof of work in ``executor``, fairly, within time limits."""

    def __init__(
        self, executor: Executor, *, per_caller: int, total: int, max_seconds: float
    ) -> None:
        self._executor = executor
        self._per_caller = per_caller
        self._total = total
        self._max_seconds = max_seconds
        # caller -> queued jobs
        self._queues: dict[str, deque[_Job]] = {}
        # caller -> when it was last served (a counter): the least recent goes next
        self._served: dict[str, int] = {}
        self._turn = 0
        self._running: _Job | None = None
        self._wakeup = asyncio.Event()
        self._closing = threading.Event()
        self._worker: asyncio.Task[None] | None = None

    def queued(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    async def run(
        self, caller: str, work: Work, waiting: Callable[[], bool] = _always
    ) -> list[str]:
        """Queue ``work(should_stop)`` for ``caller`` and wait for its result.

        ``waiting()`` tells whether the caller still wants the answer."""
        if self._closing.is_set():
            raise _busy("the node is shutting down", 503)
        queue = self._queues.get(caller)
        mine = len(queue) if queue is not None else 0
        if self._running is not None and self._running.caller == caller:
            mine += 1
        if mine >= self._per_caller:
            raise _busy(
                f"attachToTangle: {mine} of your requests are queued or running already "
                f"(at most {self._per_caller}); wait for them",
                429,
            )
        if self.queued() >= self._total:
            raise _busy(
                f"attachToTangle: the node's proof of work queue is full ({self._total} "
                "requests); try again shortly",
                503,
            )
        job = _Job(caller, work, asyncio.get_running_loop().create_future(), waiting)
        self._queues.setdefault(caller, deque()).append(job)
        if self._worker is None:
            self._worker = asyncio.create_task(self._serve(), name="node-pow-queue")
        self._wakeup.set()
        return await job.future

    def interrupt(self, caller: str) -> int:
        """Stop ``caller``'s running search and drop its queued ones; how many were hit."""
        hit = 0
        for job in self._queues.pop(caller, deque()):
            if not job.future.done():
                job.future.set_exception(_interrupted())
                hit += 1
        running = self._running
        if running is not None and running.caller == caller:
            running.stop.set()
            hit += 1
        return hit

    async def close(self) -> None:
        self._closing.set()
        if self._running is not None:
            self._running.stop.set()
        for queue in self._queues.values():
            for job in queue:
                if not job.future.done():
                    job.future.set_exception(_busy("the node is shutting down", 503))
        self._queues.clear()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    def _next(self) -> _Job | None:
        """The first live job of the caller served least recently."""
        while self._queues:
            caller = min(self._queues, key=lambda name: self._served.get(name, 0))
            queue = self._queues[caller]
            job = queue.popleft()
            if not queue:
                del self._queues[caller]
            if job.future.done():
                continue
            if not job.waiting():
                job.future.cancel()
                continue
            self._turn += 1
            self._served[caller] = self._turn
            if len(self._served) > 10_000:
                # Forget callers long gone; those still queued keep their turn.
                self._served = {name: self._served.get(name, 0) for name in self._queues}
            return job
        return None

    async def _serve(self) -> None:
        while True:
            job = self._next()
            if job is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._running = job
            try:
                await self._search(job)
            finally:
                self._running = None

    async def _search(self, job: _Job) -> None:
        deadline = time.monotonic() + self._max_seconds

        def should_stop() -> bool:
            return (
                job.stop.is_set()
                or self._closing.is_set()
                or time.monotonic() > deadline
                or not job.waiting()
            )

        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, job.work, should_stop)
        except PowInterruptedError:
            if job.stop.is_set() or self._closing.is_set():
                outcome: BaseException = _interrupted()
            else:
                outcome = CommandError(
                    f"attachToTangle stopped after {self._max_seconds:g} s of proof of work: "
                    "send fewer transactions or a lower weight"
                )
            if not job.future.done():
                job.future.set_exception(outcome)
        except Exception as err:  # the caller's request fails, the queue carries on
            if not job.future.done():
                job.future.set_exception(err)
        else:
            if not job.future.done():
                job.future.set_result(result)


def _interrupted() -> CommandError:
    return CommandError("attachToTangle was interrupted (interruptAttachingToTangle)")
