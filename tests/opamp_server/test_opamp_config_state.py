"""Each config state from real OpAMP messages: the third-party ``opentelemetry-opamp-client`` in subprocesses
against a real ``otelcockpit serve``, read the way a user reads it (``otelcockpit collectors --source opamp``).

One client per state: it applies its config (in sync), applies it but reports a locally changed effective
config (drifted), never applies anything and runs its own config (on fallback), starts from a config it
applied earlier and keeps it (on cached remote), or reports neither effective config nor status (unknown)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from opamp_server_support import WRITE_TOKEN, ServeProcess, wait_for
from test_opamp_pyclient import AGENT_SCRIPT

V1 = '{"sampling": 0.25}'
V2 = '{ "sampling" : 0.5 }'  # the client re-encodes it as {"sampling": 0.5}: the same in another form


class Client:
    def __init__(self, endpoint: str, service: str, *opts: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(AGENT_SCRIPT), endpoint, service, "0.5", *opts],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def stop(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=15)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.proc.kill()


def collectors(serve: ServeProcess) -> dict[str, dict[str, Any]]:
    env = {**os.environ, "OTELCOCKPIT_OPAMP_TOKEN": WRITE_TOKEN}
    url = serve.admin_url.removesuffix("/api/v1")
    r = subprocess.run(
        [sys.executable, "-m", "otelcockpit", "collectors", "--source", "opamp", "--url", url, "--json"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return {c["attributes"]["service.name"]: c for c in json.loads(r.stdout)["collectors"]}


def test_every_config_state_from_the_python_opamp_client(serve: ServeProcess) -> None:
    status, v1 = serve.api("POST", "/configs", {"name": "py-app", "files": {"app": {"body": V1, "content_type": "application/json"}}})
    assert status == 201, v1
    status, v2 = serve.api("POST", "/configs", {"name": "py-app", "files": {"app": {"body": V2, "content_type": "application/json"}}})
    assert status == 201, v2
    status, a = serve.api("POST", "/assignments", {"config": "py-app", "version": 2, "selector": 'service.name=~"py-.*"'})
    assert status == 201, a
    url = serve.opamp_url
    clients = [
        Client(url, "py-sync"),
        Client(url, "py-drift", "--mode", "drift"),
        Client(url, "py-fallback", "--mode", "ignore", "--effective", json.dumps({"app": {"sampling": 1.0, "debug": True}})),
        Client(url, "py-cached", "--mode", "ignore", "--cached", v1["hash"], "--effective", json.dumps({"app": {"sampling": 0.25}})),
        Client(url, "py-blind", "--mode", "ignore", "--no-reports"),
    ]
    try:
        expected = {
            "py-sync": ("in sync", "it runs py-app@v2 (its effective config says the same in another form)"),
            "py-drift": ("drifted", "it reports py-app@v2 APPLIED, but its effective config differs (local is added)"),
            "py-fallback": (
                "on fallback",
                "it runs its local bootstrap config: no remote config applied since it started; assigned py-app@v2",
            ),
            "py-cached": ("on cached remote", "it runs py-app@v1, a remote config it applied earlier; assigned py-app@v2"),
            "py-blind": ("unknown", "it reports neither its effective config nor a remote config status"),
        }

        def states() -> dict[str, tuple[str, str]] | None:
            got = {name: (c["config_state"]["state"], c["config_state"]["reason"]) for name, c in collectors(serve).items()}
            return got if got == expected else None

        try:
            wait_for(states, timeout=30, interval=0.5)
        except AssertionError:
            got = {name: (c["config_state"]["state"], c["config_state"]["reason"]) for name, c in collectors(serve).items()}
            assert got == expected  # show the difference
        # What each came up on, recorded by the server at its start.
        found = collectors(serve)
        assert found["py-fallback"]["came_up"]["state"] == "on fallback"
        assert found["py-cached"]["came_up"]["state"] == "on cached remote"
        assert found["py-sync"]["came_up"]["state"] == "on fallback"  # it had nothing before its first offer
    finally:
        for c in clients:
            c.stop()
