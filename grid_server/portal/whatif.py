"""The portal's what-if: a settled slot replayed under another mechanism (read-only).

``GET api/replay?slot=latest|<time>&mechanism=<name>`` answers the replay report of
:mod:`grid_server.grid.settlement.replay` (the same as ``p2p-energy replay --json``)
and the mechanisms to choose from; without ``mechanism`` the slot is replayed under
its own, which shows that it reproduces the stored result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..grid.settlement.pricing import STRATEGY_NAMES
from ..grid.settlement.replay import ReplayError, load_slot, replay, report
from .queries import QueryError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..grid.settlement.mechanisms import MarketParameters


def what_if(
    session: Session, slot: str, mechanism: str | None, configured: MarketParameters
) -> dict[str, Any]:
    """The replay report of ``slot`` under ``mechanism`` (its own when None)."""
    if len(slot) > 40:
        raise QueryError("'slot' is 'latest' or a time in the slot")
    if mechanism is not None and mechanism not in STRATEGY_NAMES:
        raise QueryError(f"'mechanism' must be one of {', '.join(STRATEGY_NAMES)}")
    try:
        stored = load_slot(session, slot, configured)
        outcome = replay(stored.inputs, mechanism, configured)
    except ReplayError as err:
        raise QueryError(str(err)) from err
    return {
        **report(stored, outcome, mechanism or stored.inputs.mechanism),
        "mechanisms": list(STRATEGY_NAMES),
    }
