"""Critical user journeys: each one's services times their instrumentation state.

A service on a journey scores 1 when it is traced **and** has RED metrics, 0.5 with only one of
the two, 0 with neither. A journey's coverage is the mean score; its first gap is the first
service, in request order, that is not fully covered, with the reason.

RED metrics come from OBI (an OBI pipeline reaches the service's collectors and OBI is eligible
for it) or from span metrics computed centrally on the gateways from unsampled traces. Traces
come from what is deployed (``instrumentation`` in the inventory) reaching a traces pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otelcockpit.adoption.eligibility import PATH_LABELS, Eligibility
from otelcockpit.adoption.inventory import Inventory, Service
from otelcockpit.adoption.signals import FleetView, gateway_indexes, names_of, service_collector_indexes
from otelcockpit.errors import ConfigError
from otelcockpit.yamlio import load_yaml

TRACE_PRODUCERS = (
    "operator",
    "injector",
    "agent-in-image",
    "lambda-layer",
    "sdk",
    "compile-time",
    "dotnet-builtin",
)


@dataclass(frozen=True)
class Journey:
    id: str
    name: str
    services: tuple[str, ...]
    owner: str = ""
    description: str = ""
    origin: str = ""


def parse_journeys(data: Any, origin: str) -> tuple[Journey, ...]:
    if data is None:
        return ()
    if not isinstance(data, Mapping) or not isinstance(data.get("journeys"), list):
        raise ConfigError(f"{origin}: expected a mapping with a 'journeys' list")
    out: list[Journey] = []
    seen: set[str] = set()
    for raw in data["journeys"]:
        line = getattr(raw, "line", None)
        where = f"{origin}:{line}" if line else origin
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: each journey must be a mapping")
        jid = str(raw.get("id") or "")
        if not jid:
            raise ConfigError(f"{where}: a journey needs an id")
        if jid in seen:
            raise ConfigError(f"{where}: journey {jid!r} is listed twice")
        seen.add(jid)
        services = raw.get("services")
        if not isinstance(services, list) or not services:
            raise ConfigError(f"{where}: journey {jid!r} needs a non-empty services list (in request order)")
        out.append(
            Journey(
                id=jid,
                name=str(raw.get("name") or jid),
                services=tuple(str(s) for s in services),
                owner=str(raw.get("owner") or ""),
                description=str(raw.get("description") or ""),
                origin=where,
            )
        )
    return tuple(out)


def load_journeys(path: Path) -> tuple[Journey, ...]:
    return parse_journeys(load_yaml(path), str(path))


@dataclass(frozen=True)
class ServiceCoverage:
    name: str
    traced: bool
    red: bool
    red_source: str  # "obi", "spanmetrics", "obi+spanmetrics" or ""
    score: float
    gap: str  # why it is not fully covered; "" when it is
    instrumentation: str = ""
    path: str = ""  # the recommended zero-code path

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.name,
            "traced": self.traced,
            "red": self.red,
            "red_source": self.red_source,
            "score": self.score,
            "instrumentation": self.instrumentation,
            "path": self.path,
            "gap": self.gap,
        }


def service_coverage(view: FleetView, svc: Service, elig: Eligibility | None) -> ServiceCoverage:
    inst = svc.instrumentation
    mine = service_collector_indexes(view, svc)
    gws = gateway_indexes(view, svc)
    path = elig.path if elig else ""

    obi_assessment = elig.assessment("obi") if elig else None
    obi_ok = obi_assessment is not None and obi_assessment.status == "eligible"
    obi_pipes = sorted({n for i in mine for n in view.pipelines_with_kind_at(i, "obi")})
    red_obi = obi_ok and bool(obi_pipes)

    traced = False
    trace_gap = ""
    if inst is None:
        trace_gap = "instrumentation unknown (not in the inventory)"
    elif inst in TRACE_PRODUCERS:
        trace_pipes = sorted({n for i in (*mine, *gws) for n in view.pipelines_with_kind_at(i, "traces")})
        if inst == "lambda-layer" or trace_pipes:
            traced = True
        else:
            trace_gap = f"instrumented ({inst}) but no traces pipeline reaches its collectors or gateways"
    else:
        hint = (
            f"; recommended: {PATH_LABELS.get(path, path)}" if path and path not in ("unknown", "sdk") else ""
        )
        if path == "sdk" and elig is not None and elig.code_change:
            hint = "; only a code change (SDK) will do"
        trace_gap = f"not traced (instrumentation: {inst}{hint})"
        if path == "obi" and red_obi:
            trace_gap = "not traced: OBI gives it RED metrics, but OBI spans join traces only with context propagation (off by default)"

    sampled_by = sorted({n for i in mine for n in view.pipelines_with_kind_at(i, "source-sampling")})
    head_sampled = svc.get("head_sampling_at_source") is True
    central = sorted({n for i in gws for n in view.pipelines_with_kind_at(i, "spanmetrics")})
    red_span = traced and bool(central) and not sampled_by and not head_sampled

    red = red_obi or red_span
    red_source = "+".join(x for x, ok in (("obi", red_obi), ("spanmetrics", red_span)) if ok)
    red_gap = ""
    if not red:
        if traced and (sampled_by or head_sampled):
            where = ", ".join(sampled_by) if sampled_by else "the SDK's head sampler"
            red_gap = f"RED under-counted: sampled at the source ({where}) before the gateways' spanmetrics"
        elif obi_ok and not obi_pipes:
            red_gap = f"no OBI pipeline reaches its collectors ({names_of(view, mine) or 'none found'})"
        elif obi_assessment is not None and obi_assessment.status != "eligible":
            why = (obi_assessment.blockers or obi_assessment.unknown or ("not eligible",))[0]
            red_gap = f"no RED metrics: OBI {obi_assessment.status} ({why})"
        elif traced and not central:
            red_gap = "no RED metrics: no gateway computes spanmetrics for its traces"
        else:
            red_gap = "no RED metrics"
    score = (0.5 if traced else 0.0) + (0.5 if red else 0.0)
    gap = "; ".join(g for g in (trace_gap, red_gap) if g)
    return ServiceCoverage(
        name=svc.name,
        traced=traced,
        red=red,
        red_source=red_source,
        score=score,
        gap=gap,
        instrumentation=inst or "unknown",
        path=path,
    )


@dataclass(frozen=True)
class JourneyCoverage:
    journey: Journey
    services: tuple[ServiceCoverage, ...]
    coverage: float  # 0..1
    first_gap: str  # "service: reason", or ""
    zero_code_ready: float  # share of its services with a zero-code path (no code change)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.journey.id,
            "name": self.journey.name,
            "owner": self.journey.owner,
            "coverage": round(self.coverage, 4),
            "first_gap": self.first_gap,
            "zero_code_ready": round(self.zero_code_ready, 4),
            "services": [s.as_json() for s in self.services],
        }


def coverage_bar(fraction: float, width: int = 20) -> str:
    """``[########------------]`` (plain ASCII so it survives any terminal and NO_COLOR)."""
    filled = max(0, min(width, round(fraction * width)))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def journey_coverage(
    journeys: Iterable[Journey],
    inventory: Inventory,
    eligibility: Mapping[str, Eligibility],
    view: FleetView,
) -> list[JourneyCoverage]:
    cache: dict[str, ServiceCoverage] = {}
    out: list[JourneyCoverage] = []
    for j in journeys:
        rows: list[ServiceCoverage] = []
        for name in j.services:
            if name not in cache:
                svc = inventory.service(name)
                if svc is None:
                    cache[name] = ServiceCoverage(
                        name, False, False, "", 0.0, "not in the inventory", "unknown", ""
                    )
                else:
                    cache[name] = service_coverage(view, svc, eligibility.get(name))
            rows.append(cache[name])
        first = next((r for r in rows if r.score < 1.0), None)
        ready = [
            1.0 if (e := eligibility.get(r.name)) is not None and e.code_change is False else 0.0
            for r in rows
        ]
        out.append(
            JourneyCoverage(
                journey=j,
                services=tuple(rows),
                coverage=sum(r.score for r in rows) / len(rows) if rows else 0.0,
                first_gap=f"{first.name}: {first.gap}" if first else "",
                zero_code_ready=sum(ready) / len(ready) if ready else 0.0,
            )
        )
    return out


def services_on_journeys(journeys: Sequence[Journey]) -> list[str]:
    return list(dict.fromkeys(s for j in journeys for s in j.services))
