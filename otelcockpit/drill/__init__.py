"""The outage drill: rehearse a fleet-API outage during a scale-out before it happens.

The fleet API goes away for a while; meanwhile the fleet scales out by N collectors, some with a
cached remote config (a volume that kept it), some without (they start on their bootstrap config).
At every step the cockpit's own read path (the backend's snapshot, :func:`outage_report`) says what
it sees, and the drill compares that with what it caused: the counts must be exact.

Two labs run the same five steps (steady, API down, scale-out, API back, converged):

* :mod:`otelcockpit.drill.demo`: the demo fleet, in this process, on a simulated clock (instant);
* :mod:`otelcockpit.drill.serve`: a scratch ``otelcockpit serve`` and ``simulate-agents`` processes on
  loopback, stopped and started for real.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from otelcockpit.adoption.outage import (
    DrillStep,
    OutageReport,
    hashes_to_compare,
    outage_report,
)
from otelcockpit.backends.base import PIPELINE_UPSERT, Change
from otelcockpit.errors import CockpitError, PushRefused
from otelcockpit.fleet.configstate import ConfigState
from otelcockpit.fleet.model import FleetSnapshot

StepCallback = Callable[[DrillStep], None]


@dataclass(frozen=True)
class DrillOptions:
    scale_out: int = 10
    without_cache: float = 0.4
    outage_seconds: float = 180.0
    seed: int = 7


async def observe(
    backend: Any, snap: FleetSnapshot, *, now: datetime, since: datetime | None = None, until: datetime | None = None
) -> OutageReport:
    """The outage report of a snapshot, with the texts of the configs to compare from the backend."""
    texts: dict[str, str] = {}
    wanted = hashes_to_compare(snap.collectors, since, until)
    getter = getattr(backend, "config_texts", None)
    if wanted and getter is not None and not snap.stale:
        texts = await getter(wanted)
    return outage_report(snap, now=now, since=since, until=until, texts=texts)


async def try_push(backend: Any, snap: FleetSnapshot) -> str:
    """Try what an operator would: push the first pipeline (unchanged). The refusal's one line, or ''
    when it was NOT refused (a failed drill)."""
    if not snap.pipelines:
        return ""
    try:
        result = await backend.push(Change(PIPELINE_UPSERT, {"pipeline": snap.pipelines[0]}, author="outage-drill"))
    except PushRefused as exc:
        return exc.message
    except CockpitError as exc:
        return exc.message
    return "" if getattr(result, "ok", False) else str(getattr(result, "message", ""))


def counts(report: OutageReport) -> dict[str, int]:
    """What the cockpit counted, under the names the drill's expectations use."""
    return {
        "collectors": report.collectors,
        "online": report.online,
        "api_down": int(report.api == "down"),
        "in_sync": report.states.get(ConfigState.IN_SYNC.value, 0),
        "came_up_fallback": report.came_up.get(ConfigState.FALLBACK.value, 0),
        "came_up_cached": report.came_up.get(ConfigState.CACHED.value, 0),
        "still_off": report.still_off,
    }


def step(
    name: str,
    at_seconds: float,
    what: str,
    report: OutageReport,
    expected: Mapping[str, int],
    *,
    refused: str = "",
) -> DrillStep:
    observed = counts(report)
    if "refused" in expected:
        observed["refused"] = int(bool(refused))
    return DrillStep(
        name,
        at_seconds,
        what,
        report.as_json(),
        dict(expected),
        {k: observed[k] for k in expected if k in observed},
        refused,
    )
