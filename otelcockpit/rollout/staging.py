"""Staging through a remote attribute and a temporary pipeline (Fleet Management's way).

Fleet Management has no rollout and no rollback call; its docs advise staging with attributes and
matchers. For rollout ``ID`` of pipeline ``P``:

1. prepare: create ``P__rollout_ID`` with the new contents and P's new matchers ANDed with
   ``otelcockpit.rollout="ID"`` (it reaches nobody yet), then add ``otelcockpit.rollout!="ID"``
   to P (still everybody it reached: nobody has the attribute).
2. each stage: set ``otelcockpit.rollout=ID`` on the stage's collectors in one atomic bulk
   update: in that one write they leave P and enter P__rollout_ID. A collector is never matched
   by both or by neither.
3. finalize (fold): give P the new contents (still guarded), remove the attribute from every
   staged collector in one bulk update (they leave the temporary pipeline and land on P with the
   same contents), delete the temporary pipeline, then drop the guard from P: its final revision
   is exactly the new version with its own matchers.
4. abort (cleanup): remove the attribute (staged collectors go back to P's live contents),
   delete the temporary pipeline, restore P as it was.

Rollback upserts a revision's snapshot. Every operation looks first and only does what is
missing, so a step re-run after a crash never pushes twice.

The same class drives the demo backend, so the demo exercises this exact code path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from otelcockpit.fleet.model import Pipeline
from otelcockpit.rollout.engine import Observation
from otelcockpit.rollout.journal import RolloutRecord
from otelcockpit.rollout.model import ROLLOUT_ATTRIBUTE, Stage


class StagingAdapter(Protocol):
    name: str
    reports_status: bool
    reports_health: bool

    async def get_pipeline(self, name: str) -> Pipeline | None: ...

    async def upsert_pipeline(self, pipeline: Pipeline, *, author: str) -> str: ...  # new revision ('' unknown)

    async def delete_pipeline(self, name: str, *, author: str) -> str: ...

    async def latest_revision(self, name: str) -> str: ...

    async def collectors_with(self, key: str, value: str) -> set[str]: ...

    async def set_attribute(self, ids: Sequence[str], key: str, value: str, *, author: str) -> None: ...

    async def remove_attribute(self, ids: Sequence[str], key: str, *, author: str) -> None: ...

    async def observe(self, ids: Sequence[str]) -> Mapping[str, Observation]: ...

    async def offered_hashes(self, ids: Sequence[str]) -> Mapping[str, str]: ...


def temp_name(rollout: RolloutRecord) -> str:
    return f"{rollout.pipeline}__rollout_{rollout.id}"


def select_matcher(rollout_id: str) -> str:
    return f'{ROLLOUT_ATTRIBUTE}="{rollout_id}"'


def guard_matcher(rollout_id: str) -> str:
    return f'{ROLLOUT_ATTRIBUTE}!="{rollout_id}"'


def _differs(live: Pipeline | None, want: Pipeline) -> bool:
    if live is None:
        return True
    return (live.contents, tuple(live.matchers), live.enabled, live.config_type) != (
        want.contents,
        tuple(want.matchers),
        want.enabled,
        want.config_type,
    )


def _with_matchers(p: Pipeline, matchers: Sequence[str], **changes: object) -> Pipeline:
    return replace(p, matchers=tuple(matchers), **changes)  # type: ignore[arg-type]


class AttributeStagingTarget:
    """A :class:`~otelcockpit.rollout.engine.Target` over a :class:`StagingAdapter`."""

    def __init__(self, adapter: StagingAdapter, *, batch: int = 500) -> None:
        self.adapter = adapter
        self.name = adapter.name
        self.reports_status = adapter.reports_status
        self.reports_health = adapter.reports_health
        self.batch = batch

    async def live_pipeline(self, name: str) -> Pipeline | None:
        return await self.adapter.get_pipeline(name)

    async def prepare(self, rollout: RolloutRecord) -> None:
        plan = rollout.plan
        new = plan.new
        tname = temp_name(rollout)
        temp = _with_matchers(
            new,
            (*new.matchers, select_matcher(rollout.id)),
            name=tname,
            id="",
            # No source: a GitOps sync of the original's namespace must not own (and delete) it.
            source="",
            created_at=None,
            updated_at=None,
        )
        if _differs(await self.adapter.get_pipeline(tname), temp):
            await self.adapter.upsert_pipeline(temp, author=rollout.author)
        if plan.base is not None:
            live = await self.adapter.get_pipeline(plan.pipeline)
            guard = guard_matcher(rollout.id)
            if live is not None and guard not in live.matchers:
                await self.adapter.upsert_pipeline(_with_matchers(live, (*live.matchers, guard)), author=rollout.author)

    async def stage_apply(
        self, rollout: RolloutRecord, stage: Stage, collector_ids: Sequence[str]
    ) -> Mapping[str, str]:
        have = await self.adapter.collectors_with(ROLLOUT_ATTRIBUTE, rollout.id)
        missing = [cid for cid in collector_ids if cid not in have]
        for i in range(0, len(missing), self.batch):
            await self.adapter.set_attribute(
                missing[i : i + self.batch], ROLLOUT_ATTRIBUTE, rollout.id, author=rollout.author
            )
        return await self.adapter.offered_hashes(collector_ids)

    async def observe(self, collector_ids: Sequence[str]) -> Mapping[str, Observation]:
        return await self.adapter.observe(collector_ids)

    async def finalize(self, rollout: RolloutRecord) -> str:
        plan = rollout.plan
        new = plan.new
        guard = guard_matcher(rollout.id)
        guarded = _with_matchers(new, (*new.matchers, guard))
        live = await self.adapter.get_pipeline(plan.pipeline)
        final = _with_matchers(new, new.matchers)
        # 1. The pipeline gets the new contents, still kept away from the staged collectors.
        if _differs(live, final) and _differs(live, guarded):
            await self.adapter.upsert_pipeline(guarded, author=rollout.author)
        # 2. Staged collectors leave the temporary pipeline and land on the (now new) pipeline.
        have = sorted(await self.adapter.collectors_with(ROLLOUT_ATTRIBUTE, rollout.id))
        for i in range(0, len(have), self.batch):
            await self.adapter.remove_attribute(have[i : i + self.batch], ROLLOUT_ATTRIBUTE, author=rollout.author)
        # 3. The temporary pipeline reaches nobody now: delete it.
        if await self.adapter.get_pipeline(temp_name(rollout)) is not None:
            await self.adapter.delete_pipeline(temp_name(rollout), author=rollout.author)
        # 4. Drop the guard: the final revision is exactly the new version.
        live = await self.adapter.get_pipeline(plan.pipeline)
        if _differs(live, final):
            return await self.adapter.upsert_pipeline(final, author=rollout.author)
        return await self.adapter.latest_revision(plan.pipeline)

    async def cleanup(self, rollout: RolloutRecord) -> None:
        plan = rollout.plan
        have = sorted(await self.adapter.collectors_with(ROLLOUT_ATTRIBUTE, rollout.id))
        for i in range(0, len(have), self.batch):
            await self.adapter.remove_attribute(have[i : i + self.batch], ROLLOUT_ATTRIBUTE, author=rollout.author)
        if await self.adapter.get_pipeline(temp_name(rollout)) is not None:
            await self.adapter.delete_pipeline(temp_name(rollout), author=rollout.author)
        live = await self.adapter.get_pipeline(plan.pipeline)
        guard = guard_matcher(rollout.id)
        if live is not None and guard in live.matchers:
            await self.adapter.upsert_pipeline(
                _with_matchers(live, tuple(m for m in live.matchers if m != guard)), author=rollout.author
            )

    async def rollback(self, pipeline: str, snapshot: Pipeline | None, *, author: str = "") -> str:
        if snapshot is None:
            if await self.adapter.get_pipeline(pipeline) is not None:
                return await self.adapter.delete_pipeline(pipeline, author=author)
            return ""
        want = replace(snapshot, name=pipeline)
        live = await self.adapter.get_pipeline(pipeline)
        if not _differs(live, want):
            return await self.adapter.latest_revision(pipeline)
        return await self.adapter.upsert_pipeline(want, author=author)
