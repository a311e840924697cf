"""Rollback targets and the change timeline.

* A pipeline's rollback target is its last known good revision: the newest revision the journal
  saw fully rolled out without failures that is not the live one (and differs from it). When
  the journal knows nothing, the revision before the live one.
* A collector's rollback target is the last config hash it reported APPLIED before the one it
  runs now (or the last one the journal saw, when it now runs something else).
* The timeline merges the journal's events with the backend's pipeline revisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from otelcockpit.fleet.model import Collector, ConfigStatus, Operation, Revision, rfc3339
from otelcockpit.rollout.journal import Journal
from otelcockpit.rollout.model import ROLLOUT_ATTRIBUTE


@dataclass(frozen=True)
class PipelineTarget:
    pipeline: str
    revision: Revision | None
    source: str  # "journal" | "applied" | "previous" | "none" (see SOURCE_WORDS)
    live_revision: str = ""

    def as_json(self) -> dict[str, Any]:
        r = self.revision
        return {
            "pipeline": self.pipeline,
            "revision": r.id if r else None,
            "source": self.source,
            "live_revision": self.live_revision,
            "created_at": rfc3339(r.created_at) if r else None,
            "author": r.author if r else "",
        }


def _same(a: Revision, b: Revision) -> bool:
    if a.snapshot is None or b.snapshot is None:
        return False
    x, y = a.snapshot, b.snapshot
    return (x.contents, tuple(x.matchers), x.enabled) == (y.contents, tuple(y.matchers), y.enabled)


def pipeline_target(
    journal: Journal | None,
    pipeline: str,
    revisions: Sequence[Revision],
    *,
    applied_everywhere: Sequence[str] = (),
) -> PipelineTarget:
    """The revision to roll ``pipeline`` back to.

    In order: the newest revision a rollout of the journal took everywhere without a failure
    ("journal"); the newest one every collector it reached reported APPLIED, however it got
    there, an assignment, a rollback or a direct upsert ("applied", when the fleet can tell:
    ``applied_everywhere``, newest first); the revision before the live one ("previous"). Never the
    live revision or one with its contents, and never a revision rolled back from (the journal's
    bad revisions)."""
    live = revisions[-1] if revisions else None
    by_id = {r.id: r for r in revisions}
    bad = journal.bad_revisions(pipeline) if journal is not None else set()
    bad_snaps = [by_id[b] for b in bad if b in by_id]

    def usable(rev: Revision | None) -> bool:
        if rev is None or live is None or rev.id == live.id or rev.id in bad:
            return False
        if rev.snapshot is None or rev.operation == Operation.DELETE or is_staging(rev):
            return False
        return not _same(rev, live) and not any(_same(rev, b) for b in bad_snaps)

    if live is not None:
        good = journal.good_revisions(pipeline) if journal is not None else []
        for source, ids in (("journal", good), ("applied", applied_everywhere)):
            for rid in ids:
                rev = by_id.get(rid)
                if usable(rev):
                    assert rev is not None
                    return PipelineTarget(pipeline, rev, source, live.id)
        for rev in reversed(revisions[:-1]):
            if usable(rev):
                return PipelineTarget(pipeline, rev, "previous", live.id)
    return PipelineTarget(pipeline, None, "none", live.id if live else "")


SOURCE_WORDS = {
    "journal": "last known good: a rollout took it everywhere without a failure",
    "applied": "every collector it reached reported it APPLIED",
    "previous": "the revision before the live one",
    "chosen": "chosen",
    "none": "none",
}


def is_staging(rev: Revision) -> bool:
    """A revision a rollout made on its way (its matchers carry the rollout attribute)."""
    return rev.snapshot is not None and any(ROLLOUT_ATTRIBUTE in m for m in rev.snapshot.matchers)


def previous_real(revisions: Sequence[Revision]) -> Revision | None:
    """The newest revision before the live one that is a version of its own: not a delete, not a
    rollout's intermediate step, and not the same contents and matchers as the live one."""
    if not revisions:
        return None
    live = revisions[-1]
    for rev in reversed(revisions[:-1]):
        if rev.operation == Operation.DELETE or rev.snapshot is None or is_staging(rev):
            continue
        if live.snapshot is not None and _same(rev, live):
            continue
        return rev
    return None


def pipeline_targets(
    journal: Journal | None, revisions: Mapping[str, Sequence[Revision]]
) -> dict[str, PipelineTarget]:
    return {name: pipeline_target(journal, name, revs) for name, revs in sorted(revisions.items())}


def return_hash(current_applied: str, last: str, before: str) -> str:
    """The config hash to return a collector to: the last one it reported APPLIED when it runs
    something else now (APPLYING, FAILED, or another hash), else the APPLIED one before that."""
    if last and last != current_applied:
        return last
    return before


def current_applied(c: Collector) -> str:
    return c.remote_config.hash if c.remote_config.status == ConfigStatus.APPLIED else ""


def collector_targets(journal: Journal | None, collectors: Iterable[Collector]) -> dict[str, str]:
    """collector id -> the config hash to return it to (only collectors with one on record)."""
    seen = journal.last_applied() if journal is not None else {}
    out: dict[str, str] = {}
    for c in collectors:
        last, before = seen.get(c.id, ("", ""))
        target = return_hash(current_applied(c), last, before)
        if target:
            out[c.id] = target
    return out


@dataclass(frozen=True)
class ChangeEntry:
    at: datetime
    kind: str
    pipeline: str
    author: str
    scope: str
    message: str
    rollback_target: str
    source: str  # journal | revisions
    rollout_id: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "at": rfc3339(self.at),
            "kind": self.kind,
            "pipeline": self.pipeline,
            "author": self.author,
            "scope": self.scope,
            "message": self.message,
            "rollback_target": self.rollback_target,
            "source": self.source,
            "rollout_id": self.rollout_id,
        }


def timeline(
    journal: Journal | None,
    revisions: Mapping[str, Sequence[Revision]],
    *,
    since: datetime | None = None,
) -> list[ChangeEntry]:
    out: list[ChangeEntry] = []
    if journal is not None:
        for e in journal.events(since=since.timestamp() if since else None):
            out.append(
                ChangeEntry(e.at, e.kind, e.pipeline, e.author, e.scope, e.message, e.rollback_target, "journal", e.rollout_id)
            )
    for name, revs in revisions.items():
        for i, r in enumerate(revs):
            if since is not None and r.created_at < since:
                continue
            target = previous_real(revs[: i + 1])
            matchers = ", ".join(r.snapshot.matchers) if r.snapshot else ""
            out.append(
                ChangeEntry(
                    at=r.created_at,
                    kind=f"pipeline.{r.operation.value}",
                    pipeline=r.pipeline or name,
                    author=r.author,
                    scope=f"pipeline {r.pipeline or name}" + (f" ({matchers})" if matchers else ""),
                    message=f"revision {r.id}: {r.operation.value}",
                    rollback_target=target.id if target else "",
                    source="revisions",
                )
            )
    out.sort(key=lambda c: (c.at, c.source, c.kind))
    return out
