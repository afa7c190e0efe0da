"""A participant's settled slots over the grid's API: its bills or payouts, paged, 4xx."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from sqlalchemy import select

from grid_server.grid.db.models import Bill, Payout, Settlement

from .harness import running_api
from .test_statements import CONFIG, CONSUMERS, NOVEMBER, PRODUCERS, SLOT, month_of_slots

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database

SLOTS = "/settlements/{registrationId}"


def _grid_rows(db: Database, registration_id: str) -> list[tuple[int, int, int, int]]:
    """(slot start, slot end, energy, amount) of the registration, from the tables."""
    consumer = registration_id in CONSUMERS
    line = Bill if consumer else Payout
    energy = Bill.usage_milliwh if consumer else Payout.energy_milliwh
    with db.read() as session:
        rows = session.execute(
            select(Settlement.slot_start, Settlement.slot_end, energy, line.amount)
            .join(Settlement, Settlement.id == line.settlement_id)
            .where(line.registration_id == registration_id)
            .order_by(Settlement.slot_start)
        ).all()
    return [tuple(row) for row in rows]


async def test_a_participant_pages_through_its_settled_slots(db: Database) -> None:
    settings = {
        "slot_seconds": CONFIG.slot_seconds,
        "currency": CONFIG.currency,
        "currency_per_million_iota": CONFIG.currency_per_million_iota,
    }
    async with running_api(db, **settings) as api:
        tokens = {}
        for name in (*CONSUMERS, *PRODUCERS):
            kind: Literal["consumer", "producer"] = "consumer" if name in CONSUMERS else "producer"
            tokens[name] = (await api.client.register(name, name, kind)).token or ""
        # Nothing settled yet: no rows, and no end of settlement.
        status, answer = await api.call(
            "GET", "/settlements/consumer-x", SLOTS, token=tokens["consumer-x"]
        )
        assert (status, answer["slots"], answer["settledUntil"]) == (200, [], None)

        await month_of_slots(db, through=NOVEMBER, register=False)
        for name in ("consumer-x", "producer-a"):
            expected = _grid_rows(db, name)
            assert len(expected) == 8  # two days of six-hour slots
            seen: list[tuple[int, int, int, int]] = []
            start: int | None = 0
            while start is not None:
                status, answer = await api.call(
                    "GET",
                    f"/settlements/{name}",
                    SLOTS,
                    token=tokens[name],
                    params={"from": str(start), "pageSize": "3"},
                )
                assert status == 200
                assert answer["itemType"] == ("consumer" if name in CONSUMERS else "producer")
                assert answer["settledUntil"] == NOVEMBER
                assert (answer["currency"], answer["currencyPerMillionIota"]) == ("EUR", "0.25")
                assert answer["slotSeconds"] == CONFIG.slot_seconds
                assert len(answer["slots"]) <= 3
                seen += [
                    (row["slotStart"], row["slotEnd"], row["energyMilliwh"], row["amount"])
                    for row in answer["slots"]
                ]
                start = answer["next"]
            assert seen == expected
        # A later start leaves the earlier slots out.
        status, answer = await api.call(
            "GET",
            "/settlements/consumer-x",
            SLOTS,
            token=tokens["consumer-x"],
            params={"from": str(NOVEMBER - SLOT)},
        )
        assert [row["slotStart"] for row in answer["slots"]] == [NOVEMBER - SLOT]
        assert answer["next"] is None

        for path, params, used, expected_status in (
            ("/settlements/consumer-x", {}, tokens["consumer-y"], 403),
            ("/settlements/consumer-x", {}, None, 401),
            ("/settlements/nobody-at-all", {}, tokens["consumer-x"], 404),
            ("/settlements/consumer-x", {"from": "-1"}, tokens["consumer-x"], 400),
            ("/settlements/consumer-x", {"from": "soon"}, tokens["consumer-x"], 400),
            ("/settlements/consumer-x", {"pageSize": "0"}, tokens["consumer-x"], 400),
            ("/settlements/consumer-x", {"pageSize": "2001"}, tokens["consumer-x"], 400),
            ("/settlements/x", {}, tokens["consumer-x"], 400),
        ):
            status, answer = await api.call("GET", path, SLOTS, token=used, params=params)
            assert status == expected_status, (path, params, answer)
