"""The demo backend: the embedded Northwind News organisation and a seeded simulator.

The fleet is expanded from ``fixtures/demo/fleet.yaml`` (groups of collectors) and
``pipelines.yaml`` (pipelines with their revisions). A simulator moves it: collectors go
stale and come back, health degrades and recovers, pushed pipelines apply after a delay and
a few fail. Everything is a function of the seed and of the clock readings the backend is
given, so the same seed and clock give the same screens.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from otelcockpit.backends.base import (
    COLLECTOR_SET_ENABLED,
    COLLECTOR_SET_REMOTE_ATTRIBUTES,
    PIPELINE_DELETE,
    PIPELINE_SET_ENABLED,
    PIPELINE_UPSERT,
    Change,
    PushResult,
    RolloutSettings,
    local_rollouts,
    refuse_if_stale,
)
from otelcockpit.errors import ConfigError, UsageError
from otelcockpit.fleet.matchers import MatcherError, compile_matchers
from otelcockpit.fleet.matching import PipelineMatcher
from otelcockpit.fleet.model import (
    BackendHealth,
    CameUp,
    Collector,
    CollectorTarget,
    CollectorType,
    ConfigReport,
    ConfigStatus,
    FleetSnapshot,
    Health,
    Operation,
    Pipeline,
    RemoteConfig,
    Revision,
    age_text,
    rfc3339,
    utcnow,
)
from otelcockpit.resources import demo_dir
from otelcockpit.yamlio import load_yaml, where

TICK_SECONDS = 2.0
POLL_SECONDS = 300  # how often a demo collector checks in (Alloy poll_frequency = "5m")
OFFLINE_AFTER = 3 * POLL_SECONDS  # silent this long: offline (Fleet Management's rule of thumb)
BAD_SHARE = 0.07  # the steady state: about this share of the fleet is not healthy
INCIDENT_CHANCE = 1 / 200  # per tick: a few collectors of one place break together (about every 7 min)
TRANSIENT_FAILURES = (0, 4)  # FAILURE_MESSAGES a collector gets past on a later check-in
DEFAULT_EPOCH = datetime.fromisoformat("2026-11-20T09:00:00+00:00")
BOOTSTRAP = "bootstrap"  # the effective-config hash of a collector on its local (bootstrap) config
DRIFT_ONE_IN = 151  # about this share of the demo fleet runs a locally edited config

# Attributes that differ between the collectors of one group.
PER_COLLECTOR_KEYS = frozenset(
    {"collector.ID", "host.name", "host.arch", "collector.version", "service.version", "service.instance.id"}
)
_REL = re.compile(r"^-(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

FAILURE_MESSAGES = (
    "component \"otelcol.exporter.otlphttp\" failed to start: dial tcp 10.2.3.4:4318: connect: connection refused",
    "loading config: 3:5: unrecognized attribute name \"scrape_intervall\"",
    "prometheus.remote_write: 401 Unauthorized: invalid scope requested",
    "error decoding 'processors': unknown type: \"tail_samplingg\"",
    "Config apply timeout exceeded",
)
DEGRADED_MESSAGES = (
    "queue is full: dropping data (otelcol_exporter_queue_size 5000/5000)",
    "scrape of prometheus.exporter.unix.host took 12.4s (interval 30s)",
    "memory_limiter: soft limit reached, refusing data",
)
UNHEALTHY_MESSAGES = (
    "exporter otlphttp: 503 Service Unavailable (retrying for 5m)",
    "pipeline traces: receiver otlp not ready: bind: address already in use",
    "OOMKilled: container restarted 4 times in 10m",
)


def relative_time(value: Any, epoch: datetime, origin: str) -> datetime:
    if isinstance(value, datetime):
        return value
    text = str(value).strip()
    m = _REL.match(text)
    if m and any(m.groups()):
        d, h, mi, s = (int(x) if x else 0 for x in m.groups())
        return epoch - timedelta(days=d, hours=h, minutes=mi, seconds=s)
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{origin}: bad time {text!r} (use -3d, -2h30m or RFC 3339)") from None
    return ts


def _h(*parts: object) -> int:
    """A stable 64-bit hash (Python's hash() is salted per process)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _weights(options: Mapping[str, int]) -> tuple[str, ...]:
    """A lookup table: ``table[roll % len(table)]`` picks a value by weight."""
    table = tuple(value for value, weight in options.items() for _ in range(max(0, weight)))
    return table or tuple(options) or ("unknown",)


@dataclass(frozen=True)
class Group:
    prefix: str
    count: int
    type: CollectorType
    versions: Mapping[str, int]
    arch: Mapping[str, int]
    kernel: str
    local: Mapping[str, str]
    remote: Mapping[str, str]


@dataclass(frozen=True)
class DemoOrganisation:
    name: str
    groups: tuple[Group, ...]
    pipelines: tuple[Pipeline, ...]
    revisions: Mapping[str, tuple[Revision, ...]]
    root: Path


def _load_groups(path: Path) -> tuple[str, tuple[Group, ...]]:
    data = load_yaml(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("groups"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'groups' list")
    groups = []
    for raw in data["groups"]:
        origin = where(path, raw)
        try:
            ctype = CollectorType(str(raw.get("type", "alloy")))
        except ValueError:
            raise ConfigError(f"{origin}: type must be alloy or otel") from None
        count = raw.get("count")
        if not isinstance(count, int) or count < 0:
            raise ConfigError(f"{origin}: count must be a whole number")
        groups.append(
            Group(
                prefix=str(raw["prefix"]),
                count=count,
                type=ctype,
                versions={str(k): int(v) for k, v in (raw.get("versions") or {"unknown": 1}).items()},
                arch={str(k): int(v) for k, v in (raw.get("arch") or {"amd64": 1}).items()},
                kernel=str(raw.get("kernel", "")),
                local={str(k): str(v) for k, v in (raw.get("local") or {}).items()},
                remote={str(k): str(v) for k, v in (raw.get("remote") or {}).items()},
            )
        )
    return str(data.get("organisation", "demo")), tuple(groups)


def _load_pipelines(path: Path, epoch: datetime) -> tuple[tuple[Pipeline, ...], dict[str, tuple[Revision, ...]]]:
    data = load_yaml(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("pipelines"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'pipelines' list")
    pipelines: list[Pipeline] = []
    revisions: dict[str, tuple[Revision, ...]] = {}
    rev_counter = 1000
    for index, raw in enumerate(data["pipelines"], start=1):
        origin = where(path, raw)
        name = str(raw.get("name") or "")
        if not name:
            raise ConfigError(f"{origin}: a pipeline needs a name")
        try:
            ctype = CollectorType(str(raw.get("config_type", "alloy")))
        except ValueError:
            raise ConfigError(f"{origin}: config_type must be alloy or otel") from None
        pid = str(40000 + index)
        state: dict[str, Any] = {"matchers": (), "enabled": True, "contents": "", "config_type": ctype}
        created: datetime | None = None
        revs: list[Revision] = []
        current: Pipeline | None = None
        raw_revs = raw.get("revisions") or []
        if not raw_revs:
            raise ConfigError(f"{origin}: pipeline {name!r} has no revisions")
        for rraw in raw_revs:
            rorigin = where(path, rraw)
            at = relative_time(rraw.get("at", "-1d"), epoch, rorigin)
            op = Operation(str(rraw.get("operation", "update")))
            if "matchers" in rraw:
                state["matchers"] = tuple(str(m) for m in rraw["matchers"] or ())
                try:
                    compile_matchers(state["matchers"])
                except MatcherError as exc:
                    raise ConfigError(f"{rorigin}: {exc}") from None
            if "enabled" in rraw:
                state["enabled"] = bool(rraw["enabled"])
            if "contents" in rraw:
                state["contents"] = str(rraw["contents"])
            if created is None:
                created = at
            rev_counter += 1
            snapshot = Pipeline(
                name=name,
                contents=state["contents"],
                matchers=state["matchers"],
                enabled=state["enabled"],
                config_type=ctype,
                id=pid,
                source=str(raw.get("source", "")),
                created_at=created,
                updated_at=at,
            )
            revs.append(
                Revision(
                    id=str(rev_counter),
                    pipeline=name,
                    pipeline_id=pid,
                    snapshot=snapshot,
                    operation=op,
                    created_at=at,
                    author=str(rraw.get("author", "")),
                )
            )
            current = None if op == Operation.DELETE else snapshot
        revisions[name] = tuple(revs)
        if current is not None:
            pipelines.append(current)
    return tuple(pipelines), revisions


def load_organisation(root: Path | None = None, epoch: datetime = DEFAULT_EPOCH) -> DemoOrganisation:
    root = root or demo_dir()
    name, groups = _load_groups(root / "fleet.yaml")
    pipelines, revisions = _load_pipelines(root / "pipelines.yaml", epoch)
    return DemoOrganisation(name=name, groups=groups, pipelines=pipelines, revisions=revisions, root=root)


def scaled_counts(groups: Iterable[Group], total: int | None) -> list[int]:
    """Scale group counts proportionally to ``total`` (largest remainder; deterministic)."""
    base = [g.count for g in groups]
    if total is None:
        return base
    if total < 0:
        raise UsageError("--demo-collectors must be zero or more")
    whole = sum(base)
    if whole == 0:
        return base
    exact = [c * total / whole for c in base]
    counts = [int(x) for x in exact]
    order = sorted(range(len(base)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def assemble_config(pipelines: Iterable[Pipeline], ctype: CollectorType) -> str:
    """What a collector receives for its matched pipelines (Fleet Management's GetConfig shape)."""
    parts = []
    for p in sorted(pipelines, key=lambda p: p.name):
        if ctype == CollectorType.ALLOY:
            body = "\n".join("  " + line if line else "" for line in p.contents.rstrip("\n").split("\n"))
            parts.append(
                f'declare "{p.name}" {{\n'
                '  argument "attributes" { optional = true }\n'
                '  argument "pipeline_exports" { optional = true }\n'
                f"{body}\n}}\n"
                f'{p.name} "default" {{ }}\n'
            )
        else:
            parts.append(f"# pipeline: {p.name}\n{p.contents.rstrip()}\n")
    return "\n".join(parts)


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class DemoSimulator:
    """Holds the live demo fleet and moves it, one tick of TICK_SECONDS clock time at a time."""

    def __init__(
        self,
        org: DemoOrganisation,
        *,
        seed: int = 7,
        collectors: int | None = None,
        epoch: datetime = DEFAULT_EPOCH,
    ) -> None:
        self.org = org
        self.seed = seed
        self.epoch = epoch
        self.now = epoch
        self.tick = 0
        self.rng = random.Random(seed)
        self.pipelines: dict[str, Pipeline] = {p.name: p for p in org.pipelines}
        self.revisions: dict[str, list[Revision]] = {k: list(v) for k, v in org.revisions.items()}
        self._rev_counter = 1000 + sum(len(v) for v in org.revisions.values())
        self._assembled: dict[tuple[CollectorType, tuple[str, ...]], tuple[str, str]] = {}
        self.labels: dict[str, str] = {}  # config hash -> its name ("linux_host_metrics rev 1004 +2")
        self.texts: dict[str, str] = {}  # config hash -> its text (assembled configs, bootstrap configs)
        self.bootstraps: set[str] = {BOOTSTRAP}  # hashes of bootstrap configs (no remote config)
        self.started_on: dict[str, str] = {}  # scaled-out collector id -> "cache" | "bootstrap" | "assigned"
        self._reports: dict[tuple[Any, ...], ConfigReport] = {}  # shared ConfigReport objects
        self._pending: dict[int, tuple[int, bool]] = {}  # index -> (due tick, fails)
        # Collector id -> the config hash it ran (APPLIED) before a change of this session moved it.
        self.applied_before: dict[str, str] = {}
        self._before: dict[tuple[Any, ...], CollectorTarget | None] = {}  # derived from the revisions
        # Knobs for rollout demos and tests: the share of pushed configs that fail to apply, and
        # whether health (and transient config failures) keep changing on their own.
        self.apply_fail_rate = 0.03
        self.health_churn = True
        self._silent: dict[int, int] = {}  # index -> the tick it stopped checking in (offline later)
        self._incident: tuple[int, tuple[int, ...], str] | None = None  # (ends at tick, members, error)
        self.collectors: list[Collector] = []
        self._build(collectors)

    # ---- construction ---------------------------------------------------------------------
    def _build(self, total: int | None) -> None:
        counts = scaled_counts(self.org.groups, total)
        seed = self.seed
        matcher = PipelineMatcher(self.pipelines.values())
        now = self.now
        recent = [now - timedelta(seconds=s) for s in range(POLL_SECONDS)]
        empty_config: Mapping[str, str] = MappingProxyType({})
        # Shared objects: most collectors have equal configs, so they share one RemoteConfig and map.
        configs: dict[tuple[str, ...], tuple[RemoteConfig, Mapping[str, str], str]] = {}
        failed: dict[tuple[str, str], RemoteConfig] = {}
        health_table = [self._initial_health(r) for r in range(200)]
        out: list[Collector] = []
        for group, count in zip(self.org.groups, counts, strict=True):
            remote = MappingProxyType(dict(group.remote))
            # One stream of random draws per group: collector N of a group gets the same draw whatever
            # the scale, so `--demo-collectors` grows the fleet without reshuffling it.
            rng = random.Random(_h(seed, group.prefix))
            base = dict(group.local)
            if group.kernel:
                base["os.kernel"] = group.kernel
            if group.type == CollectorType.ALLOY:
                base["collector.os"] = "linux"
            else:
                base["os.type"] = "linux"
                base["service.name"] = "otelcol-contrib"
            versions, arches = _weights(group.versions), _weights(group.arch)
            uid_tail = _h(group.prefix) & 0xFFFFFFFFFFFF
            # Matched pipelines depend only on the attributes the matchers read; when none of those
            # differ between the collectors of a group, match once for the whole group.
            per_collector = bool(set(matcher.keys) & PER_COLLECTOR_KEYS)
            group_names: tuple[str, ...] | None = None
            for i in range(1, count + 1):
                name = f"{group.prefix}-{i:03d}"
                roll = rng.getrandbits(64)
                version = versions[roll % len(versions)]
                local = base.copy()
                local["host.name"] = name
                local["host.arch"] = arches[(roll >> 8) % len(arches)]
                if group.type == CollectorType.ALLOY:
                    local["collector.version"] = version
                    cid = name
                else:
                    local["service.version"] = version
                    cid = f"{roll & 0xFFFFFFFF:08x}-{(roll >> 32) & 0xFFFF:04x}-7{(roll >> 48) & 0xFFF:03x}-8{i & 0xFFF:03x}-{uid_tail:012x}"
                    local["service.instance.id"] = cid
                health, reason, error = health_table[(roll >> 12) % 200]
                if health is Health.OFFLINE:
                    last_seen = now - timedelta(seconds=3 * POLL_SECONDS + (roll % POLL_SECONDS) * 7)
                else:
                    last_seen = recent[roll % POLL_SECONDS]

                if per_collector or group_names is None:

                    def get(key: str, _local: dict[str, str] = local, _cid: str = cid, _remote: Mapping[str, str] = remote) -> str:
                        if key == "collector.ID":
                            return _cid
                        if not key.startswith("collector."):
                            value = _remote.get(key)
                            if value is not None:
                                return value
                        return _local.get(key, "")

                    names = matcher.names_for_attrs(group.type, get)
                    group_names = names
                else:
                    names = group_names
                assigned = configs.get(names)
                if assigned is None:
                    if names:
                        content, chash = self._assembled_for(group.type, names)
                        assigned = (
                            RemoteConfig(ConfigStatus.APPLIED, chash, "", chash),
                            MappingProxyType({"": content}),
                            chash,
                        )
                    else:
                        assigned = (RemoteConfig(ConfigStatus.UNSET, "", ""), empty_config, "")
                    configs[names] = assigned
                rc, effective, chash = assigned
                report = self.report(chash, chash if names else BOOTSTRAP)
                if names and (roll >> 20) % 97 == 0:
                    cerr = FAILURE_MESSAGES[(roll >> 24) % len(FAILURE_MESSAGES)]
                    rc = failed.get((chash, cerr)) or failed.setdefault(
                        (chash, cerr), RemoteConfig(ConfigStatus.FAILED, chash, cerr, chash)
                    )
                    before = self._derived_before(group.type, names)
                    report = self.report(chash, before.hash if before else BOOTSTRAP)
                elif names and (roll >> 28) % DRIFT_ONE_IN == 0:
                    report = self.drifted(chash, group.type)
                out.append(
                    Collector(
                        id=cid,
                        name=name,
                        type=group.type,
                        version=version,
                        local_attributes=local,
                        remote_attributes=remote,
                        health=health,
                        health_reason=reason,
                        last_error=error,
                        last_seen=last_seen,
                        remote_config=rc,
                        effective_config=effective,
                        pipelines=names,
                        config_report=report,
                        source="demo",
                    )
                )
        self.collectors = out

    @staticmethod
    def _initial_health(r: int) -> tuple[Health, str, str]:
        """The starting health of a collector whose roll lands on ``r`` (0..199)."""
        if r < 3:
            return Health.UNHEALTHY, "", UNHEALTHY_MESSAGES[r % len(UNHEALTHY_MESSAGES)]
        if r < 9:
            return Health.DEGRADED, "", DEGRADED_MESSAGES[r % len(DEGRADED_MESSAGES)]
        if r < 13:
            return Health.OFFLINE, "no check-in for over 3 poll intervals", ""
        if r < 14:
            return Health.UNKNOWN, "has not reported health since it registered", ""
        return Health.HEALTHY, "", ""

    def _assembled_for(self, ctype: CollectorType, names: tuple[str, ...]) -> tuple[str, str]:
        key = (ctype, names)
        hit = self._assembled.get(key)
        if hit is None:
            content = assemble_config([self.pipelines[n] for n in names], ctype)
            hit = self._assembled[key] = (content, config_hash(content) if names else "")
            if names:
                self.labels.setdefault(hit[1], self._label([self.pipelines[n] for n in names]))
                self.texts.setdefault(hit[1], content)
        return hit

    def _label(self, parts: list[Pipeline]) -> str:
        """A config's name: its newest pipeline revision, and how many other pipelines it holds."""
        newest = max(parts, key=lambda p: (p.updated_at or self.epoch, p.name))
        revs = [r for r in self.revisions.get(newest.name, ()) if r.snapshot == newest]
        rev = f" rev {revs[-1].id}" if revs else ""
        return f"{newest.name}{rev}" + (f" +{len(parts) - 1}" if len(parts) > 1 else "")

    def report(self, assigned: str, runs: str) -> ConfigReport:
        """The (shared) report of a collector assigned ``assigned`` that runs ``runs`` (a config hash,
        or BOOTSTRAP for its local config)."""
        key = (assigned, runs)
        hit = self._reports.get(key)
        if hit is None:
            local = runs in self.bootstraps or runs in ("", assigned)
            runs_label = "" if local else self.labels.get(runs, "") or "an earlier config"
            hit = self._reports[key] = ConfigReport(
                assigned_label=self.labels.get(assigned, ""),
                reported_label=self.labels.get(assigned, ""),
                effective_hash=runs,
                effective_label=runs_label,
            )
        return hit

    def drifted(self, assigned: str, ctype: CollectorType) -> ConfigReport:
        """A collector that says it applied its config but runs a locally edited one."""
        key = (assigned, "drift", ctype)
        hit = self._reports.get(key)
        if hit is None:
            differs = (
                ('line \'scrape_interval = "10s"\' is added', 'line \'scrape_interval = "60s"\' is missing')
                if ctype == CollectorType.ALLOY
                else ("processors.batch.timeout: assigned 5s, runs 1s", "exporters.debug is added")
            )
            hit = self._reports[key] = ConfigReport(
                assigned_label=self.labels.get(assigned, ""),
                reported_label=self.labels.get(assigned, ""),
                effective_hash=config_hash(f"{assigned}:local-edit"),
                differs=differs,
            )
        return hit

    def collector_targets(self, collectors: Iterable[Collector]) -> dict[str, CollectorTarget]:
        """Each collector's own rollback target: the config it ran before a change of this session
        moved it; for the others, the config their pipelines assembled before the newest revision
        among them (the simulated fleet applied every revision of its history)."""
        out: dict[str, CollectorTarget] = {}
        derived: dict[tuple[Any, ...], CollectorTarget | None] = {}  # per (type, pipelines), this call
        for c in collectors:
            moved = self.applied_before.get(c.id)
            if moved:
                out[c.id] = CollectorTarget(moved, "before the last push")
                continue
            if not c.pipelines:
                continue
            local = (c.type, c.pipelines)
            if local not in derived:
                key = (*local, tuple(len(self.revisions.get(n, ())) for n in c.pipelines))
                if key not in self._before:
                    self._before[key] = self._derived_before(c.type, c.pipelines)
                derived[local] = self._before[key]
            target = derived[local]
            if target is None:
                continue
            if c.remote_config.status == ConfigStatus.APPLIED and c.remote_config.hash == target.hash:
                continue  # it runs that config now: nothing to go back to
            out[c.id] = target
        return out

    def _derived_before(self, ctype: CollectorType, names: tuple[str, ...]) -> CollectorTarget | None:
        newest: tuple[datetime, str, Revision] | None = None
        for n in names:
            revs = self.revisions.get(n) or []
            if len(revs) < 2 or revs[-2].snapshot is None or revs[-2].operation == Operation.DELETE:
                continue
            if newest is None or revs[-1].created_at > newest[0]:
                newest = (revs[-1].created_at, n, revs[-2])
        if newest is None:
            return None
        _at, name, prev = newest
        assert prev.snapshot is not None
        parts = [prev.snapshot if n == name else self.pipelines[n] for n in names]
        content = assemble_config(parts, ctype)
        label = f"{name} rev {prev.id}"
        self.labels.setdefault(config_hash(content), label + (f" +{len(names) - 1}" if len(names) > 1 else ""))
        self.texts.setdefault(config_hash(content), content)
        return CollectorTarget(config_hash(content), label, "")  # its config back then

    # ---- a fleet-API outage during a scale-out (the outage drill) ---------------------------
    def bootstrap(self, ctype: CollectorType) -> tuple[str, str]:
        """(text, hash) of the organisation's bootstrap config for this collector type (the fixture
        ``bootstrap.alloy`` / ``bootstrap.yaml``): what a collector without a cache starts on."""
        name = "bootstrap.alloy" if ctype == CollectorType.ALLOY else "bootstrap.yaml"
        try:
            text = (self.org.root / name).read_text(encoding="utf-8")
        except OSError:
            text = ""
        digest = config_hash(f"{BOOTSTRAP}:{text}")
        self.texts.setdefault(digest, text)
        self.bootstraps.add(digest)
        return text, digest

    def scale_out(self, count: int, *, prefix: str, without_cache: float, at: datetime) -> list[int]:
        """``count`` new collectors like group ``prefix``'s start now (while the fleet API is away): the
        ones with a cache (a warm-pool node whose volume kept it) run the config their pipelines
        assembled before the newest revision, the others (``without_cache``, new nodes) their
        bootstrap config. Deterministic from the seed. Returns their indices."""
        group = next((g for g in self.org.groups if g.prefix == prefix), None)
        if group is None:
            known = ", ".join(g.prefix for g in self.org.groups[:6])
            raise UsageError(f"no demo collector group {prefix!r} (known: {known}, ...)")
        matcher = PipelineMatcher(self.pipelines.values())
        versions, arches = _weights(group.versions), _weights(group.arch)
        start = sum(1 for c in self.collectors if c.name.startswith(f"{prefix}-so"))
        out = []
        for n in range(start + 1, start + count + 1):
            roll = _h(self.seed, prefix, "scale-out", n)
            name = f"{prefix}-so{n:03d}"
            local = dict(group.local)
            if group.kernel:
                local["os.kernel"] = group.kernel
            version = versions[roll % len(versions)]
            local["host.name"] = name
            local["host.arch"] = arches[(roll >> 8) % len(arches)]
            if group.type == CollectorType.ALLOY:
                local["collector.os"] = "linux"
                local["collector.version"] = version
                cid = name
            else:
                local["os.type"] = "linux"
                local["service.name"] = "otelcol-contrib"
                local["service.version"] = version
                cid = f"{roll & 0xFFFFFFFF:08x}-{(roll >> 32) & 0xFFFF:04x}-7{(roll >> 48) & 0xFFF:03x}-8{n & 0xFFF:03x}-{0x5CA1E0:012x}"
                local["service.instance.id"] = cid
            probe = Collector(id=cid, name=name, type=group.type, local_attributes=local, remote_attributes=group.remote)
            names = matcher.names_for(probe)
            content, chash = self._assembled_for(group.type, names)
            cached = (_h(self.seed, cid, "cache") % 10_000) / 10_000 >= without_cache
            before = self._derived_before(group.type, names) if names else None
            self.started_on[cid] = "cache" if cached and before is not None else "assigned" if cached and names else "bootstrap"
            if cached and before is not None:
                rc = RemoteConfig(ConfigStatus.APPLIED, before.hash, "", chash)
                report = self.report(chash, before.hash)
                effective = MappingProxyType({"": self.texts.get(before.hash, "")})
            elif cached and names:  # nothing older to have cached: it cached what is assigned now
                rc = RemoteConfig(ConfigStatus.APPLIED, chash, "", chash)
                report = self.report(chash, chash)
                effective = MappingProxyType({"": content})
            else:
                text, boot = self.bootstrap(group.type)
                rc = RemoteConfig(ConfigStatus.UNSET, "", "", chash)
                report = self.report(chash, boot)
                effective = MappingProxyType({"": text})
            self.collectors.append(
                Collector(
                    id=cid,
                    name=name,
                    type=group.type,
                    version=version,
                    local_attributes=MappingProxyType(local),
                    remote_attributes=MappingProxyType(dict(group.remote)),
                    health=Health.HEALTHY,
                    last_seen=at,
                    remote_config=rc,
                    effective_config=effective,
                    pipelines=names,
                    config_report=report,
                    came_up=CameUp(at, rc, report),
                    source="demo",
                )
            )
            out.append(len(self.collectors) - 1)
        return out

    def reconnect(self, indices: Iterable[int]) -> int:
        """The fleet API is back: collectors off their assignment fetch it and apply it (after the
        usual delay). Returns how many start applying."""
        started = 0
        for i in indices:
            c = self.collectors[i]
            assigned = c.remote_config.assigned
            if not assigned or c.config_report.effective_hash == assigned:
                continue
            roll = _h(self.seed, c.id, assigned, "reconnect")
            if c.remote_config.status == ConfigStatus.APPLIED and c.remote_config.hash:
                self.applied_before[c.id] = c.remote_config.hash
            self.collectors[i] = replace(c, remote_config=RemoteConfig(ConfigStatus.APPLYING, assigned, "", assigned))
            self._pending[i] = (self.tick + 1 + roll % 8, False)
            started += 1
        return started

    # ---- the simulation -----------------------------------------------------------------
    def advance(self, now: datetime) -> None:
        """Move the fleet to clock time ``now`` (ticks are replayed; time never goes back)."""
        target = int((now - self.epoch).total_seconds() // TICK_SECONDS)
        # A long gap (laptop asleep) replays at most 300 ticks: the fleet is simulated, not history.
        if target - self.tick > 300:
            self.tick = target - 300
        while self.tick < target:
            self.tick += 1
            self._step()
        if now > self.now:
            self.now = now

    def _tick_time(self) -> datetime:
        return self.epoch + timedelta(seconds=self.tick * TICK_SECONDS)

    def _step(self) -> None:
        n = len(self.collectors)
        if n == 0:
            return
        at = self._tick_time()
        rng = self.rng
        if self.health_churn:
            self._churn(at)
        # Collectors that check in this tick (those whose poll phase falls in it); a transient config
        # failure may clear at a check-in (the collector applies the same config again).
        step = max(1, int(POLL_SECONDS / TICK_SECONDS))
        for i in range(self.tick % step, n, step):
            c = self.collectors[i]
            if c.health == Health.OFFLINE or i in self._silent:
                continue
            rc = c.remote_config
            if (
                self.health_churn
                and rc.status == ConfigStatus.FAILED
                and rc.error in {FAILURE_MESSAGES[k] for k in TRANSIENT_FAILURES}
                and i not in self._pending
                and rng.random() < 0.5
            ):
                self.collectors[i] = replace(c, last_seen=at, remote_config=RemoteConfig(ConfigStatus.APPLIED, rc.hash, ""))
            else:
                self.collectors[i] = replace(c, last_seen=at)
        # Silent for 3 poll intervals: offline. Its last check-in stays what it was, so "offline" and
        # "last seen" agree.
        for i in list(self._silent):
            c = self.collectors[i]
            if c.last_seen is None or (at - c.last_seen).total_seconds() >= OFFLINE_AFTER:
                del self._silent[i]
                if c.health != Health.OFFLINE:
                    self.collectors[i] = replace(c, health=Health.OFFLINE, health_reason="no check-in for over 3 poll intervals")
        # Pending applies come due.
        for i, (due, fails) in list(self._pending.items()):
            if due <= self.tick:
                del self._pending[i]
                c = self.collectors[i]
                h = c.remote_config.hash
                if fails:
                    rc = RemoteConfig(ConfigStatus.FAILED, h, FAILURE_MESSAGES[i % len(FAILURE_MESSAGES)], h)
                    report = c.config_report  # it keeps running what it ran
                else:
                    rc = RemoteConfig(ConfigStatus.APPLIED, h, "", h)
                    report = self.report(h, h)
                    if c.came_up is not None and h in self.texts:  # it came up on another config
                        c = replace(c, effective_config=MappingProxyType({"": self.texts[h]}))
                self.collectors[i] = replace(c, remote_config=rc, config_report=report, last_seen=at)

    def _churn(self, at: datetime) -> None:
        """Health reverts toward a steady state: about BAD_SHARE of the fleet is not healthy at any
        time. A few collectors are drawn per tick: a healthy one breaks with probability BAD_SHARE
        (goes silent, degrades or turns unhealthy), one that is not healthy recovers with the
        complementary probability. Now and then a few collectors of one place break together with
        the same error and recover together minutes later: incidents that start and resolve."""
        rng = self.rng
        n = len(self.collectors)
        for _ in range(max(1, n // 400)):
            i = rng.randrange(n)
            c = self.collectors[i]
            r = rng.random()
            if c.health == Health.HEALTHY:
                if i in self._silent or r >= BAD_SHARE:
                    continue
                kind = rng.random()
                if kind < 0.35:
                    self._silent[i] = self.tick  # stops checking in; offline after OFFLINE_AFTER
                elif kind < 0.8:
                    self.collectors[i] = replace(c, health=Health.DEGRADED, last_error=DEGRADED_MESSAGES[rng.randrange(3)])
                else:
                    self.collectors[i] = replace(c, health=Health.UNHEALTHY, last_error=UNHEALTHY_MESSAGES[rng.randrange(3)])
            elif r < 1 - BAD_SHARE:
                self._recover(i, at)
        incident = self._incident
        if incident is not None and self.tick >= incident[0]:
            self._incident = None
            for i in incident[1]:
                if self.collectors[i].last_error == incident[2]:
                    self._recover(i, at)
        elif incident is None and rng.random() < INCIDENT_CHANCE:
            j = rng.randrange(n)
            place = (self.collectors[j].attr("env"), self.collectors[j].attr("region"))
            near = [k for k in range(max(0, j - 30), min(n, j + 30))
                    if (self.collectors[k].attr("env"), self.collectors[k].attr("region")) == place
                    and self.collectors[k].health == Health.HEALTHY and k not in self._silent]
            members = tuple(sorted(rng.sample(near, min(len(near), 2 + rng.randrange(4)))))
            error = UNHEALTHY_MESSAGES[rng.randrange(len(UNHEALTHY_MESSAGES))]
            for k in members:
                self.collectors[k] = replace(self.collectors[k], health=Health.UNHEALTHY, last_error=error)
            self._incident = (self.tick + 60 + rng.randrange(120), members, error)  # 2 to 6 minutes

    def _recover(self, i: int, at: datetime) -> None:
        c = self.collectors[i]
        self._silent.pop(i, None)
        self.collectors[i] = replace(c, health=Health.HEALTHY, health_reason="", last_error="", last_seen=at)

    def _reassign(self, indices: Iterable[int] | None = None, *, fail_rate: float | None = None) -> int:
        """Recompute matched pipelines; collectors whose config changed start applying it."""
        if fail_rate is None:
            fail_rate = self.apply_fail_rate
        matcher = PipelineMatcher(self.pipelines.values())
        # The assembled configs are cached by pipeline names; a push may have changed their contents.
        self._assembled.clear()
        changed = 0
        for i in indices if indices is not None else range(len(self.collectors)):
            c = self.collectors[i]
            names = matcher.names_for(c)
            content, chash = self._assembled_for(c.type, names)
            if chash == c.remote_config.hash and names == c.pipelines:
                continue
            changed += 1
            roll = _h(self.seed, c.id, chash)
            delay = 1 + roll % 8  # 2 to 16 seconds of clock time
            fails = (roll >> 16) % 1000 < int(fail_rate * 1000) or c.health == Health.OFFLINE
            status = ConfigStatus.APPLYING if names else ConfigStatus.UNSET
            if c.remote_config.status == ConfigStatus.APPLIED and c.remote_config.hash:
                self.applied_before[c.id] = c.remote_config.hash
            runs = c.config_report.effective_hash or BOOTSTRAP
            self.collectors[i] = replace(
                c,
                pipelines=names,
                remote_config=RemoteConfig(status, chash, "", chash),
                config_report=self.report(chash, runs) if names else self.report("", BOOTSTRAP),
                effective_config=MappingProxyType({"": content}) if names else MappingProxyType({}),
            )
            if names:
                self._pending[i] = (self.tick + delay, fails)
        return changed

    def _record(self, pipeline: Pipeline, op: Operation, author: str) -> Revision:
        self._rev_counter += 1
        rev = Revision(
            id=str(self._rev_counter),
            pipeline=pipeline.name,
            pipeline_id=pipeline.id,
            snapshot=pipeline,
            operation=op,
            created_at=self.now,
            author=author,
        )
        self.revisions.setdefault(pipeline.name, []).append(rev)
        return rev

    def apply(self, change: Change) -> PushResult:
        p = change.payload
        author = change.author or "demo-user"
        if change.kind == PIPELINE_UPSERT:
            new: Pipeline = p["pipeline"]
            try:
                compile_matchers(tuple(new.matchers))
            except MatcherError as exc:  # refused like the real API would, not a crash
                return PushResult(False, f"pipeline {new.name!r}: {exc}")
            old = self.pipelines.get(new.name)
            op = Operation.UPDATE if old else Operation.INSERT
            pid = old.id if old else str(40000 + len(self.revisions) + 1)
            new = replace(
                new,
                id=pid,
                created_at=old.created_at if old else self.now,
                updated_at=self.now,
                source=new.source or (old.source if old else ""),
            )
            self.pipelines[new.name] = new
            rev = self._record(new, op, author)
            n = self._reassign()
            return PushResult(True, f"{op.value} {new.name}: revision {rev.id}, {n} collector(s) applying", rev.id)
        if change.kind == PIPELINE_DELETE:
            old = self.pipelines.pop(p["name"], None)
            if old is None:
                return PushResult(False, f"pipeline {p['name']!r} not found")
            rev = self._record(old, Operation.DELETE, author)
            n = self._reassign()
            return PushResult(True, f"deleted {old.name}: revision {rev.id}, {n} collector(s) applying", rev.id)
        if change.kind == PIPELINE_SET_ENABLED:
            old = self.pipelines.get(p["name"])
            if old is None:
                return PushResult(False, f"pipeline {p['name']!r} not found")
            new = replace(old, enabled=bool(p["enabled"]), updated_at=self.now)
            self.pipelines[new.name] = new
            rev = self._record(new, Operation.UPDATE, author)
            n = self._reassign()
            state = "enabled" if new.enabled else "disabled"
            return PushResult(True, f"{state} {new.name}: revision {rev.id}, {n} collector(s) applying", rev.id)
        if change.kind in (COLLECTOR_SET_ENABLED, COLLECTOR_SET_REMOTE_ATTRIBUTES):
            ids = set(p["ids"])
            index = [i for i, c in enumerate(self.collectors) if c.id in ids]
            missing = ids - {self.collectors[i].id for i in index}
            if missing:
                return PushResult(False, f"collector(s) not found: {', '.join(sorted(missing)[:5])}")
            for i in index:
                c = self.collectors[i]
                if change.kind == COLLECTOR_SET_ENABLED:
                    c = replace(c, enabled=bool(p["enabled"]))
                else:
                    remote = dict(c.remote_attributes)
                    for key in p.get("remove", ()):
                        remote.pop(key, None)
                    for key, value in (p.get("set") or {}).items():
                        if key.startswith("collector."):
                            return PushResult(False, f"remote attribute {key!r}: the collector. prefix is reserved")
                        remote[str(key)] = str(value)
                    c = replace(c, remote_attributes=MappingProxyType(remote))
                self.collectors[i] = c
            n = self._reassign(index)
            return PushResult(True, f"{change.describe()}: {n} collector(s) applying a new config")
        return PushResult(False, f"the demo backend cannot {change.kind}")

    def snapshot(self) -> FleetSnapshot:
        return FleetSnapshot(
            backend="demo",
            collectors=tuple(self.collectors),
            pipelines=tuple(sorted(self.pipelines.values(), key=lambda p: p.name)),
            fetched_at=self.now,
            health=BackendHealth(True, "ok", f"simulated fleet, seed {self.seed}", 0.0),
            revisions={k: tuple(v) for k, v in self.revisions.items()},
        )


class DemoBackend:
    name = "demo"
    # "ephemeral": the fleet lives in this process; a rollout cannot outlive it.
    capabilities = frozenset({"read", "push", "health", "effective_config", "revisions", "config_status", "ephemeral"})

    def __init__(
        self,
        *,
        seed: int = 7,
        collectors: int | None = None,
        clock: Callable[[], datetime] = utcnow,
        root: Path | None = None,
    ) -> None:
        self.clock = clock
        epoch = clock()
        self.sim = DemoSimulator(load_organisation(root, epoch), seed=seed, collectors=collectors, epoch=epoch)
        self._last: FleetSnapshot | None = None
        self._born = time.time()  # rollouts journaled before this ran on another demo fleet
        # A simulated fleet-API outage (the outage drill): since when, the last good data, and the
        # collectors that started meanwhile (they report, and fetch their config, when it returns).
        self.outage: datetime | None = None
        self._good: FleetSnapshot | None = None
        self._unseen: list[int] = []

    def snapshot_now(self) -> FleetSnapshot:
        now = self.clock()
        self.sim.advance(now)
        if self.outage is not None and self._good is not None:
            age = age_text(self._good.fetched_at, now)
            reason = f"unreachable: the fleet API has not answered since {rfc3339(self.outage)} (data {age} old)"
            self._last = self._good.as_stale(reason, BackendHealth(False, "down", "simulated fleet-API outage"))
            return self._last
        self._last = self.sim.snapshot()
        return self._last

    def fleet_api_down(self) -> None:
        """The demo's fleet API goes away: snapshots keep the last data, stale, and pushes are refused."""
        if self.outage is None:
            self._good = self.snapshot_now()
            self.outage = self.clock()

    def scale_out(self, count: int, *, prefix: str = "alloy-prod-euw1-node", without_cache: float = 0.4) -> list[str]:
        """``count`` collectors start (during an outage the cockpit sees them only when it returns)."""
        now = self.clock()
        self.sim.advance(now)
        added = self.sim.scale_out(count, prefix=prefix, without_cache=without_cache, at=now)
        if self.outage is not None:
            self._unseen.extend(added)
        else:
            self.sim.reconnect(added)
        return [self.sim.collectors[i].id for i in added]

    def fleet_api_up(self) -> None:
        """The fleet API is back: the collectors that started meanwhile report and fetch their config."""
        if self.outage is None:
            return
        self.sim.advance(self.clock())
        self.outage, self._good = None, None
        self.sim.reconnect(self._unseen)
        self._unseen = []

    async def config_texts(self, wanted: Mapping[str, str]) -> dict[str, str]:
        return {h: self.sim.texts[h] for h in wanted if h in self.sim.texts}

    async def snapshot(self) -> FleetSnapshot:
        return self.snapshot_now()

    async def push(self, change: Change) -> PushResult:
        refuse_if_stale(self._last or self.snapshot_now())
        self.sim.advance(self.clock())
        return self.sim.apply(change)

    async def revisions(self, pipeline: str) -> tuple[Revision, ...]:
        return tuple(self.sim.revisions.get(pipeline, ()))

    def collector_targets(self, collectors: Iterable[Collector]) -> dict[str, CollectorTarget]:
        """Every collector's own rollback target, as the simulation knows it (see the simulator)."""
        return self.sim.collector_targets(collectors)

    def rollout_adapter(self, read_only: bool) -> Any:
        from otelcockpit.backends.demo_rollouts import DemoAdapter

        return DemoAdapter(self, read_only=read_only)

    def rollouts(self, settings: RolloutSettings) -> Any:
        """Local rollouts: the engine runs in this process (the demo fleet lives here), staging
        through remote attributes and a temporary pipeline, exactly as on Fleet Management."""
        service = local_rollouts(self, settings, "demo")
        # Demo rollouts left active by earlier processes can never resume: their fleet is gone.
        from otelcockpit.rollout.model import ACTIVE_STATES, RolloutState

        journal = service.journal
        for rec in journal.list(limit=1000):
            gone = rec.created_at < self._born  # it ran on another instance's fleet
            if rec.backend == "demo" and rec.state in ACTIVE_STATES and gone and not journal.runner_alive(rec):
                journal.set_state(rec.id, RolloutState.ABORTED, "aborted: the demo fleet it ran on is gone")
        return service

    async def close(self) -> None:
        return None


def from_settings(settings: Any, clock: Callable[[], datetime] = utcnow, **_: Any) -> DemoBackend:
    return DemoBackend(seed=settings.demo_seed, collectors=settings.demo_collectors, clock=clock)
