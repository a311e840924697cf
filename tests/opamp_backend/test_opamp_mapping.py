"""Agent JSON (the admin API contract) to the fleet model, and the file rendering round trip."""

from __future__ import annotations

from otelcockpit.backends.opamp import (
    NO_HEALTH_REASON,
    agent_to_collector,
    parse_event,
    selector_matchers,
)
from otelcockpit.fleet.configfiles import render_files, split_files
from otelcockpit.fleet.model import CollectorType, ConfigStatus, Health


def _agent(**over):
    base = {
        "instance_uid": "0190f1d2-0000-7000-8000-000000000001",
        "transport": "ws",
        "connected": True,
        "status": "online",
        "first_seen": "2026-11-26T10:00:00Z",
        "last_seen": "2026-11-26T10:05:00Z",
        "sequence_num": 4,
        "capabilities": 0x3C07,
        "capabilities_decoded": ["ReportsStatus", "AcceptsRemoteConfig", "ReportsHealth"],
        "identifying_attributes": {"service.name": "otelcol-contrib", "service.version": "0.117.0"},
        "non_identifying_attributes": {
            "host.name": "web-1",
            "os.type": "linux",
            "host.arch": "arm64",
            "env": "prod",
        },
        "health": {
            "healthy": True,
            "status": "StatusOK",
            "last_error": "",
            "start_time": None,
            "components": {},
        },
        "remote_config_status": {"status": "APPLIED", "last_hash": "ab" * 32, "error": ""},
        "desired": {"config": "base", "version": 2, "hash": "ab" * 32},
        "offered_hash": None,
        "failed_hashes": [],
        "heartbeat_interval_seconds": 30,
    }
    base.update(over)
    return base


def test_agent_maps_to_collector():
    c = agent_to_collector(_agent())
    assert c.id == "0190f1d2-0000-7000-8000-000000000001"
    assert c.name == "otelcol-contrib@web-1"
    assert c.type is CollectorType.OTEL and c.version == "0.117.0"
    assert (
        c.local_attributes["host.arch"] == "arm64" and c.local_attributes["service.name"] == "otelcol-contrib"
    )
    assert c.attr("collector.ID") == c.id
    assert c.health is Health.HEALTHY
    assert c.remote_config.status is ConfigStatus.APPLIED and c.remote_config.hash == "ab" * 32
    assert c.pipelines == ("base",) and c.source == "ws"
    assert c.last_seen is not None and c.last_seen.minute == 5


def test_sdk_agents_are_shown_as_sdk_not_as_collectors():
    assert agent_to_collector(_agent(type="sdk")).type is CollectorType.SDK
    assert agent_to_collector(_agent(type="collector")).type is CollectorType.OTEL


def test_health_variants():
    comps = {
        "pipeline:traces": {
            "healthy": True,
            "status": "StatusOK",
            "last_error": "",
            "components": {
                "exporter:otlphttp": {
                    "healthy": False,
                    "status": "StatusRecoverableError",
                    "last_error": "queue full",
                    "components": {},
                }
            },
        }
    }
    c = agent_to_collector(
        _agent(health={"healthy": True, "status": "StatusOK", "last_error": "", "components": comps})
    )
    assert c.health is Health.DEGRADED and c.last_error == "queue full"
    assert "pipeline:traces/exporter:otlphttp" in c.health_reason
    tree = c.component_health
    assert tree is not None and tree.children[0].name == "pipeline:traces"
    assert tree.children[0].children[0].healthy is False

    c = agent_to_collector(
        _agent(health={"healthy": False, "status": "StatusPermanentError", "last_error": "boom"})
    )
    assert c.health is Health.UNHEALTHY and c.last_error == "boom"

    c = agent_to_collector(_agent(health=None, capabilities=0x3007, capabilities_decoded=["ReportsStatus"]))
    assert c.health is Health.UNKNOWN and c.health_reason == NO_HEALTH_REASON

    c = agent_to_collector(_agent(status="offline", connected=False))
    assert c.health is Health.OFFLINE and "offline" in c.health_reason

    c = agent_to_collector(
        _agent(remote_config_status={"status": "FAILED", "last_hash": "cd", "error": "bad yaml"})
    )
    assert c.remote_config.status is ConfigStatus.FAILED and c.remote_config.error == "bad yaml"


def test_render_and_split_round_trip():
    files = {
        "": {"body": "a: 1\n", "content_type": "text/yaml"},
        "extra.yaml": {"body": "b: 2", "content_type": "text/yaml"},
    }
    text = render_files(files)
    assert text.startswith('# file: ""\na: 1\n')
    assert "# file: extra.yaml\nb: 2\n" in text
    assert split_files(text) == {"": "a: 1\n", "extra.yaml": "b: 2\n"}
    assert split_files("receivers: {}\n") is None


def test_selector_matchers_and_events():
    assert selector_matchers('env="prod",region=~"eu-.*"') == ('env="prod"', 'region=~"eu-.*"')
    ev = parse_event(
        "agent", '{"instance_uid": "u1", "identifying_attributes": {"service.name": "s"}, "status": "online"}'
    )
    assert ev is not None and ev.collector is not None and ev.collector.id == "u1"
    ev = parse_event("agent_offline", '{"instance_uid": "u1"}')
    assert ev is not None and ev.collector_id == "u1" and ev.collector is None
    assert parse_event("agent", "not json") is None
