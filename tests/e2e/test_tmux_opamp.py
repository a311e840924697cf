"""The cockpit attached to a real `otelcockpit serve` with real simulated agents, in a real terminal."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from waits import wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def opamp_fleet(tmp_path):
    """serve + 6 simulated WebSocket agents (2 of them fail every config); yields (admin URL, token)."""
    data = tmp_path / "serve"
    env = {**os.environ, "OTELCOCKPIT_DATA_DIR": str(data)}
    agent_port, admin_port = free_port(), free_port()
    procs = []
    serve = subprocess.Popen(
        [sys.executable, "-m", "otelcockpit", "serve", "--listen", f"127.0.0.1:{agent_port}",
         "--admin-listen", f"127.0.0.1:{admin_port}", "--heartbeat-seconds", "5"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    procs.append(serve)
    try:
        tokens = data / "tokens.yaml"
        wait_until(tokens.exists, f"serve to write {tokens}", timeout=10)
        token = yaml.safe_load(tokens.read_text())["tokens"][0]["token"]
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "otelcockpit", "simulate-agents", "--server", f"http://127.0.0.1:{agent_port}/v1/opamp",
             "--count", "6", "--transport", "ws", "--fail-rate", "0.34", "--seed", "5", "--heartbeat", "5",
             "--duration", "120", "--quiet"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        yield f"http://127.0.0.1:{admin_port}", token
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_cockpit_on_an_opamp_server_with_simulated_agents(terminal, opamp_fleet, tmp_path):
    url, token = opamp_fleet
    t = terminal("--source", "opamp", "--url", url, env={"OTELCOCKPIT_OPAMP_TOKEN": token})
    try:
        t.wait_for("[1] Fleet 6", timeout=30)
    except AssertionError:
        print(subprocess.run([sys.executable, "-m", "otelcockpit", "status", "--source", "opamp", "--url", url],
                             env={**os.environ, "OTELCOCKPIT_OPAMP_TOKEN": token}, capture_output=True, text=True))
        raise
    t.keys("1")
    screen = t.wait_for("g Group")
    assert "opamp" in screen and screen.count(" otel ") >= 6
    # A config assigned from another terminal reaches the agents; the cockpit shows it live.
    config = tmp_path / "base.yaml"
    config.write_text("receivers:\n  otlp:\n    protocols: {grpc: {}}\nexporters:\n  debug: {}\n"
                      "service:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [debug]}\n")
    env = {**os.environ, "OTELCOCKPIT_OPAMP_TOKEN": token}
    for argv in (["opamp", "config", "create", "base", "--file", str(config)], ["opamp", "assign", "base", "--match", 'env=~".+"']):
        subprocess.run([sys.executable, "-m", "otelcockpit", *argv, "--url", url], env=env, cwd=ROOT, check=True,
                       capture_output=True)
    screen = t.wait_for("applied", timeout=30)
    t.wait_for("failed", timeout=30)  # the simulated agents that fail every config say so
    # The detail of an agent: its component health tree and effective config.
    t.keys("Enter")
    screen = t.wait_for("Component health", timeout=15)
    assert "Collectors ›" in screen
