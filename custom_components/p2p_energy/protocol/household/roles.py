"""Sources, and what producers and consumers share: registering with the grid."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ..payloads import SourceOutput
from .participant import Participant

if TYPE_CHECKING:
    from datetime import datetime

    from ..grid_client import ItemType, RegistrationReply


class Source(Participant):
    """A generation meter reporting to a producer.

    A producer in the same household finds the channel itself; a producer
    elsewhere is told through its registration API (``producer_url``).
    """

    kind = "source"

    async def _take_period_locked(self, now: datetime) -> float | None:
        """A source reports its output."""
        return await self._queue_delta_locked(
            now, lambda start, end, kwh: SourceOutput(start_time=start, end_time=end, output=kwh)
        )

    async def _register_locked(self, root: str) -> None:
        if self.config.producer_url:
            await self.household.connection.register_source(
                self.config.producer_url, self.registration_id, self.name, root, self.side_key
            )

    async def _deregister_remote(self) -> None:
        if self.config.producer_url:
            await self.household.connection.deregister_source(
                self.config.producer_url, self.registration_id, self.side_key
            )


class GridMember(Participant):
    """A producer or consumer: registered with the grid itself."""

    item_type: ClassVar[ItemType]
    registers_with_grid = True

    async def _grid_register(self, root: str, max_price: float | None = None) -> RegistrationReply:
        reply = await self.household.connection.register(
            self.registration_id,
            self.name,
            self.item_type,
            root,
            self.side_key,
            self.state.registration_token,
            max_price=max_price,
        )
        if reply.token is not None:
            self.state.registration_token = reply.token
        return reply

    async def _register_locked(self, root: str) -> None:
        await self._grid_register(root)

    async def _deregister_remote(self) -> None:
        await self.household.connection.deregister(
            self.registration_id, self.side_key, self.state.registration_token
        )
