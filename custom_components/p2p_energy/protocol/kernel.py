"""Which Curl-P kernel runs: the compiled one or numpy.

``p2p_energy_curl`` (``native/`` in the repository) is an optional C extension that
the grid server's install builds; Home Assistant installs only this folder, so
there the numpy path runs. Both give the same results byte for byte (the tests
run the published vectors and the reference libraries against each).

``P2P_ENERGY_CURL_KERNEL`` chooses at import: ``auto`` (the default: compiled when
it is installed), ``numpy``, or ``native`` (refuse to start without it).
"""

from __future__ import annotations

import importlib
import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast

from .errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterator

KernelName = Literal["native", "numpy"]
KERNEL_NAMES: Final[tuple[KernelName, ...]] = ("native", "numpy")
ENVIRONMENT_VARIABLE: Final = "P2P_ENERGY_CURL_KERNEL"
MODULE_NAME: Final = "p2p_energy_curl"


class NativeKernel(Protocol):
    """What ``p2p_energy_curl`` offers (see its C source for the details)."""

    KERNEL: str
    """The instruction set its Curl rounds were compiled for: avx2, sse2, neon, generic."""

    def transform(self, low: Any, high: Any, rounds: int, /) -> None: ...

    def use_instructions(self, name: str, /) -> str: ...

    def transform_single(self, planes: bytearray, rounds: int, /) -> None: ...

    def absorb_single(self, planes: bytearray, rounds: int, trits: Any, /) -> None: ...

    def pack_trits(self, trits: Any, lanes: int, length: int, low: Any, high: Any, /) -> None: ...

    def unpack_trits(self, low: Any, high: Any, length: int, lanes: int, trits: Any, /) -> None: ...

    def kerl_hash(self, trits: Any, rows: int, length: int, squeezes: int, out: Any, /) -> None: ...

    def kerl_chains(self, chunks: Any, rows: int, counts: Any, out: Any, /) -> None: ...

    def search_nonce(
        self,
        base_low: Any,
        base_high: Any,
        lanes: int,
        counter_row: int,
        weight: int,
        first: int,
        stop: int,
        /,
    ) -> tuple[int, int] | None: ...


def _load() -> NativeKernel | None:
    try:
        module = importlib.import_module(MODULE_NAME)
    except ImportError:
        return None
    return cast("NativeKernel", module)


_compiled: Final = _load()
_active: NativeKernel | None = None


def select(name: KernelName | Literal["auto"]) -> None:
    """Use the compiled kernel (``native``; it must be installed), numpy, or the
    compiled one when it is there (``auto``)."""
    global _active  # noqa: PLW0603 - one process-wide switch, read on every call
    if name == "numpy":
        _active = None
    elif name == "native":
        if _compiled is None:
            raise ProtocolError(
                f"{ENVIRONMENT_VARIABLE}=native, but the compiled kernel {MODULE_NAME} "
                "is not installed (build it with a C compiler: pip install -e .)"
            )
        _active = _compiled
    elif name == "auto":
        _active = _compiled
    else:
        raise ProtocolError(f"unknown Curl kernel {name!r}: use auto, native or numpy")


def native() -> NativeKernel | None:
    """The compiled kernel when it is the one in use, else ``None`` (numpy)."""
    return _active


def active() -> KernelName:
    return "numpy" if _active is None else "native"


def available() -> bool:
    """Whether the compiled kernel is installed (whether or not it is in use)."""
    return _compiled is not None


def compiled() -> NativeKernel | None:
    """The installed compiled kernel, in use or not."""
    return _compiled


def describe() -> str:
    """For logs and benchmarks: ``native (avx2)`` or ``numpy``."""
    return "numpy" if _active is None else f"native ({_active.KERNEL})"


@contextmanager
def using(name: KernelName) -> Iterator[None]:
    """Run a block with the given kernel, then restore the one before (tests, benchmarks)."""
    previous = _active
    select(name)
    try:
        yield
    finally:
        _restore(previous)


def _restore(previous: NativeKernel | None) -> None:
    global _active  # noqa: PLW0603
    _active = previous


select(cast("KernelName", os.environ.get(ENVIRONMENT_VARIABLE, "auto").strip().lower() or "auto"))
