"""The OpAMP server's state: agents, config versions, assignments, history, audit log, rollout overrides.

Two stores behind one interface (:class:`Store`): SQLite (this module; the embedded default, zero set-up)
and PostgreSQL (``store_pg``: several nodes on one database). They take the same operations, written in
the SQL both speak (``?`` placeholders, ``INSERT ... ON CONFLICT``, ``RETURNING``), and keep the same
promise: nothing acknowledged is lost. The schema is versioned (:data:`MIGRATIONS`); a store checks the
version at start, applies what is missing, and refuses a database from a newer otelcockpit in one line.

SQLite durability: WAL mode with ``synchronous=NORMAL``. In WAL mode a transaction is durable against a crash
of the *process* (kill -9) as soon as COMMIT returns, because the commit has been written to the WAL
file (it sits in the OS page cache, which survives the process); only a power loss or OS crash can
roll back the last transactions, and even then the database stays consistent. The guarantee we make is
"kill -9 at any moment and restart: no acknowledged write is lost", so every state change of an agent
(description, health, effective config, remote-config status, failed hashes, offers, restart requests)
and every admin mutation is committed *before* its reply goes out: the caller awaits ``write()``.

Throughput: group commit on the event loop's own thread. ``write()`` queues its statements and
awaits a future; a flush scheduled for the end of the current event-loop step runs everything queued
so far in ONE transaction and resolves the futures after COMMIT. So 10,000 agents reporting at once
cost a handful of commits, not 10,000, and no thread hand-off or GIL convoy slows the hot path (an
earlier writer thread spent most of its time waiting for the GIL). If a statement fails, the batch is
rolled back and every submission is retried in its own transaction, so only the bad one fails. WAL
auto-checkpointing is off on the writing connection; a background thread runs PASSIVE checkpoints on
its own connection, so the fsyncs of checkpointing never block the event loop.

Heartbeat-only messages (nothing changed but ``sequence_num`` and ``last_seen``) are not acknowledged
writes: they are coalesced in memory per agent (``touch()``) and written with the next transaction, at
least once a second. Losing the last second of them in a crash only means the agent's next message
looks like a sequence gap, and the server asks it for its full state, which is the protocol's own
recovery path.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from otelcockpit.opamp_server.core import AgentState, shared_components
from otelcockpit.opamp_server.proto import opamp_pb2 as pb

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    uid BLOB PRIMARY KEY,
    transport TEXT NOT NULL,
    seq INTEGER NOT NULL,
    capabilities INTEGER NOT NULL,
    online INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    description BLOB,
    health BLOB,
    effective_config BLOB,
    remote_config_status BLOB,
    package_statuses BLOB,
    custom_capabilities BLOB,
    available_components BLOB,
    connection_settings_status BLOB,
    full_state_requested_at REAL NOT NULL DEFAULT 0,
    desired_name TEXT,
    desired_version INTEGER,
    desired_hash BLOB,
    offered_hash BLOB,
    offered_at REAL NOT NULL DEFAULT 0,
    failed_hashes TEXT NOT NULL DEFAULT '{}',
    pending_restart INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS config_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    hash TEXT NOT NULL,
    files TEXT NOT NULL,
    author TEXT NOT NULL,
    note TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    config TEXT NOT NULL,
    version INTEGER NOT NULL,
    selector TEXT NOT NULL,
    priority INTEGER NOT NULL,
    author TEXT NOT NULL,
    created_at TEXT NOT NULL,
    deleted_at TEXT
);
CREATE TABLE IF NOT EXISTS config_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid BLOB NOT NULL,
    hash TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS config_history_uid ON config_history (uid, id);
CREATE TABLE IF NOT EXISTS rollout_overrides (
    uid BLOB PRIMARY KEY,
    config TEXT NOT NULL,
    version INTEGER NOT NULL,
    rollout TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

# Schema versions: (version, statements). Version 1 is the schema every database had before versions
# were recorded (a database with an ``agents`` table and no version is stamped 1). Statements are in the
# SQL both stores speak; ``store_pg`` translates the types (BLOB, REAL, INTEGER, AUTOINCREMENT).
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, tuple(x.strip() for x in SCHEMA.split(";") if x.strip())),
    (
        2,
        (
            # the node that handled the agent's last message (several nodes on one database), and the
            # agent's own heartbeat interval as measured
            "ALTER TABLE agents ADD COLUMN node TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE agents ADD COLUMN heartbeat_seconds REAL NOT NULL DEFAULT 0",
            "CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, started_at REAL NOT NULL, "
            "beat_at REAL NOT NULL, opamp_url TEXT NOT NULL, admin_url TEXT NOT NULL)",
        ),
    ),
    (
        3,
        (
            # what the agent reported about its config when it last (re)started (JSON)
            "ALTER TABLE agents ADD COLUMN came_up TEXT",
        ),
    ),
    (
        4,
        (
            # AvailableComponents sets by their hash, stored once: an agent's row keeps only the hash
            # (a contrib collector's set is ~10 KB; a fleet runs a few distributions)
            "CREATE TABLE IF NOT EXISTS component_sets (hash BLOB PRIMARY KEY, components BLOB NOT NULL)",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
# Append-only config versions: enforced by the database itself (dialect-specific triggers).
SQLITE_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS config_versions_no_update BEFORE UPDATE ON config_versions "
    "BEGIN SELECT RAISE(ABORT, 'config versions are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS config_versions_no_delete BEFORE DELETE ON config_versions "
    "BEGIN SELECT RAISE(ABORT, 'config versions are append-only'); END",
)


class SchemaError(RuntimeError):
    """The database's schema cannot be used by this otelcockpit (one line for the operator)."""


def check_version(found: int | None, where: str) -> None:
    if found is not None and found > SCHEMA_VERSION:
        raise SchemaError(
            f"{where}: the database schema is version {found}, newer than this otelcockpit knows "
            f"({SCHEMA_VERSION}): upgrade otelcockpit (or point it at another database)"
        )


PROTO_COLUMNS: dict[str, type] = {
    "description": pb.AgentDescription,
    "health": pb.ComponentHealth,
    "effective_config": pb.EffectiveConfig,
    "remote_config_status": pb.RemoteConfigStatus,
    "package_statuses": pb.PackageStatuses,
    "custom_capabilities": pb.CustomCapabilities,
    "available_components": pb.AvailableComponents,
    "connection_settings_status": pb.ConnectionSettingsStatus,
}

# changed-name -> columns written
_COLUMNS_OF: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in PROTO_COLUMNS},
    "transport": ("transport",),
    "capabilities": ("capabilities",),
    "online": ("online",),
    "full_state_requested": ("full_state_requested_at",),
    "offered": ("offered_hash", "offered_at"),
    "failed_hashes": ("failed_hashes",),
    "pending_restart": ("pending_restart",),
    "desired": ("desired_name", "desired_version", "desired_hash"),
    "node": ("node",),
    "heartbeat": ("heartbeat_seconds",),
    "came_up": ("came_up",),
}

ALL_COLUMNS = (
    "uid",
    "transport",
    "seq",
    "capabilities",
    "online",
    "first_seen",
    "last_seen",
    *PROTO_COLUMNS,
    "full_state_requested_at",
    "desired_name",
    "desired_version",
    "desired_hash",
    "offered_hash",
    "offered_at",
    "failed_hashes",
    "pending_restart",
    "node",
    "heartbeat_seconds",
    "came_up",
)

class Tx(Protocol):
    """What an op that is a function gets: one statement at a time, inside the write's transaction."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...  # RETURNING: its first value


# A write is a list of ops: (SQL, params), or a function of the transaction (for a write that needs a
# value an earlier statement returned). Each op's result: what its RETURNING gave, else None.
Op = tuple[str, Sequence[Any]] | Callable[[Tx], Any]
TOUCH_FLUSH_SECONDS = 1.0
U64_COLUMNS = frozenset({"seq", "capabilities"})
_TWO_64 = 1 << 64
_TWO_63 = 1 << 63


def u64_to_db(value: int) -> int:
    """A uint64 from the wire as SQLite's signed 64-bit INTEGER (two's complement), losslessly.

    ``sequence_num`` and ``capabilities`` are uint64 in the OpAMP spec; SQLite (and PostgreSQL's
    BIGINT) hold signed 64-bit values, so values of 2**63 and above are stored as negatives.
    """
    if not 0 <= value < _TWO_64:
        raise ValueError(f"{value} is not a uint64")
    return value - _TWO_64 if value >= _TWO_63 else value


def u64_from_db(value: int) -> int:
    return value + _TWO_64 if value < 0 else value


_INSERT_SET = "INSERT INTO component_sets (hash, components) VALUES (?, ?) ON CONFLICT (hash) DO NOTHING"


def _components_ref(ac: pb.AvailableComponents) -> bytes:
    """What an agent's row keeps of a component set: the set itself when it has no hash, else the
    hash alone (the set is in ``component_sets``)."""
    if ac.hash and ac.components:
        return pb.AvailableComponents(hash=ac.hash).SerializeToString()
    return ac.SerializeToString()


def _set_ops(state: AgentState, stored: set[bytes] | None) -> list[Op]:
    """Store the agent's component set unless the store has it (``stored``: the sets this store's
    process wrote or read; None: not known, write it, once per database thanks to ON CONFLICT)."""
    ac = state.available_components
    if ac is None or not ac.hash or not ac.components or (stored is not None and ac.hash in stored):
        return []
    if stored is not None:
        stored.add(ac.hash)  # a write that fails leaves a row with the hash alone: the agent is asked again
    return [(_INSERT_SET, [ac.hash, ac.SerializeToString()])]


def unresolved_sets(states: Iterable[AgentState]) -> list[bytes]:
    """Hashes of component sets that agents read from their rows hold without the set itself."""
    return sorted({
        ac.hash for s in states if (ac := s.available_components) is not None and ac.hash and not ac.components
    })  # fmt: skip


def resolve_sets(states: Iterable[AgentState], rows: Iterable[Any], stored: set[bytes]) -> None:
    """Give agents whose row keeps a set's hash the set itself, from ``component_sets`` rows (a set
    not found stays a hash: the agent is asked for its components when it next reports that hash)."""
    for r in rows:
        ac = shared_components(pb.AvailableComponents.FromString(bytes(r["components"])))
        stored.add(ac.hash)
    for s in states:
        ac = s.available_components
        if ac is not None and ac.hash and not ac.components:
            s.available_components = shared_components(ac)


def sets_query(hashes: Sequence[bytes]) -> tuple[str, list[bytes]]:
    return f"SELECT * FROM component_sets WHERE hash IN ({','.join('?' * len(hashes))})", list(hashes)


def _column_value(state: AgentState, column: str) -> Any:
    if column in PROTO_COLUMNS:
        value = getattr(state, column)
        if value is None:
            return None
        return _components_ref(value) if column == "available_components" else value.SerializeToString()
    if column == "online":
        return int(state.online)
    if column == "pending_restart":
        return int(state.pending_restart)
    if column == "failed_hashes":
        return json.dumps({h.hex(): e for h, e in state.failed_hashes.items()})
    if column == "came_up":
        return None if state.came_up is None else json.dumps(state.came_up, sort_keys=True)
    if column == "full_state_requested_at":
        return state.full_state_requested_at
    if column.startswith("desired_"):
        d = state.desired
        if d is None:
            return None
        return {"desired_name": d.name, "desired_version": d.version, "desired_hash": d.hash}[column]
    if column in U64_COLUMNS:
        return u64_to_db(getattr(state, column))
    if column == "heartbeat_seconds":
        return state.heartbeat
    return getattr(state, column)


_UPSERT_AGENT = (
    f"INSERT INTO agents ({', '.join(ALL_COLUMNS)}) VALUES ({', '.join('?' * len(ALL_COLUMNS))}) "
    f"ON CONFLICT (uid) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in ALL_COLUMNS if c != 'uid')}"
)


def agent_ops(state: AgentState, changed: Iterable[str], stored_sets: set[bytes] | None = None) -> list[Op]:
    """SQL that stores ``state``: the whole row for a new agent, else only the changed columns (and its
    component set, when the store may not have it: ``stored_sets``, the store's)."""
    changed = set(changed)
    sets = _set_ops(state, stored_sets) if "new" in changed or "available_components" in changed else []
    if "new" in changed:
        return [*sets, (_UPSERT_AGENT, [_column_value(state, c) for c in ALL_COLUMNS])]
    cols_list = ["seq", "last_seen", "node"]
    for name in changed:
        cols_list.extend(_COLUMNS_OF.get(name, ()))
    cols_t = tuple(dict.fromkeys(cols_list))
    sql = f"UPDATE agents SET {', '.join(c + ' = ?' for c in cols_t)} WHERE uid = ?"
    return [*sets, (sql, [*(_column_value(state, c) for c in cols_t), state.uid])]


def row_to_state(row: Any) -> tuple[AgentState, tuple[str, int, bytes] | None]:
    """An AgentState from its row, plus the stored desired (name, version, hash) if any."""
    s = AgentState(uid=bytes(row["uid"]), first_seen=row["first_seen"], last_seen=row["last_seen"])
    s.transport = row["transport"]
    s.seq = u64_from_db(row["seq"])
    s.capabilities = u64_from_db(row["capabilities"])
    s.online = bool(row["online"])
    for col, cls in PROTO_COLUMNS.items():
        blob = row[col]
        if blob is not None:
            value = cls.FromString(blob)
            setattr(s, col, shared_components(value) if col == "available_components" else value)
    s.full_state_requested_at = row["full_state_requested_at"]
    s.offered_hash = bytes(row["offered_hash"]) if row["offered_hash"] is not None else None
    s.offered_at = row["offered_at"]
    s.failed_hashes = {bytes.fromhex(h): e for h, e in json.loads(row["failed_hashes"]).items()}
    s.pending_restart = bool(row["pending_restart"])
    s.node = row["node"] or ""
    s.heartbeat = float(row["heartbeat_seconds"] or 0.0)
    raw = row["came_up"]
    s.came_up = json.loads(raw) if raw else None
    desired = None
    if row["desired_name"] is not None:
        desired = (row["desired_name"], row["desired_version"], bytes(row["desired_hash"]))
    return s, desired


class StoreClosed(RuntimeError):
    pass


class StoreUnavailable(RuntimeError):
    """The database cannot be reached: nothing was written; try again later."""


Pending = tuple[list[Op], "asyncio.Future[list[Any]] | None"]
CHECKPOINT_SECONDS = 2.0
# The write-ahead log's bound. A background thread checkpoints (PASSIVE) every CHECKPOINT_SECONDS,
# but under writes that never pause a passive checkpoint never catches up with the writer, the log
# is never reset, and it grows without bound (gigabytes in minutes under hostile traffic). So after
# each commit the writer looks at the log's size and, past WAL_LIMIT_BYTES, checkpoints it to the end
# and truncates it (TRUNCATE), waiting at most WAL_BUSY_MS for readers. The log therefore stays
# under WAL_LIMIT_BYTES plus one group commit (what arrived in one event-loop step).
WAL_LIMIT_BYTES = 64 * 1024 * 1024
WAL_BUSY_MS = 500
BUSY_TIMEOUT_MS = 30_000


class Store(Protocol):
    """What the hub, the rollout service and the admin API need of a store (SQLite or PostgreSQL)."""

    dialect: str  # "sqlite" | "postgresql"
    shared: bool  # several server nodes use it at once (PostgreSQL)
    where: str  # for messages: the file, or the database URL without its password
    stored_sets: set[bytes]  # component sets this process wrote to or read from the database

    async def start(self) -> None: ...

    # committed when it returns; ``agents``: the agents whose rows it changes (other nodes reload them)
    async def write(self, ops: list[Op], agents: Iterable[bytes] = ()) -> list[Any]: ...

    def write_sync(self, ops: list[Op]) -> list[Any]: ...  # start-up only

    def touch(self, state: AgentState) -> None: ...  # a heartbeat: written with the next transaction

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...  # start-up only

    async def aquery(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    def load_agents(self) -> list[tuple[AgentState, tuple[str, int, bytes] | None]]: ...

    def notify_op(self, kind: str, data: dict[str, Any]) -> Op | None: ...  # an event for the other nodes

    def conflict(self, exc: BaseException) -> bool: ...  # a unique key another writer took first

    def journal_db(self) -> Any: ...  # the rollout journal's database (otelcockpit.rollout.journal.Db)

    def stats(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class _SqliteTx:
    __slots__ = ("con",)

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return _exec(self.con, (sql, params))


def _exec(con: sqlite3.Connection, op: Op) -> Any:
    if callable(op):
        return op(_SqliteTx(con))
    sql, params = op
    cur = con.execute(sql, params)
    if "RETURNING" in sql:
        row = cur.fetchone()
        return row[0] if row is not None else None
    return None


def _migrate_sqlite(con: sqlite3.Connection, where: str) -> int:
    """Apply the missing schema versions in one transaction; the version the database is at."""
    con.execute("BEGIN IMMEDIATE")
    try:
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = con.execute("SELECT MAX(version) FROM schema_version").fetchone()
        found = row[0] if row else None
        if found is None and con.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agents'"
        ).fetchone():
            found = 1  # a database from before versions were recorded
            con.execute("INSERT INTO schema_version VALUES (1)")
        check_version(found, where)
        for version, statements in MIGRATIONS:
            if found is not None and version <= found:
                continue
            for statement in statements:
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?)", (version,))
        for trigger in SQLITE_TRIGGERS:
            con.execute(trigger)
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


class SqliteStore:
    """One SQLite file. Writes are group-committed on the event loop's thread (see the module doc)."""

    dialect = "sqlite"
    shared = False

    def __init__(self, path: Path, *, wal_limit: int = WAL_LIMIT_BYTES) -> None:
        self.path = path
        self.where = str(path)
        self.stored_sets: set[bytes] = set()  # component sets this process wrote or read (not sent again)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.wal_limit = wal_limit
        self.wal_path = path.with_name(path.name + "-wal")
        self.wal_truncations = 0
        self._con = self._connect()
        _migrate_sqlite(self._con, self.where)
        self._con.execute("PRAGMA wal_autocheckpoint=0")
        self._con.execute(f"PRAGMA journal_size_limit={int(wal_limit)}")
        self._pending: list[tuple[list[Op], asyncio.Future[list[Any]]]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._touch: dict[bytes, tuple[int, float, float, str, float]] = {}
        self._closed = False
        self._stop = threading.Event()
        # The background PASSIVE checkpoint and the writer's TRUNCATE exclude each other: while one
        # runs the other would only get SQLITE_BUSY, and under load the log outgrows its bound.
        self._checkpoint_lock = threading.Lock()
        self._touch_task: asyncio.Task[None] | None = None
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="opamp-checkpoint", daemon=True
        )
        self._checkpointer.start()

    async def start(self) -> None:
        return None

    def notify_op(self, kind: str, data: dict[str, Any]) -> Op | None:
        return None  # one node: nobody else to tell

    def conflict(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def journal_db(self) -> Any:
        from otelcockpit.rollout.journal import SqliteDb

        return SqliteDb(self.path.with_name(self.path.stem + ".rollouts.sqlite3"))

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
        )
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    # ---- reads ----

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._con.execute(sql, params).fetchall()

    async def aquery(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """A read on its own short-lived connection in a thread (never blocks the event loop)."""

        def run() -> list[sqlite3.Row]:
            con = sqlite3.connect(self.path, timeout=30)
            con.row_factory = sqlite3.Row
            try:
                return con.execute(sql, params).fetchall()
            finally:
                con.close()

        return await asyncio.to_thread(run)

    def load_agents(self) -> list[tuple[AgentState, tuple[str, int, bytes] | None]]:
        out = [row_to_state(r) for r in self.query("SELECT * FROM agents")]
        resolve_sets((s for s, _ in out), self.query("SELECT * FROM component_sets"), self.stored_sets)
        return out

    # ---- writes ----

    async def write(self, ops: list[Op], agents: Iterable[bytes] = ()) -> list[Any]:
        """Commit ops durably; returns each op's result after COMMIT, so the caller may acknowledge.
        (``agents`` is for stores shared by several nodes; one SQLite file has nobody to tell.)"""
        if self._closed:
            raise StoreClosed("the store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((ops, fut))
        if self._flush_handle is None:
            self._flush_handle = loop.call_soon(self.flush)
        return await fut

    def write_sync(self, ops: list[Op]) -> list[Any]:
        """Commit ops now (start-up and tests; not from inside a running flush)."""
        self.flush()
        result = self._run_batch([ops], {})[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def touch(self, state: AgentState) -> None:
        """Remember seq/last_seen of a heartbeat-only message; written with the next transaction."""
        self._touch[state.uid] = (
            u64_to_db(state.seq), state.last_seen, state.full_state_requested_at, state.node, state.heartbeat
        )
        if self._touch_task is None and not self._closed:
            self._touch_task = asyncio.get_running_loop().create_task(self._touch_loop())

    async def _touch_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(TOUCH_FLUSH_SECONDS)
            if self._touch and not self._pending:
                self.flush()

    def flush(self) -> None:
        """Commit everything queued (and the coalesced heartbeats) in one transaction."""
        self._flush_handle = None
        pending, self._pending = self._pending, []
        touches, self._touch = self._touch, {}
        if not pending and not touches:
            return
        results = self._run_batch([ops for ops, _ in pending], touches)
        self._bound_wal()
        for (_, fut), res in zip(pending, results, strict=True):
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)

    def stats(self) -> dict[str, Any]:
        """Sizes of the database file and its write-ahead log, and how often the log was truncated."""

        def size(p: Path) -> int:
            try:
                return os.stat(p).st_size
            except OSError:
                return 0

        return {
            "kind": "sqlite",
            "db_bytes": size(self.path),
            "wal_bytes": size(self.wal_path),
            "wal_limit_bytes": self.wal_limit,
            "wal_truncations": self.wal_truncations,
        }

    def _bound_wal(self) -> None:
        """Checkpoint and truncate the log once it is past its bound (see WAL_LIMIT_BYTES)."""
        try:
            size = os.stat(self.wal_path).st_size
        except OSError:
            return
        if size <= self.wal_limit:
            return
        con = self._con
        try:
            con.execute(f"PRAGMA busy_timeout={WAL_BUSY_MS}")
            with self._checkpoint_lock:
                busy = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                self.wal_truncations += 1
        except sqlite3.Error:
            pass  # a reader held on for too long: the next commit tries again
        finally:
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _run_batch(
        self, batch: list[list[Op]], touches: dict[bytes, tuple[int, float, float, str, float]]
    ) -> list[list[Any] | BaseException]:
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
            self._write_touches(con, touches)
            results: list[list[Any] | BaseException] = [[_exec(con, op) for op in ops] for ops in batch]
            con.execute("COMMIT")
            return results
        except Exception:  # any failure: retry one by one below, so no caller waits forever
            if con.in_transaction:
                con.execute("ROLLBACK")
        # Something failed: one transaction per submission, so only the bad one fails.
        out: list[list[Any] | BaseException] = []
        if touches:
            try:
                con.execute("BEGIN IMMEDIATE")
                self._write_touches(con, touches)
                con.execute("COMMIT")
            except Exception:
                if con.in_transaction:
                    con.execute("ROLLBACK")
        for ops in batch:
            try:
                con.execute("BEGIN IMMEDIATE")
                ids = [_exec(con, op) for op in ops]
                con.execute("COMMIT")
                out.append(ids)
            except Exception as exc:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                out.append(exc)
        return out

    @staticmethod
    def _write_touches(con: sqlite3.Connection, touches: dict[bytes, tuple[int, float, float, str, float]]) -> None:
        if touches:
            con.executemany(TOUCH_SQL, [(*t, uid) for uid, t in touches.items()])

    def _checkpoint_loop(self) -> None:
        con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            while not self._stop.wait(CHECKPOINT_SECONDS):
                try:
                    with self._checkpoint_lock:
                        con.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass
        finally:
            con.close()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._touch_task is not None:
            self._touch_task.cancel()
        self._stop.set()
        self._checkpointer.join(timeout=30)
        try:
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self._con.close()


TOUCH_SQL = (
    "UPDATE agents SET seq = ?, last_seen = ?, full_state_requested_at = ?, node = ?, heartbeat_seconds = ? WHERE uid = ?"
)


def open_store(target: str | Path) -> Store:
    """``postgresql://...`` (or ``postgres://``): a PostgreSQL store; anything else: a SQLite file."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        from otelcockpit.opamp_server.store_pg import PostgresStore

        return PostgresStore(text)
    return SqliteStore(Path(target))
