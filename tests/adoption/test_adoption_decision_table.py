"""Table-driven: every row of the decision table (eligibility.md §G, rows 1-24).

Each case is a service as an inventory would describe it, the expected recommended path, rule ids
that must have decided it, and substrings that must appear in its blockers (or reasons).
"""

from __future__ import annotations

from typing import Any

import pytest

from otelcockpit.adoption.eligibility import PATHS, evaluate
from otelcockpit.adoption.inventory import Service

K8S = {
    "platform": "kubernetes",
    "os": "linux",
    "arch": "amd64",
    "libc": "glibc",
    "glibc_version": "2.36",
    "kernel": "6.1.112-124.190.amzn2023",
    "btf": True,
    "operator_installed": True,
    "operator_version": "0.158.0",
    "privileged_allowed": False,
    "host_pid_allowed": False,
    "existing_sdk": "none",
    "distro": "debian-12",
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
RHEL8 = {**VM, "distro": "rhel-8", "glibc_version": "2.28", "kernel": "4.18.0-553.el8_10.x86_64"}
AL2 = {
    **VM,
    "distro": "amazon-linux-2",
    "glibc_version": "2.26",
    "kernel": "4.14.355-271.569.amzn2.x86_64",
    "btf": False,
}
FARGATE = {
    "platform": "ecs-fargate",
    "os": "linux",
    "arch": "arm64",
    "libc": "glibc",
    "privileged_allowed": False,
    "host_pid_allowed": False,
    "existing_sdk": "none",
}
ECS_EC2 = {
    "platform": "ecs-ec2",
    "os": "linux",
    "arch": "amd64",
    "libc": "glibc",
    "kernel": "6.1.112-124.190.amzn2023",
    "btf": True,
    "privileged_allowed": True,
    "host_pid_allowed": True,
    "existing_sdk": "none",
    "distro": "debian-12",
}
LAMBDA = {"platform": "lambda", "os": "linux", "arch": "arm64", "existing_sdk": "none"}
WINDOWS = {"platform": "windows", "os": "windows", "arch": "amd64", "existing_sdk": "none"}


def svc(base: dict[str, Any], **fields: Any) -> Service:
    merged = {**base, **fields}
    return Service(
        name=str(merged.pop("name", "svc")), fields={k: v for k, v in merged.items() if v is not None}
    )


# (row, case id, service, path, rule ids that must be present, substrings that must be in the blockers)
CASES: list[tuple[int, str, Service, str, set[str], list[str]]] = [
    (
        1,
        "k8s-java-operator",
        svc(K8S, language="java", runtime_version="21"),
        "operator",
        {"operator-java"},
        ["JAVA_TOOL_OPTIONS"],
    ),
    (
        1,
        "k8s-java-no-operator",
        svc(K8S, language="java", runtime_version="21", operator_installed=False),
        "agent-in-image",
        {"agent-in-image", "operator-not-installed"},
        ["operator: The OpenTelemetry Operator is not installed"],
    ),
    (
        2,
        "k8s-node-cjs",
        svc(K8S, language="nodejs", runtime_version="20.11.1", node_module_system="cjs"),
        "operator",
        {"operator-nodejs"},
        ["NODE_PATH"],
    ),
    (
        2,
        "k8s-node-esm",
        svc(K8S, language="nodejs", runtime_version="22.4.1", node_module_system="esm"),
        "agent-in-image",
        {"operator-node-esm", "node-esm-import"},
        ["operator: Node.js ESM apps are only partly covered", "--import"],
    ),
    (
        2,
        "k8s-node-18.10",
        svc(K8S, language="nodejs", runtime_version="18.10.0", node_module_system="cjs"),
        "sdk",
        {"node-version-unsupported", "sdk-manual"},
        ["^18.19.0 || >=20.6.0"],
    ),
    (
        3,
        "k8s-python-glibc",
        svc(K8S, language="python", runtime_version="3.12"),
        "operator",
        {"operator-python-glibc"},
        ["Binary wheels", "4318"],
    ),
    (
        4,
        "k8s-python-musl",
        svc(K8S, language="python", runtime_version="3.11", libc="musl", distro="alpine-3.20"),
        "operator",
        {"operator-python-musl"},
        ["python-contrib#3975"],
    ),
    (
        5,
        "k8s-dotnet8-arm64",
        svc(K8S, language="dotnet", runtime_version="net8.0", arch="arm64"),
        "operator",
        {"operator-dotnet-glibc"},
        [],
    ),
    (
        5,
        "k8s-dotnet8-arm64-old-operator",
        svc(K8S, language="dotnet", runtime_version="net8.0", arch="arm64", operator_version="0.150.0"),
        "agent-in-image",
        {"operator-dotnet-arm64-old"},
        ["x64 .NET profiler"],
    ),
    (
        6,
        "k8s-dotnet-musl",
        svc(K8S, language="dotnet", runtime_version="net9.0", libc="musl"),
        "operator",
        {"operator-dotnet-musl"},
        ["dotnet-instrumentation#2658"],
    ),
    (
        7,
        "k8s-go-privileged",
        svc(K8S_PRIV, language="go", runtime_version="1.23", libc="static"),
        "obi",
        {"obi-native", "injector-no-runtime-agent"},
        ["perf_event_paranoid", "injector: Go, Rust and C/C++"],
    ),
    (
        7,
        "k8s-rust-privileged",
        svc(K8S_PRIV, language="rust", runtime_version="1.82"),
        "obi",
        {"obi-native"},
        [],
    ),
    (
        7,
        "k8s-go-kernel-5.15",
        svc(K8S_PRIV, language="go", runtime_version="1.23", kernel="5.15.0-1071-aws"),
        "obi",
        {"obi-no-header-parsing"},
        ["OBI#467"],
    ),
    (
        8,
        "k8s-go-restricted",
        svc(K8S, language="go", runtime_version="1.25", libc="static"),
        "compile-time",
        {"go-compile-time", "obi-privileges", "obi-host-pid"},
        ["OBI: OBI needs root or privileged"],
    ),
    (
        9,
        "k8s-nginx",
        svc(K8S_PRIV, language="nginx", runtime_version="1.23.1"),
        "operator",
        {"operator-nginx"},
        ["off by default"],
    ),
    (
        9,
        "k8s-nginx-unsupported",
        svc(K8S_PRIV, language="nginx", runtime_version="1.25.3"),
        "obi",
        {"operator-nginx-version", "obi-webserver"},
        ["1.22.0, 1.23.0 and 1.23.1"],
    ),
    (
        9,
        "k8s-httpd-musl",
        svc(K8S_PRIV, language="apache-httpd", runtime_version="2.4.62", libc="musl"),
        "obi",
        {"operator-httpd-musl"},
        ["fails on Alpine"],
    ),
    (
        9,
        "k8s-httpd-arm64",
        svc(K8S_PRIV, language="apache-httpd", runtime_version="2.4.62", arch="arm64"),
        "obi",
        {"operator-webserver-amd64-only"},
        ["amd64 only"],
    ),
    (
        10,
        "vm-ubuntu-java",
        svc(VM, language="java", runtime_version="17"),
        "injector",
        {"injector-vm", "injector-packages"},
        ["Not yet meant for production", "unsigned"],
    ),
    (
        10,
        "vm-rhel8-node-old-glibc",
        svc(RHEL8, language="nodejs", runtime_version="18.20.4", node_module_system="cjs"),
        "injector",
        {"injector-glibc-old"},
        ["v0.10.1", "injector#399"],
    ),
    (
        10,
        "vm-python-opt-in",
        svc(VM, language="python", runtime_version="3.11"),
        "injector",
        {"injector-python-opt-in"},
        ["opt-in"],
    ),
    (
        11,
        "vm-go",
        svc(VM, language="go", runtime_version="1.22", libc="static"),
        "obi",
        {"obi-native", "obi-vm-standalone"},
        ["systemd"],
    ),
    (
        12,
        "vm-alpine-musl-node",
        svc(
            VM,
            language="nodejs",
            runtime_version="20.11.1",
            libc="musl",
            distro="alpine-3.20",
            glibc_version=None,
            node_module_system="cjs",
        ),
        "injector",
        {"injector-musl-preload", "injector-raw-library"},
        ["ignores /etc/ld.so.preload", "LD_PRELOAD per service"],
    ),
    (
        12,
        "vm-sles-java",
        svc(VM, language="java", runtime_version="11", distro="sles-15"),
        "injector",
        {"injector-raw-library"},
        ["raw libotelinject_<arch>.so"],
    ),
    (
        13,
        "fargate-java",
        svc(FARGATE, language="java", runtime_version="21"),
        "agent-in-image",
        {"agent-in-image-ecs", "obi-fargate"},
        ["bind mount", "OBI: OBI is impossible on ECS Fargate"],
    ),
    (
        13,
        "fargate-dotnet",
        svc(FARGATE, language="dotnet", runtime_version="net8.0"),
        "agent-in-image",
        {"agent-in-image-ecs", "obi-fargate"},
        ["SYS_PTRACE"],
    ),
    (
        14,
        "fargate-go",
        svc(FARGATE, language="go", runtime_version="1.25", libc="static"),
        "compile-time",
        {"go-compile-time", "obi-fargate"},
        ["OBI is impossible on ECS Fargate"],
    ),
    (
        14,
        "fargate-rust",
        svc(FARGATE, language="rust", runtime_version="1.81"),
        "sdk",
        {"sdk-manual", "obi-fargate", "injector-no-runtime-agent"},
        ["OBI is impossible on ECS Fargate"],
    ),
    (
        15,
        "ecs-ec2-java",
        svc(ECS_EC2, language="java", runtime_version="17"),
        "agent-in-image",
        {"agent-in-image-ecs"},
        [],
    ),
    (
        15,
        "ecs-ec2-go",
        svc(ECS_EC2, language="go", runtime_version="1.24", libc="static"),
        "obi",
        {"obi-native", "obi-ecs-daemon"},
        ["DAEMON"],
    ),
    (
        15,
        "ecs-ec2-al2",
        svc(
            ECS_EC2,
            language="go",
            runtime_version="1.25",
            distro="amazon-linux-2",
            kernel="4.14.355-271.569.amzn2.x86_64",
            btf=False,
        ),
        "compile-time",
        {"obi-kernel-too-old", "obi-btf"},
        ["OBI: Kernel older than 5.8"],
    ),
    (
        16,
        "lambda-python",
        svc(LAMBDA, language="python", runtime_version="3.12"),
        "lambda-layer",
        {"lambda-layer", "obi-lambda"},
        ["cold-start", "OBI: The Lambda sandbox"],
    ),
    (
        16,
        "lambda-ruby",
        svc(LAMBDA, language="ruby", runtime_version="3.3"),
        "lambda-layer",
        {"lambda-layer"},
        [],
    ),
    (
        16,
        "lambda-dotnet",
        svc(LAMBDA, language="dotnet", runtime_version="net8.0"),
        "sdk",
        {"lambda-no-auto-layer", "sdk-manual"},
        ["Lambda layer: No auto-instrumentation layer"],
    ),
    (
        16,
        "lambda-go",
        svc(LAMBDA, language="go", runtime_version="1.23"),
        "sdk",
        {"lambda-no-auto-layer"},
        [],
    ),
    (
        17,
        "windows-netfx",
        svc(WINDOWS, language="dotnet", runtime_version="net48", runtime_flavor="netfx"),
        "dotnet-builtin",
        {"dotnet-windows", "windows-linux-only"},
        ["injector: OBI, the injector and the operator's Linux agents do not run on Windows"],
    ),
    (
        17,
        "windows-net462-too-old",
        svc(WINDOWS, language="dotnet", runtime_version="net452"),
        "sdk",
        {"dotnet-framework-too-old"},
        ["4.6.2"],
    ),
    (
        17,
        "windows-java",
        svc(WINDOWS, language="java", runtime_version="11"),
        "agent-in-image",
        {"agent-java-windows"},
        [],
    ),
    (
        18,
        "al2-java-agent-only",
        svc(AL2, language="java", runtime_version="8"),
        "injector",
        {"injector-vm", "obi-kernel-too-old", "obi-btf"},
        ["OBI: No BTF"],
    ),
    (
        18,
        "no-btf-go",
        svc(VM, language="go", runtime_version="1.25", btf=False, libc="static"),
        "compile-time",
        {"obi-btf"},
        ["No BTF"],
    ),
    (
        19,
        "rhel8-backport-php",
        svc(RHEL8, language="php", runtime_version="8.1"),
        "obi",
        {"obi-php", "obi-rhel-backport"},
        ["eBPF backports"],
    ),
    (
        19,
        "rhel8-early-cpp",
        svc(RHEL8, language="cpp", kernel="4.18.0-240.el8.x86_64"),
        "sdk",
        {"obi-rhel-early-418"},
        ["ring buffers"],
    ),
    (
        20,
        "graalvm-native",
        svc(K8S_PRIV, language="java", runtime_version="21", runtime_flavor="graalvm-native"),
        "obi",
        {"obi-graalvm-native", "graalvm-no-jvm"},
        ["operator: GraalVM native image"],
    ),
    (
        21,
        "existing-sdk-java",
        svc(VM, language="java", runtime_version="17", existing_sdk="opentelemetry-java 1.42"),
        "sdk",
        {"sdk-existing", "injector-existing-sdk"},
        ["injector: Already has an OpenTelemetry SDK"],
    ),
    (
        21,
        "existing-sdk-dotnet-k8s",
        svc(K8S, language="dotnet", runtime_version="net8.0", existing_sdk="OpenTelemetry 1.9"),
        "sdk",
        {"sdk-existing", "injector-existing-sdk"},
        ["operator: Already has an OpenTelemetry SDK"],
    ),
    (
        22,
        "dotnet-core-3.1",
        svc(K8S, language="dotnet", runtime_version="netcoreapp3.1"),
        "sdk",
        {"dotnet-too-old"},
        [".NET before 8"],
    ),
    (
        22,
        "python-3.9-vm",
        svc(VM, language="python", runtime_version="3.9"),
        "obi",
        {"python-too-old"},
        ["0.55b0"],
    ),
    (
        22,
        "node-16",
        svc(K8S, language="nodejs", runtime_version="16.20.2", node_module_system="cjs"),
        "sdk",
        {"node-version-unsupported"},
        ["upgrade the runtime"],
    ),
    (
        23,
        "head-sampling",
        svc(FARGATE, language="java", runtime_version="21", head_sampling_at_source=True),
        "agent-in-image",
        {"head-sampling-at-source"},
        [],
    ),
    (
        24,
        "use-fargate",
        svc(FARGATE, language="python", runtime_version="3.12"),
        "agent-in-image",
        {"use-metrics-fargate"},
        [],
    ),
    (24, "use-vm", svc(VM, language="java", runtime_version="21"), "injector", {"use-metrics-host"}, []),
]


def test_every_row_of_the_decision_table_has_a_case() -> None:
    assert {row for row, *_ in CASES} == set(range(1, 25))


@pytest.mark.parametrize(
    ("row", "case", "service", "path", "rules", "blockers"), CASES, ids=[c[1] for c in CASES]
)
def test_decision_table_row(
    row: int, case: str, service: Service, path: str, rules: set[str], blockers: list[str]
) -> None:
    e = evaluate(service)
    assert e.path == path, (row, case, e.path, e.reasons, e.blockers)
    assert e.status == "decided", (row, case, e.status, e.fill)
    missing = rules - set(e.rules)
    assert not missing, f"row {row} {case}: rules {missing} did not decide it (got {e.rules})"
    text = "\n".join(e.blockers)
    for b in blockers:
        assert b in text, f"row {row} {case}: {b!r} not in blockers:\n{text}"
    assert e.path in PATHS
    assert e.code_change is (path == "sdk" and service.get("existing_sdk") in (None, "none"))
    assert e.sources and all(e.sources[r] for r in e.rules), "every deciding rule cites a source"


def test_row_4_and_6_name_the_musl_annotations() -> None:
    py = evaluate(svc(K8S, language="python", runtime_version="3.11", libc="musl"))
    assert any("otel-python-platform: musl" in r for r in py.reasons)
    net = evaluate(svc(K8S, language="dotnet", runtime_version="net8.0", libc="musl"))
    assert any("otel-dotnet-auto-runtime: linux-musl-x64" in r for r in net.reasons)


def test_row_21_existing_sdk_keeps_obi_metrics_but_not_its_traces() -> None:
    e = evaluate(svc(VM, language="java", runtime_version="17", existing_sdk="opentelemetry-java 1.42"))
    obi = e.assessment("obi")
    assert obi is not None and obi.status == "eligible"
    assert "obi" in e.alternatives
    assert any("disable OBI traces" in c for c in obi.checks)
    assert "injector" not in e.alternatives and "operator" not in e.alternatives


def test_row_23_head_sampling_note_names_the_spanmetrics_problem() -> None:
    e = evaluate(svc(FARGATE, language="java", runtime_version="21", head_sampling_at_source=True))
    assert any("central spanmetrics under-count" in r for r in e.reasons)


def test_json_shape_is_exactly_the_issues() -> None:
    e = evaluate(svc(K8S, name="article-api", team="newsroom", language="java", runtime_version="21"))
    assert list(e.as_json()) == [
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
    assert e.as_json()["name"] == "article-api" and e.as_json()["team"] == "newsroom"


def test_the_packaged_rules_cover_every_row_and_cite_sources() -> None:
    from otelcockpit.adoption.eligibility import builtin_rules, builtin_rules_path

    rules = builtin_rules()
    assert builtin_rules_path().name == "rules.yaml" and builtin_rules_path().parent.name == "adoption"
    assert set(range(1, 25)) <= {row for r in rules for row in r.rows}
    for r in rules:
        # every rule cites a public source (a documentation page or a public repository's file or
        # issue), never a file of ours
        assert r.sources, r.id
        for src in r.sources:
            assert src.startswith("https://"), (r.id, src)
            assert "eligibility.md" not in src and "otelcockpit" not in src, (r.id, src)
        assert r.reason, r.id
