"""The attribute + temporary pipeline staging, with a kill after every single write.

An in-memory Fleet-Management-like store (the StagingAdapter seam) that dies right after its
k-th write, before the journal hears of it: for every k, a restart shows the rollout paused,
and a resume finishes it with exactly the writes of an uninterrupted run, none twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from rollout_support import VirtualClock, fleet

from otelcockpit.fleet.matchers import compile_matchers, matches_getter
from otelcockpit.fleet.model import Pipeline
from otelcockpit.rollout.engine import Observation, RolloutEngine
from otelcockpit.rollout.journal import Journal
from otelcockpit.rollout.model import ROLLOUT_ATTRIBUTE, Gates, RolloutState, parse_canary, parse_waves
from otelcockpit.rollout.planner import make_plan
from otelcockpit.rollout.staging import AttributeStagingTarget


class Killed(BaseException):
    pass


class MemoryAdapter:
    name = "memory"
    reports_status = False
    reports_health = False

    def __init__(self, pipelines: dict[str, Pipeline], collectors: dict[str, dict[str, str]]) -> None:
        self.pipelines = pipelines
        self.remote = collectors
        self.writes: list[str] = []
        self.die_after: int | None = None
        self.rev = 100

    def _wrote(self, what: str) -> str:
        self.writes.append(what)
        self.rev += 1
        if self.die_after is not None and len(self.writes) >= self.die_after:
            self.die_after = None
            raise Killed(what)
        return str(self.rev)

    async def get_pipeline(self, name: str) -> Pipeline | None:
        return self.pipelines.get(name)

    async def upsert_pipeline(self, pipeline: Pipeline, *, author: str = "") -> str:
        self.pipelines[pipeline.name] = pipeline
        return self._wrote(f"upsert {pipeline.name} {pipeline.contents.strip()} {list(pipeline.matchers)}")

    async def delete_pipeline(self, name: str, *, author: str = "") -> str:
        del self.pipelines[name]
        return self._wrote(f"delete {name}")

    async def latest_revision(self, name: str) -> str:
        return str(self.rev)

    async def collectors_with(self, key: str, value: str) -> set[str]:
        return {cid for cid, attrs in self.remote.items() if attrs.get(key) == value}

    async def set_attribute(self, ids: Sequence[str], key: str, value: str, *, author: str = "") -> None:
        for cid in ids:
            self.remote[cid][key] = value
        self._wrote(f"set {key} on {sorted(ids)}")

    async def remove_attribute(self, ids: Sequence[str], key: str, *, author: str = "") -> None:
        for cid in ids:
            self.remote[cid].pop(key, None)
        self._wrote(f"remove {key} from {sorted(ids)}")

    async def observe(self, ids: Sequence[str]) -> Mapping[str, Observation]:
        return {}

    async def offered_hashes(self, ids: Sequence[str]) -> Mapping[str, str]:
        return {}

    def versions(self, snap) -> dict[str, list[str]]:  # noqa: ANN001
        """For each collector: the pipeline contents it gets (the matchers decide)."""
        out: dict[str, list[str]] = {}
        for c in snap.collectors:
            attrs = {**c.attributes, **self.remote[c.id]}
            out[c.id] = sorted(
                p.contents for p in self.pipelines.values() if matches_getter(compile_matchers(p.matchers), lambda k: attrs.get(k, ""))  # noqa: B023
            )
        return out


def scenario(tmp_path: Path, name: str):  # noqa: ANN201
    snap = fleet(12)
    clock = VirtualClock()
    adapter = MemoryAdapter({"metrics": snap.pipeline("metrics")}, {c.id: {} for c in snap.collectors})
    new = replace(snap.pipeline("metrics"), contents="new\n")
    plan = make_plan(snap, new, canary=parse_canary("2"), waves=parse_waves("50%"), gates=Gates(soak_seconds=2), lint=False)
    journal = Journal(tmp_path / f"{name}.sqlite3", clock=clock.ts)
    engine = RolloutEngine(journal, AttributeStagingTarget(adapter), clock=clock.ts, sleep=clock.sleep)
    return snap, adapter, plan, journal, engine, clock


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def test_uninterrupted_run_never_gives_a_collector_both_or_neither(tmp_path: Path) -> None:
    snap, adapter, plan, journal, engine, clock = scenario(tmp_path, "clean")
    rid = engine.create(plan, backend="memory", rollout_id="rclean")
    seen: list[dict[str, list[str]]] = []

    async def sleep(seconds: float) -> None:
        seen.append(adapter.versions(snap))
        await clock.sleep(seconds)

    engine.sleep = sleep
    assert run(engine.run(rid)).state == RolloutState.COMPLETED
    assert seen and all(len(v) == 1 for state in seen for v in state.values())
    assert any(v == ["new\n"] for v in seen[0].values()) and any(v == ["old contents\n"] for v in seen[0].values())
    assert adapter.versions(snap) == {c.id: ["new\n"] for c in snap.collectors}
    assert set(adapter.pipelines) == {"metrics"} and adapter.pipelines["metrics"].matchers == ('role="node"',)
    assert not any(ROLLOUT_ATTRIBUTE in a for a in adapter.remote.values())


@pytest.mark.parametrize("k", range(1, 10))
def test_kill_after_every_write_then_resume_repeats_no_write(tmp_path: Path, k: int) -> None:
    _, clean, plan, _, engine, _ = scenario(tmp_path, "reference")
    run(engine.run(engine.create(plan, backend="memory", rollout_id="rtest")))
    reference = list(clean.writes)
    if k > len(reference):
        pytest.skip(f"an uninterrupted run makes {len(reference)} writes")

    snap, adapter, plan, journal, engine, clock = scenario(tmp_path, "crash")
    rid = engine.create(plan, backend="memory", rollout_id="rtest")
    adapter.die_after = k
    with pytest.raises(Killed):
        run(engine.run(rid))
    # "Restart": a new journal connection and engine. Paused, and nothing happens until resumed.
    journal2 = Journal(tmp_path / "crash.sqlite3", clock=clock.ts)
    assert journal2.require(rid).state == RolloutState.PAUSED
    engine2 = RolloutEngine(journal2, AttributeStagingTarget(adapter), clock=clock.ts, sleep=clock.sleep)
    view = run(engine2.run(rid))
    assert view.state == RolloutState.COMPLETED, view.reason
    assert adapter.writes == reference
    assert adapter.versions(snap) == {c.id: ["new\n"] for c in snap.collectors}


def test_abort_midway_returns_everyone_to_the_live_version(tmp_path: Path) -> None:
    snap, adapter, plan, journal, engine, clock = scenario(tmp_path, "abort")
    plan = replace(plan, gates=Gates(manual=True))
    rid = engine.create(plan, backend="memory")
    assert run(engine.run(rid)).state == RolloutState.PAUSED
    assert sum(v == ["new\n"] for v in adapter.versions(snap).values()) == 2
    run(engine.abort(rid))
    assert adapter.versions(snap) == {c.id: ["old contents\n"] for c in snap.collectors}
    assert adapter.pipelines == {"metrics": snap.pipeline("metrics")}
