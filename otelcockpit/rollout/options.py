"""What an operator asks of a rollout plan, and the one safe default every face uses.

The CLI's flags, the TUI's review fields, the admin API's JSON body and a context's
``rollout_defaults:`` all become one :class:`PlanOptions`; :meth:`PlanOptions.resolve` turns it into
the canary, the waves and the gates, parsing every field in one place. A field left out takes the
context's default, else :data:`SAFE_DEFAULTS`: a canary, a wave before 100%, a soak and a failure gate
of zero. Pushing to every collector at once has to be asked for (``all_at_once``), and the plan then
says so in words (:func:`plan_words`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from otelcockpit.errors import UsageError
from otelcockpit.rollout.model import (
    CanarySpec,
    Gates,
    RolloutPlan,
    _num,
    duration_text,
    parse_canary,
    parse_count,
    parse_duration,
    parse_waves,
)


@dataclass(frozen=True)
class PlanOptions:
    """Raw operator input (text as typed, or numbers from JSON); None: take the default."""

    canary: str | None = None
    waves: str | None = None
    max_failures: str | None = None
    soak: str | None = None
    apply_timeout: str | None = None
    manual: bool | None = None
    health_required: bool | None = None
    all_at_once: bool = False
    # Collectors in the blast radius that lack a component the new version uses: "exclude" leaves
    # them out of the plan, "block" refuses the push.
    missing_components: str | None = None

    def over(self, defaults: PlanOptions) -> PlanOptions:
        """These options with every field left out taken from ``defaults``."""
        return PlanOptions(
            **{
                f.name: (getattr(self, f.name) if getattr(self, f.name) is not None else getattr(defaults, f.name))
                for f in fields(self)
                if f.name != "all_at_once"
            },
            all_at_once=self.all_at_once or defaults.all_at_once,
        )

    def resolve(self, defaults: PlanOptions | None = None) -> tuple[CanarySpec, tuple[float, ...], Gates]:
        """The canary, the cumulative waves and the gates; a bad field is one UsageError naming it."""
        o = self.over(defaults or SAFE_DEFAULTS).over(SAFE_DEFAULTS)
        gates = Gates(
            max_failures=parse_count(str(o.max_failures), "--max-failures"),
            soak_seconds=parse_duration(str(o.soak), "--soak"),
            health_required=bool(o.health_required),
            apply_timeout=parse_duration(str(o.apply_timeout), "--apply-timeout"),
            manual=bool(o.manual),
        )
        if gates.apply_timeout <= 0:
            raise UsageError("--apply-timeout must be more than zero")
        self.missing_choice(defaults)
        if o.all_at_once:
            if self.canary not in (None, "", "none") or self.waves not in (None, "", "100%"):
                raise UsageError("--all-at-once pushes to every collector in one stage: leave --canary and --waves out")
            return CanarySpec("none"), (100.0,), gates
        canary = parse_canary(o.canary)
        waves = parse_waves(o.waves)
        if canary.kind == "none" and waves == (100.0,):
            raise UsageError(
                "this plan pushes to every collector at once (no canary, one wave of 100%): "
                "give --canary or --waves, or say --all-at-once"
            )
        return canary, waves, gates

    def missing_choice(self, defaults: PlanOptions | None = None) -> str:
        """``exclude`` or ``block`` (the pre-flight's choice); anything else is a UsageError."""
        o = self.over(defaults or SAFE_DEFAULTS).over(SAFE_DEFAULTS)
        value = str(o.missing_components).strip().lower()
        if value not in MISSING_CHOICES:
            raise UsageError(f"--missing-components must be exclude or block, not {o.missing_components!r}")
        return value

    def explicit(self, defaults: PlanOptions | None = None) -> PlanOptions:
        """Every field filled in (what a client sends a server, so the server plans exactly what the
        client's context asked for)."""
        return self.over(defaults or SAFE_DEFAULTS).over(SAFE_DEFAULTS)

    def as_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], *, where: str = "") -> PlanOptions:
        """From JSON (the admin API) or YAML (a context's ``rollout_defaults``): numbers are taken as
        seconds or counts, lists of waves as percentages; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(f"{where or 'plan options'}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        out: dict[str, Any] = {}
        for name in ("canary", "waves", "max_failures", "soak", "apply_timeout", "missing_components"):
            v = d.get(name)
            if v is None:
                continue
            if isinstance(v, bool):
                raise UsageError(f"{where or 'plan options'}: {name} must be text or a number, not {v!r}")
            if name == "waves" and isinstance(v, list):
                v = ",".join(str(w) if str(w).endswith("%") else f"{w}%" for w in v)
            if name in ("soak", "apply_timeout") and isinstance(v, int | float):
                v = f"{v}s"
            out[name] = str(v)
        for name in ("manual", "health_required", "all_at_once"):
            v = d.get(name)
            if v is None:
                continue
            if not isinstance(v, bool):
                raise UsageError(f"{where or 'plan options'}: {name} must be true or false, not {v!r}")
            out[name] = v
        return cls(**out)


MISSING_CHOICES = ("exclude", "block")

# The safe default: 5% (at least one collector) first, then a quarter, then everybody; each
# collector must stay applied and healthy for a minute; the first failure pauses the rollout; a
# collector in the blast radius that lacks a component the new version uses blocks the push (say
# ``missing_components: exclude`` to leave such collectors out instead).
SAFE_DEFAULTS = PlanOptions(
    canary="5%",
    waves="25%,100%",
    max_failures="0",
    soak="1m",
    apply_timeout="5m",
    manual=False,
    health_required=True,
    all_at_once=False,
    missing_components="block",
)


def defaults_from(raw: Any, where: str) -> PlanOptions:
    """A context's ``rollout_defaults:`` mapping over the safe defaults (validated now: one line)."""
    if raw is None:
        return SAFE_DEFAULTS
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where}: rollout_defaults must be a mapping (canary, waves, soak, ...)")
    opts = PlanOptions.from_json(raw, where=where).over(SAFE_DEFAULTS)
    try:
        opts.resolve()
    except UsageError as exc:
        raise UsageError(f"{where}: rollout_defaults: {exc.message}") from None
    return opts


def plan_words(plan: RolloutPlan) -> list[str]:
    """The plan in sentences, the same in the CLI and the TUI."""
    g = plan.gates
    total = plan.collector_count
    out: list[str] = []
    if plan.all_at_once or (plan.canary.kind == "none" and len(plan.stages) <= 1):
        out.append(f"ALL AT ONCE: every one of the {total} collector(s) gets the new version in one stage, with no canary")
    else:
        first = plan.stages[0] if plan.stages else None
        if plan.canary.kind != "none" and first is not None:
            out.append(f"canary {plan.canary.text()}: {len(first.collector_ids)} collector(s) first")
        waves = ", ".join(f"{_num(w)}%" for w in plan.waves)
        out.append(f"then waves to {waves} of {total} collector(s) ({len(plan.stages)} stage(s) in all)")
    soak = duration_text(g.soak_seconds)
    out.append(
        f"each collector must report APPLIED within {duration_text(g.apply_timeout)}"
        + (f" and stay applied{' and healthy' if g.health_required else ''} for {soak}" if g.soak_seconds else "")
    )
    out.append(
        "the first failure pauses the rollout"
        if g.max_failures == 0
        else f"the rollout pauses when more than {g.max_failures} collector(s) fail"
    )
    if g.manual:
        out.append("after every stage it waits for an explicit continue (resume)")
    out.append(preflight_words(plan))
    return out


def preflight_words(plan: RolloutPlan) -> str:
    """The pre-flight in one sentence (the CLI's plan, the TUI's review and the server say this)."""
    pf = plan.preflight
    if not pf.needs:
        return "pre-flight: the new version names no component to check"
    if pf.checked == 0:
        return (
            "pre-flight: no collector in the blast radius reports its available components: not checked"
            if pf.unreported
            else "pre-flight: no collector to check"
        )
    tail = f" ({pf.unreported} do not report their components: not checked)" if pf.unreported else ""
    if not pf.incompatible:
        return f"pre-flight: the {pf.checked} collector(s) that report their components can run it{tail}"
    lacking = sorted({c for i in pf.incompatible for c in i.missing})
    head = f"pre-flight: {len(pf.incompatible)} collector(s) lack {', '.join(lacking)}"
    if pf.applied == "exclude":
        return f"{head}: LEFT OUT of the plan (missing_components: exclude){tail}"
    why = f"; {pf.note}" if pf.note else ""
    return f"{head}: the push is BLOCKED (missing_components: {pf.choice}{why}; exclude leaves them out){tail}"


def gates_text(g: Gates) -> str:
    """The gates in one line (durations as everywhere else: 5m, 30s, 1h)."""
    return (
        f"max failures {g.max_failures}, soak {duration_text(g.soak_seconds)}, apply timeout "
        f"{duration_text(g.apply_timeout)}, health {'required' if g.health_required else 'ignored'}"
        + (", explicit continue after every stage" if g.manual else "")
    )
