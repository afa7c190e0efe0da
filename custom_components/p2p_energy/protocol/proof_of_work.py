"""Where a node client's ``attachToTangle`` runs: the :class:`ProofOfWork` strategy.

An :class:`~.client.IriClient` without a strategy asks the node (remote proof of
work); with one, such as :class:`LocalProofOfWork`, it chains the transactions and
searches their nonces itself and only stores and broadcasts on the node, as pyota's
and ``@iota/core``'s local proof of work do.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .mam.transport import messages_to_transactions
from .pow import DEFAULT_LANES, attach_to_tangle, attach_transactions

if TYPE_CHECKING:
    from collections.abc import Sequence
    from concurrent.futures import Executor

    from .mam.channel import MamMessage


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


@runtime_checkable
class MessageProofOfWork(ProofOfWork, Protocol):
    """A :class:`ProofOfWork` that also builds MAM messages' bundles where it attaches
    them (:meth:`~.client.IriClient.publish_mams` uses it when the strategy has it):
    finalising the bundles (Kerl, the secure-tag search) then runs in the strategy's
    executor, beside the nonce search, instead of in the caller's process."""

    async def attach_messages(
        self,
        trunk: str,
        branch: str,
        min_weight_magnitude: int,
        messages: Sequence[MamMessage],
        tag: str = "",
    ) -> list[str]:
        """Each message's zero-value bundle (see
        :func:`~.mam.transport.messages_to_transactions`), chained onto ``(trunk,
        branch)`` in the order given and attached: the trytes ``attach`` returns for the
        same bundles, tail first."""
        ...


def attach_messages(
    messages: Sequence[MamMessage],
    tag: str,
    trunk: str,
    branch: str,
    min_weight_magnitude: int,
    timestamp: int | None = None,
    now_ms: int | None = None,
    *,
    lanes: int = DEFAULT_LANES,
) -> list[str]:
    """Finalise the messages' bundles together and attach them in one call: what
    ``publish_mams`` sends to ``attachToTangle``, done in one place (a worker process).
    ``timestamp`` (Unix seconds) is the bundles', ``now_ms`` the attachment's (default:
    now)."""
    bundles = messages_to_transactions(
        messages, tag, int(time.time()) if timestamp is None else timestamp
    )
    head_first = [tx for bundle in bundles for tx in reversed(bundle)]
    return attach_transactions(head_first, trunk, branch, min_weight_magnitude, now_ms, lanes=lanes)


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

    async def attach_messages(
        self,
        trunk: str,
        branch: str,
        min_weight_magnitude: int,
        messages: Sequence[MamMessage],
        tag: str = "",
    ) -> list[str]:
        """Build, finalise and attach the messages' bundles in the executor; see
        :class:`MessageProofOfWork`."""
        call = functools.partial(
            attach_messages,
            list(messages),
            tag,
            trunk,
            branch,
            min_weight_magnitude,
            lanes=self._lanes,
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)
