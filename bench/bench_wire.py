"""Issue 7: what goes over the wire to an SSH user's terminal.

The real program runs on a pseudo-terminal sized 80x24; every byte it writes is counted.
- idle with live refresh when nothing changes: the cockpit on the Fleet Management fake (no simulated
  collectors, so every poll returns the same fleet); target <= 2 KB/s;
- per refresh with about 1% of collectors changing: the demo backend, whose simulator changes health
  and check-in times of roughly 1% of the fleet per 2-second refresh; bytes per refresh.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count_bytes(argv: list[str], env: dict[str, str], *, warmup: float, measure: float) -> tuple[int, int]:
    """Run argv on an 80x24 pty; return (bytes during warm-up, bytes during the measurement)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    full_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    full_env.update(env, TERM="xterm-256color")
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=full_env, cwd=ROOT, start_new_session=True)
    os.close(slave)
    counts = [0, 0]
    start = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - start
            if elapsed > warmup + measure:
                break
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                counts[0 if elapsed < warmup else 1] += len(data)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.close(master)
    return counts[0], counts[1]


def test_bytes_on_the_wire(record, tmp_path):
    env = {"OTELCOCKPIT_CONFIG": str(tmp_path / "none.yaml"), "OTELCOCKPIT_DATA_DIR": str(tmp_path / "data"),
           "TEXTUAL_ANIMATIONS": "none"}
    port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "otelcockpit", "fake-fleet-management", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
    )
    try:
        time.sleep(3)
        fm_env = {**env, "FLEET_MANAGEMENT_INSTANCE_ID": "1000001", "FLEET_MANAGEMENT_TOKEN": "fm-read-token"}
        measure = 30.0
        warm_fm, idle = count_bytes(
            [sys.executable, "-m", "otelcockpit", "--source", "fleet-management", "--url", f"http://127.0.0.1:{port}"],
            fm_env, warmup=8.0, measure=measure,
        )
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    warm_demo, demo = count_bytes([sys.executable, "-m", "otelcockpit"], env, warmup=8.0, measure=measure)
    refreshes = measure / 2.0  # the default refresh interval
    record(
        terminal="80x24 pseudo-terminal, TERM=xterm-256color",
        first_paint_bytes_fm=warm_fm,
        idle_unchanged_bytes_per_s=round(idle / measure, 1),
        demo_first_paint_bytes=warm_demo,
        demo_bytes_per_s=round(demo / measure, 1),
        demo_bytes_per_refresh=round(demo / refreshes, 1),
        targets="idle with live refresh, nothing changing: <= 2048 bytes/s at 80x24",
    )
    assert idle / measure <= 2048
