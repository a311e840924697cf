"""The CLI on Fleet Management, in subprocesses: the fake as `otelcockpit fake-fleet-management`,
the generic fleet commands with `--source fleet-management --url URL`, credentials in env vars."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

DEFAULT_READ, DEFAULT_WRITE, DEFAULT_ID = "fm-read-token", "fm-write-token", "1000001"


@pytest.fixture(scope="module")
def fake_process(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """`otelcockpit fake-fleet-management --listen 127.0.0.1:0` in a subprocess; yields (url, first lines)."""
    tmp = tmp_path_factory.mktemp("fmcli")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_MANAGEMENT_", "OTELCOCKPIT_"))}
    env["OTELCOCKPIT_CONFIG"] = str(tmp / "none.yaml")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otelcockpit",
            "fake-fleet-management",
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "7",
            "--simulate-collectors",
            "3",
            "--poll-interval",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "simulated collectors" in line:
            break
    banner = "\n".join(lines)
    assert lines and lines[0].startswith("Fleet Management fake listening on http://127.0.0.1:"), banner
    url = lines[0].rsplit(" ", 1)[1]
    try:
        yield url, banner
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def env_for(h, tmp_path, token: str | None = DEFAULT_READ) -> dict[str, str]:
    env = h.cli_env(tmp_path, token=token)
    env["FLEET_MANAGEMENT_INSTANCE_ID"] = DEFAULT_ID
    return env


def fm(url: str, *args: str) -> list[str]:
    return [*args, "--source", "fleet-management", "--url", url]


def test_banner_names_url_and_credentials(fake_process):
    url, banner = fake_process
    assert f"{DEFAULT_ID}:{DEFAULT_READ}" in banner and f"{DEFAULT_ID}:{DEFAULT_WRITE}" in banner
    assert "fleet-management:read" in banner and "fleet-management:write" in banner
    assert f"--url {url}" in banner


def test_collectors_json_and_match(fake_process, h, tmp_path):
    url, _ = fake_process
    env = env_for(h, tmp_path)
    r = h.run_cli(fm(url, "collectors", "--json"), env)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["backend"] == "fleet-management" and data["stale"] is False
    cols = data["collectors"]
    assert len(cols) == 420
    assert {c["health"] for c in cols} <= {"unknown", "offline"}
    assert any(c["pipelines"] for c in cols)
    # What a collector runs: the v1 API does not say, and the cockpit says so instead of guessing.
    assert {c["config_state"]["state"] for c in cols} == {"unknown"}
    assert cols[0]["config_state"]["reason"] == (
        "Fleet Management's v1 API does not say what a collector runs: it returns neither the remote config "
        "status nor the effective config the collector reports with GetConfig"
    )
    r = h.run_cli(fm(url, "collectors", "--match", 'env="prod",role=~"gate.*"', "--json"), env)
    assert r.returncode == 0, r.stderr
    matched = json.loads(r.stdout)["collectors"]
    assert matched and all(
        c["attributes"]["env"] == "prod" and c["attributes"]["role"] == "gateway" for c in matched
    )
    assert len(matched) < len(cols)


def test_pipelines_pipeline_show_attributes_status(fake_process, h, tmp_path):
    url, _ = fake_process
    env = env_for(h, tmp_path)
    r = h.run_cli(fm(url, "pipelines", "--json"), env)
    assert r.returncode == 0, r.stderr
    pipelines = json.loads(r.stdout)["pipelines"]
    assert pipelines and all(p["id"].isdigit() for p in pipelines)
    name = max(pipelines, key=lambda p: p["collectors"])["name"]
    r = h.run_cli(fm(url, "pipeline", "show", name, "--revisions", "--json"), env)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["pipeline"]["name"] == name and shown["collectors"]
    assert shown["revisions"] and shown["revisions"][0]["operation"] == "insert"
    r = h.run_cli(fm(url, "attributes", "--json"), env)
    assert r.returncode == 0, r.stderr
    assert "env" in json.loads(r.stdout)["local_attributes"]
    r = h.run_cli(fm(url, "status", "--json"), env)
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["backend"] == "fleet-management" and status["pipelines"] == len(pipelines)
    r = h.run_cli(fm(url, "pipelines"), env)  # the table too
    assert r.returncode == 0 and name in r.stdout


def test_wrong_token_is_one_line_naming_the_variables(fake_process, h, tmp_path):
    url, _ = fake_process
    r = h.run_cli(fm(url, "collectors", "--json"), env_for(h, tmp_path, token="not-the-token"))
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "FLEET_MANAGEMENT_INSTANCE_ID" in lines[0] and "FLEET_MANAGEMENT_TOKEN" in lines[0]
    assert "fleet-management:read" in lines[0]


def test_missing_credentials_is_one_line(fake_process, h, tmp_path):
    url, _ = fake_process
    r = h.run_cli(fm(url, "pipelines"), env_for(h, tmp_path, token=None))
    assert r.returncode == 2  # a configuration error: nothing was asked of Fleet Management
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "FLEET_MANAGEMENT_TOKEN" in lines[0], r.stderr


def test_unreachable_url_is_one_line_naming_it(h, tmp_path):
    url = "http://127.0.0.1:9"
    r = h.run_cli(fm(url, "collectors"), env_for(h, tmp_path))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0], r.stderr


def test_fake_refuses_a_bad_listen_address_and_a_busy_port(fake_process, h, tmp_path):
    url, _ = fake_process
    r = h.run_cli(["fake-fleet-management", "--listen", "nonsense"], env_for(h, tmp_path))
    assert r.returncode == 2 and "HOST:PORT" in r.stderr
    busy = url.removeprefix("http://")
    r = h.run_cli(["fake-fleet-management", "--listen", busy], env_for(h, tmp_path), timeout=30)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and busy in lines[0], r.stderr


def test_fake_with_a_credentials_file(h, tmp_path):
    creds = tmp_path / "creds.yaml"
    creds.write_text("instance_id: '77'\nread_token: r1\nwrite_token: w1\n")
    env = env_for(h, tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otelcockpit",
            "fake-fleet-management",
            "--listen",
            "127.0.0.1:0",
            "--credentials",
            str(creds),
            "--fixtures",
            str(h.repo / "fixtures" / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = first.strip().rsplit(" ", 1)[1]
        env["FLEET_MANAGEMENT_INSTANCE_ID"], env["FLEET_MANAGEMENT_TOKEN"] = "77", "r1"
        r = h.run_cli(fm(url, "status", "--json"), env)
        assert r.returncode == 0, r.stderr
        env["FLEET_MANAGEMENT_TOKEN"] = DEFAULT_READ
        r = h.run_cli(fm(url, "status", "--json"), env)
        assert r.returncode == 1 and "FLEET_MANAGEMENT_TOKEN" in r.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    bad = tmp_path / "bad.yaml"
    bad.write_text("instance_id: x\nsecret: y\n")
    r = h.run_cli(["fake-fleet-management", "--credentials", str(bad)], env)
    assert r.returncode == 2 and "unknown key" in r.stderr


def test_a_context_names_its_own_variables(fake_process, h, tmp_path):
    url, _ = fake_process
    env = env_for(h, tmp_path, token=None)
    del env["FLEET_MANAGEMENT_INSTANCE_ID"]
    config = tmp_path / "config.yaml"
    config.write_text(
        "current_context: lab\n"
        "contexts:\n"
        "  lab:\n"
        "    backend: fleet-management\n"
        f"    url: {url}\n"
        "    username_env: LAB_FM_ID\n"
        "    password_env: LAB_FM_TOKEN\n"
    )
    env["OTELCOCKPIT_CONFIG"] = str(config)
    env["LAB_FM_ID"], env["LAB_FM_TOKEN"] = DEFAULT_ID, DEFAULT_READ
    r = h.run_cli(["pipelines", "--json"], env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["backend"] == "fleet-management"
    env["LAB_FM_TOKEN"] = "wrong"
    r = h.run_cli(["pipelines", "--json"], env)
    assert r.returncode == 1
    line = r.stderr.strip()
    assert "\n" not in line and "LAB_FM_ID" in line and "LAB_FM_TOKEN" in line


def test_a_hung_fleet_management_costs_one_timeout_and_says_how_long(h, tmp_path):
    """A Fleet Management that accepts connections and never answers: the CLI waits one timeout in
    all (not one for GetLimits and another for ListCollectors), and says how long it waited."""
    import socket
    import time

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        config = tmp_path / "config.yaml"
        config.write_text(
            "current_context: hung\ncontexts:\n  hung:\n    backend: fleet-management\n"
            f"    url: {url}\n    timeout: 2\n"
        )
        env = env_for(h, tmp_path)
        env["OTELCOCKPIT_CONFIG"] = str(config)
        started = time.monotonic()
        r = h.run_cli(["status"], env)
        took = time.monotonic() - started
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0], r.stderr
    assert "did not answer GetLimits" in lines[0] and "waited 2." in lines[0] and "limit is 2s" in lines[0]
    assert took < 2 * 2, f"the CLI waited {took:.1f}s for a 2 s timeout"
