"""A leader lease in the database: one grid process at a time runs the background work.

Several grid processes may serve the APIs from one PostgreSQL database; only the
holder of the lease follows channels, settles slots, publishes and pays. The
holder renews the lease well before it expires; a crashed holder's lease runs
out and another process takes over. Settlement is additionally idempotent per
slot (a unique slot and a transaction lock), so even two leaders could not
settle a slot twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .db.models import Lease

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .clock import Clock
    from .db.engine import Database

_LOGGER = logging.getLogger(__name__)


class LeaderLease:
    def __init__(self, db: Database, name: str, holder: str, seconds: float, clock: Clock) -> None:
        self._db = db
        self.name = name
        self.holder = holder
        self._duration_ms = int(seconds * 1000)
        self._clock = clock
        self.held = False

    def _claim(self, session: Session) -> bool:
        now = self._clock()
        row = session.scalars(
            select(Lease).where(Lease.name == self.name).with_for_update()
        ).first()
        if row is None:
            session.add(
                Lease(
                    name=self.name,
                    holder=self.holder,
                    expires_at=now + self._duration_ms,
                    acquired_at=now,
                )
            )
            session.flush()
            return True
        if row.holder != self.holder and row.expires_at > now:
            return False
        if row.holder != self.holder:
            row.acquired_at = now
        row.holder = self.holder
        row.expires_at = now + self._duration_ms
        return True

    async def acquire_or_renew(self) -> bool:
        """Take or extend the lease; returns whether this process holds it."""
        try:
            held = await self._db.run_write(self._claim)
        except IntegrityError:
            held = False
        if held != self.held:
            _LOGGER.info(
                "%s the %s lease",
                "acquired" if held else "lost",
                self.name,
                extra={"holder": self.holder},
            )
        self.held = held
        return held

    async def release(self) -> None:
        """Give the lease up (on a clean shutdown) so another process takes over at once."""

        def drop(session: Session) -> None:
            row = session.scalars(
                select(Lease).where(Lease.name == self.name).with_for_update()
            ).first()
            if row is not None and row.holder == self.holder:
                row.expires_at = 0

        await self._db.run_write(drop)
        self.held = False
