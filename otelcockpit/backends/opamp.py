"""The ``opamp`` backend: a client of ``otelcockpit serve``'s admin API.

``--source opamp --url http://HOST:4321``; the bearer token comes from the environment variable
the context names (``token_env``, default ``OTELCOCKPIT_OPAMP_TOKEN``), never from a file.

- ``snapshot()`` reads the compact agent list (``/api/v1/agents?view=compact``: what a fleet table
  needs, about a fifth of the full form), ``/api/v1/configs`` and ``/api/v1/assignments`` and maps
  agents to :class:`Collector` objects and OpAMP configs to :class:`Pipeline` objects. An agent's
  effective config and whole component tree come on demand (``collector_detail()``).
- ``events()`` follows the server-sent event stream (``/api/v1/events``) and yields parsed
  :class:`OpAmpEvent` objects; ``apply_events()`` folds a batch of them into the last snapshot, so a
  view can stay live without re-reading the whole fleet.
- When the API fails the last snapshot is kept, marked stale with its age and the error kind, and
  the backend backs off before asking again; pushes are refused until fresh data arrives.

:class:`OpAmpApi` is the thin typed HTTP client both the backend and ``otelcockpit opamp ...`` use.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import httpx

from otelcockpit.backends.base import PIPELINE_UPSERT, Change, PushResult, refuse_if_stale
from otelcockpit.errors import BackendError, UsageError
from otelcockpit.fleet.components import names_from_tree
from otelcockpit.fleet.configfiles import files_from_text, render_files
from otelcockpit.fleet.matchers import MatcherError, parse_matchers
from otelcockpit.fleet.model import (
    BackendHealth,
    CameUp,
    Collector,
    CollectorType,
    ComponentHealth,
    ConfigReport,
    ConfigStatus,
    FleetSnapshot,
    Health,
    Operation,
    Pipeline,
    RemoteConfig,
    Revision,
    age_text,
    parse_time,
    utcnow,
)

DEFAULT_TOKEN_ENV = "OTELCOCKPIT_OPAMP_TOKEN"
API = "/api/v1"
KEEPALIVE_GRACE = 45.0  # the server sends ": keepalive" every 15 s; 3 missed means the stream is dead
OPEN = "\x00open"  # pseudo event: the stream's response headers arrived
NO_HEALTH_REASON = "agent does not report health (no ReportsHealth capability)"
NOT_YET_REASON = "agent has not reported health yet"

_STATUS = {
    "UNSET": ConfigStatus.UNSET,
    "APPLYING": ConfigStatus.APPLYING,
    "APPLIED": ConfigStatus.APPLIED,
    "FAILED": ConfigStatus.FAILED,
}


# --------------------------------------------------------------------------------------------
# Errors


class OpAmpApiError(BackendError):
    """A failed admin API call. ``kind`` is one of unreachable, timeout, unauthorized, forbidden,
    not_found, conflict, rejected, server_error, bad_response."""

    def __init__(self, message: str, kind: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# The HTTP client


class OpAmpApi:
    """Typed calls to the admin API; every failure is an :class:`OpAmpApiError` with one line."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        token_env: str = DEFAULT_TOKEN_ENV,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = url.rstrip("/")
        if not re.match(r"^https?://", base):
            raise UsageError(f"the opamp backend needs an http(s) URL of the admin API, not {url!r}")
        if base.endswith(API):
            base = base[: -len(API)]
        self.url = base
        self.token_env = token_env
        self.has_token = bool(token)
        headers = {"Accept": "application/json", "User-Agent": "otelcockpit"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.AsyncClient(
            base_url=base,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
            trust_env=False,
        )

    async def close(self) -> None:
        await self.client.aclose()

    # -- error mapping ---------------------------------------------------------------------

    def _auth_error(self, status: int, detail: str) -> OpAmpApiError:
        if status == 401:
            if not self.has_token:
                msg = f"the OpAMP admin API at {self.url} needs a token: set ${self.token_env}"
            else:
                msg = f"the OpAMP admin API at {self.url} refused the token in ${self.token_env} (401 unauthorized)"
            return OpAmpApiError(msg, "unauthorized", status)
        msg = (
            f"the token in ${self.token_env} may not do this ({detail or '403 forbidden'}); "
            f"a write token is needed"
        )
        return OpAmpApiError(_one_line(msg), "forbidden", status)

    def _transport_error(self, exc: Exception) -> OpAmpApiError:
        if isinstance(exc, httpx.TimeoutException):
            return OpAmpApiError(
                f"the OpAMP admin API at {self.url} timed out ({type(exc).__name__})", "timeout"
            )
        reason = _one_line(str(exc) or type(exc).__name__, 120)
        return OpAmpApiError(f"cannot reach the OpAMP admin API at {self.url}: {reason}", "unreachable")

    async def request(
        self, method: str, path: str, *, json_body: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        attempts = 2 if method == "GET" else 1  # a GET on a keep-alive connection the server just closed
        for attempt in range(attempts):
            try:
                resp = await self.client.request(method, API + path, json=json_body, params=params)
                break
            except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                if attempt + 1 >= attempts:
                    raise self._transport_error(exc) from None
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from None
        return self._decode(resp, method, path)

    def _decode(self, resp: httpx.Response, method: str, path: str) -> Any:
        status = resp.status_code
        if status == 204:
            return None
        detail = ""
        data: Any = None
        try:
            data = resp.json() if resp.content else None
        except ValueError:
            data = None
        if isinstance(data, Mapping) and isinstance(data.get("error"), str):
            detail = _one_line(data["error"])
        if status in (401, 403):
            raise self._auth_error(status, detail)
        if status >= 500:
            raise OpAmpApiError(
                _one_line(
                    f"the OpAMP admin API at {self.url} failed: {status} {detail or resp.reason_phrase}"
                ),
                "server_error",
                status,
            )
        if status >= 400:
            kind = {404: "not_found", 409: "conflict"}.get(status, "rejected")
            # The server speaks to the user: its one line is the message; without one, say which call.
            message = detail or f"{method} {API}{path}: {status} {resp.reason_phrase}"
            err = OpAmpApiError(_one_line(message), kind, status)
            if status == 422:  # the request itself is wrong (a bad revision, a bad field): a usage error
                err.exit_code = 2
            raise err
        if data is None and resp.content:
            raise OpAmpApiError(
                f"the OpAMP admin API at {self.url} sent a non-JSON answer to {method} {API}{path}",
                "bad_response",
            )
        return data

    # -- endpoints -------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await self.request("GET", "/health")

    async def agents(self, match: str | None = None, *, view: str = "full") -> dict[str, Any]:
        params = {"match": match} if match else {}
        if view != "full":
            params["view"] = view
        return await self.request("GET", "/agents", params=params or None)

    async def agent(self, uid: str) -> dict[str, Any]:
        return await self.request("GET", f"/agents/{quote(uid, safe='')}")

    async def restart(self, uid: str, *, requested_by: str = "") -> dict[str, Any]:
        body = {"requested_by": requested_by} if requested_by else None
        return await self.request("POST", f"/agents/{quote(uid, safe='')}/restart", json_body=body)

    async def configs(self) -> dict[str, Any]:
        return await self.request("GET", "/configs")

    async def config(self, name: str) -> dict[str, Any]:
        return await self.request("GET", f"/configs/{quote(name, safe='')}")

    async def config_version(self, name: str, version: int) -> dict[str, Any]:
        return await self.request("GET", f"/configs/{quote(name, safe='')}/versions/{int(version)}")

    async def create_config(
        self, name: str, files: Mapping[str, Mapping[str, str]], *, author: str = "", note: str = ""
    ) -> dict[str, Any]:
        body = {"name": name, "files": {k: dict(v) for k, v in files.items()}, "author": author, "note": note}
        return await self.request("POST", "/configs", json_body=body)

    async def assignments(self) -> dict[str, Any]:
        return await self.request("GET", "/assignments")

    async def assign(
        self, config: str, version: int | None, selector: str, *, priority: int = 0, author: str = ""
    ) -> dict[str, Any]:
        body = {
            "config": config,
            "version": version,
            "selector": selector,
            "priority": priority,
            "author": author,
        }
        return await self.request("POST", "/assignments", json_body=body)

    async def unassign(self, assignment_id: Any) -> None:
        await self.request("DELETE", f"/assignments/{quote(str(assignment_id), safe='')}")

    async def audit(self, since: str | None = None, limit: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if since:
            params["since"] = since
        if limit:
            params["limit"] = limit
        return await self.request("GET", "/audit", params=params or None)

    async def stream_events(self) -> AsyncIterator[tuple[str, str]]:
        """Raw server-sent events as (event name, data text); comments (keepalives) are skipped."""
        try:
            async with self.client.stream(
                "GET",
                API + "/events",
                headers={"Accept": "text/event-stream"},
                timeout=httpx.Timeout(10.0, connect=5.0, read=KEEPALIVE_GRACE),
            ) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    self._decode(resp, "GET", "/events")
                    raise OpAmpApiError(
                        f"the event stream answered {resp.status_code}", "bad_response", resp.status_code
                    )
                yield OPEN, ""
                event, data = "message", []
                async for line in resp.aiter_lines():
                    if line == "":
                        if data:
                            yield event, "\n".join(data)
                        event, data = "message", []
                        continue
                    if line.startswith(":"):
                        continue
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None


# --------------------------------------------------------------------------------------------
# Mapping: API JSON -> fleet model


def component_tree(name: str, node: Mapping[str, Any]) -> ComponentHealth:
    children = node.get("components") or {}
    return ComponentHealth(
        name=name,
        healthy=bool(node.get("healthy")),
        status=str(node.get("status") or ""),
        last_error=str(node.get("last_error") or ""),
        children=tuple(
            component_tree(str(k), v) for k, v in sorted(children.items()) if isinstance(v, Mapping)
        ),
    )


def _first_unhealthy(node: ComponentHealth, path: tuple[str, ...] = ()) -> tuple[str, str] | None:
    for child in node.children:
        here = (*path, child.name)
        if not child.healthy:
            deeper = _first_unhealthy(child, here)
            return deeper or ("/".join(here), child.last_error or child.status or "unhealthy")
        deeper = _first_unhealthy(child, here)
        if deeper:
            return deeper
    return None


def _has_capability(agent: Mapping[str, Any], name: str, bit: int) -> bool:
    decoded = agent.get("capabilities_decoded")
    if isinstance(decoded, list) and decoded:
        return name in decoded
    try:
        return bool(int(agent.get("capabilities") or 0) & bit)
    except (TypeError, ValueError):
        return False


def agent_health(agent: Mapping[str, Any]) -> tuple[Health, str, str, ComponentHealth | None]:
    """(health, reason, last_error, component tree) of one agent."""
    raw = agent.get("health")
    tree: ComponentHealth | None = None
    if isinstance(raw, Mapping):
        if raw.get("components"):
            tree = component_tree("agent", raw)
        else:  # no tree to build (the compact list leaves out the components of a healthy agent)
            tree = ComponentHealth(
                "agent", bool(raw.get("healthy")), str(raw.get("status") or ""), str(raw.get("last_error") or "")
            )
    status = agent.get("status")
    offline = status == "offline" or (agent.get("connected") is False and status != "online")
    if offline:
        seen = agent.get("last_seen") or "never"
        last_error = tree.last_error if tree is not None else ""
        return Health.OFFLINE, f"offline (last seen {seen})", last_error, tree
    if tree is None:
        if _has_capability(agent, "ReportsHealth", 0x800):
            return Health.UNKNOWN, NOT_YET_REASON, "", None
        return Health.UNKNOWN, NO_HEALTH_REASON, "", None
    if not tree.healthy:
        err = tree.last_error or tree.status or "unhealthy"
        return Health.UNHEALTHY, err, err, tree
    bad = _first_unhealthy(tree)
    if bad is not None:
        where_, err = bad
        return Health.DEGRADED, f"component {where_}: {err}", err, tree
    return Health.HEALTHY, "", "", tree


def agent_name(attrs: Mapping[str, str], uid: str) -> str:
    service = attrs.get("service.name", "")
    host = attrs.get("host.name", "")
    if service and host:
        return f"{service}@{host}"
    return service or host or uid[:13]


def agent_to_collector(agent: Mapping[str, Any], effective: Mapping[str, str] | None = None) -> Collector:
    uid = str(agent.get("instance_uid") or "")
    ident = agent.get("identifying_attributes") or {}
    non_ident = agent.get("non_identifying_attributes") or {}
    attrs: dict[str, str] = {}
    for part in (ident, non_ident):
        if isinstance(part, Mapping) and part:
            if not attrs and all(type(v) is str for v in part.values()):
                attrs = {str(k): v for k, v in part.items()}  # the common case: strings already
                continue
            for k, v in part.items():
                attrs.setdefault(str(k), "" if v is None else str(v))
    health, reason, last_error, tree = agent_health(agent)
    rcs = agent.get("remote_config_status")
    desired = agent.get("desired")
    assigned = str(desired.get("hash") or "") if isinstance(desired, Mapping) else ""
    if isinstance(rcs, Mapping):
        rc = RemoteConfig(
            status=_STATUS.get(str(rcs.get("status") or "UNSET").upper(), ConfigStatus.UNSET),
            hash=str(rcs.get("last_hash") or ""),
            error=str(rcs.get("error") or ""),
            assigned=assigned,
        )
    else:
        rc = RemoteConfig(assigned=assigned)
    report, came_up = config_report(agent, rc)
    pipelines = (str(desired["config"]),) if isinstance(desired, Mapping) and desired.get("config") else ()
    if effective is None:
        eff = agent.get("effective_config")
        effective = effective_files(eff) if isinstance(eff, Mapping) else {}
    return Collector(
        id=uid,
        name=agent_name(attrs, uid),
        type=CollectorType.SDK if agent.get("type") == "sdk" else CollectorType.OTEL,
        version=attrs.get("service.version", ""),
        local_attributes=MappingProxyType(attrs),
        health=health,
        health_reason=reason,
        last_error=last_error,
        last_seen=parse_time(agent.get("last_seen")),
        remote_config=rc,
        effective_config=MappingProxyType(dict(effective)),
        pipelines=pipelines,
        enabled=True,
        component_health=tree,
        config_report=report,
        came_up=came_up,
        available_components=available_components(agent.get("available_components")),
        source=str(agent.get("transport") or ""),
    )


def agents_of(doc: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The agents of a list document, full or compact, in the full form's shape (the compact form's
    attributes are all identifying here; the collector sees one map either way)."""
    rows = list((doc or {}).get("agents") or [])
    if (doc or {}).get("view") != "compact":
        return rows
    # the attributes under the full form's name; the server's field order, whatever it is
    fields = ["identifying_attributes" if f == "attributes" else str(f) for f in (doc or {}).get("fields") or []]
    out: list[Mapping[str, Any]] = []
    for row in rows:
        if type(row) is not list:
            continue
        a = dict(zip(fields, row, strict=False))
        rcs = a.get("remote_config_status")
        if type(rcs) is list and len(rcs) >= 3:
            a["remote_config_status"] = {"status": rcs[0], "last_hash": rcs[1], "error": rcs[2]}
        d = a.get("desired")
        if type(d) is list and len(d) >= 2:
            # the hash is sent only when the agent reports another one: else it is the reported hash
            reported = a["remote_config_status"]["last_hash"] if isinstance(a.get("remote_config_status"), dict) else ""
            a["desired"] = {"config": d[0], "version": d[1], "hash": d[2] if len(d) > 2 else reported}
        facts = a.get("config")
        if type(facts) is dict:  # "=": the hash its status reports; in came_up, its effective hash now
            facts = dict(facts)
            if facts.get("effective_hash") == "=":
                rcs_d = a.get("remote_config_status")
                facts["effective_hash"] = rcs_d.get("last_hash", "") if isinstance(rcs_d, dict) else ""
            up = facts.get("came_up")
            if type(up) is dict and up.get("effective_hash") == "=":
                facts["came_up"] = {**up, "effective_hash": facts.get("effective_hash", "")}
            a["config"] = facts
        out.append(a)
    return out


def config_report(agent: Mapping[str, Any], rc: RemoteConfig) -> tuple[ConfigReport, CameUp | None]:
    """What the server says of the config an agent runs (``config`` in the agent JSON), as the facts
    the config state is decided from; and what it came up on when it last (re)started."""
    facts = agent.get("config") if isinstance(agent.get("config"), Mapping) else {}
    assert isinstance(facts, Mapping)
    accepts = _has_capability(agent, "AcceptsRemoteConfig", 0x2)
    reports_status = _has_capability(agent, "ReportsRemoteConfig", 0x1000) or agent.get("remote_config_status") is not None
    desired = agent.get("desired")
    label = str(facts.get("assigned_version") or "")
    if not label and isinstance(desired, Mapping) and desired.get("config"):
        label = f"{desired.get('config')}@v{desired.get('version')}"
    report = ConfigReport(
        accepts_remote=accepts,
        reports_status=reports_status,
        assigned_label=label,
        reported_label=str(facts.get("reported_version") or ""),
        effective_hash=str(facts.get("effective_hash") or ""),
        effective_label=str(facts.get("effective_version") or ""),
        equivalent=bool(facts.get("equivalent")),
        differs=tuple(str(x) for x in facts.get("differs") or ()),
        held=str(facts.get("held") or ""),
    )
    up = facts.get("came_up")
    came_up = None
    if isinstance(up, Mapping):
        up_rc = RemoteConfig(
            status=_STATUS.get(str(up.get("status") or "UNSET").upper(), ConfigStatus.UNSET),
            hash=str(up.get("hash") or ""),
            error=str(up.get("error") or ""),
            assigned=str(up.get("assigned_hash") or ""),
        )
        came_up = CameUp(
            at=parse_time(up.get("at")),
            remote_config=up_rc,
            report=ConfigReport(
                accepts_remote=accepts,
                reports_status=reports_status,
                assigned_label=str(up.get("assigned") or ""),
                reported_label=str(up.get("reported_version") or ""),
                effective_hash=str(up.get("effective_hash") or ""),
                effective_label=str(up.get("effective_version") or ""),
            ),
        )
    return report, came_up


def available_components(raw: Any) -> frozenset[str] | None:
    """OpAMP AvailableComponents as the server serves it (``{"hash", "components": {"receivers":
    {"sub_components": {"otlp": ...}}}}``) as ``kind:type`` names; None when the agent reported none."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("components"), Mapping) or not raw["components"]:
        return None
    tree = {
        str(kind): list((detail.get("sub_components") or {}) if isinstance(detail, Mapping) else ())
        for kind, detail in raw["components"].items()
    }
    return names_from_tree(tree)


def effective_files(eff: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for name, f in sorted(eff.items()):
        out[str(name)] = str(f.get("body", "")) if isinstance(f, Mapping) else str(f)
    return out


def selector_matchers(selector: str) -> tuple[str, ...]:
    """A selector string as a tuple of single matchers (the Pipeline.matchers shape)."""
    if not selector.strip():
        return ()
    try:
        return tuple(str(m) for m in parse_matchers(selector))
    except MatcherError:
        return (selector,)


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True)
class OpAmpEvent:
    """One server-sent event, parsed.

    kind: ``agent``, ``agent_offline``, ``agent_removed``, ``config``, ``assignment`` (from the server), or
    ``connected`` / ``disconnected`` (the stream itself: after ``connected`` take a fresh snapshot,
    events may have been missed; ``disconnected`` carries ``error`` and ``kind`` in ``data``).
    """

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    collector: Collector | None = None

    @property
    def collector_id(self) -> str:
        return str(self.data.get("instance_uid") or "")


# --------------------------------------------------------------------------------------------
# The backend


class OpAmpBackend:
    name = "opamp"
    capabilities = frozenset({"read", "push", "health", "effective_config", "revisions", "config_status", "events"})

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        token_env: str = DEFAULT_TOKEN_ENV,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api = OpAmpApi(url, token, token_env=token_env, timeout=timeout, transport=transport)
        self.url = self.api.url
        self.token = token
        self.token_env = token_env
        self.clock = clock
        self.monotonic = monotonic
        self._last: FleetSnapshot | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._last_error: OpAmpApiError | None = None
        self._versions: dict[tuple[str, int], dict[str, Any]] = {}
        self._version_lists: dict[tuple[str, int], list[dict[str, Any]]] = {}

    # -- snapshot --------------------------------------------------------------------------

    @property
    def last(self) -> FleetSnapshot | None:
        return self._last

    def backoff_seconds(self) -> float:
        return min(30.0, 1.0 * 2 ** max(0, self._failures - 1)) if self._failures else 0.0

    async def snapshot(self) -> FleetSnapshot:
        if self._last is not None and self._last_error is not None and self.monotonic() < self._retry_at:
            return self._stale(self._last_error)
        started = self.monotonic()
        try:
            snap = await self._fetch()
        except OpAmpApiError as exc:
            self._failures += 1
            self._retry_at = self.monotonic() + self.backoff_seconds()
            self._last_error = exc
            if self._last is None:
                raise
            return self._stale(exc)
        latency = (self.monotonic() - started) * 1000.0
        self._failures = 0
        self._last_error = None
        self._last = replace(
            snap, health=BackendHealth(True, "ok", f"OpAMP admin API {self.url}", round(latency, 1))
        )
        return self._last

    def _stale(self, exc: OpAmpApiError) -> FleetSnapshot:
        assert self._last is not None
        age = age_text(self._last.fetched_at, self.clock())
        reason = f"{exc.kind}: {exc.message} (data {age} old)"
        status = "down" if exc.kind in ("unreachable", "timeout", "server_error") else "degraded"
        return self._last.as_stale(reason, BackendHealth(False, status, exc.message, None))

    def list_params(self) -> dict[str, str]:
        """The query of the agent list a snapshot reads (the compact view)."""
        return {"view": "compact"}

    async def _fetch(self) -> FleetSnapshot:
        agents_doc, configs_doc, assignments_doc = await asyncio.gather(
            self.api.agents(view="compact"), self.api.configs(), self.api.assignments()
        )
        configs = list((configs_doc or {}).get("configs") or [])
        assignments = list((assignments_doc or {}).get("assignments") or [])
        last = self._last
        # 10,000 agents take a few hundred milliseconds to map: off the event loop, so the cockpit
        # keeps answering keys while a refresh is read
        collectors = await asyncio.to_thread(self._collectors, agents_doc, last)
        pipelines = await self._pipelines(configs, assignments)
        if self._last is not None:
            old_pipelines = {p.name: p for p in self._last.pipelines}
            pipelines = tuple(
                old_pipelines[p.name] if old_pipelines.get(p.name) == p else p for p in pipelines
            )
        fetched = parse_time((agents_doc or {}).get("generated_at")) or self.clock()
        return FleetSnapshot(backend="opamp", collectors=collectors, pipelines=pipelines, fetched_at=fetched)

    @staticmethod
    def _collectors(agents_doc: Mapping[str, Any] | None, last: FleetSnapshot | None) -> tuple[Collector, ...]:
        previous = {c.id: c for c in last.collectors} if last is not None else {}
        collectors = []
        for a in agents_of(agents_doc):
            c = agent_to_collector(a)
            old = previous.get(c.id)
            collectors.append(old if old is not None and old == c else c)  # unchanged: the same object
        return tuple(sorted(collectors, key=lambda c: (c.name, c.id)))

    async def _versions_of(self, name: str, latest: int) -> list[dict[str, Any]]:
        key = (name, latest)
        hit = self._version_lists.get(key)
        if hit is None:
            doc = await self.api.config(name)
            hit = list(doc.get("versions") or [])
            self._version_lists[key] = hit
        return hit

    async def _version(self, name: str, version: int) -> dict[str, Any]:
        key = (name, int(version))
        hit = self._versions.get(key)
        if hit is None:
            hit = await self.api.config_version(name, int(version))
            self._versions[key] = hit  # versions are never edited: cache forever
        return hit

    async def _pipelines(
        self, configs: Sequence[Mapping[str, Any]], assignments: Sequence[Mapping[str, Any]]
    ) -> tuple[Pipeline, ...]:
        by_config: dict[str, list[Mapping[str, Any]]] = {}
        for a in assignments:
            by_config.setdefault(str(a.get("config")), []).append(a)

        async def one(cfg: Mapping[str, Any]) -> Pipeline:
            name = str(cfg.get("name"))
            latest = int(cfg.get("latest_version") or 0)
            live = live_version(name, assignments) or latest  # what agents run, not the newest draft
            version, versions = await asyncio.gather(
                self._version(name, live), self._versions_of(name, latest)
            )
            first = min(versions, key=lambda v: int(v.get("version") or 0)) if versions else version
            mine = sorted(
                by_config.get(name, []),
                key=lambda a: (-int(a.get("priority") or 0), str(a.get("created_at") or "")),
            )
            matchers: list[str] = []
            for a in mine:
                for m in selector_matchers(str(a.get("selector") or "")):
                    if m not in matchers:
                        matchers.append(m)
            return Pipeline(
                name=name,
                contents=render_files(version.get("files") or {}),
                matchers=tuple(matchers),
                enabled=True,
                config_type=CollectorType.OTEL,
                id=name,
                source="opamp",
                created_at=parse_time(first.get("created_at")),
                updated_at=parse_time(version.get("created_at") or cfg.get("updated_at")),  # the live version's
            )

        return tuple(sorted(await asyncio.gather(*(one(c) for c in configs)), key=lambda p: p.name))

    async def collector_detail(self, collector_id: str) -> tuple[Collector, dict[str, Any]]:
        """One agent with its effective config and component tree, plus the raw detail document
        (remote_config_history, available_components, capabilities_decoded ...)."""
        detail = await self.api.agent(collector_id)
        return agent_to_collector(detail), detail

    async def config_texts(self, wanted: Mapping[str, str]) -> dict[str, str]:
        """The text of each config hash in ``wanted`` (hash -> a collector that ran it): a config
        version's files, or what an agent came up on (its bootstrap config, which the server keeps
        while it runs), as one text. Hashes it cannot find are left out."""
        out: dict[str, str] = {}
        todo = dict(wanted)
        if not todo:
            return out
        configs = list((await self.api.configs()).get("configs") or [])
        for cfg in configs:
            name, latest = str(cfg.get("name")), int(cfg.get("latest_version") or 0)
            for v in await self._versions_of(name, latest):
                h = str(v.get("hash") or "")
                if h in todo:
                    full = await self._version(name, int(v.get("version") or 0))
                    out[h] = render_files(full.get("files") or {})
                    todo.pop(h)
        for h, cid in todo.items():
            try:
                detail = await self.api.agent(cid)
            except OpAmpApiError as exc:
                if exc.kind == "not_found":
                    continue
                raise
            facts = detail.get("config") or {}
            up = facts.get("came_up") or {}
            if up.get("effective_hash") == h and isinstance(up.get("effective_config"), Mapping):
                out[h] = render_files(up["effective_config"])
            elif facts.get("effective_hash") == h and isinstance(detail.get("effective_config"), Mapping):
                out[h] = render_files(detail["effective_config"])
        return out

    # -- revisions -------------------------------------------------------------------------

    async def revisions(self, pipeline: str) -> tuple[Revision, ...]:
        """The config's versions up to the live one (the version its winning assignment names; the
        newest when none is assigned), oldest first, each with its version number as the id, as
        the server's rollouts and ``rollback --to N`` name them."""
        doc, assignments = await asyncio.gather(self.api.config(pipeline), self.api.assignments())
        live = live_version(pipeline, list((assignments or {}).get("assignments") or []))
        versions = sorted(doc.get("versions") or [], key=lambda v: int(v.get("version") or 0))
        if live:
            versions = [v for v in versions if int(v.get("version") or 0) <= live]
        out = []
        for v in versions:
            number = int(v.get("version") or 0)
            full = await self._version(pipeline, number)
            created = parse_time(full.get("created_at")) or self.clock()
            snap = Pipeline(
                name=pipeline,
                contents=render_files(full.get("files") or {}),
                config_type=CollectorType.OTEL,
                id=pipeline,
                source="opamp",
                updated_at=created,
            )
            out.append(
                Revision(
                    id=str(number),
                    pipeline=pipeline,
                    pipeline_id=pipeline,
                    snapshot=snap,
                    operation=Operation.INSERT if number == 1 else Operation.UPDATE,
                    created_at=created,
                    author=str(full.get("author") or ""),
                )
            )
        return tuple(out)

    # -- push ------------------------------------------------------------------------------

    async def push(self, change: Change) -> PushResult:
        if change.kind != PIPELINE_UPSERT:
            return PushResult(
                False,
                f"the opamp backend cannot {change.kind}: OpAMP configs are versioned, create a new version "
                f"(pipeline.upsert) or change an assignment",
            )
        if self._last is None:
            await self.snapshot()
        refuse_if_stale(self._last if self._last_error is None else self._stale(self._last_error))
        pipeline: Pipeline = change.payload["pipeline"]
        files = await self._files_for(pipeline)
        try:
            created = await self.api.create_config(
                pipeline.name, files, author=change.author or "otelcockpit", note=change.note
            )
        except OpAmpApiError as exc:
            return PushResult(False, exc.message, details={"kind": exc.kind})
        version = int(created.get("version") or 0)
        message = f"created {pipeline.name} version {version}"
        details: dict[str, Any] = {"hash": created.get("hash"), "version": version}
        if change.payload.get("assign") and pipeline.matchers:
            selector = ",".join(pipeline.matchers)
            try:
                assignment = await self.api.assign(
                    pipeline.name,
                    version,
                    selector,
                    priority=int(change.payload.get("priority", 0)),
                    author=change.author or "otelcockpit",
                )
            except OpAmpApiError as exc:
                return PushResult(False, f"{message}, but the assignment failed: {exc.message}", str(version))
            details["assignment"] = assignment
            message += f", assigned to {selector} ({assignment.get('agents', 0)} agent(s))"
        return PushResult(True, message, str(version), details)

    async def _files_for(self, pipeline: Pipeline) -> dict[str, dict[str, str]]:
        previous: Mapping[str, Any] = {}
        current = self._last.pipeline(pipeline.name) if self._last else None
        if current is not None:
            try:
                configs = {str(c.get("name")): c for c in (await self.api.configs()).get("configs") or []}
                latest = int(configs.get(pipeline.name, {}).get("latest_version") or 0)
                if latest:
                    previous = (await self._version(pipeline.name, latest)).get("files") or {}
            except OpAmpApiError:
                previous = {}
        types = {
            str(n): str(f.get("content_type") or "") for n, f in previous.items() if isinstance(f, Mapping)
        }
        files = files_from_text(pipeline.contents, types, what=f"config {pipeline.name}")
        return {n: {"body": b, "content_type": ct} for n, (b, ct) in files.items()}

    # -- events ----------------------------------------------------------------------------

    async def events(self, *, reconnect: bool = True, max_backoff: float = 30.0) -> AsyncIterator[OpAmpEvent]:
        """Parsed events from the server's stream, reconnecting with backoff.

        Yields ``connected`` each time the stream (re)opens and ``disconnected`` when it breaks.
        A refused token ends the iterator with an :class:`OpAmpApiError` (no point retrying).
        """
        failures = 0
        while True:
            try:
                async for name, text in self.api.stream_events():
                    if name == OPEN:
                        failures = 0
                        yield OpAmpEvent("connected", {"url": self.url})
                        continue
                    event = parse_event(name, text)
                    if event is not None:
                        yield event
                if not reconnect:
                    return
                yield OpAmpEvent("disconnected", {"error": "the event stream ended", "kind": "unreachable"})
            except OpAmpApiError as exc:
                if exc.kind in ("unauthorized", "forbidden") or not reconnect:
                    raise
                yield OpAmpEvent("disconnected", {"error": exc.message, "kind": exc.kind})
            failures += 1
            await asyncio.sleep(min(max_backoff, 0.5 * 2 ** (failures - 1)))

    def apply_events(self, events: Sequence[OpAmpEvent]) -> FleetSnapshot | None:
        """Fold a batch of agent events into the last snapshot, in order (config and assignment
        events need a fresh snapshot, which ``needs_snapshot`` tells). The collector list is rebuilt
        once per batch, not once per event: a push to 10,000 agents sends 20,000 events. Returns the
        new snapshot, or None when there is none yet."""
        snap = self._last
        if snap is None:
            return None
        by_id = {c.id: c for c in snap.collectors}
        changed = False
        for event in events:
            if event.kind == "agent" and event.collector is not None:
                new = event.collector
                old = by_id.get(new.id)
                if old is not None and not new.effective_config and old.effective_config:
                    new = new.with_changes(effective_config=old.effective_config)
                by_id[new.id] = new
                changed = True
            elif event.kind == "agent_offline":
                old = by_id.get(event.collector_id)
                if old is not None:
                    seen = old.last_seen.isoformat() if old.last_seen else "never"
                    by_id[old.id] = old.with_changes(health=Health.OFFLINE, health_reason=f"offline (last seen {seen})")
                    changed = True
            elif event.kind == "agent_removed":
                changed = by_id.pop(event.collector_id, None) is not None or changed
        if changed:
            snap = replace(snap, collectors=tuple(sorted(by_id.values(), key=lambda c: (c.name, c.id))))
            self._last = snap
        return snap

    def apply_event(self, event: OpAmpEvent) -> FleetSnapshot | None:
        return self.apply_events([event])

    @staticmethod
    def needs_snapshot(event: OpAmpEvent) -> bool:
        return event.kind in ("config", "assignment", "connected")

    def rollouts(self, settings: Any) -> Any:
        """The server runs the rollouts: its admin API, behind the same interface as a local service."""
        from otelcockpit.backends.opamp_rollouts import RemoteRollouts

        return RemoteRollouts(
            self.url,
            self.token,
            token_env=self.token_env,
            defaults=settings.defaults,
            read_only=settings.read_only,
            poll_interval=settings.poll_interval,
        )

    async def close(self) -> None:
        await self.api.close()


def live_version(config: str, assignments: Sequence[Mapping[str, Any]]) -> int:
    """The version of ``config`` its winning assignment names (highest priority, then newest, as
    the server resolves them); 0 when the config is assigned to nothing."""
    mine = [a for a in assignments if str(a.get("config")) == config and not a.get("deleted_at")]
    if not mine:
        return 0
    best = min(mine, key=lambda a: (-int(a.get("priority") or 0), -int(a.get("id") or 0)))
    return int(best.get("version") or 0)


def parse_event(name: str, text: str) -> OpAmpEvent | None:
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        return None
    if not isinstance(data, Mapping):
        data = {"value": data}
    collector = agent_to_collector(data) if name == "agent" and data.get("instance_uid") else None
    return OpAmpEvent(name, data, collector)


def from_settings(settings: Any, **kw: Any) -> OpAmpBackend:
    ctx = settings.context
    token_env = ctx.token_env or DEFAULT_TOKEN_ENV
    token = os.environ.get(token_env) or None
    options = dict(getattr(ctx, "options", {}) or {})
    try:
        timeout = float(kw.pop("timeout", options.get("timeout", 10.0)))
    except (TypeError, ValueError):
        raise UsageError(f"context {ctx.name!r}: timeout must be a number of seconds") from None
    known = {"clock", "monotonic", "transport", "detail_limit", "detail_ttl"}
    extra = {k: v for k, v in kw.items() if k in known}  # other backends' options are ignored
    return OpAmpBackend(settings.url, token, token_env=token_env, timeout=timeout, **extra)
