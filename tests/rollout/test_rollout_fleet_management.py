"""End to end against the Fleet Management fake over real HTTP: staging through a remote attribute
and a temporary pipeline, folding back, rollback, the CLI, and the kill -9 crash test."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from rollout_fm_support import CREDS, REPO, RecordingState, cli_env, recording_state, run_cli
from waits import wait_until

from otelcockpit.backends.base import staging_target as make_target
from otelcockpit.backends.fleet_management import FleetClient
from otelcockpit.backends.fleet_management.backend import FleetManagementBackend
from otelcockpit.rollout.engine import RolloutEngine
from otelcockpit.rollout.journal import Journal
from otelcockpit.rollout.model import ROLLOUT_ATTRIBUTE, Gates, RolloutState, parse_canary, parse_waves
from otelcockpit.rollout.planner import make_plan

PIPELINE = "linux_host_metrics"


def backend_for(url: str) -> FleetManagementBackend:
    client = FleetClient(url, CREDS.instance_id, CREDS.write_token, rate=1000.0, backoff_base=0.02, timeout=10.0)
    return FleetManagementBackend(client, check_limits=False)


def config_hashes(state: RecordingState, ids: list[str]) -> dict[str, str]:
    return {cid: state.GetConfig({"id": cid}).get("hash", "") for cid in ids}


def matched(state: RecordingState, cid: str) -> list[str]:
    return [p["name"] for p in state.matched_pipelines(state.collectors[cid])]


def adds_per_collector(state: RecordingState) -> Counter[str]:
    counts: Counter[str] = Counter()
    for ids, ops in state.bulk_calls:
        if any(o.get("op") == "ADD" and ROLLOUT_ATTRIBUTE in o.get("path", "") for o in ops):
            counts.update(ids)
    return counts


def test_fm_canary_and_waves_manual_gate_fold_and_rollback(tmp_path: Path, fm_fake: Any) -> None:
    server = fm_fake()
    state: RecordingState = server.state

    async def go() -> None:
        backend = backend_for(server.url)
        try:
            snap = await backend.snapshot()
            live = snap.pipeline(PIPELINE)
            new = replace(live, contents=live.contents + "// fm test\n")
            plan = make_plan(snap, new, canary=parse_canary("2"), waves=parse_waves("50%,100%"), gates=Gates(manual=True))
            ids = [cid for s in plan.stages for cid in s.collector_ids]
            old_hashes = config_hashes(state, ids)
            journal = Journal(tmp_path / "rollouts.sqlite3")
            engine = RolloutEngine(journal, make_target(backend), poll_interval=0.05)
            rid = engine.create(plan, backend="fleet-management")
            view = await engine.run(rid)
            assert view.state == RolloutState.PAUSED and "explicit continue" in view.reason
            # Never both, never neither: each collector of the rollout gets exactly one version.
            temp = f"{PIPELINE}__rollout_{rid}"
            for cid in ids:
                names = matched(state, cid)
                assert (PIPELINE in names) + (temp in names) == 1, (cid, names)
            assert {cid for cid in ids if temp in matched(state, cid)} == set(plan.stages[0].collector_ids)
            # Explicit continue twice: the waves, then the fold.
            assert (await engine.run(rid)).state == RolloutState.PAUSED
            view = await engine.run(rid)
            assert view.state == RolloutState.COMPLETED, view.reason
            final = pipeline_named(state, PIPELINE)
            assert final["contents"] == new.contents and final["matchers"] == list(live.matchers)
            assert pipeline_named(state, temp) is None
            assert not any(ROLLOUT_ATTRIBUTE in (c.get("remoteAttributes") or {}) for c in state.collectors.values())
            assert set(adds_per_collector(state).values()) == {1} and set(adds_per_collector(state)) == set(ids)
            assert view.result_revision == state.revisions[-1]["revisionId"]
            assert journal.good_revisions(PIPELINE) == [view.result_revision]
            new_hashes = config_hashes(state, ids)
            assert all(new_hashes[c] != old_hashes[c] for c in ids)
            # Rollback upserts the previous revision's snapshot: every collector is back on its old config.
            revisions = await backend.revisions(PIPELINE)
            from otelcockpit.rollout.history import pipeline_target

            target = pipeline_target(journal, PIPELINE, revisions)
            assert target.revision is not None and target.revision.snapshot.contents == live.contents
            await engine.rollback(PIPELINE, revision=target.revision.id, snapshot=target.revision.snapshot)
            assert config_hashes(state, ids) == old_hashes
            assert engine.view(rid).state == RolloutState.ROLLED_BACK
        finally:
            await backend.close()

    asyncio.run(go())


def pipeline_named(state: RecordingState, name: str) -> dict[str, Any] | None:
    pid = state.by_name.get(name)
    return state.pipelines.get(pid) if pid else None


def test_fm_cli_start_status_changes_rollback(tmp_path: Path, fm_fake: Any) -> None:
    server = fm_fake()
    state: RecordingState = server.state
    env = cli_env(tmp_path)
    g = ["--source", "fleet-management", "--url", server.url]
    old = pipeline_named(state, PIPELINE)["contents"]
    new = tmp_path / "new.alloy"
    new.write_text(old + "// via the CLI\n")
    proc = run_cli(["rollout", "start", "--pipeline", PIPELINE, "--file", str(new), "--canary", "10%", "--waves", "50%", "--soak", "0s", "--poll", "0.05", "--yes", *g], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "completed" in proc.stdout
    rid = next(w for w in proc.stdout.split() if w.startswith("r") and len(w) == 9 and w[1:].isalnum())
    assert pipeline_named(state, PIPELINE)["contents"] == new.read_text()

    proc = run_cli(["rollout", "status", rid, "--json"], env)
    data = json.loads(proc.stdout)
    assert data["state"] == "completed" and [s["state"] for s in data["stages"]] == ["applied"] * 3
    proc = run_cli(["rollout", "status"], env)
    assert rid in proc.stdout and "completed" in proc.stdout

    proc = run_cli(["changes", "--json", *g], env)
    assert proc.returncode == 0, proc.stderr
    kinds = [c["kind"] for c in json.loads(proc.stdout)["changes"]]
    assert "rollout.completed" in kinds and "pipeline.update" in kinds and "pipeline.insert" in kinds

    proc = run_cli(["rollback", PIPELINE, *g], env)
    assert proc.returncode == 1 and "pass --now" in proc.stderr
    proc = run_cli(["rollback", PIPELINE, "--now", "--json", *g], env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["source"] == "previous"
    assert pipeline_named(state, PIPELINE)["contents"] == old
    proc = run_cli(["rollout", "status", rid, "--json"], env)
    assert json.loads(proc.stdout)["state"] == "rolled_back"


def test_fm_kill_9_mid_rollout_then_resume(tmp_path: Path, fm_fake: Any) -> None:
    server = fm_fake(recording_state(collectors=60))
    state: RecordingState = server.state
    env = cli_env(tmp_path)
    journal_path = tmp_path / "journal.sqlite3"
    g = ["--source", "fleet-management", "--url", server.url, "--journal", str(journal_path)]
    new = tmp_path / "new.alloy"
    new.write_text(pipeline_named(state, PIPELINE)["contents"] + "// crash test\n")
    log = (tmp_path / "run.log").open("w")
    args = ["rollout", "start", "--pipeline", PIPELINE, "--file", str(new), "--canary", "2",
            "--waves", "25%,50%,75%,100%", "--soak", "1s", "--poll", "0.1", "--yes", *g]
    proc = subprocess.Popen([sys.executable, "-m", "otelcockpit", *args], cwd=REPO, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        def stage_two() -> str:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            if not journal_path.exists():
                return ""
            db = sqlite3.connect(journal_path)
            try:
                row = db.execute("SELECT rollout_id FROM steps WHERE key = 'stage.1.apply' AND state = 'done'").fetchone()
            except sqlite3.OperationalError:
                row = None
            finally:
                db.close()
            return row[0] if row else ""

        rid = wait_until(stage_two, "the rollout to reach stage 2", timeout=30, interval=0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    adds_at_kill = adds_per_collector(state)

    status = run_cli(["rollout", "status", rid, "--json", "--journal", str(journal_path)], env)
    data = json.loads(status.stdout)
    assert data["state"] == "paused", data
    assert data["current_stage"] == 1 and "interrupted at stage 2" in data["reason"]
    assert data["stages"][0]["state"] == "applied"
    assert data["stages"][1]["state"] in ("soaking", "applied")
    assert all(s["state"] == "pending" for s in data["stages"][2:])
    # Nothing continued without an operator: no write reached the fake after the kill.
    time.sleep(0.5)
    assert adds_per_collector(state) == adds_at_kill
    assert set(adds_at_kill.values()) == {1}

    resumed = run_cli(["rollout", "resume", rid, *g], env, timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    data = json.loads(run_cli(["rollout", "status", rid, "--json", "--journal", str(journal_path)], env).stdout)
    assert data["state"] == "completed"
    adds = adds_per_collector(state)
    total = sum(s["total"] for s in data["stages"])
    assert len(adds) == total and set(adds.values()) == {1}  # no stage pushed twice
    temp = f"{PIPELINE}__rollout_{rid}"
    inserts = [r for r in state.revisions if r["snapshot"].get("name") == temp and r["operation"] == "INSERT"]
    assert len(inserts) == 1
    assert pipeline_named(state, temp) is None
    assert pipeline_named(state, PIPELINE)["contents"] == new.read_text()
