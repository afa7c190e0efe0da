"""Statements from settled slots: the arithmetic, finalising, numbering, credit notes."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from random import Random
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from p2p_energy_protocol.trinary import int_to_trytes
from pypdf import PdfReader
from sqlalchemy import func, select, update

from grid_server.grid.config import GridConfig
from grid_server.grid.currency import CurrencyRate
from grid_server.grid.db.models import (
    Bill,
    FollowedChannel,
    IncomingPayment,
    Payout,
    Reading,
    Registration,
    Settlement,
    Statement,
)
from grid_server.grid.errors import RequestError
from grid_server.grid.settlement.service import SettlementService
from grid_server.grid.statements import StatementService, parse_period, period_containing
from grid_server.grid.statements_render import to_csv, to_pdf

from .dbhelpers import add_registration
from .fakes import ManualClock

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database

SLOT_SECONDS = 6 * 3600
SLOT = SLOT_SECONDS * 1000
NOVEMBER = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
DECEMBER = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)
JANUARY = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp() * 1000)
DAY = 86_400_000
ADDRESS = "A" * 81
CONFIG = replace(
    GridConfig(),
    slot_seconds=SLOT_SECONDS,
    import_price=100.0,
    export_price=20.0,
    grid_cut_percent=10.0,
    settlement_delay_seconds=60.0,
    currency="EUR",
    currency_per_million_iota=Decimal("0.25"),
    statement_fee=25,
)
CONSUMERS = ("consumer-x", "consumer-y")
PRODUCERS = ("producer-a", "producer-b")


def _readings(db: Database, slot_ends: range, rng: Random) -> None:
    """Every participant's reading of each slot, stored in one transaction."""
    with db.write() as session:
        channels = {
            channel.registration_id: channel for channel in session.scalars(select(FollowedChannel))
        }
        for name in (*PRODUCERS, *CONSUMERS):
            if name not in channels:
                channels[name] = FollowedChannel(
                    registration_id=name,
                    role="producer" if name in PRODUCERS else "consumer",
                    mode="restricted",
                    root="R" * 81,
                    side_key="S" * 81,
                    next_root="R" * 81,
                    created_at=0,
                )
                session.add(channels[name])
        session.flush()
        position = int(session.scalar(select(func.count()).select_from(Reading)) or 0)
        for end in slot_ends:
            for name in (*PRODUCERS, *CONSUMERS):
                producer = name in PRODUCERS
                position += 1
                session.add(
                    Reading(
                        channel_id=channels[name].id,
                        registration_id=name,
                        kind="output" if producer else "usage",
                        position=position,
                        message_root=int_to_trytes(position, 81),
                        start_time=end - SLOT,
                        end_time=end,
                        energy_milliwh=rng.randint(0, 4000 if producer else 5000) * 1000,
                        price_micro=rng.choice((40, 50, 55)) * 1_000_000 if producer else None,
                        received_at=end,
                    )
                )


async def _settle(db: Database, clock: ManualClock) -> None:
    service = SettlementService(db, CONFIG, clock, "test")
    while await service.settle_due():
        pass


async def month_of_slots(db: Database, *, through: int, register: bool = True) -> ManualClock:
    """Two days of October, November and two days of December, settled up to ``through``
    (a slot end); payments and a confirmed payout in November."""
    for name in (*PRODUCERS, *CONSUMERS) if register else ():
        add_registration(db, name, "producer" if name in PRODUCERS else "consumer", None)
    rng = Random(20261101)
    _readings(db, range(NOVEMBER - 2 * DAY + SLOT, through + 1, SLOT), rng)
    clock = ManualClock(through + 120_000)
    await _settle(db, clock)
    with db.write() as session:
        for number, (at, amount, status) in enumerate(
            (
                (NOVEMBER + 9 * DAY, 500, "confirmed"),
                (NOVEMBER + 12 * DAY, 70, "pending"),
                (NOVEMBER - DAY, 40, "confirmed"),
                (DECEMBER + DAY, 100, "confirmed"),
            )
        ):
            session.add(
                IncomingPayment(
                    registration_id="consumer-x",
                    address=ADDRESS,
                    bundle_hash=chr(ord("B") + number) * 81,
                    current_index=0,
                    transaction_hashes_json="[]",
                    amount=amount,
                    status=status,
                    first_seen_at=at,
                    confirmed_at=at if status == "confirmed" else None,
                )
            )
        # producer-a's payouts of the first ten November days reached it during them.
        session.execute(
            update(Payout)
            .where(
                Payout.registration_id == "producer-a",
                Payout.settlement_id.in_(
                    select(Settlement.id).where(
                        Settlement.slot_start >= NOVEMBER,
                        Settlement.slot_start < NOVEMBER + 10 * DAY,
                    )
                ),
            )
            .values(status="confirmed", updated_at=NOVEMBER + 10 * DAY)
        )
    return clock


def _settled(db: Database, start: int, end: int) -> dict[str, int]:
    with db.read() as session:
        row = session.execute(
            select(
                *(
                    func.sum(getattr(Settlement, name)).label(name)
                    for name in (
                        "consumer_charges",
                        "producer_payouts",
                        "grid_cut",
                        "consumed_milliwh",
                        "produced_milliwh",
                        "local_milliwh",
                        "imported_milliwh",
                        "exported_milliwh",
                    )
                ),
                func.count().label("slots"),
            ).where(Settlement.slot_start >= start, Settlement.slot_start < end)
        ).one()
    return {key: int(value) for key, value in row._mapping.items()}


def _bills(db: Database, registration_id: str, start: int, end: int) -> tuple[int, int]:
    with db.read() as session:
        amount, usage = session.execute(
            select(func.sum(Bill.amount), func.sum(Bill.usage_milliwh))
            .join(Settlement, Settlement.id == Bill.settlement_id)
            .where(
                Bill.registration_id == registration_id,
                Settlement.slot_start >= start,
                Settlement.slot_start < end,
            )
        ).one()
    return int(amount), int(usage)


async def test_a_month_of_slots_sums_to_the_settled_figures(db: Database) -> None:
    clock = await month_of_slots(db, through=DECEMBER + 2 * DAY)
    service = StatementService(db, CONFIG, clock)
    previews, total = await service.previews("2026-11")
    assert total == 4
    documents = {doc["registrationId"]: doc for doc in previews}
    page, _ = await service.previews("2026-11", page=1, page_size=3)
    assert [doc["registrationId"] for doc in page] == ["producer-b"]
    assert set(documents) == {*CONSUMERS, *PRODUCERS}
    settled = _settled(db, NOVEMBER, DECEMBER)
    assert settled["slots"] == 120  # 30 days of 6-hour slots; October's and December's apart
    consumers = [documents[name] for name in CONSUMERS]
    producers = [documents[name] for name in PRODUCERS]

    def total(group: list[dict[str, Any]], section: str, name: str) -> int:
        return sum(document[section][name] for document in group)

    # Money: every IOTA of the month's bills and payouts, to the unit.
    assert total(consumers, "amounts", "charges") == settled["consumer_charges"]
    assert total(producers, "amounts", "credits") == settled["producer_payouts"]
    # Energy: everything consumed was bought locally or imported; everything produced was
    # sold locally or exported.
    bought = total(consumers, "energy", "boughtLocallyMilliwh")
    assert bought + total(consumers, "energy", "importedMilliwh") == settled["consumed_milliwh"]
    sold = total(producers, "energy", "soldLocallyMilliwh")
    assert sold + total(producers, "energy", "exportedMilliwh") == settled["produced_milliwh"]
    # The proportional split is rounded once per participant and day.
    rounding = len(CONSUMERS) * 30
    assert abs(bought - settled["local_milliwh"]) <= rounding
    assert abs(sold - settled["local_milliwh"]) <= rounding
    assert abs(total(producers, "amounts", "gridCut") - settled["grid_cut"]) <= rounding

    for name in CONSUMERS:
        document = documents[name]
        charges, usage = _bills(db, name, NOVEMBER, DECEMBER)
        amounts = document["amounts"]
        assert amounts["charges"] == charges
        assert amounts["localPurchases"] + amounts["imports"] == charges
        energy = document["energy"]
        assert energy["boughtLocallyMilliwh"] + energy["importedMilliwh"] == usage
        assert document["slots"] == 120
        assert len(document["days"]) == 30
        assert sum(day["charges"] for day in document["days"]) == charges
        assert amounts["fixedFee"] == 25
        assert document["balance"]["opening"] == 0
        assert document["balance"]["change"] == (charges + 25 - amounts["paymentsReceived"])
    # Only consumer-x's payment confirmed in November counts (not the pending one, nor the
    # ones confirmed in October or December).
    assert documents["consumer-x"]["amounts"]["paymentsReceived"] == 500
    assert [p["amount"] for p in documents["consumer-x"]["payments"]] == [500]
    assert documents["consumer-y"]["amounts"]["paymentsReceived"] == 0
    for name in PRODUCERS:
        amounts = documents[name]["amounts"]
        assert amounts["localSalesGross"] - amounts["gridCut"] == amounts["localSalesNet"]
        assert amounts["localSalesNet"] + amounts["exports"] == amounts["credits"]
        assert amounts["fixedFee"] == 0
        change = documents[name]["balance"]["change"]
        assert change == amounts["payoutsSent"] - amounts["credits"]
    # producer-a was paid for its first ten days in November.
    with db.read() as session:
        paid = int(
            session.scalar(
                select(func.sum(Payout.amount)).where(
                    Payout.registration_id == "producer-a", Payout.status == "confirmed"
                )
            )
            or 0
        )
    assert documents["producer-a"]["amounts"]["payoutsSent"] == paid > 0
    # The currency figures are the IOTA figures at the configured rate.
    rate = CurrencyRate("EUR", Decimal("0.25"))
    x = documents["consumer-x"]
    assert x["currency"]["currency"] == "EUR"
    assert x["currency"]["amounts"]["charges"] == str(rate.amount(x["amounts"]["charges"]))
    assert x["currency"]["balance"]["closing"] == str(rate.amount(x["balance"]["closing"]))
    # A preview is recomputed at any time and stores nothing.
    assert await service.preview("consumer-x", "2026-11") == {**x, "computedAt": clock()}
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Statement)) == 0


async def test_final_statements_are_numbered_immutable_and_corrected_by_credit_notes(
    db: Database,
) -> None:
    # November's last slot is not settled yet when the statements are finalised.
    last_slot_end = DECEMBER
    clock = await month_of_slots(db, through=last_slot_end - SLOT)
    service = StatementService(db, CONFIG, clock)
    clock.now = DECEMBER + 60_000
    with pytest.raises(RequestError, match="not over") as refused:
        await service.finalise("2026-11", None, by="test")
    assert refused.value.status == 409

    clock.now = DECEMBER + DAY
    issued = await service.finalise("2026-11", None, by="test")
    assert [(d["number"], d["registrationId"]) for d in issued] == [
        (1, "consumer-x"),
        (2, "consumer-y"),
        (3, "producer-a"),
        (4, "producer-b"),
    ]
    assert {d["kind"] for d in issued} == {"statement"}
    for again in (None, "consumer-x"):
        with pytest.raises(RequestError, match="final already") as twice:
            await service.finalise("2026-11", again, by="test")
        assert twice.value.status == 409
    original = await service.document(1)
    assert original == issued[0]

    # The last slot settles late: the preview changes, the final statement does not.
    _readings(db, range(last_slot_end, last_slot_end + 1, SLOT), Random(5))
    await _settle(db, clock)
    late_charge, _ = _bills(db, "consumer-x", DECEMBER - SLOT, DECEMBER)
    preview = await service.preview("consumer-x", "2026-11")
    assert preview["amounts"]["charges"] == original["amounts"]["charges"] + late_charge
    assert await service.document(1) == original
    with db.read() as session:
        stored = session.scalar(select(Statement.document_json).where(Statement.number == 1))
    assert json.loads(stored or "") == original

    # The correction is a credit note for the difference, numbered next.
    note = await service.credit_note(1, "late slot", None, by="test")
    assert (note["kind"], note["number"], note["refersTo"]) == ("credit_note", 5, 1)
    assert note["amounts"]["charges"] == late_charge
    assert note["amounts"]["fixedFee"] == 0
    assert note["balance"]["change"] == late_charge
    assert note["balance"]["opening"] == original["balance"]["closing"]
    with pytest.raises(RequestError, match="Nothing changed") as nothing:
        await service.credit_note(1, "again", None, by="test")
    assert nothing.value.status == 409
    goodwill = await service.credit_note(1, "goodwill", -50, by="test")
    assert (goodwill["number"], goodwill["balance"]["change"]) == (6, -50)
    for number, reason, amount, status in (
        (5, "a note of a note", None, 409),
        (99, "missing", None, 404),
        (1, "  ", None, 400),
        (1, "x" * 501, None, 400),
        (1, "zero", 0, 400),
    ):
        with pytest.raises(RequestError) as error:
            await service.credit_note(number, reason, amount, by="test")
        assert error.value.status == status

    # December opens with November's closing balance and its corrections.
    with pytest.raises(RequestError, match="not over"):
        await service.finalise("2026-12", None, by="test")
    clock.now = JANUARY + DAY
    december = await service.preview("consumer-x", "2026-12")
    assert december["balance"]["opening"] == (original["balance"]["closing"] + late_charge - 50)
    december_statements = await service.finalise("2026-12", None, by="test")
    # The other three participants' last November slot settled late too: finalising December
    # corrects their November statements first (7-9), then issues December's (10-13).
    assert [d["number"] for d in december_statements] == [10, 11, 12, 13]
    with db.read() as session:
        notes = session.execute(
            select(Statement.number, Statement.registration_id)
            .where(Statement.kind == "credit_note", Statement.number > 6)
            .order_by(Statement.number)
        ).all()
    assert [tuple(row) for row in notes] == [
        (7, "consumer-y"),
        (8, "producer-a"),
        (9, "producer-b"),
    ]
    # A later period is final: November cannot be finalised for anybody now.
    with pytest.raises(RequestError, match="final already"):
        await service.finalise("2026-11", "consumer-x", by="test")
    with db.read() as session:
        numbers = list(session.scalars(select(Statement.number).order_by(Statement.number)))
    assert numbers == list(range(1, 14))
    listing = await service.list(registration_id="consumer-x")
    assert [item["number"] for item in listing["items"]] == [10, 6, 5, 1]
    assert listing["items"][0]["openingBalance"] == december["balance"]["opening"]


def test_periods_follow_the_configured_length_and_time_zone() -> None:
    utc = ZoneInfo("UTC")
    vienna = ZoneInfo("Europe/Vienna")
    assert parse_period("2026-11", "month", utc).start_ms == NOVEMBER
    assert parse_period("2026-12", "month", utc).end_ms == JANUARY
    assert parse_period("2026-Q4", "quarter", utc).end_ms == JANUARY
    assert parse_period("2026", "year", utc).end_ms == JANUARY
    # Vienna's November starts at 23:00 UTC on 31 October.
    assert parse_period("2026-11", "month", vienna).start_ms == NOVEMBER - 3_600_000
    assert period_containing(NOVEMBER - 1, "month", vienna).label == "2026-11"
    assert period_containing(NOVEMBER - 1, "quarter", utc).label == "2026-Q4"
    for label, length in (
        ("2026-13", "month"),
        ("2026-11", "quarter"),
        ("2026-Q5", "quarter"),
        ("26", "year"),
        ("1969", "year"),
        ("2026-1", "month"),
    ):
        with pytest.raises(RequestError, match="period") as error:
            parse_period(label, length, utc)  # type: ignore[arg-type]
        assert error.value.status == 400


async def test_downloads_never_hand_a_spreadsheet_a_formula(db: Database) -> None:
    """A participant's name is its own text: the CSV quotes it so no formula runs."""
    add_registration(db, "consumer-z", "consumer", None)
    with db.write() as session:
        session.execute(
            update(Registration)
            .where(Registration.registration_id == "consumer-z")
            .values(item_name='=HYPERLINK("http://example.invalid","pay here")')
        )
    service = StatementService(db, CONFIG, ManualClock(DECEMBER + DAY))
    document = await service.preview("consumer-z", "2026-11")
    table = list(csv.reader(io.StringIO(to_csv(document))))
    assert ["document", "name", "'" + document["itemName"], "", "", ""] in table
    assert ["balance", "Change in this document", "25", "IOTA", "0.00", ""] in table
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(to_pdf(document))).pages)
    assert "Statement preview 2026-11" in text
    assert '=HYPERLINK("http://example.invalid","pay here")' in text


async def test_a_late_reading_after_finalising_becomes_a_credit_note(db: Database) -> None:
    """A reading of November that arrives in December is billed in a December slot, but
    it is November's: November's statement gets a credit note, December's leaves it out."""
    clock = await month_of_slots(db, through=DECEMBER + DAY)
    clock.now = DECEMBER + 2 * DAY
    service = StatementService(db, CONFIG, clock)
    issued = await service.finalise("2026-11", None, by="test")
    november = issued[0]
    assert november["registrationId"] == "consumer-x"

    # 2.5 kWh of consumer-x's in the last slot of 5 November, read now: billed in the next
    # slot to settle.
    with db.write() as session:
        channel = session.scalars(
            select(FollowedChannel).where(FollowedChannel.registration_id == "consumer-x")
        ).one()
        session.add(
            Reading(
                channel_id=channel.id,
                registration_id="consumer-x",
                kind="usage",
                position=100_000,
                message_root=int_to_trytes(100_000, 81),
                start_time=NOVEMBER + 5 * DAY - SLOT,
                end_time=NOVEMBER + 5 * DAY,
                energy_milliwh=2_500_000,
                received_at=clock(),
            )
        )
    await _settle(db, clock)
    with db.read() as session:
        bill = session.execute(
            select(Bill.amount, Bill.adjustment_milliwh, Settlement.slot_start)
            .join(Settlement, Settlement.id == Bill.settlement_id)
            .where(Bill.registration_id == "consumer-x", Bill.adjustment_milliwh > 0)
        ).one()
    late_charge = bill.amount
    assert bill.slot_start >= DECEMBER  # billed in December
    assert (bill.adjustment_milliwh, late_charge) == (2_500_000, 250)  # imported at 100/kWh

    again = await service.preview("consumer-x", "2026-11")
    assert again["amounts"]["charges"] == november["amounts"]["charges"] + late_charge
    assert again["energy"]["adjustmentMilliwh"] == november["energy"]["adjustmentMilliwh"] + (
        2_500_000
    )
    day = next(line for line in again["days"] if line["date"] == "2026-11-05")
    assert day["adjustmentMilliwh"] >= 2_500_000  # on the reading's own day
    december_charges, _ = _bills(db, "consumer-x", DECEMBER, JANUARY)
    december = await service.preview("consumer-x", "2026-12")
    assert december["amounts"]["charges"] == december_charges - late_charge

    # Finalising December corrects November first, so December carries the correction.
    clock.now = JANUARY + DAY
    documents = await service.finalise("2026-12", None, by="test")
    with db.read() as session:
        note_json = session.scalar(
            select(Statement.document_json).where(Statement.kind == "credit_note")
        )
    note = json.loads(note_json or "")
    assert (note["number"], note["refersTo"], note["correction"]) == (5, 1, "recomputed")
    assert note["amounts"]["charges"] == late_charge
    assert note["energy"]["importedMilliwh"] == 2_500_000
    assert "finalising 2026-12" in note["reason"]
    assert [d["number"] for d in documents] == [6, 7, 8, 9]
    x = documents[0]
    assert x["balance"]["opening"] == november["balance"]["closing"] + late_charge
    # Every IOTA billed to consumer-x in the two months is on exactly one document.
    all_charges, _ = _bills(db, "consumer-x", NOVEMBER, JANUARY)
    on_documents = november["amounts"]["charges"] + note["amounts"]["charges"]
    assert on_documents + x["amounts"]["charges"] == all_charges


async def test_finalising_refuses_when_the_statements_changed_meanwhile(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finalising computes in a read and stores in a write that checks its assumptions."""
    clock = await month_of_slots(db, through=DECEMBER + DAY)
    clock.now = JANUARY + DAY
    service = StatementService(db, CONFIG, clock)
    await service.finalise("2026-11", "consumer-x", by="test")
    plan = service._finalise_plan

    def plan_then_correct(*args: Any) -> Any:
        planned = plan(*args)
        # Another operator's credit note lands between the computation and the write.
        with db.write() as session:
            original = session.scalars(select(Statement)).one()
            session.add(
                Statement(
                    **{
                        column: getattr(original, column)
                        for column in ("registration_id", "period", "period_start", "period_end")
                    },
                    number=2,
                    kind="credit_note",
                    statement_key=None,
                    refers_to=original.id,
                    opening_balance=0,
                    balance_change=-5,
                    closing_balance=-5,
                    document_json=original.document_json,
                    created_by="other",
                    created_at=clock(),
                )
            )
        return planned

    monkeypatch.setattr(service, "_finalise_plan", plan_then_correct)
    with pytest.raises(RequestError, match="changed while 2026-12") as refused:
        await service.finalise("2026-12", "consumer-x", by="test")
    assert refused.value.status == 409
    monkeypatch.undo()
    [december] = await service.finalise("2026-12", "consumer-x", by="test")
    # The stand-in note repeated the statement's figures: credit note 3 takes them back.
    assert december["number"] == 4
    with db.read() as session:
        numbers = list(session.scalars(select(Statement.number).order_by(Statement.number)))
    assert numbers == [1, 2, 3, 4]
