"""The adoption commands run as a user runs them: ``python -m otelcockpit ...`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ELIGIBILITY_KEYS = [
    "name",
    "team",
    "language",
    "platform",
    "path",
    "status",
    "condition",
    "fill",
    "assumptions",
    "alternatives",
    "blockers",
    "reasons",
    "rules",
    "code_change",
]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otelcockpit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def run_json(*args: str) -> Any:
    proc = run(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_eligibility_json_shape() -> None:
    data = run_json("eligibility")
    assert list(data) == ["services", "counts"]
    assert len(data["services"]) >= 60
    for s in data["services"]:
        assert list(s) == ELIGIBILITY_KEYS
        assert isinstance(s["alternatives"], list) and isinstance(s["rules"], list)
        assert s["code_change"] in (True, False, None)
    by = {s["name"]: s for s in data["services"]}
    assert by["article-api"]["path"] == "operator" and by["article-api"]["code_change"] is False
    assert by["session-store"]["path"] == "sdk" and by["session-store"]["code_change"] is True
    # the kernel the inventory leaves out is what the node agents of its cluster report
    assert by["breaking-news-push"]["path"] == "obi" and by["breaking-news-push"]["status"] == "decided"
    assert by["podcast-feed"]["status"] == "conditional"
    assert by["podcast-feed"]["fill"][0]["field"] == "runtime_version"
    total = data["counts"]["total"]
    assert total["services"] == len(data["services"]) == total["decided"] + total["conditional"] + total["unknown"]
    assert sum(t["services"] for t in data["counts"]["teams"].values()) == total["services"]


def test_eligibility_with_an_inventory_file_and_a_service_detail(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "services:\n  - name: api\n    team: t\n    language: java\n    runtime_version: '21'\n    platform: vm\n"
        "    os: linux\n    arch: amd64\n    libc: glibc\n    glibc_version: '2.36'\n    distro: debian-12\n"
        "    kernel: 6.1.0\n    btf: true\n    privileged_allowed: true\n    existing_sdk: none\n"
    )
    data = run_json("eligibility", "--inventory", str(inv))
    assert [s["name"] for s in data["services"]] == ["api"]
    assert data["services"][0]["path"] == "injector"
    detail = run_json("eligibility", "--inventory", str(inv), "--service", "api")
    assert detail["path"] == "injector" and detail["sources"]["injector-vm"].startswith("https://")
    assert {p["path"]: p["status"] for p in detail["paths"]}["obi"] == "eligible"
    text = run("eligibility", "--inventory", str(inv), "--service", "api")
    assert text.returncode == 0
    assert "injector-vm: https://github.com/open-telemetry/opentelemetry-injector/" in text.stdout


def test_unknown_language_exits_2_with_file_and_line(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text("services:\n  - name: api\n    language: cobol\n    platform: vm\n")
    proc = run("eligibility", "--inventory", str(inv))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"otelcockpit: {inv}:3: service 'api': unknown language 'cobol' (one of java, kotlin, scala, nodejs, python, "
        "dotnet, go, rust, cpp, ruby, php, nginx, apache-httpd)"
    )
    assert "Traceback" not in proc.stderr


def test_eligibility_table_and_grouping() -> None:
    proc = run("eligibility", "--group", "path")
    assert proc.returncode == 0
    assert "== path lambda-layer (4)" in proc.stdout
    assert proc.stdout.splitlines()[1].split()[:7] == [
        "NAME",
        "TEAM",
        "LANGUAGE",
        "PLATFORM",
        "PATH",
        "STATUS",
        "NOTE",
    ]
    assert proc.stdout.splitlines()[-1].startswith("66 services: 64 decided (57 zero-code, 7 code change), 2 conditional (fill: ")


def test_phases_json_and_text() -> None:
    data = run_json("phases")
    assert [p["phase"] for p in data["phases"]] == [1, 2, 3, 4]
    assert data["phases"][0]["at_threshold"] is True
    item = data["phases"][1]["items"][0]
    assert list(item) == [
        "id",
        "phase",
        "title",
        "passed",
        "value",
        "threshold",
        "evidence",
        "failing",
        "signoff",
    ]
    assert data["warnings"]
    text = run("phases").stdout
    assert "[PASS] p1.host-metrics" in text and "[FAIL] p2.obi-hosts" in text and "warning: phase 4" in text


def test_journeys_json_and_text() -> None:
    data = run_json("journeys")
    ids = [j["id"] for j in data["journeys"]]
    assert ids == ["article-read", "subscription-purchase", "login"]
    login = data["journeys"][2]
    assert login["coverage"] == 0.3 and login["first_gap"].startswith("auth-gateway:")
    assert list(login["services"][0]) == [
        "service",
        "traced",
        "red",
        "red_source",
        "score",
        "instrumentation",
        "path",
        "gap",
    ]
    text = run("journeys").stdout
    assert "Login" in text and "[######--------------]  30%" in text


def test_conventions_json() -> None:
    data = run_json("conventions")
    assert data["file"].endswith("conventions.yaml")
    assert {v["kind"] for v in data["violations"]} == {"collector", "service"}
    assert list(data["violations"][0]) == ["kind", "subject", "attribute", "rule", "message"]


def test_signoff_refused_with_read_only_then_accepted() -> None:
    refused = run("signoff", "p1.host-metrics", "--by", "ana", "--read-only")
    assert refused.returncode == 1
    assert (
        refused.stderr.strip() == "otelcockpit: read-only mode: signing off a phase item is a mutating action"
    )
    assert "no sign-offs yet" in run("signoff", "--list").stdout
    ok = run("signoff", "p1.host-metrics", "--by", "ana", "--note", "ECS dev next sprint")
    assert ok.returncode == 0 and ok.stdout.startswith("signed off p1.host-metrics by ana at ")
    listed = run_json("signoff", "--list")
    assert [(s["item"], s["by"], s["note"], s["context"]) for s in listed["signoffs"]] == [
        ("p1.host-metrics", "ana", "ECS dev next sprint", "demo")
    ]
    phases = run_json("phases")
    assert phases["phases"][0]["items"][0]["signoff"]["by"] == "ana"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("signoff", "p9.nothing", "--by", "ana"), "unknown phase item 'p9.nothing'"),
        (("signoff", "p1.host-metrics"), "signoff needs --by NAME"),
    ],
)
def test_signoff_usage_errors(args: tuple[str, ...], message: str) -> None:
    proc = run(*args)
    assert proc.returncode == 2 and message in proc.stderr


def test_phase_thresholds_from_the_config_file() -> None:
    config = Path(os.environ["OTELCOCKPIT_CONFIG"])
    data = run_json("phases")
    third = data["phases"][2]
    assert third["threshold"] == 1.0 and not third["at_threshold"]
    passed = sum(1 for i in third["items"] if i["passed"])
    assert 0 < passed < len(third["items"])
    share = passed / len(third["items"])
    config.write_text(f"phase_thresholds:\n  3: {share * 100:.0f}%\n  4: 1\n", encoding="utf-8")
    data = run_json("phases")
    assert data["phases"][2]["threshold"] == pytest.approx(share, abs=0.005)
    assert data["phases"][2]["at_threshold"] is True
    assert data["phases"][3]["threshold"] == 1.0
    for bad, why in (("5: 50%", "the phases are 1 to 4"), ("1: 150%", "not a share"), ("1: lots", "not a share")):
        config.write_text(f"phase_thresholds:\n  {bad}\n", encoding="utf-8")
        proc = run("phases")
        assert proc.returncode == 2 and why in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
