"""The staged rollout engine: backend-agnostic, pure asyncio, every step journaled.

The engine drives a :class:`Target` (a small interface a backend adapter implements) through a
:class:`~otelcockpit.rollout.model.RolloutPlan`: prepare, then each stage (offer the new version
to the stage's collectors, watch them), then finalize (fold the change into the pipeline).

Success and failure of one collector, exactly as issue 6 says:

* success: it reports APPLIED with the target hash and, where it reports health and health is
  required, stays healthy for the soak time (without status reports, as on Fleet Management
  v1: the soak time after the offer);
* failure: FAILED with the target hash; no APPLIED within the apply timeout; unhealthy during
  the soak; or a supervisor's automatic rollback: APPLIED with the previous hash after the
  target hash was seen.

Failures above ``max_failures`` pause the rollout. A hash (and a version) that failed on a
collector is recorded and never offered to it again automatically: on resume it stays failed,
and later rollouts of the same version hold it back. When every stage is done but some
collectors failed or were held back, the engine pauses before folding the change into the
pipeline (which would reach them too): folding is then the operator's explicit decision.
Pause, resume, abort and rollback are explicit operator actions; nothing resumes by itself
after a crash.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from otelcockpit.errors import CockpitError
from otelcockpit.fleet.model import Pipeline
from otelcockpit.rollout.journal import LIVE_RUNNERS, Journal, RolloutRecord
from otelcockpit.rollout.model import (
    ACTIVE_STATES,
    TERMINAL,
    CollectorProgress,
    CollectorStatus,
    RolloutPlan,
    RolloutState,
    RolloutView,
    Stage,
    StageProgress,
    stage_state,
)

APPLIED, APPLYING, FAILED = "applied", "applying", "failed"
UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class Observation:
    """What a collector reports. ``status``/``hash`` empty and ``health`` None when not reported."""

    status: str = ""  # applied | applying | failed | unset | ""
    hash: str = ""
    error: str = ""
    health: str | None = None  # healthy | degraded | unhealthy | offline | unknown | None


@runtime_checkable
class Target(Protocol):
    """The seam between the engine and a backend. Every method must be safe to call again after
    a crash: it looks at what is there first and only does what is missing."""

    name: str
    reports_status: bool  # observe() reports config status and hash
    reports_health: bool  # observe() reports health

    async def live_pipeline(self, name: str) -> Pipeline | None: ...

    async def prepare(self, rollout: RolloutRecord) -> None: ...

    async def stage_apply(
        self, rollout: RolloutRecord, stage: Stage, collector_ids: Sequence[str]
    ) -> Mapping[str, str]:
        """Offer the new version to these collectors; the hash offered to each ('' when unknown)."""
        ...

    async def observe(self, collector_ids: Sequence[str]) -> Mapping[str, Observation]: ...

    async def finalize(self, rollout: RolloutRecord) -> str:
        """Fold the change into the pipeline and remove temporary parts; the new revision id."""
        ...

    async def cleanup(self, rollout: RolloutRecord) -> None:
        """Abort: every collector back on the live version, temporary parts removed."""
        ...

    async def rollback(self, pipeline: str, snapshot: Pipeline | None, *, author: str = "") -> str:
        """Make ``snapshot`` the live version (None: delete the pipeline); the new revision id."""
        ...


def new_rollout_id() -> str:
    return "r" + secrets.token_hex(4)


ProgressCallback = Callable[[RolloutView], None]


class RolloutEngine:
    def __init__(
        self,
        journal: Journal,
        target: Target,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_interval: float = 1.0,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.journal = journal
        self.target = target
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval
        self.on_progress = on_progress
        self._applied_seen: dict[str, str] = {}
        # A rollout whose runner is cancelled (its process stops) is paused, unless other server nodes
        # share the journal and take it over.
        self.pause_on_cancel = True

    # ---- creating and reading -----------------------------------------------------------------
    def create(
        self,
        plan: RolloutPlan,
        *,
        backend: str,
        context: str = "",
        author: str = "",
        rollout_id: str | None = None,
        rollback_revision: str = "",
    ) -> str:
        plan.check_startable()
        busy = [r for r in self.journal.active_for(plan.pipeline) if (r.backend, r.context) == (backend, context)]
        if busy:
            b = busy[0]
            raise CockpitError(
                f"refused: rollout {b.id} of {plan.pipeline} is {b.state.value}; resume, abort or roll it back first"
            )
        rid = rollout_id or new_rollout_id()
        self.journal.create(
            rid, plan, backend=backend, context=context, author=author, rollback_revision=rollback_revision
        )
        return rid

    def view(self, rollout_id: str, *, failures: int = 200) -> RolloutView:
        return build_view(self.journal, self.journal.require(rollout_id), failures=failures)

    # ---- running --------------------------------------------------------------------------------
    async def run(self, rollout_id: str, *, actor: str = "") -> RolloutView:
        """Start or resume: runs until the rollout completes, pauses (gate, operator) or is aborted."""
        rec = self.journal.require(rollout_id)
        if rec.state not in ACTIVE_STATES:
            raise CockpitError(f"rollout {rollout_id} is {rec.state.value}: there is nothing to resume")
        token = secrets.token_hex(8)
        LIVE_RUNNERS.add(token)
        try:
            was = rec.state
            rec = self.journal.claim(rollout_id, token)
            progress = self.journal.load_progress(rollout_id)
            failed_now = sum(1 for p in progress.values() if p.status == CollectorStatus.FAILED)
            if was == RolloutState.PAUSED and self.journal.step(rollout_id, "fold.requested") is not None:
                self.journal.begin_step(rollout_id, "fold.accepted")
                self.journal.finish_step(rollout_id, "fold.accepted")
            if was == RolloutState.PAUSED:
                # The operator resumed knowing these failures: the gate counts new ones from here.
                self.journal.begin_step(rollout_id, f"gate.accepted.{failed_now}")
                self.journal.finish_step(rollout_id, f"gate.accepted.{failed_now}", {"accepted": failed_now})
            self.journal.event(
                rollout_id,
                rec.pipeline,
                "rollout.resumed" if was == RolloutState.PAUSED else "rollout.started",
                actor or rec.author,
                f"{rec.plan.collector_count} collector(s)",
                f"{'resumed' if was == RolloutState.PAUSED else 'started'} at stage {rec.current_stage + 1}"
                f" of {len(rec.plan.stages)}",
            )
            accepted = self._accepted(rollout_id)
            try:
                return await self._run(rec, progress, accepted)
            except CockpitError as exc:
                self._pause(rec, f"stopped by an error: {exc.message}")
                return self.view(rollout_id)
            except (Exception, asyncio.CancelledError, KeyboardInterrupt) as exc:
                if isinstance(exc, asyncio.CancelledError) and not self.pause_on_cancel:
                    raise  # another server node takes it over from the journal
                if self.journal.require(rollout_id).state == RolloutState.RUNNING:
                    self._pause(rec, f"stopped by an error: {type(exc).__name__}: {exc}")
                raise
        finally:
            LIVE_RUNNERS.discard(token)

    def _accepted(self, rollout_id: str) -> int:
        best = 0
        for s in self.journal.steps(rollout_id):
            if s["key"].startswith("gate.accepted."):
                best = max(best, int(s["key"].rsplit(".", 1)[1]))
        return best

    async def _step(self, rec: RolloutRecord, key: str, action: Callable[[], Awaitable[object]]) -> object:
        """Run a journaled step once: done steps are skipped, started ones re-checked by the target."""
        state = self.journal.step(rec.id, key)
        if state is not None and state[0] == "done":
            return state[1].get("result")
        self.journal.begin_step(rec.id, key)
        result = await action()
        self.journal.finish_step(rec.id, key, {"result": result})
        return result

    async def _run(self, rec: RolloutRecord, progress: dict[str, CollectorProgress], accepted: int) -> RolloutView:
        plan = rec.plan
        if self.journal.step(rec.id, "prepare") is None:
            await self._check_live(rec)
        await self._step(rec, "prepare", lambda: self._call(self.target.prepare(rec)))
        last = len(plan.stages) - 1
        for stage in plan.stages:
            done = self.journal.step(rec.id, f"stage.{stage.index}.done")
            if done is not None and done[0] == "done":
                continue
            self.journal.set_stage(rec.id, stage.index)
            outcome = await self._run_stage(rec, stage, progress, accepted)
            if outcome != "done":
                return self.view(rec.id)
            self.journal.begin_step(rec.id, f"stage.{stage.index}.done")
            self.journal.finish_step(rec.id, f"stage.{stage.index}.done")
            counts = _stage_counts(progress, stage)
            self.journal.event(
                rec.id,
                rec.pipeline,
                "rollout.stage_done",
                rec.author,
                f"stage {stage.index + 1} {stage.name}: {len(stage.collector_ids)} collector(s)",
                f"stage {stage.index + 1} ({stage.name}) done: {counts['applied']} applied, {counts['failed']} failed,"
                f" {counts['held']} held",
            )
            if plan.gates.manual and stage.index < last:
                self._pause(
                    rec,
                    f"stage {stage.index + 1} ({stage.name}) done; waiting for an explicit continue "
                    f"(resume) before stage {stage.index + 2}",
                )
                return self.view(rec.id)
        request = self.journal.heartbeat(rec.id, last)
        if request:
            return await self._handle_request(rec, request)
        failed = sum(1 for p in progress.values() if p.status == CollectorStatus.FAILED)
        held = sum(1 for p in progress.values() if p.status == CollectorStatus.HELD)
        if (failed or held) and self.journal.step(rec.id, "fold.accepted") is None:
            # Folding the version into the pipeline reaches the collectors it failed on too: that is
            # an operator's decision, never an automatic one.
            self.journal.begin_step(rec.id, "fold.requested")
            self.journal.finish_step(rec.id, "fold.requested")
            self._pause(
                rec,
                f"every stage is done, but {failed} collector(s) failed and {held} were held back; folding the "
                f"change into {rec.pipeline} would offer it to them again: resume to fold anyway, or roll back",
            )
            return self.view(rec.id)
        revision = await self._step(rec, "finalize", lambda: self._call(self.target.finalize(rec)))
        applied = sum(1 for p in progress.values() if p.status == CollectorStatus.APPLIED)
        reason = f"{applied} applied, {failed} failed, {held} held back"
        self.journal.set_state(rec.id, RolloutState.COMPLETED, reason, result_revision=str(revision or ""))
        if failed == 0 and held == 0:
            self.journal.record_good(rec.pipeline, str(revision or ""), rec.id)
        self.journal.event(
            rec.id,
            rec.pipeline,
            "rollout.completed",
            rec.author,
            f"pipeline {rec.pipeline}: {len(progress)} collector(s)",
            f"completed: {reason}; revision {revision or '-'}",
            rec.rollback_revision,
        )
        self._emit(rec.id)
        return self.view(rec.id)

    async def _call(self, aw: Awaitable[object]) -> object:
        return await aw

    async def _check_live(self, rec: RolloutRecord) -> None:
        """Before touching anything: the live pipeline must still be the one the plan was made from."""
        live = await self.target.live_pipeline(rec.pipeline)
        base = rec.plan.base
        if base is None:
            if live is not None:
                raise CockpitError(f"pipeline {rec.pipeline} was created since the plan was made; plan again")
            return
        if live is None:
            raise CockpitError(f"pipeline {rec.pipeline} was deleted since the plan was made; plan again")
        if (live.contents, tuple(live.matchers), live.enabled) != (base.contents, tuple(base.matchers), base.enabled):
            raise CockpitError(f"pipeline {rec.pipeline} changed since the plan was made; plan again")

    def _pause(self, rec: RolloutRecord, reason: str, actor: str = "") -> None:
        """Pause (``actor``: the person who asked; none for the engine's own gates)."""
        self.journal.set_state(rec.id, RolloutState.PAUSED, reason)
        self.journal.event(rec.id, rec.pipeline, "rollout.paused", actor or rec.author, "", reason)
        self._emit(rec.id)

    async def _handle_request(self, rec: RolloutRecord, request: str) -> RolloutView:
        """An operator's request to the runner (:func:`encode_request`): pause or abort, by whom, why."""
        what, actor, reason = decode_request(request)
        if what == "abort":
            await self._cleanup(rec, reason or "aborted by operator", actor)
        else:
            self._pause(rec, reason or "paused by operator", actor)
        return self.view(rec.id)

    async def _run_stage(
        self, rec: RolloutRecord, stage: Stage, progress: dict[str, CollectorProgress], accepted: int
    ) -> str:
        plan = rec.plan
        gates = plan.gates
        members = [progress[cid] for cid in stage.collector_ids if cid in progress]
        key = f"stage.{stage.index}.apply"
        step = self.journal.step(rec.id, key)
        if step is None or step[0] != "done":
            pending = [p for p in members if p.status == CollectorStatus.PENDING]
            ids = [p.collector_id for p in pending]
            held = self.journal.failed_pairs(ids, [plan.version_key])
            watch = self.target.reports_status or self.target.reports_health
            before = await self.target.observe(ids) if watch and ids else {}
            self._remember_applied(before)
            for p in pending:
                o = before.get(p.collector_id)
                if o is not None and not p.offered_at:
                    p.previous_hash = o.hash
                    p.health_before = o.health or ""
                    p.health = o.health or ""
                if p.collector_id in held:
                    p.status = CollectorStatus.HELD
                    p.error = f"not offered: this version {held[p.collector_id]}"
            self.journal.save_progress(rec.id, pending)
            offer = [p for p in pending if p.status == CollectorStatus.PENDING]
            self.journal.begin_step(rec.id, key)
            offered = (
                await self.target.stage_apply(rec, stage, [p.collector_id for p in offer]) if offer else {}
            )
            now = self.clock()
            for p in offer:
                p.target_hash = offered.get(p.collector_id, "") or p.target_hash
                p.offered_at = p.offered_at or now
                if self.target.reports_status:
                    p.status = CollectorStatus.APPLYING
                    if p.target_hash and p.target_hash == p.previous_hash:
                        p.seen_target = True
                else:
                    # No status reports (Fleet Management v1): offered is all we can know; soak from here.
                    p.status = CollectorStatus.SOAKING
                    p.applied_at = now
            self.journal.save_progress(rec.id, offer)
            self.journal.finish_step(rec.id, key, {"offered": len(offer)})
            self._emit(rec.id)
        while True:
            request = self.journal.heartbeat(rec.id, stage.index)
            if request:
                await self._handle_request(rec, request)
                return "stopped"
            active = [p for p in members if p.status in (CollectorStatus.APPLYING, CollectorStatus.SOAKING)]
            if active:
                watch = self.target.reports_status or (self.target.reports_health and gates.health_required)
                obs = await self.target.observe([p.collector_id for p in active]) if watch else {}
                changed = self._evaluate(active, obs, gates)
                if changed:
                    self.journal.save_progress(rec.id, changed)
                    newly_failed = [p for p in changed if p.status == CollectorStatus.FAILED]
                    if newly_failed:
                        rows = [(p.collector_id, p.target_hash, p.error) for p in newly_failed]
                        rows += [(p.collector_id, plan.version_key, p.error) for p in newly_failed]
                        self.journal.record_failed(rec.id, rows)
                    self._emit(rec.id)
                self._remember_applied(obs)
            failed = sum(1 for p in progress.values() if p.status == CollectorStatus.FAILED)
            if failed - accepted > gates.max_failures:
                first = min(
                    (p for p in progress.values() if p.status == CollectorStatus.FAILED),
                    key=lambda p: (p.stage, p.offered_at or 0.0, p.collector_id),
                    default=None,
                )
                detail = f"; first: {first.collector_id}: {first.error}" if first else ""
                self._pause(
                    rec,
                    f"{failed - accepted} collector(s) failed, above the gate (max {gates.max_failures}) in stage "
                    f"{stage.index + 1} ({stage.name}){detail}",
                )
                return "paused"
            if all(p.status in TERMINAL for p in members):
                return "done"
            await self.sleep(self.poll_interval)

    def _evaluate(
        self, active: list[CollectorProgress], obs: Mapping[str, Observation], gates: object
    ) -> list[CollectorProgress]:
        from otelcockpit.rollout.model import Gates

        assert isinstance(gates, Gates)
        now = self.clock()
        changed: list[CollectorProgress] = []
        status_known = self.target.reports_status
        for p in active:
            o = obs.get(p.collector_id)
            before = (p.status, p.error, p.health, p.seen_target, p.target_hash)
            if o is not None and o.health is not None:
                p.health = o.health
            if p.status == CollectorStatus.APPLYING:
                if o is not None and o.hash:
                    if not p.target_hash and o.hash != p.previous_hash:
                        p.target_hash = o.hash  # learned from the first report of something new
                    if o.hash == p.target_hash:
                        p.seen_target = True
                if o is not None and p.target_hash and o.hash == p.target_hash and o.status == FAILED:
                    p.status, p.error = CollectorStatus.FAILED, o.error or "reported FAILED"
                elif o is not None and p.target_hash and o.hash == p.target_hash and o.status == APPLIED:
                    p.applied_at = now
                    p.status = CollectorStatus.SOAKING if gates.soak_seconds > 0 else CollectorStatus.APPLIED
                elif o is not None and _rolled_back(p, o):
                    p.status = CollectorStatus.FAILED
                    p.error = (
                        f"rolled back by its supervisor: APPLIED with the previous hash {p.previous_hash} "
                        f"after {p.target_hash or 'the target'} was offered"
                    )
                elif p.offered_at is not None and now - p.offered_at > gates.apply_timeout:
                    last = f" (last report: {o.status or '-'} {o.hash or '-'})" if o is not None else " (no report)"
                    p.status = CollectorStatus.FAILED
                    p.error = f"timeout: not APPLIED with {p.target_hash or 'the target'} within {gates.apply_timeout:g}s{last}"
            elif p.status == CollectorStatus.SOAKING:
                if status_known and o is not None and o.status == FAILED and o.hash == p.target_hash:
                    p.status, p.error = CollectorStatus.FAILED, o.error or "reported FAILED"
                elif status_known and o is not None and _rolled_back(p, o):
                    p.status = CollectorStatus.FAILED
                    p.error = f"rolled back by its supervisor to {p.previous_hash} during the soak"
                elif (
                    gates.health_required
                    and o is not None
                    and o.health == UNHEALTHY
                    and p.health_before != UNHEALTHY
                ):
                    p.status = CollectorStatus.FAILED
                    p.error = "turned unhealthy after the apply" + (f": {o.error}" if o.error else "")
                elif now - (p.applied_at or now) >= gates.soak_seconds:
                    p.status = CollectorStatus.APPLIED
            if (p.status, p.error, p.health, p.seen_target, p.target_hash) != before:
                changed.append(p)
        return changed

    async def observe_once(self, rollout_id: str) -> int:
        """One look at a paused rollout's collectors still in flight (applying or soaking): their
        outcomes are recorded as they arrive, failures included, without moving to another stage.
        Returns how many changed. A paused rollout stays observed this way until it is resumed,
        aborted or rolled back, so its progress stays true."""
        rec = self.journal.require(rollout_id)
        if rec.state != RolloutState.PAUSED:
            return 0
        progress = self.journal.load_progress(rollout_id)
        active = [p for p in progress.values() if p.status in (CollectorStatus.APPLYING, CollectorStatus.SOAKING)]
        if not active:
            return 0
        gates = rec.plan.gates
        watch = self.target.reports_status or (self.target.reports_health and gates.health_required)
        obs = await self.target.observe([p.collector_id for p in active]) if watch else {}
        changed = self._evaluate(active, obs, gates)
        if changed:
            self.journal.save_progress(rollout_id, changed)
            newly_failed = [p for p in changed if p.status == CollectorStatus.FAILED]
            if newly_failed:
                rows = [(p.collector_id, p.target_hash, p.error) for p in newly_failed]
                rows += [(p.collector_id, rec.plan.version_key, p.error) for p in newly_failed]
                self.journal.record_failed(rollout_id, rows)
            self._emit(rollout_id)
        self._remember_applied(obs)
        return len(changed)

    def _remember_applied(self, obs: Mapping[str, Observation]) -> None:
        rows = []
        for cid, o in obs.items():
            if o.status == APPLIED and o.hash and self._applied_seen.get(cid) != o.hash:
                self._applied_seen[cid] = o.hash
                rows.append((cid, o.hash))
        if rows:
            self.journal.record_applied(rows)

    def _emit(self, rollout_id: str) -> None:
        if self.on_progress is not None:
            self.on_progress(self.view(rollout_id))

    # ---- operator actions -----------------------------------------------------------------------
    def pause(self, rollout_id: str, reason: str = "paused by operator", actor: str = "") -> str:
        """Pause: a live runner is asked (it stops at its next poll); otherwise the state is set now."""
        rec = self.journal.require(rollout_id)
        if rec.state == RolloutState.PAUSED:
            return f"rollout {rollout_id} is already paused: {rec.reason}"
        if rec.state not in ACTIVE_STATES:
            raise CockpitError(f"rollout {rollout_id} is {rec.state.value}: it cannot be paused")
        if rec.state == RolloutState.RUNNING and self.journal.runner_alive(rec):
            self.journal.request(rollout_id, encode_request("pause", actor, reason))
            return f"asked the process running rollout {rollout_id} (pid {rec.runner_pid}) to pause it"
        self._pause(rec, reason, actor)
        return f"paused rollout {rollout_id}"

    async def abort(self, rollout_id: str, reason: str = "aborted by operator", actor: str = "") -> str:
        """Abort: every staged collector back on the live version, temporary parts removed."""
        rec = self.journal.require(rollout_id)
        if rec.state not in ACTIVE_STATES:
            raise CockpitError(f"rollout {rollout_id} is {rec.state.value}: it cannot be aborted")
        if rec.state == RolloutState.RUNNING and self.journal.runner_alive(rec):
            self.journal.request(rollout_id, encode_request("abort", actor, reason))
            return f"asked the process running rollout {rollout_id} (pid {rec.runner_pid}) to abort it"
        await self._cleanup(rec, reason, actor)
        return f"aborted rollout {rollout_id}: staged collectors are back on the live version of {rec.pipeline}"

    async def _cleanup(self, rec: RolloutRecord, reason: str, actor: str = "") -> None:
        if self.journal.step(rec.id, "prepare") is not None:
            self.journal.begin_step(rec.id, "abort.cleanup")
            await self.target.cleanup(rec)
            self.journal.finish_step(rec.id, "abort.cleanup")
        self.journal.set_state(rec.id, RolloutState.ABORTED, reason)
        self.journal.event(
            rec.id, rec.pipeline, "rollout.aborted", actor or rec.author, "", reason, rec.rollback_revision
        )
        self._emit(rec.id)

    async def rollback(
        self,
        pipeline: str,
        *,
        revision: str,
        snapshot: Pipeline | None,
        author: str = "",
        rolled_back_from: str = "",
    ) -> str:
        """Abort what is in flight for ``pipeline``, then make ``snapshot`` (revision ``revision``) live."""
        for active in self.journal.active_for(pipeline):
            if active.state == RolloutState.RUNNING and self.journal.runner_alive(active):
                raise CockpitError(
                    f"rollout {active.id} of {pipeline} is running in process {active.runner_pid}: pause or abort it first"
                )
            await self._cleanup(active, f"aborted by a rollback of {pipeline} to revision {revision}", author)
        new_rev = await self.target.rollback(pipeline, snapshot, author=author)
        if rolled_back_from and rolled_back_from != revision:
            self.journal.record_bad(pipeline, rolled_back_from, f"rolled back to revision {revision} by {author or '-'}")
        latest = self.journal.list(limit=1, pipeline=pipeline)
        now_live = f"; its live revision is now {new_rev}" if new_rev and new_rev != revision else ""
        by = f" by {author}" if author else ""
        if latest and latest[0].state in (RolloutState.COMPLETED, RolloutState.ABORTED):
            self.journal.set_state(
                latest[0].id, RolloutState.ROLLED_BACK, f"rolled back to revision {revision}{by}{now_live}"
            )
        self.journal.event(
            latest[0].id if latest else "",
            pipeline,
            "pipeline.rollback",
            author,
            f"pipeline {pipeline}",
            f"rolled back {pipeline}"
            + (f" from revision {rolled_back_from}" if rolled_back_from else "")
            + f" to revision {revision}{now_live}",
            revision,
        )
        return str(new_rev or "")


def encode_request(what: str, actor: str, reason: str) -> str:
    """An operator's request to the process running a rollout (the journal's ``request`` column)."""
    return "\x1f".join((what, actor, reason))


def decode_request(text: str) -> tuple[str, str, str]:
    what, _, rest = text.partition("\x1f")
    actor, _, reason = rest.partition("\x1f")
    return what, actor, reason


def _rolled_back(p: CollectorProgress, o: Observation) -> bool:
    """The supervisor pattern: APPLIED with the previous hash after the target hash was seen."""
    return (
        p.seen_target
        and bool(p.previous_hash)
        and p.previous_hash != p.target_hash
        and o.status == APPLIED
        and o.hash == p.previous_hash
    )


def _stage_counts(progress: Mapping[str, CollectorProgress], stage: Stage) -> dict[str, int]:
    counts = {s.value: 0 for s in CollectorStatus}
    for cid in stage.collector_ids:
        p = progress.get(cid)
        if p is not None:
            counts[p.status.value] += 1
    return counts


def build_view(journal: Journal, rec: RolloutRecord, *, failures: int = 200) -> RolloutView:
    counts = journal.stage_counts(rec.id)
    stages = []
    for stage in rec.plan.stages:
        c = counts.get(stage.index, {})
        total = len(stage.collector_ids)
        done = journal.step(rec.id, f"stage.{stage.index}.done")
        applying = c.get("applying", 0)
        soaking = c.get("soaking", 0)
        pending = c.get("pending", 0)
        state = stage_state(total, c, done is not None and done[0] == "done")
        stages.append(
            StageProgress(
                index=stage.index,
                name=stage.name,
                state=state,
                total=total,
                pending=pending,
                applying=applying,
                applied=c.get("applied", 0),
                failed=c.get("failed", 0),
                held=c.get("held", 0),
                soaking=soaking,
            )
        )
    return RolloutView(
        id=rec.id,
        pipeline=rec.pipeline,
        backend=rec.backend,
        context=rec.context,
        state=rec.state,
        reason=rec.reason,
        author=rec.author,
        created_at=rec.created,
        updated_at=rec.updated,
        current_stage=rec.current_stage,
        plan=rec.plan,
        stages=tuple(stages),
        failures=tuple(journal.failures(rec.id, failures)) if any(s.failed or s.held for s in stages) else (),
        result_revision=rec.result_revision,
        rollback_revision=rec.rollback_revision,
    )
