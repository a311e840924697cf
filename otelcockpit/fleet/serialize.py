"""JSON shapes of the fleet, shared by every ``--json`` command."""

from __future__ import annotations

from typing import Any

from otelcockpit.fleet.configstate import came_up_state, collector_state
from otelcockpit.fleet.model import Collector, ComponentHealth, FleetSnapshot, Pipeline, Revision, rfc3339


def component_health_json(node: ComponentHealth) -> dict[str, Any]:
    return {
        "name": node.name,
        "healthy": node.healthy,
        "status": node.status,
        "last_error": node.last_error,
        "children": [component_health_json(c) for c in node.children],
    }


def collector_json(c: Collector, *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id,
        "name": c.name,
        "type": c.type.value,
        "version": c.version,
        "attributes": dict(sorted(c.attributes.items())),
        "local_attributes": dict(sorted(c.local_attributes.items())),
        "remote_attributes": dict(sorted(c.remote_attributes.items())),
        "health": c.health.value,
        "last_error": c.last_error,
        "last_seen": rfc3339(c.last_seen),
        "remote_config": {
            "status": c.remote_config.status.value,
            "hash": c.remote_config.hash,
            "error": c.remote_config.error,
            "assigned": c.remote_config.assigned,
        },
        "pipelines": list(c.pipelines),
        # Beyond the shape, and present on every row so consumers see one shape:
        "enabled": c.enabled,
        "health_reason": c.health_reason,
        "config_state": collector_state(c).as_json(),
    }
    if c.came_up is not None:
        up = came_up_state(c)
        out["came_up"] = {"at": rfc3339(c.came_up.at), **(up.as_json() if up else {})}
    if detail:
        rep = c.config_report
        out["config_report"] = {
            "assigned": rep.assigned_label,
            "reported": rep.reported_label,
            "effective_hash": rep.effective_hash,
            "effective": rep.effective_label,
            "equivalent": rep.equivalent,
            "differs": list(rep.differs),
        }
        if c.available_components is not None:
            out["available_components"] = sorted(c.available_components)
        out["effective_config"] = dict(c.effective_config)
        if c.component_health is not None:
            out["component_health"] = component_health_json(c.component_health)
    return out


def pipeline_json(p: Pipeline, *, contents: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": p.id,
        "name": p.name,
        "config_type": p.config_type.value,
        "enabled": p.enabled,
        "matchers": list(p.matchers),
        "source": p.source,
        "created_at": rfc3339(p.created_at),
        "updated_at": rfc3339(p.updated_at),
    }
    if contents:
        out["contents"] = p.contents
    return out


def revision_json(r: Revision) -> dict[str, Any]:
    return {
        "id": r.id,
        "pipeline": r.pipeline,
        "pipeline_id": r.pipeline_id,
        "operation": r.operation.value,
        "created_at": rfc3339(r.created_at),
        "author": r.author,
        "snapshot": pipeline_json(r.snapshot) if r.snapshot else None,
    }


def snapshot_header(s: FleetSnapshot) -> dict[str, Any]:
    return {
        "backend": s.backend,
        "fetched_at": rfc3339(s.fetched_at),
        "stale": s.stale,
        **({"stale_reason": s.stale_reason} if s.stale else {}),
    }
