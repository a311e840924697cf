"""The incident report as data: what is broken, what changed, and what to roll back to.

``build_report(snapshot, revisions, records=..., now=..., hours=24)`` returns an immutable
:class:`IncidentReport`:

* the backend's health and the age of the data;
* the collectors with a problem (:mod:`otelcockpit.fleet.problems`: unhealthy, offline, config failed to
  apply, or running a config other than the one assigned), grouped by env, region and pipeline, each
  with the config it last reported APPLIED (its own rollback target) when one is on record;
* rollouts running or paused (from :mod:`otelcockpit.rollout.records`: the local journal, or the
  rollouts running inside ``otelcockpit serve``);
* every change in the last N hours, each with its rollback target and the command that rolls it back;
* for every collector with a problem, the most recent change that reached it before now: a
  revision of a pipeline it matches, or a rollout stage that offered it a configuration
  ("what changed before it broke").

Read-only by construction: nothing here writes to a backend or to the journal.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from otelcockpit.fleet.configstate import CONFIG_STATE_ORDER, OFF_ASSIGNMENT, collector_state
from otelcockpit.fleet.model import (
    Collector,
    CollectorTarget,
    ConfigStatus,
    FleetSnapshot,
    Health,
    Revision,
    age_text,
    rfc3339,
)
from otelcockpit.fleet.problems import PROBLEM_ORDER, PROBLEM_RANK, Problem, problem_reason, problems
from otelcockpit.rollout.history import ChangeEntry, previous_real
from otelcockpit.rollout.model import ACTIVE_STATES, CollectorStatus
from otelcockpit.rollout.service import RolloutRecords


def rollback_command(pipeline: str, revision: str, *, context: str = "") -> str:
    """``otelcockpit [OPTIONS] rollback PIPELINE --to REV``, runnable as printed. ``context``: the
    options that select the backend (what :func:`context_for_commands` gives, e.g. ``--context lab`` or
    ``--source opamp --url http://...``), or a bare context name."""
    words = shlex.split(context) if context else []
    if words and not words[0].startswith("-"):
        words = ["--context", *words]
    return shlex.join(["otelcockpit", *words, "rollback", pipeline, "--to", revision])


@dataclass(frozen=True)
class IncidentChange:
    """One change: a pipeline revision, a journal event or a rollout stage."""

    at: datetime
    pipeline: str
    kind: str  # pipeline.update | pipeline.insert | rollout.* | rollout.stage ...
    author: str
    message: str
    revision: str  # the revision this change made ('' when not known)
    rollback_target: str  # the revision to return to ('' when there is none)
    source: str  # revisions | journal | audit | rollout
    rollout_id: str = ""
    command: str = ""  # the rollback command ('' without a target)
    broken: int = 0  # collectors with a problem that this change reached

    @property
    def key(self) -> str:
        return (
            f"{self.source}:{self.pipeline}:{self.revision or self.rollout_id}:{rfc3339(self.at)}:{self.kind}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "at": rfc3339(self.at),
            "pipeline": self.pipeline,
            "kind": self.kind,
            "author": self.author,
            "message": self.message,
            "revision": self.revision,
            "rollback_target": self.rollback_target,
            "source": self.source,
            "rollout_id": self.rollout_id,
            "rollback_command": self.command,
            "broken_collectors": self.broken,
        }


@dataclass(frozen=True)
class BrokenCollector:
    id: str
    name: str
    health: Health
    env: str
    region: str
    pipelines: tuple[str, ...]
    reason: str
    last_seen: datetime | None
    changed: IncidentChange | None  # the most recent change that reached it ("changed before it broke")
    rollback_config: CollectorTarget | None = None  # the config it last reported APPLIED, when known
    problems: tuple[Problem, ...] = ()  # worst first (fleet.problems)
    config_status: ConfigStatus = ConfigStatus.UNSET

    @property
    def problem(self) -> Problem:
        return self.problems[0] if self.problems else (Problem.OFFLINE if self.health == Health.OFFLINE else Problem.UNHEALTHY)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "health": self.health.value,
            "problem": self.problem.value,
            "problems": [p.value for p in self.problems],
            "config_status": self.config_status.value,
            "env": self.env,
            "region": self.region,
            "pipelines": list(self.pipelines),
            "reason": self.reason,
            "last_seen": rfc3339(self.last_seen),
            "changed_before": self.changed.as_json() if self.changed else None,
            "rollback_config": self.rollback_config.as_json() if self.rollback_config else None,
        }


@dataclass(frozen=True)
class OffConfig:
    """A collector that does not run the config assigned to it (drifted, on its fallback, on a cached
    older remote config): :mod:`otelcockpit.fleet.configstate` says which and why."""

    id: str
    name: str
    env: str
    region: str
    state: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "env": self.env, "region": self.region,
                "state": self.state, "reason": self.reason}  # fmt: skip


@dataclass(frozen=True)
class Group:
    env: str
    region: str
    pipeline: str
    unhealthy: int
    offline: int
    collectors: tuple[str, ...]
    config_failed: int = 0
    other_config: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "region": self.region,
            "pipeline": self.pipeline,
            "unhealthy": self.unhealthy,
            "offline": self.offline,
            "config_failed": self.config_failed,
            "other_config": self.other_config,
            "collectors": list(self.collectors),
        }


def problem_counts(broken: Sequence[BrokenCollector]) -> dict[Problem, int]:
    """How many collectors have each problem as their worst one (every problem, worst first)."""
    counts = dict.fromkeys(PROBLEM_ORDER, 0)
    for b in broken:
        counts[b.problem] += 1
    return counts


@dataclass(frozen=True)
class RolloutLine:
    id: str
    pipeline: str
    state: str
    stage: int  # 1-based
    stages: int
    applied: int
    total: int
    failed: int
    reason: str
    rollback_target: str
    command: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "state": self.state,
            "stage": self.stage,
            "stages": self.stages,
            "applied": self.applied,
            "total": self.total,
            "failed": self.failed,
            "reason": self.reason,
            "rollback_target": self.rollback_target,
            "rollback_command": self.command,
        }


@dataclass(frozen=True)
class IncidentReport:
    now: datetime
    hours: float
    context: str
    backend: str
    backend_ok: bool
    backend_status: str
    backend_message: str
    fetched_at: datetime
    stale: bool
    stale_reason: str
    total: int
    health_counts: Mapping[str, int]
    broken: tuple[BrokenCollector, ...]
    groups: tuple[Group, ...]
    rollouts: tuple[RolloutLine, ...]
    changes: tuple[IncidentChange, ...]  # newest first
    notes: tuple[str, ...] = field(default=())
    config_states: Mapping[str, int] = field(default_factory=dict)  # every collector, by config state
    off_config: tuple[OffConfig, ...] = ()  # the collectors not running their assigned config

    @property
    def data_age(self) -> str:
        return age_text(self.fetched_at, self.now)

    @property
    def unhealthy(self) -> int:
        return sum(1 for b in self.broken if b.health == Health.UNHEALTHY)

    @property
    def offline(self) -> int:
        return sum(1 for b in self.broken if b.health == Health.OFFLINE)

    @property
    def config_failed(self) -> int:
        return sum(1 for b in self.broken if Problem.CONFIG_FAILED in b.problems)

    @property
    def other_config(self) -> int:
        return sum(1 for b in self.broken if Problem.OTHER_CONFIG in b.problems)

    def by_location(self) -> list[tuple[str, str, dict[Problem, int]]]:
        """(env, region, collectors per worst problem), the place with the most first."""
        acc: dict[tuple[str, str], list[BrokenCollector]] = {}
        for b in self.broken:
            acc.setdefault((b.env, b.region), []).append(b)
        rows = [(env, region, problem_counts(bs)) for (env, region), bs in acc.items()]
        return sorted(rows, key=lambda r: (-sum(r[2].values()), r[0], r[1]))

    def by_pipeline(self) -> list[tuple[str, dict[Problem, int]]]:
        """(pipeline, collectors per worst problem), the pipeline with the most first."""
        acc: dict[str, list[BrokenCollector]] = {}
        for b in self.broken:
            for p in b.pipelines or ("-",):
                acc.setdefault(p, []).append(b)
        rows = [(p, problem_counts(bs)) for p, bs in acc.items()]
        return sorted(rows, key=lambda r: (-sum(r[1].values()), r[0]))

    def as_json(self) -> dict[str, Any]:
        return {
            "now": rfc3339(self.now),
            "hours": self.hours,
            "context": self.context,
            "read_only": True,
            "backend": {
                "name": self.backend,
                "ok": self.backend_ok,
                "status": self.backend_status,
                "message": self.backend_message,
                "fetched_at": rfc3339(self.fetched_at),
                "data_age": self.data_age,
                "data_age_seconds": max(0.0, (self.now - self.fetched_at).total_seconds()),
                "stale": self.stale,
                "stale_reason": self.stale_reason,
            },
            "collectors": {
                "total": self.total,
                "health": dict(self.health_counts),
                "unhealthy": self.unhealthy,
                "offline": self.offline,
                "config_failed": self.config_failed,
                "other_config": self.other_config,
                "with_problems": len(self.broken),
            },
            "config_states": dict(self.config_states),
            "groups": [g.as_json() for g in self.groups],
            "broken": [b.as_json() for b in self.broken],
            "off_config": [o.as_json() for o in self.off_config],
            "rollouts": [r.as_json() for r in self.rollouts],
            "changes": [c.as_json() for c in self.changes],
            "notes": list(self.notes),
        }


def _revision_changes(
    revisions: Mapping[str, Sequence[Revision]], context: str
) -> dict[str, list[IncidentChange]]:
    """Every pipeline revision as a change, per pipeline, oldest first."""
    out: dict[str, list[IncidentChange]] = {}
    for name, revs in revisions.items():
        rows: list[IncidentChange] = []
        for i, r in enumerate(revs):
            target = previous_real(revs[: i + 1])
            pipeline = r.pipeline or name
            rows.append(
                IncidentChange(
                    at=r.created_at,
                    pipeline=pipeline,
                    kind=f"pipeline.{r.operation.value}",
                    author=r.author,
                    message=f"revision {r.id}: {r.operation.value}",
                    revision=r.id,
                    rollback_target=target.id if target else "",
                    source="revisions",
                    command=rollback_command(pipeline, target.id, context=context) if target else "",
                )
            )
        out[name] = rows
    return out


def _journal_changes(entries: Sequence[ChangeEntry], context: str) -> list[IncidentChange]:
    return [
        IncidentChange(
            at=e.at,
            pipeline=e.pipeline,
            kind=e.kind,
            author=e.author,
            message=e.message,
            revision="",
            rollback_target=e.rollback_target,
            source=e.source,
            rollout_id=e.rollout_id,
            command=rollback_command(e.pipeline, e.rollback_target, context=context)
            if e.pipeline and e.rollback_target
            else "",
        )
        for e in entries
        if e.source != "revisions"
    ]


def _rollout_reach(records: RolloutRecords, context: str) -> dict[str, IncidentChange]:
    """collector id -> the newest rollout stage that offered it a configuration."""
    out: dict[str, IncidentChange] = {}
    for v in records.rollouts:
        progress = records.progress.get(v.id)
        if not progress:
            continue
        names = {s.index: s.name for s in v.stages}
        for cid, p in progress.items():
            if p.status == CollectorStatus.PENDING:
                continue
            when = (
                datetime.fromtimestamp(p.offered_at, tz=UTC)
                if p.offered_at
                else (v.updated_at or v.created_at or datetime.fromtimestamp(0, tz=UTC))
            )
            change = IncidentChange(
                at=when,
                pipeline=v.pipeline,
                kind="rollout.stage",
                author=v.author,
                message=f"rollout {v.id} stage {p.stage + 1} ({names.get(p.stage, '?')}): {p.status.value}"
                + (f": {p.error}" if p.error else ""),
                revision=v.result_revision,
                rollback_target=v.rollback_revision,
                source="rollout",
                rollout_id=v.id,
                command=rollback_command(v.pipeline, v.rollback_revision, context=context)
                if v.rollback_revision
                else "",
            )
            old = out.get(cid)
            if old is None or change.at > old.at:
                out[cid] = change
    return out


def _broken(
    c: Collector,
    found: tuple[Problem, ...],
    pipeline_changes: Mapping[str, list[IncidentChange]],
    rollout_reach: Mapping[str, IncidentChange],
    now: datetime,
    rollback_config: CollectorTarget | None,
) -> BrokenCollector:
    best: IncidentChange | None = rollout_reach.get(c.id)
    for name in c.pipelines:
        for ch in reversed(pipeline_changes.get(name, ())):
            if ch.at <= now:
                if best is None or ch.at > best.at:
                    best = ch
                break
    return BrokenCollector(
        id=c.id,
        name=c.name,
        health=c.health,
        env=c.attr("env") or "-",
        region=c.attr("region") or "-",
        pipelines=tuple(c.pipelines),
        reason=problem_reason(c, found[0]),
        last_seen=c.last_seen,
        changed=best,
        rollback_config=rollback_config,
        problems=found,
        config_status=c.remote_config.status,
    )


def build_report(
    snapshot: FleetSnapshot,
    revisions: Mapping[str, Sequence[Revision]],
    *,
    now: datetime,
    hours: float = 24.0,
    records: RolloutRecords | None = None,
    context: str = "",
    collector_targets: Mapping[str, CollectorTarget] | None = None,
) -> IncidentReport:
    """The whole report. ``context`` goes into every rollback command (``--context``) when set.

    ``records``: the rollouts, engine events, progress and collector targets
    (a rollout service's ``records()``); None when there are none.
    ``collector_targets``: what the backend itself knows of them (the records' win where both do)."""
    if hours <= 0:
        raise ValueError("hours must be more than zero")
    since = now - timedelta(hours=hours)
    rec = records or RolloutRecords()
    targets = {**(collector_targets or {}), **rec.collector_targets}
    per_pipeline = _revision_changes(revisions, context)
    reach = _rollout_reach(rec, context)

    health_counts: dict[str, int] = {}
    broken: list[BrokenCollector] = []
    states = dict.fromkeys((s.value for s in CONFIG_STATE_ORDER), 0)
    off: list[tuple[int, OffConfig]] = []
    for c in snapshot.collectors:
        health_counts[c.health.value] = health_counts.get(c.health.value, 0) + 1
        found = problems(c)
        if found:
            broken.append(_broken(c, found, per_pipeline, reach, now, targets.get(c.id)))
        view = collector_state(c)
        states[view.state.value] += 1
        if view.state in OFF_ASSIGNMENT:
            off.append((CONFIG_STATE_ORDER.index(view.state), OffConfig(
                c.id, c.name, c.attr("env") or "-", c.attr("region") or "-", view.state.value, view.reason)))  # fmt: skip
    broken.sort(key=lambda b: (PROBLEM_RANK[b.problem], b.env, b.region, b.name))

    groups: dict[tuple[str, str, str], list[BrokenCollector]] = {}
    for b in broken:
        for p in b.pipelines or ("-",):
            groups.setdefault((b.env, b.region, p), []).append(b)
    group_rows = tuple(
        Group(
            env,
            region,
            p,
            sum(1 for b in bs if b.health == Health.UNHEALTHY),
            sum(1 for b in bs if b.health == Health.OFFLINE),
            tuple(b.name for b in bs),
            config_failed=sum(1 for b in bs if Problem.CONFIG_FAILED in b.problems),
            other_config=sum(1 for b in bs if Problem.OTHER_CONFIG in b.problems),
        )
        for (env, region, p), bs in sorted(groups.items())
    )

    # Changes in the window: pipeline revisions, journal events, rollout stages that reached a broken collector.
    recent: list[IncidentChange] = [
        ch for rows in per_pipeline.values() for ch in rows if since <= ch.at <= now
    ]
    recent += [ch for ch in _journal_changes(rec.events, context) if since <= ch.at <= now]
    reached: dict[str, int] = {}
    for b in broken:
        if b.changed is not None:
            reached[b.changed.key] = reached.get(b.changed.key, 0) + 1
    seen = {ch.key for ch in recent}
    for b in broken:  # a rollout stage that reached a broken collector is a change too, when it is recent
        ch = b.changed
        if ch is not None and ch.source == "rollout" and ch.key not in seen and since <= ch.at <= now:
            recent.append(ch)
            seen.add(ch.key)
    changes = tuple(
        sorted(
            (replace_broken(ch, reached.get(ch.key, 0)) for ch in recent),
            key=lambda ch: (ch.at, ch.pipeline, ch.kind),
            reverse=True,
        )
    )
    broken_out = tuple(
        replace(b, changed=replace_broken(b.changed, reached.get(b.changed.key, 0)))
        if b.changed is not None
        else b
        for b in broken
    )

    active = [v for v in rec.rollouts if v.state in ACTIVE_STATES and v.state.value in ("running", "paused")]
    rollout_rows = tuple(
        RolloutLine(
            id=v.id,
            pipeline=v.pipeline,
            state=v.state.value,
            stage=v.current_stage + 1,
            stages=len(v.stages),
            applied=sum(s.applied for s in v.stages),
            total=sum(s.total for s in v.stages),
            failed=v.failed,
            reason=v.reason,
            rollback_target=v.rollback_revision,
            command=rollback_command(v.pipeline, v.rollback_revision, context=context)
            if v.rollback_revision
            else "",
        )
        for v in active
    )

    notes: list[str] = []
    if snapshot.stale:
        notes.append(
            f"the data is stale ({snapshot.stale_reason}); what you see is {age_text(snapshot.fetched_at, now)} old"
        )
    if records is None:
        notes.append("no rollout journal: rollouts and rollback events are not shown")
    elif records.error:
        notes.append(f"rollouts could not be read: {records.error}")

    h = snapshot.health
    return IncidentReport(
        now=now,
        hours=hours,
        context=context,
        backend=snapshot.backend,
        backend_ok=h.ok and not snapshot.stale,
        backend_status=h.status,
        backend_message=h.message,
        fetched_at=snapshot.fetched_at,
        stale=snapshot.stale,
        stale_reason=snapshot.stale_reason,
        total=len(snapshot.collectors),
        health_counts=health_counts,
        broken=broken_out,
        groups=group_rows,
        rollouts=rollout_rows,
        changes=changes,
        notes=tuple(notes),
        config_states=states,
        off_config=tuple(o for _, o in sorted(off, key=lambda x: (x[0], x[1].env, x[1].region, x[1].name))),
    )


def replace_broken(ch: IncidentChange, n: int) -> IncidentChange:
    return ch if ch.broken == n else replace(ch, broken=n)


def context_for_commands(settings: Any) -> str:
    """What makes a printed command reach this cockpit's backend (the ``context`` of
    :func:`rollback_command`): the context's name when the cockpit was started from one, else the
    options ``--source B --url U``; nothing for the implicit demo."""
    if settings.implicit_demo:
        return ""
    if settings.from_context:
        return str(settings.context.name)
    return shlex.join(shlex.split(settings.command())[1:])  # drop "otelcockpit"


async def report_for(
    settings: Any,
    snapshot: FleetSnapshot,
    revisions: Mapping[str, Sequence[Revision]],
    *,
    hours: float,
    now: datetime,
    rollouts: Any = None,
    backend: Any = None,
) -> IncidentReport:
    """The report for a resolved ``Settings``; ``rollouts``: the backend's rollout service (the
    records come from wherever its engine runs: this process's journal or ``otelcockpit serve``).
    Records that cannot be read leave the report with a note, never an exception."""
    import asyncio

    from otelcockpit.errors import CockpitError

    context = context_for_commands(settings)
    rec: RolloutRecords | None = None
    if rollouts is not None:
        try:
            rec = await rollouts.records(
                snapshot.collectors, since=now - timedelta(hours=hours), now=now, with_progress=True
            )
        except CockpitError as exc:
            rec = RolloutRecords(error=exc.message)
    own = getattr(backend, "collector_targets", None)  # a backend that knows them itself (the demo)
    targets = own([c for c in snapshot.collectors if problems(c)]) if callable(own) else None
    return await asyncio.to_thread(
        lambda: build_report(
            snapshot, revisions, now=now, hours=hours, records=rec, context=context, collector_targets=targets
        )
    )
