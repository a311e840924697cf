"""The engine's rules, against an in-memory Target (the engine's seam) and a real SQLite journal."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from rollout_support import Agent, FakeTarget, VirtualClock, fleet

from otelcockpit.errors import CockpitError
from otelcockpit.rollout.engine import RolloutEngine
from otelcockpit.rollout.journal import Journal
from otelcockpit.rollout.model import CollectorStatus, Gates, RolloutState, parse_canary, parse_waves
from otelcockpit.rollout.planner import make_plan


def setup(tmp_path: Path, n: int = 20, *, gates: Gates | None = None, canary: str = "2", waves: str = "50%,100%"):
    snap = fleet(n)
    clock = VirtualClock()
    journal = Journal(tmp_path / "rollouts.sqlite3", clock=clock.ts)
    target = FakeTarget({c.id: Agent() for c in snap.collectors}, live=snap.pipeline("metrics"))
    new = replace(snap.pipeline("metrics"), contents="new contents\n")
    plan = make_plan(
        snap, new, canary=parse_canary(canary), waves=parse_waves(waves), gates=gates or Gates(apply_timeout=30), lint=False
    )
    engine = RolloutEngine(journal, target, clock=clock.ts, sleep=clock.sleep, poll_interval=1.0)
    return snap, clock, journal, target, plan, engine


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def test_success_requires_applied_with_the_target_hash(tmp_path: Path) -> None:
    _, _, journal, target, plan, engine = setup(tmp_path)
    rid = engine.create(plan, backend="fake")
    view = run(engine.run(rid))
    assert view.state == RolloutState.COMPLETED, view.reason
    assert [s.applied for s in view.stages] == [len(s.collector_ids) for s in plan.stages]
    assert target.prepared == 1 and target.finalized == 1
    # Every collector was offered once, stage by stage, canary first.
    assert [len(ids) for _, ids in target.pushes] == [len(s.collector_ids) for s in plan.stages]
    assert target.pushes[0][1] == plan.stages[0].collector_ids
    assert journal.good_revisions("metrics") == ["rev-final"]
    assert all(h == ("new", "old") for h in journal.last_applied().values())


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        ("fail", "bad config"),
        ("hang", "timeout"),
        ("rollback", "rolled back by its supervisor"),
        ("unhealthy", "unhealthy after the apply"),
    ],
)
def test_each_failure_rule_pauses_at_a_zero_gate(tmp_path: Path, behaviour: str, words: str) -> None:
    _, _, journal, target, plan, engine = setup(tmp_path, gates=Gates(max_failures=0, soak_seconds=5, apply_timeout=20))
    bad = plan.stages[1].collector_ids[0]
    target.agents[bad].behaviour = behaviour
    rid = engine.create(plan, backend="fake")
    view = run(engine.run(rid))
    assert view.state == RolloutState.PAUSED
    assert "above the gate (max 0)" in view.reason and "stage 2" in view.reason
    assert [f.collector_id for f in view.failures] == [bad]
    assert words in view.failures[0].error
    assert target.finalized == 0
    # Stage 3 was never offered: the gate held.
    assert all(cid not in target.attributed for cid in plan.stages[2].collector_ids)


def test_already_unhealthy_before_the_offer_is_not_a_failure(tmp_path: Path) -> None:
    _, _, _, target, plan, engine = setup(tmp_path, gates=Gates(soak_seconds=5))
    sick = plan.stages[0].collector_ids[0]
    target.agents[sick].health = "unhealthy"
    view = run(engine.run(engine.create(plan, backend="fake")))
    assert view.state == RolloutState.COMPLETED, view.reason


def test_failures_within_the_gate_continue_and_the_version_is_never_offered_again(tmp_path: Path) -> None:
    snap, clock, journal, target, plan, engine = setup(tmp_path, gates=Gates(max_failures=1, apply_timeout=20))
    bad = plan.stages[2].collector_ids[0]
    target.agents[bad].behaviour = "fail"
    rid = engine.create(plan, backend="fake")
    view = run(engine.run(rid))
    # Every stage ran; folding would offer the version to the failed collector again: an operator decides.
    assert view.state == RolloutState.PAUSED and "resume to fold anyway" in view.reason
    assert target.finalized == 0
    view = run(engine.run(rid))
    assert view.state == RolloutState.COMPLETED
    assert view.failed == 1 and target.finalized == 1
    assert journal.good_revisions("metrics") == []  # not "without failures"
    # A new rollout of the same version holds that collector back instead of offering it again.
    target2 = FakeTarget(target.agents, live=snap.pipeline("metrics"))
    target2.agents[bad].offered = ""
    for a in target2.agents.values():
        a.offered, a.status = "", "applied"
    engine2 = RolloutEngine(journal, target2, clock=clock.ts, sleep=clock.sleep)
    plan2 = replace(plan)
    view2 = run(engine2.run(engine2.create(plan2, backend="fake")))
    held = [f for f in view2.failures if f.status == CollectorStatus.HELD]
    assert [f.collector_id for f in held] == [bad]
    assert "failed before" in held[0].error
    assert all(bad not in ids for _, ids in target2.pushes)


def test_resume_counts_only_new_failures_and_never_reoffers_a_failed_collector(tmp_path: Path) -> None:
    _, _, _, target, plan, engine = setup(tmp_path, gates=Gates(max_failures=0, apply_timeout=20))
    bad = plan.stages[0].collector_ids[0]
    target.agents[bad].behaviour = "fail"
    rid = engine.create(plan, backend="fake")
    assert run(engine.run(rid)).state == RolloutState.PAUSED
    pushes_before = list(target.pushes)
    view = run(engine.run(rid))  # the operator resumes, accepting that failure
    assert view.state == RolloutState.PAUSED and "fold" in view.reason  # no new failure: all stages ran
    view = run(engine.run(rid))
    assert view.state == RolloutState.COMPLETED, view.reason
    assert target.pushes[: len(pushes_before)] == pushes_before
    assert sum(1 for _, ids in target.pushes for cid in ids if cid == bad) == 1


def test_manual_gate_pauses_after_every_stage_until_resumed(tmp_path: Path) -> None:
    _, _, _, target, plan, engine = setup(tmp_path, gates=Gates(manual=True))
    rid = engine.create(plan, backend="fake")
    states = []
    for _ in range(len(plan.stages)):
        view = run(engine.run(rid))
        states.append((view.state, view.current_stage))
    assert states[:-1] == [(RolloutState.PAUSED, i) for i in range(len(plan.stages) - 1)]
    assert "explicit continue" in engine.view(rid).reason or states[-1][0] == RolloutState.COMPLETED
    assert states[-1][0] == RolloutState.COMPLETED
    assert len(target.pushes) == len(plan.stages)


def test_operator_pause_request_and_abort(tmp_path: Path) -> None:
    _, _, journal, target, plan, engine = setup(tmp_path)
    rid = engine.create(plan, backend="fake")
    journal.request(rid, "pause")  # as `rollout pause ID` from another process would
    view = run(engine.run(rid))
    # claim() clears stale requests, so the run went through; a request during the run pauses it:
    assert view.state == RolloutState.COMPLETED

    _, _, journal, target, plan, engine = setup(tmp_path / "b")
    rid = engine.create(plan, backend="fake")
    original = target.observe

    async def observe_then_pause(ids):  # noqa: ANN001, ANN202
        journal.request(rid, "pause")
        return await original(ids)

    target.observe = observe_then_pause  # type: ignore[method-assign]
    view = run(engine.run(rid))
    assert view.state == RolloutState.PAUSED and view.reason == "paused by operator"
    msg = run(engine.abort(rid))
    assert "aborted" in msg and target.cleaned == 1
    assert engine.view(rid).state == RolloutState.ABORTED
    with pytest.raises(CockpitError, match="nothing to resume"):
        run(engine.run(rid))


def test_a_crash_between_push_and_journal_resumes_paused_without_pushing_twice(tmp_path: Path) -> None:
    _, clock, journal, target, plan, engine = setup(tmp_path)
    rid = engine.create(plan, backend="fake")
    target.crash_after_push = True
    with pytest.raises(KeyboardInterrupt):
        run(engine.run(rid))
    assert journal.step(rid, "stage.0.apply") == ("started", {}) or journal.step(rid, "stage.0.apply")[0] == "started"
    # A new process (new engine, same journal file) sees it paused, and does nothing by itself.
    journal2 = Journal(tmp_path / "rollouts.sqlite3", clock=clock.ts)
    rec = journal2.require(rid)
    assert rec.state == RolloutState.PAUSED
    engine2 = RolloutEngine(journal2, target, clock=clock.ts, sleep=clock.sleep)
    view = run(engine2.run(rid))
    assert view.state == RolloutState.COMPLETED, view.reason
    offered = [cid for _, ids in target.pushes for cid in ids]
    assert len(offered) == len(set(offered)) == plan.collector_count


def test_a_second_rollout_of_the_same_pipeline_is_refused_and_policy_errors_block(tmp_path: Path) -> None:
    snap, _, _, _, plan, engine = setup(tmp_path)
    engine.create(plan, backend="fake")
    with pytest.raises(CockpitError, match="resume, abort or roll it back"):
        engine.create(plan, backend="fake")
    bad = make_plan(
        snap, replace(snap.pipeline("metrics"), contents='loki.write "x" {\n  endpoint {\n    url = "https://u:p@h/x"\n  }\n}\n')
    )
    assert bad.blocking
    with pytest.raises(CockpitError, match="policy error"):
        engine.create(bad, backend="fake")


def test_rollback_aborts_what_is_in_flight_then_upserts_the_snapshot(tmp_path: Path) -> None:
    snap, _, journal, target, plan, engine = setup(tmp_path, gates=Gates(manual=True))
    rid = engine.create(plan, backend="fake")
    assert run(engine.run(rid)).state == RolloutState.PAUSED
    rev = run(engine.rollback("metrics", revision="1", snapshot=snap.pipeline("metrics"), author="oncall"))
    assert rev == "rev-rollback"
    assert target.cleaned == 1 and target.rolled_back == [("metrics", snap.pipeline("metrics"))]
    assert engine.view(rid).state == RolloutState.ROLLED_BACK
    kinds = [e.kind for e in journal.events()]
    assert kinds[-1] == "pipeline.rollback" and "rollout.aborted" in kinds


def test_rollback_targets_prefer_the_last_known_good_then_the_previous_real_revision(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from otelcockpit.fleet.model import (
        Collector,
        CollectorType,
        ConfigStatus,
        Operation,
        Pipeline,
        RemoteConfig,
        Revision,
    )
    from otelcockpit.rollout.history import collector_targets, pipeline_target, timeline

    t0 = datetime(2026, 11, 1, tzinfo=UTC)

    def rev(i: int, contents: str, matchers: tuple[str, ...] = ('role="node"',)) -> Revision:
        p = Pipeline(name="metrics", contents=contents, matchers=matchers, id="1")
        return Revision(str(i), "metrics", "1", p, Operation.UPDATE, t0 + timedelta(hours=i), author="alice")

    revs = [
        rev(1, "a"),
        rev(2, "b"),  # rolled out cleanly by the cockpit
        rev(3, "b", ('role="node"', 'otelcockpit.rollout!="r1"')),  # a rollout's intermediate step
        rev(4, "c"),
    ]
    journal = Journal(tmp_path / "j.sqlite3")
    assert pipeline_target(journal, "metrics", revs).revision.id == "2"  # previous real (skips the staging one)
    assert pipeline_target(journal, "metrics", revs).source == "previous"
    journal.record_good("metrics", "1", "r0")
    target = pipeline_target(journal, "metrics", revs)
    assert (target.revision.id, target.source) == ("1", "journal")
    assert pipeline_target(journal, "metrics", revs[:1]).source == "none"

    c = Collector(id="x", name="x", type=CollectorType.ALLOY, remote_config=RemoteConfig(ConfigStatus.APPLIED, "h2"))
    journal.record_applied([("x", "h1")])
    journal.record_applied([("x", "h2")])
    assert collector_targets(journal, [c]) == {"x": "h1"}
    entries = timeline(journal, {"metrics": revs})
    assert [e.rollback_target for e in entries if e.source == "revisions"] == ["", "1", "2", "2"]
