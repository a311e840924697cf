"""Helpers: simulated agents (``otelcockpit simulate-agents`` subprocesses) and waiting on the admin API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from opamp_server_support import ServeProcess, wait_for

V1 = "receivers:\n  otlp:\n    protocols:\n      grpc: {}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
V2 = V1.replace("debug: {}\nservice", "debug:\n    verbosity: basic\nservice")


def simulate(
    sp: ServeProcess,
    count: int,
    *,
    transport: str = "ws",
    fail_rate: float = 0.0,
    seed: int = 1,
    duration: float = 90,
    apply_delay: float = 0.1,
) -> subprocess.Popen[str]:
    url = sp.ws_url if transport == "ws" else sp.opamp_url
    args = [
        sys.executable, "-m", "otelcockpit", "simulate-agents", "--server", url, "--count", str(count),
        "--transport", transport, "--fail-rate", str(fail_rate), "--seed", str(seed), "--duration", str(duration),
        "--heartbeat", "1", "--apply-delay", str(apply_delay), "--quiet",
    ]  # fmt: skip
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def agents(sp: ServeProcess) -> list[dict[str, Any]]:
    status, body = sp.api("GET", "/agents")
    assert status == 200, body
    return body["agents"]


def wait_agents(sp: ServeProcess, n: int, timeout: float = 20.0) -> None:
    wait_for(lambda: len([a for a in agents(sp) if a["status"] == "online"]) >= n, timeout)


def all_applied(sp: ServeProcess, digest: str, n: int) -> bool:
    got = agents(sp)
    ok = [a for a in got if (a["remote_config_status"] or {}).get("status") == "APPLIED"
          and a["remote_config_status"]["last_hash"] == digest]  # fmt: skip
    return len(got) >= n and len(ok) == len(got)


def fails(body: str, count: int, seed: int, rate: float) -> int:
    """How many of ``simulate(count, seed, fail_rate=rate)``'s agents report FAILED for this file."""
    from otelcockpit.opamp_server.core import config_hash
    from otelcockpit.simulate.agents import build_agents

    digest = config_hash({"collector.yaml": (body.encode(), "text/yaml")})
    return sum(1 for a in build_agents(count, seed, fail_rate=rate) if a.will_fail(digest))


def salted_v1(count: int, seed: int, rate: float) -> str:
    """A version 1 on which none of these agents fails (failures are decided per agent and hash)."""
    for i in range(500):
        body = V1 + f"# salt {i}\n"
        if fails(body, count, seed, rate) == 0:
            return body
    raise AssertionError("no salt found")


def setup_v1(sp: ServeProcess, n: int, config: str = "gateway", body: str = V1) -> str:
    """Config ``config`` version 1 assigned to every agent; waits until all n agents run it."""
    status, cv = sp.api("POST", "/configs", {"name": config, "files": {"collector.yaml": {"body": body}}})
    assert status == 201, cv
    status, a = sp.api("POST", "/assignments", {"config": config, "version": 1, "selector": ""})
    assert status == 201, a
    wait_for(lambda: all_applied(sp, cv["hash"], n), 30)
    return cv["hash"]


def rollout(sp: ServeProcess, rid: str) -> dict[str, Any]:
    status, body = sp.api("GET", f"/rollouts/{rid}")
    assert status == 200, body
    return body


def wait_state(sp: ServeProcess, rid: str, *states: str, timeout: float = 40.0) -> dict[str, Any]:
    return wait_for(lambda: (lambda v: v if v["state"] in states else None)(rollout(sp, rid)), timeout, 0.2)


def history(sp: ServeProcess, uid: str) -> list[dict[str, Any]]:
    status, body = sp.api("GET", f"/agents/{uid}")
    assert status == 200, body
    return list(reversed(body["remote_config_history"]))  # oldest first


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "otelcockpit", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
        cwd=cwd,
    )


def now() -> float:
    return time.monotonic()
