"""The Fleet Management backend: snapshots from ListCollectors + ListPipelines, pushes as RPCs.

* Collectors and pipelines map to :mod:`otelcockpit.fleet.model` objects; which pipelines a
  collector gets is computed with our own matcher engine (type-aware, disabled pipelines and
  collectors respected), the same rule as the service's GetConfig.
* Health: the v1 API reports none. Collectors show ``unknown`` with the reason, or ``offline``
  when Fleet Management marked them inactive. No status is ever invented.
* Revisions are loaded when a pipeline is opened (GetPipelineID + ListPipelineRevisions).
* When the API fails, the last snapshot is kept, marked stale with its age and the error kind;
  the backend backs off before asking again and refuses pushes until fresh data arrives.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
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
from otelcockpit.backends.fleet_management.client import (
    FleetAPIError,
    FleetClient,
    InvalidArgument,
    NotFound,
)
from otelcockpit.errors import ConfigError
from otelcockpit.fleet.matchers import MatcherError, compile_matchers
from otelcockpit.fleet.matching import PipelineMatcher
from otelcockpit.fleet.model import (
    EMPTY,
    BackendHealth,
    Collector,
    CollectorType,
    ConfigReport,
    FleetSnapshot,
    Health,
    Operation,
    Pipeline,
    Revision,
    age_text,
    parse_time,
    utcnow,
)

NO_HEALTH = "Fleet Management v1 API reports no health"
# What the v1 management API exposes of a collector: id, name, local and remote attributes, enabled,
# collector type, created/updated and marked-inactive times. Collectors do send their remote config
# status and effective config with GetConfig (alloy-remote-config v0.0.11/v0.0.12), but ListCollectors
# and GetCollector return neither (only the unreleased v2 API has state.remoteConfigStatus): so what a
# collector runs is unknown here, never guessed from which pipelines match it.
NOT_EXPOSED = ConfigReport(
    unknown="Fleet Management's v1 API does not say what a collector runs: it returns neither the remote "
    "config status nor the effective config the collector reports with GetConfig"
)
DEFAULT_USERNAME_ENV = "FLEET_MANAGEMENT_INSTANCE_ID"
DEFAULT_PASSWORD_ENV = "FLEET_MANAGEMENT_TOKEN"
MAX_KEY, MAX_VALUE, MAX_REMOTE = 100, 150, 100

SOURCE_TYPES = {
    "SOURCE_TYPE_GIT": "git",
    "SOURCE_TYPE_TERRAFORM": "terraform",
    "SOURCE_TYPE_GRAFANA": "grafana",
}
SOURCE_NAMES = {v: k for k, v in SOURCE_TYPES.items()}
OPERATIONS = {"INSERT": Operation.INSERT, "UPDATE": Operation.UPDATE, "DELETE": Operation.DELETE}


# ---- decoding (protojson -> model) ------------------------------------------------------------
def collectors_from_json(items: Iterable[Mapping[str, Any]]) -> list[Collector]:
    """Collectors as the API returns them. Hot path: 20,000 of these per ListCollectors."""
    alloy, otel = CollectorType.ALLOY, CollectorType.OTEL
    unknown, offline = Health.UNKNOWN, Health.OFFLINE
    out: list[Collector] = []
    append = out.append
    for c in items:
        cid = c["id"]
        local = c.get("localAttributes") or c.get("attributes") or EMPTY
        remote = c.get("remoteAttributes") or c.get("attributeOverrides") or EMPTY
        ctype = otel if c.get("collectorType") == "COLLECTOR_TYPE_OTEL" else alloy
        inactive = c.get("markedInactiveAt")
        if inactive:
            health, reason = offline, f"marked inactive by Fleet Management at {inactive}"
        else:
            health, reason = unknown, NO_HEALTH
        append(
            Collector(
                id=cid,
                name=c.get("name") or cid,
                type=ctype,
                version=local.get("collector.version") or local.get("service.version") or "",
                local_attributes=local,
                remote_attributes=remote,
                health=health,
                health_reason=reason,
                enabled=c.get("enabled", True) is not False,
                config_report=NOT_EXPOSED,
                source="fleet-management",
            )
        )
    return out


def source_text(source: Mapping[str, Any] | None) -> str:
    if not source:
        return ""
    kind = SOURCE_TYPES.get(str(source.get("type", "")), "")
    namespace = str(source.get("namespace", ""))
    if not kind:
        return namespace
    return f"{kind}:{namespace}" if namespace else kind


def pipeline_from_json(p: Mapping[str, Any]) -> Pipeline:
    return Pipeline(
        name=str(p.get("name", "")),
        contents=str(p.get("contents", "")),
        matchers=tuple(str(m) for m in p.get("matchers") or ()),
        # [I] an omitted `enabled` is an unset optional: treated as enabled, like the service's UI.
        enabled=p.get("enabled", True) is not False,
        config_type=CollectorType.OTEL if p.get("configType") == "CONFIG_TYPE_OTEL" else CollectorType.ALLOY,
        id=str(p.get("id", "")),
        source=source_text(p.get("source")),
        created_at=parse_time(p.get("createdAt")),
        updated_at=parse_time(p.get("updatedAt")),
    )


def pipeline_to_json(p: Pipeline, *, with_id: bool = False) -> dict[str, Any]:
    """The full Pipeline message (Update and Upsert replace every field, so send them all)."""
    out: dict[str, Any] = {
        "name": p.name,
        "contents": p.contents,
        "matchers": list(p.matchers),
        "enabled": p.enabled,
        "configType": "CONFIG_TYPE_OTEL" if p.config_type == CollectorType.OTEL else "CONFIG_TYPE_ALLOY",
    }
    if with_id and p.id:
        out["id"] = p.id
    kind, _, namespace = p.source.partition(":")
    if kind in SOURCE_NAMES:
        out["source"] = {"type": SOURCE_NAMES[kind], "namespace": namespace}
    return out


def revision_from_json(r: Mapping[str, Any]) -> Revision:
    snap = r.get("snapshot")
    pipeline = pipeline_from_json(snap) if isinstance(snap, Mapping) else None
    return Revision(
        id=str(r.get("revisionId", "")),
        pipeline=pipeline.name if pipeline else "",
        pipeline_id=pipeline.id if pipeline else "",
        snapshot=pipeline,
        operation=OPERATIONS.get(str(r.get("operation", "")), Operation.UPDATE),
        created_at=parse_time(r.get("createdAt")) or datetime.fromtimestamp(0).astimezone(),
    )


def _revision_key(r: Revision) -> tuple[Any, ...]:
    return (r.created_at, int(r.id) if r.id.isdigit() else 0, r.id)


def matchable(pipelines: Sequence[Pipeline]) -> tuple[list[Pipeline], list[str]]:
    """Pipelines whose matchers our engine parses, and the names of those it cannot."""
    good, bad = [], []
    for p in pipelines:
        try:
            compile_matchers(tuple(p.matchers))
        except MatcherError:
            bad.append(p.name)
        else:
            good.append(p)
    return good, bad


def build_snapshot(
    collectors_payload: bytes | Mapping[str, Any],
    pipelines: Sequence[Pipeline],
    *,
    fetched_at: datetime,
    health: BackendHealth | None = None,
) -> FleetSnapshot:
    """Decode a ListCollectors answer and turn it into a snapshot with matched pipelines."""
    data = (
        json.loads(collectors_payload) if isinstance(collectors_payload, bytes | str) else collectors_payload
    )
    collectors = collectors_from_json(data.get("collectors") or ())
    good, bad = matchable(pipelines)
    matcher = PipelineMatcher(good)
    names_for = matcher.names_for
    setattr_ = object.__setattr__
    for c in collectors:
        names = names_for(c)
        if names:
            # Filled in while the object is still private to this function (Collector is immutable
            # once published); cheaper than building each collector twice.
            setattr_(c, "pipelines", names)
    if health is None:
        msg = f"{len(collectors)} collectors, {len(pipelines)} pipelines; {NO_HEALTH}"
        if bad:
            msg += f"; matchers not understood in {', '.join(bad[:3])}"
        health = BackendHealth(True, "ok" if not bad else "degraded", msg)
    return FleetSnapshot(
        backend="fleet-management",
        collectors=tuple(collectors),
        pipelines=tuple(sorted(pipelines, key=lambda p: p.name)),
        fetched_at=fetched_at,
        health=health,
    )


# ---- the backend ----------------------------------------------------------------------------------
class FleetManagementBackend:
    name = "fleet-management"
    capabilities = frozenset({"read", "push", "revisions"})

    def __init__(
        self,
        client: FleetClient,
        *,
        clock: Callable[[], datetime] = utcnow,
        backoff_base: float = 2.0,
        backoff_cap: float = 60.0,
        path_style: str = "dotted",
        check_limits: bool = True,
    ) -> None:
        self.client = client
        self.clock = clock
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.path_style = path_style
        self._check_limits = check_limits
        self._fresh: FleetSnapshot | None = None  # the last good data
        self._current: FleetSnapshot | None = None  # what was last handed out (maybe stale)
        self._failures = 0
        self._retry_at: datetime | None = None
        self._last_error: FleetAPIError | None = None

    # ---- reading ----------------------------------------------------------------------------
    async def _fetch(self) -> FleetSnapshot:
        async with self.client.deadline():  # one timeout for the whole snapshot, not one per RPC
            if self._check_limits:
                await self.client.adjust_rate_from_limits()
                self._check_limits = False
            started = time.perf_counter()
            raw = await self.client.list_collectors_raw()
            pipelines = [pipeline_from_json(p) for p in await self.client.list_pipelines()]
        latency = (time.perf_counter() - started) * 1000
        snap = build_snapshot(raw, pipelines, fetched_at=self.clock())
        health = BackendHealth(snap.health.ok, snap.health.status, snap.health.message, round(latency, 1))
        return FleetSnapshot(
            backend=snap.backend,
            collectors=snap.collectors,
            pipelines=snap.pipelines,
            fetched_at=snap.fetched_at,
            health=health,
        )

    def _stale_view(self, now: datetime) -> FleetSnapshot:
        assert self._fresh is not None and self._last_error is not None
        err = self._last_error
        age = age_text(self._fresh.fetched_at, now)
        wait = max(0, int(((self._retry_at or now) - now).total_seconds()))
        reason = f"{err.kind}: {err.message} (data {age} old, next try in {wait}s)"
        return self._fresh.as_stale(reason, BackendHealth(False, "down", f"{err.kind}: {err.message}"))

    async def snapshot(self) -> FleetSnapshot:
        now = self.clock()
        if self._fresh is not None and self._retry_at is not None and now < self._retry_at:
            self._current = self._stale_view(now)
            return self._current
        try:
            snap = await self._fetch()
        except FleetAPIError as exc:
            if self._fresh is None:
                raise
            self._failures += 1
            self._last_error = exc
            delay = min(self.backoff_cap, self.backoff_base * 2 ** (self._failures - 1))
            self._retry_at = now + timedelta(seconds=delay)
            self._current = self._stale_view(now)
            return self._current
        self._failures = 0
        self._retry_at = None
        self._last_error = None
        self._fresh = self._current = snap
        return snap

    async def all_revisions(self) -> dict[str, tuple[Revision, ...]]:
        """Every pipeline's history in one call (ListPipelinesRevisions), oldest first."""
        out: dict[str, list[Revision]] = {}
        for raw in await self.client.list_pipelines_revisions():
            r = revision_from_json(raw)
            out.setdefault(r.pipeline, []).append(r)
        return {
            name: tuple(sorted(revs, key=lambda r: (r.created_at, int(r.id) if r.id.isdigit() else 0)))
            for name, revs in out.items()
        }

    async def revisions(self, pipeline: str) -> tuple[Revision, ...]:
        known = self._fresh.pipeline(pipeline) if self._fresh else None
        try:
            pid = known.id if known and known.id else await self.client.get_pipeline_id(pipeline)
            raw = await self.client.list_pipeline_revisions(pid)
        except NotFound:
            # A deleted pipeline: its history is still in the all-pipelines list.
            raw = [
                r
                for r in await self.client.list_pipelines_revisions()
                if isinstance(r.get("snapshot"), Mapping) and r["snapshot"].get("name") == pipeline
            ]
        return tuple(sorted((revision_from_json(r) for r in raw), key=_revision_key))

    async def attributes(self) -> dict[str, dict[str, list[str]]]:
        """ListCollectorAttributes: ``{"local": {key: [values]}, "remote": {...}}``."""
        return await self.client.list_collector_attributes()

    # ---- writing ----------------------------------------------------------------------------
    async def _pipeline_id(self, name: str) -> str:
        known = self._fresh.pipeline(name) if self._fresh else None
        if known is not None and known.id:
            return known.id
        return await self.client.get_pipeline_id(name)

    async def _latest_revision(self, pipeline_id: str) -> str | None:
        try:
            revs = await self.client.list_pipeline_revisions(pipeline_id)
        except FleetAPIError:
            return None
        if not revs:
            return None
        return max((revision_from_json(r) for r in revs), key=_revision_key).id

    async def push(self, change: Change) -> PushResult:
        if self._current is None:
            await self.snapshot()
        refuse_if_stale(self._current)
        try:
            return await self._push(change)
        except (NotFound, InvalidArgument) as exc:
            return PushResult(False, exc.message, details={"kind": exc.kind, "code": exc.code})

    async def _push(self, change: Change) -> PushResult:
        p = change.payload
        if change.kind == PIPELINE_UPSERT:
            pipeline: Pipeline = p["pipeline"]
            compile_matchers(tuple(pipeline.matchers))
            saved = await self.client.upsert_pipeline(pipeline_to_json(pipeline))
            pid = str(saved.get("id", ""))
            rev = await self._latest_revision(pid) if pid else None
            return PushResult(
                True, f"upserted pipeline {pipeline.name} (id {pid or '?'}), revision {rev or '?'}", rev
            )
        if change.kind == PIPELINE_DELETE:
            pid = await self._pipeline_id(p["name"])
            await self.client.delete_pipeline(pid)
            rev = await self._latest_revision(pid)
            return PushResult(True, f"deleted pipeline {p['name']} (id {pid}), revision {rev or '?'}", rev)
        if change.kind == PIPELINE_SET_ENABLED:
            pid = await self._pipeline_id(p["name"])
            current = pipeline_from_json(await self.client.get_pipeline(pid))
            body = pipeline_to_json(current, with_id=True)
            body["enabled"] = bool(p["enabled"])
            await self.client.update_pipeline(body)
            rev = await self._latest_revision(pid)
            state = "enabled" if p["enabled"] else "disabled"
            return PushResult(True, f"{state} pipeline {p['name']}, revision {rev or '?'}", rev)
        if change.kind == COLLECTOR_SET_ENABLED:
            done: list[str] = []
            for cid in p["ids"]:
                try:
                    c = await self.client.get_collector(cid)
                    body: dict[str, Any] = {
                        "id": c["id"],
                        "name": c.get("name", ""),
                        "remoteAttributes": c.get("remoteAttributes") or {},
                        "enabled": bool(p["enabled"]),
                    }
                    if c.get("collectorType"):
                        body["collectorType"] = c["collectorType"]
                    await self.client.update_collector(body)
                except (NotFound, InvalidArgument) as exc:
                    # UpdateCollector has no bulk form: say exactly how far it got.
                    return PushResult(
                        False,
                        f"{exc.message} (after updating {len(done)} of {len(p['ids'])})",
                        details={"done": done},
                    )
                done.append(cid)
            return PushResult(True, f"{change.describe()}", details={"done": done})
        if change.kind == COLLECTOR_SET_REMOTE_ATTRIBUTES:
            ops = self.remote_attribute_ops(p.get("set") or {}, p.get("remove") or ())
            if not ops:
                return PushResult(False, "nothing to change: no attribute to set or remove")
            await self.client.bulk_update_collectors(list(p["ids"]), ops)
            return PushResult(True, f"{change.describe()} ({len(ops)} operation(s), applied atomically)")
        return PushResult(False, f"the fleet-management backend cannot {change.kind}")

    def remote_attribute_ops(self, set_: Mapping[str, Any], remove: Iterable[str]) -> list[dict[str, str]]:
        def path(key: str) -> str:
            if self.path_style == "pointer":
                return "/remote_attributes/" + key.replace("~", "~0").replace("/", "~1")
            return "remoteAttributes." + key

        ops: list[dict[str, str]] = []
        for key, value in set_.items():
            key, value = str(key), str(value)
            if key.startswith("collector."):
                raise InvalidArgument(
                    f"remote attribute {key!r}: the collector. prefix is reserved for Fleet Management"
                )
            if not key or len(key) > MAX_KEY:
                raise InvalidArgument(
                    f"remote attribute key {key[:20]!r}: keys are 1 to {MAX_KEY} characters"
                )
            if len(value) > MAX_VALUE:
                raise InvalidArgument(f"remote attribute {key!r}: values are at most {MAX_VALUE} characters")
            ops.append({"op": "ADD", "path": path(key), "value": value})
        for key in remove:
            ops.append({"op": "REMOVE", "path": path(str(key))})
        return ops

    def rollout_adapter(self, read_only: bool) -> Any:
        from otelcockpit.backends.fleet_management.rollouts import FleetManagementAdapter

        return FleetManagementAdapter(self, read_only=read_only)

    def rollouts(self, settings: RolloutSettings) -> Any:
        """Local rollouts staged through remote attributes and a temporary pipeline (FM's own advice);
        the v1 API reports no config status, so the gates are the soak and an explicit continue."""
        return local_rollouts(self, settings, self.name)

    async def close(self) -> None:
        await self.client.aclose()


def from_settings(
    settings: Any, clock: Callable[[], datetime] = utcnow, **kwargs: Any
) -> FleetManagementBackend:
    ctx = settings.context
    username_env = ctx.username_env or DEFAULT_USERNAME_ENV
    password_env = ctx.password_env or DEFAULT_PASSWORD_ENV
    username = os.environ.get(username_env, "")
    password = os.environ.get(password_env, "")
    if not username or not password:
        missing = " and ".join(
            v for v, val in ((username_env, username), (password_env, password)) if not val
        )
        raise ConfigError(  # a configuration error (exit 2): nothing was asked of Fleet Management
            f"Fleet Management needs credentials: set {missing} ({username_env} = the stack's Fleet Management "
            f"instance ID, {password_env} = an access-policy token with the fleet-management:read scope, "
            f"and fleet-management:write to push)"
        )
    opts = dict(getattr(ctx, "options", {}) or {})

    def number(key: str, default: float) -> float:
        value = kwargs.pop(key, opts.get(key, default))
        try:
            return float(value)
        except (TypeError, ValueError):
            from otelcockpit.errors import ConfigError

            raise ConfigError(f"context {ctx.name!r}: {key} must be a number, not {value!r}") from None

    client = FleetClient(
        ctx.url,
        username,
        password,
        username_env=username_env,
        password_env=password_env,
        timeout=number("timeout", 30.0),
        rate=number("rate_limit", 3.0),
        max_retries=int(number("max_retries", 4)),
        backoff_base=number("retry_backoff", 0.25),
    )
    path_style = str(opts.get("bulk_update_path_style", "dotted"))
    return FleetManagementBackend(client, clock=clock, path_style=path_style, **kwargs)
