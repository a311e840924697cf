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


def agent_json(state: AgentState, *, connected: bool, heartbeat_seconds: float) -> dict[str, Any]:
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


def agent_text(state: AgentState, *, connected: bool, heartbeat_seconds: float) -> str:
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
    ident = _fragment(state, "ident", desc, _ident) if desc is not None else "{}"
    non_ident = _fragment(state, "non_ident", desc, _non_ident) if desc is not None else "{}"
    health = _fragment(state, "health", state.health, health_json)
    return (
        f'{head[:-1]},"capabilities_decoded":{_capabilities_text(state.capabilities)},"type":"{kind}",'
        f'"identifying_attributes":{ident},"non_identifying_attributes":{non_ident},'
        f'"health":{health},{tail[1:]}'
    )


def agent_detail_json(
    state: AgentState, *, connected: bool, heartbeat_seconds: float, history: list[dict[str, Any]]
) -> dict[str, Any]:
    out = agent_json(state, connected=connected, heartbeat_seconds=heartbeat_seconds)
    ec = state.effective_config
    out["effective_config"] = config_map_json(ec.config_map) if ec is not None else {}
    out["remote_config_history"] = history
    ac = state.available_components
    out["available_components"] = (
        None if ac is None else {"hash": ac.hash.hex(), "components": _components_json(ac.components)}
    )
    return out
