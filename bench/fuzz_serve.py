"""Hostile traffic against a real ``otelcockpit serve``: mutated AgentToServer messages over HTTP and
WebSocket, with well-behaved witness agents that must stay unaffected.

Used by the suite (``tests/opamp_server/test_opamp_fuzz_serve.py``, a few thousand messages) and by
``make fuzz`` (a campaign of 1,000,000 messages, figures for BENCHMARKS.md):

    .venv/bin/python bench/fuzz_serve.py --messages 1000000 --seed 1

The mutator is seeded and deterministic: message i of seed s is always the same bytes. Each message
starts from one of several valid shapes (full state, heartbeat, remote-config status, health tree,
effective config, available components, disconnect, instance-uid request), then gets field-level
mutations (uint64 fields at their extremes, uids of the wrong length, many or huge attributes, large
bodies) and byte-level ones (flips, inserts, deletions, truncation, splices). A share goes out with
broken transport framing (gzip that is not gzip, a wrong content type, a bad WebSocket header, text
frames). Reported: answers by status, 5xx count, WebSocket closes, tracebacks in the server's log,
the server's peak RSS, database and write-ahead log sizes (peak and final), the error log's counters,
and whether the witnesses were ever disturbed.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from otelcockpit.opamp_server.proto import opamp_pb2 as pb

WRITE_TOKEN = "fuzz-write-token-000001"
LINE_RE = re.compile(
    r"OpAMP on https?://127\.0\.0\.1:(\d+)/v1/opamp .* admin API on http://127\.0\.0\.1:(\d+)/api/v1"
)
PB = "application/x-protobuf"
U64_EXTREMES = (0, 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1)
UID_POOL = 512


# ---------------------------------------------------------------------------------------------
# The mutator


def _kv(m: Any, key: str, value: str) -> None:
    kv = m.add()
    kv.key = key
    kv.value.string_value = value


def seed_message(rng: random.Random, uid: bytes) -> pb.AgentToServer:
    """One valid AgentToServer of a random shape."""
    m = pb.AgentToServer(
        instance_uid=uid,
        sequence_num=rng.randrange(0, 50),
        capabilities=rng.choice((0x1, 0x3007, 0x3807, 0xFFFF)),
    )
    shape = rng.randrange(8)
    if shape in (0, 1):  # full state
        d = m.agent_description
        _kv(d.identifying_attributes, "service.name", rng.choice(("otelcol-contrib", "svc", "")))
        _kv(
            d.identifying_attributes,
            "service.instance.id",
            str(uuid.UUID(bytes=uid)) if len(uid) == 16 else "x",
        )
        for i in range(rng.randrange(0, 12)):
            _kv(d.non_identifying_attributes, f"attr.{i}", "v" * rng.randrange(0, 40))
        m.remote_config_status.status = rng.randrange(0, 4)
        m.remote_config_status.last_remote_config_hash = rng.randbytes(32)
    elif shape == 2:  # remote config status
        m.remote_config_status.status = rng.randrange(0, 5)
        m.remote_config_status.last_remote_config_hash = rng.randbytes(rng.choice((0, 16, 32)))
        m.remote_config_status.error_message = "e" * rng.randrange(0, 300)
    elif shape == 3:  # health tree
        h = m.health
        h.healthy = rng.random() < 0.5
        h.start_time_unix_nano = rng.choice(U64_EXTREMES)
        h.status_time_unix_nano = rng.choice(U64_EXTREMES)
        for i in range(rng.randrange(0, 6)):
            c = h.component_health_map[f"pipeline:{i}"]
            c.healthy = rng.random() < 0.5
            c.last_error = "boom" * rng.randrange(0, 10)
    elif shape == 4:  # effective config
        size = rng.choice((10, 1000, 100_000)) if rng.random() < 0.98 else 4 * 1024 * 1024
        m.effective_config.config_map.config_map[rng.choice(("", "c.yaml"))].body = rng.randbytes(size)
    elif shape == 5:  # available components
        m.available_components.hash = rng.randbytes(8)
        for i in range(rng.randrange(0, 5)):
            c = m.available_components.components[f"receivers{i}"]
            _kv(c.metadata, "code.namespace", "x" * rng.randrange(0, 20))
    elif shape == 6:
        m.agent_disconnect.SetInParent()
    else:
        m.flags = rng.choice((1, 2, 2**63, 2**64 - 1))
    return m


def mutate_fields(rng: random.Random, m: pb.AgentToServer) -> None:
    r = rng.random()
    if r < 0.15:
        m.sequence_num = rng.choice(U64_EXTREMES)
    elif r < 0.30:
        m.capabilities = rng.choice(U64_EXTREMES)
    elif r < 0.38:
        m.instance_uid = rng.randbytes(rng.choice((0, 1, 15, 17, 26, 64)))
    elif r < 0.42:
        d = m.agent_description
        for i in range(rng.choice((100, 2000, 11_000))):
            _kv(d.non_identifying_attributes, f"k{i}", "v")
    elif r < 0.45:
        _kv(
            m.agent_description.non_identifying_attributes,
            "k" * rng.choice((10, 2000)),
            "v" * rng.choice((10, 70_000)),
        )
    elif r < 0.50:
        m.connection_settings_status.status = rng.randrange(0, 6)
        m.custom_capabilities.capabilities.append("io.example." + "x" * rng.randrange(0, 50))


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(0, 6)):
        op = rng.randrange(5)
        pos = rng.randrange(0, max(1, len(buf)))
        if op == 0 and buf:
            buf[pos] ^= rng.randrange(1, 256)
        elif op == 1:
            buf[pos:pos] = rng.randbytes(rng.randrange(1, 9))
        elif op == 2 and buf:
            del buf[pos : pos + rng.randrange(1, 5)]
        elif op == 3:
            del buf[pos:]
        elif op == 4 and len(buf) > 4:
            a = rng.randrange(len(buf))
            buf[pos:pos] = buf[a : a + rng.randrange(1, 16)]
    return bytes(buf)


def message(seed: int, i: int, uids: list[bytes]) -> bytes:
    rng = random.Random(f"{seed}:{i}")
    uid = rng.choice(uids) if rng.random() < 0.7 else rng.randbytes(16)
    m = seed_message(rng, uid)
    mutate_fields(rng, m)
    data = m.SerializeToString()
    if rng.random() < 0.6:
        data = mutate_bytes(rng, data)
    return data


# ---------------------------------------------------------------------------------------------
# The server


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    opamp_port: int
    admin_port: int
    db: Path
    log: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.opamp_port}/v1/opamp"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.opamp_port}/v1/opamp"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}/api/v1"


def start_server(workdir: Path, *extra: str) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    tokens = workdir / "tokens.yaml"
    tokens.write_text(f"tokens:\n  - {{token: {WRITE_TOKEN}, role: write, name: fuzz}}\n")
    db = workdir / "opamp.db"
    log = workdir / "serve.log"
    out = workdir / "serve.out"
    args = [sys.executable, "-m", "otelcockpit", "serve", "--listen", "127.0.0.1:0", "--admin-listen",
            "127.0.0.1:0", "--db", str(db), "--tokens", str(tokens), *extra]  # fmt: skip
    env = {**os.environ, "OTELCOCKPIT_DATA_DIR": str(workdir / "data")}
    proc = subprocess.Popen(args, stdout=out.open("wb"), stderr=log.open("wb"), env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = LINE_RE.search(out.read_text(errors="replace"))
        if m:
            return Server(proc, int(m.group(1)), int(m.group(2)), db, log)
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("serve did not start within 30 s")


def rss_peak_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def file_size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


# ---------------------------------------------------------------------------------------------
# The campaign


@dataclass
class Report:
    messages: int = 0
    http: Counter[str] = field(default_factory=Counter)
    ws_closes: Counter[str] = field(default_factory=Counter)
    ws_replies: int = 0
    ws_error_replies: int = 0
    client_errors: Counter[str] = field(default_factory=Counter)
    witness_checks: int = 0
    witness_failures: list[str] = field(default_factory=list)
    peak_wal_bytes: int = 0
    peak_db_bytes: int = 0

    @property
    def five_xx(self) -> int:
        return sum(n for k, n in self.http.items() if k.startswith("5"))


class Witness:
    """A well-behaved agent: its sequence continues, it must never be asked for a full state again,
    and it must never get an error."""

    def __init__(self, name: str) -> None:
        self.uid = uuid.uuid4().bytes
        self.name = name
        self.seq = 0

    def hello(self) -> pb.AgentToServer:
        m = pb.AgentToServer(instance_uid=self.uid, sequence_num=0, capabilities=0x3007)
        _kv(m.agent_description.identifying_attributes, "service.name", self.name)
        m.remote_config_status.status = pb.RemoteConfigStatuses_UNSET
        m.health.healthy = True
        return m

    def next(self) -> pb.AgentToServer:
        self.seq += 1
        return pb.AgentToServer(instance_uid=self.uid, sequence_num=self.seq, capabilities=0x3007)

    def check(self, reply: pb.ServerToAgent, report: Report) -> None:
        report.witness_checks += 1
        if reply.HasField("error_response"):
            report.witness_failures.append(f"{self.name}: error {reply.error_response.error_message}")
        elif reply.instance_uid != self.uid:
            report.witness_failures.append(f"{self.name}: reply for another uid")
        elif reply.flags & pb.ServerToAgentFlags_ReportFullState and self.seq > 0:
            report.witness_failures.append(f"{self.name}: asked for its full state at seq {self.seq}")


async def run_campaign(
    server: Server,
    total: int,
    seed: int,
    *,
    http_workers: int = 12,
    ws_workers: int = 12,
    progress: bool = False,
) -> Report:
    report = Report()
    uids = [random.Random(f"uid{seed}:{i}").randbytes(16) for i in range(UID_POOL)]
    counter = iter(range(total))
    lock = asyncio.Lock()
    done = asyncio.Event()

    async def take() -> int | None:
        async with lock:
            i = next(counter, None)
        if i is None:
            return None
        report.messages += 1
        if progress and report.messages % 50_000 == 0:
            print(f"  {report.messages} messages, 5xx {report.five_xx}", file=sys.stderr, flush=True)
        return i

    limits = httpx.Limits(max_connections=http_workers + 2, max_keepalive_connections=http_workers + 2)
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as client:

        async def http_worker() -> None:
            while (i := await take()) is not None:
                rng = random.Random(f"h{seed}:{i}")
                data = message(seed, i, uids)
                headers = {"Content-Type": PB}
                r = rng.random()
                if r < 0.05:
                    headers["Content-Encoding"] = "gzip"  # not gzip at all
                elif r < 0.15:
                    headers["Content-Encoding"] = "gzip"
                    data = gzip.compress(data)
                elif r < 0.17:
                    headers["Content-Type"] = rng.choice(("text/plain", "application/json", ""))
                try:
                    resp = await client.post(server.http_url, content=data, headers=headers)
                    report.http[str(resp.status_code)] += 1
                except httpx.HTTPError as exc:
                    report.client_errors[type(exc).__name__] += 1

        async def ws_worker(n: int) -> None:
            while not done.is_set():
                try:
                    async with connect(
                        server.ws_url, compression=None, max_size=None, open_timeout=30, close_timeout=2
                    ) as ws:
                        while (i := await take()) is not None:
                            rng = random.Random(f"w{seed}:{i}")
                            data = message(seed, i, uids)
                            r = rng.random()
                            if r < 0.01:
                                await ws.send(data.hex())  # a text frame: the server closes 1003
                            elif r < 0.03:
                                await ws.send(b"\x05" + data)  # an unsupported header
                            else:
                                await ws.send(b"\x00" + data)
                            reply = await asyncio.wait_for(ws.recv(), 60)
                            report.ws_replies += 1
                            if isinstance(reply, bytes) and reply[:1] == b"\x00":
                                if pb.ServerToAgent.FromString(reply[1:]).HasField("error_response"):
                                    report.ws_error_replies += 1
                        done.set()
                        return
                except ConnectionClosed as exc:
                    code = exc.rcvd.code if exc.rcvd is not None else 1006
                    report.ws_closes[str(code)] += 1
                except (OSError, WebSocketException, TimeoutError) as exc:
                    report.client_errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.2)

        witnesses = [Witness("witness-http"), Witness("witness-ws")]

        async def witness_http() -> None:
            w = witnesses[0]
            resp = await client.post(
                server.http_url, content=w.hello().SerializeToString(), headers={"Content-Type": PB}
            )
            w.check(pb.ServerToAgent.FromString(resp.content), report)
            while not done.is_set():
                await asyncio.sleep(0.5)
                resp = await client.post(
                    server.http_url, content=w.next().SerializeToString(), headers={"Content-Type": PB}
                )
                if resp.status_code != 200:
                    report.witness_failures.append(f"witness-http: HTTP {resp.status_code}")
                    continue
                w.check(pb.ServerToAgent.FromString(resp.content), report)

        async def witness_ws() -> None:
            w = witnesses[1]
            async with connect(server.ws_url, compression=None) as ws:
                await ws.send(b"\x00" + w.hello().SerializeToString())
                w.check(pb.ServerToAgent.FromString((await ws.recv())[1:]), report)  # type: ignore[index]
                while not done.is_set():
                    await asyncio.sleep(0.5)
                    await ws.send(b"\x00" + w.next().SerializeToString())
                    w.check(pb.ServerToAgent.FromString((await asyncio.wait_for(ws.recv(), 60))[1:]), report)  # type: ignore[index]

        async def sizes() -> None:
            wal = server.db.with_name(server.db.name + "-wal")
            while not done.is_set():
                report.peak_wal_bytes = max(report.peak_wal_bytes, file_size(wal))
                report.peak_db_bytes = max(report.peak_db_bytes, file_size(server.db))
                await asyncio.sleep(0.1)

        async def all_http() -> None:
            await asyncio.gather(*(http_worker() for _ in range(http_workers)))

        side = [
            asyncio.create_task(witness_http()),
            asyncio.create_task(witness_ws()),
            asyncio.create_task(sizes()),
        ]
        await asyncio.gather(all_http(), *(ws_worker(n) for n in range(ws_workers)))
        done.set()
        for t in side:
            try:
                await asyncio.wait_for(t, 65)
            except Exception as exc:  # noqa: BLE001 - a witness that broke is a finding
                report.witness_failures.append(f"witness task: {type(exc).__name__}: {exc}")
        # the witnesses as the admin API sees them
        for w in witnesses:
            resp = await client.get(
                f"{server.admin}/agents/{uuid.UUID(bytes=w.uid)}",
                headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
            )
            body = resp.json()
            if resp.status_code != 200 or body.get("sequence_num") != w.seq:
                report.witness_failures.append(
                    f"{w.name}: admin API shows {resp.status_code} {body.get('sequence_num')} (sent {w.seq})"
                )
    return report


def summary(server: Server, report: Report, seconds: float) -> dict[str, Any]:
    health = httpx.get(
        f"{server.admin}/health", headers={"Authorization": f"Bearer {WRITE_TOKEN}"}, timeout=30
    ).json()
    log = server.log.read_text(errors="replace")
    return {
        "messages": report.messages,
        "seconds": round(seconds, 1),
        "messages_per_second": round(report.messages / seconds) if seconds else 0,
        "http_status": dict(sorted(report.http.items())),
        "http_5xx": report.five_xx,
        "ws_replies": report.ws_replies,
        "ws_error_replies": report.ws_error_replies,
        "ws_closes": dict(sorted(report.ws_closes.items())),
        "client_errors": dict(report.client_errors),
        "tracebacks": log.count("Traceback (most recent call last)"),
        "log_bytes": len(log.encode()),
        "error_log": health.get("errors"),
        "server_alive": server.proc.poll() is None,
        "server_peak_rss_mb": round(rss_peak_mb(server.proc.pid), 1),
        "agents": health.get("agents"),
        "db_bytes_final": health.get("store", {}).get("db_bytes"),
        "db_bytes_peak": report.peak_db_bytes,
        "wal_bytes_peak": report.peak_wal_bytes,
        "wal_limit_bytes": health.get("store", {}).get("wal_limit_bytes"),
        "wal_truncations": health.get("store", {}).get("wal_truncations"),
        "witness_checks": report.witness_checks,
        "witness_failures": report.witness_failures[:20],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("bench/results/fuzz"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/fuzz_serve.json"))
    args = ap.parse_args(argv)
    import shutil

    shutil.rmtree(args.workdir, ignore_errors=True)
    server = start_server(args.workdir)
    try:
        started = time.monotonic()
        report = asyncio.run(run_campaign(server, args.messages, args.seed, progress=True))
        figures = summary(server, report, time.monotonic() - started)
    finally:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
    import platform

    figures["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    figures["command"] = f"bench/fuzz_serve.py --messages {args.messages} --seed {args.seed}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    ok = (
        figures["http_5xx"] == 0
        and figures["tracebacks"] == 0
        and not figures["witness_failures"]
        and figures["server_alive"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
