"""Random and hostile requests: every one gets a 200 or a 400 with an error, never a 500."""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

from grid_server.node.commands import COMMANDS

from .helpers import NULL_HASH, RECEIVER, attach, zero_value_bundle

if TYPE_CHECKING:
    import aiohttp

    from grid_server.node import NodeServer

PARAMETERS = {
    "findTransactions": ["addresses", "bundles", "tags", "approvees"],
    "getTrytes": ["hashes"],
    "storeTransactions": ["trytes"],
    "broadcastTransactions": ["trytes"],
    "attachToTangle": ["trunkTransaction", "branchTransaction", "minWeightMagnitude", "trytes"],
    "getTransactionsToApprove": ["depth", "reference"],
    "getBalances": ["addresses", "threshold", "tips"],
    "getInclusionStates": ["transactions", "tips"],
    "wereAddressesSpentFrom": ["addresses"],
    "checkConsistency": ["tails"],
    "addNeighbors": ["uris"],
    "removeNeighbors": ["uris"],
    "syncTransactions": ["since", "limit"],
}
ALPHABET = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class Values:
    """Values that look right, look almost right, or are plain wrong."""

    def __init__(self, rng: random.Random, samples: list[str]) -> None:
        self.rng = rng
        self.samples = samples

    def trytes(self, length: int) -> str:
        return "".join(self.rng.choice(ALPHABET) for _ in range(length))

    def scalar(self) -> Any:
        rng = self.rng
        choices: list[Any] = [
            None,
            True,
            0,
            -1,
            rng.randint(1, 20),
            10**30,
            1.5,
            float("nan"),
            "",
            "abc",
            "é" * 81,
            self.trytes(81),
            self.trytes(90),
            self.trytes(27),
            self.trytes(28),
            NULL_HASH,
            RECEIVER,
            self.trytes(2673),
            rng.choice(self.samples),
            "http://127.0.0.1:1",
            "tcp://[::1]:99999",
            {"nested": [1, 2]},
        ]
        return rng.choice(choices)

    def value(self) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.45:
            return [self.scalar() for _ in range(rng.choice([0, 1, 2, 3]))]
        if roll < 0.55:
            return [rng.choice(self.samples)] * rng.choice([1, 2])
        return self.scalar()


async def test_random_requests_never_fail_with_a_server_error(
    node: NodeServer, session: aiohttp.ClientSession
) -> None:
    rng = random.Random(1_127)
    samples = attach(zero_value_bundle(count=2))
    values = Values(rng, samples)
    headers = {"X-IOTA-API-Version": "1", "Content-Type": "application/json"}
    for _ in range(300):
        command = rng.choice([*COMMANDS, "unknownCommand"])
        body: dict[str, Any] = {"command": command}
        for name in PARAMETERS.get(command, []):
            if rng.random() < 0.8:
                body[name] = values.value()
        if command == "attachToTangle" and isinstance(body.get("minWeightMagnitude"), int):
            body["minWeightMagnitude"] = min(body["minWeightMagnitude"], 3)
        data = json.dumps(body, allow_nan=True)
        async with session.post(node.url, data=data, headers=headers) as response:
            answer = await response.json()
            assert response.status in (200, 400), (body, answer)
            if response.status == 400:
                assert isinstance(answer["error"], str)
                assert answer["error"]


async def test_hostile_bodies_get_400(node: NodeServer, session: aiohttp.ClientSession) -> None:
    headers = {"X-IOTA-API-Version": "1"}
    bodies = [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"command": "getTips"' + b" " * 10,
        b"\xff\xfe\x00",
        b'{"command": "getTrytes", "hashes": [' + b"1" * 5000 + b"]}",
        b"null",
        b"",
    ]
    for body in bodies:
        async with session.post(node.url, data=body, headers=headers) as response:
            assert response.status == 400, body[:40]
            assert (await response.json())["error"]


async def test_explorer_paths_never_fail_with_a_server_error(
    node: NodeServer, session: aiohttp.ClientSession
) -> None:
    rng = random.Random(27)
    values = Values(rng, [NULL_HASH])
    for _ in range(60):
        kind = rng.choice(["transaction", "bundle", "address"])
        value = str(values.scalar()).replace("/", "")
        async with session.get(f"{node.url}/explorer/api/{kind}/{value}") as response:
            assert response.status in (200, 400, 404), value
        query = {
            "root": str(values.scalar()),
            "mode": rng.choice(["public", "private", "restricted", "x"]),
            "sideKey": str(values.scalar()),
            "limit": str(values.scalar()),
        }
        async with session.get(f"{node.url}/explorer/api/mam", params=query) as response:
            assert response.status in (200, 400), query
