"""JSON shapes of the admin API (the contract shared with the ``opamp`` backend)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from otelcockpit.opamp_server.core import (
    STATUS_NAMES,
    AgentState,
    agent_kind,
    any_value_text,
    decode_capabilities,
)
from otelcockpit.opamp_server.proto import opamp_pb2 as pb


def who(tok: Any, body: Any = None) -> str:
    """The person a write is recorded as: the admin token's name, with whom the client says it acts
    for (``requested_by``, or ``author``) in parentheses when that differs."""
    name = str(getattr(tok, "name", "") or "admin")
    claimed = ""
    if isinstance(body, dict):
        raw = body.get("requested_by") or body.get("author")
        if isinstance(raw, str):
            claimed = " ".join(raw.split())[:64]
    return f"{name} ({claimed})" if claimed and claimed != name else name


def ts(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def now_text() -> str:
    return ts(datetime.now(UTC).timestamp()) or ""


def uid_text(uid: bytes) -> str:
    return str(uuid.UUID(bytes=uid)) if len(uid) == 16 else uid.hex()


def parse_uid(text: str) -> bytes | None:
    try:
        return uuid.UUID(text).bytes
    except ValueError:
        pass
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _nanos(value: int) -> str | None:
    return ts(value / 1e9) if value else None


def health_json(h: pb.ComponentHealth | None) -> dict[str, Any] | None:
    if h is None:
        return None
    return {
        "healthy": h.healthy,
        "status": h.status,
        "last_error": h.last_error,
        "start_time": _nanos(h.start_time_unix_nano),
        "components": {name: health_json(c) for name, c in sorted(h.component_health_map.items())},
    }


def _body_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("latin-1")


def config_map_json(m: pb.AgentConfigMap) -> dict[str, dict[str, str]]:
    return {
        name: {"body": _body_text(f.body), "content_type": f.content_type}
        for name, f in sorted(m.config_map.items())
    }


def _components_json(comps: Any) -> dict[str, Any]:
    return {
        name: {
            "metadata": {kv.key: any_value_text(kv.value) for kv in d.metadata},
            "sub_components": _components_json(d.sub_component_map),
        }
        for name, d in sorted(comps.items())
    }


def agent_json(
    state: AgentState, *, connected: bool, heartbeat_seconds: float, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    desc = state.description
    rcs = state.remote_config_status
    d = state.desired
    return {
        "instance_uid": uid_text(state.uid),
        "transport": state.transport,
        "connected": connected,
        "status": "online" if state.online else "offline",
        "first_seen": ts(state.first_seen),
        "last_seen": ts(state.last_seen),
        "sequence_num": state.seq,
        "capabilities": state.capabilities,
        "capabilities_decoded": decode_capabilities(state.capabilities),
        "type": agent_kind(state),
        "identifying_attributes": (
            {kv.key: any_value_text(kv.value) for kv in desc.identifying_attributes} if desc else {}
        ),
        "non_identifying_attributes": (
            {kv.key: any_value_text(kv.value) for kv in desc.non_identifying_attributes} if desc else {}
        ),
        "health": health_json(state.health),
        "remote_config_status": (
            None
            if rcs is None
            else {
                "status": STATUS_NAMES.get(rcs.status, str(rcs.status)),
                "last_hash": rcs.last_remote_config_hash.hex(),
                "error": rcs.error_message,
            }
        ),
        "desired": None if d is None else {"config": d.name, "version": d.version, "hash": d.hash.hex()},
        "offered_hash": state.offered_hash.hex() if state.offered_hash else None,
        "failed_hashes": sorted(h.hex() for h in state.failed_hashes),
        "heartbeat_interval_seconds": heartbeat_seconds,
        "node": state.node,
        "config": config or {},
    }


_dumps = json.JSONEncoder(separators=(",", ":")).encode


@lru_cache(maxsize=1024)
def _capabilities_text(caps: int) -> str:
    return _dumps(decode_capabilities(caps))


def _fragment(state: AgentState, key: str, obj: Any, make: Callable[[Any], Any]) -> str:
    entry = state.view_cache.get(key)
    if entry is not None and entry[0] is obj:
        return entry[1]
    text = "null" if obj is None else _dumps(make(obj))
    state.view_cache[key] = (obj, text)
    return text


def _ident(desc: pb.AgentDescription) -> dict[str, str]:
    return {kv.key: any_value_text(kv.value) for kv in desc.identifying_attributes}


def _non_ident(desc: pb.AgentDescription) -> dict[str, str]:
    return {kv.key: any_value_text(kv.value) for kv in desc.non_identifying_attributes}


def agent_text(
    state: AgentState,
    *,
    connected: bool,
    heartbeat_seconds: float,
    config: dict[str, Any] | None = None,
    config_text: str | None = None,
) -> str:
    """The AGENT summary as JSON text (same content as ``agent_json``), built from cached fragments.

    Listing 10,000 agents or streaming their changes re-serialises only what changed since the
    last time: attributes and the health tree are cached per received sub-message.
    """
    desc = state.description
    rcs = state.remote_config_status
    d = state.desired
    head = _dumps(
        {
            "instance_uid": uid_text(state.uid),
            "transport": state.transport,
            "connected": connected,
            "status": "online" if state.online else "offline",
            "first_seen": ts(state.first_seen),
            "last_seen": ts(state.last_seen),
            "sequence_num": state.seq,
            "capabilities": state.capabilities,
        }
    )
    kind = agent_kind(state)
    tail = _dumps(
        {
            "remote_config_status": (
                None
                if rcs is None
                else {
                    "status": STATUS_NAMES.get(rcs.status, str(rcs.status)),
                    "last_hash": rcs.last_remote_config_hash.hex(),
                    "error": rcs.error_message,
                }
            ),
            "desired": None if d is None else {"config": d.name, "version": d.version, "hash": d.hash.hex()},
            "offered_hash": state.offered_hash.hex() if state.offered_hash else None,
            "failed_hashes": sorted(h.hex() for h in state.failed_hashes),
            "heartbeat_interval_seconds": heartbeat_seconds,
            "node": state.node,
        }
    )
    if config_text is None:
        config_text = _dumps(config or {})
    tail = f'{tail[:-1]},"config":{config_text}}}'
    ident = _fragment(state, "ident", desc, _ident) if desc is not None else "{}"
    non_ident = _fragment(state, "non_ident", desc, _non_ident) if desc is not None else "{}"
    health = _fragment(state, "health", state.health, health_json)
    return (
        f'{head[:-1]},"capabilities_decoded":{_capabilities_text(state.capabilities)},"type":"{kind}",'
        f'"identifying_attributes":{ident},"non_identifying_attributes":{non_ident},'
        f'"health":{health},{tail[1:]}'
    )


# The compact agent list (GET /api/v1/agents?view=compact): what a fleet table needs, one JSON array
# per agent in the order of COMPACT_FIELDS (about a fifth of the full form). Left out: the decoded
# capabilities, the first-seen time, offered and failed hashes, and the component tree of an agent
# whose components are all healthy (it is there when one is not, so the problem can be named); the
# agent's detail (GET /api/v1/agents/{uid}) has everything, with its effective config.
COMPACT_FIELDS = (
    "instance_uid",
    "status",
    "connected",
    "transport",
    "last_seen",
    "type",
    "capabilities",
    "attributes",  # identifying and non-identifying in one map (identifying win)
    "health",
    "remote_config_status",  # [status, last_hash, error] or null
    "desired",  # [config, version] or null; [config, version, hash] when the agent reports another hash
    "node",
    "config",  # what it runs: the full form's "config" without its empty values and assigned_version;
    # effective_hash "=" is the hash of its remote_config_status
)


def _attributes(desc: pb.AgentDescription) -> dict[str, str]:
    out = _non_ident(desc)
    out.update(_ident(desc))
    return out


def _faulty_json(h: pb.ComponentHealth) -> dict[str, Any] | None:
    """The component and, below it, only the branches that lead to an unhealthy component (None
    when everything below is healthy)."""
    below = {}
    for name, c in sorted(h.component_health_map.items()):
        got = _faulty_json(c)
        if got is not None:
            below[name] = got
    if h.healthy and not below:
        return None
    return {"healthy": h.healthy, "status": h.status, "last_error": h.last_error, "components": below}


def compact_health_json(h: pb.ComponentHealth) -> dict[str, Any]:
    """The agent's health with only the faulty branches of its component tree (enough to name the
    component at fault; the detail has the whole tree)."""
    out = _faulty_json(h) or {"healthy": h.healthy, "status": h.status, "last_error": h.last_error, "components": {}}
    out["start_time"] = _nanos(h.start_time_unix_nano)
    return out


def _compact_desired(d: Any, rcs: Any) -> list[Any]:
    """The assigned config; its hash only when the agent reports another one (a cockpit tells "runs a
    config other than the one assigned" from it; most agents run what they are assigned)."""
    if rcs is not None and rcs.last_remote_config_hash == d.hash:
        return [d.name, d.version]
    return [d.name, d.version, d.hash.hex()]


def agent_compact_text(state: AgentState, *, connected: bool, config_text: str = "{}") -> str:
    """One agent of the compact list as JSON text (fields in COMPACT_FIELDS order). Kept until the
    agent's state object is replaced (every message replaces it), its connection changes, or the text
    of its config facts does (the hub keeps that one object while they do not change)."""
    key = "compact+" if connected else "compact-"
    hit = state.view_cache.get(key)
    if hit is not None and hit[0] is state and hit[2] is config_text:  # type: ignore[misc]
        return hit[1]
    desc = state.description
    rcs = state.remote_config_status
    d = state.desired
    attrs = _fragment(state, "attrs", desc, _attributes) if desc is not None else "{}"
    health = _fragment(state, "compact_health", state.health, compact_health_json)
    head = _dumps(
        [
            uid_text(state.uid),
            "online" if state.online else "offline",
            connected,
            state.transport,
            ts(state.last_seen),
            agent_kind(state),
            state.capabilities,
        ]
    )
    tail = _dumps(
        [
            None
            if rcs is None
            else [STATUS_NAMES.get(rcs.status, str(rcs.status)), rcs.last_remote_config_hash.hex(), rcs.error_message],
            None if d is None else _compact_desired(d, rcs),
            state.node,
        ]
    )
    text = f"{head[:-1]},{attrs},{health},{tail[1:-1]},{config_text}]"
    state.view_cache[key] = (state, text, config_text)  # type: ignore[assignment]
    return text


def agent_detail_json(
    state: AgentState,
    *,
    connected: bool,
    heartbeat_seconds: float,
    history: list[dict[str, Any]],
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out = agent_json(state, connected=connected, heartbeat_seconds=heartbeat_seconds, config=config)
    ec = state.effective_config
    out["effective_config"] = config_map_json(ec.config_map) if ec is not None else {}
    out["remote_config_history"] = history
    ac = state.available_components
    out["available_components"] = (
        None if ac is None else {"hash": ac.hash.hex(), "components": _components_json(ac.components)}
    )
    return out
