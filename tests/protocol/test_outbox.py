"""The shared outbound queue: created at the channel position, drained in order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from custom_components.p2p_energy.protocol.errors import NodeUnavailableError
from custom_components.p2p_energy.protocol.mam import (
    MamMessage,
    channel_root,
    create_channel,
    parse_message,
)
from custom_components.p2p_energy.protocol.outbox import (
    QueuedMessage,
    create_queued,
    drain,
    mam_sender,
    parse_time,
)

SEED = "OUTBOX" + "9" * 75
SIDE_KEY = "QUEUE" + "9" * 76


def _queue(count: int) -> tuple[str, list[QueuedMessage]]:
    channel = create_channel(SEED, 1, "restricted", SIDE_KEY)
    root = channel_root(channel)
    queue = [
        create_queued(channel, {"command": "usage", "usage": n / 10}, n, n / 10)
        for n in range(count)
    ]
    return root, queue


def test_created_in_channel_order_and_round_trips() -> None:
    root, queue = _queue(3)
    assert [item.sequence for item in queue] == [0, 1, 2]
    assert queue[0].message.root == root
    # Each message announces the root of the next: the channel is contiguous.
    assert [item.message.next_root for item in queue[:-1]] == [
        item.message.root for item in queue[1:]
    ]
    assert (queue[1].kind, queue[1].energy_kwh) == ("usage", 0.1)
    parsed = parse_message(queue[2].message.payload, queue[2].message.root, SIDE_KEY)
    assert parsed.next_root == queue[2].message.next_root
    for item in queue:
        assert QueuedMessage.from_dict(item.to_dict()) == item


def test_kind_defaults_to_output_and_created_is_kept() -> None:
    channel = create_channel(SEED, 1, "restricted", SIDE_KEY)
    moment = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    queued = create_queued(channel, {"output": 1.0}, 7, created=moment)
    assert (queued.kind, queued.created, queued.energy_kwh) == ("output", moment, 0.0)


def test_stored_form_without_energy_and_bad_timestamps() -> None:
    _, (queued,) = _queue(1)
    stored = queued.to_dict()
    del stored["energy_kwh"]
    assert QueuedMessage.from_dict(stored).energy_kwh == 0.0
    assert parse_time("2026-11-27T16:00:00") == datetime(2026, 11, 27, 16, tzinfo=UTC)
    for bad in ("not a time", 12, None):
        with pytest.raises(ValueError, match="invalid timestamp"):
            parse_time(bad)
    with pytest.raises(KeyError):
        QueuedMessage.from_dict({"sequence": 1})


async def test_drain_sends_in_order_and_saves_after_each() -> None:
    _, queue = _queue(3)
    sent: list[str] = []
    saved: list[tuple[int, int]] = []

    async def send(message: MamMessage) -> None:
        sent.append(message.root)

    async def on_sent(item: QueuedMessage) -> None:
        saved.append((item.sequence, len(queue)))

    roots = [item.message.root for item in queue]
    assert await drain(queue, send, on_sent) == 3
    assert sent == roots
    # Each save sees the queue without the message just attached.
    assert saved == [(0, 2), (1, 1), (2, 0)]
    assert await drain(queue, send, on_sent) == 0


async def test_drain_stops_at_the_first_failure_keeping_the_rest_in_order() -> None:
    _, queue = _queue(3)
    sent: list[int] = []

    async def send(message: MamMessage) -> None:
        if len(sent) == 1:
            raise NodeUnavailableError("node down")
        sent.append(1)

    async def on_sent(_item: QueuedMessage) -> None:
        pass

    with pytest.raises(NodeUnavailableError):
        await drain(queue, send, on_sent)
    assert [item.sequence for item in queue] == [1, 2]


async def test_mam_sender_attaches_through_publish_mam() -> None:
    _, (queued,) = _queue(1)
    calls: list[tuple[MamMessage, dict[str, Any]]] = []

    class Client:
        async def publish_mam(self, message: MamMessage, **options: Any) -> list[str]:
            calls.append((message, options))
            return ["tx"]

    send = mam_sender(Client(), tag="SIM", depth=2, min_weight_magnitude=1)  # type: ignore[arg-type]
    assert await send(queued.message) == ["tx"]
    assert calls == [
        (queued.message, {"tag": "SIM", "depth": 2, "min_weight_magnitude": 1}),
    ]
