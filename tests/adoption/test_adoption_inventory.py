"""The inventory: file:line errors, missing fields as unknown (with the reason), discovery merge."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otelcockpit.adoption.eligibility import PATHS, evaluate, load_rules
from otelcockpit.adoption.inventory import (
    LANGUAGES,
    PLATFORMS,
    Inventory,
    Service,
    load_inventory,
    merge_discovered,
)
from otelcockpit.errors import ConfigError
from otelcockpit.fleet.model import Collector, CollectorType
from otelcockpit.resources import demo_dir


def test_demo_inventory_loads_60_plus_services_over_every_language_and_platform() -> None:
    inv = load_inventory(demo_dir() / "services.yaml")
    assert len(inv.services) >= 60
    langs = {s.language for s in inv.services}
    assert {"java", "nodejs", "python", "dotnet", "go", "rust", "ruby", "php"} <= langs
    assert {s.platform for s in inv.services} == set(PLATFORMS)
    mods = {s.get("node_module_system") for s in inv.services if s.language == "nodejs"}
    assert {"cjs", "esm"} <= mods
    assert {s.get("libc") for s in inv.services} >= {"glibc", "musl"}
    # anchors merged, explicit null overrides an anchor's value (unknown on purpose)
    bnp = inv.service("breaking-news-push")
    assert bnp is not None and bnp.get("kernel") is None and bnp.get("cluster") == "prod-us-1"


def test_unknown_language_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "services.yaml"
    f.write_text(
        "services:\n"
        "  - name: ok\n"
        "    language: java\n"
        "    platform: vm\n"
        "  - name: weird\n"
        "    platform: vm\n"
        "    language: cobol\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_inventory(f)
    assert exc.value.message.startswith(f"{f}:7: service 'weird': unknown language 'cobol'")


def test_unknown_platform_from_an_anchor_names_the_anchor_line(tmp_path: Path) -> None:
    f = tmp_path / "services.yaml"
    f.write_text(
        "x-base: &base\n  platform: mainframe\nservices:\n  - <<: *base\n    name: a\n    language: java\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_inventory(f)
    assert exc.value.message.startswith(f"{f}:2: service 'a': unknown platform 'mainframe'")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("services:\n  - name: a\n    langauge: java\n", ":3: service 'a': unknown field 'langauge'"),
        ("services:\n  - name: a\n  - name: a\n", ":3: service 'a' is listed twice"),
        ("services:\n  - team: x\n", ":2: a service needs a name"),
        ("services:\n  - name: a\n    btf: maybe\n", ":3: service 'a': btf must be true or false"),
        ("services: [\n", ":1: "),  # the parser's own words differ between libyaml and pure PyYAML
        ("nothing: here\n", "expected a mapping with a 'services' list"),
    ],
)
def test_inventory_errors_name_file_and_line(tmp_path: Path, body: str, expected: str) -> None:
    f = tmp_path / "services.yaml"
    f.write_text(body)
    with pytest.raises(ConfigError) as exc:
        load_inventory(f)
    assert expected in exc.value.message
    assert str(f) in exc.value.message


def test_missing_kernel_makes_the_path_conditional_on_it() -> None:
    s = Service(
        "bnp",
        {
            "language": "go",
            "platform": "kubernetes",
            "os": "linux",
            "arch": "amd64",
            "btf": True,
            "privileged_allowed": True,
            "host_pid_allowed": True,
            "existing_sdk": "none",
            "runtime_version": "1.24",
            "distro": "distroless",
        },
    )
    e = evaluate(s)
    assert (e.path, e.status) == ("obi", "conditional")
    assert [f.field for f in e.fill] == ["kernel"]
    assert ("< 4.18", "compile-time") in [(v, p) for v, p, _ in e.fill[0].choices]
    assert e.code_change is False
    assert "compile-time" in e.alternatives  # what remains if OBI turns out impossible
    assert "obi-kernel-too-old" in e.rules and e.sources["obi-kernel-too-old"].startswith("https://")


def test_undecided_lower_ranked_path_does_not_hide_the_recommendation() -> None:
    s = Service(
        "ev",
        {
            "language": "java",
            "runtime_version": "21",
            "platform": "vm",
            "os": "linux",
            "arch": "amd64",
            "libc": "glibc",
            "glibc_version": "2.35",
            "distro": "ubuntu-24.04",
            "kernel": "6.8.0",
            "privileged_allowed": True,
            "existing_sdk": "none",
        },
    )
    e = evaluate(s)
    assert (e.path, e.status) == ("injector", "decided")
    obi = e.assessment("obi")
    assert obi.status == "unknown" and "BTF unknown: OBI eligibility cannot be decided" in obi.unknown
    assert "BTF unknown: OBI eligibility cannot be decided" in e.unknowns


@pytest.mark.parametrize(
    ("fields", "status", "fill"),
    [
        ({"platform": "kubernetes", "operator_installed": True}, "unknown", {"language"}),
        ({"language": "java", "runtime_version": "21"}, "unknown", {"platform"}),
        (
            {"platform": "kubernetes", "language": "python", "libc": "glibc", "operator_installed": True},
            "conditional",
            {"runtime_version"},
        ),
        (
            {
                "platform": "kubernetes",
                "language": "nodejs",
                "runtime_version": "20.11.1",
                "libc": "glibc",
                "node_module_system": "cjs",
            },
            "conditional",
            {"operator_installed"},
        ),
        (
            {
                "platform": "kubernetes",
                "language": "nodejs",
                "runtime_version": "20.11.1",
                "operator_installed": True,
            },
            "conditional",
            {"node_module_system"},
        ),
        (
            {"platform": "vm", "language": "cpp", "os": "linux", "arch": "amd64", "kernel": "6.1", "btf": True},
            "conditional",
            {"privileged_allowed"},
        ),
    ],
)
def test_each_missing_field_is_named_as_the_field_to_fill(
    fields: dict[str, object], status: str, fill: set[str]
) -> None:
    e = evaluate(Service("x", fields))
    assert e.status == status
    assert {f.field for f in e.fill} == fill
    if status == "unknown":
        assert e.path == "unknown" and e.code_change is None
        assert any(f"{next(iter(fill))} unknown" in r for r in e.reasons)
    else:
        assert e.path != "unknown" and e.condition.startswith(e.path)
        assert all(f.choices for f in e.fill)


FIELD_VALUES = {
    "language": st.sampled_from(LANGUAGES),
    "platform": st.sampled_from(PLATFORMS),
    "runtime_version": st.sampled_from(
        ["8", "21", "3.9", "3.12", "net8.0", "netcoreapp3.1", "net48", "16.20.2", "20.11.1", "1.25", "x"]
    ),
    "runtime_flavor": st.sampled_from(["hotspot", "graalvm-native", "netfx"]),
    "os": st.sampled_from(["linux", "windows"]),
    "arch": st.sampled_from(["amd64", "arm64", "s390x"]),
    "libc": st.sampled_from(["glibc", "musl", "static"]),
    "glibc_version": st.sampled_from(["2.17", "2.36", "junk"]),
    "kernel": st.sampled_from(["4.14.1", "4.18.0-240.el8", "4.18.0-553.el8", "5.15.0", "6.1.0", "weird"]),
    "distro": st.sampled_from(["rhel-8", "ubuntu-22.04", "alpine-3.20", "sles-15"]),
    "btf": st.booleans(),
    "privileged_allowed": st.booleans(),
    "host_pid_allowed": st.booleans(),
    "operator_installed": st.booleans(),
    "operator_version": st.sampled_from(["0.150.0", "0.158.0"]),
    "node_module_system": st.sampled_from(["cjs", "esm"]),
    "existing_sdk": st.sampled_from(["none", "opentelemetry-java 1.42"]),
    "head_sampling_at_source": st.booleans(),
    "can_rebuild_image": st.booleans(),
}


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional=FIELD_VALUES))
def test_any_subset_of_fields_never_crashes_and_never_guesses(fields: dict[str, object]) -> None:
    e = evaluate(Service("fuzz", fields))
    assert e.path in (*PATHS, "unknown")
    assert e.status in ("decided", "conditional", "unknown")
    if e.path == "unknown":
        assert e.status == "unknown" and e.unknowns and e.code_change is None
    else:
        assert isinstance(e.code_change, bool)
    if e.status == "conditional":
        # the answer names each field to fill and what each of its values gives
        assert e.fill and all(f.choices for f in e.fill), e.fill
        assert e.condition.startswith(e.path)
    assert e.path not in e.alternatives


def _agent(name: str, **attrs: str) -> Collector:
    return Collector(id=name, name=name, type=CollectorType.OTEL, local_attributes=MappingProxyType(attrs))


def test_discovery_fills_unknowns_and_shows_conflicts_without_resolving_them() -> None:
    inv = Inventory(
        (
            Service(
                "checkout-api",
                {"language": "java", "runtime_version": "17", "platform": "ecs-ec2", "arch": "amd64"},
            ),
            Service("podcast-feed", {"language": "python", "platform": "kubernetes"}),
        )
    )
    collectors = [
        _agent(
            "agent-1",
            **{
                "service.name": "checkout-api",
                "telemetry.sdk.language": "java",
                "process.runtime.version": "21.0.4",
                "os.type": "linux",
                "host.arch": "aarch64",
            },
        ),
        _agent(
            "agent-2",
            **{
                "service.name": "podcast-feed",
                "telemetry.sdk.language": "python",
                "process.runtime.version": "3.12.7",
            },
        ),
        _agent(
            "agent-3", **{"service.name": "mystery", "telemetry.sdk.language": "go", "host.arch": "x86_64"}
        ),
        _agent(
            "otelcol", **{"service.name": "otelcol-contrib", "os.type": "linux"}
        ),  # a collector, not an app
    ]
    merged = merge_discovered(inv, collectors)
    checkout = merged.service("checkout-api")
    assert checkout.get("runtime_version") == "17"  # the file stays in force
    assert {(c.field, c.inventory, c.discovered) for c in checkout.conflicts} == {
        ("runtime_version", "17", "21.0.4"),
        ("arch", "amd64", "arm64"),
    }
    assert checkout.get("os") == "linux" and checkout.discovered == {"os": "linux"}
    assert (
        "agent-1 reports '21.0.4'" in checkout.conflicts[0].text()
        or "agent-1" in checkout.conflicts[1].text()
    )
    podcast = merged.service("podcast-feed")
    assert podcast.get("runtime_version") == "3.12.7" and not podcast.conflicts
    mystery = merged.service("mystery")
    assert mystery is not None and mystery.only_discovered and mystery.get("arch") == "amd64"
    assert merged.service("otelcol-contrib") is None
    assert len(merged.conflicts) == 2


def test_user_rules_override_add_and_disable(tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(
        "rules:\n"
        "  - id: operator-not-installed\n"
        "    disabled: true\n"
        "  - id: no-obi-in-payments\n"
        "    when: {team: payments}\n"
        "    outcome: block\n"
        "    paths: [obi]\n"
        "    reason: Security forbids eBPF in the PCI zone\n"
        "    source: security policy SEC-12\n"
    )
    rules = load_rules(f)
    ids = {r.id for r in rules}
    assert "operator-not-installed" not in ids and "no-obi-in-payments" in ids
    s = Service(
        "pay",
        {
            "team": "payments",
            "language": "go",
            "runtime_version": "1.25",
            "platform": "vm",
            "os": "linux",
            "arch": "amd64",
            "kernel": "6.1",
            "btf": True,
            "privileged_allowed": True,
            "libc": "static",
            "existing_sdk": "none",
        },
    )
    e = evaluate(s, rules)
    assert e.path == "compile-time"
    assert "OBI: Security forbids eBPF in the PCI zone" in e.blockers
    assert e.sources["no-obi-in-payments"] == "security policy SEC-12"


def test_a_bad_user_rule_is_a_config_error_with_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text("rules:\n  - id: x\n    outcome: allow\n")
    with pytest.raises(ConfigError) as exc:
        load_rules(f)
    assert exc.value.message.startswith(f"{f}:2: rule x: outcome must be one of")


def test_user_fields_and_distros_add_to_the_builtin_ones(tmp_path: Path) -> None:
    from otelcockpit.adoption.eligibility import load_knowledge

    f = tmp_path / "rules.yaml"
    f.write_text(
        "fields:\n"
        "  arch:\n"
        "    values: [amd64, arm64]            # this organisation runs nothing else\n"
        "distros:\n"
        "  - match: [wolfi]\n"
        "    family: other\n"
        "    libc: glibc\n"
        "    source: https://github.com/wolfi-dev/os\n"
    )
    kb = load_knowledge(f)
    java = Service("j", {"language": "java", "runtime_version": "17", "platform": "vm", "distro": "wolfi"})
    e = evaluate(java, knowledge=kb)
    assert (e.path, e.status) == ("injector", "decided")  # only amd64 and arm64 are possible here
    assert e.facts.fact("libc").value == "glibc"
    assert evaluate(java).status == "conditional"  # the built-in vocabulary has s390x and ppc64le
    bad = tmp_path / "bad.yaml"
    bad.write_text("fields:\n  arch:\n    values: amd64\n")
    with pytest.raises(ConfigError) as exc:
        load_knowledge(bad)
    assert exc.value.message == f"{bad}:3: field arch: needs a values list"
