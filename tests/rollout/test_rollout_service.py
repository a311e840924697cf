"""The rollout service (``otelcockpit.rollout.service``) as every face uses it, on the demo and on the
Fleet Management fake over real HTTP (``tests/rollout_opamp/test_rollout_opamp_service.py`` runs the
same scenario against a real ``otelcockpit serve``): the safe default plan, start, pause at the gate
with every failure recorded, progress still true while paused, rollback (which aborts what is in
flight, names its target and blast radius, and refuses the live revision), every collector back on
the previous config, and who did each step."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rollout_fm_support import CREDS

from otelcockpit.backends.base import RolloutSettings
from otelcockpit.backends.demo import DemoBackend
from otelcockpit.backends.fleet_management import FleetClient, FleetManagementBackend
from otelcockpit.errors import CockpitError, ReadOnlyError, UsageError
from otelcockpit.fleet.model import Health
from otelcockpit.rollout.model import RolloutState, stage_state
from otelcockpit.rollout.options import SAFE_DEFAULTS, PlanOptions, plan_words
from otelcockpit.rollout.service import PushRequest

PIPELINE = "linux_host_metrics"


def fast_clock(speed: float = 20.0):  # noqa: ANN201
    """The demo applies configs after seconds of its own time: run it 20x faster than real time."""
    start = time.monotonic()
    epoch = datetime(2026, 11, 20, 9, tzinfo=UTC)
    return lambda: epoch + timedelta(seconds=(time.monotonic() - start) * speed)


def demo_service(tmp_path: Path, *, fail_rate: float, background: bool, read_only: bool = False):  # noqa: ANN201
    backend = DemoBackend(clock=fast_clock(), collectors=120)
    sim = backend.sim
    sim.apply_fail_rate = fail_rate
    sim.health_churn = False
    sim.collectors = [replace(c, health=Health.HEALTHY, last_error="") for c in sim.collectors]
    tasks: list[asyncio.Task] = []
    spawn = (lambda coro: tasks.append(asyncio.get_running_loop().create_task(coro))) if background else None
    svc = backend.rollouts(
        RolloutSettings(
            journal_path=tmp_path / "rollouts.sqlite3",
            context="demo",
            defaults=SAFE_DEFAULTS,
            read_only=read_only,
            poll_interval=0.05,
            spawn=spawn,
        )
    )
    return backend, svc, tasks


async def new_contents(backend, suffix: str = "// by the service test\n") -> str:  # noqa: ANN001
    return (await backend.snapshot()).pipeline(PIPELINE).contents + suffix


async def until(predicate, seconds: float, what: str):  # noqa: ANN001, ANN201
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} within {seconds}s")


def test_the_safe_default_plan_and_all_at_once(tmp_path: Path) -> None:
    async def go() -> None:
        backend, svc, _ = demo_service(tmp_path, fail_rate=0.0, background=False)
        try:
            text = await new_contents(backend)
            plan = await svc.plan(PushRequest(PIPELINE, text))
            # no flags at all: a canary, a wave before 100%, a soak and a failure gate
            assert plan.canary.kind == "percent" and plan.canary.value == 5.0
            assert plan.waves == (25.0, 100.0) and len(plan.stages) == 3
            assert plan.gates.soak_seconds == 60 and plan.gates.max_failures == 0
            assert plan.gates.apply_timeout == 300
            words = plan_words(plan)
            assert words[0].startswith("canary 5%") and "1m" in words[2] and "5m" in words[2]
            with pytest.raises(UsageError, match="every collector at once"):
                await svc.plan(PushRequest(PIPELINE, text, PlanOptions(canary="none", waves="100%")))
            everything = await svc.plan(PushRequest(PIPELINE, text, PlanOptions(all_at_once=True)))
            assert len(everything.stages) == 1 and everything.all_at_once
            assert plan_words(everything)[0].startswith("ALL AT ONCE")
            with pytest.raises(UsageError, match="leave --canary and --waves out"):
                await svc.plan(PushRequest(PIPELINE, text, PlanOptions(all_at_once=True, canary="2")))
            # a context's own defaults
            svc.defaults = PlanOptions(canary="2", waves="50%,100%", soak="10s").over(SAFE_DEFAULTS)
            mine = await svc.plan(PushRequest(PIPELINE, text))
            assert len(mine.stages[0].collector_ids) == 2 and mine.gates.soak_seconds == 10
        finally:
            await svc.close()

    asyncio.run(go())


def test_stage_state_follows_its_counts() -> None:
    assert stage_state(3, {"pending": 3}, False) == "pending"
    assert stage_state(3, {"applying": 1, "applied": 1, "failed": 1}, False) == "applying"
    assert stage_state(3, {"failed": 1, "pending": 2}, False) == "waiting"
    assert stage_state(1, {"failed": 1}, False) == "failed"  # never "applied" with 0 applied
    assert stage_state(3, {"failed": 1, "applied": 2}, True) == "partly failed"
    assert stage_state(3, {"applied": 3}, True) == "applied"


def test_demo_pause_at_the_gate_keeps_observing_then_rollback_restores(tmp_path: Path) -> None:
    """With a background runner (the TUI's, the server's), a rollout paused at its gate keeps being
    observed: collectors still applying when it paused get their outcome recorded, failures too."""

    async def go() -> None:
        backend, svc, tasks = demo_service(tmp_path, fail_rate=0.25, background=True)
        try:
            live_before = (await backend.snapshot()).pipeline(PIPELINE)
            req = PushRequest(
                PIPELINE,
                await new_contents(backend),
                PlanOptions(canary="40%", waves="100%", soak="0s", apply_timeout="30m"),
                author="alice",
            )
            view = await svc.start(req)
            assert view.state == RolloutState.RUNNING and view.author == "alice"

            async def paused():  # noqa: ANN202
                v = await svc.view(view.id)
                return v if v.state == RolloutState.PAUSED else None

            at_pause = await until(paused, 60, "the rollout did not pause at its gate")
            assert "above the gate" in at_pause.reason

            async def settled():  # noqa: ANN202
                v = await svc.view(view.id)
                s = v.stages[0]
                return v if s.applying == 0 and s.soaking == 0 else None

            done = await until(settled, 60, "the paused canary's collectors were not all observed")
            canary = done.stages[0]
            # every collector of the canary has an outcome; every failure is recorded with its error
            assert canary.applied + canary.failed == canary.total and canary.failed >= 1
            assert len([f for f in done.failures if f.stage == 0]) == canary.failed
            assert all(f.error for f in done.failures)
            assert canary.state in ("failed", "partly failed")

            plan = await svc.rollback_plan_for(view.id)
            assert plan.aborts == (view.id,) and plan.target.id == at_pause.plan.base_revision
            assert plan.collectors > 0 and sum(plan.by_env.values()) == plan.collectors
            assert "Abort rollout" in plan.describe()
            result = await svc.rollback(plan, "bob")
            assert result.aborted == (view.id,) and "aborted rollout" in result.message()
            after = await svc.view(view.id)
            assert after.state == RolloutState.ROLLED_BACK and "bob" in after.reason
            snap = await backend.snapshot()
            assert snap.pipeline(PIPELINE).contents == live_before.contents
            assert not [c for c in snap.collectors if "otelcockpit.rollout" in c.remote_attributes]
            # the journal says who did what
            events = [(e.kind, e.author) for e in svc.journal.events(rollout_id=view.id)]
            assert ("rollout.started", "alice") in events and ("rollout.aborted", "bob") in events
        finally:
            for t in tasks:
                t.cancel()
            await svc.close()

    asyncio.run(go())


def test_rollback_refuses_the_live_revision_and_marks_what_it_left(tmp_path: Path) -> None:
    async def go() -> None:
        backend, svc, _ = demo_service(tmp_path, fail_rate=0.0, background=False)
        try:
            revisions = (await backend.snapshot()).revisions[PIPELINE]
            live, before = revisions[-1], revisions[-2]
            with pytest.raises(CockpitError, match="nothing to roll back"):
                await svc.rollback_plan(PIPELINE, live.id)
            with pytest.raises(UsageError, match="not a revision"):
                await svc.rollback_plan(PIPELINE, "nope")
            plan = await svc.rollback_plan(PIPELINE)
            assert plan.target.id == before.id and plan.source == "previous" and plan.live_revision == live.id
            assert f"reaches {plan.collectors} collector(s)" in plan.describe()
            result = await svc.rollback(plan, "carol")
            assert result.message().startswith(f"rolled back {PIPELINE} from revision {live.id} to revision {before.id}")
            # the revision rolled back from is never offered as a target again
            again = await svc.rollback_plan(PIPELINE)
            assert again.target.id != live.id
            # a plan made before somebody else changed the pipeline is refused
            stale = replace(again, live_revision="0")
            with pytest.raises(CockpitError, match="look at it again"):
                await svc.rollback(stale, "carol")
        finally:
            await svc.close()

    asyncio.run(go())


def test_read_only_service_refuses_every_write(tmp_path: Path) -> None:
    async def go() -> None:
        backend, svc, _ = demo_service(tmp_path, fail_rate=0.0, background=False, read_only=True)
        try:
            req = PushRequest(PIPELINE, await new_contents(backend))
            assert (await svc.plan(req)).stages  # planning is reading
            for call in (
                svc.start(req),
                svc.pause("r0", "x"),
                svc.resume("r0", "x"),
                svc.abort("r0", "x"),
            ):
                with pytest.raises(ReadOnlyError):
                    await call
            plan = await svc.rollback_plan(PIPELINE)
            with pytest.raises(ReadOnlyError):
                await svc.rollback(plan, "x")
        finally:
            await svc.close()

    asyncio.run(go())


def test_fleet_management_manual_gate_then_rollback(tmp_path: Path, fm_fake) -> None:  # noqa: ANN001
    """Fleet Management v1 reports no config status: the gates are the soak and an explicit continue.
    Through the service over real HTTP: start, pause at the manual gate, resume, roll back."""
    server = fm_fake()

    async def go() -> None:
        client = FleetClient(server.url, CREDS.instance_id, CREDS.write_token, rate=1000.0, backoff_base=0.02)
        backend = FleetManagementBackend(client)
        svc = backend.rollouts(
            RolloutSettings(journal_path=tmp_path / "j.sqlite3", context="fm", defaults=SAFE_DEFAULTS, poll_interval=0.05)
        )
        try:
            live_before = (await backend.snapshot()).pipeline(PIPELINE)
            req = PushRequest(
                PIPELINE,
                live_before.contents + "// fm service test\n",
                PlanOptions(canary="2", waves="100%", soak="0s", manual=True),
                author="dana",
            )
            view = await svc.start(req)
            assert view.state == RolloutState.PLANNED  # no background runner: the caller follows it
            view = await svc.follow(view.id)
            assert view.state == RolloutState.PAUSED and "explicit continue" in view.reason
            assert view.stages[0].state == "applied"
            resumed = await svc.resume(view.id, "erin")
            assert resumed.view.state == RolloutState.PAUSED  # runs when followed
            done = await svc.follow(view.id)
            assert done.state == RolloutState.COMPLETED, done.reason
            assert (await backend.snapshot()).pipeline(PIPELINE).contents == req.contents
            plan = await svc.rollback_plan(PIPELINE)
            assert plan.target.snapshot is not None and plan.target.snapshot.contents == live_before.contents
            result = await svc.rollback(plan, "erin")
            assert result.to_revision == plan.target.id
            assert (await backend.snapshot()).pipeline(PIPELINE).contents == live_before.contents
            kinds = [(e.kind, e.author) for e in svc.journal.events(rollout_id=view.id)]
            assert ("rollout.resumed", "erin") in kinds
        finally:
            await svc.close()
            await backend.close()

    asyncio.run(go())
