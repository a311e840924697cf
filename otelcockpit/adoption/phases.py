"""The four rollout phases, each a checklist computed from the fleet, the pipelines and the services.

1. Infrastructure: USE metrics on every host and node.
2. Baseline service visibility: RED metrics and network visibility with eBPF.
3. Transactions: traces and the metrics derived from them.
4. Custom logic and profiling.

Every item has an automatic check with a value (0..1), a threshold and evidence naming what
fails. A phase is at its threshold when its share of passing items reaches the phase threshold
(all items by default). When a later phase's work has started while an earlier phase is below its
threshold, the report carries a warning (and :func:`warnings_for_pipeline` says the same for a
pipeline about to be pushed). Manual sign-offs (who, when, note) are attached from the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from otelcockpit.adoption.eligibility import Eligibility
from otelcockpit.adoption.inventory import Inventory
from otelcockpit.adoption.journeys import Journey, ServiceCoverage, service_coverage, services_on_journeys
from otelcockpit.adoption.signals import HOST_ROLES, FleetView, group_text, kernel_supports_obi, names_of
from otelcockpit.fleet.model import Pipeline

PHASES: tuple[tuple[int, str, str], ...] = (
    (1, "Infrastructure", "USE metrics on every host and node"),
    (2, "Baseline service visibility", "RED metrics and network visibility (eBPF)"),
    (3, "Transactions", "traces and derived metrics"),
    (4, "Custom logic and profiling", "business metrics and continuous profiling"),
)
# Every automatic check, by id (sign-offs name these).
ITEM_IDS = (
    "p1.host-metrics",
    "p1.k8s-metrics",
    "p1.ecs-metrics",
    "p2.obi-hosts",
    "p2.journey-red",
    "p3.journey-traces",
    "p3.spanmetrics-central",
    "p3.no-source-sampling",
    "p3.no-tail-sampling",
    "p3.central-sampling",
    "p4.business-metrics",
    "p4.profiling",
)
# Pipeline kinds whose presence means a phase's work has started.
PHASE_WORK: Mapping[int, tuple[str, ...]] = {
    1: ("host-metrics", "k8s-metrics", "ecs-metrics"),
    2: ("obi",),
    3: ("spanmetrics", "tail-sampling", "source-sampling"),
    4: ("business-metrics", "profiling"),
}


@dataclass(frozen=True)
class SignOff:
    item: str
    by: str
    at: str  # RFC 3339
    note: str = ""


@dataclass(frozen=True)
class PhaseItem:
    id: str
    phase: int
    title: str
    value: float  # 0..1
    threshold: float
    evidence: str  # the figures
    failing: tuple[str, ...] = ()  # what fails, named
    signoff: SignOff | None = None

    @property
    def passed(self) -> bool:
        return self.value + 1e-9 >= self.threshold

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "phase": self.phase,
            "title": self.title,
            "passed": self.passed,
            "value": round(self.value, 4),
            "threshold": self.threshold,
            "evidence": self.evidence,
            "failing": list(self.failing),
            "signoff": None
            if self.signoff is None
            else {"by": self.signoff.by, "at": self.signoff.at, "note": self.signoff.note},
        }


@dataclass(frozen=True)
class Phase:
    number: int
    name: str
    goal: str
    items: tuple[PhaseItem, ...]
    threshold: float = 1.0
    started_by: tuple[str, ...] = ()  # pipelines showing this phase's work has begun

    @property
    def progress(self) -> float:
        return sum(1 for i in self.items if i.passed) / len(self.items) if self.items else 1.0

    @property
    def at_threshold(self) -> bool:
        return self.progress + 1e-9 >= self.threshold

    def as_json(self) -> dict[str, Any]:
        return {
            "phase": self.number,
            "name": self.name,
            "goal": self.goal,
            "progress": round(self.progress, 4),
            "threshold": self.threshold,
            "at_threshold": self.at_threshold,
            "started_by": list(self.started_by),
            "items": [i.as_json() for i in self.items],
        }


@dataclass(frozen=True)
class PhaseReport:
    phases: tuple[Phase, ...]
    warnings: tuple[str, ...] = ()
    services: Mapping[str, ServiceCoverage] = field(default_factory=dict)

    def item(self, item_id: str) -> PhaseItem | None:
        for p in self.phases:
            for i in p.items:
                if i.id == item_id:
                    return i
        return None

    def as_json(self) -> dict[str, Any]:
        return {"phases": [p.as_json() for p in self.phases], "warnings": list(self.warnings)}


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({(100.0 * n / d) if d else 100.0:.1f}%)"


def _fraction_item(
    view: FleetView,
    item_id: str,
    phase: int,
    title: str,
    population: Sequence[int],
    kind: str,
    threshold: float,
    what: str,
    excluded_note: str = "",
) -> PhaseItem:
    covered = [i for i in population if view.has_kind(i, kind)]
    missing = [i for i in population if not view.has_kind(i, kind)]
    value = len(covered) / len(population) if population else 1.0
    evidence = f"{_pct(len(covered), len(population))} {what}; threshold {threshold:.0%}"
    if not population:
        evidence = f"no collectors in scope ({what}): nothing to check"
    if excluded_note:
        evidence += f"; {excluded_note}"
    failing: tuple[str, ...] = ()
    if missing:
        failing = (
            f"{len(missing)} without: {group_text(view.collectors[i] for i in missing)} "
            f"(e.g. {names_of(view, missing)})",
        )
    return PhaseItem(item_id, phase, title, value, threshold, evidence, failing)


def _pipelines_on(view: FleetView, indexes: Sequence[int], kind: str) -> list[str]:
    return sorted({n for i in indexes for n in view.pipelines_with_kind_at(i, kind)})


def compute_phases(
    view: FleetView,
    inventory: Inventory,
    eligibility: Mapping[str, Eligibility],
    journeys: Sequence[Journey],
    *,
    signoffs: Mapping[str, SignOff] | None = None,
    thresholds: Mapping[int, float] | None = None,
) -> PhaseReport:
    signoffs = signoffs or {}
    thresholds = thresholds or {}
    cols = view.collectors
    by_role_platform = view.group("role", "platform")
    hosts = sorted(i for (role, _), ids in by_role_platform.items() if role in HOST_ROLES for i in ids)
    nodes = sorted(by_role_platform.get(("node-agent", "kubernetes"), []))
    ecs = sorted(i for (_, plat), ids in by_role_platform.items() if plat.startswith("ecs-") for i in ids)
    gateways = sorted(i for (role, _), ids in by_role_platform.items() if role == "gateway" for i in ids)
    non_gateways = sorted(i for (role, _), ids in by_role_platform.items() if role != "gateway" for i in ids)

    items: list[PhaseItem] = []
    # ---- phase 1 ----
    items.append(
        _fraction_item(
            view,
            "p1.host-metrics",
            1,
            "Host metrics (prometheus.exporter.unix or hostmetrics) on VM and node collectors",
            hosts,
            "host-metrics",
            0.95,
            "VM, node and ECS host collectors get a host metrics pipeline",
        )
    )
    items.append(
        _fraction_item(
            view,
            "p1.k8s-metrics",
            1,
            "Kubelet and cAdvisor metrics on every Kubernetes node",
            nodes,
            "k8s-metrics",
            0.95,
            "node collectors scrape the kubelet",
        )
    )
    items.append(
        _fraction_item(
            view,
            "p1.ecs-metrics",
            1,
            "ECS task and container metrics (awsecscontainermetrics)",
            ecs,
            "ecs-metrics",
            0.95,
            "ECS collectors read the task metadata endpoint",
        )
    )
    # ---- phase 2 ----
    capable: list[int] = []
    incapable: list[int] = []
    for i in hosts:
        c = cols[i]
        ok = kernel_supports_obi(c.attr("os.kernel"), c.attr("distro"))
        (capable if ok else incapable).append(i)
    note = ""
    if incapable:
        kernels = sorted({cols[i].attr("os.kernel") or "unknown" for i in incapable})
        note = f"{len(incapable)} hosts cannot run OBI (kernel {', '.join(kernels)})"
    items.append(
        _fraction_item(
            view,
            "p2.obi-hosts",
            2,
            "OBI (eBPF) RED metrics on every host that can run it",
            capable,
            "obi",
            0.90,
            "OBI-capable hosts run an OBI pipeline",
            note,
        )
    )
    on_journeys = services_on_journeys(journeys)
    coverage: dict[str, ServiceCoverage] = {}
    for name in services_on_journeys(journeys):
        svc = inventory.service(name)
        if svc is not None:
            coverage[name] = service_coverage(view, svc, eligibility.get(name))
    known = [n for n in on_journeys if n in coverage]
    missing_inv = [n for n in on_journeys if n not in coverage]
    no_red = [n for n in known if not coverage[n].red]
    red_fail = [f"{n}: {coverage[n].gap}" for n in no_red] + [
        f"{n}: not in the inventory" for n in missing_inv
    ]
    with_red = len(known) - len(no_red)
    items.append(
        PhaseItem(
            "p2.journey-red",
            2,
            "Every service on a critical journey has RED metrics (OBI or spanmetrics)",
            with_red / len(on_journeys) if on_journeys else 1.0,
            1.0,
            f"{_pct(with_red, len(on_journeys))} journey services have RED metrics",
            tuple(red_fail),
        )
    )
    # ---- phase 3 ----
    untraced = [n for n in known if not coverage[n].traced]
    traced = len(known) - len(untraced)
    items.append(
        PhaseItem(
            "p3.journey-traces",
            3,
            "Every service on a critical journey is traced",
            traced / len(on_journeys) if on_journeys else 1.0,
            1.0,
            f"{_pct(traced, len(on_journeys))} journey services emit traces",
            tuple(
                [f"{n}: {coverage[n].gap}" for n in untraced]
                + [f"{n}: not in the inventory" for n in missing_inv]
            ),
        )
    )
    items.append(
        _fraction_item(
            view,
            "p3.spanmetrics-central",
            3,
            "Span metrics computed centrally on the gateways",
            gateways,
            "spanmetrics",
            1.0,
            "gateways compute spanmetrics",
        )
    )
    central = bool(_pipelines_on(view, gateways, "spanmetrics"))
    src = [i for i in non_gateways if view.has_kind(i, "source-sampling")]
    head = [s.name for s in inventory.services if s.get("head_sampling_at_source") is True]
    fail: list[str] = []
    for name in _pipelines_on(view, src, "source-sampling"):
        n = len(view.reach.get(name, ()))
        fail.append(f"{name}: probabilistic_sampler on {n} collector(s) before the gateways")
    if head:
        fail.append(f"SDK head sampling in {len(head)} service(s): {', '.join(head[:5])}")
    if not central:
        fail = []  # nothing central to under-count
    items.append(
        PhaseItem(
            "p3.no-source-sampling",
            3,
            "No sampling at the source where span metrics are computed centrally",
            0.0 if fail else 1.0,
            1.0,
            ("span metrics are computed on the gateways; " if central else "no central span metrics; ")
            + f"{len(src)} collector(s) and {len(head)} service(s) sample at the source",
            tuple(fail),
        )
    )
    tail = view.pipelines_of_kind("tail-sampling")
    tail_live = [p.name for p in tail if view.reach.get(p.name)]
    items.append(
        PhaseItem(
            "p3.no-tail-sampling",
            3,
            "No tail sampling (it adds state to the gateways)",
            0.0 if tail_live else 1.0,
            1.0,
            f"{len(tail_live)} pipeline(s) with tail_sampling",
            tuple(f"{n}: tail_sampling on {len(view.reach[n])} collector(s)" for n in tail_live),
        )
    )
    non_gateway_set = set(non_gateways)
    samplers_outside = sorted(
        {
            n
            for i in non_gateways
            for n in view.by_collector[i]
            if {"tail-sampling", "source-sampling"} & view.kinds.get(n, frozenset())
        }
    )
    items.append(
        PhaseItem(
            "p3.central-sampling",
            3,
            "Sampling decided centrally (samplers only on the gateways)",
            0.0 if samplers_outside or head else 1.0,
            1.0,
            f"{len(samplers_outside)} sampling pipeline(s) outside the gateways, {len(head)} service(s) sampling in the SDK",
            tuple(
                [
                    f"{n}: runs on {group_text(cols[i] for i in view.reach[n] if i in non_gateway_set)}"
                    for n in samplers_outside
                ]
                + ([f"SDK samplers: {', '.join(head[:5])}"] if head else [])
            ),
        )
    )
    # ---- phase 4 ----
    prod_gateways = [i for i in gateways if cols[i].attr("env") == "prod"]
    biz = _pipelines_on(view, prod_gateways, "business-metrics")
    items.append(
        PhaseItem(
            "p4.business-metrics",
            4,
            "Custom business metrics reach the production gateways",
            (sum(1 for i in prod_gateways if view.has_kind(i, "business-metrics")) / len(prod_gateways))
            if prod_gateways
            else 0.0,
            1.0,
            f"{_pct(sum(1 for i in prod_gateways if view.has_kind(i, 'business-metrics')), len(prod_gateways))} "
            f"production gateways run a business-metrics pipeline ({', '.join(biz) or 'none'})",
            () if biz else ("no business-metrics pipeline reaches a production gateway",),
        )
    )
    prod_nodes = [i for i in nodes if cols[i].attr("env") == "prod"]
    prof_pipes = view.pipelines_of_kind("profiling")
    prof_reach = sum(1 for i in prod_nodes if view.has_kind(i, "profiling"))
    prof_fail: list[str] = []
    for p in prof_pipes:
        envs = sorted({cols[i].attr("env") for i in view.reach.get(p.name, ())})
        if prof_reach < len(prod_nodes):
            prof_fail.append(
                f"{p.name} reaches {prof_reach} production node(s) (envs: {', '.join(envs) or 'none'})"
            )
    if not prof_pipes:
        prof_fail.append("no profiling pipeline (pyroscope) is enabled")
    items.append(
        PhaseItem(
            "p4.profiling",
            4,
            "Continuous profiling on the production nodes",
            prof_reach / len(prod_nodes) if prod_nodes else 0.0,
            0.5,
            f"{_pct(prof_reach, len(prod_nodes))} production nodes run a profiling pipeline; threshold 50%",
            tuple(prof_fail),
        )
    )

    items = [i if i.id not in signoffs else _with_signoff(i, signoffs[i.id]) for i in items]
    phases: list[Phase] = []
    for number, name, goal in PHASES:
        started = sorted(
            {
                p.name
                for kind in PHASE_WORK[number]
                for p in view.pipelines_of_kind(kind)
                if view.reach.get(p.name)
            }
        )
        phases.append(
            Phase(
                number=number,
                name=name,
                goal=goal,
                items=tuple(i for i in items if i.phase == number),
                threshold=thresholds.get(number, 1.0),
                started_by=tuple(started),
            )
        )
    return PhaseReport(tuple(phases), tuple(order_warnings(phases)), coverage)


def _with_signoff(item: PhaseItem, s: SignOff) -> PhaseItem:
    return PhaseItem(
        item.id, item.phase, item.title, item.value, item.threshold, item.evidence, item.failing, s
    )


def _behind(phase: Phase) -> str:
    passed = sum(1 for i in phase.items if i.passed)
    return (
        f"phase {phase.number} ({phase.name}) is below its threshold: {passed}/{len(phase.items)} items pass "
        f"(needs {phase.threshold:.0%})"
    )


def order_warnings(phases: Sequence[Phase]) -> list[str]:
    """A later phase's work has started while an earlier phase is below its threshold."""
    out: list[str] = []
    for later in phases:
        if not later.started_by:
            continue
        behind = [p for p in phases if p.number < later.number and not p.at_threshold]
        if behind:
            out.append(
                f"phase {later.number} ({later.name}) has started ({', '.join(later.started_by)}) while "
                + "; ".join(_behind(p) for p in behind)
            )
    return out


def phase_of_pipeline(p: Pipeline) -> int | None:
    """The latest phase whose work this pipeline does (None: not phase work)."""
    from otelcockpit.adoption.signals import pipeline_kinds

    kinds = pipeline_kinds(p)
    found = [n for n, ks in PHASE_WORK.items() if set(ks) & kinds]
    return max(found) if found else None


def warnings_for_pipeline(report: PhaseReport, p: Pipeline) -> list[str]:
    """For a push: warn when the pipeline starts a phase whose earlier phases are below threshold."""
    number = phase_of_pipeline(p)
    if number is None:
        return []
    behind = [ph for ph in report.phases if ph.number < number and not ph.at_threshold]
    if not behind:
        return []
    name = next(ph.name for ph in report.phases if ph.number == number)
    return [
        f"pipeline {p.name} is phase {number} ({name}) work, but " + "; ".join(_behind(ph) for ph in behind)
    ]
