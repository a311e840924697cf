"""Policy findings with line numbers, one small Alloy and one small OTel sample per rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from otelcockpit.policy import feeds_central_spanmetrics, lint, lint_pipeline
from otelcockpit.policy.alloy import AlloySyntaxError, parse_alloy


def found(report, rule: str) -> list[tuple[str, int | None]]:  # noqa: ANN001
    return [(f.severity, f.line) for f in report.findings if f.rule == rule]


OTEL_GOOD = """\
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 0.0.0.0:4317}
processors:
  memory_limiter: {check_interval: 1s, limit_percentage: 80}
  batch: {}
exporters:
  otlphttp: {endpoint: "${env:OTLP_ENDPOINT}"}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlphttp]
"""


def test_a_clean_otel_config_has_no_findings() -> None:
    r = lint(OTEL_GOOD, "otel", production=True, feeds_central_spanmetrics=True)
    assert r.findings == () and r.syntax_ok


def test_otel_tail_sampling_and_spanmetrics_after_sampler() -> None:
    text = """\
receivers:
  otlp: {protocols: {grpc: {}}}
processors:
  memory_limiter: {check_interval: 1s, limit_percentage: 80}
  batch: {}
  tail_sampling:
    decision_wait: 10s
connectors:
  spanmetrics: {}
exporters:
  otlphttp: {endpoint: "${env:X}"}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors:
        - memory_limiter
        - tail_sampling
        - batch
      exporters:
        - spanmetrics
        - otlphttp
    metrics:
      receivers: [spanmetrics]
      processors: [memory_limiter, batch]
      exporters: [otlphttp]
"""
    r = lint(text, "otel")
    assert found(r, "tail-sampling") == [("warning", 18)]
    assert found(r, "spanmetrics-after-sampler") == [("error", 21)]
    assert r.by_rule("spanmetrics-after-sampler")[0].reason.startswith(
        "Span metrics must be computed from 100% of spans"
    )


def test_otel_spanmetrics_after_a_sampler_across_a_forward_connector() -> None:
    text = """\
receivers:
  otlp: {protocols: {grpc: {}}}
processors:
  memory_limiter: {}
  batch: {}
  probabilistic_sampler: {sampling_percentage: 10}
connectors:
  forward/sampled: {}
  spanmetrics: {}
exporters:
  otlphttp: {endpoint: "${env:X}"}
service:
  pipelines:
    traces/in:
      receivers: [otlp]
      processors: [memory_limiter, probabilistic_sampler, batch]
      exporters: [forward/sampled]
    traces/out:
      receivers: [forward/sampled]
      processors: [memory_limiter, batch]
      exporters: [spanmetrics, otlphttp]
    metrics:
      receivers: [spanmetrics]
      processors: [memory_limiter, batch]
      exporters: [otlphttp]
"""
    r = lint(text, "otel")
    assert found(r, "spanmetrics-after-sampler") == [("error", 21)]
    assert found(r, "source-sampling") == []  # spanmetrics is local: the after-sampler error says it


def test_otel_source_sampling_depends_on_what_it_feeds() -> None:
    text = OTEL_GOOD.replace(
        "  batch: {}\n", "  batch: {}\n  probabilistic_sampler: {sampling_percentage: 25}\n"
    ).replace("[memory_limiter, batch]", "[memory_limiter, probabilistic_sampler, batch]")
    assert found(lint(text, "otel", feeds_central_spanmetrics=True), "source-sampling") == [("error", 15)]
    assert found(lint(text, "otel", feeds_central_spanmetrics=None), "source-sampling") == [("info", 15)]
    assert found(lint(text, "otel", feeds_central_spanmetrics=False), "source-sampling") == []


def test_otel_missing_memory_limiter_and_batch() -> None:
    text = OTEL_GOOD.replace("      processors: [memory_limiter, batch]\n", "      processors: []\n")
    r = lint(text, "otel")
    assert found(r, "missing-memory-limiter") == [("warning", 12)]
    assert found(r, "missing-batch") == [("warning", 12)]


def test_otel_inline_credentials() -> None:
    text = OTEL_GOOD.replace(
        '  otlphttp: {endpoint: "${env:OTLP_ENDPOINT}"}\n',
        '  otlphttp:\n    endpoint: https://otlp.example\n    headers:\n      Authorization: "Basic dXNlcjpwYXNzd29yZA=="\n'
        "  prometheusremotewrite:\n    endpoint: https://user:hunter22@prom.example/api/v1/write\n"
        "extensions:\n  basicauth/client:\n    client_auth:\n      username: bob\n      password: hunter2\n"
        "  bearertokenauth:\n    token: ${env:TOKEN}\n",
    )
    r = lint(text, "otel")
    assert found(r, "inline-credential") == [("error", 12), ("error", 14), ("error", 19)]


def test_otel_localhost_exporter_only_in_production() -> None:
    text = OTEL_GOOD.replace('"${env:OTLP_ENDPOINT}"', "http://localhost:4318")
    assert found(lint(text, "otel", production=True), "localhost-exporter") == [("warning", 9)]
    assert found(lint(text, "otel", production=False), "localhost-exporter") == []


def test_otel_unknown_and_undefined_components() -> None:
    text = OTEL_GOOD.replace("  batch: {}\n", "  batch: {}\n  tail_samplingg: {}\n").replace(
        "exporters: [otlphttp]", "exporters: [otlphttp, kafka]"
    )
    r = lint(text, "otel")
    assert found(r, "unknown-component") == [("warning", 8)]
    assert found(r, "undefined-component") == [("error", 16)]


def test_otel_broken_yaml_is_one_syntax_finding_with_a_line() -> None:
    r = lint("receivers:\n  otlp: {\nprocessors: []\n", "otel")
    assert [(f.rule, f.severity, f.line) for f in r.findings] == [("syntax", "error", 3)]
    assert not r.syntax_ok


ALLOY = """\
otelcol.receiver.otlp "in" {
  grpc { }
  output {
    traces = [otelcol.processor.tail_sampling.keep.input]
  }
}

otelcol.processor.tail_sampling "keep" {
  decision_wait = "10s"
  output {
    traces = [otelcol.connector.spanmetrics.red.input]
  }
}

otelcol.connector.spanmetrics "red" {
  histogram {
    explicit { }
  }
  output {
    metrics = [otelcol.exporter.otlphttp.out.input]
  }
}

otelcol.exporter.otlphttp "out" {
  client {
    endpoint = "http://127.0.0.1:4318"
    auth     = otelcol.auth.basic.creds.handler
  }
}

otelcol.auth.basic "creds" {
  username = "912345"
  password = "glc_secret_value_123"
}

prometheus.exportr.unix "typo" { }
"""


def test_alloy_findings_with_lines() -> None:
    r = lint(ALLOY, "alloy", production=True)
    assert found(r, "tail-sampling") == [("warning", 8)]
    assert found(r, "spanmetrics-after-sampler") == [("error", 15)]
    assert found(r, "missing-memory-limiter") == [("warning", 1)]
    assert found(r, "missing-batch") == [("warning", 1)]
    assert found(r, "localhost-exporter") == [("warning", 26)]
    assert found(r, "inline-credential") == [("error", 33)]
    assert found(r, "unknown-component") == [("warning", 36)]
    assert len(r.errors) == 2


def test_alloy_source_sampling_and_env_credentials_pass() -> None:
    text = (
        'otelcol.processor.probabilistic_sampler "s" {\n'
        "  sampling_percentage = 10\n"
        "  output {\n    traces = [otelcol.exporter.otlp.gw.input]\n  }\n}\n"
        'otelcol.exporter.otlp "gw" {\n  client {\n    endpoint = sys.env("GW")\n  }\n}\n'
        'prometheus.remote_write "r" {\n  endpoint {\n    url = sys.env("U")\n'
        '    basic_auth {\n      password = sys.env("TOKEN")\n    }\n  }\n}\n'
    )
    assert found(lint(text, "alloy", feeds_central_spanmetrics=True), "source-sampling") == [("error", 1)]
    assert found(lint(text, "alloy"), "source-sampling") == [("info", 1)]
    assert found(lint(text, "alloy", production=True), "inline-credential") == []


def test_alloy_declare_and_custom_components_are_known() -> None:
    text = 'declare "host" {\n  prometheus.exporter.unix "h" { }\n}\nhost "default" { }\n'
    cfg = parse_alloy(text)
    assert [c.ref for c in cfg.components] == ["prometheus.exporter.unix.h", "host.default"]
    assert lint(text, "alloy").findings == ()


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('a.b "x" {\n  foo = [1,\n}\n', 3, "expected ']', found '}'"),
        ('a.b "x" {\n  foo = 1\n', 3, "missing '}' at the end of the file"),
        ('a.b "x" {\n  foo = "open\n}\n', 2, "newline in a string"),
        ('a.b "x" {\n  ??? \n}\n', 2, "cannot read '??? '"),
        ("foo = 1\n", 1, "attribute 'foo' outside a block"),
        ('a.b "x" {\n}\n}\n', 3, "unexpected '}'"),
    ],
)
def test_alloy_syntax_it_cannot_read_is_reported_not_guessed(text: str, line: int, message: str) -> None:
    with pytest.raises(AlloySyntaxError) as exc:
        parse_alloy(text)
    assert exc.value.line == line and message in exc.value.message
    r = lint(text, "alloy")
    assert [(f.rule, f.line) for f in r.findings] == [("syntax", line)]


def test_demo_pipelines_lint_in_their_fleet(frozen_clock: Callable[[], datetime]) -> None:
    from otelcockpit.backends.demo import DemoBackend

    snap = DemoBackend(clock=frozen_clock).snapshot_now()
    results = {p.name: lint_pipeline(p, snap, production=True) for p in snap.pipelines}
    assert feeds_central_spanmetrics(snap.pipeline("ecs_sidecar_traces"), snap) is True
    assert found(results["ecs_sidecar_traces"], "source-sampling") == [("error", 14)]
    assert found(results["otel_gateway_traces"], "spanmetrics-after-sampler") == [("error", 20)]
    assert found(results["otel_gateway_traces"], "tail-sampling") == [("warning", 20)]
    assert all(r.syntax_ok for r in results.values())
    clean = [n for n, r in results.items() if not r.findings]
    assert "linux_host_metrics" in clean and "app_logs" in clean
    first_logs = snap.revisions["app_logs"][0].snapshot
    assert found(lint_pipeline(first_logs, snap), "inline-credential") == [("error", 13)]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otelcockpit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def test_cli_lint_exit_codes_and_json(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(OTEL_GOOD)
    proc = run("lint", str(good))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("0 finding(s), 0 error(s)")
    bad = tmp_path / "pipeline.alloy"
    bad.write_text(ALLOY)
    proc = run("lint", str(bad), "--production", "--json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert list(data) == ["file", "production", "config_type", "syntax_ok", "errors", "findings"]
    assert data["errors"] == 2
    assert list(data["findings"][0]) == ["rule", "severity", "line", "message", "reason"]
    text = run("lint", str(bad))
    assert f"{bad}:15: error: otelcol.connector.spanmetrics.red receives spans after" in text.stdout


def test_cli_lint_broken_yaml_is_one_line_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("receivers:\n  otlp: {\nprocessors: []\n")
    proc = run("lint", str(broken))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"otelcockpit: {broken}:3: cannot read the YAML: expected ',' or '}}', but got '<stream end>'"
    ]
    bad_indent = tmp_path / "indent.yaml"
    bad_indent.write_text("receivers:\n  otlp: {a: 1}}\nexporters: {}\n")
    proc = run("lint", str(bad_indent))
    assert proc.returncode == 2 and proc.stderr.startswith(
        f"otelcockpit: {bad_indent}:2: cannot read the YAML"
    )
    odd = tmp_path / "config.txt"
    odd.write_text("x")
    proc = run("lint", str(odd))
    assert proc.returncode == 2 and "pass --type alloy|otel" in proc.stderr
    proc = run("lint", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_pipeline_show_lists_policy_findings():
    """The same checks wherever a pipeline is shown: `pipeline show --json` carries its findings."""
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "otelcockpit", "pipeline", "show", "otel_gateway_traces", "--json"],
        capture_output=True, text=True, check=True,
    )
    rules = {f["rule"] for f in json.loads(out.stdout)["findings"]}
    assert {"tail-sampling", "spanmetrics-after-sampler"} <= rules
