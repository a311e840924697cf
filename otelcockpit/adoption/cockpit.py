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
from otelcockpit.adoption.eligibility import Eligibility, Rule, evaluate_all, load_rules
from otelcockpit.adoption.inventory import Inventory, load_inventory, merge_discovered
from otelcockpit.adoption.journeys import Journey, JourneyCoverage, journey_coverage, load_journeys
from otelcockpit.adoption.phases import PhaseReport, SignOff, compute_phases
from otelcockpit.adoption.signals import FleetView
from otelcockpit.errors import UsageError
from otelcockpit.fleet.model import FleetSnapshot

GROUP_KEYS = ("team", "path", "platform", "language")


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
    merged = merge_discovered(inventory, snapshot.collectors)
    elig = tuple(evaluate_all(merged.services, rules if rules is not None else load_rules()))
    by_name = {e.name: e for e in elig}
    view = FleetView.build(snapshot)
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


def group_by(items: Sequence[Eligibility], key: str) -> dict[str, list[Eligibility]]:
    """Group services like the Fleet view: by team, path, platform or language."""
    if key not in GROUP_KEYS:
        raise UsageError(f"group by one of {', '.join(GROUP_KEYS)}")
    out: dict[str, list[Eligibility]] = {}
    for e in items:
        value = e.path if key == "path" else getattr(e.service, key) or "unknown"
        out.setdefault(value, []).append(e)
    return dict(sorted(out.items()))


def service_attr(e: Eligibility, key: str) -> str:
    """A service's value for filters: ``path``, ``blockers`` (count) or any inventory field."""
    if key == "path":
        return e.path
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
