"""The eligibility engine: for each service, the zero-code path to instrument it, or why not.

Rules are data (``rules.yaml`` in this package; a user's ``rules.yaml`` beside ``config.yaml``
replaces rules by id, adds new ones, or removes one with ``disabled: true``). The engine is a
pure function of a :class:`~otelcockpit.adoption.inventory.Service` and the rules:

1. Every rule's conditions evaluate to true, false or **undecided** (a field is missing, or a
   partial version such as ``"20"`` straddles the rule's threshold).
2. ``eligible`` rules make a path a candidate with a rank (lower is better); ``block`` rules
   exclude a path; ``caveat`` rules add checks to a path; ``note`` rules add reasons.
3. When an eligible or block rule is undecided, the engine evaluates the rules again for every
   value the missing fields can take: the field's vocabulary (narrowed by what is known, e.g.
   .NET runs on amd64 or arm64), the values the fleet reports for it, or the version ranges the
   rules' thresholds cut (a partial version stands for its range, ``"20"`` for 20.x).
4. Every value gives the same path: the answer is **decided**, with the assumption stated
   ("assuming arch is amd64 or arm64"). Values disagree: the answer is the best path that holds
   for some of them, **conditional**, naming each field to fill and what each value changes.
   **unknown** is left for when nothing useful can be said: the language or platform is missing,
   a field that decides has no known set of values, or too many fields are missing at once.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from otelcockpit.adoption.inventory import BOOL_FIELDS, JVM_LANGUAGES, Origin, Service
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
DECIDED = "decided"
CONDITIONAL = "conditional"
STATUSES = (DECIDED, CONDITIONAL, UNKNOWN)
OUTCOMES = ("eligible", "block", "caveat", "note")
OPERATORS = ("in", "not_in", "not", "lt", "lte", "gt", "gte", "semver", "not_semver", "eq")
# At most this many combinations of missing values are tried; beyond it the answer is unknown.
MAX_COMBINATIONS = 512

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
    "runtime_flavor": "runtime flavour",
    "node_module_system": "Node.js module system",
    "libc": "libc",
    "glibc_version": "glibc version",
    "distro": "distro",
    "distro_family": "distro",
    "host_distro": "host OS",
    "host_family": "host OS family",
    "k8s_distribution": "Kubernetes distribution",
    "arch": "CPU arch",
    "os": "OS",
    "language": "language",
    "language_family": "language",
    "platform": "platform",
    "has_sdk": "existing SDK",
    "existing_sdk": "existing SDK",
    "dotnet_framework": ".NET flavour",
    "container": "platform",
    "can_rebuild_image": "image rebuildable",
    "head_sampling_at_source": "head sampling at the source",
}
# The inventory field to fill for a field the rules read.
FILL_FIELD = {
    "runtime": "runtime_version",
    "dotnet_framework": "runtime_version",
    "kernel_build": "kernel",
    "host_family": "kernel",
    "language_family": "language",
    "distro_family": "distro",
    "has_sdk": "existing_sdk",
    "container": "platform",
}
# Without these nothing useful can be said: the answer stays unknown when one of them decides.
IDENTITY_FIELDS = frozenset({"language", "language_family", "platform", "container"})
RUNTIME_LANGUAGES = ("java", "nodejs", "python", "dotnet", "ruby", "php", "nginx", "apache-httpd")
# Version fields and how many components make a version exact; fewer is a range ("20" = 20.x).
VERSION_FIELDS = {"runtime": 3, "kernel": 3, "operator_version": 3, "glibc_version": 2, "kernel_build": 1}
CONTAINER_PLATFORMS = ("kubernetes", "ecs-fargate", "ecs-ec2", "lambda")


def label(name: str) -> str:
    return FIELD_LABELS.get(name, name.replace("_", " "))


# ---- versions -------------------------------------------------------------------------------

_VERSION = re.compile(r"\d+(?:\.\d+)*")


def version_tuple(text: Any) -> tuple[int, ...] | None:
    """``"4.18.0-553.el8"`` -> (4, 18, 0); ``"net8.0"`` -> (8, 0); no digits -> None."""
    if isinstance(text, tuple):
        return text
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


def vtext(v: tuple[int, ...]) -> str:
    return ".".join(map(str, v))


_SEMVER_COMP = re.compile(r"^(\^|>=|<=|>|<|=)?v?(\d+(?:\.\d+)*)$")


@lru_cache(maxsize=4096)
def semver_satisfies(version: tuple[int, ...], spec: str) -> bool:
    """A small subset of npm ranges: ``^X.Y.Z``, ``>=``, ``>``, ``<``, ``<=``, ``=``, joined by
    spaces (and) and ``||`` (or)."""
    for clause in spec.split("||"):
        ok = True
        for comp in clause.split():
            m = _SEMVER_COMP.match(comp)
            if not m:
                raise ConfigError(f"bad semver range {spec!r}")
            op, ver = m.group(1) or "=", version_tuple(m.group(2)) or (0,)
            c = compare_versions(version, ver)
            if op == "^":
                ok = ok and c >= 0 and compare_versions(version, (ver[0] + 1,)) < 0
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


Const = tuple[tuple[int, ...], bool]  # a threshold, and whether the point just above it differs


@lru_cache(maxsize=1024)
def semver_constants(spec: str) -> tuple[Const, ...]:
    """The versions where ``spec`` can change its answer (``^18.19.0`` -> 18.19.0 and 19)."""
    out: list[Const] = []
    for comp in spec.replace("||", " ").split():
        m = _SEMVER_COMP.match(comp)
        if not m:
            raise ConfigError(f"bad semver range {spec!r}")
        v = version_tuple(m.group(2)) or (0,)
        op = m.group(1) or "="
        out.append((v, op in (">", "<=", "=")))
        if op == "^":
            out.append(((v[0] + 1,), False))
    return tuple(out)


def _eps(v: tuple[int, ...]) -> tuple[int, ...]:
    """A point just above ``v`` and below any real version after it."""
    return v + (0,) * max(0, 4 - len(v)) + (1,)


@dataclass(frozen=True)
class VRange:
    """A partial version: every version from ``lo`` up to (not including) ``hi``; ``"20"`` is
    [20, 21), ``"3.12"`` is [3.12, 3.13)."""

    lo: tuple[int, ...]
    hi: tuple[int, ...]
    text: str

    def contains(self, v: tuple[int, ...]) -> bool:
        return compare_versions(v, self.lo) >= 0 and compare_versions(v, self.hi) < 0

    def __str__(self) -> str:
        return f"{self.text} ({self.text}.x)"


@dataclass(frozen=True)
class Bound:
    op: str  # ">=", ">", "<", "<="
    v: tuple[int, ...]


@dataclass(frozen=True)
class VInterval:
    """One piece of a version range the rules cannot tell apart, evaluated at ``point``."""

    point: tuple[int, ...]
    lo: Bound | None  # None: the range's own start (or no lower bound)
    hi: Bound | None  # None: the range's own end (or no upper bound)

    def label(self) -> str:
        return interval_label(self.lo, self.hi)

    def __str__(self) -> str:
        return self.label()


def interval_label(lo: Bound | None, hi: Bound | None) -> str:
    if lo is None and hi is None:
        return "any"
    if lo is not None and hi is not None and lo.op == ">=" and hi.op == "<=" and lo.v == hi.v:
        return vtext(lo.v)
    parts = []
    if lo is not None:
        parts.append(f"{'≥' if lo.op == '>=' else '>'} {vtext(lo.v)}")
    if hi is not None:
        parts.append(f"{'<' if hi.op == '<' else '≤'} {vtext(hi.v)}")
    return " and ".join(parts)


def _pad(c: tuple[int, ...]) -> tuple[int, ...]:
    return c + (0,) * (6 - len(c))


def version_intervals(rng: VRange | None, constants: Iterable[Const]) -> list[VInterval]:
    """Cut ``rng`` (None: every version) at ``constants``: one interval per stretch the rules
    cannot tell apart, in order."""
    merged: dict[tuple[int, ...], Const] = {}
    for c, above in constants:
        prev = merged.get(_pad(c))
        merged[_pad(c)] = (c, above or (prev is not None and prev[1]))
    consts = sorted(merged.values(), key=lambda c: _pad(c[0]))
    # (point, the bound the point starts: None | Bound(">=", c) | Bound(">", c))
    starts: list[tuple[tuple[int, ...], Bound | None]] = []
    if rng is not None:
        starts.append((rng.lo, None))
    elif not consts or compare_versions(consts[0][0], (0,)) > 0:
        starts.append(((0,), None))
    for c, above in consts:
        points = [(c, Bound(">=", c))] + ([(_eps(c), Bound(">", c))] if above else [])
        for point, bound in points:
            if rng is not None and not rng.contains(point):
                continue
            if rng is not None and compare_versions(point, rng.lo) == 0:
                starts[0] = (point, None)  # the range starts exactly at a threshold
                continue
            starts.append((point, bound))
    starts.sort(key=lambda s: _pad(s[0]))
    out: list[VInterval] = []
    for i, (point, lo) in enumerate(starts):
        hi: Bound | None = None
        if i + 1 < len(starts):
            nxt = starts[i + 1][1]
            if nxt is not None:
                hi = Bound("<", nxt.v) if nxt.op == ">=" else Bound("<=", nxt.v)
        out.append(VInterval(point, lo, hi))
    return out


def merge_intervals(items: Sequence[VInterval]) -> str:
    """A label for a run of consecutive intervals."""
    return interval_label(items[0].lo, items[-1].hi)


def parse_version(text: Any, exact: int) -> tuple[int, ...] | VRange | None:
    if isinstance(text, (tuple, VRange, VInterval)):
        return text
    t = version_tuple(text)
    if t is None:
        return None
    if len(t) >= exact:
        return t
    return VRange(t, t[:-1] + (t[-1] + 1,), vtext(t))


# ---- rules and the knowledge around them ----------------------------------------------------


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
    source: str = ""  # the sources joined by "; "
    rows: tuple[int, ...] = ()
    origin: str = ""
    code_change: bool = False  # the path this rule makes eligible needs a code change
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Narrowing:
    when: Mapping[str, Any]
    values: tuple[Any, ...]
    because: str
    source: str


@dataclass(frozen=True)
class FieldDomain:
    name: str
    values: tuple[Any, ...]
    narrow: tuple[Narrowing, ...] = ()


@dataclass(frozen=True)
class DistroFact:
    match: tuple[str, ...]
    family: str
    libc: str | None
    glibc: Mapping[str, str]
    kernel: Mapping[str, str]
    source: str


@dataclass(frozen=True)
class Knowledge:
    rules: tuple[Rule, ...]
    fields: Mapping[str, FieldDomain]
    distros: tuple[DistroFact, ...]

    def distro(self, name: Any) -> tuple[DistroFact | None, str]:
        """The fact for a distribution name and its release ("rhel-8.10" -> (rhel, "8.10"))."""
        if name is None:
            return None, ""
        text = str(name).strip().lower()
        for d in self.distros:
            for prefix in d.match:
                if text.startswith(prefix):
                    m = re.search(r"(\d+(?:\.\d+)?)", text[len(prefix) :])
                    return d, (m.group(1) if m else "")
        return None, ""


def _where(raw: Any, origin: str) -> str:
    line = getattr(raw, "line", None)
    return f"{origin.split(':')[0]}:{line}" if line else origin


def _sources(raw: Any, where: str, rid: str) -> tuple[str, ...]:
    src = raw.get("source")
    if src is None:
        return ()
    if isinstance(src, str):
        return (src,) if src.strip() else ()
    if isinstance(src, list) and all(isinstance(s, str) for s in src):
        return tuple(s for s in src if s.strip())
    raise ConfigError(f"{where}: rule {rid}: source must be a string or a list of strings")


def _check_when(when: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(when, Mapping):
        raise ConfigError(f"{where}: {what}: when must be a mapping of field to condition")
    for key, cond in when.items():
        if isinstance(cond, Mapping):
            for op in cond:
                if op not in OPERATORS:
                    raise ConfigError(
                        f"{where}: {what}: {key}: unknown operator {op!r} (one of {', '.join(OPERATORS)})"
                    )
            if "semver" in cond or "not_semver" in cond:
                semver_constants(str(cond.get("semver", cond.get("not_semver"))))
    return dict(when)


def _parse_rule(raw: Any, origin: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{origin}: a rule must be a mapping")
    where = _where(raw, origin)
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
    when = _check_when(raw.get("when") or {}, where, f"rule {rid}")
    blockers = raw.get("blockers") or ()
    if isinstance(blockers, str):
        blockers = (blockers,)
    sources = _sources(raw, where, rid)
    return Rule(
        id=rid,
        when=when,
        outcome=outcome,
        paths=paths,
        rank=int(raw.get("rank", 50)),
        reason=str(raw.get("reason") or ""),
        blockers=tuple(str(b) for b in blockers),
        if_unknown=str(raw.get("if_unknown") or ""),
        source="; ".join(sources),
        rows=tuple(int(r) for r in raw.get("rows") or ()),
        origin=where,
        code_change=bool(raw.get("code_change", False)),
        sources=sources,
    )


def _parse_fields(raw: Any, origin: str) -> dict[str, FieldDomain]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{origin}: fields must be a mapping of field to its values")
    out: dict[str, FieldDomain] = {}
    for name, spec in raw.items():
        where = _where(spec, origin)
        if not isinstance(spec, Mapping) or not isinstance(spec.get("values"), list):
            raise ConfigError(f"{where}: field {name}: needs a values list")
        narrow = []
        for n in spec.get("narrow") or ():
            nw = _where(n, origin)
            if not isinstance(n, Mapping) or not isinstance(n.get("values"), list):
                raise ConfigError(f"{nw}: field {name}: a narrowing needs when and values")
            narrow.append(
                Narrowing(
                    when=_check_when(n.get("when") or {}, nw, f"field {name}"),
                    values=tuple(n["values"]),
                    because=str(n.get("because") or ""),
                    source=str(n.get("source") or ""),
                )
            )
        out[str(name)] = FieldDomain(str(name), tuple(spec["values"]), tuple(narrow))
    return out


def _parse_distros(raw: Any, origin: str) -> list[DistroFact]:
    out: list[DistroFact] = []
    for d in raw or ():
        where = _where(d, origin)
        if not isinstance(d, Mapping) or not d.get("match") or not d.get("family"):
            raise ConfigError(f"{where}: a distro needs match and family")
        match = d["match"]
        out.append(
            DistroFact(
                match=tuple(str(m).lower() for m in (match if isinstance(match, list) else [match])),
                family=str(d["family"]),
                libc=str(d["libc"]) if d.get("libc") else None,
                glibc={str(k): str(v) for k, v in (d.get("glibc") or {}).items()},
                kernel={str(k): str(v) for k, v in (d.get("kernel") or {}).items()},
                source="; ".join(d["source"])
                if isinstance(d.get("source"), list)
                else str(d.get("source") or ""),
            )
        )
    return out


def _load_file(path: Path) -> tuple[list[Rule], set[str], dict[str, FieldDomain], list[DistroFact]]:
    data = load_yaml(path)
    if data is None:
        return [], set(), {}, []
    if not isinstance(data, Mapping) or not isinstance(data.get("rules", []), list):
        raise ConfigError(f"{path}: expected a mapping with a 'rules' list")
    rules: list[Rule] = []
    disabled: set[str] = set()
    for raw in data.get("rules") or ():
        if isinstance(raw, Mapping) and raw.get("disabled") is True and raw.get("id"):
            disabled.add(str(raw["id"]))
            continue
        rules.append(_parse_rule(raw, str(path)))
    return (
        rules,
        disabled,
        _parse_fields(data.get("fields"), str(path)),
        _parse_distros(data.get("distros"), str(path)),
    )


def builtin_rules_path() -> Path:
    return Path(__file__).resolve().parent / "rules.yaml"


def user_rules_path() -> Path:
    from otelcockpit.settings import config_path

    return config_path().parent / "rules.yaml"


def load_knowledge(user_path: Path | None = None, *, include_user: bool = True) -> Knowledge:
    """The built-in rules, fields and distributions, then the user's file: a rule with the same id
    replaces, a new id adds, ``disabled: true`` removes; fields and distros add or replace."""
    rules, _, fields, distros = _load_file(builtin_rules_path())
    by_id: dict[str, Rule] = {}
    for r in rules:
        if r.id in by_id:
            raise ConfigError(f"{r.origin}: duplicate rule id {r.id!r}")
        by_id[r.id] = r
    if include_user:
        path = user_path if user_path is not None else user_rules_path()
        if path.exists():
            extra, disabled, more_fields, more_distros = _load_file(path)
            for r in extra:
                by_id[r.id] = r
            for rid in disabled:
                by_id.pop(rid, None)
            fields = {**fields, **more_fields}
            distros = more_distros + distros
    return Knowledge(tuple(by_id.values()), fields, tuple(distros))


def load_rules(user_path: Path | None = None, *, include_user: bool = True) -> tuple[Rule, ...]:
    return load_knowledge(user_path, include_user=include_user).rules


@lru_cache(maxsize=1)
def builtin_knowledge() -> Knowledge:
    return load_knowledge(include_user=False)


def builtin_rules() -> tuple[Rule, ...]:
    return builtin_knowledge().rules


# ---- facts: what the engine knows about one service -----------------------------------------


@dataclass(frozen=True)
class Fact:
    field: str
    value: Any  # None when unknown
    origin: Origin | None
    note: str = ""  # how a derived value was derived

    @property
    def text(self) -> str:
        return value_text(self.value)

    def origin_text(self) -> str:
        if self.origin is None:
            return "unknown"
        t = self.origin.text()
        return f"{t}; {self.note}" if self.note else t


def value_text(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return vtext(value)
    return str(value)


class Facts:
    """The fields the rules read for one service, derived from the inventory, the fleet, the
    distribution facts and the documented defaults; ``ov`` overrides fields for one combination
    of missing values. ``get`` returns a value, a :class:`VRange` (a partial version), a
    :class:`VInterval` (one piece of a range) or None (unknown)."""

    _BASE = frozenset(
        {
            "language",
            "runtime_version",
            "platform",
            "distro",
            "host_distro",
            "kernel",
            "arch",
            "os",
            "libc",
            "glibc_version",
            "k8s_distribution",
            "existing_sdk",
            "runtime_flavor",
        }
    )

    def __init__(self, svc: Service, kb: Knowledge) -> None:
        self.svc = svc
        self.kb = kb
        self.notes: dict[str, tuple[Origin | None, str]] = {}

    # the raw inventory value of a base field (an override, or what the file and fleet say)
    def base(self, key: str, ov: Mapping[str, Any]) -> Any:
        if key in ov:
            return ov[key]
        return self.svc.get(key)

    def get(self, name: str, ov: Mapping[str, Any]) -> Any:
        if name in ov:
            return ov[name]
        svc = self.svc
        if name == "language_family":
            lang = self.base("language", ov)
            return "java" if lang in JVM_LANGUAGES else lang
        if name == "container":
            platform = self.base("platform", ov)
            return None if platform is None else platform in CONTAINER_PLATFORMS
        if name == "distro_family":
            d, _ = self.kb.distro(self.base("distro", ov))
            distro = self.base("distro", ov)
            return None if distro is None else (d.family if d else "other")
        if name == "host_family":
            return self._host_family(ov)
        if name == "runtime":
            return self._runtime(ov)
        if name in ("kernel", "kernel_build"):
            kernel = self._kernel(ov)
            if name == "kernel":
                return parse_version(kernel, VERSION_FIELDS["kernel"]) if kernel is not None else None
            if isinstance(kernel, str):
                m = re.match(r"^\d+\.\d+\.\d+-(\d+)", kernel)
                if m:
                    return (int(m.group(1)),)
            return None
        if name == "libc":
            return self._libc(ov)
        if name == "glibc_version":
            return self._glibc(ov)
        if name == "os":
            return self._os(ov)
        if name == "operator_version":
            v = self.base("operator_version", ov)
            return None if v is None else parse_version(v, VERSION_FIELDS["operator_version"])
        if name == "dotnet_framework":
            return self._dotnet_framework(ov)
        if name == "has_sdk":
            sdk = self.base("existing_sdk", ov)
            return None if sdk is None else str(sdk).strip().lower() not in ("none", "no", "false")
        return svc.get(name) if name not in ov else ov[name]

    def _note(self, name: str, ov: Mapping[str, Any], origin: Origin | None, note: str) -> None:
        if not ov:
            self.notes[name] = (origin, note)

    def _runtime(self, ov: Mapping[str, Any]) -> Any:
        rv = self.base("runtime_version", ov)
        if rv is None:
            return None
        text = str(rv).lower().strip()
        fw = re.fullmatch(r"net(4)(\d)(\d)?", text)  # net48 -> 4.8, net462 -> 4.6.2
        if fw:
            text = ".".join(g for g in fw.groups() if g)
        else:
            text = re.sub(r"^(netcoreapp|net|go|v|gcc-)", "", text)
        if self.get("language_family", ov) == "java" and text.startswith("1."):
            text = text[2:]  # 1.8 -> 8
        return parse_version(text, VERSION_FIELDS["runtime"])

    def _kernel(self, ov: Mapping[str, Any]) -> Any:
        k = self.base("kernel", ov)
        if k is not None:
            return k
        platform = self.base("platform", ov)
        name = self.base("distro", ov) if platform == "vm" else self.base("host_distro", ov)
        d, release = self.kb.distro(name)
        if d is None or not d.kernel or not release:
            return None
        kernel = d.kernel.get(release) or d.kernel.get(release.split(".")[0])
        if kernel:
            key = "distro" if platform == "vm" else "host_distro"
            origin = self.svc.origin_of(key) if key not in ov else Origin("assumed")
            self._note("kernel", ov, origin, f"{name} ships kernel {kernel} ({d.source})")
        return kernel

    def _host_family(self, ov: Mapping[str, Any]) -> Any:
        hd = self.base("host_distro", ov)
        platform = self.base("platform", ov)
        if hd is None and platform in ("vm", "windows"):
            hd = self.base("distro", ov)
        if hd is not None:
            d, _ = self.kb.distro(hd)
            family = "rhel" if d is not None and d.family == "rhel" else "other"
            key = "host_distro" if self.base("host_distro", ov) is not None else "distro"
            self._note("host_family", ov, self._origin_of(key, ov), f"from {key} {hd}")
            return family
        kernel = self.base("kernel", ov)
        if isinstance(kernel, str):
            if re.search(r"\.el\d+", kernel):
                self._note(
                    "host_family", ov, self.svc.origin_of("kernel"), f"kernel {kernel} is a RHEL build (.el)"
                )
                return "rhel"
            if re.search(r"amzn|generic|-aws|-azure|-gcp|cos|bottlerocket", kernel, re.I):
                return "other"
        return None

    def _libc(self, ov: Mapping[str, Any]) -> Any:
        v = self.base("libc", ov)
        if v is not None:
            return v
        distro = self.base("distro", ov)
        d, _ = self.kb.distro(distro)
        if d is None or d.libc is None:
            return None
        if d.libc == "glibc" and self.get("language_family", ov) not in RUNTIME_LANGUAGES:
            return None  # a Go or Rust binary may be static whatever the distribution
        self._note("libc", ov, self._origin_of("distro", ov), f"{distro} uses {d.libc} ({d.source})")
        return d.libc

    def _glibc(self, ov: Mapping[str, Any]) -> Any:
        v = self.base("glibc_version", ov)
        if v is not None:
            return parse_version(v, VERSION_FIELDS["glibc_version"])
        if self.get("libc", ov) != "glibc":
            return None
        distro = self.base("distro", ov)
        d, release = self.kb.distro(distro)
        if d is None or not release:
            return None
        g = d.glibc.get(release) or d.glibc.get(release.split(".")[0])
        if g is None:
            return None
        self._note(
            "glibc_version", ov, self._origin_of("distro", ov), f"{distro} ships glibc {g} ({d.source})"
        )
        return parse_version(g, VERSION_FIELDS["glibc_version"])

    def _os(self, ov: Mapping[str, Any]) -> Any:
        v = self.base("os", ov)
        if v is not None:
            return v
        platform = self.base("platform", ov)
        if platform is None:
            return None
        if platform == "windows":
            return "windows"
        self._note(
            "os", ov, Origin("assumed", f"platform {platform}: Windows hosts are platform windows"), ""
        )
        return "linux"

    def _dotnet_framework(self, ov: Mapping[str, Any]) -> Any:
        if self.base("language", ov) != "dotnet":
            return False
        if self.base("runtime_flavor", ov) == "netfx":
            return True
        rv = self.base("runtime_version", ov)
        if rv is not None:
            return bool(re.fullmatch(r"(net)?4\d{1,2}|4\.\d+(\.\d+)?", str(rv).lower()))
        os_ = self._os(ov)
        if os_ is not None and os_ != "windows":
            return False  # .NET Framework runs on Windows only
        return None

    def _origin_of(self, key: str, ov: Mapping[str, Any]) -> Origin | None:
        return Origin("assumed") if key in ov else self.svc.origin_of(key)

    def fact(self, name: str) -> Fact:
        """A field's value and origin, for explaining (no overrides)."""
        value = self.get(name, {})
        origin: Origin | None
        note = ""
        if name in self.notes:
            origin, note = self.notes[name]
        elif name in self._BASE or name in BOOL_FIELDS or name in self.svc.fields:
            origin = self.svc.origin_of(name)
        else:
            src = {
                "language_family": "language",
                "distro_family": "distro",
                "runtime": "runtime_version",
                "has_sdk": "existing_sdk",
                "container": "platform",
                "dotnet_framework": "runtime_version",
                "kernel_build": "kernel",
            }.get(name, name)
            origin = self.svc.origin_of(src)
            if name == "dotnet_framework" and origin is None and value is False:
                origin, note = self.notes.get("os", (None, ""))
        if value is None:
            origin = self.svc.origin_of(name) if name in self.svc.candidates else None
        return Fact(name, value, origin, note)


# ---- evaluating conditions ------------------------------------------------------------------

TRUE, FALSE, UNK = "true", "false", "unknown"


def _eq(value: Any, expected: Any) -> bool:
    if type(value) is str and type(expected) is str:
        return value == expected or value.lower() == expected.lower()
    if isinstance(value, tuple):
        e = version_tuple(expected)
        return e is not None and compare_versions(value, e) == 0
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


def condition_constants(cond: Any) -> list[Const]:
    """The versions at which a condition can change its answer."""
    out: list[Const] = []
    items: list[tuple[Any, bool]] = []
    if isinstance(cond, list):
        items = [(c, True) for c in cond]
    elif isinstance(cond, Mapping):
        for op, arg in cond.items():
            if op in ("semver", "not_semver"):
                out.extend(semver_constants(str(arg)))
            elif isinstance(arg, list):
                items.extend((a, True) for a in arg)
            else:
                items.append((arg, op not in ("lt", "gte")))
    else:
        items = [(cond, True)]
    for a, above in items:
        if isinstance(a, bool):
            continue
        v = version_tuple(a) if isinstance(a, (str, int, float)) else None
        if v is not None:
            out.append((v, above))
    return out


def _eval_point(value: Any, cond: Any) -> str:
    if isinstance(cond, list):
        return TRUE if any(_eq(value, c) for c in cond) else FALSE
    if not isinstance(cond, dict):  # rules' conditions are plain (or line-numbered) dicts
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


def eval_condition(value: Any, cond: Any) -> str:
    if value is None:
        return UNK
    kind = type(value)
    if kind is VInterval:
        return _eval_point(value.point, cond)
    if kind is VRange:
        results = {_eval_point(p.point, cond) for p in version_intervals(value, condition_constants(cond))}
        return results.pop() if len(results) == 1 else UNK
    return _eval_point(value, cond)


_Check = Any  # a compiled condition: value -> true | false | unknown


def _compile(cond: Any) -> _Check:
    """A faster test for the common conditions (a string, a list of strings) on string values;
    anything else goes through :func:`eval_condition`."""
    items = cond if isinstance(cond, list) else [cond] if isinstance(cond, str) else None
    if items is None or not all(isinstance(c, str) for c in items):
        return lambda value: eval_condition(value, cond)
    lowered = frozenset(c.lower() for c in items)

    def check(value: Any) -> str:
        if type(value) is str:
            return TRUE if value.lower() in lowered else FALSE
        return eval_condition(value, cond)

    return check


_COMPILED: dict[int, tuple[Mapping[str, Any], tuple[tuple[str, _Check], ...]]] = {}


def _checks(rule: Rule) -> tuple[tuple[str, _Check], ...]:
    hit = _COMPILED.get(id(rule.when))
    if hit is None or hit[0] is not rule.when:
        hit = (rule.when, tuple((k, _compile(c)) for k, c in rule.when.items()))
        if len(_COMPILED) > 4096:
            _COMPILED.clear()
        _COMPILED[id(rule.when)] = hit
    return hit[1]


def eval_rule(
    rule: Rule,
    facts: Facts | Service,
    values: dict[str, Any] | None = None,
    ov: Mapping[str, Any] | None = None,
) -> tuple[str, tuple[str, ...]]:
    """(true|false|unknown, the fields that left it undecided). ``values`` memoises field values."""
    if isinstance(facts, Service):
        facts = Facts(facts, builtin_knowledge())
    ov = ov or {}
    missing: list[str] = []
    state = TRUE
    for key, check in _checks(rule):
        if values is not None and key in values:
            value = values[key]
        else:
            value = facts.get(key, ov)
            if values is not None:
                values[key] = value
        r = UNK if value is None else check(value)
        if r == FALSE:
            return FALSE, ()
        if r == UNK:
            state = UNK
            missing.append(key)
    return state, tuple(missing)


# ---- choosing a path from the rules' states -------------------------------------------------


@dataclass(frozen=True)
class PathAssessment:
    path: str
    status: str  # eligible | blocked | conditional | unknown
    rank: int
    reason: str
    blockers: tuple[str, ...] = ()  # why blocked
    checks: tuple[str, ...] = ()  # caveats when eligible
    unknown: tuple[str, ...] = ()  # why undecidable, or the condition when conditional
    rules: tuple[str, ...] = ()
    code_change: bool = False
    condition: str = ""  # conditional: the values for which the path is eligible

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "rank": self.rank,
            "reason": self.reason,
            "condition": self.condition,
            "blockers": list(self.blockers),
            "checks": list(self.checks),
            "unknown": list(self.unknown),
            "rules": list(self.rules),
        }


State = tuple[Rule, str, tuple[str, ...]]


def _unknown_text(fields: Sequence[str], path: str) -> str:
    labels: list[str] = []
    for f in fields:
        lab = label(f)
        if lab not in labels:
            labels.append(lab)
    return f"{' and '.join(labels)} unknown: {PATH_LABELS.get(path, path)} eligibility cannot be decided"


def _caveat_text(rule: Rule, missing: Sequence[str]) -> str:
    if rule.if_unknown:
        return rule.if_unknown
    what = " and ".join(dict.fromkeys(label(m) for m in missing))
    return f"if it applies ({what} unknown): " + "; ".join(rule.blockers or (rule.reason,))


def _assess(
    states: Sequence[State],
) -> tuple[list[PathAssessment], PathAssessment | None, list[PathAssessment], list[Rule]]:
    """(every path assessed, the chosen one, the undecided better-ranked ones, the notes)."""
    cand: dict[str, dict[str, Any]] = {}
    blocks: dict[str, list[tuple[Rule, str, tuple[str, ...]]]] = {}
    caveats: dict[str, list[tuple[Rule, str]]] = {}
    notes: list[Rule] = []
    for rule, state, missing in states:
        if state == FALSE:
            continue
        if rule.outcome == "eligible":
            for p in rule.paths:
                c = cand.setdefault(p, {"rank": 10**6, "rule": None, "unknown": []})
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
                else:
                    caveats.setdefault(p, []).append((rule, _caveat_text(rule, missing)))
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
        rules_used: list[str] = [base.id] if base else []
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
        checks: tuple[str, ...] = ()
        if status == "eligible" and base is not None:
            checks = tuple(dict.fromkeys((*base.blockers, *(b for _, b in caveats.get(p, ())))))
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
        hard_rules = [r for r, s, _ in items if s == TRUE]
        if hard_rules:
            assessments.append(
                PathAssessment(
                    path=p,
                    status="blocked",
                    rank=10**6,
                    reason="",
                    blockers=tuple(dict.fromkeys(r.reason for r in hard_rules)),
                    rules=tuple(dict.fromkeys(r.id for r in hard_rules)),
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
    return assessments, chosen, undecided, notes


# ---- the result -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fill:
    """A field to fill for a conditional (or unknown) answer, and what each value would give."""

    field: str  # the inventory key ("host_pid_allowed", "runtime_version")
    label: str
    choices: tuple[tuple[str, str, str], ...] = ()  # (value, the path it gives, why not the best)

    def text(self) -> str:
        if not self.choices:
            return f"{self.label} ({self.field})"
        return f"{self.label} ({self.field}): " + "; ".join(f"{v} → {p}" for v, p, _ in self.choices)

    def as_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "label": self.label,
            "values": [{"value": v, "path": p, "why": w} for v, p, w in self.choices],
        }


@dataclass(frozen=True)
class Unit:
    """One field the engine tries every value of."""

    name: str  # the field overridden (a rule field, or a base inventory field with fleet values)
    values: tuple[Any, ...]
    kind: str  # vocabulary | narrowed | discovered | range | bool | versions
    because: str = ""
    source: str = ""
    fills: tuple[str, ...] = ()  # the rule fields it stands for
    # a value -> the values the rules cannot tell apart from it (only one of them is tried)
    classes: Mapping[Any, tuple[Any, ...]] = field(default_factory=dict)
    everything: tuple[Any, ...] = ()  # every value, before grouping

    @property
    def fill_field(self) -> str:
        return FILL_FIELD.get(self.name, self.name)

    def value_label(self, v: Any) -> str:
        if isinstance(v, VInterval):
            return v.label()
        return " or ".join(value_text(x) for x in self.classes.get(v, (v,)))

    def all_values(self) -> tuple[Any, ...]:
        return self.everything or self.values


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
    status: str = DECIDED  # decided | conditional | unknown
    assumptions: tuple[str, ...] = ()
    fill: tuple[Fill, ...] = ()
    condition: str = ""  # conditional: "obi if hostPID allowed is true"
    independent: tuple[str, ...] = ()  # missing fields the answer does not depend on
    units: tuple[Unit, ...] = ()
    facts: Facts | None = field(default=None, compare=False, repr=False)

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
            "status": self.status,
            "condition": self.condition,
            "fill": [f.as_json() for f in self.fill],
            "assumptions": list(self.assumptions),
            "alternatives": list(self.alternatives),
            "blockers": list(self.blockers),
            "reasons": list(self.reasons),
            "rules": list(self.rules),
            "code_change": self.code_change,
        }


# ---- evaluation -----------------------------------------------------------------------------

_BASE_UNITS = {
    # a base field whose fleet-reported values stand for these rule fields
    "arch": ("arch",),
    "os": ("os", "dotnet_framework"),
    "kernel": ("kernel", "kernel_build", "host_family"),
    "host_distro": ("host_family", "kernel", "kernel_build"),
    "distro": ("distro_family", "libc", "glibc_version", "host_family", "kernel", "kernel_build"),
    "runtime_version": ("runtime", "dotnet_framework"),
    "k8s_distribution": ("k8s_distribution",),
    "language": ("language", "language_family"),
    "platform": ("platform", "container", "os"),
    "runtime_flavor": ("runtime_flavor", "dotnet_framework"),
    "libc": ("libc", "glibc_version"),
}


def _classes(
    values: Sequence[Any], conds: Sequence[Any]
) -> tuple[tuple[Any, ...], dict[Any, tuple[Any, ...]]]:
    """Values the conditions cannot tell apart, grouped: (one value per group, value -> group)."""
    groups: dict[tuple[str, ...], list[Any]] = {}
    for v in values:
        groups.setdefault(tuple(_eval_point(v, c) for c in conds), []).append(v)
    reps = tuple(g[0] for g in groups.values())
    return reps, {g[0]: tuple(g) for g in groups.values()}


def _domain(name: str, facts: Facts, conds: Sequence[Any]) -> Unit | None:
    """Every value a missing rule field can take, or None when that cannot be said."""
    kb = facts.kb
    if name in IDENTITY_FIELDS:
        return None
    if name in VERSION_FIELDS:
        value = facts.get(name, {})
        rng = value if isinstance(value, VRange) else None
        if value is not None and rng is None:
            return None
        constants = [c for cond in conds for c in condition_constants(cond)]
        points = version_intervals(rng, constants)
        return Unit(
            name, tuple(points), "range" if rng else "versions", rng.text if rng else "", fills=(name,)
        )
    spec = kb.fields.get(name)
    if spec is not None:
        kind, values, because, source = "vocabulary", spec.values, "", ""
        for n in spec.narrow:
            if all(eval_condition(facts.get(k, {}), c) == TRUE for k, c in n.when.items()):
                kind, values, because, source = "narrowed", n.values, n.because, n.source
                break
        reps, classes = _classes(values, conds)
        return Unit(
            name, reps, kind, because, source, fills=(name,), classes=classes, everything=tuple(values)
        )
    if name in BOOL_FIELDS or name in ("has_sdk", "dotnet_framework", "container"):
        return Unit(name, (True, False), "bool", fills=(name,))
    return None


def _relevant(states: Sequence[State]) -> list[int]:
    """The undecided eligible and block rules that can change which path is chosen: not those of a
    path blocked for certain, nor of paths that rank below a path eligible for certain."""
    if not any(s == UNK and r.outcome in ("eligible", "block") for r, s, _ in states):
        return []
    big = (10**6, len(PATHS))
    hard = {p for r, s, _ in states if s == TRUE and r.outcome == "block" for p in r.paths}
    soft = {p for r, s, _ in states if s == UNK and r.outcome == "block" for p in r.paths}
    potential: dict[str, int] = {}
    certain = big
    for r, s, _ in states:
        if r.outcome != "eligible" or s == FALSE:
            continue
        for p in r.paths:
            if p in hard:
                continue
            potential[p] = min(potential.get(p, 10**6), r.rank)
            if s == TRUE and p not in soft:
                certain = min(certain, (r.rank, PATHS.index(p)))

    def beats(p: str, rank: int) -> bool:
        return (rank, PATHS.index(p)) < certain

    keep = []
    for i, (r, s, _) in enumerate(states):
        if s != UNK or r.outcome not in ("eligible", "block"):
            continue
        if r.outcome == "eligible":
            ok = any(p not in hard and beats(p, r.rank) for p in r.paths)
        else:
            ok = any(p not in hard and p in potential and beats(p, potential[p]) for p in r.paths)
        if ok:
            keep.append(i)
    return keep


def _units(facts: Facts, undecided: Sequence[State]) -> tuple[list[Unit], list[str]]:
    """The units to enumerate for the undecided rules, and the fields no unit can stand for."""
    svc = facts.svc
    missing: dict[str, list[Any]] = {}
    for rule, _, fields in undecided:
        for f in fields:
            missing.setdefault(f, []).append(rule.when[f])
    units: list[Unit] = []
    covered: set[str] = set()
    # 1. base fields the fleet reports several values for
    for base, rule_fields in _BASE_UNITS.items():
        values = svc.candidates.get(base)
        if values and any(f in missing for f in rule_fields) and base not in svc.fields:
            origin = svc.origin_of(base)
            units.append(
                Unit(base, tuple(values), "discovered", origin.detail if origin else "", fills=rule_fields)
            )
            covered.update(rule_fields)
    blocked: list[str] = []
    for f, conds in missing.items():
        if f in covered:
            continue
        u = _domain(f, facts, conds)
        if u is None:
            blocked.append(f)
        else:
            units.append(u)
    return units, blocked


def _combo_text(unit: Unit, values: Sequence[Any]) -> str:
    """``is true``, ``is amd64 or arm64``, ``≥ 20.6.0``."""
    if unit.kind in ("range", "versions"):
        return _interval_runs(unit, values)

    def size(vs: Iterable[Any]) -> int:
        return sum(len(unit.classes.get(v, (v,))) for v in vs)

    total = size(unit.values)
    if unit.kind != "bool" and total > 2 and size(values) * 2 > total:
        out = [v for v in unit.values if v not in values]
        return "is not " + " or ".join(unit.value_label(v) for v in out)
    return "is " + " or ".join(unit.value_label(v) for v in values)


def _interval_runs(unit: Unit, values: Sequence[Any]) -> str:
    idx = sorted(unit.values.index(v) for v in values)
    runs: list[list[VInterval]] = []
    for i in idx:
        if runs and unit.values.index(runs[-1][-1]) == i - 1:
            runs[-1].append(unit.values[i])
        else:
            runs.append([unit.values[i]])
    return " or ".join(merge_intervals(r) for r in runs)


def _paths_text(paths: Iterable[str]) -> str:
    ordered = [p for p in PATHS if p in set(paths)]
    return " or ".join(ordered)


def _group_label(unit: Unit, group: Sequence[Any]) -> str:
    if unit.kind in ("range", "versions"):
        return merge_intervals(group)
    return " or ".join(unit.value_label(v) for v in group)


def _assumption(unit: Unit) -> str:
    lab = label(unit.name)
    values = " or ".join(value_text(v) for v in unit.all_values())
    if unit.kind == "narrowed":
        return (
            f"assuming {lab} is {values} ({unit.because})" if unit.because else f"assuming {lab} is {values}"
        )
    if unit.kind == "discovered":
        return f"assuming {lab} is what the fleet reports: {values} ({unit.because})"
    if unit.kind == "range" and len(unit.values) > 1:
        pieces = ", ".join(v.label() for v in unit.values)
        return f"{lab} {unit.because} stands for {unit.because}.x: the same answer for all of it ({pieces})"
    return ""


_SOURCES: dict[int, tuple[tuple[Rule, ...], dict[str, str]]] = {}


def _sources_of(rules: tuple[Rule, ...]) -> dict[str, str]:
    hit = _SOURCES.get(id(rules))
    if hit is None or hit[0] is not rules:
        hit = (rules, {r.id: r.source for r in rules})
        _SOURCES.clear()
        _SOURCES[id(rules)] = hit
    return hit[1]


def evaluate(
    svc: Service,
    rules: Iterable[Rule] | None = None,
    *,
    knowledge: Knowledge | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Eligibility:
    kb = knowledge or builtin_knowledge()
    rules = tuple(kb.rules if rules is None else rules)
    facts = Facts(svc, kb)
    ov = dict(overrides or {})
    memo: dict[str, Any] = {}
    states: list[State] = []
    for rule in rules:
        s, m = eval_rule(rule, facts, memo, ov)
        states.append((rule, s, m))
    sources = _sources_of(rules)
    relevant = _relevant(states)
    if not relevant:
        return _result(svc, facts, states, sources, DECIDED)
    units, blocked = _units(facts, [states[i] for i in relevant])
    if blocked:
        return _unknown(svc, facts, states, sources, blocked, units)
    plans = _plans(facts, states, relevant, units, ov)
    if plans is None:
        return _unknown(svc, facts, states, sources, [u.name for u in units], units, too_many=True)
    return _decide(svc, facts, states, sources, units, plans, ov)


def _result(
    svc: Service,
    facts: Facts,
    states: Sequence[State],
    sources: Mapping[str, str],
    status: str,
    *,
    assessments: Sequence[PathAssessment] | None = None,
    chosen: PathAssessment | None = None,
    notes: Sequence[Rule] | None = None,
    extra_reasons: Sequence[str] = (),
    unknowns: Sequence[str] = (),
    alternatives_first: Sequence[str] = (),
    extra_rules: Sequence[str] = (),
    **kw: Any,
) -> Eligibility:
    if assessments is None:
        assessments, chosen, _, notes = _assess(states)
    if chosen is None:  # only when a user's rules removed every path, the SDK included
        return _unknown(svc, facts, states, sources, [], ())
    reasons = [chosen.reason, *extra_reasons]
    rule_ids = list(chosen.rules)
    blockers = list(chosen.checks)
    for a in assessments:
        if a.status == "blocked":
            blockers.extend(f"{PATH_LABELS[a.path]}: {b}" for b in a.blockers)
            rule_ids.extend(a.rules)
        elif a.status in (UNKNOWN, CONDITIONAL) and a.path != chosen.path:
            rule_ids.extend(r for r in a.rules if r not in rule_ids and a.rank < chosen.rank)
    rule_ids.extend(extra_rules)
    for n in notes or ():
        reasons.append(n.reason)
        rule_ids.append(n.id)
    rule_ids = list(dict.fromkeys(rule_ids))
    # lower-ranked paths left undecided (the answer does not depend on them) still say why
    unknowns = [*unknowns, *(t for a in assessments if a.status == UNKNOWN for t in a.unknown)]
    alternatives = list(dict.fromkeys(alternatives_first))
    alternatives += [a.path for a in assessments if a.status == "eligible" and a.path != chosen.path]
    return Eligibility(
        service=svc,
        path=chosen.path,
        alternatives=tuple(p for p in dict.fromkeys(alternatives) if p != chosen.path),
        blockers=tuple(dict.fromkeys(blockers)),
        reasons=tuple(dict.fromkeys(r for r in reasons if r)),
        rules=tuple(rule_ids),
        code_change=chosen.code_change,
        paths=tuple(assessments),
        sources={rid: sources[rid] for rid in rule_ids if rid in sources},
        unknowns=tuple(dict.fromkeys(unknowns)),
        status=status,
        facts=facts,
        **kw,
    )


def _unknown(
    svc: Service,
    facts: Facts,
    states: Sequence[State],
    sources: Mapping[str, str],
    fields: Sequence[str],
    units: Sequence[Unit],
    *,
    too_many: bool = False,
) -> Eligibility:
    assessments, chosen, undecided, notes = _assess(states)
    unknowns: list[str] = []
    for a in assessments:
        if a.status == UNKNOWN:
            unknowns.extend(a.unknown)
    reasons = list(unknowns)
    if too_many:
        reasons.insert(
            0, f"too many fields unknown at once ({', '.join(label(f) for f in fields)}): fill some"
        )
    rule_ids: list[str] = []
    for a in undecided:
        rule_ids.extend(a.rules)
    alternatives: list[str] = []
    if chosen is not None:
        reasons.append(f"if not: {PATH_LABELS[chosen.path]}: {chosen.reason}")
        alternatives.append(chosen.path)
    alternatives += [a.path for a in assessments if a.status == "eligible" and a is not chosen]
    blockers: list[str] = []
    for a in assessments:
        if a.status == "blocked":
            blockers.extend(f"{PATH_LABELS[a.path]}: {b}" for b in a.blockers)
            rule_ids.extend(a.rules)
    for n in notes:
        reasons.append(n.reason)
        rule_ids.append(n.id)
    rule_ids = list(dict.fromkeys(rule_ids))
    by_field: dict[str, Fill] = {}
    for f in fields:
        by_field.setdefault(FILL_FIELD.get(f, f), Fill(FILL_FIELD.get(f, f), label(f)))
    fills = tuple(by_field.values())
    return Eligibility(
        service=svc,
        path=UNKNOWN,
        alternatives=tuple(dict.fromkeys(alternatives)),
        blockers=tuple(dict.fromkeys(blockers)),
        reasons=tuple(dict.fromkeys(reasons)),
        rules=tuple(rule_ids),
        code_change=None,
        paths=tuple(assessments),
        sources={rid: sources[rid] for rid in rule_ids if rid in sources},
        unknowns=tuple(dict.fromkeys(unknowns or reasons)),
        status=UNKNOWN,
        fill=fills,
        units=tuple(units),
        facts=facts,
    )


Cube = dict[int, list[Any]]  # unit index -> the values it may take


def _choices(
    u: Unit, by_value: Mapping[Any, set[str]], why: Mapping[Any, list[str]]
) -> list[tuple[str, str, str]]:
    """(values, the paths they give, why not the best) for one field; consecutive version
    ranges with the same result shown together."""
    out: list[tuple[str, str, str]] = []
    groups: list[tuple[list[Any], set[str]]] = []
    for v in u.values:
        ps = by_value.get(v, set())
        if groups and groups[-1][1] == ps and u.kind in ("range", "versions"):
            groups[-1][0].append(v)
        else:
            groups.append(([v], ps))
    for values, ps in groups:
        if not ps:
            continue
        reasons = [r for v in values for r in why.get(v, ())]
        out.append((_group_label(u, values), _paths_text(ps), reasons[0] if reasons else ""))
    return out


def _cover(units: Sequence[Unit], combos: Iterable[tuple[Any, ...]]) -> list[Cube]:
    """Describe a set of combinations exactly as an "or" of "and"s: deterministic cubes (each
    unit's values a set) whose products are inside the set and together cover it, the largest
    first."""
    n = len(units)
    inside = set(combos)

    def order(c: tuple[Any, ...]) -> tuple[int, ...]:
        return tuple(units[i].values.index(v) for i, v in enumerate(c))

    def grow(seed: tuple[Any, ...]) -> Cube:
        cube: Cube = {i: [v] for i, v in enumerate(seed)}
        for i, u in enumerate(units):
            for v in u.values:
                if v in cube[i]:
                    continue
                trial = {**cube, i: [*cube[i], v]}
                if all(c in inside for c in itertools.product(*(trial[k] for k in range(n)))):
                    cube[i].append(v)
            cube[i].sort(key=u.values.index)
        return cube

    def members(cube: Cube) -> set[tuple[Any, ...]]:
        return set(itertools.product(*(cube[k] for k in range(n))))

    left = set(inside)
    cubes: list[Cube] = []
    while left:
        seeds = sorted(left, key=order)[:16]
        options = [(members(c), c) for c in (grow(s) for s in seeds)]
        got, cube = max(options, key=lambda o: (len(o[0] & left), -options.index(o)))
        cubes.append(cube)
        left -= got
    return cubes


def _describe(units: Sequence[Unit], cubes: Sequence[Cube]) -> str:
    """The condition text of a cover ("" when it allows everything)."""

    def conj(cube: Cube, skip: set[int]) -> str:
        return " and ".join(
            f"{label(units[i].name)} {_combo_text(units[i], vs)}"
            for i, vs in cube.items()
            if i not in skip and len(vs) < len(units[i].values)
        )

    if not cubes:
        return ""
    shared = {i for i in cubes[0] if all(c[i] == cubes[0][i] for c in cubes)}
    head = conj({i: cubes[0][i] for i in shared}, set())
    if len(cubes) == 1:
        return head
    alts = [conj(c, shared) or "anything else" for c in cubes]
    tail = ", or ".join(alts)
    return f"{head} and {tail}" if head else tail


# ---- per path: which values make it eligible --------------------------------------------------

# At most this many combinations in one group of fields that decide together; beyond it the
# answer is unknown ("too many fields unknown at once").
MAX_GROUP = 4096


@dataclass
class Group:
    """Fields that decide a path together (they share rules); the path is eligible exactly when
    every one of its groups is."""

    units: list[int]  # indexes into the units
    rules: list[int]  # indexes into the states
    candidacy: bool  # holds the path's undecided eligible rules
    combos: list[tuple[Any, ...]] = field(default_factory=list)
    ok: set[tuple[Any, ...]] = field(default_factory=set)
    why: dict[tuple[Any, ...], list[str]] = field(default_factory=dict)  # not ok: the block reasons

    @property
    def full(self) -> bool:
        return len(self.ok) == len(self.combos)


@dataclass
class Plan:
    path: str
    rank: int
    status: str  # always | never | some
    groups: list[Group]
    reason: str = ""
    code_change: bool = False

    def possible(self, unit: int | None = None, value: Any = None) -> bool:
        """Eligible for some values (with ``unit`` at ``value``)."""
        for g in self.groups:
            if unit is not None and unit in g.units:
                pos = g.units.index(unit)
                if not any(c[pos] == value for c in g.ok):
                    return False
            elif not g.ok:
                return False
        return self.status != "never"

    def certain(self, unit: int | None = None, value: Any = None) -> bool:
        """Eligible for every value (with ``unit`` at ``value``)."""
        if self.status == "never":
            return False
        for g in self.groups:
            if unit is not None and unit in g.units:
                pos = g.units.index(unit)
                if not all(c in g.ok for c in g.combos if c[pos] == value):
                    return False
            elif not g.full:
                return False
        return True


def _unit_of(units: Sequence[Unit]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, u in enumerate(units):
        for f in (u.name, *u.fills):
            out.setdefault(f, i)
    return out


def _find(parent: dict[int, int], x: int) -> int:
    while parent.setdefault(x, x) != x:
        x = parent[x]
    return x


def _union(parent: dict[int, int], a: int, b: int) -> None:
    parent[_find(parent, a)] = _find(parent, b)


def _plans(
    facts: Facts,
    states: Sequence[State],
    relevant: Sequence[int],
    units: Sequence[Unit],
    ov: Mapping[str, Any],
) -> dict[str, Plan] | None:
    """For every path the relevant rules touch: its groups of fields and, per group, the values for
    which nothing blocks it (and, for the candidacy group, some eligible rule holds)."""
    unit_of = _unit_of(units)
    assessments, _, _, _ = _assess(states)
    by_path = {a.path: a for a in assessments}
    hard = {p for r, st, _ in states if st == TRUE and r.outcome == "block" for p in r.paths}
    certain_candidate = {p for r, st, _ in states if st == TRUE and r.outcome == "eligible" for p in r.paths}
    touched: dict[str, list[int]] = {}
    for i in relevant:
        for p in states[i][0].paths:
            if p not in hard:
                touched.setdefault(p, []).append(i)
    plans: dict[str, Plan] = {}
    for p, idxs in touched.items():
        # union-find over units: rules that share a field decide together
        parent: dict[int, int] = {}
        rule_units: dict[int, list[int]] = {}
        for i in idxs:
            us = sorted({unit_of[f] for f in states[i][2]})
            rule_units[i] = us
            for u in us[1:]:
                _union(parent, us[0], u)
        eligible_rules = [i for i in idxs if states[i][0].outcome == "eligible"]
        candidacy_units = sorted({u for i in eligible_rules for u in rule_units[i]})
        for u in candidacy_units[1:]:
            _union(parent, candidacy_units[0], u)
        roots: dict[int, Group] = {}
        for i in idxs:
            if not rule_units[i]:
                continue
            root = _find(parent, rule_units[i][0])
            g = roots.setdefault(root, Group([], [], False))
            g.rules.append(i)
            for u in rule_units[i]:
                if u not in g.units:
                    g.units.append(u)
            if states[i][0].outcome == "eligible":
                g.candidacy = True
        groups = list(roots.values())
        base_candidate = p in certain_candidate
        if not base_candidate and not any(g.candidacy for g in groups):
            continue  # never a candidate
        for g in groups:
            g.units.sort()
            size = 1
            for u in g.units:
                size *= len(units[u].values)
            if size > MAX_GROUP:
                return None
            for values in itertools.product(*(units[u].values for u in g.units)):
                cov = dict(ov)
                for u, v in zip(g.units, values, strict=True):
                    cov[units[u].name] = v
                cmemo: dict[str, Any] = {}
                blocked_by: list[str] = []
                candidate = base_candidate
                for i in g.rules:
                    rule = states[i][0]
                    st, _ = eval_rule(rule, facts, cmemo, cov)
                    if st == TRUE and rule.outcome == "block":
                        blocked_by.append(rule.reason)
                    elif st == TRUE and rule.outcome == "eligible":
                        candidate = True
                g.combos.append(values)
                if g.candidacy and not candidate:
                    g.why[values] = ["no rule makes it a candidate for these values"]
                elif blocked_by:
                    g.why[values] = blocked_by
                else:
                    g.ok.add(values)
        if any(not g.ok for g in groups):
            status = "never"
        elif all(g.full for g in groups):
            status = "always"
        else:
            status = "some"
        base = by_path.get(p)
        eligible_ranks = [states[i][0].rank for i in eligible_rules] + [
            r.rank for r, st, _ in states if st == TRUE and r.outcome == "eligible" and p in r.paths
        ]
        rank = min(eligible_ranks) if eligible_ranks else (base.rank if base else 10**6)
        reason = base.reason if base else ""
        plans[p] = Plan(p, rank, status, groups, reason, bool(base.code_change) if base else False)
    return plans


def _walk(assessments: Sequence[PathAssessment], plans: Mapping[str, Plan]) -> list[tuple[str, str, int]]:
    """Every candidate path in rank order, with its status (always | never | some)."""
    out: list[tuple[str, str, int]] = []
    for a in assessments:
        plan = plans.get(a.path)
        if plan is not None:
            out.append((a.path, plan.status, plan.rank))
        elif a.status == "eligible":
            out.append((a.path, "always", a.rank))
        elif a.status == "blocked":
            out.append((a.path, "never", a.rank))
        else:
            out.append((a.path, "unknown", a.rank))
    for p, plan in plans.items():
        if not any(p == x[0] for x in out):
            out.append((p, plan.status, plan.rank))
    out.sort(key=lambda x: (x[2], PATHS.index(x[0])))
    return out


_GROUP_TEXT: dict[Any, tuple[str, int]] = {}


def _group_text(local: Sequence[Unit], ok: set[tuple[Any, ...]]) -> tuple[str, int]:
    """(the condition text of one group, how many alternatives it has), memoised: services of one
    kind share their groups."""
    key = (
        tuple(
            (u.name, u.kind, u.values, tuple(sorted((str(k), v) for k, v in u.classes.items())))
            for u in local
        ),
        frozenset(ok),
    )
    hit = _GROUP_TEXT.get(key)
    if hit is None:
        cubes = _cover(local, ok)
        hit = (_describe(local, cubes), len(cubes))
        if len(_GROUP_TEXT) > 4096:
            _GROUP_TEXT.clear()
        _GROUP_TEXT[key] = hit
    return hit


def _plan_condition(units: Sequence[Unit], plan: Plan) -> str:
    simple: list[str] = []
    compound: list[str] = []
    for g in plan.groups:
        if g.full:
            continue
        text, alternatives = _group_text([units[u] for u in g.units], g.ok)
        if text and alternatives > 1:
            compound.append(f"({text})")
        elif text:
            simple.append(text)
    return " and ".join(simple + compound)


def _decide(
    svc: Service,
    facts: Facts,
    states: Sequence[State],
    sources: Mapping[str, str],
    units: Sequence[Unit],
    plans: Mapping[str, Plan],
    ov: Mapping[str, Any],
) -> Eligibility:
    base_assessments, _, _, _ = _assess(states)
    walk = _walk(base_assessments, plans)
    best: str | None = None
    status = DECIDED
    otherwise: list[str] = []
    examined: list[str] = []
    for p, st, _ in walk:
        if st == "never":
            examined.append(p)
            continue
        if best is None:
            examined.append(p)
            best = p
            if st == "always":
                break
            status = CONDITIONAL
            continue
        otherwise.append(p)
        if st == "always":
            break
    if best is None:
        return _unknown(svc, facts, states, sources, [u.name for u in units], units)
    # one set of values where the best path holds: the checks, the notes and the deciding rules
    rep: dict[str, Any] = dict(ov)
    for u in units:
        rep[u.name] = u.values[0]
    for plan in [plans[best]] if best in plans else []:
        for g in plan.groups:
            if g.ok:
                first = min(
                    g.ok,
                    key=lambda c: tuple(units[u].values.index(v) for u, v in zip(g.units, c, strict=True)),
                )
                for u, v in zip(g.units, first, strict=True):
                    rep[units[u].name] = v
    rmemo: dict[str, Any] = {}
    rstates = [
        (r, *eval_rule(r, facts, rmemo, rep))
        if st == UNK and r.outcome in ("eligible", "block")
        else (r, st, m)
        for r, st, m in states
    ]
    rep_assess, chosen, _, notes = _assess(rstates)
    if chosen is None or chosen.path != best:
        chosen = next((a for a in rep_assess if a.path == best), None)
    if chosen is None:
        return _unknown(svc, facts, states, sources, [u.name for u in units], units)
    if chosen.status != "eligible":
        chosen = PathAssessment(**{**chosen.__dict__, "status": "eligible"})
    # every path: eligible for all values, for none, or for some (with the condition)
    merged: list[PathAssessment] = []
    rep_by = {a.path: a for a in rep_assess}
    for a in base_assessments:
        plan = plans.get(a.path)
        if plan is None:
            merged.append(a)
        elif plan.status == "always":
            merged.append(rep_by.get(a.path, a) if rep_by.get(a.path, a).status == "eligible" else a)
        elif plan.status == "never":
            reasons = tuple(dict.fromkeys(w for g in plan.groups for ws in g.why.values() for w in ws))
            merged.append(
                PathAssessment(**{**a.__dict__, "status": "blocked", "blockers": reasons, "unknown": ()})
            )
        else:
            cond = _plan_condition(units, plan)
            merged.append(
                PathAssessment(
                    **{
                        **a.__dict__,
                        "status": CONDITIONAL,
                        "condition": cond,
                        "unknown": (f"eligible if {cond}",) if cond else (),
                        "checks": rep_by[a.path].checks if a.path in rep_by else a.checks,
                    }
                )
            )
    for p, plan in plans.items():
        if not any(m.path == p for m in merged) and plan.status == "some":
            cond = _plan_condition(units, plan)
            merged.append(
                PathAssessment(
                    p, CONDITIONAL, plan.rank, plan.reason, condition=cond, unknown=(f"eligible if {cond}",)
                )
            )
    merged.sort(key=lambda a: (a.rank, PATHS.index(a.path)))
    # which fields decide, what each value gives, what was assumed
    deciding: list[int] = []
    if status == CONDITIONAL:
        for g in plans[best].groups:
            if not g.full:
                deciding.extend(u for u in g.units if u not in deciding)
    seen_units = {u for p in examined if p in plans for g in plans[p].groups for u in g.units}
    assumptions: list[str] = []
    independent: list[str] = []
    for i, u in enumerate(units):
        if i in deciding or i not in seen_units:
            continue
        text = _assumption(u)
        if text:
            assumptions.append(text)
        elif u.kind in ("vocabulary", "bool", "versions"):
            independent.append(label(u.name))
    if independent:
        assumptions.append("the same answer whatever " + ", ".join(dict.fromkeys(independent)) + " is")
    fills: list[Fill] = []
    unknowns: list[str] = []
    condition = ""
    extra: list[str] = []
    deciding_rules: list[str] = []
    if status == CONDITIONAL:
        plan = plans[best]
        order = [p for p, st, _ in walk if p != best and st != "never"]
        for i in deciding:
            u = units[i]
            by_value: dict[Any, set[str]] = {}
            why: dict[Any, list[str]] = {}
            group = next(g for g in plan.groups if i in g.units)
            pos = group.units.index(i)
            for v in u.values:
                ps: set[str] = set()
                if plan.possible(i, v):
                    ps.add(best)  # the other fields decide the rest
                else:
                    why[v] = [w for c, ws in group.why.items() if c[pos] == v for w in ws][:1]
                    for q in order:
                        qp = plans.get(q)
                        if qp is None:
                            ps.add(q)  # eligible whatever the value
                            break
                        if (
                            qp.possible(i, v)
                            if i in {x for g in qp.groups for x in g.units}
                            else qp.status != "never"
                        ):
                            ps.add(q)
                        if (
                            qp.certain(i, v)
                            if i in {x for g in qp.groups for x in g.units}
                            else qp.status == "always"
                        ):
                            break
                by_value[v] = ps
            fills.append(Fill(u.fill_field, label(u.name), tuple(_choices(u, by_value, why))))
        by_field: dict[str, list[Fill]] = {}
        for f in fills:
            by_field.setdefault(f.field, []).append(f)
        fills = []
        for group_fills in by_field.values():
            telling = [f for f in group_fills if len({p for _, p, _ in f.choices}) > 1]
            fill = (telling or group_fills)[0]
            fills.append(fill)
            unknowns.append(f"{fill.label} unknown: " + "; ".join(f"{v} → {p}" for v, p, _ in fill.choices))
        cond = _plan_condition(units, plan)
        condition = f"{best} if {cond}" if cond else best
        deciding_rules = [states[i][0].id for g in plan.groups if not g.full for i in g.rules]
        extra = [f"conditional: {condition}" + (f"; otherwise {_paths_text(otherwise)}" if otherwise else "")]
    return _result(
        svc,
        facts,
        rstates,
        sources,
        status,
        assessments=merged,
        chosen=chosen,
        notes=notes,
        extra_reasons=extra,
        unknowns=unknowns,
        alternatives_first=otherwise,
        extra_rules=deciding_rules,
        assumptions=tuple(assumptions),
        fill=tuple(fills),
        condition=condition,
        independent=tuple(dict.fromkeys(independent)),
        units=tuple(units),
    )


def evaluate_all(
    services: Iterable[Service], rules: Iterable[Rule] | None = None, *, knowledge: Knowledge | None = None
) -> list[Eligibility]:
    kb = knowledge or builtin_knowledge()
    rules = tuple(kb.rules if rules is None else rules)
    return [evaluate(s, rules, knowledge=kb) for s in services]
