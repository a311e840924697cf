"""The headless CLI, run as a user runs it: ``python -m otelcockpit ...`` in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
COLLECTOR_KEYS = [
    "id",
    "name",
    "type",
    "version",
    "attributes",
    "local_attributes",
    "remote_attributes",
    "health",
    "last_error",
    "last_seen",
    "remote_config",
    "pipelines",
]
# Beyond issue 2's shape; present on every row.
COLLECTOR_EXTRA_KEYS = {"enabled", "health_reason", "config_state"}
HEALTHS = ["unhealthy", "degraded", "offline", "unknown", "healthy"]
CONFIG_STATUSES = ["unset", "applying", "applied", "failed"]


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"exit {self.code}\nstdout: {self.out[:2000]}\nstderr: {self.err}"


def make_cli(tmp_path: Path):  # noqa: ANN201
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTELCOCKPIT_") and k != "NO_COLOR"}
    env["OTELCOCKPIT_CONFIG"] = str(tmp_path / "config" / "config.yaml")
    env["OTELCOCKPIT_DATA_DIR"] = str(tmp_path / "data")

    def run(*args: str, timeout: float = 30) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "otelcockpit", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc)

    run.config = tmp_path / "config" / "config.yaml"  # type: ignore[attr-defined]
    run.config.parent.mkdir()
    run.env = env  # type: ignore[attr-defined]
    return run


@pytest.fixture
def cli(tmp_path: Path):  # noqa: ANN201
    return make_cli(tmp_path)


def assert_one_line_error(r: Result, code: int, *fragments: str) -> str:
    assert r.code == code, r
    assert r.out == "", r
    assert "Traceback" not in r.err, r
    lines = r.err.splitlines()
    assert len(lines) == 1, r
    assert lines[0].startswith("otelcockpit: "), r
    for f in fragments:
        assert f in lines[0], (f, r)
    return lines[0]


def test_version(cli) -> None:  # noqa: ANN001
    from otelcockpit import __version__

    r = cli("--version")
    assert r.code == 0 and r.out.strip() == f"otelcockpit {__version__}", r
    assert r.err == ""


def test_main_returns_codes_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    from otelcockpit import __version__
    from otelcockpit.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"otelcockpit {__version__}"
    assert main(["status", "--bogus"]) == 2
    assert capsys.readouterr().err.startswith("otelcockpit: unrecognized arguments: --bogus")


def test_help_lists_the_commands(cli) -> None:  # noqa: ANN001
    r = cli("--help")
    assert r.code == 0, r
    for word in (
        "status",
        "collectors",
        "pipelines",
        "pipeline",
        "attributes",
        "contexts",
        "--context",
        "--source",
        "--url",
        "--read-only",
        "--demo-collectors",
        "--version",
    ):
        assert word in r.out, word


# --- JSON shapes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collectors_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_cli(tmp_path_factory.mktemp("collectors"))("collectors", "--json").json()


def test_collectors_json_shape(collectors_json: dict[str, Any]) -> None:
    data = collectors_json
    assert list(data) == ["backend", "fetched_at", "stale", "collectors"]
    assert data["backend"] == "demo" and data["stale"] is False
    assert RFC3339.match(data["fetched_at"]), data["fetched_at"]
    rows = data["collectors"]
    assert len(rows) >= 400
    for row in rows:
        keys = list(row)
        assert keys[: len(COLLECTOR_KEYS)] == COLLECTOR_KEYS, keys
        assert set(keys[len(COLLECTOR_KEYS) :]) == COLLECTOR_EXTRA_KEYS, keys
        assert list(row["remote_config"]) == ["status", "hash", "error", "assigned"]
        assert row["config_state"]["state"] in ("in sync", "drifted", "on fallback", "on cached remote", "unknown")
        assert row["remote_config"]["status"] in CONFIG_STATUSES
        assert row["type"] in ("alloy", "otel") and row["health"] in HEALTHS
        assert row["last_seen"] is None or RFC3339.match(row["last_seen"]), row["last_seen"]
        assert all(isinstance(p, str) for p in row["pipelines"])
        assert all(isinstance(v, str) for v in row["attributes"].values())
        assert row["attributes"]["collector.ID"] == row["id"]
        # merged = local overlaid by remote, except collector.* keys
        for k, v in row["remote_attributes"].items():
            if not k.startswith("collector."):
                assert row["attributes"][k] == v
        for k, v in row["local_attributes"].items():
            if k not in row["remote_attributes"] or k.startswith("collector."):
                assert row["attributes"].get(k) == v or k == "collector.ID"
    assert {r["type"] for r in rows} == {"alloy", "otel"}


def test_status_json_totals(cli, collectors_json: dict[str, Any]) -> None:  # noqa: ANN001
    data = cli("status", "--json").json()
    assert data["backend"] == "demo" and data["stale"] is False and RFC3339.match(data["fetched_at"])
    assert data["context"] == "demo" and data["read_only"] is False
    assert data["health"]["ok"] is True
    rows = collectors_json["collectors"]
    assert data["total"] == len(rows)
    assert list(data["by_health"]) == HEALTHS
    assert list(data["by_type"]) == ["alloy", "otel", "sdk"]  # sdk: OpAMP clients inside applications
    assert list(data["by_config_status"]) == CONFIG_STATUSES
    for key in ("by_health", "by_type", "by_config_status"):
        assert sum(data[key].values()) == data["total"], key
    # The same seed at the same tick: the totals agree with the collector list of another process.
    assert data["by_health"] == {h: Counter(r["health"] for r in rows)[h] for h in HEALTHS}
    assert data["by_type"] == {t: Counter(r["type"] for r in rows)[t] for t in ("alloy", "otel", "sdk")}
    assert data["by_config_status"] == {
        s: Counter(r["remote_config"]["status"] for r in rows)[s] for s in CONFIG_STATUSES
    }
    assert data["pipelines"] >= 1


def test_match_filters(cli, collectors_json: dict[str, Any]) -> None:  # noqa: ANN001
    expr = 'env="prod",region=~"eu-.*"'
    data = cli("collectors", "--json", "--match", expr).json()
    rows = data["collectors"]
    expected = [
        r["id"]
        for r in collectors_json["collectors"]
        if r["attributes"].get("env") == "prod" and r["attributes"].get("region", "").startswith("eu-")
    ]
    assert [r["id"] for r in rows] == expected and expected
    # Fully anchored: "prod" never matches "production"-like values; a missing attribute is "".
    assert cli("collectors", "--json", "--match", 'env=~"pro"').json()["collectors"] == []
    no_owner = cli("collectors", "--json", "--match", 'nonexistent=""').json()["collectors"]
    assert len(no_owner) == len(collectors_json["collectors"])
    text = cli("collectors", "--match", "{env=dev}")
    assert text.code == 0, text
    lines = text.out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "VERSION", "HEALTH", "ENV", "REGION", "CONFIG", "RUNS", "SEEN"]
    assert len(lines) > 1 and all(line.split()[4] == "dev" for line in lines[1:])


def test_collector_detail(cli, collectors_json: dict[str, Any]) -> None:  # noqa: ANN001
    first = collectors_json["collectors"][0]
    data = cli("collectors", "--id", first["id"], "--json").json()
    c = data["collector"]
    assert c["id"] == first["id"] and "effective_config" in c
    text = cli("collectors", "--id", first["id"])
    assert text.code == 0 and first["id"] in text.out and "collector.ID = " in text.out, text


def test_pipelines(cli, collectors_json: dict[str, Any]) -> None:  # noqa: ANN001
    data = cli("pipelines", "--json").json()
    assert list(data)[:3] == ["backend", "fetched_at", "stale"]
    counts = Counter(p for r in collectors_json["collectors"] for p in r["pipelines"])
    assert data["pipelines"]
    for p in data["pipelines"]:
        assert {
            "id",
            "name",
            "config_type",
            "enabled",
            "matchers",
            "source",
            "created_at",
            "updated_at",
            "collectors",
        } <= set(p)
        assert "contents" not in p
        assert p["collectors"] == counts.get(p["name"], 0)
        assert RFC3339.match(p["updated_at"]) and RFC3339.match(p["created_at"])
    text = cli("pipelines")
    assert text.code == 0 and text.out.split()[:6] == [
        "NAME",
        "TYPE",
        "ENABLED",
        "COLLECTORS",
        "MATCHERS",
        "UPDATED",
    ]
    for p in data["pipelines"]:
        assert p["name"] in text.out


def test_pipeline_show(cli) -> None:  # noqa: ANN001
    pipelines = cli("pipelines", "--json").json()["pipelines"]
    busiest = max(pipelines, key=lambda p: p["collectors"])
    data = cli("pipeline", "show", busiest["name"], "--json", "--revisions").json()
    assert data["pipeline"]["name"] == busiest["name"] and isinstance(data["pipeline"]["contents"], str)
    assert len(data["collectors"]) == busiest["collectors"]
    revs = data["revisions"]
    assert len(revs) >= 3
    for r in revs:
        assert set(r) == {"id", "pipeline", "pipeline_id", "operation", "created_at", "author", "snapshot"}
        assert r["operation"] in ("insert", "update", "delete") and RFC3339.match(r["created_at"])
    assert revs[-1]["snapshot"]["contents"] == data["pipeline"]["contents"]
    no_revs = cli("pipeline", "show", busiest["name"], "--json").json()
    assert "revisions" not in no_revs
    text = cli("pipeline", "show", busiest["name"], "--revisions")
    assert (
        text.code == 0 and text.out.startswith(f"pipeline {busiest['name']} ") and "revisions:" in text.out
    ), text


def test_attributes(cli) -> None:  # noqa: ANN001
    data = cli("attributes", "--json").json()
    env_values = {v["value"]: v["collectors"] for v in data["local_attributes"]["env"]}
    assert {"prod", "staging", "dev"} <= set(env_values)
    assert "owner" in data["remote_attributes"]
    text = cli("attributes")
    assert text.code == 0 and text.out.split()[:4] == ["KIND", "KEY", "VALUES", "TOP"], text


def test_contexts(cli) -> None:  # noqa: ANN001
    empty = cli("contexts", "--json").json()
    assert empty["exists"] is False and [c["name"] for c in empty["contexts"]] == ["demo"]
    assert "no config file yet" in cli("contexts").out
    cli.config.write_text(
        "current_context: lab\n"
        "contexts:\n"
        "  lab:\n    backend: demo\n    read_only: true\n    theme: cockpit-light\n"
        "  prod:\n    backend: fleet-management\n    url: https://fm.example\n    production: true\n"
    )
    data = cli("contexts", "--json").json()
    assert data["exists"] is True and data["config_file"] == str(cli.config)
    by_name = {c["name"]: c for c in data["contexts"]}
    assert set(by_name) == {"demo", "lab", "prod"}
    assert (
        by_name["lab"]["current"]
        and by_name["lab"]["read_only"]
        and by_name["lab"]["theme"] == "cockpit-light"
    )
    assert by_name["prod"]["credentials_env"] == ["FLEET_MANAGEMENT_INSTANCE_ID", "FLEET_MANAGEMENT_TOKEN"]
    assert by_name["prod"]["production"] and not by_name["prod"]["current"]
    text = cli("contexts")
    assert text.code == 0 and "*lab" in text.out, text
    status = cli("status", "--json").json()
    assert status["context"] == "lab" and status["read_only"] is True


# --- global options anywhere ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--demo-collectors", "25", "--demo-seed", "3", "status", "--json"],
        ["status", "--json", "--demo-collectors", "25", "--demo-seed", "3"],
        ["status", "--demo-seed", "3", "--json", "--demo-collectors=25", "--read-only"],
        [
            "--read-only",
            "--source",
            "demo",
            "status",
            "--json",
            "--demo-collectors",
            "25",
            "--demo-seed",
            "3",
        ],
    ],
)
def test_global_options_before_or_after_the_subcommand(cli, args: list[str]) -> None:  # noqa: ANN001
    data = cli(*args).json()
    assert data["total"] == 25
    assert data["health"]["message"].endswith("seed 3")
    assert data["read_only"] is ("--read-only" in args)


def test_global_options_after_a_nested_subcommand(cli) -> None:  # noqa: ANN001
    name = cli("pipelines", "--json").json()["pipelines"][0]["name"]
    data = cli("pipeline", "show", name, "--json", "--demo-collectors", "40", "--context", "demo").json()
    assert len(data["collectors"]) <= 40
    assert len(cli("collectors", "--json", "--demo-collectors", "40").json()["collectors"]) == 40


def test_same_seed_same_output_across_processes(cli) -> None:  # noqa: ANN001
    a = cli("collectors", "--json", "--demo-collectors", "300", "--demo-seed", "11").json()
    b = cli("collectors", "--json", "--demo-collectors", "300", "--demo-seed", "11").json()
    strip = lambda d: [{k: v for k, v in r.items() if k != "last_seen"} for r in d["collectors"]]  # noqa: E731
    assert strip(a) == strip(b)  # last_seen is relative to the wall clock the process starts at


# --- errors: one line, no traceback, the right exit code -------------------------------------------


def test_unknown_flag(cli) -> None:  # noqa: ANN001
    line = assert_one_line_error(cli("status", "--bogus"), 2, "--bogus")
    assert "--help" in line
    assert_one_line_error(cli("--bogus"), 2, "--bogus")
    assert_one_line_error(cli("frobnicate"), 2, "frobnicate")


def test_bad_option_values(cli) -> None:  # noqa: ANN001
    assert_one_line_error(cli("status", "--demo-collectors", "-3"), 2, "--demo-collectors")
    assert_one_line_error(cli("status", "--demo-collectors", "many"), 2, "many")
    assert_one_line_error(cli("status", "--source", "kafka"), 2, "kafka")
    assert_one_line_error(cli("pipeline"), 2, "ACTION")
    assert_one_line_error(cli("pipeline", "show"), 2, "name")


@pytest.mark.parametrize(
    ("expr", "column"),
    [
        ('env=~"("', 6),
        ('env="prod",region', 18),
        ('env="prod" region="eu"', 12),
        ("env='prod'", 5),
        ('{env="prod"', 12),
    ],
)
def test_bad_matcher(cli, expr: str, column: int) -> None:  # noqa: ANN001
    assert_one_line_error(cli("collectors", "--match", expr), 2, "bad matcher", f"at column {column}:")


def test_broken_yaml_config(cli) -> None:  # noqa: ANN001
    cli.config.write_text("contexts:\n  lab:\n    backend: demo\n   oops: [\n")
    line = assert_one_line_error(cli("status"), 2, f"{cli.config}:4:")
    assert line.startswith(f"otelcockpit: {cli.config}:4: ")
    assert_one_line_error(cli("contexts", "--json"), 2, f"{cli.config}:4:")


def test_secret_in_config(cli) -> None:  # noqa: ANN001
    cli.config.write_text(
        "contexts:\n  prod:\n    backend: fleet-management\n    url: https://x\n    token: glc_abc\n"
    )
    line = assert_one_line_error(cli("status"), 2, "token_env")
    assert "glc_abc" not in line


def test_unknown_context(cli) -> None:  # noqa: ANN001
    cli.config.write_text("contexts:\n  lab:\n    backend: demo\n")
    assert_one_line_error(cli("status", "--context", "nope"), 2, "unknown context 'nope'", "demo, lab")
    assert_one_line_error(cli("--context", "nope", "collectors", "--json"), 2, "unknown context 'nope'")


def test_source_needs_a_url(cli) -> None:  # noqa: ANN001
    assert_one_line_error(cli("status", "--source", "fleet-management"), 2, "needs a URL")


def test_unknown_pipeline_and_collector(cli) -> None:  # noqa: ANN001
    assert_one_line_error(cli("pipeline", "show", "nosuch"), 2, "no pipeline named 'nosuch'")
    assert_one_line_error(cli("pipeline", "show", "nosuch", "--json"), 2, "nosuch")
    assert_one_line_error(cli("collectors", "--id", "nosuch"), 2, "no collector with id 'nosuch'")


def test_a_closed_pipe_is_not_an_error(cli) -> None:  # noqa: ANN001
    proc = subprocess.Popen(
        [sys.executable, "-m", "otelcockpit", "collectors", "--demo-collectors", "20000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=30)
    proc.stderr.close()
    assert first.startswith(b"NAME")
    assert code == 0 and err == "", err


def test_an_unreachable_backend_is_a_runtime_failure(cli) -> None:  # noqa: ANN001
    import importlib.util
    import socket

    if importlib.util.find_spec("otelcockpit.backends.opamp") is None:
        pytest.skip("the opamp backend is not built yet")
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = cli("status", "--json", "--source", "opamp", "--url", f"http://127.0.0.1:{port}")
    assert_one_line_error(r, 1, f"127.0.0.1:{port}")


def test_a_regex_python_would_warn_about_prints_no_warning(cli) -> None:  # noqa: ANN001
    r = cli("collectors", "--json", "--match", 'env=~"[[:alpha:]]+"')
    assert r.code == 0 and r.err == "", r


def test_configuration_errors_are_exit_2(cli) -> None:  # noqa: ANN001
    """--url without a backend that takes one would show the demo fleet as if it were real; an
    unknown theme; an unknown theme in the config file: all one line, exit 2."""
    assert_one_line_error(cli("status", "--url", "http://127.0.0.1:1"), 2, "--url needs --source")
    assert_one_line_error(cli("--url", "http://127.0.0.1:1", "status"), 2, "--url needs --source")
    assert_one_line_error(cli("--theme", "nope", "status"), 2, "unknown theme 'nope'")
    assert_one_line_error(cli("status", "--theme", "nope"), 2, "unknown theme 'nope'")
    cli.config.write_text("theme: nope\n")
    assert_one_line_error(cli("status"), 2, "unknown theme 'nope'")
    cli.config.write_text("contexts:\n  lab:\n    backend: opamp\n    url: http://127.0.0.1:1\n")
    # A context that takes a URL: --url overrides it (no error about --source).
    r = cli("status", "--context", "lab", "--url", "http://127.0.0.1:2")
    assert r.code == 1 and "127.0.0.1:2" in r.err, r


def test_text_output_says_yes_and_no_and_is_never_cut_when_piped(cli) -> None:  # noqa: ANN001
    r = cli("collectors", "--id", "alloy-prod-euw1-node-001")
    assert r.code == 0, r
    assert "enabled       yes" in r.out and "True" not in r.out and "False" not in r.out
    phases = cli("phases")
    assert phases.code == 0, phases
    assert "…" not in phases.out  # stdout is a pipe here: every reason is whole
    long = [ln for ln in phases.out.splitlines() if ln.startswith("         - ")]
    assert any(len(ln) > 120 for ln in long)


def test_collectors_match_columns_like_the_fleet_view(cli) -> None:  # noqa: ANN001
    d = cli("collectors", "--match", 'health="unhealthy",env="prod"', "--json").json()
    assert d["collectors"] and all(c["health"] == "unhealthy" for c in d["collectors"])
    d = cli("collectors", "--match", 'config="failed"', "--json").json()
    assert [c["name"] for c in d["collectors"]] == ["alloy-prod-euw1-node-018", "alloy-prod-use1-node-041"]
