"""Rollouts on ``otelcockpit serve``: the rollout service of the ``opamp`` backend.

The engine runs inside the server (closing the cockpit never strands a rollout), through the same
:class:`~otelcockpit.rollout.service.RolloutService` as everywhere else; this class is the same
:class:`~otelcockpit.rollout.service.Rollouts` interface spoken over the server's admin API, so the
CLI and the TUI call it exactly as they call a local service. A "pipeline" is an OpAMP config name,
its revisions are the config versions. Every failure is one line (from :class:`OpAmpApi`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from otelcockpit.backends.opamp import DEFAULT_TOKEN_ENV, OpAmpApi
from otelcockpit.errors import ReadOnlyError, UsageError
from otelcockpit.fleet.model import Collector, CollectorTarget, Operation, Revision, parse_time, utcnow
from otelcockpit.rollout.history import ChangeEntry, PipelineTarget
from otelcockpit.rollout.model import CollectorProgress, RolloutPlan, RolloutState, RolloutView
from otelcockpit.rollout.options import SAFE_DEFAULTS, PlanOptions
from otelcockpit.rollout.service import (
    REACH_ROLLOUTS,
    ROLLOUTS_LISTED,
    ActionResult,
    ProgressCallback,
    PushRequest,
    RollbackPlan,
    RollbackResult,
    RolloutRecords,
)


def rollback_plan_from_json(d: Mapping[str, Any]) -> RollbackPlan:
    pipeline = str(d.get("pipeline", ""))
    target = Revision(
        id=str(d.get("to_revision", "")),
        pipeline=pipeline,
        pipeline_id=pipeline,
        snapshot=None,
        operation=Operation.UPDATE,
        created_at=parse_time(d.get("to_created_at")) or utcnow(),
        author=str(d.get("to_author", "")),
    )
    return RollbackPlan(
        pipeline=pipeline,
        live_revision=str(d.get("live_revision", "")),
        target=target,
        source=str(d.get("source", "")),
        collectors=int(d.get("collectors", 0)),
        by_env=dict(d.get("by_env") or {}),
        by_region=dict(d.get("by_region") or {}),
        aborts=tuple(str(x) for x in d.get("aborts") or ()),
    )


def pipeline_target_from_json(name: str, d: Mapping[str, Any]) -> PipelineTarget:
    rev = None
    if d.get("revision"):
        rev = Revision(
            id=str(d["revision"]),
            pipeline=name,
            pipeline_id=name,
            snapshot=None,
            operation=Operation.UPDATE,
            created_at=parse_time(d.get("created_at")) or utcnow(),
            author=str(d.get("author", "")),
        )
    return PipelineTarget(name, rev, str(d.get("source", "none")), str(d.get("live_revision", "")))


class RemoteRollouts:
    """The :class:`~otelcockpit.rollout.service.Rollouts` of a server's admin API."""

    runs_in_background = True  # the server runs every rollout

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        token_env: str = DEFAULT_TOKEN_ENV,
        timeout: float = 30.0,
        defaults: PlanOptions = SAFE_DEFAULTS,
        read_only: bool = False,
        poll_interval: float = 1.0,
    ) -> None:
        if not url:
            raise UsageError("the opamp backend needs --url (the admin API, e.g. http://127.0.0.1:4321)")
        self.url = url
        self.api = OpAmpApi(url, token, token_env=token_env, timeout=timeout)
        self.defaults = defaults
        self.read_only = read_only
        self.poll_interval = poll_interval
        self._progress_cache: dict[tuple[str, str], Mapping[str, CollectorProgress]] = {}

    async def close(self) -> None:
        await self.api.close()

    async def __aenter__(self) -> RemoteRollouts:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _write(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyError(f"read-only: refused to {what}")

    # ---- planning and starting ---------------------------------------------------------------
    async def plan(self, req: PushRequest) -> RolloutPlan:
        req.options.resolve(self.defaults)  # a bad field is a usage error here, before any request
        data = await self.api.request("POST", "/rollouts/plan", json_body=req.as_json(self.defaults))
        return RolloutPlan.from_json(data["plan"])

    async def start(self, req: PushRequest, *, reviewed: RolloutPlan | None = None) -> RolloutView:
        self._write(f"start a rollout of {req.pipeline}")
        req.options.resolve(self.defaults)
        body = req.as_json(self.defaults)
        if reviewed is not None:
            body["reviewed"] = {"collector_count": reviewed.collector_count, "base_revision": reviewed.base_revision}
        return RolloutView.from_json(await self.api.request("POST", "/rollouts", json_body=body))

    async def follow(self, rollout_id: str, on_progress: ProgressCallback | None = None) -> RolloutView:
        while True:
            view = await self.view(rollout_id)
            if on_progress is not None:
                on_progress(view)
            if view.state not in (RolloutState.RUNNING, RolloutState.PLANNED):
                return view
            await asyncio.sleep(self.poll_interval)

    # ---- operator actions ----------------------------------------------------------------------
    async def _action(self, rollout_id: str, what: str, author: str) -> ActionResult:
        self._write(f"{what} rollout {rollout_id}")
        data = await self.api.request("POST", f"/rollouts/{rollout_id}/{what}", json_body={"requested_by": author})
        return ActionResult(str(data.get("message", "")), RolloutView.from_json(data["rollout"]))

    async def pause(self, rollout_id: str, author: str) -> ActionResult:
        return await self._action(rollout_id, "pause", author)

    async def resume(self, rollout_id: str, author: str) -> ActionResult:
        return await self._action(rollout_id, "resume", author)

    async def abort(self, rollout_id: str, author: str) -> ActionResult:
        return await self._action(rollout_id, "abort", author)

    # ---- rollback ----------------------------------------------------------------------------------
    async def rollback_plan(self, pipeline: str, to: str | None = None) -> RollbackPlan:
        body: dict[str, Any] = {}
        if to is not None:
            body["to"] = to.strip().removeprefix(f"{pipeline}@").removeprefix("v")
        data = await self.api.request("POST", f"/configs/{pipeline}/rollback/plan", json_body=body)
        return rollback_plan_from_json(data)

    async def rollback_plan_for(self, rollout_id: str) -> RollbackPlan:
        data = await self.api.request("POST", f"/rollouts/{rollout_id}/rollback/plan", json_body={})
        return rollback_plan_from_json(data)

    async def rollback(self, plan: RollbackPlan, author: str) -> RollbackResult:
        self._write(f"roll back {plan.pipeline}")
        body: dict[str, Any] = {
            "requested_by": author,
            "expect": {"live_revision": plan.live_revision, "to_revision": plan.target_revision},
        }
        if plan.source == "chosen":
            body["to"] = plan.target_revision
        data = await self.api.request("POST", f"/configs/{plan.pipeline}/rollback", json_body=body)
        return RollbackResult.from_json(data)

    # ---- reading ---------------------------------------------------------------------------------
    async def view(self, rollout_id: str) -> RolloutView:
        return RolloutView.from_json(await self.api.request("GET", f"/rollouts/{rollout_id}"))

    async def progress(self, rollout_id: str) -> list[CollectorProgress]:
        data = await self.api.request("GET", f"/rollouts/{rollout_id}", params={"collectors": "1"})
        return [CollectorProgress.from_json(x) for x in data.get("collectors") or ()]

    async def list(self, *, every_context: bool = False) -> list[RolloutView]:
        data = await self.api.request("GET", "/rollouts")
        return [RolloutView.from_json(d) for d in data.get("rollouts") or ()][:ROLLOUTS_LISTED]

    async def changes(self, since: datetime | None) -> list[ChangeEntry]:
        seconds = max(1, int((utcnow() - since).total_seconds())) if since is not None else 0
        data = await self.api.request("GET", "/changes", params={"since": f"{seconds}s"})
        fields = ChangeEntry.__dataclass_fields__
        return [
            ChangeEntry(**{**{k: v for k, v in d.items() if k in fields}, "at": parse_time(d["at"])})
            for d in data.get("changes") or ()
        ]

    async def targets(self) -> tuple[dict[str, PipelineTarget], dict[str, CollectorTarget]]:
        data = await self.api.request("GET", "/rollback-targets")
        pipelines = {
            str(n): pipeline_target_from_json(str(n), t)
            for n, t in (data.get("pipelines") or {}).items()
            if isinstance(t, Mapping)
        }
        collectors = {
            str(c): CollectorTarget.from_json(t) for c, t in (data.get("collectors") or {}).items() if isinstance(t, Mapping)
        }
        return pipelines, collectors

    async def records(
        self, collectors: Iterable[Collector], *, since: datetime, now: datetime, with_progress: bool = False
    ) -> RolloutRecords:
        """Everything a face shows of the server's rollouts. A rollout's per-agent progress (a row
        per agent: large on a big fleet) is read again only when the rollout changed since."""
        views = tuple(await self.list())
        events = tuple(await self.changes(since))
        progress: dict[str, Mapping[str, CollectorProgress]] = {}
        if with_progress:
            cache = self._progress_cache
            recent = [v for v in views if (v.updated_at or v.created_at or since) >= since][:REACH_ROLLOUTS]
            for v in recent:
                key = (v.id, f"{v.updated_at}|{v.state.value}|{v.current_stage}")
                hit = cache.get(key)
                if hit is None:
                    hit = cache[key] = {p.collector_id: p for p in await self.progress(v.id)}
                progress[v.id] = hit
            for key in [k for k in cache if progress.get(k[0]) is not cache[k]]:
                del cache[key]
        pipelines, targets = await self.targets()
        return RolloutRecords(views, events, progress, targets, pipelines)
