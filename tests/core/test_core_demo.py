"""The embedded demo organisation and its seeded simulator."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from otelcockpit.backends import make_backend
from otelcockpit.backends.base import (
    CHANGE_KINDS,
    COLLECTOR_SET_ENABLED,
    COLLECTOR_SET_REMOTE_ATTRIBUTES,
    PIPELINE_DELETE,
    PIPELINE_SET_ENABLED,
    PIPELINE_UPSERT,
    Change,
    ReadOnlyBackend,
    refuse_if_stale,
)
from otelcockpit.backends.demo import (
    DEFAULT_EPOCH,
    OFFLINE_AFTER,
    TICK_SECONDS,
    DemoBackend,
    load_organisation,
    relative_time,
    scaled_counts,
)
from otelcockpit.errors import ConfigError, PushRefused, ReadOnlyError
from otelcockpit.fleet.model import BackendHealth, CollectorType, ConfigStatus, FleetSnapshot, Health
from otelcockpit.fleet.serialize import collector_json, pipeline_json, revision_json


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = DEFAULT_EPOCH) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def demo(
    seed: int = 7, collectors: int | None = None, clock: Callable[[], datetime] | None = None
) -> DemoBackend:
    return DemoBackend(seed=seed, collectors=collectors, clock=clock or Clock())


def snap(backend: DemoBackend) -> FleetSnapshot:
    # snapshot_now() is what the async snapshot() returns; calling it directly keeps loops fast.
    return backend.snapshot_now()


def test_async_snapshot_is_snapshot_now() -> None:
    backend = demo()
    assert screen(asyncio.run(backend.snapshot())) == screen(snap(backend))


def screen(s: FleetSnapshot) -> list[object]:
    """Everything a screen could show of a snapshot, as plain data."""
    return [
        s.backend,
        s.fetched_at,
        s.stale,
        [collector_json(c, detail=True) for c in s.collectors],
        [pipeline_json(p) for p in s.pipelines],
        {k: [revision_json(r) for r in v] for k, v in s.revisions.items()},
    ]


@pytest.fixture(scope="module")
def default_snapshot() -> FleetSnapshot:
    return snap(demo())


# --- the organisation --------------------------------------------------------------------------


def test_the_demo_org_is_big_and_varied(default_snapshot: FleetSnapshot) -> None:
    cs = default_snapshot.collectors
    assert len(cs) >= 400
    assert len({c.id for c in cs}) == len(cs)  # ids are unique
    assert {c.attr("env") for c in cs} >= {"prod", "staging", "dev"}
    regions = {c.attr("region") for c in cs}
    assert len(regions) >= 3, regions
    platforms = {c.attr("platform") for c in cs}
    assert "kubernetes" in platforms and "vm" in platforms
    assert any(p.startswith("ecs") for p in platforms), platforms
    types = Counter(c.type for c in cs)
    assert types[CollectorType.ALLOY] > 0 and types[CollectorType.OTEL] > 0
    # Every collector carries what the cockpit shows and matches on.
    for c in cs:
        assert c.version and c.attr("env") and c.attr("region") and c.attr("host.arch"), c.id
        assert c.last_seen is not None and c.last_seen <= default_snapshot.fetched_at
        if c.type == CollectorType.ALLOY:
            assert c.attr("collector.os") == "linux" and c.attr("collector.version") == c.version
    # A living fleet: not everything is healthy or applied.
    health = Counter(c.health for c in cs)
    assert health[Health.HEALTHY] > len(cs) // 2
    assert health[Health.OFFLINE] + health[Health.UNHEALTHY] + health[Health.DEGRADED] > 0
    statuses = Counter(c.remote_config.status for c in cs)
    assert statuses[ConfigStatus.APPLIED] > 0


def test_pipelines_have_revisions_and_match_collectors(default_snapshot: FleetSnapshot) -> None:
    s = default_snapshot
    assert s.pipelines
    counts = Counter(name for c in s.collectors for name in c.pipelines)
    for p in s.pipelines:
        revs = s.revisions[p.name]
        assert len(revs) >= 3, f"{p.name} has {len(revs)} revision(s)"
        assert [r.created_at for r in revs] == sorted(r.created_at for r in revs)
        assert revs[-1].snapshot == p  # the current state is the last revision
        assert p.matchers, p.name
        if p.enabled:
            assert counts[p.name] > 0, f"{p.name} matches no demo collector"
    # Applied collectors carry the config their pipelines assemble to.
    for c in s.collectors:
        if c.pipelines:
            assert c.remote_config.hash and c.effective_config
        else:
            assert c.remote_config.status == ConfigStatus.UNSET


def test_the_issue_asks_for_twelve_pipelines_with_sampling(default_snapshot: FleetSnapshot) -> None:
    s = default_snapshot
    assert len(s.pipelines) >= 12, [p.name for p in s.pipelines]
    assert {p.config_type for p in s.pipelines} == {CollectorType.ALLOY, CollectorType.OTEL}
    tail = [p.name for p in s.pipelines if "tail_sampling" in p.contents]
    at_source = [
        p.name for p in s.pipelines if "probabilistic_sampler" in p.contents or "sample_rate" in p.contents
    ]
    assert tail, "no pipeline uses tail sampling"
    assert at_source, "no pipeline samples at the source"


def test_broken_fixture_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text("groups:\n  - prefix: a\n    count: [\n")
    (tmp_path / "pipelines.yaml").write_text("pipelines: []\n")
    with pytest.raises(ConfigError, match=r"fleet\.yaml:\d+"):
        load_organisation(tmp_path)
    (tmp_path / "fleet.yaml").write_text("groups:\n  - prefix: a\n    count: 2\n")
    (tmp_path / "pipelines.yaml").write_text(
        "pipelines:\n  - name: p\n    revisions:\n      - at: -1d\n        operation: insert\n"
        "        matchers: ['env=~\"(\"']\n"
    )
    with pytest.raises(ConfigError, match=r"pipelines\.yaml:4: bad matcher"):
        load_organisation(tmp_path)


def test_relative_times_and_scaling_helpers() -> None:
    assert relative_time("-2h30m", DEFAULT_EPOCH, "x") == DEFAULT_EPOCH - timedelta(hours=2, minutes=30)
    assert relative_time("-3d", DEFAULT_EPOCH, "x") == DEFAULT_EPOCH - timedelta(days=3)
    assert relative_time("2026-01-02T03:04:05Z", DEFAULT_EPOCH, "x").year == 2026
    with pytest.raises(ConfigError, match="bad time"):
        relative_time("yesterday", DEFAULT_EPOCH, "f.yaml:3")
    groups = load_organisation().groups
    for n in (0, 1, 3, 999, 100_000):
        counts = scaled_counts(groups, n)
        assert sum(counts) == n and all(c >= 0 for c in counts)
    assert scaled_counts(groups, None) == [g.count for g in groups]


# --- --demo-collectors and seeds ---------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 7, 400, 2500])
def test_demo_collectors_gives_exactly_n(n: int) -> None:
    s = snap(demo(collectors=n))
    assert len(s.collectors) == n
    assert len({c.id for c in s.collectors}) == n


def test_scaling_is_deterministic_and_grows_without_reshuffling() -> None:
    a = snap(demo(collectors=1000))
    b = snap(demo(collectors=1000))
    assert screen(a) == screen(b)
    small = {c.name: collector_json(c) for c in snap(demo(collectors=300)).collectors}
    big = {c.name: collector_json(c) for c in a.collectors}
    shared = set(small) & set(big)
    assert len(shared) >= 250  # scaling up keeps (almost all) the smaller fleet's collectors
    for name in shared:
        assert small[name]["attributes"] == big[name]["attributes"], name
        assert small[name]["health"] == big[name]["health"], name


def test_same_seed_same_snapshot_different_seed_different(default_snapshot: FleetSnapshot) -> None:
    assert screen(snap(demo(seed=7))) == screen(default_snapshot)
    other = snap(demo(seed=8))
    assert screen(other) != screen(default_snapshot)
    # Same organisation, different draws.
    assert [c.name for c in other.collectors] == [c.name for c in default_snapshot.collectors]
    assert [c.health for c in other.collectors] != [c.health for c in default_snapshot.collectors]


def ticks(clock: Clock, seconds: float, count: int) -> Iterator[int]:
    for i in range(count):
        clock.advance(seconds)
        yield i


def test_simulator_is_deterministic_with_a_fixed_clock_sequence() -> None:
    steps = [0.5, 2, 2, 7, 1, 30, 2, 2, 600, 2, 45]
    runs = []
    for _ in range(2):
        clock = Clock()
        backend = demo(clock=clock)
        seen = [screen(snap(backend))]
        for s in steps:
            clock.advance(s)
            seen.append(screen(snap(backend)))
        runs.append(seen)
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[0][-1]  # and it did move


def test_collectors_go_stale_and_come_back() -> None:
    clock = Clock()
    backend = demo(clock=clock)
    before = {c.id: c.health for c in snap(backend).collectors}
    went_offline: set[str] = set()
    came_back: set[str] = set()
    last_seen_moved = False
    prev = snap(backend)
    # A collector that stops checking in is offline 3 poll intervals later (15 min): 20 min of ticks.
    for _ in ticks(clock, TICK_SECONDS, 600):
        cur = snap(backend)
        for old, new in zip(prev.collectors, cur.collectors, strict=True):
            if old.health != Health.OFFLINE and new.health == Health.OFFLINE:
                went_offline.add(new.id)
            if old.health != Health.HEALTHY and new.health == Health.HEALTHY:
                came_back.add(new.id)
                assert new.last_seen is not None and new.last_seen <= cur.fetched_at
            if new.last_seen != old.last_seen:
                last_seen_moved = True
                assert new.last_seen > old.last_seen
            if new is not old:
                assert new.id == old.id
        prev = cur
    assert went_offline, "no collector went offline in 600 ticks"
    assert came_back, "no collector came back in 600 ticks"
    assert any(before[i] == Health.OFFLINE for i in came_back) or went_offline & came_back
    assert last_seen_moved
    # Unchanged collectors are the very same objects from one snapshot to the next (the TUI diffs by identity).
    a = snap(backend)
    clock.advance(TICK_SECONDS)
    b = snap(backend)
    same = sum(x is y for x, y in zip(a.collectors, b.collectors, strict=True))
    assert same >= len(a.collectors) * 0.9


def test_offline_and_last_seen_agree() -> None:
    """Offline means no check-in for 3 poll intervals: every offline collector was last seen at least
    that long ago, and every other one more recently (it is still checking in)."""
    clock = Clock()
    backend = demo(clock=clock)
    for _ in range(6):
        clock.advance(600)  # 10 minutes at a time, 3 hours of simulated fleet
        s = snap(backend)
        for c in s.collectors:
            silence = (s.fetched_at - c.last_seen).total_seconds()
            if c.health == Health.OFFLINE:
                assert silence >= OFFLINE_AFTER, (c.name, silence)
            else:
                assert silence < OFFLINE_AFTER + TICK_SECONDS, (c.name, c.health, silence)


def test_the_demo_breathes_around_a_steady_state() -> None:
    """Left alone for 3 hours the fleet neither melts nor heals completely: a few percent not healthy,
    incidents (a few collectors of one place with the same error) that start and resolve. Seeded:
    the same run twice gives the same fleet."""
    runs = []
    for _ in range(2):
        clock = Clock()
        backend = demo(clock=clock)
        shares, incidents, resolved = [], set(), set()
        for _ in range(18):
            clock.advance(600)
            s = snap(backend)
            shares.append(sum(1 for c in s.collectors if c.health != Health.HEALTHY) / len(s.collectors))
            inc = backend.sim._incident
            if inc is not None:
                incidents.add(inc[1])
            resolved |= {m for m in incidents if inc is None or inc[1] != m}
        runs.append([(c.id, c.health, c.last_error) for c in snap(backend).collectors])
        assert all(0.02 <= share <= 0.15 for share in shares), shares
        assert len(incidents) >= 2 and resolved, "incidents start and resolve"
    assert runs[0] == runs[1]


# --- pushes ------------------------------------------------------------------------------------


def test_a_push_applies_after_a_delay_and_a_few_fail() -> None:
    clock = Clock()
    backend = demo(clock=clock)
    s0 = snap(backend)
    target = max(s0.pipelines, key=lambda p: sum(p.name in c.pipelines for c in s0.collectors))
    matched = {c.id for c in s0.collectors if target.name in c.pipelines}
    assert len(matched) >= 50
    new = dataclasses.replace(target, contents=target.contents + "\n// tuned by a test\n")
    result = asyncio.run(backend.push(Change(PIPELINE_UPSERT, {"pipeline": new}, author="tester")))
    assert result.ok, result.message
    assert result.revision_id
    s1 = snap(backend)
    by_id = {c.id: c for c in s1.collectors}
    for cid in matched:
        c = by_id[cid]
        assert c.remote_config.status == ConfigStatus.APPLYING, cid
        assert c.remote_config.hash != {x.id: x for x in s0.collectors}[cid].remote_config.hash
    # Collectors the pipeline does not reach are untouched.
    for old in s0.collectors:
        if old.id not in matched:
            assert by_id[old.id].remote_config == old.remote_config
    revs = asyncio.run(backend.revisions(target.name))
    assert (
        revs[-1].id == result.revision_id
        and revs[-1].author == "tester"
        and revs[-1].snapshot == s1.pipeline(target.name)
    )
    assert revs[-2].snapshot == target  # the rollback target is the previous revision
    # After the longest delay (16 s of clock time) every matched collector has an answer.
    clock.advance(20)
    s2 = snap(backend)
    final = Counter(c.remote_config.status for c in s2.collectors if c.id in matched)
    assert final[ConfigStatus.APPLYING] == 0
    assert final[ConfigStatus.FAILED] >= 1, final
    assert final[ConfigStatus.APPLIED] > 0.8 * len(matched), final
    for c in s2.collectors:
        if c.id in matched and c.remote_config.status == ConfigStatus.FAILED:
            assert c.remote_config.error


def test_applying_takes_clock_time() -> None:
    clock = Clock()
    backend = demo(clock=clock)
    s0 = snap(backend)
    target = s0.pipelines[0]
    asyncio.run(
        backend.push(Change(PIPELINE_UPSERT, {"pipeline": dataclasses.replace(target, contents="x")}))
    )
    history = []
    for _ in ticks(clock, TICK_SECONDS, 9):
        history.append(
            Counter(c.remote_config.status for c in snap(backend).collectors if target.name in c.pipelines)
        )
    applying = [h[ConfigStatus.APPLYING] for h in history]
    assert applying[0] > 0  # not instant
    assert applying == sorted(applying, reverse=True)  # drains monotonically
    assert applying[-1] == 0


def test_pushes_are_refused_when_the_data_is_stale() -> None:
    refuse_if_stale(snap(demo()))  # fresh: no error
    with pytest.raises(PushRefused, match="no data"):
        refuse_if_stale(None)
    backend = demo()
    fresh = snap(backend)
    stale = fresh.as_stale("fleet-management unreachable for 2m", BackendHealth(False, "down", "timeout"))
    with pytest.raises(PushRefused, match="stale .*unreachable"):
        refuse_if_stale(stale)
    backend._last = stale  # what the backend last showed: a stale fleet
    p = fresh.pipelines[0]
    with pytest.raises(PushRefused):
        asyncio.run(backend.push(Change(PIPELINE_UPSERT, {"pipeline": dataclasses.replace(p, contents="y")})))
    assert len(asyncio.run(backend.revisions(p.name))) == len(fresh.revisions[p.name])  # nothing recorded


def changes_of_every_kind(s: FleetSnapshot) -> list[Change]:
    p = s.pipelines[0]
    ids = [s.collectors[0].id]
    out = [
        Change(PIPELINE_UPSERT, {"pipeline": dataclasses.replace(p, contents="z")}),
        Change(PIPELINE_SET_ENABLED, {"name": p.name, "enabled": False}),
        Change(COLLECTOR_SET_ENABLED, {"ids": ids, "enabled": False}),
        Change(COLLECTOR_SET_REMOTE_ATTRIBUTES, {"ids": ids, "set": {"rollout": "wave-1"}, "remove": []}),
        Change(PIPELINE_DELETE, {"name": p.name}),
    ]
    assert sorted(c.kind for c in out) == sorted(CHANGE_KINDS)  # every kind there is
    return out


def test_read_only_backend_refuses_every_change_kind() -> None:
    inner = demo()
    ro = ReadOnlyBackend(inner)
    before = screen(snap(inner))
    assert "push" not in ro.capabilities and "read-only" in ro.capabilities
    for change in changes_of_every_kind(snap(inner)):
        with pytest.raises(ReadOnlyError, match="read-only"):
            asyncio.run(ro.push(change))
    assert screen(asyncio.run(ro.snapshot())) == before  # reads still work, nothing changed
    assert asyncio.run(ro.revisions(snap(inner).pipelines[0].name))


def test_every_change_kind_works_on_the_demo() -> None:
    backend = demo()
    for change in changes_of_every_kind(snap(backend)):
        result = asyncio.run(backend.push(change))
        assert result.ok, (change.kind, result.message)
    s = snap(backend)
    c = s.collectors[0]
    assert not c.enabled and c.remote_attributes.get("rollout") == "wave-1"
    bad = asyncio.run(
        backend.push(Change(COLLECTOR_SET_REMOTE_ATTRIBUTES, {"ids": [c.id], "set": {"collector.os": "x"}}))
    )
    assert not bad.ok and "reserved" in bad.message
    missing = asyncio.run(backend.push(Change(PIPELINE_DELETE, {"name": "no-such-pipeline"})))
    assert not missing.ok
    p = dataclasses.replace(s.pipelines[0], matchers=('env=~"("',))
    refused = asyncio.run(backend.push(Change(PIPELINE_UPSERT, {"pipeline": p})))
    assert not refused.ok and "bad matcher" in refused.message
    assert snap(backend).pipeline(p.name) == s.pipeline(p.name)  # nothing changed


def test_make_backend_wraps_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from otelcockpit import settings

    monkeypatch.setenv("OTELCOCKPIT_CONFIG", str(tmp_path / "config.yaml"))
    ro = make_backend(settings.resolve(read_only=True, demo_collectors=10))
    assert isinstance(ro, ReadOnlyBackend)
    assert len(asyncio.run(ro.snapshot()).collectors) == 10
    rw = make_backend(settings.resolve(demo_collectors=10))
    assert isinstance(rw, DemoBackend) and "push" in rw.capabilities


def test_every_collector_has_its_own_rollback_target() -> None:
    """The simulated fleet applied every revision of its history: a collector's own rollback target is
    the config its pipelines assembled before the newest revision among them; after a push, the config
    it ran before the push."""
    from otelcockpit.backends.demo import assemble_config, config_hash

    clock = Clock()
    backend = demo(clock=clock)
    s0 = snap(backend)
    targets = backend.collector_targets(s0.collectors)
    node = next(c for c in s0.collectors if c.name == "alloy-prod-euw1-node-001")
    t = targets[node.id]
    # linux_host_metrics is the newest revision among its pipelines (1003, 2 h ago): back to 1002.
    assert t.label == "linux_host_metrics rev 1002" and t.hash != node.remote_config.hash
    revs = s0.revisions["linux_host_metrics"]
    parts = [revs[-2].snapshot if n == "linux_host_metrics" else s0.pipeline(n) for n in node.pipelines]
    assert t.hash == config_hash(assemble_config(parts, node.type))
    assert all(targets.get(c.id) is None for c in s0.collectors if not c.pipelines)
    # A push moves the collectors it reaches: their target is the config they ran just before.
    target = s0.pipeline(node.pipelines[0])
    new = dataclasses.replace(target, contents=target.contents + "\n// tuned by a test\n")
    assert asyncio.run(backend.push(Change(PIPELINE_UPSERT, {"pipeline": new}, author="tester"))).ok
    clock.advance(20)
    s1 = snap(backend)
    after = backend.collector_targets(s1.collectors)
    moved = [c for c in s0.collectors if target.name in c.pipelines and c.remote_config.status == ConfigStatus.APPLIED]
    assert moved
    for c in moved:
        assert after[c.id].hash == c.remote_config.hash and after[c.id].label == "before the last push"
