"""Registering producers and consumers with the grid, and removing them.

A registration with a channel (root, and a side key for restricted channels) is
accepted only when the channel's ``hello`` can be read through the grid's node; the
grid then follows that channel. A consumer also gets the grid's return channel
(created with its ``hello``) for payment requests. Re-registering keeps what is
not sent again. Removing requires the registration's side key (or, for one
without a channel, its token), publishes ``goodbye`` on the return channel, stops
following and deletes the registration's storage; bills and payouts stay as history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from p2p_energy_protocol.payloads import Goodbye, has_hello, payload_to_json
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from .auth import check_side_key, check_token, new_token, side_key_matches, token_hash
from .channels import TangleUnavailableError
from .db.models import FollowedChannel, GridChannel, Registration, StorageItem
from .errors import RequestError
from .rate_limit import AddressRateLimit
from .return_channels import ChannelConflictError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from p2p_energy_protocol.grid_client import ItemType
    from p2p_energy_protocol.mam import MamMode
    from sqlalchemy.orm import Session

    from .channels import ChannelReader
    from .clock import Clock
    from .config import GridConfig, StorageAuth
    from .db.engine import Database
    from .return_channels import PreparedChannel, ReturnChannels

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RegistrationInput:
    registration_id: str
    item_name: str
    item_type: ItemType
    root: str | None
    side_key: str | None
    max_price_micro: int | None = None
    """A consumer's standing bid; each registration states it anew (None: no bid)."""


class RegistrationRateError(RequestError):
    """A client address made too many registrations; it may try again later."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            "Too many new registrations from this address; "
            f"try again in {self.retry_after} seconds.",
            429,
        )


@dataclass(frozen=True, slots=True)
class RegistrationLimits:
    """How many registrations the grid takes: from one client address, and in all."""

    per_address: AddressRateLimit | None = None
    quota: int = 0
    """Active registrations at most (0: no quota)."""

    @classmethod
    def from_config(cls, config: GridConfig) -> RegistrationLimits:
        per_address = (
            AddressRateLimit(
                burst=config.registration_burst, per_minute=config.registrations_per_minute
            )
            if config.registrations_per_minute > 0
            else None
        )
        return cls(per_address, config.registration_quota)


@dataclass(frozen=True, slots=True)
class RegistrationOutcome:
    created: bool
    token: str | None
    """Issued when the registration is created (token authentication only)."""
    return_root: str | None
    return_side_key: str | None


@dataclass(frozen=True, slots=True)
class _Snapshot:
    active: bool
    item_type: str
    side_key: str | None
    token_hash: str | None
    channel_root: str | None
    channel_side_key: str | None
    return_channel_id: int | None


class RegistrationService:
    def __init__(
        self,
        db: Database,
        reader: ChannelReader,
        return_channels: ReturnChannels,
        clock: Clock,
        *,
        auth: StorageAuth,
        hello_search_limit: int,
        notify_outbox: Callable[[], None],
        limits: RegistrationLimits | None = None,
    ) -> None:
        self._db = db
        self._limits = limits or RegistrationLimits()
        # New registrations between their quota check and their commit.
        self._creating = 0
        self._reader = reader
        self._return_channels = return_channels
        self._clock = clock
        self._auth = auth
        self._hello_search_limit = hello_search_limit
        self._notify_outbox = notify_outbox
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def _locked(self, registration_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(registration_id, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._locks.get(registration_id) is lock:
                del self._locks[registration_id]

    @contextlib.asynccontextmanager
    async def _quota_slot(self, registration_id: str) -> AsyncIterator[None]:
        """Hold a place for a new registration within the grid's quota until it is stored."""
        self._creating += 1  # before awaiting, so concurrent creations see each other
        try:
            active = await self._db.run_read(_active_registrations)
            if active + self._creating > self._limits.quota:
                _LOGGER.warning(
                    "registration %s refused: the grid has its quota of %d registrations",
                    registration_id,
                    self._limits.quota,
                )
                raise RequestError(
                    "The grid takes no more registrations: it has its quota of "
                    f"{self._limits.quota}.",
                    403,
                )
            yield
        finally:
            self._creating -= 1

    async def register(
        self, request: RegistrationInput, token: str | None, address: str | None = None
    ) -> RegistrationOutcome:
        """Create or update a registration; ``address`` is the client's, for its limit."""
        async with self._locked(request.registration_id), contextlib.AsyncExitStack() as limits:
            snapshot = await self._db.run_read(
                lambda session: _snapshot(session, request.registration_id)
            )
            updating = snapshot is not None and snapshot.active
            if snapshot is not None and updating:
                # The token, or the registered side key (as for removing), authorises updates.
                if self._auth == "token" and not (
                    token is None and side_key_matches(snapshot.side_key, request.side_key)
                ):
                    check_token(snapshot.token_hash, token)
                if snapshot.item_type != request.item_type:
                    raise RequestError(
                        f"The registration is a {snapshot.item_type}; remove it before "
                        f"registering it as a {request.item_type}.",
                        409,
                    )
            current_root = snapshot.channel_root if snapshot is not None and updating else None
            current_key = snapshot.channel_side_key if snapshot is not None and updating else None
            root = request.root if request.root is not None else current_root
            side_key = request.side_key if request.root is not None else current_key
            changes_channel = request.root is not None and (
                root != current_root or side_key != current_key
            )
            if self._auth == "none" and changes_channel and current_root is not None:
                # Without tokens nothing proves ownership, so another channel would be a
                # takeover; the owner removes the registration with its side key first.
                raise RequestError(
                    "The registration follows another channel; remove it with that channel's "
                    "side key before registering a new one.",
                    409,
                )
            if (not updating or changes_channel) and self._limits.per_address is not None:
                # Counted before the work (hello search, return channel), in the loop's
                # thread, so concurrent requests cannot get past it.
                wait = self._limits.per_address.take(address)
                if wait > 0:
                    _LOGGER.warning(
                        "registration %s from %s refused: too many from that address",
                        request.registration_id,
                        address,
                    )
                    raise RegistrationRateError(wait)
            if not updating and self._limits.quota:
                await limits.enter_async_context(self._quota_slot(request.registration_id))
            mode: MamMode | None = None
            if changes_channel:
                assert request.root is not None  # narrowed by changes_channel
                mode = await self._find_hello(request.root, request.side_key)
            prepared: PreparedChannel | None = None
            has_return = snapshot is not None and updating and snapshot.return_channel_id
            if request.item_type == "consumer" and not has_return:
                prepared = await self._return_channels.prepare()
            issued = new_token() if not updating and self._auth == "token" else None

            def commit(session: Session) -> RegistrationOutcome:
                return self._commit_registration(
                    session, request, root, side_key, mode, prepared, issued
                )

            try:
                outcome = await self._db.run_write(commit)
            except IntegrityError as err:
                raise RequestError(
                    "The registration was changed at the same time; try again.", 409
                ) from err
        if prepared is not None:
            self._notify_outbox()
        _LOGGER.info(
            "registration %s %s",
            request.registration_id,
            "created" if outcome.created else "updated",
            extra={"registration_id": request.registration_id, "item_type": request.item_type},
        )
        return outcome

    def _commit_registration(
        self,
        session: Session,
        request: RegistrationInput,
        root: str | None,
        side_key: str | None,
        mode: MamMode | None,
        prepared: PreparedChannel | None,
        issued: str | None,
    ) -> RegistrationOutcome:
        now = self._clock()
        row = session.get(Registration, request.registration_id)
        created = row is None or not row.active
        if row is None:
            row = Registration(registration_id=request.registration_id, created_at=now)
            session.add(row)
        row.item_name = request.item_name
        row.item_type = request.item_type
        row.root = root
        row.side_key = side_key
        row.max_price_micro = request.max_price_micro
        row.active = True
        row.removed_at = None
        row.updated_at = now
        if issued is not None:
            row.token_hash = token_hash(issued)
        elif created:
            row.token_hash = None
        session.flush()
        if mode is not None and root is not None:
            self._switch_channel(session, request, root, side_key, mode, now)
        if prepared is not None:
            self._return_channels.store(session, request.registration_id, prepared)
        return_channel = _active_return_channel(session, request.registration_id)
        return RegistrationOutcome(
            created=created,
            token=issued,
            return_root=return_channel.root if return_channel is not None else None,
            return_side_key=return_channel.side_key if return_channel is not None else None,
        )

    @staticmethod
    def _switch_channel(
        session: Session,
        request: RegistrationInput,
        root: str,
        side_key: str | None,
        mode: MamMode,
        now: int,
    ) -> None:
        """Make ``root`` the registration's channel; a channel is followed only once."""
        taken = session.scalars(
            select(FollowedChannel.registration_id).where(
                FollowedChannel.root == root,
                FollowedChannel.active,
                FollowedChannel.registration_id != request.registration_id,
            )
        ).first()
        if taken is not None:
            raise RequestError("This channel is already registered by another registration.", 409)
        # Earlier channels are still read up to their goodbye, so nothing published on them
        # before the switch is lost; they only stop being the registration's channel.
        session.execute(
            update(FollowedChannel)
            .where(
                FollowedChannel.registration_id == request.registration_id,
                FollowedChannel.active,
                FollowedChannel.root != root,
            )
            .values(closed_reason="replaced")
        )
        existing = session.scalars(
            select(FollowedChannel).where(
                FollowedChannel.registration_id == request.registration_id,
                FollowedChannel.active,
                FollowedChannel.root == root,
            )
        ).first()
        if existing is not None:
            existing.closed_reason = None
            existing.side_key = side_key
            existing.mode = mode
            return
        session.add(
            FollowedChannel(
                registration_id=request.registration_id,
                role=request.item_type,
                mode=mode,
                root=root,
                side_key=side_key,
                next_root=root,
                next_position=0,
                active=True,
                hello_seen=False,
                skipped_messages=0,
                next_read_at=0,
                created_at=now,
            )
        )

    async def _find_hello(self, root: str, side_key: str | None) -> MamMode:
        """The channel's mode, proven by finding its hello; else 422."""
        modes: tuple[MamMode, ...] = ("restricted",) if side_key else ("public", "private")
        for mode in modes:
            try:
                entries = await self._reader.read_channel(
                    root, mode, side_key, self._hello_search_limit
                )
            except TangleUnavailableError as err:
                raise RequestError(
                    f"The grid's Tangle node is unavailable, try again later: {err}", 503
                ) from err
            if has_hello(entry.data for entry in entries):
                return mode
        raise RequestError(
            f"No 'hello' message was found on the channel at root {root}; publish it "
            "before registering (and check the side key).",
            422,
        )

    async def deregister(
        self, registration_id: str, side_key: str | None, token: str | None
    ) -> None:
        async with self._locked(registration_id):
            snapshot = await self._db.run_read(lambda session: _snapshot(session, registration_id))
            if snapshot is None or not snapshot.active:
                raise RequestError(f"The registration '{registration_id}' does not exist.", 404)
            if snapshot.side_key is not None:
                check_side_key(snapshot.side_key, side_key)
            elif side_key is not None:
                raise RequestError("The side key does not match the registration.", 403)
            elif self._auth == "token":
                check_token(snapshot.token_hash, token)

            def remove(session: Session) -> None:
                now = self._clock()
                session.execute(
                    update(Registration)
                    .where(Registration.registration_id == registration_id)
                    .values(active=False, removed_at=now, updated_at=now, token_hash=None)
                )
                _close_followed(session, registration_id, "deregistered")
                session.execute(
                    delete(StorageItem).where(StorageItem.registration_id == registration_id)
                )

            if snapshot.return_channel_id is not None:
                try:
                    await self._return_channels.append(
                        snapshot.return_channel_id,
                        payload_to_json(Goodbye()),
                        kind="goodbye",
                        also=remove,
                        close=True,
                    )
                except ChannelConflictError as err:
                    raise RequestError(
                        "The registration was changed at the same time; try again.", 409
                    ) from err
                self._notify_outbox()
            else:
                await self._db.run_write(remove)
        _LOGGER.info("registration %s removed", registration_id)


def _snapshot(session: Session, registration_id: str) -> _Snapshot | None:
    row = session.get(Registration, registration_id)
    if row is None:
        return None
    channel = session.scalars(
        select(FollowedChannel)
        .where(
            FollowedChannel.registration_id == registration_id,
            FollowedChannel.active,
            FollowedChannel.closed_reason.is_(None),
        )
        .order_by(FollowedChannel.id.desc())
        .limit(1)
    ).first()
    return_channel = _active_return_channel(session, registration_id)
    return _Snapshot(
        active=row.active,
        item_type=row.item_type,
        side_key=row.side_key,
        token_hash=row.token_hash,
        channel_root=channel.root if channel is not None else row.root,
        channel_side_key=channel.side_key if channel is not None else row.side_key,
        return_channel_id=return_channel.id if return_channel is not None else None,
    )


def _active_return_channel(session: Session, registration_id: str) -> GridChannel | None:
    return session.scalars(
        select(GridChannel)
        .where(GridChannel.registration_id == registration_id, GridChannel.active)
        .order_by(GridChannel.id.desc())
        .limit(1)
    ).first()


def _close_followed(session: Session, registration_id: str, reason: str) -> None:
    session.execute(
        update(FollowedChannel)
        .where(FollowedChannel.registration_id == registration_id, FollowedChannel.active)
        .values(active=False, closed_reason=reason)
    )


def _active_registrations(session: Session) -> int:
    return int(
        session.scalar(select(func.count()).select_from(Registration).where(Registration.active))
        or 0
    )
