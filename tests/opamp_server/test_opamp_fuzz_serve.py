"""The whole server under hostile traffic (a seeded mutator over HTTP and WebSocket, from
``bench/fuzz_serve.py``; ``make fuzz`` runs the long campaign): no 5xx, no traceback, witnesses
unaffected, and after a kill -9 every witness is still there as it was acknowledged."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import fuzz_serve  # noqa: E402


def test_mutated_traffic_over_both_transports_hurts_nobody(tmp_path: Path) -> None:
    server = fuzz_serve.start_server(tmp_path / "fz")
    try:
        report = asyncio.run(fuzz_serve.run_campaign(server, 3000, seed=7, http_workers=4, ws_workers=4))
        figures = fuzz_serve.summary(server, report, 1.0)
        assert figures["server_alive"]
        assert figures["http_5xx"] == 0, figures["http_status"]
        assert figures["tracebacks"] == 0, server.log.read_text()[-3000:]
        assert figures["witness_failures"] == [] and figures["witness_checks"] >= 2, figures
        assert figures["http_status"].get("200", 0) > 0 and figures["ws_replies"] > 0
        assert figures["error_log"] == {"logged": 0, "dropped": 0}
        agents_before = figures["agents"]
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        again = fuzz_serve.start_server(tmp_path / "fz")  # the same database
        auth = {"Authorization": f"Bearer {fuzz_serve.WRITE_TOKEN}"}
        try:
            health = httpx.get(f"{again.admin}/health", headers=auth, timeout=30).json()
            # every acknowledged agent survived (heartbeat-only updates may lag a second behind)
            assert health["agents"] == agents_before
            body = httpx.get(
                f"{again.admin}/agents",
                params={"match": 'service.name=~"witness-.*"'},
                headers=auth,
                timeout=30,
            ).json()
            assert sorted(a["identifying_attributes"]["service.name"] for a in body["agents"]) == [
                "witness-http",
                "witness-ws",
            ]
        finally:
            again.proc.kill()
            again.proc.wait(10)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
