"""The fake's HTTP face: the Connect protocol with JSON, as a starlette app.

``POST /{package}.{Service}/{Method}`` with ``Content-Type: application/json``; GetConfig also
answers Connect GET requests (``?connect=v1&encoding=json&message=...``). Errors are Connect
error bodies ``{"code", "message"}`` with the matching HTTP status. Basic auth with a read and
a write credential: a read credential calling a mutating RPC gets 403 ``permission_denied``.
An optional token bucket answers 429 ``resource_exhausted``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from otelcockpit.fm_fake.state import FakeState, RpcError

PIPELINE = "pipeline.v1.PipelineService"
COLLECTOR = "collector.v1.CollectorService"
TENANT = "tenant.v1.TenantService"

READ, WRITE, AGENT = "read", "write", "agent"

# procedure -> the scope it needs
PROCEDURES: dict[str, str] = {
    f"{PIPELINE}/GetPipeline": READ,
    f"{PIPELINE}/GetPipelineID": READ,
    f"{PIPELINE}/ListPipelines": READ,
    f"{PIPELINE}/CreateAlloyPipelines": WRITE,
    f"{PIPELINE}/CreatePipeline": WRITE,
    f"{PIPELINE}/UpdatePipeline": WRITE,
    f"{PIPELINE}/UpsertPipeline": WRITE,
    f"{PIPELINE}/DeletePipeline": WRITE,
    f"{PIPELINE}/BulkDeletePipelines": WRITE,
    f"{PIPELINE}/ListPipelinesRevisions": READ,
    f"{PIPELINE}/ListPipelineRevisions": READ,
    f"{PIPELINE}/GetPipelineRevision": READ,
    f"{PIPELINE}/SyncPipelines": WRITE,
    f"{COLLECTOR}/GetCollector": READ,
    f"{COLLECTOR}/ListCollectors": READ,
    f"{COLLECTOR}/CreateCollector": WRITE,
    f"{COLLECTOR}/UpdateCollector": WRITE,
    f"{COLLECTOR}/BulkUpdateCollectors": WRITE,
    f"{COLLECTOR}/BulkDeleteCollectors": WRITE,
    f"{COLLECTOR}/DeleteCollector": WRITE,
    f"{COLLECTOR}/ListCollectorAttributes": READ,
    # What collectors call: a token with fleet-management:read is enough (research §4).
    f"{COLLECTOR}/RegisterCollector": AGENT,
    f"{COLLECTOR}/UnregisterCollector": AGENT,
    f"{COLLECTOR}/GetConfig": AGENT,
    f"{TENANT}/GetLimits": READ,
}
GET_ALLOWED = {f"{COLLECTOR}/GetConfig"}


@dataclass(frozen=True)
class Credentials:
    instance_id: str = "1000001"
    read_token: str = "fm-read-token"
    write_token: str = "fm-write-token"

    def scope_of(self, header: str | None) -> str | None:
        """``write``, ``read`` or None (not authenticated) for an Authorization header."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if user != self.instance_id:
            return None
        if password == self.write_token:
            return WRITE
        if password == self.read_token:
            return READ
        return None

    def as_dict(self) -> dict[str, str]:
        return {
            "instance_id": self.instance_id,
            "read_token": self.read_token,
            "write_token": self.write_token,
        }


class TokenBucket:
    """Allows ``rate`` requests per second with a burst of ``max(1, rate)``; never waits."""

    def __init__(self, rate: float, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class FakeServerApp:
    """Owns the state, the credentials and the counters; ``.app`` is the ASGI application."""

    def __init__(
        self,
        state: FakeState,
        credentials: Credentials | None = None,
        *,
        rate_limit: float | None = None,
        agent_rate_limit: float | None = None,
    ) -> None:
        self.state = state
        self.credentials = credentials or Credentials()
        self.api_bucket = TokenBucket(rate_limit) if rate_limit else None
        self.agent_bucket = TokenBucket(agent_rate_limit) if agent_rate_limit else None
        if rate_limit:
            state.limits.api_rps = rate_limit
        if agent_rate_limit:
            state.limits.collector_rps = agent_rate_limit
        # Simulated outage (tests, demos): answer every RPC with this HTTP status, for the next
        # ``outage_remaining`` requests or until cleared when that is None.
        self.outage: int | None = None
        self.outage_remaining: int | None = None
        self.calls: Counter[str] = Counter()  # procedure -> calls that reached the handler
        self.statuses: Counter[int] = Counter()
        self.lock = asyncio.Lock()
        self.app = Starlette(
            routes=[
                Route("/_fake/agents", self.agents, methods=["GET"]),
                Route("/{service}/{method}", self.handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            ]
        )

    def _error(
        self, code: str, message: str, status: int | None = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        err = RpcError(code, message)
        self.statuses[status or err.status] += 1
        return JSONResponse(
            {"code": code, "message": message}, status_code=status or err.status, headers=headers
        )

    async def handle(self, request: Request) -> Response:
        procedure = f"{request.path_params['service']}/{request.path_params['method']}"
        scope_needed = PROCEDURES.get(procedure)
        if scope_needed is None:
            self.statuses[404] += 1
            return PlainTextResponse("404 page not found", status_code=404)
        if request.method != "POST" and not (request.method == "GET" and procedure in GET_ALLOWED):
            self.statuses[405] += 1
            allow = "GET, POST" if procedure in GET_ALLOWED else "POST"
            return PlainTextResponse("405 method not allowed", status_code=405, headers={"Allow": allow})
        if self.outage is not None and (self.outage_remaining is None or self.outage_remaining > 0):
            # A load balancer in front of the service answering on its own (plain text, no Connect body).
            if self.outage_remaining is not None:
                self.outage_remaining -= 1
            self.statuses[self.outage] += 1
            return PlainTextResponse(f"{self.outage} upstream unavailable", status_code=self.outage)
        scope = self.credentials.scope_of(request.headers.get("authorization"))
        if scope is None:
            return self._error("unauthenticated", "authentication error: invalid credentials")
        if scope_needed == WRITE and scope != WRITE:
            return self._error(
                "permission_denied",
                f"the token lacks the fleet-management:write scope needed for {procedure.split('/')[1]}",
            )
        bucket = self.agent_bucket if scope_needed == AGENT else self.api_bucket
        if bucket is not None and not bucket.take():
            return self._error("resource_exhausted", f"rate limit exceeded ({bucket.rate:g} requests/s)")

        if request.method == "GET":
            params = request.query_params
            if params.get("encoding", "json") != "json":
                return self._error("unimplemented", "this fake speaks JSON only (encoding=json)", 415)
            raw = params.get("message", "")
            try:
                body = (
                    base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
                    if params.get("base64") == "1"
                    else unquote(raw).encode()
                )
            except (binascii.Error, ValueError):
                return self._error("invalid_argument", "message: bad base64")
        else:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                self.statuses[415] += 1
                return PlainTextResponse(
                    "415 unsupported media type (this fake speaks application/json only)",
                    status_code=415,
                    headers={"Accept-Post": "application/json"},
                )
            body = await request.body()
        if not body:
            return self._error(
                "invalid_argument", "unmarshal into request: zero-length payload is not a valid JSON object"
            )
        try:
            msg = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._error("invalid_argument", f"unmarshal into request: {exc}")
        if not isinstance(msg, dict):
            return self._error("invalid_argument", "unmarshal into request: expected a JSON object")

        method = getattr(self.state, procedure.split("/")[1])
        self.calls[procedure] += 1
        async with self.lock:
            try:
                result = method(msg)
            except RpcError as exc:
                return self._error(exc.code, exc.message)
        self.statuses[200] += 1
        return JSONResponse(result)

    async def agents(self, request: Request) -> Response:
        """Test and demo helper (not a Fleet Management API): what polling collectors reported."""
        if self.credentials.scope_of(request.headers.get("authorization")) is None:
            return self._error("unauthenticated", "authentication error: invalid credentials")
        out = {
            cid: {
                "lastSeen": a.last_seen.isoformat() if a.last_seen else None,
                "polls": a.polls,
                "hash": a.last_hash,
                "status": a.status,
                "error": a.error,
            }
            for cid, a in sorted(self.state.agents.items())
        }
        return JSONResponse({"agents": out})
