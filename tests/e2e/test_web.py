"""`otelcockpit web`: a real textual-serve server; a browser's websocket gets the cockpit, read-only."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import websockets

from otelcockpit.commands.web import app_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def args(**kw) -> argparse.Namespace:
    base = dict(context=None, source=None, url=None, demo_collectors=None, demo_seed=None, theme=None,
                inventory=None, read_only=False, write=False)
    base.update(kw)
    return argparse.Namespace(**base)


def test_browser_sessions_are_read_only_unless_write():
    assert app_command(args()).endswith("--read-only")
    assert "--read-only" not in app_command(args(write=True))
    assert app_command(args(write=True, read_only=True)).endswith("--read-only")
    assert "--demo-collectors 500" in app_command(args(demo_collectors=500))
    # --app: the incident view or the walkthrough instead of the cockpit (after the global options)
    assert app_command(args(app="incident")).endswith("--read-only incident")
    assert app_command(args(app="walkthrough", source="demo")).endswith("--source demo --read-only walkthrough")
    assert app_command(args(app="cockpit")).endswith("--read-only")


@pytest.mark.parametrize(
    ("app", "expect"),
    [("cockpit", ("[1] Fleet", " RO ")), ("incident", ("Collectors with a problem", " RO "))],
)
def test_web_serves_the_app_over_a_websocket(tmp_path, app, expect):
    port = free_port()
    env = {**os.environ, "TEXTUAL_ANIMATIONS": "none"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otelcockpit", "web", "--port", str(port), "--app", app],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        start_new_session=True,  # the server and the cockpit it runs for the tab: one group to stop
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "web server did not start"
                time.sleep(0.2)
        assert page.status_code == 200 and "textual" in page.text.lower()

        async def screen_text() -> str:
            seen = []
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws?width=100&height=30") as ws:
                end = time.monotonic() + 25
                while time.monotonic() < end:
                    try:
                        msg = await asyncio.wait_for(ws.recv(), timeout=2)
                    except TimeoutError:
                        continue
                    seen.append(msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg)
                    text = "".join(seen)
                    if all(e in text for e in expect):
                        return text
            return "".join(seen)

        text = asyncio.run(screen_text())
        assert expect[0] in text, text[-2000:]
        assert expect[1] in text  # every browser tab runs with --read-only
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
