"""The grid's database schema (SQLAlchemy 2 declarative models).

Units are integers throughout so sums are exact on every database:
energy in milliwatt-hours (``*_milliwh``; 1 kWh = 1,000,000 mWh), prices in
micro-IOTA per kWh (``*_micro``), money in whole IOTA, times in Unix milliseconds.
The schema is created and upgraded only by the Alembic migrations in
``grid_server/grid/migrations``; keep both in step.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

HASH_LENGTH = 81
ID_LENGTH = 128

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Registration(Base):
    """A producer or consumer registered with the grid (kept after removal for history)."""

    __tablename__ = "registrations"

    registration_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    item_name: Mapped[str] = mapped_column(String(256))
    item_type: Mapped[str] = mapped_column(String(16))
    root: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    side_key: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    # SHA-256 (hex) of the token issued at registration; the token itself is never stored.
    token_hash: Mapped[str | None] = mapped_column(String(64))
    # A consumer's standing bid in micro-IOTA per kWh (None: no bid).
    max_price_micro: Mapped[int | None] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    removed_at: Mapped[int | None] = mapped_column(BigInteger)


class FollowedChannel(Base):
    """A registered entity's MAM channel the grid reads, with the position it reached."""

    __tablename__ = "followed_channels"
    __table_args__ = (
        Index("ix_followed_channels_active", "active", "next_read_at"),
        Index("ix_followed_channels_registration", "registration_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.registration_id"))
    role: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    root: Mapped[str] = mapped_column(String(HASH_LENGTH))
    side_key: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    # The root of the next message to read and its position (0 is the channel's hello).
    next_root: Mapped[str] = mapped_column(String(HASH_LENGTH))
    next_position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    closed_reason: Mapped[str | None] = mapped_column(String(32))
    hello_seen: Mapped[bool] = mapped_column(Boolean, default=False)
    skipped_messages: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_read_at: Mapped[int] = mapped_column(BigInteger, default=0)
    last_read_at: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Reading(Base):
    """One output or usage message read from a followed channel, stored exactly once."""

    __tablename__ = "readings"
    __table_args__ = (
        UniqueConstraint("channel_id", "position"),
        UniqueConstraint("channel_id", "message_root", name="uq_readings_channel_root"),
        Index("ix_readings_unsettled", "settlement_id", "end_time"),
        Index("ix_readings_registration", "registration_id", "end_time"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("followed_channels.id"))
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.registration_id"))
    kind: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer)
    message_root: Mapped[str] = mapped_column(String(HASH_LENGTH))
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int] = mapped_column(BigInteger)
    energy_milliwh: Mapped[int] = mapped_column(BigInteger)
    price_micro: Mapped[int | None] = mapped_column(BigInteger)
    # A usage's bid (maxPrice) in micro-IOTA per kWh; None: the registration's, if any.
    bid_micro: Mapped[int | None] = mapped_column(BigInteger)
    payment_id_or_address: Mapped[str | None] = mapped_column(String(256))
    received_at: Mapped[int] = mapped_column(BigInteger)
    settlement_id: Mapped[int | None] = mapped_column(ForeignKey("settlements.id"))


class GridChannel(Base):
    """A MAM channel the grid publishes to (a consumer's return channel)."""

    __tablename__ = "grid_channels"
    __table_args__ = (Index("ix_grid_channels_registration", "registration_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.registration_id"))
    root: Mapped[str] = mapped_column(String(HASH_LENGTH))
    side_key: Mapped[str] = mapped_column(String(HASH_LENGTH))
    # MamChannel.to_json(): seed and position, so publishing resumes after a restart.
    state_json: Mapped[str] = mapped_column(Text)
    next_position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class OutboxMessage(Base):
    """A message created on a grid channel; published (again) until ``sent_at`` is set."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        UniqueConstraint("channel_id", "position"),
        Index("ix_outbox_messages_unsent", "sent_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("grid_channels.id"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    root: Mapped[str] = mapped_column(String(HASH_LENGTH))
    address: Mapped[str] = mapped_column(String(HASH_LENGTH))
    next_root: Mapped[str] = mapped_column(String(HASH_LENGTH))
    payload: Mapped[str] = mapped_column(Text)
    message_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    sent_at: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class Settlement(Base):
    """One settled time slot with its totals and the invariants it was checked against."""

    __tablename__ = "settlements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slot_start: Mapped[int] = mapped_column(BigInteger, unique=True)
    slot_end: Mapped[int] = mapped_column(BigInteger)
    strategy: Mapped[str] = mapped_column(String(32))
    consensus_price_micro: Mapped[int | None] = mapped_column(BigInteger)
    import_price_micro: Mapped[int] = mapped_column(BigInteger)
    export_price_micro: Mapped[int] = mapped_column(BigInteger)
    grid_cut_ppm: Mapped[int] = mapped_column(Integer)
    produced_milliwh: Mapped[int] = mapped_column(BigInteger)
    consumed_milliwh: Mapped[int] = mapped_column(BigInteger)
    local_milliwh: Mapped[int] = mapped_column(BigInteger)
    imported_milliwh: Mapped[int] = mapped_column(BigInteger)
    exported_milliwh: Mapped[int] = mapped_column(BigInteger)
    local_value: Mapped[int] = mapped_column(BigInteger)
    consumer_charges: Mapped[int] = mapped_column(BigInteger)
    producer_payouts: Mapped[int] = mapped_column(BigInteger)
    import_cost: Mapped[int] = mapped_column(BigInteger)
    export_revenue: Mapped[int] = mapped_column(BigInteger)
    grid_cut: Mapped[int] = mapped_column(BigInteger)
    readings_count: Mapped[int] = mapped_column(Integer)
    adjustment_readings: Mapped[int] = mapped_column(Integer)
    producers_count: Mapped[int] = mapped_column(Integer)
    consumers_count: Mapped[int] = mapped_column(Integer)
    energy_balanced: Mapped[bool] = mapped_column(Boolean)
    money_balanced: Mapped[bool] = mapped_column(Boolean)
    invariant_report: Mapped[str] = mapped_column(Text)
    # What the slot was settled from (mechanism, parameters, tariff, each participant's
    # energy, ask or bid) as JSON, so `p2p-energy replay` recomputes it; None before 0006.
    inputs_json: Mapped[str | None] = mapped_column(Text)
    settled_by: Mapped[str] = mapped_column(String(128))
    settled_at: Mapped[int] = mapped_column(BigInteger)


class Bill(Base):
    """What a consumer is charged in one settlement."""

    __tablename__ = "bills"
    __table_args__ = (
        UniqueConstraint("settlement_id", "registration_id"),
        Index("ix_bills_registration", "registration_id"),
        Index("ix_bills_unrequested", "requested_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlements.id"))
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.registration_id"))
    usage_milliwh: Mapped[int] = mapped_column(BigInteger)
    adjustment_milliwh: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    # What the settlement matched locally for this consumer, in 1/SHARE_SCALE units: the
    # energy bought locally (mWh) and the part of ``amount`` it costs (IOTA); the rest of
    # the usage and the amount is imported.
    local_energy_share: Mapped[int] = mapped_column(BigInteger, server_default="0")
    local_amount_share: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # When the payment-request for this bill went into the consumer's return channel outbox.
    requested_at: Mapped[int | None] = mapped_column(BigInteger)


class WalletTransfer(Base):
    """An outgoing value bundle of the grid wallet, recorded (signed) before it is sent."""

    __tablename__ = "wallet_transfers"
    __table_args__ = (Index("ix_wallet_transfers_status", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bundle_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)
    # JSON list of the bundle's transaction trytes in attachToTangle order.
    trytes_json: Mapped[str] = mapped_column(Text)
    # JSON list of the tail transaction hashes of every attachment made so far.
    tails_json: Mapped[str] = mapped_column(Text, default="[]")
    total: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    sent_at: Mapped[int | None] = mapped_column(BigInteger)
    confirmed_at: Mapped[int | None] = mapped_column(BigInteger)


class Payout(Base):
    """A producer's share of one settlement and how it is (being) paid."""

    __tablename__ = "payouts"
    __table_args__ = (
        UniqueConstraint("settlement_id", "registration_id"),
        Index("ix_payouts_status", "status"),
        Index("ix_payouts_registration", "registration_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlements.id"))
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.registration_id"))
    energy_milliwh: Mapped[int] = mapped_column(BigInteger)
    adjustment_milliwh: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    # What the settlement matched locally for this producer, in 1/SHARE_SCALE units: the
    # energy sold locally (mWh), the part of ``amount`` it earns net of the grid's cut and
    # that cut (IOTA); the rest of the output and the amount is exported.
    local_energy_share: Mapped[int] = mapped_column(BigInteger, server_default="0")
    local_amount_share: Mapped[int] = mapped_column(BigInteger, server_default="0")
    grid_cut_share: Mapped[int] = mapped_column(BigInteger, server_default="0")
    destination: Mapped[str | None] = mapped_column(String(256))
    # "tangle": an IOTA transfer to ``destination``; "off_tangle": a reference paid elsewhere.
    method: Mapped[str] = mapped_column(String(16))
    # pending -> (tangle) in_transfer -> confirmed; off_tangle and zero amounts: recorded.
    status: Mapped[str] = mapped_column(String(16))
    transfer_id: Mapped[int | None] = mapped_column(ForeignKey("wallet_transfers.id"))
    updated_at: Mapped[int] = mapped_column(BigInteger)


class WalletAddress(Base):
    """An address of the grid wallet's seed; a spent address is never spent from again."""

    __tablename__ = "wallet_addresses"
    __table_args__ = (Index("ix_wallet_addresses_registration", "registration_id"),)

    key_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    address: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)
    # "treasury" (the wallet's own funds and remainders) or "consumer" (receives a bill).
    purpose: Mapped[str] = mapped_column(String(16))
    registration_id: Mapped[str | None] = mapped_column(ForeignKey("registrations.registration_id"))
    spent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)


class IncomingPayment(Base):
    """A value transaction to a consumer's payment address, matched to that consumer."""

    __tablename__ = "incoming_payments"
    __table_args__ = (
        UniqueConstraint("bundle_hash", "current_index", name="uq_incoming_payments_bundle_index"),
        Index("ix_incoming_payments_registration", "registration_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.registration_id"))
    address: Mapped[str] = mapped_column(String(HASH_LENGTH))
    bundle_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    current_index: Mapped[int] = mapped_column(Integer)
    # JSON list of the hashes of every attachment of this transaction seen so far.
    transaction_hashes_json: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    # pending (seen, not confirmed) -> confirmed (counts as paid) or dropped (it cannot
    # confirm: see ``problem``); a dropped payment the ledger confirms later is confirmed.
    status: Mapped[str] = mapped_column(String(16))
    first_seen_at: Mapped[int] = mapped_column(BigInteger)
    confirmed_at: Mapped[int | None] = mapped_column(BigInteger)
    # When the node was last asked whether it can still confirm.
    checked_at: Mapped[int | None] = mapped_column(BigInteger)
    # Why it cannot confirm (the node's answer), and since when it has not been able to.
    problem: Mapped[str | None] = mapped_column(Text)
    unconfirmable_since: Mapped[int | None] = mapped_column(BigInteger)
    dropped_at: Mapped[int | None] = mapped_column(BigInteger)


class StorageItem(Base):
    """A free-form JSON item of the storage API."""

    __tablename__ = "storage_items"

    registration_id: Mapped[str] = mapped_column(
        ForeignKey("registrations.registration_id"), primary_key=True
    )
    context: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    value_json: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class Lease(Base):
    """A named lease held by one grid process (the leader runs settlement and payouts)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[int] = mapped_column(BigInteger)


class GridSetting(Base):
    """Values the grid creates once and keeps (e.g. a generated wallet seed).

    Shared by every grid process of one database, so they agree on them.
    """

    __tablename__ = "grid_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)


class PortalSession(Base):
    """An operator's sign-in to the portal; revoked by signing out or a new password.

    Only a hash of the cookie's token is kept, so a copy of the database opens nothing.
    """

    __tablename__ = "portal_sessions"
    __table_args__ = (Index("ix_portal_sessions_expires", "expires_at"),)

    # SHA-256 (hex) of the session cookie's random token.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # HMAC of the password hash it was opened with: another password ends the session.
    password_fingerprint: Mapped[str] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class Statement(Base):
    """A final statement or credit note: numbered once, never changed afterwards.

    Previews are computed on demand and not stored. ``document_json`` is the document
    exactly as issued (what the API, the CSV and the PDF show). Balances are IOTA the
    participant owes the grid (negative: the grid owes the participant).
    """

    __tablename__ = "statements"
    __table_args__ = (
        Index("ix_statements_registration", "registration_id", "period_start"),
        # Covers the accounts' sum of account_charge without reading the (large) documents.
        Index("ix_statements_account_charge", "registration_id", "account_charge"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Sequential per grid (statements and credit notes share the sequence), no gaps.
    number: Mapped[int] = mapped_column(Integer, unique=True)
    # "statement" or "credit_note".
    kind: Mapped[str] = mapped_column(String(16))
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.registration_id"))
    period: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[int] = mapped_column(BigInteger)
    period_end: Mapped[int] = mapped_column(BigInteger)
    # "<registration id>/<period>" for a statement, so one period has one final statement;
    # None for credit notes (there may be several).
    statement_key: Mapped[str | None] = mapped_column(String(ID_LENGTH + 32), unique=True)
    # The statement a credit note corrects.
    refers_to: Mapped[int | None] = mapped_column(ForeignKey("statements.id"))
    opening_balance: Mapped[int] = mapped_column(BigInteger)
    balance_change: Mapped[int] = mapped_column(BigInteger)
    closing_balance: Mapped[int] = mapped_column(BigInteger)
    # IOTA owed beyond the consumer's bills (its fixed fee, a hand-given correction):
    # the consumer's account (``billing.accounts``) and so its payment requests include it.
    account_charge: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    document_json: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)


class ExpectedOutputAnnouncement(Base):
    """A producer's announced output for coming periods (the price forecast's input).

    Stored exactly once per message, like its reading; ``outputs_json`` holds the
    announced mWh per step. Indicative only: nothing is billed from it.
    """

    __tablename__ = "expected_outputs"
    __table_args__ = (
        UniqueConstraint("channel_id", "position"),
        Index("ix_expected_outputs_end", "end_time"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("followed_channels.id"))
    position: Mapped[int] = mapped_column(Integer)
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.registration_id"))
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int] = mapped_column(BigInteger)
    step_ms: Mapped[int] = mapped_column(BigInteger)
    outputs_json: Mapped[str] = mapped_column(Text)
    received_at: Mapped[int] = mapped_column(BigInteger)
