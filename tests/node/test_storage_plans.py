"""The node's queries must seek an index, never scan the transactions table: a scan
grows with the Tangle (87 ms at 60,000 rows, per request), and storing must cost the
same at a million transactions as on a fresh database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event

from grid_server.node.storage import NULL_HASH, NULL_HASH_SEQ, TangleStore, TransactionRecord

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sqlalchemy import Connection


def record(name: str, trunk: str = NULL_HASH, branch: str = NULL_HASH) -> TransactionRecord:
    return TransactionRecord(
        hash=name.ljust(81, "9"),
        address="ADDRESS".ljust(81, "9"),
        bundle=f"B{name}".ljust(81, "9"),
        tag="TAG".ljust(27, "9"),
        value=0,
        current_index=0,
        last_index=0,
        timestamp=1_700_000_000,
        attachment_timestamp=1_700_000_000_000,
        trunk=trunk,
        branch=branch,
        trytes="9" * 2673,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TangleStore]:
    store = TangleStore.open(f"sqlite:///{tmp_path / 'node.sqlite3'}")
    first, second = record("A"), record("B")
    child = record("C", first.hash, "MISSING".ljust(81, "9"))
    with store.begin() as conn:
        solid = {first.hash: True, second.hash: True, child.hash: False}
        TangleStore.insert_transactions(conn, [first, second, child], solid, 1)
        # Enough rows that a scan would be a plan SQLite considers.
        filler = [record(f"FILL{i:05}".replace("0", "Z")) for i in range(200)]
        TangleStore.insert_transactions(conn, filler, {r.hash: True for r in filler}, 2)
    yield store
    store.close()


def plans(conn: Connection, executed: list[tuple[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for statement, parameters in executed:
        if statement.lstrip().upper().startswith("INSERT"):
            continue
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        found[statement] = [row[-1] for row in rows]
    return found


def test_every_lookup_seeks_an_index(store: TangleStore) -> None:
    a, c = "A".ljust(81, "9"), "C".ljust(81, "9")
    executed: list[tuple[str, Any]] = []

    def remember(*args: Any) -> None:
        _conn, _cursor, statement, parameters, _context, _many = args
        executed.append((statement, parameters))

    with store.connect() as conn:
        event.listen(conn, "before_cursor_execute", remember)
        assert TangleStore.existing_hashes(conn, [a, c]) == {a, c}
        assert set(TangleStore.infos(conn, [a])) == {a}
        assert TangleStore.infos_by_bundle(conn, ["BA".ljust(81, "9")])[0].hash == a
        assert TangleStore.trytes_of(conn, [a]) == {a: "9" * 2673}
        assert TangleStore.has_unsolid(conn)
        assert TangleStore.missing_parents(conn, 10) == ["MISSING".ljust(81, "9")]
        assert [i.hash for i in TangleStore.unsolid_approvers(conn, [a])] == [c]
        assert [i.hash for i in TangleStore.approvers(conn, [a])] == [c]
        assert c not in TangleStore.tips(conn, 5)
        assert TangleStore.count_tips(conn) == 201
        found = TangleStore.find_hashes(
            conn, ["ADDRESS".ljust(81, "9")], ["BC".ljust(81, "9")], ["TAG".ljust(27, "9")], [a], 9
        )
        assert found == [c]
        assert not TangleStore.has_pending_spends(conn)
        assert TangleStore.value_entries(conn, ["BA".ljust(81, "9")]) == {}
        assert TangleStore.pending_spends(conn, ["ADDRESS".ljust(81, "9")], []) == {}
        assert TangleStore.tails_at(conn, "ADDRESS".ljust(81, "9"), "TAG".ljust(27, "9"))
        members, missing = TangleStore.unconfirmed_cone(conn, [c, NULL_HASH])
        assert (set(members), missing) == ({a, c}, {"MISSING".ljust(81, "9")})
        assert len(TangleStore.page_since(conn, 1, 2)) == 2
        TangleStore.mark_solid(conn, [c])
        TangleStore.mark_confirmed(conn, [a], 1)
        event.remove(conn, "before_cursor_execute", remember)
        found_plans = plans(conn, executed)
        conn.rollback()
    assert len(found_plans) >= 18
    for statement, details in found_plans.items():
        # Walking the partial index visits only the unconfirmed spends.
        scans = [
            d
            for d in details
            # "walked": the transactions as the recursive cone query names them
            if d.startswith(("SCAN node_transactions", "SCAN walked")) and "pending_spends" not in d
        ]
        assert not scans, (statement, details)
    pending = next(d for s, d in found_plans.items() if "value < 0 AND" in s)
    assert any("ix_node_transactions_pending_spends" in d for d in pending), pending


def test_storing_an_approver_rewrites_no_transaction_row(store: TangleStore) -> None:
    """Approval and solidity live in their own narrow tables: storing an approver
    only inserts, and deletes a tip's row from ``node_unapproved``."""
    executed: list[str] = []

    def remember(*args: Any) -> None:
        executed.append(args[2])

    a = "A".ljust(81, "9")
    with store.begin() as conn:
        event.listen(conn, "before_cursor_execute", remember)
        TangleStore.insert_transactions(conn, [record("D", a, a)], {"D".ljust(81, "9"): True}, 3)
        event.remove(conn, "before_cursor_execute", remember)
        assert a not in TangleStore.tips(conn, 500)
    assert not [s for s in executed if s.lstrip().upper().startswith("UPDATE")]
    writes = [s.split("(")[0].split()[:3] for s in executed if not s.lstrip().startswith("SELECT")]
    assert ["DELETE", "FROM", "node_unapproved"] in writes


def parent_seqs(conn: Connection) -> dict[str, tuple[int | None, int | None]]:
    rows = conn.exec_driver_sql("SELECT hash, trunk_seq, branch_seq FROM node_transactions")
    return {row[0].rstrip("9"): (row[1], row[2]) for row in rows}


def test_approvers_are_linked_by_seq_wherever_their_parents_are(store: TangleStore) -> None:
    """A parent stored earlier, in the same batch or only later (a neighbour's order):
    each approver ends up holding its parents' seq, and is found as their approver."""
    a, d = "A".ljust(81, "9"), "D".ljust(81, "9")
    late, waiting = "LATE".ljust(81, "9"), "WAITING".ljust(81, "9")
    with store.begin() as conn:
        # E approves A (stored) and D (same batch); WAITING approves LATE (not stored).
        batch = [record("E", a, d), record("D", a, a), record("WAITING", late, a)]
        solid = {"E".ljust(81, "9"): True, d: True, waiting: False}
        TangleStore.insert_transactions(conn, batch, solid, 3)
        seqs = {name: info.seq for name, info in TangleStore.infos(conn, [a, d]).items()}
        linked = parent_seqs(conn)
        assert linked["E"] == (seqs[a], seqs[d])
        assert linked["D"] == (seqs[a], seqs[a])
        assert sorted(i.hash for i in TangleStore.approvers(conn, [d])) == ["E".ljust(81, "9")]
        assert linked["WAITING"] == (None, seqs[a])
        assert [i.hash for i in TangleStore.approvers(conn, [late])] == [waiting]
        assert TangleStore.find_hashes(conn, None, None, None, [late], 9) == [waiting]

        TangleStore.insert_transactions(conn, [record("LATE")], {late: True}, 4)
        late_seq = TangleStore.infos(conn, [late])[late].seq
        assert parent_seqs(conn)["WAITING"] == (late_seq, seqs[a])
        assert [i.hash for i in TangleStore.approvers(conn, [late])] == [waiting]
        # Approved before it arrived: never a tip.
        assert late not in TangleStore.tips(conn, 500)
        assert [i.hash for i in TangleStore.unsolid_approvers(conn, [late])] == [waiting]
        # Only C still waits (for MISSING, never stored).
        assert [name for name, linked in parent_seqs(conn).items() if None in linked] == ["C"]
        # The null hash is never stored; what approves it is still found.
        assert parent_seqs(conn)["LATE"] == (NULL_HASH_SEQ, NULL_HASH_SEQ)
        assert {late, a} <= {i.hash for i in TangleStore.approvers(conn, [NULL_HASH])}
