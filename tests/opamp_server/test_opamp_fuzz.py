"""Hypothesis: mutated AgentToServer bytes fed to the protocol core never break it."""

from __future__ import annotations

from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.proto import opamp_pb2 as pb


def _seed() -> bytes:
    m = pb.AgentToServer(instance_uid=bytes(range(16)), sequence_num=3, capabilities=0x3807)
    kv = m.agent_description.identifying_attributes.add()
    kv.key = "service.name"
    kv.value.string_value = "svc"
    m.health.healthy = True
    m.health.component_health_map["pipeline:traces"].healthy = False
    m.effective_config.config_map.config_map[""].body = b"receivers: {}"
    m.remote_config_status.last_remote_config_hash = b"h" * 32
    m.remote_config_status.status = pb.RemoteConfigStatuses_FAILED
    m.available_components.hash = b"c"
    m.connection_settings_status.status = 1
    return m.SerializeToString()


SEED = _seed()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEED)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.booleans())
def test_mutated_bytes_never_break_the_core(data: bytes, known: bool) -> None:
    try:
        msg = pb.AgentToServer.FromString(data)
    except DecodeError:
        return  # the transport answers 400 for these
    state = None
    if known and len(msg.instance_uid) == 16:
        state = core.AgentState(uid=msg.instance_uid, first_seen=0.0, last_seen=1.0, seq=2)
    out = core.process(state, msg, 10.0, resolve=lambda attrs: None)
    reply = out.reply
    assert reply.instance_uid == msg.instance_uid
    if out.error is not None:
        assert reply.error_response.type == pb.ServerErrorResponseType_BadRequest
        assert not reply.HasField("remote_config")
    else:
        assert reply.capabilities == core.SERVER_CAPABILITIES
        assert out.state is not None and out.state.uid == msg.instance_uid
    reply.SerializeToString()  # always encodable
