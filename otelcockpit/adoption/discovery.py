"""What the fleet tells about the services: fill the inventory's unknown fields, keep the conflicts.

Two kinds of reporters:

- **The service's own agents**: an SDK-embedded OpAMP client (or any agent that reports
  ``service.name`` with ``telemetry.sdk.language``) describes the process and the host it runs
  on: language, runtime, ``os.type``, ``host.arch``, ``os.description`` (the distribution, and on
  Linux often the kernel's uname string), Kubernetes and cloud attributes, the container runtime.
- **The collectors on the service's hosts**: the node agents of its Kubernetes cluster, the host
  agents of its VMs, the ECS daemons and Fargate sidecars of its ECS cluster (the same association
  the phase checks use, :func:`~otelcockpit.adoption.signals.service_collector_indexes`). Fleet
  Management collectors report ``collector.os`` and whatever attributes they are given; OpAMP
  agents report ``os.type``, ``host.arch``, ``os.description``. They describe where the service
  *may* run: when they disagree (a node pool of amd64 and arm64 nodes) the field stays unknown
  and the engine evaluates the rules over the values they report.

The inventory's value always stays in force. A report that contradicts it is kept as a
:class:`~otelcockpit.adoption.inventory.Conflict`: any report of the service's own agents, or host
reports none of which agrees with the file. Every filled value records its origin.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from otelcockpit.adoption.inventory import (
    ARCH_MAP,
    LANGUAGES,
    SDK_LANGUAGE_MAP,
    Conflict,
    Inventory,
    Origin,
    Service,
)

# os.description -> a distribution name the inventory uses ("ubuntu-22.04", "rhel-8.10", ...)
_DISTROS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rx, re.I), fmt)
    for rx, fmt in (
        (r"\bubuntu\s+(\d+\.\d+)", "ubuntu-{}"),
        (r"\bdebian\b\D*?(\d+)", "debian-{}"),
        (r"red hat enterprise linux(?:\s+server)?(?:\s+release)?\s+(\d+(?:\.\d+)?)", "rhel-{}"),
        (r"\brocky linux\s+(\d+(?:\.\d+)?)", "rocky-{}"),
        (r"\balma\s*linux\s+(\d+(?:\.\d+)?)", "alma-{}"),
        (r"\bcentos(?:\s+stream|\s+linux)?\s+(\d+(?:\.\d+)?)", "centos-{}"),
        (r"\boracle linux(?:\s+server)?\s+(\d+(?:\.\d+)?)", "oracle-{}"),
        (r"\bfedora(?:\s+linux)?\s+(\d+)", "fedora-{}"),
        (r"\balpine linux\s+v?(\d+\.\d+)", "alpine-{}"),
        (r"\bamazon linux\s+(2023|2)\b", "amazon-linux-{}"),
        (r"\bsuse linux enterprise server\s+(\d+)", "sles-{}"),
        (r"\bbottlerocket\b", "bottlerocket"),
        (r"container-optimized os", "cos"),
        (r"\bflatcar\b", "flatcar"),
        (r"\btalos\b", "talos"),
        (r"\bopensuse\b", "opensuse"),
    )
)
# A Linux kernel release inside a uname-like string: "Linux web-1 5.15.0-1056-aws #61-Ubuntu ..."
_KERNEL_IN_TEXT = re.compile(r"\bLinux\s+(?:\S+\s+)?([3-9]\.\d+\.\d+[^\s)#]*)")
_KERNEL = re.compile(r"^[3-9]\.\d+(?:\.\d+)?(?:[-+.][\w.+-]*)?$")
_OS_TYPES = {"linux": "linux", "windows": "windows", "darwin": "macos", "macos": "macos"}
# cloud.platform (semantic conventions) -> (platform, Kubernetes distribution)
_CLOUD_PLATFORMS: Mapping[str, tuple[str, str]] = {
    "aws_eks": ("kubernetes", "eks"),
    "azure_aks": ("kubernetes", "aks"),
    "gcp_kubernetes_engine": ("kubernetes", "gke"),
    "aws_openshift": ("kubernetes", "openshift"),
    "azure_openshift": ("kubernetes", "openshift"),
    "gcp_openshift": ("kubernetes", "openshift"),
    "ibm_cloud_openshift": ("kubernetes", "openshift"),
    "aws_lambda": ("lambda", ""),
    "aws_ec2": ("vm", ""),
    "azure_vm": ("vm", ""),
    "gcp_compute_engine": ("vm", ""),
}
# Fields the collectors on a service's hosts can tell (the host's, not the application's).
HOST_FIELDS = ("arch", "kernel", "host_distro", "os", "k8s_distribution")
# What each field was read from, for the origin text.
_ATTRIBUTE_OF = {
    "language": "telemetry.sdk.language",
    "runtime_version": "process.runtime.version",
    "runtime_flavor": "process.runtime.name",
    "os": "os.type",
    "arch": "host.arch",
    "kernel": "kernel release",
    "distro": "os.description",
    "host_distro": "os.description",
    "platform": "k8s/cloud attributes",
    "cluster": "k8s.cluster.name",
    "k8s_distribution": "cloud.platform",
}


def parse_os_description(text: str) -> tuple[str | None, str | None]:
    """``os.description`` -> (distribution, kernel release), either None when it does not say.

    ``"Ubuntu 22.04.4 LTS (Jammy Jellyfish) (Linux web-1 5.15.0-1056-aws #61-Ubuntu SMP ...)"``
    -> ``("ubuntu-22.04", "5.15.0-1056-aws")``; ``"Alpine Linux v3.20"`` -> ``("alpine-3.20", None)``.
    """
    if not text:
        return None, None
    distro = None
    for rx, fmt in _DISTROS:
        m = rx.search(text)
        if m:
            distro = fmt.format(*m.groups())
            break
    k = _KERNEL_IN_TEXT.search(text)
    return distro, (k.group(1) if k else None)


def describe(attr: Callable[[str], str]) -> dict[str, tuple[str, str]]:
    """What one reporter's attributes tell: field -> (value, the attribute it came from)."""
    out: dict[str, tuple[str, str]] = {}
    os_type = (attr("os.type") or attr("collector.os")).strip().lower()
    if os_type:
        out["os"] = (_OS_TYPES.get(os_type, os_type), "os.type" if attr("os.type") else "collector.os")
    arch = (attr("host.arch") or attr("os.arch")).strip().lower()
    if arch:
        out["arch"] = (ARCH_MAP.get(arch, arch), "host.arch" if attr("host.arch") else "os.arch")
    distro, kernel = parse_os_description(attr("os.description"))
    if distro is None and attr("os.name"):
        distro, _ = parse_os_description(f"{attr('os.name')} {attr('os.version')}")
    if distro is None and attr("distro"):
        distro = attr("distro").strip().lower()
    if distro:
        out["distro"] = (distro, "os.description" if attr("os.description") else "distro")
        if os_type == "" and not distro.startswith("windows"):
            out["os"] = ("linux", "os.description")
    explicit = attr("os.kernel") or attr("host.kernel")
    version = attr("os.version")
    if explicit and _KERNEL.match(explicit.strip()):
        out["kernel"] = (explicit.strip(), "os.kernel" if attr("os.kernel") else "host.kernel")
    elif kernel:
        out["kernel"] = (kernel, "os.description")
    elif version and out.get("os", ("",))[0] == "linux" and _KERNEL.match(version) and "-" in version:
        out["kernel"] = (version.strip(), "os.version")
    cloud = attr("cloud.platform").strip().lower()
    platform, k8s = _CLOUD_PLATFORMS.get(cloud, ("", ""))
    if attr("k8s.pod.name") or attr("k8s.node.name") or attr("k8s.cluster.name"):
        platform = "kubernetes"
    if cloud == "aws_ecs":
        launch = attr("aws.ecs.launchtype").strip().lower()
        platform = {"fargate": "ecs-fargate", "ec2": "ecs-ec2"}.get(launch, "")
    if platform:
        out["platform"] = (platform, "cloud.platform" if cloud else "k8s.* attributes")
    if platform == "kubernetes":
        if attr("k8s.node.name").startswith("fargate-") and (k8s == "eks" or not k8s):
            k8s = "eks-fargate"  # EKS names Fargate nodes fargate-ip-...
        if k8s:
            out["k8s_distribution"] = (k8s, "cloud.platform" if cloud else "k8s.node.name")
        if attr("k8s.cluster.name"):
            out["cluster"] = (attr("k8s.cluster.name"), "k8s.cluster.name")
    runtime = attr("container.runtime") or attr("container.runtime.name")
    if runtime:
        out["container"] = (runtime, "container.runtime")
    return out


def _app_report(c: Any) -> tuple[str, dict[str, tuple[str, str]]] | None:
    """(service name, fields) for an agent that reports about an application, else None.

    Only reporters that name an SDK language count (a Collector reporting its own
    ``service.name`` such as ``otelcol-contrib`` is not an application).
    """
    attr = c.attr
    name = attr("service.name")
    lang = attr("telemetry.sdk.language")
    if not name or not lang:
        return None
    found = describe(attr)
    found["language"] = (SDK_LANGUAGE_MAP.get(lang.lower(), lang.lower()), "telemetry.sdk.language")
    runtime = attr("process.runtime.version")
    if runtime:
        found["runtime_version"] = (runtime.strip().lstrip("v"), "process.runtime.version")
    rname = attr("process.runtime.name")
    if rname and "graal" in rname.lower() and "native" in rname.lower():
        found["runtime_flavor"] = ("graalvm-native", "process.runtime.name")
    return name, found


def discovered_reports(collectors: Iterable[Any]) -> dict[str, list[tuple[str, dict[str, tuple[str, str]]]]]:
    """What agents report about applications: service name -> [(reporter, {field: (value, attribute)})]."""
    out: dict[str, list[tuple[str, dict[str, tuple[str, str]]]]] = {}
    for c in collectors:
        rep = _app_report(c)
        if rep is None:
            continue
        name, found = rep
        out.setdefault(name, []).append((getattr(c, "name", "") or getattr(c, "id", "agent"), found))
    return out


def _same(field_name: str, inventory_value: Any, discovered: str) -> bool:
    a = str(inventory_value).strip().lower()
    b = discovered.strip().lower()
    if field_name == "language":
        fam = {"kotlin": "java", "scala": "java"}
        return fam.get(a, a) == fam.get(b, b)
    if field_name in ("runtime_version", "kernel", "distro", "host_distro"):
        # "21" matches "21.0.4"; "net8.0" matches "8.0.10"; "4.18" matches "4.18.0-553.el8";
        # "rhel-8" matches "rhel-8.10"
        a2 = re.sub(r"^(netcoreapp|net)", "", a)
        return b == a2 or b.startswith((a2 + ".", a2 + "-")) or a2.startswith((b + ".", b + "-"))
    return a == b


# ---- the collectors on a service's hosts ----------------------------------------------------


@dataclass(frozen=True)
class HostReport:
    """What the collectors of one host group report: field -> Counter of values."""

    label: str  # "the 64 node agents of cluster prod-eu-1"
    size: int
    values: Mapping[str, Counter[str]]


def _group_label(svc: Service, n: int) -> str:
    platform = svc.get("platform")
    env, region, cluster = svc.get("env"), svc.get("region"), svc.get("cluster")
    if platform == "kubernetes":
        return f"the {n} node agents of cluster {cluster}"
    if platform == "vm":
        where = "/".join(str(x) for x in (env, region) if x) or "any env and region"
        return f"the {n} VM host agents in {where}"
    if platform == "ecs-ec2":
        return f"the {n} ECS daemons of cluster {cluster}"
    if platform == "ecs-fargate":
        return f"the {n} Fargate sidecars of cluster {cluster}"
    return f"{n} collectors"


def _host_report(view: Any, svc: Service, cache: dict[Any, HostReport | None]) -> HostReport | None:
    from otelcockpit.adoption.signals import service_collector_indexes

    key = (svc.get("platform"), svc.get("env"), svc.get("region"), svc.get("cluster"))
    if key in cache:
        return cache[key]
    indexes = service_collector_indexes(view, svc)
    report: HostReport | None = None
    if indexes:
        values: dict[str, Counter[str]] = {}
        collectors = view.collectors
        for i in indexes:
            for f, (value, _attr) in describe(collectors[i].attr).items():
                if f == "distro":
                    f = "host_distro"
                if f in HOST_FIELDS:
                    values.setdefault(f, Counter())[value] += 1
        report = HostReport(_group_label(svc, len(indexes)), len(indexes), values)
    cache[key] = report
    return report


def _counts_text(counter: Counter[str]) -> str:
    return ", ".join(f"{v} ({n})" for v, n in counter.most_common())


def _merge_service(
    svc: Service,
    reports: Sequence[tuple[str, dict[str, tuple[str, str]]]],
    host: HostReport | None,
) -> Service:
    fields = dict(svc.fields)
    origins = dict(svc.origins)
    candidates = dict(svc.candidates)
    filled: dict[str, str] = dict(svc.discovered)
    conflicts: list[Conflict] = list(svc.conflicts)

    def conflict(key: str, inv: str, value: str, reporter: str) -> None:
        if not any(c.field == key and c.discovered == value for c in conflicts):
            conflicts.append(Conflict(key, inv, value, reporter))

    # 1. The service's own agents: every report that contradicts the file is a conflict.
    own: dict[str, dict[str, list[str]]] = {}  # field -> value -> reporters
    attrs: dict[str, str] = {}
    for reporter, found in reports:
        for key, (value, attribute) in found.items():
            if key == "container":
                platform = fields.get("platform")
                if platform in ("vm", "windows"):
                    conflict("platform", str(platform), f"a container ({value})", reporter)
                continue
            if key in svc.fields:
                if not _same(key, svc.fields[key], value):
                    conflict(key, str(svc.fields[key]), value, reporter)
                continue
            own.setdefault(key, {}).setdefault(value, []).append(reporter)
            attrs.setdefault(key, attribute)
    for key, by_value in own.items():
        if key == "language" and not any(v in LANGUAGES for v in by_value):
            continue
        values = sorted(by_value, key=lambda v: (-len(by_value[v]), v))
        who = sorted({r for rs in by_value.values() for r in rs})
        names = ", ".join(who[:3]) + (f" and {len(who) - 3} more" if len(who) > 3 else "")
        if len(values) == 1:
            fields[key] = values[0]
            filled[key] = values[0]
            origins[key] = Origin("discovered", f"{names}, {_ATTRIBUTE_OF.get(key, attrs[key])}")
        else:
            candidates[key] = tuple(values)
            origins[key] = Origin(
                "discovered",
                f"one of {', '.join(values)} ({names}, {_ATTRIBUTE_OF.get(key, attrs[key])})",
            )
    # 2. The collectors on the service's hosts.
    if host is not None:
        vm = fields.get("platform") == "vm"
        for key, counter in host.values.items():
            targets = [key]
            if key == "host_distro" and vm:
                targets = ["distro"]  # a VM's OS is the application's OS
            if key == "k8s_distribution" and fields.get("platform") != "kubernetes":
                continue
            for target in targets:
                inventory_value = svc.fields.get(target)
                if inventory_value is not None:
                    if not any(_same(target, inventory_value, v) for v in counter):
                        conflict(target, str(inventory_value), _counts_text(counter), host.label)
                    continue
                if target in fields or target in candidates:
                    continue  # the service's own agents said it already
                attribute = _ATTRIBUTE_OF.get(target, target)
                if len(counter) == 1:
                    (value,) = counter
                    fields[target] = value
                    filled[target] = value
                    origins[target] = Origin("discovered", f"{host.label}, {attribute}")
                else:
                    candidates[target] = tuple(v for v, _ in counter.most_common())
                    origins[target] = Origin(
                        "discovered", f"one of {_counts_text(counter)} on {host.label}, {attribute}"
                    )
    if fields == svc.fields and candidates == svc.candidates and len(conflicts) == len(svc.conflicts):
        return svc
    return replace(
        svc,
        fields=fields,
        origins=origins,
        candidates=candidates,
        discovered=filled,
        conflicts=tuple(conflicts),
    )


def merge_discovered(inventory: Inventory, collectors: Sequence[Any], view: Any = None) -> Inventory:
    """Fill unknown fields from what the fleet reports; keep disagreements as conflicts.

    ``view`` (a :class:`~otelcockpit.adoption.signals.FleetView` of the same collectors) lets the
    collectors on a service's hosts fill host fields; without it only the service's own agents
    count. Services reported by agents but absent from the file are added (``only_discovered``).
    """
    reports = discovered_reports(collectors)
    cache: dict[Any, HostReport | None] = {}
    out: list[Service] = []
    for svc in inventory.services:
        rep = reports.pop(svc.name, [])
        host = _host_report(view, svc, cache) if view is not None and svc.get("platform") else None
        out.append(_merge_service(svc, rep, host) if rep or host else svc)
    for name, rep in sorted(reports.items()):
        bare = Service(name=name, fields={}, origin="discovered", only_discovered=True)
        merged = _merge_service(bare, rep, None)
        if merged.fields.get("language") not in LANGUAGES:
            merged = replace(merged, fields={k: v for k, v in merged.fields.items() if k != "language"})
        out.append(merged)
    return Inventory(services=tuple(out), path=inventory.path)
