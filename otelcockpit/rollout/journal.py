"""The rollout journal: every step of every rollout in SQLite (WAL), so a kill -9 loses nothing.

* A step is recorded ``started`` before the target is touched and ``done`` after it answered.
  A ``done`` step is never redone. A ``started`` step (the process died in between) is re-run
  through the target's check-first path on resume: the target looks at what is there and only
  does what is missing, so nothing is pushed twice.
* A rollout whose process died shows as ``paused`` (reason: interrupted): nothing continues
  without an operator's ``resume``.
* Besides rollouts: hashes that failed on a collector (never offered again automatically), the
  last hash each collector reported APPLIED, the last known good revision of each pipeline, and
  an event log the Changes view and ``otelcockpit changes`` read.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from otelcockpit.errors import CockpitError
from otelcockpit.rollout.model import (
    CollectorProgress,
    CollectorStatus,
    RolloutPlan,
    RolloutState,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    backend TEXT NOT NULL,
    context TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    plan TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    current_stage INTEGER NOT NULL DEFAULT 0,
    request TEXT NOT NULL DEFAULT '',
    runner_pid INTEGER NOT NULL DEFAULT 0,
    runner_host TEXT NOT NULL DEFAULT '',
    runner_token TEXT NOT NULL DEFAULT '',
    heartbeat REAL NOT NULL DEFAULT 0,
    result_revision TEXT NOT NULL DEFAULT '',
    rollback_revision TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS rollouts_pipeline ON rollouts (pipeline, created_at);
CREATE TABLE IF NOT EXISTS steps (
    rollout_id TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    started_at REAL NOT NULL,
    done_at REAL,
    attempts INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (rollout_id, key)
);
CREATE TABLE IF NOT EXISTS progress (
    rollout_id TEXT NOT NULL,
    collector_id TEXT NOT NULL,
    stage INTEGER NOT NULL,
    status TEXT NOT NULL,
    target_hash TEXT NOT NULL DEFAULT '',
    previous_hash TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    offered_at REAL,
    applied_at REAL,
    seen_target INTEGER NOT NULL DEFAULT 0,
    health TEXT NOT NULL DEFAULT '',
    health_before TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (rollout_id, collector_id)
);
CREATE TABLE IF NOT EXISTS failed_hashes (
    collector_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    rollout_id TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL,
    PRIMARY KEY (collector_id, hash)
);
CREATE TABLE IF NOT EXISTS applied (
    collector_id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    previous_hash TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS good_revisions (
    pipeline TEXT NOT NULL,
    revision TEXT NOT NULL,
    rollout_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (pipeline, revision)
);
CREATE TABLE IF NOT EXISTS bad_revisions (
    pipeline TEXT NOT NULL,
    revision TEXT NOT NULL,
    why TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL,
    PRIMARY KEY (pipeline, revision)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    rollout_id TEXT NOT NULL DEFAULT '',
    pipeline TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    author TEXT NOT NULL DEFAULT '',
    scope TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    rollback_target TEXT NOT NULL DEFAULT ''
);
"""

HEARTBEAT_STALE = 30.0  # seconds without a heartbeat before a runner on another host counts as gone
# Runner tokens held by engines running in this process right now.
LIVE_RUNNERS: set[str] = set()


def default_path() -> Path:
    from otelcockpit import settings

    return settings.data_dir() / "rollouts.sqlite3"


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True)
class RolloutRecord:
    id: str
    pipeline: str
    backend: str
    context: str
    state: RolloutState
    reason: str
    author: str
    plan: RolloutPlan
    created_at: float
    updated_at: float
    current_stage: int
    request: str
    runner_pid: int
    runner_host: str
    runner_token: str
    heartbeat: float
    result_revision: str
    rollback_revision: str

    @property
    def created(self) -> datetime | None:
        return _ts(self.created_at)

    @property
    def updated(self) -> datetime | None:
        return _ts(self.updated_at)


@dataclass(frozen=True)
class Event:
    seq: int
    at: datetime
    rollout_id: str
    pipeline: str
    kind: str
    author: str
    scope: str
    message: str
    rollback_target: str


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class Db(Protocol):
    """The journal's database connection: SQLite here (:class:`SqliteDb`); the OpAMP server passes a
    PostgreSQL one when its nodes share a database. Statements use ``?`` placeholders and the SQL both
    speak; rows are read by name or by position."""

    where: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...  # a cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any: ...

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


class SqliteDb:
    """The journal in one SQLite file: safe to open from several processes (WAL, busy timeout)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.con = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
            self.con.execute("PRAGMA journal_mode=WAL")
            self.con.execute("PRAGMA synchronous=NORMAL")
            self.con.execute("PRAGMA busy_timeout=10000")
            self.con.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise CockpitError(f"cannot open the rollout journal {self.path}: {exc}") from None
        self.con.row_factory = sqlite3.Row

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.con.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self.con.executemany(sql, rows)

    def begin(self) -> None:
        self.con.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.con.execute("COMMIT")

    def rollback(self) -> None:
        if self.con.in_transaction:
            self.con.execute("ROLLBACK")

    def close(self) -> None:
        self.con.close()


class Journal:
    """The rollout journal on a :class:`Db` (a SQLite file by default).

    ``stale_after``: how long without a heartbeat a rollout's runner on another host counts as gone;
    ``recover_interrupted``: pause a rollout whose runner is gone when it is read (one process, or one
    server restarting); off where other server nodes take such rollouts over instead."""

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        clock: Any = time.time,
        db: Db | None = None,
        stale_after: float = HEARTBEAT_STALE,
        recover_interrupted: bool = True,
        host: str | None = None,
    ) -> None:
        if db is None:
            if path is None:
                raise ValueError("a journal needs a path or a db")
            db = SqliteDb(path)
        self.db = db
        self.path = Path(path) if path is not None else Path(db.where)
        self.clock = clock
        self.stale_after = stale_after
        self.recover_interrupted = recover_interrupted
        # Who runs a rollout: this host (a process id there can be looked at), or for server nodes on
        # one database "host/node" - another node is judged by its heartbeat, on this host or not.
        self.host = host or socket.gethostname()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[Db]:
        self.db.begin()
        try:
            yield self.db
        except BaseException:
            self.db.rollback()
            raise
        self.db.commit()

    # ---- rollouts -------------------------------------------------------------------------------
    def create(
        self,
        rollout_id: str,
        plan: RolloutPlan,
        *,
        backend: str,
        context: str = "",
        author: str = "",
        rollback_revision: str = "",
    ) -> None:
        now = self.clock()
        rows = [
            (rollout_id, cid, stage.index, CollectorStatus.PENDING.value)
            for stage in plan.stages
            for cid in stage.collector_ids
        ]
        with self.tx() as db:
            db.execute(
                "INSERT INTO rollouts (id, pipeline, backend, context, state, author, plan, created_at, updated_at,"
                " rollback_revision) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    rollout_id,
                    plan.pipeline,
                    backend,
                    context,
                    RolloutState.PLANNED.value,
                    author,
                    json.dumps(plan.as_json()),
                    now,
                    now,
                    rollback_revision,
                ),
            )
            db.executemany(
                "INSERT INTO progress (rollout_id, collector_id, stage, status) VALUES (?,?,?,?)", rows
            )
            self._event(
                db,
                rollout_id,
                plan.pipeline,
                "rollout.planned",
                author,
                f"{plan.collector_count} collector(s) in {len(plan.stages)} stage(s)",
                f"planned rollout of {plan.pipeline} (base revision {plan.base_revision or '-'})",
                rollback_revision,
            )

    def _record(self, row: Any) -> RolloutRecord:
        return RolloutRecord(
            id=row["id"],
            pipeline=row["pipeline"],
            backend=row["backend"],
            context=row["context"],
            state=RolloutState(row["state"]),
            reason=row["reason"],
            author=row["author"],
            plan=RolloutPlan.from_json(json.loads(row["plan"])),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            current_stage=row["current_stage"],
            request=row["request"],
            runner_pid=row["runner_pid"],
            runner_host=row["runner_host"],
            runner_token=row["runner_token"],
            heartbeat=row["heartbeat"],
            result_revision=row["result_revision"],
            rollback_revision=row["rollback_revision"],
        )

    def get(self, rollout_id: str) -> RolloutRecord | None:
        row = self.db.execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        if row is None:
            return None
        return self.recover(self._record(row))

    def require(self, rollout_id: str) -> RolloutRecord:
        rec = self.get(rollout_id)
        if rec is None:
            raise CockpitError(f"no rollout {rollout_id!r} in the journal {self.path}")
        return rec

    def list(self, *, limit: int = 100, pipeline: str | None = None) -> list[RolloutRecord]:
        if pipeline:
            rows = self.db.execute(
                "SELECT * FROM rollouts WHERE pipeline = ? ORDER BY created_at DESC, id LIMIT ?", (pipeline, limit)
            ).fetchall()
        else:
            rows = self.db.execute("SELECT * FROM rollouts ORDER BY created_at DESC, id LIMIT ?", (limit,)).fetchall()
        return [self.recover(self._record(r)) for r in rows]

    def active_for(self, pipeline: str) -> list[RolloutRecord]:
        states = ("planned", "running", "paused")
        return [r for r in self.list(limit=1000, pipeline=pipeline) if r.state.value in states]

    def runner_alive(self, rec: RolloutRecord) -> bool:
        if rec.runner_pid <= 0:
            return False
        if rec.runner_host == self.host:
            if rec.runner_pid == os.getpid():
                return rec.runner_token in LIVE_RUNNERS
            return pid_alive(rec.runner_pid)
        return self.clock() - rec.heartbeat < self.stale_after

    def recover(self, rec: RolloutRecord) -> RolloutRecord:
        """A rollout left ``running`` by a process that is gone is paused (and stays so until resumed);
        not where other server nodes take such rollouts over (``recover_interrupted`` off)."""
        if not self.recover_interrupted or rec.state != RolloutState.RUNNING or self.runner_alive(rec):
            return rec
        reason = (
            f"interrupted at stage {rec.current_stage + 1} (the process running it stopped); "
            "resume it to continue"
        )
        changed = self.db.execute(
            "UPDATE rollouts SET state = ?, reason = ?, runner_pid = 0, request = '', updated_at = ?"
            " WHERE id = ? AND state = ? AND runner_pid = ?",
            (RolloutState.PAUSED.value, reason, self.clock(), rec.id, RolloutState.RUNNING.value, rec.runner_pid),
        ).rowcount
        if changed:
            self.event(rec.id, rec.pipeline, "rollout.interrupted", "", "", reason)
        row = self.db.execute("SELECT * FROM rollouts WHERE id = ?", (rec.id,)).fetchone()
        return self._record(row)

    def claim(self, rollout_id: str, token: str) -> RolloutRecord:
        """Mark this engine as the runner; refuses when another live runner has it. The claim is a
        compare-and-set on the runner's token, so two processes (two server nodes taking over a rollout
        whose node died) never both run it."""
        rec = self.require(rollout_id)
        if rec.state == RolloutState.RUNNING and rec.runner_token != token and self.runner_alive(rec):
            raise CockpitError(
                f"rollout {rollout_id} is already running in process {rec.runner_pid} on {rec.runner_host}"
            )
        with self.tx() as db:
            won = db.execute(
                "UPDATE rollouts SET state = ?, reason = '', request = '', runner_pid = ?, runner_host = ?,"
                " runner_token = ?, heartbeat = ?, updated_at = ? WHERE id = ? AND runner_token = ?",
                (
                    RolloutState.RUNNING.value,
                    os.getpid(),
                    self.host,
                    token,
                    self.clock(),
                    self.clock(),
                    rollout_id,
                    rec.runner_token,
                ),
            ).rowcount
        if not won:
            raise CockpitError(f"rollout {rollout_id} was claimed by another runner a moment ago")
        return self.require(rollout_id)

    def watch(self, rollout_id: str, token: str, expected: str | None = None) -> bool:
        """Mark a paused rollout as observed by this runner (its heartbeat: a watcher that dies is
        replaced); ``expected``: the watcher token seen, for a compare-and-set takeover. False when the
        rollout is not paused any more, or another watcher took it."""
        if expected is None:
            expected = token
        return bool(
            self.db.execute(
                "UPDATE rollouts SET runner_pid = ?, runner_host = ?, runner_token = ?, heartbeat = ?"
                " WHERE id = ? AND state = ? AND (runner_token = ? OR runner_token = ?)",
                (
                    os.getpid(),
                    self.host,
                    token,
                    self.clock(),
                    rollout_id,
                    RolloutState.PAUSED.value,
                    token,
                    expected,
                ),
            ).rowcount
        )

    def heartbeat(self, rollout_id: str, current_stage: int) -> str:
        """Refresh the heartbeat; returns a pending operator request (``pause`` / ``abort``) or ''."""
        self.db.execute(
            "UPDATE rollouts SET heartbeat = ?, current_stage = ? WHERE id = ?",
            (self.clock(), current_stage, rollout_id),
        )
        row = self.db.execute("SELECT request FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        return str(row["request"]) if row else ""

    def set_state(
        self,
        rollout_id: str,
        state: RolloutState,
        reason: str = "",
        *,
        result_revision: str | None = None,
        release: bool = True,
    ) -> None:
        sets = ["state = ?", "reason = ?", "updated_at = ?", "request = ''"]
        params: list[Any] = [state.value, reason, self.clock()]
        if result_revision is not None:
            sets.append("result_revision = ?")
            params.append(result_revision)
        if release:
            sets.append("runner_pid = 0")
        params.append(rollout_id)
        self.db.execute(f"UPDATE rollouts SET {', '.join(sets)} WHERE id = ?", params)

    def set_stage(self, rollout_id: str, stage: int) -> None:
        self.db.execute(
            "UPDATE rollouts SET current_stage = ?, updated_at = ? WHERE id = ?", (stage, self.clock(), rollout_id)
        )

    def request(self, rollout_id: str, what: str) -> None:
        self.db.execute("UPDATE rollouts SET request = ? WHERE id = ?", (what, rollout_id))

    # ---- steps ----------------------------------------------------------------------------------
    def step(self, rollout_id: str, key: str) -> tuple[str, dict[str, Any]] | None:
        row = self.db.execute(
            "SELECT state, data FROM steps WHERE rollout_id = ? AND key = ?", (rollout_id, key)
        ).fetchone()
        return None if row is None else (row["state"], json.loads(row["data"]))

    def begin_step(self, rollout_id: str, key: str) -> None:
        self.db.execute(
            "INSERT INTO steps (rollout_id, key, state, started_at) VALUES (?,?,?,?)"
            " ON CONFLICT (rollout_id, key) DO UPDATE SET attempts = steps.attempts + 1",
            (rollout_id, key, "started", self.clock()),
        )

    def finish_step(self, rollout_id: str, key: str, data: Mapping[str, Any] | None = None) -> None:
        self.db.execute(
            "UPDATE steps SET state = 'done', done_at = ?, data = ? WHERE rollout_id = ? AND key = ?",
            (self.clock(), json.dumps(dict(data or {})), rollout_id, key),
        )

    def steps(self, rollout_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT key, state, attempts, started_at, done_at FROM steps WHERE rollout_id = ? ORDER BY started_at",
            (rollout_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    # ---- per-collector progress -------------------------------------------------------------------
    def load_progress(self, rollout_id: str) -> dict[str, CollectorProgress]:
        out: dict[str, CollectorProgress] = {}
        for r in self.db.execute(
            "SELECT collector_id, stage, status, target_hash, previous_hash, error, offered_at, applied_at,"
            " seen_target, health, health_before FROM progress WHERE rollout_id = ?",
            (rollout_id,),
        ):
            out[r[0]] = CollectorProgress(
                collector_id=r[0],
                stage=r[1],
                status=CollectorStatus(r[2]),
                target_hash=r[3],
                previous_hash=r[4],
                error=r[5],
                offered_at=r[6],
                applied_at=r[7],
                seen_target=bool(r[8]),
                health=r[9],
                health_before=r[10],
            )
        return out

    def save_progress(self, rollout_id: str, items: Iterable[CollectorProgress]) -> None:
        rows = [
            (
                p.status.value,
                p.target_hash,
                p.previous_hash,
                p.error,
                p.offered_at,
                p.applied_at,
                int(p.seen_target),
                p.health,
                p.health_before,
                rollout_id,
                p.collector_id,
            )
            for p in items
        ]
        if not rows:
            return
        with self.tx() as db:
            db.executemany(
                "UPDATE progress SET status = ?, target_hash = ?, previous_hash = ?, error = ?, offered_at = ?,"
                " applied_at = ?, seen_target = ?, health = ?, health_before = ? WHERE rollout_id = ? AND collector_id = ?",
                rows,
            )

    def stage_counts(self, rollout_id: str) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = {}
        for stage, status, n in self.db.execute(
            "SELECT stage, status, COUNT(*) FROM progress WHERE rollout_id = ? GROUP BY stage, status",
            (rollout_id,),
        ):
            out.setdefault(stage, {})[status] = n
        return out

    def failures(self, rollout_id: str, limit: int = 1000) -> list[CollectorProgress]:
        progress = self.db.execute(
            "SELECT collector_id FROM progress WHERE rollout_id = ? AND status IN ('failed', 'held')"
            " ORDER BY stage, collector_id LIMIT ?",
            (rollout_id, limit),
        ).fetchall()
        if not progress:
            return []
        every = self.load_progress(rollout_id)
        return [every[r[0]] for r in progress]

    # ---- failed hashes, applied hashes, known good revisions --------------------------------------
    def record_failed(self, rollout_id: str, items: Iterable[tuple[str, str, str]]) -> None:
        """``(collector_id, hash, error)``: this hash is never offered to this collector again automatically."""
        now = self.clock()
        rows = [(cid, h, rollout_id, err, now) for cid, h, err in items if h]
        if rows:
            self.db.executemany(
                "INSERT INTO failed_hashes (collector_id, hash, rollout_id, error, at) VALUES (?,?,?,?,?)"
                " ON CONFLICT (collector_id, hash) DO NOTHING",
                rows,
            )

    def failed_pairs(self, collector_ids: Iterable[str], hashes: Iterable[str]) -> dict[str, str]:
        """Collectors (of ``collector_ids``) on which one of ``hashes`` failed before: id -> error."""
        wanted = set(collector_ids)
        keys = [h for h in hashes if h]
        if not keys or not wanted:
            return {}
        marks = ",".join("?" * len(keys))
        out: dict[str, str] = {}
        for cid, _hash, rid, err in self.db.execute(
            f"SELECT collector_id, hash, rollout_id, error FROM failed_hashes WHERE hash IN ({marks})", keys
        ):
            if cid in wanted:
                out[cid] = f"failed before in rollout {rid}: {err}" if err else f"failed before in rollout {rid}"
        return out

    def record_applied(self, items: Iterable[tuple[str, str]]) -> None:
        now = self.clock()
        rows = [(cid, h, now) for cid, h in items if h]
        if rows:
            with self.tx() as db:
                db.executemany(
                    "INSERT INTO applied (collector_id, hash, at) VALUES (?,?,?) ON CONFLICT (collector_id) DO UPDATE"
                    " SET previous_hash = CASE WHEN applied.hash != excluded.hash THEN applied.hash"
                    " ELSE applied.previous_hash END, hash = excluded.hash, at = excluded.at",
                    rows,
                )

    def last_applied(self, collector_ids: Iterable[str] | None = None) -> dict[str, tuple[str, str]]:
        """collector id -> (last hash seen APPLIED, the APPLIED hash before it)."""
        rows = self.db.execute("SELECT collector_id, hash, previous_hash FROM applied").fetchall()
        if collector_ids is None:
            return {r[0]: (r[1], r[2]) for r in rows}
        wanted = set(collector_ids)
        return {r[0]: (r[1], r[2]) for r in rows if r[0] in wanted}

    def record_good(self, pipeline: str, revision: str, rollout_id: str) -> None:
        if revision:
            self.db.execute(
                "INSERT INTO good_revisions (pipeline, revision, rollout_id, at) VALUES (?,?,?,?)"
                " ON CONFLICT (pipeline, revision) DO UPDATE SET rollout_id = excluded.rollout_id, at = excluded.at",
                (pipeline, revision, rollout_id, self.clock()),
            )

    def good_revisions(self, pipeline: str) -> list[str]:
        """Revisions of ``pipeline`` fully rolled out without failures, newest first."""
        return [
            r[0]
            for r in self.db.execute(
                "SELECT revision FROM good_revisions WHERE pipeline = ? ORDER BY at DESC", (pipeline,)
            )
        ]

    def record_bad(self, pipeline: str, revision: str, why: str) -> None:
        """A revision that was rolled back from: never offered as a rollback target again."""
        if revision:
            self.db.execute(
                "INSERT INTO bad_revisions (pipeline, revision, why, at) VALUES (?,?,?,?)"
                " ON CONFLICT (pipeline, revision) DO UPDATE SET why = excluded.why, at = excluded.at",
                (pipeline, revision, why, self.clock()),
            )

    def bad_revisions(self, pipeline: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT revision FROM bad_revisions WHERE pipeline = ?", (pipeline,))}

    # ---- events ---------------------------------------------------------------------------------
    def _event(
        self,
        db: Db,
        rollout_id: str,
        pipeline: str,
        kind: str,
        author: str,
        scope: str,
        message: str,
        rollback_target: str = "",
    ) -> None:
        db.execute(
            "INSERT INTO events (at, rollout_id, pipeline, kind, author, scope, message, rollback_target)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (self.clock(), rollout_id, pipeline, kind, author, scope, message, rollback_target),
        )

    def event(
        self,
        rollout_id: str,
        pipeline: str,
        kind: str,
        author: str,
        scope: str,
        message: str,
        rollback_target: str = "",
    ) -> None:
        self._event(self.db, rollout_id, pipeline, kind, author, scope, message, rollback_target)

    def events(self, *, since: float | None = None, rollout_id: str | None = None) -> list[Event]:
        sql = "SELECT * FROM events WHERE 1=1"
        params: list[Any] = []
        if since is not None:
            sql += " AND at >= ?"
            params.append(since)
        if rollout_id:
            sql += " AND rollout_id = ?"
            params.append(rollout_id)
        sql += " ORDER BY seq"
        return [
            Event(
                seq=r["seq"],
                at=datetime.fromtimestamp(r["at"], UTC),
                rollout_id=r["rollout_id"],
                pipeline=r["pipeline"],
                kind=r["kind"],
                author=r["author"],
                scope=r["scope"],
                message=r["message"],
                rollback_target=r["rollback_target"],
            )
            for r in self.db.execute(sql, params)
        ]
