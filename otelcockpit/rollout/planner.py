"""From a fleet snapshot and a new pipeline version to a plan: stages, blast radius, diff, findings.

Stage assignment is deterministic: the collectors the new version reaches (type-aware, enabled
ones only, the same rule as Fleet Management's GetConfig) are ordered by a stable hash of
(pipeline, collector id), so a canary spreads over the fleet instead of taking the first names
in the alphabet, and the same inputs always give the same stages. The canary comes first, then
the waves by cumulative percentage of the whole set; every collector is in exactly one stage.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Protocol

from otelcockpit.errors import UsageError
from otelcockpit.fleet.components import missing as missing_of
from otelcockpit.fleet.matchers import MatcherError, compile_matchers, matches_getter, parse_matchers
from otelcockpit.fleet.matching import PipelineMatcher
from otelcockpit.fleet.model import Collector, FleetSnapshot, Pipeline
from otelcockpit.rollout.model import (
    ROLLOUT_ATTRIBUTE,
    BlastRadius,
    CanarySpec,
    Finding,
    Gates,
    Incompatible,
    Preflight,
    RolloutPlan,
    Stage,
    _num,
)


class Member(Protocol):
    """What the planner needs of a collector or an agent."""

    id: str

    def attr(self, key: str) -> str: ...


def _order_key(pipeline: str, cid: str) -> bytes:
    return hashlib.blake2b(f"{pipeline}\x1f{cid}".encode(), digest_size=8).digest()


def reached(pipeline: Pipeline, collectors: Sequence[Collector]) -> list[Collector]:
    """The collectors a pipeline version reaches (none for a disabled one)."""
    try:
        compile_matchers(tuple(pipeline.matchers))
    except MatcherError as exc:
        raise UsageError(f"pipeline {pipeline.name!r}: {exc}") from None
    if any(ROLLOUT_ATTRIBUTE in m for m in pipeline.matchers):
        raise UsageError(
            f"pipeline {pipeline.name!r}: its matchers use {ROLLOUT_ATTRIBUTE}, which rollouts reserve; "
            "is another rollout of it in flight?"
        )
    return PipelineMatcher([pipeline]).collectors_for(pipeline, collectors)


def _counts(collectors: Sequence[Member], key: str) -> dict[str, int]:
    c = Counter(x.attr(key) or "-" for x in collectors)
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def assign_stages(
    pipeline: str, collectors: Sequence[Member], canary: CanarySpec, waves: Sequence[float]
) -> tuple[Stage, ...]:
    ordered = sorted(collectors, key=lambda c: _order_key(pipeline, c.id))
    total = len(ordered)
    stages: list[tuple[str, list[Collector]]] = []
    taken: set[str] = set()
    if canary.kind == "selector":
        matchers = parse_matchers(str(canary.value))
        chosen = [c for c in ordered if matches_getter(matchers, c.attr)]
        if not chosen:
            raise UsageError(f"--canary {canary.value}: no collector of this rollout matches it")
        if len(chosen) == total and total > 1:
            raise UsageError(f"--canary {canary.value}: it matches every collector of this rollout ({total})")
        stages.append(("canary", chosen))
    elif canary.kind == "count":
        n = int(canary.value)
        if total and n >= total and total > 1:
            raise UsageError(f"--canary {n}: the rollout reaches only {total} collector(s)")
        stages.append(("canary", ordered[:n]))
    elif canary.kind == "percent":
        n = max(1, math.ceil(total * float(canary.value) / 100))
        stages.append(("canary", ordered[: min(n, total)]))
    for c in stages[0][1] if stages else ():
        taken.add(c.id)
    rest = [c for c in ordered if c.id not in taken]
    done = len(taken)
    for pct in waves:
        upto = min(total, math.ceil(total * pct / 100))
        n = max(0, upto - done)
        if pct >= 100:
            n = len(rest)
        chunk, rest = rest[:n], rest[n:]
        done += len(chunk)
        stages.append((f"({_num(pct)}%)", chunk))
    out: list[Stage] = []
    waves_seen = 0
    for name, members in stages:
        if not members:
            continue
        if name != "canary":
            waves_seen += 1
            name = f"wave {waves_seen} {name}"
        out.append(
            Stage(
                index=len(out),
                name=name,
                collector_ids=tuple(c.id for c in members),
                by_env=_counts(members, "env"),
                by_region=_counts(members, "region"),
            )
        )
    return tuple(out)


def pipeline_diff(live: Pipeline | None, new: Pipeline, base_revision: str = "") -> str:
    """A unified diff of contents, with matcher and enabled changes as header lines."""
    rev = f", revision {base_revision}" if base_revision else ""
    old_text = live.contents if live else ""
    lines: list[str] = []
    if live is None:
        lines.append(f"# new pipeline {new.name}")
    else:
        if tuple(live.matchers) != tuple(new.matchers):
            lines.append(f"# matchers: {list(live.matchers)} -> {list(new.matchers)}")
        if live.enabled != new.enabled:
            lines.append(f"# enabled: {live.enabled} -> {new.enabled}")
        if live.config_type != new.config_type:
            lines.append(f"# config type: {live.config_type.value} -> {new.config_type.value}")
    body = difflib.unified_diff(
        old_text.splitlines(keepends=True),
        new.contents.splitlines(keepends=True),
        fromfile=f"{new.name} (live{rev})",
        tofile=f"{new.name} (new)",
    )
    text = "".join(line if line.endswith("\n") else line + "\n" for line in body)
    if not text and not lines:
        return ""
    return "\n".join(lines) + ("\n" if lines else "") + text


def policy_findings(new: Pipeline, snapshot: FleetSnapshot | None, *, production: bool) -> tuple[Finding, ...]:
    """otelcockpit.policy's findings for the new version (none when the policy package is absent)."""
    try:
        from otelcockpit.policy import lint_pipeline
    except ImportError:  # pragma: no cover - the policy package ships with the cockpit
        return ()
    report = lint_pipeline(new, snapshot, production=production)
    return tuple(Finding(f.rule, f.severity, f.line, f.message) for f in report.findings)


def components_needed(new: Pipeline) -> dict[str, int]:
    """The components the new version uses, with the line naming each (otelcockpit.policy)."""
    try:
        from otelcockpit.policy.lint import components_used
    except ImportError:  # pragma: no cover - the policy package ships with the cockpit
        return {}
    return components_used(new.contents, new.config_type.value)


def member_name(m: Member) -> str:
    return str(getattr(m, "name", "") or m.id)


def preflight(
    members: Sequence[Member],
    needs: Mapping[str, int],
    available: Mapping[str, frozenset[str] | None] | None,
    *,
    choice: str,
    can_hold_back: bool,
) -> tuple[Preflight, list[Finding]]:
    """Which members lack a component the new version uses, what the plan does about them (the
    context's ``choice``), and the findings that say so, one per missing component, on the line that
    names it. ``available``: member id -> its components (None: it does not say); None: the fleet
    reports no components at all."""
    incompatible: list[Incompatible] = []
    checked = unreported = 0
    for m in members:
        have = available.get(m.id) if available is not None else None
        if have is None:
            unreported += 1
            continue
        checked += 1
        lack = missing_of(needs, have)
        if lack:
            incompatible.append(Incompatible(m.id, member_name(m), lack))
    applied, note = choice, ""
    if incompatible and choice == "exclude" and not can_hold_back:
        applied = "block"
        note = "this fleet cannot keep collectors off a version once it is folded, so they cannot be left out"
    pf = Preflight(tuple(sorted(needs)), checked, unreported, tuple(incompatible), choice, applied, note)
    findings: list[Finding] = []
    by_component: dict[str, list[Incompatible]] = {}
    for i in incompatible:
        for comp in i.missing:
            by_component.setdefault(comp, []).append(i)
    for comp, who in sorted(by_component.items(), key=lambda kv: (needs.get(kv[0], 0), kv[0])):
        names = ", ".join(w.name for w in who[:3]) + (f" and {len(who) - 3} more" if len(who) > 3 else "")
        if applied == "exclude":
            what, severity = "left out of the plan (missing_components: exclude)", "warning"
        else:
            what = "the push is blocked (missing_components: block" + (f"; {note}" if note else "") + ")"
            severity = "error"
        findings.append(
            Finding(
                "missing-component",
                severity,
                needs.get(comp),
                f"{len(who)} collector(s) in the blast radius lack {comp} ({names}): {what}",
            )
        )
    return pf, findings


def latest_revision_id(snapshot: FleetSnapshot, name: str) -> str:
    revs = snapshot.revisions.get(name) or ()
    return revs[-1].id if revs else ""


def plan_members(
    new: Pipeline,
    members: Sequence[Member],
    *,
    base: Pipeline | None,
    base_revision: str,
    canary: CanarySpec,
    waves: Sequence[float],
    gates: Gates,
    findings: Sequence[Finding] = (),
    dropped: int = 0,
    by_type: Mapping[str, int] | None = None,
    all_at_once: bool = False,
    available: Mapping[str, frozenset[str] | None] | None = None,
    missing_components: str = "block",
    can_hold_back: bool = False,
) -> RolloutPlan:
    """The plan for a version and the members it reaches (anything with ``id`` and ``attr()``): the
    one planner, used for a fleet snapshot (:func:`make_plan`) and for the OpAMP server's agents.

    The pre-flight runs here: members that lack a component the version uses (``available``, from
    OpAMP AvailableComponents) are listed, and left out of the stages or block the push as
    ``missing_components`` says."""
    pf, pf_findings = preflight(
        members, components_needed(new), available, choice=missing_components, can_hold_back=can_hold_back
    )
    if pf.left_out:
        out_ids = {i.id for i in pf.incompatible}
        members = [m for m in members if m.id not in out_ids]
    stages = assign_stages(new.name, members, canary, waves)
    radius = BlastRadius(
        total=len(members),
        by_env=_counts(members, "env"),
        by_region=_counts(members, "region"),
        by_type=dict(by_type) if by_type is not None else dict(Counter(m.type.value for m in members)),  # type: ignore[attr-defined]
        dropped=dropped,
    )
    return RolloutPlan(
        pipeline=new.name,
        new=new,
        base=base,
        base_revision=base_revision,
        canary=canary,
        waves=tuple(waves),
        gates=gates,
        stages=stages,
        blast_radius=radius,
        diff=pipeline_diff(base, new, base_revision),
        findings=(*pf_findings, *findings),
        all_at_once=all_at_once,
        preflight=pf,
    )


def make_plan(
    snapshot: FleetSnapshot,
    new: Pipeline,
    *,
    canary: CanarySpec | None = None,
    waves: Sequence[float] = (100.0,),
    gates: Gates | None = None,
    base_revision: str | None = None,
    production: bool = False,
    lint: bool = True,
    all_at_once: bool = False,
) -> RolloutPlan:
    live = snapshot.pipeline(new.name)
    if live is not None:
        new = Pipeline(
            name=new.name,
            contents=new.contents,
            matchers=new.matchers,
            enabled=new.enabled,
            config_type=new.config_type,
            id=live.id,
            source=new.source or live.source,
        )
    if not new.contents.strip():
        raise UsageError(f"pipeline {new.name!r}: the new contents are empty")
    members = reached(new, snapshot.collectors)
    old_ids: set[str] = set()
    if live is not None:
        try:
            old_ids = {c.id for c in reached(live, snapshot.collectors)}
        except UsageError:
            old_ids = set()
    new_ids = {c.id for c in members}
    rev = latest_revision_id(snapshot, new.name) if base_revision is None else base_revision
    return plan_members(
        new,
        members,
        base=live,
        base_revision=rev,
        canary=canary or CanarySpec("none"),
        waves=waves,
        gates=gates or Gates(),
        findings=policy_findings(new, snapshot, production=production) if lint else (),
        dropped=len(old_ids - new_ids),
        all_at_once=all_at_once,
    )
