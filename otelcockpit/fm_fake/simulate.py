"""Simulated collectors: N Alloy-like clients polling the fake's GetConfig over real HTTP.

Each one behaves like Alloy's ``remotecfg`` (research §3.4, §5): RegisterCollector, then
GetConfig every poll interval (with a little jitter) sending back the last hash; on a new
configuration it reports APPLYING, then APPLIED or FAILED (a few fail, decided by the seed and
the config hash) with an immediate extra GetConfig to report the status and effective config.
Now and then one shuts down (UnregisterCollector) and comes back a few polls later, so the
fleet's ``markedInactiveAt`` moves. Everything random comes from the seed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx

COLLECTOR = "collector.v1.CollectorService"
FAIL_MESSAGES = (
    'loading config: 3:5: unrecognized attribute name "scrape_intervall"',
    'component "prometheus.remote_write.grafana_cloud" failed to start: 401 Unauthorized',
    "Config apply timeout exceeded",
)


def _roll(*parts: object) -> int:
    return int.from_bytes(
        hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big"
    )


@dataclass(frozen=True)
class SimulatedIdentity:
    id: str
    name: str
    local_attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass
class SimulationStats:
    counts: Counter[str] = field(default_factory=Counter)


class CollectorSimulation:
    def __init__(
        self,
        base_url: str,
        auth: tuple[str, str],
        identities: Sequence[SimulatedIdentity],
        *,
        seed: int = 7,
        poll_seconds: float = 10.0,
        fail_percent: int = 5,
        away_percent: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.identities = list(identities)
        self.seed = seed
        self.poll_seconds = poll_seconds
        self.fail_percent = fail_percent
        self.away_percent = away_percent
        self.stats = SimulationStats()
        self.stop_event = asyncio.Event()

    async def _call(self, client: httpx.AsyncClient, method: str, body: dict) -> dict | None:
        try:
            r = await client.post(f"{self.base_url}/{COLLECTOR}/{method}", json=body)
        except httpx.HTTPError:
            self.stats.counts["transport_errors"] += 1
            return None
        if r.status_code != 200:
            self.stats.counts[f"http_{r.status_code}"] += 1
            return None
        self.stats.counts[method] += 1
        return r.json()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; False when the simulation is stopping."""
        try:
            await asyncio.wait_for(self.stop_event.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    async def _one(self, client: httpx.AsyncClient, ident: SimulatedIdentity, index: int) -> None:
        rng = random.Random(_roll(self.seed, ident.id))
        # Spread the first polls over one interval, like a fleet that started at different times.
        if not await self._sleep(rng.random() * self.poll_seconds):
            return
        await self._call(
            client,
            "RegisterCollector",
            {"id": ident.id, "localAttributes": dict(ident.local_attributes), "name": ident.name},
        )
        last_hash = ""
        status: dict | None = None
        effective: dict | None = None
        away = 0
        while not self.stop_event.is_set():
            if away:
                away -= 1
                if away == 0:
                    await self._call(
                        client,
                        "RegisterCollector",
                        {"id": ident.id, "localAttributes": dict(ident.local_attributes), "name": ident.name},
                    )
                    self.stats.counts["returned"] += 1
            else:
                body: dict = {
                    "id": ident.id,
                    "localAttributes": dict(ident.local_attributes),
                    "hash": last_hash,
                }
                if status is not None:
                    body["remoteConfigStatus"] = status
                if effective is not None:
                    body["effectiveConfig"] = effective
                status = effective = None
                answer = await self._call(client, "GetConfig", body)
                if (
                    answer is not None
                    and not answer.get("notModified")
                    and answer.get("hash", "") != last_hash
                ):
                    new_hash = answer.get("hash", "")
                    content = answer.get("content", "")
                    # Report APPLYING straight away, then the outcome after a short "load".
                    await self._call(
                        client,
                        "GetConfig",
                        {
                            "id": ident.id,
                            "hash": new_hash,
                            "remoteConfigStatus": {"status": "RemoteConfigStatuses_APPLYING"},
                        },
                    )
                    if not await self._sleep(0.2 + rng.random()):
                        return
                    if _roll(self.seed, ident.id, new_hash) % 100 < self.fail_percent:
                        msg = FAIL_MESSAGES[_roll(ident.id, new_hash) % len(FAIL_MESSAGES)]
                        final = {"status": "RemoteConfigStatuses_FAILED", "errorMessage": msg}
                        self.stats.counts["failed"] += 1
                    else:
                        final = {"status": "RemoteConfigStatuses_APPLIED"}
                        self.stats.counts["applied"] += 1
                        encoded = base64.b64encode(content.encode()).decode()
                        effective = {
                            "configMap": {"configMap": {"": {"body": encoded, "contentType": "text/plain"}}}
                        }
                    last_hash = new_hash
                    await self._call(
                        client,
                        "GetConfig",
                        {
                            "id": ident.id,
                            "hash": last_hash,
                            "remoteConfigStatus": final,
                            **({"effectiveConfig": effective} if effective else {}),
                        },
                    )
                    effective = None
                if rng.random() * 100 < self.away_percent:
                    await self._call(client, "UnregisterCollector", {"id": ident.id})
                    self.stats.counts["went_away"] += 1
                    away = 2 + rng.randrange(4)
            if not await self._sleep(self.poll_seconds * (0.9 + 0.2 * rng.random())):
                return

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(auth=self.auth, timeout=10.0, limits=limits) as client:
            await asyncio.gather(*(self._one(client, ident, i) for i, ident in enumerate(self.identities)))

    def stop(self) -> None:
        self.stop_event.set()


def identities_from_state(collectors: Mapping[str, Mapping], count: int) -> list[SimulatedIdentity]:
    """The first ``count`` collectors of the fleet (Alloy first: they are the ones that poll GetConfig),
    then new ``sim-alloy-NNNN`` collectors when more are asked for than the fleet has."""
    ordered = sorted(
        collectors.values(),
        key=lambda c: (c.get("collectorType") == "COLLECTOR_TYPE_OTEL", c["id"]),
    )
    out = [
        SimulatedIdentity(c["id"], c.get("name", c["id"]), dict(c.get("localAttributes") or {}))
        for c in ordered[:count]
    ]
    for i in range(len(out), count):
        cid = f"sim-alloy-{i + 1:04d}"
        out.append(
            SimulatedIdentity(
                cid,
                cid,
                {
                    "collector.os": "linux",
                    "collector.version": "v1.12.2",
                    "env": "dev",
                    "role": "node-agent",
                    "platform": "vm",
                },
            )
        )
    return out
