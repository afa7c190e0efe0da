"""Initial schema of the grid database.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grid_settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_grid_settings")),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "registrations",
        sa.Column("registration_id", sa.String(length=128), nullable=False),
        sa.Column("item_name", sa.String(length=256), nullable=False),
        sa.Column("item_type", sa.String(length=16), nullable=False),
        sa.Column("root", sa.String(length=81), nullable=True),
        sa.Column("side_key", sa.String(length=81), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("removed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("registration_id", name=op.f("pk_registrations")),
    )
    op.create_table(
        "settlements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("slot_start", sa.BigInteger(), nullable=False),
        sa.Column("slot_end", sa.BigInteger(), nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=False),
        sa.Column("consensus_price_micro", sa.BigInteger(), nullable=True),
        sa.Column("import_price_micro", sa.BigInteger(), nullable=False),
        sa.Column("export_price_micro", sa.BigInteger(), nullable=False),
        sa.Column("grid_cut_ppm", sa.Integer(), nullable=False),
        sa.Column("produced_mwh", sa.BigInteger(), nullable=False),
        sa.Column("consumed_mwh", sa.BigInteger(), nullable=False),
        sa.Column("local_mwh", sa.BigInteger(), nullable=False),
        sa.Column("imported_mwh", sa.BigInteger(), nullable=False),
        sa.Column("exported_mwh", sa.BigInteger(), nullable=False),
        sa.Column("local_value", sa.BigInteger(), nullable=False),
        sa.Column("consumer_charges", sa.BigInteger(), nullable=False),
        sa.Column("producer_payouts", sa.BigInteger(), nullable=False),
        sa.Column("import_cost", sa.BigInteger(), nullable=False),
        sa.Column("export_revenue", sa.BigInteger(), nullable=False),
        sa.Column("grid_cut", sa.BigInteger(), nullable=False),
        sa.Column("readings_count", sa.Integer(), nullable=False),
        sa.Column("adjustment_readings", sa.Integer(), nullable=False),
        sa.Column("producers_count", sa.Integer(), nullable=False),
        sa.Column("consumers_count", sa.Integer(), nullable=False),
        sa.Column("energy_balanced", sa.Boolean(), nullable=False),
        sa.Column("money_balanced", sa.Boolean(), nullable=False),
        sa.Column("invariant_report", sa.Text(), nullable=False),
        sa.Column("settled_by", sa.String(length=128), nullable=False),
        sa.Column("settled_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlements")),
        sa.UniqueConstraint("slot_start", name=op.f("uq_settlements_slot_start")),
    )
    op.create_table(
        "wallet_transfers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bundle_hash", sa.String(length=81), nullable=False),
        sa.Column("trytes_json", sa.Text(), nullable=False),
        sa.Column("tails_json", sa.Text(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=True),
        sa.Column("confirmed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_transfers")),
        sa.UniqueConstraint("bundle_hash", name=op.f("uq_wallet_transfers_bundle_hash")),
    )
    with op.batch_alter_table("wallet_transfers", schema=None) as batch_op:
        batch_op.create_index("ix_wallet_transfers_status", ["status"], unique=False)

    op.create_table(
        "bills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("settlement_id", sa.Integer(), nullable=False),
        sa.Column("registration_id", sa.String(length=128), nullable=False),
        sa.Column("usage_mwh", sa.BigInteger(), nullable=False),
        sa.Column("adjustment_mwh", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.registration_id"],
            name=op.f("fk_bills_registration_id_registrations"),
        ),
        sa.ForeignKeyConstraint(
            ["settlement_id"], ["settlements.id"], name=op.f("fk_bills_settlement_id_settlements")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bills")),
        sa.UniqueConstraint(
            "settlement_id", "registration_id", name=op.f("uq_bills_settlement_id")
        ),
    )
    with op.batch_alter_table("bills", schema=None) as batch_op:
        batch_op.create_index("ix_bills_registration", ["registration_id"], unique=False)
        batch_op.create_index("ix_bills_unrequested", ["requested_at"], unique=False)

    op.create_table(
        "followed_channels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("registration_id", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("root", sa.String(length=81), nullable=False),
        sa.Column("side_key", sa.String(length=81), nullable=True),
        sa.Column("next_root", sa.String(length=81), nullable=False),
        sa.Column("next_position", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("closed_reason", sa.String(length=32), nullable=True),
        sa.Column("hello_seen", sa.Boolean(), nullable=False),
        sa.Column("skipped_messages", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_read_at", sa.BigInteger(), nullable=False),
        sa.Column("last_read_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.registration_id"],
            name=op.f("fk_followed_channels_registration_id_registrations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_followed_channels")),
    )
    with op.batch_alter_table("followed_channels", schema=None) as batch_op:
        batch_op.create_index(
            "ix_followed_channels_active", ["active", "next_read_at"], unique=False
        )
        batch_op.create_index(
            "ix_followed_channels_registration", ["registration_id"], unique=False
        )

    op.create_table(
        "grid_channels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("registration_id", sa.String(length=128), nullable=False),
        sa.Column("root", sa.String(length=81), nullable=False),
        sa.Column("side_key", sa.String(length=81), nullable=False),
        sa.Column("state_json", sa.Text(), nullable=False),
        sa.Column("next_position", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.registration_id"],
            name=op.f("fk_grid_channels_registration_id_registrations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_channels")),
    )
    with op.batch_alter_table("grid_channels", schema=None) as batch_op:
        batch_op.create_index("ix_grid_channels_registration", ["registration_id"], unique=False)

    op.create_table(
        "incoming_payments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("registration_id", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=81), nullable=False),
        sa.Column("bundle_hash", sa.String(length=81), nullable=False),
        sa.Column("current_index", sa.Integer(), nullable=False),
        sa.Column("transaction_hashes_json", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_seen_at", sa.BigInteger(), nullable=False),
        sa.Column("confirmed_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.registration_id"],
            name=op.f("fk_incoming_payments_registration_id_registrations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incoming_payments")),
        sa.UniqueConstraint(
            "bundle_hash", "current_index", name="uq_incoming_payments_bundle_index"
        ),
    )
    with op.batch_alter_table("incoming_payments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_incoming_payments_registration", ["registration_id", "status"], unique=False
        )

    op.create_table(
        "payouts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("settlement_id", sa.Integer(), nullable=False),
        sa.Column("registration_id", sa.String(length=128), nullable=False),
        sa.Column("energy_mwh", sa.BigInteger(), nullable=False),
        sa.Column("adjustment_mwh", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("destination", sa.String(length=256), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("transfer_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.registration_id"],
            name=op.f("fk_payouts_registration_id_registrations"),
        ),
        sa.ForeignKeyConstraint(
            ["settlement_id"], ["settlements.id"], name=op.f("fk_payouts_settlement_id_settlements")
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["wallet_transfers.id"],
            name=op.f("fk_payouts_transfer_id_wallet_transfers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint(
            "settlement_id", "registration_id", name=op.f("uq_payouts_settlement_id")
        ),
    )
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.create_index("ix_payouts_registration", ["registration_id"], unique=False)
        batch_op.create_index("ix_payouts_status", ["status"], unique=False)

    op.create_table(
        "storage_items",
        sa.Column("registration_id", sa.String(length=128), nullable=False),
        sa.Column("context", sa.String(length=128), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("value_json", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.registration_id"],
            name=op.f("fk_storage_items_registration_id_registrations"),
        ),
        sa.PrimaryKeyConstraint(
            "registration_id", "context", "item_id", name=op.f("pk_storage_items")
        ),
    )
    op.create_table(
        "wallet_addresses",
        sa.Column("key_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("address", sa.String(length=81), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("registration_id", sa.String(length=128), nullable=True),
        sa.Column("spent", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.registration_id"],
            name=op.f("fk_wallet_addresses_registration_id_registrations"),
        ),
        sa.PrimaryKeyConstraint("key_index", name=op.f("pk_wallet_addresses")),
        sa.UniqueConstraint("address", name=op.f("uq_wallet_addresses_address")),
    )
    with op.batch_alter_table("wallet_addresses", schema=None) as batch_op:
        batch_op.create_index("ix_wallet_addresses_registration", ["registration_id"], unique=False)

    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("root", sa.String(length=81), nullable=False),
        sa.Column("address", sa.String(length=81), nullable=False),
        sa.Column("next_root", sa.String(length=81), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("message_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["grid_channels.id"],
            name=op.f("fk_outbox_messages_channel_id_grid_channels"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_messages")),
        sa.UniqueConstraint("channel_id", "position", name=op.f("uq_outbox_messages_channel_id")),
    )
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_messages_unsent", ["sent_at", "id"], unique=False)

    op.create_table(
        "readings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("registration_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("message_root", sa.String(length=81), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=False),
        sa.Column("energy_mwh", sa.BigInteger(), nullable=False),
        sa.Column("price_micro", sa.BigInteger(), nullable=True),
        sa.Column("payment_id_or_address", sa.String(length=256), nullable=True),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("settlement_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["followed_channels.id"],
            name=op.f("fk_readings_channel_id_followed_channels"),
        ),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.registration_id"],
            name=op.f("fk_readings_registration_id_registrations"),
        ),
        sa.ForeignKeyConstraint(
            ["settlement_id"],
            ["settlements.id"],
            name=op.f("fk_readings_settlement_id_settlements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readings")),
        sa.UniqueConstraint("channel_id", "message_root", name="uq_readings_channel_root"),
        sa.UniqueConstraint("channel_id", "position", name=op.f("uq_readings_channel_id")),
    )
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_readings_registration", ["registration_id", "end_time"], unique=False
        )
        batch_op.create_index("ix_readings_unsettled", ["settlement_id", "end_time"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index("ix_readings_unsettled")
        batch_op.drop_index("ix_readings_registration")

    op.drop_table("readings")
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_messages_unsent")

    op.drop_table("outbox_messages")
    with op.batch_alter_table("wallet_addresses", schema=None) as batch_op:
        batch_op.drop_index("ix_wallet_addresses_registration")

    op.drop_table("wallet_addresses")
    op.drop_table("storage_items")
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_index("ix_payouts_status")
        batch_op.drop_index("ix_payouts_registration")

    op.drop_table("payouts")
    with op.batch_alter_table("incoming_payments", schema=None) as batch_op:
        batch_op.drop_index("ix_incoming_payments_registration")

    op.drop_table("incoming_payments")
    with op.batch_alter_table("grid_channels", schema=None) as batch_op:
        batch_op.drop_index("ix_grid_channels_registration")

    op.drop_table("grid_channels")
    with op.batch_alter_table("followed_channels", schema=None) as batch_op:
        batch_op.drop_index("ix_followed_channels_registration")
        batch_op.drop_index("ix_followed_channels_active")

    op.drop_table("followed_channels")
    with op.batch_alter_table("bills", schema=None) as batch_op:
        batch_op.drop_index("ix_bills_unrequested")
        batch_op.drop_index("ix_bills_registration")

    op.drop_table("bills")
    with op.batch_alter_table("wallet_transfers", schema=None) as batch_op:
        batch_op.drop_index("ix_wallet_transfers_status")

    op.drop_table("wallet_transfers")
    op.drop_table("settlements")
    op.drop_table("registrations")
    op.drop_table("leases")
    op.drop_table("grid_settings")
