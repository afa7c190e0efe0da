"""Direct database set-up for service tests (registrations and followed channels)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid_server.grid.db.models import FollowedChannel, Registration

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database

    from .fakes import FakeStream


def add_registration(
    db: Database, registration_id: str, item_type: str, stream: FakeStream | None, now: int = 0
) -> int | None:
    """A registration (and its followed channel); returns the channel id."""
    with db.write() as session:
        session.add(
            Registration(
                registration_id=registration_id,
                item_name=registration_id,
                item_type=item_type,
                root=stream.root if stream else None,
                side_key=stream.side_key if stream else None,
                active=True,
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        if stream is None:
            return None
        channel = FollowedChannel(
            registration_id=registration_id,
            role=item_type,
            mode=stream.mode,
            root=stream.root,
            side_key=stream.side_key,
            next_root=stream.root,
            next_position=0,
            active=True,
            hello_seen=False,
            skipped_messages=0,
            next_read_at=0,
            created_at=now,
        )
        session.add(channel)
        session.flush()
        return channel.id


def add_reading(
    db: Database,
    registration_id: str,
    end_time: int,
    kwh: float,
    *,
    price: float | None = None,
    destination: str | None = None,
    duration_ms: int = 900_000,
    bid: float | None = None,
) -> None:
    """A reading on the registration's channel (created on first use), as the follower stores it."""
    from p2p_energy_protocol.trinary import int_to_trytes
    from sqlalchemy import func, select

    from grid_server.grid.db.models import Reading
    from grid_server.grid.units import kwh_to_milliwh, price_to_micro

    with db.write() as session:
        registration = session.get(Registration, registration_id)
        assert registration is not None, registration_id
        channel = session.scalars(
            select(FollowedChannel).where(FollowedChannel.registration_id == registration_id)
        ).first()
        if channel is None:
            channel = FollowedChannel(
                registration_id=registration_id,
                role=registration.item_type,
                mode="restricted",
                root="R" * 81,
                side_key="S" * 81,
                next_root="R" * 81,
                next_position=0,
                active=True,
                hello_seen=True,
                skipped_messages=0,
                next_read_at=0,
                created_at=0,
            )
            session.add(channel)
            session.flush()
        position = (
            session.scalar(
                select(func.coalesce(func.max(Reading.position), 0)).where(
                    Reading.channel_id == channel.id
                )
            )
            or 0
        ) + 1
        session.add(
            Reading(
                channel_id=channel.id,
                registration_id=registration_id,
                kind="output" if registration.item_type == "producer" else "usage",
                position=position,
                message_root=int_to_trytes(position, 81),
                start_time=end_time - duration_ms,
                end_time=end_time,
                energy_milliwh=kwh_to_milliwh(kwh),
                price_micro=price_to_micro(price) if price is not None else None,
                bid_micro=price_to_micro(bid) if bid is not None else None,
                payment_id_or_address=destination,
                received_at=end_time,
                settlement_id=None,
            )
        )
