"""``otelcockpit lint --bootstrap FILE``: is a collector's local start-up config safe for a fleet-API outage?

When the fleet API (Fleet Management, an OpAMP server) is down while the fleet scales out, new
collectors run the config they start with until it comes back. This checks that config:

* the remote-config client is there: Alloy's ``remotecfg`` block; for an OpenTelemetry Collector the
  OpAMP supervisor (a supervisor config with ``capabilities.accepts_remote_config: true``); the
  ``opamp`` extension alone only reports;
* its cache is on persistent storage: the supervisor's ``storage.directory`` (or, for Alloy, whose
  cache lives under ``--storage.path`` and not in the file, the path given with ``--storage-path``);
* its own pipelines are no heavier than the baseline: no unsampled traces, no debug exporters, no
  scrape or collection interval below the managed config's (``--managed FILE``), else below 60 s.

Findings are the linter's (:class:`~otelcockpit.policy.lint.Finding`), with lines, and the command
prints them and exits like ``lint``.
"""

from __future__ import annotations

from typing import Any

from otelcockpit.policy.exports import DEFAULT_INTERVAL, Exports, ExportsError, exports
from otelcockpit.policy.lint import ERROR, INFO, SEVERITY_ORDER, WARNING, Finding, LintReport
from otelcockpit.policy.otel import Node, OtelSyntaxError, parse_otel

REASONS = {
    "syntax": "The configuration cannot be read; nothing else was checked.",
    "remote-config-client": "Without a remote-config client the collector never fetches its managed config: it runs "
    "this file for ever, and the fleet API cannot fix it after an outage.",
    "remote-config-disabled": "The client is there but cannot apply a remote config, so the collector stays on this "
    "file whatever the fleet API says.",
    "opamp-extension-only": "The opamp extension reports to an OpAMP server but does not accept a remote config; "
    "the OpAMP supervisor fetches, applies and caches it.",
    "ephemeral-cache": "The last remote config is cached so that a collector restarted while the fleet API is down "
    "runs its managed config instead of this file; a cache on ephemeral storage is gone with the pod or the reboot.",
    "unsampled-traces": "A collector on this config during an outage sends every span; the managed config decides "
    "what is kept (sampling is decided centrally).",
    "debug-exporter": "A debug exporter writes every item to the collector's own log: at scale-out that is a "
    "second, unbounded log stream.",
    "scrape-interval": "Scraping or collecting more often than the managed config multiplies the points every "
    "collector on this file sends while the fleet API is away.",
}
EPHEMERAL = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/var/run")


def _f(rule: str, severity: str, line: int | None, message: str) -> Finding:
    return Finding(rule, severity, line, message, REASONS.get(rule, ""))


def _path_findings(path: str, line: int | None, where: str) -> list[Finding]:
    p = path.strip().strip('"')
    if not p:
        return []
    if any(p == e or p.startswith(e + "/") for e in EPHEMERAL):
        return [_f("ephemeral-cache", ERROR, line, f"{where} is {p}, ephemeral storage: the cached remote config is lost on restart")]
    if not p.startswith("/") and not (len(p) > 2 and p[1] == ":"):
        return [
            _f(
                "ephemeral-cache",
                WARNING,
                line,
                f"{where} is the relative path {p}: it lands wherever the collector starts (often the container's own "
                "file system); give an absolute path on a persistent volume",
            )
        ]
    return []


def _is_supervisor(root: Node) -> bool:
    keys = set(root.value) if isinstance(root.value, dict) else set()
    return "server" in keys and bool(keys & {"agent", "capabilities", "storage"}) and "service" not in keys


def _supervisor(root: Node) -> list[Finding]:
    out: list[Finding] = []
    caps = root.get("capabilities")
    accepts = caps.get("accepts_remote_config") if caps is not None else None
    if accepts is None or accepts.value is not True:
        out.append(
            _f(
                "remote-config-disabled",
                ERROR,
                accepts.line if accepts is not None else (caps.key_line if caps is not None else None),
                "capabilities.accepts_remote_config is not true (the supervisor's default is false): it never applies a remote config",
            )
        )
    storage = root.get("storage")
    directory = storage.get("directory") if storage is not None else None
    if directory is None or directory.value in (None, ""):
        out.append(
            _f(
                "ephemeral-cache",
                INFO,
                storage.key_line if storage is not None else None,
                "storage.directory is not set: the supervisor keeps its cache in its default directory; make sure that is a persistent volume",
            )
        )
    else:
        out.extend(_path_findings(str(directory.value), directory.line, "storage.directory"))
    return out


def _otel_client(root: Node) -> list[Finding]:
    exts = root.get("extensions")
    ext_ids = [k for k in (exts.value or {}) if k.split("/", 1)[0] == "opamp"] if exts is not None and isinstance(exts.value, dict) else []
    if not ext_ids:
        return [
            _f(
                "remote-config-client",
                ERROR,
                None,
                "no remote-config client: run this collector under the OpAMP supervisor (lint the supervisor's config "
                "with --bootstrap too), or it keeps this config until someone redeploys it",
            )
        ]
    out: list[Finding] = []
    service = root.get("service")
    enabled = service.get("extensions") if service is not None else None
    listed = [str(x.value) for x in enabled.value] if enabled is not None and isinstance(enabled.value, list) else []
    assert exts is not None and isinstance(exts.value, dict)
    for eid in ext_ids:
        node = exts.value[eid]
        if eid not in listed:
            out.append(_f("remote-config-disabled", ERROR, node.key_line, f"extension {eid} is configured but not in service.extensions"))
        out.append(
            _f(
                "opamp-extension-only",
                WARNING,
                node.key_line,
                f"extension {eid} reports to the OpAMP server but does not accept a remote config: run the collector "
                "under the OpAMP supervisor, which applies and caches it",
            )
        )
    return out


def _alloy_client(text: str, storage_path: str | None) -> list[Finding]:
    from otelcockpit.policy.alloy import parse_alloy

    cfg = parse_alloy(text)
    block = next((b for b in cfg.blocks if b.name == "remotecfg"), None)
    if block is None:
        return [
            _f(
                "remote-config-client",
                ERROR,
                None,
                "no remotecfg block: this Alloy never fetches its managed config from Fleet Management",
            )
        ]
    out: list[Finding] = []
    if storage_path is None:
        out.append(
            _f(
                "ephemeral-cache",
                INFO,
                block.line,
                "remotecfg caches the last config under Alloy's --storage.path (default data-alloy/ in the working "
                "directory; the Helm chart's default is /tmp/alloy): mount it on a persistent volume, and pass "
                "--storage-path to check it here",
            )
        )
    else:
        out.extend(_path_findings(storage_path, None, f"--storage.path (remotecfg's cache under {storage_path.rstrip('/')}/remotecfg)"))
    return out


def _heavy(ex: Exports, managed: Exports | None, managed_origin: str) -> list[Finding]:
    out: list[Finding] = []
    if "traces" in ex.unsampled:
        out.append(_f("unsampled-traces", ERROR, ex.unsampled["traces"], "a traces pipeline exports every span: no sampler"))
    for name, line in ex.debug:
        out.append(_f("debug-exporter", ERROR, line, f"debug exporter {name} is in use"))
    if managed is not None and managed.min_interval is not None:
        floor, severity = managed.min_interval.seconds, ERROR
        where = f"the managed config's {floor:g}s" + (f" ({managed_origin})" if managed_origin else "")
    else:
        floor, severity = DEFAULT_INTERVAL, WARNING
        where = f"the {floor:g}s baseline (pass --managed FILE to compare with the managed config)"
    for iv in ex.intervals:
        if iv.seconds < floor:
            out.append(
                _f("scrape-interval", severity, iv.line, f"{iv.component} collects every {iv.seconds:g}s, more often than {where}")
            )
    return out


def lint_bootstrap(
    text: str,
    config_type: str,
    *,
    storage_path: str | None = None,
    managed: Exports | None = None,
    managed_origin: str = "",
) -> LintReport:
    """Check a collector's bootstrap config (or an OpAMP supervisor's config) for what makes a fleet-API
    outage safe. ``managed``: what the managed config exports (its intervals are the floor)."""
    findings: list[Finding] = []
    try:
        if config_type == "otel":
            try:
                root = parse_otel(text)
            except OtelSyntaxError as exc:
                raise ExportsError(exc.line, f"cannot read the YAML: {exc.message}") from None
            if _is_supervisor(root):
                findings.extend(_supervisor(root))
            else:
                findings.extend(_otel_client(root))
                findings.extend(_heavy(exports(text, "otel"), managed, managed_origin))
        elif config_type == "alloy":
            ex = exports(text, "alloy")  # reads (and checks) the syntax first
            findings.extend(_alloy_client(text, storage_path))
            findings.extend(_heavy(ex, managed, managed_origin))
        else:
            raise ValueError(f"config type must be alloy or otel, not {config_type!r}")
    except ExportsError as exc:
        return LintReport(config_type, (_f("syntax", ERROR, exc.line, exc.message),))
    ordered = sorted(findings, key=lambda f: (f.line or 0, SEVERITY_ORDER[f.severity], f.rule))
    return LintReport(config_type, tuple(dict.fromkeys(ordered)))


def managed_exports(text: str, config_type: str) -> tuple[Exports | None, Any]:
    """What a managed config exports, or (None, the ExportsError) when it cannot be read."""
    try:
        return exports(text, config_type), None
    except ExportsError as exc:
        return None, exc
