"""Portal sessions in the database: opened, checked, revoked, ended by a new password."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

from grid_server.grid.db.engine import Database
from grid_server.grid.db.models import PortalSession
from grid_server.portal.sessions import MAX_OPEN_SESSIONS, PortalSessions, token_hash

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SECRET = b"s" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'grid.sqlite3'}", threads=1)
    database.migrate()
    yield database
    database.close()


def sessions(db: Database, clock: Clock, password_hash: str = "scrypt$one") -> PortalSessions:
    return PortalSessions(db, SECRET, max_age_seconds=600, password_hash=password_hash, clock=clock)


async def test_a_session_lives_until_it_is_revoked_or_expires(db: Database) -> None:
    clock = Clock()
    portal = sessions(db, clock)
    token = await portal.open("10.0.0.5")
    assert await portal.is_valid(token)
    with db.read() as session:
        row = session.get(PortalSession, token_hash(token))
        assert row is not None
        assert (row.address, row.expires_at) == ("10.0.0.5", clock.now + 600_000)
        # Only the token's hash is stored.
        assert token not in {row.token_hash, row.password_fingerprint}
    other = await portal.open(None)
    assert await portal.revoke(token)
    assert not await portal.revoke(token)
    assert not await portal.is_valid(token)
    assert await portal.is_valid(other)
    clock.now += 600_000
    assert not await portal.is_valid(other)
    for bad in (None, "", "x" * 201, "é", token + "x"):
        assert not await portal.is_valid(bad)


async def test_a_new_password_ends_every_session(db: Database) -> None:
    clock = Clock()
    before = [await sessions(db, clock).open(None) for _ in range(3)]
    changed = sessions(db, clock, password_hash="scrypt$two")
    assert not any([await changed.is_valid(token) for token in before])
    assert await changed.forget_other_passwords() == 3
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(PortalSession)) == 0
    # A changed session secret does the same, and without a password nothing opens.
    kept = await changed.open(None)
    assert not await PortalSessions(
        db, b"t" * 32, max_age_seconds=600, password_hash="scrypt$two", clock=clock
    ).is_valid(kept)
    assert not await sessions(db, clock, password_hash="").is_valid(kept)


async def test_only_the_newest_sessions_stay_open(db: Database) -> None:
    clock = Clock()
    portal = sessions(db, clock)
    tokens = []
    for _ in range(MAX_OPEN_SESSIONS + 2):
        tokens.append(await portal.open(None))
        clock.now += 1
    valid = [await portal.is_valid(token) for token in tokens]
    assert valid == [False, False] + [True] * MAX_OPEN_SESSIONS


def test_device_cookies_and_form_tokens_cannot_be_forged(db: Database) -> None:
    portal = sessions(db, Clock())
    cookie = portal.new_device()
    device = portal.device(cookie)
    assert device is not None
    assert cookie.startswith(device)
    assert portal.device(cookie[:-1]) is None
    assert portal.device(device + ".forged") is None
    assert portal.device(None) is None
    stranger = PortalSessions(db, b"t" * 32, max_age_seconds=600, password_hash="scrypt$one")
    assert stranger.device(cookie) is None
    assert portal.csrf_token("a") != portal.csrf_token("b")
    assert portal.login_csrf_token("a") != portal.csrf_token("a")
    assert portal.matches(portal.csrf_token("a"), portal.csrf_token("a"))
    assert not portal.matches(portal.csrf_token("a"), None)
    assert not portal.matches(portal.csrf_token("a"), "é")
