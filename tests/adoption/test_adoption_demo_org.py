"""Phases, journeys and conventions computed on the demo organisation (real figures, named gaps)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from otelcockpit.adoption import signoff
from otelcockpit.adoption.cockpit import AdoptionData, analyse, group_by, load_sources, resolve_sources
from otelcockpit.adoption.conventions import check, parse_conventions
from otelcockpit.adoption.inventory import Inventory, Service
from otelcockpit.adoption.journeys import coverage_bar
from otelcockpit.adoption.phases import ITEM_IDS, phase_of_pipeline, warnings_for_pipeline
from otelcockpit.backends.demo import DemoBackend
from otelcockpit.errors import ReadOnlyError
from otelcockpit.fleet.model import Collector, CollectorType, Pipeline
from otelcockpit.settings import resolve
from otelcockpit.yamlio import load_yaml_text


@pytest.fixture
def demo(frozen_clock: Callable[[], datetime]) -> AdoptionData:
    snap = DemoBackend(clock=frozen_clock).snapshot_now()
    sources = resolve_sources(resolve())
    inventory, journeys, conventions = load_sources(sources)
    return analyse(snap, inventory, journeys=journeys, conventions=conventions)


def test_demo_sources_resolve_to_the_fixtures() -> None:
    s = resolve_sources(resolve())
    assert s.inventory.name == "services.yaml"
    assert s.journeys is not None and s.journeys.name == "journeys.yaml"
    assert s.conventions is not None and s.conventions.name == "conventions.yaml"


def test_phase_1_passes_with_the_real_figures(demo: AdoptionData) -> None:
    p1 = demo.phases.phases[0]
    assert p1.at_threshold
    host = demo.phases.item("p1.host-metrics")
    assert host.passed and host.evidence.startswith("372/380 (97.9%)")
    assert host.failing == (
        "8 without: env=dev region=us-east-1 role=ecs-daemon: 8 "
        "(e.g. otel-dev-use1-ecs-001, otel-dev-use1-ecs-002, otel-dev-use1-ecs-003 and 5 more)",
    )
    assert demo.phases.item("p1.k8s-metrics").evidence.startswith("256/256")
    assert demo.phases.item("p1.ecs-metrics").evidence.startswith("68/68")


def test_phase_2_names_its_gaps(demo: AdoptionData) -> None:
    obi = demo.phases.item("p2.obi-hosts")
    assert not obi.passed
    assert obi.evidence.startswith("298/370 (80.5%)")
    assert "10 hosts cannot run OBI (kernel 4.14.355-271.569.amzn2.x86_64)" in obi.evidence
    assert "env=prod region=ap-southeast-2 role=node-agent: 32" in obi.failing[0]
    assert "env=prod region=eu-west-1 role=host-agent: 28" in obi.failing[0]
    red = demo.phases.item("p2.journey-red")
    assert red.evidence.startswith("11/18")
    failing = [f.split(":")[0] for f in red.failing]
    assert failing == [
        "recommendations",
        "subscription-api",
        "receipt-mailer",
        "auth-gateway",
        "identity-service",
        "session-store",
        "legacy-sso",
    ]
    assert any("sampled at the source (ecs_sidecar_traces)" in f for f in red.failing)


def test_phase_3_finds_source_sampling_and_tail_sampling(demo: AdoptionData) -> None:
    items = {i.id: i for i in demo.phases.phases[2].items}
    assert items["p3.spanmetrics-central"].passed
    assert items["p3.no-source-sampling"].failing == (
        "ecs_sidecar_traces: probabilistic_sampler on 18 collector(s) before the gateways",
        "SDK head sampling in 1 service(s): subscription-api",
    )
    assert items["p3.no-tail-sampling"].failing == ("otel_gateway_traces: tail_sampling on 22 collector(s)",)
    assert not items["p3.central-sampling"].passed
    assert items["p3.journey-traces"].evidence.startswith("10/18")


def test_phase_4_and_the_order_warning(demo: AdoptionData) -> None:
    items = {i.id: i for i in demo.phases.phases[3].items}
    assert items["p4.business-metrics"].passed
    assert items["p4.profiling"].failing == (
        "pyroscope_profiles reaches 0 production node(s) (envs: dev, staging)",
    )
    warnings = demo.phases.warnings
    assert any(
        w.startswith(
            "phase 4 (Custom logic and profiling) has started (custom_business_metrics, pyroscope_profiles)"
        )
        and "phase 2 (Baseline service visibility) is below its threshold" in w
        for w in warnings
    )
    assert [i.id for p in demo.phases.phases for i in p.items] == list(ITEM_IDS)


def test_pushing_later_phase_work_warns(demo: AdoptionData) -> None:
    profiling = Pipeline(name="prod_profiles", contents='pyroscope.ebpf "x" {\n}\n')
    assert phase_of_pipeline(profiling) == 4
    w = warnings_for_pipeline(demo.phases, profiling)
    assert w and w[0].startswith(
        "pipeline prod_profiles is phase 4 (Custom logic and profiling) work, but phase 2"
    )
    host = Pipeline(name="more_hosts", contents='prometheus.exporter.unix "h" {\n}\n')
    assert warnings_for_pipeline(demo.phases, host) == []


def test_journeys_coverage_and_first_gap(demo: AdoptionData) -> None:
    by_id = {j.journey.id: j for j in demo.journeys}
    assert round(by_id["article-read"].coverage, 4) == round(5.5 / 7, 4)
    assert round(by_id["subscription-purchase"].coverage, 4) == round(5.5 / 8, 4)
    assert round(by_id["login"].coverage, 4) == 0.3
    assert by_id["article-read"].first_gap.startswith("content-store: not traced: OBI gives it RED metrics")
    assert by_id["subscription-purchase"].first_gap.startswith("subscription-api: RED under-counted")
    assert by_id["login"].first_gap.startswith(
        "auth-gateway: not traced (instrumentation: none; recommended: compile-time)"
    )
    assert coverage_bar(0.3, 10) == "[###-------]"
    scores = {s.name: s.score for s in by_id["article-read"].services}
    assert scores == {
        "web-edge": 1.0,
        "frontend-ssr": 1.0,
        "article-api": 1.0,
        "paywall-service": 1.0,
        "content-store": 0.5,
        "recommendations": 0.0,
        "image-resizer": 1.0,
    }


def test_demo_conventions_violations(demo: AdoptionData) -> None:
    v = demo.violations
    rc = [x for x in v if x.kind == "collector"]
    assert len(rc) == 10 and all(
        x.attribute == "collector.version" and "v1.13.0-rc.1" in x.message for x in rc
    )
    services = {(x.subject, x.attribute, x.rule) for x in v if x.kind == "service"}
    assert ("legacy_reader_stats", "team", "required") in services
    assert ("legacy_reader_stats", "name", "pattern") in services
    assert ("podcast-feed", "runtime_version", "required") in services
    assert ("comments-api", "journeys", "required") in services


def test_conventions_values_and_scoped_rules() -> None:
    conv = parse_conventions(
        load_yaml_text(
            "collectors:\n  required: [env]\n  values: {env: [prod]}\n  when:\n"
            "    - match: 'platform=\"vm\"'\n      required: [distro]\n"
            "services:\n  patterns: {name: '^[a-z-]+$'}\n",
            "conv.yaml",
        ),
        "conv.yaml",
    )
    cols = [
        Collector("a", "a", CollectorType.ALLOY, local_attributes={"env": "qa", "platform": "vm"}),
        Collector("b", "b", CollectorType.ALLOY, local_attributes={"platform": "kubernetes"}),
    ]
    inv = Inventory((Service("Bad_Name", {}), Service("good", {})))
    msgs = [(x.subject, x.message) for x in check(conv, cols, inv)]
    assert msgs == [
        ("a", "env='qa' is not allowed (allowed: prod)"),
        ("a", 'missing required attribute distro (for platform="vm")'),
        ("b", "missing required attribute env"),
        ("Bad_Name", "name='Bad_Name' does not match ^[a-z-]+$"),
    ]


def test_group_by_like_the_fleet_view(demo: AdoptionData) -> None:
    by_path = group_by(demo.eligibility, "path")
    assert set(by_path) <= {
        "operator",
        "injector",
        "obi",
        "dotnet-builtin",
        "lambda-layer",
        "agent-in-image",
        "compile-time",
        "sdk",
        "unknown",
    }
    # The demo leaves fields out on purpose: the fleet fills breaking-news-push's kernel (its node
    # agents report it); podcast-feed (no runtime version) and crossword-engine (privileged allowed
    # not known) get a path that depends on the field to fill.
    assert "unknown" not in by_path
    by_status = group_by(demo.eligibility, "status")
    assert {e.name for e in by_status["conditional"]} == {"podcast-feed", "crossword-engine"}
    bnp = demo.service("breaking-news-push")
    assert bnp.path == "obi" and bnp.status == "decided" and bnp.service.discovered["kernel"]
    assert {f.field for f in demo.service("podcast-feed").fill} == {"runtime_version"}
    assert {e.name for e in by_path["lambda-layer"]} == {
        "fraud-scoring",
        "receipt-mailer",
        "newsletter-signup",
        "gift-card-redeemer",
    }
    assert "identity" in group_by(demo.eligibility, "team")


def test_signoff_is_stored_and_attached(tmp_path: Path, frozen_clock: Callable[[], datetime]) -> None:
    db = tmp_path / "signoffs.sqlite"
    signoff.sign_off(
        "p1.host-metrics",
        "ana.silva",
        note="dev ECS hosts follow in Q1",
        at=frozen_clock(),
        path=db,
        context="demo",
    )
    signoff.sign_off("p1.host-metrics", "ben.okafor", at=frozen_clock(), path=db, context="demo")
    latest = signoff.latest(db, context="demo")
    assert (
        latest["p1.host-metrics"].by == "ben.okafor"
        and latest["p1.host-metrics"].at == "2026-11-20T09:00:00Z"
    )
    assert len(signoff.history(db)) == 2
    snap = DemoBackend(clock=frozen_clock).snapshot_now()
    inventory, journeys, _ = load_sources(resolve_sources(resolve()))
    data = analyse(snap, inventory, journeys=journeys, signoffs=latest)
    assert data.phases.item("p1.host-metrics").signoff.by == "ben.okafor"
    assert data.phases.item("p1.host-metrics").as_json()["signoff"] == {
        "by": "ben.okafor",
        "at": "2026-11-20T09:00:00Z",
        "note": "",
    }


def test_signoff_refused_in_read_only(tmp_path: Path, frozen_clock: Callable[[], datetime]) -> None:
    db = tmp_path / "signoffs.sqlite"
    with pytest.raises(ReadOnlyError):
        signoff.sign_off("p1.host-metrics", "ana", at=frozen_clock(), path=db, read_only=True)
    assert not db.exists()


def test_filter_services_like_the_fleet_view(demo: AdoptionData) -> None:
    from otelcockpit.adoption.cockpit import filter_services

    obi_or_sdk = filter_services(demo.eligibility, 'team="identity",path=~"obi|sdk"')
    assert [e.name for e in obi_or_sdk] == ["session-store", "legacy-sso"]
    assert [e.name for e in filter_services(demo.eligibility, "platform=windows")] == [
        "ad-sales-crm",
        "print-rip-bridge",
    ]
    assert {e.name for e in filter_services(demo.eligibility, "lambda")} >= {"fraud-scoring", "invoice-pdf"}
    assert len(filter_services(demo.eligibility, "")) == len(demo.eligibility)


def test_a_non_demo_context_needs_an_inventory(config_file: Path) -> None:
    import pytest as _pytest

    from otelcockpit.errors import UsageError

    config_file.write_text("contexts:\n  lab:\n    backend: opamp\n    url: http://127.0.0.1:1\n")
    with _pytest.raises(UsageError) as exc:
        resolve_sources(resolve(context="lab"))
    assert "no service inventory" in exc.value.message
    inv = config_file.parent / "svc.yaml"
    inv.write_text("services: []\n")
    (config_file.parent / "journeys.yaml").write_text("journeys: []\n")
    config_file.write_text(
        f"contexts:\n  lab:\n    backend: opamp\n    url: http://127.0.0.1:1\n    inventory: {inv}\n"
        f"    conventions: {config_file.parent / 'conv.yaml'}\n"
    )
    s = resolve_sources(resolve(context="lab"))
    assert s.inventory == inv and s.journeys == inv.parent / "journeys.yaml"
    assert s.conventions == config_file.parent / "conv.yaml"
