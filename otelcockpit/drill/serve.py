"""The outage drill against a real OpAMP server: a scratch ``otelcockpit serve`` and ``simulate-agents``
processes on loopback, stopped and started for real.

The story it plays: config ``edge`` version 1 runs everywhere, including the autoscaling pool, which
then scales in (its agents with a volume keep version 1 in their cache). Version 2 is rolled out to
the running fleet. Then the fleet API goes away and, while it is away, the pool scales out again:
agents with a cache start on version 1 (older than the assigned one), agents without one on their
bootstrap config. The API returns; the cockpit counts what they came up on, compares what those
configs export with version 2, and watches them converge.

Readiness (is every agent there yet?) is read from the admin API; what the drill reports is what the
cockpit's own read path sees (:class:`~otelcockpit.backends.opamp.OpAmpBackend` and
:func:`~otelcockpit.adoption.outage.outage_report`).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from otelcockpit.adoption.outage import DrillRecord, DrillStep
from otelcockpit.drill import DrillOptions, StepCallback, observe, step, try_push
from otelcockpit.errors import CockpitError
from otelcockpit.fleet.model import parse_time, utcnow
from otelcockpit.resources import demo_dir

EDGE_V1 = """\
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 0.0.0.0:4317}
  hostmetrics:
    collection_interval: 60s
    scrapers: {cpu: {}, memory: {}}
processors:
  memory_limiter: {check_interval: 1s, limit_percentage: 80}
  probabilistic_sampler: {sampling_percentage: 10}
  batch: {}
exporters:
  otlphttp:
    endpoint: ${env:OTLP_ENDPOINT}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [memory_limiter, probabilistic_sampler, batch], exporters: [otlphttp]}
    metrics: {receivers: [hostmetrics], processors: [memory_limiter, batch], exporters: [otlphttp]}
"""
EDGE_V2 = EDGE_V1.replace("scrapers: {cpu: {}, memory: {}}", "scrapers: {cpu: {}, memory: {}, filesystem: {}}")
SEED_BASE, SEED_POOL = 101, 202
WAIT_SECONDS = 90.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """A scratch server and simulated agents in ``workdir`` (database, tokens, agents' caches, logs)."""

    def __init__(self, workdir: Path, *, transport: str = "ws", heartbeat: int = 2) -> None:
        self.workdir = workdir
        self.transport = transport
        self.heartbeat = heartbeat
        self.opamp_port, self.admin_port = free_port(), free_port()
        self.token = secrets.token_urlsafe(24)
        self.state = workdir / "agent-state"
        self.logs = workdir / "logs"
        self.server: subprocess.Popen[bytes] | None = None
        self.pools: dict[str, subprocess.Popen[bytes]] = {}
        self.logs.mkdir(parents=True, exist_ok=True)
        (workdir / "tokens.yaml").write_text(
            f"tokens:\n  - {{token: {self.token}, role: write, name: outage-drill}}\n", encoding="utf-8"
        )
        self.env = {**os.environ, "OTELCOCKPIT_DATA_DIR": str(workdir / "data")}

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def opamp_url(self) -> str:
        scheme = "ws" if self.transport == "ws" else "http"
        return f"{scheme}://127.0.0.1:{self.opamp_port}/v1/opamp"

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "otelcockpit", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        finally:
            log.close()

    async def start_server(self) -> None:
        self.server = self._spawn(
            "serve",
            "serve",
            "--listen", f"127.0.0.1:{self.opamp_port}",
            "--admin-listen", f"127.0.0.1:{self.admin_port}",
            "--db", str(self.workdir / "opamp.db"),
            "--tokens", str(self.workdir / "tokens.yaml"),
            "--heartbeat-seconds", str(self.heartbeat),
        )  # fmt: skip
        from otelcockpit.backends.opamp import OpAmpApi, OpAmpApiError

        api = OpAmpApi(self.admin_url, self.token, timeout=2.0)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.server.poll() is not None:
                    raise CockpitError(f"the lab's server exited (see {self.logs / 'serve.log'})")
                try:
                    await api.health()
                    return
                except OpAmpApiError:
                    await asyncio.sleep(0.1)
            raise CockpitError(f"the lab's server did not answer within 30s (see {self.logs / 'serve.log'})")
        finally:
            await api.close()

    def stop(self, proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop_server(self) -> None:
        self.stop(self.server)
        self.server = None

    def start_pool(self, name: str, count: int, seed: int, without_cache: float, bootstrap: Path) -> None:
        self.pools[name] = self._spawn(
            f"agents-{name}",
            "simulate-agents",
            "--server", self.opamp_url,
            "--transport", self.transport,
            "--count", str(count),
            "--seed", str(seed),
            "--state-dir", str(self.state),
            "--without-cache", str(without_cache),
            "--bootstrap", str(bootstrap),
            "--heartbeat", str(self.heartbeat),
            "--apply-delay", "0.3",
            "--duration", "3600",
            "--quiet",
        )  # fmt: skip

    def stop_pool(self, name: str) -> None:
        self.stop(self.pools.pop(name, None))

    def close(self) -> None:
        for name in list(self.pools):
            self.stop_pool(name)
        self.stop_server()


def pool_uids(count: int, seed: int) -> list[str]:
    from otelcockpit.simulate.agents import make_profiles

    return [str(uuid.UUID(bytes=p.uid)) for p in make_profiles(count, seed)]


async def wait_until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.25)
    raise CockpitError(f"the drill waited {timeout:g}s for {what}, in vain")


async def run_serve_drill(
    options: DrillOptions,
    workdir: Path,
    *,
    collectors: int = 20,
    transport: str = "ws",
    on_ready: Callable[[Lab], None] | None = None,
    on_step: StepCallback | None = None,
) -> DrillRecord:
    from otelcockpit.backends.opamp import OpAmpApi, OpAmpBackend

    lab = Lab(workdir, transport=transport)
    bootstrap = demo_dir() / "bootstrap.yaml"
    base_uids, pool = pool_uids(collectors, SEED_BASE), pool_uids(options.scale_out, SEED_POOL)
    total = collectors + options.scale_out
    steps: list[DrillStep] = []
    began = utcnow()
    wall = time.monotonic()

    def done(s: DrillStep) -> None:
        steps.append(s)
        if on_step is not None:
            on_step(s)

    api: Any = None
    backend: Any = None
    try:
        await lab.start_server()
        if on_ready is not None:
            on_ready(lab)
        api = OpAmpApi(lab.admin_url, lab.token, timeout=5.0)
        backend = OpAmpBackend(lab.admin_url, lab.token, timeout=3.0)

        async def agents() -> dict[str, dict[str, Any]]:
            doc = await api.agents()
            return {a["instance_uid"]: a for a in doc.get("agents") or ()}

        async def applied(uids: list[str], digest: str) -> bool:
            now = await agents()
            return all(
                u in now and (now[u].get("remote_config_status") or {}).get("last_hash") == digest
                and now[u]["remote_config_status"]["status"] == "APPLIED"
                for u in uids
            )  # fmt: skip

        v1 = await api.create_config("edge", {"edge.yaml": {"body": EDGE_V1, "content_type": "text/yaml"}}, author="outage-drill")
        await api.assign("edge", 1, "", author="outage-drill")
        # The autoscaling pool runs version 1, then scales in (its agents with a volume keep it cached).
        lab.start_pool("pool", options.scale_out, SEED_POOL, options.without_cache, bootstrap)
        lab.start_pool("base", collectors, SEED_BASE, 0.0, bootstrap)
        await wait_until("every agent to apply edge version 1", lambda: applied(base_uids + pool, v1["hash"]))
        lab.stop_pool("pool")

        async def scaled_in() -> bool:
            now = await agents()
            return all(now[u]["status"] == "offline" for u in pool if u in now)

        await wait_until("the pool's agents to be offline after it scaled in", scaled_in)
        v2 = await api.create_config("edge", {"edge.yaml": {"body": EDGE_V2, "content_type": "text/yaml"}}, author="outage-drill")
        await api.assign("edge", 2, "", author="outage-drill")
        await wait_until("the running fleet to apply edge version 2", lambda: applied(base_uids, v2["hash"]))
        cached = [u for u in pool if (lab.state / f"{uuid.UUID(u).bytes.hex()}.json").is_file()]
        on_cache, on_boot = len(cached), options.scale_out - len(cached)

        snap = await backend.snapshot()
        report = await observe(backend, snap, now=utcnow())
        done(
            step(
                "steady",
                time.monotonic() - wall,
                f"edge version 2 runs on {collectors} agent(s); the autoscaling pool ({options.scale_out}) scaled in "
                f"after running version 1 ({on_cache} kept it in a cache)",
                report,
                {"api_down": 0, "collectors": total, "online": collectors, "in_sync": collectors},
            )
        )

        lab.stop_server()
        down = utcnow()
        snap = await backend.snapshot()
        refused = await try_push(backend, snap)
        report = await observe(backend, snap, now=utcnow())
        done(
            step("api down", time.monotonic() - wall, "the fleet API goes away; an operator tries a push", report,
                 {"api_down": 1, "refused": 1, "collectors": total}, refused=refused)
        )  # fmt: skip

        lab.start_pool("pool", options.scale_out, SEED_POOL, options.without_cache, bootstrap)
        await asyncio.sleep(1.0)  # they are up (and cannot reach the API)
        snap = await backend.snapshot()
        report = await observe(backend, snap, now=utcnow())
        done(
            step(
                "scale-out",
                time.monotonic() - wall,
                f"the pool scales out again while the API is away: {on_cache} agent(s) with a cached remote config, "
                f"{on_boot} without (their bootstrap config); the cockpit cannot see them yet",
                report,
                {"api_down": 1, "collectors": total},
            )
        )

        await asyncio.sleep(max(0.0, options.outage_seconds - (utcnow() - down).total_seconds()))
        await lab.start_server()
        back = utcnow()

        async def pool_came_up() -> bool:
            now = await agents()
            for u in pool:
                up = ((now.get(u) or {}).get("config") or {}).get("came_up") or {}
                at = parse_time(up.get("at"))
                if at is None or at < down:
                    return False
            return True

        await wait_until("the pool's agents to report after the API returned", pool_came_up)

        async def fresh() -> bool:
            return not (await backend.snapshot()).stale

        await wait_until("the cockpit to read fresh data", fresh)
        snap = await backend.snapshot()
        report = await observe(backend, snap, now=utcnow(), since=down)
        done(
            step(
                "api back",
                time.monotonic() - wall,
                "the fleet API returns: the pool's agents report what they came up on",
                report,
                {"api_down": 0, "collectors": total, "came_up_fallback": on_boot, "came_up_cached": on_cache},
            )
        )

        converged_after = None
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            snap = await backend.snapshot()
            report = await observe(backend, snap, now=utcnow(), since=down)
            if report.converged and report.states.get("in sync") == total:
                converged_after = (utcnow() - back).total_seconds()
                break
            await asyncio.sleep(0.25)
        done(
            step("converged", time.monotonic() - wall, "they fetch and apply edge version 2", report,
                 {"still_off": 0, "in_sync": total, "online": total, "collectors": total})
        )  # fmt: skip
        return DrillRecord(
            backend="serve",
            started_at=began,
            parameters={
                "collectors": collectors,
                "scale_out": options.scale_out,
                "without_cache": options.without_cache,
                "outage_seconds": options.outage_seconds,
                "transport": transport,
                "clock": "real",
            },
            steps=tuple(steps),
            converged_after_seconds=converged_after,
        )
    finally:
        if backend is not None:
            await backend.close()
        if api is not None:
            await api.close()
        lab.close()
