"""Heartbeats as the spec has them, against a real ``serve``: the server's interval is offered in
ConnectionSettings and a simulated opamp-go-like agent follows it; every agent is judged by its own
interval, so one that heartbeats every 0.5 s and vanishes without ``agent_disconnect`` is offline
about 1.5 s later (it used to be judged by the server's 30 s and stay online for 90 s)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from opamp_server_support import ServeProcess, start_serve, wait_for

from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.proto import opamp_pb2 as pb

pytestmark = pytest.mark.timeout(120)
PB = {"Content-Type": "application/x-protobuf"}


def agent(sp: ServeProcess, name: str) -> dict:
    status, body = sp.api("GET", f'/agents?match=service.name="{name}"')
    assert status == 200, body
    return body["agents"][0] if body["agents"] else {}


def test_the_offered_interval_is_followed_and_a_vanished_agent_is_offline_after_three(tmp_path: Path) -> None:
    sp = start_serve(tmp_path / "srv", heartbeat=1)
    sim = subprocess.Popen(
        [sys.executable, "-m", "otelcockpit", "simulate-agents", "--server", sp.opamp_url, "--count", "1",
         "--transport", "http", "--seed", "3", "--heartbeat", "30", "--quiet"],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        # started with a 30 s poll, it polls every second once offered: the server measures about 1 s
        uid = wait_for(lambda: (sp.api("GET", "/agents")[1]["agents"] or [{}])[0].get("instance_uid"), 20)
        got = wait_for(
            lambda: (lambda a: a if a["sequence_num"] >= 4 and 0.5 <= a["heartbeat_interval_seconds"] <= 1.6 else None)(
                sp.api("GET", f"/agents/{uid}")[1]
            ),
            20,
        )  # fmt: skip
        assert got["status"] == "online"
        sim.send_signal(signal.SIGKILL)  # gone without agent_disconnect
        sim.wait(10)
        gone = time.monotonic()
        wait_for(lambda: sp.api("GET", f"/agents/{uid}")[1]["status"] == "offline", 15, 0.1)
        took = time.monotonic() - gone
        assert took < 6.0, f"offline {took:.1f}s after its last poll (3 intervals of 1 s, plus the sweep)"
    finally:
        if sim.poll() is None:
            sim.kill()
        sp.stop()


def test_an_agent_heartbeating_every_half_second_is_judged_by_its_own_interval(tmp_path: Path) -> None:
    """This agent ignores the offer (as the Python OpAMP client does): its own pace counts."""
    sp = start_serve(tmp_path / "srv", heartbeat=30)
    uid = uuid.uuid4().bytes
    stop = threading.Event()
    replies: list[pb.ServerToAgent] = []

    def run() -> None:
        seq = 0
        while not stop.is_set():
            m = pb.AgentToServer(instance_uid=uid, sequence_num=seq, capabilities=core.REPORTS_STATUS | core.REPORTS_HEARTBEAT)
            if seq == 0:
                m.agent_description.identifying_attributes.add(key="service.name").value.string_value = "fast"
            r = httpx.post(sp.opamp_url, content=m.SerializeToString(), headers=PB, timeout=10)
            replies.append(pb.ServerToAgent.FromString(r.content))
            seq += 1
            stop.wait(0.5)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        got = wait_for(lambda: (lambda a: a if a and a["heartbeat_interval_seconds"] < 1.0 else None)(agent(sp, "fast")), 30)
        assert got["heartbeat_interval_seconds"] >= 0.4, got["heartbeat_interval_seconds"]
        # the server offered its own interval once, explicitly
        offers = [r for r in replies if r.HasField("connection_settings")]
        assert len(offers) == 1 and offers[0].connection_settings.opamp.heartbeat_interval_seconds == 30
        stop.set()
        t.join(5)
        gone = time.monotonic()
        wait_for(lambda: agent(sp, "fast")["status"] == "offline", 10, 0.05)
        took = time.monotonic() - gone
        # 3 of its own intervals (about 1.5 s) plus the sweep's period; it was 90 s before
        assert took < 4.5, f"offline {took:.1f}s after its last heartbeat"
    finally:
        stop.set()
        sp.stop()


def test_a_supervisor_that_accepts_connection_settings_is_never_offered_them(tmp_path: Path) -> None:
    """The collector's OpAMP supervisor treats any OpAMP connection settings as an order to reconnect
    with them (endpoint, headers, TLS replaced); a heartbeat change must not cause that."""
    sp = start_serve(tmp_path / "srv", heartbeat=5)
    try:
        caps = core.REPORTS_STATUS | core.REPORTS_HEARTBEAT | core.ACCEPTS_OPAMP_CONNECTION_SETTINGS
        uid = uuid.uuid4().bytes
        for seq in range(3):
            m = pb.AgentToServer(instance_uid=uid, sequence_num=seq, capabilities=caps)
            if seq == 0:
                m.agent_description.identifying_attributes.add(key="service.name").value.string_value = "sup"
            r = pb.ServerToAgent.FromString(httpx.post(sp.opamp_url, content=m.SerializeToString(), headers=PB).content)
            assert not r.HasField("connection_settings")
    finally:
        sp.stop()


def test_no_heartbeat_offer_flag(tmp_path: Path) -> None:
    sp = start_serve(tmp_path / "srv", "--no-heartbeat-offer", heartbeat=5)
    try:
        m = pb.AgentToServer(instance_uid=uuid.uuid4().bytes, capabilities=core.REPORTS_STATUS | core.REPORTS_HEARTBEAT)
        m.agent_description.identifying_attributes.add(key="service.name").value.string_value = "quiet"
        r = pb.ServerToAgent.FromString(httpx.post(sp.opamp_url, content=m.SerializeToString(), headers=PB).content)
        assert not r.HasField("connection_settings")
    finally:
        sp.stop()
