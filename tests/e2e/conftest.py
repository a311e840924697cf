"""A real terminal: tmux runs the real program; tests send keys and read the screen."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Terminal:
    def __init__(self, socket: str, session: str) -> None:
        self.socket = socket
        self.session = session

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=False
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", self.session, key)
            time.sleep(0.15)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.session, "-l", text)
        time.sleep(0.2)

    def wait_for(self, text: str, *more: str, timeout: float = 20.0) -> str:
        """The screen once ``text`` and every one of ``more`` are on it (a loaded machine paints a
        screen in several passes: wait for all that the test reads, not for the first of it)."""
        wanted = (text, *more)
        end = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < end:
            screen = self.screen()
            if all(w in screen for w in wanted):
                return screen
            time.sleep(0.1)
        missing = [w for w in wanted if w not in screen]
        raise AssertionError(f"{missing!r} never appeared; the screen was:\n{screen}")

    def open_filter(self, timeout: float = 20.0) -> None:
        """`/`, then wait for the prompt line (a lone "/") before anything is typed into it: keys
        sent before the prompt has focus would go to the table."""
        self.keys("/")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(line.strip() == "/" for line in self.screen().splitlines()):
                return
            time.sleep(0.1)
        raise AssertionError(f"the filter prompt never opened; the screen was:\n{self.screen()}")

    def wait_gone(self, text: str, timeout: float = 10.0) -> str:
        end = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < end:
            screen = self.screen()
            if text not in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never went away; the screen was:\n{screen}")

    def alive(self) -> bool:
        return self.session in self.tmux("list-sessions", "-F", "#{session_name}")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed: the real-terminal tests need it (apt-get install tmux)")
    socket = f"otc-test-{uuid.uuid4().hex[:8]}"
    sessions: list[Terminal] = []

    def start(*argv: str, width: int = 80, height: int = 24, env: dict[str, str] | None = None) -> Terminal:
        session = f"s{len(sessions)}"
        environment = {
            "OTELCOCKPIT_CONFIG": os.environ["OTELCOCKPIT_CONFIG"],
            "OTELCOCKPIT_DATA_DIR": os.environ["OTELCOCKPIT_DATA_DIR"],
            "TEXTUAL_ANIMATIONS": "none",
            "TERM": "xterm-256color",
            **(env or {}),
        }
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in environment.items())
        # pytest's environment carries COLUMNS/LINES (set by a plugin): a real terminal must not.
        command = f"cd {shlex.quote(str(ROOT))} && exec env -u COLUMNS -u LINES {exports} {shlex.quote(sys.executable)} -m otelcockpit " + " ".join(
            shlex.quote(a) for a in argv
        )
        subprocess.run(
            ["tmux", "-L", socket, "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), command],
            check=True,
        )
        term = Terminal(socket, session)
        sessions.append(term)
        return term

    yield start
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, check=False)
