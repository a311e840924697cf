"""The SQLite store: WAL, append-only config versions, group commit that isolates a failing submission."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from otelcockpit.opamp_server.core import AgentState
from otelcockpit.opamp_server.proto import opamp_pb2 as pb
from otelcockpit.opamp_server.store import SqliteStore as Store
from otelcockpit.opamp_server.store import agent_ops

INSERT_CV = (
    "INSERT INTO config_versions (name, version, hash, files, author, note, created_at) "
    "VALUES (?, ?, 'h', '{}', 'a', '', 't')"
)


def test_wal_and_append_only_config_versions(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        assert store.query("PRAGMA journal_mode")[0][0] == "wal"
        store.write_sync([(INSERT_CV, ("base", 1))])
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.write_sync([("UPDATE config_versions SET note = 'edited'", ())])
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.write_sync([("DELETE FROM config_versions", ())])
        assert [tuple(r) for r in store.query("SELECT name, version, note FROM config_versions")] == [
            ("base", 1, "")
        ]
    finally:
        store.close()


def test_group_commit_isolates_a_failing_submission(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")

    async def run() -> list[object]:
        return await asyncio.gather(
            store.write([(INSERT_CV, ("a", 1))]),
            store.write([(INSERT_CV, ("a", 1))]),  # duplicate primary key: fails alone
            store.write([(INSERT_CV, ("b", 1))]),
            return_exceptions=True,
        )

    try:
        results = asyncio.run(run())
        assert isinstance(results[1], sqlite3.IntegrityError)
        assert not isinstance(results[0], BaseException) and not isinstance(results[2], BaseException)
        assert sorted(r[0] for r in store.query("SELECT name FROM config_versions")) == ["a", "b"]
    finally:
        store.close()


def test_agent_rows_roundtrip_and_partial_updates(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    s = AgentState(uid=b"u" * 16, first_seen=1.0, last_seen=2.0, transport="ws", seq=3, capabilities=7)
    s.description = pb.AgentDescription()
    s.description.identifying_attributes.add(key="service.name").value.string_value = "svc"
    s.failed_hashes = {b"\x01" * 32: "bad"}
    store.write_sync(agent_ops(s, {"new"}))
    s2 = s.clone()
    s2.seq = 4
    s2.health = pb.ComponentHealth(healthy=True, status="StatusOK")
    ((sql, _),) = agent_ops(s2, {"health"})
    # only what changed (and who handled the message: several nodes may share the database)
    assert sql.startswith("UPDATE agents SET seq = ?, last_seen = ?, node = ?, health = ?")
    store.write_sync(agent_ops(s2, {"health"}))
    store.close()
    again = Store(path)
    try:
        ((loaded, desired),) = again.load_agents()
        assert loaded.uid == s.uid and loaded.seq == 4 and loaded.transport == "ws"
        assert loaded.health is not None and loaded.health.status == "StatusOK"
        assert loaded.description == s.description
        assert loaded.failed_hashes == {b"\x01" * 32: "bad"}
        assert desired is None
    finally:
        again.close()


def test_schema_versions_are_applied_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database from before versions were recorded is stamped 1 and brought up to date; a database
    from a newer otelcockpit is refused in one line (``serve`` exits 2)."""
    import sqlite3
    import subprocess
    import sys

    from otelcockpit.opamp_server.store import SCHEMA, SCHEMA_VERSION

    old = tmp_path / "old.db"
    con = sqlite3.connect(old)
    con.executescript(SCHEMA)  # the version-1 schema, with no version table
    con.execute(
        "INSERT INTO agents (uid, transport, seq, capabilities, online, first_seen, last_seen) "
        "VALUES (?, 'http', 1, 1, 0, 1.0, 2.0)",
        (b"o" * 16,),
    )
    con.commit()
    con.close()
    store = Store(old)
    try:
        assert store.query("SELECT MAX(version) FROM schema_version")[0][0] == SCHEMA_VERSION
        ((loaded, _),) = store.load_agents()
        assert loaded.uid == b"o" * 16 and loaded.node == "" and loaded.heartbeat == 0.0
    finally:
        store.close()
    con = sqlite3.connect(old)
    con.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    r = subprocess.run(
        [sys.executable, "-m", "otelcockpit", "serve", "--db", str(old), "--tokens", str(tmp_path / "t.yaml"),
         "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and f"schema is version {SCHEMA_VERSION + 1}" in r.stderr, r.stderr


async def test_a_component_set_is_stored_once_and_agents_keep_its_hash(tmp_path: Path, serve_store: str | None) -> None:
    """Two agents report the same AvailableComponents: the set is stored once (``component_sets``), each
    agent's row keeps its hash alone, and after a restart both hold the whole set again (one object).
    On both stores (``serve_store`` is the PostgreSQL database in the postgresql run)."""
    import uuid

    from otelcockpit.opamp_server import core
    from otelcockpit.opamp_server.hub import Hub
    from otelcockpit.opamp_server.store import open_store

    target = serve_store or tmp_path / "c.db"
    caps = core.REPORTS_STATUS | core.REPORTS_AVAILABLE_COMPONENTS
    h = uuid.uuid4().bytes  # a set this process has not seen
    uids = [uuid.uuid4().bytes for _ in range(2)]

    def described(uid: bytes, seq: int) -> pb.AgentToServer:
        m = pb.AgentToServer(instance_uid=uid, sequence_num=seq, capabilities=caps)
        m.agent_description.identifying_attributes.add(key="service.name").value.string_value = "c"
        m.available_components.hash = h
        for n in ("otlp", "kafka", "filelog"):
            m.available_components.components["receivers"].sub_component_map[n].metadata.add(key="v").value.string_value = "1" * 500
        return m

    store = open_store(target)
    await store.start()
    hub = Hub(store)
    await hub.start()
    try:
        for uid in uids:
            assert not (await hub.handle(described(uid, 0), "http")).HasField("error_response")
        rows = await store.aquery("SELECT hash, components FROM component_sets WHERE hash = ?", [h])
        assert len(rows) == 1 and len(bytes(rows[0]["components"])) > 1500
        for r in await store.aquery("SELECT available_components FROM agents"):
            assert pb.AvailableComponents.FromString(bytes(r["available_components"])) == pb.AvailableComponents(hash=h)
    finally:
        await hub.stop()
        await store.aclose()
    core._COMPONENT_SETS.clear()  # a new process: nothing in memory
    store = open_store(target)
    await store.start()
    try:
        loaded = {s.uid: s for s, _ in store.load_agents()}
        a, b = (loaded[u].available_components for u in uids)
        assert a is b and set(a.components["receivers"].sub_component_map) == {"otlp", "kafka", "filelog"}
        assert "receiver:kafka" in loaded[uids[0]].component_names
    finally:
        await store.aclose()
