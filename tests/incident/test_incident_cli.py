"""`otelcockpit incident` as a user runs it: a real subprocess, JSON on stdout, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-m", "otelcockpit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        check=False,
    )


def test_json_report() -> None:
    proc = run("incident", "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["read_only"] is True and d["hours"] == 24
    assert d["backend"]["name"] == "demo" and d["backend"]["ok"] is True
    assert d["collectors"]["total"] == 420
    assert d["collectors"]["unhealthy"] > 0 and d["collectors"]["offline"] > 0
    broken = {b["name"]: b for b in d["broken"]}
    node = broken["alloy-prod-euw1-node-033"]
    assert node["health"] == "unhealthy"
    assert node["changed_before"]["pipeline"] == "linux_host_metrics"
    # A healthy collector whose config failed to apply is in the report, with its problem.
    failed = broken["alloy-prod-euw1-node-018"]
    assert failed["health"] == "healthy" and failed["problem"] == "config failed"
    assert failed["config_status"] == "failed" and failed["changed_before"]["rollback_command"]
    assert d["collectors"]["config_failed"] >= 2
    assert node["changed_before"]["rollback_command"] == "otelcockpit rollback linux_host_metrics --to 1002"
    assert d["changes"][0]["pipeline"] == "linux_host_metrics"
    assert all(
        c["rollback_command"].startswith("otelcockpit rollback ")
        for c in d["changes"]
        if c["rollback_target"]
    )
    assert d["rollouts"] == []


def test_hours_flag() -> None:
    proc = run("incident", "--json", "--hours", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["changes"] == []


def test_incident_is_read_only_even_with_a_writable_context(config_file: Path) -> None:
    config_file.write_text(
        "current_context: lab\ncontexts:\n  lab:\n    backend: demo\n    read_only: false\n"
    )
    proc = run("incident", "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["read_only"] is True and d["context"] == "lab"
    assert d["changes"][0]["rollback_command"].startswith("otelcockpit --context lab rollback ")


def test_usage_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    for args, needle in (
        (("incident", "--hours", "0"), "--hours"),
        (("incident", "--hours", "soon"), "--hours"),
        (("incident", "--json", "--journal", str(tmp_path / "missing.sqlite3")), "--journal"),
        (("incident", "--json", "--context", "nope"), "unknown context"),
    ):
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("otelcockpit: ") and needle in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_json_mode_never_imports_textual() -> None:
    code = (
        "import contextlib, io, sys\n"
        "from otelcockpit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    rc = main(['incident', '--json'])\n"
        "print(rc, 'textual' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False
    )
    assert proc.stdout.split() == ["0", "False"], proc.stderr
