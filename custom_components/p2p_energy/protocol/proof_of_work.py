"""Where a node client's ``attachToTangle`` runs: the :class:`ProofOfWork` strategy.

An :class:`~.client.IriClient` without a strategy asks the node (remote proof of
work); with one, such as :class:`LocalProofOfWork`, it chains the transactions and
searches their nonces itself and only stores and broadcasts on the node, as pyota's
and ``@iota/core``'s local proof of work do.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Protocol

from .pow import DEFAULT_LANES, attach_to_tangle

if TYPE_CHECKING:
    from collections.abc import Sequence
    from concurrent.futures import Executor


class ProofOfWork(Protocol):
    """Where a client's ``attachToTangle`` (chaining and proof of work) is done.

    ``attach`` takes what the IRI command takes, the transactions in the order
    clients send them (each bundle last index first), and returns what it
    returns: the attached transactions' trytes, tail first, ready for
    ``storeTransactions``.
    """

    async def attach(
        self, trunk: str, branch: str, min_weight_magnitude: int, trytes: Sequence[str]
    ) -> list[str]:
        """Chain ``trytes`` onto ``(trunk, branch)`` and do their proof of work."""
        ...


class LocalProofOfWork:
    """Proof of work on this machine: :func:`~.pow.attach_to_tangle` in an executor.

    ``executor`` is where the nonce search runs; ``None`` is the event loop's
    default executor (in Home Assistant, its executor threads). A
    ``ProcessPoolExecutor`` uses other cores: the call and its arguments (a
    module-level function, strings and integers) pickle. The caller owns the
    executor and shuts it down. The attachment timestamp comes from this
    machine's clock, which the node checks against its own (it refuses
    timestamps too far in the future). The search is done at the weight asked for:
    unlike the node's attachToTangle, which raises a lower weight to its own minimum,
    so a node requiring more refuses the transactions (``IriApiError`` from
    storeTransactions).

    Errors: bad input raises the :class:`~.errors.ProtocolError` the node would
    refuse it with (from the worker, for a process pool); a process pool whose
    worker died raises ``concurrent.futures.process.BrokenProcessPool``, and a
    shut-down executor ``RuntimeError``. Nothing reaches the node in any case.
    """

    def __init__(self, executor: Executor | None = None, *, lanes: int = DEFAULT_LANES) -> None:
        """``lanes``: candidates per Curl transform (see :func:`~.pow.find_nonce`)."""
        self._executor = executor
        self._lanes = lanes

    @property
    def executor(self) -> Executor | None:
        """The executor the searches run in (``None``: the loop's default)."""
        return self._executor

    async def attach(
        self, trunk: str, branch: str, min_weight_magnitude: int, trytes: Sequence[str]
    ) -> list[str]:
        """IRI's ``attachToTangle`` done here; see :class:`ProofOfWork`."""
        call = functools.partial(
            attach_to_tangle,
            list(trytes),
            trunk,
            branch,
            min_weight_magnitude,
            lanes=self._lanes,
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)
