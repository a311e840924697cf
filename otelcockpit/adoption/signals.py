"""What the fleet's pipelines do, read from their contents, and where a service's telemetry goes.

``pipeline_kinds`` classifies a pipeline by the components it uses (host metrics, OBI, span
metrics, samplers, profiling, ...). :class:`FleetView` precomputes, once per snapshot, which
collectors each enabled pipeline reaches, so the phase checks and journeys stay cheap at
100,000 collectors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from otelcockpit.adoption.eligibility import compare_versions, version_tuple
from otelcockpit.adoption.inventory import Service
from otelcockpit.fleet.matching import PipelineMatcher
from otelcockpit.fleet.model import Collector, FleetSnapshot, Pipeline

HOST_ROLES = ("node-agent", "host-agent", "ecs-daemon")

_KIND_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("host-metrics", re.compile(r"prometheus\.exporter\.unix|^\s*hostmetrics(/[\w-]+)?\s*:", re.M)),
    (
        "k8s-metrics",
        re.compile(r"kubeletstats|k8s_cluster|/metrics/cadvisor|prometheus\.scrape\s+\"kubelet\""),
    ),
    ("ecs-metrics", re.compile(r"awsecscontainermetrics")),
    ("obi", re.compile(r"beyla\.ebpf|^\s*obi(/[\w-]+)?\s*:", re.M)),
    ("spanmetrics", re.compile(r"spanmetrics")),
    ("tail-sampling", re.compile(r"tail_sampling")),
    ("source-sampling", re.compile(r"probabilistic_sampler")),
    ("traces", re.compile(r"^\s*traces(/[\w-]+)?\s*:|otelcol\.receiver\.otlp|traces\s*=\s*\[", re.M)),
    ("profiling", re.compile(r"pyroscope\.|^\s*profiles(/[\w-]+)?\s*:", re.M)),
    ("logs", re.compile(r"loki\.|^\s*logs(/[\w-]+)?\s*:", re.M)),
)
_BUSINESS_NAME = re.compile(r"business|custom", re.I)


def pipeline_kinds(p: Pipeline) -> frozenset[str]:
    kinds = {kind for kind, rx in _KIND_PATTERNS if rx.search(p.contents)}
    if _BUSINESS_NAME.search(p.name):
        kinds.add("business-metrics")
    return frozenset(kinds)


@lru_cache(maxsize=4096)
def kernel_supports_obi(kernel: str, distro: str = "") -> bool | None:
    """Kernel >= 5.8, or RHEL family >= 4.18 with a backported build (> 4.18.0-240)."""
    if not kernel:
        return None
    v = version_tuple(kernel)
    if v is None:
        return None
    if compare_versions(v, (5, 8)) >= 0:
        return True
    rhel = bool(re.search(r"rhel|centos|rocky|alma|el\d", f"{distro} {kernel}", re.I))
    if rhel and compare_versions(v, (4, 18)) >= 0:
        m = re.match(r"^\d+\.\d+\.\d+-(\d+)", kernel)
        return bool(m and int(m.group(1)) > 240)
    return False


@dataclass
class FleetView:
    """A snapshot with pipeline reach precomputed (enabled pipelines only), in one pass."""

    snapshot: FleetSnapshot
    kinds: dict[str, frozenset[str]] = field(default_factory=dict)
    reach: dict[str, tuple[int, ...]] = field(default_factory=dict)  # pipeline -> collector indexes
    by_collector: list[tuple[str, ...]] = field(default_factory=list)
    kinds_at: list[frozenset[str]] = field(default_factory=list)
    _groups: dict[tuple[str, ...], dict[tuple[str, ...], list[int]]] = field(default_factory=dict)

    @classmethod
    def build(cls, snapshot: FleetSnapshot) -> FleetView:
        view = cls(snapshot)
        for p in snapshot.pipelines:
            view.kinds[p.name] = pipeline_kinds(p)
        matcher = PipelineMatcher(p for p in snapshot.pipelines if p.enabled)
        reach: dict[str, list[int]] = {p.name: [] for p in snapshot.pipelines}
        kind_memo: dict[tuple[str, ...], frozenset[str]] = {}
        for i, c in enumerate(snapshot.collectors):
            names = matcher.names_for(c)
            view.by_collector.append(names)
            for n in names:
                reach[n].append(i)
            ks = kind_memo.get(names)
            if ks is None:
                ks = kind_memo[names] = frozenset(k for n in names for k in view.kinds.get(n, ()))
            view.kinds_at.append(ks)
        view.reach = {n: tuple(v) for n, v in reach.items()}
        return view

    @property
    def collectors(self) -> tuple[Collector, ...]:
        return self.snapshot.collectors

    def pipelines_of_kind(self, kind: str) -> list[Pipeline]:
        return [p for p in self.snapshot.pipelines if kind in self.kinds.get(p.name, ()) and p.enabled]

    def has_kind(self, index: int, kind: str) -> bool:
        return kind in self.kinds_at[index]

    def pipelines_with_kind_at(self, index: int, kind: str) -> list[str]:
        if kind not in self.kinds_at[index]:
            return []
        return [n for n in self.by_collector[index] if kind in self.kinds.get(n, ())]

    def indexes(self, pred) -> list[int]:  # noqa: ANN001 - a predicate on Collector
        return [i for i, c in enumerate(self.collectors) if pred(c)]

    def group(self, *keys: str) -> dict[tuple[str, ...], list[int]]:
        """Collector indexes by the values of ``keys`` (built once per key set)."""
        hit = self._groups.get(keys)
        if hit is None:
            hit = {}
            for i, c in enumerate(self.collectors):
                hit.setdefault(tuple(c.attr(k) for k in keys), []).append(i)
            self._groups[keys] = hit
        return hit


def service_collector_indexes(view: FleetView, svc: Service) -> list[int]:
    """The collectors that see a service's hosts (node agents of its cluster, its VM hosts, ...)."""
    platform = svc.get("platform")
    env, region, cluster = svc.get("env"), svc.get("region"), svc.get("cluster")
    if platform == "kubernetes" and cluster:
        nodes = view.group("cluster", "role").get((str(cluster), "node-agent"), [])
        # collectors that describe themselves with the semantic conventions: on a node of the cluster
        semconv = [
            i
            for i in view.group("k8s.cluster.name").get((str(cluster),), [])
            if view.collectors[i].attr("k8s.node.name")
        ]
        if not semconv:
            return nodes
        seen = set(nodes)
        return nodes + [i for i in semconv if i not in seen]
    if platform == "vm":
        if env is None or region is None:
            return [
                i
                for (p, e, r), ids in view.group("platform", "env", "region").items()
                if p == "vm" and (env is None or e == env) and (region is None or r == region)
                for i in ids
            ]
        return view.group("platform", "env", "region").get(("vm", str(env), str(region)), [])
    if platform == "ecs-ec2" and cluster:
        return view.group("ecs.cluster", "role").get((str(cluster), "ecs-daemon"), [])
    if platform == "ecs-fargate" and cluster:
        return view.group("ecs.cluster", "role").get((str(cluster), "sidecar"), [])
    return []


def gateway_indexes(view: FleetView, svc: Service) -> list[int]:
    env, region = svc.get("env"), svc.get("region")
    return [
        i
        for (role, e, r), ids in view.group("role", "env", "region").items()
        if role == "gateway" and (env is None or e == env) and (region is None or r == region)
        for i in ids
    ]


def names_of(view: FleetView, indexes: Sequence[int], limit: int = 3) -> str:
    names = [view.collectors[i].name for i in indexes[:limit]]
    more = len(indexes) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def group_text(collectors: Iterable[Collector], keys: Sequence[str] = ("env", "region", "role")) -> str:
    """``env=dev region=us-east-1 role=ecs-daemon: 8`` lines for a set of collectors, largest first."""
    counts: dict[str, int] = {}
    for c in collectors:
        label = " ".join(f"{k}={c.attr(k)}" for k in keys if c.attr(k))
        counts[label] = counts.get(label, 0) + 1
    return "; ".join(f"{label}: {n}" for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
