"""The compiled Curl kernel against the numpy path, bit for bit, and how one is chosen.

Every other protocol test runs once per kernel (tests/curl_kernels.py); this module
compares the two directly on random states and searches, and checks that the
library falls back to numpy when the compiled module is missing, as it is in Home
Assistant.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from p2p_energy_protocol import kernel
from p2p_energy_protocol.curl import Curl, CurlBatch, curl_hash
from p2p_energy_protocol.errors import ProtocolError
from p2p_energy_protocol.kerl import kerl_hash, kerl_hash_many, kerl_hash_repeated
from p2p_energy_protocol.pow import find_nonce, transaction_weight
from p2p_energy_protocol.trinary import TRYTE_ALPHABET, trytes_to_trits

from tests.curl_kernels import require_compiled

if TYPE_CHECKING:
    from collections.abc import Iterator

CURL_KERNEL_INDEPENDENT = True
"""These tests pick the kernels themselves."""

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _compiled_kernel() -> None:
    require_compiled()


@pytest.fixture(params=["best", "avx2", "portable"])
def instructions(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each comparison with the best instructions the CPU has (AVX-512VL on 128-lane
    blocks, or AVX2), with AVX2 alone (256-lane blocks) where the CPU has it, and with
    the portable build that other CPUs and ARM boards run."""
    compiled = kernel.compiled()
    assert compiled is not None
    if request.param == "avx2" and _cpu_lacks("avx2"):
        pytest.skip("this CPU has no AVX2")
    name = compiled.use_instructions(request.param)
    try:
        yield name
    finally:
        compiled.use_instructions("best")


def _cpu_lacks(flag: str) -> bool:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return f" {flag} " not in cpuinfo.replace("\n", " ")


def run_both(action):  # type: ignore[no-untyped-def]
    results = {}
    for name in kernel.KERNEL_NAMES:
        with kernel.using(name):
            results[name] = action()
    return results["native"], results["numpy"]


@pytest.mark.usefixtures("instructions")
@pytest.mark.parametrize("rounds", [27, 81])
@pytest.mark.parametrize("lanes", [1, 5, 63, 64, 65, 255, 256, 257, 700, 1024, 1100])
def test_batch_transform_is_identical(lanes: int, rounds: int) -> None:
    rng = np.random.default_rng(lanes * rounds)
    states = rng.integers(-1, 2, size=(lanes, 729), dtype=np.int8)

    def transform_twice() -> np.ndarray:
        batch = CurlBatch(lanes, rounds)
        batch.set_state(states)
        batch.transform()
        batch.transform()
        return batch.state()

    native, numpy = run_both(transform_twice)
    assert np.array_equal(native, numpy)


@pytest.mark.usefixtures("instructions")
@pytest.mark.parametrize("rounds", [27, 81])
def test_single_sponge_is_identical(rounds: int) -> None:
    rng = np.random.default_rng(rounds)
    for _ in range(30):
        state = rng.integers(-1, 2, size=729, dtype=np.int8)

        def transform_twice(state: np.ndarray = state) -> np.ndarray:
            sponge = Curl(rounds)
            sponge.state = state
            sponge.transform()
            sponge.transform()
            return sponge.state

        native, numpy = run_both(transform_twice)
        assert np.array_equal(native, numpy)


@pytest.mark.usefixtures("instructions")
@pytest.mark.parametrize("rounds", [27, 81])
@pytest.mark.parametrize("length", [1, 242, 243, 244, 8019])
def test_single_sponge_absorbs_identically(rounds: int, length: int) -> None:
    """Whole chunks and a short last one replace the state's first trits, as numpy does."""
    rng = np.random.default_rng(rounds + length)
    state = rng.integers(-1, 2, size=729, dtype=np.int8)
    trits = rng.integers(-1, 2, size=length, dtype=np.int8)

    def absorb_and_squeeze() -> np.ndarray:
        sponge = Curl(rounds)
        sponge.state = state
        sponge.absorb(trits)
        return np.concatenate([sponge.state, sponge.squeeze(486)])

    native, numpy = run_both(absorb_and_squeeze)
    assert np.array_equal(native, numpy)


@pytest.mark.usefixtures("instructions")
def test_extreme_states_are_identical() -> None:
    """All -1, all 0, all 1: every bit pattern of the encoding in every lane."""
    for value in (-1, 0, 1):
        states = np.full((300, 729), value, dtype=np.int8)

        def transform(states: np.ndarray = states) -> np.ndarray:
            batch = CurlBatch(300, 81)
            batch.set_state(states)
            batch.transform()
            return batch.state()

        native, numpy = run_both(transform)
        assert np.array_equal(native, numpy)


@pytest.mark.usefixtures("instructions")
@pytest.mark.parametrize(("weight", "lanes"), [(1, 64), (7, 64), (9, 1024), (9, 320), (10, 4096)])
def test_proof_of_work_finds_the_same_nonce(weight: int, lanes: int) -> None:
    rng = random.Random(weight * lanes)
    for _ in range(3):
        transaction = "".join(rng.choice(TRYTE_ALPHABET) for _ in range(2673))
        native, numpy = run_both(lambda t=transaction: find_nonce(t, weight, lanes=lanes))
        assert native == numpy
        assert transaction_weight(curl_hash(trytes_to_trits(transaction[:-27] + native))) >= weight


@pytest.mark.parametrize(
    ("rows", "chunks", "squeezes"), [(1, 1, 1), (3, 2, 1), (64, 6, 1), (5, 1, 3), (2, 4, 27)]
)
def test_kerl_is_identical(rows: int, chunks: int, squeezes: int) -> None:
    rng = np.random.default_rng(rows * 100 + chunks * 10 + squeezes)
    trits = rng.integers(-1, 2, size=(rows, 243 * chunks), dtype=np.int8)
    trits[0, :242] = 1  # the largest chunk value, and its 243rd trit ignored
    if rows > 2:
        trits[1, :242] = -1  # the smallest
        trits[2] = 0
    native, numpy = run_both(lambda: kerl_hash_many(trits, 243 * squeezes))
    assert np.array_equal(native, numpy)
    single_native, single_numpy = run_both(lambda: kerl_hash(trits[0], 243 * squeezes))
    assert np.array_equal(single_native, single_numpy)
    assert np.array_equal(single_native, numpy[0])


def test_kerl_rows_sharing_chunks_with_the_row_above_are_identical() -> None:
    """The compiled kernel reuses a chunk's encoding when the row above has the same
    chunk (a tag search changes one chunk of several); rows that differ only in a
    chunk's ignored 243rd trit, in one trit, or not at all must all hash right."""
    rng = np.random.default_rng(13)
    base = rng.integers(-1, 2, size=6 * 243, dtype=np.int8)
    rows = np.tile(base, (12, 1))
    rows[1, 243 + 5] = -rows[1, 243 + 5] or 1  # one trit of chunk 1
    rows[3, 242] = 1 - abs(rows[3, 242])  # the ignored trit of chunk 0 only
    rows[4, :243] = rng.integers(-1, 2, size=243, dtype=np.int8)  # a new first chunk
    rows[6:, 4 * 243 : 5 * 243] = rng.integers(-1, 2, size=(6, 243), dtype=np.int8)
    native, numpy = run_both(lambda: kerl_hash_many(rows))
    assert np.array_equal(native, numpy)
    assert np.array_equal(native[0], native[2])
    assert np.array_equal(native[0], native[3])


def test_kerl_digests_cover_both_signs_and_the_reduction() -> None:
    """Digests are 384-bit two's complement; both signs and values beyond 3^242 / 2
    (reduced to the balanced residue) occur among a few thousand random hashes."""
    rng = np.random.default_rng(7)
    trits = rng.integers(-1, 2, size=(4000, 243), dtype=np.int8)
    native, numpy = run_both(lambda: kerl_hash_many(trits))
    assert np.array_equal(native, numpy)
    assert (native[:, 242] == 0).all()
    assert len({int(row[241]) for row in native}) == 3


def test_kerl_chains_are_identical() -> None:
    rng = np.random.default_rng(11)
    chunks = rng.integers(-1, 2, size=(40, 243), dtype=np.int8)
    counts = [int(count) for count in rng.integers(0, 27, size=40)]
    counts[0] = 0  # unchanged, 243rd trit included
    chunks[0, 242] = 1
    native, numpy = run_both(lambda: kerl_hash_repeated(chunks, counts))
    assert np.array_equal(native, numpy)
    assert np.array_equal(native[0], chunks[0])


@pytest.mark.usefixtures("instructions")
def test_the_search_leaves_the_interpreter_free() -> None:
    """The GIL is released during a search, so the event loop or other threads keep running."""
    rng = random.Random(3)
    transaction = "".join(rng.choice(TRYTE_ALPHABET) for _ in range(2673))
    stop = threading.Event()
    ticks = 0

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    with kernel.using("native"):
        started = time.monotonic()
        find_nonce(transaction, 11)
        elapsed = time.monotonic() - started
    stop.set()
    counter.join()
    # Sleeping 1 ms per tick, the thread ticks about once per ms it gets the GIL back in.
    assert ticks >= min(5, elapsed * 100)


@pytest.mark.usefixtures("instructions")
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda m: m.transform(np.ones((729, 1), np.uint64), np.ones((729, 1), np.uint64), 9),
            "27 or 81",
        ),
        (
            lambda m: m.transform(np.ones((728, 1), np.uint64), np.ones((728, 1), np.uint64), 81),
            "729",
        ),
        (
            lambda m: m.transform(np.ones((729, 1), np.uint64), np.ones((729, 2), np.uint64), 81),
            "differ",
        ),
        (lambda m: m.transform_single(bytearray(191), 81), "192"),
        (lambda m: m.transform_single(bytearray(192), 80), "27 or 81"),
        (lambda m: m.absorb_single(bytearray(192), 81, b""), "not empty"),
        (lambda m: m.absorb_single(bytearray(191), 81, b"\x01"), "192 bytes"),
        (lambda m: m.absorb_single(bytearray(192), 9, b"\x01"), "27 or 81"),
        (lambda m: m.search_nonce(b"", b"", 63, 169, 9, 0, 1), "multiple of 64"),
        (lambda m: m.search_nonce(b"", b"", 64, 240, 9, 0, 1), "within the nonce"),
        (lambda m: m.search_nonce(b"", b"", 64, 169, 0, 0, 1), "weight"),
        (lambda m: m.search_nonce(b"", b"", 64, 169, 9, 5, 1), "range"),
        (lambda m: m.search_nonce(b"", b"", 64, 169, 9, 0, 1), "base planes"),
        (lambda m: m.kerl_hash(bytes(243), 1, 242, 1, bytearray(243)), "multiple of 243"),
        (lambda m: m.kerl_hash(bytes(243), 1, 243, 1, bytearray(242)), "out has 242 bytes"),
        (lambda m: m.kerl_hash(bytes(242), 1, 243, 1, bytearray(243)), "trits has 242 bytes"),
        (lambda m: m.kerl_chains(bytes(243), 1, np.array([-1]), bytearray(243)), "non-negative"),
        (lambda m: m.kerl_chains(bytes(243), 1, np.array([1], np.int32), bytearray(243)), "counts"),
    ],
)
def test_compiled_kernel_rejects_bad_arguments(call, message: str) -> None:  # type: ignore[no-untyped-def]
    compiled = kernel.compiled()
    assert compiled is not None
    with pytest.raises(ValueError, match=message):
        call(compiled)


def test_compiled_kernel_refuses_read_only_planes() -> None:
    compiled = kernel.compiled()
    assert compiled is not None
    planes = np.ones((729, 1), np.uint64)
    planes.setflags(write=False)
    with pytest.raises((BufferError, TypeError, ValueError)):
        compiled.transform(planes, planes, 81)


def _python(code: str, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **environment}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


WITHOUT_COMPILED_KERNEL = "import sys; sys.modules['p2p_energy_curl'] = None\n"


def test_without_the_compiled_module_the_numpy_path_runs() -> None:
    """As in Home Assistant, where only custom_components/p2p_energy/ is installed."""
    result = _python(
        WITHOUT_COMPILED_KERNEL
        + "from custom_components.p2p_energy.protocol import kernel, pow, mam\n"
        "assert not kernel.available() and kernel.active() == 'numpy', kernel.describe()\n"
        "nonce = pow.find_nonce('A' * 2673, 7)\n"
        "channel = mam.create_channel('B' * 81, 2, 'restricted', 'KEY')\n"
        "message = mam.create_message(channel, {'command': 'hello'})\n"
        "print(nonce, message.root)\n",
        P2P_ENERGY_CURL_KERNEL="auto",
    )
    assert result.returncode == 0, result.stderr
    with kernel.using("native"):
        expected = find_nonce("A" * 2673, 7)
    assert result.stdout.split()[0] == expected


def test_environment_variable_chooses_the_kernel() -> None:
    code = "from p2p_energy_protocol import kernel; print(kernel.describe())"
    assert _python(code, P2P_ENERGY_CURL_KERNEL="numpy").stdout.strip() == "numpy"
    assert _python(code, P2P_ENERGY_CURL_KERNEL="native").stdout.startswith("native (")
    assert _python(code, P2P_ENERGY_CURL_KERNEL="").stdout.startswith("native (")


def test_requiring_a_missing_compiled_kernel_fails_clearly() -> None:
    result = _python(
        WITHOUT_COMPILED_KERNEL + "from p2p_energy_protocol import kernel",
        P2P_ENERGY_CURL_KERNEL="native",
    )
    assert result.returncode != 0
    assert "p2p_energy_curl is not installed" in result.stderr


def test_instruction_sets_are_named(instructions: str) -> None:
    compiled = kernel.compiled()
    assert compiled is not None
    assert instructions == compiled.KERNEL
    assert instructions in {"avx512", "avx2", "sse2", "neon", "generic", "portable"}
    with pytest.raises(ValueError, match="best"):
        compiled.use_instructions("fastest")


def test_unknown_kernel_name_is_refused() -> None:
    result = _python("import p2p_energy_protocol.kernel", P2P_ENERGY_CURL_KERNEL="fast")
    assert result.returncode != 0
    assert "unknown Curl kernel 'fast'" in result.stderr
    with pytest.raises(ProtocolError, match="unknown"):
        kernel.select("fast")  # type: ignore[arg-type]
