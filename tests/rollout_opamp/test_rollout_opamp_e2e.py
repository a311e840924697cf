"""Staged rollouts inside ``otelcockpit serve``, end to end: a real server subprocess, real simulated
agents over WebSocket and HTTP (``otelcockpit simulate-agents``), the admin API."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from typing import Any

from opamp_server_support import WRITE_TOKEN, ServeProcess, wait_for
from rollout_opamp_support import (
    V2,
    agents,
    all_applied,
    fails,
    history,
    rollout,
    salted_v1,
    setup_v1,
    simulate,
    stop_all,
    wait_agents,
    wait_state,
)


class EventReader:
    """The admin event stream (SSE), read in a daemon thread (it ends when the server stops)."""

    def __init__(self, sp: ServeProcess) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", sp.admin_port, timeout=30)
        self.conn.request("GET", "/api/v1/events", headers={"Authorization": f"Bearer {WRITE_TOKEN}"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        self.events: list[tuple[str, str]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        name = ""
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.events.append((name, line[6:]))
        except Exception:  # noqa: BLE001 - closed by the test
            pass

    def close(self) -> None:
        if self.conn.sock is not None:
            self.conn.sock.shutdown(socket.SHUT_RDWR)  # the server sees the stream end at once

    def rollouts(self) -> list[dict[str, Any]]:
        return [json.loads(d) for n, d in list(self.events) if n == "rollout"]


def test_canary_and_waves_complete_on_ws_and_http_agents(serve: ServeProcess) -> None:
    procs = [simulate(serve, 10, transport="ws", seed=11), simulate(serve, 6, transport="http", seed=12)]
    try:
        wait_agents(serve, 16)
        v1 = setup_v1(serve, 16)
        body = {
            "config": "gateway",
            "files": {"collector.yaml": {"body": V2}},
            "canary": "2",
            "waves": "50%,100%",
            "apply_timeout": "20s",
            "soak": "0s",
            "author": "alice",
        }
        status, view = serve.api("POST", "/rollouts", body)
        assert status == 201, view
        assert view["state"] in ("running", "planned", "completed")
        stages = view["plan"]["stages"]
        assert [s["name"] for s in stages] == ["canary", "wave 1 (50%)", "wave 2 (100%)"]
        assert [len(s["collector_ids"]) for s in stages] == [2, 6, 8]
        assert sum(view["plan"]["blast_radius"]["by_env"].values()) == 16
        # recorded as the admin token's name, with the person the client acts for
        assert view["new_version"] == 2 and view["author"] == "tester (alice)"
        done = wait_state(serve, view["id"], "completed", "paused")
        assert done["state"] == "completed", done["reason"]
        assert done["result_revision"] == "2"
        assert all(s["applied"] == s["total"] for s in done["stages"])
        v2 = serve.api("GET", "/configs/gateway/versions/2")[1]["hash"]
        assert v2 != v1
        wait_for(lambda: all_applied(serve, v2, 16), 15)
        # folded: the assignment now points to version 2, no per-agent override is left
        assert [a["version"] for a in serve.api("GET", "/assignments")[1]["assignments"]] == [2]
        assert {a["desired"]["version"] for a in agents(serve)} == {2}
        # every agent went to version 2 exactly once (the canary was not offered again by the fold)
        for a in agents(serve):
            applying = [
                h for h in history(serve, a["instance_uid"]) if h["hash"] == v2 and h["status"] == "APPLYING"
            ]
            assert len(applying) == 1, (a["instance_uid"], history(serve, a["instance_uid"]))
        # the journal, the audit log and the changes timeline know about it
        listed = serve.api("GET", "/rollouts")[1]["rollouts"]
        assert [r["id"] for r in listed] == [view["id"]]
        kinds = {c["kind"] for c in serve.api("GET", "/changes?since=1h")[1]["changes"]}
        assert {"rollout.started", "rollout.completed", "rollout.fold"} <= kinds
        targets = serve.api("GET", "/rollback-targets")[1]
        assert targets["pipelines"]["gateway"]["revision"] == "1"
        # every agent's own rollback target: the config it reported APPLIED before version 2
        every = {a["instance_uid"] for a in agents(serve)}
        assert set(targets["collectors"]) == every
        assert {(t["hash"], t["label"]) for t in targets["collectors"].values()} == {(v1, "gateway@v1")}
        assert all(t["at"] for t in targets["collectors"].values())
    finally:
        stop_all(procs)


def test_failures_pause_at_the_gate_then_rollback_returns_every_agent(serve: ServeProcess) -> None:
    procs = [
        simulate(serve, 12, transport="ws", seed=3, fail_rate=0.35),
        simulate(serve, 4, transport="http", seed=4),
    ]
    try:
        wait_agents(serve, 16)
        assert fails(V2, 12, 3, 0.35) >= 2
        v1 = setup_v1(serve, 16, body=salted_v1(12, 3, 0.35))
        body = {"config": "gateway", "files": {"collector.yaml": V2}, "canary": "25%", "waves": "100%",
                "max_failures": 0, "apply_timeout": "20s", "soak": "0s"}  # fmt: skip
        events = EventReader(serve)
        status, view = serve.api("POST", "/rollouts", body)
        assert status == 201, view
        paused = wait_state(serve, view["id"], "paused", "completed")
        # the event stream carried the rollout's progress, up to the pause
        seen = wait_for(lambda: [e for e in events.rollouts() if e["state"] == "paused"], 5)
        assert seen[0]["id"] == view["id"] and "above the gate" in seen[0]["reason"]
        events.close()
        assert paused["state"] == "paused"
        assert "above the gate" in paused["reason"]
        assert paused["failures"] and all(f["status"] == "failed" for f in paused["failures"])
        failed_ids = {f["id"] for f in paused["failures"]}
        v2 = serve.api("GET", "/configs/gateway/versions/2")[1]["hash"]
        for a in agents(serve):
            if a["instance_uid"] in failed_ids:
                assert v2 in a["failed_hashes"]
        # an agent that failed version 2 goes back to the version 1 it last reported APPLIED;
        # one never offered version 2 still runs its only config (nothing to return to)
        targets = serve.api("GET", "/rollback-targets")[1]["collectors"]
        assert {uid: targets[uid]["hash"] for uid in failed_ids} == {uid: v1 for uid in failed_ids}
        assert not {a["instance_uid"] for a in agents(serve) if a["desired"]["version"] == 1} & set(targets)
        # the assignment still points to version 1: nothing was folded
        assert [a["version"] for a in serve.api("GET", "/assignments")[1]["assignments"]] == [1]
        status, out = serve.api("POST", f"/rollouts/{view['id']}/rollback", {})
        assert status == 200, out
        assert out["to_revision"] == "1"
        assert out["rollout"]["state"] == "rolled_back"
        wait_for(lambda: all_applied(serve, v1, 16), 20)
        assert {a["desired"]["version"] for a in agents(serve)} == {1}
        # a hash that failed on an agent is never offered to it again: a new rollout of the same
        # version holds those agents back
        status, again = serve.api("POST", "/rollouts", {**body, "canary": None, "max_failures": 100})
        assert status == 201, again
        final = wait_state(serve, again["id"], "paused", "completed")
        held = {f["id"] for f in final["failures"] if f["status"] == "held"}
        assert failed_ids <= held
        # `rollback gateway` with a rollout in flight (never folded): it is aborted, every agent back on 1
        status, out = serve.api("POST", "/configs/gateway/rollback", {})
        assert status == 200, out
        assert out["to_revision"] == "1" and out["aborted"] == [again["id"]], out
        assert rollout(serve, again["id"])["state"] == "rolled_back"
        wait_for(lambda: all_applied(serve, v1, 16), 20)
    finally:
        stop_all(procs)


def test_refusals(serve: ServeProcess) -> None:
    status, cv = serve.api("POST", "/configs", {"name": "gateway", "files": {"c.yaml": {"body": "a: 1\n"}}})
    assert status == 201
    status, body = serve.api("POST", "/rollouts", {"config": "gateway", "version": 1})
    assert status == 409 and "assigned to no agent" in body["error"]
    status, body = serve.api("POST", "/rollouts", {"config": "nope", "version": 1})
    assert status == 404 and "error" in body
    status, body = serve.api("POST", "/rollouts", {"config": "gateway"})
    assert status == 400 and "give the new version" in body["error"]
    serve.api("POST", "/assignments", {"config": "gateway", "version": 1, "selector": ""})
    status, body = serve.api("POST", "/rollouts", {"config": "gateway", "version": 1})
    assert status == 409 and "already live" in body["error"]
    status, body = serve.api("POST", "/rollouts", {"config": "gateway", "files": {"c.yaml": "a: 2\n"}})
    assert status == 409 and "reaches no collector" in body["error"]
    status, body = serve.api(
        "POST", "/rollouts", {"config": "gateway", "files": {"c.yaml": "a: 2\n"}, "canary": "x=~["}
    )
    assert status in (409, 422) and "error" in body
    status, body = serve.api("POST", "/rollouts", {"config": "gateway", "files": {"c.yaml": "a: [1,\n"}})
    assert status == 409 and "policy error" in body["error"] and "[syntax]" in body["error"], body
    status, body = serve.api("POST", "/rollouts/plan", {"config": "gateway", "files": {"c.yaml": "a: [1,\n"}})
    assert status == 200 and body["plan"]["blocked"] is True  # the plan shows what blocks it
    assert serve.api("GET", "/rollouts")[1] == {"rollouts": []}
    assert len(serve.api("GET", "/configs/gateway")[1]["versions"]) == 1  # no version made for a refused push
    status, body = serve.api("GET", "/rollouts/r-missing")
    assert status == 404


def test_pause_resume_explicit_continue_and_abort(serve: ServeProcess) -> None:
    procs = [simulate(serve, 8, transport="ws", seed=41)]
    try:
        wait_agents(serve, 8)
        v1 = setup_v1(serve, 8)
        body = {"config": "gateway", "files": {"collector.yaml": V2}, "canary": "2", "waves": "100%",
                "manual": True, "soak": "3s"}  # fmt: skip
        status, view = serve.api("POST", "/rollouts", body)
        assert status == 201, view
        rid = view["id"]
        paused = wait_state(serve, rid, "paused")
        assert "explicit continue" in paused["reason"] and paused["stages"][0]["applied"] == 2
        status, out = serve.api("POST", f"/rollouts/{rid}/resume", {})
        assert status == 200 and out["rollout"]["state"] == "running", out
        wait_for(lambda: rollout(serve, rid)["stages"][1]["soaking"] == 6, 5, 0.05)
        status, out = serve.api("POST", f"/rollouts/{rid}/pause", {})  # mid-soak: the server's runner stops
        assert status == 200, out
        assert out["rollout"]["state"] == "paused" and out["rollout"]["reason"] == "paused by tester"
        status, out = serve.api("POST", f"/rollouts/{rid}/abort", {})
        assert status == 200, out
        assert out["rollout"]["state"] == "aborted"
        wait_for(lambda: all_applied(serve, v1, 8), 15)  # every staged agent is back on version 1
        assert {a["desired"]["version"] for a in agents(serve)} == {1}
        assert [a["version"] for a in serve.api("GET", "/assignments")[1]["assignments"]] == [1]
        status, out = serve.api("POST", f"/rollouts/{rid}/resume", {})
        assert status == 409 and "nothing to resume" in out["error"]
    finally:
        stop_all(procs)
