"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import json
from dataclasses import replace
from random import Random
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from grid_server.grid.config import GridConfig
from grid_server.grid.db.engine import MIGRATIONS, Database, DatabaseError, parse_database_url
from grid_server.grid.db.models import Base, IncomingPayment
from grid_server.grid.settlement.service import SettlementService
from grid_server.grid.statements import StatementService

from .conftest import create_postgres_database, drop_postgres_database
from .fakes import ManualClock
from .test_statement_split import CONSUMERS, DAY_START, PRODUCERS, SLOT, SLOTS, random_slots

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


HEAD = "0009"


def test_migrated_schema_matches_the_models(db: Database) -> None:
    assert db.schema_revision() == Database.head_revision() == HEAD
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    # Migrating again changes nothing.
    db.migrate()
    assert db.schema_revision() == HEAD


def test_database_urls() -> None:
    assert parse_database_url("postgresql://u@h/d").drivername == "postgresql+psycopg"
    assert parse_database_url("sqlite:///x.db").get_backend_name() == "sqlite"
    with pytest.raises(DatabaseError, match="unsupported database 'mysql'"):
        parse_database_url("mysql://u@h/d")
    with pytest.raises(DatabaseError, match="not a database URL"):
        parse_database_url("nonsense")
    with pytest.raises(DatabaseError, match="must be a file"):
        Database("sqlite://")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'grid.sqlite3'}"
        return
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


def _migrate(db: Database, revision: str, *, downgrade: bool = False) -> None:
    with db.engine.begin() as connection:
        if downgrade:
            MIGRATIONS.downgrade(connection, revision)
        else:
            MIGRATIONS.upgrade(connection, revision)


def test_energy_columns_renamed_to_milliwh_keep_their_values(empty_database_url: str) -> None:
    db = Database(empty_database_url, threads=1)
    try:
        _migrate(db, "0001")
        settlements = sa.Table("settlements", sa.MetaData(), autoload_with=db.engine)
        row: dict[str, object] = {
            column.name: 0 for column in settlements.columns if column.name != "id"
        }
        report = {"energyInMwh": 7, "energyOutMwh": 7, "usageTotalMwh": 5, "outputTotalMwh": 2}
        row.update(
            slot_start=0,
            slot_end=900_000,
            strategy="mean",
            produced_mwh=2_000_000,
            consumed_mwh=5_000_000,
            energy_balanced=True,
            money_balanced=True,
            invariant_report=json.dumps(report),
            settled_by="test",
        )
        with db.engine.begin() as connection:
            connection.execute(settlements.insert(), row)

        db.migrate()

        with db.read() as session:
            stored = session.execute(
                sa.text(
                    "SELECT produced_milliwh, consumed_milliwh, invariant_report FROM settlements"
                )
            ).one()
        assert stored[:2] == (2_000_000, 5_000_000)
        assert json.loads(stored[2]) == {
            "energyInMilliwh": 7,
            "energyOutMilliwh": 7,
            "usageTotalMilliwh": 5,
            "outputTotalMilliwh": 2,
        }
        # The migrated database is the one the models describe.
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []

        _migrate(db, "0001", downgrade=True)
        with db.read() as session:
            stored = session.execute(
                sa.text("SELECT produced_mwh, invariant_report FROM settlements")
            ).one()
        assert stored[0] == 2_000_000
        assert json.loads(stored[1]) == report
    finally:
        db.close()


def test_payments_seen_before_verification_stay_pending_and_unpaid(
    empty_database_url: str,
) -> None:
    """0003: payments recorded before the grid checked whether they can confirm keep their
    state; nothing marks them paid."""
    db = Database(empty_database_url, threads=1)
    try:
        _migrate(db, "0002")
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO registrations (registration_id, item_name, item_type, active,"
                    " created_at, updated_at) VALUES ('c1', 'Flat', 'consumer', true, 1, 1)"
                )
            )
            connection.execute(
                sa.text(
                    "INSERT INTO incoming_payments (registration_id, address, bundle_hash,"
                    " current_index, transaction_hashes_json, amount, status, first_seen_at)"
                    " VALUES ('c1', :a, :b, 0, '[]', 42, 'pending', 5)"
                ),
                {"a": "A" * 81, "b": "B" * 81},
            )
        db.migrate()
        assert db.schema_revision() == HEAD
        with db.read() as session:
            payment = session.scalars(sa.select(IncomingPayment)).one()
            assert (payment.amount, payment.status, payment.problem, payment.dropped_at) == (
                42,
                "pending",
                None,
                None,
            )
        _migrate(db, "0002", downgrade=True)
        with db.read() as session:
            assert session.execute(sa.text("SELECT amount FROM incoming_payments")).all() == [(42,)]
    finally:
        db.close()


async def test_statements_table_joins_an_existing_database(empty_database_url: str) -> None:
    """0005: a grid with settled history gains the statements table; its history can be
    finalised at once."""
    db = Database(empty_database_url, threads=1)
    try:
        _migrate(db, "0004")
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO registrations (registration_id, item_name, item_type, active,"
                    " created_at, updated_at) VALUES ('consumer-1', 'Flat', 'consumer', true,"
                    " 0, 0)"
                )
            )
        db.migrate()
        assert db.schema_revision() == HEAD
        # 2026-11-01T00:00:00Z .. one day later; finalised in January.
        november = 1_793_491_200_000
        service = StatementService(db, GridConfig(), lambda: november + 62 * 86_400_000)
        [statement] = await service.finalise("2026-11", None, by="test")
        assert (statement["number"], statement["balance"]["closing"]) == (1, 0)
        _migrate(db, "0004", downgrade=True)
        assert "statements" not in sa.inspect(db.engine).get_table_names()
    finally:
        db.close()


async def test_final_statements_issued_before_0006_charge_their_fee(
    empty_database_url: str,
) -> None:
    """0006: a consumer's fee and hand-given credit notes issued before the revision are
    owed from then on; a producer's statement and a recomputed note charge nothing."""
    db = Database(empty_database_url, threads=1)
    try:
        _migrate(db, "0005")
        documents = [
            (1, "statement", None, {"itemType": "consumer", "amounts": {"fixedFee": 25}}),
            (
                2,
                "credit_note",
                1,
                {"itemType": "consumer", "correction": "manual", "balance": {"change": -7}},
            ),
            (
                3,
                "credit_note",
                1,
                {"itemType": "consumer", "correction": "recomputed", "balance": {"change": 90}},
            ),
            (4, "statement", None, {"itemType": "producer", "amounts": {"fixedFee": 0}}),
        ]
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO registrations (registration_id, item_name, item_type, active,"
                    " created_at, updated_at) VALUES ('consumer-1', 'Flat', 'consumer', true,"
                    " 0, 0)"
                )
            )
            for number, kind, refers_to, document in documents:
                connection.execute(
                    sa.text(
                        "INSERT INTO statements (id, number, kind, registration_id, period,"
                        " period_start, period_end, statement_key, refers_to, opening_balance,"
                        " balance_change, closing_balance, document_json, created_by,"
                        " created_at) VALUES (:n, :n, :kind, 'consumer-1', '2026-11', 0, 1,"
                        " :key, :refers_to, 0, 0, 0, :document, 'test', 0)"
                    ),
                    {
                        "n": number,
                        "kind": kind,
                        "key": f"consumer-1/{number}" if kind == "statement" else None,
                        "refers_to": refers_to,
                        "document": json.dumps(document),
                    },
                )
        db.migrate()
        with db.read() as session:
            charges = session.execute(
                sa.text("SELECT number, account_charge FROM statements ORDER BY number")
            ).all()
        assert [tuple(row) for row in charges] == [(1, 25), (2, -7), (3, 0), (4, 0)]
        _migrate(db, "0005", downgrade=True)
    finally:
        db.close()


async def test_bills_and_payouts_settled_before_0009_keep_their_statements(
    empty_database_url: str,
) -> None:
    """0009: existing bills and payouts record the blended local split they implied, so
    their statements read the same after the revision as before."""
    db = Database(empty_database_url, threads=1)
    try:
        db.migrate()
        random_slots(db, Random(9))
        config = replace(GridConfig(), slot_seconds=900, grid_cut_percent=10.0)
        clock = ManualClock(DAY_START + (SLOTS + 1) * SLOT)
        assert len(await SettlementService(db, config, clock, "test").settle_due()) == SLOTS
        service = StatementService(db, config, clock)
        names = (*PRODUCERS, *CONSUMERS)
        before = [await service.preview(name, None) for name in names]
        assert any(document["amounts"].get("localPurchases") for document in before)
        _migrate(db, "0008", downgrade=True)
        db.migrate()
        assert [await service.preview(name, None) for name in names] == before
    finally:
        db.close()
