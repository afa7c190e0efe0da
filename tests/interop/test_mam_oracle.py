"""MAM v0 against @iota/mam.js 1.0.0-beta.10 and @iota/mam 0.7.3 (WASM), run in node.

One node process (``tests/interop/js/mam_oracle.js``) serves the whole module:
channels created by both libraries for random seeds, modes, security levels,
side keys and JSON messages; both libraries parsing payloads this library made;
and the JSON-to-trytes convention. The same channels are created here and must
agree byte for byte (roots, addresses, next roots, payloads), each library with
the nonce search order it uses.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from p2p_energy_protocol.mam import (
    MamMode,
    MamReference,
    channel_root,
    create_channel,
    create_message,
    message_to_transactions,
    message_trytes,
    parse_message,
    parse_messages,
    payload_from_transactions,
)
from p2p_energy_protocol.transaction import Transaction
from p2p_energy_protocol.trinary import TRYTE_ALPHABET, text_to_trytes

from tests.interop.node_oracle import node_available, run_node

if TYPE_CHECKING:
    from p2p_energy_protocol.mam import MamMessage

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,  # @iota/mam.js needs about a second per message
    pytest.mark.skipif(not node_available(), reason="node and the npm libraries are required"),
]

LIBRARIES: dict[str, MamReference] = {"mam.js": "mam.js", "mam": "mam.client.js"}
OTHER: dict[str, MamReference] = {"mam.js": "mam.client.js", "mam": "mam.js"}
MODES: tuple[MamMode, ...] = ("public", "private", "restricted")
TEXT_SAMPLES = ("plain", "é", "€uro", "😀", "日本語", "\x7f", 'quote " and \\ backslash', "")


def random_trytes(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(TRYTE_ALPHABET) for _ in range(length))


def random_json(rng: random.Random, size: int) -> dict[str, Any]:
    """A JSON object like the project's payloads, with non-ASCII text and ``size``
    filler characters (messages from empty-ish to several transactions long)."""
    return {
        "command": rng.choice(["hello", "output", "usage", "payment-request", "goodbye"]),
        "startTime": rng.randrange(1_500_000_000_000, 1_900_000_000_000),
        "output": round(rng.uniform(0, 50), 3),
        "note": rng.choice(TEXT_SAMPLES) + "x" * size,
        "flags": [True, None, rng.randrange(-1000, 1000)],
    }


@dataclass
class ChannelCase:
    library: str
    seed: str
    security: int
    mode: MamMode
    side_key: str | None
    messages: list[str]
    start: int = 0
    count: int = 1

    def request(self) -> dict[str, Any]:
        return {
            "library": self.library,
            "seed": self.seed,
            "security": self.security,
            "mode": self.mode,
            "sideKey": self.side_key,
            "start": self.start,
            "count": self.count,
            "nextCount": self.count,
            "messages": self.messages,
        }

    def create_here(self, search: MamReference) -> tuple[str, list[MamMessage]]:
        channel = create_channel(
            self.seed, self.security, self.mode, self.side_key, reference=search
        )
        channel.start, channel.count, channel.next_count = self.start, self.count, self.count
        root = channel_root(channel)
        return root, [create_message(channel, message) for message in self.messages]


def build_cases() -> list[ChannelCase]:
    """Every security level in every mode for both libraries. @iota/mam.js takes
    about a second per message, so it gets chains of two in three of them and
    single messages elsewhere; the WASM core gets chains of three throughout."""
    rng = random.Random(20261127)
    cases = []
    for library in LIBRARIES:
        for security in (1, 2, 3):
            for mode in MODES:
                side_key = random_trytes(rng, rng.randint(1, 81)) if mode == "restricted" else None
                sizes = [rng.choice([0, 10, 40, 150, 2500])]
                if library == "mam" or MODES.index(mode) == security - 1:
                    sizes.append(rng.choice([150, 2500]))
                if library == "mam":
                    sizes.append(rng.randint(0, 60))
                messages = [message_trytes(random_json(rng, size)) for size in sizes]
                cases.append(
                    ChannelCase(library, random_trytes(rng, 81), security, mode, side_key, messages)
                )
        # Larger trees (powers of two: the only counts both libraries handle), a
        # channel that does not start at leaf 0, and the shortest messages (the
        # empty one only for the WASM core: mam.js refuses it).
        for count, length in ((2, 3), (4, 1 if library == "mam.js" else 2)):
            cases.append(
                ChannelCase(
                    library,
                    random_trytes(rng, 81),
                    2,
                    "restricted",
                    random_trytes(rng, 81),
                    [message_trytes(random_json(rng, 5)) for _ in range(length)],
                    count=count,
                )
            )
        cases.append(
            ChannelCase(
                library,
                random_trytes(rng, 81),
                2,
                "private",
                None,
                ["", "A"] if library == "mam" else ["9"],
                start=7,
            )
        )
    return cases


CASES = build_cases()
CROSS_SEED = "CROSS" * 16 + "9"
JSON_VALUES: list[dict[str, Any] | list[Any]] = [
    {"command": "hello"},
    {"command": "output", "startTime": 1542267468229, "endTime": 1542267469229, "output": 1.234},
    {"command": "payment-request", "owed": 56789, "usage": 0.5, "paymentIdOrAddress": "P" * 81},
    {"text": "Grüße aus Köln — 5 € 😀", "list": [1, -2.75, None, False, "日本"]},
    ["\x7f", "tab\tnew\nline", 'q"uote', "back\\slash", {"nested": {"deep": []}}],
]


def cross_messages() -> dict[str, list[tuple[MamMessage, str, str | None]]]:
    """Per library: messages made here with the other library's nonce order (so the
    payloads are not that library's own), including a three-leaf tree whose last
    leaf the references cannot sign themselves."""
    made: dict[str, list[tuple[MamMessage, str, str | None]]] = {}
    for library, search in OTHER.items():
        entries = []
        plans: tuple[tuple[int, MamMode, str | None], ...] = (
            (1, "restricted", "CROSSKEY"),
            (3, "public", None),
        )
        for count, mode, side_key in plans:
            channel = create_channel(CROSS_SEED, 2, mode, side_key, reference=search)
            channel.count = channel.next_count = count
            for number in range(count + 1):
                text = message_trytes({"library": library, "number": number, "count": count})
                entries.append((create_message(channel, text), text, side_key))
        made[library] = entries
    return made


CROSS = cross_messages()
CLIENT_VECTORS = [
    {key: vector[key] for key in ("payload", "root", "sideKey")}
    for vector in json.loads((Path(__file__).parent / "vectors" / "mam_vectors.json").read_text())[
        "clientDecode"
    ]
]
TRANSFER_TAGS = ("", "ENERGY9GRID", "MAMCHANNEL9")
TRANSFER_TIMES_MS = (1_542_267_468_229, 1_700_000_000_000, 1_764_250_000_999)


@pytest.fixture(scope="module")
def answer() -> dict[str, Any]:
    parse_requests = [
        {"library": library, "payload": message.payload, "root": message.root, "sideKey": key}
        for library, entries in CROSS.items()
        for message, _, key in entries
    ]
    # Tampered payloads must be refused (pure-JS library only: the WASM core aborts).
    tampered = CROSS["mam.js"][0][0]
    flipped = tampered.payload[:100] + ("A" if tampered.payload[100] != "A" else "B")
    parse_requests.append(
        {
            "library": "mam.js",
            "payload": flipped + tampered.payload[101:],
            "root": tampered.root,
            "sideKey": "CROSSKEY",
        }
    )
    parse_requests.append(
        {
            "library": "mam.js",
            "payload": tampered.payload,
            "root": tampered.root,
            "sideKey": "CROSSKEZ",
        }
    )
    transfers = [
        {"address": message.address, "message": message.payload, "tag": tag, "timestampMs": ms}
        for (message, _, _), tag, ms in zip(
            CROSS["mam.js"][:3], TRANSFER_TAGS, TRANSFER_TIMES_MS, strict=True
        )
    ]
    parse_requests.extend(
        {"library": library, **vector} for library in LIBRARIES for vector in CLIENT_VECTORS
    )
    request = {
        "channels": [case.request() for case in CASES],
        "transfers": transfers,
        "parse": parse_requests,
        "json": JSON_VALUES,
        "text": list(TEXT_SAMPLES),
    }
    result: dict[str, Any] = run_node("mam_oracle.js", request, timeout=600)
    return result


@pytest.mark.parametrize("position", range(len(CASES)))
def test_created_messages_are_byte_identical(answer: dict[str, Any], position: int) -> None:
    case = CASES[position]
    theirs = answer["channels"][position]
    root, mine = case.create_here(LIBRARIES[case.library])
    assert root == theirs["channelRoot"]
    assert len(mine) == len(theirs["messages"])
    for message, their in zip(mine, theirs["messages"], strict=True):
        assert message.root == their["root"]
        assert message.address == their["address"]
        assert message.next_root == their["nextRoot"]
        assert message.payload == their["payload"]


def test_parse_reads_every_reference_payload(answer: dict[str, Any]) -> None:
    items = []
    expected = []
    for case, theirs in zip(CASES, answer["channels"], strict=True):
        for text, their in zip(case.messages, theirs["messages"], strict=True):
            items.append((their["payload"], their["root"], case.side_key))
            expected.append((text, their["nextRoot"]))
    parsed = parse_messages(items)
    for result, (text, next_root) in zip(parsed, expected, strict=True):
        assert not isinstance(result, Exception), result
        assert result.message == text
        assert result.next_root == next_root
    # A chain reads through: the messages of a tree share its root, and the first
    # message after it is read at the root they all announced.
    for case, theirs in zip(CASES, answer["channels"], strict=True):
        roots = [message["root"] for message in theirs["messages"]]
        next_roots = [message["nextRoot"] for message in theirs["messages"]]
        assert roots[: case.count] == [theirs["channelRoot"]] * min(case.count, len(roots))
        assert roots[case.count :] == next_roots[: max(0, len(roots) - case.count)]


def test_references_read_payloads_made_here(answer: dict[str, Any]) -> None:
    results = answer["parse"]
    position = 0
    for entries in CROSS.values():
        for message, text, _ in entries:
            assert results[position] == {"message": text, "nextRoot": message.next_root}
            position += 1
    tampered, wrong_key = results[position : position + 2]
    assert "error" in tampered
    assert "error" in wrong_key


def test_published_wasm_message_reads_alike(answer: dict[str, Any]) -> None:
    """mam.client.js's own test message: both libraries and this one read the same."""
    theirs = answer["parse"][-len(LIBRARIES) * len(CLIENT_VECTORS) :]
    for position, vector in enumerate(CLIENT_VECTORS * len(LIBRARIES)):
        mine = parse_message(vector["payload"], vector["root"], vector["sideKey"])
        assert theirs[position] == {"message": mine.message, "nextRoot": mine.next_root}


def test_both_nonce_orders_parse_here() -> None:
    for entries in CROSS.values():
        for message, text, side_key in entries:
            parsed = parse_message(message.payload, message.root, side_key)
            assert parsed.message == text
            assert parsed.next_root == message.next_root


def test_json_messages_match_the_javascript_convention(answer: dict[str, Any]) -> None:
    assert answer["json"] == [message_trytes(value) for value in JSON_VALUES]
    assert answer["text"] == [text_to_trytes(text) for text in TEXT_SAMPLES]


def test_bundles_match_prepare_transfers(answer: dict[str, Any]) -> None:
    """The zero-value bundle is what @iota/core's prepareTransfers builds (same
    timestamp), and the payload comes back out of its transactions."""
    for (message, text, side_key), tag, ms, theirs in zip(
        CROSS["mam.js"][:3], TRANSFER_TAGS, TRANSFER_TIMES_MS, answer["transfers"], strict=True
    ):
        mine = message_to_transactions(message, tag, ms // 1000)
        assert [transaction.to_trytes() for transaction in reversed(mine)] == theirs
        (payload,) = payload_from_transactions(Transaction.from_trytes(item) for item in theirs)
        assert parse_message(payload, message.root, side_key).message == text
