"""The OpAMP protocol core: a pure function of (stored agent state, AgentToServer, now).

``process()`` takes the agent's stored state (or ``None`` for an agent never seen), one decoded
``AgentToServer`` and the current time, and returns the new state, the ``ServerToAgent`` to answer
with, the names of the stored parts that changed (empty for a plain heartbeat), and an optional
remote-config history entry. It does no I/O: no sockets, no SQLite, no clock, no randomness (a new
instance UID for a duplicate is handed in by the caller). ``pending()`` computes what the server has
to push to an agent without an incoming message (WebSocket push after a config or restart request).

Rules (OpAMP specification, research notes sections 3-5):
- ``capabilities`` and ``instance_uid`` are set on every reply.
- ``instance_uid`` must be 16 bytes, else the reply is ``error_response`` BAD_REQUEST (nothing else set).
- An unknown agent whose first message is not a full report, or a ``sequence_num`` that is not the
  previous plus one, asks for ``ReportFullState``; never in reply to ``agent_disconnect``, and at most
  once per ``full_state_min_interval`` per agent (the Python client retries with the same number and
  skips numbers after a retry).
- Remote config goes only to agents with AcceptsRemoteConfig, only when the reported
  ``last_remote_config_hash`` differs from the desired hash, never with a hash that FAILED on that
  agent, and is not re-sent while an offer of the same hash is outstanding (an identical re-send makes
  the collector supervisor report APPLYING forever).
- A restart command is sent alone (with ``instance_uid`` and ``capabilities``), only to agents with
  AcceptsRestartCommand.
- The server's heartbeat interval is offered (``connection_settings.opamp.heartbeat_interval_seconds``,
  always explicit) once per connection to agents that report heartbeats and do not accept OpAMP
  connection settings (see ``wants_heartbeat_offer``); never alongside a command.
- ``agent_disconnect`` marks the agent offline at once; ``expired()`` tells when an agent silent for 3
  heartbeat or poll intervals goes offline.
- The same instance_uid on a second live connection gets ``agent_identification.new_instance_uid``.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from otelcockpit.opamp_server.proto import opamp_pb2 as pb

# Agent capability bits.
REPORTS_STATUS = pb.AgentCapabilities_ReportsStatus
ACCEPTS_REMOTE_CONFIG = pb.AgentCapabilities_AcceptsRemoteConfig
REPORTS_EFFECTIVE_CONFIG = pb.AgentCapabilities_ReportsEffectiveConfig
REPORTS_PACKAGE_STATUSES = pb.AgentCapabilities_ReportsPackageStatuses
ACCEPTS_RESTART_COMMAND = pb.AgentCapabilities_AcceptsRestartCommand
REPORTS_HEALTH = pb.AgentCapabilities_ReportsHealth
REPORTS_REMOTE_CONFIG = pb.AgentCapabilities_ReportsRemoteConfig
REPORTS_HEARTBEAT = pb.AgentCapabilities_ReportsHeartbeat
REPORTS_AVAILABLE_COMPONENTS = pb.AgentCapabilities_ReportsAvailableComponents
ACCEPTS_OPAMP_CONNECTION_SETTINGS = pb.AgentCapabilities_AcceptsOpAMPConnectionSettings

AGENT_CAPABILITY_NAMES: tuple[tuple[int, str], ...] = tuple(
    (value, name.removeprefix("AgentCapabilities_"))
    for name, value in pb.AgentCapabilities.items()
    if value != 0
)

SERVER_CAPABILITIES = (
    pb.ServerCapabilities_AcceptsStatus
    | pb.ServerCapabilities_OffersRemoteConfig
    | pb.ServerCapabilities_AcceptsEffectiveConfig
    | pb.ServerCapabilities_OffersConnectionSettings
)

REPORT_FULL_STATE = pb.ServerToAgentFlags_ReportFullState
REPORT_AVAILABLE_COMPONENTS = pb.ServerToAgentFlags_ReportAvailableComponents

STATUS_NAMES = {
    pb.RemoteConfigStatuses_UNSET: "UNSET",
    pb.RemoteConfigStatuses_APPLIED: "APPLIED",
    pb.RemoteConfigStatuses_APPLYING: "APPLYING",
    pb.RemoteConfigStatuses_FAILED: "FAILED",
}

UID_LENGTH = 16
MAX_ATTRIBUTES = 10_000
MAX_ATTRIBUTE_KEY = 1024  # bytes of one attribute's key
MAX_ATTRIBUTE_VALUE = 64 * 1024  # bytes of one attribute's value as text
DEFAULT_HEARTBEAT_SECONDS = 30
OFFLINE_AFTER_INTERVALS = 3

# Names of the stored parts, used as the "changed" set (the store writes only those columns).
PARTS = (
    "description",
    "health",
    "effective_config",
    "remote_config_status",
    "package_statuses",
    "custom_capabilities",
    "available_components",
    "connection_settings_status",
)


def decode_capabilities(caps: int) -> list[str]:
    return [name for bit, name in AGENT_CAPABILITY_NAMES if caps & bit]


def config_hash(files: Mapping[str, tuple[bytes, str]]) -> bytes:
    """sha256 over a canonical serialisation: sorted names; length-prefixed name, body, content type."""
    h = hashlib.sha256()
    for name in sorted(files):
        body, content_type = files[name]
        for part in (name.encode("utf-8"), body, content_type.encode("utf-8")):
            h.update(struct.pack(">Q", len(part)))
            h.update(part)
    return h.digest()


def effective_hash(ec: pb.EffectiveConfig) -> bytes:
    files = {n: (f.body, f.content_type) for n, f in ec.config_map.config_map.items()}
    return config_hash(files) if files else b""


# AvailableComponents by their hash, shared by every agent that reports the same set (a fleet runs a
# few distributions and versions): one copy of a contrib collector's ~160 components, not one per agent
# (53 KB each in memory). The spec's hash names the set: "if the components change, the hash changes".
_COMPONENT_SETS: dict[bytes, pb.AvailableComponents] = {}
_COMPONENT_NAMES: dict[bytes, frozenset[str]] = {}
COMPONENT_SETS_MAX = 4096


def shared_components(ac: pb.AvailableComponents) -> pb.AvailableComponents:
    """The one copy of a component set with this hash; for a hash alone, the set when one is known
    (the spec's hash names the set, so an agent that reports a known hash need not send the map). A
    set without a hash is not shared."""
    if not ac.hash:
        return ac
    held = _COMPONENT_SETS.get(ac.hash)
    if held is not None:
        return held
    if not ac.components:
        return ac
    if len(_COMPONENT_SETS) >= COMPONENT_SETS_MAX:  # hostile agents inventing sets: start over
        _COMPONENT_SETS.clear()
        _COMPONENT_NAMES.clear()
    copy = pb.AvailableComponents()
    copy.CopyFrom(ac)  # not a view into the agent's whole message (that would keep it alive)
    _COMPONENT_SETS[ac.hash] = copy
    return copy


def came_up_record(s: AgentState, now: float) -> dict[str, Any]:
    """What an agent reports about its config as it (re)starts: its remote config status, the hash of
    its effective config, and what was assigned to it then."""
    rcs = s.remote_config_status
    d = s.desired
    return {
        "at": now,
        "status": STATUS_NAMES.get(rcs.status, str(rcs.status)) if rcs is not None else "",
        "hash": rcs.last_remote_config_hash.hex() if rcs is not None else "",
        "error": rcs.error_message if rcs is not None else "",
        "effective_hash": s.effective_hash.hex(),
        "assigned_hash": d.hash.hex() if d is not None else "",
        "assigned": f"{d.name}@v{d.version}" if d is not None else "",
    }


@dataclass(frozen=True, slots=True)
class Desired:
    """The config version an agent should run (resolved from the assignments)."""

    name: str
    version: int
    hash: bytes
    config: pb.AgentConfigMap
    # The components it uses ("exporter:kafka"): never offered to an agent whose AvailableComponents
    # lack one of them (it would only fail there).
    needs: frozenset[str] = frozenset()


@dataclass
class AgentState:
    uid: bytes
    first_seen: float
    last_seen: float
    transport: str = "http"
    seq: int = 0
    capabilities: int = 0
    online: bool = True
    description: pb.AgentDescription | None = None
    health: pb.ComponentHealth | None = None
    effective_config: pb.EffectiveConfig | None = None
    remote_config_status: pb.RemoteConfigStatus | None = None
    package_statuses: pb.PackageStatuses | None = None
    custom_capabilities: pb.CustomCapabilities | None = None
    available_components: pb.AvailableComponents | None = None
    connection_settings_status: pb.ConnectionSettingsStatus | None = None
    full_state_requested_at: float = 0.0
    desired: Desired | None = None
    offered_hash: bytes | None = None
    offered_at: float = 0.0
    failed_hashes: dict[bytes, str] = field(default_factory=dict)
    pending_restart: bool = False
    # Set by the hub for one message of an agent that reconnects still reporting APPLYING for the
    # config it was offered long ago (its apply was lost): that config is offered once more. The
    # hash re-offered that way is remembered, so it happens once per hash (in memory only).
    stuck_reoffer: bool = False
    reoffered_hash: bytes | None = None
    # The hash of the heartbeat interval offered on the agent's current connection (memory only: a
    # new connection, a restarted agent or another node offers it again; it is idempotent).
    settings_offered: bytes | None = None
    # The server node that handled the agent's last message (several nodes on one database), and the
    # agent's own heartbeat interval as measured from its messages (0: not known yet).
    node: str = ""
    heartbeat: float = 0.0
    # agent_kind()'s answer with the objects it was computed from (valid while they are the same)
    kind_memo: tuple[object, object, int, str] | None = field(default=None, compare=False, repr=False)
    # What it reported about its config when it last (re)started (see ``came_up_record``): JSON-able,
    # persisted in the agents table.
    came_up: dict[str, Any] | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    # JSON fragments of sub-messages for the admin API, keyed by part name -> (the proto object, text).
    # Shared between clones; an entry is valid only while ``entry[0] is`` the state's current object.
    view_cache: dict[str, tuple[object, str]] = field(default_factory=dict, compare=False, repr=False)

    def clone(self) -> AgentState:
        """A shallow copy (sub-messages are replaced wholesale, never mutated, so sharing is safe)."""
        new = object.__new__(AgentState)
        new.__dict__.update(self.__dict__)
        return new

    @property
    def reported_hash(self) -> bytes:
        rcs = self.remote_config_status
        return rcs.last_remote_config_hash if rcs is not None else b""

    @property
    def component_names(self) -> frozenset[str] | None:
        """Its AvailableComponents as ``kind:type`` names; None when it reported no component map."""
        ac = self.available_components
        if ac is None or not ac.components:
            return None
        shared = bool(ac.hash) and _COMPONENT_SETS.get(ac.hash) is ac
        if shared and (names := _COMPONENT_NAMES.get(ac.hash)) is not None:
            return names
        hit = self.view_cache.get("component_names")
        if hit is not None and hit[0] is ac:
            return hit[1]  # type: ignore[return-value]
        from otelcockpit.fleet.components import names_from_tree

        names = names_from_tree({k: list(d.sub_component_map) for k, d in ac.components.items()})
        if shared:
            _COMPONENT_NAMES[ac.hash] = names
        else:
            self.view_cache["component_names"] = (ac, names)  # type: ignore[assignment]
        return names

    def lacks(self, desired: Desired) -> tuple[str, ...]:
        """The components of ``desired`` this agent says it does not have (sorted)."""
        if not desired.needs:
            return ()
        have = self.component_names
        if have is None:
            return ()
        return tuple(sorted(n for n in desired.needs if n not in have))

    @property
    def effective_hash(self) -> bytes:
        """The hash of its effective config in the form config versions are hashed (``config_hash``):
        equal to a version's hash when it runs exactly that version's files; b"" when none reported."""
        ec = self.effective_config
        if ec is None:
            return b""
        hit = self.view_cache.get("effective_hash")
        if hit is not None and hit[0] is ec:
            return hit[1]  # type: ignore[return-value]
        digest = effective_hash(ec)
        self.view_cache["effective_hash"] = (ec, digest)  # type: ignore[assignment]
        return digest


@dataclass(slots=True)
class Outcome:
    state: AgentState | None
    reply: pb.ServerToAgent
    changed: set[str]
    history: tuple[bytes, str, str] | None = None  # (hash, status, error) of a remote-config report
    went_offline: bool = False
    is_new: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    full_state_min_interval: float = 10.0
    heartbeat_seconds: int = DEFAULT_HEARTBEAT_SECONDS
    reoffer_after: float = 60.0
    # An agent that reconnects still APPLYING a config offered at least this long ago gets it again,
    # once (the OpAMP supervisor's own apply timeout is 5 s, so this is long past any real apply).
    stuck_applying_after: float = 60.0
    max_attributes: int = MAX_ATTRIBUTES
    # A node takes at most this many agents (a new one beyond is told to come back later); the most
    # trusted OpAMP platform keeps each node at or under 30,000 collectors.
    max_agents: int = 30_000
    # Event-loop lag (seconds, smoothed) above which the node is saturated and tells agents to come
    # back later instead of slowing every one of them down; below the second it is not any more.
    overload_lag: float = 0.5
    overload_clear: float = 0.15
    # ... for this long without a break: a burst the node causes itself (a push to 10,000 WebSocket
    # agents blocks the loop once, then their answers arrive) is not saturation.
    overload_sustain: float = 2.0
    max_attribute_key: int = MAX_ATTRIBUTE_KEY
    max_attribute_value: int = MAX_ATTRIBUTE_VALUE
    # Offer ConnectionSettings.opamp.heartbeat_interval_seconds = heartbeat_seconds (see
    # wants_heartbeat_offer for to whom).
    offer_heartbeat: bool = True
    # An agent that never described itself (no AgentDescription) and has been offline this long is
    # forgotten: such rows come from broken or hostile clients, never from a real collector.
    forget_unidentified_after: float = 600.0
    # Any agent offline this long is forgotten (0: never). Pods come and go with new instance UIDs: the
    # rows of the ones gone must not pile up until --max-agents turns new ones away.
    forget_offline_after: float = 7 * 86400.0


DEFAULT_SETTINGS = Settings()


def any_value_text(value: object) -> str:
    """An AnyValue as one string (arrays and maps in a compact JSON-ish form)."""
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    if kind is None:
        return ""
    if kind == "string_value":
        return value.string_value  # type: ignore[attr-defined]
    if kind == "bool_value":
        return "true" if value.bool_value else "false"  # type: ignore[attr-defined]
    if kind == "int_value":
        return str(value.int_value)  # type: ignore[attr-defined]
    if kind == "double_value":
        return repr(value.double_value)  # type: ignore[attr-defined]
    if kind == "bytes_value":
        return value.bytes_value.hex()  # type: ignore[attr-defined]
    if kind == "array_value":
        return "[" + ",".join(any_value_text(v) for v in value.array_value.values) + "]"  # type: ignore[attr-defined]
    items = value.kvlist_value.values  # type: ignore[attr-defined]
    return "{" + ",".join(f"{kv.key}={any_value_text(kv.value)}" for kv in items) + "}"


def attributes_of(desc: pb.AgentDescription | None) -> dict[str, str]:
    """Non-identifying then identifying attributes (identifying win on a clash), as strings."""
    if desc is None:
        return {}
    out = {kv.key: any_value_text(kv.value) for kv in desc.non_identifying_attributes}
    for kv in desc.identifying_attributes:
        out[kv.key] = any_value_text(kv.value)
    return out


def _base_reply(uid: bytes) -> pb.ServerToAgent:
    return pb.ServerToAgent(instance_uid=uid, capabilities=SERVER_CAPABILITIES)


def bad_request(uid: bytes, message: str) -> pb.ServerToAgent:
    """An ``error_response`` BAD_REQUEST; all other fields unset, as the spec requires."""
    reply = pb.ServerToAgent(instance_uid=uid)
    reply.error_response.type = pb.ServerErrorResponseType_BadRequest
    reply.error_response.error_message = message
    return reply


def unavailable(uid: bytes, message: str, retry_seconds: float = 30.0) -> pb.ServerToAgent:
    """An ``error_response`` UNAVAILABLE with ``retry_info``: the agent should come back later."""
    reply = pb.ServerToAgent(instance_uid=uid)
    reply.error_response.type = pb.ServerErrorResponseType_Unavailable
    reply.error_response.error_message = message
    reply.error_response.retry_info.retry_after_nanoseconds = int(retry_seconds * 1e9)
    return reply


def validate(msg: pb.AgentToServer, settings: Settings = DEFAULT_SETTINGS) -> str | None:
    """One line saying why the message is malformed, or None."""
    n = len(msg.instance_uid)
    if n == 0:
        return "instance_uid is missing"
    if n != UID_LENGTH:
        return f"instance_uid must be {UID_LENGTH} bytes, got {n}"
    if msg.HasField("agent_description"):
        d = msg.agent_description
        count = len(d.identifying_attributes) + len(d.non_identifying_attributes)
        if count > settings.max_attributes:
            return f"agent_description has {count} attributes; the limit is {settings.max_attributes}"
        for kv in (*d.identifying_attributes, *d.non_identifying_attributes):
            if len(kv.key.encode("utf-8")) > settings.max_attribute_key:
                return f"an attribute key is longer than {settings.max_attribute_key} bytes"
            if kv.value.ByteSize() > settings.max_attribute_value:
                return f"attribute {kv.key[:64]!r} is larger than {settings.max_attribute_value} bytes"
    return None


def _has_full_report(state: AgentState) -> bool:
    caps = state.capabilities
    if state.description is None:
        return False
    if caps & REPORTS_EFFECTIVE_CONFIG and state.effective_config is None:
        return False
    if caps & REPORTS_REMOTE_CONFIG and state.remote_config_status is None:
        return False
    if caps & REPORTS_HEALTH and state.health is None:
        return False
    return True


def wants_offer(state: AgentState, now: float, settings: Settings = DEFAULT_SETTINGS) -> bool:
    desired = state.desired
    if desired is None or not state.online:
        return False
    if not state.capabilities & ACCEPTS_REMOTE_CONFIG:
        return False
    if desired.hash in state.failed_hashes:
        return False
    if desired.needs and state.lacks(desired):
        return False  # it lacks a component the config uses: it would only fail there
    if state.reported_hash == desired.hash:
        rcs = state.remote_config_status
        stuck = (
            state.stuck_reoffer
            and rcs is not None
            and rcs.status == pb.RemoteConfigStatuses_APPLYING
            and state.reoffered_hash != desired.hash
        )
        if not stuck:
            return False
        return True
    if state.offered_hash == desired.hash:
        # Outstanding offer of the same hash: re-send only to an agent that reports its status and
        # still reports another hash long after the offer (the offer was lost).
        if not state.capabilities & REPORTS_REMOTE_CONFIG:
            return False
        if now - state.offered_at < settings.reoffer_after:
            return False
    return True


def _fill_offer_or_command(
    state: AgentState, reply: pb.ServerToAgent, now: float, changed: set[str], settings: Settings
) -> bool:
    """Put a pending restart (alone) or a remote-config offer in ``reply``; True if anything was added."""
    if state.pending_restart:
        state.pending_restart = False
        changed.add("pending_restart")
        if state.capabilities & ACCEPTS_RESTART_COMMAND:
            reply.Clear()
            reply.instance_uid = state.uid
            reply.capabilities = SERVER_CAPABILITIES
            reply.command.type = pb.CommandType_Restart
            return True
    if wants_offer(state, now, settings):
        desired = state.desired
        assert desired is not None
        reply.remote_config.config.CopyFrom(desired.config)
        reply.remote_config.config_hash = desired.hash
        if state.reported_hash == desired.hash:  # the once-only re-offer of a stuck apply
            state.reoffered_hash = desired.hash
        state.offered_hash = desired.hash
        state.offered_at = now
        changed.add("offered")
        return True
    return False


# What an agent is: a collector (it runs pipelines) or an SDK (the OpAMP client inside an application).
AGENT_COLLECTOR = "collector"
AGENT_SDK = "sdk"
_COLLECTOR_NAME = re.compile(r"otelcol|collector|alloy|grafana-agent|opampsupervisor|supervisor", re.IGNORECASE)
_COLLECTOR_CONFIG = re.compile(
    rb"(?m)^(receivers|exporters|processors|connectors|extensions|service)\s*:"  # collector YAML
    rb"|^\s*(otelcol|prometheus|loki|discovery|pyroscope)\.[a-z_.]+\s+\"[^\"]*\"\s*\{"  # Alloy
)
_SDK_KEYS = ("telemetry.sdk.", "process.runtime.")


def agent_kind(state: AgentState) -> str:
    """``"collector"`` or ``"sdk"``, from what the agent says about itself (first rule that decides):

    1. an effective config that is a collector's (YAML with receivers/exporters/service, or Alloy
       components) or a ``service.name`` of a collector distribution: a collector;
    2. SDK resource attributes (``telemetry.sdk.*``, ``process.runtime.*``): an SDK;
    3. an agent that neither reports an effective config nor accepts a remote one runs no pipeline
       anyone manages here: an SDK;
    4. otherwise a collector."""
    desc, eff, caps = state.description, state.effective_config, state.capabilities
    memo = state.kind_memo
    if memo is not None and memo[0] is desc and memo[1] is eff and memo[2] == caps:
        return memo[3]
    kind = _agent_kind(desc, eff, caps)
    state.kind_memo = (desc, eff, caps, kind)
    return kind


def _agent_kind(desc: pb.AgentDescription | None, eff: pb.EffectiveConfig | None, caps: int) -> str:
    if eff is not None:
        for f in eff.config_map.config_map.values():
            if _COLLECTOR_CONFIG.search(f.body[:65536]):
                return AGENT_COLLECTOR
    keys: list[str] = []
    if desc is not None:
        for kv in desc.identifying_attributes:
            if kv.key == "service.name" and _COLLECTOR_NAME.search(kv.value.string_value):
                return AGENT_COLLECTOR
            keys.append(kv.key)
        keys.extend(kv.key for kv in desc.non_identifying_attributes)
    if any(k.startswith(_SDK_KEYS) for k in keys):
        return AGENT_SDK
    if not caps & (REPORTS_EFFECTIVE_CONFIG | ACCEPTS_REMOTE_CONFIG):
        return AGENT_SDK
    return AGENT_COLLECTOR


def heartbeat_offer_hash(seconds: int) -> bytes:
    return hashlib.sha256(b"otelcockpit-connection-settings/heartbeat=%d" % seconds).digest()


def wants_heartbeat_offer(state: AgentState, settings: Settings = DEFAULT_SETTINGS) -> bool:
    """Whether to offer the server's heartbeat interval (ConnectionSettingsOffers.opamp) now.

    Only to agents that report heartbeats (opamp-go applies the interval to those) and do NOT accept
    OpAMP connection settings: an agent that accepts them (the collector's supervisor) treats any
    ``opamp`` offer as "reconnect with these settings" - an endpoint, headers and TLS replaced - which
    a heartbeat change must never cause. Once per connection, unless the agent reports it applied it."""
    if not settings.offer_heartbeat:
        return False
    caps = state.capabilities
    if not caps & REPORTS_HEARTBEAT or caps & ACCEPTS_OPAMP_CONNECTION_SETTINGS:
        return False
    h = heartbeat_offer_hash(settings.heartbeat_seconds)
    css = state.connection_settings_status
    if css is not None and css.last_connection_settings_hash == h and css.status == pb.ConnectionSettingsStatuses_APPLIED:
        return False
    return state.settings_offered != h


def _fill_heartbeat_offer(state: AgentState, reply: pb.ServerToAgent, settings: Settings) -> None:
    if reply.HasField("command") or not wants_heartbeat_offer(state, settings):
        return
    h = heartbeat_offer_hash(settings.heartbeat_seconds)
    reply.connection_settings.hash = h
    # Always explicit: an offer with 0 turns an opamp-go agent's heartbeats off.
    reply.connection_settings.opamp.heartbeat_interval_seconds = settings.heartbeat_seconds
    state.settings_offered = h


def process(
    state: AgentState | None,
    msg: pb.AgentToServer,
    now: float,
    *,
    transport: str = "http",
    resolve: Callable[[dict[str, str]], Desired | None] | None = None,
    new_uid: bytes | None = None,
    settings: Settings = DEFAULT_SETTINGS,
) -> Outcome:
    """Handle one AgentToServer. ``state`` is not modified; the new state is a copy.

    ``resolve`` maps the agent's attributes to its desired config (called when the attributes change
    or the agent is new). ``new_uid`` is set by the caller when the same instance_uid is already live
    on another connection: the reply then only tells the agent its new identity.
    """
    problem = validate(msg, settings)
    if problem is not None:
        return Outcome(state, bad_request(msg.instance_uid, problem), set(), error=problem)
    uid = msg.instance_uid
    reply = _base_reply(uid)

    if new_uid is not None:
        reply.agent_identification.new_instance_uid = new_uid
        return Outcome(state, reply, set())

    changed: set[str] = set()
    is_new = state is None
    if state is None:
        s = AgentState(uid=uid, first_seen=now, last_seen=now, transport=transport)
        changed.add("new")
    else:
        s = state.clone()
    prev_seq = s.seq
    s.last_seen = now
    s.seq = msg.sequence_num
    if msg.sequence_num == 0:
        s.settings_offered = None  # a (re)started agent forgot what it was offered
    if s.transport != transport:
        s.transport = transport
        changed.add("transport")
    if msg.capabilities != s.capabilities:
        s.capabilities = msg.capabilities
        changed.add("capabilities")

    disconnect = msg.HasField("agent_disconnect")
    went_offline = False
    if disconnect:
        if s.online:
            s.online = False
            went_offline = True
            changed.add("online")
    elif not s.online:
        s.online = True
        changed.add("online")

    history: tuple[bytes, str, str] | None = None
    if msg.HasField("agent_description"):
        s.description = msg.agent_description
        attrs = attributes_of(s.description)
        if attrs != s.attributes:
            s.attributes = attrs
            if resolve is not None:
                s.desired = resolve(attrs)
        changed.add("description")
    elif is_new and resolve is not None:
        s.desired = resolve(s.attributes)
    restarted = False
    if msg.HasField("health"):
        start = msg.health.start_time_unix_nano
        restarted = bool(start and s.health is not None and s.health.start_time_unix_nano not in (0, start))
        s.health = msg.health
        changed.add("health")
    if msg.HasField("effective_config"):
        s.effective_config = msg.effective_config
        changed.add("effective_config")
    if msg.HasField("remote_config_status"):
        rcs = msg.remote_config_status
        old = s.remote_config_status
        if (
            old is None
            or old.status != rcs.status
            or old.last_remote_config_hash != rcs.last_remote_config_hash
            or old.error_message != rcs.error_message
        ):
            history = (
                rcs.last_remote_config_hash,
                STATUS_NAMES.get(rcs.status, str(rcs.status)),
                rcs.error_message,
            )
        s.remote_config_status = rcs
        changed.add("remote_config_status")
        if rcs.status == pb.RemoteConfigStatuses_FAILED and rcs.last_remote_config_hash:
            if rcs.last_remote_config_hash not in s.failed_hashes:
                s.failed_hashes = dict(s.failed_hashes)
                s.failed_hashes[rcs.last_remote_config_hash] = rcs.error_message
                changed.add("failed_hashes")
    if msg.HasField("package_statuses"):
        s.package_statuses = msg.package_statuses
        changed.add("package_statuses")
    if msg.HasField("custom_capabilities"):
        s.custom_capabilities = msg.custom_capabilities
        changed.add("custom_capabilities")
    if msg.HasField("connection_settings_status"):
        s.connection_settings_status = msg.connection_settings_status
        changed.add("connection_settings_status")
    if msg.HasField("available_components"):
        ac = shared_components(msg.available_components)
        held = s.available_components
        if ac.components or held is None or held.hash != ac.hash:
            s.available_components = ac
            changed.add("available_components")
        if (
            not ac.components
            and s.capabilities & REPORTS_AVAILABLE_COMPONENTS
            and not disconnect
            and (held is None or held.hash != ac.hash or not held.components)
        ):
            reply.flags |= REPORT_AVAILABLE_COMPONENTS

    if not disconnect and (is_new or msg.sequence_num == 0 or restarted):
        # It (re)started: remember what it came up on (its bootstrap config, a cached remote config ...)
        s.came_up = came_up_record(s, now)
        changed.add("came_up")
    if not disconnect:
        if is_new:
            ask = not _has_full_report(s)
        else:
            ask = msg.sequence_num != prev_seq + 1
        last_ask = s.full_state_requested_at
        if ask and (last_ask == 0.0 or now - last_ask >= settings.full_state_min_interval):
            reply.flags |= REPORT_FULL_STATE
            s.full_state_requested_at = now
            changed.add("full_state_requested")
        _fill_offer_or_command(s, reply, now, changed, settings)
        _fill_heartbeat_offer(s, reply, settings)
    s.stuck_reoffer = False

    return Outcome(s, reply, changed, history=history, went_offline=went_offline, is_new=is_new)


def pending(state: AgentState, now: float, settings: Settings = DEFAULT_SETTINGS) -> Outcome:
    """What to push to a connected agent now, without an incoming message (reply None if nothing)."""
    s = state.clone()
    reply = _base_reply(s.uid)
    changed: set[str] = set()
    if not s.online or not _fill_offer_or_command(s, reply, now, changed, settings):
        return Outcome(state, None, set())  # type: ignore[arg-type]
    return Outcome(s, reply, changed)


def expired(state: AgentState, now: float, interval_seconds: float, *, live_connection: bool) -> bool:
    """True when an online agent has been silent for 3 heartbeat/poll intervals.

    A WebSocket agent without ReportsHeartbeat may stay silent while its connection is open, so it
    stays online as long as the connection lives.
    """
    if not state.online:
        return False
    if live_connection and not state.capabilities & REPORTS_HEARTBEAT:
        return False
    return now - state.last_seen > OFFLINE_AFTER_INTERVALS * interval_seconds


def mark_offline(state: AgentState) -> AgentState:
    s = state.clone()
    s.online = False
    return s
