"""The admin API's agent JSON: the fast cached text form equals the plain dict form, and stays fresh."""

from __future__ import annotations

import json

from otelcockpit.opamp_server.core import AgentState, Desired, process
from otelcockpit.opamp_server.proto import opamp_pb2 as pb
from otelcockpit.opamp_server.views import agent_json, agent_text


def _state() -> AgentState:
    s = AgentState(uid=b"\x01" * 16, first_seen=1.5, last_seen=2.25, seq=3, capabilities=0x3007)
    s.description = pb.AgentDescription()
    s.description.identifying_attributes.add(key="service.name").value.string_value = 'quote " and é'
    s.description.non_identifying_attributes.add(key="cores").value.int_value = 4
    s.health = pb.ComponentHealth(
        healthy=True, status="StatusOK", start_time_unix_nano=1_700_000_000_000_000_000
    )
    s.health.component_health_map["pipeline:traces"].component_health_map["receiver:otlp"].last_error = "boom"
    s.remote_config_status = pb.RemoteConfigStatus(
        last_remote_config_hash=b"\x02" * 32, status=3, error_message="e"
    )
    s.failed_hashes = {b"\x02" * 32: "e"}
    s.desired = Desired("base", 2, b"\x03" * 32, pb.AgentConfigMap())
    return s


def test_text_form_equals_dict_form() -> None:
    for s in (_state(), AgentState(uid=b"abc", first_seen=0.0, last_seen=0.0)):
        expected = agent_json(s, connected=True, heartbeat_seconds=30)
        assert json.loads(agent_text(s, connected=True, heartbeat_seconds=30)) == expected
        assert json.loads(agent_text(s, connected=True, heartbeat_seconds=30)) == expected  # from the cache
    d = agent_json(_state(), connected=False, heartbeat_seconds=30)
    assert d["instance_uid"] == "01010101-0101-0101-0101-010101010101"
    assert d["health"]["components"]["pipeline:traces"]["components"]["receiver:otlp"]["last_error"] == "boom"
    assert d["health"]["start_time"] == "2023-11-14T22:13:20Z"
    assert d["capabilities_decoded"] == [
        "ReportsStatus",
        "AcceptsRemoteConfig",
        "ReportsEffectiveConfig",
        "ReportsRemoteConfig",
        "ReportsHeartbeat",
    ]


def test_cached_fragments_follow_new_reports() -> None:
    s = _state()
    agent_text(s, connected=True, heartbeat_seconds=30)
    m = pb.AgentToServer(instance_uid=s.uid, sequence_num=4, capabilities=s.capabilities)
    m.health.healthy = False
    m.health.last_error = "down"
    m.agent_description.identifying_attributes.add(key="service.name").value.string_value = "renamed"
    out = process(s, m, 10.0)
    assert out.state is not None
    text = json.loads(agent_text(out.state, connected=True, heartbeat_seconds=30))
    assert text["health"]["last_error"] == "down" and text["health"]["healthy"] is False
    assert text["identifying_attributes"] == {"service.name": "renamed"}
    assert text == agent_json(out.state, connected=True, heartbeat_seconds=30)
    # the old state still renders its own data
    assert json.loads(agent_text(s, connected=True, heartbeat_seconds=30))["health"]["healthy"] is True
