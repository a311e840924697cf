"""The incident report on the demo fleet: what is broken, what changed before it broke, rollback commands."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from otelcockpit import settings as settings_mod
from otelcockpit.backends import all_revisions, make_backend
from otelcockpit.backends.base import staging_target as make_target
from otelcockpit.backends.demo import DemoBackend
from otelcockpit.fleet.configstate import ConfigState, collector_state
from otelcockpit.fleet.model import ConfigStatus, Health
from otelcockpit.fleet.problems import PROBLEM_ORDER, Problem
from otelcockpit.rollout.engine import RolloutEngine
from otelcockpit.rollout.incident import build_report, context_for_commands, rollback_command
from otelcockpit.rollout.journal import Journal
from otelcockpit.rollout.local import SnapshotFleet
from otelcockpit.rollout.model import Gates, parse_canary, parse_waves
from otelcockpit.rollout.planner import make_plan
from otelcockpit.rollout.service import RolloutService

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def demo_report(frozen_clock, **kwargs):  # noqa: ANN001, ANN201
    async def go():  # noqa: ANN202
        backend = make_backend(settings_mod.resolve(), clock=frozen_clock)
        try:
            snap = await backend.snapshot()
            revisions = await all_revisions(backend, snap)
        finally:
            await backend.close()
        return snap, revisions

    snap, revisions = asyncio.run(go())
    return snap, revisions, build_report(snap, revisions, now=frozen_clock(), **kwargs)


def test_broken_collectors_and_what_changed_before_they_broke(frozen_clock) -> None:
    snap, _revisions, report = demo_report(frozen_clock)
    unhealthy = [c for c in snap.collectors if c.health == Health.UNHEALTHY]
    offline = [c for c in snap.collectors if c.health == Health.OFFLINE]
    failed = [c for c in snap.collectors if c.remote_config.status == ConfigStatus.FAILED]
    assert unhealthy and offline and failed, "the demo fleet has unhealthy, offline and config-failed collectors"
    assert report.unhealthy == len(unhealthy) and report.offline == len(offline)
    assert report.config_failed == len(failed)
    # ...and the one that runs another config than its assigned one (its config state says drifted).
    other = [c for c in snap.collectors if collector_state(c).state == ConfigState.DRIFTED]
    assert len(other) == 1 and report.other_config == 1
    assert {b.id for b in report.broken} == {c.id for c in unhealthy + offline + failed + other}
    # Healthy collectors whose config failed to apply are listed too: after a config change they
    # are the strongest lead.
    for name in ("alloy-prod-euw1-node-018", "alloy-prod-use1-node-041"):
        b = next(b for b in report.broken if b.name == name)
        assert b.health == Health.HEALTHY and b.problem == Problem.CONFIG_FAILED
        assert b.reason == snap.collector(b.id).remote_config.error
    # Worst first: unhealthy, config failed, other config, offline.
    ranks = [PROBLEM_ORDER.index(b.problem) for b in report.broken]
    assert ranks == sorted(ranks)

    node = next(b for b in report.broken if b.name == "alloy-prod-euw1-node-033")
    assert node.health == Health.UNHEALTHY
    ch = node.changed
    assert ch is not None
    # linux_host_metrics changed 2 h before now (revision 1003); its rollback target is 1002.
    assert (ch.pipeline, ch.revision, ch.rollback_target) == ("linux_host_metrics", "1003", "1002")
    assert frozen_clock() - ch.at == timedelta(hours=2)
    assert ch.command == "otelcockpit rollback linux_host_metrics --to 1002"
    # The change is the newest revision among the pipelines the collector matches.
    for b in report.broken:
        assert b.changed is not None
        assert b.changed.pipeline in b.pipelines
        assert b.changed.at <= frozen_clock()


def test_most_recent_change_is_the_newest_of_its_pipelines(frozen_clock) -> None:
    snap, revisions, report = demo_report(frozen_clock)
    for b in report.broken:
        newest = max(
            (r for p in b.pipelines for r in revisions.get(p, ()) if r.created_at <= frozen_clock()),
            key=lambda r: r.created_at,
        )
        assert b.changed is not None and b.changed.at == newest.created_at


def test_changes_in_the_window_newest_first_with_rollback_targets(frozen_clock) -> None:
    _snap, _revisions, report = demo_report(frozen_clock)
    now = frozen_clock()
    assert report.changes
    assert all(now - timedelta(hours=24) <= c.at <= now for c in report.changes)
    assert [c.at for c in report.changes] == sorted((c.at for c in report.changes), reverse=True)
    first = report.changes[0]
    assert (first.pipeline, first.revision, first.rollback_target) == ("linux_host_metrics", "1003", "1002")
    # Every broken collector it reached is counted on the change.
    assert first.broken == sum(1 for b in report.broken if b.changed and b.changed.key == first.key)
    assert first.broken > 0
    for c in report.changes:
        assert (c.command != "") == (c.rollback_target != "")
        if c.rollback_target:
            assert c.command == f"otelcockpit rollback {c.pipeline} --to {c.rollback_target}"
    pipelines = {c.pipeline for c in report.changes}
    assert {"linux_host_metrics", "otel_gateway_traces", "custom_business_metrics"} <= pipelines


def test_hours_narrows_the_window(frozen_clock) -> None:
    _snap, _revisions, short = demo_report(frozen_clock, hours=1)
    assert short.changes == ()  # the newest change is 2 h old
    # ... but what changed before a collector broke does not depend on the window.
    assert all(b.changed is not None for b in short.broken)
    _snap, _revisions, three = demo_report(frozen_clock, hours=2.5)
    assert [c.pipeline for c in three.changes] == ["linux_host_metrics"]
    with pytest.raises(ValueError):
        demo_report(frozen_clock, hours=0)


def test_groups_by_env_region_and_pipeline(frozen_clock) -> None:
    _snap, _revisions, report = demo_report(frozen_clock)
    for g in report.groups:
        members = [b for b in report.broken if b.name in g.collectors]
        assert all((b.env, b.region) == (g.env, g.region) and g.pipeline in b.pipelines for b in members)
        assert len(g.collectors) == len(members)
        assert g.unhealthy + g.offline + g.config_failed + g.other_config >= len(members)
    assert sum(sum(n.values()) for _e, _r, n in report.by_location()) == len(report.broken)
    by_pipe = {p: sum(n.values()) for p, n in report.by_pipeline()}
    assert by_pipe["linux_host_metrics"] == sum(
        1 for b in report.broken if "linux_host_metrics" in b.pipelines
    )


def test_json_shape(frozen_clock) -> None:
    _snap, _revisions, report = demo_report(frozen_clock, context="prod-eu")
    d = report.as_json()
    assert d["read_only"] is True
    assert d["backend"]["ok"] is True and d["backend"]["data_age"] == "0s"
    assert d["collectors"]["unhealthy"] == report.unhealthy
    assert (
        d["changes"][0]["rollback_command"]
        == "otelcockpit --context prod-eu rollback linux_host_metrics --to 1002"
    )
    broken = {b["name"]: b for b in d["broken"]}
    assert broken["alloy-prod-euw1-node-033"]["changed_before"]["revision"] == "1003"
    assert "no rollout journal" in " ".join(d["notes"])


def test_rollback_command_and_context() -> None:
    assert rollback_command("a b", "7") == "otelcockpit rollback 'a b' --to 7"
    assert rollback_command("p", "7", context="prod") == "otelcockpit --context prod rollback p --to 7"
    s = settings_mod.resolve()
    assert context_for_commands(s) == ""  # the implicit demo needs no --context


def test_context_from_the_config_file_goes_into_commands(config_file: Path) -> None:
    config_file.write_text("current_context: lab\ncontexts:\n  lab:\n    backend: demo\n")
    assert context_for_commands(settings_mod.resolve()) == "lab"


def test_stale_data_is_said(frozen_clock) -> None:
    snap, revisions, _ = demo_report(frozen_clock)
    stale = snap.as_stale("fleet API unreachable", replace(snap.health, ok=False, status="down"))
    report = build_report(stale, revisions, now=frozen_clock() + timedelta(minutes=5))
    assert report.backend_ok is False and report.stale
    assert report.data_age == "5m"
    assert any("stale" in n for n in report.notes)


def test_a_paused_rollout_and_the_stage_that_reached_a_collector(tmp_path: Path) -> None:
    """A rollout journal with a rollout paused after its canary: the rollout is listed, and a canary
    collector that broke shows the rollout as the change that reached it."""

    class Clock:
        def __init__(self) -> None:
            self.now = START

        def __call__(self) -> datetime:
            return self.now

        def ts(self) -> float:
            return self.now.timestamp()

        async def sleep(self, seconds: float) -> None:
            self.now += timedelta(seconds=seconds)
            await asyncio.sleep(0)

    async def go():  # noqa: ANN202
        clock = Clock()
        backend = DemoBackend(clock=clock, collectors=120)
        sim = backend.sim
        sim.apply_fail_rate = 0.0
        sim.health_churn = False
        sim.collectors = [replace(c, health=Health.HEALTHY, last_error="") for c in sim.collectors]
        journal = Journal(tmp_path / "rollouts.sqlite3", clock=clock.ts)
        engine = RolloutEngine(
            journal, make_target(backend), clock=clock.ts, sleep=clock.sleep, poll_interval=2.0
        )
        snap = await backend.snapshot()
        live = snap.pipeline("linux_host_metrics")
        plan = make_plan(
            snap,
            replace(live, contents=live.contents + "// incident test\n"),
            canary=parse_canary("3"),
            waves=parse_waves("100%"),
            gates=Gates(manual=True),
        )
        before = snap.revisions["linux_host_metrics"][-2].id
        rid = engine.create(plan, backend="demo", rollback_revision=before)
        await engine.run(rid)
        snap = await backend.snapshot()
        revisions = await all_revisions(backend, snap)
        service = RolloutService(
            journal, SnapshotFleet(backend, make_target(backend), name="demo", context=""), close_journal=False
        )
        canary = plan.stages[0].collector_ids[0]
        broken = tuple(replace(c, health=Health.UNHEALTHY) if c.id == canary else c for c in snap.collectors)
        records = await service.records(broken, since=clock() - timedelta(days=1), now=clock(), with_progress=True)
        return clock, journal, rid, plan, snap, revisions, broken, records

    clock, journal, rid, plan, snap, revisions, broken, records = asyncio.run(go())
    try:
        canary = plan.stages[0].collector_ids[0]
        report = build_report(replace(snap, collectors=broken), revisions, now=clock(), records=records)
    finally:
        journal.close()
    assert [(r.id, r.state) for r in report.rollouts] == [(rid, "paused")]
    line = report.rollouts[0]
    assert line.stage == 1 and line.stages == 2 and line.rollback_target
    assert line.command == f"otelcockpit rollback linux_host_metrics --to {line.rollback_target}"
    b = next(b for b in report.broken if b.id == canary)
    assert b.changed is not None
    assert b.changed.at >= START  # the rollout ran after the demo's own revisions
    # The change that reached it is the rollout: its stage, or the temporary pipeline it created.
    assert b.changed.rollout_id == rid or rid in b.changed.pipeline
    # Its own rollback target: the config it reported APPLIED before the canary's.
    now_runs = next(c for c in snap.collectors if c.id == canary).remote_config.hash
    assert b.rollback_config is not None and b.rollback_config.hash not in ("", now_runs)
    assert b.as_json()["rollback_config"]["hash"] == b.rollback_config.hash
    assert not any("no rollout journal" in n for n in report.notes)
