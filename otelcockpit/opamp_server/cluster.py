"""Several ``otelcockpit serve`` nodes on one PostgreSQL database: active-active, stateless apart from
their connections, no clustering protocol of our own.

What each node does here, beside serving its agents:

* **Registry.** It writes its row in ``nodes`` every :data:`BEAT_SECONDS`; a node whose row is older
  than :data:`DEAD_AFTER` is dead. The agents a dead node held (its WebSockets) are marked offline by
  whichever live node notices first (the update is idempotent), unless they reconnected elsewhere.
* **Event bus.** It listens on the database's ``otelcockpit`` channel (PostgreSQL LISTEN/NOTIFY; a change
  and its notification commit together). Agents another node changed are read again (in batches); a new
  config version, an assignment or a rollout override make it read those tables again, re-resolve the
  agents connected to it and push to its WebSocket agents at once (HTTP agents get it on their next
  poll, on whatever node they reach). Everything it reads this way goes out on its own event stream,
  so the SSE of any node shows the whole fleet.
* **Heartbeats of other nodes' agents** are not notified (they would be a flood): every
  :data:`SYNC_SECONDS` it reads the ``last_seen`` and sequence numbers that moved.
* After the listening connection was lost (the database restarted), it reads everything again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from otelcockpit.opamp_server.hub import Hub
from otelcockpit.opamp_server.store import u64_from_db
from otelcockpit.opamp_server.views import uid_text

log = logging.getLogger(__name__)

BEAT_SECONDS = 2.0
DEAD_AFTER = 10.0
SYNC_SECONDS = 2.0
RELOAD_BATCH_SECONDS = 0.05


class Cluster:
    def __init__(self, hub: Hub, store: Any, *, opamp_url: str, admin_url: str, rollouts: Any = None) -> None:
        self.hub = hub
        self.store = store
        self.node = hub.node
        self.opamp_url = opamp_url
        self.admin_url = admin_url
        self.rollouts = rollouts
        self.started = time.time()
        self._tasks: list[asyncio.Task[Any]] = []
        self._dirty: set[bytes] = set()
        self._dirty_event = asyncio.Event()
        self._synced_at = time.time()
        self.dead_swept = 0

    async def start(self) -> None:
        now = time.time()
        await self.store.write(
            [
                (
                    "INSERT INTO nodes (name, started_at, beat_at, opamp_url, admin_url) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at, beat_at = excluded.beat_at, "
                    "opamp_url = excluded.opamp_url, admin_url = excluded.admin_url",
                    (self.node, now, now, self.opamp_url, self.admin_url),
                )
            ]
        )
        await self._refresh_nodes()
        loop = asyncio.get_running_loop()
        for coro in (self._beat_loop(), self._listen_loop(), self._reload_loop(), self._sync_loop()):
            self._tasks.append(loop.create_task(coro))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    # ---- the registry ---------------------------------------------------------------------------
    async def _refresh_nodes(self) -> None:
        rows = await self.store.aquery("SELECT name, beat_at FROM nodes")
        now = time.time()
        alive = {r["name"] for r in rows if now - float(r["beat_at"]) <= DEAD_AFTER}
        alive.add(self.node)
        self.hub.alive_nodes = alive
        dead = {r["name"] for r in rows} - alive
        for name in dead:
            await self._sweep_dead(name)

    async def _sweep_dead(self, name: str) -> None:
        """The WebSocket agents of a dead node are offline (unless they reconnected elsewhere since)."""
        rows = await self.store.aquery("SELECT uid FROM agents WHERE node = ? AND online = 1", (name,))
        uids = [bytes(r["uid"]) for r in rows]
        if not uids:
            return
        ops = []
        for uid in uids:
            s = self.hub.agents.get(uid)
            if s is not None:
                s2 = s.clone()
                s2.online = False
                self.hub.agents[uid] = s2
            ops.append(("UPDATE agents SET online = 0 WHERE uid = ? AND node = ?", (uid, name)))
        await self.store.write(ops, agents=uids)
        self.dead_swept += len(uids)
        for uid in uids:
            self.hub.events.agent_changed(uid)
            self.hub.events.publish("agent_offline", {"instance_uid": uid_text(uid)})
        log.warning("node %s is gone: %d of its agents are offline until they reconnect", name, len(uids))

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(BEAT_SECONDS)
            try:
                await self.store.write([("UPDATE nodes SET beat_at = ? WHERE name = ?", (time.time(), self.node))])
                await self._refresh_nodes()
            except Exception as exc:  # noqa: BLE001 - the database is away: try again next beat
                self.hub.errors.error("cluster", "the node's heartbeat to the database failed", exc=exc)

    # ---- what other nodes changed ------------------------------------------------------------------
    async def _listen_loop(self) -> None:
        first = True
        while True:
            try:
                if not first:
                    await self.resync()  # the listener itself broke: what it missed is read again
                first = False
                async for event in self.store.listen(on_reconnect=self.resync):
                    if event.get("node") == self.node:
                        continue
                    try:
                        await self._apply(event)
                    except Exception as exc:  # noqa: BLE001 - one bad event must not stop the bus
                        self.hub.errors.error("cluster", f"applying a {event.get('kind')} event failed", exc=exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the bus must never stop for good
                self.hub.errors.error("cluster", "the event bus broke; listening again", exc=exc)
                await asyncio.sleep(1.0)

    async def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "agents":
            for h in event.get("uids") or ():
                with contextlib.suppress(ValueError):
                    self._dirty.add(bytes.fromhex(h))
            self._dirty_event.set()
        elif kind == "configs":
            await self.hub.reload_configs()
        elif kind == "assignments":
            await self.hub.reload_assignments()
        elif kind == "rollout" and self.rollouts is not None:
            self.rollouts.publish(str(event.get("id", "")))

    async def _reload_loop(self) -> None:
        while True:
            await self._dirty_event.wait()
            await asyncio.sleep(RELOAD_BATCH_SECONDS)  # gather what else arrives meanwhile
            self._dirty_event.clear()
            dirty, self._dirty = list(self._dirty), set()
            for i in range(0, len(dirty), 500):
                try:
                    await self.hub.reload_agents(dirty[i : i + 500])
                except Exception as exc:  # noqa: BLE001
                    self._dirty.update(dirty[i:])
                    self.hub.errors.error("cluster", "reading agents another node changed failed", exc=exc)
                    await asyncio.sleep(1.0)
                    self._dirty_event.set()
                    break

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            try:
                await self.sync_heartbeats()
            except Exception as exc:  # noqa: BLE001
                self.hub.errors.error("cluster", "reading other nodes' heartbeats failed", exc=exc)

    async def sync_heartbeats(self) -> int:
        # From the last sync that worked (a heartbeat answered while the database was away is written
        # when it is back, with the time it arrived), with a second of slack for clocks.
        started = time.time()
        rows = await self.store.aquery(
            "SELECT uid, seq, last_seen, online, node, heartbeat_seconds FROM agents WHERE node <> ? AND last_seen > ?",
            (self.node, self._synced_at - 1.0),
        )
        self._synced_at = started
        n = 0
        for r in rows:
            uid = bytes(r["uid"])
            s = self.hub.agents.get(uid)
            if s is None or uid in self.hub.conns:
                continue
            s2 = s.clone()
            s2.seq = u64_from_db(r["seq"])
            s2.last_seen = float(r["last_seen"])
            s2.online = bool(r["online"])
            s2.node = r["node"] or ""
            s2.heartbeat = float(r["heartbeat_seconds"] or 0.0)
            self.hub.agents[uid] = s2
            n += 1
        return n

    async def resync(self) -> None:
        """After the bus was lost: read configs, assignments and every other node's agents again."""
        await self.hub.reload_configs()
        await self.hub.reload_assignments()
        rows = await self.store.aquery("SELECT uid FROM agents WHERE node <> ?", (self.node,))
        uids = [bytes(r["uid"]) for r in rows]
        for i in range(0, len(uids), 500):
            await self.hub.reload_agents(uids[i : i + 500])

