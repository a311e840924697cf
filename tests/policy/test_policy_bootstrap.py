"""``otelcockpit lint --bootstrap FILE``: a collector's start-up config checked for a fleet-API outage, on
Alloy and OpenTelemetry Collector configs and on an OpAMP supervisor's config; line numbers, the same
output and exit codes as ``lint`` (0 clean, 1 errors, 2 unreadable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from otelcockpit.policy.bootstrap import lint_bootstrap
from otelcockpit.policy.exports import compare, exports, seconds

OTEL_HEAVY = """\
receivers:
  otlp:
    protocols:
      grpc: {}
  hostmetrics:
    collection_interval: 10s
    scrapers: {cpu: {}}
processors:
  batch: {}
exporters:
  otlphttp:
    endpoint: https://gw.example.net
  debug:
    verbosity: detailed
extensions:
  opamp:
    server:
      ws: {endpoint: ws://cockpit:4320/v1/opamp}
service:
  extensions: [opamp]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlphttp, debug]
    metrics:
      receivers: [hostmetrics]
      exporters: [otlphttp]
"""

OTEL_LEAN = """\
receivers:
  otlp:
    protocols:
      grpc: {}
  hostmetrics:
    collection_interval: 60s
    scrapers: {cpu: {}}
processors:
  probabilistic_sampler:
    sampling_percentage: 10
  batch: {}
exporters:
  otlphttp:
    endpoint: https://gw.example.net
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [probabilistic_sampler, batch]
      exporters: [otlphttp]
    metrics:
      receivers: [hostmetrics]
      exporters: [otlphttp]
"""

SUPERVISOR_GOOD = """\
server:
  endpoint: wss://cockpit.example.internal:4320/v1/opamp
capabilities:
  accepts_remote_config: true
  reports_effective_config: true
storage:
  directory: /var/lib/otelcol/supervisor
agent:
  executable: /usr/local/bin/otelcol-contrib
"""

ALLOY_BOOT = """\
remotecfg {
  url            = "https://fleet-management-prod-001.grafana.net"
  poll_frequency = "1m"
}

prometheus.exporter.unix "host" { }

prometheus.scrape "host" {
  targets         = prometheus.exporter.unix.host.targets
  scrape_interval = "15s"
  forward_to      = [prometheus.remote_write.default.receiver]
}

otelcol.receiver.otlp "default" {
  grpc { }
  output {
    traces = [otelcol.exporter.otlphttp.default.input]
  }
}

otelcol.exporter.debug "local" { }

otelcol.exporter.otlphttp "default" {
  client {
    endpoint = "https://otlp.example.net"
  }
}

prometheus.remote_write "default" {
  endpoint {
    url = "https://mimir.example.net/api/v1/push"
  }
}
"""

ALLOY_MANAGED = """\
prometheus.exporter.unix "host" { }

prometheus.scrape "host" {
  targets         = prometheus.exporter.unix.host.targets
  scrape_interval = "30s"
  forward_to      = [prometheus.remote_write.default.receiver]
}

prometheus.remote_write "default" {
  endpoint {
    url = "https://mimir.example.net/api/v1/push"
  }
}
"""


def rules(report) -> list[tuple[str, str, int | None]]:  # noqa: ANN001
    return [(f.rule, f.severity, f.line) for f in report.findings]


def test_otel_bootstrap_with_only_the_opamp_extension_and_heavy_pipelines() -> None:
    report = lint_bootstrap(OTEL_HEAVY, "otel")
    assert rules(report) == [
        ("scrape-interval", "warning", 6),  # 10s below the 60s baseline (no --managed)
        ("opamp-extension-only", "warning", 16),
        ("unsampled-traces", "error", 22),
        ("debug-exporter", "error", 25),
    ]
    # With the managed config, a shorter interval than its own is an error naming it.
    managed = exports(OTEL_LEAN, "otel")
    report = lint_bootstrap(OTEL_HEAVY, "otel", managed=managed, managed_origin="managed.yaml")
    interval = next(f for f in report.findings if f.rule == "scrape-interval")
    assert (interval.severity, interval.line) == ("error", 6)
    assert interval.message == "hostmetrics collects every 10s, more often than the managed config's 60s (managed.yaml)"


def test_otel_config_without_a_client_and_a_disabled_extension() -> None:
    no_client = OTEL_LEAN
    assert rules(lint_bootstrap(no_client, "otel")) == [("remote-config-client", "error", None)]
    off = OTEL_HEAVY.replace("  extensions: [opamp]\n", "")
    found = rules(lint_bootstrap(off, "otel"))
    assert ("remote-config-disabled", "error", 16) in found


def test_supervisor_config_remote_config_and_cache() -> None:
    assert rules(lint_bootstrap(SUPERVISOR_GOOD, "otel")) == []
    tmp = SUPERVISOR_GOOD.replace("/var/lib/otelcol/supervisor", "/tmp/supervisor")
    assert rules(lint_bootstrap(tmp, "otel")) == [("ephemeral-cache", "error", 7)]
    relative = SUPERVISOR_GOOD.replace("/var/lib/otelcol/supervisor", "supervisor-data")
    assert rules(lint_bootstrap(relative, "otel")) == [("ephemeral-cache", "warning", 7)]
    off = SUPERVISOR_GOOD.replace("accepts_remote_config: true", "accepts_remote_config: false")
    assert rules(lint_bootstrap(off, "otel")) == [("remote-config-disabled", "error", 4)]
    unset = SUPERVISOR_GOOD.replace("storage:\n  directory: /var/lib/otelcol/supervisor\n", "")
    assert rules(lint_bootstrap(unset, "otel")) == [("ephemeral-cache", "info", None)]


def test_alloy_bootstrap_remotecfg_cache_and_heavy_pipelines() -> None:
    report = lint_bootstrap(ALLOY_BOOT, "alloy")
    assert rules(report) == [
        ("ephemeral-cache", "info", 1),  # --storage.path is not in the file: say where the cache lives
        ("scrape-interval", "warning", 10),
        ("unsampled-traces", "error", 17),
        ("debug-exporter", "error", 21),
    ]
    on_tmp = lint_bootstrap(ALLOY_BOOT, "alloy", storage_path="/tmp/alloy")
    assert ("ephemeral-cache", "error", None) in rules(on_tmp)
    assert "lost on restart" in next(f.message for f in on_tmp.findings if f.rule == "ephemeral-cache")
    assert not [f for f in lint_bootstrap(ALLOY_BOOT, "alloy", storage_path="/var/lib/alloy").findings if f.rule == "ephemeral-cache"]
    with_managed = lint_bootstrap(ALLOY_BOOT, "alloy", managed=exports(ALLOY_MANAGED, "alloy"))
    assert ("scrape-interval", "error", 10) in rules(with_managed)
    no_client = ALLOY_BOOT.split("\n", 4)[-1]
    assert ("remote-config-client", "error", None) in rules(lint_bootstrap(no_client, "alloy"))


def test_what_a_fallback_config_sends_compared_with_the_managed_one() -> None:
    heavy, lean = exports(OTEL_HEAVY, "otel"), exports(OTEL_LEAN, "otel")
    assert heavy.trace_share() == 1.0 and lean.trace_share() == 0.1
    assert compare(heavy, lean) == [
        "exports every span (the managed config: 10%), 10x the spans",
        "collects metrics every 10s (the managed config: every 60s), 6x the points",
        "adds a debug exporter (debug)",
    ]
    assert compare(lean, lean) == []
    assert [seconds(x) for x in ("10s", "1m30s", "500ms", 5, "soon")] == [10, 90, 0.5, 5, None]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otelcockpit", *args], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )


def test_cli_lint_bootstrap_output_exit_codes_and_json(tmp_path: Path) -> None:
    boot = tmp_path / "bootstrap.yaml"
    boot.write_text(OTEL_HEAVY)
    managed = tmp_path / "managed.yaml"
    managed.write_text(OTEL_LEAN)
    proc = run("lint", "--bootstrap", str(boot), "--managed", str(managed))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{boot}:6: error: hostmetrics collects every 10s, more often than the managed config's 60s ({managed}) [scrape-interval]"
    assert lines[1].startswith("    why: ")
    assert f"{boot}:22: error: a traces pipeline exports every span: no sampler [unsampled-traces]" in lines
    assert lines[-1] == "4 finding(s), 3 error(s)"
    proc = run("lint", "--bootstrap", str(boot), "--json")
    data = json.loads(proc.stdout)
    assert list(data) == ["file", "production", "bootstrap", "config_type", "syntax_ok", "errors", "findings"]
    assert data["errors"] == 2 and {f["rule"] for f in data["findings"]} >= {"unsampled-traces", "debug-exporter"}
    sup = tmp_path / "supervisor.yaml"
    sup.write_text(SUPERVISOR_GOOD)
    proc = run("lint", "--bootstrap", str(sup))
    assert proc.returncode == 0 and proc.stdout.strip() == "0 finding(s), 0 error(s)", proc.stdout
    alloy = tmp_path / "boot.alloy"
    alloy.write_text(ALLOY_BOOT)
    proc = run("lint", "--bootstrap", str(alloy), "--storage-path", "/tmp/alloy")
    assert proc.returncode == 1 and f"{alloy}:17: error: a traces pipeline exports every span" in proc.stdout


def test_cli_lint_bootstrap_broken_files_exit_2_with_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("receivers:\n  otlp: {\nprocessors: []\n")
    proc = run("lint", "--bootstrap", str(broken))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"otelcockpit: {broken}:3: cannot read the YAML: expected ',' or '}}', but got '<stream end>'"
    ]
    alloy = tmp_path / "broken.alloy"
    alloy.write_text('remotecfg {\n  url = "https://x"\n')
    proc = run("lint", "--bootstrap", str(alloy))
    assert proc.returncode == 2 and proc.stderr.startswith(f"otelcockpit: {alloy}:") and "Traceback" not in proc.stderr
    good = tmp_path / "good.yaml"
    good.write_text(OTEL_HEAVY)
    proc = run("lint", "--bootstrap", str(good), "--managed", str(broken))
    assert proc.returncode == 2 and proc.stderr.startswith(f"otelcockpit: {broken}:3: cannot read the YAML")
    proc = run("lint", "--bootstrap", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = run("lint", str(good), "--bootstrap", str(good))
    assert proc.returncode == 2 and "give one FILE, or --bootstrap FILE" in proc.stderr
    proc = run("lint", str(good), "--managed", str(good))
    assert proc.returncode == 2 and "go with --bootstrap" in proc.stderr
