"""The OpenAPI document describes every route the grid serves, consistently."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
from jsonschema import Draft202012Validator

from grid_server.grid.api.openapi import build_openapi
from grid_server.grid.config import GridConfig

from .harness import running_api

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


@pytest.mark.parametrize("auth", ["token", "none"])
def test_document_is_consistent(auth: str) -> None:
    document = build_openapi(GridConfig(storage_auth=auth))  # type: ignore[arg-type]
    assert document["openapi"].startswith("3.1")
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in document["components"]["schemas"], ref
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    operation_ids = []
    for path, item in document["paths"].items():
        declared = {p["name"] for p in item.get("parameters", [])}
        assert declared == set(re.findall(r"{(\w+)}", path)), path
        for method, operation in item.items():
            if method == "parameters":
                continue
            operation_ids.append(operation["operationId"])
            assert operation["responses"], (method, path)
            for status, response in operation["responses"].items():
                assert re.fullmatch(r"[2-5]\d\d", status)
                assert "application/json" in response["content"]
            for parameter in operation.get("parameters", []):
                Draft202012Validator.check_schema(parameter["schema"])
            for requirement in operation.get("security", []):
                for scheme in requirement:
                    assert scheme in document["components"]["securitySchemes"]
    assert len(operation_ids) == len(set(operation_ids))


async def test_served_document_matches_the_routes(db: Database) -> None:
    async with running_api(db) as api:
        async with api.session.get(api.url + "/api/openapi.json") as response:
            assert response.status == 200
            served = await response.json()
        assert served == api.openapi
        app_routes: set[tuple[str, str]] = set()
        documented = {
            (method.upper(), path)
            for path, item in served["paths"].items()
            for method in item
            if method != "parameters"
        }
        from grid_server.grid.app import create_app

        for route in create_app(_services_stub(api)).router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            path = info.get("formatter") or info.get("path")
            if path and not path.endswith("/"):
                app_routes.add((route.method, path))
        assert app_routes == documented


def _services_stub(api: Any) -> Any:
    # create_app only stores the services; any object with a config will do here.
    class _Stub:
        config = api.config

    return _Stub()
