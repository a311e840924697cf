"""Rollouts on ``otelcockpit serve``: a thin client of its admin API.

On the OpAMP backend the rollout engine runs inside the server (closing the cockpit never strands
a rollout), so there is no local engine and no local journal: ``rollout start`` asks the server to
start one and returns at once, ``status`` reads the server's journal, ``pause|resume|abort`` and
``rollback`` are admin calls. A "pipeline" is an OpAMP config name, its revisions are the config
versions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from otelcockpit.backends.opamp import DEFAULT_TOKEN_ENV, OpAmpApi
from otelcockpit.errors import UsageError
from otelcockpit.fleet.model import parse_time
from otelcockpit.rollout.model import (
    CollectorProgress,
    CollectorStatus,
    RolloutPlan,
    RolloutState,
    RolloutView,
    StageProgress,
)


def progress_from_json(d: Mapping[str, Any]) -> CollectorProgress:
    offered = d.get("offered_at")
    return CollectorProgress(
        collector_id=str(d.get("id", "")),
        stage=int(d.get("stage", 0)),
        status=CollectorStatus(str(d.get("status", "pending"))),
        target_hash=str(d.get("target_hash", "")),
        previous_hash=str(d.get("previous_hash", "")),
        error=str(d.get("error", "")),
        health=str(d.get("health", "")),
        offered_at=float(offered) if isinstance(offered, int | float) else None,
    )


def view_from_json(d: Mapping[str, Any]) -> RolloutView:
    """A rollout view as the admin API sends it, back into the engine's RolloutView."""
    stages = tuple(
        StageProgress(
            index=int(s["index"]),
            name=str(s["name"]),
            state=str(s["state"]),
            total=int(s["total"]),
            pending=int(s.get("pending", 0)),
            applying=int(s.get("applying", 0)),
            applied=int(s.get("applied", 0)),
            failed=int(s.get("failed", 0)),
            held=int(s.get("held", 0)),
            soaking=int(s.get("soaking", 0)),
        )
        for s in d.get("stages") or ()
    )
    return RolloutView(
        id=str(d["id"]),
        pipeline=str(d["pipeline"]),
        backend=str(d.get("backend", "opamp")),
        context=str(d.get("context", "")),
        state=RolloutState(str(d["state"])),
        reason=str(d.get("reason", "")),
        author=str(d.get("author", "")),
        created_at=parse_time(d.get("created_at")),
        updated_at=parse_time(d.get("updated_at")),
        current_stage=int(d.get("current_stage", 0)),
        plan=RolloutPlan.from_json(d["plan"]),
        stages=stages,
        failures=tuple(progress_from_json(f) for f in d.get("failures") or ()),
        result_revision=str(d.get("result_revision", "")),
        rollback_revision=str(d.get("rollback_revision", "")),
    )


class OpAmpRollouts:
    """Rollout calls of the admin API (every failure is one line, from :class:`OpAmpApi`)."""

    def __init__(
        self, url: str, token: str | None, *, token_env: str = DEFAULT_TOKEN_ENV, timeout: float = 30.0
    ) -> None:
        if not url:
            raise UsageError("the opamp backend needs --url (the admin API, e.g. http://127.0.0.1:4321)")
        self.api = OpAmpApi(url, token, token_env=token_env, timeout=timeout)

    async def close(self) -> None:
        await self.api.close()

    async def __aenter__(self) -> OpAmpRollouts:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def plan(self, body: Mapping[str, Any]) -> RolloutPlan:
        data = await self.api.request("POST", "/rollouts/plan", json_body=dict(body))
        return RolloutPlan.from_json(data["plan"])

    async def start(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.api.request("POST", "/rollouts", json_body=dict(body))

    async def list(self) -> list[dict[str, Any]]:
        return list((await self.api.request("GET", "/rollouts"))["rollouts"])

    async def get(self, rollout_id: str, *, collectors: bool = False) -> dict[str, Any]:
        params = {"collectors": "1"} if collectors else None
        return await self.api.request("GET", f"/rollouts/{rollout_id}", params=params)

    async def action(self, rollout_id: str, action: str) -> dict[str, Any]:
        return await self.api.request("POST", f"/rollouts/{rollout_id}/{action}", json_body={})

    async def rollback(self, config: str, to: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if to is not None:
            number = to.removeprefix(f"{config}@").removeprefix("v")  # "3", "gateway@3" and "v3" all mean 3
            if not number.isdigit():
                raise UsageError(f"--to {to}: an OpAMP revision is a config version number")
            body["to"] = int(number)
        return await self.api.request("POST", f"/configs/{config}/rollback", json_body=body)

    async def targets(self) -> dict[str, Any]:
        return await self.api.request("GET", "/rollback-targets")

    async def changes(self, since: str) -> list[dict[str, Any]]:
        return list((await self.api.request("GET", "/changes", params={"since": since}))["changes"])


def client_for(settings: Any) -> OpAmpRollouts:
    """The client for a resolved ``Settings`` whose backend is ``opamp`` (token from the context's
    token_env, default ``OTELCOCKPIT_OPAMP_TOKEN``)."""
    ctx = settings.context
    token_env = getattr(ctx, "token_env", "") or DEFAULT_TOKEN_ENV
    return OpAmpRollouts(
        settings.url or getattr(ctx, "url", ""), os.environ.get(token_env) or None, token_env=token_env
    )
