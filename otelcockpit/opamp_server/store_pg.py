"""PostgreSQL store: several ``otelcockpit serve`` nodes on one database (psycopg 3 and its pool).

The same operations and the same promise as the SQLite store (``store.py``): a write is committed
before its reply goes out, so nothing acknowledged is lost when a node dies (the database keeps it);
heartbeat-only updates are coalesced and written at least once a second.

* Writes are group-committed by one writer task per node on its own connection: everything queued is
  sent in ONE transaction, pipelined (psycopg's pipeline mode: no round trip per statement). A batch
  that fails is retried submission by submission, so only the bad one fails.
* Other nodes are told what changed with ``pg_notify`` on the channel ``otelcockpit``, inside the very
  transaction of the change (a notification is only delivered if the change committed): the ids of the
  agents a batch changed, and kinds like ``configs`` or ``assignments``. :meth:`PostgresStore.listen`
  is the receiving end.
* When the database goes away, writes fail at once with :class:`StoreUnavailable` (the agent is told to
  retry later; the admin API answers 503 with Retry-After), heartbeats wait in memory, and everything
  resumes when the database answers again, without a restart.
* The schema is the SQLite one with PostgreSQL's types (BYTEA, DOUBLE PRECISION, BIGINT, BIGSERIAL), and
  the same versions (``store.MIGRATIONS``), applied under an advisory lock so nodes starting together do
  not race.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import RowMaker
from psycopg_pool import AsyncConnectionPool

from otelcockpit.opamp_server.core import AgentState
from otelcockpit.opamp_server.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    TOUCH_FLUSH_SECONDS,
    TOUCH_SQL,
    Op,
    StoreClosed,
    StoreUnavailable,
    check_version,
    resolve_sets,
    row_to_state,
    u64_to_db,
)

CHANNEL = "otelcockpit"
NOTIFY_LIMIT = 7000  # bytes of one notification's payload (PostgreSQL's limit is 8000)
MIGRATION_LOCK = 734_225_001  # pg_advisory_lock key while migrating
PG_TRIGGERS = (
    "CREATE OR REPLACE FUNCTION otelcockpit_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'config versions are append-only'; END; $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS config_versions_append_only ON config_versions",
    "CREATE TRIGGER config_versions_append_only BEFORE UPDATE OR DELETE ON config_versions "
    "FOR EACH ROW EXECUTE FUNCTION otelcockpit_append_only()",
)


def pg_sql(text: str) -> str:
    """A statement in the SQL both stores speak, for PostgreSQL: ``?`` placeholders become ``%s``."""
    return text.replace("%", "%%").replace("?", "%s")


_DDL_RULES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
)


def pg_ddl(statement: str) -> str:
    """A schema statement written for SQLite, with PostgreSQL's types."""
    for rx, to in _DDL_RULES:
        statement = rx.sub(to, statement)
    return statement


def redact(url: str) -> str:
    """The URL without its password (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Row(tuple):  # type: ignore[type-arg]
    """A row read by position or by column name (like sqlite3.Row)."""

    __slots__ = ()
    _names: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def row_factory(cursor: Any) -> RowMaker[Row]:
    desc = cursor.description or []
    names = {d.name: i for i, d in enumerate(desc)}
    cls = type("PgRow", (Row,), {"__slots__": (), "_names": names})

    def make(values: Sequence[Any]) -> Row:
        return cls(values)

    return make


class _PgTx:
    __slots__ = ("cur",)

    def __init__(self, cur: Any) -> None:
        self.cur = cur

    async def aexecute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        await self.cur.execute(pg_sql(sql), params)
        if "RETURNING" in sql:
            row = await self.cur.fetchone()
            return row[0] if row is not None else None
        return None


async def _run_op(tx: _PgTx, op: Op) -> Any:
    """One op. A function op is written for a synchronous ``tx``: it is replayed with the results of the
    statements run so far until it completes (its statements run one at a time, in order; it must do
    nothing but call ``tx.execute``)."""
    if not callable(op):
        sql, params = op
        return await tx.aexecute(sql, params)
    results: list[Any] = []
    while True:
        try:
            return op(_Replay(results))
        except _NeedsAsync as need:
            results.append(await tx.aexecute(need.sql, need.params))


class _NeedsAsync(Exception):
    def __init__(self, sql: str, params: Sequence[Any]) -> None:
        super().__init__(sql)
        self.sql, self.params = sql, params


class _Replay:
    """A synchronous ``tx`` that answers the statements already run with their results, and stops at
    the first new one (raised to :func:`_run_op`, which runs it and replays)."""

    def __init__(self, results: list[Any]) -> None:
        self.results = results
        self.i = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.i < len(self.results):
            self.i += 1
            return self.results[self.i - 1]
        raise _NeedsAsync(sql, params)


class PostgresStore:
    dialect = "postgresql"
    shared = True

    def __init__(self, url: str, *, max_connections: int = 8, connect_timeout: float = 10.0) -> None:
        self.url = url
        self.where = redact(url)
        self.stored_sets: set[bytes] = set()  # component sets this process wrote or read (not sent again)
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        try:
            self._sync = psycopg.connect(url, autocommit=True, connect_timeout=int(connect_timeout), row_factory=row_factory)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to {self.where}: {_one_line(exc)}") from None
        self._migrate()
        self._pool: AsyncConnectionPool | None = None
        self._pending: list[tuple[list[Op], list[bytes], asyncio.Future[list[Any]]]] = []
        self._wake = asyncio.Event() if _loop_running() else None
        self._touch: dict[bytes, tuple[int, float, float, str, float]] = {}
        self._closed = False
        self._writer: asyncio.Task[None] | None = None
        self._writer_conn: psycopg.AsyncConnection[Any] | None = None
        self.available = True  # False while the database does not answer
        self.down_since = 0.0
        self.notifications_sent = 0

    # ---- start-up ---------------------------------------------------------------------------
    def _migrate(self) -> None:
        con = self._sync
        con.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            with con.transaction():
                con.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
                found = con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
                check_version(found, self.where)
                for version, statements in MIGRATIONS:
                    if found is not None and version <= found:
                        continue
                    for statement in statements:
                        con.execute(pg_ddl(statement))
                    con.execute("INSERT INTO schema_version VALUES (%s)", (version,))
                for trigger in PG_TRIGGERS:
                    con.execute(trigger)
        finally:
            con.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self.max_connections,
            open=False,
            kwargs={"autocommit": True, "row_factory": row_factory},
            timeout=self.connect_timeout,
            reconnect_timeout=0,  # keep trying for ever: the database may come back
        )
        await self._pool.open(wait=False)
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    # ---- reads ------------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._sync.execute(pg_sql(sql), params).fetchall()

    async def aquery(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._pool is None:
            return await asyncio.to_thread(self.query, sql, params)
        if not self.available:  # known to be away: say so at once instead of waiting for the pool
            raise StoreUnavailable(f"the database at {self.where} does not answer")
        try:
            async with self._pool.connection(timeout=self.connect_timeout) as con:
                cur = await con.execute(pg_sql(sql), params)
                return await cur.fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError) as exc:
            self._went_away()
            raise StoreUnavailable(f"the database at {self.where} does not answer: {_one_line(exc)}") from None
        except Exception as exc:
            if type(exc).__name__ == "PoolTimeout":
                self._went_away()
                raise StoreUnavailable(f"the database at {self.where} does not answer") from None
            raise

    def _went_away(self) -> None:
        """A read found the database away: writers and readers are told at once from now on, and a
        probe looks every second for it to come back."""
        if self.available and not self._closed:
            self.available = False
            self.down_since = time.time()
            asyncio.get_running_loop().create_task(self._probe())

    def load_agents(self) -> list[tuple[AgentState, tuple[str, int, bytes] | None]]:
        out = [row_to_state(r) for r in self.query("SELECT * FROM agents")]
        resolve_sets((s for s, _ in out), self.query("SELECT * FROM component_sets"), self.stored_sets)
        return out

    # ---- writes -----------------------------------------------------------------------------
    async def write(self, ops: list[Op], agents: Iterable[bytes] = ()) -> list[Any]:
        if self._closed:
            raise StoreClosed("the store is closed")
        if not self.available:
            raise StoreUnavailable(f"the database at {self.where} does not answer")
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((ops, list(agents), fut))
        assert self._wake is not None
        self._wake.set()
        return await fut

    def write_sync(self, ops: list[Op]) -> list[Any]:
        out: list[Any] = []
        with self._sync.transaction():
            for op in ops:
                if callable(op):
                    raise TypeError("write_sync takes plain statements")
                sql, params = op
                cur = self._sync.execute(pg_sql(sql), params)
                out.append(cur.fetchone()[0] if "RETURNING" in sql else None)
        return out

    def touch(self, state: AgentState) -> None:
        """A heartbeat: written by the writer with its next batch, within TOUCH_FLUSH_SECONDS."""
        self._touch[state.uid] = (
            u64_to_db(state.seq), state.last_seen, state.full_state_requested_at, state.node, state.heartbeat
        )

    def notify_op(self, kind: str, data: dict[str, Any]) -> Op | None:
        return ("SELECT pg_notify('" + CHANNEL + "', ?)", (json.dumps({"kind": kind, **data}),))

    def conflict(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)

    def _agents_notifications(self, node: str, uids: list[bytes]) -> list[Op]:
        out: list[Op] = []
        chunk: list[str] = []
        size = 0
        for uid in dict.fromkeys(uids):
            h = uid.hex()
            if size + len(h) + 3 > NOTIFY_LIMIT:
                out.append(self.notify_op("agents", {"node": node, "uids": chunk}))  # type: ignore[arg-type]
                chunk, size = [], 0
            chunk.append(h)
            size += len(h) + 3
        if chunk:
            out.append(self.notify_op("agents", {"node": node, "uids": chunk}))  # type: ignore[arg-type]
        return out

    node = ""  # set by the server: carried in the agents notifications

    async def _connect_writer(self) -> psycopg.AsyncConnection[Any]:
        if self._writer_conn is not None and not self._writer_conn.closed:
            return self._writer_conn
        self._writer_conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=int(self.connect_timeout), row_factory=row_factory
        )
        return self._writer_conn

    async def _write_loop(self) -> None:
        assert self._wake is not None
        backoff = 0.2
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), TOUCH_FLUSH_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            if not self._pending and not self._touch:
                continue
            pending, self._pending = self._pending, []
            touches, self._touch = self._touch, {}
            try:
                con = await self._connect_writer()
                results = await self._run_batch(con, pending, touches)
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                # The database is gone: nothing of this batch was committed. Writers are told now;
                # heartbeats wait for it to come back.
                if self._writer_conn is not None:
                    with suppress(Exception):
                        await self._writer_conn.close()
                self._writer_conn = None
                if self.available:
                    self.available = False
                    self.down_since = time.time()
                for key, value in touches.items():
                    self._touch.setdefault(key, value)
                err = StoreUnavailable(f"the database at {self.where} does not answer: {_one_line(exc)}")
                for _ops, _agents, fut in pending:
                    if not fut.done():
                        fut.set_exception(err)
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)
                self._wake.set()  # try again (heartbeats are waiting)
                asyncio.get_running_loop().create_task(self._probe())
                continue
            backoff = 0.2
            for (_ops, _agents, fut), res in zip(pending, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    async def _probe(self) -> None:
        """While the database is down, look every second whether it answers again."""
        while not self.available and not self._closed:
            try:
                con = await self._connect_writer()
                await con.execute("SELECT 1")
                self.available = True
                return
            except Exception:  # noqa: BLE001 - still down
                self._writer_conn = None
                await asyncio.sleep(1.0)

    async def _run_batch(
        self,
        con: psycopg.AsyncConnection[Any],
        pending: list[tuple[list[Op], list[bytes], asyncio.Future[list[Any]]]],
        touches: dict[bytes, tuple[int, float, float, str, float]],
    ) -> list[list[Any] | BaseException]:
        changed = [u for _ops, agents, _f in pending for u in agents]
        # Heartbeats written late (held while the database was away) are told like changes: the
        # other nodes' sync reads recent heartbeats only, and these carry the time they arrived.
        late_before = time.time() - 2 * TOUCH_FLUSH_SECONDS
        changed += [uid for uid, t in touches.items() if t[1] < late_before]
        try:
            async with con.transaction(), con.pipeline():
                cur = con.cursor()
                tx = _PgTx(cur)
                await self._write_touches(cur, touches)
                results: list[list[Any] | BaseException] = []
                for ops, _agents, _fut in pending:
                    results.append([await _run_op(tx, op) for op in ops])
                for op in self._agents_notifications(self.node, changed):
                    await _run_op(tx, op)
            self.notifications_sent += 1 if changed else 0
            return results
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except Exception:  # noqa: BLE001 - a bad statement: retry one by one so only it fails
            pass
        out: list[list[Any] | BaseException] = []
        if touches:
            with suppress(psycopg.Error):
                async with con.transaction():
                    await self._write_touches(con.cursor(), touches)
        for ops, agents, _fut in pending:
            try:
                async with con.transaction():
                    cur = con.cursor()
                    tx = _PgTx(cur)
                    ids = [await _run_op(tx, op) for op in ops]
                    for op in self._agents_notifications(self.node, agents):
                        await _run_op(tx, op)
                out.append(ids)
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out

    @staticmethod
    async def _write_touches(cur: Any, touches: dict[bytes, tuple[int, float, float, str, float]]) -> None:
        if touches:
            await cur.executemany(pg_sql(TOUCH_SQL), [(*t, uid) for uid, t in touches.items()])

    # ---- notifications ------------------------------------------------------------------------
    async def listen(self, on_reconnect: Callable[[], Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every notification of every node, parsed, for ever; after a lost connection it reconnects and
        calls ``on_reconnect`` (what was missed meanwhile must be read again)."""
        backoff = 0.2
        first = True
        while not self._closed:
            try:
                con = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=int(self.connect_timeout)
                )
            except psycopg.Error:
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)
                continue
            try:
                await con.execute(f"LISTEN {CHANNEL}")
                self.available = True  # it answers again (the probe would say so within a second)
                if not first and on_reconnect is not None:
                    try:
                        result = on_reconnect()
                        if asyncio.iscoroutine(result):
                            await result
                    except Exception:  # noqa: BLE001 - not read yet: reconnect and read it again
                        await asyncio.sleep(backoff)
                        backoff = min(5.0, backoff * 2)
                        continue
                first = False
                backoff = 0.2
                async for n in con.notifies():
                    try:
                        data = json.loads(n.payload)
                    except ValueError:
                        continue
                    if isinstance(data, dict):
                        yield data
            except (psycopg.Error, OSError):
                await asyncio.sleep(backoff)
            finally:
                with suppress(Exception):
                    await con.close()

    # ---- the rollout journal -----------------------------------------------------------------
    def journal_db(self) -> Any:
        return PgJournalDb(self.url, self.where)

    def stats(self) -> dict[str, Any]:
        size = None
        with suppress(psycopg.Error):
            size = self._sync.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        return {
            "kind": "postgresql",
            "database": self.where,
            "db_bytes": size,
            "available": self.available,
            "schema_version": SCHEMA_VERSION,
        }

    async def aclose(self) -> None:
        if self._closed:
            return
        # flush what is queued (a clean stop loses nothing)
        if self._pending or self._touch:
            assert self._wake is not None
            self._wake.set()
            deadline = time.monotonic() + 10
            while (self._pending or self._touch) and time.monotonic() < deadline and self.available:
                await asyncio.sleep(0.05)
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._writer
        if self._writer_conn is not None:
            with suppress(Exception):
                await self._writer_conn.close()
        if self._pool is not None:
            with suppress(Exception):
                await self._pool.close()
        with suppress(Exception):
            self._sync.close()


class PgJournalDb:
    """The rollout journal on PostgreSQL (otelcockpit.rollout.journal.Db): statements written for both
    databases, run here; the schema is the journal's, with PostgreSQL's types."""

    def __init__(self, url: str, where: str) -> None:
        from otelcockpit.rollout.journal import SCHEMA

        self.where = where
        self.con = psycopg.connect(url, autocommit=True, row_factory=row_factory)
        self.con.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK + 1,))
        try:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.con.execute(pg_ddl(statement))
        finally:
            self.con.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK + 1,))
        self._tx: Any = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.con.execute(pg_sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cur = self.con.cursor()
        cur.executemany(pg_sql(sql), list(rows))
        return cur

    def begin(self) -> None:
        self.con.execute("BEGIN")

    def commit(self) -> None:
        self.con.execute("COMMIT")

    def rollback(self) -> None:
        with suppress(psycopg.Error):
            self.con.execute("ROLLBACK")

    def close(self) -> None:
        with suppress(Exception):
            self.con.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
