"""The fleet model: merged attributes, which pipelines reach which collectors, summaries, JSON."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otelcockpit.backends.demo import DEFAULT_EPOCH, DemoSimulator, load_organisation
from otelcockpit.fleet.matchers import compile_matchers, matches
from otelcockpit.fleet.matching import PipelineMatcher, with_matched_pipelines
from otelcockpit.fleet.model import (
    BackendHealth,
    Collector,
    CollectorType,
    ConfigStatus,
    FleetSnapshot,
    Health,
    Pipeline,
    RemoteConfig,
    age_text,
    merge_attributes,
    parse_time,
    rfc3339,
)
from otelcockpit.fleet.serialize import collector_json, snapshot_header
from otelcockpit.fleet.summary import group_by, totals


def collector(cid: str = "c1", ctype: CollectorType = CollectorType.ALLOY, **kw: object) -> Collector:
    return Collector(id=cid, name=cid, type=ctype, **kw)  # type: ignore[arg-type]


# --- merged attributes ------------------------------------------------------------------------


def test_remote_wins_except_collector_keys() -> None:
    local = {"env": "dev", "collector.os": "linux", "collector.version": "v1.12.0", "cluster": "dev"}
    remote = {"env": "PROD", "owner": "TEAM-A", "collector.os": "windows", "collector.version": "v0"}
    merged = merge_attributes("host-a", local, remote)
    assert merged == {
        "env": "PROD",
        "owner": "TEAM-A",
        "cluster": "dev",
        "collector.os": "linux",
        "collector.version": "v1.12.0",
        "collector.ID": "host-a",
    }
    # The inputs are left alone.
    assert local["env"] == "dev" and "collector.ID" not in local


def test_collector_id_is_virtual_and_cannot_be_overridden() -> None:
    merged = merge_attributes("real-id", {"collector.ID": "local-lie"}, {"collector.ID": "remote-lie"})
    assert merged["collector.ID"] == "real-id"
    c = collector("real-id", local_attributes={"collector.ID": "x"}, remote_attributes={"collector.ID": "y"})
    assert c.attr("collector.ID") == "real-id"
    assert c.attributes["collector.ID"] == "real-id"
    # A matcher on collector.ID sees the id.
    assert matches(compile_matchers(('collector.ID="real-id"',)), c.attributes)


def test_missing_attribute_reads_empty() -> None:
    c = collector(local_attributes={"env": "prod"})
    assert c.attr("nope") == ""
    assert c.attr("collector.nope") == ""


attr_keys = st.one_of(
    st.sampled_from(["env", "region", "collector.os", "collector.version", "collector.ID", "owner", ""]),
    st.text(max_size=8),
    st.text(max_size=6).map(lambda s: "collector." + s),
)
attr_maps = st.dictionaries(attr_keys, st.text(max_size=6), max_size=8)


@given(st.text(min_size=1, max_size=10), attr_maps, attr_maps, st.lists(attr_keys, max_size=6))
def test_attr_agrees_with_attributes(
    cid: str, local: dict[str, str], remote: dict[str, str], extra: list[str]
) -> None:
    c = collector(cid, local_attributes=MappingProxyType(local), remote_attributes=MappingProxyType(remote))
    merged = c.attributes
    assert merged == merge_attributes(cid, local, remote)
    for key in {*merged, *local, *remote, *extra, "collector.ID"}:
        assert c.attr(key) == merged.get(key, ""), key


# --- which pipelines reach which collectors -----------------------------------------------------


def pipeline(
    name: str, matchers: tuple[str, ...], ctype: CollectorType = CollectorType.ALLOY, **kw: object
) -> Pipeline:
    return Pipeline(name=name, contents="", matchers=matchers, config_type=ctype, **kw)  # type: ignore[arg-type]


def test_pipelines_are_type_aware() -> None:
    alloy_p = pipeline("alloy_linux", ('collector.os="linux"',), CollectorType.ALLOY)
    otel_p = pipeline("otel_all", ('env=~".*"',), CollectorType.OTEL)
    a = collector("a", CollectorType.ALLOY, local_attributes={"collector.os": "linux", "env": "prod"})
    o = collector("o", CollectorType.OTEL, local_attributes={"collector.os": "linux", "env": "prod"})
    pm = PipelineMatcher([alloy_p, otel_p])
    assert pm.names_for(a) == ("alloy_linux",)
    assert pm.names_for(o) == ("otel_all",)  # the alloy pipeline matches its attributes, not its type
    assert pm.collectors_for(alloy_p, [a, o]) == [a]
    assert pm.collectors_for(otel_p, [a, o]) == [o]


def test_disabled_pipelines_and_collectors_match_nothing() -> None:
    on = pipeline("on", ('env="prod"',))
    off = pipeline("off", ('env="prod"',), enabled=False)
    c = collector(local_attributes={"env": "prod"})
    disabled = dataclasses.replace(c, enabled=False)
    pm = PipelineMatcher([on, off])
    assert pm.names_for(c) == ("on",)
    assert pm.names_for(disabled) == ()
    assert pm.collectors_for(on, [c, disabled]) == [c]
    assert pm.collectors_for(off, [c, disabled]) == []  # a disabled pipeline reaches nobody
    assert pm.names_for(dataclasses.replace(disabled, enabled=True)) == ("on",)


def test_an_unreadable_pipeline_matches_nothing_and_says_why() -> None:
    # Matchers a backend accepted but this parser cannot read must not crash the cockpit.
    good = pipeline("good", ('env="prod"',))
    bad = pipeline("bad", ('env=~"\\z"',))  # RE2's end-of-text; Python's re has no \z
    c = collector(local_attributes={"env": "prod"})
    pm = PipelineMatcher([good, bad])
    assert pm.names_for(c) == ("good",)
    assert pm.collectors_for(bad, [c]) == []
    assert set(pm.errors) == {"bad"} and "bad matcher" in pm.errors["bad"]


def test_matches_use_merged_attributes() -> None:
    p = pipeline("prod", ('env="prod"', 'collector.os="linux"'))
    # remote env wins; a remote collector.os cannot make it match.
    c1 = collector(
        "c1", local_attributes={"env": "dev", "collector.os": "linux"}, remote_attributes={"env": "prod"}
    )
    c2 = collector(
        "c2",
        local_attributes={"env": "prod", "collector.os": "windows"},
        remote_attributes={"collector.os": "linux"},
    )
    pm = PipelineMatcher([p])
    assert pm.names_for(c1) == ("prod",)
    assert pm.names_for(c2) == ()


def test_names_are_sorted_and_with_matched_pipelines_keeps_identity() -> None:
    ps = [pipeline("zeta", ()), pipeline("alpha", ()), pipeline("mid", ('env="prod"',))]
    c = collector(local_attributes={"env": "prod"}, pipelines=("alpha", "mid", "zeta"))
    d = collector("d", local_attributes={"env": "dev"})
    out = with_matched_pipelines([c, d], ps)
    assert out[0] is c  # unchanged: the very same object
    assert out[1].pipelines == ("alpha", "zeta")


def uncached_names(c: Collector, pipelines: list[Pipeline]) -> tuple[str, ...]:
    if not c.enabled:
        return ()
    attrs = c.attributes
    return tuple(
        p.name
        for p in sorted(pipelines, key=lambda p: p.name)
        if p.enabled and p.config_type == c.type and matches(compile_matchers(tuple(p.matchers)), attrs)
    )


@pytest.fixture(scope="module")
def demo_sim() -> DemoSimulator:
    return DemoSimulator(load_organisation(epoch=DEFAULT_EPOCH), seed=7)


def test_cache_never_changes_an_answer(demo_sim: DemoSimulator) -> None:
    pipelines = list(demo_sim.pipelines.values())
    # Extra pipelines that read attributes the demo pipelines do not, and a disabled one.
    pipelines += [
        pipeline("by_id", ('collector.ID=~"alloy-prod-euw1-node-00[1-5]"',)),
        pipeline("eu_prod", ('env="prod"', 'region=~"eu-.*"')),
        pipeline("otel_staging", ('env="staging"',), CollectorType.OTEL),
        pipeline("off", ('env=~".*"',), enabled=False),
        pipeline("no_owner", ('owner=""',)),
    ]
    collectors = list(demo_sim.collectors)
    # Perturb some: remote overrides, a disabled one, a collector.* remote key that must not count.
    collectors[0] = dataclasses.replace(collectors[0], remote_attributes={"env": "staging"})
    collectors[1] = dataclasses.replace(collectors[1], enabled=False)
    collectors[2] = dataclasses.replace(collectors[2], remote_attributes={"collector.os": "windows"})
    collectors[3] = dataclasses.replace(collectors[3], remote_attributes={})
    pm = PipelineMatcher(pipelines)
    first = [pm.names_for(c) for c in collectors]
    second = [pm.names_for(c) for c in collectors]  # all cache hits now
    expected = [uncached_names(c, pipelines) for c in collectors]
    assert first == expected
    assert second == expected
    assert len(pm._cache) < len(collectors)  # the cache did collapse the fleet
    assert any("by_id" in n for n in expected) and any("eu_prod" in n for n in expected)
    assert any("otel_staging" in n for n in expected) and any("no_owner" in n for n in expected)
    assert all("off" not in n for n in expected)
    for p in pipelines:
        assert pm.collectors_for(p, collectors) == [
            c for c, n in zip(collectors, expected, strict=True) if p.name in n
        ]


def test_demo_collectors_carry_their_matched_pipelines(demo_sim: DemoSimulator) -> None:
    pipelines = list(demo_sim.pipelines.values())
    for c in demo_sim.collectors:
        assert c.pipelines == uncached_names(c, pipelines), c.id


# --- snapshot, summary, JSON, time helpers ---------------------------------------------------------

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def small_snapshot() -> FleetSnapshot:
    cs = (
        collector(
            "a",
            local_attributes={"env": "prod"},
            health=Health.HEALTHY,
            last_seen=T0,
            remote_config=RemoteConfig(ConfigStatus.APPLIED, "h1"),
        ),
        collector(
            "b",
            CollectorType.ALLOY,
            local_attributes={"env": "prod"},
            health=Health.UNHEALTHY,
            last_error="boom",
            remote_config=RemoteConfig(ConfigStatus.FAILED, "h2", "bad config"),
        ),
        collector("c", CollectorType.ALLOY, local_attributes={"env": "dev"}, health=Health.OFFLINE),
    )
    return FleetSnapshot(backend="test", collectors=cs, pipelines=(pipeline("p", ()),), fetched_at=T0)


def test_snapshot_lookup_and_stale_copy() -> None:
    s = small_snapshot()
    assert s.collector("b") is s.collectors[1] and s.collector("zz") is None
    assert s.pipeline("p") is s.pipelines[0] and s.pipeline("q") is None
    stale = s.as_stale("backend unreachable", BackendHealth(False, "down", "connection refused"))
    assert stale.stale and stale.stale_reason == "backend unreachable" and not stale.health.ok
    assert stale.collectors is s.collectors and not s.stale
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.stale = True  # type: ignore[misc]
    assert snapshot_header(stale)["stale_reason"] == "backend unreachable"
    assert "stale_reason" not in snapshot_header(s)


def test_totals_list_every_health_type_and_status() -> None:
    d = totals(small_snapshot().collectors).as_dict()
    assert d["total"] == 3
    assert d["by_health"] == {"unhealthy": 1, "degraded": 0, "offline": 1, "unknown": 0, "healthy": 1}
    assert d["by_type"] == {"alloy": 3, "otel": 0, "sdk": 0}  # a type with no collector still shows, as 0
    assert d["by_config_status"] == {"unset": 1, "applying": 0, "applied": 1, "failed": 1}


def test_group_by() -> None:
    groups = group_by(small_snapshot().collectors, "env")
    assert [(g.value, g.count) for g in groups] == [("prod", 2), ("dev", 1)]
    assert groups[0].worst == Health.UNHEALTHY
    assert groups[1].worst == Health.OFFLINE
    assert [(g.value, g.count) for g in group_by(small_snapshot().collectors, "missing")] == [("", 3)]


def test_collector_json_shape() -> None:
    c = small_snapshot().collectors[1]
    out = collector_json(c)
    assert out["remote_config"] == {"status": "failed", "hash": "h2", "error": "bad config", "assigned": ""}
    assert out["attributes"] == {"collector.ID": "b", "env": "prod"}
    assert out["last_seen"] is None and out["last_error"] == "boom"
    assert set(collector_json(small_snapshot().collectors[0])) == set(out)  # one shape for every row


def test_time_helpers() -> None:
    assert rfc3339(T0) == "2026-11-20T09:00:00Z"
    assert rfc3339(T0.astimezone(timezone(timedelta(hours=2)))) == "2026-11-20T09:00:00Z"
    assert rfc3339(None) is None
    assert parse_time("2026-11-20T09:00:00Z") == T0
    assert parse_time("2026-11-20T11:00:00+02:00") == T0
    assert parse_time("2026-11-20T09:00:00") == T0  # naive is UTC
    assert parse_time("") is None and parse_time(None) is None
    assert parse_time(rfc3339(T0)) == T0
    now = T0 + timedelta(days=3)
    assert [age_text(now - timedelta(seconds=s), now) for s in (4, 12 * 60, 3 * 3600, 2 * 86400)] == [
        "4s",
        "12m",
        "3h",
        "2d",
    ]
    assert age_text(None, now) == "-"
    assert age_text(now + timedelta(seconds=5), now) == "0s"


# --- pipeline history: the rollback target ---------------------------------------------------------


def test_rollback_target_is_the_previous_revision_with_contents() -> None:
    from otelcockpit.fleet.history import current_revision, previous_of, rollback_target
    from otelcockpit.fleet.model import Operation, Revision

    def rev(i: int, op: Operation, snap: Pipeline | None) -> Revision:
        return Revision(str(i), "p", "1", snap, op, T0 + timedelta(hours=i))

    v1, v2 = pipeline("p", ('env="dev"',)), pipeline("p", ('env="prod"',))
    revs = [rev(1, Operation.INSERT, v1), rev(2, Operation.UPDATE, v2)]
    assert current_revision(revs) is revs[-1]
    assert rollback_target(revs) is revs[0]
    assert (
        previous_of(revs, "2") is revs[0]
        and previous_of(revs, "1") is None
        and previous_of(revs, "9") is None
    )
    deleted = [*revs, rev(3, Operation.DELETE, v2)]
    assert rollback_target(deleted) is revs[1]
    assert rollback_target(revs[:1]) is None and current_revision([]) is None


def test_every_demo_pipeline_has_a_rollback_target(demo_sim: DemoSimulator) -> None:
    from otelcockpit.fleet.history import rollback_target

    for name, revs in demo_sim.revisions.items():
        target = rollback_target(revs)
        assert target is not None, name
        assert target.snapshot is not None and target.snapshot != revs[-1].snapshot, name
