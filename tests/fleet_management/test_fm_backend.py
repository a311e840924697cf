"""The Fleet Management backend against the fake (real HTTP on loopback), and the fake's GetConfig."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from otelcockpit.backends.base import (
    COLLECTOR_SET_ENABLED,
    COLLECTOR_SET_REMOTE_ATTRIBUTES,
    PIPELINE_DELETE,
    PIPELINE_SET_ENABLED,
    PIPELINE_UPSERT,
    Change,
)
from otelcockpit.backends.fleet_management import FleetManagementBackend, Unavailable
from otelcockpit.backends.fleet_management.backend import NO_HEALTH
from otelcockpit.errors import PushRefused
from otelcockpit.fleet.matching import PipelineMatcher
from otelcockpit.fleet.model import CollectorType, Health, Operation, Pipeline
from otelcockpit.fm_fake.simulate import CollectorSimulation, identities_from_state

C = "collector.v1.CollectorService"
DECLARE = re.compile(r'^declare "([^"]+)" \{$', re.M)
OTEL_PIPELINE = re.compile(r"^# pipeline: (.+)$", re.M)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def backend_for(url: str, h, clock=None, **kw) -> FleetManagementBackend:
    return FleetManagementBackend(h.make_client(url), clock=clock or Clock(), **kw)


def assembled_names(content: str) -> set[str]:
    return set(DECLARE.findall(content)) | set(OTEL_PIPELINE.findall(content))


def test_snapshot_maps_the_fleet(demo_fake, h):
    async def go():
        b = backend_for(demo_fake.url, h)
        try:
            return await b.snapshot()
        finally:
            await b.close()

    snap = h.run(go())
    state = demo_fake.state
    assert len(snap.collectors) == len(state.collectors) and len(snap.pipelines) == len(state.pipelines)
    assert snap.backend == "fleet-management" and not snap.stale and snap.health.ok
    inactive = {cid for cid, c in state.collectors.items() if "markedInactiveAt" in c}
    assert inactive, "the demo fleet has collectors marked inactive"
    for c in snap.collectors:
        if c.id in inactive:
            assert c.health == Health.OFFLINE and "marked inactive" in c.health_reason
        else:
            assert c.health == Health.UNKNOWN and c.health_reason == NO_HEALTH
        assert c.last_seen is None  # never invented
    types = {c.type for c in snap.collectors}
    assert types == {CollectorType.ALLOY, CollectorType.OTEL}
    assert {p.config_type for p in snap.pipelines} == {CollectorType.ALLOY, CollectorType.OTEL}
    # type-aware: an Alloy collector never gets an OTel pipeline, and the other way round
    by_name = {p.name: p for p in snap.pipelines}
    for c in snap.collectors:
        assert all(by_name[n].config_type == c.type and by_name[n].enabled for n in c.pipelines)


def test_cross_check_engine_against_the_fakes_getconfig(demo_fake, h):
    """For every demo collector: the pipelines our engine says match are exactly those GetConfig assembles."""

    async def go():
        b = backend_for(demo_fake.url, h)
        try:
            snap = await b.snapshot()
        finally:
            await b.close()
        auth = (h.creds.instance_id, h.creds.read_token)
        async with httpx.AsyncClient(auth=auth, timeout=10) as http:
            sem = asyncio.Semaphore(16)

            async def get_config(cid: str) -> tuple[str, set[str]]:
                async with sem:
                    r = await http.post(f"{demo_fake.url}/{C}/GetConfig", json={"id": cid})
                    r.raise_for_status()
                    return cid, assembled_names(r.json().get("content", ""))

            served = dict(await asyncio.gather(*(get_config(c.id) for c in snap.collectors)))
        return snap, served

    snap, served = h.run(go())
    assert len(served) == len(snap.collectors) > 100
    mismatched = [c.id for c in snap.collectors if set(c.pipelines) != served[c.id]]
    assert mismatched == []
    assert sum(1 for c in snap.collectors if c.pipelines) > 100  # not trivially empty
    # disabled pipelines exist in the demo and reach nobody on either side
    disabled = {p.name for p in snap.pipelines if not p.enabled}
    assert disabled and not any(disabled & v for v in served.values())


def test_cross_check_holds_after_changes(demo_fake, h):
    """Disable a collector, change remote attributes, add an empty-matcher pipeline: still in agreement."""

    async def go():
        b = backend_for(demo_fake.url, h)
        try:
            snap = await b.snapshot()
            alloy = [c for c in snap.collectors if c.type == CollectorType.ALLOY][:3]
            await b.push(Change(COLLECTOR_SET_ENABLED, {"ids": [alloy[0].id], "enabled": False}))
            await b.push(
                Change(COLLECTOR_SET_REMOTE_ATTRIBUTES, {"ids": [alloy[1].id], "set": {"role": "gateway"}})
            )
            await b.push(
                Change(
                    PIPELINE_UPSERT,
                    {"pipeline": Pipeline("everyone", "logging {}\n", (), True, CollectorType.ALLOY)},
                )
            )
            snap = await b.snapshot()
        finally:
            await b.close()
        out = {}
        async with httpx.AsyncClient(auth=(h.creds.instance_id, h.creds.read_token)) as http:
            for c in alloy:
                r = await http.post(f"{demo_fake.url}/{C}/GetConfig", json={"id": c.id})
                out[c.id] = assembled_names(r.json().get("content", ""))
        return [snap.collector(c.id) for c in alloy], out

    cols, served = h.run(go())
    assert not cols[0].enabled and cols[0].pipelines == () and served[cols[0].id] == set()
    assert cols[1].remote_attributes["role"] == "gateway"
    for c in cols:
        assert set(c.pipelines) == served[c.id]
    assert "everyone" in cols[2].pipelines


def test_getconfig_hash_not_modified_and_lifecycle(empty_fake, h):
    url = empty_fake.url
    auth = (h.creds.instance_id, h.creds.read_token)
    write = (h.creds.instance_id, h.creds.write_token)
    post = lambda method, body, a=auth: httpx.post(f"{url}/{method}", json=body, auth=a)  # noqa: E731

    assert (
        post(
            f"{C}/RegisterCollector", {"id": "a", "localAttributes": {"env": "prod"}, "name": "A"}
        ).status_code
        == 200
    )
    first = post(f"{C}/GetConfig", {"id": "a"}).json()
    assert "content" not in first and first["hash"]  # nothing matches yet
    r = post(
        "pipeline.v1.PipelineService/UpsertPipeline",
        {"pipeline": {"name": "p", "contents": "x {}\n", "matchers": ['env="prod"']}},
        write,
    )
    assert r.status_code == 200
    second = post(f"{C}/GetConfig", {"id": "a", "hash": first["hash"]}).json()
    assert second["hash"] != first["hash"] and 'declare "p"' in second["content"]
    again = post(
        f"{C}/GetConfig",
        {"id": "a", "hash": second["hash"], "remoteConfigStatus": {"status": "RemoteConfigStatuses_APPLIED"}},
    ).json()
    assert again == {"hash": second["hash"], "notModified": True}
    assert empty_fake.state.agents["a"].status == "RemoteConfigStatuses_APPLIED"
    # a disabled collector receives an empty configuration
    post(f"{C}/UpdateCollector", {"collector": {"id": "a", "enabled": False}}, write)
    disabled = post(f"{C}/GetConfig", {"id": "a", "hash": second["hash"]}).json()
    assert "content" not in disabled and disabled["hash"] != second["hash"]
    # unregister marks inactive, registering again reactivates
    post(f"{C}/UnregisterCollector", {"id": "a"})
    assert "markedInactiveAt" in post(f"{C}/GetCollector", {"id": "a"}).json()
    post(f"{C}/RegisterCollector", {"id": "a", "localAttributes": {"env": "prod"}})
    assert "markedInactiveAt" not in post(f"{C}/GetCollector", {"id": "a"}).json()
    # collector-facing RPCs accept the read credential; a wrong one is refused
    assert post(f"{C}/GetConfig", {"id": "a"}, (h.creds.instance_id, "nope")).status_code == 401


def test_revisions_are_loaded_on_demand(demo_fake, h):
    async def go():
        b = backend_for(demo_fake.url, h)
        try:
            snap = await b.snapshot()
            name = snap.pipelines[0].name
            revs = await b.revisions(name)
            await b.push(Change(PIPELINE_DELETE, {"name": name}))
            after = await b.revisions(name)  # deleted: found through ListPipelinesRevisions
            return snap, name, revs, after
        finally:
            await b.close()

    snap, name, revs, after = h.run(go())
    assert snap.revisions == {}  # not in the snapshot: loaded when a pipeline is opened
    assert revs and revs[0].operation == Operation.INSERT and all(r.pipeline == name for r in revs)
    assert [r.created_at for r in revs] == sorted(r.created_at for r in revs)
    assert after[-1].operation == Operation.DELETE and len(after) == len(revs) + 1


def test_push_every_change_kind(empty_fake, h):
    for cid in ("a", "b"):
        httpx.post(
            f"{empty_fake.url}/{C}/RegisterCollector",
            json={"id": cid, "localAttributes": {"env": "prod", "collector.os": "linux"}},
            auth=(h.creds.instance_id, h.creds.read_token),
        )

    async def go():
        b = backend_for(empty_fake.url, h)
        try:
            await b.snapshot()
            p = Pipeline(
                "metrics",
                'prometheus.exporter.self "x" { }\n',
                ('env="prod"',),
                True,
                CollectorType.ALLOY,
                source="git:team",
            )
            results = [await b.push(Change(PIPELINE_UPSERT, {"pipeline": p}))]
            results.append(await b.push(Change(PIPELINE_SET_ENABLED, {"name": "metrics", "enabled": False})))
            results.append(await b.push(Change(COLLECTOR_SET_ENABLED, {"ids": ["a"], "enabled": False})))
            results.append(
                await b.push(
                    Change(
                        COLLECTOR_SET_REMOTE_ATTRIBUTES,
                        {"ids": ["a", "b"], "set": {"ring": "canary"}, "remove": ["old"]},
                    )
                )
            )
            mid = await b.snapshot()
            results.append(await b.push(Change(PIPELINE_DELETE, {"name": "metrics"})))
            missing = await b.push(Change(COLLECTOR_SET_ENABLED, {"ids": ["ghost"], "enabled": True}))
            reserved = await b.push(
                Change(COLLECTOR_SET_REMOTE_ATTRIBUTES, {"ids": ["a"], "set": {"collector.os": "x"}})
            )
            revs = await b.revisions("metrics")
            return results, mid, missing, reserved, revs, await b.snapshot()
        finally:
            await b.close()

    results, mid, missing, reserved, revs, end = h.run(go())
    assert not reserved.ok and "reserved" in reserved.message
    assert all(r.ok for r in results), [r.message for r in results]
    assert [r.revision_id for r in (results[0], results[1], results[4])] == [rv.id for rv in revs]
    assert [rv.operation for rv in revs] == [Operation.INSERT, Operation.UPDATE, Operation.DELETE]
    assert revs[0].snapshot.source == "git:team"
    p = mid.pipeline("metrics")
    assert p is not None and not p.enabled
    a, bb = mid.collector("a"), mid.collector("b")
    assert not a.enabled and bb.enabled
    assert a.remote_attributes == {"ring": "canary"} == bb.remote_attributes
    assert not missing.ok and "ghost" in missing.message
    assert end.pipeline("metrics") is None


def test_api_down_keeps_a_stale_snapshot_and_refuses_pushes(start_fake, demo_state_factory, h):
    fake = start_fake(demo_state_factory())
    port = int(fake.url.rsplit(":", 1)[1])
    clock = Clock()

    async def go():
        b = backend_for(fake.url, h, clock=clock, backoff_base=10.0)
        try:
            fresh = await b.snapshot()
            fake.stop()
            clock.now += timedelta(seconds=90)
            stale = await b.snapshot()
            with pytest.raises(PushRefused) as refused:
                await b.push(
                    Change(PIPELINE_SET_ENABLED, {"name": fresh.pipelines[0].name, "enabled": False})
                )
            # within the backoff window the backend does not even ask
            clock.now += timedelta(seconds=5)
            again = await b.snapshot()
            # the API comes back: fresh data after the backoff, pushes allowed again
            start_fake(demo_state_factory(), port=port)
            clock.now += timedelta(seconds=10)
            back = await b.snapshot()
            ok = await b.push(
                Change(PIPELINE_SET_ENABLED, {"name": fresh.pipelines[0].name, "enabled": False})
            )
            return fresh, stale, refused.value, again, back, ok
        finally:
            await b.close()

    fresh, stale, refused, again, back, ok = h.run(go())
    assert stale.stale and stale.collectors == fresh.collectors and stale.fetched_at == fresh.fetched_at
    assert stale.stale_reason.startswith("unavailable:") and "1m old" in stale.stale_reason
    assert not stale.health.ok and stale.health.status == "down"
    assert "stale" in refused.message
    assert again.stale and "next try in 5s" in again.stale_reason
    assert not back.stale and back.fetched_at > fresh.fetched_at
    assert ok.ok


def test_first_failure_without_data_is_an_error(h):
    async def go():
        b = backend_for("http://127.0.0.1:9", h)
        try:
            with pytest.raises(Unavailable) as exc:
                await b.snapshot()
            return exc.value
        finally:
            await b.close()

    assert "http://127.0.0.1:9" in h.run(go()).message


def test_attributes_hook(demo_fake, h):
    async def go():
        b = backend_for(demo_fake.url, h)
        try:
            return await b.attributes()
        finally:
            await b.close()

    attrs = h.run(go())
    assert "prod" in attrs["local"]["env"] and "platform" in attrs["remote"]["owner"]


def test_engine_agrees_with_itself_on_the_matcher_module(demo_fake, h):
    """The backend's per-collector pipelines are PipelineMatcher's answer (no second rule hidden in it)."""

    async def go():
        b = backend_for(demo_fake.url, h)
        try:
            return await b.snapshot()
        finally:
            await b.close()

    snap = h.run(go())
    pm = PipelineMatcher(snap.pipelines)
    assert all(pm.names_for(c) == c.pipelines for c in snap.collectors)


def test_simulated_collectors_poll_and_report(demo_fake, h):
    ids = identities_from_state(demo_fake.state.collectors, 6)
    assert len(ids) == 6 and all(not i.id.startswith("sim-") for i in ids)
    sim = CollectorSimulation(
        demo_fake.url,
        (h.creds.instance_id, h.creds.read_token),
        ids,
        seed=3,
        poll_seconds=0.3,
        fail_percent=50,
        away_percent=0,
    )

    async def go():
        task = asyncio.create_task(sim.run())
        final = {"RemoteConfigStatuses_APPLIED", "RemoteConfigStatuses_FAILED"}
        agents = demo_fake.state.agents
        end = time.monotonic() + 10  # usually done in about 1.5 s
        while not (
            all(i.id in agents and agents[i.id].status in final for i in ids) and sim.stats.counts["GetConfig"] >= 12
        ):
            assert time.monotonic() < end, f"the simulated collectors never all reported (calls {sim.stats.counts})"
            await asyncio.sleep(0.1)
        sim.stop()
        await asyncio.wait_for(task, 5)

    h.run(go())
    agents = demo_fake.state.agents
    assert {i.id for i in ids} <= set(agents)
    statuses = {agents[i.id].status for i in ids}
    assert statuses <= {"RemoteConfigStatuses_APPLIED", "RemoteConfigStatuses_FAILED"}
    assert sim.stats.counts["GetConfig"] >= 12
    applied = [agents[i.id] for i in ids if agents[i.id].status == "RemoteConfigStatuses_APPLIED"]
    assert all(a.effective_config.get("", "").startswith("declare") for a in applied)
    extra = identities_from_state(demo_fake.state.collectors, len(demo_fake.state.collectors) + 2)
    assert [i.id for i in extra[-2:]] == [f"sim-alloy-{len(extra) - 1:04d}", f"sim-alloy-{len(extra):04d}"]
