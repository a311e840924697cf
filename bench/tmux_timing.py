"""Time a real process in a real terminal (tmux) until some text is painted on the screen."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass

SOCKET = "otelcockpit-bench"


def have_tmux() -> bool:
    return shutil.which("tmux") is not None


@dataclass
class Painted:
    seconds: float  # from spawning the process to the needle on screen
    peak_rss_mb: float  # the process's VmHWM when the needle appeared


def _tmux(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True, check=check)


def _peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def time_until_painted(argv: list[str], needle: str, *, cwd: str, env: dict[str, str] | None = None,
                       width: int = 120, height: int = 40, timeout: float = 120.0) -> Painted:
    """Spawn ``argv`` as the pane's own process in a fresh tmux window; wait for ``needle``."""
    session = f"bench-{uuid.uuid4().hex[:8]}"
    # A keeper session holds the private tmux server up between measurements.
    if _tmux("has-session", "-t", "keeper").returncode != 0:
        _tmux("new-session", "-d", "-s", "keeper", "-x", "20", "-y", "5", "sleep 3600", check=True)
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    command = f"cd {shlex.quote(cwd)} && exec env {exports} {' '.join(shlex.quote(a) for a in argv)}"
    start = time.perf_counter()
    _tmux("new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), command, check=True)
    try:
        pid = int(_tmux("list-panes", "-t", session, "-F", "#{pane_pid}").stdout.split()[0])
        while time.perf_counter() - start < timeout:
            out = _tmux("capture-pane", "-p", "-t", session).stdout
            if needle in out:
                elapsed = time.perf_counter() - start
                return Painted(elapsed, _peak_rss_mb(pid))
            time.sleep(0.005)
        raise TimeoutError(f"{needle!r} not painted within {timeout}s")
    finally:
        _tmux("kill-session", "-t", session)


def stop_server() -> None:
    _tmux("kill-server")
