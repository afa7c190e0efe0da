"""The storage API over HTTP: CRUD, paging, limits, authentication."""

from __future__ import annotations

import pytest
from p2p_energy_protocol.errors import GridApiError

from grid_server.grid.db.engine import Database

from .harness import ApiHarness, running_api

ITEM = "/storage/{registrationId}/{context}/{itemId}"
ITEM_PREFIXED = "/storage/item/{registrationId}/{context}/{itemId}"
CONTEXT = "/storage/{registrationId}/{context}"
FOLDER = "/storage/{registrationId}"


async def registered(api: ApiHarness, registration_id: str = "producer-1") -> str:
    reply = await api.client.register(registration_id, "PV", "producer")
    return reply.token or ""


async def test_item_round_trip_on_both_put_paths(db: Database) -> None:
    async with running_api(db) as api:
        token = await registered(api)
        value = {"name": "Panel 1", "kWp": 4.2, "tags": ["roof", "süd"], "nested": {"a": None}}
        status, answer = await api.call(
            "PUT", "/storage/item/producer-1/sources/XXX123", ITEM_PREFIXED, body=value, token=token
        )
        assert (status, answer) == (200, {"success": True, "message": "OK"})
        status, answer = await api.call(
            "GET", "/storage/producer-1/sources/XXX123", ITEM, token=token
        )
        assert (status, answer["item"]) == (200, value)
        # The blueprint's other PUT path replaces it.
        status, _ = await api.call(
            "PUT", "/storage/producer-1/sources/XXX123", ITEM, body=[1, 2, 3], token=token
        )
        assert status == 200
        assert await api.client.get_item("producer-1", "sources", "XXX123", token=token) == [
            1,
            2,
            3,
        ]
        status, answer = await api.call(
            "GET", "/storage/item/producer-1/sources/XXX123", ITEM_PREFIXED, token=token
        )
        assert answer["item"] == [1, 2, 3]
        for scalar in (0, "text", None, True, 1.5):
            await api.client.set_item("producer-1", "scalars", "x", scalar, token=token)
            assert await api.client.get_item("producer-1", "scalars", "x", token=token) == scalar


async def test_paging_as_the_blueprint_describes(db: Database) -> None:
    async with running_api(db) as api:
        token = await registered(api)
        for number in range(45):
            await api.client.set_item(
                "producer-1", "sources", f"id-{number:02}", {"n": number}, token=token
            )
        await api.client.set_item("producer-1", "other", "zzz", {"n": -1}, token=token)
        status, answer = await api.call("GET", "/storage/producer-1/sources", CONTEXT, token=token)
        assert status == 200
        assert (answer["totalItems"], answer["totalPages"], answer["pageSize"]) == (45, 5, 10)
        assert answer["ids"] == [f"id-{n:02}" for n in range(10)]
        assert answer["items"] == [{"n": n} for n in range(10)]
        assert "contexts" not in answer
        status, answer = await api.call(
            "GET",
            "/storage/producer-1/sources",
            CONTEXT,
            token=token,
            params={"page": "4", "pageSize": "10"},
        )
        assert answer["ids"] == [f"id-{n:02}" for n in range(40, 45)]
        status, answer = await api.call(
            "GET",
            "/storage/producer-1/sources",
            CONTEXT,
            token=token,
            params={"page": "1", "page-size": "20"},
        )
        assert (answer["pageSize"], answer["totalPages"]) == (20, 3)
        assert answer["ids"][0] == "id-20"
        status, answer = await api.call(
            "GET", "/storage/producer-1/sources", CONTEXT, token=token, params={"page": "9"}
        )
        assert (status, answer["ids"], answer["items"]) == (200, [], [])
        # Listing a whole registration orders by context, then id.
        page = await api.client.list_items("producer-1", token=token, page=0, page_size=5)
        assert page.total_items == 46
        assert page.total_pages == 10
        assert page.ids == ["zzz", "id-00", "id-01", "id-02", "id-03"]
        assert page.contexts == ["other"] + ["sources"] * 4
        last = await api.client.list_items("producer-1", token=token, page=9, page_size=5)
        assert (last.ids, last.contexts) == (["id-44"], ["sources"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"page": "-1"}, "'page'"),
        ({"page": "x"}, "'page'"),
        ({"page": "1.5"}, "'page'"),
        ({"pageSize": "0"}, "'pageSize'"),
        ({"pageSize": "101"}, "from 1 to 100"),
        ({"page-size": "abc"}, "'pageSize'"),
    ],
)
async def test_bad_paging_is_400(db: Database, params: dict[str, str], message: str) -> None:
    async with running_api(db) as api:
        token = await registered(api)
        status, answer = await api.call(
            "GET", "/storage/producer-1/sources", CONTEXT, token=token, params=params
        )
        assert status == 400
        assert message in answer["message"]


async def test_page_size_wins_over_the_blueprint_spelling(db: Database) -> None:
    async with running_api(db) as api:
        token = await registered(api)
        status, answer = await api.call(
            "GET",
            "/storage/producer-1/sources",
            CONTEXT,
            token=token,
            params={"pageSize": "20", "page-size": "30"},
        )
        assert (status, answer["pageSize"]) == (200, 20)
        async with api.session.get(
            api.url + "/storage/producer-1/sources?pageSize=1&pageSize=2",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 400
            assert "more than once" in (await response.json())["message"]


async def test_deleting_items_contexts_and_everything(db: Database) -> None:
    async with running_api(db) as api:
        token = await registered(api)
        for context in ("a", "b"):
            for item in ("1", "2", "3"):
                await api.client.set_item("producer-1", context, item, {}, token=token)
        status, answer = await api.call("DELETE", "/storage/producer-1/a/1", ITEM, token=token)
        assert (status, answer["deleted"]) == (200, 1)
        status, answer = await api.call("DELETE", "/storage/producer-1/a/1", ITEM, token=token)
        assert status == 404
        status, answer = await api.call("DELETE", "/storage/producer-1/a", CONTEXT, token=token)
        assert answer["deleted"] == 2
        assert await api.client.delete_items("producer-1", "b", "2", token=token) == 1
        assert (await api.client.list_items("producer-1", token=token)).ids == ["1", "3"]
        # The blueprint's example deletes everything with a trailing slash.
        async with api.session.delete(
            api.url + "/storage/producer-1/", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert (response.status, (await response.json())["deleted"]) == (200, 2)
        assert (await api.client.list_items("producer-1", token=token)).total_items == 0
        status, answer = await api.call("DELETE", "/storage/producer-1", FOLDER, token=token)
        assert (status, answer["deleted"]) == (200, 0)


async def test_missing_items_and_registrations_are_404(db: Database) -> None:
    async with running_api(db) as api:
        token = await registered(api)
        status, answer = await api.call("GET", "/storage/producer-1/a/nothing", ITEM, token=token)
        assert status == 404
        assert "nothing" in answer["message"]
        status, answer = await api.call("GET", "/storage/unknown-1/a/b", ITEM, token=token)
        assert status == 404
        assert "unknown-1" in answer["message"]
        status, answer = await api.call("PUT", "/storage/unknown-1/a/b", ITEM, body={}, token=token)
        assert status == 404


async def test_storage_needs_the_registrations_token(db: Database) -> None:
    async with running_api(db) as api:
        token = await registered(api)
        other = await registered(api, "producer-2")
        status, answer = await api.call("PUT", "/storage/producer-1/a/b", ITEM, body={})
        assert status == 401
        assert "Bearer" in answer["message"]
        status, _ = await api.call("PUT", "/storage/producer-1/a/b", ITEM, body={}, token=other)
        assert status == 403
        async with api.session.get(
            api.url + "/storage/producer-1/a", headers={"Authorization": "Basic abc"}
        ) as response:
            assert response.status == 401
        status, _ = await api.call("GET", "/storage/producer-1/a", CONTEXT, token=token)
        assert status == 200
        assert api.openapi["paths"][ITEM]["put"]["security"] == [{"bearerAuth": []}]


async def test_unauthenticated_storage_when_configured(db: Database) -> None:
    async with running_api(db, storage_auth="none") as api:
        await api.client.register("producer-1", "PV", "producer")
        await api.client.set_item("producer-1", "a", "b", {"x": 1})
        assert await api.client.get_item("producer-1", "a", "b") == {"x": 1}
        assert "securitySchemes" not in api.openapi["components"]
        assert api.openapi["paths"][ITEM]["put"]["security"] == []


async def test_storage_limits(db: Database) -> None:
    async with running_api(db, max_item_bytes=100, max_items_per_registration=3) as api:
        token = await registered(api)
        status, answer = await api.call(
            "PUT", "/storage/producer-1/a/big", ITEM, body={"x": "y" * 200}, token=token
        )
        assert status == 413
        assert "100 bytes" in answer["message"]
        for item in ("1", "2", "3"):
            await api.client.set_item("producer-1", "a", item, item, token=token)
        with pytest.raises(GridApiError, match="limit") as caught:
            await api.client.set_item("producer-1", "a", "4", "4", token=token)
        assert caught.value.status == 409
        # Replacing an existing item is still fine at the limit.
        await api.client.set_item("producer-1", "a", "3", "three", token=token)


@pytest.mark.parametrize(
    ("path", "template", "message"),
    [
        ("/storage/producer-1/.hidden/x", ITEM, "'context'"),
        ("/storage/producer-1/a/.x", ITEM, "'itemId'"),
        ("/storage/producer-1/a%20b/x", ITEM, "'context'"),
        ("/storage/producer-1/a/" + "x" * 129, ITEM, "'itemId'"),
        ("/storage/short/a/x", ITEM, "'registrationId'"),
    ],
)
async def test_path_validation(db: Database, path: str, template: str, message: str) -> None:
    async with running_api(db) as api:
        token = await registered(api)
        status, answer = await api.call("PUT", path, template, body={}, token=token)
        assert status == 400
        assert message in answer["message"]


async def test_item_bodies_must_be_json(db: Database) -> None:
    async with running_api(db) as api:
        token = await registered(api)
        for raw in (b"", b"{'a': 1}", b"Infinity", b"\xc3\x28"):
            status, answer = await api.call(
                "PUT", "/storage/producer-1/a/b", ITEM, raw=raw, token=token
            )
            assert status == 400, raw
            assert "JSON" in answer["message"]


async def test_removing_a_registration_deletes_its_storage(db: Database) -> None:
    async with running_api(db) as api:
        token = await registered(api)
        await api.client.set_item("producer-1", "a", "b", {}, token=token)
        await api.client.deregister("producer-1", token=token)
        status, _ = await api.call("GET", "/storage/producer-1/a/b", ITEM, token=token)
        assert status == 404


async def test_database_outage_is_a_503() -> None:
    from .processes import free_port

    unreachable = Database(f"postgresql+psycopg://p2p@127.0.0.1:{free_port()}/grid", threads=1)
    try:
        async with running_api(unreachable) as api:
            status, answer = await api.call(
                "GET", "/storage/producer-1/a/b", ITEM, token="anything"
            )
            assert status == 503
            assert "database is unavailable" in answer["message"]
    finally:
        unreachable.close()
