"""Fleet Management: a ListCollectors answer with 20,000 collectors, decoded and turned into a snapshot.

Target (issue 4): at most 3x the time plain ``json.loads`` takes on the same bytes, measured in the
same run. The bytes are what the fake serves for the demo organisation scaled to 20,000 collectors
(protojson: camelCase, local and remote attributes, timestamps); the snapshot includes the matched
pipelines of every collector (the demo's pipelines, through our matcher engine).

Run: ``.venv/bin/python -m pytest -q -m slow -p no:xdist bench/bench_fm.py -s``
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable

import pytest

from otelcockpit.backends.fleet_management.backend import build_snapshot, pipeline_from_json
from otelcockpit.fleet.model import utcnow
from otelcockpit.fm_fake.fixtures import load_state

COLLECTORS = 20_000
ROUNDS = 7
LIMIT = 3.0


def best_of(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.slow
def test_list_collectors_20k_within_3x_json_loads() -> None:
    state = load_state(seed=7, collectors=COLLECTORS)
    payload = json.dumps(state.ListCollectors({}), separators=(",", ":")).encode()
    pipelines = [pipeline_from_json(p) for p in state.ListPipelines({})["pipelines"]]
    now = utcnow()

    snap = build_snapshot(payload, pipelines, fetched_at=now)
    assert len(snap.collectors) == COLLECTORS
    assert sum(1 for c in snap.collectors if c.pipelines) > COLLECTORS // 2

    baseline = best_of(lambda: json.loads(payload))
    decoded = best_of(lambda: build_snapshot(payload, pipelines, fetched_at=now))
    ratio = decoded / baseline
    print(
        f"\nbench_fm: {COLLECTORS} collectors, {len(payload) / 1e6:.1f} MB, {len(pipelines)} pipelines; "
        f"json.loads {baseline * 1000:.1f} ms; decode+snapshot {decoded * 1000:.1f} ms; ratio {ratio:.2f} "
        f"(limit {LIMIT:g}); best of {ROUNDS}; python {platform.python_version()}, nproc {os.cpu_count()}, "
        f"{platform.machine()} {sys.platform}"
    )
    assert ratio <= LIMIT, f"decode+snapshot took {ratio:.2f}x json.loads (limit {LIMIT:g}x)"
