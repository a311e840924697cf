"""The simulated agent against the real protocol core (no sockets), and the loopback guard."""

from __future__ import annotations

import pytest

from otelcockpit.errors import UsageError
from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.proto import opamp_pb2 as pb
from otelcockpit.simulate.agents import build_agents, check_server_url, make_profiles


def _desired(body: bytes = b"receivers: {otlp: {}}\n") -> core.Desired:
    cm = pb.AgentConfigMap()
    cm.config_map[""].body = body
    cm.config_map[""].content_type = "text/yaml"
    files = {"": (body, "text/yaml")}
    return core.Desired("base", 1, core.config_hash(files), cm)


def _drive(agent, state, desired, now=1000.0):
    """Send the agent's messages through core.process until nothing is left to send."""
    queue = [agent.full_state]
    sent = []
    while queue:
        build = queue.pop(0)
        msg = build()
        if msg is None:
            continue
        agent.stamp(msg)
        sent.append(msg)
        out = core.process(state, msg, now, transport="ws", resolve=lambda attrs: desired)
        state = out.state
        queue.extend(b for _, b in agent.handle(out.reply))
        now += 1.0
    return state, sent


def test_profiles_are_deterministic_and_realistic():
    a = make_profiles(50, seed=3)
    b = make_profiles(50, seed=3)
    c = make_profiles(50, seed=4)
    assert [p.uid for p in a] == [p.uid for p in b]
    assert [p.uid for p in a] != [p.uid for p in c]
    assert len({p.uid for p in a}) == 50
    for p in a:
        assert len(p.uid) == 16
        for key in ("service.name", "service.version", "host.name", "os.type", "host.arch", "env", "region"):
            assert p.attr(key), key
    assert {p.health_kind for p in make_profiles(400, 1)} == {"healthy", "degraded", "unhealthy"}


def test_full_state_is_accepted_and_config_is_applied():
    agent = build_agents(1, 7, apply_delay=0.0)[0]
    desired = _desired()
    state, sent = _drive(agent, None, desired)
    first = sent[0]
    assert first.sequence_num == 0 and first.HasField("agent_description") and first.HasField("health")
    assert first.capabilities & pb.AgentCapabilities_AcceptsRemoteConfig
    statuses = [m.remote_config_status.status for m in sent[1:] if m.HasField("remote_config_status")]
    assert statuses == [pb.RemoteConfigStatuses_APPLYING, pb.RemoteConfigStatuses_APPLIED]
    assert [m.sequence_num for m in sent] == list(range(len(sent)))
    assert state.reported_hash == desired.hash
    assert agent.effective[""][0] == b"receivers: {otlp: {}}\n"
    # Nothing more is offered: a heartbeat gets a plain ack.
    hb = agent.stamp(agent.heartbeat_message())
    out = core.process(state, hb, 2000.0, transport="ws", resolve=lambda attrs: desired)
    assert not out.reply.HasField("remote_config") and not out.reply.flags


def test_failing_agents_report_failed_and_are_not_reoffered():
    agent = build_agents(1, 7, fail_rate=1.0, apply_delay=0.0)[0]
    desired = _desired()
    state, sent = _drive(agent, None, desired)
    last = [m for m in sent if m.HasField("remote_config_status")][-1].remote_config_status
    assert last.status == pb.RemoteConfigStatuses_FAILED and last.error_message
    assert desired.hash in state.failed_hashes
    assert b"otlp: {}" not in agent.effective[""][0]  # the failed config was not taken


def test_unparsable_yaml_fails_with_the_parse_error():
    agent = build_agents(1, 7, apply_delay=0.0)[0]
    state, sent = _drive(agent, None, _desired(b"receivers: [unclosed\n"))
    last = [m for m in sent if m.HasField("remote_config_status")][-1].remote_config_status
    assert last.status == pb.RemoteConfigStatuses_FAILED
    assert "cannot parse" in last.error_message


def test_fail_rate_is_deterministic_per_agent_and_hash():
    agents = build_agents(200, 5, fail_rate=0.25)
    again = build_agents(200, 5, fail_rate=0.25)
    h = b"\x01" * 32
    picks = [a.will_fail(h) for a in agents]
    assert picks == [a.will_fail(h) for a in again]
    assert 20 <= sum(picks) <= 80


def test_report_full_state_restart_and_new_identity():
    agent = build_agents(1, 9)[0]
    reply = pb.ServerToAgent(instance_uid=agent.uid, flags=pb.ServerToAgentFlags_ReportFullState)
    [(delay, build)] = agent.handle(reply)
    assert build().HasField("agent_description")
    reply = pb.ServerToAgent(instance_uid=agent.uid)
    reply.command.type = pb.CommandType_Restart
    [(_, build)] = agent.handle(reply)
    assert build().HasField("health") and agent.restarts == 1
    new = bytes(range(16))
    reply = pb.ServerToAgent(instance_uid=agent.uid)
    reply.agent_identification.new_instance_uid = new
    agent.handle(reply)
    assert agent.stamp(agent.heartbeat_message()).instance_uid == new


@pytest.mark.parametrize(
    "url,transport,expected",
    [
        ("http://127.0.0.1:4320", "http", "http://127.0.0.1:4320/v1/opamp"),
        ("http://127.0.0.1:4320/v1/opamp", "ws", "ws://127.0.0.1:4320/v1/opamp"),
        ("ws://localhost:9/x", "http", "http://localhost:9/x"),
        ("http://[::1]:4320", "ws", "ws://[::1]:4320/v1/opamp"),
        ("http://127.8.9.10:1", "http", "http://127.8.9.10:1/v1/opamp"),
    ],
)
def test_server_url_loopback(url, transport, expected):
    assert check_server_url(url, transport) == expected


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:4320", "http://example.com", "ws://0.0.0.0:4320", "ftp://127.0.0.1"]
)
def test_server_url_refuses_non_loopback(url):
    with pytest.raises(UsageError):
        check_server_url(url, "http")
