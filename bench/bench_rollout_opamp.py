"""A staged rollout inside ``otelcockpit serve`` to 10,000 simulated WebSocket agents (issue 6, OpAMP half).

The target: all stages (canary 1%, waves 10%, 50%, 100%), no failures, no soak, finished within 60 s
on loopback. The baseline, in the same run and on the same agents: the previous version pushed to all
10,000 at once by an assignment (no staging). Both are timed from the admin call until every agent
reports APPLIED with the new hash (polled every 0.5 s); the rollout's own "completed" time is reported
too. The staging overhead per agent is (rollout - baseline) / agents, an upper bound on the engine's
bookkeeping (it also holds the stage boundaries and the engine's 0.25 s observation interval).

Knobs (environment): ROLLOUT_BENCH_AGENTS (10000). ``make bench`` runs it (pytest -m slow bench).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow]

AGENTS = int(os.environ.get("ROLLOUT_BENCH_AGENTS", "10000"))
TOKEN = "bench-rollout-write-token-01"
V1 = "receivers:\n  otlp: {}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
V2 = V1.replace("debug: {}", "debug:\n    verbosity: basic")


class Server:
    def __init__(self, tmp: Path) -> None:
        tokens = tmp / "tokens.yaml"
        tokens.write_text(f"tokens:\n  - {{token: {TOKEN}, role: write, name: bench}}\n", encoding="utf-8")
        args = [sys.executable, "-m", "otelcockpit", "serve", "--listen", "127.0.0.1:0", "--admin-listen",
                "127.0.0.1:0", "--db", str(tmp / "opamp.db"), "--tokens", str(tokens)]  # fmt: skip
        env = {**os.environ, "OTELCOCKPIT_DATA_DIR": str(tmp / "data")}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        import re

        m = re.search(
            r"OpAMP on http://127\.0\.0\.1:(\d+)/v1/opamp .* admin API on http://127\.0\.0\.1:(\d+)", line
        )
        assert m, line
        self.opamp = f"ws://127.0.0.1:{m.group(1)}/v1/opamp"
        self.admin = f"http://127.0.0.1:{m.group(2)}/api/v1"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.admin + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {TOKEN}")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def applied(srv: Server, digest: str) -> tuple[int, int]:
    agents = srv.api("GET", "/agents")["agents"]
    ok = sum(1 for a in agents if (a["remote_config_status"] or {}).get("last_hash") == digest
             and a["remote_config_status"]["status"] == "APPLIED")  # fmt: skip
    return ok, len(agents)


def wait_applied(srv: Server, digest: str, n: int, limit: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        ok, _ = applied(srv, digest)
        if ok >= n:
            return time.monotonic()
        time.sleep(0.5)
    raise AssertionError(f"only {applied(srv, digest)} applied {digest[:12]} within {limit}s")


def test_rollout_to_10k_websocket_agents(tmp_path: Path, record: Any) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, AGENTS * 2 + 1024)), hard))
    srv = Server(tmp_path)
    sim = subprocess.Popen(
        [sys.executable, "-m", "otelcockpit", "simulate-agents", "--server", srv.opamp, "--count", str(AGENTS),
         "--transport", "ws", "--seed", "7", "--duration", "900", "--apply-delay", "0.1", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        t0 = time.monotonic()
        while srv.api("GET", "/health")["online"] < AGENTS:
            assert time.monotonic() - t0 < 300, "agents did not connect"
            time.sleep(1)
        connect_s = time.monotonic() - t0
        # baseline: version 1 to every agent at once (one assignment, no staging)
        cv1 = srv.api("POST", "/configs", {"name": "gateway", "files": {"collector.yaml": {"body": V1}}})
        t0 = time.monotonic()
        srv.api("POST", "/assignments", {"config": "gateway", "version": 1, "selector": ""})
        baseline_s = wait_applied(srv, cv1["hash"], AGENTS, 120) - t0
        # the staged rollout of version 2: canary 1%, waves 10%, 50%, 100%; no soak
        t0 = time.monotonic()
        view = srv.api(
            "POST",
            "/rollouts",
            {"config": "gateway", "files": {"collector.yaml": V2}, "canary": "1%", "waves": "10%,50%,100%",
             "max_failures": 0, "soak": 0, "apply_timeout": "60s"},
        )  # fmt: skip
        created_s = time.monotonic() - t0
        rid = view["id"]
        completed_s = None
        while time.monotonic() - t0 < 180:
            v = srv.api("GET", "/rollouts")["rollouts"][0]
            if v["state"] != "running":
                completed_s = time.monotonic() - t0
                break
            time.sleep(0.25)
        assert v["state"] == "completed", v["reason"]
        cv2 = srv.api("GET", "/configs/gateway/versions/2")
        rollout_s = wait_applied(srv, cv2["hash"], AGENTS, 60) - t0
        stages = [(s["name"], s["total"], s["applied"]) for s in v["stages"]]
        record(
            agents=AGENTS,
            command="make bench  (.venv/bin/python -m pytest -m slow -q bench/bench_rollout_opamp.py -s)",
            connect_seconds=round(connect_s, 1),
            baseline_all_at_once_seconds=round(baseline_s, 2),
            rollout_create_call_seconds=round(created_s, 2),
            rollout_completed_seconds=round(completed_s or 0, 2),
            rollout_all_applied_seconds=round(rollout_s, 2),
            staging_overhead_ms_per_agent=round((rollout_s - baseline_s) * 1000 / AGENTS, 3),
            stages=stages,
            rollout_id=rid,
        )
        assert rollout_s <= 60.0
        assert all(total == done for _n, total, done in stages)
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=60)
        except subprocess.TimeoutExpired:
            sim.kill()
        srv.stop()
