"""The admin API: JSON under ``/api/v1`` on its own listener, bearer tokens with a ``read`` or ``write`` role.

Errors are always ``{"error": "one line"}``. Missing or unknown token: 401. A ``read`` token on a
mutating endpoint: 403 (checked before the request body is looked at).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from otelcockpit import __version__
from otelcockpit.errors import ConfigError
from otelcockpit.fleet.matchers import MatcherError, matches
from otelcockpit.opamp_server.hub import Hub, HubError, parse_selector
from otelcockpit.opamp_server.views import (
    COMPACT_FIELDS,
    agent_compact_text,
    agent_detail_json,
    now_text,
    parse_uid,
    who,
)

ROLES = ("read", "write")
KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True)
class Token:
    token: str
    role: str
    name: str


def load_tokens(path: Path) -> dict[str, Token]:
    from otelcockpit.yamlio import load_yaml, where

    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
        raise ConfigError(f"{path}: expected 'tokens:' with a list of {{token, role, name}}")
    out: dict[str, Token] = {}
    for i, entry in enumerate(data["tokens"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"{where(path, data)}: tokens[{i}] must be a mapping")
        token, role = entry.get("token"), entry.get("role")
        if not isinstance(token, str) or len(token) < 8:
            raise ConfigError(f"{where(path, entry)}: 'token' must be a string of at least 8 characters")
        if role not in ROLES:
            raise ConfigError(f"{where(path, entry)}: 'role' must be read or write, got {role!r}")
        out[token] = Token(token, role, str(entry.get("name") or f"token{i + 1}"))
    if not out:
        raise ConfigError(f"{path}: no tokens")
    return out


def ensure_tokens_file(path: Path) -> bool:
    """Create the tokens file with one fresh write token if it does not exist. True if created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    text = (
        "# otelcockpit serve: admin API tokens (role read or write)\n"
        "tokens:\n"
        f"  - token: {json.dumps(token)}\n"
        "    role: write\n"
        "    name: admin\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return True


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


Handler = Callable[[Request, Token], Awaitable[Response]]


def build_admin_app(
    hub: Hub, tokens: dict[str, Token], *, keepalive: float = KEEPALIVE_SECONDS, rollouts: Any = None
) -> Starlette:
    def guarded(handler: Handler, *, write: bool) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            scheme, _, value = header.partition(" ")
            tok = tokens.get(value.strip()) if scheme.lower() == "bearer" else None
            if tok is None:
                return error(401, "missing or unknown bearer token")
            if write and tok.role != "write":
                return error(403, f"token {tok.name!r} has role read; this endpoint needs write")
            try:
                return await handler(request, tok)
            except HubError as exc:
                return error(exc.status, exc.message)
            except Exception as exc:
                if unavailable(exc):
                    # The database is away: nothing was written; say when to try again.
                    resp = error(503, f"the store does not answer, nothing was changed: {str(exc)[:200]}")
                    resp.headers["Retry-After"] = "5"
                    return resp
                raise

        return endpoint

    def unavailable(exc: BaseException) -> bool:
        from otelcockpit.opamp_server.store import StoreClosed, StoreUnavailable

        if isinstance(exc, StoreClosed | StoreUnavailable):
            return True
        if hub.store.shared:
            import psycopg

            return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        return False

    async def body_json(request: Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise HubError(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise HubError(400, "the request body must be a JSON object")
        return data

    async def body_json_or_empty(request: Request) -> dict[str, Any]:
        """An optional JSON body (``{"requested_by": ...}``); none at all is an empty one."""
        raw = await request.body()
        return await body_json(request) if raw.strip() else {}

    def agent_or_404(text: str) -> Any:
        uid = parse_uid(text)
        state = hub.agents.get(uid) if uid is not None else None
        if state is None:
            raise HubError(404, f"no agent {text}")
        return state

    async def health(request: Request, tok: Token) -> Response:
        online = sum(1 for s in hub.agents.values() if s.online)
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "agents": len(hub.agents),
                "online": online,
                "errors": hub.errors.as_json(),
                "store": hub.store.stats(),
                "node": hub.node,
                "nodes": sorted(hub.alive_nodes) if hub.shared else [hub.node],
                "load": {"lag_ms": round(hub.lag * 1000, 1), "overloaded": hub.overloaded, "refused": hub.refused},
            }
        )

    async def agents(request: Request, tok: Token) -> Response:
        match = request.query_params.get("match", "")
        try:
            matchers = parse_selector(match)
        except MatcherError as exc:
            raise HubError(400, str(exc)) from None
        view = request.query_params.get("view", "full")
        if view not in ("full", "compact"):
            raise HubError(400, f"view must be full or compact, not {view!r}")
        states = [s for s in list(hub.agents.values()) if not matchers or matches(matchers, s.attributes)]
        states.sort(key=lambda s: s.uid)
        if view == "compact":
            fields = json.dumps(COMPACT_FIELDS, separators=(",", ":"))
            body = (
                f'{{"generated_at":"{now_text()}","view":"compact","fields":{fields},"agents":['
                + ",".join(agent_compact_text(s, connected=hub.is_connected(s), config_text=hub.compact_config_text(s)) for s in states)
                + "]}"
            )
        else:
            body = (
                f'{{"generated_at":"{now_text()}","agents":['
                + ",".join(hub.agent_view_text(s) for s in states)
                + "]}"
            )
        return Response(body, media_type="application/json")

    async def agent(request: Request, tok: Token) -> Response:
        state = agent_or_404(request.path_params["uid"])
        history = await hub.history(state.uid)
        return JSONResponse(
            agent_detail_json(
                state,
                connected=hub.is_connected(state),
                heartbeat_seconds=hub.heartbeat_of(state),
                history=history,
                config=hub.config_facts(state, detail=True),
            )
        )

    async def restart(request: Request, tok: Token) -> Response:
        state = agent_or_404(request.path_params["uid"])
        await hub.request_restart(state.uid, who(tok, await body_json_or_empty(request)))
        return JSONResponse({"queued": True}, status_code=202)

    async def configs(request: Request, tok: Token) -> Response:
        out = []
        for name, versions in sorted(hub.configs.items()):
            if not versions:
                continue
            latest = versions[-1]
            out.append(
                {
                    "name": name,
                    "latest_version": latest.version,
                    "versions": len(versions),
                    "hash": latest.hash.hex(),
                    "updated_at": latest.created_at,
                }
            )
        return JSONResponse({"configs": out})

    async def create_config(request: Request, tok: Token) -> Response:
        data = await body_json(request)
        name = data.get("name")
        files = data.get("files")
        if data.get("author") is not None and not isinstance(data.get("author"), str):
            raise HubError(400, "'author' must be a string")
        author = who(tok, data)
        note = data.get("note") or ""
        if not isinstance(name, str) or not name:
            raise HubError(400, "'name' must be a non-empty string")
        if not isinstance(files, dict):
            raise HubError(400, "'files' must be an object {file name: {body, content_type}}")
        parsed: dict[str, tuple[str, str]] = {}
        for fname, f in files.items():
            if not isinstance(f, dict) or not isinstance(f.get("body"), str):
                raise HubError(400, f"files[{fname!r}] must be an object with a string 'body'")
            ct = f.get("content_type", "text/yaml")
            if not isinstance(ct, str):
                raise HubError(400, f"files[{fname!r}].content_type must be a string")
            parsed[str(fname)] = (f["body"], ct)
        if not isinstance(author, str) or not isinstance(note, str):
            raise HubError(400, "'author' and 'note' must be strings")
        cv = await hub.create_config(name, parsed, author, note, author)
        return JSONResponse(cv.json(), status_code=201)

    async def config(request: Request, tok: Token) -> Response:
        name = request.path_params["name"]
        versions = hub.configs.get(name)
        if not versions:
            raise HubError(404, f"no config named {name!r}")
        return JSONResponse({"name": name, "versions": [v.json(files=False) for v in versions]})

    async def config_version(request: Request, tok: Token) -> Response:
        name = request.path_params["name"]
        raw = request.path_params["version"]
        if not raw.isdigit():
            raise HubError(400, f"version must be a whole number, got {raw!r}")
        cv = hub.config_version(name, int(raw))
        if cv is None:
            raise HubError(404, f"no config {name!r} version {raw}")
        return JSONResponse(cv.json())

    async def assignments(request: Request, tok: Token) -> Response:
        counts = hub.assignment_counts()
        items = sorted(hub.assignments, key=lambda a: a.id)
        return JSONResponse({"assignments": [a.json(counts.get(a.id, 0)) for a in items]})

    async def create_assignment(request: Request, tok: Token) -> Response:
        data = await body_json(request)
        config_name = data.get("config")
        version = data.get("version")
        selector = data.get("selector", "")
        priority = data.get("priority", 0)
        if data.get("author") is not None and not isinstance(data.get("author"), str):
            raise HubError(400, "'author' must be a string")
        author = who(tok, data)
        if not isinstance(config_name, str) or not config_name:
            raise HubError(400, "'config' must be a non-empty string")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise HubError(400, "'version' must be a whole number or null")
        if not isinstance(selector, str):
            raise HubError(400, "'selector' must be a string of matchers")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise HubError(400, "'priority' must be a whole number")
        if not isinstance(author, str):
            raise HubError(400, "'author' must be a string")
        out = await hub.create_assignment(config_name, version, selector, priority, author, author)
        return JSONResponse(out, status_code=201)

    async def delete_assignment(request: Request, tok: Token) -> Response:
        raw = request.path_params["id"]
        if not raw.isdigit():
            raise HubError(400, f"assignment id must be a whole number, got {raw!r}")
        await hub.delete_assignment(int(raw), who(tok, await body_json_or_empty(request)))
        return Response(status_code=204)

    async def audit(request: Request, tok: Token) -> Response:
        since = request.query_params.get("since") or None
        raw_limit = request.query_params.get("limit", "100")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 10_000:
            raise HubError(400, "limit must be a whole number from 1 to 10000")
        return JSONResponse({"entries": await hub.audit(since, int(raw_limit))})

    async def events(request: Request, tok: Token) -> Response:
        sub = hub.events.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield ": connected\n\n"
                while not sub.dropped or not sub.queue.empty():
                    try:
                        text = await asyncio.wait_for(sub.queue.get(), keepalive)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    yield text
            finally:
                hub.events.unsubscribe(sub)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    # Every mutating endpoint: (method, path, handler). tests walk this list with a read token.
    mutating: list[tuple[str, str, Handler]] = [
        ("POST", "/api/v1/agents/{uid}/restart", restart),
        ("POST", "/api/v1/configs", create_config),
        ("POST", "/api/v1/assignments", create_assignment),
        ("DELETE", "/api/v1/assignments/{id}", delete_assignment),
    ]
    reading: list[tuple[str, str, Handler]] = [
        ("GET", "/api/v1/health", health),
        ("GET", "/api/v1/agents", agents),
        ("GET", "/api/v1/agents/{uid}", agent),
        ("GET", "/api/v1/configs", configs),
        ("GET", "/api/v1/configs/{name}", config),
        ("GET", "/api/v1/configs/{name}/versions/{version}", config_version),
        ("GET", "/api/v1/assignments", assignments),
        ("GET", "/api/v1/audit", audit),
        ("GET", "/api/v1/events", events),
    ]
    safe_posts: list[tuple[str, str]] = []  # POST endpoints that change nothing (a read token may call them)
    if rollouts is not None:  # staged rollouts (otelcockpit/opamp_server/rollout_routes.py)
        from otelcockpit.opamp_server.rollout_routes import admin_routes

        more_mutating, more_reading = admin_routes(rollouts)
        safe_posts = [(m, p) for m, p, _ in more_reading if m != "GET"]
        mutating += more_mutating
        reading = more_reading + reading
    routes = [Route(p, guarded(h, write=True), methods=[m]) for m, p, h in mutating]
    routes += [Route(p, guarded(h, write=False), methods=[m]) for m, p, h in reading]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return error(exc.status_code, detail.lower())

    async def server_error(request: Request, exc: Exception) -> Response:
        return error(500, f"internal error: {type(exc).__name__}")

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.mutating = [(m, p) for m, p, _ in mutating]
    app.state.safe_posts = safe_posts
    return app
