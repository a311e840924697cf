"""Rollout commands as a user types them: a file that does not parse is `file:line` and exit 2 (never
a plan), the plan says the safe default in words, durations print alike, and every write records the
person (OTELCOCKPIT_USER, a context's identity)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "otelcockpit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        cwd=REPO,
    )


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "OTELCOCKPIT_CONFIG": str(tmp_path / "config.yaml"),
        "OTELCOCKPIT_DATA_DIR": str(tmp_path / "data"),
        "NO_COLOR": "1",
        **extra,
    }


def test_a_file_that_does_not_parse_is_file_line_and_exit_2(tmp_path: Path) -> None:
    env = _env(tmp_path)
    bad_yaml = tmp_path / "gateway.yaml"
    bad_yaml.write_text("receivers:\n  otlp:\n    protocols: [grpc,\n", encoding="utf-8")
    bad_alloy = tmp_path / "host.alloy"
    bad_alloy.write_text('prometheus.scrape "host" {\n  targets = [\n', encoding="utf-8")
    for action in ("plan", "start"):
        for pipeline, path in (("otel_gateway_traces", bad_yaml), ("linux_host_metrics", bad_alloy)):
            extra = ["--yes"] if action == "start" else []
            r = run("rollout", action, "--pipeline", pipeline, "--file", str(path), *extra, env=env)
            assert r.returncode == 2, (action, pipeline, r.stdout, r.stderr)
            assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
            assert r.stderr.startswith(f"otelcockpit: {path}:"), r.stderr


def test_default_plan_in_words_and_durations_alike(tmp_path: Path) -> None:
    env = _env(tmp_path)
    live = json.loads(run("pipeline", "show", "linux_host_metrics", "--json", env=env).stdout)["pipeline"]
    new = tmp_path / "host.alloy"
    new.write_text(live["contents"] + "// tuned\n", encoding="utf-8")
    r = run("rollout", "plan", "--pipeline", "linux_host_metrics", "--file", str(new), "--no-diff", env=env)
    assert r.returncode == 0, r.stderr
    assert "plan: canary 5%:" in r.stdout and "then waves to 25%, 100%" in r.stdout
    assert "gates: max failures 0, soak 1m, apply timeout 5m, health required" in r.stdout
    r = run("rollout", "plan", "--pipeline", "linux_host_metrics", "--file", str(new), "--all-at-once", env=env)
    assert r.returncode == 0 and "plan: ALL AT ONCE: every one of the 330 collector(s)" in r.stdout, r.stdout
    r = run("rollout", "plan", "--pipeline", "linux_host_metrics", "--file", str(new), "--canary", "none",
            "--waves", "100%", env=env)  # fmt: skip
    assert r.returncode == 2 and "--all-at-once" in r.stderr, r.stderr


def test_writes_record_the_person(tmp_path: Path) -> None:
    env = _env(tmp_path, OTELCOCKPIT_USER="alice")
    live = json.loads(run("pipeline", "show", "linux_host_metrics", "--json", env=env).stdout)["pipeline"]
    new = tmp_path / "host.alloy"
    new.write_text(live["contents"] + "// tuned\n", encoding="utf-8")
    r = run("rollout", "start", "--pipeline", "linux_host_metrics", "--file", str(new), "--soak", "0s",
            "--canary", "1", "--yes", "--json", env=env)  # fmt: skip
    view = json.loads(r.stdout)
    assert view["author"] == "alice", view
    (tmp_path / "config.yaml").write_text(
        "current_context: lab\ncontexts:\n  lab:\n    backend: demo\n    identity: ops-bob\n"
        "    rollout_defaults: {canary: '2', waves: '50%,100%', soak: 5s}\n",
        encoding="utf-8",
    )
    r = run("rollout", "plan", "--pipeline", "linux_host_metrics", "--file", str(new), "--json", env=env)
    plan = json.loads(r.stdout)
    assert plan["canary"] == "2" and plan["waves"] == [50, 100] and plan["gates"]["soak_seconds"] == 5
    r = run("collector", "disable", "alloy-prod-euw1-node-001", "--yes", "--json", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["by"] == "ops-bob", r.stdout + r.stderr
    (tmp_path / "config.yaml").write_text(
        "current_context: lab\ncontexts:\n  lab:\n    backend: demo\n    rollout_defaults: {canary: 'x=~['}\n",
        encoding="utf-8",
    )
    r = run("rollout", "status", env=env)
    assert r.returncode == 2 and "rollout_defaults" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_collector_and_pipeline_switches_from_the_cli(tmp_path: Path) -> None:
    env = _env(tmp_path)
    r = run("collector", "disable", "alloy-prod-euw1-node-001", "alloy-prod-euw1-node-002", "--yes", "--json", env=env)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["ok"] and "2 collector(s)" in out["message"], r.stdout
    r = run("collector", "attributes", "set", "alloy-prod-euw1-node-001", "canary=yes", "team=", "--yes", env=env)
    assert r.returncode == 0 and "set remote attributes" in r.stdout, r.stderr
    r = run("pipeline", "disable", "app_logs", "--yes", env=env)
    assert r.returncode == 0 and "disabled app_logs" in r.stdout, r.stderr
    for argv in (
        ["collector", "enable", "nope", "--yes"],
        ["collector", "attributes", "set", "alloy-prod-euw1-node-001", "collector.os=x", "--yes"],
        ["collector", "attributes", "set", "alloy-prod-euw1-node-001", "noequals", "--yes"],
        ["pipeline", "enable", "nope", "--yes"],
    ):
        r = run(*argv, env=env)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (argv, r.stderr)
    for argv in (
        ["collector", "disable", "alloy-prod-euw1-node-001", "--yes"],
        ["collector", "attributes", "set", "alloy-prod-euw1-node-001", "a=b", "--yes"],
        ["pipeline", "enable", "app_logs", "--yes"],
    ):
        r = run("--read-only", *argv, env=env)
        assert r.returncode == 1 and r.stderr.startswith("otelcockpit: read-only: refused"), (argv, r.stderr)
        assert r.stderr.count("\n") == 1
    r = run("pipeline", "enable", "app_logs", env=env)  # no terminal to ask in
    assert r.returncode == 1 and "--yes" in r.stderr
