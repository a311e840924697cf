"""Staged rollouts inside ``otelcockpit serve``: the rollout engine on the server's own state.

In the OpAMP world a "pipeline" is a config name and its revisions are the config versions; the
live revision is the version the config's assignment(s) point to.

* Staging a version to some agents is a per-agent *override* of the desired config (table
  ``rollout_overrides`` in the server's db, committed before any offer goes out): WebSocket agents
  get the offer at once, HTTP agents with their next poll.
* Observation reads what each agent reported: remote-config status and hash, error, and health
  (ComponentHealth; unknown when the agent does not report health), so APPLIED with the target
  hash, FAILED, timeouts, turning unhealthy and a supervisor's automatic rollback are all visible
  to the engine.
* Finalize folds the change: the assignment(s) of the config point to the new version and the
  overrides are dropped, in that order and in one resolution pass, so no agent sees a flip-flop.
* Rollback makes an earlier version desired again. A hash that FAILED on an agent is never offered
  to it again (the protocol core's rule).

The engine runs as asyncio tasks in the server process; its journal (``<db stem>.rollouts.sqlite3``
beside the db) survives a kill -9, and a restart shows every interrupted rollout paused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otelcockpit.errors import CockpitError, UsageError
from otelcockpit.fleet.model import CollectorType, Operation, Pipeline, Revision, parse_time, utcnow
from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.hub import Assignment, ConfigVersion, Connection, Hub, HubError
from otelcockpit.opamp_server.proto import opamp_pb2 as pb
from otelcockpit.opamp_server.store import Op, Store, agent_ops
from otelcockpit.opamp_server.views import now_text, parse_uid, uid_text
from otelcockpit.rollout.engine import Observation, RolloutEngine, build_view
from otelcockpit.rollout.journal import Journal, RolloutRecord
from otelcockpit.rollout.model import (
    ACTIVE_STATES,
    BlastRadius,
    Gates,
    RolloutPlan,
    RolloutState,
    RolloutView,
    parse_canary,
    parse_duration,
    parse_waves,
)
from otelcockpit.rollout.planner import assign_stages, pipeline_diff, policy_findings

log = logging.getLogger(__name__)

BACKEND = "opamp"
CONTEXT = "serve"
FILE_HEADER = "# file: "  # the same rendering as the cockpit's opamp backend
OVERRIDES_DDL = (
    "CREATE TABLE IF NOT EXISTS rollout_overrides (uid BLOB PRIMARY KEY, config TEXT NOT NULL, "
    "version INTEGER NOT NULL, rollout TEXT NOT NULL, at TEXT NOT NULL)"
)
STOP_WAIT_SECONDS = 30.0


def journal_path(db: Path) -> Path:
    return db.with_name(db.stem + ".rollouts.sqlite3")


def load_overrides(store: Store) -> dict[bytes, tuple[str, int]]:
    """Called by ``Hub._load``: create the table if needed and read the overrides back."""
    store.write_sync([(OVERRIDES_DDL, ())])
    rows = store.query("SELECT uid, config, version FROM rollout_overrides")
    return {bytes(r["uid"]): (str(r["config"]), int(r["version"])) for r in rows}


# ---- config versions as pipelines ---------------------------------------------------------------
def render_files(files: Mapping[str, tuple[str, str]]) -> str:
    parts = []
    for name in sorted(files):
        body = files[name][0]
        parts.append(f"{FILE_HEADER}{name if name else chr(34) * 2}\n{body.rstrip()}\n")
    return "\n".join(parts)


def selector_matchers(selector: str) -> tuple[str, ...]:
    s = selector.strip()
    return () if s in ("", "{}") else (s,)


def pipeline_of(cv: ConfigVersion, selector: str = "") -> Pipeline:
    return Pipeline(
        name=cv.name,
        contents=render_files(cv.files),
        matchers=selector_matchers(selector),
        config_type=CollectorType.OTEL,
        id=str(cv.version),
        source="opamp",
        created_at=parse_time(cv.created_at),
        updated_at=parse_time(cv.created_at),
    )


class _Member:
    """An agent as the planner sees it (``id`` and ``attr``)."""

    __slots__ = ("attrs", "id")

    def __init__(self, uid: bytes, attrs: Mapping[str, str]) -> None:
        self.id = uid_text(uid)
        self.attrs = attrs

    def attr(self, key: str) -> str:
        v = self.attrs.get(key)
        if v:
            return v
        alias = {
            "env": ("deployment.environment.name", "deployment.environment"),
            "region": ("cloud.region",),
        }
        for k in alias.get(key, ()):
            if self.attrs.get(k):
                return self.attrs[k]
        return ""


def _counts(members: Sequence[_Member], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in members:
        v = m.attr(key) or "-"
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


# ---- the engine's target --------------------------------------------------------------------------
class OpAmpTarget:
    """The rollout engine's Target, implemented on the hub's in-memory state and its store."""

    name = BACKEND
    reports_status = True
    reports_health = True

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        rows = hub.store.query("SELECT uid, rollout FROM rollout_overrides")
        self.owner: dict[bytes, str] = {bytes(r["uid"]): str(r["rollout"]) for r in rows}

    # -- helpers --
    def bases(self, config: str) -> list[Assignment]:
        return [a for a in self.hub.assignments if a.config == config]

    def live(self, config: str) -> tuple[Assignment, ConfigVersion] | None:
        for a in self.hub.assignments:  # highest priority first
            if a.config == config:
                cv = self.hub.config_version(a.config, a.version)
                if cv is not None:
                    return a, cv
        return None

    def revisions(self, config: str, *, upto_live: bool = True) -> tuple[Revision, ...]:
        versions = self.hub.configs.get(config) or []
        live = self.live(config)
        selector = live[0].selector if live else ""
        if upto_live and live is not None:
            versions = versions[: live[1].version]
        return tuple(
            Revision(
                id=str(cv.version),
                pipeline=config,
                pipeline_id=config,
                snapshot=pipeline_of(cv, selector),
                operation=Operation.INSERT if cv.version == 1 else Operation.UPDATE,
                created_at=parse_time(cv.created_at) or utcnow(),
                author=cv.author,
            )
            for cv in versions
        )

    async def _apply(self, ops: list[Op], uids: Sequence[bytes] | None) -> None:
        """Commit ``ops`` with the new desired state of ``uids`` (None: every agent), then offer."""
        hub = self.hub
        now = time.time()
        agent_ops_: list[Op] = []
        moved: list[bytes] = []
        sends: list[tuple[Connection, pb.ServerToAgent]] = []
        for uid in uids if uids is not None else list(hub.agents):
            s = hub.agents.get(uid)
            if s is None:
                continue
            d = hub.resolve_for(uid, s.attributes)
            if d is s.desired:
                continue
            s2 = s.clone()
            s2.desired = d
            changed = {"desired"}
            conn = hub.conns.get(uid)
            if conn is not None and not conn.closed:
                out = core.pending(s2, now, hub.settings)
                if out.reply is not None and out.state is not None:
                    s2 = out.state
                    changed |= out.changed
                    sends.append((conn, out.reply))
            hub.agents[uid] = s2
            agent_ops_.extend(agent_ops(s2, changed))
            moved.append(uid)
        if ops or agent_ops_:
            await hub.store.write(ops + agent_ops_)
        for uid in moved:
            hub.events.agent_changed(uid)
        if sends:
            await asyncio.gather(*(hub._safe_send(c, r) for c, r in sends))

    def _audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> Op:
        return self.hub._audit_op(actor or "rollout", action, target, detail)

    def _version(self, rec: RolloutRecord) -> ConfigVersion:
        cv = self.hub.config_version(rec.pipeline, int(rec.plan.new.id or 0))
        if cv is None:
            raise CockpitError(f"config {rec.pipeline} has no version {rec.plan.new.id}")
        return cv

    async def _point_bases(self, config: str, version: int, actor: str, why: str) -> list[Op]:
        """Ops (and in-memory changes) that make every assignment of ``config`` point to ``version``."""
        ops: list[Op] = []
        changed = []
        for a in self.bases(config):
            if a.version != version:
                ops.append(("UPDATE assignments SET version = ? WHERE id = ?", (version, a.id)))
                ops.append(
                    self._audit(
                        actor,
                        why,
                        str(a.id),
                        {"config": config, "from_version": a.version, "to_version": version},
                    )
                )
                changed.append(a)
        if changed:
            ids = {a.id for a in changed}
            self.hub.assignments = [
                dataclasses.replace(a, version=version) if a.id in ids else a for a in self.hub.assignments
            ]
        return ops

    # -- Target protocol --
    async def live_pipeline(self, name: str) -> Pipeline | None:
        live = self.live(name)
        return pipeline_of(live[1], live[0].selector) if live else None

    async def prepare(self, rollout: RolloutRecord) -> None:
        self._version(rollout)
        return None

    async def stage_apply(
        self, rollout: RolloutRecord, stage: Any, collector_ids: Sequence[str]
    ) -> Mapping[str, str]:
        cv = self._version(rollout)
        digest = cv.hash.hex()
        key = (cv.name, cv.version)
        async with self.hub._admin_lock:
            uids: list[bytes] = []
            ops: list[Op] = []
            at = now_text()
            for cid in collector_ids:
                uid = parse_uid(cid)
                if uid is None:
                    continue
                uids.append(uid)
                if self.hub.overrides.get(uid) != key or self.owner.get(uid) != rollout.id:
                    self.hub.overrides[uid] = key
                    self.owner[uid] = rollout.id
                    ops.append(
                        (
                            "INSERT OR REPLACE INTO rollout_overrides (uid, config, version, rollout, at) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (uid, cv.name, cv.version, rollout.id, at),
                        )
                    )
            if ops:
                ops.append(
                    self._audit(
                        rollout.author,
                        "rollout.stage",
                        f"{cv.name}@{cv.version}",
                        {"rollout": rollout.id, "stage": getattr(stage, "name", ""), "agents": len(ops)},
                    )
                )
            await self._apply(ops, uids)
        return {cid: digest for cid in collector_ids}

    async def observe(self, collector_ids: Sequence[str]) -> Mapping[str, Observation]:
        out: dict[str, Observation] = {}
        agents = self.hub.agents
        for cid in collector_ids:
            uid = parse_uid(cid)
            s = agents.get(uid) if uid is not None else None
            if s is None:
                out[cid] = Observation()
                continue
            rcs = s.remote_config_status
            status = core.STATUS_NAMES.get(rcs.status, "").lower() if rcs is not None else ""
            digest = rcs.last_remote_config_hash.hex() if rcs is not None else ""
            error = rcs.error_message if rcs is not None else ""
            health: str | None = None
            if not s.online:
                health = "offline"
            elif s.capabilities & core.REPORTS_HEALTH and s.health is not None:
                health = "healthy" if s.health.healthy else "unhealthy"
                if not s.health.healthy and not error:
                    error = s.health.last_error
            d = s.desired
            if d is not None and d.hash in s.failed_hashes and rcs is not None and digest != d.hash.hex():
                # The core never offers a hash that FAILED on this agent: say so instead of a timeout.
                why = s.failed_hashes[d.hash] or "no error message"
                status, digest, error = (
                    "failed",
                    d.hash.hex(),
                    f"not offered: it FAILED on this agent before ({why})",
                )
            out[cid] = Observation(status, digest, error, health)
        return out

    async def finalize(self, rollout: RolloutRecord) -> str:
        cv = self._version(rollout)
        async with self.hub._admin_lock:
            if not self.bases(cv.name):
                raise CockpitError(f"config {cv.name} is assigned to no agent any more: nothing to fold into")
            ops = await self._point_bases(cv.name, cv.version, rollout.author, "rollout.fold")
            ops += self._drop(lambda c, v, r: r == rollout.id, rollout.id)
            await self._apply(ops, None)
        self.hub.events.publish(
            "assignment", {"config": cv.name, "version": cv.version, "rollout": rollout.id}
        )
        return str(cv.version)

    def _drop(self, pred: Any, rollout_id: str = "", config: str = "") -> list[Op]:
        """Forget the overrides ``pred(config, version, rollout)`` selects; the ops that delete them."""
        rows = [uid for uid, (c, v) in self.hub.overrides.items() if pred(c, v, self.owner.get(uid, ""))]
        for uid in rows:
            self.hub.overrides.pop(uid, None)
            self.owner.pop(uid, None)
        if rollout_id:
            return [("DELETE FROM rollout_overrides WHERE rollout = ?", (rollout_id,))]
        return [("DELETE FROM rollout_overrides WHERE config = ?", (config,))]

    async def cleanup(self, rollout: RolloutRecord) -> None:
        async with self.hub._admin_lock:
            ops = self._drop(lambda c, v, r: r == rollout.id, rollout.id)
            ops.append(
                self._audit(rollout.author, "rollout.abort", rollout.pipeline, {"rollout": rollout.id})
            )
            await self._apply(ops, None)

    async def rollback(self, pipeline: str, snapshot: Pipeline | None) -> str:
        if snapshot is None or not snapshot.id.isdigit():
            raise CockpitError(f"config {pipeline}: no earlier version to roll back to")
        version = int(snapshot.id)
        if self.hub.config_version(pipeline, version) is None:
            raise CockpitError(f"config {pipeline} has no version {version}")
        async with self.hub._admin_lock:
            if not self.bases(pipeline):
                raise CockpitError(f"config {pipeline} is assigned to no agent: nothing to roll back")
            ops = await self._point_bases(pipeline, version, "", "rollout.rollback")
            ops += self._drop(lambda c, v, r: c == pipeline, config=pipeline)
            ops.append(self._audit("", "config.rollback", f"{pipeline}@{version}", {"version": version}))
            await self._apply(ops, None)
        self.hub.events.publish("assignment", {"config": pipeline, "version": version, "rollback": True})
        return str(version)


# ---- the service: plans, runs, operator actions ----------------------------------------------------
def _files(raw: Any) -> dict[str, tuple[str, str]]:
    if not isinstance(raw, dict) or not raw:
        raise HubError(400, "'files' must be a non-empty object {file name: {body, content_type}}")
    out: dict[str, tuple[str, str]] = {}
    for name, f in raw.items():
        if isinstance(f, str):
            out[str(name)] = (f, "text/yaml")
        elif (
            isinstance(f, dict)
            and isinstance(f.get("body"), str)
            and isinstance(f.get("content_type", ""), str)
        ):
            out[str(name)] = (f["body"], f.get("content_type") or "text/yaml")
        else:
            raise HubError(400, f"files[{name!r}] must be a string or an object with a string 'body'")
    return out


def _split_contents(text: str, base: ConfigVersion) -> dict[str, Any]:
    """A pipeline text as files: ``# file: NAME`` sections, or the live version's only file."""
    heads = list(re.finditer(r"^# file: (.*)$", text, re.MULTILINE))
    if heads and not text[: heads[0].start()].strip():
        out: dict[str, Any] = {}
        for i, m in enumerate(heads):
            name = m.group(1).strip()
            name = "" if name == '""' else name
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            ct = base.files.get(name, ("", "text/yaml"))[1]
            out[name] = {"body": text[m.end() + 1 : end].rstrip("\n") + "\n", "content_type": ct}
        return out
    if len(base.files) != 1:
        raise HubError(
            422,
            f"config {base.name} version {base.version} has {len(base.files)} files: give 'files', or "
            "'contents' with a '# file: NAME' header before each file",
        )
    ((name, (_body, ct)),) = base.files.items()
    return {name: {"body": text, "content_type": ct}}


def _gates(body: Mapping[str, Any]) -> Gates:
    def num(key: str, default: Any) -> Any:
        return body.get(key, default)

    mf = num("max_failures", 0)
    if not isinstance(mf, int) or isinstance(mf, bool) or mf < 0:
        raise HubError(400, "'max_failures' must be a whole number, zero or more")
    soak = num("soak", 0)
    timeout = num("apply_timeout", "5m")
    soak_s = float(soak) if isinstance(soak, (int, float)) else parse_duration(str(soak), "soak")
    timeout_s = (
        float(timeout) if isinstance(timeout, (int, float)) else parse_duration(str(timeout), "apply_timeout")
    )
    if soak_s < 0 or timeout_s <= 0:
        raise HubError(400, "'soak' must be zero or more and 'apply_timeout' more than zero")
    return Gates(
        max_failures=mf,
        soak_seconds=soak_s,
        health_required=bool(body.get("health_required", True)),
        apply_timeout=timeout_s,
        manual=bool(body.get("manual", False)),
    )


class RolloutService:
    def __init__(self, hub: Hub, path: Path, *, poll_interval: float = 0.25) -> None:
        self.hub = hub
        self.journal = Journal(path)
        self.target = OpAmpTarget(hub)
        self.engine = RolloutEngine(
            self.journal, self.target, poll_interval=poll_interval, on_progress=self._progress
        )
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        # Reading the journal pauses every rollout left running by a process that is gone.
        for rec in self.journal.list(limit=10_000):
            if rec.state == RolloutState.PAUSED and rec.reason.startswith("interrupted"):
                self.hub.events.publish("rollout", self.view_json(rec.id))

    async def stop(self) -> None:
        for rid, task in list(self.tasks.items()):
            rec = self.journal.get(rid)
            if rec is not None and rec.state == RolloutState.RUNNING:
                self.journal.set_state(rid, RolloutState.PAUSED, "the server stopped; resume it to continue")
                self.journal.event(rid, rec.pipeline, "rollout.paused", rec.author, "", "the server stopped")
            task.cancel()
        for task in list(self.tasks.values()):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self.journal.close()

    # -- views --
    def _progress(self, view: RolloutView) -> None:
        self.hub.events.publish("rollout", self._json(view, ids=False))

    def _json(self, view: RolloutView, *, ids: bool, collectors: bool = False) -> dict[str, Any]:
        progress = list(self.journal.load_progress(view.id).values()) if collectors else None
        out = view.as_json(collectors=progress)
        out["plan"] = view.plan.as_json(ids=ids)
        out["new_version"] = int(view.plan.new.id) if view.plan.new.id.isdigit() else None
        out["running_here"] = view.id in self.tasks
        return out

    def view_json(self, rid: str, *, ids: bool = False, collectors: bool = False) -> dict[str, Any]:
        return self._json(self.engine.view(rid), ids=ids, collectors=collectors)

    # -- planning --
    def plan(self, body: Mapping[str, Any]) -> tuple[RolloutPlan, dict[str, tuple[str, str]] | None]:
        """The plan for ``body``; returns (plan, files still to create as a new version, or None)."""
        hub = self.hub
        config = body.get("config")
        if not isinstance(config, str) or not config:
            raise HubError(400, "'config' must be a non-empty string (the OpAMP config to roll out)")
        versions = hub.configs.get(config) or []
        live = self.target.live(config)
        if live is None:
            raise HubError(
                409,
                f"config {config!r} is assigned to no agent: assign a version first (POST /api/v1/assignments)",
            )
        base_a, base_cv = live
        to_create: dict[str, tuple[str, str]] | None = None
        if body.get("files") is None and isinstance(body.get("contents"), str):
            body = {**body, "files": _split_contents(body["contents"], base_cv)}
        if body.get("files") is not None:
            files = _files(body["files"])
            probe = ConfigVersion.make(config, len(versions) + 1, files, "", "", now_text())
            same = next((cv for cv in versions if cv.hash == probe.hash), None)
            if same is not None:
                new_cv = same
            else:
                new_cv = probe
                to_create = files
        else:
            v = body.get("version")
            if v is None:
                v = len(versions)
            if not isinstance(v, int) or isinstance(v, bool):
                raise HubError(400, "'version' must be a whole number (or give 'files')")
            found = hub.config_version(config, v)
            if found is None:
                raise HubError(404, f"config {config!r} has no version {v} (latest is {len(versions)})")
            new_cv = found
        if new_cv.hash == base_cv.hash:
            raise HubError(
                409, f"config {config} version {new_cv.version} is already live (assignment {base_a.id})"
            )
        canary_raw = body.get("canary")
        waves_raw = body.get("waves")
        if isinstance(waves_raw, list):
            waves_raw = ",".join(str(w) if str(w).endswith("%") else f"{w}%" for w in waves_raw)
        canary = parse_canary(None if canary_raw is None else str(canary_raw))
        waves = parse_waves(None if waves_raw is None else str(waves_raw))
        gates = _gates(body)
        members = []
        for uid, s in hub.agents.items():
            if not s.capabilities & core.ACCEPTS_REMOTE_CONFIG:
                continue
            a = hub.resolve_assignment(s.attributes)
            if a is not None and a.config == config:
                members.append(_Member(uid, s.attributes))
        stages = assign_stages(config, members, canary, waves)  # type: ignore[arg-type]
        base = pipeline_of(base_cv, base_a.selector)
        new = pipeline_of(new_cv, base_a.selector)
        if to_create is not None:
            new = dataclasses.replace(new, id="", created_at=None, updated_at=None)
        radius = BlastRadius(
            total=len(members),
            by_env=_counts(members, "env"),
            by_region=_counts(members, "region"),
            by_type={CollectorType.OTEL.value: len(members)},
        )
        plan = RolloutPlan(
            pipeline=config,
            new=new,
            base=base,
            base_revision=str(base_cv.version),
            canary=canary,
            waves=waves,
            gates=gates,
            stages=stages,
            blast_radius=radius,
            diff=pipeline_diff(base, new, str(base_cv.version)),
            findings=policy_findings(new, None, production=bool(body.get("production", False))),
        )
        return plan, to_create

    async def create(self, body: Mapping[str, Any], actor: str) -> str:
        author = body.get("author") or actor
        if not isinstance(author, str):
            raise HubError(400, "'author' must be a string")
        plan, to_create = self.plan(body)
        if plan.blocking:
            first = plan.blocking[0]
            raise HubError(
                422,
                f"refused: {len(plan.blocking)} policy error(s) block this push; first: line {first.line or '-'}: "
                f"{first.message} [{first.rule}]",
            )
        if not plan.stages:
            raise HubError(409, f"config {plan.pipeline!r} reaches no agent that accepts remote config")
        if to_create is not None:
            cv = await self.hub.create_config(plan.pipeline, to_create, author, "rollout", actor)
            plan = dataclasses.replace(
                plan,
                new=dataclasses.replace(plan.new, id=str(cv.version), created_at=parse_time(cv.created_at)),
            )
        rid = self.engine.create(
            plan, backend=BACKEND, context=CONTEXT, author=author, rollback_revision=plan.base_revision
        )
        await self.hub.store.write(
            [
                self.target._audit(
                    actor,
                    "rollout.create",
                    f"{plan.pipeline}@{plan.new.id}",
                    {"rollout": rid, "from_version": plan.base_revision, "agents": plan.collector_count},
                )
            ]
        )
        self.spawn(rid)
        return rid

    # -- running --
    def spawn(self, rid: str) -> None:
        task = asyncio.create_task(self._run(rid))
        self.tasks[rid] = task

    async def _run(self, rid: str) -> None:
        try:
            await self.engine.run(rid)
        except CockpitError as exc:
            log.warning("rollout %s: %s", rid, exc.message)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let a rollout task die silently
            log.exception("rollout %s failed", rid)
        finally:
            self.tasks.pop(rid, None)
            try:
                self.hub.events.publish("rollout", self.view_json(rid))
            except Exception:
                pass

    async def _settle(self, rid: str, timeout: float = STOP_WAIT_SECONDS) -> None:
        task = self.tasks.get(rid)
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)

    def _require(self, rid: str) -> RolloutRecord:
        rec = self.journal.get(rid)
        if rec is None:
            raise HubError(404, f"no rollout {rid!r}")
        return rec

    async def pause(self, rid: str) -> str:
        self._require(rid)
        msg = self.engine.pause(rid)
        await self._settle(rid, 10.0)
        return msg

    async def resume(self, rid: str) -> str:
        rec = self._require(rid)
        if rid in self.tasks:
            raise HubError(409, f"rollout {rid} is already running")
        if rec.state not in ACTIVE_STATES:
            raise HubError(409, f"rollout {rid} is {rec.state.value}: there is nothing to resume")
        busy = [r for r in self.journal.active_for(rec.pipeline) if r.id != rid and r.id in self.tasks]
        if busy:
            raise HubError(409, f"rollout {busy[0].id} of {rec.pipeline} is running; pause or abort it first")
        self.spawn(rid)
        return f"resumed rollout {rid}"

    async def abort(self, rid: str) -> str:
        rec = self._require(rid)
        if rec.state not in ACTIVE_STATES:
            raise HubError(409, f"rollout {rid} is {rec.state.value}: it cannot be aborted")
        if rid in self.tasks:
            self.journal.request(rid, "abort")
            await self._settle(rid)
            return f"aborted rollout {rid}: staged agents are back on version {rec.plan.base_revision} of {rec.pipeline}"
        return await self.engine.abort(rid)

    async def rollback(self, rid: str, author: str) -> dict[str, Any]:
        rec = self._require(rid)
        if rid in self.tasks:
            self.journal.request(rid, "pause")
            await self._settle(rid)
        if rec.plan.base is None:
            raise HubError(409, f"rollout {rid} has no earlier version to roll back to")
        new_rev = await self.engine.rollback(
            rec.pipeline, revision=rec.plan.base_revision, snapshot=rec.plan.base, author=author
        )
        return {"pipeline": rec.pipeline, "to_revision": rec.plan.base_revision, "new_revision": new_rev}

    async def rollback_config(self, config: str, to: int | None, author: str) -> dict[str, Any]:
        from otelcockpit.rollout.history import pipeline_target

        active = self.journal.active_for(config)
        for r in active:
            if r.id in self.tasks:
                self.journal.request(r.id, "pause")
                await self._settle(r.id)
        if to is None and active and active[0].plan.base is not None:
            # A rollout in flight was never folded: undoing it is aborting it, so every agent it
            # staged goes back to the live version (its plan's base).
            r = active[0]
            live_rev = self.target.revisions(config)
            new_rev = await self.engine.rollback(
                config, revision=r.plan.base_revision, snapshot=r.plan.base, author=author
            )
            return {
                "pipeline": config,
                "from_revision": live_rev[-1].id if live_rev else "",
                "to_revision": r.plan.base_revision,
                "source": f"in-flight rollout {r.id} aborted",
                "new_revision": new_rev,
            }
        revisions = self.target.revisions(config)
        if not revisions:
            raise HubError(404, f"no config {config!r} with an assigned version")
        live = revisions[-1].id
        if to is not None:
            all_revs = self.target.revisions(config, upto_live=False)
            rev = next((r for r in all_revs if r.id == str(to)), None)
            if rev is None:
                raise HubError(404, f"config {config!r} has no version {to}")
            source = "chosen"
        else:
            t = pipeline_target(self.journal, config, revisions)
            if t.revision is None:
                raise HubError(409, f"config {config} has no earlier version to roll back to")
            rev, source = t.revision, t.source
        new_rev = await self.engine.rollback(config, revision=rev.id, snapshot=rev.snapshot, author=author)
        return {
            "pipeline": config,
            "from_revision": live,
            "to_revision": rev.id,
            "source": source,
            "new_revision": new_rev,
        }

    async def targets(self) -> dict[str, Any]:
        """Rollback targets: per config its last known good version, and per agent the config it
        last reported APPLIED before what it runs now (from every agent's remote config history,
        not only the agents a rollout touched)."""
        from otelcockpit.fleet.model import CollectorTarget
        from otelcockpit.rollout.history import pipeline_target, return_hash

        pipelines = {}
        for name in sorted(self.hub.configs):
            revs = self.target.revisions(name)
            if self.target.live(name) is not None:
                pipelines[name] = pipeline_target(self.journal, name, revs).as_json()
        labels = {cv.hash.hex(): f"{cv.name}@v{cv.version}" for vs in self.hub.configs.values() for cv in vs}
        collectors: dict[str, Any] = {}
        for uid, applied in sorted((await self.hub.applied_history()).items()):
            state = self.hub.agents.get(uid)
            if state is None:
                continue
            rcs = state.remote_config_status
            applied_now = rcs is not None and rcs.status == pb.RemoteConfigStatuses_APPLIED
            current = state.reported_hash.hex() if applied_now else ""
            last, last_at = applied[0]
            before, before_at = applied[1] if len(applied) > 1 else ("", "")
            target = return_hash(current, last, before)
            if target:
                at = last_at if target == last else before_at
                collectors[uid_text(uid)] = CollectorTarget(target, labels.get(target, ""), at).as_json()
        return {"pipelines": pipelines, "collectors": collectors}

    async def changes(self, since_seconds: float) -> list[dict[str, Any]]:
        from datetime import timedelta

        from otelcockpit.rollout.history import timeline

        since = utcnow() - timedelta(seconds=since_seconds) if since_seconds > 0 else None
        revisions = {name: self.target.revisions(name, upto_live=False) for name in self.hub.configs}
        out = [e.as_json() for e in timeline(self.journal, revisions, since=since)]
        audit = await self.hub.audit(since.isoformat().replace("+00:00", "Z") if since else None, 1000)
        for a in audit:
            if a["action"].startswith(("assignment.", "rollout.", "config.rollback")):
                out.append(
                    {
                        "at": a["at"],
                        "kind": a["action"],
                        "pipeline": str(a["detail"].get("config") or a["target"].split("@")[0]),
                        "author": a["actor"],
                        "scope": a["target"],
                        "message": json.dumps(a["detail"], sort_keys=True),
                        "rollback_target": "",
                        "source": "audit",
                        "rollout_id": str(a["detail"].get("rollout", "")),
                    }
                )
        out.sort(key=lambda e: (e["at"] or "", e["source"], e["kind"]))
        return out


# ---- admin API routes (mounted by admin.build_admin_app) -------------------------------------------
def admin_routes(service: RolloutService) -> tuple[list[tuple[str, str, Any]], list[tuple[str, str, Any]]]:
    """(mutating, reading) routes: (method, path, handler(request, token))."""

    async def body_json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise HubError(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise HubError(400, "the request body must be a JSON object")
        return data

    async def guard(coro: Any) -> Any:
        try:
            return await coro
        except HubError:
            raise
        except UsageError as exc:
            raise HubError(422, exc.message) from None
        except CockpitError as exc:
            raise HubError(409, exc.message) from None

    async def create(request: Request, tok: Any) -> Response:
        body = await body_json(request)
        rid = await guard(service.create(body, tok.name))
        return JSONResponse(service.view_json(rid, ids=True), status_code=201)

    async def plan(request: Request, tok: Any) -> Response:
        body = await body_json(request)

        async def go() -> RolloutPlan:
            return service.plan(body)[0]

        p = await guard(go())
        return JSONResponse({"plan": p.as_json(ids=True)})

    async def listing(request: Request, tok: Any) -> Response:
        recs = service.journal.list(limit=500)
        return JSONResponse(
            {
                "rollouts": [
                    service._json(build_view(service.journal, r, failures=20), ids=False) for r in recs
                ]
            }
        )

    async def one(request: Request, tok: Any) -> Response:
        rid = request.path_params["id"]
        service._require(rid)
        collectors = request.query_params.get("collectors") in ("1", "true", "yes")
        return JSONResponse(service.view_json(rid, ids=True, collectors=collectors))

    def action(name: str) -> Any:
        async def handler(request: Request, tok: Any) -> Response:
            rid = request.path_params["id"]
            await body_json(request)
            if name == "rollback":
                out = await guard(service.rollback(rid, tok.name))
                out["rollout"] = service.view_json(rid)
                return JSONResponse(out)
            fn = {"pause": service.pause, "resume": service.resume, "abort": service.abort}[name]
            message = await guard(fn(rid))
            return JSONResponse({"message": message, "rollout": service.view_json(rid)})

        return handler

    async def rollback_config(request: Request, tok: Any) -> Response:
        body = await body_json(request)
        to = body.get("to")
        if to is not None and (
            isinstance(to, bool) or not isinstance(to, (int, str)) or not str(to).isdigit()
        ):
            raise HubError(400, "'to' must be a version number")
        out = await guard(
            service.rollback_config(
                request.path_params["name"], int(to) if to is not None else None, tok.name
            )
        )
        return JSONResponse(out)

    async def targets(request: Request, tok: Any) -> Response:
        return JSONResponse(await service.targets())

    async def changes(request: Request, tok: Any) -> Response:
        raw = request.query_params.get("since", "24h")
        try:
            seconds = parse_duration(raw, "since")
        except UsageError as exc:
            raise HubError(400, exc.message) from None
        return JSONResponse({"changes": await service.changes(seconds)})

    mutating = [
        ("POST", "/api/v1/rollouts", create),
        ("POST", "/api/v1/rollouts/{id}/pause", action("pause")),
        ("POST", "/api/v1/rollouts/{id}/resume", action("resume")),
        ("POST", "/api/v1/rollouts/{id}/abort", action("abort")),
        ("POST", "/api/v1/rollouts/{id}/rollback", action("rollback")),
        ("POST", "/api/v1/configs/{name}/rollback", rollback_config),
    ]
    reading = [
        ("POST", "/api/v1/rollouts/plan", plan),  # changes nothing: a read token may plan
        ("GET", "/api/v1/rollouts", listing),
        ("GET", "/api/v1/rollouts/{id}", one),
        ("GET", "/api/v1/rollback-targets", targets),
        ("GET", "/api/v1/changes", changes),
    ]
    return mutating, reading
