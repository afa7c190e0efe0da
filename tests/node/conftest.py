"""Fixtures of the node suite: in-process nodes on SQLite, and on PostgreSQL where marked.

PostgreSQL comes from ``P2P_TEST_POSTGRES_URL`` (``scripts/test`` starts a throw-away
cluster). Every PostgreSQL test gets a database of its own, dropped afterwards, so the
grid's suite and parallel sessions never collide.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from p2p_energy_protocol.client import IriClient
from sqlalchemy.engine import make_url

from grid_server.node import NodeServer
from tests.browser import browser  # noqa: F401  (the fixture, for the explorer's browser test)

from .helpers import node_config

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
    from pathlib import Path

POSTGRES_ENV = "P2P_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def _node_test_environment(socket_enabled: None) -> None:
    """Loopback sockets on (the Home Assistant plugin disables them); SQL logging off."""
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


def _admin_conninfo() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set in CI; the PostgreSQL tests cannot run")
        pytest.skip(f"PostgreSQL not available ({POSTGRES_ENV} unset)")
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped after the test."""
    import psycopg

    admin = _admin_conninfo()
    name = f"node_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = make_url(os.environ[POSTGRES_ENV])
    yield base.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The node's database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'node.sqlite3'}"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def start_node() -> AsyncIterator[Callable[..., Awaitable[NodeServer]]]:
    """Start in-process nodes (``start_node(database_url, **config)``); all stop at the end."""
    running: list[NodeServer] = []

    async def start(database_url: str, **overrides: Any) -> NodeServer:
        node = NodeServer(node_config(database_url, **overrides))
        await node.start()
        running.append(node)
        return node

    yield start
    for node in reversed(running):
        await node.stop()


@pytest.fixture
async def node(start_node: Callable[..., Awaitable[NodeServer]], sqlite_url: str) -> NodeServer:
    """A coordinator node on SQLite with the first milestone issued."""
    return await start_node(sqlite_url)


@pytest.fixture
def client(node: NodeServer, session: aiohttp.ClientSession) -> IriClient:
    return IriClient(session, node.url)
