"""The server's live state: agents in memory (persisted through the store), connections, configs,
assignments, and the event bus the admin API streams from.

Every incoming AgentToServer goes through ``Hub.handle()``: the pure protocol core computes the new
state and the reply, the hub commits the changed parts (awaiting COMMIT before the reply is released),
and tells the event bus. Admin mutations (config versions, assignments, restart) are committed with
their audit entry in the same transaction, then pushed at once to WebSocket agents; HTTP agents get
theirs on their next poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from otelcockpit.fleet.matchers import Matcher, MatcherError, matches, parse_matchers
from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.core import AgentState, Desired
from otelcockpit.opamp_server.errlog import ErrorLog
from otelcockpit.opamp_server.proto import opamp_pb2 as pb
from otelcockpit.opamp_server.store import Op, Store, StoreUnavailable, agent_ops
from otelcockpit.opamp_server.views import agent_json, agent_text, now_text, ts, uid_text

LAZY = {"full_state_requested", "heartbeat"}  # written with the next batch (a touch)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SUBSCRIBER_QUEUE = 10_000
RELOAD_WAIT_SECONDS = 2.0  # an agent's message waits at most this long to read what another node stored
HEARTBEAT_FIELDS = frozenset({"instance_uid", "sequence_num", "capabilities", "flags"})
# What a known agent sends in answer to a config the server offered: taken even when saturated (it is
# what a rollout waits for; refusing it would stall every push behind the load the push caused).
PUSH_ANSWER_FIELDS = HEARTBEAT_FIELDS | {"remote_config_status", "effective_config"}
FORGET_EVERY_SECONDS = 30.0


class Overloaded(Exception):
    """The node is saturated (or full): the agent is told to come back later (HTTP 503 with
    Retry-After; over WebSocket ``error_response`` UNAVAILABLE with ``retry_info``)."""


class HubError(Exception):
    """A refused admin request: status code and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Connection(Protocol):
    uids: set[bytes]
    closed: bool

    async def send(self, reply: pb.ServerToAgent) -> None: ...


def uuid7() -> bytes:
    b = bytearray(int(time.time() * 1000).to_bytes(6, "big") + os.urandom(10))
    b[6] = 0x70 | (b[6] & 0x0F)
    b[8] = 0x80 | (b[8] & 0x3F)
    return bytes(b)


def needs(files: dict[str, tuple[str, str]]) -> frozenset[str]:
    """The collector components a config version's files use (``exporter:kafka``); JSON and YAML
    files are read as OpenTelemetry Collector configs, other files are not looked into."""
    from otelcockpit.policy.lint import components_used

    out: set[str] = set()
    for name, (body, ct) in files.items():
        lower, ctype = name.lower(), ct.lower()
        if "yaml" in ctype or "json" in ctype or lower.endswith((".yaml", ".yml", ".json")) or (not ctype and not name):
            out.update(components_used(body, "otel"))
    return frozenset(out)


@dataclass(frozen=True)
class ConfigVersion:
    name: str
    version: int
    hash: bytes
    files: dict[str, tuple[str, str]]  # file name -> (body, content type)
    author: str
    note: str
    created_at: str
    desired: Desired = field(repr=False, compare=False)

    @classmethod
    def make(
        cls,
        name: str,
        version: int,
        files: dict[str, tuple[str, str]],
        author: str,
        note: str,
        created_at: str,
    ) -> ConfigVersion:
        raw = {n: (body.encode("utf-8"), ct) for n, (body, ct) in files.items()}
        digest = core.config_hash(raw)
        cmap = pb.AgentConfigMap()
        for n, (body, ct) in raw.items():
            cmap.config_map[n].body = body
            cmap.config_map[n].content_type = ct
        return cls(
            name, version, digest, files, author, note, created_at, Desired(name, version, digest, cmap, needs(files))
        )

    def json(self, *, files: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "hash": self.hash.hex(),
            "author": self.author,
            "note": self.note,
            "created_at": self.created_at,
        }
        if files:
            out["files"] = {n: {"body": b, "content_type": ct} for n, (b, ct) in sorted(self.files.items())}
        return out


@dataclass(frozen=True)
class Assignment:
    id: int
    config: str
    version: int
    selector: str
    priority: int
    author: str
    created_at: str
    matchers: tuple[Matcher, ...]

    def json(self, agents: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "config": self.config,
            "version": self.version,
            "selector": self.selector,
            "priority": self.priority,
            "created_at": self.created_at,
            "author": self.author,
            "agents": agents,
        }


def parse_selector(text: str) -> tuple[Matcher, ...]:
    """Matchers over agent attributes; an empty selector (or ``{}``) matches every agent."""
    stripped = text.strip()
    if stripped in ("", "{}"):
        return ()
    return parse_matchers(stripped)


class Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self.dropped = False


class EventBus:
    """Server-sent events to admin subscribers. Agent events are coalesced per agent (4 per second)."""

    def __init__(self, agent_data: Callable[[bytes], str | None]) -> None:
        self._subs: set[Subscriber] = set()
        self._dirty: set[bytes] = set()
        self._agent_data = agent_data

    @property
    def active(self) -> bool:
        return bool(self._subs)

    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        if self._subs:
            self.publish_text(event, json.dumps(data, separators=(",", ":")))

    def publish_text(self, event: str, data: str) -> None:
        if not self._subs:
            return
        text = f"event: {event}\ndata: {data}\n\n"
        for sub in list(self._subs):
            try:
                sub.queue.put_nowait(text)
            except asyncio.QueueFull:  # a subscriber that cannot keep up is dropped (it reconnects)
                sub.dropped = True
                self._subs.discard(sub)

    def agent_changed(self, uid: bytes) -> None:
        if self._subs:
            self._dirty.add(uid)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for uid in dirty:
            data = self._agent_data(uid)
            if data is not None:
                self.publish_text("agent", data)


class Hub:
    """``node``: this server's name where several nodes share the store (every agent row says which
    node handled its last message; other nodes reload what changed when they are told)."""

    def __init__(self, store: Store, settings: core.Settings = core.DEFAULT_SETTINGS, *, node: str = "") -> None:
        self.store = store
        self.settings = settings
        self.node = node
        self.shared = store.shared
        self.alive_nodes: set[str] = {node}  # kept by the cluster loop (otelcockpit/opamp_server/cluster.py)
        self.agents: dict[bytes, AgentState] = {}
        self.conns: dict[bytes, Connection] = {}
        self.configs: dict[str, list[ConfigVersion]] = {}
        self.assignments: list[Assignment] = []  # sorted: highest priority first, ties newest first
        self.events = EventBus(self._agent_event_data)
        self.errors = ErrorLog(logging.getLogger("otelcockpit.opamp"))
        self._tasks: list[asyncio.Task[None]] = []
        self.admin_lock = asyncio.Lock()  # one admin mutation at a time
        self.lag = 0.0  # smoothed event-loop lag, seconds (the load monitor)
        self.overloaded = False
        self.refused = 0  # messages answered "come back later"
        self._last_forget = 0.0
        self._held: tuple[int, float] = (0, 0.0)  # (agents this node holds, when counted)
        self.started = time.time()
        # Rollouts (otelcockpit/opamp_server/rollouts.py): per-agent overrides of the desired config,
        # uid -> (config name, version), persisted in the rollout_overrides table.
        self.overrides: dict[bytes, tuple[str, int]] = {}
        self.override_owner: dict[bytes, str] = {}  # uid -> the rollout that staged its override
        # uid -> [its last committed state, writes in flight] while a message of the agent is written
        self._pending: dict[bytes, list[Any]] = {}
        self.versions_by_hash: dict[bytes, ConfigVersion] = {}  # every config version by its hash
        self._compared: dict[tuple[bytes, bytes], tuple[bool, tuple[str, ...]]] = {}  # (effective, assigned)
        # Effective configs agents came up on that are no config version (their bootstrap configs), by
        # hash, in memory (the last 64): what the cockpit compares with the managed config after an outage.
        self.came_up_configs: dict[bytes, dict[str, tuple[str, str]]] = {}
        self._load()

    # ---- start-up ----

    def _load(self) -> None:
        self._load_overrides(self.store.query("SELECT uid, config, version, rollout FROM rollout_overrides"))
        self._load_configs(self.store.query("SELECT * FROM config_versions ORDER BY name, version"))
        self._load_assignments(self.store.query("SELECT * FROM assignments WHERE deleted_at IS NULL"))
        fix: list[Op] = []
        for state, stored in self.store.load_agents():
            state.attributes = core.attributes_of(state.description)
            state.desired = self.resolve_for(state.uid, state.attributes)
            changed = set()
            d = state.desired
            current = (d.name, d.version, d.hash) if d is not None else None
            if current != stored:
                changed.add("desired")
            mine = not self.shared or state.node in ("", self.node)
            if mine and state.transport == "ws" and state.online:
                state.online = False  # no connection of this node survives its restart
                changed.add("online")
            self.agents[state.uid] = state
            if changed:
                fix.extend(agent_ops(state, changed, self.store.stored_sets))
        if fix:
            self.store.write_sync(fix)

    def _load_overrides(self, rows: list[Any]) -> None:
        self.overrides = {bytes(r["uid"]): (str(r["config"]), int(r["version"])) for r in rows}
        self.override_owner = {bytes(r["uid"]): str(r["rollout"]) for r in rows}

    def _load_configs(self, rows: list[Any]) -> None:
        for r in rows:
            have = self.configs.setdefault(r["name"], [])
            if len(have) >= r["version"]:
                continue  # versions are append-only: what is here is what is stored
            files = {n: (f["body"], f["content_type"]) for n, f in json.loads(r["files"]).items()}
            cv = ConfigVersion.make(r["name"], r["version"], files, r["author"], r["note"], r["created_at"])
            have.append(cv)
            self.versions_by_hash.setdefault(cv.hash, cv)

    def _load_assignments(self, rows: list[Any]) -> None:
        self.assignments = [
            Assignment(
                r["id"],
                r["config"],
                r["version"],
                r["selector"],
                r["priority"],
                r["author"],
                r["created_at"],
                parse_selector(r["selector"]),
            )
            for r in rows
        ]
        self._sort_assignments()

    def notify(self, kind: str, **data: Any) -> list[Op]:
        """The op that tells the other nodes (committed with the change it is about); none alone."""
        op = self.store.notify_op(kind, {"node": self.node, **data})
        return [op] if op is not None else []

    def _sort_assignments(self) -> None:
        self.assignments.sort(key=lambda a: (-a.priority, -a.id))

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._sweep_loop()))
        self._tasks.append(asyncio.create_task(self._event_loop()))
        self._tasks.append(asyncio.create_task(self._load_monitor()))

    async def _load_monitor(self, period: float = 0.1) -> None:
        """How far behind the event loop runs (a saturated node answers late): smoothed, with a gap
        between entering and leaving the overloaded state so it does not flap."""
        loop = asyncio.get_running_loop()
        above_since: float | None = None  # when the lag last went above the threshold
        while True:
            started = loop.time()
            await asyncio.sleep(period)
            now = loop.time()
            late = max(0.0, now - started - period)
            self.lag = 0.7 * self.lag + 0.3 * late
            if self.lag <= self.settings.overload_lag:
                above_since = None
            elif above_since is None:
                above_since = now
            if not self.overloaded and above_since is not None and now - above_since >= self.settings.overload_sustain:
                self.overloaded = True
                self.errors.error("load", f"saturated: the event loop is {self.lag * 1000:.0f} ms behind")
            elif self.overloaded and self.lag < self.settings.overload_clear:
                self.overloaded = False

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()

    # ---- resolution ----

    def resolve_assignment(self, attrs: dict[str, str]) -> Assignment | None:
        for a in self.assignments:
            if matches(a.matchers, attrs):
                return a
        return None

    def resolve(self, attrs: dict[str, str]) -> Desired | None:
        a = self.resolve_assignment(attrs)
        if a is None:
            return None
        cv = self.config_version(a.config, a.version)
        return cv.desired if cv is not None else None

    def resolve_for(self, uid: bytes, attrs: dict[str, str]) -> Desired | None:
        """The agent's desired config: a rollout's override for this agent, else its assignment."""
        o = self.overrides.get(uid)
        if o is not None:
            cv = self.config_version(o[0], o[1])
            if cv is not None:
                return cv.desired
        return self.resolve(attrs)

    def config_version(self, name: str, version: int) -> ConfigVersion | None:
        versions = self.configs.get(name)
        if not versions or version < 1 or version > len(versions):
            return None
        return versions[version - 1]

    # ---- agent traffic ----

    def is_connected(self, state: AgentState) -> bool:
        if state.transport == "ws":
            if state.uid in self.conns:
                return state.online
            # with several nodes, its WebSocket may be on another one that is alive
            return self.shared and state.online and state.node in self.alive_nodes and state.node != self.node
        return state.online

    def heartbeat_of(self, state: AgentState) -> float:
        return state.heartbeat if state.heartbeat > 0 else float(self.settings.heartbeat_seconds)

    def agent_view(self, state: AgentState) -> dict[str, Any]:
        return agent_json(
            state,
            connected=self.is_connected(state),
            heartbeat_seconds=self.heartbeat_of(state),
            config=self.config_facts(state),
        )

    def config_text(self, state: AgentState) -> str:
        """The agent's config facts as JSON text, the same object while they do not change."""
        facts = self.config_facts(state)
        hit = state.view_cache.get("config_text")
        if hit is not None and hit[0] is facts:
            return hit[1]
        text = json.dumps(facts, separators=(",", ":"))
        state.view_cache["config_text"] = (facts, text)
        return text

    def compact_config_text(self, state: AgentState) -> str:
        """The config facts of the compact list: what is empty left out, the assigned version left out
        (``desired`` names it), and the effective hash as ``"="`` when it is the hash the agent reports
        in its remote config status (most agents: they run what they applied). The same object while
        the facts do not change."""
        facts = self.config_facts(state)
        hit = state.view_cache.get("config_compact")
        if hit is not None and hit[0] is facts:
            return hit[1]
        def kept(d: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in d.items() if v not in (None, False, "", [])}

        out = kept({k: v for k, v in facts.items() if k != "assigned_version"})
        eff = out.get("effective_hash", "")
        if eff and eff == state.reported_hash.hex():
            out["effective_hash"] = "="
        if isinstance(out.get("came_up"), dict):  # what it came up on: "=" for the effective hash it reports now
            up = kept(out["came_up"])
            if eff and up.get("effective_hash") == eff:
                up["effective_hash"] = "="
            out["came_up"] = up
        text = json.dumps(out, separators=(",", ":"))
        state.view_cache["config_compact"] = (facts, text)
        return text

    def agent_view_text(self, state: AgentState) -> str:
        return agent_text(
            state,
            connected=self.is_connected(state),
            heartbeat_seconds=self.heartbeat_of(state),
            config_text=self.config_text(state),
        )

    # ---- what each agent runs (the facts otelcockpit.fleet.configstate decides from) ----

    def version_label(self, digest: bytes) -> str | None:
        cv = self.versions_by_hash.get(digest) if digest else None
        return f"{cv.name}@v{cv.version}" if cv is not None else None

    def _compare(self, state: AgentState, effective: bytes, desired: Desired) -> tuple[bool, tuple[str, ...]]:
        """How an effective config that is no config version differs from the assigned one (cached
        per pair of hashes: many agents run the same thing)."""
        key = (effective, desired.hash)
        hit = self._compared.get(key)
        if hit is None:
            from otelcockpit.fleet.configstate import compare_files

            cv = self.versions_by_hash.get(desired.hash)
            ec = state.effective_config
            if cv is None or ec is None:
                return False, ()
            eff = {
                n: (f.body.decode("utf-8", "replace"), f.content_type) for n, f in ec.config_map.config_map.items()
            }
            hit = compare_files(cv.files, eff)
            if len(self._compared) >= 4096:
                self._compared.clear()
            self._compared[key] = hit
        return hit

    def config_facts(self, state: AgentState, *, detail: bool = False) -> dict[str, Any]:
        """What the admin API says of the config an agent runs: the hash of its effective config and
        the config versions its hashes are, and, for an effective config that is no version, how it
        differs from the assigned one; plus what it came up on when it last (re)started."""
        hit = state.view_cache.get("config_facts") if not detail else None
        if hit is not None:
            d = hit[0]  # type: ignore[index]
            if (
                d[0] is state.effective_config
                and d[1] is state.desired
                and d[2] is state.remote_config_status
                and d[3] is state.came_up
                and d[4] is state.available_components
                and d[5] == len(self.versions_by_hash)
            ):
                return hit[1]  # type: ignore[return-value]
        deps = (
            state.effective_config,
            state.desired,
            state.remote_config_status,
            state.came_up,
            state.available_components,
            len(self.versions_by_hash),
        )
        out = self._config_facts(state, detail=detail)
        if not detail:
            state.view_cache["config_facts"] = (deps, out)  # type: ignore[assignment]
        return out

    def _config_facts(self, state: AgentState, *, detail: bool) -> dict[str, Any]:
        eff = state.effective_hash
        d = state.desired
        out: dict[str, Any] = {
            "effective_hash": eff.hex(),
            "effective_version": self.version_label(eff),
            "reported_version": self.version_label(state.reported_hash),
            "assigned_version": f"{d.name}@v{d.version}" if d is not None else None,
            "equivalent": False,
            "differs": [],
        }
        lacking = state.lacks(d) if d is not None else ()
        if lacking:
            out["held"] = f"it lacks {', '.join(lacking)}"
        if eff and d is not None and eff != d.hash and eff not in self.versions_by_hash:
            equivalent, differs = self._compare(state, eff, d)
            out["equivalent"], out["differs"] = equivalent, list(differs)
        up = state.came_up
        if up:
            at = up.get("at")
            out["came_up"] = {
                **up,
                "at": ts(at) if isinstance(at, int | float) else at,
                "effective_version": self.version_label(bytes.fromhex(up.get("effective_hash") or "")),
                "reported_version": self.version_label(bytes.fromhex(up.get("hash") or "")),
            }
            files = self.came_up_configs.get(bytes.fromhex(up.get("effective_hash") or "")) if detail else None
            if files is not None:
                out["came_up"]["effective_config"] = {n: {"body": b, "content_type": ct} for n, (b, ct) in sorted(files.items())}
        return out

    def committed_state(self, uid: bytes) -> AgentState | None:
        """The agent as the store has it: while a message of its is being written, the state before it
        (None for an agent whose first message is not committed yet)."""
        pending = self._pending.get(uid)
        return pending[0] if pending is not None else self.agents.get(uid)

    def _agent_event_data(self, uid: bytes) -> str | None:
        s = self.agents.get(uid)
        return self.agent_view_text(s) if s is not None else None

    async def handle(
        self, msg: pb.AgentToServer, transport: str, conn: Connection | None = None
    ) -> pb.ServerToAgent:
        uid = msg.instance_uid
        prev = self.agents.get(uid)
        if self.overloaded and (prev is None or {f.name for f, _ in msg.ListFields()} - PUSH_ANSWER_FIELDS):
            # Saturated: a known agent's plain heartbeat is still answered (it costs no write, and
            # refusing it would make the fleet look offline), and so is its answer to a config offered
            # (a rollout waits for it); a new agent or another report comes back later (a skipped report
            # shows as a gap in the agent's sequence: it is asked for its full state).
            self.refused += 1
            raise Overloaded(f"the server is saturated (event loop {self.lag * 1000:.0f} ms behind)")
        if prev is None and len(msg.instance_uid) == 16 and self.full():
            self.refused += 1
            raise Overloaded(f"the server holds its maximum of {self.settings.max_agents} agents")
        if self.shared and uid not in self.conns and (prev is None or prev.node not in ("", self.node)):
            # The agent's last message went to another node (or this node has not heard of it yet):
            # read what that node stored (memory here may lag a moment behind), then handle it here.
            if len(uid) == core.UID_LENGTH:
                try:
                    prev = await asyncio.wait_for(self.reload_agent(uid), RELOAD_WAIT_SECONDS) or prev
                except (TimeoutError, StoreUnavailable):
                    pass  # the database is away or slow: what this node holds will do (a write tells)
        new_uid = None
        if msg.flags & pb.AgentToServerFlags_RequestInstanceUid:
            new_uid = uuid7()  # the agent asks the server for its identity
        elif conn is not None and prev is not None:
            owner = self.conns.get(uid)
            # A second live connection with this uid is a duplicate (a cloned VM, a bad generator),
            # unless its message continues the agent's sequence: then it is the same agent reconnecting
            # before the server noticed its old connection die. The same holds for a live WebSocket
            # on another node (several nodes on one database).
            live_elsewhere = (
                owner is None
                and self.shared
                and prev.online
                and prev.transport == "ws"
                and prev.node not in ("", self.node)
                and prev.node in self.alive_nodes
            )
            if (
                (owner is not None and owner is not conn and not owner.closed) or live_elsewhere
            ) and msg.sequence_num != prev.seq + 1:
                new_uid = uuid7()
        now = time.time()
        base = prev
        new_conn = conn is not None and self.conns.get(uid) is not conn
        if new_conn and new_uid is None and prev is not None and prev.offered_hash is not None:
            # a new connection: an offer made on an earlier one may have been lost, so it may go again
            base = prev.clone()
            base.offered_hash = None
            # ... and an apply that was under way when the old connection died may have been lost
            # with it: if the agent is still APPLYING that config long after the offer, offer it once
            # more (core.wants_offer decides from the status this message reports).
            base.stuck_reoffer = now - prev.offered_at >= self.settings.stuck_applying_after
        if new_conn and new_uid is None and prev is not None and prev.settings_offered is not None:
            if base is prev:
                base = prev.clone()
            base.settings_offered = None  # offered again on the new connection
        out = core.process(
            base,
            msg,
            now,
            transport=transport,
            resolve=(lambda attrs: self.resolve_for(uid, attrs)) if self.overrides else self.resolve,
            new_uid=new_uid,
            settings=self.settings,
        )
        if out.error is not None:
            return out.reply
        if new_uid is not None:
            why = "requested" if msg.flags & pb.AgentToServerFlags_RequestInstanceUid else "duplicate"
            detail = {"new": uid_text(new_uid), "reason": why}
            await self.store.write(
                [self.audit_op("server", "agent.new_instance_uid", uid_text(uid), detail)]
            )
            return out.reply
        if out.state is None:
            return out.reply
        s = out.state
        changed = out.changed
        if prev is not None and s.desired is not prev.desired:
            changed.add("desired")
        if base is not prev:
            changed.add("offered")
        if s.node != self.node:
            s.node = self.node
            changed.add("node")
        self._measure_heartbeat(prev, s, msg, changed)
        # What the store will be asked to write is computed before anything changes in memory: a
        # message the store cannot take is refused as a whole, and memory and store never disagree.
        ops: list[Op] = []
        if changed - LAZY:
            ops = agent_ops(s, changed, self.store.stored_sets)
            if out.history is not None:
                h, status, err = out.history
                ops.append(
                    (
                        "INSERT INTO config_history (uid, hash, status, error, at) VALUES (?, ?, ?, ?, ?)",
                        (uid, h.hex(), status, err, ts(now)),
                    )
                )
        if "came_up" in changed and s.effective_config is not None:
            eff = s.effective_hash
            if eff and eff not in self.versions_by_hash and eff not in self.came_up_configs:
                if len(self.came_up_configs) >= 64:
                    self.came_up_configs.pop(next(iter(self.came_up_configs)))
                self.came_up_configs[eff] = {
                    n: (f.body.decode("utf-8", "replace"), f.content_type)
                    for n, f in s.effective_config.config_map.config_map.items()
                }
        prev_conn = self.conns.get(uid)
        registered = conn is not None and new_conn
        if registered:
            assert conn is not None
            self.conns[uid] = conn
            conn.uids.add(uid)
        self.agents[uid] = s
        if not ops:
            self.store.touch(s)
            return out.reply
        # Until the write commits, what a rollout judges the agent by is its last committed state
        # (committed_state): a report that a crash loses must never have been acted on.
        pending = self._pending.get(uid)
        if pending is None:
            pending = self._pending[uid] = [prev, 0]
        pending[1] += 1
        try:
            await self.store.write(ops, agents=(uid,))
            pending[0] = s
        except Exception:
            # Not committed, so not acknowledged: undo what this message did in memory (unless a
            # later change already replaced it) and let the agent retry.
            if self.agents.get(uid) is s:
                if prev is None:
                    del self.agents[uid]
                else:
                    self.agents[uid] = prev
            if registered and self.conns.get(uid) is conn:
                assert conn is not None
                conn.uids.discard(uid)
                if prev_conn is None:
                    del self.conns[uid]
                else:
                    self.conns[uid] = prev_conn
            raise
        finally:
            pending[1] -= 1
            if pending[1] == 0 and self._pending.get(uid) is pending:
                del self._pending[uid]
        self.events.agent_changed(uid)
        if out.went_offline:
            self.events.publish("agent_offline", {"instance_uid": uid_text(uid)})
        return out.reply

    @staticmethod
    def _measure_heartbeat(prev: AgentState | None, s: AgentState, msg: pb.AgentToServer, changed: set[str]) -> None:
        """The agent's own heartbeat interval: the gap between its plain heartbeats (an EWMA), recorded
        when it moves by more than a quarter (so a steady agent costs no writes)."""
        if prev is None or not prev.online or msg.sequence_num != prev.seq + 1:
            return
        if {f.name for f, _ in msg.ListFields()} - HEARTBEAT_FIELDS:
            return  # a status report comes when something happened, not on the agent's clock
        gap = s.last_seen - prev.last_seen
        if gap <= 0.05:
            return
        target = gap if prev.heartbeat <= 0 else 0.7 * prev.heartbeat + 0.3 * gap
        if prev.heartbeat <= 0 or abs(target - prev.heartbeat) > 0.25 * prev.heartbeat:
            s.heartbeat = round(target, 3)
            changed.add("heartbeat")

    def offline_after(self, state: AgentState) -> float:
        """Seconds of silence after which this agent counts as offline: three of its own heartbeat
        intervals when known, else three of the server's."""
        interval = state.heartbeat if state.heartbeat > 0 else float(self.settings.heartbeat_seconds)
        return core.OFFLINE_AFTER_INTERVALS * interval

    # ---- several nodes on one database: what other nodes changed ---------------------------------
    async def reload_agent(self, uid: bytes) -> AgentState | None:
        got = await self.reload_agents([uid], force=True)
        return got.get(uid)

    async def reload_agents(self, uids: list[bytes], *, force: bool = False) -> dict[bytes, AgentState]:
        """Read agents another node changed. An agent whose row says this node handled it last is
        left as it is here (this node is its authority), unless ``force``; one whose WebSocket moved to
        another node is no longer connected here."""
        if not uids:
            return {}
        rows = await self.store.aquery(
            f"SELECT * FROM agents WHERE uid IN ({','.join('?' * len(uids))})", list(uids)
        )
        from otelcockpit.opamp_server.store import resolve_sets, row_to_state, sets_query, unresolved_sets

        read = [row_to_state(r)[0] for r in rows]
        missing = unresolved_sets(read)
        if missing:  # a component set this node has not seen yet
            resolve_sets(read, await self.store.aquery(*sets_query(missing)), self.store.stored_sets)
        out: dict[bytes, AgentState] = {}
        seen: set[bytes] = set()
        for state in read:
            seen.add(state.uid)
            if state.node == self.node and not force and state.uid in self.agents:
                continue
            state.attributes = core.attributes_of(state.description)
            state.desired = self.resolve_for(state.uid, state.attributes)
            held = self.agents.get(state.uid)
            if held is not None:
                state.view_cache = held.view_cache
                state.reoffered_hash = held.reoffered_hash
                state.settings_offered = held.settings_offered
            conn = self.conns.get(state.uid)
            if conn is not None and state.node != self.node:
                del self.conns[state.uid]  # its WebSocket is on another node now
                conn.uids.discard(state.uid)
            self.agents[state.uid] = state
            out[state.uid] = state
            self.events.agent_changed(state.uid)
        for uid in set(uids) - seen:  # removed on another node
            if self.agents.pop(uid, None) is not None:
                self.events.publish("agent_removed", {"instance_uid": uid_text(uid)})
        local = [u for u in out if u in self.conns]
        if local:
            await self.push(local)  # a restart or an offer another node asked for goes out here
        return out

    async def reload_configs(self) -> None:
        before = {n: len(v) for n, v in self.configs.items()}
        self._load_configs(await self.store.aquery("SELECT * FROM config_versions ORDER BY name, version"))
        for name, versions in self.configs.items():
            for cv in versions[before.get(name, 0) :]:
                self.events.publish("config", cv.json(files=False))

    async def reload_assignments(self) -> None:
        """Assignments or rollout overrides changed on another node: read them, re-resolve, offer."""
        self._load_overrides(await self.store.aquery("SELECT uid, config, version, rollout FROM rollout_overrides"))
        self._load_assignments(await self.store.aquery("SELECT * FROM assignments WHERE deleted_at IS NULL"))
        counts = self.assignment_counts()
        for a in self.assignments:
            self.events.publish("assignment", a.json(counts.get(a.id, 0)))
        await self.reresolve(mine_only=True)

    async def connection_closed(self, conn: Connection) -> None:
        ops: list[Op] = []
        gone: list[bytes] = []
        for uid in conn.uids:
            if self.conns.get(uid) is conn:
                del self.conns[uid]
                s = self.agents.get(uid)
                if s is not None and s.online:
                    s = core.mark_offline(s)
                    self.agents[uid] = s
                    ops.extend(agent_ops(s, {"online"}, self.store.stored_sets))
                    gone.append(uid)
        if ops:
            await self.store.write(ops, agents=gone)
        for uid in gone:
            self.events.agent_changed(uid)
            self.events.publish("agent_offline", {"instance_uid": uid_text(uid)})

    async def push(self, uids: list[bytes]) -> int:
        """Send what is pending (offers, restart) to the connected WebSocket agents among ``uids``."""
        now = time.time()
        ops: list[Op] = []
        sends: list[tuple[Connection, pb.ServerToAgent]] = []
        for uid in uids:
            conn = self.conns.get(uid)
            s = self.agents.get(uid)
            if conn is None or conn.closed or s is None:
                continue
            out = core.pending(s, now, self.settings)
            if out.reply is None:
                continue
            self.agents[uid] = out.state  # type: ignore[assignment]
            ops.extend(agent_ops(out.state, out.changed, self.store.stored_sets))  # type: ignore[arg-type]
            sends.append((conn, out.reply))
        if ops:
            await self.store.write(ops, agents=[u for u in uids if u in self.agents])
        if sends:
            await self.send_all(sends)
        return len(sends)

    async def send_all(self, sends: list[tuple[Connection, pb.ServerToAgent]]) -> None:
        """Send replies to WebSocket agents; a connection that died meanwhile is cleaned up by its
        close handler, never by the sender."""

        async def one(conn: Connection, reply: pb.ServerToAgent) -> None:
            try:
                await conn.send(reply)
            except Exception:  # noqa: BLE001 - a dead connection; its close handler cleans up
                pass

        await asyncio.gather(*(one(c, r) for c, r in sends))

    async def reresolve(
        self, uids: list[bytes] | None = None, ops: list[Op] | None = None, *, mine_only: bool = False
    ) -> list[bytes]:
        """Recompute the desired config of ``uids`` (None: every agent) after an assignment or an
        override changed, commit ``ops`` with their new state in ONE transaction, then offer at once.

        One row update per agent carries both the new desired config and, for a connected WebSocket
        agent, the offer made to it. Returns the agents whose desired config changed."""
        now = time.time()
        writes: list[Op] = list(ops or ())
        moved: list[bytes] = []
        sends: list[tuple[Connection, pb.ServerToAgent]] = []
        for uid in uids if uids is not None else list(self.agents):
            s = self.agents.get(uid)
            if s is None:
                continue
            d = self.resolve_for(uid, s.attributes)
            if d is s.desired:
                continue
            if mine_only and self.shared and s.node not in ("", self.node):
                # Another node handles this agent: it re-resolves it itself; here memory follows.
                s2 = s.clone()
                s2.desired = d
                self.agents[uid] = s2
                continue
            s2 = s.clone()
            s2.desired = d
            changed = {"desired"}
            conn = self.conns.get(uid)
            if conn is not None and not conn.closed:
                out = core.pending(s2, now, self.settings)
                if out.reply is not None and out.state is not None:
                    s2 = out.state
                    changed |= out.changed
                    sends.append((conn, out.reply))
            self.agents[uid] = s2
            writes.extend(agent_ops(s2, changed, self.store.stored_sets))
            moved.append(uid)
        if writes:
            await self.store.write(writes, agents=moved)
        for uid in moved:
            self.events.agent_changed(uid)
        if sends:
            await self.send_all(sends)
        return moved

    async def _sweep_loop(self) -> None:
        # Once a second at most: an agent heartbeating every 0.5 s is offline 1.5 s after it stops.
        period = max(0.2, min(1.0, self.settings.heartbeat_seconds / 4))
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep(time.time())
            except Exception as exc:  # never let the sweeper die
                self.errors.error("sweep", "marking silent agents offline failed", exc=exc)

    async def sweep(self, now: float) -> list[bytes]:
        ops: list[Op] = []
        gone: list[bytes] = []
        hb = float(self.settings.heartbeat_seconds)
        conns = self.conns
        expired = core.expired
        shared, me = self.shared, self.node
        # Each agent by its own heartbeat interval (the server's until it is measured). With several
        # nodes, each sweeps the agents it handles; the agents of a node that died are swept by the
        # cluster loop. No per-agent allocation here: this runs over every agent every second.
        stale = [
            s
            for s in self.agents.values()
            if s.online
            and (not shared or s.node in ("", me))
            and expired(s, now, s.heartbeat if s.heartbeat > 0 else hb, live_connection=s.uid in conns)
        ]
        for s in stale:
            s2 = core.mark_offline(s)
            self.agents[s.uid] = s2
            ops.extend(agent_ops(s2, {"online"}, self.store.stored_sets))
            gone.append(s.uid)
        if ops:
            await self.store.write(ops, agents=gone)
        for uid in gone:
            self.events.agent_changed(uid)
            self.events.publish("agent_offline", {"instance_uid": uid_text(uid)})
        if now - self._last_forget >= FORGET_EVERY_SECONDS:
            self._last_forget = now
            await self.forget(now)
        return gone

    def full(self) -> bool:
        """This node holds ``max_agents`` agents: the online ones whose last message came here. Agents
        of other nodes (a node keeps the whole fleet in memory) and offline rows do not count. Counted
        only near the limit, at most once a second, and kept up to date in between as agents arrive."""
        cap = self.settings.max_agents
        if len(self.agents) < cap:
            return False
        count, at = self._held
        now = time.monotonic()
        if now - at >= 1.0:
            me = self.node
            count, at = sum(1 for s in self.agents.values() if s.online and s.node in ("", me)), now
        if count >= cap:
            self._held = (count, at)
            return True
        self._held = (count + 1, at)  # the agent about to be taken
        return False

    async def forget(self, now: float) -> list[bytes]:
        """Delete agents that never sent an AgentDescription and have been offline for
        ``forget_unidentified_after`` (junk from broken or hostile clients must not pile up), and any
        agent offline for ``forget_offline_after`` (pods gone for good; 0 keeps them). With several
        nodes, each forgets the agents it handled last and those of nodes that are gone."""
        ttl, keep = self.settings.forget_unidentified_after, self.settings.forget_offline_after
        me, alive, shared = self.node, self.alive_nodes, self.shared
        junk: list[bytes] = []
        gone: list[bytes] = []
        for uid, s in self.agents.items():
            if s.online or uid in self.conns or (shared and s.node not in ("", me) and s.node in alive):
                continue
            if uid in self.overrides:  # a member of a rollout: its record needs it
                continue
            if s.description is None and now - s.last_seen > ttl:
                junk.append(uid)
            elif keep > 0 and now - s.last_seen > keep:
                gone.append(uid)
        if not junk and not gone:
            return []
        ops: list[Op] = []
        for uid in junk + gone:
            ops.append(("DELETE FROM agents WHERE uid = ?", (uid,)))
            ops.append(("DELETE FROM config_history WHERE uid = ?", (uid,)))
        for what, uids in (("unidentified", junk), (f"offline for more than {keep / 3600:g} h", gone)):
            if uids:
                ops.append(self.audit_op("server", "agent.forget", f"{len(uids)} agents", {"reason": what}))
        # Out of memory first: an agent that reports while the delete is written is then a new agent,
        # stored whole after the delete (writes commit in order), never an update of a deleted row.
        held = {uid: self.agents.pop(uid) for uid in junk + gone}
        try:
            await self.store.write(ops, agents=junk + gone)
        except BaseException:
            for uid, st in held.items():
                self.agents.setdefault(uid, st)  # nothing was deleted: keep them, unless one came back
            raise
        for uid in junk + gone:
            self.events.publish("agent_removed", {"instance_uid": uid_text(uid)})
        return junk + gone

    async def _event_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            try:
                self.events.flush()
            except Exception as exc:
                self.errors.error("events", "publishing agent events failed", exc=exc)

    # ---- admin mutations ----

    def audit_op(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> Op:
        return (
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (now_text(), actor, action, target, json.dumps(detail, sort_keys=True)),
        )

    async def create_config(
        self, name: str, files: dict[str, tuple[str, str]], author: str, note: str, actor: str
    ) -> ConfigVersion:
        if not NAME_RE.match(name):
            raise HubError(400, f"bad config name {name!r}: letters, digits, '.', '_', '-' (max 128)")
        async with self.admin_lock:
            return await self._create_config(name, files, author, note, actor)

    async def _create_config(
        self, name: str, files: dict[str, tuple[str, str]], author: str, note: str, actor: str
    ) -> ConfigVersion:
        versions = self.configs.setdefault(name, [])
        body = json.dumps(
            {n: {"body": b, "content_type": ct} for n, (b, ct) in files.items()}, sort_keys=True
        )
        for attempt in range(5):
            cv = ConfigVersion.make(name, len(versions) + 1, files, author, note, now_text())
            try:
                await self.store.write(
                    [
                        (
                            "INSERT INTO config_versions (name, version, hash, files, author, note, created_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (cv.name, cv.version, cv.hash.hex(), body, author, note, cv.created_at),
                        ),
                        self.audit_op(
                            actor, "config.create", f"{name}@{cv.version}", {"hash": cv.hash.hex(), "note": note}
                        ),
                        *self.notify("configs", name=name),
                    ]
                )
            except Exception as exc:
                # Another node made this version number a moment ago: read what it made, take the next.
                if attempt == 4 or not self.store.conflict(exc):
                    raise
                await self.reload_configs()
                continue
            break
        versions.append(cv)
        self.versions_by_hash.setdefault(cv.hash, cv)
        self.events.publish("config", cv.json(files=False))
        return cv

    def assignment_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {a.id: 0 for a in self.assignments}
        for s in self.agents.values():
            a = self.resolve_assignment(s.attributes)
            if a is not None:
                counts[a.id] += 1
        return counts

    async def create_assignment(
        self, config: str, version: int | None, selector: str, priority: int, author: str, actor: str
    ) -> dict[str, Any]:
        async with self.admin_lock:
            return await self._create_assignment(config, version, selector, priority, author, actor)

    async def _create_assignment(
        self, config: str, version: int | None, selector: str, priority: int, author: str, actor: str
    ) -> dict[str, Any]:
        versions = self.configs.get(config)
        if not versions:
            raise HubError(404, f"no config named {config!r}")
        if version is None:
            version = len(versions)
        if self.config_version(config, version) is None:
            raise HubError(404, f"config {config!r} has no version {version} (latest is {len(versions)})")
        try:
            matchers = parse_selector(selector)
        except MatcherError as exc:
            raise HubError(400, str(exc)) from None
        created = now_text()
        detail = {"config": config, "version": version, "selector": selector, "priority": priority}

        def insert(tx: Any) -> Any:
            aid = tx.execute(
                "INSERT INTO assignments (config, version, selector, priority, author, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (config, version, selector, priority, author, created),
            )
            tx.execute(*self.audit_op(actor, "assignment.create", str(aid), detail))  # type: ignore[misc]
            return aid

        ids = await self.store.write([insert, *self.notify("assignments")])
        a = Assignment(ids[0], config, version, selector, priority, author, created, matchers)
        self.assignments.append(a)
        self._sort_assignments()
        await self.reresolve()
        data = a.json(self.assignment_counts().get(a.id, 0))
        self.events.publish("assignment", data)
        return data

    async def delete_assignment(self, assignment_id: int, actor: str) -> None:
        async with self.admin_lock:
            await self._delete_assignment(assignment_id, actor)

    async def _delete_assignment(self, assignment_id: int, actor: str) -> None:
        found = next((a for a in self.assignments if a.id == assignment_id), None)
        if found is None:
            raise HubError(404, f"no assignment {assignment_id}")
        await self.store.write(
            [
                ("UPDATE assignments SET deleted_at = ? WHERE id = ?", (now_text(), assignment_id)),
                self.audit_op(actor, "assignment.delete", str(assignment_id), {}),
                *self.notify("assignments"),
            ]
        )
        self.assignments = [a for a in self.assignments if a.id != assignment_id]
        await self.reresolve()
        data = found.json(0)
        data["deleted"] = True
        self.events.publish("assignment", data)

    async def request_restart(self, uid: bytes, actor: str) -> None:
        s = self.agents.get(uid)
        if s is None:
            raise HubError(404, f"no agent {uid_text(uid)}")
        if not s.capabilities & core.ACCEPTS_RESTART_COMMAND:
            raise HubError(409, f"agent {uid_text(uid)} does not accept restart commands")
        s2 = s.clone()
        s2.pending_restart = True
        self.agents[uid] = s2
        await self.store.write(
            [*agent_ops(s2, {"pending_restart"}, self.store.stored_sets), self.audit_op(actor, "agent.restart", uid_text(uid), {})],
            agents=(uid,),
        )
        await self.push([uid])

    async def history(self, uid: bytes, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.store.aquery(
            "SELECT hash, status, error, at FROM config_history WHERE uid = ? ORDER BY id DESC LIMIT ?",
            (uid, limit),
        )
        return [{"hash": r["hash"], "status": r["status"], "error": r["error"], "at": r["at"]} for r in rows]

    async def applied_history(self) -> dict[bytes, list[tuple[str, str]]]:
        """uid -> the distinct config hashes it reported APPLIED, newest first, each with when it
        last did (at most two per agent: the current one and the one before)."""
        rows = await self.store.aquery(
            "SELECT uid, hash, MAX(id) AS last_id, MAX(at) AS at FROM config_history"
            " WHERE status = 'APPLIED' GROUP BY uid, hash ORDER BY uid, last_id DESC"
        )
        out: dict[bytes, list[tuple[str, str]]] = {}
        for r in rows:
            seen = out.setdefault(bytes(r["uid"]), [])
            if len(seen) < 2:
                seen.append((r["hash"], r["at"]))
        return out

    async def audit(self, since: str | None, limit: int) -> list[dict[str, Any]]:
        sql = "SELECT * FROM audit"
        params: list[Any] = []
        if since:
            sql += " WHERE at >= ?"
            params.append(since)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        rows = await self.store.aquery(sql, params)
        return [
            {
                "id": r["id"],
                "at": r["at"],
                "actor": r["actor"],
                "action": r["action"],
                "target": r["target"],
                "detail": json.loads(r["detail"]),
            }
            for r in rows
        ]
