"""Helpers: a real ``otelcockpit serve`` subprocess and ``simulate-agents`` subprocesses on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from waits import wait_until

WRITE_TOKEN = "write-token-for-tests-0001"
READ_TOKEN = "read-token-for-tests-0001"
AGENT_TOKEN = "agent-token-for-tests-0001"

_LINE = re.compile(
    r"OpAMP on http://127\.0\.0\.1:(\d+)/v1/opamp .*admin API on http://127\.0\.0\.1:(\d+)/api/v1"
)


def cli_env(tmp: Path, token: str | None = WRITE_TOKEN, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTELCOCKPIT_")}
    env["OTELCOCKPIT_CONFIG"] = str(tmp / "no-config.yaml")
    env["OTELCOCKPIT_DATA_DIR"] = str(tmp / "data")
    env["NO_PROXY"] = "*"
    if token is not None:
        env["OTELCOCKPIT_OPAMP_TOKEN"] = token
    env.update(extra)
    return env


def run_cli(tmp: Path, *args: str, token: str | None = WRITE_TOKEN, timeout: float = 30, **extra: str):
    return subprocess.run(
        [sys.executable, "-m", "otelcockpit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(tmp, token, **extra),
    )


@dataclass
class Server:
    proc: subprocess.Popen[str]
    opamp_port: int
    admin_port: int
    tmp: Path
    sims: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def opamp_url(self) -> str:
        return f"http://127.0.0.1:{self.opamp_port}/v1/opamp"

    def simulate(self, *args: str, duration: float = 45) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "otelcockpit",
                "simulate-agents",
                "--server",
                self.opamp_url,
                "--duration",
                str(duration),
                "--quiet",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(self.tmp, None),
        )
        self.sims.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.sims:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.sims:
            try:
                p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


def start_server(tmp: Path, *extra: str, heartbeat: int = 1) -> Server:
    tmp.mkdir(parents=True, exist_ok=True)
    tokens = tmp / "tokens.yaml"
    tokens.write_text(
        "tokens:\n"
        f"  - {{token: {WRITE_TOKEN}, role: write, name: tests-write}}\n"
        f"  - {{token: {READ_TOKEN}, role: read, name: tests-read}}\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otelcockpit",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--db",
            str(tmp / "opamp.db"),
            "--tokens",
            str(tokens),
            "--heartbeat-seconds",
            str(heartbeat),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(tmp, None),
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"otelcockpit serve exited: {proc.stderr.read() if proc.stderr else ''}")
            continue
        m = _LINE.search(line)
        if m:
            return Server(proc, int(m.group(1)), int(m.group(2)), tmp)
    proc.kill()
    raise RuntimeError("otelcockpit serve did not report its ports in 20 s")


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.2):
    return wait_until(predicate, "the condition", timeout=timeout, interval=interval)
