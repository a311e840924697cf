"""The fake Fleet Management server's state and RPC semantics, without any HTTP.

Objects are stored the way the real service returns them: protojson-style dicts with camelCase
names, numeric-string ids and RFC 3339 timestamps. Every RPC is a method taking the decoded
request (snake_case or camelCase keys) and returning the response message, or raising
:class:`RpcError` with a Connect code. The semantics follow the research notes (§3, §7):
Update replaces the whole object and 404s when missing, Upsert goes by name, names are unique,
ids are assigned by the server, every insert, update and delete of a pipeline appends a
revision, bulk operations are atomic and SyncPipelines is scoped by source.

Where the real service's behaviour is not documented, the choice made here is marked [I].
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from otelcockpit.fleet.matchers import Matcher, MatcherError, parse_matcher

MAX_KEY = 100
MAX_VALUE = 150
MAX_REMOTE = 100
MAX_MATCHER = 200
RESERVED = "collector."

CONFIG_TYPES = {0: "CONFIG_TYPE_UNSPECIFIED", 1: "CONFIG_TYPE_ALLOY", 2: "CONFIG_TYPE_OTEL"}
COLLECTOR_TYPES = {0: "COLLECTOR_TYPE_UNSPECIFIED", 1: "COLLECTOR_TYPE_ALLOY", 2: "COLLECTOR_TYPE_OTEL"}
SOURCE_TYPES = {
    0: "SOURCE_TYPE_UNSPECIFIED",
    1: "SOURCE_TYPE_GIT",
    2: "SOURCE_TYPE_TERRAFORM",
    3: "SOURCE_TYPE_GRAFANA",
}
OP_TYPES = {0: "UNKNOWN", 1: "ADD", 2: "REMOVE", 3: "REPLACE", 4: "MOVE", 5: "COPY"}
CONFIG_STATUSES = {
    0: "RemoteConfigStatuses_UNSET",
    1: "RemoteConfigStatuses_APPLIED",
    2: "RemoteConfigStatuses_APPLYING",
    3: "RemoteConfigStatuses_FAILED",
}

# Connect code -> HTTP status (research §1).
HTTP_STATUS = {
    "canceled": 499,
    "unknown": 500,
    "invalid_argument": 400,
    "deadline_exceeded": 504,
    "not_found": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 400,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "data_loss": 500,
}


class RpcError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def ts(value: datetime) -> str:
    """protojson Timestamp: RFC 3339 UTC, 0/3/6/9 fractional digits."""
    value = value.astimezone(UTC)
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond == 0:
        return base + "Z"
    if value.microsecond % 1000 == 0:
        return f"{base}.{value.microsecond // 1000:03d}Z"
    return f"{base}.{value.microsecond:06d}Z"


def _camel_to_snake(name: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name)


def get(msg: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A field by its JSON (camelCase) or proto (snake_case) name; protojson accepts both."""
    if name in msg:
        return msg[name]
    snake = _camel_to_snake(name)
    if snake in msg:
        return msg[snake]
    return default


def enum(value: Any, names: Mapping[int, str], what: str) -> str:
    """Enums arrive as a name or a number; stored as the name."""
    if value is None:
        return names[0]
    if isinstance(value, bool):
        raise RpcError("invalid_argument", f"invalid value for enum field {what}: {value!r}")
    if isinstance(value, int):
        if value in names:
            return names[value]
        raise RpcError("invalid_argument", f"invalid value for enum field {what}: {value}")
    if isinstance(value, str) and value in names.values():
        return value
    raise RpcError("invalid_argument", f"invalid value for enum field {what}: {value!r}")


def string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RpcError("invalid_argument", f"{what}: expected an object of strings")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(v, str):
            raise RpcError("invalid_argument", f"{what}.{k}: expected a string")
        out[str(k)] = v
    return out


def string_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RpcError("invalid_argument", f"{what}: expected a list of strings")
    return list(value)


def optional_bool(value: Any, what: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise RpcError("invalid_argument", f"{what}: expected true or false")
    return value


def check_attributes(attrs: Mapping[str, str], what: str, *, remote: bool) -> None:
    if remote and len(attrs) > MAX_REMOTE:
        raise RpcError(
            "invalid_argument",
            f"{what}: at most {MAX_REMOTE} remote attributes are allowed, got {len(attrs)}",
        )
    for k, v in attrs.items():
        if not k:
            raise RpcError("invalid_argument", f"{what}: attribute keys must not be empty")
        if len(k) > MAX_KEY:
            raise RpcError(
                "invalid_argument", f"{what}: attribute key {k[:20]!r}... is longer than {MAX_KEY} characters"
            )
        if len(v) > MAX_VALUE:
            raise RpcError(
                "invalid_argument", f"{what}: value of {k!r} is longer than {MAX_VALUE} characters"
            )
        if remote and k.startswith(RESERVED):
            raise RpcError(
                "invalid_argument", f"{what}: {k!r}: the collector. prefix is reserved for Fleet Management"
            )


def compile_list(matchers: Iterable[str], what: str) -> tuple[Matcher, ...]:
    out = []
    for m in matchers:
        if len(m) > MAX_MATCHER:
            raise RpcError(
                "invalid_argument", f"{what}: matcher {m[:30]!r}... is longer than {MAX_MATCHER} characters"
            )
        try:
            out.append(parse_matcher(m))
        except MatcherError as exc:
            raise RpcError("invalid_argument", f"{what}: {exc}") from None
    return tuple(out)


@lru_cache(maxsize=1024)
def _compiled(matchers: tuple[str, ...]) -> tuple[Matcher, ...]:
    return compile_list(matchers, "pipeline")


def merged(collector: Mapping[str, Any]) -> dict[str, str]:
    """The attribute set matchers see: local, overlaid by remote (except collector.*), plus collector.ID."""
    out = dict(collector.get("localAttributes") or {})
    for k, v in (collector.get("remoteAttributes") or {}).items():
        if not k.startswith(RESERVED):
            out[k] = v
    out["collector.ID"] = collector["id"]
    return out


def _type_fits(pipeline: Mapping[str, Any], collector: Mapping[str, Any]) -> bool:
    # [I] Unspecified is treated as Alloy on both sides.
    ptype = pipeline.get("configType", "CONFIG_TYPE_ALLOY")
    ctype = collector.get("collectorType", "COLLECTOR_TYPE_ALLOY")
    if ctype == "COLLECTOR_TYPE_OTEL":
        return ptype == "CONFIG_TYPE_OTEL"
    return ptype != "CONFIG_TYPE_OTEL"


@dataclass
class Limits:
    collectors: int | None = 50_000
    pipelines: int | None = 1_000
    api_rps: float = 3.0
    collector_rps: float = 20.0


@dataclass
class AgentRecord:
    """What the real service keeps about a polling collector (not exposed by the v1 API)."""

    last_seen: datetime | None = None
    last_hash: str = ""
    status: str = "RemoteConfigStatuses_UNSET"
    error: str = ""
    effective_config: dict[str, str] = field(default_factory=dict)
    polls: int = 0


Assembler = Callable[[list[dict[str, Any]], str], str]


def default_assembler(pipelines: list[dict[str, Any]], collector_type: str) -> str:
    """GetConfig content, assembled exactly as the demo backend does (one Alloy ``declare`` per pipeline)."""
    from otelcockpit.backends.demo import assemble_config
    from otelcockpit.fleet.model import CollectorType, Pipeline

    ctype = CollectorType.OTEL if collector_type == "COLLECTOR_TYPE_OTEL" else CollectorType.ALLOY
    return assemble_config([Pipeline(name=p["name"], contents=p["contents"]) for p in pipelines], ctype)


def default_hash(content: str) -> str:
    from otelcockpit.backends.demo import config_hash

    return config_hash(content)


class FakeState:
    """In-memory Fleet Management. Not thread-safe: the server calls it from one event loop."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        limits: Limits | None = None,
        empty_matchers_match: bool = True,
        assembler: Assembler = default_assembler,
        hasher: Callable[[str], str] = default_hash,
    ) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        self.limits = limits or Limits()
        # [U] in the research: what a pipeline with no matchers reaches. Our engine says "every
        # collector" (an empty AND), so the fake does the same unless told otherwise.
        self.empty_matchers_match = empty_matchers_match
        self.assembler = assembler
        self.hasher = hasher
        self.pipelines: dict[str, dict[str, Any]] = {}  # by id
        self.by_name: dict[str, str] = {}
        self.revisions: list[dict[str, Any]] = []
        self.collectors: dict[str, dict[str, Any]] = {}
        self.agents: dict[str, AgentRecord] = {}
        self.next_pipeline_id = 40001
        self.next_revision_id = 1001
        self.writes = 0

    # ---- helpers -----------------------------------------------------------------------------
    def now(self) -> str:
        return ts(self.clock())

    def _new_pipeline_id(self) -> str:
        while str(self.next_pipeline_id) in self.pipelines:
            self.next_pipeline_id += 1
        pid = str(self.next_pipeline_id)
        self.next_pipeline_id += 1
        return pid

    def _record(self, pipeline: dict[str, Any], operation: str, at: str | None = None) -> dict[str, Any]:
        rev = {
            "revisionId": str(self.next_revision_id),
            "snapshot": copy.deepcopy(pipeline),
            "createdAt": at or self.now(),
            "operation": operation,
        }
        self.next_revision_id += 1
        self.revisions.append(rev)
        return rev

    def _pipeline_in(self, msg: Mapping[str, Any], what: str = "pipeline") -> dict[str, Any]:
        """Validate a Pipeline message; returns the stored form (without id and timestamps)."""
        raw = get(msg, "pipeline")
        if not isinstance(raw, Mapping):
            raise RpcError("invalid_argument", f"{what} is missing")
        return self._pipeline_fields(raw, what)

    def _pipeline_fields(self, raw: Mapping[str, Any], what: str) -> dict[str, Any]:
        name = get(raw, "name", "")
        if not isinstance(name, str) or not name:
            raise RpcError("invalid_argument", f"{what}: name is required")
        contents = get(raw, "contents", "")
        if not isinstance(contents, str) or not contents:
            raise RpcError("invalid_argument", f"{what} {name!r}: contents are required")
        matchers = string_list(get(raw, "matchers"), f"{what} {name!r}: matchers")
        compile_list(matchers, f"{what} {name!r}")
        out: dict[str, Any] = {"name": name, "contents": contents}
        if matchers:
            out["matchers"] = matchers
        enabled = optional_bool(get(raw, "enabled"), f"{what} {name!r}: enabled")
        # [I] A pipeline sent without `enabled` is stored enabled (the UI's and Terraform's default).
        out["enabled"] = True if enabled is None else enabled
        ctype = enum(get(raw, "configType"), CONFIG_TYPES, "configType")
        if ctype != CONFIG_TYPES[0]:
            out["configType"] = ctype
        source = get(raw, "source")
        if source is not None:
            out["source"] = self._source(source, f"{what} {name!r}: source", required=False)
        metadata = get(raw, "metadata")
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise RpcError("invalid_argument", f"{what} {name!r}: metadata must be an object")
            out["metadata"] = dict(metadata)
        return out

    @staticmethod
    def _source(raw: Any, what: str, *, required: bool) -> dict[str, str]:
        if not isinstance(raw, Mapping):
            raise RpcError("invalid_argument", f"{what} must be an object")
        stype = enum(get(raw, "type"), SOURCE_TYPES, f"{what}.type")
        namespace = get(raw, "namespace", "")
        if not isinstance(namespace, str):
            raise RpcError("invalid_argument", f"{what}.namespace must be a string")
        if required and stype == SOURCE_TYPES[0]:
            raise RpcError("invalid_argument", "source type is required")
        if required and not namespace:
            raise RpcError("invalid_argument", "source namespace is required")
        out = {}
        if stype != SOURCE_TYPES[0]:
            out["type"] = stype
        if namespace:
            out["namespace"] = namespace
        return out

    def _store_new(self, fields: dict[str, Any], *, dry: bool) -> dict[str, Any]:
        if fields["name"] in self.by_name:
            raise RpcError("already_exists", f"pipeline {fields['name']!r} already exists")
        if self.limits.pipelines is not None and len(self.pipelines) >= self.limits.pipelines and not dry:
            raise RpcError(
                "resource_exhausted", f"the stack's pipeline limit ({self.limits.pipelines}) is reached"
            )
        now = self.now()
        pid = str(self.next_pipeline_id) if dry else self._new_pipeline_id()
        p = {**fields, "createdAt": now, "updatedAt": now, "id": pid}
        if not dry:
            self.pipelines[pid] = p
            self.by_name[p["name"]] = pid
            self._record(p, "INSERT", now)
            self.writes += 1
        return copy.deepcopy(p)

    def _replace(self, pid: str, fields: dict[str, Any], *, dry: bool) -> dict[str, Any]:
        old = self.pipelines[pid]
        other = self.by_name.get(fields["name"])
        if other is not None and other != pid:
            raise RpcError("already_exists", f"pipeline {fields['name']!r} already exists")
        now = self.now()
        p = {**fields, "createdAt": old["createdAt"], "updatedAt": now, "id": pid}
        if not dry:
            del self.by_name[old["name"]]
            self.pipelines[pid] = p
            self.by_name[p["name"]] = pid
            self._record(p, "UPDATE", now)
            self.writes += 1
        return copy.deepcopy(p)

    def _delete(self, pid: str) -> None:
        old = self.pipelines.pop(pid)
        del self.by_name[old["name"]]
        self._record(old, "DELETE")
        self.writes += 1

    def _pipeline_id(self, msg: Mapping[str, Any]) -> str:
        pid = get(msg, "id", "")
        if not isinstance(pid, str) or not pid:
            raise RpcError("invalid_argument", "id is required")
        if pid not in self.pipelines:
            raise RpcError("not_found", f"pipeline with id {pid!r} not found")
        return pid

    def pipeline_matches(self, pipeline: Mapping[str, Any], attrs: Mapping[str, str]) -> bool:
        matchers = pipeline.get("matchers") or []
        if not matchers:
            return self.empty_matchers_match
        return all(m.matches(attrs) for m in _compiled(tuple(matchers)))

    # ---- pipeline.v1.PipelineService -----------------------------------------------------------
    def GetPipeline(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self.pipelines[self._pipeline_id(msg)])

    def GetPipelineID(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        name = get(msg, "name", "")
        if not isinstance(name, str) or not name:
            raise RpcError("invalid_argument", "name is required")
        pid = self.by_name.get(name)
        if pid is None:
            raise RpcError("not_found", f"pipeline {name!r} not found")
        return {"id": pid}

    def ListPipelines(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        local = string_map(get(msg, "localAttributes"), "localAttributes")
        remote = string_map(get(msg, "remoteAttributes"), "remoteAttributes")
        ctype = get(msg, "configType")
        ctype = enum(ctype, CONFIG_TYPES, "configType") if ctype is not None else None
        enabled = optional_bool(get(msg, "enabled"), "enabled")
        attrs: dict[str, str] | None = None
        if local or remote:
            attrs = dict(local)
            attrs.update({k: v for k, v in remote.items() if not k.startswith(RESERVED)})
        out = []
        for p in sorted(self.pipelines.values(), key=lambda p: p["name"]):
            if ctype is not None and p.get("configType", CONFIG_TYPES[0]) != ctype:
                continue
            if enabled is not None and p.get("enabled", True) != enabled:
                continue
            if attrs is not None and not self.pipeline_matches(p, attrs):
                continue
            out.append(copy.deepcopy(p))
        return {"pipelines": out} if out else {}

    def CreatePipeline(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        fields = self._pipeline_in(msg)
        if get(get(msg, "pipeline"), "id"):
            raise RpcError("invalid_argument", "id should not be provided")
        return self._store_new(fields, dry=bool(get(msg, "validateOnly", False)))

    def UpdatePipeline(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        fields = self._pipeline_in(msg)
        pid = get(get(msg, "pipeline"), "id", "")
        if not isinstance(pid, str) or not pid:
            raise RpcError("invalid_argument", "id is empty")
        if pid not in self.pipelines:
            raise RpcError("not_found", f"pipeline with id {pid!r} not found")
        return self._replace(pid, fields, dry=bool(get(msg, "validateOnly", False)))

    def UpsertPipeline(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        fields = self._pipeline_in(msg)
        dry = bool(get(msg, "validateOnly", False))
        pid = self.by_name.get(fields["name"])
        if pid is None:
            return self._store_new(fields, dry=dry)
        return self._replace(pid, fields, dry=dry)

    def DeletePipeline(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        self._delete(self._pipeline_id(msg))
        return {}

    def BulkDeletePipelines(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        ids = string_list(get(msg, "ids"), "ids")
        if not ids:
            raise RpcError("invalid_argument", "ids must not be empty")
        if len(set(ids)) != len(ids):
            raise RpcError("invalid_argument", "ids must be unique")
        missing = [i for i in ids if i not in self.pipelines]
        if missing:
            raise RpcError("not_found", f"pipeline(s) not found: {', '.join(missing)}; nothing was deleted")
        for pid in ids:
            self._delete(pid)
        return {}

    def ListPipelinesRevisions(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        revs = copy.deepcopy(self.revisions)
        return {"pipelineRevisions": revs} if revs else {}

    def ListPipelineRevisions(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        pid = get(msg, "id", "")
        if not isinstance(pid, str) or not pid:
            raise RpcError("invalid_argument", "id is required")
        revs = [copy.deepcopy(r) for r in self.revisions if r["snapshot"].get("id") == pid]
        if not revs:
            raise RpcError("not_found", f"no pipeline with id {pid!r}")
        return {"pipelineRevisions": revs}

    def GetPipelineRevision(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        rid = get(msg, "revisionId", "")
        if not isinstance(rid, str) or not rid:
            raise RpcError("invalid_argument", "revisionId is required")
        for r in self.revisions:
            if r["revisionId"] == rid:
                return copy.deepcopy(r)
        raise RpcError("not_found", f"revision {rid!r} not found")

    def SyncPipelines(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        if get(msg, "source") is None:
            raise RpcError("invalid_argument", "source is required")
        source = self._source(get(msg, "source"), "source", required=True)
        raw = get(msg, "pipelines") or []
        if not isinstance(raw, list):
            raise RpcError("invalid_argument", "pipelines must be a list")
        incoming = [self._pipeline_fields(p if isinstance(p, Mapping) else {}, "pipeline") for p in raw]
        names = [p["name"] for p in incoming]
        if len(set(names)) != len(names):
            raise RpcError("invalid_argument", "pipeline names in a sync must be unique")
        # Validated as a whole first: the sync applies completely or not at all.
        for fields in incoming:
            fields["source"] = dict(source)
            pid = self.by_name.get(fields["name"])
            if pid is None:
                self._store_new(fields, dry=False)
            elif {
                k: v for k, v in self.pipelines[pid].items() if k not in ("id", "createdAt", "updatedAt")
            } != fields:
                self._replace(pid, fields, dry=False)
        keep = set(names)
        for pid, p in list(self.pipelines.items()):
            if p.get("source") == source and p["name"] not in keep:
                self._delete(pid)
        return {}

    def CreateAlloyPipelines(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        """Internal in the real service ("not intended to be used by end users"); a small stand-in."""
        mimir = get(msg, "mimirUrl", "") or "https://prometheus.example/api/prom/push"
        created = []
        for name, body in (
            (
                "self_monitoring_metrics",
                f'prometheus.exporter.self "alloy" {{ }}\n// remote write: {mimir}\n',
            ),
            ("self_monitoring_logs", 'loki.source.journal "alloy" { forward_to = [] }\n'),
        ):
            if name not in self.by_name:
                created.append(
                    self._store_new(
                        {
                            "name": name,
                            "contents": body,
                            "matchers": ['collector.os=~".*"'],
                            "enabled": True,
                            "configType": "CONFIG_TYPE_ALLOY",
                        },
                        dry=False,
                    )
                )
        return {"pipelines": {"pipelines": created}} if created else {"pipelines": {}}

    # ---- collector.v1.CollectorService: management ---------------------------------------------
    def _collector_in(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        raw = get(msg, "collector")
        if not isinstance(raw, Mapping):
            raise RpcError("invalid_argument", "collector is missing")
        cid = get(raw, "id", "")
        if not isinstance(cid, str) or not cid:
            raise RpcError("invalid_argument", "collector id is required")
        remote = string_map(
            get(raw, "remoteAttributes") or get(raw, "attributeOverrides"), "remoteAttributes"
        )
        check_attributes(remote, f"collector {cid!r}: remoteAttributes", remote=True)
        name = get(raw, "name", "")
        if not isinstance(name, str):
            raise RpcError("invalid_argument", "collector name must be a string")
        enabled = optional_bool(get(raw, "enabled"), "enabled")
        out: dict[str, Any] = {"id": cid}
        if remote:
            out["remoteAttributes"] = remote
        if name:
            out["name"] = name
        # [I] Sent without `enabled`, a collector is enabled.
        out["enabled"] = True if enabled is None else enabled
        ctype = enum(get(raw, "collectorType"), COLLECTOR_TYPES, "collectorType")
        if ctype != COLLECTOR_TYPES[0]:
            out["collectorType"] = ctype
        return out

    def _collector(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        cid = get(msg, "id", "")
        if not isinstance(cid, str) or not cid:
            raise RpcError("invalid_argument", "id is required")
        c = self.collectors.get(cid)
        if c is None:
            raise RpcError("not_found", f"collector {cid!r} not found")
        return c

    def GetCollector(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self._collector(msg))

    def ListCollectors(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        matchers = compile_list(string_list(get(msg, "matchers"), "matchers"), "matchers")
        out = [
            copy.deepcopy(c)
            for c in self.collectors.values()
            if not matchers or all(m.matches(merged(c)) for m in matchers)
        ]
        return {"collectors": out} if out else {}

    def CreateCollector(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        new = self._collector_in(msg)
        if new["id"] in self.collectors:
            raise RpcError("already_exists", f"collector {new['id']!r} already exists")
        if self.limits.collectors is not None and len(self.collectors) >= self.limits.collectors:
            raise RpcError(
                "resource_exhausted", f"the stack's collector limit ({self.limits.collectors}) is reached"
            )
        now = self.now()
        # Local attributes are owned by registration; a created collector has none yet [I].
        c = {**new, "createdAt": now, "updatedAt": now}
        self.collectors[c["id"]] = c
        self.writes += 1
        return copy.deepcopy(c)

    def UpdateCollector(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        new = self._collector_in(msg)
        old = self.collectors.get(new["id"])
        if old is None:
            raise RpcError("not_found", f"collector {new['id']!r} not found")
        c = {**new, "createdAt": old["createdAt"], "updatedAt": self.now()}
        # Replaced wholesale, except what the collector itself owns.
        for kept in ("localAttributes", "markedInactiveAt"):
            if kept in old:
                c[kept] = old[kept]
        if "collectorType" not in c and "collectorType" in old:
            c["collectorType"] = old["collectorType"]
        self.collectors[c["id"]] = c
        self.writes += 1
        return copy.deepcopy(c)

    def BulkUpdateCollectors(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        ids = string_list(get(msg, "ids"), "ids")
        if not ids:
            raise RpcError("invalid_argument", "ids must not be empty")
        ops = get(msg, "ops")
        if not isinstance(ops, list) or not ops:
            raise RpcError("invalid_argument", "ops must not be empty")
        missing = [i for i in ids if i not in self.collectors]
        if missing:
            raise RpcError(
                "not_found", f"collector(s) not found: {', '.join(missing[:10])}; nothing was updated"
            )
        staged: dict[str, dict[str, str]] = {}
        for cid in ids:
            remote = dict(self.collectors[cid].get("remoteAttributes") or {})
            for n, op in enumerate(ops):
                if not isinstance(op, Mapping):
                    raise RpcError("invalid_argument", f"ops[{n}] must be an object")
                apply_op(remote, op, n)
            check_attributes(remote, f"collector {cid!r}: remoteAttributes", remote=True)
            staged[cid] = remote
        now = self.now()
        for cid, remote in staged.items():
            c = self.collectors[cid]
            if remote:
                c["remoteAttributes"] = remote
            else:
                c.pop("remoteAttributes", None)
            c["updatedAt"] = now
        self.writes += 1
        return {}

    def DeleteCollector(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        c = self._collector(msg)
        del self.collectors[c["id"]]
        self.agents.pop(c["id"], None)
        self.writes += 1
        return {}

    def BulkDeleteCollectors(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        ids = string_list(get(msg, "ids"), "ids")
        if not ids:
            raise RpcError("invalid_argument", "ids must not be empty")
        missing = [i for i in ids if i not in self.collectors]
        if missing:
            raise RpcError(
                "not_found", f"collector(s) not found: {', '.join(missing[:10])}; nothing was deleted"
            )
        for cid in ids:
            self.collectors.pop(cid, None)
            self.agents.pop(cid, None)
        self.writes += 1
        return {}

    def ListCollectorAttributes(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        local: dict[str, set[str]] = {}
        remote: dict[str, set[str]] = {}
        for c in self.collectors.values():
            for k, v in (c.get("localAttributes") or {}).items():
                local.setdefault(k, set()).add(v)
            for k, v in (c.get("remoteAttributes") or {}).items():
                remote.setdefault(k, set()).add(v)

        def shape(d: dict[str, set[str]]) -> dict[str, Any]:
            return {k: {"values": [{"value": v} for v in sorted(d[k])]} for k in sorted(d)}

        out: dict[str, Any] = {}
        if local:
            out["localAttributes"] = shape(local)
        if remote:
            out["remoteAttributes"] = shape(remote)
        return out

    # ---- collector.v1.CollectorService: what collectors call --------------------------------
    def RegisterCollector(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        cid = get(msg, "id", "")
        if not isinstance(cid, str) or not cid:
            raise RpcError("invalid_argument", "id is required")
        local = string_map(get(msg, "localAttributes") or get(msg, "attributes"), "localAttributes")
        check_attributes(local, "localAttributes", remote=False)
        name = get(msg, "name", "")
        now = self.now()
        c = self.collectors.get(cid)
        if c is None:
            if self.limits.collectors is not None and len(self.collectors) >= self.limits.collectors:
                raise RpcError(
                    "resource_exhausted", f"the stack's collector limit ({self.limits.collectors}) is reached"
                )
            c = {"id": cid, "enabled": True, "collectorType": "COLLECTOR_TYPE_ALLOY", "createdAt": now}
            self.collectors[cid] = c
        if local:
            c["localAttributes"] = local
        else:
            c.pop("localAttributes", None)
        if name:
            c["name"] = name
        c.pop("markedInactiveAt", None)  # [I] re-registering reactivates
        c["updatedAt"] = now
        return {}

    def UnregisterCollector(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        c = self._collector(msg)
        c["markedInactiveAt"] = self.now()  # [I] marked inactive, not deleted
        return {}

    def matched_pipelines(self, collector: Mapping[str, Any]) -> list[dict[str, Any]]:
        if collector.get("enabled", True) is False:
            return []
        attrs = merged(collector)
        return [
            p
            for p in self.pipelines.values()
            if p.get("enabled", True) and _type_fits(p, collector) and self.pipeline_matches(p, attrs)
        ]

    def GetConfig(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        cid = get(msg, "id", "")
        if not isinstance(cid, str) or not cid:
            raise RpcError("invalid_argument", "id is required")
        local = string_map(get(msg, "localAttributes") or get(msg, "attributes"), "localAttributes")
        check_attributes(local, "localAttributes", remote=False)
        c = self.collectors.get(cid)
        if c is None:
            # [U] Whether GetConfig registers an unknown collector; here it does, so a first poll works.
            self.RegisterCollector({"id": cid, "localAttributes": local})
            c = self.collectors[cid]
        elif local and local != c.get("localAttributes"):
            c["localAttributes"] = local
            c["updatedAt"] = self.now()
        agent = self.agents.setdefault(cid, AgentRecord())
        agent.polls += 1
        agent.last_seen = self.clock()
        status = get(msg, "remoteConfigStatus")
        if isinstance(status, Mapping):
            agent.status = enum(get(status, "status"), CONFIG_STATUSES, "remoteConfigStatus.status")
            agent.error = str(get(status, "errorMessage", "") or "")
        effective = get(msg, "effectiveConfig")
        if isinstance(effective, Mapping):
            files = get(get(effective, "configMap") or {}, "configMap") or {}
            agent.effective_config = {
                str(k): _b64text(get(v, "body", "")) for k, v in files.items() if isinstance(v, Mapping)
            }
        content = self.assembler(self.matched_pipelines(c), c.get("collectorType", "COLLECTOR_TYPE_ALLOY"))
        digest = self.hasher(content)
        request_hash = get(msg, "hash", "")
        if request_hash and request_hash == digest:
            return {"hash": digest, "notModified": True}
        agent.last_hash = digest
        out: dict[str, Any] = {"hash": digest}
        if content:
            out["content"] = content
        return out

    # ---- tenant.v1.TenantService ----------------------------------------------------------------
    def GetLimits(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        # [U] The exact JSON shape is not public; this is the research note's best reading.
        out: dict[str, Any] = {}
        if self.limits.collectors is not None:
            out["collectors"] = self.limits.collectors
        if self.limits.pipelines is not None:
            out["pipelines"] = self.limits.pipelines
        out["requestsPerSecond"] = {"collector": self.limits.collector_rps, "api": self.limits.api_rps}
        return out


def _b64text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return ""
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4)).decode("utf-8", "replace")
    except ValueError:
        return value


def _attr_from_path(path: Any, n: int, what: str = "path") -> str:
    """``remoteAttributes.foo`` (the proto comment) or ``/remote_attributes/foo`` (JSON Pointer)."""
    if not isinstance(path, str) or not path:
        raise RpcError("invalid_argument", f"ops[{n}].{what} is required")
    if path.startswith("/"):
        parts = path[1:].split("/", 1)
        if len(parts) == 2 and parts[0] in ("remote_attributes", "remoteAttributes") and parts[1]:
            return parts[1].replace("~1", "/").replace("~0", "~")
    else:
        for prefix in ("remoteAttributes.", "remote_attributes."):
            if path.startswith(prefix) and len(path) > len(prefix):
                return path[len(prefix) :]
    raise RpcError(
        "invalid_argument",
        f"ops[{n}].{what} {path!r}: only remote attributes can be changed (remoteAttributes.KEY or /remote_attributes/KEY)",
    )


def apply_op(remote: dict[str, str], op: Mapping[str, Any], n: int) -> None:
    kind = enum(get(op, "op"), OP_TYPES, f"ops[{n}].op")
    key = _attr_from_path(get(op, "path"), n)
    value = get(op, "value")
    old = get(op, "oldValue")
    if kind == "ADD":
        if not isinstance(value, str):
            raise RpcError("invalid_argument", f"ops[{n}]: add needs a value")
        remote[key] = value
    elif kind == "REPLACE":
        if not isinstance(value, str):
            raise RpcError("invalid_argument", f"ops[{n}]: replace needs a value")
        if old is not None and remote.get(key) != old:
            return  # only replace when the current value is oldValue
        remote[key] = value
    elif kind == "REMOVE":
        # [I] Removing a key a collector does not have is a no-op, so one call fits a mixed fleet;
        # a value makes the removal selective.
        if value is not None and remote.get(key) != value:
            return
        remote.pop(key, None)
    elif kind in ("MOVE", "COPY"):
        src = _attr_from_path(get(op, "from"), n, "from")
        if src not in remote:
            raise RpcError("invalid_argument", f"ops[{n}]: remote attribute {src!r} does not exist")
        remote[key] = remote[src]
        if kind == "MOVE" and src != key:
            del remote[src]
    else:
        raise RpcError("invalid_argument", f"ops[{n}]: op is required")
