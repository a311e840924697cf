"""An async client for the Grafana Fleet Management API (Connect protocol, JSON).

Every call is ``POST {base}/{package}.{Service}/{Method}`` with a JSON body (at least ``{}``)
and answers the bare response message in protojson (camelCase, zero values omitted, 64-bit
numbers as strings, enums by name). Errors are ``{"code", "message"}``; when a proxy answers
instead, the HTTP status decides the code. Requests pass a token bucket (3 requests/s, the
documented limit, or what GetLimits reports) and are retried with jittered exponential backoff
on 429, 503 and 504.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx

from otelcockpit.errors import BackendError

PIPELINE = "pipeline.v1.PipelineService"
COLLECTOR = "collector.v1.CollectorService"
TENANT = "tenant.v1.TenantService"

DEFAULT_RPS = 3.0
RETRY_STATUSES = frozenset({429, 503, 504})
WRITE_METHODS = frozenset(
    {
        "CreatePipeline",
        "UpdatePipeline",
        "UpsertPipeline",
        "DeletePipeline",
        "BulkDeletePipelines",
        "SyncPipelines",
        "CreateCollector",
        "UpdateCollector",
        "BulkUpdateCollectors",
        "BulkDeleteCollectors",
        "DeleteCollector",
    }
)

# What connect clients assume when a non-Connect body arrives (research §1).
HTTP_TO_CODE = {
    400: "internal",
    401: "unauthenticated",
    403: "permission_denied",
    404: "unimplemented",
    429: "unavailable",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
}


class FleetAPIError(BackendError):
    """A Fleet Management call failed. ``kind`` is the error family, ``code`` the Connect code."""

    kind = "error"

    def __init__(self, message: str, *, code: str = "", status: int | None = None, method: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.method = method


class Unauthenticated(FleetAPIError):
    kind = "unauthenticated"


class PermissionDenied(FleetAPIError):
    kind = "permission_denied"


class NotFound(FleetAPIError):
    kind = "not_found"


class InvalidArgument(FleetAPIError):
    kind = "invalid_argument"


class RateLimited(FleetAPIError):
    kind = "rate_limited"


class Unavailable(FleetAPIError):
    kind = "unavailable"


CODE_TO_ERROR: dict[str, type[FleetAPIError]] = {
    "unauthenticated": Unauthenticated,
    "permission_denied": PermissionDenied,
    "not_found": NotFound,
    "invalid_argument": InvalidArgument,
    "failed_precondition": InvalidArgument,
    "out_of_range": InvalidArgument,
    "already_exists": InvalidArgument,
    "resource_exhausted": RateLimited,
    "unavailable": Unavailable,
    "deadline_exceeded": Unavailable,
}


@dataclass(frozen=True)
class Deadline:
    """One deadline for a whole operation (several RPCs, their retries and back-off sleeps)."""

    started: float
    budget: float

    def remaining(self) -> float:
        return self.started + self.budget - time.monotonic()

    def waited(self) -> float:
        return time.monotonic() - self.started


_DEADLINE: ContextVar[Deadline | None] = ContextVar("fleet_management_deadline", default=None)


class TokenBucket:
    """``rate`` requests per second with a burst of ``max(1, rate)``; ``acquire`` waits its turn."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = asyncio.Lock()
        self.set_rate(rate)
        self.stamp = clock()

    def set_rate(self, rate: float) -> None:
        self.rate = max(0.01, float(rate))
        self.capacity = max(1.0, self.rate)
        self.tokens = min(getattr(self, "tokens", self.capacity), self.capacity)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self.tokens) / self.rate)


class FleetClient:
    """One client per base URL. Use ``async with`` or call ``aclose()``."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        username_env: str = "FLEET_MANAGEMENT_INSTANCE_ID",
        password_env: str = "FLEET_MANAGEMENT_TOKEN",
        timeout: float = 30.0,
        rate: float = DEFAULT_RPS,
        max_retries: int = 4,
        backoff_base: float = 0.25,
        backoff_cap: float = 8.0,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.username_env = username_env
        self.password_env = password_env
        self.timeout = timeout
        self.bucket = TokenBucket(rate)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.rng = rng or random.Random()
        self.retries = 0  # how many retries were made (for tests and the status line)
        self._http = httpx.AsyncClient(
            auth=(username, password),
            timeout=timeout,
            headers={"Connect-Protocol-Version": "1", "Accept-Encoding": "gzip"},
            transport=transport,
        )

    async def __aenter__(self) -> FleetClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- the wire ----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def deadline(self, seconds: float | None = None) -> AsyncIterator[Deadline]:
        """Every call inside shares one deadline (``seconds``, default the client's timeout): a hung
        Fleet Management costs one timeout per operation, not one per RPC. Nested uses keep the
        outer deadline."""
        outer = _DEADLINE.get()
        if outer is not None:
            yield outer
            return
        dl = Deadline(time.monotonic(), float(seconds if seconds is not None else self.timeout))
        token = _DEADLINE.set(dl)
        try:
            yield dl
        finally:
            _DEADLINE.reset(token)

    def _timed_out(self, dl: Deadline, method: str) -> Unavailable:
        return Unavailable(
            f"Fleet Management at {self.base_url} did not answer {method} in time "
            f"(waited {dl.waited():.1f}s; the limit is {dl.budget:g}s)",
            code="deadline_exceeded",
            method=method,
        )

    async def call_raw(self, service: str, method: str, body: Mapping[str, Any] | None = None) -> bytes:
        """One RPC; the raw JSON bytes of the answer (for callers that decode in bulk). Retries and
        back-off stay within the operation's deadline (see ``deadline``)."""
        async with self.deadline() as dl:
            return await self._call_raw(service, method, body, dl)

    async def _call_raw(
        self, service: str, method: str, body: Mapping[str, Any] | None, dl: Deadline
    ) -> bytes:
        url = f"{self.base_url}/{service}/{method}"
        payload = json.dumps(body or {}, separators=(",", ":")).encode()
        attempt = 0
        while True:
            if dl.remaining() <= 0:
                raise self._timed_out(dl, method)
            try:
                await asyncio.wait_for(self.bucket.acquire(), dl.remaining())
            except TimeoutError:
                raise self._timed_out(dl, method) from None
            remaining = dl.remaining()
            if remaining <= 0:
                raise self._timed_out(dl, method)
            try:
                r = await self._http.post(
                    url,
                    content=payload,
                    headers={"Content-Type": "application/json"},
                    timeout=min(self.timeout, remaining),
                )
            except httpx.TimeoutException:
                raise self._timed_out(dl, method) from None
            except httpx.HTTPError as exc:
                raise Unavailable(
                    f"cannot reach Fleet Management at {self.base_url}: {_reason(exc)}",
                    code="unavailable",
                    method=method,
                ) from None
            if r.status_code == 200:
                return r.content
            if r.status_code in RETRY_STATUSES and attempt < self.max_retries:
                delay = self._delay(attempt + 1, r.headers.get("retry-after"))
                if delay < dl.remaining():  # a retry that cannot finish in time is not made
                    attempt += 1
                    self.retries += 1
                    await asyncio.sleep(delay)
                    continue
            raise self._error(r, service, method)

    async def call(self, service: str, method: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        raw = await self.call_raw(service, method, body)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            raise Unavailable(
                f"Fleet Management at {self.base_url} answered {method} with something that is not JSON",
                method=method,
            ) from None
        if not isinstance(data, dict):
            raise Unavailable(
                f"Fleet Management at {self.base_url} answered {method} with a non-object", method=method
            )
        return data

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**attempt)); a Retry-After header is a floor."""
        delay = self.rng.uniform(0, min(self.backoff_cap, self.backoff_base * (2**attempt)))
        if retry_after:
            try:
                delay = max(delay, min(self.backoff_cap, float(retry_after)))
            except ValueError:
                pass
        return delay

    def _error(self, r: httpx.Response, service: str, method: str) -> FleetAPIError:
        code, message = "", ""
        if r.headers.get("content-type", "").startswith("application/json"):
            try:
                body = r.json()
                if isinstance(body, dict):
                    code = str(body.get("code") or "")
                    message = str(body.get("message") or "")
            except ValueError:
                pass
        if not code:  # a proxy or a load balancer answered: the status decides
            code = HTTP_TO_CODE.get(r.status_code, "unknown")
            if r.status_code == 404:
                message = (
                    f"no Fleet Management API at {self.base_url} (404 for {service}/{method}); check the URL"
                )
            elif r.status_code == 429:
                code = "resource_exhausted"
        message = message or r.reason_phrase or f"HTTP {r.status_code}"
        write = method in WRITE_METHODS
        scope = "fleet-management:write" if write else "fleet-management:read"
        if code == "unauthenticated":
            text = (
                f"Fleet Management refused the credentials ({message}): set {self.username_env} to the stack's "
                f"Fleet Management instance ID and {self.password_env} to an access-policy token with the "
                f"{scope} scope"
            )
        elif code == "permission_denied":
            text = (
                f"Fleet Management denied {method} ({message}): the token in {self.password_env} needs the "
                f"{scope} scope"
            )
        elif code == "resource_exhausted":
            text = f"Fleet Management rate limit hit on {method} after {self.max_retries} retries: {message}"
        elif code in ("unavailable", "deadline_exceeded") or r.status_code >= 500:
            text = f"Fleet Management at {self.base_url} is unavailable ({r.status_code} {code}): {message}"
        else:
            text = f"Fleet Management {method}: {code}: {message}"
        cls = CODE_TO_ERROR.get(code)
        if cls is None:
            cls = Unavailable if r.status_code >= 500 else FleetAPIError
        return cls(text, code=code, status=r.status_code, method=method)

    # ---- pipeline.v1.PipelineService ----------------------------------------------------------
    async def get_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        return await self.call(PIPELINE, "GetPipeline", {"id": pipeline_id})

    async def get_pipeline_id(self, name: str) -> str:
        return str((await self.call(PIPELINE, "GetPipelineID", {"name": name})).get("id", ""))

    async def list_pipelines(
        self,
        *,
        local_attributes: Mapping[str, str] | None = None,
        remote_attributes: Mapping[str, str] | None = None,
        config_type: str | None = None,
        enabled: bool | None = None,
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {}
        if local_attributes:
            body["localAttributes"] = dict(local_attributes)
        if remote_attributes:
            body["remoteAttributes"] = dict(remote_attributes)
        if config_type is not None:
            body["configType"] = config_type
        if enabled is not None:
            body["enabled"] = enabled
        return list((await self.call(PIPELINE, "ListPipelines", body)).get("pipelines") or [])

    async def create_pipeline(
        self, pipeline: Mapping[str, Any], *, validate_only: bool = False
    ) -> dict[str, Any]:
        return await self.call(
            PIPELINE, "CreatePipeline", _with_validate({"pipeline": dict(pipeline)}, validate_only)
        )

    async def update_pipeline(
        self, pipeline: Mapping[str, Any], *, validate_only: bool = False
    ) -> dict[str, Any]:
        return await self.call(
            PIPELINE, "UpdatePipeline", _with_validate({"pipeline": dict(pipeline)}, validate_only)
        )

    async def upsert_pipeline(
        self, pipeline: Mapping[str, Any], *, validate_only: bool = False
    ) -> dict[str, Any]:
        return await self.call(
            PIPELINE, "UpsertPipeline", _with_validate({"pipeline": dict(pipeline)}, validate_only)
        )

    async def delete_pipeline(self, pipeline_id: str) -> None:
        await self.call(PIPELINE, "DeletePipeline", {"id": pipeline_id})

    async def bulk_delete_pipelines(self, ids: Sequence[str]) -> None:
        await self.call(PIPELINE, "BulkDeletePipelines", {"ids": list(ids)})

    async def list_pipelines_revisions(self) -> list[dict[str, Any]]:
        return list((await self.call(PIPELINE, "ListPipelinesRevisions", {})).get("pipelineRevisions") or [])

    async def list_pipeline_revisions(self, pipeline_id: str) -> list[dict[str, Any]]:
        data = await self.call(PIPELINE, "ListPipelineRevisions", {"id": pipeline_id})
        return list(data.get("pipelineRevisions") or [])

    async def get_pipeline_revision(self, revision_id: str) -> dict[str, Any]:
        return await self.call(PIPELINE, "GetPipelineRevision", {"revisionId": revision_id})

    async def sync_pipelines(self, source: Mapping[str, str], pipelines: Sequence[Mapping[str, Any]]) -> None:
        await self.call(
            PIPELINE, "SyncPipelines", {"source": dict(source), "pipelines": [dict(p) for p in pipelines]}
        )

    # ---- collector.v1.CollectorService ------------------------------------------------------
    async def get_collector(self, collector_id: str) -> dict[str, Any]:
        return await self.call(COLLECTOR, "GetCollector", {"id": collector_id})

    async def list_collectors_raw(self, matchers: Sequence[str] = ()) -> bytes:
        return await self.call_raw(
            COLLECTOR, "ListCollectors", {"matchers": list(matchers)} if matchers else {}
        )

    async def list_collectors(self, matchers: Sequence[str] = ()) -> list[dict[str, Any]]:
        body = {"matchers": list(matchers)} if matchers else {}
        return list((await self.call(COLLECTOR, "ListCollectors", body)).get("collectors") or [])

    async def create_collector(self, collector: Mapping[str, Any]) -> dict[str, Any]:
        return await self.call(COLLECTOR, "CreateCollector", {"collector": dict(collector)})

    async def update_collector(self, collector: Mapping[str, Any]) -> dict[str, Any]:
        return await self.call(COLLECTOR, "UpdateCollector", {"collector": dict(collector)})

    async def bulk_update_collectors(self, ids: Sequence[str], ops: Sequence[Mapping[str, Any]]) -> None:
        await self.call(COLLECTOR, "BulkUpdateCollectors", {"ids": list(ids), "ops": [dict(o) for o in ops]})

    async def bulk_delete_collectors(self, ids: Sequence[str]) -> None:
        await self.call(COLLECTOR, "BulkDeleteCollectors", {"ids": list(ids)})

    async def delete_collector(self, collector_id: str) -> None:
        await self.call(COLLECTOR, "DeleteCollector", {"id": collector_id})

    async def list_collector_attributes(self) -> dict[str, dict[str, list[str]]]:
        """``{"local": {key: [values]}, "remote": {key: [values]}}``."""
        data = await self.call(COLLECTOR, "ListCollectorAttributes", {})

        def flat(d: Any) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for k, v in (d or {}).items():
                out[str(k)] = [str(x.get("value", "")) for x in (v or {}).get("values") or []]
            return out

        return {
            "local": flat(data.get("localAttributes") or data.get("attributes")),
            "remote": flat(data.get("remoteAttributes") or data.get("attributeOverrides")),
        }

    # ---- tenant.v1.TenantService --------------------------------------------------------------
    async def get_limits(self) -> dict[str, Any]:
        return await self.call(TENANT, "GetLimits", {})

    async def adjust_rate_from_limits(self) -> float | None:
        """Ask GetLimits for the API request rate and use it; None (rate unchanged) when it does not say."""
        try:
            limits = await self.get_limits()
        except (Unauthenticated, PermissionDenied):
            raise
        except Unavailable as exc:
            if exc.status is None:
                raise  # no answer at all (timeout, unreachable): the next call would fare no better
            return None
        except FleetAPIError:
            return None  # an older service or a proxy without the tenant API: keep the documented rate
        rate = api_rate_from_limits(limits)
        if rate:
            self.bucket.set_rate(rate)
        return rate


def api_rate_from_limits(limits: Mapping[str, Any]) -> float | None:
    """The ``requests_per_second:api`` limit, whichever spelling the answer uses (the shape is unpublished)."""
    candidates: list[Any] = []
    nested = (
        limits.get("requestsPerSecond") or limits.get("requests_per_second") or limits.get("requestLimits")
    )
    if isinstance(nested, Mapping):
        candidates += [nested.get("api"), nested.get("API")]
    candidates += [
        limits.get("requests_per_second:api"),
        limits.get("requestsPerSecondApi"),
        limits.get("requests_per_second_api"),
    ]
    for value in candidates:
        try:
            rate = float(value)
        except (TypeError, ValueError):
            continue
        if rate > 0:
            return rate
    return None


def normalize_base_url(url: str) -> str:
    """The root URL: any trailing ``/{package}.{Service}/`` suffix or slash removed."""
    url = url.strip().rstrip("/")
    for service in (PIPELINE, COLLECTOR, TENANT):
        if url.endswith("/" + service):
            url = url[: -len(service) - 1]
    return url


def _with_validate(body: dict[str, Any], validate_only: bool) -> dict[str, Any]:
    if validate_only:
        body["validateOnly"] = True
    return body


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc).strip()
    if "refused" in text.lower():
        return "connection refused"
    return text or type(exc).__name__
