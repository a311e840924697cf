"""What a config sends: the signals it exports, whether its traces are sampled, how often it scrapes
or collects metrics, and its debug exporters, each with the line that says so.

Read from an OpenTelemetry Collector YAML config or an Alloy config by the same readers the linter
uses. :func:`lint_bootstrap` (``otelcockpit lint --bootstrap``) and the outage drill's comparison of
what fallback configs export against the managed ones both read it here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from otelcockpit.policy.alloy import AlloySyntaxError, parse_alloy
from otelcockpit.policy.otel import Node, OtelSyntaxError, component_type, parse_otel, read_config

# When a config says nothing, scrapers collect every minute (the OpenTelemetry Collector's scraper
# default collection_interval, and Prometheus's and Alloy's default scrape_interval).
DEFAULT_INTERVAL = 60.0
DEBUG_EXPORTERS = ("debug", "logging")
SIGNALS = ("traces", "metrics", "logs", "profiles")


class ExportsError(ValueError):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def seconds(text: object) -> float | None:
    """A duration (``10s``, ``1m30s``, ``500ms``, or a number of seconds) in seconds; None if unreadable."""
    from otelcockpit.errors import UsageError
    from otelcockpit.rollout.model import parse_duration

    if isinstance(text, bool):
        return None
    s = str(text).strip().strip('"')
    if not s:
        return None
    try:
        return parse_duration(s, "interval")
    except UsageError:
        return None


@dataclass(frozen=True)
class Interval:
    component: str
    seconds: float
    line: int | None
    explicit: bool = True  # False: the default, not written in the config


@dataclass
class Exports:
    config_type: str
    signals: dict[str, int | None] = field(default_factory=dict)  # signal -> a line that exports it
    unsampled: dict[str, int | None] = field(default_factory=dict)  # traces exported with no sampler
    sampling: dict[str, float | None] = field(default_factory=dict)  # traces -> sampled % (None: tail)
    debug: list[tuple[str, int | None]] = field(default_factory=list)  # debug exporters in use
    intervals: list[Interval] = field(default_factory=list)

    @property
    def min_interval(self) -> Interval | None:
        return min(self.intervals, key=lambda i: i.seconds) if self.intervals else None

    def trace_share(self) -> float | None:
        """The share of spans it exports (1.0 unsampled; None: no traces, or tail-sampled)."""
        if "traces" not in self.signals:
            return None
        if "traces" in self.unsampled:
            return 1.0
        pct = self.sampling.get("traces")
        return pct / 100 if pct is not None else None

    def as_json(self) -> dict[str, object]:
        m = self.min_interval
        return {
            "signals": sorted(self.signals),
            "traces": (
                "none" if "traces" not in self.signals
                else "unsampled" if "traces" in self.unsampled
                else f"sampled {self.sampling.get('traces'):g}%" if self.sampling.get("traces") is not None
                else "tail-sampled"
            ),
            "min_interval_seconds": m.seconds if m else None,
            "debug_exporters": [d for d, _ in self.debug],
        }  # fmt: skip


def exports(text: str, config_type: str) -> Exports:
    """What ``text`` sends; :class:`ExportsError` (with the line) when it cannot be read."""
    if config_type == "alloy":
        return _alloy(text)
    if config_type == "otel":
        return _otel(text)
    raise ValueError(f"config type must be alloy or otel, not {config_type!r}")


# ---- OpenTelemetry Collector ----------------------------------------------------------------------


def _sampling_percentage(node: Node | None) -> float | None:
    if node is None or not isinstance(node.value, dict):
        return 0.0
    raw = node.get("sampling_percentage")
    try:
        return float(raw.value) if raw is not None else 0.0
    except (TypeError, ValueError):
        return None


def _otel(text: str) -> Exports:
    try:
        cfg = read_config(parse_otel(text))
    except OtelSyntaxError as exc:
        raise ExportsError(exc.line, f"cannot read the YAML: {exc.message}") from None
    out = Exports("otel")
    connectors = cfg.components["connectors"]
    used_receivers: dict[str, int] = {}
    for p in cfg.pipelines:
        real = [(e, line) for e, line in p.exporters if e not in connectors and component_type(e) not in DEBUG_EXPORTERS + ("nop",)]
        for e, line in p.exporters:
            if component_type(e) in DEBUG_EXPORTERS and all(d != e for d, _ in out.debug):
                out.debug.append((e, line))
        for r, line in p.receivers:
            if r not in connectors:
                used_receivers.setdefault(r, line)
        if not real:
            continue
        out.signals.setdefault(p.signal, p.line)
        if p.signal == "traces":
            samplers = [c for c, _ in p.processors if component_type(c) in ("probabilistic_sampler", "tail_sampling")]
            if not samplers:
                out.unsampled.setdefault("traces", p.line)
            else:
                first = samplers[0]
                pct = (
                    _sampling_percentage(cfg.components["processors"].get(first))
                    if component_type(first) == "probabilistic_sampler"
                    else None
                )
                prev = out.sampling.get("traces", -1.0)
                if pct is None or prev is None or pct > prev:  # the most generous pipeline counts
                    out.sampling["traces"] = pct
    for rid in used_receivers:
        node = cfg.components["receivers"].get(rid)
        rtype = component_type(rid)
        if node is None:
            continue
        if rtype == "prometheus":
            out.intervals.extend(_prometheus_intervals(rid, node))
            continue
        ci = node.get("collection_interval") if isinstance(node.value, dict) else None
        if ci is not None:
            sec = seconds(ci.value)
            if sec is not None:
                out.intervals.append(Interval(rid, sec, ci.line))
        elif rtype in ("hostmetrics", "kubeletstats", "docker_stats", "podman_stats", "k8s_cluster"):
            out.intervals.append(Interval(rid, DEFAULT_INTERVAL, node.key_line, explicit=False))
    return out


def _prometheus_intervals(rid: str, node: Node) -> list[Interval]:
    out: list[Interval] = []
    cfg = node.get("config")
    if cfg is None or not isinstance(cfg.value, dict):
        return out
    glob = cfg.get("global")
    default: Interval = Interval(rid, DEFAULT_INTERVAL, node.key_line, explicit=False)
    if glob is not None and isinstance(glob.value, dict) and glob.get("scrape_interval") is not None:
        n = glob.get("scrape_interval")
        assert n is not None
        sec = seconds(n.value)
        if sec is not None:
            default = Interval(rid, sec, n.line)
    jobs = cfg.get("scrape_configs")
    if jobs is None or not isinstance(jobs.value, list) or not jobs.value:
        return [default]
    for job in jobs.value:
        n = job.get("scrape_interval") if isinstance(job.value, dict) else None
        sec = seconds(n.value) if n is not None else None
        out.append(Interval(rid, sec, n.line) if n is not None and sec is not None else default)
    return out


# ---- Alloy --------------------------------------------------------------------------------------

_LIST_ITEMS = re.compile(r"\[\s*\S")


def _alloy(text: str) -> Exports:
    try:
        cfg = parse_alloy(text)
    except AlloySyntaxError as exc:
        raise ExportsError(exc.line, f"cannot read the Alloy configuration: {exc.message}") from None
    out = Exports("alloy")
    names = {c.name for c in cfg.components}
    samplers = [
        c
        for c in cfg.components
        if c.name in ("otelcol.processor.probabilistic_sampler", "otelcol.processor.tail_sampling")
    ]
    real_otel = [c for c in cfg.components if c.name.startswith("otelcol.exporter.") and c.name != "otelcol.exporter.debug"]
    for c in cfg.components:
        if c.name == "otelcol.exporter.debug":
            out.debug.append((c.ref, c.line))
        if c.name == "prometheus.remote_write" or (c.name.startswith("otelcol.exporter.prometheus")):
            out.signals.setdefault("metrics", c.line)
        if c.name == "loki.write":
            out.signals.setdefault("logs", c.line)
        if c.name == "pyroscope.write":
            out.signals.setdefault("profiles", c.line)
        if c.name.startswith("otelcol.receiver."):
            for b in c.blocks:
                if b.name != "output":
                    continue
                for a in b.attributes:
                    if a.name in SIGNALS and _LIST_ITEMS.search(a.value) and real_otel:
                        out.signals.setdefault(a.name, a.line)
                        if a.name == "traces" and not samplers:
                            out.unsampled.setdefault("traces", a.line)
        if c.name == "prometheus.scrape":
            attr = next((a for a in c.attributes if a.name == "scrape_interval"), None)
            sec = seconds(attr.value) if attr is not None else None
            if attr is not None and sec is not None:
                out.intervals.append(Interval(c.ref, sec, attr.line))
            else:
                out.intervals.append(Interval(c.ref, DEFAULT_INTERVAL, c.line, explicit=False))
    if "traces" in out.signals and samplers:
        s = samplers[0]
        pct: float | None = None
        if s.name == "otelcol.processor.probabilistic_sampler":
            attr = next((a for a in s.attributes if a.name == "sampling_percentage"), None)
            try:
                pct = float(attr.value) if attr is not None else 0.0
            except ValueError:
                pct = None
        out.sampling["traces"] = pct
    if "prometheus.remote_write" in names and "metrics" not in out.signals:
        out.signals["metrics"] = None
    return out


# ---- comparing two configs ----------------------------------------------------------------------


def _every(sec: float) -> str:
    return f"{sec:g}s" if sec < 120 else f"{sec / 60:g}m"


def compare(runs: Exports, managed: Exports) -> list[str]:
    """How what ``runs`` sends compares with what ``managed`` sends, in sentences (heavier first)."""
    out: list[str] = []
    share, managed_share = runs.trace_share(), managed.trace_share()
    if "traces" in runs.signals:
        if "traces" not in managed.signals:
            out.append("exports traces, which the managed config does not")
        elif share == 1.0 and managed_share is not None and managed_share < 1.0:
            out.append(f"exports every span (the managed config: {managed_share * 100:g}%), {1 / managed_share:g}x the spans"
                       if managed_share > 0 else "exports every span (the managed config: none)")  # fmt: skip
        elif share == 1.0 and managed_share is None:
            out.append("exports every span (the managed config tail-samples)")
    for sig in ("metrics", "logs", "profiles"):
        if sig in runs.signals and sig not in managed.signals:
            out.append(f"exports {sig}, which the managed config does not")
    rm, mm = runs.min_interval, managed.min_interval
    if rm is not None and mm is not None and rm.seconds < mm.seconds:
        out.append(
            f"collects metrics every {_every(rm.seconds)} (the managed config: every {_every(mm.seconds)}), "
            f"{mm.seconds / rm.seconds:g}x the points"
        )
    if runs.debug and not managed.debug:
        out.append(f"adds a debug exporter ({', '.join(d for d, _ in runs.debug)})")
    return out
