"""Grafana Fleet Management as a rollout target (BulkUpdateCollectors + a temporary pipeline).

Fleet Management records who made each revision from the access token itself (the API takes no
author), so ``author`` is not sent. The v1 API reports neither config status nor health, so the gates are the soak time and an
explicit continue (``--manual``); a staged collector counts as applied once the attribute that
moves it onto the new version is set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from otelcockpit.backends.fleet_management.backend import (
    FleetManagementBackend,
    pipeline_from_json,
    pipeline_to_json,
    revision_from_json,
)
from otelcockpit.backends.fleet_management.client import NotFound
from otelcockpit.errors import ReadOnlyError
from otelcockpit.fleet.model import Pipeline
from otelcockpit.rollout.engine import Observation


class FleetManagementAdapter:
    name = "fleet-management"
    reports_status = False
    reports_health = False

    def __init__(self, backend: FleetManagementBackend, *, read_only: bool = False) -> None:
        self.backend = backend
        self.client = backend.client
        self.read_only = read_only

    def _write(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyError(f"read-only: refused to {what}")

    async def _pipeline_id(self, name: str) -> str | None:
        try:
            return await self.client.get_pipeline_id(name)
        except NotFound:
            return None

    async def get_pipeline(self, name: str) -> Pipeline | None:
        pid = await self._pipeline_id(name)
        if not pid:
            return None
        try:
            return pipeline_from_json(await self.client.get_pipeline(pid))
        except NotFound:
            return None

    async def latest_revision(self, name: str) -> str:
        pid = await self._pipeline_id(name)
        if not pid:
            return ""
        revs = [revision_from_json(r) for r in await self.client.list_pipeline_revisions(pid)]
        if not revs:
            return ""
        return max(revs, key=lambda r: (r.created_at, int(r.id) if r.id.isdigit() else 0)).id

    async def upsert_pipeline(self, pipeline: Pipeline, *, author: str) -> str:
        self._write(f"upsert pipeline {pipeline.name}")
        await self.client.upsert_pipeline(pipeline_to_json(pipeline))
        return await self.latest_revision(pipeline.name)

    async def delete_pipeline(self, name: str, *, author: str) -> str:
        self._write(f"delete pipeline {name}")
        pid = await self._pipeline_id(name)
        if not pid:
            return ""
        await self.client.delete_pipeline(pid)
        revs = [
            revision_from_json(r)
            for r in await self.client.list_pipelines_revisions()
            if isinstance(r.get("snapshot"), Mapping) and r["snapshot"].get("id") == pid
        ]
        return max(revs, key=lambda r: (r.created_at, int(r.id) if r.id.isdigit() else 0)).id if revs else ""

    async def collectors_with(self, key: str, value: str) -> set[str]:
        found = await self.client.list_collectors([f'{key}="{value}"'])
        return {str(c["id"]) for c in found if (c.get("remoteAttributes") or {}).get(key) == value}

    async def set_attribute(self, ids: Sequence[str], key: str, value: str, *, author: str) -> None:
        self._write(f"set {key} on {len(ids)} collector(s)")
        await self.client.bulk_update_collectors(list(ids), self.backend.remote_attribute_ops({key: value}, ()))

    async def remove_attribute(self, ids: Sequence[str], key: str, *, author: str) -> None:
        self._write(f"remove {key} from {len(ids)} collector(s)")
        await self.client.bulk_update_collectors(list(ids), self.backend.remote_attribute_ops({}, (key,)))

    async def observe(self, ids: Sequence[str]) -> Mapping[str, Observation]:
        return {}  # the v1 API reports no config status and no health

    async def offered_hashes(self, ids: Sequence[str]) -> Mapping[str, str]:
        return {}
