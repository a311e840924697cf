"""The demo backend as a rollout target: the same attribute-and-temporary-pipeline staging as
Fleet Management, through the demo's own ``push`` (so a read-only wrapper refuses it too).

The demo reports config status, hash and health like an OpAMP fleet does, so the engine's
success and failure rules are exercised for real: collectors apply after a few seconds of
simulated time and a few fail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from otelcockpit.backends.base import (
    COLLECTOR_SET_REMOTE_ATTRIBUTES,
    PIPELINE_DELETE,
    PIPELINE_UPSERT,
    Change,
)
from otelcockpit.errors import CockpitError, ReadOnlyError
from otelcockpit.fleet.model import FleetSnapshot, Pipeline
from otelcockpit.rollout.engine import Observation

AUTHOR = "otelcockpit-rollout"


class DemoAdapter:
    name = "demo"
    reports_status = True
    reports_health = True

    def __init__(self, backend: Any, *, read_only: bool = False) -> None:
        self.backend = backend
        self.read_only = read_only

    async def _snap(self) -> FleetSnapshot:
        return await self.backend.snapshot()

    async def _push(self, change: Change) -> str:
        if self.read_only:
            raise ReadOnlyError(f"read-only: refused to {change.describe()}")
        result = await self.backend.push(change)
        if not result.ok:
            raise CockpitError(f"demo: {result.message}")
        return result.revision_id or ""

    async def get_pipeline(self, name: str) -> Pipeline | None:
        return (await self._snap()).pipeline(name)

    async def upsert_pipeline(self, pipeline: Pipeline, *, author: str) -> str:
        return await self._push(Change(PIPELINE_UPSERT, {"pipeline": pipeline}, author=author or AUTHOR))

    async def delete_pipeline(self, name: str, *, author: str) -> str:
        return await self._push(Change(PIPELINE_DELETE, {"name": name}, author=author or AUTHOR))

    async def latest_revision(self, name: str) -> str:
        revs = await self.backend.revisions(name)
        return revs[-1].id if revs else ""

    async def collectors_with(self, key: str, value: str) -> set[str]:
        return {c.id for c in (await self._snap()).collectors if c.remote_attributes.get(key) == value}

    async def set_attribute(self, ids: Sequence[str], key: str, value: str, *, author: str) -> None:
        payload = {"ids": list(ids), "set": {key: value}}
        await self._push(Change(COLLECTOR_SET_REMOTE_ATTRIBUTES, payload, author=author or AUTHOR))

    async def remove_attribute(self, ids: Sequence[str], key: str, *, author: str) -> None:
        payload = {"ids": list(ids), "remove": [key]}
        await self._push(Change(COLLECTOR_SET_REMOTE_ATTRIBUTES, payload, author=author or AUTHOR))

    async def observe(self, ids: Sequence[str]) -> Mapping[str, Observation]:
        snap = await self._snap()
        wanted = set(ids)
        out: dict[str, Observation] = {}
        for c in snap.collectors:
            if c.id in wanted:
                rc = c.remote_config
                out[c.id] = Observation(rc.status.value, rc.hash, rc.error or c.last_error, c.health.value)
        return out

    async def offered_hashes(self, ids: Sequence[str]) -> Mapping[str, str]:
        # What the simulator now serves each collector: the hash of its assembled config.
        return {cid: o.hash for cid, o in (await self.observe(ids)).items()}
