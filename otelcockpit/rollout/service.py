"""The rollout service: every operation on a rollout, written once.

The CLI, the TUI and the OpAMP server's admin API are faces; they all call :class:`Rollouts`
operations and never choose between engines themselves. Two implementations stand behind it:

* :class:`RolloutService` (this module): the engine runs in this process over a
  :class:`RolloutFleet` (where the collectors live) and journals every step in SQLite. The cockpit
  uses it for the demo and Fleet Management; ``otelcockpit serve`` uses the very same class for its
  agents, so the OpAMP rollouts follow the same rules.
* the remote one (``otelcockpit.backends.opamp_rollouts``): a client of a server's admin API, whose
  routes call a :class:`RolloutService` inside the server.

A backend brings its own (``FleetBackend.rollouts``). What the operations guarantee, on every
backend: a plan has the safe defaults unless told otherwise (:mod:`otelcockpit.rollout.options`);
a push refused by a policy error never starts; a rollback first stops the rollout in flight, names
its target and its blast radius, refuses the live revision, and marks the revision it left as bad;
a paused rollout keeps being observed; every write records who did it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from otelcockpit.errors import CockpitError, PushRefused, ReadOnlyError, UsageError
from otelcockpit.fleet.model import Collector, CollectorTarget, FleetSnapshot, Pipeline, Revision, rfc3339
from otelcockpit.rollout.engine import RolloutEngine, Target, build_view, encode_request
from otelcockpit.rollout.history import (
    SOURCE_WORDS,
    ChangeEntry,
    PipelineTarget,
    pipeline_target,
    timeline,
)
from otelcockpit.rollout.journal import LIVE_RUNNERS, Journal
from otelcockpit.rollout.model import (
    ACTIVE_STATES,
    CollectorProgress,
    RolloutPlan,
    RolloutState,
    RolloutView,
)
from otelcockpit.rollout.options import SAFE_DEFAULTS, PlanOptions
from otelcockpit.rollout.planner import Member, plan_members, policy_findings

STOP_WAIT_SECONDS = 30.0
ROLLOUTS_LISTED = 50
REACH_ROLLOUTS = 10


# ---- requests and results --------------------------------------------------------------------------
@dataclass(frozen=True)
class PushRequest:
    """A new version of a pipeline and how to roll it out."""

    pipeline: str
    contents: str
    options: PlanOptions = PlanOptions()
    author: str = ""
    production: bool = False

    def as_json(self, defaults: PlanOptions = SAFE_DEFAULTS) -> dict[str, Any]:
        """The wire form: the options made explicit with the client's defaults."""
        return {
            "pipeline": self.pipeline,
            "contents": self.contents,
            "options": self.options.explicit(defaults).as_json(),
            "requested_by": self.author,
            "production": self.production,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], *, author: str) -> PushRequest:
        pipeline = d.get("pipeline") or d.get("config")
        if not isinstance(pipeline, str) or not pipeline:
            raise UsageError("'pipeline' must be a non-empty string")
        contents = d.get("contents")
        if not isinstance(contents, str):
            raise UsageError("'contents' must be the new contents as a string")
        raw = d.get("options") or {}
        if not isinstance(raw, Mapping):
            raise UsageError("'options' must be an object")
        return cls(pipeline, contents, PlanOptions.from_json(raw), author, bool(d.get("production", False)))


@dataclass(frozen=True)
class ActionResult:
    message: str
    view: RolloutView


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback will do, shown before it is confirmed."""

    pipeline: str
    live_revision: str
    target: Revision
    source: str  # journal | applied | previous | chosen | rollout
    collectors: int
    by_env: Mapping[str, int]
    by_region: Mapping[str, int]
    aborts: tuple[str, ...] = ()  # rollouts in flight that are stopped first

    @property
    def target_revision(self) -> str:
        return self.target.id

    def describe(self) -> str:
        where = ", ".join(f"{k} {v}" for k, v in list(self.by_env.items())[:4]) or "-"
        regions = ", ".join(f"{k} {v}" for k, v in list(self.by_region.items())[:4]) or "-"
        head = (
            f"Roll {self.pipeline} back from revision {self.live_revision} to revision {self.target.id}"
            f" ({SOURCE_WORDS.get(self.source, self.source)}, by {self.target.author or '-'})."
        )
        if self.aborts and (self.source == "rollout" or self.target.id == self.live_revision):
            head = (
                f"Abort rollout {', '.join(self.aborts)} of {self.pipeline}: its staged collectors go back to "
                f"revision {self.target.id}, the live one."
            )
        elif self.aborts:
            head += f" Rollout {', '.join(self.aborts)} in flight is aborted first."
        return f"{head}\nIt reaches {self.collectors} collector(s): env {where}; region {regions}."

    def as_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "live_revision": self.live_revision,
            "to_revision": self.target.id,
            "to_author": self.target.author,
            "to_created_at": rfc3339(self.target.created_at),
            "source": self.source,
            "collectors": self.collectors,
            "by_env": dict(self.by_env),
            "by_region": dict(self.by_region),
            "aborts": list(self.aborts),
            "description": self.describe(),
        }


@dataclass(frozen=True)
class RollbackResult:
    pipeline: str
    from_revision: str
    to_revision: str
    source: str
    new_revision: str
    aborted: tuple[str, ...] = ()
    author: str = ""

    def message(self) -> str:
        if self.aborted and (self.source == "rollout" or self.from_revision == self.to_revision):
            return (
                f"aborted rollout {', '.join(self.aborted)} of {self.pipeline}: its collectors are back on "
                f"revision {self.to_revision}, the live one"
            )
        text = (
            f"rolled back {self.pipeline} from revision {self.from_revision} to revision {self.to_revision}"
            f" ({SOURCE_WORDS.get(self.source, self.source)})"
        )
        if self.new_revision and self.new_revision != self.to_revision:
            text += f"; the pipeline's live revision is now {self.new_revision}"
        if self.aborted:
            text += f"; rollout {', '.join(self.aborted)} was aborted first"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "from_revision": self.from_revision,
            "to_revision": self.to_revision,
            "source": self.source,
            "new_revision": self.new_revision,
            "aborted": list(self.aborted),
            "author": self.author,
            "message": self.message(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RollbackResult:
        return cls(
            str(d.get("pipeline", "")),
            str(d.get("from_revision", "")),
            str(d.get("to_revision", "")),
            str(d.get("source", "")),
            str(d.get("new_revision", "")),
            tuple(str(x) for x in d.get("aborted") or ()),
            str(d.get("author", "")),
        )


@dataclass(frozen=True)
class RolloutRecords:
    """What a face shows of rollouts: the rollouts (newest first), the change timeline (oldest
    first), which collectors each recent rollout reached, and every collector's own rollback target."""

    rollouts: tuple[RolloutView, ...] = ()
    events: tuple[ChangeEntry, ...] = ()
    progress: Mapping[str, Mapping[str, CollectorProgress]] = field(default_factory=dict)
    collector_targets: Mapping[str, CollectorTarget] = field(default_factory=dict)
    pipeline_targets: Mapping[str, PipelineTarget] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class PlanInputs:
    """What a fleet tells the planner about one new version."""

    live: Pipeline | None
    new: Pipeline
    base_revision: str
    members: Sequence[Member]
    dropped: int = 0
    by_type: Mapping[str, int] | None = None
    snapshot: FleetSnapshot | None = None  # for the policy checks that look at the fleet
    # member id -> the components it can run (OpAMP AvailableComponents), None for a member that does
    # not say; None: this fleet reports no components at all.
    available: Mapping[str, frozenset[str] | None] | None = None


class RolloutFleet(Protocol):
    """Where the collectors of a local rollout live (a cockpit backend, or the OpAMP server's hub)."""

    backend: str
    context: str
    target: Target
    # True when collectors left out of a plan stay off the new version after the fold (the OpAMP server
    # never offers a config to an agent that lacks one of its components); False elsewhere.
    holds_back: bool

    async def plan_inputs(self, pipeline: str, contents: str) -> PlanInputs: ...

    async def revisions(self, pipeline: str) -> tuple[Revision, ...]: ...  # oldest first; the last is live

    async def all_revisions(self) -> Mapping[str, Sequence[Revision]]: ...  # every pipeline's, with drafts

    async def reached_by(self, pipeline: str) -> Sequence[Member]: ...  # collectors its live version reaches

    async def commit_new(self, plan: RolloutPlan, author: str) -> RolloutPlan: ...  # the new version exists

    async def applied_everywhere(self, pipeline: str) -> Sequence[str]: ...  # revisions every collector applied

    async def collector_targets(self, journal: Journal) -> Mapping[str, CollectorTarget]: ...

    async def extra_changes(self, since: datetime | None) -> Sequence[ChangeEntry]: ...


Spawn = Callable[[Awaitable[Any]], Any]
ProgressCallback = Callable[[RolloutView], None]


class Rollouts(Protocol):
    """Every operation on rollouts; what every face calls."""

    runs_in_background: bool  # True: the rollout goes on without the caller (a server, a worker)

    async def plan(self, req: PushRequest) -> RolloutPlan: ...

    async def start(self, req: PushRequest, *, reviewed: RolloutPlan | None = None) -> RolloutView: ...

    async def follow(self, rollout_id: str, on_progress: ProgressCallback | None = None) -> RolloutView: ...

    async def pause(self, rollout_id: str, author: str) -> ActionResult: ...

    async def resume(self, rollout_id: str, author: str) -> ActionResult: ...

    async def abort(self, rollout_id: str, author: str) -> ActionResult: ...

    async def rollback_plan(self, pipeline: str, to: str | None = None) -> RollbackPlan: ...

    async def rollback(self, plan: RollbackPlan, author: str) -> RollbackResult: ...

    async def rollback_plan_for(self, rollout_id: str) -> RollbackPlan: ...

    async def view(self, rollout_id: str) -> RolloutView: ...

    async def progress(self, rollout_id: str) -> list[CollectorProgress]: ...

    async def list(self, *, every_context: bool = False) -> list[RolloutView]: ...

    async def records(
        self, collectors: Iterable[Collector], *, since: datetime, now: datetime, with_progress: bool = False
    ) -> RolloutRecords: ...

    async def changes(self, since: datetime | None) -> list[ChangeEntry]: ...

    async def targets(self) -> tuple[dict[str, PipelineTarget], dict[str, CollectorTarget]]: ...

    async def close(self) -> None: ...


def rollback_revision(revisions: Sequence[Revision], to: str, pipeline: str) -> Revision:
    """``--to``: a revision id, ``vN`` or ``PIPELINE@N`` (the OpAMP spellings); a one-line error naming
    the recent ones otherwise."""
    wanted = to.strip().removeprefix(f"{pipeline}@").removeprefix("v")
    for r in revisions:
        if r.id in (to, wanted):
            return r
    known = ", ".join(r.id for r in list(revisions)[-8:]) or "none"
    raise UsageError(f"--to {to}: not a revision of {pipeline} (recent: {known})")


def _same_contents(a: Revision, b: Revision) -> bool:
    if a.snapshot is None or b.snapshot is None:
        return False
    x, y = a.snapshot, b.snapshot
    return (x.contents, tuple(x.matchers), x.enabled) == (y.contents, tuple(y.matchers), y.enabled)


def _counts(members: Sequence[Member], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in members:
        v = m.attr(key) or "-"
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


class RolloutService:
    """The operations, with the engine in this process. ``spawn`` (a server's task, a TUI worker)
    runs rollouts in the background; without it the caller runs them with :meth:`follow`."""

    def __init__(
        self,
        journal: Journal,
        fleet: RolloutFleet,
        *,
        defaults: PlanOptions = SAFE_DEFAULTS,
        read_only: bool = False,
        poll_interval: float = 1.0,
        spawn: Spawn | None = None,
        on_progress: ProgressCallback | None = None,
        clock: Callable[[], float] = time.time,
        close_journal: bool = True,
    ) -> None:
        self.journal = journal
        self.fleet = fleet
        self.defaults = defaults
        self.read_only = read_only
        self.spawn = spawn
        self.runs_in_background = spawn is not None
        self.on_progress = on_progress
        self._listeners: list[ProgressCallback] = []
        self.engine = RolloutEngine(
            journal, fleet.target, poll_interval=poll_interval, on_progress=self._progress, clock=clock
        )
        self.poll_interval = poll_interval
        self._drives: dict[str, asyncio.Event] = {}  # rollouts driven here -> "resume" signal while paused
        self._resumed_by: dict[str, str] = {}  # rollout -> who resumed it (the engine records it)
        self._close_journal = close_journal

    # ---- internals --------------------------------------------------------------------------------
    def _progress(self, view: RolloutView) -> None:
        if self.on_progress is not None:
            self.on_progress(view)
        for listener in list(self._listeners):
            listener(view)

    def _write(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyError(f"read-only: refused to {what}")

    def _mine(self, rollout_id: str) -> Any:
        rec = self.journal.get(rollout_id)
        if rec is None or (rec.backend, rec.context) != (self.fleet.backend, self.fleet.context):
            if rec is not None:
                raise UsageError(
                    f"rollout {rollout_id} runs on {rec.backend}"
                    + (f" (context {rec.context}): use --context {rec.context}" if rec.context else "")
                )
            raise UsageError(f"no rollout {rollout_id!r}")
        return rec

    async def _drive(
        self, rollout_id: str, on_progress: ProgressCallback | None = None, *, watch_only: bool = False
    ) -> RolloutView:
        """Run a rollout until it stops; while it is paused here, keep observing it (its progress
        stays true) until it is resumed (run again), aborted, rolled back or completed. ``watch_only``:
        take over the observing of a paused rollout whose watcher is gone (several server nodes)."""
        if on_progress is not None:
            self._listeners.append(on_progress)
        resume = self._drives.setdefault(rollout_id, asyncio.Event())
        token = secrets.token_hex(8)
        try:
            while True:
                resume.clear()
                if watch_only:
                    watch_only = False
                    rec = self.journal.require(rollout_id)
                    if rec.state != RolloutState.PAUSED or not self.journal.watch(rollout_id, token, rec.runner_token):
                        return self.engine.view(rollout_id)
                    expected = token
                else:
                    view = await self.engine.run(rollout_id, actor=self._resumed_by.pop(rollout_id, ""))
                    if view.state != RolloutState.PAUSED or not self.runs_in_background:
                        return view
                    expected = self.journal.require(rollout_id).runner_token  # the run's, just ended
                LIVE_RUNNERS.add(token)
                try:
                    while not resume.is_set():
                        if not self.journal.watch(rollout_id, token, expected):
                            return self.engine.view(rollout_id)  # resumed, ended, or watched elsewhere
                        expected = token
                        try:
                            await asyncio.wait_for(resume.wait(), self.poll_interval)
                        except TimeoutError:
                            pass
                        if resume.is_set():
                            break
                        try:
                            await self.engine.observe_once(rollout_id)
                        except CockpitError:
                            pass  # the fleet cannot be read right now: the next look may succeed
                finally:
                    LIVE_RUNNERS.discard(token)
        finally:
            self._drives.pop(rollout_id, None)
            if on_progress is not None and on_progress in self._listeners:
                self._listeners.remove(on_progress)

    def take_over(self) -> list[str]:
        """Rollouts whose runner or watcher is gone (its server node died) continue here: a running
        one from its journal (no stage repeated, nothing offered twice), a paused one stays paused and
        is observed. For a background service shared by several server nodes."""
        taken: list[str] = []
        if self.spawn is None:
            return taken
        for rec in self.journal.list(limit=ROLLOUTS_LISTED):
            if rec.id in self._drives or (rec.backend, rec.context) != (self.fleet.backend, self.fleet.context):
                continue
            if rec.state == RolloutState.RUNNING and not self.journal.runner_alive(rec):
                self.journal.event(rec.id, rec.pipeline, "rollout.taken_over", "", "", "its runner is gone; continued")
                self.spawn(self._drive(rec.id))
                taken.append(rec.id)
            elif rec.state == RolloutState.PAUSED and rec.runner_pid > 0 and not self.journal.runner_alive(rec):
                self.spawn(self._drive(rec.id, watch_only=True))
                taken.append(rec.id)
        return taken

    async def _until_claimed(self, rollout_id: str, timeout: float = 10.0) -> None:
        """Wait until a background runner took the rollout (so the answer says ``running``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = self.journal.get(rollout_id)
            if rec is None or rec.state != RolloutState.PLANNED and (
                rec.state != RolloutState.PAUSED or rollout_id not in self._drives
            ):
                return
            await asyncio.sleep(0.01)

    async def _stop(self, rollout_id: str, what: str, reason: str, actor: str = "") -> None:
        """Stop a rollout (``abort``) wherever it runs: a runner is asked and waited for; a rollout
        nobody runs is cleaned up here."""
        rec = self.journal.require(rollout_id)
        if rec.state not in ACTIVE_STATES:
            return
        if rec.state == RolloutState.RUNNING and self.journal.runner_alive(rec):
            self.journal.request(rollout_id, encode_request(what, actor, reason))
            deadline = time.monotonic() + STOP_WAIT_SECONDS
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                now = self.journal.require(rollout_id)
                if now.state != RolloutState.RUNNING:
                    break
            else:
                raise CockpitError(
                    f"rollout {rollout_id} is running in process {rec.runner_pid} on {rec.runner_host}, which did not "
                    f"{what} it within {STOP_WAIT_SECONDS:g}s"
                )
        rec = self.journal.require(rollout_id)
        if what == "abort" and rec.state in ACTIVE_STATES:
            await self.engine.abort(rollout_id, reason, actor)

    # ---- planning and starting ---------------------------------------------------------------
    async def plan(self, req: PushRequest) -> RolloutPlan:
        canary, waves, gates = req.options.resolve(self.defaults)
        inputs = await self.fleet.plan_inputs(req.pipeline, req.contents)
        if not inputs.new.contents.strip():
            raise UsageError(f"pipeline {req.pipeline!r}: the new contents are empty")
        return plan_members(
            inputs.new,
            inputs.members,
            base=inputs.live,
            base_revision=inputs.base_revision,
            canary=canary,
            waves=waves,
            gates=gates,
            findings=policy_findings(inputs.new, inputs.snapshot, production=req.production),
            dropped=inputs.dropped,
            by_type=inputs.by_type,
            all_at_once=req.options.all_at_once,
            available=inputs.available,
            missing_components=req.options.missing_choice(self.defaults),
            can_hold_back=bool(getattr(self.fleet, "holds_back", False)),
        )

    async def start(self, req: PushRequest, *, reviewed: RolloutPlan | None = None) -> RolloutView:
        self._write(f"start a rollout of {req.pipeline}")
        plan = await self.plan(req)
        plan.check_startable()
        if reviewed is not None and (
            reviewed.version_key != plan.version_key
            or reviewed.collector_count != plan.collector_count
            or reviewed.base_revision != plan.base_revision
        ):
            raise PushRefused(
                f"refused: the plan changed since it was reviewed ({reviewed.collector_count} -> "
                f"{plan.collector_count} collector(s), live revision {reviewed.base_revision or '-'} -> "
                f"{plan.base_revision or '-'}): review it again"
            )
        # Undoing a rollout returns its collectors to what ran before it: the revision live when it was
        # planned (for a pipeline without one, its rollback target).
        rollback_to = plan.base_revision
        if not rollback_to:
            revisions = await self.fleet.revisions(plan.pipeline)
            target = pipeline_target(
                self.journal,
                plan.pipeline,
                revisions,
                applied_everywhere=await self.fleet.applied_everywhere(plan.pipeline),
            )
            rollback_to = target.revision.id if target.revision else ""
        plan = await self.fleet.commit_new(plan, req.author)
        rid = self.engine.create(
            plan,
            backend=self.fleet.backend,
            context=self.fleet.context,
            author=req.author,
            rollback_revision=rollback_to,
        )
        if self.spawn is not None:
            self.spawn(self._drive(rid))
            await self._until_claimed(rid)
        return self.engine.view(rid)

    async def follow(self, rollout_id: str, on_progress: ProgressCallback | None = None) -> RolloutView:
        """Run the rollout here until it stops (completes, pauses, is aborted); with a background
        runner, wait for that instead."""
        if self.spawn is None:
            self._mine(rollout_id)
            if on_progress is not None:
                self._listeners.append(on_progress)
            try:
                return await self.engine.run(rollout_id, actor=self._resumed_by.pop(rollout_id, ""))
            finally:
                if on_progress is not None:
                    self._listeners.remove(on_progress)
        while True:
            view = self.engine.view(rollout_id)
            if on_progress is not None:
                on_progress(view)
            if view.state not in (RolloutState.RUNNING, RolloutState.PLANNED):
                return view
            await asyncio.sleep(self.poll_interval)

    # ---- operator actions ----------------------------------------------------------------------
    async def pause(self, rollout_id: str, author: str) -> ActionResult:
        self._write(f"pause rollout {rollout_id}")
        rec = self._mine(rollout_id)
        message = self.engine.pause(rollout_id, f"paused by {author or 'an operator'}", author)
        if rec.state == RolloutState.RUNNING and self.journal.runner_alive(rec):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.journal.require(rollout_id).state == RolloutState.RUNNING:
                await asyncio.sleep(0.05)
            if self.journal.require(rollout_id).state == RolloutState.PAUSED:
                message = f"paused rollout {rollout_id}"
        return ActionResult(message, self.engine.view(rollout_id))

    async def resume(self, rollout_id: str, author: str) -> ActionResult:
        """Resume a paused rollout. In the background when this service has a runner; else the
        caller runs it with :meth:`follow`."""
        self._write(f"resume rollout {rollout_id}")
        rec = self._mine(rollout_id)
        if rec.state == RolloutState.RUNNING and self.journal.runner_alive(rec):
            raise CockpitError(f"rollout {rollout_id} is already running")
        if rec.state not in ACTIVE_STATES:
            raise CockpitError(f"rollout {rollout_id} is {rec.state.value}: there is nothing to resume")
        busy = [r for r in self.journal.active_for(rec.pipeline) if r.id != rollout_id and r.state == RolloutState.RUNNING]
        if busy:
            raise CockpitError(f"rollout {busy[0].id} of {rec.pipeline} is running; pause or abort it first")
        self._resumed_by[rollout_id] = author
        if self.spawn is None:
            return ActionResult(f"resuming rollout {rollout_id}", self.engine.view(rollout_id))
        signal = self._drives.get(rollout_id)
        if signal is not None:
            signal.set()  # it is driven here and watched while paused: continue that drive
        else:
            self.spawn(self._drive(rollout_id))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.journal.require(rollout_id).state == RolloutState.PAUSED:
            await asyncio.sleep(0.01)
        view = self.engine.view(rollout_id)
        return ActionResult(f"resumed rollout {rollout_id}: it is {view.state.value}", view)

    async def abort(self, rollout_id: str, author: str) -> ActionResult:
        self._write(f"abort rollout {rollout_id}")
        rec = self._mine(rollout_id)
        if rec.state not in ACTIVE_STATES:
            raise CockpitError(f"rollout {rollout_id} is {rec.state.value}: it cannot be aborted")
        await self._stop(rollout_id, "abort", f"aborted by {author or 'an operator'}", author)
        view = self.engine.view(rollout_id)
        return ActionResult(
            f"aborted rollout {rollout_id}: staged collectors are back on revision {rec.plan.base_revision or '-'} "
            f"of {rec.pipeline}",
            view,
        )

    # ---- rollback ----------------------------------------------------------------------------------
    async def rollback_plan(self, pipeline: str, to: str | None = None) -> RollbackPlan:
        revisions = await self.fleet.revisions(pipeline)
        if not revisions:
            raise UsageError(f"no pipeline {pipeline!r} with revisions on {self.fleet.backend}")
        live = revisions[-1]
        in_flight = [
            r.id
            for r in self.journal.active_for(pipeline)
            if (r.backend, r.context) == (self.fleet.backend, self.fleet.context)
        ]
        if to is not None:
            everything = (await self.fleet.all_revisions()).get(pipeline) or revisions
            rev = rollback_revision(everything, to, pipeline)
            source = "chosen"
            if rev.snapshot is None:
                raise UsageError(f"--to {to}: that revision has no contents to return to")
        elif in_flight:
            rec = self.journal.require(in_flight[0])
            wanted = rec.plan.base_revision
            rev = next((r for r in revisions if r.id == wanted), live)
            source = "rollout"
        else:
            t = pipeline_target(
                self.journal, pipeline, revisions, applied_everywhere=await self.fleet.applied_everywhere(pipeline)
            )
            if t.revision is None:
                raise CockpitError(f"{pipeline} has no earlier revision to roll back to")
            rev, source = t.revision, t.source
        same_as_live = rev.id == live.id or _same_contents(rev, live)
        if same_as_live and not in_flight:
            raise CockpitError(
                f"refused: revision {rev.id} is what {pipeline} runs now (live revision {live.id}): nothing to roll back"
            )
        members = await self.fleet.reached_by(pipeline)
        return RollbackPlan(
            pipeline=pipeline,
            live_revision=live.id,
            target=rev,
            source=source,
            collectors=len(members),
            by_env=_counts(members, "env"),
            by_region=_counts(members, "region"),
            aborts=tuple(in_flight),
        )

    async def rollback_plan_for(self, rollout_id: str) -> RollbackPlan:
        """Rolling a rollout back returns its collectors to what ran before it: the revision that
        was live when it was planned (an in-flight rollout is aborted)."""
        rec = self._mine(rollout_id)
        if rec.state in ACTIVE_STATES:
            return await self.rollback_plan(rec.pipeline)
        base = rec.plan.base_revision or rec.rollback_revision
        if not base:
            raise CockpitError(f"rollout {rollout_id} has no earlier revision to roll back to")
        return await self.rollback_plan(rec.pipeline, base)

    async def rollback(self, plan: RollbackPlan, author: str) -> RollbackResult:
        self._write(f"roll back {plan.pipeline}")
        revisions = await self.fleet.revisions(plan.pipeline)
        live = revisions[-1].id if revisions else ""
        if live != plan.live_revision:
            raise PushRefused(
                f"refused: the live revision of {plan.pipeline} is {live or '-'} now, not {plan.live_revision}: "
                "look at it again"
            )
        aborted: list[str] = []
        for rid in plan.aborts:
            rec = self.journal.get(rid)
            if rec is not None and rec.state in ACTIVE_STATES:
                await self._stop(rid, "abort", f"aborted by a rollback of {plan.pipeline} by {author or '-'}", author)
                self.journal.set_state(
                    rid,
                    RolloutState.ROLLED_BACK,
                    f"rolled back by {author or '-'}: its collectors are back on revision {plan.target.id}",
                )
                aborted.append(rid)
        if aborted:
            revisions = await self.fleet.revisions(plan.pipeline)
            now_live = revisions[-1] if revisions else None
            if now_live is not None and (now_live.id == plan.target.id or _same_contents(now_live, plan.target)):
                # aborting was the whole rollback: every collector is back on the target already
                self.journal.event(
                    aborted[0], plan.pipeline, "pipeline.rollback", author, f"pipeline {plan.pipeline}",
                    f"rolled back rollout {', '.join(aborted)} of {plan.pipeline}: back on revision {plan.target.id}",
                    plan.target.id,
                )  # fmt: skip
                return RollbackResult(
                    plan.pipeline, live, plan.target.id, plan.source, now_live.id, tuple(aborted), author
                )
        new_rev = await self.engine.rollback(
            plan.pipeline,
            revision=plan.target.id,
            snapshot=plan.target.snapshot,
            author=author,
            rolled_back_from=live,
        )
        return RollbackResult(plan.pipeline, live, plan.target.id, plan.source, new_rev, tuple(aborted), author)

    # ---- reading ---------------------------------------------------------------------------------
    async def view(self, rollout_id: str) -> RolloutView:
        self.journal.require(rollout_id)
        return self.engine.view(rollout_id)

    async def progress(self, rollout_id: str) -> list[CollectorProgress]:
        self.journal.require(rollout_id)
        return list(self.journal.load_progress(rollout_id).values())

    async def list(self, *, every_context: bool = False) -> list[RolloutView]:
        """The newest rollouts of this backend and context (``every_context``: of the whole journal)."""
        mine = (self.fleet.backend, self.fleet.context)
        return [
            build_view(self.journal, r, failures=20)
            for r in self.journal.list(limit=ROLLOUTS_LISTED)
            if every_context or (r.backend, r.context) == mine or not r.context
        ]

    async def changes(self, since: datetime | None) -> list[ChangeEntry]:
        revisions = await self.fleet.all_revisions()
        out = timeline(self.journal, revisions, since=since)
        out.extend(await self.fleet.extra_changes(since))
        out.sort(key=lambda c: (c.at, c.source, c.kind))
        return out

    async def targets(self) -> tuple[dict[str, PipelineTarget], dict[str, CollectorTarget]]:
        revisions = await self.fleet.all_revisions()
        pipelines: dict[str, PipelineTarget] = {}
        for name in sorted(revisions):
            live = await self.fleet.revisions(name)
            if live:
                pipelines[name] = pipeline_target(
                    self.journal, name, live, applied_everywhere=await self.fleet.applied_everywhere(name)
                )
        return pipelines, dict(await self.fleet.collector_targets(self.journal))

    async def records(
        self, collectors: Iterable[Collector], *, since: datetime, now: datetime, with_progress: bool = False
    ) -> RolloutRecords:
        views = tuple(await self.list())
        events = tuple(await self.changes(since))
        progress: dict[str, Mapping[str, CollectorProgress]] = {}
        if with_progress:
            recent = [v for v in views if (v.updated_at or v.created_at or since) >= since][:REACH_ROLLOUTS]
            progress = {v.id: self.journal.load_progress(v.id) for v in recent}
        pipelines, targets = await self.targets()
        return RolloutRecords(views, events, progress, targets, pipelines)

    async def close(self) -> None:
        if self._close_journal:
            self.journal.close()
