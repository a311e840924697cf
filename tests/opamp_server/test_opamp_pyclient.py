"""The real ``opentelemetry-opamp-client`` (PyPI) in a subprocess against a running ``otelcockpit serve``."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from opamp_server_support import ServeProcess, wait_for

AGENT_SCRIPT = Path(__file__).with_name("pyclient_agent.py")


class AgentProcess:
    def __init__(self, endpoint: str, service: str, interval: float = 1.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(AGENT_SCRIPT), endpoint, service, str(interval)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                pass

    def next_event(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        while True:
            ev = self.events.get(timeout=timeout)
            if ev["event"] == name:
                return ev

    def stop(self) -> int:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _agent_by_service(serve: ServeProcess, service: str) -> dict[str, Any] | None:
    status, body = serve.api("GET", f'/agents?match=service.name="{service}"')
    assert status == 200
    return body["agents"][0] if body["agents"] else None


def test_python_client_full_lifecycle(serve: ServeProcess) -> None:
    agent = AgentProcess(serve.opamp_url, "py-lifecycle")
    try:
        # 1. it appears with its attributes
        found = wait_for(lambda: _agent_by_service(serve, "py-lifecycle"))
        assert found["identifying_attributes"] == {"service.name": "py-lifecycle", "service.version": "1.2.3"}
        assert found["non_identifying_attributes"]["host.name"] == "pyhost"
        assert found["transport"] == "http"
        assert found["status"] == "online"
        assert found["type"] == "sdk"  # an OpAMP client inside an application, not a collector
        assert "AcceptsRemoteConfig" in found["capabilities_decoded"]
        uid = found["instance_uid"]

        # 2. a JSON remote config assigned through the admin API reaches it
        body = {
            "name": "py-app",
            "files": {"app": {"body": '{"sampling": 0.25}', "content_type": "application/json"}},
        }
        status, cv = serve.api("POST", "/configs", body)
        assert status == 201
        status, assignment = serve.api(
            "POST",
            "/assignments",
            {"config": "py-app", "version": None, "selector": 'service.name="py-lifecycle"'},
        )
        assert status == 201 and assignment["agents"] == 1
        ev = agent.next_event("remote_config")
        assert ev["hash"] == cv["hash"]
        assert ev["configs"] == {"app": {"sampling": 0.25}}

        # 3. it reports APPLIED with that hash
        def applied() -> dict[str, Any] | None:
            a = _agent_by_service(serve, "py-lifecycle")
            rcs = a and a["remote_config_status"]
            return a if rcs and rcs["status"] == "APPLIED" and rcs["last_hash"] == cv["hash"] else None

        a = wait_for(applied)
        assert a["desired"] == {"config": "py-app", "version": 1, "hash": cv["hash"]}
        status, detail = serve.api("GET", f"/agents/{uid}")
        assert status == 200
        assert any(
            h["status"] == "APPLIED" and h["hash"] == cv["hash"] for h in detail["remote_config_history"]
        )
        # the offer was made once and not repeated to an agent that already applied it
        assert detail["offered_hash"] == cv["hash"]
    finally:
        rc = agent.stop()
    assert rc == 0
    # 4. it goes offline when it disconnects (agent_disconnect), at once
    gone = wait_for(
        lambda: (a := _agent_by_service(serve, "py-lifecycle")) and a["status"] == "offline" and a, 5
    )
    assert gone["connected"] is False
    assert serve.alive()
