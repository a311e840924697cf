"""The walkthrough as data: slides for a room or a screen share, from the organisation's live numbers.

``build_slides(snapshot, adoption, journey=None)`` returns the slides in presenting order:

1. the organisation today (fleet, services, zero-code share, journeys);
2. the four phases, one slide each, with every check's live value, what fails, and why the phase
   stands where it does in the order;
3. why the order matters, with the checks that prove (or disprove) each principle;
4. the eligibility summary per team;
5. one critical journey end to end (``--journey NAME``; default the least covered one);
6. the next actions, derived from the failing checks, the order warnings and the journey's gaps.

``to_markdown(slides)`` writes the same session as Markdown (``walkthrough --export FILE``): build
the slides with ``full=True`` for it, so every list is whole (the screen shows the first few), the
checks are tables with their sign-offs (who, when, why), and times are to the second.
Nothing here imports a backend, HTTP or textual.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from otelcockpit.adoption.cockpit import AdoptionData, counts_by_team, decision_counts
from otelcockpit.adoption.journeys import JourneyCoverage, coverage_bar
from otelcockpit.adoption.outage import DrillRecord
from otelcockpit.adoption.phases import Phase, PhaseItem
from otelcockpit.errors import UsageError
from otelcockpit.fleet.model import FleetSnapshot, Health, parse_time

# Line kinds: the TUI styles them, Markdown marks them.
OK, FAIL, WARN, INFO, HEAD, NOTE = "ok", "fail", "warn", "info", "head", "note"
MARK = {OK: "✔", FAIL: "✖", WARN: "⚠", INFO: "·", HEAD: "", NOTE: "›"}

# Why each phase stands where it does (the reasoning is fixed; the numbers beside it are live).
WHY_PHASE = {
    1: "Foundations first: host and node USE metrics show whether the platform itself is healthy. "
    "Every later signal is read against them, and they need no change to any application.",
    2: "Zero-code before code: RED metrics and network visibility come from eBPF (OBI) on the nodes. "
    "Where a zero-code path exists, no team writes code to get them.",
    3: "Traces for one critical journey end to end first, then the rest. Sampling is decided centrally "
    "on the gateways: no sampling at the source (it skews the span metrics), no tail sampling (it adds "
    "state to the gateways).",
    4: "App-specific insight last: business metrics and profiling only pay off once the foundations, "
    "the baseline and the transactions are in place to read them against.",
}

PRINCIPLES = (
    ("Foundations before app-specific insight", (1, 2)),
    ("No code change where a zero-code path exists", (2,)),
    ("Central sampling: no sampling at the source, no tail sampling", (3,)),
    ("One critical journey end to end first", (3,)),
    ("Never let an unavailable fleet API push collectors back to a default config", ()),
)

SAMPLING_ITEMS = ("p3.no-source-sampling", "p3.no-tail-sampling", "p3.central-sampling")


@dataclass(frozen=True)
class Line:
    kind: str
    text: str


@dataclass(frozen=True)
class Slide:
    id: str  # intro | phase-1..phase-4 | order | teams | journey | next
    title: str
    lead: str = ""
    lines: tuple[Line, ...] = ()
    table: tuple[tuple[str, ...], ...] = ()  # first row is the header
    phase: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "lead": self.lead,
            "phase": self.phase,
            "lines": [{"kind": ln.kind, "text": ln.text} for ln in self.lines],
            "table": [list(r) for r in self.table],
        }


def when(ts: datetime | str | None) -> str:
    """A time for people, to the second: ``2026-11-20 09:00:00 UTC``."""
    try:
        at = parse_time(ts) if ts is not None else None
    except ValueError:
        return str(ts)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at is not None else "-"


def signed(item: PhaseItem) -> str:
    """Who signed an item off, when, and why ('' when nobody did)."""
    s = item.signoff
    if s is None:
        return ""
    return f"{s.by}, {when(s.at)}" + (f": {s.note}" if s.note else "")


def _more(shown: int, total: int, what: str = "") -> str:
    return f"… and {total - shown} more{' ' + what if what else ''}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _item_line(item: PhaseItem) -> Line:
    value = f"{item.value:.0%} (threshold {item.threshold:.0%})"
    text = f"{item.title}: {value}"
    if item.signoff is not None:
        text += f" · signed off by {item.signoff.by}"
    return Line(OK if item.passed else FAIL, text)


def phase_slide(phase: Phase, warnings: Sequence[str], *, full: bool = False) -> Slide:
    """A phase with its live checks. ``full`` (the export): the checks as a table with their
    sign-offs, and every reason a check fails."""
    passed = sum(1 for i in phase.items if i.passed)
    state = "at its threshold" if phase.at_threshold else "below its threshold"
    goal = phase.goal[:1].upper() + phase.goal[1:]
    lead = f"{goal}. {passed}/{len(phase.items)} checks pass ({phase.progress:.0%}); the phase is {state}."
    lines: list[Line] = []
    table: tuple[tuple[str, ...], ...] = ()
    if full:
        table = (("Check", "Now", "Threshold", "Passes", "Signed off"),) + tuple(
            (i.title, f"{i.value:.0%}", f"{i.threshold:.0%}", "yes" if i.passed else "no", signed(i) or "-")
            for i in phase.items
        )
        failing = [i for i in phase.items if i.failing]  # a check may pass its threshold and still miss some
        if failing:
            lines.append(Line(HEAD, "What fails"))
        for item in failing:
            lines.append(Line(OK if item.passed else FAIL, item.title))
            lines += [Line(NOTE, f) for f in item.failing]
    else:
        lines.append(Line(HEAD, "Checks, live"))
        for item in phase.items:
            lines.append(_item_line(item))
            if not item.passed:
                lines += [Line(NOTE, f) for f in item.failing[:3]]
                if len(item.failing) > 3:
                    lines.append(Line(NOTE, _more(3, len(item.failing))))
    if phase.started_by:
        lines.append(Line(INFO, f"Work started: {', '.join(phase.started_by)}"))
    mine = [w for w in warnings if w.startswith(f"phase {phase.number} ")]
    lines += [Line(WARN, w) for w in mine]
    lines += [Line(HEAD, "Why here"), Line(INFO, WHY_PHASE[phase.number])]
    return Slide(
        f"phase-{phase.number}", f"Phase {phase.number}: {phase.name}", lead, tuple(lines), table, phase=phase.number
    )


def _intro(snapshot: FleetSnapshot, data: AdoptionData) -> Slide:
    health = Counter(c.health for c in snapshot.collectors)
    total = len(data.eligibility)
    counts = decision_counts(data.eligibility)
    zero, code, conditional, unknown = counts.zero_code, counts.code_change, counts.conditional, counts.unknown
    teams = len({e.service.team or "unknown" for e in data.eligibility})
    phases = data.phases.phases
    done = [p.number for p in phases if p.at_threshold]
    lines = [
        Line(HEAD, "Today, live"),
        Line(
            INFO,
            f"{len(snapshot.collectors)} collectors: {health.get(Health.HEALTHY, 0)} healthy, "
            f"{health.get(Health.DEGRADED, 0)} degraded, {health.get(Health.UNHEALTHY, 0)} unhealthy, "
            f"{health.get(Health.OFFLINE, 0)} offline",
        ),
        Line(INFO, f"{len(snapshot.pipelines)} pipelines"),
        Line(
            OK if zero else WARN,
            f"{total} services in {teams} teams: {zero} zero-code ({zero / total:.0%}), {code} need a code change"
            + (f", {conditional} conditional" if conditional else "")
            + (f", {unknown} unknown" if unknown else "")
            if total
            else "no services in the inventory",
        ),
        Line(INFO, f"{len(data.journeys)} critical journeys"),
        Line(HEAD, "The four phases"),
    ]
    for p in phases:
        passed = sum(1 for i in p.items if i.passed)
        lines.append(
            Line(OK if p.at_threshold else FAIL, f"{p.number}. {p.name}: {passed}/{len(p.items)} checks pass")
        )
    if snapshot.stale:
        lines.append(Line(WARN, f"the fleet data is stale: {snapshot.stale_reason}"))
    at = f" (data of {when(snapshot.fetched_at)})"
    lead = (
        f"Phases at their threshold: {', '.join(map(str, done))}"
        if done
        else "No phase is at its threshold yet"
    ) + at + "."
    return Slide("intro", "Rolling OpenTelemetry out: where we stand", lead, tuple(lines))


def _order(snapshot: FleetSnapshot, data: AdoptionData, *, full: bool = False) -> Slide:
    report = data.phases
    lines: list[Line] = []
    for title, numbers in PRINCIPLES:
        lines.append(Line(HEAD, title))
        if title.startswith("Foundations"):
            for p in report.phases:
                if p.number in numbers:
                    lines.append(
                        Line(OK if p.at_threshold else FAIL, f"phase {p.number} ({p.name}) {p.progress:.0%}")
                    )
            lines += [Line(WARN, w) for w in report.warnings] or [
                Line(OK, "no later phase started ahead of an earlier one")
            ]
        elif title.startswith("No code change"):
            code = [e for e in data.eligibility if e.code_change]
            zero = [e for e in data.eligibility if e.code_change is False]
            lines.append(Line(OK, f"{_plural(len(zero), 'service')} can be instrumented without touching their code"))
            if code:
                shown = code if full else code[:6]
                lines.append(
                    Line(
                        INFO,
                        f"{len(code)} need a code change: {', '.join(e.name for e in shown)}"
                        + (f" {_more(len(shown), len(code))}" if len(shown) < len(code) else ""),
                    )
                )
        elif title.startswith("Central sampling"):
            for item_id in SAMPLING_ITEMS:
                item = report.item(item_id)
                if item is not None:
                    lines.append(Line(OK if item.passed else FAIL, f"{item.title}: {item.evidence}"))
        elif title.startswith("One critical journey"):
            if data.journeys:
                best = max(data.journeys, key=lambda j: j.coverage)
                lines.append(
                    Line(
                        OK if best.coverage >= 1.0 else INFO,
                        f"best covered: {best.journey.name} {best.coverage:.0%}",
                    )
                )
            else:
                lines.append(Line(WARN, "no journeys defined (journeys.yaml)"))
        else:
            lines.append(
                Line(
                    INFO,
                    "when the fleet API is down the cockpit shows the last data as stale and refuses pushes; "
                    "it never falls back to a default configuration",
                )
            )
            if snapshot.stale:
                lines.append(Line(WARN, f"the fleet API is unavailable right now: {snapshot.stale_reason}"))
            else:
                lines.append(Line(OK, f"the fleet API answers ({snapshot.health.status})"))
    return Slide(
        "order", "Why the order matters", "Each principle, with the live checks behind it.", tuple(lines)
    )


def drill_slide(record: DrillRecord | None) -> Slide:
    """The outage drill, from a drill's real numbers: what the cockpit saw at each step, what the new
    collectors came up on and what that sends compared with the managed config."""
    title = "Rehearsed: the fleet API goes away during a scale-out"
    if record is None:
        return Slide(
            "drill",
            title,
            "No outage drill is recorded here yet: the numbers of this slide come from one.",
            (
                Line(NOTE, "otelcockpit drill outage            the demo fleet, on a simulated clock (instant)"),
                Line(NOTE, "otelcockpit drill outage --serve    a scratch OpAMP server and simulated agents, for real"),
                Line(NOTE, "otelcockpit lint --bootstrap FILE   what the collectors start on until the API answers"),
            ),
        )
    summary = record.summary()
    lines: list[Line] = [Line(HEAD, "What the cockpit saw")]
    rows: list[tuple[str, ...]] = [("step", "at", "what happened", "the cockpit counted")]
    for st in record.steps:
        seen = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in st.observed.items())
        rows.append((st.name, f"+{st.at_seconds:.0f}s", st.what, seen + ("" if st.exact else " (NOT what was caused)")))
        if st.refused:
            lines.append(Line(OK, f"{st.name}: a push was refused: {st.refused}"))
    back = record.step("api back")
    if back is not None:
        for g in back.report.get("groups") or ():
            heavier = bool(g.get("compared"))
            what = "; ".join(g.get("compared") or ()) or g.get("note") or "no heavier than the managed config"
            lines.append(
                Line(FAIL if heavier else OK, f"{g.get('collectors')} came up on {g.get('runs')} (assigned {g.get('assigned')}): {what}")
            )
    if record.converged_after_seconds is not None:
        lines.append(Line(OK, f"all converged on their assigned config {record.converged_after_seconds:.0f}s after the API returned"))
    else:
        lines.append(Line(FAIL, "they had not all converged when the drill ended"))
    lines.append(Line(OK if record.exact else FAIL, "the cockpit's counts matched what the drill caused at every step"
                      if record.exact else "the cockpit's counts did NOT match what the drill caused at every step"))  # fmt: skip
    lines += [Line(HEAD, "Before the next scale-out"), Line(INFO, "lint the bootstrap config: otelcockpit lint --bootstrap FILE")]
    return Slide("drill", title, " ".join(summary[:2]), tuple(lines), tuple(rows))


def _teams(data: AdoptionData) -> Slide:
    by_team: dict[str, list[object]] = {}
    for e in data.eligibility:
        by_team.setdefault(e.service.team or "unknown", []).append(e)
    counts = counts_by_team(data.eligibility)
    # Short heads: eight columns fit 80 (SVCS = services, ZERO = zero-code, COND = conditional).
    rows: list[tuple[str, ...]] = [("TEAM", "SVCS", "ZERO", "CODE", "COND", "UNKN", "MAIN PATH", "TO FILL")]
    for team, es in sorted(by_team.items()):
        c = counts[team]
        main, n = Counter(e.path for e in es).most_common(1)[0]  # type: ignore[attr-defined]
        rows.append(
            (team, str(c.services), str(c.zero_code), str(c.code_change), str(c.conditional), str(c.unknown),
             f"{main} ({n})", c.fill[0][0] if c.fill else "-")  # fmt: skip
        )
    overall = decision_counts(data.eligibility)
    lead = f"{overall.services} services; {overall.code_change} need a code change. Paths: " + ", ".join(
        f"{p} {n}" for p, n in Counter(e.path for e in data.eligibility).most_common()
    )
    lines: list[Line] = []
    if overall.fill:
        undecided = ", ".join(
            f"{n} {w}" for n, w in ((overall.conditional, "conditional"), (overall.unknown, "unknown")) if n
        )
        lines.append(Line(WARN, f"{undecided}: fill {overall.fill_text(more=True)} in the inventory to decide them"))
    return Slide("teams", "Eligibility per team", lead, tuple(lines), tuple(rows))


def choose_journey(journeys: Sequence[JourneyCoverage], name: str | None) -> JourneyCoverage | None:
    """The journey by id or name (case-insensitive); default: the least covered one."""
    if not journeys:
        if name:
            raise UsageError(f"--journey {name}: no journeys are defined (journeys.yaml)")
        return None
    if name:
        want = name.strip().lower()
        for j in journeys:
            if want in (j.journey.id.lower(), j.journey.name.lower()):
                return j
        known = ", ".join(j.journey.id for j in journeys)
        raise UsageError(f"--journey {name}: no such journey (known: {known})")
    return min(journeys, key=lambda j: (j.coverage, j.journey.id))


def _journey(j: JourneyCoverage | None) -> Slide:
    if j is None:
        return Slide(
            "journey",
            "One journey end to end",
            "No journeys are defined: add journeys.yaml.",
            (Line(WARN, "no journeys"),),
        )
    rows: list[tuple[str, ...]] = [("SERVICE", "TRACED", "RED", "PATH", "GAP")]
    for s in j.services:
        rows.append(
            (
                s.name,
                "yes" if s.traced else "no",
                s.red_source or ("yes" if s.red else "no"),
                s.path or "-",
                s.gap or "-",
            )
        )
    lines = [
        Line(OK if j.coverage >= 1.0 else FAIL, f"coverage {coverage_bar(j.coverage)} {j.coverage:.0%}"),
        Line(INFO, f"{j.zero_code_ready:.0%} of its services have a zero-code path"),
    ]
    if j.first_gap:
        lines.append(Line(WARN, f"first gap: {j.first_gap}"))
    lead = j.journey.description or f"{len(j.services)} services"
    if j.journey.owner:
        lead += f" (owner: {j.journey.owner})"
    return Slide("journey", f"Journey: {j.journey.name}", lead, tuple(lines), tuple(rows))


def next_actions(data: AdoptionData, journey: JourneyCoverage | None, *, full: bool = False) -> list[Line]:
    """What to do next, in order: the failing checks of the earliest phase below its threshold
    first (later phases wait for it), then the order warnings, the chosen journey's gaps and the
    teams whose services need a code change. ``full`` lists everything (the export); the screen
    shows the first few of each."""
    out: list[Line] = []
    for phase in data.phases.phases:
        if phase.at_threshold:
            continue
        failing = [i for i in phase.items if not i.passed]
        for item in failing if full else failing[:4]:
            first = item.failing[0] if item.failing else item.evidence
            out.append(
                Line(FAIL, f"Phase {phase.number}: {item.title} ({item.value:.0%} of {item.threshold:.0%})")
            )
            out.append(Line(NOTE, first))
        break  # the earliest phase below its threshold comes first; later ones wait for it
    warnings = data.phases.warnings
    for w in warnings if full else warnings[:2]:
        out.append(Line(WARN, f"Hold later-phase work: {w}"))
    if journey is not None:
        gaps = [s for s in journey.services if s.score < 1.0]
        shown = gaps if full else gaps[:3]
        for s in shown:
            how = f" ({s.path})" if s.path and s.path != "unknown" else ""
            out.append(Line(INFO, f"{journey.journey.name}: cover {s.name}{how}"))
            out.append(Line(NOTE, s.gap))
        if len(shown) < len(gaps):
            out.append(Line(NOTE, _more(len(shown), len(gaps), f"service(s) on {journey.journey.name}")))
    overall = decision_counts(data.eligibility)
    if overall.fill:
        out.append(Line(INFO, f"Decide {overall.conditional + overall.unknown} services' paths: fill "
                              f"{overall.fill_text(len(overall.fill) if full else 3, more=True)} in the inventory"))  # fmt: skip
    code = [e for e in data.eligibility if e.code_change and e.status == "decided"]
    if code:
        teams = Counter(e.service.team or "unknown" for e in code).most_common()
        named = teams if full else teams[:4]
        text = f"Plan code changes with {_plural(len(teams), 'team')}: " + ", ".join(f"{t} ({n})" for t, n in named)
        if len(named) < len(teams):
            text += f" and {len(teams) - len(named)} more"
        out.append(Line(INFO, text))
    if not out:
        out.append(Line(OK, "every phase is at its threshold: keep the checks green"))
    return out


def _signoffs(data: AdoptionData) -> Slide:
    """Every sign-off: which check, who, when, why."""
    items = [i for p in data.phases.phases for i in p.items if i.signoff is not None]
    rows: list[tuple[str, ...]] = [("Check", "Phase", "By", "When", "Note")]
    for i in items:
        s = i.signoff
        assert s is not None
        rows.append((f"{i.title} ({i.id})", str(i.phase), s.by, when(s.at), s.note or "-"))
    if not items:
        return Slide("signoffs", "Sign-offs", "No check has been signed off yet.")
    return Slide("signoffs", "Sign-offs", f"{_plural(len(items), 'check')} signed off.", (), tuple(rows))


def build_slides(
    snapshot: FleetSnapshot,
    data: AdoptionData,
    *,
    journey: str | None = None,
    drill: DrillRecord | None = None,
    full: bool = False,
) -> list[Slide]:
    """The slides in presenting order. ``drill``: the last outage drill's record (its slide follows the
    order's, built from its numbers). ``full`` (the export): whole lists, checks as tables with their
    sign-offs, and a last section with every sign-off."""
    chosen = choose_journey(data.journeys, journey)
    slides = [_intro(snapshot, data)]
    slides += [phase_slide(p, data.phases.warnings, full=full) for p in data.phases.phases]
    slides += [_order(snapshot, data, full=full), drill_slide(drill), _teams(data), _journey(chosen)]
    slides.append(
        Slide(
            "next",
            "Next actions",
            "Derived from the failing checks, the order warnings and the journey's gaps.",
            tuple(next_actions(data, chosen, full=full)),
        )
    )
    if full:
        slides.append(_signoffs(data))
    return slides


def phase_index(slides: Sequence[Slide], number: int) -> int | None:
    return next((i for i, s in enumerate(slides) if s.phase == number), None)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(table: Sequence[Sequence[str]]) -> list[str]:
    head, *rows = table
    out = ["| " + " | ".join(_md_cell(c) for c in head) + " |"]
    out.append("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        out.append("| " + " | ".join(_md_cell(c) for c in r) + " |")
    return out


def to_markdown(slides: Sequence[Slide], *, title: str = "OpenTelemetry rollout walkthrough") -> str:
    """A finished document: a heading per slide, checks and teams as tables, bullets that carry a
    mark only where it means something (✔ passes, ✖ fails, ⚠ warning)."""
    out = [f"# {title}", ""]
    for n, s in enumerate(slides, 1):
        out += [f"## {n}. {s.title}", ""]
        if s.lead:
            out += [s.lead, ""]
        if s.table and s.phase:
            out += [*_md_table(s.table), ""]  # a phase's checks come first
        for ln in s.lines:
            if ln.kind == HEAD:
                out += ["", f"### {ln.text}", ""]
            elif ln.kind == NOTE:
                out.append(f"  - {_md_cell(ln.text)}")
            elif MARK[ln.kind] and ln.kind != INFO:
                out.append(f"- {MARK[ln.kind]} {ln.text}")
            else:
                out.append(f"- {ln.text}")
        if s.lines:
            out.append("")
        if s.table and not s.phase:
            out += [*_md_table(s.table), ""]
    text = "\n".join(out)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"
