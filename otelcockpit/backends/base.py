"""The backend contract: where a fleet lives.

A backend produces immutable :class:`FleetSnapshot` objects and, where it has the ``push``
capability, applies :class:`Change` objects. A backend never fakes success: when its source
is down it returns its last snapshot marked stale, and refuses pushes until data is fresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from otelcockpit.errors import PushRefused, ReadOnlyError
from otelcockpit.fleet.model import FleetSnapshot, Revision

# Change kinds every pushing backend understands.
PIPELINE_UPSERT = "pipeline.upsert"  # payload: {"pipeline": Pipeline}
PIPELINE_DELETE = "pipeline.delete"  # payload: {"name": str}
PIPELINE_SET_ENABLED = "pipeline.set_enabled"  # payload: {"name": str, "enabled": bool}
COLLECTOR_SET_ENABLED = "collector.set_enabled"  # payload: {"ids": [str], "enabled": bool}
COLLECTOR_SET_REMOTE_ATTRIBUTES = "collector.set_remote_attributes"  # {"ids": [...], "set": {k: v}, "remove": [k]}

CHANGE_KINDS = (
    PIPELINE_UPSERT,
    PIPELINE_DELETE,
    PIPELINE_SET_ENABLED,
    COLLECTOR_SET_ENABLED,
    COLLECTOR_SET_REMOTE_ATTRIBUTES,
)


@dataclass(frozen=True)
class Change:
    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    author: str = ""
    note: str = ""

    def describe(self) -> str:
        p = self.payload
        if self.kind == PIPELINE_UPSERT:
            return f"upsert pipeline {p['pipeline'].name}"
        if self.kind == PIPELINE_DELETE:
            return f"delete pipeline {p['name']}"
        if self.kind == PIPELINE_SET_ENABLED:
            return f"{'enable' if p['enabled'] else 'disable'} pipeline {p['name']}"
        if self.kind == COLLECTOR_SET_ENABLED:
            return f"{'enable' if p['enabled'] else 'disable'} {len(p['ids'])} collector(s)"
        if self.kind == COLLECTOR_SET_REMOTE_ATTRIBUTES:
            return f"set remote attributes on {len(p['ids'])} collector(s)"
        return self.kind

    def explain(self, snapshot: FleetSnapshot | None) -> str:
        """What the change will do, in words (every face's confirmation says this)."""
        p = self.payload
        snap_collectors = {c.id: c for c in snapshot.collectors} if snapshot is not None else {}
        if self.kind in (COLLECTOR_SET_ENABLED, COLLECTOR_SET_REMOTE_ATTRIBUTES):
            names = [snap_collectors[i].name if i in snap_collectors else i for i in p["ids"]]
            who = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            if self.kind == COLLECTOR_SET_ENABLED:
                verb = "Enable" if p["enabled"] else "Disable"
                tail = (
                    "" if p["enabled"] else "\nA disabled collector receives an empty configuration from the fleet."
                )
                return f"{verb} remote configuration for {who}?{tail}"
            parts = [f"set {k}={v}" for k, v in dict(p.get("set") or {}).items()]
            parts += [f"remove {k}" for k in p.get("remove") or ()]
            return f"{'; '.join(parts).capitalize()} on {who}?\nPipelines matched by these collectors may change."
        if self.kind == PIPELINE_SET_ENABLED:
            verb = "Enable" if p["enabled"] else "Disable"
            n = sum(1 for c in snap_collectors.values() if p["name"] in c.pipelines)
            tail = f"\n{n} collector(s) stop receiving it." if not p["enabled"] else ""
            return f"{verb} pipeline {p['name']}?{tail}"
        return f"{self.describe()}?"


@dataclass(frozen=True)
class PushResult:
    ok: bool
    message: str
    revision_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutSettings:
    """What a backend needs to give its rollout service (see ``FleetBackend.rollouts``)."""

    journal_path: Path  # the local engine's journal
    context: str
    defaults: Any  # the context's PlanOptions
    read_only: bool = False
    poll_interval: float = 1.0
    spawn: Any = None  # runs a rollout in the background (a TUI worker); None: the caller follows it


@runtime_checkable
class FleetBackend(Protocol):
    name: str
    # "read", "push", "health", "effective_config", "revisions", "events", "config_status" (each
    # collector's remote config status, so its own rollback target: not Fleet Management's v1 API)
    capabilities: frozenset[str]

    async def snapshot(self) -> FleetSnapshot: ...

    async def push(self, change: Change) -> PushResult: ...

    async def revisions(self, pipeline: str) -> tuple[Revision, ...]: ...

    def rollouts(self, settings: RolloutSettings) -> Any: ...  # its otelcockpit.rollout.service.Rollouts

    async def close(self) -> None: ...


class ReadOnlyBackend:
    """Wraps a backend and refuses every write: the second guard behind the TUI's gating."""

    def __init__(self, inner: FleetBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = frozenset(c for c in inner.capabilities if c != "push") | {"read-only"}

    async def snapshot(self) -> FleetSnapshot:
        return await self.inner.snapshot()

    async def push(self, change: Change) -> PushResult:
        raise ReadOnlyError(f"read-only: refused to {change.describe()}")

    async def revisions(self, pipeline: str) -> tuple[Revision, ...]:
        return await self.inner.revisions(pipeline)

    def rollouts(self, settings: RolloutSettings) -> Any:
        from dataclasses import replace

        return self.inner.rollouts(replace(settings, read_only=True))  # reads work, every write is refused

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, item: str) -> Any:
        # Read helpers of the inner backend stay reachable (attributes(), pipeline detail ...);
        # anything that writes goes through push() and is refused above.
        return getattr(self.inner, item)


def refuse_if_stale(snapshot: FleetSnapshot | None) -> None:
    """Pushes are refused until fresh data arrives (never act on stale data)."""
    if snapshot is None:
        raise PushRefused("refused: no data from the backend yet")
    if snapshot.stale:
        raise PushRefused(f"refused: the fleet data is stale ({snapshot.stale_reason}); wait for fresh data")


def local_rollouts(backend: Any, settings: RolloutSettings, name: str) -> Any:
    """A rollout service whose engine runs in this process, staging on ``backend`` through its
    rollout adapter (``backend.rollout_adapter(read_only)``); its journal at ``settings.journal_path``."""
    from otelcockpit.rollout.journal import Journal
    from otelcockpit.rollout.local import SnapshotFleet
    from otelcockpit.rollout.service import RolloutService

    target = staging_target(backend, read_only=settings.read_only)
    fleet = SnapshotFleet(backend, target, name=name, context=settings.context)
    return RolloutService(
        Journal(settings.journal_path),
        fleet,
        defaults=settings.defaults,
        read_only=settings.read_only,
        poll_interval=settings.poll_interval,
        spawn=settings.spawn,
    )


def staging_target(backend: Any, *, read_only: bool = False) -> Any:
    """The engine's target for a backend that stages through attributes and a temporary pipeline
    (its ``rollout_adapter``); a read-only wrapper's target refuses every write."""
    from otelcockpit.rollout.staging import AttributeStagingTarget

    read_only = read_only or "read-only" in getattr(backend, "capabilities", frozenset())
    inner = getattr(backend, "inner", backend)
    return AttributeStagingTarget(inner.rollout_adapter(read_only))
