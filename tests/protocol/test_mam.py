"""MAM v0: channels, creation, parsing, batches and every way a payload can be bad."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from p2p_energy_protocol.curl import HASH_LENGTH, Curl, curl_hash, curl_hash_chains
from p2p_energy_protocol.errors import (
    InvalidAsciiError,
    InvalidTrytesError,
    MamAuthenticationError,
    MamError,
    MamPayloadError,
    ProtocolError,
)
from p2p_energy_protocol.mam import (
    MamChannel,
    MamMessage,
    MamMode,
    MamReference,
    ParsedMamMessage,
    channel_root,
    create_channel,
    create_message,
    mam_address,
    message_trytes,
    parse_message,
    parse_messages,
    pascal_decode,
    pascal_encode,
)
from p2p_energy_protocol.mam import parser as mam_parser
from p2p_energy_protocol.mam._lanes import LaneSponges
from p2p_energy_protocol.mam.channel import MAX_MESSAGE_TRYTES
from p2p_energy_protocol.mam.merkle import MerkleTree, build_trees
from p2p_energy_protocol.mam.nonce import find_nonce, hmac_security
from p2p_energy_protocol.mam.pascal import pascal_encoded_length
from p2p_energy_protocol.trinary import (
    TRYTE_ALPHABET,
    text_to_trytes,
    trits_to_trytes,
    trytes_to_trits,
)

SEED = "SEED9FOR9TESTS" + "A" * 67
LARGEST_SHARED_PASCAL = (3**12 - 1) // 2  # the largest number of four trytes
OTHER_SEED = "B" * 81
SIDE_KEY = "MYSIDEKEY"
MODES: tuple[MamMode, ...] = ("public", "private", "restricted")
REFERENCES: tuple[MamReference, ...] = ("mam.js", "mam.client.js")


def key_for(mode: MamMode) -> str | None:
    return SIDE_KEY if mode == "restricted" else None


def channel(mode: MamMode = "restricted", security: int = 2, **fields: Any) -> MamChannel:
    made = create_channel(SEED, security, mode, key_for(mode))
    for name, value in fields.items():
        setattr(made, name, value)
    made.validate()
    return made


def flip(payload: str, trit: int) -> str:
    trits = trytes_to_trits(payload)
    trits[trit] = (trits[trit] + 2) % 3 - 1
    return trits_to_trytes(trits)


@pytest.fixture(scope="module")
def hello() -> MamMessage:
    return create_message(channel(), {"command": "hello"})


@pytest.fixture(scope="module")
def with_siblings() -> MamMessage:
    """A security-1 message from a two-leaf tree (index 1, one sibling)."""
    made = channel(security=1, count=2, next_count=2, index=1)
    return create_message(made, text_to_trytes("sibling check"))


# -- pascal encoding -----------------------------------------------------------------


def test_pascal_known_encodings() -> None:
    assert pascal_encode(0).tolist() == [1, 0, 0, -1]
    assert pascal_encode(1234).tolist() == [1, 0, -1, 1, 0, -1, -1, 1, 0, 0, 0, 0]
    assert pascal_decode(np.array([1, 0, 0, -1], dtype=np.int8)) == (0, 4)
    assert pascal_decode(pascal_encode(1234)) == (1234, 12)


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(REFERENCES))
def test_pascal_round_trip(value: int, reference: MamReference) -> None:
    if reference == "mam.client.js":
        value %= LARGEST_SHARED_PASCAL + 1
    encoded = pascal_encode(value, reference)
    assert encoded.size == pascal_encoded_length(value, reference)
    trailing = np.concatenate([encoded, np.array([1, -1, 0, 1], dtype=np.int8)])
    assert pascal_decode(trailing, 0) == (value, encoded.size)


def test_pascal_references_differ_only_in_zero_tryte_flags() -> None:
    # 27 has a zero low tryte: @iota/mam.js flags it as negated, the Rust core does not.
    assert pascal_encode(27, "mam.js").tolist() == [0, 0, 0, 1, 0, 0, 1, 0]
    assert pascal_encode(27, "mam.client.js").tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    # From five trytes on the Rust core writes fewer flag trits (which only its own
    # decoder reads), so messages are limited to lengths both formats agree on.
    assert pascal_encoded_length(LARGEST_SHARED_PASCAL, "mam.client.js") == 16
    assert pascal_encoded_length(LARGEST_SHARED_PASCAL + 1, "mam.js") == 20
    assert pascal_encoded_length(LARGEST_SHARED_PASCAL + 1, "mam.client.js") == 19
    assert (HASH_LENGTH + 3 * MAX_MESSAGE_TRYTES) <= LARGEST_SHARED_PASCAL


@pytest.mark.parametrize(
    "trits",
    [[], [1, 0], [0, 0, 0, 0, 0, 0], [-1, -1, -1] * 30, [1, 1, 0]],
    ids=["empty", "short", "no-positive-tryte", "too-long", "flags-cut-off"],
)
def test_pascal_decode_rejects_bad_input(trits: list[int]) -> None:
    with pytest.raises(MamPayloadError):
        pascal_decode(np.array(trits, dtype=np.int8))


@pytest.mark.parametrize("value", [-1, 1.5, True, "3"])
def test_pascal_encode_rejects_non_counts(value: Any) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        pascal_encode(value)


def test_pascal_encode_stops_where_the_decoder_does() -> None:
    largest = (3**60 - 1) // 2  # twenty trytes
    assert pascal_decode(pascal_encode(largest))[0] == largest
    with pytest.raises(MamError, match="20 trytes"):
        pascal_encode(largest + 1)


@pytest.mark.parametrize(
    ("trits", "reason"),
    [
        ([0, 0, 1, 1], "negative"),
        ([1, 0, 0, -1, 0], None),
        ([0, 0, 1, -1], "flags"),
        ([0, 0, -1, 0, 0, 1, 1, 1], "flags"),
    ],
)
def test_pascal_decode_reads_only_what_encoders_write(trits: list[int], reason: str | None) -> None:
    array = np.array(trits, dtype=np.int8)
    if reason is None:
        assert pascal_decode(array) == (0, 4)
        return
    with pytest.raises(MamPayloadError, match=reason):
        pascal_decode(array)


# -- channels ---------------------------------------------------------------------


def test_create_channel_defaults_and_side_key_padding() -> None:
    made = create_channel(SEED, side_key="ABC")
    assert (made.mode, made.security, made.start, made.count, made.next_count, made.index) == (
        "restricted",
        2,
        0,
        1,
        1,
        0,
    )
    assert made.side_key == "ABC" + "9" * 78
    assert made.reference == "mam.js"
    assert SEED not in repr(made)
    assert "ABC" not in repr(made)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ((SEED[:80], 2, "public", None), InvalidTrytesError),
        ((SEED + "A", 2, "public", None), InvalidTrytesError),
        ((SEED.lower(), 2, "public", None), InvalidTrytesError),
        ((SEED, 0, "public", None), MamError),
        ((SEED, 4, "public", None), MamError),
        ((SEED, 2, "secret", None), MamError),
        ((SEED, 2, "restricted", None), MamError),
        ((SEED, 2, "restricted", ""), InvalidTrytesError),
        ((SEED, 2, "restricted", "A" * 82), InvalidTrytesError),
        ((SEED, 2, "restricted", "key"), InvalidTrytesError),
        ((SEED, 2, "public", "KEY"), MamError),
        ((SEED, 2, "private", "KEY"), MamError),
    ],
)
def test_create_channel_rejects_bad_arguments(
    arguments: tuple[Any, ...], error: type[ProtocolError]
) -> None:
    with pytest.raises(error):
        create_channel(*arguments)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("start", -1),
        ("start", 2**53),
        ("count", 0),
        ("count", 1025),
        ("next_count", 0),
        ("index", 1),
        ("security", True),
        ("start", 1.0),
        ("reference", "iota.rs"),
    ],
)
def test_channel_state_is_validated_before_use(field: str, value: Any) -> None:
    made = channel()
    setattr(made, field, value)
    with pytest.raises(MamError):
        create_message(made, "ABC")
    with pytest.raises(MamError):
        channel_root(made)


def test_channel_root_is_the_first_message_root() -> None:
    made = channel()
    root = channel_root(made)
    assert made.start == 0  # reading the root does not move the channel
    assert create_message(made, "HELLO").root == root


def test_json_resume_gives_identical_next_messages() -> None:
    original = channel(count=2, next_count=2)
    create_message(original, "FIRST")
    saved = json.loads(json.dumps(original.to_json()))
    assert saved == {
        "seed": SEED,
        "mode": "restricted",
        "sideKey": SIDE_KEY.ljust(81, "9"),
        "security": 2,
        "start": 0,
        "count": 2,
        "nextCount": 2,
        "index": 1,
        "reference": "mam.js",
    }
    resumed = MamChannel.from_json(saved)
    assert resumed == original
    for text in ("SECOND", "THIRD", "FOURTH"):
        assert create_message(resumed, text) == create_message(original, text)
    assert resumed.to_json() == original.to_json()


def test_from_json_accepts_mam_js_state() -> None:
    state = {
        "seed": SEED,
        "mode": "public",
        "security": 1,
        "start": 5,
        "count": 1,
        "nextCount": 1,
        "index": 0,
        "nextRoot": "A" * 81,
    }
    loaded = MamChannel.from_json(state)
    assert (loaded.start, loaded.reference, loaded.side_key) == (5, "mam.js", None)


@pytest.mark.parametrize(
    "change",
    [
        {"strat": 3},
        {"start": None},
        {"start": "3"},
        {"index": 2},
        {"seed": 42},
        {"mode": None},
        {"sideKey": 7},
        {"reference": 1},
        {"sideKey": None},
    ],
)
def test_from_json_rejects_bad_state(change: dict[str, Any]) -> None:
    state = channel().to_json()
    state.update(change)
    state = {name: value for name, value in state.items() if value is not None}
    with pytest.raises(MamError):
        MamChannel.from_json(state)


def test_from_json_rejects_missing_fields_and_non_mappings() -> None:
    state = channel().to_json()
    del state["index"]
    with pytest.raises(MamError, match="lacks: index"):
        MamChannel.from_json(state)
    with pytest.raises(MamError, match="mapping"):
        MamChannel.from_json([("seed", SEED)])  # type: ignore[arg-type]


# -- messages ------------------------------------------------------------------------


def test_message_trytes_conventions() -> None:
    assert message_trytes("ABC9") == "ABC9"
    assert message_trytes({"a": 1}) == text_to_trytes('{"a":1}')
    assert message_trytes([1, "é"]) == text_to_trytes('[1,"\\u00e9"]')
    assert message_trytes({"e": "€"}) == text_to_trytes('{"e":"\\u20ac"}')


@pytest.mark.parametrize(
    "message",
    ["hello", "ABc", 42, None, {"n": float("nan")}, {"s": {1, 2}}, b"ABC"],
)
def test_message_trytes_rejects_what_it_cannot_send(message: Any) -> None:
    with pytest.raises(MamError):
        message_trytes(message)


def test_mam_address_per_mode() -> None:
    root = "R" * 81
    assert mam_address(root, "public") == root
    hashed = trits_to_trytes(curl_hash(trytes_to_trits(root), 81))
    assert mam_address(root, "private") == hashed
    assert mam_address(root, "restricted") == hashed
    with pytest.raises(MamError):
        mam_address(root, "secret")  # type: ignore[arg-type]
    with pytest.raises(InvalidTrytesError):
        mam_address("R" * 80, "public")


@pytest.mark.parametrize("security", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
def test_round_trip_every_mode_security_and_tree_size(mode: MamMode, security: int) -> None:
    side_key = key_for(mode)
    reference = REFERENCES[(security + MODES.index(mode)) % 2]
    for count in (1, 2, 3, 4):
        made = create_channel(SEED, security, mode, side_key, reference=reference)
        made.count = made.next_count = count
        first_root = channel_root(made)
        created = [
            create_message(made, {"count": count, "number": number, "text": "Grüße 😀"})
            for number in range(count + 1)
        ]
        assert [message.root for message in created[:count]] == [first_root] * count
        assert created[count].root == created[0].next_root
        assert (made.start, made.index) == ((2, 0) if count == 1 else (count, 1))
        parsed = parse_messages([(message.payload, message.root, side_key) for message in created])
        for number, (message, result) in enumerate(zip(created, parsed, strict=True)):
            assert isinstance(result, ParsedMamMessage), result
            assert result.data == {"count": count, "number": number, "text": "Grüße 😀"}
            assert result.text == f'{{"count":{count},"number":{number},"text":"Grüße 😀"}}'
            assert result.next_root == message.next_root
            assert result.security == security
            assert message.address == mam_address(message.root, mode)


def test_path_index_for_a_leaf_without_partner() -> None:
    """Leaf 2 of a three-leaf tree moves up a level alone, so its message carries
    the path (one sibling, on the left: index 1), not its position 2."""
    made = channel(count=3, next_count=3, index=2)
    message = create_message(made, "LAST")
    parsed = parse_message(message.payload, message.root, SIDE_KEY)
    assert (parsed.message, parsed.index) == ("LAST", 1)
    seed = trytes_to_trits(SEED)
    (tree,), _ = build_trees(seed, 2, [(0, 3)])
    bits, siblings = tree.path(2)
    assert bits == 1
    assert siblings.shape == (1, 243)
    assert trits_to_trytes(tree.root) == message.root


def test_merkle_tree_matches_pairwise_hashing() -> None:
    seed = trytes_to_trits(SEED)
    (tree,), key = build_trees(seed, 1, [(4, 5)], 6)
    assert key.size == 6561
    with pytest.raises(IndexError):
        build_trees(seed, 1, [(4, 5)], 9)
    leaves = tree.levels[0]

    def pair(left: Any, right: Any) -> Any:
        sponge = Curl(27)
        sponge.absorb(left)
        sponge.absorb(right)
        return sponge.squeeze()

    level1 = [pair(leaves[0], leaves[1]), pair(leaves[2], leaves[3])]
    level2 = pair(level1[0], level1[1])
    assert np.array_equal(tree.root, pair(level2, leaves[4]))
    assert tree.start == 4
    with pytest.raises(IndexError):
        tree.path(5)
    assert MerkleTree.from_leaves(0, leaves[:1]).path(0)[1].shape == (0, 243)


def test_empty_and_long_messages() -> None:
    made = channel(security=1)
    long_text = "".join(random.Random(1).choice(TRYTE_ALPHABET) for _ in range(5000))
    for text in ("", "9", long_text):
        message = create_message(made, text)
        assert parse_message(message.payload, message.root, SIDE_KEY).message == text
    with pytest.raises(MamError, match="at most"):
        create_message(made, "A" * (MAX_MESSAGE_TRYTES + 1))
    assert made.start == 3  # a refused message does not use up a leaf


def test_wasm_reference_pads_short_messages() -> None:
    """The Rust core sizes the header for a message 243 trits longer, so short
    messages end in two zero trytes."""
    for text, extra in (("ABC", "99"), ("ABCDEFGHIJK", "")):
        by_js = create_message(channel(reference="mam.js"), text)
        by_wasm = create_message(channel(reference="mam.client.js"), text)
        assert len(by_wasm.payload) == len(by_js.payload) + len(extra)
        assert by_wasm.payload.endswith(extra)
        assert parse_message(by_wasm.payload, by_wasm.root, SIDE_KEY).message == text


def test_parsed_text_and_data() -> None:
    made = channel("public")
    text_message = create_message(made, text_to_trytes("not json: ü"))
    parsed = parse_message(text_message.payload, text_message.root)
    assert parsed.text == "not json: ü"
    assert parsed.data is None
    binary = create_message(made, "ZZZZ")  # codes above 255: not text at all
    parsed = parse_message(binary.payload, binary.root)
    assert parsed.data is None
    with pytest.raises(InvalidAsciiError):
        _ = parsed.text


# -- bad payloads -----------------------------------------------------------------------


def test_wrong_side_key_root_or_mode(hello: MamMessage) -> None:
    with pytest.raises(MamAuthenticationError):
        parse_message(hello.payload, hello.root, "OTHERKEY")
    with pytest.raises(MamAuthenticationError):
        parse_message(hello.payload, hello.root)
    other_root = channel_root(create_channel(OTHER_SEED, side_key=SIDE_KEY))
    with pytest.raises(MamAuthenticationError):
        parse_message(hello.payload, other_root, SIDE_KEY)


def test_message_from_another_channel_at_the_same_root(hello: MamMessage) -> None:
    """A payload signed by another seed (same side key) never verifies against our root."""
    forged = create_message(create_channel(OTHER_SEED, side_key=SIDE_KEY), {"command": "hello"})
    with pytest.raises(MamAuthenticationError):
        parse_message(forged.payload, hello.root, SIDE_KEY)


@pytest.mark.parametrize("fixture", ["hello", "with_siblings"])
def test_flipped_trit_anywhere_is_rejected(fixture: str, request: pytest.FixtureRequest) -> None:
    message: MamMessage = request.getfixturevalue(fixture)
    side_key = SIDE_KEY
    total = len(message.payload) * 3
    content = total - 2  # both payloads end in two zero trits of padding
    rng = random.Random(7)
    positions = sorted(
        set(range(400))  # header, next root, message, nonce
        | set(range(content - 300, total))  # end of the signature, siblings, padding
        | set(range(0, total, 11))
        | {rng.randrange(total) for _ in range(300)}
    )
    results = parse_messages(
        [(flip(message.payload, p), message.root, side_key) for p in positions]
    )
    original = parse_message(message.payload, message.root, side_key)
    for position, result in zip(positions, results, strict=True):
        if position < content:
            assert isinstance(result, MamError), position
        else:  # padding is not authenticated, but can never change the message
            assert result == original


def test_truncated_payloads_are_payload_errors(with_siblings: MamMessage) -> None:
    payload = with_siblings.payload
    cuts = [*range(0, len(payload) - 1, 37), len(payload) - 1]
    results = parse_messages([(payload[:cut], with_siblings.root, SIDE_KEY) for cut in cuts])
    for cut, result in zip(cuts, results, strict=True):
        assert isinstance(result, MamPayloadError), (cut, result)


@pytest.mark.parametrize("payload", ["abc", "ABC DEF", 123, None])
def test_non_tryte_payloads(payload: Any, hello: MamMessage) -> None:
    with pytest.raises(MamPayloadError):
        parse_message(payload, hello.root, SIDE_KEY)


@pytest.mark.parametrize(
    ("root", "side_key"), [("A" * 80, None), ("a" * 81, None), ("A" * 81, "k")]
)
def test_bad_root_or_side_key_arguments(root: str, side_key: str | None) -> None:
    with pytest.raises(InvalidTrytesError):
        parse_messages([("ABC", root, side_key)])


def header(index: int, length: int) -> np.ndarray[Any, np.dtype[np.int8]]:
    return np.concatenate([pascal_encode(index), pascal_encode(length)])


@pytest.mark.parametrize(
    ("description", "trits"),
    [
        ("length not whole trytes", np.concatenate([header(0, 4), np.zeros(7000, np.int8)])),
        (
            "message longer than payload",
            np.concatenate([header(0, 3**12), np.zeros(20000, np.int8)]),
        ),
        # One tryte of 9 flagged as negated: -9.
        (
            "negative length",
            np.concatenate([header(0, 0)[:4], [0, 0, 1, 1], np.zeros(7000, np.int8)]),
        ),
    ],
)
def test_inconsistent_headers(description: str, trits: Any) -> None:
    padded = np.concatenate([trits, np.zeros(-trits.size % 3, np.int8)])
    with pytest.raises(MamPayloadError):
        parse_message(trits_to_trytes(padded), "A" * 81)


def test_garbage_never_hangs_and_never_verifies() -> None:
    rng = random.Random(99)
    items = []
    for length in [0, 1, 10, 100, 2187, 2300, 4500, 6561, 9000] * 3:
        payload = "".join(rng.choice(TRYTE_ALPHABET) for _ in range(length))
        items.append((payload, "A" * 81, rng.choice([None, "KEY"])))
    for result in parse_messages(items):
        assert isinstance(result, MamError)


# -- batches ---------------------------------------------------------------------------


def test_batches_keep_order_and_mix_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mam_parser, "MAX_BATCH_LANES", 7)
    made = channel("private", security=1, count=2, next_count=2)
    created = [create_message(made, text_to_trytes(f"message {n}")) for n in range(9)]
    items: list[tuple[str, str, str | None]] = []
    for number, message in enumerate(created):
        items.append((message.payload, message.root, None))
        if number % 3 == 0:
            items.append((message.payload, message.root, "WRONGKEY"))
        if number % 4 == 0:
            items.append((message.payload[:-500], message.root, None))
    results = parse_messages(items)
    assert len(results) == len(items)
    for (payload, root, key), result in zip(items, results, strict=True):
        single: ParsedMamMessage | MamError
        try:
            single = parse_message(payload, root, key)
        except MamError as err:
            single = err
        assert type(result) is type(single)
        if isinstance(result, ParsedMamMessage):
            assert result == single


def test_batches_split_by_payload_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mam_parser, "MAX_BATCH_TRITS", 30_000)
    made = channel("public", security=1)
    texts = ["A" * length for length in (3000, 10, 500, 10, 3000, 1)]
    created = [create_message(made, text) for text in texts]
    results = parse_messages([(message.payload, message.root, None) for message in created])
    assert [r.message for r in results if isinstance(r, ParsedMamMessage)] == texts


def test_oversized_and_padded_payloads(hello: MamMessage) -> None:
    padded = hello.payload + "9" * 20000  # transaction padding and beyond: ignored
    assert parse_message(padded, hello.root, SIDE_KEY).data == {"command": "hello"}
    oversized = "A" * (mam_parser.MAX_PAYLOAD_TRYTES + 1)
    with pytest.raises(MamPayloadError, match="exceeds"):
        parse_message(oversized, hello.root, SIDE_KEY)


def test_empty_batch() -> None:
    assert parse_messages([]) == []


def test_lane_sponges_agree_with_single_sponges() -> None:
    rng = np.random.default_rng(5)
    lanes = 70  # bit-sliced batch backend, two words
    chunks = rng.integers(-1, 2, (3, lanes, 243)).astype(np.int8)
    lengths = rng.integers(1, 244, lanes)
    active = rng.random(lanes) < 0.7
    batch = LaneSponges(lanes)
    batch.absorb(chunks[0])
    batch.absorb(chunks[1], lengths, active)
    batch.absorb(chunks[2][:, :100], active=~active)
    for lane in range(lanes):
        single = Curl(27)
        single.absorb(chunks[0][lane])
        if active[lane]:
            single.absorb(chunks[1][lane, : lengths[lane]])
        else:
            single.absorb(chunks[2][lane, :100])
        assert np.array_equal(batch.state(lane), single.state)
        assert np.array_equal(batch.rate()[lane], single.state[:243])


def test_hash_chains_with_mixed_lengths() -> None:
    rng = np.random.default_rng(6)
    rows = rng.integers(-1, 2, (150, 243)).astype(np.int8)
    steps = rng.integers(0, 27, 150)
    steps[:70] = 26  # a full word that runs long, then the batch shrinks
    result = curl_hash_chains(rows, steps, 27)
    for position, count in enumerate(steps):
        expected = rows[position]
        for _ in range(int(count)):
            expected = curl_hash(expected, 27)
        assert np.array_equal(result[position], expected)
    assert curl_hash_chains(rows[:0], steps[:0], 27).shape == (0, 243)


# -- nonce search -----------------------------------------------------------------------


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("security", [1, 2, 3])
def test_nonce_gives_the_hmac_its_security_level(reference: MamReference, security: int) -> None:
    rng = np.random.default_rng(security)
    state = rng.integers(-1, 2, 729).astype(np.int8)
    nonce = find_nonce(state, security, reference)
    sponge = Curl(27)
    sponge.state = state
    sponge.absorb(nonce)
    assert hmac_security(sponge.state[:243].reshape(1, -1)).tolist() == [security]


def test_nonce_search_rejects_bad_arguments() -> None:
    state = np.zeros(729, dtype=np.int8)
    with pytest.raises(MamError):
        find_nonce(state[:243], 1)
    with pytest.raises(MamError):
        find_nonce(state, 4)
    with pytest.raises(MamError):
        find_nonce(state, 1, length=80)


def test_hmac_security_levels() -> None:
    hmacs = np.zeros((4, 243), dtype=np.int8)
    hmacs[1, [0, 82]] = [1, -1]
    hmacs[2, [0, 1, 82, 164]] = [1, 1, -1, -1]
    hmacs[3, 0] = 1
    assert hmac_security(hmacs).tolist() == [1, 2, 3, 0]
