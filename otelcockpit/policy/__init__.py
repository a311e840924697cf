"""Policy: checks on a pipeline's contents (Alloy and OTel YAML). See :func:`lint`."""

from otelcockpit.policy.fleet import feeds_central_spanmetrics, lint_pipeline
from otelcockpit.policy.lint import ERROR, INFO, WARNING, Finding, LintReport, lint

__all__ = [
    "ERROR",
    "INFO",
    "WARNING",
    "Finding",
    "LintReport",
    "feeds_central_spanmetrics",
    "lint",
    "lint_pipeline",
]
