"""Several ``otelcockpit serve`` nodes on one PostgreSQL database (real processes, a real server):
changes made through any node reach the agents of every node, each node's event stream shows the whole
fleet, a rollout whose node is killed is finished by another, the agents of a dead node go offline, the
same instance_uid live on two nodes is told apart, and a database that goes away for a while is
survived without a restart."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opamp_server_support import WRITE_TOKEN, ServeProcess, start_serve, wait_for
from websockets.asyncio.client import connect

from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.proto import opamp_pb2 as pb

pytestmark = pytest.mark.timeout(240)
V1 = "receivers: {otlp: {}}\nexporters: {debug: {}}\n"
V2 = V1 + "# v2\n"


# Several nodes share a PostgreSQL database, never a SQLite file: this module runs on PostgreSQL only
# (and skips, with the reason, where it is missing).
@pytest.fixture(scope="module", params=["postgresql"], autouse=True)
def store_kind(request: pytest.FixtureRequest) -> str:
    request.getfixturevalue("pg_cluster")
    return str(request.param)


@pytest.fixture
def nodes(tmp_path: Path, serve_store: str | None) -> Iterator[list[ServeProcess]]:
    assert serve_store, "the nodes need the PostgreSQL database"
    started: list[ServeProcess] = []
    try:
        for i in range(3):
            started.append(start_serve(tmp_path / f"n{i}", "--node", f"node-{i}", heartbeat=2))
        yield started
    finally:
        for sp in started:
            sp.stop()


def simulate(sp: ServeProcess, count: int, seed: int, *, transport: str = "ws", duration: float = 120):  # noqa: ANN201
    import os
    import subprocess
    import sys

    url = sp.ws_url if transport == "ws" else sp.opamp_url
    args = [sys.executable, "-m", "otelcockpit", "simulate-agents", "--server", url, "--count", str(count),
            "--transport", transport, "--seed", str(seed), "--duration", str(duration), "--heartbeat", "1",
            "--apply-delay", "0.1", "--quiet"]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def agents(sp: ServeProcess) -> list[dict]:
    status, body = sp.api("GET", "/agents")
    assert status == 200, body
    return body["agents"]


class Events:
    """A node's event stream, read in a thread."""

    def __init__(self, sp: ServeProcess) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", sp.admin_port, timeout=60)
        self.conn.request("GET", "/api/v1/events", headers={"Authorization": f"Bearer {WRITE_TOKEN}"})
        self.resp = self.conn.getresponse()
        self.events: list[tuple[str, dict]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        name = ""
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.events.append((name, json.loads(line[6:])))
        except Exception:  # noqa: BLE001 - closed
            pass

    def close(self) -> None:
        if self.conn.sock is not None:
            self.conn.sock.shutdown(socket.SHUT_RDWR)


def stop_all(procs: list) -> None:  # noqa: ANN001
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except Exception:  # noqa: BLE001
            p.kill()


def test_a_change_through_one_node_reaches_the_agents_of_every_node(nodes: list[ServeProcess]) -> None:
    n0, n1, n2 = nodes
    events = Events(n2)
    procs = [simulate(n1, 4, seed=81), simulate(n2, 4, seed=82)]
    try:
        wait_for(lambda: sum(a["status"] == "online" for a in agents(n0)) == 8, 30)
        # every node lists the whole fleet, and knows which node each agent is on
        for sp in nodes:  # (each node reads what the others wrote a moment later)
            wait_for(lambda sp=sp: len(agents(sp)) == 8 and {a["node"] for a in agents(sp)} == {"node-1", "node-2"}, 10)
        status, cfg = n0.api("POST", "/configs", {"name": "gw", "files": {"c.yaml": {"body": V1}}})
        assert status == 201
        created = time.time()
        status, _ = n0.api("POST", "/assignments", {"config": "gw", "selector": "", "priority": 1})
        assert status == 201
        applied = wait_for(
            lambda: all((a["remote_config_status"] or {}).get("status") == "APPLIED"
                        and a["remote_config_status"]["last_hash"] == cfg["hash"] for a in agents(n0)) and agents(n0),
            15,
        )  # fmt: skip
        assert applied
        # pushed to the WebSocket agents of nodes 1 and 2 within a second of the assignment made on node 0
        for a in agents(n1):
            status, detail = n1.api("GET", f"/agents/{a['instance_uid']}")
            first = min(
                h["at"] for h in detail["remote_config_history"] if h["hash"] == cfg["hash"] and h["status"] == "APPLYING"
            )
            t = time.mktime(time.strptime(first[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone + float("0." + first[20:26])
            assert t - created < 1.0 + 0.5, (a["node"], t - created)  # + the agents' own apply step
        # node 2's event stream saw the config and the assignment made on node 0, and agents of node 1
        wait_for(lambda: {"config", "assignment"} <= {n for n, _ in events.events}, 10)
        seen_nodes = {d.get("node") for n, d in events.events if n == "agent"}
        assert "node-1" in seen_nodes, seen_nodes
    finally:
        events.close()
        stop_all(procs)


def test_http_agents_move_between_nodes_without_losing_their_place(nodes: list[ServeProcess]) -> None:
    """An HTTP agent behind a load balancer reaches a different node each time: its sequence goes on,
    nobody asks it for its full state again, and every node shows it."""
    uid = uuid.uuid4().bytes
    m = pb.AgentToServer(instance_uid=uid, sequence_num=0, capabilities=0x3007)
    m.agent_description.identifying_attributes.add(key="service.name").value.string_value = "mover"
    m.remote_config_status.status = pb.RemoteConfigStatuses_UNSET
    first = httpx.post(nodes[0].opamp_url, content=m.SerializeToString(), headers={"Content-Type": "application/x-protobuf"})
    assert first.status_code == 200
    for seq in range(1, 13):
        sp = nodes[seq % 3]
        hb = pb.AgentToServer(instance_uid=uid, sequence_num=seq, capabilities=0x3007)
        r = httpx.post(sp.opamp_url, content=hb.SerializeToString(), headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 200
        reply = pb.ServerToAgent.FromString(r.content)
        assert not reply.flags & core.REPORT_FULL_STATE, f"node {seq % 3} asked for the full state at seq {seq}"
        time.sleep(0.05)
    for sp in nodes:
        wait_for(lambda sp=sp: any(a["identifying_attributes"].get("service.name") == "mover"
                                   and a["sequence_num"] >= 11 for a in agents(sp)), 10)  # fmt: skip


def test_the_same_instance_uid_live_on_two_nodes_gets_a_new_one(nodes: list[ServeProcess]) -> None:
    uid = uuid.uuid4().bytes

    def hello(seq: int) -> bytes:
        m = pb.AgentToServer(instance_uid=uid, sequence_num=seq, capabilities=0x3007)
        m.agent_description.identifying_attributes.add(key="service.name").value.string_value = "twin"
        return b"\x00" + m.SerializeToString()

    async def go() -> pb.ServerToAgent:
        async with connect(nodes[0].ws_url, compression=None) as ws0:
            await ws0.send(hello(0))
            await asyncio.wait_for(ws0.recv(), 10)
            # node 1 must know the agent is live on node 0 (told through the database)
            await asyncio.sleep(1.0)
            async with connect(nodes[1].ws_url, compression=None) as ws1:
                await ws1.send(hello(0))  # a clone: its sequence starts again
                return pb.ServerToAgent.FromString((await asyncio.wait_for(ws1.recv(), 10))[1:])

    reply = asyncio.run(go())
    assert len(reply.agent_identification.new_instance_uid) == 16
    assert reply.agent_identification.new_instance_uid != uid


def test_kill_9_of_the_node_running_a_rollout_and_of_a_node_with_agents(nodes: list[ServeProcess]) -> None:
    import signal

    n0, n1, n2 = nodes
    procs = [simulate(n1, 4, seed=91), simulate(n2, 4, seed=92)]
    victims = [simulate(n0, 2, seed=93)]
    try:
        wait_for(lambda: sum(a["status"] == "online" for a in agents(n1)) == 10, 30)
        status, cfg = n0.api("POST", "/configs", {"name": "gw", "files": {"c.yaml": {"body": V1}}})
        n0.api("POST", "/assignments", {"config": "gw", "selector": 'service.name!=""', "priority": 1})
        wait_for(lambda: sum((a["remote_config_status"] or {}).get("status") == "APPLIED" for a in agents(n1)) == 10, 20)
        # a rollout created on node 0 runs on node 0; its soak keeps it going for a while
        body = {"pipeline": "gw", "contents": "# file: c.yaml\n" + V2, "canary": "2", "waves": "50%,100%",
                "soak": "3s", "apply_timeout": "30s"}  # fmt: skip
        status, view = n0.api("POST", "/rollouts", body)
        assert status == 201, view
        rid = view["id"]
        wait_for(lambda: n1.api("GET", f"/rollouts/{rid}")[1]["stages"][0]["soaking"] > 0, 20, 0.05)
        n0.stop(signal.SIGKILL)
        killed = time.monotonic()
        # the agents that were on node 0 are marked offline by the other nodes once node 0 is dead
        wait_for(lambda: all(a["status"] == "offline" for a in agents(n2) if a["node"] == "node-0"), 20)
        assert {a["node"] for a in agents(n2) if a["status"] == "offline"} == {"node-0"}
        # ... and come back through another node, as behind a load balancer (same identities)
        stop_all(victims)
        victims = [simulate(n1, 2, seed=93)]
        # another node took the rollout over (within 15 s) and finishes it; nothing offered twice
        done = wait_for(lambda: (lambda v: v if v["state"] in ("completed", "paused") else None)(
            n1.api("GET", f"/rollouts/{rid}")[1]), 60, 0.2)  # fmt: skip
        assert done["state"] == "completed", done["reason"]
        changes = n1.api("GET", "/changes?since=1h")[1]["changes"]
        taken = [c for c in changes if c["kind"] == "rollout.taken_over" and c["rollout_id"] == rid]
        assert taken, [c["kind"] for c in changes if c["rollout_id"] == rid]
        took = time.mktime(time.strptime(taken[0]["at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert took - (time.time() - (time.monotonic() - killed)) < 15.0
        v2 = n1.api("GET", "/configs/gw/versions/2")[1]["hash"]
        listed = agents(n1)
        assert len(listed) == 10 and {a["node"] for a in listed} == {"node-1", "node-2"}
        for a in listed:
            detail = n1.api("GET", f"/agents/{a['instance_uid']}")[1]
            applying = [h for h in detail["remote_config_history"] if h["hash"] == v2 and h["status"] == "APPLYING"]
            assert len(applying) == 1, detail["remote_config_history"]
    finally:
        stop_all(procs + victims)


def test_the_database_away_for_ten_seconds(nodes: list[ServeProcess], pg_cluster) -> None:  # noqa: ANN001
    """Nodes stay up, keep answering their agents' heartbeats, refuse writes with 503 and Retry-After,
    and recover without a restart."""
    n0, n1, _ = nodes
    procs = [simulate(n1, 3, seed=95)]
    try:
        wait_for(lambda: sum(a["status"] == "online" for a in agents(n0)) == 3, 30)
        # an HTTP agent that polls node 1
        uid = uuid.uuid4().bytes
        hello = pb.AgentToServer(instance_uid=uid, sequence_num=0, capabilities=0x3007)
        hello.agent_description.identifying_attributes.add(key="service.name").value.string_value = "poller"
        post = lambda sp, m: httpx.post(sp.opamp_url, content=m.SerializeToString(),  # noqa: E731
                                        headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
        assert post(n1, hello).status_code == 200
        pg_cluster.stop("immediate")
        try:
            # the known agent's heartbeats are still answered (written when the database is back)
            for seq in range(1, 4):
                r = post(n1, pb.AgentToServer(instance_uid=uid, sequence_num=seq, capabilities=0x3007))
                assert r.status_code == 200, (seq, r.status_code, r.text)
                assert not pb.ServerToAgent.FromString(r.content).flags & core.REPORT_FULL_STATE
                time.sleep(0.3)
            # a write is refused at once, with when to try again
            r = httpx.post(
                n0.admin_url + "/configs",
                json={"name": "gw", "files": {"c.yaml": {"body": V1}}},
                headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
                timeout=30,
            )
            assert r.status_code == 503 and r.headers.get("retry-after"), (r.status_code, r.text)
            # reads answer from memory: the WebSocket agents of node 1 are online there
            assert sum(a["status"] == "online" for a in agents(n1)) == 4
            # a new agent needs a write: told to come back later
            new = pb.AgentToServer(instance_uid=uuid.uuid4().bytes, capabilities=1)
            new.agent_description.identifying_attributes.add(key="service.name").value.string_value = "late"
            r = post(n1, new)
            assert r.status_code == 503 and r.headers.get("retry-after"), (r.status_code, r.text)
            time.sleep(8.0)
            assert all(sp.alive() for sp in nodes)
        finally:
            pg_cluster.start()
        # back: writes go through again on every node, without a restart
        status, body = wait_for(
            lambda: (lambda r: r if r[0] == 201 else None)(
                n0.api("POST", "/configs", {"name": "gw", "files": {"c.yaml": {"body": V1}}})
            ),
            30,
            0.5,
        )
        assert status == 201
        wait_for(lambda: any(c["name"] == "gw" for c in n1.api("GET", "/configs")[1]["configs"]), 15)
        # the heartbeats answered while it was away were written: node 0 reads the poller's sequence
        wait_for(lambda: any(a["identifying_attributes"].get("service.name") == "poller" and a["sequence_num"] == 3
                             for a in agents(n0)), 15)  # fmt: skip
        assert all(a["status"] == "online" for a in agents(n1) if a["identifying_attributes"].get("service.name") != "poller")
    finally:
        stop_all(procs)


def test_a_paused_rollout_stays_paused_when_its_node_dies(nodes: list[ServeProcess]) -> None:
    """Paused through another node's API; its node killed; after the takeover it is still paused, and
    a resume through a third node finishes it."""
    import signal

    n0, n1, n2 = nodes
    procs = [simulate(n1, 3, seed=71), simulate(n2, 3, seed=72)]
    try:
        wait_for(lambda: sum(a["status"] == "online" for a in agents(n0)) == 6, 30)
        n0.api("POST", "/configs", {"name": "gw", "files": {"c.yaml": {"body": V1}}})
        n0.api("POST", "/assignments", {"config": "gw", "selector": 'service.name!=""', "priority": 1})
        wait_for(lambda: sum((a["remote_config_status"] or {}).get("status") == "APPLIED" for a in agents(n0)) == 6, 20)
        body = {"pipeline": "gw", "contents": "# file: c.yaml\n" + V2, "canary": "1", "waves": "100%",
                "soak": "5s", "apply_timeout": "30s"}  # fmt: skip
        status, view = n0.api("POST", "/rollouts", body)
        assert status == 201, view
        rid = view["id"]
        wait_for(lambda: n1.api("GET", f"/rollouts/{rid}")[1]["stages"][0]["soaking"] > 0, 20)
        status, paused = n1.api("POST", f"/rollouts/{rid}/pause", {})
        assert status == 200, paused
        wait_for(lambda: n0.api("GET", f"/rollouts/{rid}")[1]["state"] == "paused", 10)
        n0.stop(signal.SIGKILL)
        # well past the time another node takes a dead node's rollouts over: still paused, nothing sent
        time.sleep(16.0)
        view = n2.api("GET", f"/rollouts/{rid}")[1]
        assert view["state"] == "paused", view["state"]
        assert view["stages"][1]["applying"] + view["stages"][1]["applied"] == 0, view["stages"][1]
        status, resumed = n2.api("POST", f"/rollouts/{rid}/resume", {})
        assert status == 200, resumed
        done = wait_for(lambda: (lambda v: v if v["state"] in ("completed", "paused") else None)(
            n2.api("GET", f"/rollouts/{rid}")[1]), 60, 0.2)  # fmt: skip
        assert done["state"] == "completed", done["reason"]
    finally:
        stop_all(procs)
