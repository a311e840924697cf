"""Filling the inventory from the fleet (issue 13): a snapshot of OpAMP agents and Fleet Management
collectors, mapped by the real backends' decoders, describes the services' hosts; the engine uses
what it says, every value shows where it came from, and the conflicts stay in view.

Then the same as a user runs it: ``otelcockpit eligibility --explain`` and ``--json`` in a
subprocess, against the Fleet Management fake on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from otelcockpit.adoption.cockpit import analyse, counts_by_team, decision_counts
from otelcockpit.adoption.discovery import describe, parse_os_description
from otelcockpit.adoption.explain import explain
from otelcockpit.adoption.inventory import parse_inventory
from otelcockpit.backends.fleet_management.backend import collectors_from_json
from otelcockpit.backends.opamp import agent_to_collector
from otelcockpit.fleet.model import FleetSnapshot

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def opamp_agent(uid: int, identifying: dict[str, str], non_identifying: dict[str, str]) -> dict[str, Any]:
    """An agent as ``otelcockpit serve``'s admin API returns it."""
    return {
        "instance_uid": f"0190f1d2-0000-7000-8000-{uid:012d}",
        "transport": "ws",
        "connected": True,
        "status": "online",
        "last_seen": "2026-12-01T08:59:00Z",
        "capabilities": 0x3C07,
        "identifying_attributes": identifying,
        "non_identifying_attributes": non_identifying,
        "health": {"healthy": True, "status": "StatusOK", "last_error": "", "components": {}},
        "remote_config_status": {"status": "APPLIED", "last_hash": "ab" * 32, "error": ""},
    }


def node_agent(uid: int, node: str, arch: str) -> dict[str, Any]:
    """An otelcol-contrib DaemonSet pod with the opamp extension, on a node of EKS cluster prod-eu."""
    return opamp_agent(
        uid,
        {"service.name": "otelcol-contrib", "service.version": "0.158.0"},
        {
            "host.name": node,
            "os.type": "linux",
            "host.arch": arch,
            "os.description": "Amazon Linux 2023.5.20240805 (Linux "
            + node
            + " 6.1.97-104.177.amzn2023.x86_64 #1 SMP Tue Jul 16 2024 x86_64)",
            "k8s.cluster.name": "prod-eu",
            "k8s.node.name": node,
            "cloud.platform": "aws_eks",
        },
    )


AGENTS = [
    node_agent(1, "ip-10-0-1-11.eu-west-1.compute.internal", "amd64"),
    node_agent(2, "ip-10-0-1-12.eu-west-1.compute.internal", "amd64"),
    node_agent(3, "ip-10-0-1-13.eu-west-1.compute.internal", "arm64"),
    # billing's own SDK-embedded OpAMP client (Python opentelemetry-opamp-client)
    opamp_agent(
        10,
        {"service.name": "billing", "service.instance.id": "billing-7d9f"},
        {
            "telemetry.sdk.language": "python",
            "process.runtime.name": "cpython",
            "process.runtime.version": "3.12.4",
            "os.type": "linux",
            "host.arch": "aarch64",
            "os.description": "Alpine Linux v3.20",
            "k8s.cluster.name": "prod-eu",
            "k8s.pod.name": "billing-7d9f-x2k",
        },
    ),
]
# Alloy host agents on the VMs, as Fleet Management's ListCollectors returns them
FM_COLLECTORS = [
    {
        "id": f"vm-ledger-{i}",
        "name": f"vm-ledger-{i}",
        "collectorType": "COLLECTOR_TYPE_ALLOY",
        "localAttributes": {
            "collector.os": "linux",
            "collector.version": "v1.12.2",
            "host.arch": "x86_64",
            "os.description": "Red Hat Enterprise Linux 8.10 (Ootpa)",
            "os.kernel": "4.18.0-553.el8_10.x86_64",
        },
        "remoteAttributes": {"env": "prod", "region": "eu-west-1", "platform": "vm", "role": "host-agent"},
    }
    for i in range(1, 4)
]
INVENTORY = """\
services:
  - name: billing                 # python on Kubernetes: runtime, arch and distro left out
    team: payments
    language: python
    platform: kubernetes
    cluster: prod-eu
    operator_installed: true
    arch: amd64                   # stale: its own agent reports aarch64
  - name: orders                  # Go on Kubernetes: no arch, no kernel, no BTF
    team: payments
    language: go
    runtime_version: "1.24"
    platform: kubernetes
    cluster: prod-eu
    privileged_allowed: true
    host_pid_allowed: true
    btf: true
  - name: ledger                  # Java on a VM: no distro, no arch, no kernel
    team: finance
    language: java
    runtime_version: "17"
    platform: vm
    env: prod
    region: eu-west-1
  - name: statements              # the file says Ubuntu; the VMs there run RHEL
    team: finance
    language: java
    runtime_version: "21"
    platform: vm
    env: prod
    region: eu-west-1
    distro: ubuntu-22.04
"""


@pytest.fixture(scope="module")
def data() -> Any:
    collectors = tuple(agent_to_collector(a) for a in AGENTS) + tuple(collectors_from_json(FM_COLLECTORS))
    snap = FleetSnapshot(backend="mixed", collectors=collectors, pipelines=(), fetched_at=NOW)
    return analyse(snap, parse_inventory(INVENTORY, "services.yaml"))


def test_os_descriptions_and_kernel_strings() -> None:
    assert parse_os_description(
        "Ubuntu 22.04.4 LTS (Jammy Jellyfish) (Linux web-1 5.15.0-1056-aws #61-Ubuntu SMP x86_64)"
    ) == ("ubuntu-22.04", "5.15.0-1056-aws")
    assert parse_os_description("Alpine Linux v3.20") == ("alpine-3.20", None)
    assert parse_os_description("Red Hat Enterprise Linux 8.10 (Ootpa)") == ("rhel-8.10", None)
    assert parse_os_description("Debian GNU/Linux 12 (bookworm)") == ("debian-12", None)
    assert parse_os_description("Amazon Linux 2023.5.20240805") == ("amazon-linux-2023", None)
    assert parse_os_description("Linux 5.15.0-1034-azure") == (None, "5.15.0-1034-azure")
    attrs = {
        "os.type": "linux",
        "k8s.node.name": "fargate-ip-10-0-3-4.ec2.internal",
        "k8s.cluster.name": "prod",
        "cloud.platform": "aws_eks",
        "container.runtime": "containerd",
    }
    found = describe(lambda k: attrs.get(k, ""))
    assert found["platform"][0] == "kubernetes" and found["k8s_distribution"][0] == "eks-fargate"
    assert found["container"] == ("containerd", "container.runtime")
    ecs = describe(lambda k: {"cloud.platform": "aws_ecs", "aws.ecs.launchtype": "FARGATE"}.get(k, ""))
    assert ecs["platform"][0] == "ecs-fargate"


def test_the_services_own_agent_fills_its_fields_and_a_contradiction_is_a_conflict(data: Any) -> None:
    billing = data.service("billing")
    s = billing.service
    assert s.get("runtime_version") == "3.12.4" and s.get("distro") == "alpine-3.20"
    origin = s.origin_of("runtime_version")
    assert origin.kind == "discovered" and origin.detail == "billing, process.runtime.version"
    # the inventory's arch stays in force; the disagreement is kept and shown
    assert s.get("arch") == "amd64"
    assert [c.text() for c in s.conflicts] == ["arch: inventory says 'amd64', billing reports 'arm64'"]
    # Alpine tells musl: the operator needs the musl annotation
    assert billing.facts.fact("libc").value == "musl"
    assert (billing.path, billing.status) == ("operator", "decided")
    assert any("otel-python-platform: musl" in r for r in billing.reasons)
    # the node agents tell the cluster is EKS and its kernel
    assert s.get("k8s_distribution") == "eks" and s.origin_of("k8s_distribution").kind == "discovered"


def test_the_node_agents_fill_host_fields_and_report_a_mixed_node_pool(data: Any) -> None:
    orders = data.service("orders")
    s = orders.service
    assert s.get("kernel") == "6.1.97-104.177.amzn2023.x86_64"
    assert "the 3 node agents of cluster prod-eu" in s.origin_of("kernel").detail
    # amd64 and arm64 nodes: the arch stays unknown, the engine tries both, both run OBI
    assert s.get("arch") is None and s.candidates["arch"] == ("amd64", "arm64")
    assert s.origin_of("arch").detail.startswith("one of amd64 (2), arm64 (1) on the 3 node agents")
    assert (orders.path, orders.status) == ("obi", "decided")
    assert any(
        a.startswith("assuming CPU arch is what the fleet reports: amd64 or arm64")
        for a in orders.assumptions
    )
    assert any("perf_event_paranoid" in b for b in orders.blockers)  # EKS, discovered


def test_fleet_management_host_agents_fill_a_vms_distro_and_kernel(data: Any) -> None:
    ledger = data.service("ledger")
    s = ledger.service
    assert s.get("distro") == "rhel-8.10" and s.get("arch") == "amd64"
    assert s.get("kernel") == "4.18.0-553.el8_10.x86_64"
    assert "the 3 VM host agents in prod/eu-west-1" in s.origin_of("distro").detail
    assert (ledger.path, ledger.status) == ("injector", "decided")
    # RHEL 8's glibc 2.28, derived from the discovered distribution: the injector's glibc < 2.34 fix
    assert ledger.facts.fact("glibc_version").text == "2.28"
    assert any("injector#399" in b for b in ledger.blockers)
    x = explain(ledger)
    kinds = {f.field: (f.kind, f.origin) for f in x.facts}
    assert kinds["distro"][0] == "discovered" and kinds["language"][0] == "inventory"


def test_host_reports_that_contradict_the_file_are_conflicts(data: Any) -> None:
    statements = data.service("statements")
    assert [c.text() for c in statements.service.conflicts] == [
        "distro: inventory says 'ubuntu-22.04', the 3 VM host agents in prod/eu-west-1 reports 'rhel-8.10 (3)'"
    ]
    assert statements.service.get("distro") == "ubuntu-22.04"  # the file wins until someone fixes one
    assert len(data.inventory.conflicts) == 2


def test_counts_per_team(data: Any) -> None:
    total = decision_counts(data.eligibility)
    assert (total.services, total.decided, total.conditional, total.unknown) == (4, 4, 0, 0)
    teams = counts_by_team(data.eligibility)
    assert set(teams) == {"finance", "payments"} and teams["payments"].services == 2


# ---- as a user runs it -------------------------------------------------------------------------


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otelcockpit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )


def test_explain_in_the_terminal_and_as_json() -> None:
    proc = run("eligibility", "--explain", "podcast-feed")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("podcast-feed  team audio  path operator  (conditional)")
    assert "  operator if runtime version ≥ 3.10" in out
    assert "      < 3.10 → sdk  (Python before 3.10 is not supported" in out
    assert "  platform                 kubernetes                   inventory (services.yaml:" in out
    assert "the walk through the rules (best-ranked path first):" in out
    assert "  1. operator-python-glibc [eligible → operator (rank 10)] holds" in out
    assert "     source: https://github.com/open-telemetry/opentelemetry-operator/" in out
    assert "     would change the answer: if operator installed were false: agent-in-image" in out
    data = json.loads(run("eligibility", "--explain", "breaking-news-push", "--json").stdout)
    assert (data["path"], data["status"]) == ("obi", "decided")
    kernel = next(f for f in data["facts"] if f["field"] == "kernel")
    assert kernel["kind"] == "discovered" and kernel["origin"].startswith(
        "discovered (the 64 node agents of cluster prod-us-1"
    )
    assert all(src.startswith("https://") for step in data["steps"] for src in step["source"])
    bad = run("eligibility", "--explain", "no-such-service")
    assert (
        bad.returncode == 2
        and bad.stderr.strip() == "otelcockpit: no service 'no-such-service' in the inventory"
    )


@pytest.fixture
def fm_fake(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    from otelcockpit.fm_fake import Credentials, FakeServerApp, FakeState
    from otelcockpit.fm_fake.server import ThreadedFakeServer

    creds = Credentials(instance_id="4242", read_token="read-secret", write_token="write-secret")
    state = FakeState()
    state.limits.api_rps = 1000.0
    for c in FM_COLLECTORS:
        state.collectors[c["id"]] = dict(c)
    server = ThreadedFakeServer(FakeServerApp(state, creds), port=0).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_MANAGEMENT_", "OTELCOCKPIT_"))}
    env.update(
        {
            "OTELCOCKPIT_CONFIG": str(tmp_path / "no-config.yaml"),
            "OTELCOCKPIT_DATA_DIR": str(tmp_path / "data"),
            "FLEET_MANAGEMENT_INSTANCE_ID": creds.instance_id,
            "FLEET_MANAGEMENT_TOKEN": creds.read_token,
        }
    )
    try:
        yield server.url, env
    finally:
        server.stop()


def test_eligibility_against_fleet_management_fills_from_its_collectors(
    fm_fake: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = fm_fake
    inv = tmp_path / "services.yaml"
    inv.write_text(INVENTORY)
    fm = ("--source", "fleet-management", "--url", url, "--inventory", str(inv))
    proc = subprocess.run(
        [sys.executable, "-m", "otelcockpit", "eligibility", "--explain", "ledger", "--json", *fm],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["path"], data["status"]) == ("injector", "decided")
    facts = {f["field"]: f for f in data["facts"]}
    assert facts["distro"]["value"] == "rhel-8.10" and facts["distro"]["kind"] == "discovered"
    assert facts["distro"]["origin"] == "discovered (the 3 VM host agents in prod/eu-west-1, os.description)"
    assert (
        facts["glibc_version"]["value"] == "2.28"
        and "rhel-8.10 ships glibc 2.28" in facts["glibc_version"]["origin"]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "otelcockpit", "eligibility", "--json", *fm],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    by = {s["name"]: s for s in listing["services"]}
    # Fleet Management knows the VMs, not the Kubernetes nodes nor billing's own agent: the
    # Kubernetes services stay conditional on what only those would tell
    assert by["ledger"]["status"] == "decided"
    assert by["orders"]["status"] == "conditional"
    assert {f["field"] for f in by["orders"]["fill"]} == {"kernel", "arch"}
    assert [f["field"] for f in by["billing"]["fill"]] == ["runtime_version"]
    teams = listing["counts"]["teams"]
    assert teams["finance"] == {"services": 2, "decided": 2, "zero_code": 2, "code_change": 0, "conditional": 0,
                                "unknown": 0, "fill": {}}
    assert teams["payments"] == {
        "services": 2,
        "decided": 0,
        "zero_code": 0,
        "code_change": 0,
        "conditional": 2,
        "unknown": 0,
        "fill": {"arch": 1, "kernel": 1, "runtime_version": 1},
    }
    text = subprocess.run(
        [sys.executable, "-m", "otelcockpit", "eligibility", *fm],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert text.returncode == 0, text.stderr
    assert (
        "1 service(s) where the inventory and what the fleet reports disagree (see --explain NAME): statements"
        in text.stdout
    )
