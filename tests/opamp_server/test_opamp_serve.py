"""``otelcockpit serve`` as a user runs it: kill -9 and restart, signals, bad flags, busy ports."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
from opamp_server_support import start_serve

from otelcockpit.opamp_server.proto import opamp_pb2 as pb

PB = {"Content-Type": "application/x-protobuf"}


def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    sp = start_serve(tmp_path / "k9")
    acked_configs: list[int] = []
    acked_agents: dict[bytes, int] = {}  # uid -> last acknowledged APPLIED status seq
    stop = threading.Event()

    def configs() -> None:
        client = httpx.Client(timeout=5)
        while not stop.is_set():
            try:
                r = client.post(
                    sp.admin_url + "/configs",
                    json={
                        "name": "k9",
                        "files": {"": {"body": f"v: {len(acked_configs)}", "content_type": "text/yaml"}},
                    },
                    headers={"Authorization": "Bearer write-token-0123456789"},
                )
            except httpx.HTTPError:
                return
            if r.status_code == 201:
                acked_configs.append(r.json()["version"])

    def agents() -> None:
        client = httpx.Client(timeout=5)
        while not stop.is_set():
            uid = uuid.uuid4().bytes
            m = pb.AgentToServer(instance_uid=uid, capabilities=0x1001)
            m.agent_description.identifying_attributes.add(key="service.name").value.string_value = "k9-agent"
            m.remote_config_status.status = pb.RemoteConfigStatuses_FAILED
            m.remote_config_status.last_remote_config_hash = uid * 2
            m.remote_config_status.error_message = "broken"
            try:
                r = client.post(sp.opamp_url, content=m.SerializeToString(), headers=PB)
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                acked_agents[uid] = 1

    threads = [threading.Thread(target=configs), threading.Thread(target=agents)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    sp.proc.send_signal(signal.SIGKILL)
    sp.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked_configs) > 5 and len(acked_agents) > 5, (len(acked_configs), len(acked_agents))

    again = start_serve(tmp_path / "k9", db=sp.db)
    try:
        status, body = again.api("GET", "/configs/k9")
        assert status == 200
        stored = {v["version"] for v in body["versions"]}
        assert set(acked_configs) <= stored
        assert sorted(stored) == list(range(1, len(stored) + 1))  # append-only, no holes
        status, body = again.api("GET", '/agents?match=service.name="k9-agent"')
        by_uid = {a["instance_uid"]: a for a in body["agents"]}
        for uid in acked_agents:
            a = by_uid[str(uuid.UUID(bytes=uid))]
            assert a["remote_config_status"] == {
                "status": "FAILED",
                "last_hash": (uid * 2).hex(),
                "error": "broken",
            }
            assert a["failed_hashes"] == [(uid * 2).hex()]
        status, audit = again.api("GET", "/audit?limit=10000")
        assert sum(1 for e in audit["entries"] if e["action"] == "config.create") >= len(acked_configs)
    finally:
        again.stop()


def test_sigterm_and_sigint_shut_down_cleanly(tmp_path: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        sp = start_serve(tmp_path / f"sig{sig}")
        rc = sp.stop(sig)
        assert rc == 0
        assert "Traceback" not in (sp.proc.stderr.read() if sp.proc.stderr else "")


def run_serve(*args: str, env_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OTELCOCKPIT_DATA_DIR": str(env_dir)}
    return subprocess.run(
        [sys.executable, "-m", "otelcockpit", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_bad_flags_and_files_exit_2_with_one_line(tmp_path: Path) -> None:
    bad_tokens = tmp_path / "bad.yaml"
    bad_tokens.write_text("tokens: [{token: short, role: admin}]\n", encoding="utf-8")
    cases = [
        ["--listen", "nonsense"],
        ["--heartbeat-seconds", "0"],
        ["--tls-cert", str(tmp_path / "c.pem")],
        ["--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem")],
        ["--agent-tokens", str(tmp_path / "missing.yaml")],
        ["--tokens", str(bad_tokens)],
    ]
    for extra in cases:
        r = run_serve(
            "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *extra, env_dir=tmp_path / "d"
        )
        assert r.returncode == 2, (extra, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("otelcockpit: "), (extra, r.stderr)


def test_port_in_use_exits_1(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        r = run_serve(
            "--listen", f"127.0.0.1:{port}", "--admin-listen", "127.0.0.1:0", env_dir=tmp_path / "d"
        )
        assert r.returncode == 1
        assert r.stderr.strip() == f"otelcockpit: --listen 127.0.0.1:{port}: address already in use"
        r = run_serve(
            "--listen", "127.0.0.1:0", "--admin-listen", f"127.0.0.1:{port}", env_dir=tmp_path / "d"
        )
        assert r.returncode == 1 and "--admin-listen" in r.stderr
    finally:
        busy.close()


def test_first_start_creates_a_write_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "OTELCOCKPIT_DATA_DIR": str(data)}
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
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        tokens = data / "tokens.yaml"
        assert str(tokens) in first and "write token" in first
        assert (tokens.stat().st_mode & 0o777) == 0o600
        assert (data / "opamp.db").exists()
        import yaml

        token = yaml.safe_load(tokens.read_text())["tokens"][0]
        assert token["role"] == "write" and len(token["token"]) >= 32
        port = int(second.split("admin API on http://127.0.0.1:")[1].split("/")[0])
        r = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/health", headers={"Authorization": f"Bearer {token['token']}"}
        )
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_serve_over_tls(tmp_path: Path) -> None:
    import shutil

    if shutil.which("openssl") is None:  # pragma: no cover - openssl ships with the image
        return
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    sp = start_serve(tmp_path / "tls", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        m = pb.AgentToServer(instance_uid=uuid.uuid4().bytes, capabilities=1)
        r = httpx.post(
            sp.opamp_url.replace("http://", "https://"),
            content=m.SerializeToString(),
            headers=PB,
            verify=ssl.create_default_context(cafile=str(cert)),
        )
        assert r.status_code == 200 and pb.ServerToAgent.FromString(r.content).capabilities
    finally:
        sp.stop()


def test_silent_agent_goes_offline_after_three_intervals(tmp_path: Path) -> None:
    sp = start_serve(tmp_path / "hb", heartbeat=1)
    try:
        uid = uuid.uuid4().bytes
        m = pb.AgentToServer(instance_uid=uid, capabilities=0x2001)  # ReportsStatus | ReportsHeartbeat
        m.agent_description.identifying_attributes.add(key="service.name").value.string_value = "quiet"
        sent = time.monotonic()
        assert httpx.post(sp.opamp_url, content=m.SerializeToString(), headers=PB).status_code == 200
        path = f"/agents/{uuid.UUID(bytes=uid)}"
        assert sp.api("GET", path)[1]["status"] == "online"
        assert sp.api("GET", path)[1]["heartbeat_interval_seconds"] == 1
        deadline = time.monotonic() + 10
        while sp.api("GET", path)[1]["status"] == "online":
            assert time.monotonic() < deadline, "never went offline"
            time.sleep(0.1)
        assert time.monotonic() - sent >= 3.0  # not before 3 intervals
        # its next poll brings it back
        m.sequence_num = 1
        assert httpx.post(sp.opamp_url, content=m.SerializeToString(), headers=PB).status_code == 200
        assert sp.api("GET", path)[1]["status"] == "online"
    finally:
        sp.stop()
