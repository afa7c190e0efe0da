"""Property tests of MAM parsing: hostile payloads, roots and side keys raise
MamError subclasses (never another exception, never a wrong message), and spam
at a channel address never hides the real message."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from p2p_energy_protocol.errors import (
    InvalidTrytesError,
    MamAuthenticationError,
    MamError,
    MamPayloadError,
    ProtocolError,
)
from p2p_energy_protocol.mam import (
    MamChannel,
    MamMessage,
    create_channel,
    create_message,
    message_to_transactions,
    message_trytes,
    parse_message,
    parse_messages,
    pascal_decode,
    pascal_encode,
    payload_from_transactions,
)
from p2p_energy_protocol.pow import attach_to_tangle
from p2p_energy_protocol.transaction import Transaction
from p2p_energy_protocol.trinary import trytes_to_trits

from .profiles import FUZZ, scaled
from .strategies import fixed_trytes, json_values, mutate_trytes, near_trytes, trytes

SIDE_KEY = "RELIABILITY"
READING = {"command": "usage", "startTime": 1_700_000_000_000, "endTime": 1_700_000_900_000}


@cache
def attached(position: int) -> tuple[Transaction, ...]:
    """The published message's bundle attached as on the Tangle (weight 1: cheap)."""
    message, _ = published()[position]
    bundle = message_to_transactions(message, timestamp=1_700_000_000)
    trytes = attach_to_tangle(
        [t.to_trytes() for t in reversed(bundle)], "9" * 81, "9" * 81, 1, 1_700_000_000_000
    )
    return tuple(Transaction.from_trytes(t) for t in trytes)


@cache
def published() -> tuple[tuple[MamMessage, str | None], ...]:
    """Messages of every mode (and security 1 and 3), created once: creation costs ~0.1 s."""
    made: list[tuple[MamMessage, str | None]] = []
    for mode, side_key, security in (
        ("restricted", SIDE_KEY, 2),
        ("public", None, 1),
        ("private", None, 3),
        ("restricted", "A", 1),
    ):
        channel = create_channel("F" * 80 + "Z", security, mode, side_key)  # type: ignore[arg-type]
        made.append((create_message(channel, {**READING, "usage": 1.25}), side_key))
    return tuple(made)


messages = st.integers(0, 3).map(lambda n: published()[n])


def test_published_messages_parse() -> None:
    for message, side_key in published():
        parsed = parse_message(message.payload, message.root, side_key)
        assert parsed.data == {**READING, "usage": 1.25}
        assert parsed.next_root == message.next_root


@scaled(0.5)
@given(messages, st.data())
def test_any_changed_tryte_is_detected(
    published_message: tuple[MamMessage, str | None], data: st.DataObject
) -> None:
    message, side_key = published_message
    tampered = mutate_trytes(data, message.payload)
    try:
        parsed = parse_message(tampered, message.root, side_key)
    except MamError:
        return
    # The payload's very last trit carries nothing (as in the references): a change
    # there is accepted, but the message and the next root are the genuine ones.
    changed = np.flatnonzero(trytes_to_trits(tampered) != trytes_to_trits(message.payload))
    assert changed.tolist() == [3 * len(message.payload) - 1]
    assert parsed.data == {**READING, "usage": 1.25}
    assert parsed.next_root == message.next_root


@scaled(0.5)
@given(messages, st.data())
def test_truncated_or_extended_payloads_are_rejected(
    published_message: tuple[MamMessage, str | None], data: st.DataObject
) -> None:
    message, side_key = published_message
    if data.draw(st.booleans(), label="truncate"):
        cut = data.draw(st.integers(0, len(message.payload) - 1))
        changed = message.payload[:cut]
    else:
        changed = message.payload + data.draw(trytes(min_size=1, max_size=3000))
    try:
        parsed = parse_message(changed, message.root, side_key)
    except MamError:
        return
    # Only trailing trytes past the signed part may be ignored, never changing the message.
    assert changed.startswith(message.payload)
    assert len(changed) > len(message.payload)
    assert parsed.data == {**READING, "usage": 1.25}


@scaled(0.5)
@given(messages, trytes(min_size=1, max_size=81))
def test_wrong_side_key_is_an_authentication_error(
    published_message: tuple[MamMessage, str | None], wrong_key: str
) -> None:
    message, side_key = published_message
    if (side_key or "").ljust(81, "9") == wrong_key.ljust(81, "9"):
        return
    with pytest.raises(MamError):
        parse_message(message.payload, message.root, wrong_key)


@scaled(0.5)
@given(messages, fixed_trytes(81))
def test_wrong_root_is_an_authentication_error(
    published_message: tuple[MamMessage, str | None], wrong_root: str
) -> None:
    message, side_key = published_message
    if wrong_root == message.root:
        return
    with pytest.raises(MamError):
        parse_message(message.payload, wrong_root, side_key)


@FUZZ
@given(st.one_of(near_trytes(max_size=6000), trytes(max_size=6000)), fixed_trytes(81))
def test_garbage_payloads_raise_mam_errors(payload: str, root: str) -> None:
    with pytest.raises((MamPayloadError, MamAuthenticationError)):
        parse_message(payload, root, SIDE_KEY)


@FUZZ
@given(near_trytes(max_size=100).filter(lambda s: len(s) != 81 or not s.isupper()))
def test_malformed_roots_are_rejected(root: str) -> None:
    message, side_key = published()[0]
    with pytest.raises((InvalidTrytesError, MamError)):
        parse_message(message.payload, root, side_key)


@scaled(0.25)
@given(st.lists(st.tuples(messages, st.integers(0, 3)), min_size=1, max_size=12))
def test_batch_parse_matches_single_parses(
    picks: list[tuple[tuple[MamMessage, str | None], int]],
) -> None:
    items: list[tuple[str, str, str | None]] = []
    for (message, side_key), damage in picks:
        payload = message.payload
        if damage == 1:
            payload = payload[:100] + ("A" if payload[100] != "A" else "B") + payload[101:]
        elif damage == 2:
            payload = payload[: len(payload) // 2]
        items.append((payload, message.root, side_key if damage != 3 else "WRONGKEY"))
    results = parse_messages(items)
    assert len(results) == len(items)
    for (payload, root, side_key), result in zip(items, results, strict=True):
        if isinstance(result, MamError):
            with pytest.raises(type(result)):
                parse_message(payload, root, side_key)
        else:
            assert result == parse_message(payload, root, side_key)


# The decoder reads at most 20 trytes (MAX_PASCAL_TRYTES): 60 balanced trits.
LARGEST_DECODABLE = (3**60 - 1) // 2


@FUZZ
@given(st.integers(0, LARGEST_DECODABLE))
def test_pascal_round_trip(value: int) -> None:
    encoded = pascal_encode(value)
    assert pascal_decode(encoded) == (value, encoded.size)
    padded = np.concatenate([np.zeros(5, dtype=np.int8), encoded, np.ones(7, dtype=np.int8)])
    assert pascal_decode(padded, 5) == (value, 5 + encoded.size)


@FUZZ
@given(st.integers(LARGEST_DECODABLE + 1, 3**80))
def test_pascal_encode_refuses_numbers_its_decoder_cannot_read(value: int) -> None:
    try:
        encoded = pascal_encode(value)
    except (MamError, ValueError):
        return
    assert pascal_decode(encoded) == (value, encoded.size)


@FUZZ
@given(st.lists(st.integers(-1, 1), max_size=200), st.integers(0, 10))
def test_pascal_decode_of_garbage_is_a_number_or_a_payload_error(
    trits: list[int], offset: int
) -> None:
    array = np.array(trits, dtype=np.int8)
    try:
        value, end = pascal_decode(array, min(offset, array.size))
    except MamPayloadError:
        return
    assert value >= 0
    assert end <= array.size


@FUZZ
@given(st.one_of(st.lists(json_values(), max_size=5), st.dictionaries(st.text(), json_values())))
def test_json_messages_encode_to_trytes_that_decode_back(value: object) -> None:
    from p2p_energy_protocol.payloads import decode_message_trytes

    encoded = message_trytes(value)  # type: ignore[arg-type]
    assert set(encoded) <= set("9ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert decode_message_trytes(encoded) == json.loads(json.dumps(value))


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            ["seed", "mode", "sideKey", "security", "start", "count", "nextCount", "index", "x"]
        ),
        st.one_of(
            st.integers(-5, 2**60), st.text(max_size=90), fixed_trytes(81), st.none(), st.floats()
        ),
        max_size=9,
    )
)
def test_channel_state_from_json_is_validated(state: dict[str, object]) -> None:
    try:
        channel = MamChannel.from_json(state)
    except ProtocolError:
        return
    assert MamChannel.from_json(channel.to_json()) == channel


@scaled(0.25)
@given(
    st.integers(0, 3),
    st.lists(
        st.tuples(fixed_trytes(2187), st.integers(0, 3), st.integers(0, 3), fixed_trytes(81)),
        max_size=8,
    ),
    st.randoms(use_true_random=False),
)
def test_spam_at_the_address_never_hides_the_message(
    position: int,
    spam: list[tuple[str, int, int, str]],
    rng: object,
) -> None:
    message, side_key = published()[position]
    genuine = attached(position)
    junk = [
        Transaction(
            signature_message_fragment=fragment,
            address=message.address,
            value=0,
            obsolete_tag="9" * 27,
            timestamp=1_700_000_000,
            current_index=min(index, last),
            last_index=last,
            # Half the spam claims the genuine bundle's hash.
            bundle=genuine[0].bundle if index % 2 else bundle,
        )
        for fragment, index, last, bundle in spam
    ]
    found = [*genuine, *junk]
    rng.shuffle(found)  # type: ignore[attr-defined]
    candidates = payload_from_transactions(found)
    verified = []
    for candidate in candidates:
        try:
            verified.append(parse_message(candidate, message.root, side_key))
        except MamError:
            continue
    assert [parsed.data for parsed in verified][:1] == [{**READING, "usage": 1.25}]
