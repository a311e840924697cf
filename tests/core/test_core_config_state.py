"""The config state, decided once in the core from what a backend reports; the demo's states; the outage
report; simulated agents that persist their applied config and start from it or from their bootstrap."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from otelcockpit.adoption.outage import outage_report
from otelcockpit.backends.demo import DemoBackend
from otelcockpit.fleet.configstate import (
    ConfigState,
    came_up_state,
    collector_state,
    compare_files,
    config_state,
)
from otelcockpit.fleet.model import ConfigReport, ConfigStatus, RemoteConfig
from otelcockpit.fleet.summary import totals

A, B, C = "aa" * 16, "bb" * 16, "cc" * 16


def rc(status: str = "applied", h: str = "", assigned: str = A, error: str = "") -> RemoteConfig:
    return RemoteConfig(ConfigStatus(status), h, error, assigned)


CASES = [
    # (what the backend reports, state, reason)
    (rc("applied", A), ConfigReport(assigned_label="gw@v2", effective_hash=A), ConfigState.IN_SYNC, "it runs gw@v2"),
    (rc("applied", A), ConfigReport(assigned_label="gw@v2"), ConfigState.IN_SYNC,
     "it reports gw@v2 APPLIED (it reports no effective config)"),
    (rc("applied", A), ConfigReport(assigned_label="gw@v2", effective_hash=C, equivalent=True), ConfigState.IN_SYNC,
     "it runs gw@v2 (its effective config says the same in another form)"),
    (rc("applied", A), ConfigReport(assigned_label="gw@v2", effective_hash=C, differs=("exporters.debug is added",)),
     ConfigState.DRIFTED, "it reports gw@v2 APPLIED, but its effective config differs (exporters.debug is added)"),
    (rc("unset", ""), ConfigReport(assigned_label="gw@v2", effective_hash=C), ConfigState.FALLBACK,
     "it runs its local bootstrap config: no remote config applied since it started; assigned gw@v2"),
    (rc("unset", ""), ConfigReport(assigned_label="gw@v2"), ConfigState.FALLBACK,
     "it has applied no remote config (status unset): it runs its local config; assigned gw@v2"),
    (rc("unset", "", assigned=""), ConfigReport(effective_hash=C), ConfigState.FALLBACK,
     "no config is assigned to it: it runs its local config"),
    (rc(), ConfigReport(accepts_remote=False, effective_hash=C), ConfigState.FALLBACK,
     "it does not accept a remote config: it runs its local config"),
    (rc("applied", B), ConfigReport(assigned_label="gw@v2", effective_hash=B, effective_label="gw@v1"),
     ConfigState.CACHED, "it runs gw@v1, a remote config it applied earlier; assigned gw@v2"),
    (rc("applied", B), ConfigReport(assigned_label="gw@v2", reported_label="gw@v1"), ConfigState.CACHED,
     "it reports gw@v1 APPLIED, a remote config it applied earlier; assigned gw@v2"),
    (rc("failed", A, error="bad yaml"), ConfigReport(assigned_label="gw@v2", effective_hash=B, effective_label="gw@v1"),
     ConfigState.CACHED, "it runs gw@v1, a remote config it applied earlier; assigned gw@v2; gw@v2 FAILED to apply (bad yaml)"),
    (rc("applied", B), ConfigReport(assigned_label="gw@v2", effective_hash=B, effective_label="gw@v1",
                                    held="it lacks exporter:kafka"),
     ConfigState.CACHED, "it runs gw@v1, a remote config it applied earlier; assigned gw@v2; gw@v2 is not sent to it: it lacks exporter:kafka"),
    (rc("applying", A), ConfigReport(assigned_label="gw@v2"), ConfigState.UNKNOWN,
     "it is applying config aaaaaaaaaaaa and reports no effective config: what runs is not known; assigned gw@v2"),
    (rc("unset", ""), ConfigReport(reports_status=False), ConfigState.UNKNOWN,
     "it reports neither its effective config nor a remote config status"),
    (rc(), ConfigReport(unknown="the v1 API does not say"), ConfigState.UNKNOWN, "the v1 API does not say"),
]  # fmt: skip


@pytest.mark.parametrize(("remote", "report", "state", "reason"), CASES)
def test_config_state_from_what_a_backend_reports(remote, report, state, reason) -> None:  # noqa: ANN001
    view = config_state(remote, report)
    assert (view.state, view.reason) == (state, reason)


def test_compare_files_parses_and_ignores_what_a_supervisor_adds() -> None:
    assigned = {"c.yaml": ("receivers: {otlp: {}}\nexporters:\n  otlp: {endpoint: a}\nservice:\n  pipelines:\n"
                           "    traces: {receivers: [otlp], exporters: [otlp]}\n", "text/yaml")}  # fmt: skip
    supervised = {"": ('{"receivers": {"otlp": {}}, "exporters": {"otlp": {"endpoint": "a"}}, "extensions": {"opamp": {}},'
                       ' "service": {"extensions": ["opamp"], "telemetry": {"logs": {"level": "info"}},'
                       ' "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}}}}', "application/json")}  # fmt: skip
    assert compare_files(assigned, supervised) == (True, ())
    edited = {"": (supervised[""][0].replace('"endpoint": "a"', '"endpoint": "b"'), "application/json")}
    assert compare_files(assigned, edited) == (False, ("exporters.otlp.endpoint: assigned a, runs b",))
    alloy = {"": ('prometheus.scrape "x" {\n  scrape_interval = "60s"\n}\n', "text/plain")}
    local = {"": ('prometheus.scrape "x" {\n  scrape_interval = "10s"\n}\n', "text/plain")}
    assert compare_files(alloy, local) == (
        False,
        ("line 'scrape_interval = \"60s\"' is missing", "line 'scrape_interval = \"10s\"' is added"),
    )


def test_the_demo_reports_every_state_it_can(frozen_clock) -> None:  # noqa: ANN001
    backend = DemoBackend(seed=7, clock=frozen_clock)
    snap = backend.snapshot_now()
    counts = totals(snap.collectors).as_dict()["by_config_state"]
    assert counts == {"drifted": 1, "on fallback": 0, "on cached remote": 2, "unknown": 0, "in sync": 417}
    cached = next(c for c in snap.collectors if collector_state(c).state == ConfigState.CACHED)
    assert cached.remote_config.status == ConfigStatus.FAILED  # it failed to apply the new one, runs the old one
    drifted = next(c for c in snap.collectors if collector_state(c).state == ConfigState.DRIFTED)
    assert "its effective config differs" in collector_state(drifted).reason


def test_the_demo_outage_hides_the_scale_out_until_the_api_returns(frozen_clock) -> None:  # noqa: ANN001
    now = [frozen_clock()]
    backend = DemoBackend(seed=7, clock=lambda: now[0])
    before = backend.snapshot_now()
    backend.fleet_api_down()
    now[0] += timedelta(seconds=90)
    ids = backend.scale_out(10, without_cache=0.5)
    stale = backend.snapshot_now()
    assert stale.stale and "has not answered since" in stale.stale_reason and len(stale.collectors) == len(before.collectors)
    report = outage_report(stale, now=now[0])
    assert report.api == "down" and report.refuses_pushes and report.data_age == "1m"
    down_at = backend.outage
    backend.fleet_api_up()
    snap = backend.snapshot_now()
    new = [c for c in snap.collectors if c.id in set(ids)]
    started = [backend.sim.started_on[i] for i in ids]
    assert len(new) == 10 and set(started) == {"cache", "bootstrap"}  # the seed gives both kinds
    assert {came_up_state(c).state for c in new} <= {ConfigState.FALLBACK, ConfigState.CACHED}
    texts = asyncio.run(backend.config_texts({h: "" for c in new for h in (c.came_up.report.effective_hash, c.remote_config.assigned)}))
    report = outage_report(snap, now=now[0], since=down_at, texts=texts)
    assert report.came_up == {"drifted": 0, "on fallback": started.count("bootstrap"), "on cached remote": started.count("cache"),
                              "unknown": 0, "in sync": 0}  # fmt: skip
    boot = next(g for g in report.groups if g.runs == "their bootstrap config")
    assert "adds a debug exporter (otelcol.exporter.debug.local)" in boot.compared
    for _ in range(20):
        now[0] += timedelta(seconds=2)
        if outage_report(backend.snapshot_now(), now=now[0], since=down_at).converged:
            break
    else:
        raise AssertionError("the scaled-out collectors did not converge in 40s of demo time")


def test_simulated_agents_persist_their_config_and_start_from_it(tmp_path: Path) -> None:
    from otelcockpit.opamp_server.proto import opamp_pb2 as pb
    from otelcockpit.simulate.agents import build_agents

    agents = build_agents(6, 3, state_dir=tmp_path, no_cache_share=0.5)
    with_volume = [a for a in agents if a.cache is not None]
    assert 0 < len(with_volume) < 6 and all(a.started_on == "bootstrap" for a in agents)
    offer = pb.ServerToAgent()
    offer.remote_config.config_hash = b"\x01" * 32
    offer.remote_config.config.config_map["c.yaml"].body = b"receivers: {}\n"
    offer.remote_config.config.config_map["c.yaml"].content_type = "text/yaml"
    for a in agents:
        for _, build in a.handle(offer):
            build()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"{a.profile.uid.hex()}.json" for a in with_volume)
    assert json.loads((tmp_path / files[0]).read_text())["hash"] == "01" * 32
    again = build_agents(6, 3, state_dir=tmp_path, no_cache_share=0.5)
    for a in again:
        full = a.full_state()
        if a.cache is not None:  # the cached remote config, reported APPLIED
            assert a.started_on == "cache"
            assert full.remote_config_status.status == pb.RemoteConfigStatuses_APPLIED
            assert full.remote_config_status.last_remote_config_hash == b"\x01" * 32
            assert full.effective_config.config_map.config_map["c.yaml"].body == b"receivers: {}\n"
        else:  # no volume: its bootstrap config, nothing applied
            assert a.started_on == "bootstrap"
            assert full.remote_config_status.status == pb.RemoteConfigStatuses_UNSET
            assert b"verbosity: detailed" in full.effective_config.config_map.config_map[""].body
        assert full.available_components.hash and not full.available_components.components
