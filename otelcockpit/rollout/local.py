"""A cockpit backend (the demo, Fleet Management) as the fleet a local rollout service works on.

The backend is taken as it is (anything with ``snapshot()`` and ``revisions()``, optionally
``all_revisions()``): this package imports no backend. The collectors a version reaches are the
ones its matchers select in the current snapshot, by the same type-aware rule as Fleet
Management's GetConfig; the engine stages through the backend's own rollout target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from otelcockpit.errors import CockpitError, PushRefused, UsageError
from otelcockpit.fleet.model import CollectorTarget, FleetSnapshot, Revision
from otelcockpit.rollout.engine import Target
from otelcockpit.rollout.history import ChangeEntry, collector_targets
from otelcockpit.rollout.journal import Journal
from otelcockpit.rollout.model import ROLLOUT_ATTRIBUTE, RolloutPlan
from otelcockpit.rollout.planner import Member, reached
from otelcockpit.rollout.service import PlanInputs


class SnapshotFleet:
    # Collectors left out of a plan would get the new version with the fold (it becomes the pipeline's
    # contents), so a pre-flight that finds some blocks the push instead.
    holds_back = False

    def __init__(self, backend: Any, target: Target, *, name: str, context: str) -> None:
        self.source = backend
        self.target = target
        self.backend = name
        self.context = context

    async def _fresh(self) -> FleetSnapshot:
        snap: FleetSnapshot = await self.source.snapshot()
        if snap.stale:
            raise PushRefused(f"refused: the fleet data is stale ({snap.stale_reason}); wait for fresh data")
        return snap

    async def plan_inputs(self, pipeline: str, contents: str) -> PlanInputs:
        snap = await self._fresh()
        live = snap.pipeline(pipeline)
        if live is None:
            names = ", ".join(p.name for p in snap.pipelines[:8])
            raise UsageError(f"no pipeline {pipeline!r} on {snap.backend} (known: {names}); create it first")
        revisions = await self.revisions(pipeline)
        new = replace(live, contents=contents, created_at=None, updated_at=None)
        members = reached(new, snap.collectors)
        try:
            before = {c.id for c in reached(live, snap.collectors)}
        except UsageError:
            before = set()
        return PlanInputs(
            live=live,
            new=new,
            base_revision=revisions[-1].id if revisions else "",
            members=members,
            dropped=len(before - {c.id for c in members}),
            snapshot=snap,
            available={c.id: c.available_components for c in members},
        )

    async def revisions(self, pipeline: str) -> tuple[Revision, ...]:
        snap = await self.source.snapshot()
        return tuple(snap.revisions.get(pipeline) or await self.source.revisions(pipeline))

    async def all_revisions(self) -> Mapping[str, Sequence[Revision]]:
        snap = await self.source.snapshot()
        if snap.revisions:
            return dict(snap.revisions)
        bulk = getattr(self.source, "all_revisions", None)
        if bulk is not None:
            return dict(await bulk())
        out: dict[str, tuple[Revision, ...]] = {}
        for p in snap.pipelines:
            try:
                out[p.name] = tuple(await self.source.revisions(p.name))
            except CockpitError:
                continue
        return out

    async def reached_by(self, pipeline: str) -> Sequence[Member]:
        """The collectors the pipeline reaches, the ones a rollout in flight staged included (its
        guard matcher on the rollout attribute is left out)."""
        snap = await self.source.snapshot()
        live = snap.pipeline(pipeline)
        if live is None:
            return []
        own = tuple(m for m in live.matchers if ROLLOUT_ATTRIBUTE not in m)
        try:
            return reached(replace(live, matchers=own), snap.collectors)
        except UsageError:
            return []

    async def commit_new(self, plan: RolloutPlan, author: str) -> RolloutPlan:
        return plan  # the engine creates what it needs as it goes (a temporary pipeline)

    async def applied_everywhere(self, pipeline: str) -> Sequence[str]:
        return ()  # a snapshot does not say which revision each collector last applied

    async def collector_targets(self, journal: Journal) -> Mapping[str, CollectorTarget]:
        snap = await self.source.snapshot()
        return {cid: CollectorTarget(h) for cid, h in collector_targets(journal, snap.collectors).items()}

    async def extra_changes(self, since: datetime | None) -> Sequence[ChangeEntry]:
        return ()
