"""Adoption analysis at fleet scale (issue 5). ``make bench``.

(a) ``analyse()`` (inventory merge, eligibility, pipeline reach, journeys, phases, conventions) on
    the demo organisation scaled to 100,000 collectors, against a baseline measured in the same
    run: one ``PipelineMatcher`` pass over the same snapshot (the least any per-collector view of
    the pipelines costs). Target: analysis <= 15 s on 2 cores.
(b) The eligibility engine on 10,000 synthetic services. Target: <= 10 s (2 cores).
(c) The engine on 10,000 sparse services (issue 13: only the language, the runtime version, the
    platform, the team and the distribution, as a real inventory knows them; every other field is
    tried over the values it can take), against (b)'s complete services measured in the same run.
    Target: <= 15 s (2 cores).

Figures are printed as one JSON line per benchmark (``BENCH {...}``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime

import pytest

from otelcockpit.adoption.cockpit import analyse, load_sources, resolve_sources
from otelcockpit.adoption.eligibility import evaluate_all
from otelcockpit.adoption.inventory import Service, load_inventory
from otelcockpit.backends.demo import DemoBackend
from otelcockpit.fleet.matching import PipelineMatcher
from otelcockpit.resources import demo_dir
from otelcockpit.settings import resolve

pytestmark = pytest.mark.slow
COLLECTORS = int(os.environ.get("ADOPTION_BENCH_COLLECTORS", "100000"))
SERVICES = int(os.environ.get("ADOPTION_BENCH_SERVICES", "10000"))
EPOCH = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _machine() -> dict[str, object]:
    return {"nproc": os.cpu_count(), "python": platform.python_version()}


def test_analyse_at_100k_collectors() -> None:
    snap = DemoBackend(clock=lambda: EPOCH, collectors=COLLECTORS).snapshot_now()
    inventory, journeys, conventions = load_sources(resolve_sources(resolve()))
    t0 = time.perf_counter()
    matcher = PipelineMatcher(snap.pipelines)
    for c in snap.collectors:
        matcher.names_for(c)
    baseline = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = analyse(snap, inventory, journeys=journeys, conventions=conventions)
    elapsed = time.perf_counter() - t0
    print(
        "BENCH "
        + json.dumps(
            {
                "bench": "adoption.analyse",
                "collectors": len(snap.collectors),
                "services": len(data.eligibility),
                "seconds": round(elapsed, 3),
                "baseline_matcher_seconds": round(baseline, 3),
                **_machine(),
            }
        )
    )
    assert len(data.phases.phases) == 4
    assert elapsed <= 15.0


def test_eligibility_engine_10k_services() -> None:
    demo = load_inventory(demo_dir() / "services.yaml").services
    services = [Service(f"{s.name}-{i}", s.fields) for i in range(SERVICES // len(demo) + 1) for s in demo][
        :SERVICES
    ]
    t0 = time.perf_counter()
    results = evaluate_all(services)
    elapsed = time.perf_counter() - t0
    print(
        "BENCH "
        + json.dumps(
            {
                "bench": "adoption.eligibility",
                "services": len(results),
                "seconds": round(elapsed, 3),
                "per_service_us": round(1e6 * elapsed / len(results), 1),
                **_machine(),
            }
        )
    )
    assert elapsed <= 10.0


SPARSE_FIELDS = ("team", "language", "runtime_version", "platform", "distro")


def test_eligibility_engine_10k_sparse_services() -> None:
    from collections import Counter

    demo = load_inventory(demo_dir() / "services.yaml").services
    reps = SERVICES // len(demo) + 1
    full = [Service(f"{s.name}-{i}", s.fields) for i in range(reps) for s in demo][:SERVICES]
    sparse = [
        Service(s.name, {k: v for k, v in s.fields.items() if k in SPARSE_FIELDS}) for s in full
    ]
    t0 = time.perf_counter()
    evaluate_all(full)
    baseline = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = evaluate_all(sparse)
    elapsed = time.perf_counter() - t0
    status = Counter(e.status for e in results)
    print(
        "BENCH "
        + json.dumps(
            {
                "bench": "adoption.eligibility.sparse",
                "services": len(results),
                "seconds": round(elapsed, 3),
                "per_service_us": round(1e6 * elapsed / len(results), 1),
                "baseline_complete_seconds": round(baseline, 3),
                "ratio": round(elapsed / baseline, 2),
                "status": dict(sorted(status.items())),
                **_machine(),
            }
        )
    )
    assert status["unknown"] == 0  # language and platform known: something useful is always said
    assert elapsed <= 15.0
