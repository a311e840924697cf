"""Deciding with what a real inventory knows (issue 13).

- The five cases the issue starts from, each as a team would write it (only the fields a team
  knows); each failed before: ``unknown`` where the missing field does not decide, nothing about
  musl, nothing about RHEL, Node.js "20" read as 20.0.0.
- Table tests: per rule family, one field removed at a time. The answer stays the same (and the
  value the engine worked with is stated: an assumption, a default shown as assumed, or a value
  derived from another fact) or becomes conditional, naming that field.
- Partial versions on each runtime gate: a partial version stands for its range.
"""

from __future__ import annotations

from typing import Any

import pytest

from otelcockpit.adoption.eligibility import FILL_FIELD, evaluate, label
from otelcockpit.adoption.explain import explain
from otelcockpit.adoption.inventory import Service


def svc(name: str = "svc", **fields: Any) -> Service:
    return Service(name, {k: v for k, v in fields.items() if v is not None})


def choices(e: Any, field: str) -> dict[str, str]:
    fill = next(f for f in e.fill if f.field == field)
    return {v: p for v, p, _ in fill.choices}


# ---- the five cases of the issue --------------------------------------------------------------


def test_dotnet8_on_a_debian12_vm_is_the_injector_assuming_amd64_or_arm64() -> None:
    e = evaluate(svc("invoicing", language="dotnet", runtime_version="8", platform="vm", distro="debian-12"))
    assert (e.path, e.status) == ("injector", "decided")
    assert e.code_change is False
    assert any(a.startswith("assuming CPU arch is amd64 or arm64 (.NET ships") for a in e.assumptions)
    assert not any("unknown" in r for r in e.reasons)
    # what the distribution tells, with where it came from
    facts = e.facts
    assert facts.fact("libc").value == "glibc" and "debian-12 uses glibc" in facts.fact("libc").origin_text()
    assert facts.fact("glibc_version").text == "2.36"  # no glibc < 2.34 caveat on Debian 12
    assert not any("glibc < 2.34" in b for b in e.blockers)
    assert any("apt/dnf" in r or "gpgcheck" in b for r in e.reasons for b in e.blockers)


def test_java17_on_an_alpine_vm_warns_that_musl_ignores_ld_so_preload() -> None:
    e = evaluate(svc("reports", language="java", runtime_version="17", platform="vm", distro="alpine-3.20"))
    assert e.path == "injector"
    # Java runs on s390x and ppc64le too, where the injector is not published: the one field to fill
    assert e.status == "conditional"
    assert choices(e, "arch") == {"amd64 or arm64": "injector", "s390x or ppc64le": "agent-in-image"}
    assert any("musl ignores /etc/ld.so.preload: set LD_PRELOAD per service" in b for b in e.blockers)
    assert e.facts.fact("libc").value == "musl"
    # with the arch known it is decided, and the operator still learns about musl
    d = evaluate(
        svc(
            "reports",
            language="java",
            runtime_version="17",
            platform="vm",
            distro="alpine-3.20",
            arch="arm64",
        )
    )
    assert (d.path, d.status) == ("injector", "decided")
    assert any("musl ignores /etc/ld.so.preload" in b for b in d.blockers)


def test_go_on_kubernetes_with_privileged_pods_is_obi_if_hostpid_is_allowed() -> None:
    e = evaluate(
        svc(
            "router",
            language="go",
            runtime_version="1.24",
            platform="kubernetes",
            privileged_allowed=True,
            kernel="6.1.112-124.190.amzn2023",
            btf=True,
        )
    )
    assert (e.path, e.status) == ("obi", "conditional")
    assert {f.field for f in e.fill} == {"host_pid_allowed", "arch"}
    assert choices(e, "host_pid_allowed") == {"true": "obi", "false": "compile-time"}
    assert choices(e, "arch") == {"amd64 or arm64": "obi", "s390x or ppc64le": "compile-time"}
    assert e.condition == "obi if CPU arch is amd64 or arm64 and hostPID allowed is true"
    assert "compile-time" in e.alternatives
    # privileged pods rule out EKS on Fargate and GKE Autopilot: said, not asked
    assert any("neither EKS on Fargate nor GKE Autopilot" in a for a in e.assumptions)


def test_go_on_a_rhel8_vm_with_kernel_4_18_turns_on_the_rhel_backport() -> None:
    e = evaluate(
        svc(
            "ledger-sync",
            language="go",
            platform="vm",
            distro="rhel-8",
            kernel="4.18",
            arch="amd64",
            btf=True,
            privileged_allowed=True,
        )
    )
    assert (e.path, e.status) == ("obi", "conditional")
    assert [f.field for f in e.fill] == ["kernel"]
    assert choices(e, "kernel") == {"≤ 240": "compile-time", "> 240": "obi"}
    why = next(w for v, _, w in e.fill[0].choices if v == "≤ 240")
    assert "RHEL 8 kernels up to 4.18.0-240 (RHEL 8.3)" in why
    assert any("RHEL 8 (4.18)" in b for b in e.blockers)
    assert e.facts.fact("host_family").value == "rhel"
    # the RHEL minor pins the kernel build: decided either way
    new = evaluate(
        svc(
            "a",
            language="go",
            platform="vm",
            distro="rhel-8.10",
            arch="amd64",
            btf=True,
            privileged_allowed=True,
        )
    )
    assert (new.path, new.status) == ("obi", "decided")
    assert "rhel-8.10 ships kernel 4.18.0-553" in new.facts.fact("kernel").origin_text()
    old = evaluate(
        svc(
            "b",
            language="go",
            platform="vm",
            distro="rhel-8.2",
            arch="amd64",
            btf=True,
            privileged_allowed=True,
        )
    )
    assert (old.path, old.status) == ("compile-time", "decided")
    assert any("RHEL 8 kernels up to 4.18.0-240" in b for b in old.blockers)


def test_nodejs_20_on_lambda_is_a_range_not_20_0_0() -> None:
    e = evaluate(svc("signup", language="nodejs", runtime_version="20", platform="lambda"))
    assert (e.path, e.status) == ("lambda-layer", "conditional")
    assert choices(e, "runtime_version") == {"< 20.6.0": "sdk", "≥ 20.6.0": "lambda-layer"}
    assert e.code_change is False
    d = evaluate(svc("signup", language="nodejs", runtime_version="20.11", platform="lambda"))
    assert (d.path, d.status) == ("lambda-layer", "decided")


# ---- one field removed at a time, per rule family ---------------------------------------------

K8S = {
    "platform": "kubernetes",
    "k8s_distribution": "eks",
    "os": "linux",
    "arch": "amd64",
    "libc": "glibc",
    "glibc_version": "2.36",
    "distro": "debian-12",
    "kernel": "6.1.112-124.190.amzn2023",
    "btf": True,
    "operator_installed": True,
    "operator_version": "0.158.0",
    "privileged_allowed": False,
    "host_pid_allowed": False,
    "existing_sdk": "none",
    "can_rebuild_image": True,
}
K8S_PRIV = {**K8S, "privileged_allowed": True, "host_pid_allowed": True}
VM = {
    "platform": "vm",
    "os": "linux",
    "arch": "amd64",
    "libc": "glibc",
    "glibc_version": "2.35",
    "distro": "ubuntu-22.04",
    "kernel": "5.15.0-119-generic",
    "btf": True,
    "privileged_allowed": True,
    "existing_sdk": "none",
}
FARGATE = {
    "platform": "ecs-fargate",
    "os": "linux",
    "arch": "arm64",
    "libc": "glibc",
    "privileged_allowed": False,
    "existing_sdk": "none",
    "can_rebuild_image": True,
}
FAMILIES: list[tuple[str, dict[str, Any], str]] = [
    ("operator-java", {**K8S, "language": "java", "runtime_version": "21"}, "operator"),
    ("operator-python", {**K8S, "language": "python", "runtime_version": "3.12"}, "operator"),
    (
        "operator-nodejs",
        {**K8S, "language": "nodejs", "runtime_version": "20.11.1", "node_module_system": "cjs"},
        "operator",
    ),
    (
        "operator-dotnet-arm64",
        {**K8S, "language": "dotnet", "runtime_version": "net8.0", "arch": "arm64"},
        "operator",
    ),
    ("injector-java", {**VM, "language": "java", "runtime_version": "17"}, "injector"),
    ("injector-dotnet", {**VM, "language": "dotnet", "runtime_version": "net8.0"}, "injector"),
    (
        "injector-nodejs",
        {**VM, "language": "nodejs", "runtime_version": "20.11.1", "node_module_system": "cjs"},
        "injector",
    ),
    ("obi-k8s-go", {**K8S_PRIV, "language": "go", "runtime_version": "1.24", "libc": "static"}, "obi"),
    ("obi-vm-cpp", {**VM, "language": "cpp"}, "obi"),
    (
        "compile-time-go",
        {**K8S, "language": "go", "runtime_version": "1.25", "libc": "static"},
        "compile-time",
    ),
    ("agent-in-image-fargate", {**FARGATE, "language": "java", "runtime_version": "21"}, "agent-in-image"),
    (
        "lambda-layer",
        {
            "platform": "lambda",
            "os": "linux",
            "arch": "arm64",
            "existing_sdk": "none",
            "language": "python",
            "runtime_version": "3.12",
        },
        "lambda-layer",
    ),
    (
        "dotnet-windows",
        {
            "platform": "windows",
            "os": "windows",
            "arch": "amd64",
            "existing_sdk": "none",
            "language": "dotnet",
            "runtime_version": "net48",
            "runtime_flavor": "netfx",
        },
        "dotnet-builtin",
    ),
]
IDENTITY = {"language", "platform"}
REMOVALS = [
    (family, fields, path, key) for family, fields, path in FAMILIES for key in fields if key not in IDENTITY
]


def _stated(e: Any, key: str) -> bool:
    """The value the engine worked with for a removed field is said somewhere."""
    text = " ".join(e.assumptions)
    if label(key) in text:
        return True
    fact = e.facts.fact(key)
    if fact.value is not None:
        return fact.origin is not None  # a default shown as assumed, or derived from another fact
    return not any(key == u.name or key in u.fills or FILL_FIELD.get(key) == u.fill_field for u in e.units)


@pytest.mark.parametrize(
    ("family", "fields", "path", "key"), REMOVALS, ids=[f"{r[0]}-{r[3]}" for r in REMOVALS]
)
def test_one_field_removed_keeps_the_answer_or_names_the_field(
    family: str, fields: dict[str, Any], path: str, key: str
) -> None:
    full = evaluate(svc(family, **fields))
    assert (full.path, full.status) == (path, "decided"), (family, full.fill)
    e = evaluate(svc(family, **{k: v for k, v in fields.items() if k != key}))
    assert e.status in ("decided", "conditional"), (family, key, e.reasons)
    if e.status == "decided":
        assert e.path == path, (family, key, e.path)
        assert _stated(e, key), (family, key, e.assumptions)
    else:
        named = {f.field for f in e.fill}
        assert key in named or FILL_FIELD.get(key) in named, (family, key, named)
        outcomes = {p for f in e.fill for _, ps, _ in f.choices for p in ps.split(" or ")}
        assert path in outcomes | {e.path}, (family, key, outcomes)


def test_removals_that_decide_are_named() -> None:
    """Some removals must not be decided silently: the field decides the path."""
    cases = {
        ("operator-java", "operator_installed"): "operator_installed",
        ("operator-nodejs", "node_module_system"): "node_module_system",
        ("obi-k8s-go", "host_pid_allowed"): "host_pid_allowed",
        ("obi-k8s-go", "kernel"): "kernel",
        ("obi-vm-cpp", "privileged_allowed"): "privileged_allowed",
        ("obi-vm-cpp", "btf"): "btf",
        ("operator-dotnet-arm64", "operator_version"): "operator_version",
        ("lambda-layer", "runtime_version"): "runtime_version",
    }
    by_family = {f: fields for f, fields, _ in FAMILIES}
    for (family, key), named in cases.items():
        fields = {k: v for k, v in by_family[family].items() if k != key}
        e = evaluate(svc(family, **fields))
        assert e.status == "conditional" and named in {f.field for f in e.fill}, (family, key, e.status)


# ---- partial versions on each runtime gate ----------------------------------------------------


@pytest.mark.parametrize(
    ("base", "language", "version", "status", "path", "fill"),
    [
        # Java agent: Java 8+
        (K8S, "java", "8", "decided", "operator", None),
        (K8S, "java", "7", "decided", "sdk", None),  # every agent path blocked, OBI not allowed here
        # Node.js agent: ^18.19.0 || >=20.6.0
        (K8S, "nodejs", "20", "conditional", "operator", {"< 20.6.0": "sdk", "≥ 20.6.0": "operator"}),
        (K8S, "nodejs", "18", "conditional", "operator", {"< 18.19.0": "sdk", "≥ 18.19.0": "operator"}),
        (K8S, "nodejs", "22", "decided", "operator", None),
        (K8S, "nodejs", "20.6", "decided", "operator", None),
        (K8S, "nodejs", "19", "decided", "sdk", None),
        # Python agent: 3.10+
        (K8S, "python", "3.12", "decided", "operator", None),
        (K8S, "python", "3.9", "decided", "sdk", None),
        (K8S, "python", "3", "conditional", "operator", {"< 3.10": "sdk", "≥ 3.10": "operator"}),
        # .NET: 8+ (the injector stands down below 8)
        (VM, "dotnet", "8", "decided", "injector", None),
        (VM, "dotnet", "net8.0", "decided", "injector", None),
        (VM, "dotnet", "7", "decided", "obi", None),
        # Go toolchain for otelc: 1.25+ (a caveat: the path stays)
        ({**K8S, "libc": "static"}, "go", "1.25", "decided", "compile-time", None),
        ({**K8S, "libc": "static"}, "go", "1", "decided", "compile-time", None),
    ],
)
def test_a_partial_version_stands_for_its_range(
    base: dict[str, Any], language: str, version: str, status: str, path: str, fill: dict[str, str] | None
) -> None:
    e = evaluate(
        svc("v", **{**base, "language": language, "runtime_version": version, "node_module_system": "cjs"})
    )
    assert (e.path, e.status) == (path, status), (language, version, e.condition)
    if fill is not None:
        assert choices(e, "runtime_version") == fill
        assert e.condition.startswith(f"{path} if runtime version ≥ ")


def test_go_toolchain_partial_version_keeps_the_check() -> None:
    e = evaluate(svc("g", **{**K8S, "libc": "static", "language": "go", "runtime_version": "1"}))
    assert any("otelc needs the Go 1.25+ toolchain" in b for b in e.blockers)
    e = evaluate(svc("g", **{**K8S, "libc": "static", "language": "go", "runtime_version": "1.25"}))
    assert not any("1.25" in b for b in e.blockers)


def test_dotnet_framework_partial_version_on_windows() -> None:
    base = {
        "platform": "windows",
        "os": "windows",
        "arch": "amd64",
        "runtime_flavor": "netfx",
        "language": "dotnet",
    }
    assert evaluate(svc("w", **base, runtime_version="4.8")).path == "dotnet-builtin"
    e = evaluate(svc("w", **base, runtime_version="4"))
    assert (e.path, e.status) == ("dotnet-builtin", "conditional")
    assert choices(e, "runtime_version") == {"< 4.6.2": "sdk", "≥ 4.6.2": "dotnet-builtin"}


def test_a_partial_kernel_is_a_range_too() -> None:
    base = {**VM, "language": "cpp", "distro": "ubuntu-22.04"}
    assert evaluate(svc("k", **{**base, "kernel": "6"})).status == "decided"
    e = evaluate(svc("k", **{**base, "kernel": "5"}))
    assert (e.path, e.status) == ("obi", "conditional")
    assert choices(e, "kernel") == {"< 5.8": "sdk", "≥ 5.8": "obi"}


# ---- unknown is left for when nothing useful can be said --------------------------------------


def test_unknown_only_when_the_language_or_the_platform_is_missing() -> None:
    e = evaluate(svc("x", platform="kubernetes"))
    assert (e.path, e.status, e.code_change) == ("unknown", "unknown", None)
    assert [f.field for f in e.fill] == ["language"]
    e = evaluate(svc("x", language="python", runtime_version="3.12"))
    assert e.status == "unknown" and [f.field for f in e.fill] == ["platform"]


# ---- the walk through the rules ---------------------------------------------------------------


def test_explain_walks_the_rules_with_facts_sources_assumptions_and_changes() -> None:
    e = evaluate(svc("invoicing", language="dotnet", runtime_version="8", platform="vm", distro="debian-12"))
    x = explain(e)
    steps = {s.rule: s for s in x.steps}
    vm = steps["injector-vm"]
    assert vm.result == "holds" and vm.sources[0].startswith(
        "https://github.com/open-telemetry/opentelemetry-injector/"
    )
    assert {f.field for f in vm.facts} == {"platform", "language_family"}
    arch = steps["injector-arch"]
    assert arch.result == "depends on CPU arch" and arch.assumption.startswith(
        "CPU arch taken as amd64 or arm64"
    )
    sdk = steps["injector-existing-sdk"]
    assert sdk.result == "does not hold" and "assumed" in sdk.assumption
    assert [c.text() for c in sdk.changes] == ["if existing SDK were true: sdk"]
    # the steps follow the ranking: the chosen path's rules come before the fallbacks'
    order = [s.rule for s in x.steps]
    assert order.index("injector-vm") < order.index("agent-in-image") < order.index("sdk-manual")
    kinds = {f.field: f.kind for f in x.facts}
    assert (
        kinds["language"] == "inventory" and kinds["existing_sdk"] == "assumed" and kinds["arch"] == "unknown"
    )
    as_json = x.as_json()
    assert as_json["status"] == "decided" and as_json["steps"][0]["source"]
