"""Operator sessions of the portal, kept in the grid's database, and the tokens around them.

A sign-in opens a session: the cookie holds a random token, the database its SHA-256
(so a copy of the database opens nothing) with an HMAC of the password hash it was
opened with. Signing out revokes that session; configuring another password (or
another session secret) ends every session, since none matches the new fingerprint.
Every grid process sharing the database sees a revocation at once.

The session secret also keys the forms' CSRF tokens (bound to the session, or to a
sign-in cookie before there is one) and the *device* cookie a browser gets when it
signs in, which lets the operator's own browser past the sign-in throttle that holds
back everybody else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from typing import TYPE_CHECKING, Final

from sqlalchemy import delete, select, update

from ..grid.clock import system_clock
from ..grid.db.models import PortalSession

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..grid.clock import Clock
    from ..grid.db.engine import Database

_LOGGER = logging.getLogger(__name__)
_TOKEN_BYTES: Final = 32
# Sessions kept open at once; signing in beyond that closes the oldest.
MAX_OPEN_SESSIONS: Final = 50
_MAX_TOKEN_LENGTH: Final = 200


def _digest(secret: bytes, purpose: str, value: str) -> str:
    mac = hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _well_formed(token: str | None) -> bool:
    return bool(token) and len(token or "") <= _MAX_TOKEN_LENGTH and (token or "").isascii()


class PortalSessions:
    """Opens, checks and revokes operator sessions; signs the portal's other tokens."""

    def __init__(
        self,
        db: Database,
        secret: bytes,
        *,
        max_age_seconds: int,
        password_hash: str | None,
        clock: Clock = system_clock,
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret needs at least 32 bytes")
        self._db = db
        self._secret = secret
        self._max_age_ms = max_age_seconds * 1000
        self._clock = clock
        self.fingerprint = (
            _digest(secret, "password", password_hash)[:64] if password_hash else None
        )

    async def open(self, address: str | None) -> str:
        """A new session for a signed-in operator; returns the cookie's token."""
        if self.fingerprint is None:
            raise RuntimeError("no operator password is configured")
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        now = self._clock()
        fingerprint = self.fingerprint

        def store(session: Session) -> None:
            session.execute(delete(PortalSession).where(PortalSession.expires_at <= now))
            session.add(
                PortalSession(
                    token_hash=token_hash(token),
                    password_fingerprint=fingerprint,
                    address=(address or "")[:64] or None,
                    created_at=now,
                    expires_at=now + self._max_age_ms,
                )
            )
            session.flush()
            stale = session.scalars(
                select(PortalSession.token_hash)
                .where(PortalSession.revoked_at.is_(None))
                .order_by(PortalSession.created_at.desc(), PortalSession.token_hash)
                .offset(MAX_OPEN_SESSIONS)
            ).all()
            if stale:
                session.execute(
                    update(PortalSession)
                    .where(PortalSession.token_hash.in_(stale))
                    .values(revoked_at=now)
                )

        await self._db.run_write(store)
        return token

    async def is_valid(self, token: str | None) -> bool:
        """Whether ``token`` is an open session of the current password."""
        if self.fingerprint is None or not _well_formed(token):
            return False
        assert token is not None
        row = await self._db.run_read(lambda s: s.get(PortalSession, token_hash(token)))
        return (
            row is not None
            and row.revoked_at is None
            and row.expires_at > self._clock()
            and hmac.compare_digest(row.password_fingerprint, self.fingerprint)
        )

    async def revoke(self, token: str | None) -> bool:
        """Sign out: the session is closed for every grid process at once."""
        if not _well_formed(token):
            return False
        assert token is not None
        now = self._clock()
        result = await self._db.run_write(
            lambda s: s.execute(
                update(PortalSession)
                .where(
                    PortalSession.token_hash == token_hash(token),
                    PortalSession.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            ).rowcount
        )
        return bool(result)

    async def forget_other_passwords(self) -> int:
        """Delete the sessions opened with another password (or session secret)."""
        fingerprint = self.fingerprint or ""
        removed = int(
            await self._db.run_write(
                lambda s: s.execute(
                    delete(PortalSession).where(PortalSession.password_fingerprint != fingerprint)
                ).rowcount
            )
            or 0
        )
        if removed:
            _LOGGER.warning(
                "the portal password or session secret changed: %d sessions ended", removed
            )
        return removed

    # -- tokens that need no storage ------------------------------------------------

    def csrf_token(self, session_token: str) -> str:
        """The CSRF token of a session's forms (signing out)."""
        return _digest(self._secret, "csrf-session", token_hash(session_token))

    def login_csrf_token(self, nonce: str) -> str:
        """The CSRF token of the sign-in form, bound to the browser's sign-in cookie."""
        return _digest(self._secret, "csrf-login", nonce)

    @staticmethod
    def matches(expected: str, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(
            expected.encode("ascii"), given.encode("utf-8", "replace")
        )

    def new_device(self) -> str:
        """A device cookie for a browser that signed in with the password."""
        device = secrets.token_urlsafe(16)
        return f"{device}.{_digest(self._secret, 'device', device)}"

    def device(self, cookie: str | None) -> str | None:
        """The device id of a genuine device cookie (None: absent or forged)."""
        if not _well_formed(cookie):
            return None
        assert cookie is not None
        device, _, signature = cookie.partition(".")
        if not device or not self.matches(_digest(self._secret, "device", device), signature):
            return None
        return device
