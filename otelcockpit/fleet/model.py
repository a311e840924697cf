"""The fleet as data: collectors, pipelines, revisions and immutable snapshots.

Nothing here imports a backend, a server, an HTTP library or textual. Objects are frozen so a
snapshot can be shared between the poll worker and the UI thread, and so that an unchanged
collector is the very same object in two consecutive snapshots (the TUI diffs by identity).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

EMPTY: Mapping[str, str] = MappingProxyType({})


class CollectorType(StrEnum):
    ALLOY = "alloy"
    OTEL = "otel"
    SDK = "sdk"  # an OpAMP client inside an application, not a collector (OpAMP agents only)


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


class ConfigStatus(StrEnum):
    UNSET = "unset"
    APPLYING = "applying"
    APPLIED = "applied"
    FAILED = "failed"


class Operation(StrEnum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


HEALTH_ORDER = (Health.UNHEALTHY, Health.DEGRADED, Health.OFFLINE, Health.UNKNOWN, Health.HEALTHY)
RESERVED_PREFIX = "collector."


def merge_attributes(
    collector_id: str, local: Mapping[str, str], remote: Mapping[str, str]
) -> dict[str, str]:
    """Fleet Management's rule: remote wins, except keys starting with ``collector.``.

    The virtual attribute ``collector.ID`` always equals the collector's id.
    """
    merged = dict(local)
    for key, value in remote.items():
        if not key.startswith(RESERVED_PREFIX):
            merged[key] = value
    merged["collector.ID"] = collector_id
    return merged


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    status: ConfigStatus = ConfigStatus.UNSET
    hash: str = ""  # the hash the collector reports (what it applied, is applying, or failed)
    error: str = ""
    assigned: str = ""  # the hash of the config assigned to it, where the backend knows it (OpAMP)


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """A node of an agent's component health tree (OpAMP ComponentHealth)."""

    name: str
    healthy: bool
    status: str = ""
    last_error: str = ""
    children: tuple[ComponentHealth, ...] = ()


@dataclass(slots=True, eq=True)
class Collector:
    """One collector. Treat it as immutable (use ``with_changes``): snapshots share these objects.

    It is not a frozen dataclass only because a frozen ``__init__`` costs 4x more, and the demo
    builds 100,000 of them before the first paint.
    """

    id: str
    name: str
    type: CollectorType
    version: str = ""
    local_attributes: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    remote_attributes: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    health: Health = Health.UNKNOWN
    health_reason: str = ""
    last_error: str = ""
    last_seen: datetime | None = None
    remote_config: RemoteConfig = RemoteConfig()
    effective_config: Mapping[str, str] = field(default_factory=lambda: EMPTY)  # file name -> body
    pipelines: tuple[str, ...] = ()
    enabled: bool = True
    component_health: ComponentHealth | None = None
    # Where it came from (transport for OpAMP, "remotecfg" for Alloy ...): informational only.
    source: str = ""

    @property
    def attributes(self) -> dict[str, str]:
        """Merged attributes (computed on demand to keep 100,000 collectors small)."""
        return merge_attributes(self.id, self.local_attributes, self.remote_attributes)

    def attr(self, key: str) -> str:
        """One merged attribute without building the whole dict; missing is ``""``."""
        if key == "collector.ID":
            return self.id
        if not key.startswith(RESERVED_PREFIX):
            value = self.remote_attributes.get(key)
            if value is not None:
                return value
        return self.local_attributes.get(key, "")

    def with_changes(self, **changes: object) -> Collector:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    contents: str
    matchers: tuple[str, ...] = ()
    enabled: bool = True
    config_type: CollectorType = CollectorType.ALLOY
    id: str = ""
    source: str = ""  # e.g. "git:platform/pipelines", "terraform:default"
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Revision:
    id: str
    pipeline: str  # pipeline name at the time of the revision
    pipeline_id: str
    snapshot: Pipeline | None
    operation: Operation
    created_at: datetime
    author: str = ""


@dataclass(frozen=True, slots=True)
class BackendHealth:
    ok: bool = True
    status: str = "ok"  # ok | degraded | down
    message: str = ""
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    backend: str
    collectors: tuple[Collector, ...]
    pipelines: tuple[Pipeline, ...]
    fetched_at: datetime
    stale: bool = False
    stale_reason: str = ""
    health: BackendHealth = BackendHealth()
    revisions: Mapping[str, tuple[Revision, ...]] = field(default_factory=dict)  # by pipeline name

    def __repr__(self) -> str:
        # Short on purpose: Textual describes every worker by the repr of its arguments, and the
        # generated one of 10,000 collectors costs half a second on the UI thread.
        stale = f", stale={self.stale_reason!r}" if self.stale else ""
        return (
            f"FleetSnapshot(backend={self.backend!r}, collectors={len(self.collectors)}, "
            f"pipelines={len(self.pipelines)}, fetched_at={self.fetched_at.isoformat()}{stale})"
        )

    def collector(self, collector_id: str) -> Collector | None:
        for c in self.collectors:
            if c.id == collector_id:
                return c
        return None

    def pipeline(self, name: str) -> Pipeline | None:
        for p in self.pipelines:
            if p.name == name:
                return p
        return None

    def as_stale(self, reason: str, health: BackendHealth) -> FleetSnapshot:
        """The same data, marked stale: a backend that fails keeps what it had."""
        return replace(self, stale=True, stale_reason=reason, health=health)


@dataclass(frozen=True)
class CollectorTarget:
    """A collector's own rollback target: the config it last reported APPLIED before what it runs
    now, with what that config is when known."""

    hash: str
    label: str = ""  # e.g. the OpAMP config version "gateway@v1", or the demo's "linux_host_metrics rev 1002"
    at: str = ""  # RFC 3339: when the collector last reported it APPLIED, when known

    def as_json(self) -> dict[str, Any]:
        return {"hash": self.hash, "label": self.label, "at": self.at}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CollectorTarget:
        return cls(str(d.get("hash") or ""), str(d.get("label") or ""), str(d.get("at") or ""))


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    if ts.tzinfo is None:  # naive means UTC here, never the machine's local zone
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    ts = datetime.fromisoformat(text)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def age_text(then: datetime | None, now: datetime) -> str:
    """Compact age: ``4s``, ``12m``, ``3h``, ``2d``; ``-`` when never."""
    if then is None:
        return "-"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def stabilise(old: FleetSnapshot | None, new: FleetSnapshot) -> FleetSnapshot:
    """Reuse the previous snapshot's objects for collectors and pipelines that did not change.

    Backends that decode a fresh API answer build new objects every time; after this, an unchanged
    collector is the very same object as before, so views can diff by identity and repaint only what
    changed (a poll of an unchanged fleet then writes almost nothing to the terminal).
    """
    if old is None or (not old.collectors and not old.pipelines):
        return new
    olds, news = old.collectors, new.collectors
    out: list[Collector] = list(news)
    if len(olds) == len(news):
        for i, c in enumerate(news):
            o = olds[i]
            if o is not c and o.id == c.id and o == c:
                out[i] = o
    else:
        by_id = {c.id: c for c in olds}
        for i, c in enumerate(news):
            o = by_id.get(c.id)
            if o is not None and o is not c and o == c:
                out[i] = o
    old_pipes = {p.name: p for p in old.pipelines}
    pipes = tuple(old_pipes[p.name] if old_pipes.get(p.name) == p else p for p in new.pipelines)
    return replace(new, collectors=tuple(out), pipelines=pipes)
