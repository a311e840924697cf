"""``serve`` under hostile and faulty traffic: each defect a single message or a single kill showed.

- uint64 fields at 2**63 and above (``sequence_num``, ``capabilities``) are stored losslessly, over
  HTTP and WebSocket, and survive a kill -9;
- a message the store cannot take leaves nothing behind in memory (the admin API and the store agree);
- the write-ahead log stays bounded under writes that never pause;
- agents that never describe themselves are forgotten once offline;
- attribute limits are enforced before anything is stored.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
import uuid
from pathlib import Path

import httpx
import pytest
from opamp_server_support import ServeProcess, start_serve
from websockets.asyncio.client import connect

from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.hub import Hub
from otelcockpit.opamp_server.proto import opamp_pb2 as pb
from otelcockpit.opamp_server.store import SqliteStore as Store
from otelcockpit.opamp_server.store import u64_from_db, u64_to_db

PB = {"Content-Type": "application/x-protobuf"}
BIG = 2**63
HUGE = 2**64 - 1


def described(uid: bytes, seq: int, caps: int, name: str) -> pb.AgentToServer:
    m = pb.AgentToServer(instance_uid=uid, sequence_num=seq, capabilities=caps)
    kv = m.agent_description.identifying_attributes.add()
    kv.key = "service.name"
    kv.value.string_value = name
    m.remote_config_status.status = pb.RemoteConfigStatuses_UNSET
    return m


def agent_json(sp: ServeProcess, uid: bytes) -> dict:
    status, body = sp.api("GET", f"/agents/{uuid.UUID(bytes=uid)}")
    assert status == 200, (status, body)
    return body


def test_u64_round_trip() -> None:
    for v in (0, 1, 2**31, 2**63 - 1, BIG, BIG + 7, HUGE):
        assert u64_from_db(u64_to_db(v)) == v
        assert -(2**63) <= u64_to_db(v) < 2**63
    with pytest.raises(ValueError):
        u64_to_db(2**64)


def test_huge_uint64_fields_over_http_and_ws_survive_kill_9(tmp_path: Path) -> None:
    sp = start_serve(tmp_path / "u64")
    http_uid, ws_uid = uuid.uuid4().bytes, uuid.uuid4().bytes
    try:
        r = httpx.post(
            sp.opamp_url, content=described(http_uid, BIG, HUGE, "u64-http").SerializeToString(), headers=PB
        )
        assert r.status_code == 200, r.text
        reply = pb.ServerToAgent.FromString(r.content)
        assert reply.instance_uid == http_uid and not reply.HasField("error_response")
        # a heartbeat continuing that sequence is not a gap
        r = httpx.post(
            sp.opamp_url,
            content=pb.AgentToServer(
                instance_uid=http_uid, sequence_num=BIG + 1, capabilities=HUGE
            ).SerializeToString(),
            headers=PB,
        )
        assert r.status_code == 200
        assert not pb.ServerToAgent.FromString(r.content).flags & core.REPORT_FULL_STATE

        async def over_ws() -> None:
            async with connect(sp.ws_url, compression=None) as ws:
                await ws.send(b"\x00" + described(ws_uid, HUGE, BIG, "u64-ws").SerializeToString())
                data = await asyncio.wait_for(ws.recv(), 10)
                assert isinstance(data, bytes) and data[:1] == b"\x00"
                rep = pb.ServerToAgent.FromString(data[1:])
                assert rep.instance_uid == ws_uid and not rep.HasField("error_response")
                await ws.close()

        asyncio.run(over_ws())
        a = agent_json(sp, http_uid)
        assert a["sequence_num"] == BIG + 1 and a["capabilities"] == HUGE
        b = agent_json(sp, ws_uid)
        assert b["sequence_num"] == HUGE and b["capabilities"] == BIG
        # the WebSocket closed: marking it offline must work (it failed for every agent on the
        # connection when the store could not take the row)
        deadline = time.monotonic() + 10
        while agent_json(sp, ws_uid)["status"] != "offline":
            assert time.monotonic() < deadline, "the closed WebSocket agent never went offline"
            time.sleep(0.05)
        sp.proc.send_signal(signal.SIGKILL)
        sp.proc.wait(10)
        again = start_serve(tmp_path / "u64", db=sp.db)
        try:
            a = agent_json(again, http_uid)
            assert a["sequence_num"] == BIG + 1 and a["capabilities"] == HUGE
            assert a["identifying_attributes"]["service.name"] == "u64-http"
            b = agent_json(again, ws_uid)
            assert b["sequence_num"] == HUGE and b["capabilities"] == BIG
            assert b["status"] == "offline"
        finally:
            again.stop()
    finally:
        sp.stop()


async def test_a_message_the_store_refuses_leaves_memory_untouched(tmp_path: Path) -> None:
    """If the store cannot commit a message, the hub forgets it: nothing is acknowledged that a
    restart would lose (the hub used to keep the agent in memory and answer 200 afterwards)."""
    store = Store(tmp_path / "s.db")
    hub = Hub(store)
    witness = uuid.uuid4().bytes
    await hub.handle(described(witness, 0, 0x3007, "witness"), "http")
    store.write_sync(
        [("CREATE TRIGGER refuse BEFORE INSERT ON agents BEGIN SELECT RAISE(ABORT, 'disk says no'); END", ())]
    )
    uid = uuid.uuid4().bytes
    with pytest.raises(sqlite3.DatabaseError):
        await hub.handle(described(uid, 0, 0x3007, "refused"), "http")
    assert uid not in hub.agents
    assert witness in hub.agents
    # an update of a known agent that the store refuses rolls back to the stored state
    store.write_sync(
        [("CREATE TRIGGER refuse2 BEFORE UPDATE ON agents BEGIN SELECT RAISE(ABORT, 'no'); END", ())]
    )
    before = hub.agents[witness]
    with pytest.raises(sqlite3.DatabaseError):
        await hub.handle(described(witness, 1, 0x3007, "renamed"), "http")
    assert hub.agents[witness] is before
    store.close()


def refuse_new_agents(sp: ServeProcess, store_url: str | None) -> None:
    """Make the store refuse every new agent from outside the server (as a full disk would)."""
    if store_url is None:
        con = sqlite3.connect(sp.db, timeout=30)
        con.execute("CREATE TRIGGER refuse BEFORE INSERT ON agents BEGIN SELECT RAISE(ABORT, 'full'); END")
        con.commit()
        con.close()
        return
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as con:
        con.execute(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'full'; END; $$ LANGUAGE plpgsql"
        )
        con.execute("CREATE TRIGGER refuse BEFORE INSERT ON agents FOR EACH ROW EXECUTE FUNCTION refuse()")


def test_store_failure_is_503_with_retry_after_and_unavailable_over_ws(tmp_path: Path, serve_store: str | None) -> None:
    sp = start_serve(tmp_path / "ro")
    try:
        refuse_new_agents(sp, serve_store)
        uid = uuid.uuid4().bytes
        r = httpx.post(sp.opamp_url, content=described(uid, 0, 0x3007, "x").SerializeToString(), headers=PB)
        assert r.status_code == 503 and r.headers["retry-after"] == "30"
        status, _ = sp.api("GET", f"/agents/{uuid.UUID(bytes=uid)}")
        assert status == 404

        async def over_ws() -> pb.ServerToAgent:
            async with connect(sp.ws_url, compression=None) as ws:
                await ws.send(b"\x00" + described(uid, 0, 0x3007, "x").SerializeToString())
                data = await asyncio.wait_for(ws.recv(), 10)
                return pb.ServerToAgent.FromString(data[1:])

        rep = asyncio.run(over_ws())
        assert rep.error_response.type == pb.ServerErrorResponseType_Unavailable
        assert rep.error_response.retry_info.retry_after_nanoseconds == 30 * 10**9
        status, health = sp.api("GET", "/health")
        assert health["errors"]["logged"] >= 1
    finally:
        sp.stop()


async def test_wal_stays_bounded_under_writes_that_never_pause(tmp_path: Path) -> None:
    limit = 2 * 1024 * 1024
    store = Store(tmp_path / "w.db", wal_limit=limit)
    hub = Hub(store)
    blob = b"x" * 60_000
    peak = 0
    try:
        for round_ in range(60):
            msgs = []
            for i in range(20):
                m = described(uuid.uuid4().bytes, 0, 0x3007, f"a{round_}-{i}")
                m.effective_config.config_map.config_map[""].body = blob
                msgs.append(hub.handle(m, "http"))
            await asyncio.gather(*msgs)
            peak = max(peak, store.stats()["wal_bytes"])
        # one group commit here is at most 20 messages of ~60 KB
        assert peak <= limit + 20 * 70_000 * 2, peak
        assert store.wal_truncations > 0
    finally:
        store.close()


async def test_unidentified_agents_are_forgotten_once_offline(tmp_path: Path) -> None:
    store = Store(tmp_path / "j.db")
    hub = Hub(store, core.Settings(heartbeat_seconds=1, forget_unidentified_after=5))
    junk, real = uuid.uuid4().bytes, uuid.uuid4().bytes
    await hub.handle(pb.AgentToServer(instance_uid=junk, capabilities=1), "http")
    await hub.handle(described(real, 0, 1, "real"), "http")
    now = time.time()
    await hub.sweep(now + 4)  # both offline (3 intervals), neither old enough
    assert junk in hub.agents
    hub._last_forget = 0
    await hub.sweep(now + 10)
    assert junk not in hub.agents and real in hub.agents
    rows = {bytes(r["uid"]) for r in store.query("SELECT uid FROM agents")}
    assert rows == {real}
    store.close()


async def test_agents_offline_past_the_retention_are_forgotten_unless_a_rollout_holds_them(tmp_path: Path) -> None:
    """Pods come and go with new instance UIDs: the rows of the ones gone for good are deleted after
    ``forget_offline_after`` (--forget-offline-hours), with an audit entry; a rollout's member stays."""
    store = Store(tmp_path / "f.db")
    hub = Hub(store, core.Settings(heartbeat_seconds=1, forget_unidentified_after=5, forget_offline_after=20))
    junk, gone, member, live = (uuid.uuid4().bytes for _ in range(4))
    await hub.handle(pb.AgentToServer(instance_uid=junk, capabilities=1), "http")
    for uid, name in ((gone, "gone"), (member, "member"), (live, "live")):
        await hub.handle(described(uid, 0, 1, name), "http")
    hub.overrides[member] = ("gw", 1)  # staged by a rollout
    now = time.time()
    hub._last_forget = 0
    await hub.sweep(now + 10)  # all offline; the unidentified one past its 5 s
    assert junk not in hub.agents and {gone, member, live} <= set(hub.agents)
    await hub.handle(pb.AgentToServer(instance_uid=live, sequence_num=1), "http")  # live reports again
    hub.agents[live].last_seen = now + 25
    hub._last_forget = 0
    await hub.sweep(now + 30)
    assert gone not in hub.agents and member in hub.agents and live in hub.agents
    rows = {bytes(r["uid"]) for r in store.query("SELECT uid FROM agents")}
    assert rows == {member, live}
    reasons = [r["detail"] for r in store.query("SELECT detail FROM audit WHERE action = 'agent.forget'")]
    assert any("unidentified" in d for d in reasons) and any("offline for more than" in d for d in reasons)
    # 0 keeps them for ever
    hub.settings = core.Settings(heartbeat_seconds=1, forget_offline_after=0)
    del hub.overrides[member]
    assert await hub.forget(now + 10**6) == []
    store.close()


async def test_max_agents_counts_the_agents_this_node_holds_not_rows_gone_offline(tmp_path: Path) -> None:
    """--max-agents protects a node from more agents than it can serve: the online ones that report to
    it. Rows of agents gone offline do not turn new agents away."""
    from otelcockpit.opamp_server.hub import Overloaded

    store = Store(tmp_path / "m.db")
    hub = Hub(store, core.Settings(heartbeat_seconds=1, max_agents=2))
    first, second, third = (uuid.uuid4().bytes for _ in range(3))
    await hub.handle(described(first, 0, 1, "a"), "http")
    await hub.handle(described(second, 0, 1, "b"), "http")
    with pytest.raises(Overloaded, match="maximum of 2 agents"):
        await hub.handle(described(third, 0, 1, "c"), "http")
    await hub.sweep(time.time() + 10)  # both silent for more than three heartbeats: offline
    # an agent another node serves (a node keeps the whole fleet in memory) is not this node's load
    other = hub.agents[first].clone()
    other.uid, other.online, other.node = uuid.uuid4().bytes, True, "another-node:4320"
    hub.agents[other.uid] = other
    hub._held = (0, 0.0)  # counted again now, not a second later
    await hub.handle(described(third, 0, 1, "c"), "http")
    assert hub.agents[third].online
    store.close()


def test_oversized_attributes_are_refused_before_storing() -> None:
    uid = uuid.uuid4().bytes
    m = described(uid, 0, 1, "svc")
    kv = m.agent_description.non_identifying_attributes.add()
    kv.key = "k" * 2000
    kv.value.string_value = "v"
    out = core.process(None, m, 1.0)
    assert out.error and "key is longer" in out.error and out.state is None
    m = described(uid, 0, 1, "svc")
    kv = m.agent_description.non_identifying_attributes.add()
    kv.key = "big"
    kv.value.string_value = "v" * 100_000
    out = core.process(None, m, 1.0)
    assert out.error and "'big' is larger" in out.error


def test_agent_stuck_applying_after_kill_9_is_offered_once_more(tmp_path: Path) -> None:
    """A client that lost its apply with the connection (the server was killed mid-apply) comes back
    still reporting APPLYING: the restarted server offers the config once more, and it applies."""
    sp = start_serve(tmp_path / "stuck")
    uid = uuid.uuid4().bytes
    try:
        status, cfg = sp.api(
            "POST",
            "/configs",
            {"name": "gw", "files": {"c.yaml": {"body": "a: 1\n", "content_type": "text/yaml"}}},
        )
        assert status == 201, cfg
        digest = bytes.fromhex(cfg["hash"])
        status, out = sp.api("POST", "/assignments", {"config": "gw", "selector": "", "priority": 1})
        assert status == 201, out
        caps = 0x3007 | core.ACCEPTS_REMOTE_CONFIG | core.REPORTS_REMOTE_CONFIG

        async def first_session() -> None:
            async with connect(sp.ws_url, compression=None) as ws:
                await ws.send(b"\x00" + described(uid, 0, caps, "stuck").SerializeToString())
                rep = pb.ServerToAgent.FromString((await asyncio.wait_for(ws.recv(), 10))[1:])
                assert rep.remote_config.config_hash == digest
                m = pb.AgentToServer(instance_uid=uid, sequence_num=1, capabilities=caps)
                m.remote_config_status.last_remote_config_hash = digest
                m.remote_config_status.status = pb.RemoteConfigStatuses_APPLYING
                await ws.send(b"\x00" + m.SerializeToString())
                await asyncio.wait_for(ws.recv(), 10)

        asyncio.run(first_session())
        sp.proc.send_signal(signal.SIGKILL)
        sp.proc.wait(10)
        again = start_serve(tmp_path / "stuck", "--stuck-applying-seconds", "1", db=sp.db)
        try:
            time.sleep(1.1)

            async def second_session() -> list[pb.ServerToAgent]:
                got = []
                async with connect(again.ws_url, compression=None) as ws:
                    m = described(uid, 2, caps, "stuck")
                    m.remote_config_status.last_remote_config_hash = digest
                    m.remote_config_status.status = pb.RemoteConfigStatuses_APPLYING
                    await ws.send(b"\x00" + m.SerializeToString())
                    got.append(pb.ServerToAgent.FromString((await asyncio.wait_for(ws.recv(), 10))[1:]))
                    done = pb.AgentToServer(instance_uid=uid, sequence_num=3, capabilities=caps)
                    done.remote_config_status.last_remote_config_hash = digest
                    done.remote_config_status.status = pb.RemoteConfigStatuses_APPLIED
                    await ws.send(b"\x00" + done.SerializeToString())
                    got.append(pb.ServerToAgent.FromString((await asyncio.wait_for(ws.recv(), 10))[1:]))
                return got

            reoffer, after = asyncio.run(second_session())
            assert reoffer.remote_config.config_hash == digest, "the stuck apply was not offered again"
            assert not after.HasField("remote_config")
            assert agent_json(again, uid)["remote_config_status"]["status"] == "APPLIED"

            # a second reconnect still APPLYING (the agent is really stuck) is not offered a third time
            async def third_session() -> pb.ServerToAgent:
                async with connect(again.ws_url, compression=None) as ws:
                    m = described(uid, 4, caps, "stuck")
                    m.remote_config_status.last_remote_config_hash = digest
                    m.remote_config_status.status = pb.RemoteConfigStatuses_APPLYING
                    await ws.send(b"\x00" + m.SerializeToString())
                    return pb.ServerToAgent.FromString((await asyncio.wait_for(ws.recv(), 10))[1:])

            time.sleep(1.1)
            assert not asyncio.run(third_session()).HasField("remote_config")
        finally:
            again.stop()
    finally:
        sp.stop()


async def test_a_send_after_the_keepalive_closed_the_socket_is_quiet() -> None:
    """uvicorn raises RuntimeError ("Unexpected ASGI message 'websocket.send', after sending
    'websocket.close'") when its keepalive closed the socket while a message was being handled; the
    connection must count as closed instead of logging a traceback."""
    from otelcockpit.opamp_server.transport import WsConnection

    async def closed_by_keepalive(message: dict) -> None:
        raise RuntimeError("Unexpected ASGI message 'websocket.send', after sending 'websocket.close'.")

    conn = WsConnection(closed_by_keepalive)
    assert await conn.send(pb.ServerToAgent(instance_uid=b"x" * 16)) is False
    assert conn.closed
    assert await conn.send(pb.ServerToAgent(instance_uid=b"x" * 16)) is False
    await conn.close(1000)  # no exception either


def test_error_log_is_rate_limited_per_connection_and_in_all() -> None:
    import logging

    now = [0.0]
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("otelcockpit.test.errlog")
    logger.propagate = False
    logger.addHandler(Keep())
    from otelcockpit.opamp_server.errlog import ErrorLog

    log = ErrorLog(logger, per_key=2, total=5, tracebacks=1, window=60, clock=lambda: now[0])
    boom = ValueError("boom")
    written = [log.error("conn-a", "failed", exc=boom) for _ in range(4)]
    assert written == [True, True, False, False]  # two per connection
    written = [log.error(f"conn-{i}", "failed", exc=boom) for i in range(10)]
    assert sum(written) == 3  # five in all per window
    assert log.as_json() == {"logged": 5, "dropped": 9}
    assert sum(1 for r in records if r.exc_info) == 1  # one traceback per window
    now[0] = 61.0
    assert log.error("conn-a", "failed again")
    assert any("9 more errors were not logged" in r.getMessage() for r in records)


def test_the_serve_config_file_takes_the_retention_and_refuses_bad_values(tmp_path: Path) -> None:
    from otelcockpit.commands.serve import load_serve_config
    from otelcockpit.errors import ConfigError

    conf = tmp_path / "serve.yaml"
    conf.write_text("forget_offline_hours: 0\nmax_agents: 25000\n")
    assert load_serve_config(conf) == {"forget_offline_hours": 0, "max_agents": 25000}
    for text, words in (("forget_offline_hours: -1\n", "at least 0"), ("max_agents: 0\n", "at least 1"),
                        ("forget_after: 3\n", "unknown key 'forget_after'")):  # fmt: skip
        conf.write_text(text)
        with pytest.raises(ConfigError, match=words) as err:
            load_serve_config(conf)
        assert "\n" not in str(err.value)
