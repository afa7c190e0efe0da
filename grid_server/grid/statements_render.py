"""A statement document as CSV and as PDF (fpdf2), with the same figures as its JSON."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from .statements import AMOUNT_FIELDS, CREDIT_NOTE, PREVIEW, kwh_text

AMOUNT_LABELS: Final = {
    "localPurchases": "Energy bought locally",
    "imports": "Energy imported from the main grid",
    "charges": "Charges (bills)",
    "localSalesGross": "Energy sold locally",
    "gridCut": "The grid's cut",
    "localSalesNet": "Local sales after the grid's cut",
    "exports": "Energy exported to the main grid",
    "credits": "Credits (payouts due)",
    "fixedFee": "Fixed fee",
    "paymentsReceived": "Payments received (confirmed)",
    "payoutsSent": "Payouts sent (confirmed)",
}
ENERGY_LABELS: Final = {
    "boughtLocally": "Bought locally",
    "imported": "Imported",
    "soldLocally": "Sold locally",
    "exported": "Exported",
    "adjustment": "Of which late readings (adjustments)",
}
PRICE_LABELS: Final = {
    "averageLocalPrice": "Average local price",
    "importPrice": "Import price (retail)",
    "exportPrice": "Export price (feed-in)",
    "gridCutPercent": "The grid's cut",
}
BALANCE_LABELS: Final = {
    "opening": "Balance carried over",
    "change": "Change in this document",
    "closing": "Balance (owed to the grid; negative: owed to you)",
}
# How the fee reaches the grid (statements.account_charge): said where it is charged.
FEE_NOTE: Final = "collected with the next payment request"
_CONSUMER_AMOUNTS: Final = ("localPurchases", "imports", "charges", "fixedFee", "paymentsReceived")
_PRODUCER_AMOUNTS: Final = (
    "localSalesGross",
    "gridCut",
    "localSalesNet",
    "exports",
    "credits",
    "payoutsSent",
)


def title(document: dict[str, Any]) -> str:
    kind = document["kind"]
    if kind == PREVIEW:
        return f"Statement preview {document['period']}"
    name = "Credit note" if kind == CREDIT_NOTE else "Statement"
    text = f"{name} no. {document['number']} ({document['period']})"
    if document.get("refersTo") is not None:
        text += f", correcting statement no. {document['refersTo']}"
    return text


def filename(document: dict[str, Any], extension: str) -> str:
    kind = "credit-note" if document["kind"] == CREDIT_NOTE else "statement"
    number = document["number"] if document["number"] is not None else "preview"
    safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in document["registrationId"])
    return f"{kind}-{number}-{safe_id}-{document['period']}.{extension}"


def _amount_names(document: dict[str, Any]) -> tuple[str, ...]:
    if document["kind"] == CREDIT_NOTE:
        return AMOUNT_FIELDS
    return _CONSUMER_AMOUNTS if document["itemType"] == "consumer" else _PRODUCER_AMOUNTS


def _energy_names(document: dict[str, Any]) -> tuple[str, ...]:
    if document["kind"] == CREDIT_NOTE:
        return tuple(ENERGY_LABELS)
    if document["itemType"] == "consumer":
        return ("boughtLocally", "imported", "adjustment")
    return ("soldLocally", "exported", "adjustment")


def _currency(document: dict[str, Any], section: str, name: str) -> str:
    figures = document.get("currency")
    return "" if not figures else str(figures[section][name])


def _local_time(document: dict[str, Any], moment_ms: int) -> str:
    zone = ZoneInfo(document["timeZone"])
    return datetime.fromtimestamp(moment_ms / 1000, tz=zone).strftime("%Y-%m-%d %H:%M")


def _text(value: str) -> str:
    """Participant-given text, never read as a formula by a spreadsheet opening the CSV."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def rows(document: dict[str, Any]) -> list[list[str]]:
    """The document as table rows (section, item, value, unit, value in the currency,
    note): the CSV holds them, and the PDF prints the same figures."""
    currency = (document.get("currency") or {}).get("currency", "")
    table: list[list[str]] = [
        ["document", "title", title(document), "", "", ""],
        ["document", "participant", document["registrationId"], document["itemType"], "", ""],
        ["document", "name", document["itemName"], "", "", ""],
        ["document", "period", document["period"], document["timeZone"], "", ""],
        ["document", "from", _local_time(document, document["periodStart"]), "", "", ""],
        ["document", "until", _local_time(document, document["periodEnd"]), "", "", ""],
    ]
    if document.get("reason"):
        table.append(["document", "reason", document["reason"], "", "", ""])
    if document.get("currency"):
        rate = document["currency"]["currencyPerMillionIota"]
        table.append(["document", "rate", rate, f"{currency} per 1000000 IOTA", "", ""])
    for name in _energy_names(document):
        table.append(["energy", ENERGY_LABELS[name], document["energyKwh"][name], "kWh", "", ""])
    for name, value in document["prices"].items():
        if value is not None:
            unit = "%" if name == "gridCutPercent" else "IOTA/kWh"
            table.append(["price", PRICE_LABELS.get(name, name), str(value), unit, "", ""])
    for name in _amount_names(document):
        value = document["amounts"][name]
        table.append(
            [
                "amount",
                AMOUNT_LABELS[name],
                str(value),
                "IOTA",
                _currency(document, "amounts", name),
                FEE_NOTE if name == "fixedFee" and value and document["kind"] != PREVIEW else "",
            ]
        )
    for name, label in BALANCE_LABELS.items():
        table.append(
            [
                "balance",
                label,
                str(document["balance"][name]),
                "IOTA",
                _currency(document, "balance", name),
                "",
            ]
        )
    for payment in document["payments"]:
        table.append(
            [
                "payment",
                _local_time(document, payment["confirmedAt"]),
                str(payment["amount"]),
                "IOTA",
                "",
                f"bundle {payment['bundleHash']}",
            ]
        )
    consumer = document["itemType"] == "consumer"
    for day in document["days"]:
        energy = day["boughtLocallyMilliwh" if consumer else "soldLocallyMilliwh"]
        other = day["importedMilliwh" if consumer else "exportedMilliwh"]
        money = day["charges" if consumer else "credits"]
        table.append(
            [
                "day",
                day["date"],
                str(money),
                "IOTA",
                "",
                f"{kwh_text(energy)} kWh local, {kwh_text(other)} kWh "
                f"{'imported' if consumer else 'exported'}",
            ]
        )
    return table


def to_csv(document: dict[str, Any]) -> str:
    currency = (document.get("currency") or {}).get("currency") or "currency"
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\r\n")
    writer.writerow(["section", "item", "value", "unit", currency, "note"])
    for section, item, value, *rest in rows(document):
        # The document section holds the participant's own words (name, reason).
        writer.writerow([section, item, _text(value) if section == "document" else value, *rest])
    return output.getvalue()


def _latin1(text: str) -> str:
    """The PDF's built-in fonts cover Latin-1; other characters print as '?'."""
    return text.encode("latin-1", "replace").decode("latin-1")


def to_pdf(document: dict[str, Any]) -> bytes:
    """A one-document PDF: heading, energy, amounts, balance, payments, days."""
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(title(document)))
    pdf.set_creator("P2P Energy Grid")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=15)
    pdf.cell(0, 10, _latin1(title(document)), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=9)
    currency = (document.get("currency") or {}).get("currency", "")
    section = ""
    for row in rows(document):
        if row[0] != section:
            section = row[0]
            pdf.ln(2)
            pdf.set_font("Helvetica", style="B", size=10)
            pdf.cell(0, 6, section.capitalize(), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_font("Helvetica", size=9)
        item, value, unit, in_currency, note = row[1:]
        extra = f"{in_currency} {currency}  {note}" if in_currency else note
        pdf.cell(70, 5, _latin1(item))
        pdf.cell(45, 5, _latin1(value), align="R")
        pdf.cell(25, 5, _latin1(" " + unit))
        pdf.cell(0, 5, _latin1(extra[:60]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())
