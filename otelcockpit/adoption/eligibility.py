"""The eligibility engine: for each service, the zero-code path to instrument it, or why not.

Rules are data (``rules.yaml`` in this package; a user's ``rules.yaml`` beside ``config.yaml``
replaces rules by id, adds new ones, or removes one with ``disabled: true``). The engine is a
pure function of a :class:`~otelcockpit.adoption.inventory.Service` and the rules:

1. Every rule's conditions evaluate to true, false or **unknown** (a field is missing).
2. ``eligible`` rules make a path a candidate with a rank (lower is better); ``block`` rules
   exclude a path; ``caveat`` rules add checks to a path; ``note`` rules add reasons.
3. A candidate is *eligible* when no block rule holds, *blocked* when one holds, and *unknown*
   when none holds but one could not be decided (or its own conditions could not be).
4. The recommended path is the best-ranked eligible path; if a better-ranked path is unknown the
   result is ``unknown`` with the reason ("kernel version unknown: OBI eligibility cannot be
   decided"), never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from otelcockpit.adoption.inventory import Service
from otelcockpit.errors import ConfigError
from otelcockpit.yamlio import load_yaml

PATHS = (
    "operator",
    "injector",
    "obi",
    "dotnet-builtin",
    "lambda-layer",
    "agent-in-image",
    "compile-time",
    "sdk",
)
UNKNOWN = "unknown"
OUTCOMES = ("eligible", "block", "caveat", "note")
OPERATORS = ("in", "not_in", "not", "lt", "lte", "gt", "gte", "semver", "not_semver", "eq")

PATH_LABELS = {
    "operator": "operator",
    "injector": "injector",
    "obi": "OBI",
    "dotnet-builtin": ".NET built-in",
    "lambda-layer": "Lambda layer",
    "agent-in-image": "agent in image",
    "compile-time": "compile-time",
    "sdk": "SDK",
}
FIELD_LABELS = {
    "kernel": "kernel version",
    "kernel_build": "kernel build",
    "btf": "BTF",
    "privileged_allowed": "privileged allowed",
    "host_pid_allowed": "hostPID allowed",
    "operator_installed": "operator installed",
    "operator_version": "operator version",
    "runtime": "runtime version",
    "runtime_version": "runtime version",
    "node_module_system": "Node.js module system",
    "libc": "libc",
    "glibc_version": "glibc version",
    "distro_family": "distro",
    "arch": "CPU arch",
    "os": "OS",
    "language": "language",
    "language_family": "language",
    "platform": "platform",
    "has_sdk": "existing SDK",
    "dotnet_framework": ".NET flavour",
    "container": "platform",
}


# ---- versions -------------------------------------------------------------------------------

_VERSION = re.compile(r"\d+(?:\.\d+)*")


def version_tuple(text: Any) -> tuple[int, ...] | None:
    """``"4.18.0-553.el8"`` -> (4, 18, 0); ``"net8.0"`` -> (8, 0); no digits -> None."""
    return _version_tuple(str(text))


@lru_cache(maxsize=8192)
def _version_tuple(text: str) -> tuple[int, ...] | None:
    m = _VERSION.search(text)
    if not m:
        return None
    return tuple(int(p) for p in m.group(0).split("."))


def compare_versions(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = max(len(a), len(b))
    pa = a + (0,) * (n - len(a))
    pb = b + (0,) * (n - len(b))
    return (pa > pb) - (pa < pb)


@lru_cache(maxsize=4096)
def semver_satisfies(version: tuple[int, ...], spec: str) -> bool:
    """A small subset of npm ranges: ``^X.Y.Z``, ``>=``, ``>``, ``<``, ``<=``, ``=``, joined by
    spaces (and) and ``||`` (or)."""
    for clause in spec.split("||"):
        ok = True
        for comp in clause.split():
            m = re.match(r"^(\^|>=|<=|>|<|=)?v?(\d+(?:\.\d+)*)$", comp)
            if not m:
                raise ConfigError(f"bad semver range {spec!r}")
            op, ver = m.group(1) or "=", version_tuple(m.group(2)) or (0,)
            c = compare_versions(version, ver)
            if op == "^":
                upper = (ver[0] + 1,)
                ok = ok and c >= 0 and compare_versions(version, upper) < 0
            elif op == ">=":
                ok = ok and c >= 0
            elif op == ">":
                ok = ok and c > 0
            elif op == "<":
                ok = ok and c < 0
            elif op == "<=":
                ok = ok and c <= 0
            else:
                ok = ok and c == 0
        if ok:
            return True
    return False


# ---- derived fields -------------------------------------------------------------------------


def _is_dotnet_framework(svc: Service) -> bool | None:
    if svc.get("language") != "dotnet":
        return False
    if svc.get("runtime_flavor") == "netfx":
        return True
    rv = svc.get("runtime_version")
    if rv is None:
        return None
    return bool(re.fullmatch(r"(net)?4\d{1,2}|4\.\d+(\.\d+)?", str(rv).lower()))


def _runtime(svc: Service) -> str | None:
    rv = svc.get("runtime_version")
    if rv is None:
        return None
    text = str(rv).lower().strip()
    fw = re.fullmatch(r"net(4)(\d)(\d)?", text)  # net48 -> 4.8, net462 -> 4.6.2
    if fw:
        return ".".join(g for g in fw.groups() if g)
    text = re.sub(r"^(netcoreapp|net|go|v)", "", text)
    if svc.get("language_family") == "java" and text.startswith("1."):
        text = text[2:]  # 1.8 -> 8
    return text if version_tuple(text) is not None else None


def field_value(svc: Service, name: str) -> Any:
    if name == "runtime":
        return _runtime(svc)
    if name == "dotnet_framework":
        return _is_dotnet_framework(svc)
    if name == "has_sdk":
        sdk = svc.get("existing_sdk")
        return None if sdk is None else str(sdk).strip().lower() not in ("none", "no", "false")
    if name == "kernel_build":
        k = svc.get("kernel")
        if k is None:
            return None
        m = re.match(r"^\d+\.\d+\.\d+-(\d+)", str(k))
        return m.group(1) if m else None
    return svc.get(name)


# ---- rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    id: str
    when: Mapping[str, Any]
    outcome: str
    paths: tuple[str, ...] = ()
    rank: int = 50
    reason: str = ""
    blockers: tuple[str, ...] = ()
    if_unknown: str = ""
    source: str = ""
    rows: tuple[int, ...] = ()
    origin: str = ""
    code_change: bool = False  # the path this rule makes eligible needs a code change


def _parse_rule(raw: Any, origin: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{origin}: a rule must be a mapping")
    where = (
        f"{origin.split(':')[0]}:{getattr(raw, 'line', '')}".rstrip(":")
        if getattr(raw, "line", None)
        else origin
    )
    rid = str(raw.get("id") or "")
    if not rid:
        raise ConfigError(f"{where}: a rule needs an id")
    outcome = str(raw.get("outcome") or "")
    if outcome not in OUTCOMES:
        raise ConfigError(f"{where}: rule {rid}: outcome must be one of {', '.join(OUTCOMES)}")
    paths = tuple(str(p) for p in raw.get("paths") or ())
    for p in paths:
        if p not in PATHS:
            raise ConfigError(f"{where}: rule {rid}: unknown path {p!r} (one of {', '.join(PATHS)})")
    if outcome != "note" and not paths:
        raise ConfigError(f"{where}: rule {rid}: needs paths")
    when = raw.get("when") or {}
    if not isinstance(when, Mapping):
        raise ConfigError(f"{where}: rule {rid}: when must be a mapping of field to condition")
    for key, cond in when.items():
        if isinstance(cond, Mapping):
            for op in cond:
                if op not in OPERATORS:
                    raise ConfigError(
                        f"{where}: rule {rid}: {key}: unknown operator {op!r} (one of {', '.join(OPERATORS)})"
                    )
    blockers = raw.get("blockers") or ()
    if isinstance(blockers, str):
        blockers = (blockers,)
    return Rule(
        id=rid,
        when=dict(when),
        outcome=outcome,
        paths=paths,
        rank=int(raw.get("rank", 50)),
        reason=str(raw.get("reason") or ""),
        blockers=tuple(str(b) for b in blockers),
        if_unknown=str(raw.get("if_unknown") or ""),
        source=str(raw.get("source") or ""),
        rows=tuple(int(r) for r in raw.get("rows") or ()),
        origin=where,
        code_change=bool(raw.get("code_change", False)),
    )


def _rules_from_file(path: Path) -> tuple[list[Rule], set[str]]:
    data = load_yaml(path)
    if data is None:
        return [], set()
    if not isinstance(data, Mapping) or not isinstance(data.get("rules"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'rules' list")
    rules: list[Rule] = []
    disabled: set[str] = set()
    for raw in data["rules"]:
        if isinstance(raw, Mapping) and raw.get("disabled") is True and raw.get("id"):
            disabled.add(str(raw["id"]))
            continue
        rules.append(_parse_rule(raw, str(path)))
    return rules, disabled


def builtin_rules_path() -> Path:
    return Path(__file__).resolve().parent / "rules.yaml"


def user_rules_path() -> Path:
    from otelcockpit.settings import config_path

    return config_path().parent / "rules.yaml"


def load_rules(user_path: Path | None = None, *, include_user: bool = True) -> tuple[Rule, ...]:
    """The built-in rules, then the user's: same id replaces, new id adds, disabled removes."""
    rules, _ = _rules_from_file(builtin_rules_path())
    by_id: dict[str, Rule] = {}
    for r in rules:
        if r.id in by_id:
            raise ConfigError(f"{r.origin}: duplicate rule id {r.id!r}")
        by_id[r.id] = r
    if include_user:
        path = user_path if user_path is not None else user_rules_path()
        if path.exists():
            extra, disabled = _rules_from_file(path)
            for r in extra:
                by_id[r.id] = r
            for rid in disabled:
                by_id.pop(rid, None)
    return tuple(by_id.values())


@lru_cache(maxsize=1)
def builtin_rules() -> tuple[Rule, ...]:
    return load_rules(include_user=False)


# ---- evaluation -----------------------------------------------------------------------------

TRUE, FALSE, UNK = "true", "false", "unknown"


def _eq(value: Any, expected: Any) -> bool:
    if type(value) is str and type(expected) is str:
        return value == expected or value.lower() == expected.lower()
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected or (
            isinstance(value, bool) and isinstance(expected, bool) and value == expected
        )
    return str(value).lower() == str(expected).lower()


def _cmp(value: Any, op: str, expected: Any) -> bool | None:
    v = version_tuple(value)
    e = version_tuple(expected)
    if v is None or e is None:
        return None
    c = compare_versions(v, e)
    return {"lt": c < 0, "lte": c <= 0, "gt": c > 0, "gte": c >= 0}[op]


def eval_condition(value: Any, cond: Any) -> str:
    if value is None:
        return UNK
    if isinstance(cond, list):
        return TRUE if any(_eq(value, c) for c in cond) else FALSE
    if not isinstance(cond, dict):
        return TRUE if _eq(value, cond) else FALSE
    result = TRUE
    for op, arg in cond.items():
        if op == "eq":
            ok: bool | None = _eq(value, arg)
        elif op == "in":
            ok = any(_eq(value, a) for a in arg)
        elif op == "not_in":
            ok = not any(_eq(value, a) for a in arg)
        elif op == "not":
            ok = not _eq(value, arg)
        elif op in ("lt", "lte", "gt", "gte"):
            ok = _cmp(value, op, arg)
        elif op in ("semver", "not_semver"):
            v = version_tuple(value)
            ok = None if v is None else (semver_satisfies(v, str(arg)) == (op == "semver"))
        else:  # validated at load time
            ok = None
        if ok is None:
            result = UNK if result == TRUE else result
        elif not ok:
            return FALSE
    return result


def eval_rule(rule: Rule, svc: Service, values: dict[str, Any] | None = None) -> tuple[str, tuple[str, ...]]:
    """(true|false|unknown, the fields that were missing). ``values`` memoises field values."""
    missing: list[str] = []
    state = TRUE
    for key, cond in rule.when.items():
        if values is None:
            value = field_value(svc, key)
        elif key in values:
            value = values[key]
        else:
            value = values[key] = field_value(svc, key)
        r = eval_condition(value, cond)
        if r == FALSE:
            return FALSE, ()
        if r == UNK:
            state = UNK
            missing.append(key)
    return state, tuple(missing)


@dataclass(frozen=True)
class PathAssessment:
    path: str
    status: str  # eligible | blocked | unknown
    rank: int
    reason: str
    blockers: tuple[str, ...] = ()  # why blocked
    checks: tuple[str, ...] = ()  # caveats when eligible
    unknown: tuple[str, ...] = ()  # why undecidable
    rules: tuple[str, ...] = ()
    code_change: bool = False


@dataclass(frozen=True)
class Eligibility:
    service: Service
    path: str  # one of PATHS, or "unknown"
    alternatives: tuple[str, ...]
    blockers: tuple[str, ...]
    reasons: tuple[str, ...]
    rules: tuple[str, ...]
    code_change: bool | None  # None when the path is unknown
    paths: tuple[PathAssessment, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)  # rule id -> source
    unknowns: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.service.name

    def assessment(self, path: str) -> PathAssessment | None:
        for a in self.paths:
            if a.path == path:
                return a
        return None

    def as_json(self) -> dict[str, Any]:
        s = self.service
        return {
            "name": s.name,
            "team": s.team,
            "language": s.language,
            "platform": s.platform,
            "path": self.path,
            "alternatives": list(self.alternatives),
            "blockers": list(self.blockers),
            "reasons": list(self.reasons),
            "rules": list(self.rules),
            "code_change": self.code_change,
        }


def _unknown_text(fields: Sequence[str], path: str) -> str:
    labels = []
    for f in fields:
        label = FIELD_LABELS.get(f, f.replace("_", " "))
        if label not in labels:
            labels.append(label)
    return f"{' and '.join(labels)} unknown: {PATH_LABELS.get(path, path)} eligibility cannot be decided"


def evaluate(svc: Service, rules: Iterable[Rule] | None = None) -> Eligibility:
    rules = tuple(builtin_rules() if rules is None else rules)
    cand: dict[str, dict[str, Any]] = {}
    blocks: dict[str, list[tuple[Rule, str, tuple[str, ...]]]] = {}
    caveats: dict[str, list[tuple[Rule, str]]] = {}
    notes: list[Rule] = []
    sources: dict[str, str] = {}
    values: dict[str, Any] = {}
    for rule in rules:
        state, missing = eval_rule(rule, svc, values)
        if state == FALSE:
            continue
        if rule.outcome == "eligible":
            for p in rule.paths:
                c = cand.setdefault(p, {"rank": 10**6, "rule": None, "unknown": [], "rules": []})
                if state == TRUE and (c["rule"] is None or rule.rank < c["rank"]):
                    c["rank"], c["rule"] = rule.rank, rule
                elif state == UNK:
                    c["unknown"].append((rule, missing))
                    if c["rule"] is None:
                        c["rank"] = min(c["rank"], rule.rank)
        elif rule.outcome == "block":
            for p in rule.paths:
                blocks.setdefault(p, []).append((rule, state, missing))
        elif rule.outcome == "caveat":
            for p in rule.paths:
                if state == TRUE:
                    for b in rule.blockers or (rule.reason,):
                        caveats.setdefault(p, []).append((rule, b))
                elif rule.if_unknown:
                    caveats.setdefault(p, []).append((rule, rule.if_unknown))
        elif rule.outcome == "note" and state == TRUE:
            notes.append(rule)

    assessments: list[PathAssessment] = []
    for p in PATHS:
        c = cand.get(p)
        if c is None:
            continue
        hard = [(r, m) for r, s, m in blocks.get(p, ()) if s == TRUE]
        soft = [(r, m) for r, s, m in blocks.get(p, ()) if s == UNK]
        base: Rule | None = c["rule"]
        rules_used = (
            ([base.id] if base else []) + [r.id for r, _ in c["unknown"]] if base is None else [base.id]
        )
        if hard:
            status = "blocked"
        elif base is None or soft:
            status = UNKNOWN
        else:
            status = "eligible"
        unknown_texts: list[str] = []
        if status == UNKNOWN:
            if base is None:
                for r, m in c["unknown"]:
                    unknown_texts.append(_unknown_text(m, p))
                    rules_used.append(r.id)
            for r, m in soft:
                unknown_texts.append(_unknown_text(m, p))
                rules_used.append(r.id)
        reason = base.reason if base else (c["unknown"][0][0].reason if c["unknown"] else "")
        checks = tuple(dict.fromkeys(b for _, b in caveats.get(p, ())))
        if status == "eligible" and base is not None:
            checks = tuple(dict.fromkeys((*base.blockers, *checks)))
            rules_used += [r.id for r, _ in caveats.get(p, ())]
        rules_used += [r.id for r, _ in hard]
        assessments.append(
            PathAssessment(
                path=p,
                status=status,
                rank=c["rank"],
                reason=reason,
                blockers=tuple(dict.fromkeys(r.reason for r, _ in hard)),
                checks=checks,
                unknown=tuple(dict.fromkeys(unknown_texts)),
                rules=tuple(dict.fromkeys(rules_used)),
                code_change=bool(base.code_change) if base else False,
            )
        )
    # Blocks on paths that were not even candidates still explain (Go: "not injectable").
    for p, items in blocks.items():
        if p in cand:
            continue
        hard = [r for r, s, _ in items if s == TRUE]
        if hard:
            assessments.append(
                PathAssessment(
                    path=p,
                    status="blocked",
                    rank=10**6,
                    reason="",
                    blockers=tuple(dict.fromkeys(r.reason for r in hard)),
                    rules=tuple(dict.fromkeys(r.id for r in hard)),
                )
            )
    assessments.sort(key=lambda a: (a.rank, PATHS.index(a.path)))

    chosen: PathAssessment | None = None
    undecided: list[PathAssessment] = []
    for a in assessments:
        if a.status == "eligible":
            chosen = a
            break
        if a.status == UNKNOWN:
            undecided.append(a)
    path = UNKNOWN if undecided or chosen is None else chosen.path
    alternatives = tuple(a.path for a in assessments if a.status == "eligible" and a is not chosen)
    if path == UNKNOWN and chosen is not None:
        alternatives = (chosen.path, *alternatives)

    reasons: list[str] = []
    rule_ids: list[str] = []
    blockers: list[str] = []
    unknowns: list[str] = []
    for a in assessments:
        if a.status == UNKNOWN:
            unknowns.extend(a.unknown)
    if path == UNKNOWN:
        reasons.extend(unknowns)
        for a in undecided:
            rule_ids.extend(a.rules)
        if chosen is not None:
            reasons.append(f"if not: {PATH_LABELS[chosen.path]}: {chosen.reason}")
    elif chosen is not None:
        reasons.append(chosen.reason)
        rule_ids.extend(chosen.rules)
        blockers.extend(chosen.checks)
        reasons.extend(unknowns)
    for a in assessments:
        if a.status == "blocked":
            blockers.extend(f"{PATH_LABELS[a.path]}: {b}" for b in a.blockers)
            rule_ids.extend(a.rules)
    for n in notes:
        reasons.append(n.reason)
        rule_ids.append(n.id)
    for r in rules:
        sources[r.id] = r.source
    rule_ids = list(dict.fromkeys(rule_ids))
    return Eligibility(
        service=svc,
        path=path,
        alternatives=alternatives,
        blockers=tuple(dict.fromkeys(blockers)),
        reasons=tuple(dict.fromkeys(reasons)),
        rules=tuple(rule_ids),
        code_change=None if path == UNKNOWN or chosen is None else chosen.code_change,
        paths=tuple(assessments),
        sources={rid: sources[rid] for rid in rule_ids if rid in sources},
        unknowns=tuple(dict.fromkeys(unknowns)),
    )


def evaluate_all(services: Iterable[Service], rules: Iterable[Rule] | None = None) -> list[Eligibility]:
    rules = tuple(builtin_rules() if rules is None else rules)
    return [evaluate(s, rules) for s in services]
