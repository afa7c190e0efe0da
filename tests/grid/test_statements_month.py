"""Issue 15's acceptance for statements: a month of slots settled by the real settlement
service gives final statements whose totals are the settled slots and the payments; a late
reading after finalising gives a credit note; the CSV and the PDF the participant downloads
carry the JSON's figures."""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from random import Random
from typing import TYPE_CHECKING, Any, Literal

from p2p_energy_protocol.trinary import int_to_trytes
from pypdf import PdfReader
from sqlalchemy import func, select, update

from grid_server.grid.billing import Account, PaymentRequests, account
from grid_server.grid.db.models import (
    FollowedChannel,
    IncomingPayment,
    Payout,
    Reading,
    Registration,
    Statement,
)
from grid_server.grid.return_channels import ReturnChannels
from grid_server.grid.settlement.service import SettlementService
from grid_server.grid.statements import AMOUNT_FIELDS, StatementService, _currency_figures
from grid_server.grid.statements_render import (
    AMOUNT_LABELS,
    BALANCE_LABELS,
    ENERGY_LABELS,
    FEE_NOTE,
)
from grid_server.grid.wallet import GridWallet

from .dbhelpers import add_reading, add_registration
from .fakes import FakeChannels, ManualClock
from .harness import running_api
from .test_billing import CONFIG as BILLING_CONFIG
from .test_billing import SEED, NoNode, payment_requests
from .test_statements import (
    CONFIG,
    CONSUMERS,
    DAY,
    DECEMBER,
    NOVEMBER,
    PRODUCERS,
    SLOT,
    _bills,
    _settle,
    _settled,
    month_of_slots,
)

if TYPE_CHECKING:
    from grid_server.grid.db.engine import Database

    from .harness import ApiHarness

DOCUMENT = "/statements/{registrationId}/{number}"


def _confirmed_in(db: Database, start: int, end: int) -> tuple[int, int]:
    """The payments the ledger confirmed and the payouts that reached producers in [start, end)."""
    with db.read() as session:
        payments = session.scalar(
            select(func.coalesce(func.sum(IncomingPayment.amount), 0)).where(
                IncomingPayment.status == "confirmed",
                IncomingPayment.confirmed_at >= start,
                IncomingPayment.confirmed_at < end,
            )
        )
        payouts = session.scalar(
            select(func.coalesce(func.sum(Payout.amount), 0)).where(
                Payout.status == "confirmed",
                Payout.updated_at >= start,
                Payout.updated_at < end,
            )
        )
    return int(payments or 0), int(payouts or 0)


async def _download(api: ApiHarness, document: dict[str, Any], token: str, kind: str) -> bytes:
    path = f"/statements/{document['registrationId']}/{document['number']}"
    async with api.session.get(
        api.url + path, params={"format": kind}, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200, await response.text()
        return await response.read()


def _pdf_lines(data: bytes) -> list[str]:
    reader = PdfReader(io.BytesIO(data))
    # One line per row, its cells separated by runs of spaces.
    text = "\n".join(page.extract_text() for page in reader.pages)
    return [" ".join(line.split()) for line in text.splitlines()]


async def _assert_downloads_match(api: ApiHarness, document: dict[str, Any], token: str) -> None:
    """The CSV's and the PDF's figures are the JSON document's, line by line."""
    status, answer = await api.call(
        "GET",
        f"/statements/{document['registrationId']}/{document['number']}",
        DOCUMENT,
        token=token,
    )
    assert (status, answer["statement"]) == (200, document)
    table = list(csv.reader(io.StringIO((await _download(api, document, token, "csv")).decode())))
    assert table[0] == ["section", "item", "value", "unit", "EUR", "note"]
    rows = {(row[0], row[1]): row[2:] for row in table[1:] if row[0] not in ("payment", "day")}
    expected: dict[tuple[str, str], list[str]] = {}
    for name, value in document["amounts"].items():
        in_eur = document["currency"]["amounts"][name]
        if (row := rows.get(("amount", AMOUNT_LABELS[name]))) is not None:
            note = FEE_NOTE if name == "fixedFee" and value else ""
            assert row == [str(value), "IOTA", in_eur, note], name
            expected[("amount", AMOUNT_LABELS[name])] = [str(value), f"{in_eur} EUR {note}".strip()]
        else:
            # A line left out of the document is one that does not apply to it.
            assert value == 0, name
    for name, value in document["balance"].items():
        in_eur = document["currency"]["balance"][name]
        assert rows[("balance", BALANCE_LABELS[name])] == [str(value), "IOTA", in_eur, ""]
        expected[("balance", BALANCE_LABELS[name])] = [str(value), f"{in_eur} EUR"]
    for name, kwh in document["energyKwh"].items():
        if (row := rows.get(("energy", ENERGY_LABELS[name]))) is not None:
            assert row[:2] == [kwh, "kWh"]
            expected[("energy", ENERGY_LABELS[name])] = [kwh, "kWh"]
        else:
            assert float(kwh) == 0, name
    payments = [row for row in table if row[0] == "payment"]
    assert [(int(row[2]), row[5]) for row in payments] == [
        (payment["amount"], f"bundle {payment['bundleHash']}") for payment in document["payments"]
    ]
    consumer = document["itemType"] == "consumer"
    days = [(row[1], int(row[2])) for row in table if row[0] == "day"]
    money = "charges" if consumer else "credits"
    assert days == [(day["date"], day[money]) for day in document["days"]]

    # The PDF prints each of those lines with its label, value and currency figure.
    lines = _pdf_lines(await _download(api, document, token, "pdf"))
    kind = "Statement" if document["kind"] == "statement" else "Credit note"
    assert lines[0].startswith(f"{kind} no. {document['number']} ({document['period']})")
    for (_, label), (value, extra) in expected.items():
        assert any(
            line.startswith(label) and f" {value} " in f"{line} " and extra in line
            for line in lines
        ), (label, value, extra)
    for date, amount in days:
        assert any(line.startswith(f"{date} {amount} IOTA") for line in lines), date


async def test_a_settled_month_gives_final_statements_that_add_up(db: Database) -> None:
    settings = {
        "currency": CONFIG.currency,
        "currency_per_million_iota": CONFIG.currency_per_million_iota,
        "statement_fee": CONFIG.statement_fee,
    }
    async with running_api(db, **settings) as api:
        tokens = {}
        for name in (*CONSUMERS, *PRODUCERS):
            kind: Literal["consumer", "producer"] = "consumer" if name in CONSUMERS else "producer"
            tokens[name] = (await api.client.register(name, name, kind)).token or ""
        with db.write() as session:
            # Registered (by the system clock) before the month, not today.
            session.execute(update(Registration).values(created_at=NOVEMBER - 3 * DAY))
        # November's 120 six-hour slots (and two days either side) settled by the real
        # settlement service from random readings; payments and payouts confirmed.
        clock = await month_of_slots(db, through=DECEMBER + DAY, register=False)
        clock.now = DECEMBER + 2 * DAY
        service = StatementService(db, CONFIG, clock)
        finals = await service.finalise("2026-11", None, by="test")

        assert [document["number"] for document in finals] == [1, 2, 3, 4]
        assert {document["kind"] for document in finals} == {"statement"}
        consumers = [d for d in finals if d["itemType"] == "consumer"]
        producers = [d for d in finals if d["itemType"] == "producer"]
        assert len(consumers) == len(CONSUMERS)
        assert len(producers) == len(PRODUCERS)

        def total(group: list[dict[str, Any]], section: str, name: str) -> int:
            return sum(int(document[section][name]) for document in group)

        settled = _settled(db, NOVEMBER, DECEMBER)
        payments, payouts = _confirmed_in(db, NOVEMBER, DECEMBER)
        assert settled["slots"] == 120
        assert payments > 0
        assert payouts > 0
        for document in finals:
            assert document["slots"] == settled["slots"]
        # Money: every settled IOTA of the month and every confirmed payment and payout.
        assert total(consumers, "amounts", "charges") == settled["consumer_charges"]
        assert total(producers, "amounts", "credits") == settled["producer_payouts"]
        assert total(consumers, "amounts", "paymentsReceived") == payments
        assert total(producers, "amounts", "payoutsSent") == payouts
        fees = total(finals, "amounts", "fixedFee")
        assert fees == CONFIG.statement_fee * len(consumers)
        assert total(finals, "balance", "opening") == 0
        assert total(finals, "balance", "closing") == (
            settled["consumer_charges"] + fees - payments - settled["producer_payouts"] + payouts
        )
        # The grid's income: the consumers' charges less the producers' payouts is the
        # import cost less the export revenue plus the grid's cut.
        imports = total(consumers, "amounts", "imports")
        exports = total(producers, "amounts", "exports")
        cut = total(producers, "amounts", "gridCut")
        rounding = len(finals) * 30  # the local/imported split is rounded once per day
        assert abs(cut - settled["grid_cut"]) <= rounding
        assert (
            abs(
                settled["consumer_charges"]
                - settled["producer_payouts"]
                - (imports - exports + cut)
            )
            <= 3 * rounding
        )
        # Energy: bought locally + imported is what was consumed; sold + exported produced.
        bought = total(consumers, "energy", "boughtLocallyMilliwh")
        imported = total(consumers, "energy", "importedMilliwh")
        sold = total(producers, "energy", "soldLocallyMilliwh")
        exported = total(producers, "energy", "exportedMilliwh")
        assert bought + imported == settled["consumed_milliwh"]
        assert sold + exported == settled["produced_milliwh"]
        for figure, name in ((bought, "local"), (sold, "local"), (imported, "imported")):
            assert abs(figure - settled[f"{name}_milliwh"]) <= rounding
        assert abs(exported - settled["exported_milliwh"]) <= rounding
        for document in finals:
            await _assert_downloads_match(api, document, tokens[document["registrationId"]])

        # A reading of 20 November read after finalising: billed in the next slot to settle
        # (a December one), it is November's, so November's statement gets a credit note.
        with db.write() as session:
            channel = session.scalars(
                select(FollowedChannel).where(FollowedChannel.registration_id == "consumer-y")
            ).one()
            session.add(
                Reading(
                    channel_id=channel.id,
                    registration_id="consumer-y",
                    kind="usage",
                    position=100_000,
                    message_root=int_to_trytes(100_000, 81),
                    start_time=NOVEMBER + 20 * DAY - SLOT,
                    end_time=NOVEMBER + 20 * DAY,
                    energy_milliwh=Random(15).randint(1, 5000) * 1000,
                    received_at=clock(),
                )
            )
        before, _ = _bills(db, "consumer-y", DECEMBER, DECEMBER + 3 * DAY)
        await _settle(db, clock)
        after, _ = _bills(db, "consumer-y", DECEMBER, DECEMBER + 3 * DAY)
        late_charge = after - before
        assert late_charge > 0
        y = next(d for d in finals if d["registrationId"] == "consumer-y")
        note = await service.credit_note(y["number"], "late reading", None, by="test")
        assert (note["kind"], note["number"], note["refersTo"]) == ("credit_note", 5, y["number"])
        assert note["amounts"]["charges"] == late_charge
        assert note["energy"]["adjustmentMilliwh"] > 0
        assert note["balance"] == {
            "opening": y["balance"]["closing"],
            "change": late_charge,
            "closing": y["balance"]["closing"] + late_charge,
        }
        assert sum(note["amounts"][name] for name in AMOUNT_FIELDS if name != "charges") == (
            note["amounts"]["localPurchases"] + note["amounts"]["imports"]
        )
        # The final statement is unchanged; the note is downloadable like it.
        assert await service.document(y["number"]) == y
        await _assert_downloads_match(api, note, tokens["consumer-y"])
        # The note corrects bills the consumer's account holds already; only the fee is
        # owed beyond them.
        with db.read() as session:
            assert account(session, "consumer-y").charged == CONFIG.statement_fee
        with db.read() as session:
            numbers = list(session.scalars(select(Statement.number).order_by(Statement.number)))
        assert numbers == [1, 2, 3, 4, 5]


def test_amounts_too_small_for_a_cent_print_as_zero() -> None:
    rate = CONFIG.currency_rate
    assert rate is not None
    figures = _currency_figures(rate, {"credits": 5, "charges": 40_000}, {"closing": -5})
    assert figures is not None
    assert figures["amounts"] == {"credits": "0.00", "charges": "0.01"}
    assert figures["balance"] == {"closing": "0.00"}


async def test_the_fixed_fee_is_collected_with_the_next_payment_request(db: Database) -> None:
    """A final statement's fee (and a hand-given credit note) is owed like a bill: the
    consumer's account and its next payment request include it; a preview charges nothing."""
    config = replace(BILLING_CONFIG, statement_fee=25, settlement_delay_seconds=60.0)
    slot = config.slot_ms
    clock = ManualClock(DECEMBER + 2 * slot)
    with ThreadPoolExecutor(1) as cpu:
        channels = ReturnChannels(db, FakeChannels(), cpu, clock)
        add_registration(db, "consumer-x", "consumer", None, now=NOVEMBER)
        prepared = await channels.prepare()
        with db.write() as session:
            channels.store(session, "consumer-x", prepared)
        wallet = GridWallet(db, NoNode(), SEED, clock, cpu)  # type: ignore[arg-type]
        requests = PaymentRequests(db, channels, wallet, clock)
        add_reading(db, "consumer-x", DECEMBER - slot, 1.5)
        add_reading(db, "consumer-x", DECEMBER, 0.5)
        await SettlementService(db, config, clock, "t").settle_due()
        assert await requests.publish_due() == 1
        # 2 kWh imported at 100 IOTA per kWh; November's preview shows the fee, owes it not.
        assert payment_requests(db)[-1].owed == 200
        service = StatementService(db, config, clock)
        preview = await service.preview("consumer-x", "2026-11")
        assert (preview["amounts"]["fixedFee"], preview["balance"]["closing"]) == (25, 225)
        with db.read() as session:
            assert account(session, "consumer-x") == Account(billed=200, owed=200)

        [november] = await service.finalise("2026-11", None, by="test")
        assert november["balance"]["closing"] == 225
        goodwill = await service.credit_note(november["number"], "goodwill", -10, by="test")
        assert goodwill["balance"]["closing"] == 215
        with db.read() as session:
            assert account(session, "consumer-x") == Account(billed=200, charged=15, owed=215)

        # December's first bill goes out with November's fee and credit note in "owed".
        add_reading(db, "consumer-x", DECEMBER + 3 * slot, 1.0)
        clock.now = DECEMBER + 5 * slot
        await SettlementService(db, config, clock, "t").settle_due()
        assert await requests.publish_due() == 1
        assert payment_requests(db)[-1].owed == 200 + 100 + 25 - 10


async def test_quarterly_and_yearly_statements_cover_their_months(db: Database) -> None:
    """statement_period quarter or year: one statement covers every slot of the months in
    it, the same charges as the monthly statements of those months together."""
    clock = await month_of_slots(db, through=DECEMBER + 2 * DAY)
    monthly = StatementService(db, CONFIG, clock)
    months = [await monthly.preview("consumer-x", label) for label in ("2026-10", "2026-11")]
    months.append(await monthly.preview("consumer-x", "2026-12"))
    charges, _ = _bills(db, "consumer-x", NOVEMBER - 2 * DAY, DECEMBER + 2 * DAY)
    assert sum(month["amounts"]["charges"] for month in months) == charges
    for length, label in (("quarter", "2026-Q4"), ("year", "2026")):
        service = StatementService(db, replace(CONFIG, statement_period=length), clock)
        document = await service.preview("consumer-x", None if length == "year" else label)
        assert document["period"] == label
        assert document["amounts"]["charges"] == charges
        assert document["slots"] == sum(month["slots"] for month in months)
        assert document["amounts"]["paymentsReceived"] == sum(
            month["amounts"]["paymentsReceived"] for month in months
        )
        # One fee per statement, whatever it covers.
        assert document["amounts"]["fixedFee"] == CONFIG.statement_fee
