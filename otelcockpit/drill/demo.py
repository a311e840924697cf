"""The outage drill on the demo fleet: in this process, on a simulated clock, so it takes no time."""

from __future__ import annotations

from datetime import datetime, timedelta

from otelcockpit.adoption.outage import DrillRecord
from otelcockpit.backends.demo import TICK_SECONDS, DemoBackend
from otelcockpit.drill import DrillOptions, StepCallback, observe, step, try_push
from otelcockpit.fleet.model import utcnow

CONVERGE_LIMIT_SECONDS = 600.0  # simulated time


class ManualClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def run_demo_drill(
    options: DrillOptions,
    *,
    collectors: int | None = None,
    prefix: str = "alloy-prod-euw1-node",
    start: datetime | None = None,
    on_step: StepCallback | None = None,
) -> DrillRecord:
    clock = ManualClock(start or utcnow())
    backend = DemoBackend(seed=options.seed, collectors=collectors, clock=clock)
    began = clock.now
    steps = []

    def done(s):  # noqa: ANN001, ANN202
        steps.append(s)
        if on_step is not None:
            on_step(s)

    snap = backend.snapshot_now()
    report = await observe(backend, snap, now=clock.now)
    before = report.collectors
    done(step("steady", (clock.now - began).total_seconds(), f"the demo fleet runs: {before} collector(s)", report, {"collectors": before, "api_down": 0}))

    backend.fleet_api_down()
    down = clock.now
    clock.advance(min(30.0, options.outage_seconds / 3))
    snap = backend.snapshot_now()
    refused = await try_push(backend, snap)
    report = await observe(backend, snap, now=clock.now)
    done(
        step(
            "api down",
            (clock.now - began).total_seconds(),
            "the fleet API goes away; an operator tries a push",
            report,
            {"api_down": 1, "refused": 1, "collectors": before},
            refused=refused,
        )
    )

    added = backend.scale_out(options.scale_out, prefix=prefix, without_cache=options.without_cache)
    started_on = [backend.sim.started_on[i] for i in added]  # what the simulation made them start on
    on_cache, on_boot = started_on.count("cache"), started_on.count("bootstrap")
    clock.advance(TICK_SECONDS)
    snap = backend.snapshot_now()
    report = await observe(backend, snap, now=clock.now)
    done(
        step(
            "scale-out",
            (clock.now - began).total_seconds(),
            f"{len(added)} collector(s) of {prefix} start while the API is away: {on_cache} with a cached remote config, "
            f"{on_boot} without (their bootstrap config); the cockpit cannot see them yet",
            report,
            {"api_down": 1, "collectors": before},
        )
    )

    clock.advance(max(0.0, options.outage_seconds - (clock.now - down).total_seconds()))
    backend.fleet_api_up()
    back = clock.now
    snap = backend.snapshot_now()
    report = await observe(backend, snap, now=clock.now, since=down)
    done(
        step(
            "api back",
            (clock.now - began).total_seconds(),
            "the fleet API returns: the new collectors report what they run",
            report,
            {
                "api_down": 0,
                "collectors": before + len(added),
                "came_up_fallback": on_boot,
                "came_up_cached": on_cache,
                "still_off": on_boot + on_cache,
            },
        )
    )

    converged_after = None
    while (clock.now - back).total_seconds() < CONVERGE_LIMIT_SECONDS:
        clock.advance(TICK_SECONDS)
        snap = backend.snapshot_now()
        report = await observe(backend, snap, now=clock.now, since=down)
        if report.converged:
            converged_after = (clock.now - back).total_seconds()
            break
    done(
        step(
            "converged",
            (clock.now - began).total_seconds(),
            "they fetch and apply their assigned config",
            report,
            {"still_off": 0, "collectors": before + len(added)},
        )
    )
    return DrillRecord(
        backend="demo",
        started_at=began,
        parameters={
            "collectors": before,
            "scale_out": len(added),
            "without_cache": options.without_cache,
            "outage_seconds": options.outage_seconds,
            "seed": options.seed,
            "group": prefix,
            "clock": "simulated",
        },
        steps=tuple(steps),
        converged_after_seconds=converged_after,
    )
