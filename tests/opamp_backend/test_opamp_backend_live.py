"""The opamp backend and the ``otelcockpit opamp`` CLI against a real ``otelcockpit serve`` with
simulated agents (HTTP and WebSocket) on loopback."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
from opamp_backend_support import READ_TOKEN, WRITE_TOKEN, run_cli, start_server, wait_for

from otelcockpit.backends.base import PIPELINE_DELETE, PIPELINE_UPSERT, Change
from otelcockpit.backends.opamp import NO_HEALTH_REASON, OpAmpBackend
from otelcockpit.errors import BackendError, PushRefused
from otelcockpit.fleet.model import CollectorType, ConfigStatus, Health, Pipeline
from otelcockpit.simulate.agents import make_profiles

WS_UIDS = {str(__import__("uuid").UUID(bytes=p.uid)) for p in make_profiles(3, 11)}
HTTP_UIDS = {str(__import__("uuid").UUID(bytes=p.uid)) for p in make_profiles(3, 12)}
FAILING_UIDS = {str(__import__("uuid").UUID(bytes=p.uid)) for p in make_profiles(2, 13)}
ALL_UIDS = WS_UIDS | HTTP_UIDS | FAILING_UIDS


def snapshot(url: str, token: str = WRITE_TOKEN):
    async def go():
        b = OpAmpBackend(url, token)
        try:
            return await b.snapshot()
        finally:
            await b.close()

    return asyncio.run(go())


def detail(url: str, uid: str, token: str = WRITE_TOKEN):
    """One agent in full, as the detail screen fetches it (the list is compact)."""

    async def go():
        b = OpAmpBackend(url, token)
        try:
            return (await b.collector_detail(uid))[0]
        finally:
            await b.close()

    return asyncio.run(go())


def online_snapshot(server):
    def ready():
        snap = snapshot(server.admin_url)
        ids = {c.id for c in snap.collectors if c.health is not Health.OFFLINE}
        return snap if ALL_UIDS <= ids else None

    return wait_for(ready, timeout=25)


def test_snapshot_maps_attributes_health_and_config(fleet_server):
    snap = online_snapshot(fleet_server)
    assert snap.backend == "opamp" and not snap.stale and snap.health.ok
    by_id = {c.id: c for c in snap.collectors}
    profiles = {
        str(__import__("uuid").UUID(bytes=p.uid)): p for p in make_profiles(3, 11) + make_profiles(3, 12)
    }
    for uid, p in profiles.items():
        c = by_id[uid]
        assert c.type is CollectorType.OTEL
        assert c.version == p.attr("service.version")
        assert c.name == f"{p.attr('service.name')}@{p.attr('host.name')}"
        for key in (
            "service.name",
            "service.instance.id",
            "host.name",
            "os.type",
            "host.arch",
            "env",
            "region",
        ):
            assert c.local_attributes[key] == p.attr(key), key
        expected = {"healthy": Health.HEALTHY, "degraded": Health.DEGRADED, "unhealthy": Health.UNHEALTHY}[
            p.health_kind
        ]
        assert c.health is expected
        if expected is not Health.HEALTHY:  # the list names the component at fault
            assert c.component_health is not None and c.component_health.children
            assert c.health_reason
        assert c.source == ("ws" if uid in WS_UIDS else "http")
        # the effective config and the whole tree come with the agent's detail
        assert not c.effective_config
        full = detail(fleet_server.admin_url, uid)
        assert "otlphttp" in full.effective_config[""]  # the local config
        assert full.component_health is not None and {n.name for n in full.component_health.children} >= {
            "pipeline:traces"
        }
        assert full.health is c.health and full.health_reason == c.health_reason
    assert {by_id[u].source for u in HTTP_UIDS} == {"http"}


def test_config_create_assign_reaches_agents(fleet_server, tmp_path):
    online_snapshot(fleet_server)
    cfg = tmp_path / "base.yaml"
    cfg.write_text("receivers:\n  otlp: {protocols: {grpc: {}}}\nexporters:\n  debug: {}\n")
    url = fleet_server.admin_url
    r = run_cli(
        tmp_path,
        "opamp",
        "config",
        "create",
        "base",
        "--file",
        str(cfg),
        "--note",
        "first",
        "--url",
        url,
        "--json",
    )
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["name"] == "base" and created["version"] == 1 and len(created["hash"]) == 64
    r = run_cli(tmp_path, "opamp", "assign", "base", "--match", 'os.type="linux"', "--url", url, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["selector"] == 'os.type="linux"'

    def settled():
        snap = snapshot(url)
        by_id = {c.id: c for c in snap.collectors}
        done = all(by_id[u].remote_config.status is ConfigStatus.APPLIED for u in WS_UIDS | HTTP_UIDS)
        failed = all(by_id[u].remote_config.status is ConfigStatus.FAILED for u in FAILING_UIDS)
        return snap if done and failed else None

    snap = wait_for(settled, timeout=20)
    by_id = {c.id: c for c in snap.collectors}
    for u in WS_UIDS | HTTP_UIDS:
        c = by_id[u]
        assert c.remote_config.hash == created["hash"]
        assert c.pipelines == ("base",)
    for u in FAILING_UIDS:
        assert by_id[u].remote_config.error  # FAILED carries the agent's error message
    # The effective config (in the agent's detail) becomes what the agents applied.
    assert "debug: {}" in detail(url, next(iter(WS_UIDS))).effective_config[""]

    p = snap.pipeline("base")
    assert p is not None and p.matchers == ('os.type="linux"',) and p.config_type is CollectorType.OTEL
    assert "debug: {}" in p.contents and p.contents.startswith('# file: ""')

    r = run_cli(tmp_path, "opamp", "config", "list", "--url", url)
    assert r.returncode == 0 and "base" in r.stdout
    r = run_cli(tmp_path, "opamp", "config", "show", "base", "--url", url, "--json")
    assert json.loads(r.stdout)["files"][""]["content_type"] == "text/yaml"
    r = run_cli(tmp_path, "opamp", "agents", "--url", url, "--match", 'env=~".+"', "--json")
    assert r.returncode == 0 and {a["instance_uid"] for a in json.loads(r.stdout)["agents"]} >= WS_UIDS
    r = run_cli(tmp_path, "opamp", "agents", "--url", url, "--id", next(iter(FAILING_UIDS)))
    assert r.returncode == 0 and "FAILED" in r.stdout and "component health:" in r.stdout

    # A push through the backend is a new version. Revisions run oldest first up to the live one
    # (the assigned version): a version nobody runs yet is not live, and the pipeline still shows
    # what the agents run. Assigned, it becomes the live one. Other change kinds are refused.
    async def push():
        b = OpAmpBackend(url, WRITE_TOKEN)
        try:
            one = await b.snapshot()
            two = await b.snapshot()
            # Unchanged objects are reused (the TUI diffs by identity).
            assert two.pipeline("base") is one.pipeline("base")
            res = await b.push(
                Change(PIPELINE_UPSERT, {"pipeline": Pipeline("base", p.contents.replace("debug", "nop"))})
            )
            bad = await b.push(Change(PIPELINE_DELETE, {"name": "base"}))
            draft = (await b.revisions("base"), (await b.snapshot()).pipeline("base"))
            await b.api.assign("base", 2, 'os.type="linux"', priority=1, author="test")
            live = (await b.revisions("base"), (await b.snapshot()).pipeline("base"))
            return res, bad, draft, live
        finally:
            await b.close()

    res, bad, (draft_revs, draft_pipe), (revs, live_pipe) = asyncio.run(push())
    assert res.ok and res.revision_id == "2", res.message
    assert not bad.ok and "cannot pipeline.delete" in bad.message
    assert [r.id for r in draft_revs] == ["1"] and "debug: {}" in draft_pipe.contents
    assert [r.id for r in revs] == ["1", "2"]
    assert revs[0].snapshot is not None and "debug: {}" in revs[0].snapshot.contents
    assert revs[1].snapshot is not None and "nop: {}" in revs[1].snapshot.contents
    assert "nop: {}" in live_pipe.contents


def test_events_stream_yields_agent_events(fleet_server):
    online_snapshot(fleet_server)

    async def go():
        b = OpAmpBackend(fleet_server.admin_url, WRITE_TOKEN)
        seen = []
        try:
            await b.snapshot()
            async with asyncio.timeout(10):
                async for ev in b.events():
                    seen.append(ev.kind)
                    if ev.kind == "connected":  # a restart makes the agent report new health: an event
                        await b.api.restart(next(iter(WS_UIDS)))
                    if ev.kind == "agent":
                        new = b.apply_event(ev)
                        assert new is not None and new.collector(ev.collector_id) is not None
                        return seen, ev
        finally:
            await b.close()

    seen, ev = asyncio.run(go())
    assert seen[0] == "connected"
    assert ev.collector is not None and ev.collector.id in ALL_UIDS


def test_restart_and_read_only_and_read_token(fleet_server, tmp_path):
    online_snapshot(fleet_server)
    url = fleet_server.admin_url
    uid = next(iter(WS_UIDS))
    r = run_cli(tmp_path, "opamp", "restart", uid, "--url", url)
    assert r.returncode == 0 and "restart queued" in r.stdout, r.stderr

    r = run_cli(tmp_path, "opamp", "restart", uid, "--url", url, "--read-only")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"otelcockpit: read-only: refused to restart agent {uid}"]

    every = tmp_path / "every.yaml"
    every.write_text("receivers: {}\n", encoding="utf-8")
    r = run_cli(tmp_path, "opamp", "config", "create", "every", "--file", str(every), "--url", url)
    assert r.returncode == 0, r.stderr
    r = run_cli(tmp_path, "opamp", "assign", "every", "--all", "--priority", "-1", "--url", url)
    assert r.returncode == 0 and "to every agent" in r.stdout, r.stderr

    r = run_cli(tmp_path, "opamp", "assign", "base", "--match", "env=prod", "--url", url, token=READ_TOKEN)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "the token in $OTELCOCKPIT_OPAMP_TOKEN may not do this" in r.stderr, r.stderr

    r = run_cli(tmp_path, "opamp", "config", "list", "--url", url, token=READ_TOKEN)
    assert r.returncode == 0, r.stderr


def test_wrong_token_and_unreachable_url(fleet_server, tmp_path):
    url = fleet_server.admin_url
    for args in (("opamp", "agents"), ("collectors", "--source", "opamp")):
        r = run_cli(tmp_path, *args, "--url", url, token="not-the-token-xyz")
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "$OTELCOCKPIT_OPAMP_TOKEN" in lines[0] and "401" in lines[0], lines
    r = run_cli(tmp_path, "opamp", "agents", "--url", url, token=None)
    assert r.returncode == 1 and "set $OTELCOCKPIT_OPAMP_TOKEN" in r.stderr

    dead = "http://127.0.0.1:9"
    for args in (("opamp", "config", "list"), ("status", "--source", "opamp")):
        r = run_cli(tmp_path, *args, "--url", dead)
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and dead in lines[0] and "cannot reach" in lines[0], lines


def test_bad_usage_is_exit_2(tmp_path):
    r = run_cli(tmp_path, "opamp", "assign", "base@x", "--match", "env=prod", "--url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "bad version" in r.stderr
    r = run_cli(tmp_path, "opamp", "assign", "base", "--match", 'env="prod', "--url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "bad matcher" in r.stderr
    r = run_cli(tmp_path, "opamp", "assign", "base", "--match", "", "--url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "use --all" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = run_cli(tmp_path, "opamp", "assign", "base", "--all", "--match", "a=b", "--url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "not allowed with" in r.stderr
    r = run_cli(
        tmp_path,
        "opamp",
        "config",
        "create",
        "x",
        "--file",
        str(tmp_path / "missing.yaml"),
        "--url",
        "http://127.0.0.1:9",
    )
    assert r.returncode == 2 and r.stderr.strip() == f"otelcockpit: no such file: {tmp_path / 'missing.yaml'}"
    r = run_cli(tmp_path, "simulate-agents", "--server", "http://192.0.2.1:4320", "--count", "1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "loopback" in r.stderr
    r = run_cli(
        tmp_path,
        "simulate-agents",
        "--server",
        "http://127.0.0.1:9",
        "--count",
        "2",
        "--duration",
        "1",
        "--quiet",
    )
    assert r.returncode == 1 and r.stderr.startswith(
        "otelcockpit: no OpAMP server answered at ws://127.0.0.1:9/v1/opamp"
    )


def test_server_going_away_gives_stale_snapshot_and_refuses_push(tmp_path):
    srv = start_server(tmp_path / "srv")
    try:
        srv.simulate("--count", "2", "--transport", "http", "--seed", "21", "--heartbeat", "1")

        async def go():
            b = OpAmpBackend(srv.admin_url, WRITE_TOKEN)
            try:
                first = None
                async with asyncio.timeout(20):
                    while first is None or len(first.collectors) < 2:
                        first = await b.snapshot()
                        await asyncio.sleep(0.2)
                srv.proc.send_signal(signal.SIGKILL)
                srv.proc.wait(timeout=10)
                stale = await b.snapshot()
                again = await b.snapshot()  # within the back-off: no request, same stale data
                with pytest.raises(PushRefused, match="stale"):
                    await b.push(Change(PIPELINE_UPSERT, {"pipeline": Pipeline("x", "a: 1\n")}))
                async with asyncio.timeout(5):
                    async for ev in b.events():
                        assert ev.kind == "disconnected" and ev.data["kind"] == "unreachable"
                        break
                return first, stale, again
            finally:
                await b.close()

        first, stale, again = asyncio.run(go())
        assert stale.stale and stale.stale_reason.startswith("unreachable:")
        assert srv.admin_url in stale.stale_reason and "old)" in stale.stale_reason
        assert not stale.health.ok and stale.health.status == "down"
        assert stale.collectors == first.collectors and stale.fetched_at == first.fetched_at
        assert again.stale
    finally:
        srv.stop()


def test_agent_without_health_is_unknown_with_reason(lone_server):
    """An agent without ReportsHealth (like the Python SDK client) maps to unknown with the reason."""
    import httpx

    from otelcockpit.opamp_server.proto import anyvalue_pb2 as av
    from otelcockpit.opamp_server.proto import opamp_pb2 as pb

    msg = pb.AgentToServer(instance_uid=bytes(range(16)), sequence_num=0, capabilities=0x3007)
    msg.agent_description.identifying_attributes.append(
        av.KeyValue(key="service.name", value=av.AnyValue(string_value="py-sdk"))
    )
    msg.remote_config_status.SetInParent()
    msg.effective_config.SetInParent()
    resp = httpx.post(
        lone_server.opamp_url,
        content=msg.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert resp.status_code == 200
    snap = snapshot(lone_server.admin_url)
    [c] = snap.collectors
    assert c.health is Health.UNKNOWN and c.health_reason == NO_HEALTH_REASON and c.name == "py-sdk"
    # It lacks AcceptsRestartCommand: the server answers 409, the CLI says so in one line.
    r = run_cli(lone_server.tmp, "opamp", "restart", c.id, "--url", lone_server.admin_url)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "does not accept restart commands" in r.stderr


def test_no_snapshot_yet_raises_backend_error():
    async def go():
        b = OpAmpBackend("http://127.0.0.1:9", WRITE_TOKEN)
        try:
            await b.snapshot()
        finally:
            await b.close()

    with pytest.raises(BackendError, match="cannot reach the OpAMP admin API at http://127.0.0.1:9"):
        asyncio.run(go())


def test_multi_file_config_and_show(fleet_server, tmp_path):
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.json"
    a.write_text("receivers: {otlp: {}}\n")
    b.write_text('{"sampling": 0.1}')
    url = fleet_server.admin_url
    r = run_cli(
        tmp_path, "opamp", "config", "create", "multi", "--file", str(a), "--file", f"extra={b}", "--url", url
    )
    assert r.returncode == 0 and "created multi version 1" in r.stdout, r.stderr
    r = run_cli(tmp_path, "opamp", "config", "show", "multi", "--url", url, "--json")
    files = json.loads(r.stdout)["files"]
    assert files["a.yaml"]["content_type"] == "text/yaml"
    assert files["extra"] == {"body": '{"sampling": 0.1}', "content_type": "application/json"}
    r = run_cli(tmp_path, "opamp", "config", "show", "multi", "--version", "1", "--url", url)
    assert "# file: a.yaml" in r.stdout and "# file: extra" in r.stdout


def test_agent_tokens_and_disconnect_marks_offline(tmp_path):
    tokens = tmp_path / "agents.yaml"
    tokens.write_text("tokens:\n  - {token: agent-secret-0001, name: sim}\n")
    srv = start_server(tmp_path / "srv", "--agent-tokens", str(tokens), heartbeat=30)
    try:
        for transport in ("http", "ws"):
            bad = srv.simulate("--count", "1", "--transport", transport, "--duration", "20")
            _, err = bad.communicate(timeout=25)
            assert bad.returncode == 1, err
            assert (
                err.strip().splitlines()[-1].startswith("otelcockpit: the OpAMP server at")
                and "pass --token" in err
            )
        http = srv.simulate(
            "--count",
            "2",
            "--transport",
            "http",
            "--seed",
            "31",
            "--heartbeat",
            "1",
            "--token",
            "agent-secret-0001",
        )
        ws = srv.simulate(
            "--count",
            "2",
            "--transport",
            "ws",
            "--seed",
            "32",
            "--heartbeat",
            "1",
            "--token",
            "agent-secret-0001",
        )
        uids = {
            str(__import__("uuid").UUID(bytes=p.uid)) for p in make_profiles(2, 31) + make_profiles(2, 32)
        }

        def online():
            snap = snapshot(srv.admin_url)
            return {c.id for c in snap.collectors if c.health is not Health.OFFLINE} >= uids

        wait_for(online, timeout=15)
        for p in (http, ws):
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=20)
            assert p.returncode == 0, err
            assert "simulate-agents: done: 2 agents" in out

        # agent_disconnect marks them offline at once (the server's silence limit here is 90 s).
        def offline():
            snap = snapshot(srv.admin_url)
            return all(snap.collector(u).health is Health.OFFLINE for u in uids)

        wait_for(offline, timeout=5)
    finally:
        srv.stop()
