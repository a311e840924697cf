"""Helpers for the OpAMP server tests: a real ``otelcockpit serve`` subprocess on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waits import wait_until

LINE_RE = re.compile(
    r"OpAMP on https?://127\.0\.0\.1:(\d+)/v1/opamp .* admin API on http://127\.0\.0\.1:(\d+)/api/v1"
)
# The store every server a test starts uses: None for SQLite (its --db file), else a PostgreSQL URL.
# Set per test by the ``serve_store`` fixture, so the whole serve suite runs on both stores.
STORE: str | None = None
WRITE_TOKEN = "write-token-0123456789"
READ_TOKEN = "read-token-0123456789"


@dataclass
class ServeProcess:
    proc: subprocess.Popen[str]
    opamp_port: int
    admin_port: int
    db: Path
    tokens: Path
    args: list[str] = field(default_factory=list)

    @property
    def opamp_url(self) -> str:
        return f"http://127.0.0.1:{self.opamp_port}/v1/opamp"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.opamp_port}/v1/opamp"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}/api/v1"

    def api(
        self, method: str, path: str, body: Any = None, token: str | None = WRITE_TOKEN
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.admin_url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)


def write_tokens(path: Path) -> None:
    path.write_text(
        "tokens:\n"
        f"  - {{token: {WRITE_TOKEN}, role: write, name: tester}}\n"
        f"  - {{token: {READ_TOKEN}, role: read, name: viewer}}\n",
        encoding="utf-8",
    )


def start_serve(tmp: Path, *extra: str, db: Path | None = None, heartbeat: int = 30) -> ServeProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    db = db or tmp / "opamp.db"
    tokens = tmp / "tokens.yaml"
    if not tokens.exists():
        write_tokens(tokens)
    args = [
        sys.executable,
        "-m",
        "otelcockpit",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--db",
        str(db),
        "--tokens",
        str(tokens),
        "--heartbeat-seconds",
        str(heartbeat),
        *(["--store", STORE] if STORE else []),
        *extra,
    ]
    env = {**os.environ, "OTELCOCKPIT_DATA_DIR": str(tmp / "data")}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 20
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"serve exited early: {err}")
        m = LINE_RE.search(line)
        if m:
            sp = ServeProcess(proc, int(m.group(1)), int(m.group(2)), db, tokens, args)
            status, _ = sp.api("GET", "/health")
            assert status == 200
            return sp
    proc.kill()
    raise AssertionError("serve did not start in time")


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    return wait_until(predicate, "the condition", timeout=timeout, interval=interval)
