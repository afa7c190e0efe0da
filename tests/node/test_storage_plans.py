"""The queries the node runs on every store and getNodeInfo must seek an index: a scan
of the transactions table grows with the Tangle (87 ms at 60,000 rows, per request)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from grid_server.node.storage import TangleStore

if TYPE_CHECKING:
    from pathlib import Path


def test_unsolid_lookups_seek_the_tips_index(tmp_path: Path) -> None:
    store = TangleStore.open(f"sqlite:///{tmp_path / 'node.sqlite3'}")
    executed: list[tuple[str, Any]] = []

    def remember(*args: Any) -> None:
        _conn, _cursor, statement, parameters, _context, _many = args
        executed.append((statement, parameters))

    try:
        with store.connect() as conn:
            event.listen(conn, "before_cursor_execute", remember)
            assert not TangleStore.has_unsolid(conn)
            assert TangleStore.missing_parents(conn, 10) == []
            event.remove(conn, "before_cursor_execute", remember)
            unsolid_queries = [(s, p) for s, p in executed if "solid IS 0" in s]
            assert len(unsolid_queries) == 2
            for statement, parameters in unsolid_queries:
                plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
                details = [row[-1] for row in plan]
                assert any("ix_node_transactions_tips" in d for d in details), details
                assert not any(d.startswith("SCAN") for d in details), details
    finally:
        store.close()
