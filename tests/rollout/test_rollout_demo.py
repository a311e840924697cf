"""End to end on the demo backend: the same attribute + temporary-pipeline staging as Fleet
Management, with the demo's simulated applies, failures and health (virtual clock)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from rollout_fm_support import cli_env, run_cli
from rollout_support import VirtualClock

from otelcockpit.backends.base import staging_target as make_target
from otelcockpit.backends.demo import DemoBackend
from otelcockpit.fleet.matchers import compile_matchers, matches_getter
from otelcockpit.fleet.model import ConfigStatus, Health
from otelcockpit.rollout.engine import RolloutEngine
from otelcockpit.rollout.history import collector_targets, pipeline_target
from otelcockpit.rollout.journal import Journal
from otelcockpit.rollout.model import ROLLOUT_ATTRIBUTE, Gates, RolloutState, parse_canary, parse_waves
from otelcockpit.rollout.planner import make_plan

PIPELINE = "linux_host_metrics"


def demo(tmp_path: Path, *, fail_rate: float, collectors: int = 120):
    clock = VirtualClock()
    backend = DemoBackend(clock=clock, collectors=collectors)
    sim = backend.sim
    sim.apply_fail_rate = fail_rate
    sim.health_churn = False
    sim.collectors = [replace(c, health=Health.HEALTHY, last_error="") for c in sim.collectors]
    journal = Journal(tmp_path / "rollouts.sqlite3", clock=clock.ts)
    engine = RolloutEngine(journal, make_target(backend), clock=clock.ts, sleep=clock.sleep, poll_interval=2.0)
    return clock, backend, journal, engine


async def plan_for(backend: DemoBackend, gates: Gates):  # noqa: ANN201
    snap = await backend.snapshot()
    live = snap.pipeline(PIPELINE)
    new = replace(live, contents=live.contents + "// rollout test\n")
    return snap, make_plan(snap, new, canary=parse_canary("3"), waves=parse_waves("30%,100%"), gates=gates)


def hashes(snap, ids):  # noqa: ANN001, ANN201
    by_id = {c.id: c for c in snap.collectors}
    return {cid: by_id[cid].remote_config.hash for cid in ids}


def test_demo_rollout_with_canary_and_waves_completes_and_folds(tmp_path: Path) -> None:
    async def go() -> None:
        clock, backend, journal, engine = demo(tmp_path, fail_rate=0.0)
        before, plan = await plan_for(backend, Gates(soak_seconds=6))
        rid = engine.create(plan, backend="demo")
        seen_both_or_neither = []

        async def check_invariant(seconds: float) -> None:
            # Between polls: every collector of the rollout is matched by exactly one of the two pipelines.
            snap = backend.snapshot_now()
            live = snap.pipeline(PIPELINE)
            temp = snap.pipeline(f"{PIPELINE}__rollout_{rid}")
            if temp is not None and live is not None:
                for c in snap.collectors:
                    if c.id in plan_ids:
                        got = (PIPELINE in c.pipelines) + (temp.name in c.pipelines)
                        if got != 1:
                            seen_both_or_neither.append(c.id)
            await clock.sleep(seconds)

        plan_ids = {cid for s in plan.stages for cid in s.collector_ids}
        engine.sleep = check_invariant
        view = await engine.run(rid)
        assert view.state == RolloutState.COMPLETED, view.reason
        assert [s.name for s in view.stages] == ["canary", "wave 1 (30%)", "wave 2 (100%)"]
        assert all(s.applied == s.total for s in view.stages)
        assert seen_both_or_neither == []
        snap = await backend.snapshot()
        live = snap.pipeline(PIPELINE)
        assert live.contents == plan.new.contents and live.matchers == plan.new.matchers
        assert snap.pipeline(f"{PIPELINE}__rollout_{rid}") is None
        assert not any(ROLLOUT_ATTRIBUTE in c.remote_attributes for c in snap.collectors)
        assert journal.good_revisions(PIPELINE) == [view.result_revision]

    asyncio.run(go())


def test_demo_failing_collectors_pause_at_the_gate_then_rollback_restores_every_hash(tmp_path: Path) -> None:
    async def go() -> None:
        clock, backend, journal, engine = demo(tmp_path, fail_rate=0.5)
        before, plan = await plan_for(backend, Gates(max_failures=2, apply_timeout=60))
        ids = [cid for s in plan.stages for cid in s.collector_ids]
        old = hashes(before, ids)
        rid = engine.create(
            plan, backend="demo", rollback_revision=before.revisions[PIPELINE][-1].id, rollout_id="rtest0001"
        )
        view = await engine.run(rid)
        assert view.state == RolloutState.PAUSED
        assert "above the gate (max 2)" in view.reason
        assert view.failed >= 3
        assert view.stages[-1].applied == 0 and view.stages[-1].applying == 0  # the last wave was never offered
        # Roll back: the in-flight rollout is aborted, then the previous revision's snapshot is upserted.
        revisions = await backend.revisions(PIPELINE)
        target = pipeline_target(journal, PIPELINE, revisions)
        assert target.source == "previous"
        live_before = before.pipeline(PIPELINE)
        await engine.rollback(PIPELINE, revision=revisions[-1].id, snapshot=live_before, author="oncall")
        assert engine.view(rid).state == RolloutState.ROLLED_BACK
        for _ in range(30):
            await clock.sleep(2)
        snap = await backend.snapshot()
        assert hashes(snap, ids) == old
        assert snap.pipeline(f"{PIPELINE}__rollout_{rid}") is None
        assert not any(ROLLOUT_ATTRIBUTE in c.remote_attributes for c in snap.collectors)
        # Collector rollback targets: the failed ones still name the hash they ran before.
        failed = [f.collector_id for f in view.failures]
        targets = collector_targets(journal, [c for c in snap.collectors if c.id in failed])
        assert all(targets[cid] for cid in failed)
        # Failures were recorded: that version is never offered to them automatically again.
        assert set(journal.failed_pairs(failed, [plan.version_key])) == set(failed)

    asyncio.run(go())


def test_demo_matchers_of_the_temporary_pipeline_select_only_staged_collectors(tmp_path: Path) -> None:
    async def go() -> None:
        clock, backend, journal, engine = demo(tmp_path, fail_rate=0.0)
        before, plan = await plan_for(backend, Gates(manual=True))
        rid = engine.create(plan, backend="demo")
        view = await engine.run(rid)
        assert view.state == RolloutState.PAUSED and "explicit continue" in view.reason
        snap = await backend.snapshot()
        temp = snap.pipeline(f"{PIPELINE}__rollout_{rid}")
        assert temp is not None and temp.contents == plan.new.contents
        staged = {c.id for c in snap.collectors if matches_getter(compile_matchers(temp.matchers), c.attr)}
        assert staged == set(plan.stages[0].collector_ids)
        assert f'{ROLLOUT_ATTRIBUTE}!="{rid}"' in snap.pipeline(PIPELINE).matchers
        applied = [c for c in snap.collectors if c.id in staged]
        assert all(c.remote_config.status == ConfigStatus.APPLIED for c in applied)
        # Abort: back on the live version, temporary parts gone.
        await engine.abort(rid)
        snap = await backend.snapshot()
        assert snap.pipeline(PIPELINE).matchers == before.pipeline(PIPELINE).matchers
        assert snap.pipeline(f"{PIPELINE}__rollout_{rid}") is None

    asyncio.run(go())


def test_read_only_refuses_every_step(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    new = tmp_path / "new.alloy"
    new.write_text("prometheus.exporter.unix \"host\" { }\n")
    for args in (
        ["rollout", "start", "--pipeline", PIPELINE, "--file", str(new), "--yes"],
        ["rollout", "pause", "r00000000"],
        ["rollout", "resume", "r00000000"],
        ["rollout", "abort", "r00000000"],
        ["rollback", PIPELINE, "--now"],
        ["rollback", PIPELINE, "--yes"],  # every write that confirms takes --yes (and --now)
        ["rollout", "rollback", "r00000000", "--yes"],
        ["rollout", "start", "--pipeline", PIPELINE, "--file", str(new), "--now"],
    ):
        proc = run_cli([*args, "--read-only"], env)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("otelcockpit: read-only: refused to"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    # Reading is fine in read-only: the plan prints (and changes nothing).
    proc = run_cli(["rollout", "plan", "--pipeline", PIPELINE, "--file", str(new), "--canary", "2", "--read-only"], env)
    assert proc.returncode == 0, proc.stderr
    assert "blast radius" in proc.stdout and "canary" in proc.stdout
    proc = run_cli(["rollout", "start", "--pipeline", PIPELINE, "--file", str(new)], env)
    assert proc.returncode == 1 and "pass --yes" in proc.stderr


def test_cli_usage_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    new = tmp_path / "new.alloy"
    new.write_text("x\n")
    for args, words in (
        (["--canary", "0"], "at least one"),
        (["--waves", "50%,10%"], "must increase"),
        (["--soak", "5 minutes"], "not a duration"),
        (["--max-failures", "-1"], "zero or more"),
    ):
        proc = run_cli(["rollout", "plan", "--pipeline", PIPELINE, "--file", str(new), *args], env)
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli(["rollout", "plan", "--pipeline", "nope", "--file", str(new)], env)
    assert proc.returncode == 2 and "no pipeline 'nope'" in proc.stderr
    proc = run_cli(["rollout", "plan", "--pipeline", PIPELINE, "--file", str(tmp_path / "missing")], env)
    assert proc.returncode == 2 and "no such file" in proc.stderr
