"""Shared helpers of the rollout tests: an in-memory Target (the engine's seam) and a virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from otelcockpit.fleet.model import Collector, CollectorType, FleetSnapshot, Pipeline
from otelcockpit.rollout.engine import Observation
from otelcockpit.rollout.journal import RolloutRecord
from otelcockpit.rollout.model import Stage


class VirtualClock:
    """A clock that only moves when the engine sleeps: tests run in milliseconds."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def ts(self) -> float:
        return self.now.timestamp()

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


@dataclass
class Agent:
    """A collector as the fake target sees it: what it runs, what it reports."""

    hash: str = "old"
    status: str = "applied"
    health: str = "healthy"
    error: str = ""
    # Behaviour when offered a new hash: "ok", "fail", "hang", "rollback", "unhealthy"
    behaviour: str = "ok"
    delay: int = 1  # observations until it reacts
    seen: int = 0
    offered: str = ""


@dataclass
class FakeTarget:
    """An in-memory Target: collectors react to offers by their behaviour; every push is logged."""

    agents: dict[str, Agent]
    name: str = "fake"
    reports_status: bool = True
    reports_health: bool = True
    pushes: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    attributed: set[str] = field(default_factory=set)
    live: Pipeline | None = None
    prepared: int = 0
    finalized: int = 0
    cleaned: int = 0
    rolled_back: list[Any] = field(default_factory=list)
    crash_after_push: bool = False

    async def live_pipeline(self, name: str) -> Pipeline | None:
        return self.live

    async def prepare(self, rollout: RolloutRecord) -> None:
        self.prepared += 1

    async def stage_apply(self, rollout: RolloutRecord, stage: Stage, ids: Sequence[str]) -> Mapping[str, str]:
        missing = tuple(i for i in ids if i not in self.attributed)  # check first: never push twice
        if missing:
            self.pushes.append(("apply", missing))
            for cid in missing:
                self.attributed.add(cid)
                a = self.agents[cid]
                a.offered = "new"
                a.seen = 0
        if self.crash_after_push:
            self.crash_after_push = False
            raise KeyboardInterrupt("simulated kill after the push, before the journal said done")
        return {cid: "new" for cid in ids}

    async def observe(self, ids: Sequence[str]) -> Mapping[str, Observation]:
        out = {}
        for cid in ids:
            a = self.agents[cid]
            if a.offered:
                a.seen += 1
                if a.seen == 1 and a.behaviour != "hang":
                    a.hash, a.status = a.offered, "applying"
                elif a.seen > a.delay:
                    if a.behaviour == "ok":
                        a.status = "applied"
                    elif a.behaviour == "fail":
                        a.status, a.error = "failed", "bad config: unknown component"
                    elif a.behaviour == "rollback":
                        a.hash, a.status = "old", "applied"
                    elif a.behaviour == "unhealthy":
                        a.status = "applied"
                        if a.seen > a.delay + 1:
                            a.health, a.error = "unhealthy", "exporter down"
            out[cid] = Observation(a.status, a.hash, a.error, a.health)
        return out

    async def finalize(self, rollout: RolloutRecord) -> str:
        self.finalized += 1
        return "rev-final"

    async def cleanup(self, rollout: RolloutRecord) -> None:
        self.cleaned += 1
        for cid in list(self.attributed):
            self.agents[cid].hash, self.agents[cid].status, self.agents[cid].offered = "old", "applied", ""
        self.attributed.clear()

    async def rollback(self, pipeline: str, snapshot: Pipeline | None, *, author: str = "") -> str:
        self.rolled_back.append((pipeline, snapshot))
        return "rev-rollback"


def fleet(n: int, *, envs: Sequence[str] = ("prod", "staging"), regions: Sequence[str] = ("eu", "us")) -> FleetSnapshot:
    collectors = tuple(
        Collector(
            id=f"c{i:04d}",
            name=f"c{i:04d}",
            type=CollectorType.ALLOY,
            local_attributes={"env": envs[i % len(envs)], "region": regions[(i // 2) % len(regions)], "role": "node"},
        )
        for i in range(n)
    )
    pipe = Pipeline(name="metrics", contents="old contents\n", matchers=('role="node"',), id="1")
    return FleetSnapshot(
        backend="fake", collectors=collectors, pipelines=(pipe,), fetched_at=datetime(2026, 11, 20, tzinfo=UTC)
    )
