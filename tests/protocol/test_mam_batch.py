"""create_messages (many channels in shared Curl lanes) and the lane-based create_message
give exactly what the straightforward step-by-step creation gives."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from p2p_energy_protocol.errors import MamError
from p2p_energy_protocol.mam import (
    MamChannel,
    MamMode,
    MamReference,
    create_channel,
    create_message,
    create_messages,
    parse_messages,
)
from p2p_energy_protocol.mam import batch as mam_batch
from p2p_energy_protocol.mam.nonce import find_nonce, find_nonces
from p2p_energy_protocol.mam.pascal import pascal_encode
from p2p_energy_protocol.trinary import TRYTE_ALPHABET, trits_to_int

from .mam_reference import reference_create_message

MODES: tuple[MamMode, ...] = ("public", "private", "restricted")
REFERENCES: tuple[MamReference, ...] = ("mam.js", "mam.client.js")

trytes = st.text(alphabet=TRYTE_ALPHABET, min_size=81, max_size=81)


@st.composite
def channels(draw: st.DrawFn, security: int | None = None) -> MamChannel:
    mode = draw(st.sampled_from(MODES))
    count = draw(st.sampled_from([1, 1, 1, 2, 3, 5]))
    return MamChannel(
        seed=draw(trytes),
        mode=mode,
        side_key=draw(st.text(alphabet=TRYTE_ALPHABET, min_size=1, max_size=81))
        if mode == "restricted"
        else None,
        security=draw(st.integers(1, 3)) if security is None else security,
        start=draw(st.sampled_from([0, 1, 7, 3**20, 2**52])),
        count=count,
        next_count=draw(st.sampled_from([1, 1, 2, 4])),
        index=draw(st.integers(0, count - 1)),
        reference=draw(st.sampled_from(REFERENCES)),
    )


messages: st.SearchStrategy[Any] = st.one_of(
    st.fixed_dictionaries(  # type: ignore[misc]
        {"command": st.just("payment-request"), "owed": st.integers(0, 10**12)},
        optional={"note": st.text(max_size=40)},
    ),
    st.text(alphabet=TRYTE_ALPHABET, max_size=900),
)


def reference_run(items: list[tuple[MamChannel, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
    created = [reference_create_message(channel, message) for channel, message in items]
    return created, [channel.to_json() for channel, _ in items]


@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(channels(), messages), min_size=1, max_size=40))
def test_batch_equals_one_by_one(items: list[tuple[MamChannel, Any]]) -> None:
    expected = reference_run(copy.deepcopy(items))
    batch = copy.deepcopy(items)
    created = create_messages(batch)
    assert (created, [channel.to_json() for channel, _ in batch]) == expected


@settings(max_examples=10, deadline=None)
@given(channels(), messages)
def test_single_create_equals_reference(channel: MamChannel, message: Any) -> None:
    expected = reference_create_message(copy.deepcopy(channel), message)
    assert create_message(channel, message) == expected


@pytest.mark.parametrize("security", [1, 2, 3])
@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("run", [24, 40])
def test_full_runs_of_every_security_and_reference(
    security: int, reference: MamReference, run: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs larger than the few-leaf path, split into several runs, mixed modes: 48
    leaves per run use word-aligned chain lanes, 80, 40, 24 and 20 dense ones."""
    monkeypatch.setattr(mam_batch, "MAX_BATCH", run)
    rng = np.random.default_rng(security)
    items = []
    for number in range(60):
        mode = MODES[number % 3]
        seed = "".join(rng.choice(list(TRYTE_ALPHABET), 81))
        made = create_channel(
            seed, security, mode, "SIDE" if mode == "restricted" else None, reference=reference
        )
        made.start = int(rng.integers(0, 1000))
        items.append((made, {"command": "payment-request", "owed": number, "pad": "x" * number}))
    expected = reference_run(copy.deepcopy(items))
    created = create_messages(items)
    assert (created, [channel.to_json() for channel, _ in items]) == expected
    parsed = parse_messages(
        [
            (message.payload, message.root, channel.side_key)
            for message, (channel, _) in zip(created, items, strict=True)
        ]
    )
    assert all(not isinstance(result, MamError) for result in parsed)


def test_a_channel_listed_twice_gets_consecutive_messages() -> None:
    channel = create_channel("A" * 81, 2, "restricted", "KEY")
    other = create_channel("B" * 81, 1, "public")
    items = [(channel, "ONE"), (other, "TWO"), (channel, "THREE"), (channel, "FOUR")]
    expected = reference_run(copy.deepcopy(items))
    assert create_messages(items) == expected[0]
    assert channel.start == 3
    assert other.start == 1
    assert create_messages([]) == []


def test_an_invalid_item_moves_no_channel() -> None:
    good = create_channel("A" * 81, 2, "restricted", "KEY")
    bad = create_channel("B" * 81, 2, "restricted", "KEY")
    bad.security = 4
    with pytest.raises(MamError):
        create_messages([(good, "ABC"), (bad, "ABC")])
    with pytest.raises(MamError):
        create_messages([(good, "ABC"), (good, 3.5)])  # type: ignore[list-item]
    assert good.start == 0


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("security", [1, 2, 3])
def test_batched_nonce_search_matches_the_single_search(
    reference: MamReference, security: int
) -> None:
    rng = np.random.default_rng(security)
    states = rng.integers(-1, 2, size=(50, 729)).astype(np.int8)
    nonces = find_nonces(states, security, reference)
    for row in range(states.shape[0]):
        assert np.array_equal(nonces[row], find_nonce(states[row], security, reference))
    short = find_nonces(states[:5], security, reference, length=12)
    for row in range(5):
        assert np.array_equal(short[row], find_nonce(states[row], security, reference, length=12))


def test_nonce_search_counter_wraps_like_the_single_search() -> None:
    state = np.zeros(729, dtype=np.int8)
    state[54:81] = 1  # the largest counter: the next iteration wraps to the smallest
    assert trits_to_int(state[54:81]) == (3**27 - 1) // 2
    assert np.array_equal(find_nonces(state[None], 2)[0], find_nonce(state, 2))


def test_batched_nonce_search_rejects_bad_arguments() -> None:
    states = np.zeros((2, 729), dtype=np.int8)
    with pytest.raises(MamError):
        find_nonces(states[:, :243], 1)
    with pytest.raises(MamError):
        find_nonces(states, 0)
    with pytest.raises(MamError):
        find_nonces(states, 1, length=80)


def test_subseed_preimages_wrap_like_signing() -> None:
    from p2p_energy_protocol import signing

    seeds = np.ones((3, 243), dtype=np.int8)  # the largest seed: + index wraps around
    indexes = [0, 1, 2**53 - 1]
    expected = np.stack([signing._subseed_preimages(seeds[0], [index])[0] for index in indexes])
    assert np.array_equal(mam_batch._subseed_preimages(seeds, indexes), expected)
    assert pascal_encode(0).size == 4
