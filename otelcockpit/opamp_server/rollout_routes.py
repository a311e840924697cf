"""Staged rollouts inside ``otelcockpit serve``: the admin API face of the rollout service.

The rollouts run in the server as asyncio tasks (closing the cockpit never strands one), through
the same :class:`~otelcockpit.rollout.service.RolloutService` the cockpit uses for the demo and
Fleet Management, over :class:`~otelcockpit.opamp_server.rollout_fleet.HubFleet`. The journal
(``<db stem>.rollouts.sqlite3`` beside the db) survives a kill -9; a restart shows every rollout
that was running as paused. Every write is recorded as the admin token's name (with the person the
client says it acts for, ``requested_by``, in parentheses).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Mapping
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otelcockpit.errors import CockpitError, PushRefused, ReadOnlyError, UsageError
from otelcockpit.fleet.configfiles import render_files
from otelcockpit.fleet.model import utcnow
from otelcockpit.opamp_server.hub import Hub, HubError
from otelcockpit.opamp_server.rollout_fleet import HubFleet
from otelcockpit.opamp_server.views import who
from otelcockpit.rollout.journal import Journal
from otelcockpit.rollout.model import RolloutState, RolloutView, parse_duration
from otelcockpit.rollout.options import PlanOptions
from otelcockpit.rollout.service import PushRequest, RolloutService

log = logging.getLogger(__name__)
TAKEOVER_SECONDS = 2.0  # how often a node looks for rollouts whose node died
CLUSTER_STALE_SECONDS = 10.0  # a runner silent this long is gone (it heartbeats every poll)
OPTION_KEYS = ("canary", "waves", "max_failures", "soak", "apply_timeout", "manual", "health_required", "all_at_once")


def push_request(hub: Hub, body: Mapping[str, Any], author: str) -> PushRequest:
    """A push from the admin API body: ``pipeline`` (or ``config``) with ``contents`` (the pipeline
    text), ``files`` (name -> body or {body, content_type}) or ``version`` (an existing version);
    options under ``options`` or at the top level."""
    config = body.get("pipeline") or body.get("config")
    if not isinstance(config, str) or not config:
        raise HubError(400, "'pipeline' must be a non-empty string (the OpAMP config to roll out)")
    if isinstance(body.get("contents"), str):
        contents = body["contents"]
    elif body.get("files") is not None:
        files = body["files"]
        if not isinstance(files, Mapping) or not files:
            raise HubError(400, "'files' must be a non-empty object {file name: {body, content_type}}")
        for name, f in files.items():
            if not isinstance(f, str) and not (isinstance(f, Mapping) and isinstance(f.get("body"), str)):
                raise HubError(400, f"files[{name!r}] must be a string or an object with a string 'body'")
        contents = render_files(files)
    elif body.get("version") is not None:
        v = body["version"]
        if not isinstance(v, int) or isinstance(v, bool):
            raise HubError(400, "'version' must be a whole number (or give 'contents' or 'files')")
        cv = hub.config_version(config, v)
        if cv is None:
            raise HubError(404, f"config {config!r} has no version {v}")
        contents = render_files(cv.files)
    else:
        raise HubError(400, "give the new version: 'contents', 'files' or 'version'")
    raw = body.get("options")
    if raw is None:
        raw = {k: body[k] for k in OPTION_KEYS if body.get(k) is not None}
    if not isinstance(raw, Mapping):
        raise HubError(400, "'options' must be an object")
    try:
        options = PlanOptions.from_json(raw)
    except UsageError as exc:
        raise HubError(400, exc.message) from None
    return PushRequest(config, contents, options, author, bool(body.get("production", False)))


class ServerRollouts:
    """The rollout service of one server, and the tasks that run its rollouts.

    With several nodes on one database (``cluster``) the journal is shared: a rollout is run by one node
    at a time (the claim on its journal row is a compare-and-set), and when that node dies another one
    takes it over within :data:`TAKEOVER_SECONDS` plus the journal's ``stale_after``; progress is told to
    the other nodes so every node's event stream shows it."""

    def __init__(self, hub: Hub, journal: Journal, *, poll_interval: float = 0.25, cluster: bool = False) -> None:
        self.hub = hub
        self.cluster = cluster
        self.tasks: set[asyncio.Task[Any]] = set()
        self._dirty: set[str] = set()
        self._flush: asyncio.Task[None] | None = None
        self.service = RolloutService(
            journal,
            HubFleet(hub),
            poll_interval=poll_interval,
            spawn=self._spawn,
            on_progress=self._progress,
        )
        self.service.engine.pause_on_cancel = not cluster

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except CockpitError as exc:
                log.warning("rollout: %s", exc.message)
            except Exception:  # never let a rollout task die silently
                log.exception("a rollout task failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _progress(self, view: RolloutView) -> None:
        self.hub.events.publish("rollout", view_json(view))
        if self.cluster:
            self._dirty.add(view.id)
            if self._flush is None or self._flush.done():
                self._flush = asyncio.get_running_loop().create_task(self._tell_others())

    async def _tell_others(self) -> None:
        """Other nodes' event streams show this node's rollouts too (coalesced, 4 a second)."""
        await asyncio.sleep(0.25)
        dirty, self._dirty = self._dirty, set()
        ops = [op for rid in sorted(dirty) for op in self.hub.notify("rollout", id=rid)]
        if ops:
            with contextlib.suppress(Exception):
                await self.hub.store.write(ops)

    def publish(self, rollout_id: str) -> None:
        """A rollout another node runs changed: this node's event stream says so."""
        with contextlib.suppress(Exception):
            self.hub.events.publish("rollout", view_json(self.service.engine.view(rollout_id)))

    @property
    def journal(self) -> Journal:
        return self.service.journal

    async def start(self) -> None:
        # Reading the journal pauses every rollout left running by a process that is gone (one node);
        # with several nodes, such rollouts are taken over instead.
        for rec in self.journal.list(limit=10_000):
            if rec.state == RolloutState.PAUSED and rec.reason.startswith("interrupted"):
                self.hub.events.publish("rollout", view_json(self.service.engine.view(rec.id)))
        if self.cluster:
            self._spawn(self._takeover_loop())

    async def _takeover_loop(self) -> None:
        while True:
            try:
                for rid in self.service.take_over():
                    log.warning("rollout %s: its node is gone; continued on this node", rid)
            except Exception as exc:  # noqa: BLE001 - the database may be away for a moment
                self.hub.errors.error("rollouts", "looking for rollouts to take over failed", exc=exc)
            await asyncio.sleep(TAKEOVER_SECONDS)

    async def stop(self) -> None:
        for rec in self.journal.list(limit=10_000):
            if rec.state == RolloutState.RUNNING and self.journal.runner_alive(rec) and not self.cluster:
                self.journal.set_state(rec.id, RolloutState.PAUSED, "the server stopped; resume it to continue")
                self.journal.event(rec.id, rec.pipeline, "rollout.paused", "server", "", "the server stopped")
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.journal.close()


def view_json(view: RolloutView, *, ids: bool = False, collectors: list[Any] | None = None) -> dict[str, Any]:
    out = view.as_json(collectors=collectors)
    out["plan"] = view.plan.as_json(ids=ids)
    out["new_version"] = int(view.plan.new.id) if view.plan.new.id.isdigit() else None
    return out


def admin_routes(rollouts: ServerRollouts) -> tuple[list[tuple[str, str, Any]], list[tuple[str, str, Any]]]:
    """(mutating, reading) routes: (method, path, handler(request, token))."""
    svc = rollouts.service
    hub = rollouts.hub

    async def body_json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise HubError(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise HubError(400, "the request body must be a JSON object")
        return data

    async def guard(coro: Awaitable[Any]) -> Any:
        try:
            return await coro
        except HubError:
            raise
        except ReadOnlyError as exc:
            raise HubError(403, exc.message) from None
        except PushRefused as exc:
            raise HubError(409, exc.message) from None
        except UsageError as exc:
            raise HubError(422, exc.message) from None
        except CockpitError as exc:
            raise HubError(409, exc.message) from None

    def known(rid: str) -> None:
        if svc.journal.get(rid) is None:
            raise HubError(404, f"no rollout {rid!r}")

    async def plan(request: Request, tok: Any) -> Response:
        body = await body_json(request)
        p = await guard(svc.plan(push_request(hub, body, who(tok, body))))
        return JSONResponse({"plan": p.as_json(ids=True)})

    async def create(request: Request, tok: Any) -> Response:
        body = await body_json(request)
        req = push_request(hub, body, who(tok, body))
        reviewed = None
        if isinstance(body.get("reviewed"), Mapping):
            reviewed = await guard(svc.plan(req))
            r = body["reviewed"]
            if (r.get("collector_count"), r.get("base_revision")) != (
                reviewed.collector_count,
                reviewed.base_revision,
            ):
                raise HubError(
                    409,
                    f"refused: the plan changed since it was reviewed ({r.get('collector_count')} -> "
                    f"{reviewed.collector_count} agent(s)): review it again",
                )
        view = await guard(svc.start(req))
        return JSONResponse(view_json(view, ids=True), status_code=201)

    async def listing(request: Request, tok: Any) -> Response:
        return JSONResponse({"rollouts": [view_json(v) for v in await svc.list()]})

    async def one(request: Request, tok: Any) -> Response:
        rid = request.path_params["id"]
        known(rid)
        view = await svc.view(rid)
        collectors = None
        if request.query_params.get("collectors") in ("1", "true", "yes"):
            collectors = await svc.progress(rid)
        return JSONResponse(view_json(view, ids=True, collectors=collectors))

    def action(name: str) -> Any:
        async def handler(request: Request, tok: Any) -> Response:
            rid = request.path_params["id"]
            body = await body_json(request)
            known(rid)
            fn = {"pause": svc.pause, "resume": svc.resume, "abort": svc.abort}[name]
            result = await guard(fn(rid, who(tok, body)))
            return JSONResponse({"message": result.message, "rollout": view_json(result.view)})

        return handler

    async def rollout_rollback_plan(request: Request, tok: Any) -> Response:
        rid = request.path_params["id"]
        known(rid)
        p = await guard(svc.rollback_plan_for(rid))
        return JSONResponse(p.as_json())

    async def rollout_rollback(request: Request, tok: Any) -> Response:
        rid = request.path_params["id"]
        body = await body_json(request)
        known(rid)
        p = await guard(svc.rollback_plan_for(rid))
        result = await guard(svc.rollback(p, who(tok, body)))
        return JSONResponse({**result.as_json(), "rollout": view_json(await svc.view(rid))})

    def _to(body: Mapping[str, Any]) -> str | None:
        to = body.get("to")
        if to is None:
            return None
        if isinstance(to, bool) or not isinstance(to, int | str) or not str(to).strip():
            raise HubError(400, "'to' must be a version number")
        return str(to)

    async def config_rollback_plan(request: Request, tok: Any) -> Response:
        body = await body_json(request)
        p = await guard(svc.rollback_plan(request.path_params["name"], _to(body)))
        return JSONResponse(p.as_json())

    async def config_rollback(request: Request, tok: Any) -> Response:
        body = await body_json(request)
        p = await guard(svc.rollback_plan(request.path_params["name"], _to(body)))
        expect = body.get("expect")
        if isinstance(expect, Mapping) and (
            str(expect.get("live_revision", p.live_revision)) != p.live_revision
            or str(expect.get("to_revision", p.target_revision)) != p.target_revision
        ):
            raise HubError(
                409,
                f"refused: {p.pipeline} changed since the rollback was reviewed (now live {p.live_revision}, "
                f"target {p.target_revision}): look at it again",
            )
        result = await guard(svc.rollback(p, who(tok, body)))
        return JSONResponse(result.as_json())

    async def targets(request: Request, tok: Any) -> Response:
        pipelines, collectors = await svc.targets()
        return JSONResponse(
            {
                "pipelines": {n: t.as_json() for n, t in pipelines.items()},
                "collectors": {c: t.as_json() for c, t in collectors.items()},
            }
        )

    async def changes(request: Request, tok: Any) -> Response:
        raw = request.query_params.get("since", "24h")
        try:
            seconds = parse_duration(raw, "since")
        except UsageError as exc:
            raise HubError(400, exc.message) from None
        since = utcnow() - timedelta(seconds=seconds) if seconds > 0 else None
        return JSONResponse({"changes": [e.as_json() for e in await svc.changes(since)]})

    mutating = [
        ("POST", "/api/v1/rollouts", create),
        ("POST", "/api/v1/rollouts/{id}/pause", action("pause")),
        ("POST", "/api/v1/rollouts/{id}/resume", action("resume")),
        ("POST", "/api/v1/rollouts/{id}/abort", action("abort")),
        ("POST", "/api/v1/rollouts/{id}/rollback", rollout_rollback),
        ("POST", "/api/v1/configs/{name}/rollback", config_rollback),
    ]
    reading = [
        ("POST", "/api/v1/rollouts/plan", plan),  # changes nothing: a read token may plan
        ("POST", "/api/v1/rollouts/{id}/rollback/plan", rollout_rollback_plan),
        ("POST", "/api/v1/configs/{name}/rollback/plan", config_rollback_plan),
        ("GET", "/api/v1/rollouts", listing),
        ("GET", "/api/v1/rollouts/{id}", one),
        ("GET", "/api/v1/rollback-targets", targets),
        ("GET", "/api/v1/changes", changes),
    ]
    return mutating, reading
