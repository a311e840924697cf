"""Policy checks on a pipeline's contents (Alloy or OpenTelemetry Collector YAML).

``lint(text, config_type, *, production=False, feeds_central_spanmetrics=None)`` returns a
:class:`LintReport` of :class:`Finding` (rule id, severity, line, message, reason). Rules:

=============================  ========  ====================================================
rule                           severity  when
=============================  ========  ====================================================
syntax                         error     the text cannot be read (the report stops there)
tail-sampling                  warning   a tail_sampling processor is used (it adds state)
source-sampling                error     probabilistic sampling in a pipeline that feeds span
                                         metrics computed elsewhere (``feeds_central_spanmetrics``
                                         True); ``info`` when that is not known (None)
spanmetrics-after-sampler      error     span metrics computed from spans a sampler has dropped
missing-memory-limiter         warning   an OTel pipeline (or Alloy otelcol.receiver) without
missing-batch                  warning   memory_limiter / batch
inline-credential              error     a password, token or key written as a literal
localhost-exporter             warning   an exporter sends to localhost while ``production``
unknown-component              warning   a component name the linter does not know
undefined-component            error     an OTel pipeline names a component that is not configured
=============================  ========  ====================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from otelcockpit.policy.alloy import AlloyConfig, AlloySyntaxError, Block, parse_alloy
from otelcockpit.policy.known import ALLOY_COMPONENTS, ALLOY_PREFIXES, ALLOY_SENDERS, OTEL
from otelcockpit.policy.otel import Node, OtelSyntaxError, component_type, parse_otel, read_config

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}
SAMPLERS = ("tail_sampling", "probabilistic_sampler")

REASONS = {
    "syntax": "The configuration cannot be read; nothing else was checked.",
    "tail-sampling": "Tail sampling keeps every trace in memory until it decides, so the collectors carry state: "
    "all spans of a trace must reach the same instance (load-balancing exporter) and memory grows with traffic.",
    "source-sampling": "spanmetrics counts only the spans it receives and has no adjusted-count support "
    "(collector-contrib#33632): sampling before the gateways makes their RED metrics under-count by 1/p.",
    "spanmetrics-after-sampler": "Span metrics must be computed from 100% of spans, before any sampler "
    "(split the pipeline with the forward connector); otherwise request rates and errors under-count.",
    "missing-memory-limiter": "Without memory_limiter a traffic spike can OOM-kill the collector and lose all buffered data.",
    "missing-batch": "Without batching every span or point is exported alone: many more requests, lower throughput.",
    "inline-credential": "Secrets in pipeline contents are visible to everyone who can read the pipeline and its "
    'revisions; read them from the environment (${env:VAR}, sys.env("VAR")) or a secret store.',
    "localhost-exporter": "In production a collector exporting to localhost sends to itself or nowhere; "
    "this is usually a development leftover.",
    "unknown-component": "The component is not one the linter knows: a typo fails the config on the collector.",
    "undefined-component": "A pipeline that names an unconfigured component makes the collector refuse the config.",
}

SECRET_KEYS = {
    "password",
    "passwd",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "bearer_token",
    "client_secret",
    "secret",
    "secret_key",
    "secret_access_key",
    "private_key",
    "authorization",
    "x_api_key",
    "api_token",
}
_AUTH_VALUE = re.compile(r"^(?i:bearer|basic)\s+[A-Za-z0-9+/=._~-]{8,}$")
_USERINFO = re.compile(r"://[^/\s:@\"]+:[^/\s@\"]+@")
_LOCAL = re.compile(r"(?i)(?://|^)(localhost|127\.0\.0\.1|\[::1\])(?::\d+)?(?:/|$)")


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    line: int | None
    message: str
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "line": self.line,
            "message": self.message,
            "reason": self.reason,
        }

    def text(self, origin: str = "") -> str:
        where = (
            f"{origin}:{self.line}"
            if origin and self.line
            else (origin or (f"line {self.line}" if self.line else "-"))
        )
        return f"{where}: {self.severity}: {self.message} [{self.rule}]"


@dataclass(frozen=True)
class LintReport:
    config_type: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def syntax_ok(self) -> bool:
        return not any(f.rule == "syntax" for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    def by_rule(self, rule: str) -> list[Finding]:
        return [f for f in self.findings if f.rule == rule]

    def as_json(self) -> dict[str, Any]:
        return {
            "config_type": self.config_type,
            "syntax_ok": self.syntax_ok,
            "errors": len(self.errors),
            "findings": [f.as_json() for f in self.findings],
        }


def _f(rule: str, severity: str, line: int | None, message: str) -> Finding:
    return Finding(rule, severity, line, message, REASONS.get(rule, ""))


def lint(
    text: str,
    config_type: str,
    *,
    production: bool = False,
    feeds_central_spanmetrics: bool | None = None,
) -> LintReport:
    """Check a pipeline's contents.

    ``config_type`` is ``"alloy"`` or ``"otel"``. ``production`` turns on the localhost
    exporter check. ``feeds_central_spanmetrics`` says whether this pipeline's spans reach span
    metrics computed elsewhere (a gateway): True makes source sampling an error, None (not
    known) an info, False silences it.
    """
    if config_type == "alloy":
        findings = _lint_alloy(text, production, feeds_central_spanmetrics)
    elif config_type == "otel":
        findings = _lint_otel(text, production, feeds_central_spanmetrics)
    else:
        raise ValueError(f"config type must be alloy or otel, not {config_type!r}")
    ordered = sorted(findings, key=lambda f: (f.line or 0, SEVERITY_ORDER[f.severity], f.rule))
    return LintReport(config_type, tuple(dict.fromkeys(ordered)))


# ---- OpenTelemetry Collector YAML -------------------------------------------------------------


def _walk(node: Node, path: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], Node]]:
    yield path, node
    if isinstance(node.value, dict):
        for k, v in node.value.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node.value, list):
        for i, v in enumerate(node.value):
            yield from _walk(v, (*path, str(i)))


def _is_literal_secret(value: Any) -> bool:
    if not isinstance(value, str):
        return isinstance(value, int) and not isinstance(value, bool) and len(str(value)) >= 8
    v = value.strip()
    return bool(v) and "${" not in v and not v.startswith("$")


def _credential_findings_yaml(root: Node) -> list[Finding]:
    out: list[Finding] = []
    for path, node in _walk(root):
        if not path or isinstance(node.value, (dict, list)):
            continue
        key = path[-1].lower().replace("-", "_")
        value = node.value
        where = ".".join(path)
        if key in SECRET_KEYS and _is_literal_secret(value):
            out.append(
                _f("inline-credential", ERROR, node.line, f"{where} is written inline; use ${{env:VAR}}")
            )
        elif isinstance(value, str) and "${" not in value and _AUTH_VALUE.match(value.strip()):
            out.append(
                _f(
                    "inline-credential",
                    ERROR,
                    node.line,
                    f"{where} holds an inline {value.split()[0]} credential",
                )
            )
        elif isinstance(value, str) and _USERINFO.search(value):
            out.append(_f("inline-credential", ERROR, node.line, f"{where} has a user:password in its URL"))
    return out


def _lint_otel(text: str, production: bool, feeds: bool | None) -> list[Finding]:
    try:
        cfg = read_config(parse_otel(text))
    except OtelSyntaxError as exc:
        return [_f("syntax", ERROR, exc.line, f"cannot read the YAML: {exc.message}")]
    out: list[Finding] = []
    # unknown components
    for section, comps in cfg.components.items():
        known = OTEL[section]
        for cid, node in comps.items():
            ctype = component_type(cid)
            if ctype not in known:
                out.append(
                    _f(
                        "unknown-component",
                        WARNING,
                        node.key_line,
                        f"unknown {section[:-1]} type {ctype!r} ({cid})",
                    )
                )
    connectors = cfg.components["connectors"]

    def defined(part: str, cid: str) -> bool:
        if part == "receivers":
            return cid in cfg.components["receivers"] or cid in connectors
        if part == "exporters":
            return cid in cfg.components["exporters"] or cid in connectors
        return cid in cfg.components["processors"]

    for p in cfg.pipelines:
        for part in ("receivers", "processors", "exporters"):
            for cid, line in getattr(p, part):
                if not defined(part, cid):
                    out.append(
                        _f(
                            "undefined-component",
                            ERROR,
                            line,
                            f"pipeline {p.id} uses {part[:-1]} {cid!r}, which is not configured",
                        )
                    )
        types = [component_type(c) for c, _ in p.processors]
        if "memory_limiter" not in types:
            out.append(
                _f(
                    "missing-memory-limiter",
                    WARNING,
                    p.line,
                    f"pipeline {p.id} has no memory_limiter processor",
                )
            )
        elif types[0] != "memory_limiter":
            out.append(
                _f(
                    "missing-memory-limiter",
                    INFO,
                    p.line,
                    f"pipeline {p.id}: memory_limiter should be the first processor",
                )
            )
        if "batch" not in types:
            out.append(_f("missing-batch", WARNING, p.line, f"pipeline {p.id} has no batch processor"))
        for cid, line in p.processors:
            ctype = component_type(cid)
            if ctype == "tail_sampling":
                out.append(_f("tail-sampling", WARNING, line, f"pipeline {p.id} tail-samples ({cid})"))
    # sampling before span metrics, across connectors
    sampled: dict[str, bool] = {
        p.id: any(component_type(c) in SAMPLERS for c, _ in p.processors) for p in cfg.pipelines
    }
    changed = True
    while changed:
        changed = False
        for p in cfg.pipelines:
            if sampled[p.id]:
                continue
            for rid, _ in p.receivers:
                if rid in connectors and any(
                    sampled[q.id] and any(e == rid for e, _ in q.exporters) for q in cfg.pipelines
                ):
                    sampled[p.id] = changed = True
                    break
    has_spanmetrics = any(component_type(c) == "spanmetrics" for c in connectors)
    for p in cfg.pipelines:
        for eid, line in p.exporters:
            if eid in connectors and component_type(eid) == "spanmetrics" and sampled[p.id]:
                out.append(
                    _f(
                        "spanmetrics-after-sampler",
                        ERROR,
                        line,
                        f"pipeline {p.id} feeds {eid} after a sampler: span metrics will under-count",
                    )
                )
        for cid, line in p.processors:
            if component_type(cid) != "probabilistic_sampler":
                continue
            if feeds is True:
                out.append(
                    _f(
                        "source-sampling",
                        ERROR,
                        line,
                        f"pipeline {p.id} samples at the source ({cid}) and feeds span metrics computed on the gateways",
                    )
                )
            elif feeds is None and not has_spanmetrics:
                out.append(
                    _f(
                        "source-sampling",
                        INFO,
                        line,
                        f"pipeline {p.id} samples at the source ({cid}): if its spans feed central span metrics, they under-count",
                    )
                )
    out.extend(_credential_findings_yaml(cfg.root))
    if production:
        for eid, node in cfg.components["exporters"].items():
            for path, sub in _walk(node):
                if (
                    path
                    and path[-1] in ("endpoint", "url")
                    and isinstance(sub.value, str)
                    and _LOCAL.search(sub.value.strip())
                ):
                    out.append(
                        _f(
                            "localhost-exporter",
                            WARNING,
                            sub.line,
                            f"exporter {eid} sends to {sub.value.strip()} in a production context",
                        )
                    )
    return out


# ---- Alloy ------------------------------------------------------------------------------------

_STRING = re.compile(r'^("(?:[^"\\]|\\.)*"|`[^`]*`)$')
_MAP_SECRET = re.compile(r'"(?i:authorization|x-api-key|api-key|api_key|token|password)"\s*=\s*"([^"]+)"')


def _unquote(value: str) -> str:
    return value[1:-1]


def _known_alloy(name: str, declared: set[str]) -> bool:
    return name in ALLOY_COMPONENTS or name.startswith(ALLOY_PREFIXES) or name in declared


def _lint_alloy(text: str, production: bool, feeds: bool | None) -> list[Finding]:
    try:
        cfg: AlloyConfig = parse_alloy(text)
    except AlloySyntaxError as exc:
        return [_f("syntax", ERROR, exc.line, f"cannot read the Alloy configuration: {exc.message}")]
    out: list[Finding] = []
    for c in cfg.components:
        if not _known_alloy(c.name, cfg.declared):
            out.append(_f("unknown-component", WARNING, c.line, f"unknown component {c.name!r}"))
        if c.name == "otelcol.processor.tail_sampling":
            out.append(_f("tail-sampling", WARNING, c.line, f"{c.ref} tail-samples"))
    samplers = [
        c
        for c in cfg.components
        if c.name in ("otelcol.processor.tail_sampling", "otelcol.processor.probabilistic_sampler")
    ]
    has_spanmetrics = any(c.name == "otelcol.connector.spanmetrics" for c in cfg.components)
    for s in samplers:
        for d in cfg.downstream(s):
            if d.name == "otelcol.connector.spanmetrics":
                out.append(
                    _f(
                        "spanmetrics-after-sampler",
                        ERROR,
                        d.line,
                        f"{d.ref} receives spans after {s.ref}: span metrics will under-count",
                    )
                )
        if s.name == "otelcol.processor.probabilistic_sampler":
            if feeds is True:
                out.append(
                    _f(
                        "source-sampling",
                        ERROR,
                        s.line,
                        f"{s.ref} samples at the source and feeds span metrics computed on the gateways",
                    )
                )
            elif feeds is None and not has_spanmetrics:
                out.append(
                    _f(
                        "source-sampling",
                        INFO,
                        s.line,
                        f"{s.ref} samples at the source: if its spans feed central span metrics, they under-count",
                    )
                )
    receivers = [c for c in cfg.components if c.name.startswith("otelcol.receiver.")]
    if receivers:
        names = {c.name for c in cfg.components}
        if "otelcol.processor.memory_limiter" not in names:
            out.append(
                _f(
                    "missing-memory-limiter",
                    WARNING,
                    receivers[0].line,
                    "otelcol components without otelcol.processor.memory_limiter",
                )
            )
        if "otelcol.processor.batch" not in names:
            out.append(
                _f(
                    "missing-batch",
                    WARNING,
                    receivers[0].line,
                    "otelcol components without otelcol.processor.batch",
                )
            )
    for c in cfg.components:
        out.extend(_alloy_credentials(c))
        if production and c.name.startswith(ALLOY_SENDERS):
            for a in c.walk_attributes():
                if (
                    a.name in ("url", "endpoint")
                    and _STRING.match(a.value)
                    and _LOCAL.search(_unquote(a.value))
                ):
                    out.append(
                        _f(
                            "localhost-exporter",
                            WARNING,
                            a.line,
                            f"{c.ref} sends to {_unquote(a.value)} in a production context",
                        )
                    )
    return out


def _alloy_credentials(c: Block) -> list[Finding]:
    out: list[Finding] = []

    def visit(block: Block, trail: str) -> None:
        for a in block.attributes:
            literal = _STRING.match(a.value)
            if a.name.lower() in SECRET_KEYS and literal and _unquote(a.value).strip():
                out.append(
                    _f(
                        "inline-credential",
                        ERROR,
                        a.line,
                        f'{trail}.{a.name} is written inline; use sys.env("VAR")',
                    )
                )
            elif literal and _AUTH_VALUE.match(_unquote(a.value).strip()):
                out.append(
                    _f("inline-credential", ERROR, a.line, f"{trail}.{a.name} holds an inline credential")
                )
            elif _USERINFO.search(a.value):
                out.append(
                    _f("inline-credential", ERROR, a.line, f"{trail}.{a.name} has a user:password in a URL")
                )
            elif _MAP_SECRET.search(a.value):
                out.append(
                    _f("inline-credential", ERROR, a.line, f"{trail}.{a.name} holds an inline secret header")
                )
        for b in block.blocks:
            visit(b, f"{trail}.{b.name}")

    visit(c, c.ref)
    return out


# ---- what a config uses ------------------------------------------------------------------------


def components_used(text: str, config_type: str) -> dict[str, int]:
    """The components a config uses, each with the line that names it first: ``kind:type``
    (``exporter:kafka``) for an OpenTelemetry Collector config (every configured component: the
    collector refuses a config naming a type it lacks, used or not), the component name for Alloy
    (``otelcol.exporter.otlp``; custom ``declare`` components left out). {} when the text cannot be
    read (the ``syntax`` finding says so)."""
    out: dict[str, int] = {}
    if config_type == "alloy":
        try:
            cfg = parse_alloy(text)
        except AlloySyntaxError:
            return {}
        for c in cfg.components:
            if c.name not in cfg.declared:
                out.setdefault(c.name, c.line)
        return out
    try:
        otel = read_config(parse_otel(text))
    except OtelSyntaxError:
        return {}
    for section, comps in otel.components.items():
        for cid, node in comps.items():
            out.setdefault(f"{section[:-1]}:{component_type(cid)}", node.key_line)
    return out
