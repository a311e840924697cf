"""One call for the cockpit (TUI and CLI): everything the Services and Phases views render.

``resolve_sources(settings)`` finds the inventory, journeys and conventions files;
``analyse(snapshot, ...)`` returns an immutable :class:`AdoptionData`. Nothing here imports a
backend, HTTP or textual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otelcockpit.adoption.conventions import Conventions, Violation, check, load_conventions
from otelcockpit.adoption.discovery import merge_discovered
from otelcockpit.adoption.eligibility import Eligibility, Rule, evaluate_all, load_knowledge
from otelcockpit.adoption.inventory import Inventory, load_inventory
from otelcockpit.adoption.journeys import Journey, JourneyCoverage, journey_coverage, load_journeys
from otelcockpit.adoption.phases import PhaseReport, SignOff, compute_phases
from otelcockpit.adoption.signals import FleetView
from otelcockpit.errors import UsageError
from otelcockpit.fleet.model import FleetSnapshot

GROUP_KEYS = ("team", "path", "platform", "language", "status")


@dataclass(frozen=True)
class Sources:
    inventory: Path
    journeys: Path | None
    conventions: Path | None


def resolve_sources(settings: Any, *, conventions: str | None = None) -> Sources:
    """``--inventory`` / the context's ``inventory`` / the demo's ``services.yaml`` on the demo
    backend. Journeys and conventions: the context's ``journeys:`` / ``conventions:`` options,
    else ``journeys.yaml`` / ``conventions.yaml`` beside the inventory when they exist."""
    from otelcockpit.resources import demo_dir

    inv = getattr(settings, "inventory", None)
    if inv:
        inventory = Path(str(inv)).expanduser()
    elif settings.backend == "demo":
        inventory = demo_dir() / "services.yaml"
    else:
        raise UsageError("no service inventory: pass --inventory FILE or set inventory: in the context")
    options = getattr(settings.context, "options", {}) or {}

    def pick(explicit: str | None, key: str, name: str) -> Path | None:
        if explicit:
            return Path(explicit).expanduser()
        if options.get(key):
            return Path(str(options[key])).expanduser()
        beside = inventory.parent / name
        return beside if beside.exists() else None

    return Sources(
        inventory,
        pick(None, "journeys", "journeys.yaml"),
        pick(conventions, "conventions", "conventions.yaml"),
    )


@dataclass(frozen=True)
class AdoptionData:
    inventory: Inventory
    eligibility: tuple[Eligibility, ...]
    journeys: tuple[JourneyCoverage, ...]
    phases: PhaseReport
    violations: tuple[Violation, ...]

    def service(self, name: str) -> Eligibility | None:
        for e in self.eligibility:
            if e.name == name:
                return e
        return None


def analyse(
    snapshot: FleetSnapshot,
    inventory: Inventory,
    *,
    journeys: Sequence[Journey] = (),
    conventions: Conventions | None = None,
    signoffs: Mapping[str, SignOff] | None = None,
    rules: Sequence[Rule] | None = None,
    thresholds: Mapping[int, float] | None = None,
) -> AdoptionData:
    view = FleetView.build(snapshot)
    merged = merge_discovered(inventory, snapshot.collectors, view)
    kb = load_knowledge()
    elig = tuple(evaluate_all(merged.services, rules if rules is not None else kb.rules, knowledge=kb))
    by_name = {e.name: e for e in elig}
    jcov = tuple(journey_coverage(journeys, merged, by_name, view))
    phases = compute_phases(view, merged, by_name, journeys, signoffs=signoffs, thresholds=thresholds)
    violations = tuple(check(conventions, snapshot.collectors, merged)) if conventions else ()
    return AdoptionData(merged, elig, jcov, phases, violations)


def analyse_for(settings: Any, snapshot: FleetSnapshot, sources: tuple[Inventory, Any, Any]) -> AdoptionData:
    """:func:`analyse` as a context sees it: the loaded ``(inventory, journeys, conventions)``, the
    context's sign-offs and the phase thresholds from the config file."""
    from otelcockpit.adoption import signoff

    inventory, journeys, conventions = sources
    return analyse(
        snapshot,
        inventory,
        journeys=journeys,
        conventions=conventions,
        signoffs=signoff.latest(context=settings.context.name),
        thresholds=settings.phase_thresholds,
    )


def load_sources(sources: Sources) -> tuple[Inventory, tuple[Journey, ...], Conventions | None]:
    inventory = load_inventory(sources.inventory)
    journeys = load_journeys(sources.journeys) if sources.journeys else ()
    conventions = load_conventions(sources.conventions) if sources.conventions else None
    return inventory, journeys, conventions


@dataclass(frozen=True)
class DecisionCounts:
    """How many services have a decided path, a conditional one (and which fields to fill to
    decide them), or none: what a rollout lead plans with. The decided ones split into zero-code and
    code change; a conditional service is neither (its path holds for some values of a field nobody
    filled in). Every face counts with this, so the cockpit, the Services view and the walkthrough agree."""

    services: int
    decided: int
    conditional: int
    unknown: int
    fill: tuple[tuple[str, int], ...]  # (inventory field, services that need it), most first
    zero_code: int = 0  # decided, no code change
    code_change: int = 0  # decided, a code change

    def as_json(self) -> dict[str, Any]:
        return {
            "services": self.services,
            "decided": self.decided,
            "zero_code": self.zero_code,
            "code_change": self.code_change,
            "conditional": self.conditional,
            "unknown": self.unknown,
            "fill": dict(self.fill),
        }

    def fill_text(self, limit: int = 3, *, more: bool = False) -> str:
        """``field n, ...``: the fields to fill, most needed first; ``more`` says how many were left out."""
        text = ", ".join(f"{f} {n}" for f, n in self.fill[:limit])
        left = len(self.fill) - limit
        return text + (f" and {left} more" if more and left > 0 else "")


def decision_counts(items: Sequence[Eligibility]) -> DecisionCounts:
    fill: dict[str, int] = {}
    for e in items:
        if e.status != "decided":
            for f in dict.fromkeys(f.field for f in e.fill):
                fill[f] = fill.get(f, 0) + 1
    return DecisionCounts(
        services=len(items),
        decided=sum(1 for e in items if e.status == "decided"),
        zero_code=sum(1 for e in items if e.status == "decided" and e.code_change is False),
        code_change=sum(1 for e in items if e.status == "decided" and e.code_change),
        conditional=sum(1 for e in items if e.status == "conditional"),
        unknown=sum(1 for e in items if e.status == "unknown"),
        fill=tuple(sorted(fill.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


def counts_by_team(items: Sequence[Eligibility]) -> dict[str, DecisionCounts]:
    teams: dict[str, list[Eligibility]] = {}
    for e in items:
        teams.setdefault(e.service.team or "unknown", []).append(e)
    return {team: decision_counts(es) for team, es in sorted(teams.items())}


def group_by(items: Sequence[Eligibility], key: str) -> dict[str, list[Eligibility]]:
    """Group services like the Fleet view: by team, path, platform or language."""
    if key not in GROUP_KEYS:
        raise UsageError(f"group by one of {', '.join(GROUP_KEYS)}")
    out: dict[str, list[Eligibility]] = {}
    for e in items:
        if key == "path":
            value = e.path
        elif key == "status":
            value = e.status
        else:
            value = getattr(e.service, key) or "unknown"
        out.setdefault(value, []).append(e)
    return dict(sorted(out.items()))


def service_attr(e: Eligibility, key: str) -> str:
    """A service's value for filters: ``path``, ``blockers`` (count) or any inventory field."""
    if key == "path":
        return e.path
    if key == "status":
        return e.status
    if key == "name":
        return e.name
    if key == "code_change":
        return "" if e.code_change is None else str(e.code_change).lower()
    value = e.service.get(key)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def filter_services(items: Sequence[Eligibility], text: str) -> list[Eligibility]:
    """Filter like the Fleet view: matchers (``team="identity",path=~"obi|sdk"``) or plain text
    (matched against name, team, language, platform and path)."""
    from otelcockpit.fleet.matchers import MatcherError, matches_getter, parse_matchers

    text = text.strip()
    if not text:
        return list(items)
    if any(op in text for op in ("=", "!~")):
        try:
            matchers = parse_matchers(text)
        except MatcherError as exc:
            raise UsageError(str(exc)) from None
        return [e for e in items if matches_getter(matchers, lambda k, e=e: service_attr(e, k))]
    needle = text.lower()
    return [
        e
        for e in items
        if any(
            needle in v.lower()
            for v in (e.name, e.service.team, e.service.language, e.service.platform, e.path)
        )
    ]
