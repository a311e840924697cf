"""The rollout as data: plan, stages, gates, per-collector progress, state; flag parsers.

Nothing here imports a backend, a server, an HTTP library or textual: the engine runs inside the
CLI process today and inside ``otelcockpit serve`` tomorrow, and the TUI renders these objects.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from otelcockpit.errors import UsageError
from otelcockpit.fleet.matchers import MatcherError, parse_matchers
from otelcockpit.fleet.model import CollectorType, Pipeline, parse_time, rfc3339

ROLLOUT_ATTRIBUTE = "otelcockpit.rollout"


class RolloutState(StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    PAUSED = "paused"
    ABORTED = "aborted"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"


ACTIVE_STATES = frozenset({RolloutState.PLANNED, RolloutState.RUNNING, RolloutState.PAUSED})


class CollectorStatus(StrEnum):
    PENDING = "pending"  # not offered yet
    APPLYING = "applying"  # offered, not yet confirmed
    SOAKING = "soaking"  # applied with the target hash, waiting out the soak time
    APPLIED = "applied"  # succeeded
    FAILED = "failed"
    HELD = "held"  # this version failed on it before: never offered again automatically


TERMINAL = frozenset({CollectorStatus.APPLIED, CollectorStatus.FAILED, CollectorStatus.HELD})


@dataclass(frozen=True)
class CanarySpec:
    """``--canary``: a selector (matchers), a count N or a percentage P%; ``none`` for no canary."""

    kind: str  # "none" | "selector" | "count" | "percent"
    value: str | int | float = ""

    def text(self) -> str:
        if self.kind == "selector":
            return str(self.value)
        if self.kind == "count":
            return str(self.value)
        if self.kind == "percent":
            return f"{_num(float(self.value))}%"
        return "none"


@dataclass(frozen=True)
class Gates:
    max_failures: int = 0  # the rollout pauses when failures exceed this
    soak_seconds: float = 0.0  # a collector must stay applied (and healthy) this long
    health_required: bool = True  # turning unhealthy during the soak is a failure
    apply_timeout: float = 300.0  # seconds from the offer to APPLIED before it counts as failed
    manual: bool = False  # pause after every stage until an explicit continue (resume)

    def as_json(self) -> dict[str, Any]:
        return {
            "max_failures": self.max_failures,
            "soak_seconds": self.soak_seconds,
            "health_required": self.health_required,
            "apply_timeout": self.apply_timeout,
            "manual": self.manual,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Gates:
        return cls(
            max_failures=int(d.get("max_failures", 0)),
            soak_seconds=float(d.get("soak_seconds", 0.0)),
            health_required=bool(d.get("health_required", True)),
            apply_timeout=float(d.get("apply_timeout", 300.0)),
            manual=bool(d.get("manual", False)),
        )


@dataclass(frozen=True)
class Stage:
    index: int
    name: str  # "canary", "wave 1 (10%)" ...
    collector_ids: tuple[str, ...]
    by_env: Mapping[str, int] = field(default_factory=dict)
    by_region: Mapping[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "collectors": len(self.collector_ids),
            "collector_ids": list(self.collector_ids),
            "by_env": dict(self.by_env),
            "by_region": dict(self.by_region),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Stage:
        return cls(
            index=int(d["index"]),
            name=str(d["name"]),
            collector_ids=tuple(d.get("collector_ids") or ()),
            by_env=dict(d.get("by_env") or {}),
            by_region=dict(d.get("by_region") or {}),
        )


@dataclass(frozen=True)
class BlastRadius:
    total: int
    by_env: Mapping[str, int]
    by_region: Mapping[str, int]
    by_type: Mapping[str, int]
    dropped: int = 0  # collectors the live version reaches and the new one no longer does

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_env": dict(self.by_env),
            "by_region": dict(self.by_region),
            "by_type": dict(self.by_type),
            "dropped": self.dropped,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BlastRadius:
        return cls(
            total=int(d.get("total", 0)),
            by_env=dict(d.get("by_env") or {}),
            by_region=dict(d.get("by_region") or {}),
            by_type=dict(d.get("by_type") or {}),
            dropped=int(d.get("dropped", 0)),
        )


@dataclass(frozen=True)
class Finding:
    """A policy finding (a copy of otelcockpit.policy's, so the plan survives without it)."""

    rule: str
    severity: str  # error | warning | info
    line: int | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "line": self.line, "message": self.message}


@dataclass(frozen=True)
class Incompatible:
    """A collector in the blast radius that lacks a component the new version uses (pre-flight)."""

    id: str
    name: str
    missing: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "missing": list(self.missing)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Incompatible:
        return cls(str(d.get("id", "")), str(d.get("name", "")), tuple(str(x) for x in d.get("missing") or ()))


@dataclass(frozen=True)
class Preflight:
    """The pre-flight of a push against what the collectors can run (OpAMP AvailableComponents).

    ``choice`` is what the context asked for when some lack a component (``exclude``: the plan leaves
    them out; ``block``: it refuses to start); ``applied`` is what the plan does (``exclude`` becomes
    ``block`` on a fleet that cannot keep those collectors off the new version, ``note`` says why)."""

    needs: tuple[str, ...] = ()  # the components the new version uses
    checked: int = 0  # collectors in the blast radius that report their components
    unreported: int = 0  # ... that do not (they cannot be checked)
    incompatible: tuple[Incompatible, ...] = ()
    choice: str = "block"
    applied: str = "block"
    note: str = ""

    @property
    def blocks(self) -> bool:
        return bool(self.incompatible) and self.applied == "block"

    @property
    def left_out(self) -> int:
        return len(self.incompatible) if self.applied == "exclude" else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "needs": list(self.needs),
            "checked": self.checked,
            "unreported": self.unreported,
            "incompatible": [i.as_json() for i in self.incompatible],
            "missing_components": self.choice,
            "applied": self.applied,
            "note": self.note,
            "blocks": self.blocks,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Preflight:
        return cls(
            needs=tuple(str(x) for x in d.get("needs") or ()),
            checked=int(d.get("checked", 0)),
            unreported=int(d.get("unreported", 0)),
            incompatible=tuple(Incompatible.from_json(x) for x in d.get("incompatible") or ()),
            choice=str(d.get("missing_components", "block")),
            applied=str(d.get("applied", d.get("missing_components", "block"))),
            note=str(d.get("note", "")),
        )


@dataclass(frozen=True)
class RolloutPlan:
    pipeline: str
    new: Pipeline
    base: Pipeline | None  # the live version when planned (None: a new pipeline)
    base_revision: str  # revision id of the live version ("" when unknown)
    canary: CanarySpec
    waves: tuple[float, ...]  # cumulative percentages, the last is 100
    gates: Gates
    stages: tuple[Stage, ...]
    blast_radius: BlastRadius
    diff: str
    findings: tuple[Finding, ...] = ()
    all_at_once: bool = False  # asked for explicitly: one stage, no canary
    preflight: Preflight = Preflight()

    @property
    def blocking(self) -> list[Finding]:
        """Errors that refuse the push: policy errors and a blocking pre-flight."""
        return [f for f in self.findings if f.severity == "error"]

    def refusal(self) -> str:
        """Why this plan may not start ('' when it may): every face refuses with this one line."""
        errs = self.blocking
        if not errs:
            return ""
        pre = sum(1 for f in errs if f.rule == "missing-component")
        kinds = ", ".join(
            k for k in (f"{len(errs) - pre} policy error(s)" if len(errs) > pre else "",
                        f"{pre} pre-flight error(s)" if pre else "") if k
        )  # fmt: skip
        first = errs[0]
        return f"refused: {kinds} block this push; first: line {first.line or '-'}: {first.message} [{first.rule}]"

    def check_startable(self) -> None:
        """Refuse (PushRefused, one line) a plan a policy error or the pre-flight blocks, or one that
        reaches nobody."""
        from otelcockpit.errors import PushRefused

        if self.blocking:
            raise PushRefused(self.refusal())
        if not self.stages:
            raise PushRefused(f"refused: the new version of {self.pipeline} reaches no collector")

    @property
    def collector_count(self) -> int:
        return sum(len(s.collector_ids) for s in self.stages)

    @property
    def version_key(self) -> str:
        """Identity of the version being rolled out (contents, matchers, type)."""
        return version_key(self.new)

    def as_json(self, *, ids: bool = True) -> dict[str, Any]:
        stages = [s.as_json() for s in self.stages]
        if not ids:
            for s in stages:
                s.pop("collector_ids")
        return {
            "pipeline": self.pipeline,
            "new": pipeline_to_json(self.new),
            "base": pipeline_to_json(self.base) if self.base else None,
            "base_revision": self.base_revision,
            "canary": self.canary.text(),
            "canary_kind": self.canary.kind,
            "waves": [_num(w) for w in self.waves],
            "gates": self.gates.as_json(),
            "stages": stages,
            "blast_radius": self.blast_radius.as_json(),
            "diff": self.diff,
            "findings": [f.as_json() for f in self.findings],
            "blocked": bool(self.blocking),
            "all_at_once": self.all_at_once,
            "preflight": self.preflight.as_json(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RolloutPlan:
        kind = str(d.get("canary_kind", "none"))
        return cls(
            pipeline=str(d["pipeline"]),
            new=pipeline_from_json(d["new"]),
            base=pipeline_from_json(d["base"]) if d.get("base") else None,
            base_revision=str(d.get("base_revision", "")),
            canary=parse_canary(str(d.get("canary", ""))) if kind != "none" else CanarySpec("none"),
            waves=tuple(float(w) for w in d.get("waves") or (100.0,)),
            gates=Gates.from_json(d.get("gates") or {}),
            stages=tuple(Stage.from_json(s) for s in d.get("stages") or ()),
            blast_radius=BlastRadius.from_json(d.get("blast_radius") or {}),
            diff=str(d.get("diff", "")),
            findings=tuple(
                Finding(str(f["rule"]), str(f["severity"]), f.get("line"), str(f["message"]))
                for f in d.get("findings") or ()
            ),
            all_at_once=bool(d.get("all_at_once", False)),
            preflight=Preflight.from_json(d.get("preflight") or {}),
        )


@dataclass
class CollectorProgress:
    """Where one collector stands in a rollout (mutable: the engine owns it)."""

    collector_id: str
    stage: int
    status: CollectorStatus = CollectorStatus.PENDING
    target_hash: str = ""
    previous_hash: str = ""
    error: str = ""
    offered_at: float | None = None  # engine clock (seconds)
    applied_at: float | None = None
    seen_target: bool = False  # reported the target hash at least once (APPLYING or APPLIED)
    health: str = ""
    health_before: str = ""  # health when the version was offered ('' when not reported)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.collector_id,
            "stage": self.stage,
            "status": self.status.value,
            "target_hash": self.target_hash,
            "previous_hash": self.previous_hash,
            "error": self.error,
            "health": self.health,
            "offered_at": self.offered_at,  # engine clock: seconds since the epoch
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CollectorProgress:
        offered = d.get("offered_at")
        return cls(
            collector_id=str(d.get("id", "")),
            stage=int(d.get("stage", 0)),
            status=CollectorStatus(str(d.get("status", "pending"))),
            target_hash=str(d.get("target_hash", "")),
            previous_hash=str(d.get("previous_hash", "")),
            error=str(d.get("error", "")),
            health=str(d.get("health", "")),
            offered_at=float(offered) if isinstance(offered, int | float) else None,
        )


def stage_state(total: int, counts: Mapping[str, int], done: bool) -> str:
    """A stage's state, from its counts (never "applied" when nothing applied):

    pending (nothing offered yet), applying / soaking (some collectors still in flight), waiting
    (some offered and settled, the rest not offered yet: a paused rollout), and once every collector
    has an outcome: applied (all applied), failed (none applied), partly failed (some of each).
    ``done``: the engine closed the stage (it moved on)."""
    applying, soaking, pending = counts.get("applying", 0), counts.get("soaking", 0), counts.get("pending", 0)
    bad = counts.get("failed", 0) + counts.get("held", 0)
    if applying:
        return "applying"
    if soaking:
        return "soaking"
    if pending == total and not done:
        return "pending"
    if pending and not done:
        return "waiting"
    if bad == 0:
        return "applied"
    if bad >= total - pending:
        return "failed"
    return "partly failed"


@dataclass(frozen=True)
class StageProgress:
    index: int
    name: str
    state: str  # pending | applying | soaking | done
    total: int
    pending: int
    applying: int
    applied: int
    failed: int
    held: int
    soaking: int = 0

    @property
    def finished(self) -> int:
        return self.applied + self.failed + self.held

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "state": self.state,
            "total": self.total,
            "pending": self.pending,
            "applying": self.applying,
            "soaking": self.soaking,
            "applied": self.applied,
            "failed": self.failed,
            "held": self.held,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> StageProgress:
        return cls(
            index=int(d["index"]),
            name=str(d["name"]),
            state=str(d["state"]),
            total=int(d["total"]),
            pending=int(d.get("pending", 0)),
            applying=int(d.get("applying", 0)),
            applied=int(d.get("applied", 0)),
            failed=int(d.get("failed", 0)),
            held=int(d.get("held", 0)),
            soaking=int(d.get("soaking", 0)),
        )


@dataclass(frozen=True)
class RolloutView:
    """Everything a screen or ``rollout status --json`` shows about one rollout."""

    id: str
    pipeline: str
    backend: str
    context: str
    state: RolloutState
    reason: str
    author: str
    created_at: datetime | None
    updated_at: datetime | None
    current_stage: int
    plan: RolloutPlan
    stages: tuple[StageProgress, ...]
    failures: tuple[CollectorProgress, ...]
    result_revision: str = ""
    rollback_revision: str = ""  # the rollback target of this pipeline when this rollout started

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.stages)

    def as_json(self, *, collectors: list[CollectorProgress] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "pipeline": self.pipeline,
            "backend": self.backend,
            "context": self.context,
            "state": self.state.value,
            "reason": self.reason,
            "author": self.author,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "current_stage": self.current_stage,
            "result_revision": self.result_revision,
            "rollback_revision": self.rollback_revision,
            "stages": [s.as_json() for s in self.stages],
            "failures": [f.as_json() for f in self.failures],
            "plan": self.plan.as_json(ids=False),
        }
        if collectors is not None:
            out["collectors"] = [c.as_json() for c in collectors]
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RolloutView:
        """The inverse of :meth:`as_json` (what the OpAMP server's admin API sends)."""
        return cls(
            id=str(d["id"]),
            pipeline=str(d["pipeline"]),
            backend=str(d.get("backend", "")),
            context=str(d.get("context", "")),
            state=RolloutState(str(d["state"])),
            reason=str(d.get("reason", "")),
            author=str(d.get("author", "")),
            created_at=parse_time(d.get("created_at")),
            updated_at=parse_time(d.get("updated_at")),
            current_stage=int(d.get("current_stage", 0)),
            plan=RolloutPlan.from_json(d["plan"]),
            stages=tuple(StageProgress.from_json(s) for s in d.get("stages") or ()),
            failures=tuple(CollectorProgress.from_json(f) for f in d.get("failures") or ()),
            result_revision=str(d.get("result_revision", "")),
            rollback_revision=str(d.get("rollback_revision", "")),
        )


# ---- pipelines as JSON (the journal stores plans) ----------------------------------------------
def pipeline_to_json(p: Pipeline) -> dict[str, Any]:
    return {
        "name": p.name,
        "contents": p.contents,
        "matchers": list(p.matchers),
        "enabled": p.enabled,
        "config_type": p.config_type.value,
        "id": p.id,
        "source": p.source,
        "created_at": rfc3339(p.created_at),
        "updated_at": rfc3339(p.updated_at),
    }


def pipeline_from_json(d: Mapping[str, Any]) -> Pipeline:
    return Pipeline(
        name=str(d["name"]),
        contents=str(d.get("contents", "")),
        matchers=tuple(str(m) for m in d.get("matchers") or ()),
        enabled=bool(d.get("enabled", True)),
        config_type=CollectorType(str(d.get("config_type", "alloy"))),
        id=str(d.get("id", "")),
        source=str(d.get("source", "")),
        created_at=parse_time(d.get("created_at")),
        updated_at=parse_time(d.get("updated_at")),
    )


def version_key(p: Pipeline) -> str:
    text = "\x1f".join((p.config_type.value, p.contents, *sorted(p.matchers), str(p.enabled)))
    return "v" + hashlib.sha256(text.encode()).hexdigest()[:16]


# ---- flag parsers ------------------------------------------------------------------------------
_PCT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def parse_canary(text: str | None) -> CanarySpec:
    """``--canary``: ``5`` (collectors), ``2%`` (of the matched fleet) or matchers (``region="eu-west-1"``)."""
    if text is None or not str(text).strip() or str(text).strip().lower() == "none":
        return CanarySpec("none")
    t = str(text).strip()
    if t.isdigit():
        n = int(t)
        if n < 1:
            raise UsageError("--canary 0: a canary needs at least one collector (or leave --canary out)")
        return CanarySpec("count", n)
    m = _PCT.match(t)
    if m:
        pct = float(m.group(1))
        if not 0 < pct <= 100:
            raise UsageError(f"--canary {t}: a percentage must be more than 0% and at most 100%")
        return CanarySpec("percent", pct)
    if t.lstrip("-").replace(".", "", 1).isdigit():
        raise UsageError(f"--canary {t}: expected a whole number of collectors, a percentage (5%) or matchers")
    try:
        parse_matchers(t)
    except MatcherError as exc:
        raise UsageError(
            f"--canary {t!r}: not a count (5), a percentage (5%) or matchers (region=\"eu-west-1\"): {exc}"
        ) from None
    return CanarySpec("selector", t)


def parse_waves(text: str | None) -> tuple[float, ...]:
    """``--waves 10%,50%,100%``: cumulative percentages, increasing; 100% is added when missing."""
    if text is None or not str(text).strip():
        return (100.0,)
    out: list[float] = []
    for part in str(text).split(","):
        m = _PCT.match(part)
        if not m:
            raise UsageError(f"--waves {text}: {part.strip()!r} is not a percentage (e.g. 10%,50%,100%)")
        pct = float(m.group(1))
        if not 0 < pct <= 100:
            raise UsageError(f"--waves {text}: {part.strip()} must be more than 0% and at most 100%")
        if out and pct <= out[-1]:
            raise UsageError(f"--waves {text}: the percentages are cumulative and must increase")
        out.append(pct)
    if out[-1] != 100:
        out.append(100.0)
    return tuple(out)


def parse_duration(text: str | None, flag: str = "--soak") -> float:
    """``30s``, ``5m``, ``1h30m``, ``250ms`` or plain seconds; zero is allowed."""
    if text is None:
        return 0.0
    t = str(text).strip().lower()
    if not t:
        raise UsageError(f"{flag}: empty duration (e.g. 30s, 5m, 1h30m)")
    try:
        value = float(t)
    except ValueError:
        pos = 0
        value = 0.0
        for m in _DURATION.finditer(t):
            if m.start() != pos:
                break
            value += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(t) or pos == 0:
            raise UsageError(f"{flag} {text!r}: not a duration (e.g. 30s, 5m, 1h30m)") from None
    if value < 0 or math.isnan(value) or math.isinf(value):
        raise UsageError(f"{flag} {text!r}: a duration must be zero or more")
    return value


def parse_count(text: str, flag: str) -> int:
    try:
        n = int(text)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} {text!r}: expected a whole number") from None
    if n < 0:
        raise UsageError(f"{flag} {text}: must be zero or more")
    return n


def duration_text(seconds: float) -> str:
    s = int(seconds)
    if seconds != s:
        return f"{seconds:g}s"
    if s and s % 3600 == 0:
        return f"{s // 3600}h"
    if s and s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"
