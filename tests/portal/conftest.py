"""A grid application with the portal mounted on a seeded SQLite database."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import pytest

from grid_server.grid.api.context import GridServices
from grid_server.grid.app import create_app
from grid_server.grid.config import GridConfig
from grid_server.grid.db.engine import Database
from grid_server.portal.app import setup_portal
from grid_server.portal.auth import hash_password
from grid_server.portal.config import PortalConfig
from tests.browser import browser  # noqa: F401  (the fixture, for the portal's browser test)

from .seed import Expected, seed_market

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from aiohttp import web

PASSWORD = "operator-passphrase"


@pytest.fixture(autouse=True)
def _loopback_sockets(socket_enabled: None) -> None:
    """The Home Assistant test plugin disables sockets; these tests use loopback."""
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def seeded_db(tmp_path: Path) -> Iterator[tuple[Database, Expected]]:
    db = Database(f"sqlite:///{tmp_path / 'grid.sqlite3'}", threads=2)
    db.migrate()
    with db.write() as session:
        expected = seed_market(session)
    try:
        yield db, expected
    finally:
        db.close()


async def healthy() -> tuple[bool, dict[str, Any]]:
    return True, {"database": "ok", "node": "ok", "status": "ok"}


def grid_services(db: Database, tmp_path: Path) -> GridServices:
    # The portal reads the database and the health check only; the API services
    # are not exercised by these tests.
    return GridServices(
        config=GridConfig(data_dir=tmp_path, slot_seconds=60, statement_fee=15),
        db=db,
        registrations=cast("Any", None),
        storage=cast("Any", None),
        health=healthy,
    )


@pytest.fixture
def make_app(
    seeded_db: tuple[Database, Expected], tmp_path: Path, password_hash: str
) -> Callable[..., web.Application]:
    def build(node_url: str | None = None, **portal: Any) -> web.Application:
        app = create_app(grid_services(seeded_db[0], tmp_path))
        options: dict[str, Any] = {"password_hash": password_hash}
        options.update(portal)
        setup_portal(app, PortalConfig(**options), data_dir=tmp_path, node_url=node_url)
        return app

    return build
