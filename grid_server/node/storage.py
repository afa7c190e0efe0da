"""The node's database: schema and queries (SQLAlchemy 2 Core; SQLite or PostgreSQL).

All writes of one request run inside one database transaction opened by the
caller (``with store.begin() as conn``), so a crash never leaves part of a
bundle or a half-applied milestone behind.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from ..db_migrations import MigrationChain, sqlite_transactions

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence

    from sqlalchemy import ColumnElement, Row, Select
    from sqlalchemy.pool import ConnectionPoolEntry

NULL_HASH: Final = "9" * 81
# The parent seq of a transaction approving the null hash (``seq`` starts at 1).
NULL_HASH_SEQ: Final = 0
CONNECT_TIMEOUT_SECONDS: Final = 10
# Bound parameters per IN (...) list; well under SQLite's and PostgreSQL's limits.
_CHUNK: Final = 500

metadata = MetaData()

_SEQ_TYPE: Final = BigInteger().with_variant(Integer(), "sqlite")


def lookup_key(value: str) -> int:
    """The indexed stand-in of an 81- or 27-tryte value: the first 8 bytes of its SHA-256
    as a signed 64-bit integer. Keys may collide, so every lookup also compares the value."""
    return int.from_bytes(hashlib.sha256(value.encode("ascii")).digest()[:8], "big", signed=True)


# The narrow row of a transaction: its fields, each looked-up value beside its compact
# key (only keys are indexed). Neither the payload nor approval lives here, so an index
# entry is ~20 bytes instead of ~95 and storing an approver rewrites no row.
transactions = Table(
    "node_transactions",
    metadata,
    # Arrival order on this node; neighbours page through it to catch up.
    Column("seq", _SEQ_TYPE, primary_key=True),
    Column("hash", String(81), nullable=False),
    Column("hash_key", BigInteger(), nullable=False, index=True),
    Column("address", String(81), nullable=False),
    Column("address_key", BigInteger(), nullable=False, index=True),
    Column("bundle", String(81), nullable=False),
    Column("bundle_key", BigInteger(), nullable=False, index=True),
    Column("tag", String(27), nullable=False),
    Column("tag_key", BigInteger(), nullable=False, index=True),
    Column("value", BigInteger(), nullable=False),
    Column("current_index", Integer(), nullable=False),
    Column("last_index", Integer(), nullable=False),
    Column("timestamp", BigInteger(), nullable=False),
    Column("attachment_timestamp", BigInteger(), nullable=False),
    Column("trunk", String(81), nullable=False),
    Column("trunk_key", BigInteger(), nullable=False),
    Column("branch", String(81), nullable=False),
    Column("branch_key", BigInteger(), nullable=False),
    Column("arrival", BigInteger(), nullable=False),
    # Index of the milestone that confirmed it, NULL while unconfirmed.
    Column("confirmed", Integer(), nullable=True),
    # The parents' ``seq`` (NULL_HASH_SEQ for the null hash), NULL while a parent is
    # not stored. Approvers are found through these: a parent is mostly recent, so a
    # new entry lands at the end of its index, not on a random page of a hash-keyed
    # one; the few rows waiting for a parent are the index's NULL entries.
    Column("trunk_seq", _SEQ_TYPE, nullable=True, index=True),
    Column("branch_seq", _SEQ_TYPE, nullable=True, index=True),
    # Only the few unconfirmed spends: what consistency checks look for first.
    Index(
        "ix_node_transactions_pending_spends",
        "seq",
        sqlite_where=text("value < 0 AND confirmed IS NULL"),
        postgresql_where=text("value < 0 AND confirmed IS NULL"),
    ),
)

# The 2,673-tryte payload, read only by getTrytes, bundle assembly and neighbours.
payloads = Table(
    "node_trytes",
    metadata,
    Column("seq", _SEQ_TYPE, primary_key=True, autoincrement=False),
    Column("trytes", Text(), nullable=False),
)

# Transactions no stored transaction approves yet (tips, once solid): a row per tip,
# deleted when an approver arrives.
unapproved = Table(
    "node_unapproved",
    metadata,
    Column("seq", _SEQ_TYPE, primary_key=True, autoincrement=False),
)

# Transactions whose past cone is not all stored yet: a row each until it is.
unsolid = Table(
    "node_unsolid",
    metadata,
    Column("seq", _SEQ_TYPE, primary_key=True, autoincrement=False),
)

milestones = Table(
    "node_milestones",
    metadata,
    Column("index", Integer(), primary_key=True, autoincrement=False),
    Column("hash", String(81), nullable=False, unique=True),
    Column("signing_address", String(81), nullable=False),
    Column("next_address", String(81), nullable=False),
    Column("applied", Boolean(), nullable=False, default=False),
    Column("timestamp", BigInteger(), nullable=False),
)

balances = Table(
    "node_balances",
    metadata,
    Column("address", String(81), primary_key=True),
    Column("balance", BigInteger(), nullable=False),
)

applied_bundles = Table(
    "node_applied_bundles",
    metadata,
    Column("bundle", String(81), primary_key=True),
    Column("milestone", Integer(), nullable=False),
)

spent_addresses = Table(
    "node_spent_addresses",
    metadata,
    Column("address", String(81), primary_key=True),
)

neighbors = Table(
    "node_neighbors",
    metadata,
    Column("url", String(300), primary_key=True),
    # Highest ``seq`` of the neighbour already pulled from it.
    Column("cursor", BigInteger(), nullable=False, default=0),
    Column("all_transactions", BigInteger(), nullable=False, default=0),
    Column("invalid_transactions", BigInteger(), nullable=False, default=0),
    Column("new_transactions", BigInteger(), nullable=False, default=0),
    Column("sent_transactions", BigInteger(), nullable=False, default=0),
)

meta = Table(
    "node_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text(), nullable=False),
)


def _node_metadata() -> MetaData:
    return metadata


MIGRATIONS: Final = MigrationChain(
    "node",
    Path(__file__).resolve().parent / "migrations",
    # Its own version table: the node's and the grid's tables may share one database.
    version_table="node_alembic_version",
    lock_key=0x5032504E4F4445,
    metadata=_node_metadata,
)
# Before migrations, a row in node_meta said which schema create_all had made.
_LEGACY_VERSION_KEY: Final = "schema_version"
_LEGACY_SCHEMA: Final = ("1", "0001")


class StorageError(RuntimeError):
    """The database cannot be opened or holds data of another network."""


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """A validated transaction ready to insert (fields already parsed)."""

    hash: str
    address: str
    bundle: str
    tag: str
    value: int
    current_index: int
    last_index: int
    timestamp: int
    attachment_timestamp: int
    trunk: str
    branch: str
    trytes: str


@dataclass(frozen=True, slots=True)
class TransactionInfo:
    """What traversal and ledger code need to know about a stored transaction."""

    hash: str
    address: str
    bundle: str
    value: int
    current_index: int
    last_index: int
    timestamp: int
    attachment_timestamp: int
    trunk: str
    branch: str
    solid: bool
    confirmed: int | None
    seq: int


@dataclass(frozen=True, slots=True)
class MilestoneRecord:
    index: int
    hash: str
    signing_address: str
    next_address: str
    applied: bool
    timestamp: int


_INFO_COLUMNS: Final = (
    transactions.c.hash,
    transactions.c.address,
    transactions.c.bundle,
    transactions.c.value,
    transactions.c.current_index,
    transactions.c.last_index,
    transactions.c.timestamp,
    transactions.c.attachment_timestamp,
    transactions.c.trunk,
    transactions.c.branch,
    unsolid.c.seq.is_(None).label("solid"),
    transactions.c.confirmed,
    transactions.c.seq,
)
_WITH_SOLIDITY: Final = transactions.outerjoin(unsolid, unsolid.c.seq == transactions.c.seq)
_KEYS: Final = {
    transactions.c.hash: transactions.c.hash_key,
    transactions.c.address: transactions.c.address_key,
    transactions.c.bundle: transactions.c.bundle_key,
    transactions.c.tag: transactions.c.tag_key,
    transactions.c.trunk: transactions.c.trunk_key,
    transactions.c.branch: transactions.c.branch_key,
}


def _info(row: Row[Any]) -> TransactionInfo:
    # The outer join's "no unsolid row" is 0/1 on SQLite.
    return TransactionInfo(**{**row._mapping, "solid": bool(row.solid)})


def _infos_where(*conditions: ColumnElement[bool]) -> Select[Any]:
    return select(*_INFO_COLUMNS).select_from(_WITH_SOLIDITY).where(*conditions)


def _among(column: Column[str], values: Collection[str]) -> ColumnElement[bool]:
    """``column IN values``, found through the column's indexed key."""
    return and_(_KEYS[column].in_([lookup_key(v) for v in values]), column.in_(values))


def _equals(column: Column[str], value: str) -> ColumnElement[bool]:
    return and_(_KEYS[column] == lookup_key(value), column == value)


def _waiting_for(values: Collection[str]) -> ColumnElement[bool]:
    """Transactions with one of ``values`` as a parent that was not stored when they were
    (their parent ``seq`` is still NULL)."""
    return or_(
        and_(transactions.c.trunk_seq.is_(None), _among(transactions.c.trunk, values)),
        and_(transactions.c.branch_seq.is_(None), _among(transactions.c.branch, values)),
    )


def _approving(values: Collection[str]) -> ColumnElement[bool]:
    """Transactions whose trunk or branch is one of ``values``: through the parent's
    ``seq`` where it is stored, through the parent's hash where it is missing."""
    stored = _seqs_of(values)
    conditions = [
        transactions.c.trunk_seq.in_(stored),
        transactions.c.branch_seq.in_(stored),
        _waiting_for(values),
    ]
    if NULL_HASH in values:
        conditions += [
            transactions.c.trunk_seq == NULL_HASH_SEQ,
            transactions.c.branch_seq == NULL_HASH_SEQ,
        ]
    return or_(*conditions)


def _seqs_of(hashes: Collection[str]) -> Select[Any]:
    # Its own alias, so that a query on the transactions never correlates with it.
    looked_up = transactions.alias("looked_up")
    return select(looked_up.c.seq).where(
        looked_up.c.hash_key.in_([lookup_key(h) for h in hashes]), looked_up.c.hash.in_(hashes)
    )


def _chunks[T](items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _delete_rows_of(conn: Connection, table: Table, hashes: Sequence[str]) -> None:
    """Delete the rows of ``table`` (keyed by ``seq``) of the transactions among ``hashes``
    (in chunks of IN lists): approval and solidity are such rows going."""
    for chunk in _chunks(hashes):
        conn.execute(delete(table).where(table.c.seq.in_(_seqs_of(chunk))))


def _existing(conn: Connection, column: Column[str], values: Iterable[str]) -> set[str]:
    """Which of ``values`` are stored in ``column`` (queried in chunks of IN lists)."""
    found: set[str] = set()
    for chunk in _chunks(list(set(values))):
        found.update(conn.execute(select(column).where(column.in_(chunk))).scalars().all())
    return found


def _cone_query(starts: Collection[str]) -> Select[Any]:
    """``starts`` that are stored, then their trunks and branches, recursively, without
    passing a confirmed transaction; each hash reached (``wanted``) with its info, or
    NULLs where it is not stored."""
    walked = transactions.alias("walked")
    cone = (
        select(transactions.c.hash, transactions.c.hash_key)
        .where(_among(transactions.c.hash, starts))
        .cte("cone", recursive=True)
    )
    sides = (
        select(literal_column("0").label("side"))
        .union_all(select(literal_column("1").label("side")))
        .subquery("cone_sides")
    )
    parent = case((sides.c.side == 0, walked.c.trunk), else_=walked.c.branch)
    parent_key = case((sides.c.side == 0, walked.c.trunk_key), else_=walked.c.branch_key)
    cone = cone.union(
        select(parent, parent_key)
        .select_from(
            walked.join(
                cone, and_(walked.c.hash_key == cone.c.hash_key, walked.c.hash == cone.c.hash)
            ).join(sides, true())
        )
        .where(walked.c.confirmed.is_(None), parent != NULL_HASH)
    )
    return select(cone.c.hash.label("wanted"), *_INFO_COLUMNS).select_from(
        cone.outerjoin(
            transactions,
            and_(transactions.c.hash_key == cone.c.hash_key, transactions.c.hash == cone.c.hash),
        ).outerjoin(unsolid, unsolid.c.seq == transactions.c.seq)
    )


def _seqs_by_hash(conn: Connection, hashes: Iterable[str]) -> dict[str, int]:
    """The seq of each of ``hashes`` that is stored. The hot lookup of storing (every
    new transaction and its parents): only the keys go to the database, and the hashes
    of what they find are compared here."""
    wanted = set(hashes)
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(wanted)):
        rows = conn.execute(
            select(transactions.c.hash, transactions.c.seq).where(
                transactions.c.hash_key.in_([lookup_key(value) for value in chunk])
            )
        )
        found.update({row.hash: row.seq for row in rows if row.hash in wanted})
    return found


def _awaiting(conn: Connection, hashes: Sequence[str]) -> list[Row[Any]]:
    """Stored transactions still waiting for one of ``hashes`` as a parent."""
    found: list[Row[Any]] = []
    for chunk in _chunks(hashes):
        found.extend(
            conn.execute(
                select(
                    transactions.c.seq,
                    transactions.c.trunk,
                    transactions.c.trunk_seq,
                    transactions.c.branch,
                    transactions.c.branch_seq,
                ).where(_waiting_for(chunk))
            )
        )
    return found


# Sets both parents' seq of a row (bound names unlike the columns', as executemany needs).
_LINK_PARENTS: Final = (
    update(transactions)
    .where(transactions.c.seq == bindparam("row"))
    .values(trunk_seq=bindparam("new_trunk"), branch_seq=bindparam("new_branch"))
)


_SQLITE_MMAP_BYTES: Final = 2**31 - 2**16


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while a request writes; NORMAL is durable at checkpoints.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Each stored transaction dirties a leaf page of every lookup index wherever its
    # random key falls: check-pointing (and fsync) every ~40 MB of WAL instead of 4 MB
    # writes a page rewritten by several requests once, and a 32 MiB page cache keeps
    # the indexes' inner pages and recent leaves out of read() calls.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.execute("PRAGMA cache_size=-32768")
    # Storing looks up every new hash and its parents on random index pages: read
    # through a memory map, a page the OS has cached costs no read() call and copy.
    # SQLite caps the map at 2 GiB and falls back to read() where mapping fails.
    cursor.execute(f"PRAGMA mmap_size={_SQLITE_MMAP_BYTES}")
    cursor.close()


def open_engine(url: str) -> Engine:
    """Create the engine for ``url``, creating a SQLite file's folder if needed."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise StorageError(f"invalid database URL {url!r}: {err}") from err
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        # Pre-ping replaces connections a PostgreSQL restart dropped; the connect timeout
        # turns an unreachable server into a prompt 503 instead of a hung request.
        connect_args: dict[str, Any] = (
            {} if is_sqlite else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        )
        engine = create_engine(parsed, pool_pre_ping=not is_sqlite, connect_args=connect_args)
    except (ArgumentError, NoSuchModuleError, ImportError) as err:
        raise StorageError(f"cannot use database URL {url!r}: {err}") from err
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _adopt_unversioned(conn: Connection) -> None:
    """Take over a database whose tables ``create_all`` made before the node had
    migrations: its ``node_meta`` row names the schema, which becomes the chain's
    revision (and the row goes: the version table says it from now on)."""
    if MIGRATIONS.current(conn) is not None or not inspect(conn).has_table(transactions.name):
        return
    version = conn.execute(select(meta.c.value).where(meta.c.key == _LEGACY_VERSION_KEY)).scalar()
    if version != _LEGACY_SCHEMA[0]:
        raise StorageError(
            f"the database holds node tables of schema version {version!r}, which this node "
            f"cannot migrate (it knows version {_LEGACY_SCHEMA[0]})"
        )
    MIGRATIONS.stamp(conn, _LEGACY_SCHEMA[1])
    conn.execute(delete(meta).where(meta.c.key == _LEGACY_VERSION_KEY))


class TangleStore:
    """Queries over the node's tables; callers own the transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> TangleStore:
        store = cls(open_engine(url))
        store.create_schema()
        return store

    def close(self) -> None:
        self.engine.dispose()

    def create_schema(self) -> None:
        """Create or migrate the node's tables to the newest schema."""
        # Schema changes need real SQLite transactions, which this engine does not take.
        is_sqlite = self.engine.dialect.name == "sqlite"
        engine = create_engine(
            self.engine.url,
            poolclass=NullPool,
            connect_args={} if is_sqlite else {"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        )
        if is_sqlite:
            sqlite_transactions(engine, immediate=True)
        try:
            with engine.begin() as conn:
                MIGRATIONS.lock(conn)
                _adopt_unversioned(conn)
                MIGRATIONS.upgrade(conn)
        except StorageError:
            raise
        except Exception as err:
            raise StorageError(f"cannot bring the node's tables up to date: {err}") from err
        finally:
            engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    # -- meta ------------------------------------------------------------------

    @staticmethod
    def get_meta(conn: Connection, key: str) -> str | None:
        value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
        return None if value is None else str(value)

    @staticmethod
    def set_meta(conn: Connection, key: str, value: str) -> None:
        changed = conn.execute(update(meta).where(meta.c.key == key).values(value=value))
        if changed.rowcount == 0:
            conn.execute(insert(meta).values(key=key, value=value))

    def ensure_genesis(self, genesis: Mapping[str, int]) -> None:
        """Credit the genesis balances once; refuse a different genesis later."""
        wanted = json.dumps(dict(sorted(genesis.items())), separators=(",", ":"))
        with self.begin() as conn:
            stored = self.get_meta(conn, "genesis")
            if stored is None:
                if genesis:
                    conn.execute(
                        insert(balances),
                        [{"address": a, "balance": b} for a, b in sorted(genesis.items())],
                    )
                self.set_meta(conn, "genesis", wanted)
            elif stored != wanted:
                raise StorageError(
                    "the database was created with other genesis balances; a network's "
                    "genesis cannot change (use a new database)"
                )

    # -- transactions ----------------------------------------------------------

    @staticmethod
    def existing_hashes(conn: Connection, hashes: Iterable[str]) -> set[str]:
        return set(_seqs_by_hash(conn, hashes))

    @staticmethod
    def unconfirmed_cone(
        conn: Connection, starts: Iterable[str]
    ) -> tuple[dict[str, TransactionInfo], set[str]]:
        """The unconfirmed transactions reachable from ``starts`` over trunk and branch
        without passing a confirmed one, and the hashes on the way that are not stored.

        One recursive query instead of one query per step back: the grid's bundles
        chain their transactions, so a milestone's cone was walked in as many round
        trips as the longest chain since the last milestone.
        """
        seeds = sorted({start for start in starts if start != NULL_HASH})
        members: dict[str, TransactionInfo] = {}
        missing: set[str] = set()
        for chunk in _chunks(seeds):
            reached: set[str] = set()
            for row in conn.execute(_cone_query(chunk)):
                reached.add(row.wanted)
                if row.hash is None:
                    missing.add(row.wanted)
                elif row.confirmed is None:
                    members[row.hash] = TransactionInfo(
                        **{key: value for key, value in row._mapping.items() if key != "wanted"}
                        | {"solid": bool(row.solid)}
                    )
            missing.update(set(chunk) - reached)  # starts that are not stored
        return members, missing

    @staticmethod
    def infos(conn: Connection, hashes: Iterable[str]) -> dict[str, TransactionInfo]:
        found: dict[str, TransactionInfo] = {}
        for chunk in _chunks(list(set(hashes))):
            for row in conn.execute(_infos_where(_among(transactions.c.hash, chunk))):
                found[row.hash] = _info(row)
        return found

    @staticmethod
    def infos_by_bundle(conn: Connection, bundles: Iterable[str]) -> list[TransactionInfo]:
        found: list[TransactionInfo] = []
        for chunk in _chunks(list(set(bundles))):
            rows = conn.execute(_infos_where(_among(transactions.c.bundle, chunk)))
            found.extend(_info(row) for row in rows)
        return found

    @staticmethod
    def trytes_of(conn: Connection, hashes: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(list(set(hashes))):
            rows = conn.execute(
                select(transactions.c.hash, payloads.c.trytes)
                .join_from(transactions, payloads, payloads.c.seq == transactions.c.seq)
                .where(_among(transactions.c.hash, chunk))
            )
            found.update({row.hash: row.trytes for row in rows})
        return found

    @staticmethod
    def insert_transactions(
        conn: Connection,
        records: Sequence[TransactionRecord],
        solid: Mapping[str, bool],
        now: int,
        stored_parents: Mapping[str, int] | None = None,
    ) -> None:
        """Store ``records``; ``stored_parents``: the seq of each of their parents stored
        before (looked up if not given)."""
        if not records:
            return
        in_batch = {r.hash for r in records}
        parents = {h for r in records for h in (r.trunk, r.branch)} - {NULL_HASH}
        if stored_parents is None:
            stored_parents = _seqs_by_hash(conn, parents - in_batch)
        known = {**stored_parents, NULL_HASH: NULL_HASH_SEQ}
        inserted = conn.execute(
            insert(transactions).returning(transactions.c.hash, transactions.c.seq),
            [
                {
                    "hash": r.hash,
                    "hash_key": lookup_key(r.hash),
                    "address": r.address,
                    "address_key": lookup_key(r.address),
                    "bundle": r.bundle,
                    "bundle_key": lookup_key(r.bundle),
                    "tag": r.tag,
                    "tag_key": lookup_key(r.tag),
                    "value": r.value,
                    "current_index": r.current_index,
                    "last_index": r.last_index,
                    "timestamp": r.timestamp,
                    "attachment_timestamp": r.attachment_timestamp,
                    "trunk": r.trunk,
                    "trunk_key": lookup_key(r.trunk),
                    "trunk_seq": known.get(r.trunk),
                    "branch": r.branch,
                    "branch_key": lookup_key(r.branch),
                    "branch_seq": known.get(r.branch),
                    "arrival": now,
                    "confirmed": None,
                }
                for r in records
            ],
        )
        seqs: dict[str, int] = {row.hash: row.seq for row in inserted}
        known.update(seqs)
        conn.execute(insert(payloads), [{"seq": seqs[r.hash], "trytes": r.trytes} for r in records])
        # Parents in this batch got their seq only now.
        links = [
            {
                "row": seqs[r.hash],
                "new_trunk": known.get(r.trunk),
                "new_branch": known.get(r.branch),
            }
            for r in records
            if r.trunk in in_batch or r.branch in in_batch
        ]
        if links:
            conn.execute(_LINK_PARENTS, links)
        # A neighbour may deliver an approver before its parent: the approver is then
        # unsolid (its parent was missing), so only unsolid rows can wait for a new one.
        approved_early: set[str] = set()
        if TangleStore.has_unsolid(conn):
            waiting = _awaiting(conn, sorted(in_batch))
            for row in waiting:
                approved_early.update({row.trunk, row.branch} & in_batch)
            if waiting:
                conn.execute(
                    _LINK_PARENTS,
                    [
                        {
                            "row": row.seq,
                            "new_trunk": seqs.get(row.trunk, row.trunk_seq),
                            "new_branch": seqs.get(row.branch, row.branch_seq),
                        }
                        for row in waiting
                    ],
                )
        approved_now = parents | approved_early
        tips = [{"seq": seqs[r.hash]} for r in records if r.hash not in approved_now]
        if tips:
            conn.execute(insert(unapproved), tips)
        not_solid = [{"seq": seqs[r.hash]} for r in records if not solid[r.hash]]
        if not_solid:
            conn.execute(insert(unsolid), not_solid)
        approved = sorted(stored_parents.values())
        for chunk in _chunks(approved):
            conn.execute(delete(unapproved).where(unapproved.c.seq.in_(chunk)))

    @staticmethod
    def has_unsolid(conn: Connection) -> bool:
        return conn.execute(select(unsolid.c.seq).limit(1)).first() is not None

    @staticmethod
    def unsolid_approvers(conn: Connection, hashes: Sequence[str]) -> list[TransactionInfo]:
        found: list[TransactionInfo] = []
        for chunk in _chunks(hashes):
            rows = conn.execute(_infos_where(unsolid.c.seq.is_not(None), _approving(chunk)))
            found.extend(_info(row) for row in rows)
        return found

    @staticmethod
    def mark_solid(conn: Connection, hashes: Sequence[str]) -> None:
        _delete_rows_of(conn, unsolid, hashes)

    @staticmethod
    def missing_parents(conn: Connection, limit: int) -> list[str]:
        """Hashes referenced by unsolid transactions but not stored (to ask neighbours)."""
        parents: set[str] = set()
        rows = conn.execute(
            select(transactions.c.trunk, transactions.c.branch)
            .join_from(unsolid, transactions, transactions.c.seq == unsolid.c.seq)
            .limit(limit * 4)
        )
        for row in rows:
            parents.update((row.trunk, row.branch))
        parents.discard(NULL_HASH)
        missing = parents - TangleStore.existing_hashes(conn, parents)
        return sorted(missing)[:limit]

    @staticmethod
    def count_transactions(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(transactions)).scalar_one())

    @staticmethod
    def max_seq(conn: Connection) -> int:
        return int(
            conn.execute(select(func.coalesce(func.max(transactions.c.seq), 0))).scalar_one()
        )

    @staticmethod
    def _solid_tips() -> Select[Any]:
        # Driven by the small unapproved table; unsolid ones are not tips yet.
        return (
            select(transactions.c.hash)
            .select_from(unapproved)
            .join(transactions, transactions.c.seq == unapproved.c.seq)
            .where(unapproved.c.seq.not_in(select(unsolid.c.seq)))
        )

    @staticmethod
    def tips(conn: Connection, limit: int, oldest_first: bool = False) -> list[str]:
        order = unapproved.c.seq.asc() if oldest_first else unapproved.c.seq.desc()
        rows = conn.execute(TangleStore._solid_tips().order_by(order).limit(limit))
        return list(rows.scalars().all())

    @staticmethod
    def count_tips(conn: Connection) -> int:
        tips = TangleStore._solid_tips().subquery()
        return int(conn.execute(select(func.count()).select_from(tips)).scalar_one())

    @staticmethod
    def find_hashes(
        conn: Connection,
        addresses: Sequence[str] | None,
        bundles: Sequence[str] | None,
        tags: Sequence[str] | None,
        approvees: Sequence[str] | None,
        limit: int,
    ) -> list[str] | None:
        """Hashes matching every given field (OR within a field); None if over ``limit``."""
        conditions: list[ColumnElement[bool]] = []
        for column, values in (
            (transactions.c.address, addresses),
            (transactions.c.bundle, bundles),
            (transactions.c.tag, tags),
        ):
            if values is not None:
                conditions.append(_among(column, sorted(set(values))))
        if approvees is not None:
            conditions.append(_approving(sorted(set(approvees))))
        query = (
            select(transactions.c.hash)
            .where(*conditions)
            .order_by(transactions.c.seq)
            .limit(limit + 1)
        )
        hashes = list(conn.execute(query).scalars().all())
        return None if len(hashes) > limit else hashes

    @staticmethod
    def page_since(conn: Connection, since: int, limit: int) -> list[tuple[int, str, str]]:
        """``(seq, bundle, trytes)`` after ``since`` in arrival order."""
        rows = conn.execute(
            select(transactions.c.seq, transactions.c.bundle, payloads.c.trytes)
            .join_from(transactions, payloads, payloads.c.seq == transactions.c.seq)
            .where(transactions.c.seq > since)
            .order_by(transactions.c.seq)
            .limit(limit)
        )
        return [(row.seq, row.bundle, row.trytes) for row in rows]

    @staticmethod
    def approvers(conn: Connection, hashes: Sequence[str]) -> list[TransactionInfo]:
        found: list[TransactionInfo] = []
        for chunk in _chunks(hashes):
            found.extend(_info(row) for row in conn.execute(_infos_where(_approving(chunk))))
        return found

    @staticmethod
    def mark_confirmed(conn: Connection, hashes: Sequence[str], milestone_index: int) -> None:
        for chunk in _chunks(hashes):
            conn.execute(
                update(transactions)
                .where(_among(transactions.c.hash, chunk), transactions.c.confirmed.is_(None))
                .values(confirmed=milestone_index)
            )

    @staticmethod
    def has_pending_spends(conn: Connection) -> bool:
        """Whether any unconfirmed transaction spends (fast path for consistency checks)."""
        # Spelled as the partial index's condition (a literal 0), so it is used.
        row = conn.execute(
            select(transactions.c.seq)
            .where(transactions.c.value < literal_column("0"), transactions.c.confirmed.is_(None))
            .limit(1)
        ).first()
        return row is not None

    @staticmethod
    def pending_value_tails(conn: Connection, limit: int) -> list[str]:
        """A solid tail (the newest attachment's) of each of the ``limit`` oldest value
        bundles that spend, are unconfirmed and not applied: what a milestone confirms
        first, so payments do not wait behind a backlog of other tips."""
        # Spelled as the partial index's condition (a literal 0), so it is used.
        rows = conn.execute(
            select(transactions.c.bundle)
            .where(transactions.c.value < literal_column("0"), transactions.c.confirmed.is_(None))
            .order_by(transactions.c.seq)
        ).scalars()
        pending = list(dict.fromkeys(rows))
        applied = TangleStore.applied(conn, pending)
        tails: list[str] = []
        for bundle in pending:
            if len(tails) >= limit:
                break
            if bundle in applied:
                continue
            tail = conn.execute(
                select(transactions.c.hash)
                .where(
                    transactions.c.bundle_key == lookup_key(bundle),
                    transactions.c.bundle == bundle,
                    transactions.c.current_index == 0,
                    transactions.c.seq.not_in(select(unsolid.c.seq)),
                )
                .order_by(transactions.c.seq.desc())
                .limit(1)
            ).scalar()
            if tail is not None:
                tails.append(tail)
        return tails

    @staticmethod
    def pending_spends_covered(conn: Connection) -> bool:
        """Whether the ledger covers every pending spend at once: for each address, the
        unconfirmed bundles spending from it that are not applied (a reattached bundle
        counted once) together take at most its confirmed balance. Then every set of
        them is consistent, whatever cone it lies in (credits only add), so consistency
        checks need no cone walk. Wallets that spend only confirmed balances (the grid's
        and the households') keep it so; a double spend or a spend of unconfirmed change
        makes the checks walk cones again."""
        spends = TangleStore.pending_spends(conn, None)
        held = TangleStore.balances_of(conn, spends)
        return all(held.get(address, 0) >= spent for address, spent in spends.items())

    @staticmethod
    def value_entries(conn: Connection, bundles: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
        """Per bundle, its ``(address, value)`` entries with a non-zero value (once per index)."""
        found: dict[str, dict[int, tuple[str, int]]] = {}
        for chunk in _chunks(bundles):
            rows = conn.execute(
                select(
                    transactions.c.bundle,
                    transactions.c.current_index,
                    transactions.c.address,
                    transactions.c.value,
                ).where(_among(transactions.c.bundle, chunk), transactions.c.value != 0)
            )
            for row in rows:
                found.setdefault(row.bundle, {})[row.current_index] = (row.address, row.value)
        return {bundle: list(entries.values()) for bundle, entries in found.items()}

    @staticmethod
    def pending_spends(
        conn: Connection, addresses: Sequence[str] | None, excluding_bundles: Iterable[str] = ()
    ) -> dict[str, int]:
        """Amounts spent by stored bundles not yet applied to the ledger, per address:
        from ``addresses``, or (None) from every address an unconfirmed transaction
        spends from. A bundle attached more than once counts once."""
        if addresses is None:
            # Spelled as the partial index's condition (a literal 0), so it is used.
            spending = [
                and_(transactions.c.value < literal_column("0"), transactions.c.confirmed.is_(None))
            ]
        else:
            spending = [
                and_(_among(transactions.c.address, chunk), transactions.c.value < 0)
                for chunk in _chunks(addresses)
            ]
        excluded = set(excluding_bundles)
        spends: dict[tuple[str, int], tuple[str, int]] = {}
        for condition in spending:
            rows = conn.execute(
                select(
                    transactions.c.bundle,
                    transactions.c.current_index,
                    transactions.c.address,
                    transactions.c.value,
                ).where(condition, transactions.c.bundle.not_in(select(applied_bundles.c.bundle)))
            )
            for row in rows:
                if row.bundle not in excluded:
                    spends[(row.bundle, row.current_index)] = (row.address, -row.value)
        totals: dict[str, int] = {}
        for address, amount in spends.values():
            totals[address] = totals.get(address, 0) + amount
        return totals

    # -- ledger ----------------------------------------------------------------

    @staticmethod
    def balances_of(conn: Connection, addresses: Iterable[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(list(set(addresses))):
            rows = conn.execute(
                select(balances.c.address, balances.c.balance).where(balances.c.address.in_(chunk))
            )
            found.update({row.address: int(row.balance) for row in rows})
        return found

    @staticmethod
    def set_balances(conn: Connection, new_balances: Mapping[str, int]) -> None:
        existing = TangleStore.balances_of(conn, new_balances)
        for address, balance in sorted(new_balances.items()):
            if address in existing:
                if balance == 0:
                    conn.execute(delete(balances).where(balances.c.address == address))
                else:
                    conn.execute(
                        update(balances)
                        .where(balances.c.address == address)
                        .values(balance=balance)
                    )
            elif balance != 0:
                conn.execute(insert(balances).values(address=address, balance=balance))

    @staticmethod
    def applied(conn: Connection, bundles: Iterable[str]) -> set[str]:
        return _existing(conn, applied_bundles.c.bundle, bundles)

    @staticmethod
    def mark_applied(conn: Connection, bundles: Sequence[str], milestone_index: int) -> None:
        if bundles:
            conn.execute(
                insert(applied_bundles),
                [{"bundle": b, "milestone": milestone_index} for b in bundles],
            )

    @staticmethod
    def add_spent(conn: Connection, addresses: Iterable[str]) -> None:
        wanted = set(addresses)
        if not wanted:
            return
        missing = wanted - TangleStore.spent(conn, wanted)
        if missing:
            conn.execute(insert(spent_addresses), [{"address": a} for a in sorted(missing)])

    @staticmethod
    def spent(conn: Connection, addresses: Iterable[str]) -> set[str]:
        return _existing(conn, spent_addresses.c.address, addresses)

    # -- milestones ------------------------------------------------------------

    @staticmethod
    def milestone(conn: Connection, index: int) -> MilestoneRecord | None:
        row = conn.execute(select(milestones).where(milestones.c.index == index)).first()
        return None if row is None else MilestoneRecord(*row)

    @staticmethod
    def milestone_by_hash(conn: Connection, tail: str) -> MilestoneRecord | None:
        row = conn.execute(select(milestones).where(milestones.c.hash == tail)).first()
        return None if row is None else MilestoneRecord(*row)

    @staticmethod
    def latest_milestone(conn: Connection, applied_only: bool = False) -> MilestoneRecord | None:
        query = select(milestones).order_by(milestones.c.index.desc()).limit(1)
        if applied_only:
            query = query.where(milestones.c.applied.is_(True))
        row = conn.execute(query).first()
        return None if row is None else MilestoneRecord(*row)

    @staticmethod
    def add_milestone(conn: Connection, record: MilestoneRecord) -> None:
        conn.execute(
            insert(milestones).values(
                index=record.index,
                hash=record.hash,
                signing_address=record.signing_address,
                next_address=record.next_address,
                applied=record.applied,
                timestamp=record.timestamp,
            )
        )

    @staticmethod
    def mark_milestone_applied(conn: Connection, index: int) -> None:
        conn.execute(update(milestones).where(milestones.c.index == index).values(applied=True))

    @staticmethod
    def tails_at(conn: Connection, address: str, tag: str) -> list[TransactionInfo]:
        rows = conn.execute(
            _infos_where(
                _equals(transactions.c.address, address),
                _equals(transactions.c.tag, tag),
                transactions.c.current_index == 0,
            ).order_by(transactions.c.seq)
        )
        return [_info(row) for row in rows]

    # -- neighbours --------------------------------------------------------------

    @staticmethod
    def neighbor_rows(conn: Connection) -> list[dict[str, Any]]:
        rows = conn.execute(select(neighbors).order_by(neighbors.c.url))
        return [dict(row._mapping) for row in rows]

    @staticmethod
    def add_neighbor(conn: Connection, url: str) -> bool:
        if conn.execute(select(neighbors.c.url).where(neighbors.c.url == url)).first():
            return False
        conn.execute(
            insert(neighbors).values(
                url=url,
                cursor=0,
                all_transactions=0,
                invalid_transactions=0,
                new_transactions=0,
                sent_transactions=0,
            )
        )
        return True

    @staticmethod
    def remove_neighbor(conn: Connection, url: str) -> bool:
        return bool(conn.execute(delete(neighbors).where(neighbors.c.url == url)).rowcount)

    @staticmethod
    def update_neighbor(
        conn: Connection,
        url: str,
        *,
        cursor: int | None = None,
        received: int = 0,
        invalid: int = 0,
        new: int = 0,
        sent: int = 0,
    ) -> None:
        values: dict[str, Any] = {
            "all_transactions": neighbors.c.all_transactions + received,
            "invalid_transactions": neighbors.c.invalid_transactions + invalid,
            "new_transactions": neighbors.c.new_transactions + new,
            "sent_transactions": neighbors.c.sent_transactions + sent,
        }
        if cursor is not None:
            values["cursor"] = cursor
        conn.execute(update(neighbors).where(neighbors.c.url == url).values(**values))
