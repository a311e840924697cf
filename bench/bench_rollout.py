"""Rollout engine bookkeeping at 10,000 collectors (issue 6). ``make bench``.

A no-op target (every collector reports APPLIED with the offered hash at the first look) so the
figure is the engine's own cost: planning, the SQLite journal (WAL, a real file), per-collector
progress, rule evaluation, views. Baseline, measured in the same run: the same target calls the
engine makes (one look before each stage, the offer, one observation), with no engine around
them. Target: (engine - baseline) / collectors < 1 ms per collector.

The issue's second figure (a rollout to 10,000 simulated OpAMP agents within 60 s on loopback)
needs the rollout to run inside ``otelcockpit serve``; it is not measured here.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from otelcockpit.fleet.model import Collector, CollectorType, FleetSnapshot, Pipeline
from otelcockpit.rollout.engine import Observation, RolloutEngine
from otelcockpit.rollout.journal import Journal, RolloutRecord
from otelcockpit.rollout.model import Gates, RolloutState, Stage, parse_canary, parse_waves
from otelcockpit.rollout.planner import make_plan

pytestmark = pytest.mark.slow
COLLECTORS = int(os.environ.get("ROLLOUT_BENCH_COLLECTORS", "10000"))


class NoopTarget:
    name = "noop"
    reports_status = True
    reports_health = True

    def __init__(self, live: Pipeline) -> None:
        self.live = live
        self.offered: dict[str, str] = {}

    async def live_pipeline(self, name: str) -> Pipeline | None:
        return self.live

    async def prepare(self, rollout: RolloutRecord) -> None:
        return None

    async def stage_apply(self, rollout: RolloutRecord, stage: Stage, ids: Sequence[str]) -> Mapping[str, str]:
        for cid in ids:
            self.offered[cid] = "new"
        return dict.fromkeys(ids, "new")

    async def observe(self, ids: Sequence[str]) -> Mapping[str, Observation]:
        offered = self.offered
        return {cid: Observation("applied", offered.get(cid, "old"), "", "healthy") for cid in ids}

    async def finalize(self, rollout: RolloutRecord) -> str:
        return "rev"

    async def cleanup(self, rollout: RolloutRecord) -> None:
        return None

    async def rollback(self, pipeline: str, snapshot: Pipeline | None) -> str:
        return "rev"


def fleet(n: int) -> FleetSnapshot:
    envs, regions = ("prod", "staging", "dev"), ("eu-west-1", "us-east-1", "ap-southeast-2")
    collectors = tuple(
        Collector(
            id=f"c{i:06d}",
            name=f"c{i:06d}",
            type=CollectorType.ALLOY,
            local_attributes={"env": envs[i % 3], "region": regions[(i // 3) % 3], "role": "node"},
        )
        for i in range(n)
    )
    pipe = Pipeline(name="metrics", contents="old\n", matchers=('role="node"',), id="1")
    return FleetSnapshot(backend="bench", collectors=collectors, pipelines=(pipe,), fetched_at=datetime.now(UTC))


def test_engine_bookkeeping_per_collector(tmp_path: Path) -> None:
    snap = fleet(COLLECTORS)
    new = replace(snap.pipeline("metrics"), contents="new\n")

    t0 = time.perf_counter()
    plan = make_plan(snap, new, canary=parse_canary("1%"), waves=parse_waves("10%,50%,100%"), gates=Gates(), lint=False)
    plan_seconds = time.perf_counter() - t0

    async def baseline() -> float:
        target = NoopTarget(snap.pipeline("metrics"))
        t = time.perf_counter()
        for stage in plan.stages:
            await target.observe(stage.collector_ids)
            await target.stage_apply(None, stage, stage.collector_ids)  # type: ignore[arg-type]
            await target.observe(stage.collector_ids)
        return time.perf_counter() - t

    async def engine_run() -> tuple[float, RolloutState]:
        target = NoopTarget(snap.pipeline("metrics"))
        journal = Journal(tmp_path / "bench.sqlite3")
        engine = RolloutEngine(journal, target, poll_interval=0.0)
        t = time.perf_counter()
        rid = engine.create(plan, backend="bench")
        view = await engine.run(rid)
        elapsed = time.perf_counter() - t
        journal.close()
        return elapsed, view.state

    base = asyncio.run(baseline())
    elapsed, state = asyncio.run(engine_run())
    assert state == RolloutState.COMPLETED
    per_collector_ms = (elapsed - base) / COLLECTORS * 1000
    print(
        "BENCH "
        + json.dumps(
            {
                "bench": "rollout.engine_bookkeeping",
                "collectors": COLLECTORS,
                "stages": len(plan.stages),
                "plan_seconds": round(plan_seconds, 3),
                "engine_seconds": round(elapsed, 3),
                "baseline_target_calls_seconds": round(base, 4),
                "bookkeeping_ms_per_collector": round(per_collector_ms, 4),
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
            }
        )
    )
    assert per_collector_ms < 1.0
