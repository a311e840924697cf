"""Simulated OpAMP agents: real OpAMP protobuf over real HTTP or WebSocket, for demos and load tests.

Each :class:`SimAgent` looks like an OpenTelemetry Collector under the OpAMP supervisor: realistic
attributes (deterministic from the seed), a component health tree, an effective config, heartbeats,
its available components, and remote config: on an offer it reports APPLYING, then APPLIED with the
hash and the applied files as its effective config, or FAILED with an error (at ``fail_rate``, decided
per agent and hash, so a re-run fails the same agents). It honours ReportFullState,
ReportAvailableComponents, ``agent_identification`` and the restart command, and sends
``agent_disconnect`` when it stops.

Like the supervisor, an agent persists the last remote config it applied (``state_dir``, one file per
agent) and starts from it: whether the server is reachable or not, it runs that cached config at once
(and reports it APPLIED), or its bootstrap config when it has no cache (``without_cache``: pods
without a volume), and reports exactly that in its EffectiveConfig until a remote config arrives.

:class:`SimAgent` is transport-free (it builds and consumes protobuf messages);
:func:`run_simulation` drives many of them in one asyncio loop over httpx (HTTP) or websockets (WS).
Traffic only goes to a loopback URL (:func:`check_server_url`), bounded by ``duration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from otelcockpit.errors import CockpitError, UsageError
from otelcockpit.opamp_server.proto import anyvalue_pb2 as av
from otelcockpit.opamp_server.proto import opamp_pb2 as pb

DEFAULT_PATH = "/v1/opamp"
MAX_MESSAGE = 64 * 1024 * 1024

CAPABILITIES = (
    pb.AgentCapabilities_ReportsStatus
    | pb.AgentCapabilities_AcceptsRemoteConfig
    | pb.AgentCapabilities_ReportsEffectiveConfig
    | pb.AgentCapabilities_AcceptsRestartCommand
    | pb.AgentCapabilities_ReportsHealth
    | pb.AgentCapabilities_ReportsRemoteConfig
    | pb.AgentCapabilities_ReportsHeartbeat
    | pb.AgentCapabilities_ReportsAvailableComponents
)

SERVICES = (
    ("otelcol-contrib", ("0.115.0", "0.116.1", "0.117.0")),
    ("otelcol-k8s", ("0.116.1", "0.117.0")),
    ("otelcol-gateway", ("0.114.0", "0.117.0")),
)
ENVS = (("prod", 5), ("staging", 3), ("dev", 2))
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-1")
TEAMS = ("platform", "payments", "search", "checkout", "identity")
ARCHES = (("amd64", 8), ("arm64", 2))
OS_DESCRIPTIONS = (
    "Ubuntu 22.04.4 LTS",
    "Ubuntu 24.04.1 LTS",
    "Debian GNU/Linux 12 (bookworm)",
    "Amazon Linux 2023",
)
FAILURES = (
    '\'exporters\' unknown type: "otlphttpp" for id: "otlphttpp"',
    'cannot start pipelines: failed to start "otlp" receiver: listen tcp 0.0.0.0:4317: bind: address already in use',
    "Config apply timeout exceeded",
    "'processors::batch' has invalid keys: send_batch_sizee",
)
DEGRADED = (
    "sending queue is full",
    "Exporting failed. Will retry the request after interval: rpc error: code = Unavailable",
    "memory_limiter: data refused, soft limit reached",
)
UNHEALTHY = (
    'pipeline "traces": exporter "otlphttp" failed: 503 Service Unavailable',
    "collector crashed: Agent process PID=4211 exited unexpectedly, exit code=2",
)


def _h(*parts: object) -> int:
    """A stable 64-bit hash (Python's hash() is salted per process)."""
    return int.from_bytes(
        hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big"
    )


def _weighted(rng: random.Random, options: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


# --------------------------------------------------------------------------------------------
# URLs


def check_server_url(url: str, transport: str) -> str:
    """The OpAMP endpoint for ``transport``; a non-loopback host is a UsageError (exit 2)."""
    if transport not in ("http", "ws"):
        raise UsageError(f"--transport must be http or ws, not {transport!r}")
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https", "ws", "wss"):
        raise UsageError(f"--server must be an http(s):// or ws(s):// URL, not {url!r}")
    host = parts.hostname or ""
    if not _is_loopback(host):
        raise UsageError(
            f"refusing --server {url}: simulated agents only talk to a loopback address "
            "(127.0.0.0/8, localhost, ::1)"
        )
    secure = parts.scheme in ("https", "wss")
    scheme = ("https" if secure else "http") if transport == "http" else ("wss" if secure else "ws")
    path = parts.path if parts.path not in ("", "/") else DEFAULT_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------
# Profiles and the agent


@dataclass(frozen=True)
class Profile:
    uid: bytes
    identifying: tuple[tuple[str, str], ...]
    non_identifying: tuple[tuple[str, str], ...]
    health_kind: str  # healthy | degraded | unhealthy
    health_error: str

    def attr(self, key: str) -> str:
        return dict(self.identifying + self.non_identifying).get(key, "")


def make_profiles(count: int, seed: int) -> list[Profile]:
    """``count`` agents with realistic, seed-determined attributes and health."""
    rng = random.Random(f"otelcockpit-sim-{seed}")
    out = []
    for i in range(count):
        uid = uuid.UUID(int=rng.getrandbits(128), version=4).bytes
        service, versions = SERVICES[i % len(SERVICES)] if i < len(SERVICES) else rng.choice(SERVICES)
        env = _weighted(rng, ENVS)
        region = rng.choice(REGIONS)
        team = rng.choice(TEAMS)
        arch = _weighted(rng, ARCHES)
        host = f"{env}-{region.split('-')[0]}-{service.removeprefix('otelcol-')}-{i:05d}"
        roll = rng.random()
        if roll < 0.85:
            kind, err = "healthy", ""
        elif roll < 0.95:
            kind, err = "degraded", rng.choice(DEGRADED)
        else:
            kind, err = "unhealthy", rng.choice(UNHEALTHY)
        identifying = (
            ("service.name", service),
            ("service.version", rng.choice(versions)),
            ("service.instance.id", str(uuid.UUID(bytes=uid))),
        )
        non_identifying = (
            ("host.name", host),
            ("os.type", "linux"),
            ("os.description", rng.choice(OS_DESCRIPTIONS)),
            ("host.arch", arch),
            ("env", env),
            ("region", region),
            ("team", team),
            ("cloud.provider", "aws"),
            ("cloud.region", region),
            ("k8s.cluster.name", f"{env}-{region}") if "k8s" in service else ("deployment.mode", "host"),
        )
        out.append(Profile(uid, identifying, non_identifying, kind, err))
    return out


def _kv(key: str, value: str) -> av.KeyValue:
    return av.KeyValue(key=key, value=av.AnyValue(string_value=value))


# The bootstrap config the simulated agents start with when they have no cached remote config: the
# distribution's generous default (every span, host metrics every 10 s, every log line, and a debug
# exporter), which is what makes a fleet-API outage during a scale-out expensive. ``{region}`` is
# the agent's region. ``--bootstrap FILE`` replaces it.
BOOTSTRAP_CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 0.0.0.0:4317}
      http: {endpoint: 0.0.0.0:4318}
  hostmetrics:
    collection_interval: 10s
    scrapers: {cpu: {}, memory: {}, disk: {}, filesystem: {}, network: {}, load: {}, processes: {}}
  filelog:
    include: [/var/log/*.log]
processors:
  memory_limiter: {check_interval: 1s, limit_percentage: 80}
  batch: {}
exporters:
  otlphttp:
    endpoint: https://otlp-gateway.{region}.example.net
  debug:
    verbosity: detailed
service:
  pipelines:
    traces: {receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlphttp, debug]}
    metrics: {receivers: [otlp, hostmetrics], processors: [memory_limiter, batch], exporters: [otlphttp, debug]}
    logs: {receivers: [otlp, filelog], processors: [memory_limiter, batch], exporters: [otlphttp, debug]}
"""


def local_config(p: Profile, bootstrap: str | None = None) -> str:
    """The agent's bootstrap config (``{region}`` filled in)."""
    return (bootstrap if bootstrap is not None else BOOTSTRAP_CONFIG).replace("{region}", p.attr("region"))


# Available components (AvailableComponents), a simulation: otelcol-contrib agents have every
# component the linter knows; otelcol-k8s agents lack the kafka receiver and exporter and the
# datadog exporter and connector; otelcol-gateway 0.114.0 agents lack the signaltometrics connector.
LACKS: dict[tuple[str, str], frozenset[str]] = {
    ("otelcol-k8s", ""): frozenset({"receiver:kafka", "exporter:kafka", "exporter:datadog", "connector:datadog"}),
    ("otelcol-gateway", "0.114.0"): frozenset({"connector:signaltometrics"}),
}


def components_of(p: Profile) -> dict[str, list[str]]:
    """kind (receivers, processors ...) -> the component types a simulated agent has."""
    from otelcockpit.policy.known import OTEL

    service, version = p.attr("service.name"), p.attr("service.version")
    lacks = LACKS.get((service, ""), frozenset()) | LACKS.get((service, version), frozenset())
    out: dict[str, list[str]] = {}
    for kind, names in OTEL.items():
        singular = kind[:-1]
        out[kind] = sorted(n for n in names if f"{singular}:{n}" not in lacks)
    return out


def available_components(p: Profile) -> pb.AvailableComponents:
    comps = components_of(p)
    ac = pb.AvailableComponents()
    digest = hashlib.sha256()
    for kind, names in sorted(comps.items()):
        detail = ac.components[kind]
        for n in names:
            sub = detail.sub_component_map[n]
            sub.metadata.append(_kv("code.namespace", f"simulated/{kind}/{n}"))
            digest.update(f"{kind}/{n}\n".encode())
    ac.hash = digest.digest()
    return ac


def without_cache(seed: int, p: Profile, share: float) -> bool:
    """Whether this agent has no persisted cache (a pod without a volume), decided by the seed."""
    return share > 0 and _h(seed, p.uid.hex(), "no-cache") / 2**64 < share


def read_cache(path: Path) -> tuple[bytes, dict[str, tuple[bytes, str]]] | None:
    """The last remote config an agent applied (hash, files), or None when there is none to read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = {str(n): (str(f["body"]).encode("utf-8"), str(f.get("content_type", ""))) for n, f in data["files"].items()}
        return bytes.fromhex(data["hash"]), files
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_cache(path: Path, config_hash: bytes, files: dict[str, tuple[bytes, str]]) -> None:
    """Persist an applied remote config atomically (a crash leaves the old cache or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    body = {
        "hash": config_hash.hex(),
        "files": {n: {"body": b.decode("utf-8", "replace"), "content_type": ct} for n, (b, ct) in files.items()},
        "applied_at": time.time(),
    }
    tmp.write_text(json.dumps(body, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


_PARSED: dict[bytes, str] = {}  # config hash -> "" or parse error (shared by every agent in the process)


def _check_config(config: pb.AgentConfigMap, config_hash: bytes) -> str:
    """A parse error in the offered files ("" when they parse), like the supervisor's YAML check."""
    hit = _PARSED.get(config_hash)
    if hit is not None:
        return hit
    error = ""
    for name in sorted(config.config_map):
        f = config.config_map[name]
        try:
            text = f.body.decode("utf-8")
            if "json" in f.content_type:
                json.loads(text or "null")
            elif "yaml" in f.content_type or f.content_type == "" or name.endswith((".yaml", ".yml")):
                import yaml

                yaml.safe_load(text)
        except (ValueError, UnicodeDecodeError) as exc:
            error = f"cannot parse {name or 'config'}: {' '.join(str(exc).split())[:200]}"
            break
        except Exception as exc:  # noqa: BLE001 - yaml.YAMLError and friends
            error = f"cannot parse {name or 'config'}: {' '.join(str(exc).split())[:200]}"
            break
    if len(_PARSED) > 1000:
        _PARSED.clear()
    _PARSED[config_hash] = error
    return error


Action = tuple[float, Callable[[], "pb.AgentToServer | None"]]


class SimAgent:
    """One simulated agent. ``handle()`` turns a ServerToAgent into actions: (delay, build) pairs whose
    ``build()`` is called when the message is due (it changes the agent's state and returns the
    AgentToServer to send, which the transport stamps with ``stamp()`` just before sending)."""

    def __init__(
        self,
        profile: Profile,
        *,
        fail_rate: float = 0.0,
        seed: int = 0,
        heartbeat: float = 30.0,
        apply_delay: float = 0.2,
        clock: Callable[[], float] = time.time,
        cache: Path | None = None,
        bootstrap: str | None = None,
    ) -> None:
        self.profile = profile
        self.uid = profile.uid
        self.fail_rate = fail_rate
        self.seed = seed
        self.heartbeat = heartbeat
        self.interval_changed: asyncio.Event | None = None  # set by the WebSocket loop
        self.apply_delay = apply_delay
        self.clock = clock
        self.seq = -1
        self.capabilities = CAPABILITIES
        self.start_ns = int(clock() * 1e9)
        self.effective: dict[str, tuple[bytes, str]] = {"": (local_config(profile, bootstrap).encode(), "text/yaml")}
        self.rc_hash = b""
        self.rc_status = pb.RemoteConfigStatuses_UNSET
        self.rc_error = ""
        # Like the supervisor: the last remote config it applied, persisted (None: no volume), and
        # what it started on (a cached remote config, or its bootstrap config).
        self.cache = cache
        self.cache_errors: list[str] = []
        self._ac: pb.AvailableComponents | None = None
        self.started_on = "bootstrap"
        cached = read_cache(cache) if cache is not None else None
        if cached is not None:
            self.rc_hash, self.effective = cached
            self.rc_status = pb.RemoteConfigStatuses_APPLIED
            self.started_on = "cache"
        self.in_flight: bytes | None = None  # the hash being applied right now
        self.restarts = 0
        self.applied: list[bytes] = []
        self.failed: list[bytes] = []
        self.errors: list[str] = []
        self.received = 0

    # -- messages ---------------------------------------------------------------------------

    def stamp(self, msg: pb.AgentToServer) -> pb.AgentToServer:
        self.seq += 1
        msg.instance_uid = self.uid
        msg.sequence_num = self.seq
        msg.capabilities = self.capabilities
        return msg

    def description(self) -> pb.AgentDescription:
        return pb.AgentDescription(
            identifying_attributes=[
                _kv(k, v if k != "service.instance.id" else str(uuid.UUID(bytes=self.uid)))
                for k, v in self.profile.identifying
            ],
            non_identifying_attributes=[_kv(k, v) for k, v in self.profile.non_identifying],
        )

    def health(self) -> pb.ComponentHealth:
        now_ns = int(self.clock() * 1e9)
        kind, err = self.profile.health_kind, self.profile.health_error

        def comp(healthy: bool = True, error: str = "") -> pb.ComponentHealth:
            return pb.ComponentHealth(
                healthy=healthy,
                start_time_unix_nano=self.start_ns,
                status="StatusOK" if healthy else "StatusRecoverableError",
                status_time_unix_nano=now_ns,
                last_error=error,
            )

        top = comp(kind != "unhealthy", err if kind == "unhealthy" else "")
        if kind == "unhealthy":
            top.status = "StatusPermanentError"
        for pipeline, receivers in (
            ("traces", ("otlp",)),
            ("metrics", ("otlp", "hostmetrics")),
            ("logs", ("otlp",)),
        ):
            node = top.component_health_map[f"pipeline:{pipeline}"]
            bad_exporter = kind != "healthy" and pipeline == "traces"
            node.CopyFrom(comp(not bad_exporter, err if bad_exporter else ""))
            for r in receivers:
                node.component_health_map[f"receiver:{r}"].CopyFrom(comp())
            for p in ("memory_limiter", "batch"):
                node.component_health_map[f"processor:{p}"].CopyFrom(comp())
            node.component_health_map["exporter:otlphttp"].CopyFrom(
                comp(not bad_exporter, err if bad_exporter else "")
            )
        return top

    def effective_config(self) -> pb.EffectiveConfig:
        ec = pb.EffectiveConfig()
        for name, (body, ctype) in self.effective.items():
            ec.config_map.config_map[name].body = body
            ec.config_map.config_map[name].content_type = ctype
        return ec

    def remote_config_status(self) -> pb.RemoteConfigStatus:
        return pb.RemoteConfigStatus(
            last_remote_config_hash=self.rc_hash, status=self.rc_status, error_message=self.rc_error
        )

    def full_state(self) -> pb.AgentToServer:
        msg = pb.AgentToServer(
            agent_description=self.description(),
            health=self.health(),
            effective_config=self.effective_config(),
            remote_config_status=self.remote_config_status(),
        )
        msg.available_components.hash = self._components().hash  # the hash only; the map on request
        return msg

    def _components(self) -> pb.AvailableComponents:
        hit = self._ac
        if hit is None:
            hit = self._ac = available_components(self.profile)
        return hit

    def components_message(self) -> pb.AgentToServer:
        msg = pb.AgentToServer()
        msg.available_components.CopyFrom(self._components())
        return msg

    def heartbeat_message(self) -> pb.AgentToServer:
        return pb.AgentToServer()

    def disconnect_message(self) -> pb.AgentToServer:
        msg = pb.AgentToServer()
        msg.agent_disconnect.SetInParent()
        return msg

    def will_fail(self, config_hash: bytes) -> bool:
        if self.fail_rate <= 0:
            return False
        return _h(self.seed, self.profile.uid.hex(), config_hash.hex()) / 2**64 < self.fail_rate

    # -- handling ---------------------------------------------------------------------------

    def handle(self, msg: pb.ServerToAgent) -> list[Action]:
        self.received += 1
        actions: list[Action] = []
        if msg.HasField("error_response"):
            self.errors.append(msg.error_response.error_message or "error_response")
            return actions
        if msg.HasField("agent_identification") and len(msg.agent_identification.new_instance_uid) == 16:
            self.uid = msg.agent_identification.new_instance_uid
            actions.append((0.0, self.full_state))
            return actions
        if msg.HasField("command"):
            if msg.command.type == pb.CommandType_Restart:
                actions.append((0.0, self._restart))
            return actions  # a command comes alone
        if msg.HasField("connection_settings") and msg.connection_settings.HasField("opamp"):
            interval = msg.connection_settings.opamp.heartbeat_interval_seconds
            if interval > 0 and float(interval) != self.heartbeat:
                self.heartbeat = float(interval)
                if self.interval_changed is not None:
                    self.interval_changed.set()
        if msg.HasField("remote_config") and msg.remote_config.config_hash:
            rc = msg.remote_config
            # A new hash is applied; the same hash again only when no apply of it is under way (a
            # server re-offering a config it believes stuck in APPLYING).
            stuck = self.rc_status == pb.RemoteConfigStatuses_APPLYING and self.in_flight != rc.config_hash
            if rc.config_hash != self.rc_hash or stuck:
                actions.append((0.0, lambda rc=rc: self._applying(rc)))
                actions.append((self.apply_delay, lambda rc=rc: self._finish(rc)))
        if msg.flags & pb.ServerToAgentFlags_ReportFullState:
            actions.append((0.0, self.full_state))
        if msg.flags & pb.ServerToAgentFlags_ReportAvailableComponents:
            actions.append((0.0, self.components_message))
        return actions

    def _applying(self, rc: pb.AgentRemoteConfig) -> pb.AgentToServer:
        self.in_flight = rc.config_hash
        self.rc_hash = rc.config_hash
        self.rc_status = pb.RemoteConfigStatuses_APPLYING
        self.rc_error = ""
        return pb.AgentToServer(remote_config_status=self.remote_config_status())

    def _finish(self, rc: pb.AgentRemoteConfig) -> pb.AgentToServer | None:
        if self.rc_hash != rc.config_hash:  # superseded by a newer offer
            return None
        self.in_flight = None
        error = _check_config(rc.config, rc.config_hash)
        if not error and self.will_fail(rc.config_hash):
            error = FAILURES[
                _h(self.seed, self.profile.uid.hex(), rc.config_hash.hex(), "msg") % len(FAILURES)
            ]
        if error:
            self.rc_status = pb.RemoteConfigStatuses_FAILED
            self.rc_error = error
            self.failed.append(rc.config_hash)
            return pb.AgentToServer(remote_config_status=self.remote_config_status())
        self.rc_status = pb.RemoteConfigStatuses_APPLIED
        self.rc_error = ""
        self.effective = {n: (f.body, f.content_type) for n, f in rc.config.config_map.items()}
        self.applied.append(rc.config_hash)
        if self.cache is not None:
            try:
                write_cache(self.cache, rc.config_hash, self.effective)
            except OSError as exc:
                self.cache_errors.append(f"cannot persist the applied config: {exc}")
        return pb.AgentToServer(
            remote_config_status=self.remote_config_status(), effective_config=self.effective_config()
        )

    def _restart(self) -> pb.AgentToServer:
        self.restarts += 1
        self.start_ns = int(self.clock() * 1e9)
        return pb.AgentToServer(health=self.health())


# --------------------------------------------------------------------------------------------
# Running many agents


class FatalSimulationError(CockpitError):
    """The server refused us in a way retrying cannot fix (401, 403)."""


@dataclass
class SimStats:
    agents: int = 0
    transport: str = ""
    sent: int = 0
    received: int = 0
    connects: int = 0
    connect_errors: int = 0
    http_errors: int = 0
    applied: int = 0
    failed: int = 0
    restarts: int = 0
    error_responses: int = 0
    last_error: str = ""
    rtts: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "rtts"}
        if self.rtts:
            s = sorted(self.rtts)
            d["rtt_ms"] = {
                "count": len(s),
                "p50": round(s[len(s) // 2] * 1000, 2),
                "p99": round(s[min(len(s) - 1, int(len(s) * 0.99))] * 1000, 2),
                "max": round(s[-1] * 1000, 2),
            }
        return d


class Simulation:
    """N agents over one transport, until ``stop()`` or the deadline."""

    def __init__(
        self,
        url: str,
        agents: list[SimAgent],
        *,
        transport: str,
        token: str | None = None,
        duration: float = 600.0,
        record_rtt: bool = False,
        connect_concurrency: int = 200,
        on_event: Callable[[str, SimAgent], None] | None = None,
    ) -> None:
        self.url = url
        self.agents = agents
        self.transport = transport
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.duration = duration
        self.record_rtt = record_rtt
        self.stats = SimStats(agents=len(agents), transport=transport)
        self._stop = asyncio.Event()
        self._fatal: BaseException | None = None
        self._connect_sem = asyncio.Semaphore(connect_concurrency)
        self.connected = 0
        self.on_event = on_event
        # Applies in progress belong to the agent, not to its connection: like the OpAMP supervisor,
        # an agent whose WebSocket drops keeps applying and reports the result when it reconnects.
        self._applies: set[asyncio.Task[None]] = set()
        self._senders: dict[int, Callable[[pb.AgentToServer | None], Any]] = {}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> SimStats:
        deadline = asyncio.get_running_loop().time() + self.duration
        if self.transport == "http":
            import httpx

            limits = httpx.Limits(
                max_connections=min(256, max(1, len(self.agents))), max_keepalive_connections=256
            )
            async with httpx.AsyncClient(limits=limits, timeout=10.0, trust_env=False) as client:
                tasks = [asyncio.create_task(self._http_agent(client, a, deadline)) for a in self.agents]
                await self._wait(tasks, deadline)
        else:
            tasks = [asyncio.create_task(self._ws_agent(a, deadline)) for a in self.agents]
            await self._wait(tasks, deadline)
        for a in self.agents:
            self.stats.applied += len(a.applied)
            self.stats.failed += len(a.failed)
            self.stats.restarts += a.restarts
            self.stats.error_responses += len(a.errors)
            if a.errors:
                self.stats.last_error = a.errors[-1]
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    async def _wait(self, tasks: list[asyncio.Task[None]], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait([stopper], timeout=max(0.0, deadline - loop.time()))
        finally:
            self._stop.set()
            stopper.cancel()
            # Agents see the stop event, send agent_disconnect and close; bounded.
            done, pending = await asyncio.wait(tasks, timeout=15.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in list(self._applies):
                t.cancel()
            await asyncio.gather(*self._applies, return_exceptions=True)

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
        self._stop.set()

    def _event(self, name: str, agent: SimAgent) -> None:
        if self.on_event is not None:
            self.on_event(name, agent)

    # -- HTTP -------------------------------------------------------------------------------

    async def _http_agent(self, client: Any, agent: SimAgent, deadline: float) -> None:
        import httpx

        loop = asyncio.get_running_loop()
        queue: list[tuple[float, Callable[[], pb.AgentToServer | None]]] = [(0.0, agent.full_state)]
        next_poll = loop.time()
        backoff = 0.5
        headers = {**self.headers, "Content-Type": "application/x-protobuf"}
        # Spread the first requests over a second so N agents do not arrive at once.
        await self._sleep(random.Random(agent.profile.uid).random() * min(1.0, agent.heartbeat))
        while not self._stop.is_set():
            now = loop.time()
            queue.sort(key=lambda x: x[0])
            due = [q for q in queue if q[0] <= now]
            if due:
                queue.remove(due[0])
                msg = due[0][1]()
                if msg is None:
                    continue
            elif now >= next_poll:
                msg = agent.heartbeat_message()
            else:
                wake = min([next_poll] + [q[0] for q in queue])
                await self._sleep(max(0.0, wake - now))
                continue
            agent.stamp(msg)
            reply = await self._http_send(client, msg, headers, httpx)
            next_poll = loop.time() + agent.heartbeat
            if reply is None:
                if self._stop.is_set():
                    return
                queue.append((loop.time() + backoff, agent.full_state))
                await self._sleep(backoff)
                backoff = min(30.0, backoff * 2)
                continue
            backoff = 0.5
            for delay, build in agent.handle(reply):
                queue.append((loop.time() + delay, build))
            next_poll = min(next_poll, loop.time() + agent.heartbeat)  # an offered interval counts at once
            self._event("reply", agent)
        disc = agent.stamp(agent.disconnect_message())
        await self._http_send(client, disc, headers, httpx, final=True)

    async def _http_send(
        self, client: Any, msg: pb.AgentToServer, headers: dict[str, str], httpx: Any, *, final: bool = False
    ) -> pb.ServerToAgent | None:
        started = time.perf_counter()
        try:
            resp = await client.post(self.url, content=msg.SerializeToString(), headers=headers)
        except httpx.HTTPError as exc:
            self.stats.connect_errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
            return None
        self.stats.sent += 1
        if resp.status_code in (401, 403):
            if not final:
                self._fail(
                    FatalSimulationError(
                        f"the OpAMP server at {self.url} refused the agents ({resp.status_code}); pass --token"
                    )
                )
            return None
        if resp.status_code != 200:
            self.stats.http_errors += 1
            self.stats.last_error = f"HTTP {resp.status_code}"
            return None
        reply = pb.ServerToAgent()
        try:
            reply.ParseFromString(resp.content)
        except Exception:  # noqa: BLE001 - protobuf DecodeError
            self.stats.last_error = "undecodable ServerToAgent"
            return None
        self.stats.received += 1
        if self.record_rtt:
            self.stats.rtts.append(time.perf_counter() - started)
        return reply

    # -- WebSocket ------------------------------------------------------------------------

    async def _ws_agent(self, agent: SimAgent, deadline: float) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

        backoff = 0.5
        first = True
        while not self._stop.is_set():
            try:
                async with self._connect_sem:
                    ws = await connect(
                        self.url,
                        additional_headers=self.headers or None,
                        compression=None,
                        max_size=MAX_MESSAGE,
                        ping_interval=None,
                        open_timeout=20,
                        close_timeout=2,
                        proxy=None,
                        user_agent_header="otelcockpit-simulate-agents",
                    )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    self._fail(
                        FatalSimulationError(
                            f"the OpAMP server at {self.url} refused the agents ({status}); pass --token"
                        )
                    )
                    return
                self.stats.connect_errors += 1
                self.stats.last_error = f"WebSocket upgrade answered {status}"
            except (TimeoutError, OSError, WebSocketException) as exc:
                self.stats.connect_errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
            else:
                backoff = 0.5
                self.stats.connects += 1
                self.connected += 1
                try:
                    await self._ws_session(ws, agent, first)
                except ConnectionClosed:
                    pass
                finally:
                    self.connected -= 1
                    first = False
                    await ws.close()
                continue
            await self._sleep(backoff)
            backoff = min(30.0, backoff * 2)

    async def _ws_session(self, ws: Any, agent: SimAgent, first: bool) -> None:
        from websockets.exceptions import ConnectionClosed

        loop = asyncio.get_running_loop()
        lock = asyncio.Lock()
        last_send = [loop.time()]
        waiting: list[float] = []  # perf_counter of sends awaiting a reply (for RTT)

        async def send(msg: pb.AgentToServer | None) -> None:
            if msg is None:
                return
            agent.stamp(msg)
            data = b"\x00" + msg.SerializeToString()
            async with lock:  # one writer per connection
                if self.record_rtt:
                    waiting.append(time.perf_counter())
                await ws.send(data)
            last_send[0] = loop.time()
            self.stats.sent += 1

        async def later(delay: float, build: Callable[[], pb.AgentToServer | None]) -> None:
            # Runs to its end even if this connection drops meanwhile: build() changes the agent's
            # state (the apply finishes) and the report goes out on the agent's connection of that
            # moment; with none, the full state sent when it reconnects carries it.
            await asyncio.sleep(delay)
            msg = build()
            current = self._senders.get(id(agent))
            if current is not None:
                try:
                    await current(msg)
                except ConnectionClosed:
                    pass

        async def reader() -> None:
            async for frame in ws:
                if isinstance(frame, str) or not frame or frame[0] != 0:
                    self.stats.last_error = "malformed frame from server"
                    continue
                reply = pb.ServerToAgent()
                try:
                    reply.ParseFromString(frame[1:])
                except Exception:  # noqa: BLE001
                    self.stats.last_error = "undecodable ServerToAgent"
                    continue
                self.stats.received += 1
                if waiting:
                    self.stats.rtts.append(time.perf_counter() - waiting.pop(0))
                for delay, build in agent.handle(reply):
                    if delay <= 0:
                        await send(build())
                    else:
                        t = asyncio.create_task(later(delay, build))
                        self._applies.add(t)
                        t.add_done_callback(self._applies.discard)
                self._event("reply", agent)

        async def heartbeats() -> None:
            changed = agent.interval_changed = asyncio.Event()
            while True:
                wait = last_send[0] + agent.heartbeat - loop.time()
                if wait > 0:
                    # an interval offered meanwhile counts at once (opamp-go resets its ticker)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), wait)
                    changed.clear()
                    continue
                await send(agent.heartbeat_message())

        self._senders[id(agent)] = send
        read_task = asyncio.create_task(reader())
        hb_task: asyncio.Task[None] | None = None
        stop_task = asyncio.ensure_future(self._stop.wait())
        try:
            await send(agent.full_state())
            hb_task = asyncio.create_task(heartbeats())
            await asyncio.wait([read_task, hb_task, stop_task], return_when=asyncio.FIRST_COMPLETED)
            if hb_task.done() and not hb_task.cancelled() and hb_task.exception() is not None:
                raise hb_task.exception()  # type: ignore[misc]
            if self._stop.is_set() and not read_task.done():
                hb_task.cancel()
                await asyncio.gather(hb_task, return_exceptions=True)
                await send(agent.disconnect_message())
                await asyncio.sleep(0)  # let the frame go out before the close
        finally:
            if self._senders.get(id(agent)) is send:
                del self._senders[id(agent)]
            stop_task.cancel()
            if hb_task is not None:
                hb_task.cancel()
            read_task.cancel()
            await asyncio.gather(read_task, return_exceptions=True)

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass


def build_agents(
    count: int,
    seed: int,
    *,
    fail_rate: float = 0.0,
    heartbeat: float = 30.0,
    apply_delay: float = 0.2,
    state_dir: Path | None = None,
    no_cache_share: float = 0.0,
    bootstrap: str | None = None,
) -> list[SimAgent]:
    """``count`` agents. With ``state_dir`` each persists its applied remote config there
    (``<uid>.json``), except the ``no_cache_share`` of them without a volume."""
    out = []
    for p in make_profiles(count, seed):
        cache = None
        if state_dir is not None and not without_cache(seed, p, no_cache_share):
            cache = state_dir / f"{p.uid.hex()}.json"
        out.append(
            SimAgent(
                p,
                fail_rate=fail_rate,
                seed=seed,
                heartbeat=heartbeat,
                apply_delay=apply_delay,
                cache=cache,
                bootstrap=bootstrap,
            )
        )
    return out
