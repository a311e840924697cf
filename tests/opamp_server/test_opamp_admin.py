"""The admin API: roles (a read token gets 403 on every mutating endpoint), configs, assignments, audit, SSE."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from opamp_server_support import READ_TOKEN, WRITE_TOKEN, ServeProcess

from otelcockpit.opamp_server.admin import build_admin_app, load_tokens
from otelcockpit.opamp_server.hub import Hub
from otelcockpit.opamp_server.proto import opamp_pb2 as pb
from otelcockpit.opamp_server.store import SqliteStore as Store


def mutating_endpoints(tmp_path: Path, tokens: Path) -> list[tuple[str, str]]:
    from otelcockpit.opamp_server.rollout_routes import ServerRollouts

    store = Store(tmp_path / "list.db")
    try:
        hub = Hub(store)
        from otelcockpit.rollout.journal import Journal

        rollouts = ServerRollouts(hub, Journal(tmp_path / "list.rollouts.sqlite3"))
        app = build_admin_app(hub, load_tokens(tokens), rollouts=rollouts)
        declared = list(app.state.mutating)
        safe = set(app.state.safe_posts)  # POSTs that change nothing (rollout plan)
        # every route that accepts anything but GET is in the declared list
        for route in app.routes:
            methods = set(getattr(route, "methods", None) or ()) - {"GET", "HEAD"}
            for m in methods:
                if (m, route.path) in safe:
                    continue
                assert (m, route.path) in declared, f"{m} {route.path} is mutating but not declared"
        assert ("POST", "/api/v1/rollouts") in declared and ("POST", "/api/v1/rollouts/{id}/rollback") in declared
        rollouts.journal.close()
        return declared
    finally:
        store.close()


def test_read_role_gets_403_on_every_mutating_endpoint(serve: ServeProcess, tmp_path: Path) -> None:
    endpoints = mutating_endpoints(tmp_path, serve.tokens)
    assert len(endpoints) >= 4
    uid = str(uuid.uuid4())
    for method, path in endpoints:
        concrete = path.replace("{uid}", uid).replace("{id}", "1").replace("{name}", "x").replace("/api/v1", "")
        status, body = serve.api(method, concrete, {"name": "x"}, token=READ_TOKEN)
        assert status == 403, (method, path, status, body)
        assert set(body) == {"error"} and "read" in body["error"]
        status, body = serve.api(method, concrete, {"name": "x"}, token=None)
        assert status == 401 and "error" in body
        status, body = serve.api(method, concrete, {"name": "x"}, token="not-a-token")
        assert status == 401
    # reads work with the read token; nothing was changed by the refused calls
    for path in ("/health", "/agents", "/configs", "/assignments", "/audit", "/rollouts", "/changes"):
        status, _ = serve.api("GET", path, token=READ_TOKEN)
        assert status == 200, path
    assert serve.api("GET", "/configs", token=READ_TOKEN)[1] == {"configs": []}
    assert serve.api("GET", "/audit", token=READ_TOKEN)[1] == {"entries": []}


def test_configs_assignments_and_audit(serve: ServeProcess) -> None:
    files = {
        "b.yaml": {"body": "b: 1", "content_type": "text/yaml"},
        "a.yaml": {"body": "a: 1", "content_type": "text/yaml"},
    }
    status, v1 = serve.api(
        "POST", "/configs", {"name": "base", "files": files, "author": "ann", "note": "first"}
    )
    # recorded as the admin token's name, with the person the client says it acts for
    assert status == 201 and v1["version"] == 1 and v1["author"] == "tester (ann)" and len(v1["hash"]) == 64
    status, v2 = serve.api("POST", "/configs", {"name": "base", "files": files, "note": "same files again"})
    assert status == 201 and v2["version"] == 2 and v2["hash"] == v1["hash"]  # canonical hash
    status, listing = serve.api("GET", "/configs")
    assert listing["configs"] == [
        {
            "name": "base",
            "latest_version": 2,
            "versions": 2,
            "hash": v1["hash"],
            "updated_at": v2["created_at"],
        }
    ]
    status, one = serve.api("GET", "/configs/base")
    assert [v["version"] for v in one["versions"]] == [1, 2] and "files" not in one["versions"][0]
    status, got = serve.api("GET", "/configs/base/versions/1")
    assert got["files"]["a.yaml"] == {"body": "a: 1", "content_type": "text/yaml"}
    assert serve.api("GET", "/configs/base/versions/9")[0] == 404
    assert serve.api("GET", "/configs/nope")[0] == 404
    assert serve.api("POST", "/configs", {"name": "bad name!", "files": {}})[0] == 400
    assert serve.api("POST", "/configs", {"name": "x", "files": "nope"})[0] == 400

    status, a = serve.api(
        "POST", "/assignments", {"config": "base", "version": 1, "selector": 'env="prod"', "priority": 5}
    )
    assert status == 201 and a["version"] == 1 and a["priority"] == 5 and a["author"] == "tester"
    status, latest = serve.api("POST", "/assignments", {"config": "base", "version": None, "selector": ""})
    assert status == 201 and latest["version"] == 2  # null = latest at assignment time
    status, body = serve.api("POST", "/assignments", {"config": "base", "selector": 'env=~"('})
    assert status == 400 and "column" in body["error"]
    assert serve.api("POST", "/assignments", {"config": "missing", "selector": ""})[0] == 404
    assert serve.api("POST", "/assignments", {"config": "base", "version": 7, "selector": ""})[0] == 404
    status, listing = serve.api("GET", "/assignments")
    assert [x["id"] for x in listing["assignments"]] == [a["id"], latest["id"]]
    assert serve.api("DELETE", f"/assignments/{a['id']}")[0] == 204
    assert serve.api("DELETE", f"/assignments/{a['id']}")[0] == 404
    status, body = serve.api("GET", "/agents?match=" + 'env=~"("')
    assert status == 400 and "column" in body["error"]

    status, audit = serve.api("GET", "/audit?limit=10")
    actions = [e["action"] for e in audit["entries"]]
    assert actions == [
        "assignment.delete",
        "assignment.create",
        "assignment.create",
        "config.create",
        "config.create",
    ]
    assert [e["actor"] for e in audit["entries"]] == ["tester"] * 4 + ["tester (ann)"]
    assert audit["entries"][3]["target"] == "base@2"
    assert serve.api("GET", "/audit?limit=0")[0] == 400
    status, body = serve.api("GET", "/no/such/endpoint")
    assert status == 404 and "error" in body


def test_restart_needs_the_capability(serve: ServeProcess) -> None:
    uid = uuid.uuid4().bytes
    m = pb.AgentToServer(instance_uid=uid, capabilities=1)
    m.agent_description.identifying_attributes.add(key="service.name").value.string_value = "norestart"
    httpx.post(
        serve.opamp_url, content=m.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}
    )
    status, body = serve.api("POST", f"/agents/{uuid.UUID(bytes=uid)}/restart")
    assert status == 409 and "restart" in body["error"]
    assert serve.api("POST", f"/agents/{uuid.uuid4()}/restart")[0] == 404


def test_event_stream(serve: ServeProcess) -> None:
    seen: list[str] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream(
            "GET", serve.admin_url + "/events", headers={"Authorization": f"Bearer {READ_TOKEN}"}, timeout=20
        ) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                ready.set()
                seen.append(line)
                if line == "event: agent_offline":
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    serve.api("POST", "/configs", {"name": "sse", "files": {}})
    uid = uuid.uuid4().bytes
    m = pb.AgentToServer(instance_uid=uid, capabilities=1)
    m.agent_description.identifying_attributes.add(key="service.name").value.string_value = "sse-agent"
    headers = {"Content-Type": "application/x-protobuf"}
    httpx.post(serve.opamp_url, content=m.SerializeToString(), headers=headers)
    time.sleep(0.5)  # agent events are coalesced every 0.25 s
    bye = pb.AgentToServer(instance_uid=uid, sequence_num=1, capabilities=1)
    bye.agent_disconnect.SetInParent()
    httpx.post(serve.opamp_url, content=bye.SerializeToString(), headers=headers)
    t.join(15)
    assert "event: config" in seen and "event: agent" in seen and "event: agent_offline" in seen
    data = seen[seen.index("event: agent") + 1]
    assert data.startswith("data: ") and '"sse-agent"' in data and "effective_config" not in data


@pytest.mark.parametrize("token", [WRITE_TOKEN])
def test_health(serve: ServeProcess, token: str) -> None:
    status, body = serve.api("GET", "/health", token=token)
    assert status == 200 and body["status"] == "ok" and body["agents"] == 0 and body["online"] == 0


def test_event_stream_keepalive(tmp_path: Path) -> None:
    import uvicorn

    store = Store(tmp_path / "ka.db")
    (tmp_path / "t.yaml").write_text(f"tokens: [{{token: {READ_TOKEN}, role: read}}]\n", encoding="utf-8")
    app = build_admin_app(Hub(store), load_tokens(tmp_path / "t.yaml"), keepalive=0.2)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        lines = []
        with httpx.stream(
            "GET", f"http://127.0.0.1:{port}/api/v1/events", headers={"Authorization": f"Bearer {READ_TOKEN}"}
        ) as resp:
            for line in resp.iter_lines():
                lines.append(line)
                if lines.count(": keepalive") == 2:
                    break
        assert lines[0] == ": connected"
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()
