"""Issue 12 performance: the cockpit on ``otelcockpit serve`` with 10,000 agents, against the demo
backend at the same count, in the same run.

- process start to the first painted Fleet view (whole process, real terminal via tmux);
- one snapshot of the fleet (what every refresh costs: the ``api ok NNNms`` of the status row), and
  the bytes the admin API sends for it;
- ``otelcockpit collectors --json`` (whole process).

The agents are real OpAMP messages (full state: description, health tree, effective config, as the
simulator's collectors send them) posted to the server over HTTP before anything is measured.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from tmux_timing import have_tmux, stop_server, time_until_painted

ROOT = Path(__file__).resolve().parent.parent
N = int(os.environ.get("BENCH_SERVE_AGENTS", "10000"))

pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _populate(opamp_url: str, n: int) -> None:
    from otelcockpit.simulate.agents import SimAgent, make_profiles

    agents = [SimAgent(p) for p in make_profiles(n, 12)]
    sem = asyncio.Semaphore(64)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(a: SimAgent) -> None:
            body = a.stamp(a.full_state()).SerializeToString()
            async with sem:
                r = await client.post(opamp_url, content=body, headers={"Content-Type": "application/x-protobuf"})
                assert r.status_code == 200, r.status_code

        await asyncio.gather(*(one(a) for a in agents))


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("serve")
    opamp, admin = _free_port(), _free_port()
    env = {**os.environ, "OTELCOCKPIT_DATA_DIR": str(tmp / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otelcockpit", "serve", "--listen", f"127.0.0.1:{opamp}",
         "--admin-listen", f"127.0.0.1:{admin}", "--heartbeat-seconds", "3600", "--db", str(tmp / "o.db")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        tokens = tmp / "data" / "tokens.yaml"
        deadline = time.monotonic() + 30
        while not tokens.exists():
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        token = yaml.safe_load(tokens.read_text())["tokens"][0]["token"]
        url = f"http://127.0.0.1:{admin}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/api/v1/health", headers={"Authorization": f"Bearer {token}"}).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not answer"
            time.sleep(0.1)
        started = time.perf_counter()
        asyncio.run(_populate(f"http://127.0.0.1:{opamp}/v1/opamp", N))
        print(f"\n{N} agents posted in {time.perf_counter() - started:.1f}s")
        yield url, token
    finally:
        proc.terminate()
        proc.wait(30)


def _env(tmp: Path, token: str = "") -> dict[str, str]:
    env = {"OTELCOCKPIT_CONFIG": str(tmp / "none.yaml"), "OTELCOCKPIT_DATA_DIR": str(tmp / "cockpit"),
           "TEXTUAL_ANIMATIONS": "none"}  # fmt: skip
    if token:
        env["OTELCOCKPIT_OPAMP_TOKEN"] = token
    return env


def test_cockpit_first_paint_on_serve_vs_demo(serve, record, tmp_path) -> None:  # noqa: ANN001
    url, token = serve
    total = str(N)
    demo_cmd = [sys.executable, "-m", "otelcockpit", "--view", "fleet", "--demo-collectors", str(N)]
    serve_cmd = [sys.executable, "-m", "otelcockpit", "--view", "fleet", "--source", "opamp", "--url", url]
    if not have_tmux():
        pytest.skip("tmux is not installed: cannot measure a real terminal")
    demo, ours = [], []
    try:
        for _ in range(3):  # interleaved, so both see the same machine noise
            demo.append(time_until_painted(demo_cmd, f"Collectors {total}", cwd=str(ROOT), env=_env(tmp_path)))
            ours.append(time_until_painted(serve_cmd, f"Collectors {total}", cwd=str(ROOT), env=_env(tmp_path, token)))
    finally:
        stop_server()
    demo_s = statistics.median(p.seconds for p in demo)
    ours_s = statistics.median(p.seconds for p in ours)
    snap = _snapshot_times(url, token)
    cli = _cli_times(url, token, tmp_path)
    record(
        agents=N,
        serve_first_paint_s=[round(p.seconds, 3) for p in ours],
        demo_first_paint_s=[round(p.seconds, 3) for p in demo],
        serve_median_s=round(ours_s, 3),
        demo_median_s=round(demo_s, 3),
        ratio=round(ours_s / demo_s, 2),
        serve_peak_rss_mb=round(max(p.peak_rss_mb for p in ours), 1),
        demo_peak_rss_mb=round(max(p.peak_rss_mb for p in demo), 1),
        **snap,
        **cli,
        target="the cockpit's first paint on serve costs at most 2x the demo's at the same count",
    )
    assert ours_s <= 2 * demo_s, f"first paint on serve {ours_s:.2f}s vs demo {demo_s:.2f}s"


def _snapshot_times(url: str, token: str) -> dict[str, object]:
    """One snapshot of the fleet (what a refresh costs), in this process, for both backends."""
    from otelcockpit.backends.demo import DemoBackend
    from otelcockpit.backends.opamp import OpAmpBackend

    async def measure() -> dict[str, object]:
        opamp = OpAmpBackend(url, token)
        demo = DemoBackend(collectors=N)
        out: dict[str, list[float]] = {"serve_snapshot_ms": [], "demo_snapshot_ms": []}
        try:
            for _ in range(3):
                for name, backend in (("serve", opamp), ("demo", demo)):
                    started = time.perf_counter()
                    snap = await backend.snapshot()
                    out[f"{name}_snapshot_ms"].append(round((time.perf_counter() - started) * 1000, 1))
                    assert len(snap.collectors) == N
        finally:
            await opamp.close()
        async with httpx.AsyncClient() as c:
            r = await c.get(url + "/api/v1/agents", params=opamp.list_params(), headers={"Authorization": f"Bearer {token}"})
        return {**out, "agent_list_bytes": len(r.content), "agent_list_bytes_per_agent": round(len(r.content) / N)}

    return asyncio.run(measure())


def _cli_times(url: str, token: str, tmp: Path) -> dict[str, object]:
    env = {**os.environ, **_env(tmp, token)}
    out: dict[str, list[float]] = {"serve_collectors_json_s": [], "demo_collectors_json_s": []}
    for _ in range(3):
        for name, args in (("serve", ["--source", "opamp", "--url", url]), ("demo", ["--demo-collectors", str(N)])):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "otelcockpit", "collectors", "--json", *args], env=env,
                                  capture_output=True, cwd=ROOT)  # fmt: skip
            assert done.returncode == 0, done.stderr[-500:]
            out[f"{name}_collectors_json_s"].append(round(time.perf_counter() - started, 2))
    return out
