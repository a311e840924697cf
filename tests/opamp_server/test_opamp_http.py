"""Plain HTTP OpAMP against a real ``otelcockpit serve``, and bad input that must not hurt anyone else."""

from __future__ import annotations

import gzip
import os
import random
import uuid

import httpx
import pytest
from opamp_server_support import ServeProcess, start_serve

from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.proto import opamp_pb2 as pb

PB = {"Content-Type": "application/x-protobuf"}


def agent_msg(uid: bytes, seq: int = 0, name: str = "svc", **attrs: str) -> pb.AgentToServer:
    m = pb.AgentToServer(instance_uid=uid, sequence_num=seq, capabilities=0x3007)
    for k, v in {"service.name": name, **attrs}.items():
        kv = m.agent_description.identifying_attributes.add()
        kv.key = k
        kv.value.string_value = v
    m.effective_config.config_map.config_map[""].body = b"receivers: {}"
    m.remote_config_status.status = pb.RemoteConfigStatuses_UNSET
    return m


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url, content=body, headers={**PB, **(headers or {})}, timeout=30)


def reply_of(resp: httpx.Response) -> pb.ServerToAgent:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/x-protobuf"
    return pb.ServerToAgent.FromString(resp.content)


@pytest.fixture(scope="module")
def witness(shared_serve: ServeProcess) -> dict[str, object]:
    """A well-behaved agent that must stay unaffected by everybody else's bad input."""
    uid = uuid.uuid4().bytes
    r = reply_of(post(shared_serve.opamp_url, agent_msg(uid, 0, "witness").SerializeToString()))
    assert r.capabilities == core.SERVER_CAPABILITIES
    return {"uid": uid, "seq": 0}


def check_witness(serve: ServeProcess, witness: dict[str, object]) -> None:
    assert serve.alive()
    witness["seq"] = int(witness["seq"]) + 1  # type: ignore[call-overload]
    m = pb.AgentToServer(instance_uid=witness["uid"], sequence_num=witness["seq"], capabilities=0x3007)
    r = reply_of(post(serve.opamp_url, m.SerializeToString()))
    assert r.instance_uid == witness["uid"] and not r.HasField("error_response")
    assert not r.flags & core.REPORT_FULL_STATE  # its sequence was not disturbed
    status, body = serve.api("GET", '/agents?match=service.name="witness"')
    assert status == 200 and body["agents"][0]["status"] == "online"
    assert body["agents"][0]["sequence_num"] == witness["seq"]


def test_heartbeat_roundtrip_and_gzip_both_ways(
    shared_serve: ServeProcess, witness: dict[str, object]
) -> None:
    uid = uuid.uuid4().bytes
    body = agent_msg(uid, 0, "gzip-agent").SerializeToString()
    # gzip request body accepted; gzip response when the client accepts it
    resp = httpx.post(
        shared_serve.opamp_url,
        content=gzip.compress(body),
        headers={**PB, "Content-Encoding": "gzip", "Accept-Encoding": "gzip"},
    )
    assert resp.headers.get("content-encoding") == "gzip"
    r = reply_of(resp)
    assert r.instance_uid == uid and r.capabilities == core.SERVER_CAPABILITIES
    # no gzip when the client refuses it
    hb = pb.AgentToServer(instance_uid=uid, sequence_num=1, capabilities=0x3007).SerializeToString()
    resp = post(shared_serve.opamp_url, hb, {"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in resp.headers
    assert not reply_of(resp).flags
    status, detail = shared_serve.api("GET", f"/agents/{uuid.UUID(bytes=uid)}")
    assert status == 200 and detail["identifying_attributes"]["service.name"] == "gzip-agent"
    assert detail["effective_config"] == {"": {"body": "receivers: {}", "content_type": ""}}
    check_witness(shared_serve, witness)


def test_random_bytes(shared_serve: ServeProcess, witness: dict[str, object]) -> None:
    rng = random.Random(7)
    for _ in range(20):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        resp = post(shared_serve.opamp_url, data)
        if resp.status_code == 200:  # random bytes that happen to decode: then a BAD_REQUEST or an ack
            reply_of(resp)
        else:
            assert resp.status_code == 400
    check_witness(shared_serve, witness)


def test_truncated_protobuf_is_400(shared_serve: ServeProcess, witness: dict[str, object]) -> None:
    full = agent_msg(uuid.uuid4().bytes, 0, "trunc").SerializeToString()
    resp = post(shared_serve.opamp_url, full[: len(full) - 5])
    assert resp.status_code == 400
    check_witness(shared_serve, witness)


def test_wrong_content_type_and_method(shared_serve: ServeProcess, witness: dict[str, object]) -> None:
    body = agent_msg(uuid.uuid4().bytes).SerializeToString()
    assert (
        httpx.post(
            shared_serve.opamp_url, content=body, headers={"Content-Type": "application/json"}
        ).status_code
        == 415
    )
    assert httpx.post(shared_serve.opamp_url, content=body).status_code == 415
    assert httpx.get(shared_serve.opamp_url).status_code == 405
    assert (
        httpx.post(
            shared_serve.opamp_url.replace("/v1/opamp", "/other"), content=body, headers=PB
        ).status_code
        == 404
    )
    bad_gzip = post(shared_serve.opamp_url, b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"})
    assert bad_gzip.status_code == 400
    check_witness(shared_serve, witness)


def test_gzip_bomb_is_413(shared_serve: ServeProcess, witness: dict[str, object]) -> None:
    bomb = gzip.compress(b"\x00" * (80 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 200_000
    resp = post(shared_serve.opamp_url, bomb, {"Content-Encoding": "gzip"})
    assert resp.status_code == 413
    check_witness(shared_serve, witness)


def test_oversized_plain_body_is_413(shared_serve: ServeProcess, witness: dict[str, object]) -> None:
    resp = post(shared_serve.opamp_url, b"\x0a" * (64 * 1024 * 1024 + 1))
    assert resp.status_code == 413
    check_witness(shared_serve, witness)


@pytest.mark.parametrize("uid", [b"", b"abc"], ids=["missing", "3-byte"])
def test_bad_instance_uid_is_bad_request(
    shared_serve: ServeProcess, witness: dict[str, object], uid: bytes
) -> None:
    m = pb.AgentToServer(instance_uid=uid, capabilities=1)
    r = reply_of(post(shared_serve.opamp_url, m.SerializeToString()))
    assert r.error_response.type == pb.ServerErrorResponseType_BadRequest
    assert "instance_uid" in r.error_response.error_message
    assert not r.HasField("remote_config") and r.capabilities == 0
    check_witness(shared_serve, witness)


def test_100000_attributes(shared_serve: ServeProcess, witness: dict[str, object]) -> None:
    m = pb.AgentToServer(instance_uid=uuid.uuid4().bytes, capabilities=1)
    for i in range(100_000):
        kv = m.agent_description.non_identifying_attributes.add()
        kv.key = f"attr.{i}"
        kv.value.string_value = "v"
    r = reply_of(post(shared_serve.opamp_url, m.SerializeToString()))
    assert r.error_response.type == pb.ServerErrorResponseType_BadRequest
    assert "100000 attributes" in r.error_response.error_message
    status, body = shared_serve.api("GET", "/agents")
    assert status == 200 and all(len(a["non_identifying_attributes"]) < 100 for a in body["agents"])
    check_witness(shared_serve, witness)


def test_pending_offer_waits_for_the_next_poll(shared_serve: ServeProcess) -> None:
    uid = uuid.uuid4().bytes
    caps = 0x3007  # AcceptsRemoteConfig | ReportsRemoteConfig ...
    m = agent_msg(uid, 0, "poller", team="http-poll")
    m.capabilities = caps
    r = reply_of(post(shared_serve.opamp_url, m.SerializeToString()))
    assert not r.HasField("remote_config")
    status, cv = shared_serve.api(
        "POST",
        "/configs",
        {"name": "poll-cfg", "files": {"": {"body": "exporters: {}", "content_type": "text/yaml"}}},
    )
    assert status == 201
    status, _ = shared_serve.api(
        "POST", "/assignments", {"config": "poll-cfg", "version": 1, "selector": 'team="http-poll"'}
    )
    assert status == 201
    poll = pb.AgentToServer(instance_uid=uid, sequence_num=1, capabilities=caps)
    r = reply_of(post(shared_serve.opamp_url, poll.SerializeToString()))
    assert r.remote_config.config_hash.hex() == cv["hash"]
    assert r.remote_config.config.config_map[""].body == b"exporters: {}"
    # outstanding: not re-sent on the next poll
    poll.sequence_num = 2
    assert not reply_of(post(shared_serve.opamp_url, poll.SerializeToString())).HasField("remote_config")
    # the agent reports FAILED: never re-offered
    poll.sequence_num = 3
    poll.remote_config_status.last_remote_config_hash = bytes.fromhex(cv["hash"])
    poll.remote_config_status.status = pb.RemoteConfigStatuses_FAILED
    poll.remote_config_status.error_message = "boom"
    assert not reply_of(post(shared_serve.opamp_url, poll.SerializeToString())).HasField("remote_config")
    status, detail = shared_serve.api("GET", f"/agents/{uuid.UUID(bytes=uid)}")
    assert detail["failed_hashes"] == [cv["hash"]]
    assert detail["remote_config_status"] == {"status": "FAILED", "last_hash": cv["hash"], "error": "boom"}
    assert detail["remote_config_history"][0]["error"] == "boom"


def test_agent_authentication(tmp_path) -> None:  # noqa: ANN001
    tokens = tmp_path / "agents.yaml"
    tokens.write_text(
        "tokens:\n  - token: agent-secret\n  - {username: col, password: pw}\n", encoding="utf-8"
    )
    sp = start_serve(tmp_path / "auth", "--agent-tokens", str(tokens))
    try:
        body = agent_msg(os.urandom(16)).SerializeToString()
        assert post(sp.opamp_url, body).status_code == 401
        assert post(sp.opamp_url, body, {"Authorization": "Bearer wrong"}).status_code == 401
        assert post(sp.opamp_url, body, {"Authorization": "Bearer agent-secret"}).status_code == 200
        assert httpx.post(sp.opamp_url, content=body, headers=PB, auth=("col", "pw")).status_code == 200
        assert httpx.post(sp.opamp_url, content=body, headers=PB, auth=("col", "no")).status_code == 401
    finally:
        sp.stop()
