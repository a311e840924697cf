"""kill -9 the server in the middle of a rollout, restart it: the rollout is paused where it stopped,
nothing is lost, nothing is offered twice, and resume finishes it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from opamp_server_support import start_serve, wait_for
from rollout_opamp_support import (
    V2,
    agents,
    all_applied,
    history,
    rollout,
    setup_v1,
    simulate,
    stop_all,
    wait_agents,
    wait_state,
)


def test_kill_9_mid_rollout_then_restart_resumes_paused(tmp_path: Path, store_kind: str) -> None:
    """One SQLite node: after kill -9 and a restart the rollout waits paused for an operator. On
    PostgreSQL, where several nodes share the journal, a rollout whose node died is taken over and
    continues (here by the restarted node itself): either way nothing is repeated or offered twice."""
    sp = start_serve(tmp_path / "srv", heartbeat=1)
    procs = [simulate(sp, 8, transport="ws", seed=21), simulate(sp, 4, transport="http", seed=22)]
    sp2 = None
    try:
        wait_agents(sp, 12)
        v1 = setup_v1(sp, 12)
        body = {"config": "gateway", "files": {"collector.yaml": V2}, "canary": "2", "waves": "50%,100%",
                "soak": "2s", "apply_timeout": "30s"}  # fmt: skip
        status, view = sp.api("POST", "/rollouts", body)
        assert status == 201, view
        rid = view["id"]
        stages = [s["collector_ids"] for s in view["plan"]["stages"]]

        # kill -9 once the canary is done and the first wave has applied and is soaking (the test
        # below kills the server while agents are mid-apply)
        def soaking_wave() -> bool:
            v = rollout(sp, rid)
            s1 = v["stages"][1]
            return v["state"] == "running" and v["current_stage"] == 1 and s1["soaking"] == s1["total"]

        wait_for(soaking_wave, 20, 0.02)
        sp.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        sp2 = start_serve(tmp_path / "srv", "--listen", f"127.0.0.1:{sp.opamp_port}", db=sp.db, heartbeat=1)
        v2 = sp2.api("GET", "/configs/gateway/versions/2")[1]["hash"]
        if store_kind == "postgresql":
            done = wait_state(sp2, rid, "completed", "paused", timeout=60)
            assert done["state"] == "completed", done["reason"]
            events = [e["kind"] for e in sp2.api("GET", "/changes?since=1h")[1]["changes"] if e["rollout_id"] == rid]
            assert "rollout.taken_over" in events, events
            wait_for(lambda: all_applied(sp2, v2, 12), 20)
            for a in agents(sp2):
                h = history(sp2, a["instance_uid"])
                assert len([e for e in h if e["hash"] == v2 and e["status"] == "APPLYING"]) == 1, h
            return
        after = rollout(sp2, rid)
        assert after["state"] == "paused", after
        assert after["reason"].startswith("interrupted at stage"), after["reason"]
        assert after["current_stage"] >= 1
        assert after["stages"][0]["state"] == "applied" and after["stages"][0]["applied"] == 2
        wait_agents(sp2, 12, timeout=30)
        time.sleep(max(0.0, 3.0 - (time.monotonic() - killed_at)))
        # nothing continued without an operator: the last wave was never offered version 2,
        # and the canary still runs it (its override survived the crash)
        by_uid = {a["instance_uid"]: a for a in agents(sp2)}
        assert rollout(sp2, rid)["state"] == "paused"
        for uid in stages[0]:
            assert by_uid[uid]["desired"]["version"] == 2
            assert by_uid[uid]["remote_config_status"]["last_hash"] == v2
        for uid in stages[2]:
            assert by_uid[uid]["desired"]["version"] == 1
            assert by_uid[uid]["remote_config_status"]["last_hash"] == v1
            assert not any(h["hash"] == v2 for h in history(sp2, uid))
        status, out = sp2.api("POST", f"/rollouts/{rid}/resume", {})
        assert status == 200, out
        done = wait_state(sp2, rid, "completed", "paused", timeout=40)
        assert done["state"] == "completed", done["reason"]
        wait_for(lambda: all_applied(sp2, v2, 12), 15)
        # every agent went from version 1 to version 2 exactly once: no re-offer, no flip back
        for uid in by_uid:
            h = history(sp2, uid)
            assert len([e for e in h if e["hash"] == v2 and e["status"] == "APPLYING"]) == 1, h
            first_v2 = next(i for i, e in enumerate(h) if e["hash"] == v2)
            assert all(e["hash"] == v2 for e in h[first_v2:]), h
    finally:
        stop_all(procs)
        sp.stop()
        if sp2 is not None:
            sp2.stop()


def test_kill_9_while_agents_are_mid_apply_then_resume_completes(tmp_path: Path, store_kind: str) -> None:
    """The server dies while the canary's agents are APPLYING. Like the OpAMP supervisor, the agents
    keep applying while disconnected and report APPLIED when they reconnect, so the resumed rollout
    completes without waiting out its apply timeout and without a failure."""
    sp = start_serve(tmp_path / "srv", heartbeat=1)
    procs = [simulate(sp, 6, transport="ws", seed=31, apply_delay=2.0)]
    sp2 = None
    try:
        wait_agents(sp, 6)
        setup_v1(sp, 6)
        body = {"config": "gateway", "files": {"collector.yaml": V2}, "canary": "2", "waves": "100%",
                "soak": "0s", "apply_timeout": "120s"}  # fmt: skip
        status, view = sp.api("POST", "/rollouts", body)
        assert status == 201, view
        rid = view["id"]
        canary = view["plan"]["stages"][0]["collector_ids"]

        def canary_applying() -> bool:
            by_uid = {a["instance_uid"]: a for a in agents(sp)}
            return all((by_uid[u]["remote_config_status"] or {}).get("status") == "APPLYING" for u in canary)

        wait_for(canary_applying, 20, 0.02)
        sp.stop(signal.SIGKILL)
        sp2 = start_serve(tmp_path / "srv", "--listen", f"127.0.0.1:{sp.opamp_port}", db=sp.db, heartbeat=1)
        v2 = sp2.api("GET", "/configs/gateway/versions/2")[1]["hash"]
        if store_kind == "postgresql":  # taken over and continued (see the test above)
            done = wait_state(sp2, rid, "completed", "paused", timeout=60)
            assert done["state"] == "completed" and all(s["failed"] == 0 for s in done["stages"]), (done["reason"], done["stages"])
            wait_for(lambda: all_applied(sp2, v2, 6), 20)
            return
        assert rollout(sp2, rid)["state"] == "paused"
        wait_agents(sp2, 6, timeout=30)
        # the canary finished applying while the server was down and says so on reconnect
        wait_for(
            lambda: all(
                (a["remote_config_status"] or {}).get("status") == "APPLIED"
                and a["remote_config_status"]["last_hash"] == v2
                for a in agents(sp2)
                if a["instance_uid"] in canary
            ),
            15,
        )
        started = time.monotonic()
        status, out = sp2.api("POST", f"/rollouts/{rid}/resume", {})
        assert status == 200, out
        done = wait_state(sp2, rid, "completed", "paused", timeout=40)
        assert done["state"] == "completed", done["reason"]
        assert time.monotonic() - started < 30, "the rollout waited for a timeout"
        assert all(s["failed"] == 0 for s in done["stages"]), done["stages"]
        wait_for(lambda: all_applied(sp2, v2, 6), 15)
    finally:
        stop_all(procs)
        sp.stop()
        if sp2 is not None:
            sp2.stop()
