"""A small, fully known market written straight into a grid database for portal tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from grid_server.grid.db.models import (
    Bill,
    FollowedChannel,
    IncomingPayment,
    Payout,
    Reading,
    Registration,
    Settlement,
    StorageItem,
    WalletTransfer,
)
from grid_server.grid.settlement.split import share_units

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

T0 = 1_790_000_000_000  # a slot boundary (ms)
SLOT = 60_000
KWH = 1_000_000  # mWh per kWh
MICRO = 1_000_000
BUNDLE = "B" * 80 + "9"
ADDRESS = "C" * 80 + "9"
TAIL = "D" * 81


@dataclass(frozen=True)
class Expected:
    """Totals of the seeded market, worked out by hand from the rows below."""

    producers: int = 2
    consumers: int = 3
    removed_consumers: int = 1
    produced_kwh: float = 12.0
    consumed_kwh: float = 9.0
    billed: int = 300
    received: int = 120
    pending_incoming: int = 50
    dropped_incoming: int = 40
    earned: int = 250
    paid_out: int = 130  # confirmed 100 + recorded (off-Tangle) 30
    pending_payouts: int = 120
    import_cost: int = 40
    export_revenue: int = 25
    grid_cut: int = 35
    settlements: int = 3
    failed: int = 1


def _root(number: int) -> str:
    """A distinct 81-tryte root per reading."""
    alphabet = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    digits = ""
    while number:
        number, digit = divmod(number, 27)
        digits = alphabet[digit] + digits
    return digits.rjust(81, "M")


def _registration(rid: str, name: str, kind: str, *, active: bool = True) -> Registration:
    return Registration(
        registration_id=rid,
        item_name=name,
        item_type=kind,
        root="R" * 81,
        side_key="S" * 81,
        token_hash=None,
        active=active,
        created_at=T0 - 3_600_000,
        updated_at=T0 - 3_600_000,
        removed_at=None if active else T0,
    )


def _settlement(
    index: int, *, balanced: bool, charges: int, payouts: int, **money: int
) -> Settlement:
    return Settlement(
        id=index + 1,
        slot_start=T0 + index * SLOT,
        slot_end=T0 + (index + 1) * SLOT,
        strategy="weighted-mean",
        consensus_price_micro=(20 + index * 5) * MICRO,
        import_price_micro=100 * MICRO,
        export_price_micro=20 * MICRO,
        grid_cut_ppm=100_000,
        produced_milliwh=4 * KWH,
        consumed_milliwh=3 * KWH,
        local_milliwh=3 * KWH,
        imported_milliwh=0,
        exported_milliwh=1 * KWH,
        local_value=charges,
        consumer_charges=charges,
        producer_payouts=payouts,
        import_cost=money.get("import_cost", 0),
        export_revenue=money.get("export_revenue", 0),
        grid_cut=money.get("grid_cut", 0),
        readings_count=4,
        adjustment_readings=0,
        producers_count=2,
        consumers_count=2,
        energy_balanced=True,
        money_balanced=balanced,
        invariant_report=json.dumps(
            {"energy": "4 kWh in = 4 kWh out", "money": "ok" if balanced else "off by 3"}
        ),
        settled_by="test",
        settled_at=T0 + (index + 1) * SLOT + 5_000,
    )


def seed_market(session: Session) -> Expected:
    """Write the market; returns what the portal must report about it."""
    session.add_all(
        [
            _registration("producer-sunny-acres", "Sunny Acres", "producer"),
            _registration("producer-windy-hill", "Windy Hill", "producer"),
            _registration("consumer-maple-01", "Maple Street 1", "consumer"),
            _registration("consumer-maple-02", "Maple Street 2 <b>bold</b>", "consumer"),
            _registration("consumer-oak-100%", "Oak_Lane", "consumer"),
            _registration("consumer-gone-999", "Moved Away", "consumer", active=False),
        ]
    )
    session.flush()
    channels = {}
    for index, (rid, role) in enumerate(
        [
            ("producer-sunny-acres", "producer"),
            ("producer-windy-hill", "producer"),
            ("consumer-maple-01", "consumer"),
            ("consumer-maple-02", "consumer"),
        ],
        start=1,
    ):
        channel = FollowedChannel(
            id=index,
            registration_id=rid,
            role=role,
            mode="restricted",
            root="R" * 81,
            side_key="S" * 81,
            next_root="N" * 81,
            next_position=4,
            active=True,
            closed_reason=None,
            hello_seen=True,
            skipped_messages=1 if index == 1 else 0,
            last_error=None,
            next_read_at=0,
            last_read_at=T0 + 3 * SLOT,
            created_at=T0 - 3_600_000,
        )
        channels[rid] = channel
        session.add(channel)
    session.add_all(
        [
            _settlement(0, balanced=True, charges=100, payouts=80, grid_cut=10, export_revenue=10),
            _settlement(1, balanced=True, charges=100, payouts=90, grid_cut=12, import_cost=20),
            _settlement(
                2,
                balanced=False,
                charges=100,
                payouts=80,
                grid_cut=13,
                import_cost=20,
                export_revenue=15,
            ),
        ]
    )
    session.flush()
    position = 0
    # Producers: Sunny Acres 3 × 2 kWh, Windy Hill 3 × 2 kWh -> 12 kWh in all.
    # Consumers: Maple 1 3 × 2 kWh, Maple 2 3 × 1 kWh -> 9 kWh in all.
    for slot in range(3):
        for rid, kind, energy, price in (
            ("producer-sunny-acres", "output", 2 * KWH, 25 * MICRO),
            ("producer-windy-hill", "output", 2 * KWH, 30 * MICRO),
            ("consumer-maple-01", "usage", 2 * KWH, None),
            ("consumer-maple-02", "usage", 1 * KWH, None),
        ):
            position += 1
            session.add(
                Reading(
                    channel_id=channels[rid].id,
                    registration_id=rid,
                    kind=kind,
                    position=slot + 1,
                    message_root=_root(position),
                    start_time=T0 + slot * SLOT,
                    end_time=T0 + (slot + 1) * SLOT,
                    energy_milliwh=energy,
                    price_micro=price,
                    payment_id_or_address=ADDRESS if kind == "output" else None,
                    received_at=T0 + (slot + 1) * SLOT + 1_000,
                    settlement_id=slot + 1,
                )
            )
    # Bills: Maple 1 pays 60 per slot (180), Maple 2 40 per slot (120): 300 billed.
    for slot in range(3):
        session.add(
            Bill(
                settlement_id=slot + 1,
                registration_id="consumer-maple-01",
                usage_milliwh=2 * KWH,
                adjustment_milliwh=0,
                amount=60,
                requested_at=T0 + (slot + 1) * SLOT,
            )
        )
        session.add(
            Bill(
                settlement_id=slot + 1,
                registration_id="consumer-maple-02",
                usage_milliwh=1 * KWH,
                adjustment_milliwh=0,
                amount=40,
                requested_at=None if slot == 2 else T0,
            )
        )
    transfer = WalletTransfer(
        id=1,
        bundle_hash=BUNDLE,
        trytes_json="[]",
        tails_json=json.dumps([TAIL]),
        total=100,
        status="confirmed",
        attempts=1,
        last_error=None,
        created_at=T0,
        sent_at=T0,
        confirmed_at=T0,
    )
    session.add(transfer)
    session.flush()
    # Payouts: 250 earned; confirmed 100 + recorded 30 paid; 120 pending/in transfer.
    session.add_all(
        [
            Payout(
                settlement_id=1,
                registration_id="producer-sunny-acres",
                energy_milliwh=2 * KWH,
                adjustment_milliwh=0,
                amount=100,
                destination=ADDRESS,
                method="tangle",
                status="confirmed",
                transfer_id=1,
                updated_at=T0,
            ),
            Payout(
                settlement_id=1,
                registration_id="producer-windy-hill",
                energy_milliwh=2 * KWH,
                adjustment_milliwh=0,
                amount=30,
                destination="INVOICE-42",
                method="off_tangle",
                status="recorded",
                transfer_id=None,
                updated_at=T0,
            ),
            Payout(
                settlement_id=2,
                registration_id="producer-sunny-acres",
                energy_milliwh=2 * KWH,
                adjustment_milliwh=0,
                amount=70,
                destination=ADDRESS,
                method="tangle",
                status="in_transfer",
                transfer_id=None,
                updated_at=T0,
            ),
            Payout(
                settlement_id=3,
                registration_id="producer-windy-hill",
                energy_milliwh=2 * KWH,
                adjustment_milliwh=0,
                amount=50,
                destination=ADDRESS,
                method="tangle",
                status="pending",
                transfer_id=None,
                updated_at=T0,
            ),
        ]
    )
    # Incoming: Maple 1 paid 120 (confirmed) and 50 is pending; Maple 2's 40 was dropped.
    session.add_all(
        [
            IncomingPayment(
                registration_id="consumer-maple-01",
                address=ADDRESS,
                bundle_hash=BUNDLE,
                current_index=0,
                transaction_hashes_json=json.dumps([TAIL]),
                amount=120,
                status="confirmed",
                first_seen_at=T0,
                confirmed_at=T0 + 1_000,
            ),
            IncomingPayment(
                registration_id="consumer-maple-01",
                address=ADDRESS,
                bundle_hash="E" * 81,
                current_index=0,
                transaction_hashes_json="[]",
                amount=50,
                status="pending",
                first_seen_at=T0 + 2_000,
                confirmed_at=None,
            ),
            # Maple 2 "paid" 40 with a bundle that could never confirm.
            IncomingPayment(
                registration_id="consumer-maple-02",
                address=ADDRESS,
                bundle_hash="F" * 81,
                current_index=0,
                transaction_hashes_json="[]",
                amount=40,
                status="dropped",
                first_seen_at=T0 + 3_000,
                confirmed_at=None,
                problem="tails are not consistent (would lead to an inconsistent ledger state)",
                unconfirmable_since=T0 + 3_000,
                dropped_at=T0 + 303_000,
            ),
        ]
    )
    for number, kind in ((1, "solar"), (2, "solar"), (3, "wind")):
        session.add(
            StorageItem(
                registration_id="producer-sunny-acres",
                context="sources",
                item_id=f"source-{number:02d}",
                value_json=json.dumps({"itemName": f"Roof array {number}", "itemType": kind}),
                size=40,
                updated_at=T0,
            )
        )
    session.add(
        StorageItem(
            registration_id="producer-sunny-acres",
            context="other",
            item_id="x",
            value_json="{}",
            size=2,
            updated_at=T0,
        )
    )
    session.flush()
    _record_local_parts(session)
    return Expected()


def _record_local_parts(session: Session) -> None:
    """The local part of each seeded bill and payout, as a uniform (weighted-mean)
    settlement records it: the slot's blended split."""
    settlements = {row.id: row for row in session.scalars(select(Settlement))}
    for bill in session.scalars(select(Bill)):
        slot = settlements[bill.settlement_id]
        bill.local_energy_share = share_units(
            bill.usage_milliwh * slot.local_milliwh, slot.consumed_milliwh
        )
        bill.local_amount_share = share_units(bill.amount * slot.local_value, slot.consumer_charges)
    for payout in session.scalars(select(Payout)):
        slot = settlements[payout.settlement_id]
        payout.local_energy_share = share_units(
            payout.energy_milliwh * slot.local_milliwh, slot.produced_milliwh
        )
        payout.local_amount_share = share_units(
            payout.amount * (slot.local_value - slot.grid_cut), slot.producer_payouts
        )
        payout.grid_cut_share = share_units(
            slot.grid_cut * payout.energy_milliwh, slot.produced_milliwh
        )
