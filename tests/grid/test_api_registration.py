"""The registration API over HTTP (fake Tangle), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from p2p_energy_protocol.errors import GridApiError, GridUnavailableError
from sqlalchemy import select

from grid_server.grid.db.models import (
    FollowedChannel,
    GridChannel,
    OutboxMessage,
    Registration,
    StorageItem,
)

from .harness import running_api

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database

REG = "/registration/{registrationId}"
REG_KEY = "/registration/{registrationId}/{sideKey}"
HELLO = {"command": "hello"}
READING = {"command": "output", "startTime": 1, "endTime": 2, "output": 1.0}


async def test_producer_registers_its_channel(db: Database) -> None:
    async with running_api(db) as api:
        root, side_key = api.fake.add_channel([HELLO, READING])
        status, answer = await api.call(
            "PUT",
            "/registration/producer-1",
            REG,
            body={"itemName": "Roof PV", "itemType": "producer", "root": root, "sideKey": side_key},
        )
        assert status == 200
        assert answer["message"] == "OK"
        assert isinstance(answer["token"], str)
        assert "root" not in answer  # only consumers get a return channel
        with db.read() as session:
            registration = session.get(Registration, "producer-1")
            assert registration is not None
            assert (registration.item_name, registration.item_type) == ("Roof PV", "producer")
            assert registration.token_hash is not None
            assert answer["token"] not in registration.token_hash
            channel = session.scalars(select(FollowedChannel)).one()
            assert (channel.root, channel.side_key, channel.mode) == (root, side_key, "restricted")
            assert (channel.next_root, channel.next_position, channel.active) == (root, 0, True)


async def test_public_and_private_channels_are_detected(db: Database) -> None:
    async with running_api(db) as api:
        public_root, _ = api.fake.add_channel([HELLO], mode="public")
        private_root, _ = api.fake.add_channel([HELLO], mode="private")
        await api.client.register("producer-pub", "A", "producer", root=public_root)
        await api.client.register("producer-priv", "B", "producer", root=private_root)
        with db.read() as session:
            modes = dict(session.execute(select(FollowedChannel.root, FollowedChannel.mode)).all())
        assert modes == {public_root: "public", private_root: "private"}


async def test_registration_without_hello_is_refused(db: Database) -> None:
    async with running_api(db) as api:
        root, side_key = api.fake.add_channel([READING])
        status, answer = await api.call(
            "PUT",
            "/registration/producer-1",
            REG,
            body={"itemName": "PV", "itemType": "producer", "root": root, "sideKey": side_key},
        )
        assert status == 422
        assert "hello" in answer["message"]
        with pytest.raises(GridApiError) as caught:
            await api.client.register("producer-2", "PV", "producer", root=root, side_key="B" * 81)
        assert caught.value.status == 422
        with db.read() as session:
            assert session.scalars(select(Registration)).all() == []


async def test_node_down_is_a_503(db: Database) -> None:
    async with running_api(db) as api:
        root, side_key = api.fake.add_channel([HELLO])
        api.fake.available = False
        with pytest.raises(GridUnavailableError, match="Tangle node is unavailable") as caught:
            await api.client.register("producer-1", "PV", "producer", root=root, side_key=side_key)
        assert caught.value.status == 503


async def test_consumer_gets_a_return_channel_with_hello(db: Database) -> None:
    async with running_api(db) as api:
        root, side_key = api.fake.add_channel([HELLO])
        reply = await api.client.register(
            "consumer-1", "Flat 3", "consumer", root=root, side_key=side_key
        )
        assert reply.root is not None
        assert reply.side_key is not None
        assert reply.token is not None
        with db.read() as session:
            channel = session.scalars(select(GridChannel)).one()
            assert (channel.root, channel.side_key) == (reply.root, reply.side_key)
            hello = session.scalars(select(OutboxMessage)).one()
            assert (hello.kind, hello.position, hello.root) == ("hello", 0, reply.root)
            assert json.loads(hello.message_json) == HELLO
        assert await api.return_channels.publish_pending() == 1
        assert [m.root for m in api.fake.published] == [reply.root]
        assert await api.return_channels.publish_pending() == 0
        # Re-registering keeps the same return channel.
        again = await api.client.register(
            "consumer-1", "Flat 3", "consumer", root=root, side_key=side_key, token=reply.token
        )
        assert (again.root, again.side_key, again.token) == (reply.root, reply.side_key, None)


async def test_a_consumer_registration_states_its_standing_bid(db: Database) -> None:
    async with running_api(db) as api:
        reply = await api.client.register("consumer-1", "Flat 3", "consumer", max_price=42.5)
        with db.read() as session:
            assert session.get(Registration, "consumer-1").max_price_micro == 42_500_000  # type: ignore[union-attr]
        # Each registration states the bid anew: one without a bid removes it.
        await api.client.register("consumer-1", "Flat 3", "consumer", token=reply.token)
        with db.read() as session:
            assert session.get(Registration, "consumer-1").max_price_micro is None  # type: ignore[union-attr]


async def test_consumer_without_channel_still_gets_its_return_channel(db: Database) -> None:
    async with running_api(db) as api:
        reply = await api.client.register("consumer-1", "Flat 3", "consumer")
        assert reply.root is not None
        with db.read() as session:
            assert session.scalars(select(FollowedChannel)).all() == []


async def test_updates_need_the_token_or_the_side_key(db: Database) -> None:
    async with running_api(db) as api:
        root, side_key = api.fake.add_channel([HELLO])
        first = await api.client.register(
            "producer-1", "PV", "producer", root=root, side_key=side_key
        )
        body = {"itemName": "PV 2", "itemType": "producer"}
        status, answer = await api.call("PUT", "/registration/producer-1", REG, body=body)
        assert status == 401
        assert "token" in answer["message"]
        status, _ = await api.call("PUT", "/registration/producer-1", REG, body=body, token="nope")
        assert status == 403
        status, answer = await api.call(
            "PUT", "/registration/producer-1", REG, body=body, token=first.token
        )
        assert (status, answer.get("token")) == (200, None)
        # Proving the side key works too (the integration re-registers that way).
        await api.client.register("producer-1", "PV 3", "producer", root=root, side_key=side_key)
        with db.read() as session:
            registration = session.get(Registration, "producer-1")
            assert registration is not None
            # Fields not sent again are kept.
            assert (registration.item_name, registration.root) == ("PV 3", root)
            assert len(session.scalars(select(FollowedChannel)).all()) == 1


async def test_new_channel_replaces_the_old_one(db: Database) -> None:
    async with running_api(db) as api:
        root, side_key = api.fake.add_channel([HELLO])
        first = await api.client.register(
            "producer-1", "PV", "producer", root=root, side_key=side_key
        )
        new_root, new_key = api.fake.add_channel([HELLO])
        await api.client.register(
            "producer-1", "PV", "producer", root=new_root, side_key=new_key, token=first.token
        )
        with db.read() as session:
            channels = session.scalars(select(FollowedChannel).order_by(FollowedChannel.id)).all()
            # The old channel is still followed until its goodbye.
            assert [(c.root, c.active, c.closed_reason) for c in channels] == [
                (root, True, "replaced"),
                (new_root, True, None),
            ]


async def test_item_type_cannot_change(db: Database) -> None:
    async with running_api(db) as api:
        first = await api.client.register("entity-1", "X", "producer")
        status, answer = await api.call(
            "PUT",
            "/registration/entity-1",
            REG,
            body={"itemName": "X", "itemType": "consumer"},
            token=first.token,
        )
        assert status == 409
        assert "producer" in answer["message"]


async def test_unauthenticated_mode_refuses_a_channel_takeover(db: Database) -> None:
    async with running_api(db, storage_auth="none") as api:
        root, side_key = api.fake.add_channel([HELLO])
        await api.client.register("producer-1", "PV", "producer", root=root, side_key=side_key)
        other_root, other_key = api.fake.add_channel([HELLO])
        status, answer = await api.call(
            "PUT",
            "/registration/producer-1",
            REG,
            body={
                "itemName": "PV",
                "itemType": "producer",
                "root": other_root,
                "sideKey": other_key,
            },
        )
        assert status == 409
        assert "remove it" in answer["message"]
        with db.read() as session:
            channels = session.scalars(
                select(FollowedChannel.root).where(
                    FollowedChannel.registration_id == "producer-1",
                    FollowedChannel.active.is_(True),
                )
            ).all()
        assert channels == [root]  # still the owner's channel
        # The same channel again (its side key is the proof) and removal still work.
        await api.client.register("producer-1", "PV 2", "producer", root=root, side_key=side_key)
        await api.client.deregister("producer-1", side_key)
        await api.client.register(
            "producer-1", "PV", "producer", root=other_root, side_key=other_key
        )


async def test_unauthenticated_mode_accepts_anyone(db: Database) -> None:
    async with running_api(db, storage_auth="none") as api:
        reply = await api.client.register("producer-1", "PV", "producer")
        assert reply.token is None
        await api.client.register("producer-1", "PV 2", "producer")
        await api.client.deregister("producer-1")
        assert api.openapi["paths"][REG]["put"]["security"] == []


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/registration/short", {"itemName": "a", "itemType": "producer"}, "'registrationId'"),
        ("/registration/%20%20short%20%20", {"itemName": "a", "itemType": "producer"}, "8 to 128"),
        ("/registration/bad%2Fslash1", {"itemName": "a", "itemType": "producer"}, "registrationId"),
        ("/registration/" + "x" * 129, {"itemName": "a", "itemType": "producer"}, "registrationId"),
        ("/registration/producer-1", {"itemType": "producer"}, "'itemName'"),
        ("/registration/producer-1", {"itemName": " ", "itemType": "producer"}, "'itemName'"),
        ("/registration/producer-1", {"itemName": "x" * 257, "itemType": "producer"}, "itemName"),
        ("/registration/producer-1", {"itemName": "a\u0000", "itemType": "producer"}, "control"),
        ("/registration/producer-1", {"itemName": "a", "itemType": "source"}, "'itemType'"),
        (
            "/registration/producer-1",
            {"itemName": "a", "itemType": "producer", "root": "abc"},
            "'root'",
        ),
        (
            "/registration/producer-1",
            {"itemName": "a", "itemType": "producer", "root": 5},
            "'root'",
        ),
        (
            "/registration/producer-1",
            {"itemName": "a", "itemType": "producer", "sideKey": "A" * 81},
            "needs the channel's 'root'",
        ),
        (
            "/registration/producer-1",
            {"itemName": "a", "itemType": "producer", "root": "A" * 81, "sideKey": "A" * 80},
            "'sideKey'",
        ),
        ("/registration/producer-1", ["itemName"], "JSON object"),
        (
            "/registration/producer-1",
            {"itemName": "a", "itemType": "producer", "maxPrice": 10},
            "'maxPrice'",
        ),
        (
            "/registration/consumer-1",
            {"itemName": "a", "itemType": "consumer", "maxPrice": -1},
            "'maxPrice'",
        ),
        (
            "/registration/consumer-1",
            {"itemName": "a", "itemType": "consumer", "maxPrice": "10"},
            "'maxPrice'",
        ),
    ],
)
async def test_bad_registrations_are_400(
    db: Database, path: str, body: object, message: str
) -> None:
    async with running_api(db) as api:
        status, answer = await api.call("PUT", path, REG, body=body)
        assert status == 400
        assert message in answer["message"]
        assert answer["message"].startswith("The parameter") or "JSON" in answer["message"]


async def test_bodies_that_are_not_json(db: Database) -> None:
    async with running_api(db) as api:
        for raw in (b"", b"{", b"\xff\xfe", b"NaN", b"[1, 2"):
            status, answer = await api.call("PUT", "/registration/producer-1", REG, raw=raw)
            assert status == 400, raw
            assert "JSON" in answer["message"]


async def test_trimmed_registration_id(db: Database) -> None:
    async with running_api(db, storage_auth="none") as api:
        status, _ = await api.call(
            "PUT",
            "/registration/%20producer-1%20",
            REG,
            body={"itemName": "a", "itemType": "producer"},
        )
        assert status == 200
        with db.read() as session:
            assert session.get(Registration, "producer-1") is not None


async def test_removal_needs_the_side_key(db: Database) -> None:
    async with running_api(db) as api:
        root, side_key = api.fake.add_channel([HELLO])
        reply = await api.client.register(
            "consumer-1", "Flat", "consumer", root=root, side_key=side_key
        )
        await api.client.set_item("consumer-1", "meter", "m1", {"kWh": 1}, token=reply.token)
        status, answer = await api.call("DELETE", "/registration/consumer-1", REG)
        assert status == 401
        assert "side key" in answer["message"]
        status, _ = await api.call("DELETE", "/registration/consumer-1/" + "B" * 81, REG_KEY)
        assert status == 403
        status, answer = await api.call("DELETE", "/registration/consumer-1/abc", REG_KEY)
        assert status == 400
        status, answer = await api.call("DELETE", f"/registration/consumer-1/{side_key}", REG_KEY)
        assert (status, answer["message"]) == (200, "OK")
        with db.read() as session:
            registration = session.get(Registration, "consumer-1")
            assert registration is not None
            assert not registration.active
            assert registration.removed_at is not None
            assert session.scalars(select(StorageItem)).all() == []
            assert not session.scalars(select(FollowedChannel)).one().active
            assert not session.scalars(select(GridChannel)).one().active
            kinds = session.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.position))
            assert list(kinds) == ["hello", "goodbye"]
        await api.return_channels.publish_pending()
        assert len(api.fake.published) == 2
        status, _ = await api.call("DELETE", f"/registration/consumer-1/{side_key}", REG_KEY)
        assert status == 404
        # Registering again starts afresh: new token, new return channel.
        again = await api.client.register("consumer-1", "Flat", "consumer")
        assert again.token is not None
        assert again.root not in (None, reply.root)


async def test_removal_without_side_key_needs_the_token(db: Database) -> None:
    async with running_api(db) as api:
        reply = await api.client.register("producer-1", "PV", "producer")
        with pytest.raises(GridApiError) as caught:
            await api.client.deregister("producer-1")
        assert caught.value.status == 401
        with pytest.raises(GridApiError) as caught:
            await api.client.deregister("producer-1", "A" * 81, token=reply.token)
        assert caught.value.status == 403
        await api.client.deregister("producer-1", token=reply.token)
        with pytest.raises(GridApiError) as caught:
            await api.client.deregister("producer-1", token=reply.token)
        assert caught.value.status == 404


async def test_unknown_routes_and_methods_answer_in_shape(db: Database) -> None:
    async with running_api(db) as api:
        async with api.session.get(api.url + "/nowhere") as response:
            assert response.status == 404
            assert await response.json() == {
                "success": False,
                "message": "There is no such resource.",
            }
        async with api.session.post(api.url + "/registration/producer-1") as response:
            assert response.status == 405
            answer = await response.json()
            assert answer["success"] is False
            assert "POST" in answer["message"]
            assert "PUT" in response.headers["Allow"]


async def test_oversized_body_is_413(db: Database) -> None:
    async with running_api(db, max_item_bytes=1000) as api:
        status, answer = await api.call(
            "PUT",
            "/registration/producer-1",
            REG,
            raw=b'{"itemName": "' + b"x" * 80_000 + b'"}',
        )
        assert status == 413
        assert "too large" in answer["message"]


async def test_a_channel_is_followed_once(db: Database) -> None:
    async with running_api(db) as api:
        root, side_key = api.fake.add_channel([HELLO])
        first = await api.client.register(
            "producer-1", "PV", "producer", root=root, side_key=side_key
        )
        other_root, other_key = api.fake.add_channel([HELLO])
        await api.client.register(
            "producer-1", "PV", "producer", root=other_root, side_key=other_key, token=first.token
        )
        # Back to the first channel: the same row is the registration's channel again.
        await api.client.register(
            "producer-1", "PV", "producer", root=root, side_key=side_key, token=first.token
        )
        with db.read() as session:
            channels = session.scalars(select(FollowedChannel).order_by(FollowedChannel.id)).all()
            assert [(c.root, c.closed_reason) for c in channels] == [
                (root, None),
                (other_root, "replaced"),
            ]
        # Another registration cannot take a channel that is followed already.
        with pytest.raises(GridApiError, match="already registered") as caught:
            await api.client.register("producer-2", "PV", "producer", root=root, side_key=side_key)
        assert caught.value.status == 409
