"""The protocol core, without sockets: every rule of the issue's Protocol list."""

from __future__ import annotations

import copy
import uuid

from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.core import AgentState, Desired, Settings, process
from otelcockpit.opamp_server.proto import opamp_pb2 as pb

UID = bytes(range(16))
BASE_CAPS = core.REPORTS_STATUS | core.REPORTS_HEARTBEAT
RC_CAPS = BASE_CAPS | core.ACCEPTS_REMOTE_CONFIG | core.REPORTS_REMOTE_CONFIG


def desc(**attrs: str) -> pb.AgentDescription:
    d = pb.AgentDescription()
    for k, v in attrs.items():
        kv = d.identifying_attributes.add()
        kv.key = k
        kv.value.string_value = v
    return d


def msg(seq: int = 0, caps: int = BASE_CAPS, **fields: object) -> pb.AgentToServer:
    m = pb.AgentToServer(instance_uid=UID, sequence_num=seq, capabilities=caps)
    for k, v in fields.items():
        if k == "disconnect":
            m.agent_disconnect.SetInParent()
        else:
            getattr(m, k).CopyFrom(v)
    return m


def full(seq: int = 0, caps: int = BASE_CAPS, **extra: object) -> pb.AgentToServer:
    return msg(seq, caps, agent_description=desc(**{"service.name": "svc"}), **extra)


def desired(body: bytes = b"receivers: {}", version: int = 1) -> Desired:
    cmap = pb.AgentConfigMap()
    cmap.config_map[""].body = body
    cmap.config_map[""].content_type = "text/yaml"
    h = core.config_hash({"": (body, "text/yaml")})
    return Desired("base", version, h, cmap)


def rcs(h: bytes, status: int, error: str = "") -> pb.RemoteConfigStatus:
    return pb.RemoteConfigStatus(last_remote_config_hash=h, status=status, error_message=error)


def known(caps: int = BASE_CAPS, seq: int = 5, **kw: object) -> AgentState:
    s = AgentState(uid=UID, first_seen=0.0, last_seen=100.0, seq=seq, capabilities=caps, description=desc())
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_capabilities_and_uid_on_every_reply() -> None:
    replies = [
        process(None, full(), 1.0).reply,
        process(known(), msg(6), 101.0).reply,
        process(known(), msg(9), 101.0).reply,
        process(known(), msg(6, disconnect=True), 101.0).reply,
        process(known(RC_CAPS, desired=desired()), msg(6, RC_CAPS), 101.0).reply,
        process(known(BASE_CAPS | core.ACCEPTS_RESTART_COMMAND, pending_restart=True), msg(6), 101.0).reply,
    ]
    for r in replies:
        assert r.capabilities == core.SERVER_CAPABILITIES
        assert r.capabilities & pb.ServerCapabilities_AcceptsStatus
        assert r.instance_uid == UID


def test_unknown_agent_with_partial_report_asks_for_full_state() -> None:
    out = process(None, msg(0), 1.0)  # no description
    assert out.reply.flags & core.REPORT_FULL_STATE
    assert out.is_new and "new" in out.changed
    out = process(None, full(0, BASE_CAPS | core.REPORTS_HEALTH), 1.0)  # health promised but missing
    assert out.reply.flags & core.REPORT_FULL_STATE


def test_unknown_agent_with_full_report_is_not_asked_again() -> None:
    out = process(None, full(0), 1.0)
    assert not out.reply.flags & core.REPORT_FULL_STATE
    assert out.state is not None and out.state.attributes == {"service.name": "svc"}


def test_sequence_gap_and_duplicate_ask_for_full_state() -> None:
    assert not process(known(seq=5), msg(6), 200.0).reply.flags & core.REPORT_FULL_STATE
    assert process(known(seq=5), msg(8), 200.0).reply.flags & core.REPORT_FULL_STATE  # gap
    assert process(known(seq=5), msg(5), 200.0).reply.flags & core.REPORT_FULL_STATE  # duplicate (retry)


def test_full_state_request_is_rate_limited_per_agent() -> None:
    settings = Settings(full_state_min_interval=10.0)
    first = process(known(seq=5), msg(9), 200.0, settings=settings)
    assert first.reply.flags & core.REPORT_FULL_STATE
    again = process(first.state, msg(20), 205.0, settings=settings)
    assert not again.reply.flags & core.REPORT_FULL_STATE  # within 10 s: loop protection
    later = process(again.state, msg(40), 211.0, settings=settings)
    assert later.reply.flags & core.REPORT_FULL_STATE


def test_never_full_state_in_reply_to_disconnect() -> None:
    assert not process(None, msg(0, disconnect=True), 1.0).reply.flags & core.REPORT_FULL_STATE
    assert not process(known(seq=5), msg(50, disconnect=True), 200.0).reply.flags & core.REPORT_FULL_STATE


def test_disconnect_marks_offline_at_once() -> None:
    out = process(known(seq=5), msg(6, disconnect=True), 200.0)
    assert out.went_offline and out.state is not None and not out.state.online
    assert "online" in out.changed
    back = process(out.state, msg(7), 300.0)
    assert back.state is not None and back.state.online


def test_silent_for_three_intervals_goes_offline() -> None:
    s = known(seq=5)  # last_seen 100
    assert not core.expired(s, 100 + 3 * 30, 30, live_connection=False)
    assert core.expired(s, 100 + 3 * 30 + 1, 30, live_connection=False)
    # a WebSocket agent without ReportsHeartbeat stays online while its connection lives
    quiet = known(core.REPORTS_STATUS, seq=5)
    assert not core.expired(quiet, 10_000, 30, live_connection=True)
    assert core.expired(quiet, 10_000, 30, live_connection=False)
    assert not core.expired(core.mark_offline(s), 10_000, 30, live_connection=False)


def test_remote_config_only_to_agents_that_accept_it() -> None:
    d = desired()
    no = process(known(BASE_CAPS | core.REPORTS_REMOTE_CONFIG, desired=d), msg(6), 200.0)
    assert not no.reply.HasField("remote_config")
    yes = process(known(RC_CAPS, desired=d), msg(6, RC_CAPS), 200.0)
    assert yes.reply.HasField("remote_config")
    assert yes.reply.remote_config.config_hash == d.hash
    assert yes.reply.remote_config.config.config_map[""].body == b"receivers: {}"
    assert yes.state is not None and yes.state.offered_hash == d.hash and "offered" in yes.changed


def test_no_offer_when_reported_hash_matches() -> None:
    d = desired()
    s = known(RC_CAPS, desired=d, remote_config_status=rcs(d.hash, pb.RemoteConfigStatuses_APPLIED))
    assert not process(s, msg(6, RC_CAPS), 200.0).reply.HasField("remote_config")
    # also when the agent reports the hash in the same message
    s2 = known(RC_CAPS, desired=d)
    out = process(
        s2, msg(6, RC_CAPS, remote_config_status=rcs(d.hash, pb.RemoteConfigStatuses_APPLYING)), 200.0
    )
    assert not out.reply.HasField("remote_config")


def test_outstanding_offer_is_not_resent_until_it_looks_lost() -> None:
    d = desired()
    settings = Settings(reoffer_after=60.0)
    first = process(known(RC_CAPS, desired=d), msg(6, RC_CAPS), 200.0, settings=settings)
    assert first.reply.HasField("remote_config")
    second = process(first.state, msg(7, RC_CAPS), 210.0, settings=settings)
    assert not second.reply.HasField("remote_config")
    lost = process(second.state, msg(8, RC_CAPS), 261.0, settings=settings)
    assert lost.reply.HasField("remote_config")
    # an agent that never reports status is never re-sent the same hash
    blind_caps = BASE_CAPS | core.ACCEPTS_REMOTE_CONFIG
    b1 = process(known(blind_caps, desired=d), msg(6, blind_caps), 200.0)
    assert b1.reply.HasField("remote_config")
    assert not process(b1.state, msg(7, blind_caps), 10_000.0).reply.HasField("remote_config")


def test_a_stuck_apply_is_reoffered_once_on_a_new_connection() -> None:
    """An agent that lost its apply with its connection reconnects still reporting APPLYING for the
    config it was offered long ago: that config goes once more, and never a third time."""
    d = desired()
    applying = rcs(d.hash, pb.RemoteConfigStatuses_APPLYING)
    s = known(RC_CAPS, desired=d, offered_hash=None, offered_at=100.0, remote_config_status=applying)
    # without the hub's mark (same connection, or not long enough): nothing
    assert not process(s, msg(6, RC_CAPS, remote_config_status=applying), 200.0).reply.HasField("remote_config")
    s.stuck_reoffer = True
    again = process(s, msg(6, RC_CAPS, remote_config_status=applying), 200.0)
    assert again.reply.HasField("remote_config") and again.reply.remote_config.config_hash == d.hash
    assert again.state is not None and again.state.reoffered_hash == d.hash
    assert not again.state.stuck_reoffer and "offered" in again.changed
    again.state.offered_hash = None
    again.state.stuck_reoffer = True
    third = process(again.state, msg(7, RC_CAPS, remote_config_status=applying), 400.0)
    assert not third.reply.HasField("remote_config")
    # an agent that reconnects reporting the apply's result is not offered anything
    done = known(RC_CAPS, desired=d, offered_at=100.0, stuck_reoffer=True)
    out = process(done, msg(6, RC_CAPS, remote_config_status=rcs(d.hash, pb.RemoteConfigStatuses_APPLIED)), 500.0)
    assert not out.reply.HasField("remote_config")


def test_failed_hash_is_never_reoffered() -> None:
    d = desired()
    s = known(RC_CAPS, desired=d, offered_hash=d.hash, offered_at=100.0)
    failed = process(
        s,
        msg(6, RC_CAPS, remote_config_status=rcs(d.hash, pb.RemoteConfigStatuses_FAILED, "bad yaml")),
        200.0,
    )
    assert failed.state is not None and failed.state.failed_hashes == {d.hash: "bad yaml"}
    assert failed.history == (d.hash, "FAILED", "bad yaml")
    assert "failed_hashes" in failed.changed
    # the supervisor rolls back and reports APPLIED with the previous hash: B must not be re-offered
    old = b"\x01" * 32
    rolled = process(
        failed.state,
        msg(7, RC_CAPS, remote_config_status=rcs(old, pb.RemoteConfigStatuses_APPLIED)),
        10_000.0,
    )
    assert not rolled.reply.HasField("remote_config")
    assert not process(rolled.state, msg(8, RC_CAPS), 20_000.0).reply.HasField("remote_config")
    # a new version (another hash) is offered
    fixed = copy.copy(rolled.state)
    assert fixed is not None
    fixed.desired = desired(b"receivers: {otlp: {}}", 2)
    assert process(fixed, msg(9, RC_CAPS), 20_001.0).reply.HasField("remote_config")


def test_restart_command_is_sent_alone() -> None:
    caps = RC_CAPS | core.ACCEPTS_RESTART_COMMAND
    s = known(caps, seq=5, pending_restart=True, desired=desired())
    out = process(s, msg(9, caps), 200.0)  # a gap and a pending offer too
    r = out.reply
    assert r.HasField("command") and r.command.type == pb.CommandType_Restart
    fields = {f.name for f, _ in r.ListFields()}
    assert fields == {"instance_uid", "capabilities", "command"}
    assert out.state is not None and not out.state.pending_restart
    # the offer follows on the next message
    assert process(out.state, msg(10, caps), 201.0).reply.HasField("remote_config")


def test_restart_not_sent_without_capability() -> None:
    out = process(known(BASE_CAPS, pending_restart=True), msg(6), 200.0)
    assert not out.reply.HasField("command")


def test_duplicate_instance_uid_gets_a_new_one() -> None:
    s = known(seq=5)
    new_uid = b"\x07" * 16
    out = process(s, msg(0), 200.0, transport="ws", new_uid=new_uid)
    assert out.reply.agent_identification.new_instance_uid == new_uid
    assert out.reply.capabilities == core.SERVER_CAPABILITIES
    assert out.state is s and out.changed == set()


def test_bad_instance_uid_is_bad_request_alone() -> None:
    for uid, words in ((b"", "missing"), (b"abc", "got 3")):
        m = pb.AgentToServer(instance_uid=uid, capabilities=BASE_CAPS)
        out = process(None, m, 1.0)
        assert out.error is not None and words in out.error
        r = out.reply
        assert r.error_response.type == pb.ServerErrorResponseType_BadRequest
        assert {f.name for f, _ in r.ListFields()} <= {"instance_uid", "error_response"}
        assert out.state is None


def test_too_many_attributes_is_bad_request() -> None:
    d = pb.AgentDescription()
    for i in range(50):
        kv = d.non_identifying_attributes.add()
        kv.key = f"k{i}"
        kv.value.int_value = i
    out = process(None, msg(0, agent_description=d), 1.0, settings=Settings(max_attributes=10))
    assert out.reply.HasField("error_response") and "50 attributes" in out.error


def test_input_state_is_not_modified() -> None:
    s = known(RC_CAPS, desired=desired())
    before = copy.deepcopy(s)
    process(s, msg(9, RC_CAPS, remote_config_status=rcs(b"x" * 32, pb.RemoteConfigStatuses_FAILED)), 500.0)
    assert s == before


def test_pending_push_for_websocket() -> None:
    d = desired()
    out = core.pending(known(RC_CAPS, desired=d), 200.0)
    assert out.reply is not None and out.reply.remote_config.config_hash == d.hash
    assert out.reply.capabilities == core.SERVER_CAPABILITIES
    assert core.pending(out.state, 201.0).reply is None  # nothing new
    assert core.pending(known(BASE_CAPS), 200.0).reply is None


def test_hash_only_available_components_asks_for_the_map() -> None:
    caps = BASE_CAPS | core.REPORTS_AVAILABLE_COMPONENTS
    h = uuid.uuid4().bytes  # a set no agent reported before
    out = process(known(caps), msg(6, caps, available_components=pb.AvailableComponents(hash=h)), 200.0)
    assert out.reply.flags & core.REPORT_AVAILABLE_COMPONENTS
    ac = pb.AvailableComponents(hash=h)
    ac.components["receivers"].metadata.add(key="x")
    out2 = process(out.state, msg(7, caps, available_components=ac), 201.0)
    assert not out2.reply.flags & core.REPORT_AVAILABLE_COMPONENTS
    out3 = process(out2.state, msg(8, caps, available_components=pb.AvailableComponents(hash=h)), 202.0)
    assert not out3.reply.flags & core.REPORT_AVAILABLE_COMPONENTS
    assert out3.state is not None and len(out3.state.available_components.components) == 1
    # another agent that reports the same hash is not asked for the map: the hash names the set
    other = known(caps)
    other.uid = b"o" * 16
    out4 = process(other, msg(6, caps, available_components=pb.AvailableComponents(hash=h)), 203.0)
    assert not out4.reply.flags & core.REPORT_AVAILABLE_COMPONENTS
    assert out4.state.available_components is out2.state.available_components


def test_agents_reporting_one_component_set_share_one_copy() -> None:
    """A fleet runs a few distributions: every agent that reports a set with the same hash holds the
    same object (not its own 50 KB copy), and its names are worked out once."""
    caps = BASE_CAPS | core.REPORTS_AVAILABLE_COMPONENTS
    run = uuid.uuid4().bytes
    states = []
    for seq, uid in ((1, b"a" * 16), (2, b"b" * 16)):
        ac = pb.AvailableComponents(hash=b"contrib-0.120" + run)
        ac.components["receivers"].sub_component_map["otlp"].metadata.add(key="x")
        ac.components["exporters"].sub_component_map["kafka"].metadata.add(key="x")
        state = known(caps)
        state.uid = uid
        out = process(state, msg(6, caps, available_components=ac), 200.0 + seq)
        states.append(out.state)
    assert states[0].available_components is states[1].available_components
    assert states[0].component_names == states[1].component_names
    assert "exporter:kafka" in states[0].component_names
    other = pb.AvailableComponents(hash=b"core-0.120" + run)
    other.components["receivers"].sub_component_map["otlp"].metadata.add(key="x")
    out = process(known(caps), msg(6, caps, available_components=other), 210.0)
    assert out.state.available_components is not states[0].available_components
    assert "exporter:kafka" not in out.state.component_names


def test_heartbeat_changes_nothing_stored() -> None:
    out = process(known(seq=5), msg(6), 200.0)
    assert out.changed == set()
    assert out.state is not None and out.state.last_seen == 200.0 and out.state.seq == 6


def test_config_hash_is_canonical() -> None:
    a = core.config_hash({"a": (b"1", "text/yaml"), "b": (b"2", "text/yaml")})
    b = core.config_hash({"b": (b"2", "text/yaml"), "a": (b"1", "text/yaml")})
    assert a == b and len(a) == 32
    # length prefixes keep boundaries apart
    assert core.config_hash({"a": (b"bc", "")}) != core.config_hash({"ab": (b"c", "")})
    assert core.config_hash({"a": (b"x", "text/yaml")}) != core.config_hash({"a": (b"x", "application/json")})


def test_desired_resolved_from_attributes() -> None:
    d = desired()
    seen: list[dict[str, str]] = []

    def resolve(attrs: dict[str, str]) -> Desired | None:
        seen.append(attrs)
        return d if attrs.get("service.name") == "svc" else None

    out = process(None, full(0, RC_CAPS, remote_config_status=rcs(b"", 0)), 1.0, resolve=resolve)
    assert seen == [{"service.name": "svc"}]
    assert out.state is not None and out.state.desired is d
    assert out.reply.HasField("remote_config")


def test_heartbeat_interval_offered_once_to_agents_that_report_heartbeats() -> None:
    settings = Settings(heartbeat_seconds=7)
    first = process(None, full(), 1.0, settings=settings)
    cs = first.reply.connection_settings
    assert cs.opamp.heartbeat_interval_seconds == 7 and cs.hash == core.heartbeat_offer_hash(7)
    assert first.reply.capabilities & pb.ServerCapabilities_OffersConnectionSettings
    # once: the next messages of this connection do not carry it again, and it costs no write
    second = process(first.state, msg(1), 2.0, settings=settings)
    assert not second.reply.HasField("connection_settings") and second.changed == set()
    # a restarted agent (its sequence starts again) is offered it again
    again = process(second.state, full(0), 3.0, settings=settings)
    assert again.reply.connection_settings.opamp.heartbeat_interval_seconds == 7


def test_heartbeat_offer_never_reaches_agents_that_would_reconnect_or_ignore_it() -> None:
    settings = Settings(heartbeat_seconds=7)
    # no ReportsHeartbeat: nothing to tell
    assert not process(None, full(caps=core.REPORTS_STATUS), 1.0, settings=settings).reply.HasField("connection_settings")
    # AcceptsOpAMPConnectionSettings (the collector's supervisor): any opamp offer is a reconnect order
    caps = BASE_CAPS | core.ACCEPTS_OPAMP_CONNECTION_SETTINGS
    assert not process(None, full(caps=caps), 1.0, settings=settings).reply.HasField("connection_settings")
    # switched off
    off = Settings(heartbeat_seconds=7, offer_heartbeat=False)
    assert not process(None, full(), 1.0, settings=off).reply.HasField("connection_settings")
    # an agent that reports it applied these settings is not offered them again
    applied = pb.ConnectionSettingsStatus(
        last_connection_settings_hash=core.heartbeat_offer_hash(7), status=pb.ConnectionSettingsStatuses_APPLIED
    )
    assert not process(None, full(connection_settings_status=applied), 1.0, settings=settings).reply.HasField(
        "connection_settings"
    )


def test_heartbeat_offer_waits_while_a_command_goes_alone() -> None:
    caps = BASE_CAPS | core.ACCEPTS_RESTART_COMMAND
    s = known(caps=caps, pending_restart=True)
    out = process(s, msg(6, caps), 200.0, settings=Settings(heartbeat_seconds=7))
    assert out.reply.HasField("command") and not out.reply.HasField("connection_settings")
    nxt = process(out.state, msg(7, caps), 201.0, settings=Settings(heartbeat_seconds=7))
    assert nxt.reply.connection_settings.opamp.heartbeat_interval_seconds == 7


def test_agent_kind_collector_or_sdk() -> None:
    def state(caps: int = RC_CAPS | core.REPORTS_EFFECTIVE_CONFIG, body: bytes | None = None, **attrs: str) -> AgentState:
        d = pb.AgentDescription()
        for k, v in attrs.items():
            kv = (d.identifying_attributes if k == "service_name" else d.non_identifying_attributes).add()
            kv.key = "service.name" if k == "service_name" else k.replace("_", ".")
            kv.value.string_value = v
        s = AgentState(uid=UID, first_seen=0.0, last_seen=0.0, capabilities=caps, description=d)
        if body is not None:
            s.effective_config = pb.EffectiveConfig()
            s.effective_config.config_map.config_map[""].body = body
        return s

    sdk, col = core.AGENT_SDK, core.AGENT_COLLECTOR
    # SDK resource attributes, as the spec's guidelines have SDK agents send them
    assert core.agent_kind(state(service_name="checkout", telemetry_sdk_language="java")) == sdk
    assert core.agent_kind(state(service_name="cart", process_runtime_name="CPython")) == sdk
    # a collector's effective config or distribution name wins over SDK-looking attributes
    yaml = b"receivers:\n  otlp: {}\nexporters:\n  debug: {}\nservice:\n  pipelines: {}\n"
    assert core.agent_kind(state(body=yaml, service_name="gw", telemetry_sdk_language="go")) == col
    alloy = b'otelcol.receiver.otlp "default" {\n  grpc {}\n}\n'
    assert core.agent_kind(state(body=alloy, service_name="edge")) == col
    assert core.agent_kind(state(service_name="otelcol-contrib", telemetry_sdk_language="go")) == col
    # neither reports nor takes a config: nothing here manages a pipeline on it
    assert core.agent_kind(state(caps=BASE_CAPS, service_name="app")) == sdk
    # otherwise a collector (the opamp extension alone, a supervisor)
    assert core.agent_kind(state(service_name="edge")) == col
    # memoised on the objects it was computed from; a new description is looked at again
    s = state(service_name="edge")
    assert core.agent_kind(s) == col
    s.description = state(service_name="x", telemetry_sdk_name="opentelemetry").description
    assert core.agent_kind(s) == sdk
