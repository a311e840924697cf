"""``otelcockpit drill outage``, as a user runs it: on the demo fleet, and against a real ``serve`` with
``simulate-agents`` (the server stopped, new agents with and without a cache started, the server started
again). At each step the counts the cockpit's read path sees are exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from otelcockpit.adoption.outage import load_record
from otelcockpit.simulate.agents import make_profiles, without_cache


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otelcockpit", *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )


def steps(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in data["steps"]}


def test_the_demo_drill_is_exact_at_every_step_and_records_itself() -> None:
    r = run("drill", "outage", "--scale-out", "12", "--without-cache", "0.5", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["passed"] and data["exact"] and data["backend"] == "demo"
    s = steps(data)
    assert list(s) == ["steady", "api down", "scale-out", "api back", "converged"]
    assert all(step["exact"] for step in s.values())
    assert s["api down"]["refused"].startswith("refused: the fleet data is stale")
    assert s["scale-out"]["observed"]["collectors"] == 420  # invisible while the API is away
    back = s["api back"]
    assert back["observed"]["collectors"] == 432
    assert back["observed"]["came_up_fallback"] + back["observed"]["came_up_cached"] == 12
    assert back["observed"]["came_up_fallback"] > 0 and back["observed"]["came_up_cached"] > 0
    boot = next(g for g in back["report"]["groups"] if g["runs"] == "their bootstrap config")
    assert boot["exports"]["traces"] == "unsampled" and boot["managed_exports"]["traces"] == "none"
    assert "adds a debug exporter (otelcol.exporter.debug.local)" in boot["compared"]
    assert s["converged"]["observed"]["still_off"] == 0
    record = load_record()  # the walkthrough's slide reads this
    assert record is not None and record.exact and record.parameters["scale_out"] == 12
    # The same drill in words.
    r = run("drill", "outage", "--scale-out", "4")
    assert r.returncode == 0, r.stderr
    assert "[api down]" in r.stdout and "fleet API DOWN:" in r.stdout and "pushes are refused" in r.stdout
    assert "Counts exact at every step." in r.stdout


def test_the_drill_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    r = run("drill", "outage", "--source", "opamp", "--url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "will not stop the opamp backend" in r.stderr
    r = run("drill", "outage", "--workdir", str(tmp_path))
    assert r.returncode == 2 and "--workdir goes with --serve" in r.stderr
    r = run("drill", "outage", "--outage", "soon")
    assert r.returncode == 2 and "--outage 'soon': not a duration" in r.stderr
    r = run("drill", "outage", "--without-cache", "2")
    assert r.returncode == 2 and "must be between 0 and 1" in r.stderr
    assert "Traceback" not in r.stderr


def expected_pool(count: int, share: float) -> tuple[int, int]:
    """(with a cache, without) for the drill's autoscaling pool: its seed and this share decide."""
    from otelcockpit.drill.serve import SEED_POOL

    without = sum(1 for p in make_profiles(count, SEED_POOL) if without_cache(SEED_POOL, p, share))
    return count - without, without


@pytest.mark.parametrize("transport", ["ws", "http"])
def test_the_drill_against_serve_stops_it_scales_out_and_starts_it_again(tmp_path: Path, transport: str) -> None:
    work = tmp_path / "lab"
    r = run(
        "drill", "outage", "--serve", "--collectors", "6", "--scale-out", "6", "--without-cache", "0.5",
        "--outage", "4s", "--transport", transport, "--workdir", str(work), "--json",
        timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    data = json.loads(r.stdout)
    on_cache, on_boot = expected_pool(6, 0.5)
    assert on_cache and on_boot  # the seed gives both kinds
    s = steps(data)
    assert s["steady"]["observed"] == {"api_down": 0, "collectors": 12, "online": 6, "in_sync": 6}
    assert s["api down"]["observed"] == {"api_down": 1, "refused": 1, "collectors": 12}
    assert "cannot reach the OpAMP admin API" in s["api down"]["refused"]
    assert s["scale-out"]["observed"] == {"api_down": 1, "collectors": 12}
    assert s["api back"]["observed"] == {
        "api_down": 0, "collectors": 12, "came_up_fallback": on_boot, "came_up_cached": on_cache,
    }  # fmt: skip
    groups = {g["runs"]: g for g in s["api back"]["report"]["groups"]}
    assert groups["their bootstrap config"]["collectors"] == on_boot
    assert groups["their bootstrap config"]["compared"][0] == "exports every span (the managed config: 10%), 10x the spans"
    assert groups["edge@v1"]["collectors"] == on_cache and groups["edge@v1"]["assigned"] == "edge@v2"
    assert s["converged"]["observed"] == {"still_off": 0, "in_sync": 12, "online": 12, "collectors": 12}
    assert data["exact"] and data["converged_after_seconds"] is not None
    # The lab is kept with --workdir: the agents' caches are there, one per agent with a volume.
    caches = list((work / "agent-state").glob("*.json"))
    assert len(caches) == 6 + on_cache  # the running fleet all have one; the pool's without a volume none
