"""Flag parsers, stage assignment, blast radius, diff and policy findings of a plan."""

from __future__ import annotations

from dataclasses import replace

import pytest
from rollout_support import fleet

from otelcockpit.errors import UsageError
from otelcockpit.fleet.model import CollectorType
from otelcockpit.rollout.model import (
    CanarySpec,
    Gates,
    RolloutPlan,
    parse_canary,
    parse_duration,
    parse_waves,
)
from otelcockpit.rollout.planner import make_plan


def test_parse_canary_forms() -> None:
    assert parse_canary("5") == CanarySpec("count", 5)
    assert parse_canary("2.5%") == CanarySpec("percent", 2.5)
    assert parse_canary('region="eu-west-1"') == CanarySpec("selector", 'region="eu-west-1"')
    assert parse_canary(None).kind == "none"
    for bad, words in (("0", "at least one"), ("150%", "at most 100%"), ("foo", "not a count"), ("-3", "whole number")):
        with pytest.raises(UsageError, match=words):
            parse_canary(bad)


def test_parse_waves_and_durations() -> None:
    assert parse_waves("10%,50%,100%") == (10.0, 50.0, 100.0)
    assert parse_waves("25%") == (25.0, 100.0)
    assert parse_waves(None) == (100.0,)
    with pytest.raises(UsageError, match="must increase"):
        parse_waves("50%,10%")
    with pytest.raises(UsageError, match="not a percentage"):
        parse_waves("10,50%")
    assert parse_duration("5m") == 300
    assert parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25
    assert parse_duration("45") == 45
    for bad in ("5x", "m5", "-1s", ""):
        with pytest.raises(UsageError, match="--soak"):
            parse_duration(bad)


def _new(snap, text: str = "new contents\n"):
    return replace(snap.pipeline("metrics"), contents=text)


def test_every_collector_in_exactly_one_stage_canary_first_then_cumulative_waves() -> None:
    snap = fleet(200)
    plan = make_plan(snap, _new(snap), canary=parse_canary("5"), waves=parse_waves("10%,50%,100%"), lint=False)
    sizes = [len(s.collector_ids) for s in plan.stages]
    assert [s.name for s in plan.stages] == ["canary", "wave 1 (10%)", "wave 2 (50%)", "wave 3 (100%)"]
    assert sizes == [5, 15, 80, 100]  # cumulative: 5+15 = 10%, +80 = 50%, rest
    ids = [cid for s in plan.stages for cid in s.collector_ids]
    assert len(ids) == len(set(ids)) == 200
    # Deterministic, and not simply the first names in the alphabet.
    again = make_plan(snap, _new(snap), canary=parse_canary("5"), waves=parse_waves("10%,50%,100%"), lint=False)
    assert again.stages == plan.stages
    assert plan.stages[0].collector_ids != tuple(f"c{i:04d}" for i in range(5))


def test_canary_by_selector_and_percent_and_blast_radius() -> None:
    snap = fleet(100)
    plan = make_plan(snap, _new(snap), canary=parse_canary('env="staging",region="eu"'), lint=False)
    canary = plan.stages[0]
    assert canary.name == "canary" and len(canary.collector_ids) == 25
    assert canary.by_env == {"staging": 25} and canary.by_region == {"eu": 25}
    assert plan.blast_radius.total == 100
    assert plan.blast_radius.by_env == {"prod": 50, "staging": 50}
    pct = make_plan(snap, _new(snap), canary=parse_canary("3%"), lint=False)
    assert len(pct.stages[0].collector_ids) == 3
    with pytest.raises(UsageError, match="no collector"):
        make_plan(snap, _new(snap), canary=parse_canary('env="nope"'), lint=False)


def test_type_aware_matching_and_dropped_count() -> None:
    snap = fleet(10)
    narrower = replace(_new(snap), matchers=('role="node"', 'env="prod"'))
    plan = make_plan(snap, narrower, lint=False)
    assert plan.blast_radius.total == 5 and plan.blast_radius.dropped == 5
    # An OTel pipeline reaches no Alloy collector, whatever its matchers say.
    otel = make_plan(snap, replace(_new(snap), config_type=CollectorType.OTEL), lint=False)
    assert otel.blast_radius.total == 0 and otel.stages == ()
    with pytest.raises(UsageError, match="bad matcher"):
        make_plan(snap, replace(_new(snap), matchers=("bad matcher",)), lint=False)


def test_diff_names_the_live_revision_and_matcher_changes() -> None:
    snap = fleet(4)
    new = replace(_new(snap, "old contents\nplus a line\n"), matchers=('role="node"', 'env="prod"'))
    plan = make_plan(snap, new, base_revision="1003", lint=False)
    assert "--- metrics (live, revision 1003)" in plan.diff
    assert "+plus a line" in plan.diff
    assert "# matchers:" in plan.diff


def test_policy_errors_are_findings_that_block_and_the_plan_round_trips() -> None:
    snap = fleet(4)
    bad = _new(snap, 'prometheus.remote_write "x" {\n  endpoint {\n    url = "https://u:p@example.com/push"\n  }\n}\n')
    plan = make_plan(snap, bad, gates=Gates(max_failures=2, soak_seconds=30))
    assert plan.blocking, plan.findings
    assert all(f.severity in ("error", "warning", "info") for f in plan.findings)
    back = RolloutPlan.from_json(plan.as_json())
    assert back == plan
