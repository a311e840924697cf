"""WebSocket OpAMP with a raw client built on the ``websockets`` library (0x00 header, binary frames)."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
import websockets
from opamp_server_support import ServeProcess, start_serve, wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.proto import opamp_pb2 as pb

CAPS = 0x3007 | core.ACCEPTS_RESTART_COMMAND


def hello(uid: bytes, seq: int = 0, name: str = "ws-agent", **attrs: str) -> pb.AgentToServer:
    m = pb.AgentToServer(instance_uid=uid, sequence_num=seq, capabilities=CAPS)
    for k, v in {"service.name": name, **attrs}.items():
        kv = m.agent_description.identifying_attributes.add()
        kv.key = k
        kv.value.string_value = v
    m.effective_config.config_map.config_map[""].body = b"receivers: {}"
    m.remote_config_status.status = pb.RemoteConfigStatuses_UNSET
    return m


def frame(m: pb.AgentToServer) -> bytes:
    return b"\x00" + m.SerializeToString()


async def recv_reply(ws: websockets.ClientConnection, timeout: float = 10) -> pb.ServerToAgent:
    data = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(data, bytes), "the server must only send binary frames"
    assert data[:1] == b"\x00", "every OpAMP WebSocket message starts with the 0x00 header"
    return pb.ServerToAgent.FromString(data[1:])


def agent(serve: ServeProcess, uid: bytes) -> dict:
    status, body = serve.api("GET", f"/agents/{uuid.UUID(bytes=uid)}")
    assert status == 200
    return body


def test_ws_exchange_push_and_close(serve: ServeProcess) -> None:
    uid = uuid.uuid4().bytes

    async def run() -> None:
        async with connect(serve.ws_url, max_size=None) as ws:
            await ws.send(frame(hello(uid, 0, team="ws-push")))
            r = await recv_reply(ws)
            assert r.instance_uid == uid and r.capabilities == core.SERVER_CAPABILITIES
            assert not r.flags & core.REPORT_FULL_STATE
            a = await asyncio.to_thread(agent, serve, uid)
            assert a["transport"] == "ws" and a["connected"] and a["status"] == "online"
            # server push: assign a config, the agent receives it without sending anything
            status, cv = await asyncio.to_thread(
                serve.api,
                "POST",
                "/configs",
                {"name": "ws-cfg", "files": {"": {"body": "processors: {}", "content_type": "text/yaml"}}},
            )
            assert status == 201
            status, _ = await asyncio.to_thread(
                serve.api,
                "POST",
                "/assignments",
                {"config": "ws-cfg", "version": None, "selector": 'team="ws-push"'},
            )
            assert status == 201
            pushed = await recv_reply(ws)
            assert pushed.remote_config.config_hash.hex() == cv["hash"]
            # APPLYING then APPLIED, each acknowledged
            for seq, st in ((1, pb.RemoteConfigStatuses_APPLYING), (2, pb.RemoteConfigStatuses_APPLIED)):
                m = pb.AgentToServer(instance_uid=uid, sequence_num=seq, capabilities=CAPS)
                m.remote_config_status.last_remote_config_hash = pushed.remote_config.config_hash
                m.remote_config_status.status = st
                await ws.send(frame(m))
                ack = await recv_reply(ws)
                assert not ack.HasField("remote_config")
            a = await asyncio.to_thread(agent, serve, uid)
            assert a["remote_config_status"]["status"] == "APPLIED"
            # restart command pushed, alone
            status, body = await asyncio.to_thread(
                serve.api, "POST", f"/agents/{uuid.UUID(bytes=uid)}/restart"
            )
            assert status == 202 and body == {"queued": True}
            cmd = await recv_reply(ws)
            assert cmd.command.type == pb.CommandType_Restart
            assert {f.name for f, _ in cmd.ListFields()} == {"instance_uid", "capabilities", "command"}
            # clean close: agent_disconnect then Close
            bye = pb.AgentToServer(instance_uid=uid, sequence_num=3, capabilities=CAPS)
            bye.agent_disconnect.SetInParent()
            await ws.send(frame(bye))
            await recv_reply(ws)
        a = await asyncio.to_thread(agent, serve, uid)
        assert a["status"] == "offline" and not a["connected"]

    asyncio.run(run())


def test_ws_close_without_disconnect_goes_offline(serve: ServeProcess) -> None:
    uid = uuid.uuid4().bytes

    async def run() -> None:
        async with connect(serve.ws_url) as ws:
            await ws.send(frame(hello(uid)))
            await recv_reply(ws)

    asyncio.run(run())
    wait_for(lambda: agent(serve, uid)["status"] == "offline", 5)


def test_text_frames_refused(serve: ServeProcess) -> None:
    uid = uuid.uuid4().bytes

    async def run() -> None:
        async with connect(serve.ws_url) as other:
            await other.send(frame(hello(uid, name="bystander")))
            await recv_reply(other)
            async with connect(serve.ws_url) as ws:
                await ws.send("hello")
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 10)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1003
            # the bystander is unaffected
            await other.send(frame(pb.AgentToServer(instance_uid=uid, sequence_num=1, capabilities=CAPS)))
            r = await recv_reply(other)
            assert not r.flags and r.capabilities == core.SERVER_CAPABILITIES

    asyncio.run(run())
    assert serve.alive()


def test_bad_frames_get_bad_request(serve: ServeProcess) -> None:
    async def run() -> None:
        async with connect(serve.ws_url) as ws:
            await ws.send(b"\x05" + hello(os.urandom(16)).SerializeToString())  # header must be 0
            r = await recv_reply(ws)
            assert r.error_response.type == pb.ServerErrorResponseType_BadRequest
            await ws.send(b"\x00\xff\xff\xff")  # undecodable protobuf
            r = await recv_reply(ws)
            assert r.error_response.type == pb.ServerErrorResponseType_BadRequest
            await ws.send(frame(pb.AgentToServer(instance_uid=b"abc", capabilities=1)))
            r = await recv_reply(ws)
            assert "instance_uid" in r.error_response.error_message
            ok = os.urandom(16)
            await ws.send(frame(hello(ok)))
            assert (await recv_reply(ws)).instance_uid == ok

    asyncio.run(run())


def test_oversized_message_closes_1009(serve: ServeProcess) -> None:
    async def run() -> None:
        async with connect(serve.ws_url, max_size=None, compression=None) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.send(b"\x00" + b"\x0a" * (64 * 1024 * 1024))
                await asyncio.wait_for(ws.recv(), 20)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009

    asyncio.run(run())
    assert serve.alive()
    assert serve.api("GET", "/health")[0] == 200


def test_duplicate_uid_on_two_live_connections_gets_new_uid(serve: ServeProcess) -> None:
    uid = uuid.uuid4().bytes

    async def run() -> None:
        async with connect(serve.ws_url) as a, connect(serve.ws_url) as b:
            await a.send(frame(hello(uid, name="original")))
            await recv_reply(a)
            await b.send(frame(hello(uid, name="clone")))
            r = await recv_reply(b)
            new_uid = r.agent_identification.new_instance_uid
            assert len(new_uid) == 16 and new_uid != uid
            assert (new_uid[6] >> 4) == 7  # UUIDv7
            # the clone switches; the original keeps its identity and state
            await b.send(frame(hello(new_uid, name="clone")))
            await recv_reply(b)
            assert agent(serve, uid)["identifying_attributes"]["service.name"] == "original"
            assert agent(serve, new_uid)["identifying_attributes"]["service.name"] == "clone"
            status, audit = serve.api("GET", "/audit")
            assert any(e["action"] == "agent.new_instance_uid" for e in audit["entries"])

    asyncio.run(run())


def test_ws_authentication_before_upgrade(tmp_path) -> None:  # noqa: ANN001
    tokens = tmp_path / "agents.yaml"
    tokens.write_text("tokens:\n  - token: agent-secret\n", encoding="utf-8")
    sp = start_serve(tmp_path / "auth", "--agent-tokens", str(tokens))

    async def run() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(sp.ws_url):
                pass
        assert info.value.response.status_code == 401
        async with connect(sp.ws_url, additional_headers={"Authorization": "Bearer agent-secret"}) as ws:
            uid = os.urandom(16)
            await ws.send(frame(hello(uid)))
            assert (await recv_reply(ws)).instance_uid == uid

    try:
        asyncio.run(run())
    finally:
        sp.stop()


def test_reconnect_continuing_the_sequence_is_not_a_duplicate(serve: ServeProcess) -> None:
    uid = uuid.uuid4().bytes

    async def run() -> None:
        async with connect(serve.ws_url) as old:
            await old.send(frame(hello(uid, 0)))
            await recv_reply(old)
            # the agent reconnects before the server saw the old connection die: seq continues
            async with connect(serve.ws_url) as new:
                await new.send(frame(pb.AgentToServer(instance_uid=uid, sequence_num=1, capabilities=CAPS)))
                r = await recv_reply(new)
                assert not r.HasField("agent_identification")
                # the old connection closing now does not mark the agent offline: the new one owns it
                await old.close()
                await asyncio.sleep(0.3)
                a = await asyncio.to_thread(agent, serve, uid)
                assert a["status"] == "online" and a["connected"]

    asyncio.run(run())
    # both closed now: offline
    wait_for(lambda: agent(serve, uid)["status"] == "offline", 5)


def test_request_instance_uid_flag(serve: ServeProcess) -> None:
    async def run() -> None:
        async with connect(serve.ws_url) as ws:
            tmp = os.urandom(16)
            m = hello(tmp)
            m.flags = pb.AgentToServerFlags_RequestInstanceUid
            await ws.send(frame(m))
            r = await recv_reply(ws)
            assert len(r.agent_identification.new_instance_uid) == 16
            assert r.agent_identification.new_instance_uid != tmp

    asyncio.run(run())


def test_offer_lost_with_a_connection_is_sent_again_on_the_next(serve: ServeProcess) -> None:
    uid = uuid.uuid4().bytes

    async def run() -> None:
        status, cv = await asyncio.to_thread(
            serve.api,
            "POST",
            "/configs",
            {"name": "again", "files": {"": {"body": "x: 1", "content_type": "text/yaml"}}},
        )
        assert status == 201
        await asyncio.to_thread(
            serve.api,
            "POST",
            "/assignments",
            {"config": "again", "version": None, "selector": 'team="again"'},
        )
        async with connect(serve.ws_url) as ws:
            await ws.send(frame(hello(uid, 0, team="again")))
            first = await recv_reply(ws)
            assert first.remote_config.config_hash.hex() == cv["hash"]
            # the agent dies before applying it; on the same connection the offer is not repeated
            await ws.send(frame(pb.AgentToServer(instance_uid=uid, sequence_num=1, capabilities=CAPS)))
            assert not (await recv_reply(ws)).HasField("remote_config")
        async with connect(serve.ws_url) as ws:
            await ws.send(frame(pb.AgentToServer(instance_uid=uid, sequence_num=2, capabilities=CAPS)))
            again = await recv_reply(ws)
            assert again.remote_config.config_hash.hex() == cv["hash"]

    asyncio.run(run())
