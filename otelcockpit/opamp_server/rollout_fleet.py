"""The OpAMP server's agents as the fleet of its rollout service (``otelcockpit.rollout.service``).

In the OpAMP world a "pipeline" is a config name and its revisions are the config versions; the
live revision is the version the config's assignment(s) point to, and the collectors a version
reaches are the agents whose winning assignment names the config and that accept remote config.

* Staging a version to some agents is a per-agent *override* of the desired config (table
  ``rollout_overrides``, committed before any offer goes out): WebSocket agents get the offer at
  once, HTTP agents with their next poll.
* Observation reads what each agent reported: remote-config status and hash, error, and health.
* Finalize folds the change: the config's assignments point to the new version and the rollout's
  overrides are dropped, in one transaction and one resolution pass, so no agent flip-flops.
* Rollback points the assignments to an earlier version and drops the config's overrides. A hash
  that FAILED on an agent is never offered to it again (the protocol core's rule).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from otelcockpit.errors import CockpitError, UsageError
from otelcockpit.fleet.configfiles import files_from_text, render_files
from otelcockpit.fleet.model import (
    CollectorTarget,
    CollectorType,
    Operation,
    Pipeline,
    Revision,
    parse_time,
    utcnow,
)
from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.hub import Assignment, ConfigVersion, Hub, HubError
from otelcockpit.opamp_server.proto import opamp_pb2 as pb
from otelcockpit.opamp_server.store import Op
from otelcockpit.opamp_server.views import now_text, parse_uid, uid_text
from otelcockpit.rollout.engine import Observation
from otelcockpit.rollout.history import ChangeEntry, return_hash
from otelcockpit.rollout.journal import Journal, RolloutRecord
from otelcockpit.rollout.model import RolloutPlan
from otelcockpit.rollout.service import PlanInputs

BACKEND = "opamp"
CONTEXT = "serve"
ENV_ALIASES = {"env": ("deployment.environment.name", "deployment.environment"), "region": ("cloud.region",)}


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


class AgentMember:
    """An agent as the planner sees it (``id`` and ``attr``, with the usual env/region aliases)."""

    __slots__ = ("attrs", "id", "name", "uid")

    def __init__(self, uid: bytes, attrs: Mapping[str, str]) -> None:
        self.uid = uid
        self.id = uid_text(uid)
        self.attrs = attrs
        service, host = attrs.get("service.name", ""), attrs.get("host.name", "")
        self.name = f"{service}@{host}" if service and host else (service or host or self.id[:13])

    def attr(self, key: str) -> str:
        v = self.attrs.get(key)
        if v:
            return v
        for k in ENV_ALIASES.get(key, ()):
            if self.attrs.get(k):
                return self.attrs[k]
        return ""


class HubFleet:
    """The rollout service's fleet and the engine's target, on the hub's state and its store."""

    backend = BACKEND
    context = CONTEXT
    name = BACKEND
    reports_status = True
    reports_health = True
    # The protocol core never offers a config to an agent whose AvailableComponents lack one of its
    # components (core.wants_offer), so agents a plan leaves out stay on what they run after the fold.
    holds_back = True

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.target = self  # the engine's Target is this object too

    # ---- what is live -------------------------------------------------------------------------
    def bases(self, config: str) -> list[Assignment]:
        return [a for a in self.hub.assignments if a.config == config]

    def live(self, config: str) -> tuple[Assignment, ConfigVersion] | None:
        for a in self.hub.assignments:  # highest priority first
            if a.config == config:
                cv = self.hub.config_version(a.config, a.version)
                if cv is not None:
                    return a, cv
        return None

    def _revisions(self, config: str, *, upto_live: bool) -> tuple[Revision, ...]:
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

    def _kind(self, uid: bytes) -> str:
        s = self.hub.agents.get(uid)
        sdk = s is not None and core.agent_kind(s) == core.AGENT_SDK
        return (CollectorType.SDK if sdk else CollectorType.OTEL).value

    def members(self, config: str) -> list[AgentMember]:
        out = []
        for uid, s in self.hub.agents.items():
            if not s.capabilities & core.ACCEPTS_REMOTE_CONFIG:
                continue
            a = self.hub.resolve_assignment(s.attributes)
            if a is not None and a.config == config:
                out.append(AgentMember(uid, s.attributes))
        return out

    # ---- RolloutFleet -------------------------------------------------------------------------
    async def plan_inputs(self, pipeline: str, contents: str) -> PlanInputs:
        hub = self.hub
        versions = hub.configs.get(pipeline) or []
        if not versions:
            raise HubError(404, f"no config named {pipeline!r}")
        live = self.live(pipeline)
        if live is None:
            raise HubError(
                409, f"config {pipeline!r} is assigned to no agent: assign a version first (POST /api/v1/assignments)"
            )
        base_a, base_cv = live
        types = {n: ct for n, (_b, ct) in base_cv.files.items()}
        try:
            files = files_from_text(contents, types, what=f"config {pipeline} version {base_cv.version}")
        except UsageError as exc:
            raise HubError(422, exc.message) from None
        probe = ConfigVersion.make(pipeline, len(versions) + 1, files, "", "", now_text())
        same = next((cv for cv in versions if cv.hash == probe.hash), None)
        if same is not None and same.hash == base_cv.hash:
            raise HubError(409, f"config {pipeline} version {same.version} is already live (assignment {base_a.id})")
        new = pipeline_of(same or probe, base_a.selector)
        if same is None:
            new = dataclasses.replace(new, id="", created_at=None, updated_at=None)
        members = self.members(pipeline)
        agents = self.hub.agents
        available = {}
        for m in members:
            uid = parse_uid(m.id)
            s = agents.get(uid) if uid is not None else None
            available[m.id] = s.component_names if s is not None else None
        return PlanInputs(
            live=pipeline_of(base_cv, base_a.selector),
            new=new,
            base_revision=str(base_cv.version),
            members=members,
            by_type=dict(Counter(self._kind(m.uid) for m in members)),
            available=available,
        )

    async def revisions(self, pipeline: str) -> tuple[Revision, ...]:
        return self._revisions(pipeline, upto_live=True)

    async def all_revisions(self) -> Mapping[str, Sequence[Revision]]:
        return {name: self._revisions(name, upto_live=False) for name in sorted(self.hub.configs)}

    async def reached_by(self, pipeline: str) -> Sequence[AgentMember]:
        return self.members(pipeline)

    async def commit_new(self, plan: RolloutPlan, author: str) -> RolloutPlan:
        if plan.new.id:
            return plan  # an existing version
        live = self.live(plan.pipeline)
        types = {n: ct for n, (_b, ct) in live[1].files.items()} if live else {}
        files = files_from_text(plan.new.contents, types, what=f"config {plan.pipeline}")
        cv = await self.hub.create_config(plan.pipeline, files, author, "rollout", author)
        return dataclasses.replace(
            plan, new=dataclasses.replace(plan.new, id=str(cv.version), created_at=parse_time(cv.created_at))
        )

    async def applied_everywhere(self, pipeline: str) -> Sequence[str]:
        """Versions of ``pipeline`` (newest first) that agents reported APPLIED and none FAILED,
        however they reached them: an assignment, a rollout, a rollback."""
        versions = self.hub.configs.get(pipeline) or []
        if not versions:
            return ()
        by_hash = {cv.hash.hex(): cv.version for cv in versions}
        rows = await self.hub.store.aquery(
            "SELECT hash, status, COUNT(DISTINCT uid) AS n FROM config_history"
            f" WHERE hash IN ({','.join('?' * len(by_hash))}) AND status IN ('APPLIED', 'FAILED') GROUP BY hash, status",
            list(by_hash),
        )
        applied = {r["hash"] for r in rows if r["status"] == "APPLIED" and r["n"] > 0}
        failed = {r["hash"] for r in rows if r["status"] == "FAILED"}
        good = [by_hash[h] for h in applied - failed]
        return tuple(str(v) for v in sorted(good, reverse=True))

    async def collector_targets(self, journal: Journal) -> Mapping[str, CollectorTarget]:
        labels = {cv.hash.hex(): f"{cv.name}@v{cv.version}" for vs in self.hub.configs.values() for cv in vs}
        out: dict[str, CollectorTarget] = {}
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
                out[uid_text(uid)] = CollectorTarget(target, labels.get(target, ""), at)
        return out

    async def extra_changes(self, since: datetime | None) -> Sequence[ChangeEntry]:
        """What the audit log knows besides the rollouts: assignments, rollbacks, config versions."""
        audit = await self.hub.audit(since.isoformat().replace("+00:00", "Z") if since else None, 1000)
        out = []
        for a in audit:
            if not a["action"].startswith(("assignment.", "config.rollback", "config.create", "rollout.fold")):
                continue
            detail = a["detail"]
            out.append(
                ChangeEntry(
                    at=parse_time(a["at"]) or utcnow(),
                    kind=a["action"],
                    pipeline=str(detail.get("config") or a["target"].split("@")[0]),
                    author=a["actor"],
                    scope=a["target"],
                    message=", ".join(f"{k} {v}" for k, v in sorted(detail.items())),
                    rollback_target="",
                    source="audit",
                    rollout_id=str(detail.get("rollout", "")),
                )
            )
        return out

    # ---- the engine's Target -------------------------------------------------------------------
    def _version(self, rec: RolloutRecord) -> ConfigVersion:
        cv = self.hub.config_version(rec.pipeline, int(rec.plan.new.id or 0))
        if cv is None:
            raise CockpitError(f"config {rec.pipeline} has no version {rec.plan.new.id}")
        return cv

    def _point_bases(self, config: str, version: int, actor: str, why: str) -> list[Op]:
        """Ops (and in-memory changes) that make every assignment of ``config`` point to ``version``."""
        ops: list[Op] = []
        changed = []
        for a in self.bases(config):
            if a.version != version:
                ops.append(("UPDATE assignments SET version = ? WHERE id = ?", (version, a.id)))
                ops.append(
                    self.hub.audit_op(
                        actor or "rollout",
                        why,
                        str(a.id),
                        {"config": config, "from_version": a.version, "to_version": version},
                    )
                )
                changed.append(a)
        if changed:
            ops += self.hub.notify("assignments")  # the other nodes re-resolve their agents
            ids = {a.id for a in changed}
            self.hub.assignments = [
                dataclasses.replace(a, version=version) if a.id in ids else a for a in self.hub.assignments
            ]
        return ops

    def _drop(self, pred: Any, rollout_id: str = "", config: str = "") -> list[Op]:
        """Forget the overrides ``pred(config, version, rollout)`` selects; the ops that delete them."""
        hub = self.hub
        rows = [uid for uid, (c, v) in hub.overrides.items() if pred(c, v, hub.override_owner.get(uid, ""))]
        for uid in rows:
            hub.overrides.pop(uid, None)
            hub.override_owner.pop(uid, None)
        notify = hub.notify("assignments")  # the other nodes re-resolve their agents
        if rollout_id:
            return [("DELETE FROM rollout_overrides WHERE rollout = ?", (rollout_id,)), *notify]
        return [("DELETE FROM rollout_overrides WHERE config = ?", (config,)), *notify]

    async def live_pipeline(self, name: str) -> Pipeline | None:
        live = self.live(name)
        return pipeline_of(live[1], live[0].selector) if live else None

    async def prepare(self, rollout: RolloutRecord) -> None:
        self._version(rollout)

    async def stage_apply(self, rollout: RolloutRecord, stage: Any, collector_ids: Sequence[str]) -> Mapping[str, str]:
        cv = self._version(rollout)
        key = (cv.name, cv.version)
        hub = self.hub
        async with hub.admin_lock:
            uids: list[bytes] = []
            ops: list[Op] = []
            at = now_text()
            for cid in collector_ids:
                uid = parse_uid(cid)
                if uid is None:
                    continue
                uids.append(uid)
                if hub.overrides.get(uid) != key or hub.override_owner.get(uid) != rollout.id:
                    hub.overrides[uid] = key
                    hub.override_owner[uid] = rollout.id
                    ops.append(
                        (
                            "INSERT INTO rollout_overrides (uid, config, version, rollout, at) VALUES (?, ?, ?, ?, ?) "
                            "ON CONFLICT (uid) DO UPDATE SET config = excluded.config, version = excluded.version, "
                            "rollout = excluded.rollout, at = excluded.at",
                            (uid, cv.name, cv.version, rollout.id, at),
                        )
                    )
            if ops:
                ops.append(
                    hub.audit_op(
                        rollout.author or "rollout",
                        "rollout.stage",
                        f"{cv.name}@{cv.version}",
                        {"rollout": rollout.id, "stage": getattr(stage, "name", ""), "agents": len(ops)},
                    )
                )
                ops += hub.notify("assignments")  # the agents of other nodes are offered there
            await hub.reresolve(uids, ops)
        return {cid: cv.hash.hex() for cid in collector_ids}

    async def observe(self, collector_ids: Sequence[str]) -> Mapping[str, Observation]:
        out: dict[str, Observation] = {}
        committed = self.hub.committed_state  # never a report a crash could still lose
        for cid in collector_ids:
            uid = parse_uid(cid)
            s = committed(uid) if uid is not None else None
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
            lacking = s.lacks(d) if d is not None else ()
            if lacking and digest != d.hash.hex():  # type: ignore[union-attr]
                # Never offered (core.wants_offer): say so instead of waiting for the apply timeout.
                status, digest = "failed", d.hash.hex()  # type: ignore[union-attr]
                error = f"not offered: it lacks {', '.join(lacking)}"
            elif d is not None and d.hash in s.failed_hashes and rcs is not None and digest != d.hash.hex():
                # The core never offers a hash that FAILED on this agent: say so instead of a timeout.
                why = s.failed_hashes[d.hash] or "no error message"
                status, digest, error = "failed", d.hash.hex(), f"not offered: it FAILED on this agent before ({why})"
            out[cid] = Observation(status, digest, error, health)
        return out

    async def finalize(self, rollout: RolloutRecord) -> str:
        cv = self._version(rollout)
        async with self.hub.admin_lock:
            if not self.bases(cv.name):
                raise CockpitError(f"config {cv.name} is assigned to no agent any more: nothing to fold into")
            ops = self._point_bases(cv.name, cv.version, rollout.author, "rollout.fold")
            ops += self._drop(lambda c, v, r: r == rollout.id, rollout.id)
            await self.hub.reresolve(None, ops)
        self.hub.events.publish("assignment", {"config": cv.name, "version": cv.version, "rollout": rollout.id})
        return str(cv.version)

    async def cleanup(self, rollout: RolloutRecord) -> None:
        async with self.hub.admin_lock:
            ops = self._drop(lambda c, v, r: r == rollout.id, rollout.id)
            ops.append(
                self.hub.audit_op(rollout.author or "rollout", "rollout.abort", rollout.pipeline, {"rollout": rollout.id})
            )
            await self.hub.reresolve(None, ops)

    async def rollback(self, pipeline: str, snapshot: Pipeline | None, *, author: str = "") -> str:
        if snapshot is None or not snapshot.id.isdigit():
            raise CockpitError(f"config {pipeline}: no earlier version to roll back to")
        version = int(snapshot.id)
        if self.hub.config_version(pipeline, version) is None:
            raise CockpitError(f"config {pipeline} has no version {version}")
        async with self.hub.admin_lock:
            if not self.bases(pipeline):
                raise CockpitError(f"config {pipeline} is assigned to no agent: nothing to roll back")
            ops = self._point_bases(pipeline, version, author, "rollout.rollback")
            ops += self._drop(lambda c, v, r: c == pipeline, config=pipeline)
            ops.append(
                self.hub.audit_op(
                    author or "rollout", "config.rollback", f"{pipeline}@{version}", {"config": pipeline, "version": version}
                )
            )
            await self.hub.reresolve(None, ops)
        self.hub.events.publish("assignment", {"config": pipeline, "version": version, "rollback": True})
        return str(version)
