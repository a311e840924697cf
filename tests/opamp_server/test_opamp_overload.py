"""A node that cannot take more answers "come back later" instead of slowing every agent down: over
HTTP 503 with Retry-After, over WebSocket ServerErrorResponse UNAVAILABLE with retry_info. Known agents
keep being served; the health endpoint counts what was refused."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest
from opamp_server_support import start_serve
from websockets.asyncio.client import connect

from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.hub import Hub, Overloaded
from otelcockpit.opamp_server.proto import opamp_pb2 as pb
from otelcockpit.opamp_server.store import open_store

PB = {"Content-Type": "application/x-protobuf"}
CAPS = core.REPORTS_STATUS | core.REPORTS_HEARTBEAT


def described(uid: bytes, seq: int, name: str) -> pb.AgentToServer:
    m = pb.AgentToServer(instance_uid=uid, sequence_num=seq, capabilities=CAPS)
    m.agent_description.identifying_attributes.add(key="service.name").value.string_value = name
    return m


def test_a_full_node_tells_new_agents_to_come_back_later(tmp_path: Path) -> None:
    sp = start_serve(tmp_path / "srv", "--max-agents", "3")
    try:
        known = [uuid.uuid4().bytes for _ in range(3)]
        for i, uid in enumerate(known):
            r = httpx.post(sp.opamp_url, content=described(uid, 0, f"a{i}").SerializeToString(), headers=PB)
            assert r.status_code == 200
        # HTTP: 503 and Retry-After, nothing stored
        late = uuid.uuid4().bytes
        r = httpx.post(sp.opamp_url, content=described(late, 0, "late").SerializeToString(), headers=PB)
        assert r.status_code == 503 and r.headers["retry-after"] == "30", (r.status_code, r.headers)
        assert sp.api("GET", f"/agents/{uuid.UUID(bytes=late)}")[0] == 404

        # WebSocket: UNAVAILABLE with retry_info; the connection stays usable
        async def over_ws() -> pb.ServerToAgent:
            async with connect(sp.ws_url, compression=None) as ws:
                await ws.send(b"\x00" + described(uuid.uuid4().bytes, 0, "late-ws").SerializeToString())
                return pb.ServerToAgent.FromString((await asyncio.wait_for(ws.recv(), 10))[1:])

        rep = asyncio.run(over_ws())
        assert rep.error_response.type == pb.ServerErrorResponseType_Unavailable
        assert rep.error_response.retry_info.retry_after_nanoseconds == 30 * 10**9
        assert "maximum of 3 agents" in rep.error_response.error_message
        # the agents it holds are served as before
        r = httpx.post(sp.opamp_url, content=pb.AgentToServer(instance_uid=known[0], sequence_num=1,
                                                              capabilities=CAPS).SerializeToString(), headers=PB)  # fmt: skip
        assert r.status_code == 200 and not pb.ServerToAgent.FromString(r.content).HasField("error_response")
        health = sp.api("GET", "/health")[1]
        assert health["load"]["refused"] == 2 and health["online"] == 3, health
    finally:
        sp.stop()


async def test_a_saturated_event_loop_refuses_new_work_but_answers_heartbeats(tmp_path: Path) -> None:
    """The hub measures how far behind its event loop runs; past the threshold it is saturated: new
    agents and reports come back later, plain heartbeats of known agents are still answered, and the
    state clears once the loop catches up. A report skipped this way shows as a gap in the sequence,
    so the agent is asked for its full state afterwards."""
    store = open_store(tmp_path / "o.db")
    await store.start()
    hub = Hub(store)
    await hub.start()
    try:
        known = uuid.uuid4().bytes
        assert not (await hub.handle(described(known, 0, "known"), "http")).HasField("error_response")
        # one long step (what a push to 10,000 WebSocket agents costs) is a burst, not saturation
        await asyncio.sleep(0.3)
        time.sleep(2.5)  # noqa: ASYNC251 - blocking on purpose, once
        for _ in range(10):
            await asyncio.sleep(0.1)
            assert not hub.overloaded, f"one blocked step counted as saturation (lag {hub.lag:.2f}s)"
        # saturate: the loop is blocked by work that does not yield (as a flood of big messages does)
        deadline = time.monotonic() + 10
        while not hub.overloaded:
            assert time.monotonic() < deadline, f"never saturated (lag {hub.lag:.2f}s)"
            time.sleep(1.0)  # noqa: ASYNC251 - blocking on purpose, yielding only briefly
            await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await hub.handle(described(uuid.uuid4().bytes, 0, "new"), "http")
        reply = await hub.handle(pb.AgentToServer(instance_uid=known, sequence_num=1, capabilities=CAPS), "http")
        assert not reply.HasField("error_response") and not reply.flags & core.REPORT_FULL_STATE
        # its answer to a config offered is taken: a rollout waits for it
        applied = pb.AgentToServer(instance_uid=known, sequence_num=2, capabilities=CAPS)
        applied.remote_config_status.status = pb.RemoteConfigStatuses_APPLIED
        applied.remote_config_status.last_remote_config_hash = b"h" * 32
        assert not (await hub.handle(applied, "http")).HasField("error_response")
        assert hub.agents[known].reported_hash == b"h" * 32
        report = pb.AgentToServer(instance_uid=known, sequence_num=3, capabilities=CAPS)
        report.health.healthy = False
        with pytest.raises(Overloaded):
            await hub.handle(report, "http")
        assert hub.refused == 2
        # caught up: accepted again; the skipped report is asked for through the full state
        deadline = time.monotonic() + 10
        while hub.overloaded:
            assert time.monotonic() < deadline, f"still saturated (lag {hub.lag:.2f}s)"
            await asyncio.sleep(0.1)
        assert not (await hub.handle(described(uuid.uuid4().bytes, 0, "new"), "http")).HasField("error_response")
        reply = await hub.handle(pb.AgentToServer(instance_uid=known, sequence_num=4, capabilities=CAPS), "http")
        assert reply.flags & core.REPORT_FULL_STATE
    finally:
        await hub.stop()
        await store.aclose()


async def test_a_report_being_written_is_not_what_a_rollout_judges_by(tmp_path: Path) -> None:
    """Memory takes a message before its write commits (so the next message builds on it); a rollout
    judges the agent by its committed state only: a report that kill -9 could still lose was never
    acted on (a taken-over rollout once saw APPLYING v2 that the database never had, then the committed
    APPLIED v1, and counted a rollback by the supervisor)."""
    store = open_store(tmp_path / "o.db")
    await store.start()
    hub = Hub(store)
    await hub.start()
    gate = asyncio.Event()
    real_write = store.write

    async def slow_write(ops, agents=()):  # noqa: ANN001, ANN202 - the real write, once the test lets it
        await gate.wait()
        return await real_write(ops, agents=agents)

    try:
        uid = uuid.uuid4().bytes
        assert not (await hub.handle(described(uid, 0, "a"), "http")).HasField("error_response")
        committed = hub.committed_state(uid)
        store.write = slow_write  # type: ignore[method-assign]
        report = pb.AgentToServer(instance_uid=uid, sequence_num=1, capabilities=CAPS)
        report.remote_config_status.status = pb.RemoteConfigStatuses_APPLYING
        report.remote_config_status.last_remote_config_hash = b"\x02" * 32
        task = asyncio.create_task(hub.handle(report, "http"))
        await asyncio.sleep(0.1)
        assert not task.done()
        assert hub.agents[uid].reported_hash == b"\x02" * 32  # memory has it
        assert hub.committed_state(uid) is committed  # a rollout does not, yet
        gate.set()
        await task
        assert hub.committed_state(uid) is hub.agents[uid] and hub.committed_state(uid).reported_hash == b"\x02" * 32
    finally:
        gate.set()
        await hub.stop()
        await store.aclose()
