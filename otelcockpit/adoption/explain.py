"""The walk through the rules for one service: what ``eligibility --explain`` prints and the
Services view's detail shows.

Each step is one rule that applies to the service (it holds, it depends on a missing field, or it
is a block that the service's facts avoid): the rule, the facts it read with their origin
(inventory file:line, discovered from which agents, or assumed), the public source it rests on,
the assumption made, and what would change the answer (a value of one of its facts that gives
another path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from otelcockpit.adoption.eligibility import (
    CONDITIONAL,
    FALSE,
    FIELD_LABELS,
    IDENTITY_FIELDS,
    PATH_LABELS,
    PATHS,
    TRUE,
    UNK,
    VERSION_FIELDS,
    Eligibility,
    Facts,
    Fill,
    Rule,
    Unit,
    VRange,
    _classes,
    condition_constants,
    eval_condition,
    eval_rule,
    evaluate,
    label,
    value_text,
    version_intervals,
)

# The fields a reader wants to see, in this order (others follow when a rule read them).
FACT_ORDER = (
    "language",
    "runtime_version",
    "runtime_flavor",
    "platform",
    "k8s_distribution",
    "os",
    "distro",
    "host_distro",
    "arch",
    "libc",
    "glibc_version",
    "kernel",
    "btf",
    "privileged_allowed",
    "host_pid_allowed",
    "operator_installed",
    "operator_version",
    "node_module_system",
    "existing_sdk",
    "can_rebuild_image",
    "head_sampling_at_source",
)
# Derived rule fields -> the inventory field a reader recognises.
_SHOWN_AS = {
    "language_family": "language",
    "runtime": "runtime_version",
    "distro_family": "distro",
    "host_family": "kernel",
    "kernel_build": "kernel",
    "has_sdk": "existing_sdk",
    "container": "platform",
    "dotnet_framework": "runtime_version",
}
MAX_CHANGES = 3


@dataclass(frozen=True)
class FactLine:
    field: str
    label: str
    value: str
    origin: str
    kind: str  # inventory | discovered | assumed | unknown

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "value": self.value, "origin": self.origin, "kind": self.kind}


@dataclass(frozen=True)
class Change:
    when: str  # "hostPID allowed were true"
    path: str  # the answer then ("compile-time", "obi (conditional)")

    def text(self) -> str:
        return f"if {self.when}: {self.path}"


@dataclass(frozen=True)
class Step:
    rule: str
    outcome: str  # eligible | block | caveat | note
    paths: tuple[str, ...]
    result: str  # holds | does not hold | depends on ... | undecided ...
    reason: str
    facts: tuple[FactLine, ...]
    sources: tuple[str, ...]
    assumption: str
    changes: tuple[Change, ...]
    rank: int

    def head(self) -> str:
        target = ", ".join(PATH_LABELS.get(p, p) for p in self.paths)
        what = f"{self.outcome} → {target}" if target else self.outcome
        if self.outcome == "eligible":
            what += f" (rank {self.rank})"
        return f"{self.rule} [{what}] {self.result}"

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "outcome": self.outcome,
            "paths": list(self.paths),
            "result": self.result,
            "reason": self.reason,
            "facts": [f.as_json() for f in self.facts],
            "source": list(self.sources),
            "assumption": self.assumption,
            "changes": [{"if": c.when, "path": c.path} for c in self.changes],
        }


@dataclass(frozen=True)
class Explanation:
    eligibility: Eligibility
    facts: tuple[FactLine, ...]
    steps: tuple[Step, ...]

    @property
    def service(self) -> str:
        return self.eligibility.name

    def as_json(self) -> dict[str, Any]:
        e = self.eligibility
        return {
            "name": e.name,
            "team": e.service.team,
            "path": e.path,
            "status": e.status,
            "condition": e.condition,
            "assumptions": list(e.assumptions),
            "fill": [f.as_json() for f in e.fill],
            "code_change": e.code_change,
            "facts": [f.as_json() for f in self.facts],
            "steps": [s.as_json() for s in self.steps],
            "paths": [a.as_json() for a in e.paths],
            "conflicts": [c.text() for c in e.service.conflicts],
        }


def _fact_line(facts: Facts, name: str, units: Mapping[str, Unit]) -> FactLine:
    f = facts.fact(name)
    unit = units.get(name)
    if f.value is None:
        if unit is not None:
            tried = ", ".join(unit.value_label(v) for v in unit.values)
            origin = f.origin_text() if f.origin is not None else "unknown"
            return FactLine(name, label(name), f"unknown (tried {tried})", origin, "unknown")
        return FactLine(name, label(name), "unknown", "unknown", "unknown")
    raw = facts.svc.fields.get(name)
    if raw is not None and not isinstance(raw, bool):
        value = str(raw) + (f" ({f.value.text}.x)" if isinstance(f.value, VRange) else "")
    else:
        value = str(f.value) if isinstance(f.value, VRange) else f.text
    kind = f.origin.kind if f.origin is not None else "unknown"
    return FactLine(name, label(name), value, f.origin_text(), kind)


def _units_by_field(e: Eligibility) -> dict[str, Unit]:
    out: dict[str, Unit] = {}
    for u in e.units:
        for f in (u.name, *u.fills):
            out.setdefault(f, u)
    return out


def _alternatives(facts: Facts, name: str, cond: Any, value: Any) -> list[tuple[Any, str]]:
    """Other values of a known field that change what ``cond`` says: (value, its label)."""
    if name in IDENTITY_FIELDS or value is None:
        return []
    current = eval_condition(value, cond)
    out: list[tuple[Any, str]] = []
    if isinstance(value, bool):
        alt = not value
        if eval_condition(alt, cond) != current:
            out.append((alt, value_text(alt)))
        return out
    if name in VERSION_FIELDS:
        for piece in version_intervals(None, condition_constants(cond)):
            if eval_condition(piece, cond) not in (current, UNK):
                out.append((piece, piece.label()))
        return out[:2]
    spec = facts.kb.fields.get(name)
    if spec is not None:
        reps, classes = _classes(spec.values, [cond])
        for v in reps:
            if eval_condition(v, cond) not in (current, UNK) and v != value:
                out.append((v, " or ".join(value_text(x) for x in classes[v])))
    return out


def _answer(e: Eligibility) -> str:
    return f"{e.path} (conditional)" if e.status == CONDITIONAL else e.path


def explain(e: Eligibility, rules: Sequence[Rule] | None = None) -> Explanation:
    """The walk through the rules for one evaluated service."""
    facts = e.facts
    if facts is None:  # an Eligibility built by hand: evaluate again
        facts = evaluate(e.service, rules).facts
        assert facts is not None
    rules = tuple(facts.kb.rules if rules is None else rules)
    units = _units_by_field(e)
    answer = _answer(e)
    ranks = {a.path: a.rank for a in e.paths}
    chosen_rank = ranks.get(e.path, 10**6)
    fills: dict[str, Fill] = {f.field: f for f in e.fill}
    # every fact the rules read, in a reader's order
    read: list[str] = []
    for r in rules:
        for key in r.when:
            shown = _SHOWN_AS.get(key, key)
            if shown not in read:
                read.append(shown)
    names = [n for n in FACT_ORDER if n in read or e.service.get(n) is not None]
    names += [n for n in read if n not in names]
    fact_lines = tuple(_fact_line(facts, n, units) for n in names)

    memo: dict[str, Any] = {}
    steps: list[tuple[tuple[Any, ...], Step]] = []
    changed_cache: dict[tuple[str, Any], str] = {}

    def changes_for(rule: Rule) -> tuple[Change, ...]:
        out: list[Change] = []
        for key, cond in rule.when.items():
            value = facts.get(key, {})
            unit = units.get(key)
            if value is None and unit is not None:
                fill = fills.get(unit.fill_field)
                for v, p, _ in fill.choices if fill else ():
                    if p != e.path:
                        out.append(Change(f"{label(key)} were {v}", p))
                continue
            for alt, alt_label in _alternatives(facts, key, cond, value):
                cache_key = (key, alt_label)
                if cache_key not in changed_cache:
                    other = evaluate(e.service, rules, knowledge=facts.kb, overrides={key: alt})
                    changed_cache[cache_key] = _answer(other)
                if changed_cache[cache_key] != answer:
                    out.append(Change(f"{label(key)} were {alt_label}", changed_cache[cache_key]))
        return tuple(dict.fromkeys(out))[:MAX_CHANGES]

    for rule in rules:
        state, missing = eval_rule(rule, facts, memo)
        if state == FALSE:
            # a rule the service's facts avoid is a step only when it is about this kind of
            # service (its language and platform conditions hold) and could change the answer
            if rule.outcome not in ("block", "eligible"):
                continue
            if any(
                k in IDENTITY_FIELDS and eval_condition(facts.get(k, {}), c) != TRUE
                for k, c in rule.when.items()
            ):
                continue
            if not rule.when or all(k in IDENTITY_FIELDS for k in rule.when):
                continue
            if rule.outcome == "block" and not any(ranks.get(p, 10**6) <= chosen_rank for p in rule.paths):
                continue
            if rule.outcome == "eligible" and rule.rank >= chosen_rank:
                continue
            result = "does not hold"
        elif state == TRUE:
            result = "holds"
        else:
            what = ", ".join(dict.fromkeys(label(m) for m in missing))
            decided_by = [m for m in missing if m in units]
            result = (
                f"depends on {what}"
                if decided_by
                else f"undecided ({what} unknown; the answer does not depend on it)"
            )
        fact_lines_rule = tuple(_fact_line(facts, k, units) for k in rule.when)
        assumption = ""
        for k in rule.when:
            unit = units.get(k)
            if unit is not None and unit.kind in ("narrowed", "discovered"):
                assumption = (
                    f"{label(k)} taken as {' or '.join(str(unit.value_label(v)) for v in unit.values)}"
                    + (f" ({unit.because})" if unit.because else "")
                )
                break
            f = facts.fact(k)
            if f.value is not None and f.origin is not None and f.origin.kind == "assumed":
                assumption = f"{label(k)} {f.text} assumed ({f.origin.detail})"
                break
            if isinstance(f.value, VRange):
                assumption = f"{label(k)} {f.value.text} stands for {f.value.text}.x"
        step = Step(
            rule=rule.id,
            outcome=rule.outcome,
            paths=rule.paths,
            result=result,
            reason=rule.reason,
            facts=fact_lines_rule,
            sources=rule.sources or ((rule.source,) if rule.source else ()),
            assumption=assumption,
            changes=changes_for(rule) if rule.outcome in ("eligible", "block") else (),
            rank=rule.rank,
        )
        first = min(rule.paths, key=lambda p: (ranks.get(p, 10**6), PATHS.index(p)), default="")
        kind = {"eligible": 0, "block": 1, "caveat": 2, "note": 3}[rule.outcome]
        order = (
            (1, 0, 0, 0, 0)
            if not first
            else (0, ranks.get(first, 10**6), PATHS.index(first), kind, rule.rank if kind == 0 else 0)
        )
        steps.append((order, step))
    steps.sort(key=lambda s: s[0])
    return Explanation(e, fact_lines, tuple(s for _, s in steps))


def render_text(x: Explanation) -> list[str]:
    """Plain lines for the terminal (``eligibility --explain``)."""
    e = x.eligibility
    lines = [f"{e.name}  team {e.service.team or '-'}  path {e.path}  ({e.status})"]
    if e.condition:
        lines.append(f"  {e.condition}")
    for a in e.assumptions:
        lines.append(f"  {a}")
    if e.fill:
        lines.append("fill in:")
        for f in e.fill:
            lines.append(f"  - {f.label} ({f.field})" if not f.choices else f"  - {f.label} ({f.field}):")
            for v, p, why in f.choices:
                lines.append(f"      {v} → {p}" + (f"  ({why})" if why else ""))
    lines.append("facts:")
    width = max((len(f.field) for f in x.facts), default=10) + 2
    for f in x.facts:
        lines.append(f"  {f.field:<{width}}{f.value:<28} {f.origin}")
    if e.service.conflicts:
        lines.append("conflicts (the inventory's value stays in force):")
        for c in e.service.conflicts:
            lines.append(f"  - {c.text()}")
    lines.append("the walk through the rules (best-ranked path first):")
    for n, s in enumerate(x.steps, 1):
        lines.append(f"  {n}. {s.head()}")
        lines.append(f"     {s.reason}")
        if s.facts:
            lines.append("     facts: " + "; ".join(f"{f.field}={f.value} ({f.origin})" for f in s.facts))
        if s.assumption:
            lines.append(f"     assumption: {s.assumption}")
        for src in s.sources:
            lines.append(f"     source: {src}")
        if s.changes:
            lines.append("     would change the answer: " + "; ".join(c.text() for c in s.changes))
    return lines


__all__ = ["FIELD_LABELS", "Change", "Explanation", "FactLine", "Step", "explain", "render_text"]
