"""Lint a pipeline where it lives: the fleet decides whether its spans feed central span metrics."""

from __future__ import annotations

from otelcockpit.fleet.matching import PipelineMatcher
from otelcockpit.fleet.model import FleetSnapshot, Pipeline
from otelcockpit.policy.lint import LintReport, lint


def _exports_traces(p: Pipeline) -> bool:
    c = p.contents
    return "traces" in c and ("otlp" in c or "otelcol.exporter" in c)


def feeds_central_spanmetrics(p: Pipeline, snapshot: FleetSnapshot | None) -> bool | None:
    """True when this pipeline forwards traces from non-gateway collectors and another enabled
    pipeline computes span metrics on gateways; False when it does not; None without a fleet."""
    if snapshot is None:
        return None
    if "spanmetrics" in p.contents or not _exports_traces(p):
        return False
    matcher = PipelineMatcher(snapshot.pipelines)
    mine = matcher.collectors_for(p, snapshot.collectors)
    if mine and all(c.attr("role") == "gateway" for c in mine):
        return False
    for other in snapshot.pipelines:
        if other.name == p.name or not other.enabled or "spanmetrics" not in other.contents:
            continue
        if any(c.attr("role") == "gateway" for c in matcher.collectors_for(other, snapshot.collectors)):
            return True
    return False


def lint_pipeline(
    p: Pipeline, snapshot: FleetSnapshot | None = None, *, production: bool = False
) -> LintReport:
    """The same checks as ``otelcockpit lint``, for a pipeline shown or about to be pushed."""
    return lint(
        p.contents,
        p.config_type.value,
        production=production,
        feeds_central_spanmetrics=feeds_central_spanmetrics(p, snapshot),
    )
