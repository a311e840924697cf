"""The fake's initial state: the demo organisation (or any fixtures dir in the same format).

Collectors and pipelines with their revisions are built by the demo backend's own loader and
simulator, so the fake and ``--source demo`` show the same organisation: the same collector
ids, attributes, pipeline ids, revision ids and assembled configurations.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from otelcockpit.fleet.model import CollectorType, Health, Pipeline
from otelcockpit.fm_fake.state import FakeState, ts

SOURCE_PREFIXES = {
    "git": "SOURCE_TYPE_GIT",
    "terraform": "SOURCE_TYPE_TERRAFORM",
    "grafana": "SOURCE_TYPE_GRAFANA",
}


def pipeline_message(p: Pipeline) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "contents": p.contents}
    if p.matchers:
        out["matchers"] = list(p.matchers)
    if p.created_at is not None:
        out["createdAt"] = ts(p.created_at)
    if p.updated_at is not None:
        out["updatedAt"] = ts(p.updated_at)
    out["enabled"] = p.enabled
    if p.id:
        out["id"] = p.id
    kind, _, namespace = p.source.partition(":")
    if kind in SOURCE_PREFIXES:
        out["source"] = {"type": SOURCE_PREFIXES[kind], **({"namespace": namespace} if namespace else {})}
    out["configType"] = "CONFIG_TYPE_OTEL" if p.config_type == CollectorType.OTEL else "CONFIG_TYPE_ALLOY"
    return out


def load_state(
    fixtures: Path | None = None,
    *,
    seed: int = 7,
    epoch: datetime | None = None,
    collectors: int | None = None,
    **state_kwargs: Any,
) -> FakeState:
    """``collectors`` scales the fleet like ``--demo-collectors`` does (None: the fixtures' counts)."""
    from otelcockpit.backends.demo import DemoSimulator, load_organisation

    epoch = epoch or datetime.now(UTC).replace(microsecond=0)
    org = load_organisation(fixtures, epoch)
    sim = DemoSimulator(org, seed=seed, epoch=epoch, collectors=collectors)
    state = FakeState(**state_kwargs)

    # Revisions replayed in time order; the pipelines that survive are the current ones.
    revisions = sorted(
        (r for revs in org.revisions.values() for r in revs), key=lambda r: (r.created_at, int(r.id))
    )
    for r in revisions:
        snap = pipeline_message(r.snapshot) if r.snapshot else {"name": r.pipeline, "id": r.pipeline_id}
        state.revisions.append(
            {
                "revisionId": r.id,
                "snapshot": snap,
                "createdAt": ts(r.created_at),
                "operation": r.operation.value.upper(),
            }
        )
        state.next_revision_id = (
            max(state.next_revision_id, int(r.id) + 1) if r.id.isdigit() else state.next_revision_id
        )
    for p in org.pipelines:
        msg = pipeline_message(p)
        state.pipelines[p.id] = msg
        state.by_name[p.name] = p.id
        if p.id.isdigit():
            state.next_pipeline_id = max(state.next_pipeline_id, int(p.id) + 1)
    for r in revisions:
        if r.pipeline_id.isdigit():
            state.next_pipeline_id = max(state.next_pipeline_id, int(r.pipeline_id) + 1)

    created = ts(epoch)
    for c in sim.collectors:
        msg: dict[str, Any] = {"id": c.id}
        if c.remote_attributes:
            msg["remoteAttributes"] = dict(c.remote_attributes)
        msg["createdAt"] = created
        msg["updatedAt"] = created
        msg["name"] = c.name
        if c.local_attributes:
            msg["localAttributes"] = dict(c.local_attributes)
        msg["enabled"] = c.enabled
        if c.health == Health.OFFLINE and c.last_seen is not None:
            # The demo's offline collectors are the ones Fleet Management would have marked inactive.
            msg["markedInactiveAt"] = ts(c.last_seen)
        msg["collectorType"] = (
            "COLLECTOR_TYPE_OTEL" if c.type == CollectorType.OTEL else "COLLECTOR_TYPE_ALLOY"
        )
        state.collectors[c.id] = msg
    return state
